"""Output grids per quantity for detector heads: one int8 grid per group of
channels that carry one quantity, so small scores keep their resolution
beside box sizes in pixels.

A detector head often writes different quantities into the channels of one
tensor: YOLO- and PicoDet-style exports have one convolution per scale
whose channels are box sizes in pixels, offsets within a cell and score
logits, or a final Concat of decoded boxes and class scores. On the
accelerator a tensor has one grid, sized by its loudest channel: the scores
and offsets keep a few codes. The tensor leaves the device anyway (it is a
model output), so nothing forces one grid on it:

- a convolution whose output is a model output (read by nothing else) is
  split by output channels into groups of similar range, each group its own
  convolution (the same MACs; each output channel is computed as before) on
  its own grid, joined by a Concat on the host in float32;
- a Concat that makes a model output from inputs of different ranges runs on
  the host, so that each input leaves the device on its own grid.

The groups come from the channels' calibrated ranges: channels sorted by
range, cut into contiguous groups by dynamic programming to minimise the
summed noise-to-signal ratio of the channels (a grid's noise power goes as
its range squared, each channel's signal is its mean square), with a group
added only while it divides that sum by :data:`GAIN` or more. A classifier's
logits, of one kind, are left as they are.

The pass :func:`head_grids` (``quant.head_grids``, on by default; not in
the radix modes, whose outputs are the device's fixed-point codes that kp
and FWDNXT users read as such; nor without calibration data) measures the
heads' channel statistics on the first calibration inputs and rewrites
where it pays. Below it the pure functions: :func:`find_heads` and
:func:`channel_groups` decide, :func:`split_head` and :func:`join_on_host`
rewrite. An encodings file's recorded groups are applied with the file
(compiler/apply_encodings.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ir.graph import HELPER_SEPARATOR, Graph, Node, Value, onnx_name
from ir.registry import Pattern, get_op, is_registered
from passes.affinity import HOST_ONLY
from passes.infra import PassContext, graph_pass, register_option
from passes.quant.channel_stats import channel_statistics, statistics_feeds
from passes.quant.report import report_of
from passes.rewrite import const_input

register_option("quant.head_grids", bool, True,
                "a grid per group of channels for a model output whose channels carry different quantities "
                "(passes/quant/head_grids.py)")

GAIN = 4.0
"""A split (or one more group) must divide the summed noise-to-signal ratio by this (6 dB): a
model output stops being one device tensor only for a clear gain."""
MAX_GROUPS = 4
"""At most this many grids per head."""
POWER_FLOOR = 1e-2
"""A channel's signal power is taken as at least this fraction of the tensor's mean (a near-silent
channel does not claim a grid of its own); a channel that never left 0 costs nothing on any grid."""
JOIN_REASON = "joins a head's parts on their own grids (quant.head_grids)"
SPLIT_JOIN = "head_split"
"""Annotation of the Concat that joins a split head's channel groups: its
groups are cut by range, not by quantity (output_parts measures such an
output channel by channel)."""


@dataclass(frozen=True)
class HeadGrids:
    """What the rewrite did: per split convolution (ONNX name), its groups
    of output channels; the Concats joined on the host."""

    split: dict[str, list[list[int]]]
    joined: list[str]

    def __bool__(self) -> bool:
        return bool(self.split or self.joined)

    def summary(self) -> str:
        lines = [f"head grids: {name} in {len(groups)} channel groups on their own grids "
                 f"({'; '.join(','.join(map(str, g)) for g in groups)})" for name, groups in self.split.items()]
        lines += [f"head grids: {name} joins its inputs on the host, each on its own grid" for name in self.joined]
        return "\n".join(lines)


@graph_pass(opt_level=0)
def head_grids(graph: Graph, ctx: PassContext) -> Graph:
    """Heads split into channel groups, or joined on the host, where their
    channels' calibrated ranges say it pays (``quant.head_grids``)."""
    data = ctx.option("quant.calibration_data")
    if not ctx.option("quant.head_grids") or data is None or ctx.option("quant.mode").startswith("radix"):
        return graph
    convs, concats = find_heads(graph)
    chosen, joined = _measure(graph, convs, concats, data, ctx)
    report_of(ctx).head_grids = apply_groups(graph, convs, chosen, joined)
    return graph


