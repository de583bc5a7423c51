"""Layout: Transposes sink toward the outputs and opposite ones cancel, so a
model exported channels-last (tf2onnx: ``Transpose -> Conv -> Transpose``
around every Conv, per-channel constants on the last axis) computes in the
Convs' N,C,H,W layout between them, like its channels-first twin.

A Transpose moves below a node that does not care about layout: element-wise
ops (their constant operands permuted, scalars as they are), Pad (pads
permuted), Concat (axis remapped), Resize (scales, sizes and roi permuted),
pooling that keeps N and C in place, and reductions (axes remapped). The node
then runs on the untransposed tensors and one Transpose follows it, where it
meets the next Transpose and the two compose (the identity disappears).

A Transpose moves only when every other activation input of the node is a
Transpose of the same permutation and every consumer of those Transposes can
take them as well (now, or once the values it also reads get theirs, as in
``x - mean(x)``). One read by several nodes is copied below each only when
on every path down from them it would vanish (meet another Transpose, or
come out of a reduction as a view), so copies never multiply. A graph output
keeps its declared layout and name. Then, the other way round, a Transpose
left after a chain of such nodes that starts at a graph input moves up onto
the input, so a channels-last input's pre-processing (an edge Pad, a mean
subtraction) runs in the Convs' layout. Last, a Transpose that moves only
axes of size 1 becomes a Reshape (a view).

onnxruntime's transpose optimizer and TVM's ConvertLayout work this way
(layout-agnostic ops adopt their input's layout, conversions pair up and
cancel); this pass keeps only the simplest of their cost rules: Transposes
move where they cancel, and are copied only where the copies cancel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ir.graph import Graph, Node, Value, onnx_name
from ir.registry import Pattern, get_op, is_registered
from ir.types import QuantParams
from passes.infra import PassContext, graph_pass
from passes.rewrite import bypass, replace_node
from runtime.kernels.shape import transpose_perm

NOT_AGNOSTIC = frozenset({"QuantizeLinear", "DequantizeLinear", "BatchNormalization", "Dropout"})
"""Element-wise by fusion kind, yet tied to an axis (per-axis scales, channel statistics) or a training input."""
POOLS = frozenset({"MaxPool", "AveragePool", "LpPool"})
GLOBAL_POOLS = frozenset({"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"})
REDUCTIONS = frozenset({"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                        "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"})
WINDOW_ATTRS = ("kernel_shape", "strides", "dilations")


@dataclass
class Plan:
    """How ``node`` runs on tensors laid out ``perm`` -> its layout: its
    inputs and attributes there, and the permutation restoring its output."""

    inputs: list[Value | np.ndarray | None]  # an ndarray: a new constant
    attrs: dict[str, Any]
    out_perm: list[int]


@graph_pass(opt_level=1)
def layout(graph: Graph, ctx: PassContext) -> Graph:
    """Sink Transposes to where they cancel (consecutive ones compose), lift
    those left after a graph input's pre-processing onto the input, and make
    those that move only axes of size 1 views."""
    while _sweep(graph):
        pass
    for transpose in [n for n in graph.nodes if n.op == "Transpose"]:
        if transpose in graph.nodes:
            _hoist_to_input(graph, transpose)
    for transpose in [n for n in graph.nodes if n.op == "Transpose"]:
        _as_view(graph, transpose)
    return graph


# ---------------------------------------------------------------- the sweep

def _sweep(graph: Graph) -> bool:
    """One pass over the nodes in order: compose Transpose pairs, sink
    Transposes through the nodes that can take them. Whether anything changed."""
    changed = False
    for node in list(graph.nodes):
        if node not in graph.nodes:
            continue
        if node.op == "Transpose":
            changed |= _compose(graph, node)
        elif _can_sink(graph, node):
            _sink(graph, node)
            changed = True
    return changed


def _compose(graph: Graph, node: Node) -> bool:
    """Transpose(Transpose(x, p), q) -> Transpose(x, p[q]). The inner
    Transpose stays while others read it."""
    inner = node.inputs[0].producer
    if inner is None or inner.op != "Transpose":
        return False
    node.attrs["perm"] = [perm_of(inner)[axis] for axis in perm_of(node)]
    node.set_input(0, inner.inputs[0])
    _remove_if_unused(graph, inner)
    return True


def _as_view(graph: Graph, node: Node) -> bool:
    """A Transpose that moves only axes of size 1 keeps the data's order:
    gone when the shape stays too, else a Reshape (a view, not a move)."""
    source, shape = node.inputs[0], node.outputs[0].type.shape
    if not _keeps_order(perm_of(node), source.type.shape):
        return False
    if shape == source.type.shape:
        return bypass(graph, node, source)
    if not node.outputs[0].type.is_static or 0 in shape:
        return False
    target = graph.add_constant(np.array(shape, np.int64), f"{node.name}_shape")
    replace_node(graph, node, "Reshape", [source, target], {"allowzero": 0})
    return True


def perm_of(node: Node) -> list[int]:
    """A Transpose's permutation (the default reverses the axes)."""
    return transpose_perm(node.attrs["perm"], node.inputs[0].type.rank)


