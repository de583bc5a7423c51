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
    joined = [c for c in concats if all(not v.is_constant for v in c.inputs) and _pays(c, stats)]
    return chosen, joined


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
    channels of more than one input."""
    convs, concats = [], []
    for node in graph.nodes:
        out = node.outputs[0]
        if out not in graph.outputs or out.uses or len(node.outputs) != 1 or out.type.rank < 2:
            continue
        if (node.op == "Conv" and node.attrs.get("group", 1) == 1 and out.type.shape[1] > 1
                and all(v is None or v.is_constant for v in node.inputs[1:])):
            convs.append(node)
        elif node.op == "Concat" and len(node.inputs) > 1 and node.attrs.get("axis") % out.type.rank == 1:
            concats.append(node)
    return convs, concats


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


def output_parts(graph: Graph) -> dict[str, list[np.ndarray]]:
    """The model outputs a host join assembles, with the output channels of
    each quantity they hold: the quantities whose fidelity is measured one
    by one (the SNR of a whole tensor of boxes and scores is the boxes').
    A Concat of the model's own tensors joins quantities, one per input; a
    split head's groups are cut by range (hm and an offset share one), so
    each of its channels is a quantity of its own (a box side, an offset, a
    class score)."""
    parts = {}
    for out in graph.outputs:
        node = out.producer
        if node is None or HOST_ONLY not in node.annotations:
            continue
        inverse = None
        if node.op == "Gather":
            inverse, node = node.inputs[1].const.reshape(-1), node.inputs[0].producer
        if node is None or node.op != "Concat":
            continue
        bounds = np.cumsum([0] + [v.type.shape[1] for v in node.inputs])
        if node.annotations.get(SPLIT_JOIN):
            parts[out.name] = [np.array([c]) for c in range(bounds[-1])]
            continue
        channels = np.arange(bounds[-1]) if inverse is None else np.asarray(inverse, np.int64)
        parts[out.name] = [np.flatnonzero((channels >= a) & (channels < b)) for a, b in zip(bounds[:-1], bounds[1:])]
    return parts


def part_label(output: str, channels: np.ndarray) -> str:
    """``out[2]`` for one channel, ``out[1:3]`` for a run of them,
    ``out[0,3,4]`` otherwise."""
    c = np.asarray(channels).tolist()
    if len(c) == 1:
        return f"{output}[{c[0]}]"
    if c == list(range(c[0], c[-1] + 1)):
        return f"{output}[{c[0]}:{c[-1] + 1}]"
    return f"{output}[{','.join(map(str, c))}]"