def apply_groups(graph: Graph, convs: list[Node], chosen: dict[str, list[np.ndarray]],
                 joined: list[Node]) -> HeadGrids:
    """Split the convolutions ``chosen`` names (node name -> channel groups),
    join the Concats ``joined`` on the host; what was done."""
    for conv in convs:
        if conv.name in chosen:
            split_head(graph, conv, chosen[conv.name])
    for concat in joined:
        join_on_host(concat)
    return HeadGrids({onnx_name(name): [g.tolist() for g in groups] for name, groups in chosen.items()},
                     [onnx_name(c.name) for c in joined])


def _measure(graph: Graph, convs, concats, data, ctx: PassContext) -> tuple[dict, list]:
    if not convs and not concats:
        return {}, []
    names = {c.outputs[0].name for c in convs} | {v.name for c in concats for v in c.inputs if not v.is_constant}
    stats = channel_statistics(graph, names, statistics_feeds(graph, ctx), ctx, "head grids")
    chosen = {}
    for conv in convs:
        s = stats[conv.outputs[0].name]
        groups = channel_groups(s.low, s.high, s.power)
        if len(groups) > 1:
            chosen[conv.name] = groups
    paying = {c.name for c in concats if all(not v.is_constant for v in c.inputs) and _pays(c, stats)}
    for concat in concats:  # an inner join's parts would meet on one device grid again in its outer Concat
        if concat.name in paying:
            paying |= {outer.name for outer in _outer_concats(concat, concats)}
    return chosen, [c for c in concats if c.name in paying]


def _outer_concats(concat: Node, concats: list[Node]) -> list[Node]:
    """The Concats of ``concats`` that ``concat`` feeds, nested outward."""
    outer, found = concat, []
    while len(outer.outputs[0].uses) == 1 and outer.outputs[0].uses[0][0] in concats:
        outer = outer.outputs[0].uses[0][0]
        found.append(outer)
    return found