def _input_perm(node: Node) -> list[int] | None:
    """The permutation of the Transpose feeding ``node``'s first activation input."""
    for index in _layout_inputs(node):
        producer = node.inputs[index].producer
        return perm_of(producer) if producer is not None and producer.op == "Transpose" else None
    return None


def _can_sink(graph: Graph, node: Node) -> bool:
    """Whether the Transposes feeding ``node`` can all move below it and
    disappear above it: every consumer of each takes it too."""
    perm = _input_perm(node)
    if perm is None or _plan(node, perm) is None:
        return False
    for transpose in {node.inputs[i].producer for i in _layout_inputs(node)}:
        if transpose.outputs[0] in graph.outputs:
            return False
        users = [user for user in transpose.outputs[0].users if user.op != "Transpose"]
        if any(user is not node and not _takes(user, perm) for user in users):
            return False
        if len(users) > 1 and not all(_ends_in_transposes(graph, user, perm) for user in users):
            return False  # a copy below each user would stay
    return True


def _takes(node: Node, perm: list[int]) -> bool:
    """Whether ``node`` can take Transposes ``perm`` on all its activation
    inputs: each is one, or is computed from such Transposes by nodes that
    will pass them on (``x - mean(x)``: the mean's Transpose comes later)."""
    if _plan(node, perm, check_inputs=False) is None:
        return False
    seen, stack = set(), [node.inputs[i] for i in _layout_inputs(node)]
    while stack:
        producer = stack.pop().producer
        if producer is None:
            return False
        if producer.op == "Transpose":
            if perm_of(producer) != perm:
                return False
            continue
        if id(producer) in seen:
            continue
        seen.add(id(producer))
        plan = _plan(producer, perm, check_inputs=False)
        if plan is None or plan.out_perm != perm:
            return False
        stack.extend(producer.inputs[i] for i in _layout_inputs(producer))
    return True


def _ends_in_transposes(graph: Graph, node: Node, perm: list[int]) -> bool:
    """Whether a Transpose ``perm`` sunk below ``node`` would vanish on
    every path down: meet a Transpose (and compose), or come out of a node
    as a view (a reduction's axes left in order); never stop at a graph
    output or a node that cannot take it."""
    seen, stack = {id(node)}, [(node, perm)]
    while stack:
        node, perm = stack.pop()
        plan = _plan(node, perm, check_inputs=False)
        if plan is None:
            return False
        value = node.outputs[0]
        unpermuted = [0] * len(plan.out_perm)
        for axis, source in enumerate(plan.out_perm):
            unpermuted[source] = value.type.shape[axis]
        if _keeps_order(plan.out_perm, unpermuted):
            continue
        if value in graph.outputs:
            return False
        for user, index in value.uses:
            if user.op == "Transpose" or id(user) in seen:
                continue
            if index not in _layout_inputs(user):
                return False
            seen.add(id(user))
            stack.append((user, plan.out_perm))
    return True


def _sink(graph: Graph, node: Node) -> None:
    """``node(T(x)) -> T(node'(x))``."""
    perm = _input_perm(node)
    transposes = {node.inputs[i].producer for i in _layout_inputs(node)}
    plan = _plan(node, perm)
    _rebuild(graph, node, plan, plan.out_perm)
    for transpose in transposes:
        _remove_if_unused(graph, transpose)


def _rebuild(graph: Graph, node: Node, plan: Plan, axis_map: list[int]) -> Node:
    """``node`` replaced by its planned form followed by a Transpose (none
    when it would change nothing); its output keeps its name. ``axis_map``
    sends an axis of the old output to the new one (per-axis quantization)."""
    index = graph.nodes.index(node)
    inputs = [graph.add_constant(v, f"{node.name}_{i}") if isinstance(v, np.ndarray) else v
              for i, v in enumerate(plan.inputs)]
    (old,) = node.outputs
    new = graph.add_node(node.op, inputs, plan.attrs, name=_fresh_node(graph, node.name), index=index,
                         output_names=[graph.fresh_name(f"{old.name}_{node.op.lower()}")])
    new.annotations = dict(node.annotations)
    result = new.outputs[0]
    result.quant = _move_quant(old.quant, axis_map)
    if not _moves_nothing(plan.out_perm, result.type.shape):
        after = graph.add_node("Transpose", [result], {"perm": plan.out_perm}, index=index + 1,
                               name=_fresh_node(graph, f"{onnx_name(node.name)}::Transpose"),
                               output_names=[graph.fresh_name(f"{old.name}_t")])
        result = after.outputs[0]
        result.quant = old.quant
    name = old.name
    graph.replace_all_uses(old, result)
    graph.remove_node(node)
    graph.rename_value(result, name)
    new.name = node.name
    return new


# ---------------------------------------------------------------- hoisting

def _hoist_to_input(graph: Graph, transpose: Node) -> None:
    """``T(f(g(input))) -> f'(g'(T(input)))`` for a chain of layout-agnostic
    nodes (Pad or element-wise) with one activation input each, each read
    only by the next."""
    perm, chain, consumer, value = perm_of(transpose), [], (transpose, 0), transpose.inputs[0]
    while value.producer is not None:
        node = value.producer
        hoistable = node.op == "Pad" or _agnostic(node.op)
        if not hoistable or len(_layout_inputs(node)) != 1 or value.uses != [consumer] or value in graph.outputs:
            return
        chain.append(node)
        consumer = (node, _layout_inputs(node)[0])
        value = node.inputs[consumer[1]]
    if not chain or value.is_constant:
        return
    inverse = _inverse(perm)
    plans = [_plan(node, inverse, check_inputs=False) for node in chain]
    if any(plan is None or plan.out_perm != inverse for plan in plans):
        return
    name = transpose.name
    moved = graph.add_node("Transpose", [value], {"perm": perm}, index=graph.nodes.index(chain[-1]),
                           name=_fresh_node(graph, name), output_names=[graph.fresh_name(f"{value.name}_t")])
    moved.outputs[0].quant = _move_quant(value.quant, inverse)
    current = moved.outputs[0]
    for node, plan in zip(reversed(chain), reversed(plans)):
        plan.inputs[_layout_inputs(node)[0]] = current
        plan.out_perm = list(range(len(perm)))
        current = _rebuild(graph, node, plan, inverse).outputs[0]
    bypass(graph, transpose, current)
    moved.name = name


# ---------------------------------------------------------------- per-op rules

def _agnostic(op: str) -> bool:
    return is_registered(op) and op not in NOT_AGNOSTIC and get_op(op).pattern in (Pattern.ELEMWISE,
                                                                                  Pattern.BROADCAST)


def _layout_inputs(node: Node) -> list[int]:
    """The inputs that carry the node's layout (activations): every
    non-constant input of a broadcasting op and of Concat, input 0 of the rest."""
    if node.op == "Concat" or _agnostic(node.op) and get_op(node.op).pattern == Pattern.BROADCAST:
        return [i for i, v in enumerate(node.inputs) if v is not None and not v.is_constant]
    return [0] if node.inputs and node.inputs[0] is not None and not node.inputs[0].is_constant else []