def _pays(concat, stats) -> bool:
    """Own grids for the Concat's inputs divide the summed noise-to-signal ratio by GAIN or more."""
    parts = [stats[v.name] for v in concat.inputs]
    low, high, power = (np.concatenate([getattr(p, f) for p in parts]) for f in ("low", "high", "power"))
    sizes = np.cumsum([0] + [len(p.low) for p in parts])
    own = [np.arange(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
    return grid_cost(low, high, power, [np.arange(len(low))]) >= GAIN * grid_cost(low, high, power, own)


def find_heads(graph: Graph) -> tuple[list[Node], list[Node]]:
    """(convolutions, Concats) whose output is a model output read by nothing
    else: a group-1 Conv of more than one output channel, a Concat along the
    channels of more than one input (and the Concats along the channels
    that feed such a Concat alone)."""
    convs, concats = [], []
    for node in graph.nodes:
        out = node.outputs[0]
        if out not in graph.outputs or out.uses or len(node.outputs) != 1 or out.type.rank < 2:
            continue
        if (node.op == "Conv" and node.attrs.get("group", 1) == 1 and out.type.shape[1] > 1
                and all(v is None or v.is_constant for v in node.inputs[1:])):
            convs.append(node)
        elif node.op == "Concat" and len(node.inputs) > 1 and node.attrs.get("axis") % out.type.rank == 1:
            concats.extend(_nested_concats(graph, node))
    return convs, concats


def _nested_concats(graph: Graph, concat: Node) -> list[Node]:
    """``concat`` and the Concats along the same axis that feed it alone
    (YOLO11-seg's output0 is Concat(Concat(boxes, scores), coefficients)):
    each may join its parts on the host, or the inner one would put boxes in
    pixels and scores in [0, 1] on one device grid before the outer join."""
    found = [concat]
    for v in concat.inputs:
        inner = v.producer
        if (inner is not None and inner.op == "Concat" and len(inner.inputs) > 1 and len(v.uses) == 1
                and v not in graph.outputs and inner.attrs.get("axis") % v.type.rank == 1):
            found.extend(_nested_concats(graph, inner))
    return found


def channel_groups(low: np.ndarray, high: np.ndarray, power: np.ndarray) -> list[np.ndarray]:
    """The channels cut into groups (arrays of channel indices, the first
    group the quietest), one group when splitting does not pay."""
    low, high, weight = _weighted(low, high, power)
    order = np.argsort(high - low, kind="stable")
    lo, hi, w = low[order], high[order], weight[order]
    cost, cuts = _partition(lo, hi, w, 1)
    for count in range(2, min(MAX_GROUPS, len(order)) + 1):
        trial = _partition(lo, hi, w, count)
        if trial[0] * GAIN > cost:
            break
        cost, cuts = trial
    return [order[a:b] for a, b in zip((0, *cuts), (*cuts, len(order)))]


def grid_cost(low: np.ndarray, high: np.ndarray, power: np.ndarray, groups: list[np.ndarray]) -> float:
    """The summed noise-to-signal ratio (up to a constant) of the channels
    on one grid per group."""
    low, high, weight = _weighted(low, high, power)
    return float(sum((high[g].max() - low[g].min()) ** 2 * weight[g].sum() for g in groups))


def _weighted(low, high, power) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ranges a grid must hold (0 included) and each channel's weight,
    1 / its signal power (floored; 0 for a channel that never left 0)."""
    low, high = np.minimum(np.asarray(low, np.float64), 0.0), np.maximum(np.asarray(high, np.float64), 0.0)
    power = np.asarray(power, np.float64)
    weight = 1.0 / np.maximum(power, POWER_FLOOR * max(power.mean(), 1e-30))
    return low, high, np.where(high > low, weight, 0.0)


def _partition(lo: np.ndarray, hi: np.ndarray, w: np.ndarray, count: int) -> tuple[float, tuple[int, ...]]:
    """The cheapest cut of the sorted channels into ``count`` contiguous
    groups: (cost, the cut positions). Dynamic programming over the group
    ends, each step vectorised over the group starts."""
    n = len(lo)
    weights = np.concatenate(([0.0], np.cumsum(w)))
    cost = np.full((count + 1, n + 1), np.inf)
    start = np.zeros((count + 1, n + 1), np.int64)
    cost[0, 0] = 0.0
    for b in range(1, n + 1):
        top = np.maximum.accumulate(hi[:b][::-1])[::-1]  # top[a] = max(hi[a:b])
        bottom = np.minimum.accumulate(lo[:b][::-1])[::-1]
        group = (top - bottom) ** 2 * (weights[b] - weights[:b])
        for k in range(1, count + 1):
            total = cost[k - 1, :b] + group
            start[k, b] = int(np.argmin(total))
            cost[k, b] = total[start[k, b]]
    cuts, b = [], n
    for k in range(count, 0, -1):
        b = int(start[k, b])
        cuts.append(b)
    return float(cost[count, n]), tuple(sorted(c for c in cuts if c))


def split_head(graph: Graph, conv: Node, groups: list[np.ndarray]) -> Node:
    """Replace ``conv`` by one convolution per channel group (named
    ``<conv>::Conv#k``, so per-layer settings by ONNX name still reach them)
    joined on the host by a Concat (``<conv>::Concat``) and, when the groups
    are not in channel order, a Gather restoring it; the output keeps its name."""
    out = conv.outputs[0]
    weight, bias = const_input(conv, 1), const_input(conv, 2)
    index = graph.nodes.index(conv)
    order = np.concatenate(groups)
    parts: list[Value] = []
    for k, group in enumerate(groups):
        inputs = [conv.inputs[0], graph.add_constant(weight[group], f"{conv.name}_weight_group{k}")]
        if bias is not None:
            inputs.append(graph.add_constant(bias[group], f"{conv.name}_bias_group{k}"))
        part = graph.add_node("Conv", inputs, dict(conv.attrs), name=f"{conv.name}{HELPER_SEPARATOR}Conv#{k}",
                              index=index + k, output_names=[f"{out.name}{HELPER_SEPARATOR}group{k}"])
        part.annotations = dict(conv.annotations)
        parts.append(part.outputs[0])
    joined = _concat(graph, conv, parts, index + len(groups))
    joined.annotations[SPLIT_JOIN] = True
    if not np.array_equal(order, np.arange(len(order))):
        joined = _reorder(graph, conv, joined, order, index + len(groups) + 1)
    graph.replace_all_uses(out, joined.outputs[0])
    graph.remove_node(conv)
    graph.rename_value(joined.outputs[0], out.name)
    graph.remove_unused_values()
    return joined


def join_on_host(node: Node) -> None:
    """Mark a node joining a head's parts to run on the host (its inputs keep their own grids)."""
    node.annotations[HOST_ONLY] = JOIN_REASON


def _concat(graph: Graph, conv: Node, parts: list[Value], index: int) -> Node:
    node = graph.add_node("Concat", parts, {"axis": 1}, name=f"{conv.name}{HELPER_SEPARATOR}Concat", index=index,
                          output_names=[f"{conv.outputs[0].name}{HELPER_SEPARATOR}joined"])
    join_on_host(node)
    return node


def _reorder(graph: Graph, conv: Node, joined: Node, order: np.ndarray, index: int) -> Node:
    """A Gather on the host putting the channels back in their order."""
    inverse = graph.add_constant(np.argsort(order).astype(np.int64), f"{conv.name}_channel_order")
    node = graph.add_node("Gather", [joined.outputs[0], inverse], {"axis": 1},
                          name=f"{conv.name}{HELPER_SEPARATOR}Gather", index=index,
                          output_names=[f"{conv.outputs[0].name}{HELPER_SEPARATOR}ordered"])
    join_on_host(node)
    return node


@dataclass(frozen=True)
class OutputParts:
    """The parts of one model output: along ``axis`` (of the output), the
    indices of each part (iterating gives them); ``sources`` are the tensors
    the parts are (a Concat's inputs), or empty where each part is one
    channel of a split head."""

    axis: int
    channels: list[np.ndarray]
    sources: tuple[Value, ...] = ()

    def __iter__(self):
        return iter(self.channels)

    def __len__(self) -> int:
        return len(self.channels)


_SHAPE_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze"})
"""Ops that keep the element order: an axis survives when it stays one dim of the same stride."""


def _pattern(node: Node) -> Pattern | None:
    """The op's fusion pattern kind (ir.registry): ELEMWISE treats each
    element alone; BROADCAST combines each element with a constant's
    (broadcast), never with the tensor's other elements."""
    return get_op(node.op).pattern if is_registered(node.op) else None


def output_parts(graph: Graph) -> dict[str, OutputParts]:
    """The model outputs that hold several quantities, with the indices of
    each along the axis they lie on: the quantities whose fidelity is
    measured one by one (the SNR of a whole tensor of boxes and scores is
    the boxes'). Such an output is a Concat of the model's tensors along a
    quantity axis (not the batch, nor positions a Reshape merged: YOLOv5's
    Concat of anchors stays one quantity), directly or through ops that move or rename elements
    without mixing them (Reshape, Transpose, Flatten, Squeeze, Unsqueeze,
    a Gather of the axis) or treat each alone (Sigmoid, Identity, Mul by a
    constant, ...), on the device or on the host. Its parts are the
    Concat's inputs, a Concat of the same axis among them opened in turn
    (YOLO11-seg's boxes, scores and mask coefficients); a split head's
    groups are cut by range (hm and an offset share one), so each of its
    channels is a quantity of its own (a box side, an offset, a class score)."""
    parts = {}
    for out in graph.outputs:
        found = _parts_of(out)
        if found is not None:
            parts[out.name] = found
    return parts


def _parts_of(out: Value) -> OutputParts | None:
    chain, value = [], out
    while value.producer is not None and value.producer.op != "Concat":
        node = value.producer
        source = _passes_through(node, value)
        if source is None:
            return None
        chain.append(node)
        value = source
    concat = value.producer
    if concat is None or len(concat.inputs) < 2 or not _quantity_axis(concat):
        return None
    axis = concat.attrs.get("axis", 0) % value.type.rank
    if concat.annotations.get(SPLIT_JOIN):
        sources = ()
        bounds = np.arange(value.type.shape[axis] + 1)
    else:
        sources = tuple(_opened(concat, axis))
        if sum(not v.is_constant for v in sources) < 2:
            return None
        bounds = np.cumsum([0] + [v.type.shape[axis] for v in sources])
    positions = np.arange(bounds[-1])  # along the axis, which of the Concat's indices each holds
    for node in reversed(chain):
        moved = _follow(node, axis, positions)
        if moved is None:
            return None
        axis, positions = moved
    channels = [np.flatnonzero((positions >= a) & (positions < b)) for a, b in zip(bounds[:-1], bounds[1:])]
    keep = sorted((k for k, c in enumerate(channels) if c.size and not (sources and sources[k].is_constant)),
                  key=lambda k: channels[k][0])
    if len(keep) < 2:
        return None
    return OutputParts(axis, [channels[k] for k in keep], tuple(sources[k] for k in keep) if sources else ())


def _opened(concat: Node, axis: int) -> list[Value]:
    """The Concat's inputs, those made by a Concat of the same axis replaced by its inputs."""
    values = []
    for v in concat.inputs:
        inner = v.producer
        if inner is not None and inner.op == "Concat" and inner.attrs.get("axis", 0) % v.type.rank == axis \
                and not inner.annotations.get(SPLIT_JOIN):
            values += _opened(inner, axis)
        else:
            values.append(v)
    return values


def _quantity_axis(concat: Node) -> bool:
    """Whether the Concat joins along a quantity axis: not the batch, and
    not an axis one of its inputs made by merging dims (YOLOv5's and SSD's
    anchors, a Reshape of [1, 3, H, W, 85] to [1, 3HW, 85]: positions, not
    quantities)."""
    shape = concat.outputs[0].type.shape
    if len(shape) < 2 or not all(isinstance(d, int) for d in shape):
        return False
    axis = concat.attrs.get("axis", 0) % len(shape)
    return axis > 0 and not any(_merged(v, axis) for v in concat.inputs if not v.is_constant)


def _merged(value: Value, axis: int) -> bool:
    """Whether ``axis`` of ``value`` is, back through pointwise ops and
    Transposes, a Reshape's (or Flatten's) merge of several dims."""
    while value.producer is not None:
        node = value.producer
        if node.op == "Transpose":
            perm = node.attrs.get("perm") or list(range(value.type.rank))[::-1]
            axis, value = perm[axis], node.inputs[0]
        elif node.op in ("Reshape", "Flatten"):
            before, after = tuple(node.inputs[0].type.shape), tuple(value.type.shape)
            if not all(isinstance(d, int) for d in before + after):
                return True
            stride = int(np.prod(after[:axis], dtype=np.int64))
            return not any(size == after[axis] and int(np.prod(before[:j], dtype=np.int64)) == stride
                           for j, size in enumerate(before))
        elif _passes_through(node, value) is not None and node.op not in ("Gather", "Squeeze", "Unsqueeze"):
            value = _passes_through(node, value)
        else:
            return False
    return False


def _passes_through(node: Node, value: Value) -> Value | None:
    """The data input of a node that does not mix the elements of
    ``value``'s axes (a shape op, a pointwise op, a Gather), or None."""
    data = [v for v in node.inputs if v is not None and not v.is_constant]
    if len(node.outputs) != 1 or len(data) != 1:
        return None
    if node.op in _SHAPE_OPS or node.op in ("Transpose", "Gather") or _pattern(node) == Pattern.ELEMWISE:
        return node.inputs[0] if node.inputs[0] is data[0] else None
    if _pattern(node) == Pattern.BROADCAST and tuple(data[0].type.shape) == tuple(value.type.shape):
        return data[0]
    return None


def _follow(node: Node, axis: int, positions: np.ndarray) -> tuple[int, np.ndarray] | None:
    """Where the axis of ``node``'s data input lies in its output, and what
    each index of it holds then; None when the node merges or drops it."""
    if _pattern(node) in (Pattern.ELEMWISE, Pattern.BROADCAST):
        return axis, positions
    source, out = node.inputs[0], node.outputs[0]
    if node.op == "Transpose":
        perm = node.attrs.get("perm") or list(range(source.type.rank))[::-1]
        return list(perm).index(axis), positions
    if node.op == "Gather":
        index = node.inputs[1].const
        if index is None or index.ndim != 1 or node.attrs.get("axis", 0) % source.type.rank != axis:
            return None
        return axis, positions[np.asarray(index, np.int64)]
    before, after = tuple(source.type.shape), tuple(out.type.shape)
    if not all(isinstance(d, int) for d in before + after):
        return None
    stride = int(np.prod(before[:axis], dtype=np.int64))
    for j, size in enumerate(after):
        if size == before[axis] and int(np.prod(after[:j], dtype=np.int64)) == stride:
            return j, positions
    return None


def part_label(output: str, channels: np.ndarray, axis: int = 1) -> str:
    """``out[2]`` for one channel, ``out[1:3]`` for a run of them,
    ``out[0,3,4]`` otherwise; along another axis than the channels (1) the
    axes before it as ``:`` (``out[:,:,4:84]`` along axis 2)."""
    c = np.asarray(channels).tolist()
    if len(c) == 1:
        index = str(c[0])
    elif c == list(range(c[0], c[-1] + 1)):
        index = f"{c[0]}:{c[-1] + 1}"
    else:
        index = ",".join(map(str, c))
    return f"{output}[{':,' * axis if axis != 1 else ''}{index}]"