def _plan(node: Node, perm: list[int], check_inputs: bool = True) -> Plan | None:
    """``node`` rewritten for activations laid out ``inverse(perm)`` of its
    own (its inputs being ``Transpose(x, perm)``), or None when it cannot be.
    With ``check_inputs``, every activation input must be such a Transpose."""
    if len(node.outputs) != 1 or not _layout_inputs(node):
        return None
    rank = len(perm)
    inputs: list[Any] = list(node.inputs)
    for index in _layout_inputs(node):
        value = node.inputs[index]
        if value.type.rank != rank:
            return None
        if check_inputs:
            producer = value.producer
            if producer is None or producer.op != "Transpose" or perm_of(producer) != perm:
                return None
            inputs[index] = producer.inputs[0]
    if any(v is not None and v.quant is not None and v.quant.per_channel for v in node.inputs):
        return None
    rule = _RULES.get(node.op, _elementwise if _agnostic(node.op) else None)
    return None if rule is None else rule(node, perm, inputs)


def _inverse(perm: list[int]) -> list[int]:
    inverse = [0] * len(perm)
    for axis, source in enumerate(perm):
        inverse[source] = axis
    return inverse


def _permuted(array: np.ndarray, perm: list[int]) -> np.ndarray:
    """A constant operand broadcast against a tensor transposed by ``perm``,
    for the untransposed tensor: aligned to the rank, then permuted back."""
    aligned = array.reshape((1,) * (len(perm) - array.ndim) + array.shape)
    return np.ascontiguousarray(aligned.transpose(_inverse(perm)))


def _elementwise(node: Node, perm: list[int], inputs: list) -> Plan | None:
    """Broadcasting ops: constants of rank > 0 permuted (scalars stay). Unary
    ops' extra inputs (Clip's bounds) are scalars and stay as they are."""
    layout = _layout_inputs(node)
    broadcast = get_op(node.op).pattern == Pattern.BROADCAST
    for index, value in enumerate(node.inputs):
        if value is None or index in layout:
            continue
        if not value.is_constant or value.type.rank > len(perm):
            return None
        if broadcast and value.type.rank > 0:
            inputs[index] = _permuted(value.const, perm)
        elif not broadcast and value.type.rank > 0 and value.const.size != 1:
            return None
    if node.outputs[0].type.rank != len(perm):
        return None
    return Plan(inputs, dict(node.attrs), perm)


def _pad(node: Node, perm: list[int], inputs: list) -> Plan | None:
    pads = _const(node, 1)
    if pads is None or len(node.inputs) > 3 and node.inputs[3] is not None and not node.inputs[3].is_constant:
        return None
    axes = _const(node, 3)
    if axes is not None:
        inputs[3] = np.array([perm[int(a) % len(perm)] for a in axes], np.int64)
        return Plan(inputs, dict(node.attrs), perm)
    rank, inverse = len(perm), _inverse(perm)
    begins, ends = pads[:rank], pads[rank:]
    inputs[1] = np.array([begins[inverse[j]] for j in range(rank)] + [ends[inverse[j]] for j in range(rank)], np.int64)
    return Plan(inputs, dict(node.attrs), perm)


def _concat(node: Node, perm: list[int], inputs: list) -> Plan | None:
    for index, value in enumerate(node.inputs):
        if value.is_constant:
            inputs[index] = _permuted(value.const, perm) if value.type.rank == len(perm) else None
    if any(v is None for v in inputs):
        return None
    return Plan(inputs, {**node.attrs, "axis": perm[int(node.attrs["axis"]) % len(perm)]}, perm)


def _resize(node: Node, perm: list[int], inputs: list) -> Plan | None:
    """Scales and sizes are per axis (roi per axis, starts then ends); with
    an ``axes`` attribute only the axes move."""
    if any(v is not None and not v.is_constant for v in node.inputs[1:]):
        return None
    if node.attrs.get("axes") is not None:
        axes = [perm[int(a) % len(perm)] for a in node.attrs["axes"]]
        return Plan(inputs, {**node.attrs, "axes": axes}, perm)
    rank, inverse = len(perm), _inverse(perm)
    for index, per_axis in ((1, 2), (2, 1), (3, 1)):
        array = _const(node, index, kind=None)
        if array is None or array.size == 0:
            continue
        if array.size != per_axis * rank:
            return None
        parts = array.reshape(per_axis, rank)
        inputs[index] = np.ascontiguousarray(parts[:, inverse].reshape(-1))
    return Plan(inputs, dict(node.attrs), perm)


def _pool(node: Node, perm: list[int], inputs: list) -> Plan | None:
    """Windows move with their spatial axes; N and C must stay in place."""
    if perm[:2] != [0, 1]:
        return None
    attrs = dict(node.attrs)
    if node.op in POOLS:
        spatial = [axis - 2 for axis in _inverse(perm)[2:]]
        for key in WINDOW_ATTRS:
            if attrs.get(key) is not None:
                attrs[key] = [attrs[key][s] for s in spatial]
        if attrs.get("pads") is not None:
            count = len(spatial)
            attrs["pads"] = [attrs["pads"][s] for s in spatial] + [attrs["pads"][count + s] for s in spatial]
    return Plan(inputs, attrs, perm)


def _reduce(node: Node, perm: list[int], inputs: list) -> Plan | None:
    """Reduced axes remapped; without keepdims the Transpose after acts on the axes left."""
    rank = len(perm)
    if len(node.inputs) > 1 and node.inputs[1] is not None and not node.inputs[1].is_constant:
        return None
    axes = _const(node, 1)
    if axes is None or axes.size == 0:
        if node.attrs.get("noop_with_empty_axes"):
            return None
        axes = np.arange(rank)
    reduced = sorted({int(a) % rank for a in axes})
    if len(inputs) > 1 and inputs[1] is not None:
        inputs[1] = np.array(sorted(perm[a] for a in reduced), np.int64)
    if node.attrs.get("keepdims", 1):
        return Plan(inputs, dict(node.attrs), perm)
    kept = [perm[a] for a in range(rank) if a not in reduced]
    order = sorted(kept)
    return Plan(inputs, dict(node.attrs), [order.index(axis) for axis in kept])


def _const(node: Node, index: int, kind: str | None = "i") -> np.ndarray | None:
    value = node.inputs[index] if index < len(node.inputs) else None
    if value is None or not value.is_constant or kind is not None and value.const.dtype.kind != kind:
        return None
    return value.const.reshape(-1)


_RULES = {"Pad": _pad, "Concat": _concat, "Resize": _resize,
          **{op: _pool for op in POOLS | GLOBAL_POOLS}, **{op: _reduce for op in REDUCTIONS}}


# ---------------------------------------------------------------- helpers

def _move_quant(quant: QuantParams | None, axis_map: list[int]) -> QuantParams | None:
    if quant is None or not quant.per_channel:
        return quant
    return QuantParams(quant.scale, quant.zero, quant.dtype, axis_map[quant.axis])


def _keeps_order(perm: list[int], shape: tuple) -> bool:
    """Whether transposing a tensor of ``shape`` by ``perm`` keeps its data
    in order: only axes of size 1 move."""
    moved = [axis for axis in perm if shape[axis] != 1]
    return moved == sorted(moved)


def _moves_nothing(perm: list[int], shape: tuple) -> bool:
    """Whether the Transpose keeps the data in order and the shape as well."""
    return _keeps_order(perm, shape) and tuple(shape[axis] for axis in perm) == tuple(shape)


def _remove_if_unused(graph: Graph, node: Node) -> None:
    if node in graph.nodes and not node.outputs[0].uses and node.outputs[0] not in graph.outputs:
        graph.remove_node(node)


def _fresh_node(graph: Graph, base: str) -> str:
    """``base``, or ``base#k`` when a node has that name already (the importer's repeats)."""
    names = {n.name for n in graph.nodes}
    if base not in names:
        return base
    count = 1
    while f"{base}#{count}" in names:
        count += 1
    return f"{base}#{count}"
