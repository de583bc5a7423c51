"""Device units: how an accelerator segment's nodes map onto the macro ops
the accelerator computes in integers (docs/quantization.md).

FuseOps groups nodes for the CPU and for fewer memory passes; the device's
macro ops are narrower (a Conv takes a bias, one residual add and a simple
activation, not an arbitrary element-wise tail). So an accelerator segment's
Fused groups are opened up and its nodes matched again into units, each one
macro op; the outputs of units are the tensors stored quantized.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ir.graph import Graph, Node, Value, carry_quant
from ir.registry import Pattern
from passes.fuse_ops import make_fused
from passes.pointwise import unary_sources

ANCHORS = frozenset({"Conv", "ConvTranspose", "Gemm"})
CLAMP_ACTIVATIONS = frozenset({"Relu", "Clip"})
"""Activations a macro op folds into its final clamp."""
NEGATIVE_SLOPES = frozenset({"LeakyRelu", "PRelu"})
"""Activations a QConv folds into its multiplier for negative accumulators."""
LAYOUT_OPS = frozenset({"MaxPool", "GlobalMaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze",
                        "Identity", "Resize", "Slice", "Pad", "DepthToSpace", "SpaceToDepth"})
"""Ops that move codes unchanged (their output keeps the input's parameters)."""
AVERAGE_POOLS = frozenset({"AveragePool", "GlobalAveragePool"})
TWO_GRIDS = {"Add": "add", "Sum": "add", "Sub": "sub", "Max": "max", "Min": "min"}
"""Ops of two tensors that rescale each to the output's grid, by unit kind."""


@dataclass(frozen=True)
class Unit:
    """One macro op: its kind and its nodes (in order); ``output`` is the
    only value stored."""

    kind: str
    nodes: tuple[Node, ...]

    @property
    def output(self) -> Value:
        return self.nodes[-1].outputs[0]


def flatten_fused(body: Graph) -> None:
    """Replace every Fused node of ``body`` by its own nodes (in place)."""
    for node in list(body.nodes):
        if node.op != "Fused":
            continue
        inner: Graph = node.attrs["body"]
        mapping = {id(f): a for f, a in zip(inner.inputs, node.inputs)}
        index = body.nodes.index(node)
        for member in inner.nodes:
            inputs = [None if v is None else _outer(body, mapping, v) for v in member.inputs]
            copy = body.add_node(member.op, inputs, dict(member.attrs), name=member.name, index=index,
                                 output_names=[f"{v.name}__unfused" for v in member.outputs],
                                 output_types=[v.type for v in member.outputs])
            copy.affinity, copy.annotations = node.affinity, dict(member.annotations)
            carry_quant(member.outputs, copy.outputs)
            mapping.update({id(old): new for old, new in zip(member.outputs, copy.outputs)})
            index += 1
        _rebind_outputs(body, node, inner, mapping)


def _outer(body: Graph, mapping: dict[int, Value], value: Value) -> Value:
    if id(value) not in mapping and value.is_constant:
        mapping[id(value)] = body.add_constant(value.const, value.name)
        mapping[id(value)].quant = value.quant  # a given weight grid travels with its weights
    return mapping[id(value)]


def _rebind_outputs(body: Graph, node: Node, inner: Graph, mapping: dict[int, Value]) -> None:
    """The unfused values take the Fused node's output names and users."""
    olds = list(node.outputs)
    news = [mapping[id(v)] for v in inner.outputs]
    for old, new in zip(olds, news):
        body.replace_all_uses(old, new)
    body.remove_node(node)
    for value in list(mapping.values()):
        if value.name.endswith("__unfused") and value.producer is not None:
            body.rename_value(value, value.name[:-len("__unfused")])


def match_units(body: Graph) -> list[Unit]:
    """Cover the body's nodes with units, in order; the ones of several
    nodes become Fused nodes (pattern and anchor say which macro op)."""
    units, taken = [], set()
    sources = unary_sources(body)
    for node in body.nodes:
        if id(node) in taken:
            continue
        unit = _grow(body, node, taken, sources)
        taken.update(id(n) for n in unit.nodes)
        units.append(unit)
    return units


def _grow(body: Graph, node: Node, taken: set[int], sources: dict[Value, Value]) -> Unit:
    def absorb(nodes: list[Node], accepts) -> bool:
        return _absorb(body, nodes, lambda b, n: id(n) not in taken and accepts(b, n))

    if node.op in ANCHORS:
        nodes = [node]
        absorb(nodes, _is_bias_add)
        absorb(nodes, _is_residual_add)
        absorb(nodes, _is_activation(allow_negative=len(nodes) == 1 or not _is_residual_add(body, nodes[-1])))
        return Unit("conv", tuple(nodes))
    if node.op == "MatMul" and _tensor_operands(node) == 2:  # the product of two activations, and its scaling
        nodes = [node]
        absorb(nodes, lambda b, n: positive_scaling(n) is not None)
        return Unit("matmul", tuple(nodes))
    if node.op == "Softmax":
        return Unit("softmax", (node,))
    function = _function_unit(body, node, taken, sources)
    if function is not None:
        return function
    if _is_channel_prelu(node):  # an identity scale, the slopes on the negative side
        return Unit("affine", (node,))
    if is_channel_affine(node):
        nodes = [node]
        while absorb(nodes, lambda b, n: is_channel_affine(n)):
            pass
        absorb(nodes, _is_activation(allow_negative=True))
        return Unit("affine", tuple(nodes))
    if node.op in TWO_GRIDS and _two_operands(node):
        nodes = [node]
        absorb(nodes, _is_activation(allow_negative=False))
        return Unit(TWO_GRIDS[node.op], tuple(nodes))
    if node.op == "Mul" and _two_operands(node):
        return Unit("mul", (node,))
    return Unit(_single_kind(node), (node,))


def _function_unit(body: Graph, node: Node, taken: set[int], sources: dict[Value, Value]) -> Unit | None:
    """The "lut" unit computing a unary function that ``node`` is part of:
    the pointwise nodes, not taken yet, that one value escaping the group
    needs, reading one tensor from outside the group; else ``node`` alone
    when it reads one tensor; else None."""
    root = sources.get(node.outputs[0])
    if root is None:
        return None
    group = [n for n in body.nodes if id(n) not in taken and sources.get(n.outputs[0]) is root]
    inside = {id(n) for n in group}
    for value in (n.outputs[0] for n in group):
        if value in body.outputs or any(id(user) not in inside for user, _ in value.uses):
            members = _ancestors(group, value)
            if node in members:
                return Unit("lut", tuple(members)) if _one_function(body, members) else _alone(node)
    return _alone(node)


def _ancestors(group: list[Node], value: Value) -> list[Node]:
    """The nodes of ``group`` that ``value`` depends on (itself included), in order."""
    needed, members = {id(value.producer)}, []
    for member in reversed(group):
        if id(member) in needed:
            members.append(member)
            needed.update(id(v.producer) for v in member.inputs if v is not None and v.producer is not None)
    return members[::-1]


def _one_function(body: Graph, members: list[Node]) -> bool:
    """Whether ``members`` read one outside tensor and only their last
    node's output leaves them."""
    inside = {id(n) for n in members}
    outer = {v.name for n in members for v in n.inputs
             if v is not None and not v.is_constant and (v.producer is None or id(v.producer) not in inside)}
    private = all(v not in body.outputs and all(id(user) in inside for user, _ in v.uses)
                  for n in members[:-1] for v in n.outputs)
    return len(outer) == 1 and private


def _alone(node: Node) -> Unit | None:
    """A pointwise node by itself is a table of its one tensor operand."""
    return Unit("lut", (node,)) if _tensor_operands(node) == 1 else None


def _single_kind(node: Node) -> str:
    if node.op in AVERAGE_POOLS:
        return "avgpool"
    if node.op == "Concat":
        return "concat"
    if node.op in LAYOUT_OPS:
        return "layout"
    raise ValueError(f"{node.op} node {node.name!r} has no accelerator macro op")


def _absorb(body: Graph, nodes: list[Node], accepts) -> bool:
    """Append the one consumer of the unit's current output if ``accepts``
    it and nothing else reads that output."""
    value = nodes[-1].outputs[0]
    if value in body.outputs or len(value.uses) != 1:
        return False
    user = value.uses[0][0]
    if user.affinity != nodes[0].affinity or not accepts(body, user):
        return False
    nodes.append(user)
    return True


def _is_bias_add(body: Graph, node: Node) -> bool:
    return node.op == "Add" and channel_constant(node) is not None


def _is_residual_add(body: Graph, node: Node) -> bool:
    return node.op in ("Add", "Sum") and _tensor_operands(node) == 2 and _same_shapes(node)


def _is_activation(allow_negative: bool):
    """A clamp (Relu, Clip by constants) or, where ``allow_negative``, a
    negative-side slope (LeakyRelu, a PRelu of non-negative constant slopes)."""
    def accepts(body: Graph, node: Node) -> bool:
        if node.op == "LeakyRelu":
            return allow_negative
        if node.op == "PRelu":
            return allow_negative and prelu_slopes(node) is not None
        if node.op == "Clip":
            return all(v is None or v.is_constant for v in node.inputs[1:])
        return node.op in CLAMP_ACTIVATIONS
    return accepts


def positive_scaling(node: Node) -> float | None:
    """The factor of a Mul or Div of a tensor by a positive scalar constant
    (attention's ``* key_dim ** -0.5``), or None."""
    if node.op not in ("Mul", "Div") or _tensor_operands(node) != 1:
        return None
    const = next(v for v in node.inputs if v.is_constant)
    if const.const.size != 1 or (node.op == "Div" and not node.inputs[1].is_constant):
        return None
    factor = float(np.asarray(const.const, np.float64).reshape(-1)[0])
    if not factor > 0 or not np.isfinite(factor):
        return None
    return factor if node.op == "Mul" else 1.0 / factor


def clip_limits(node: Node) -> tuple[float | None, float | None]:
    """A Clip's (low, high) bounds, None where it has none."""
    bounds = [v for v in node.inputs[1:3]] + [None] * (3 - len(node.inputs))
    return tuple(None if b is None else float(np.asarray(b.const).reshape(-1)[0]) for b in bounds[:2])


def prelu_slopes(node: Node) -> np.ndarray | None:
    """A PRelu's slopes, one per channel (or one in all), when they are
    constant, non-negative and vary along the channel axis alone."""
    slope = node.inputs[1]
    if not slope.is_constant or (slope.const < 0).any():
        return None
    vector = _channel_vector_of(node.inputs[0], slope.const)
    return None if vector is None else vector.astype(np.float64)


def _is_channel_prelu(node: Node) -> bool:
    return node.op == "PRelu" and prelu_slopes(node) is not None


def is_channel_affine(node: Node) -> bool:
    """Whether ``node`` multiplies, divides, adds or subtracts one constant
    per channel of an N,C,H,W map (a depthwise 1x1 CONV; on other ranks
    Mul, Add and Sub by it are ELTWISE's)."""
    return (node.op in ("Mul", "Div", "Add", "Sub") and node.outputs[0].type.rank == 4
            and channel_constant(node) is not None)


def channel_constant(node: Node) -> np.ndarray | None:
    """The per-channel constant of a binary op x (op) c on NCHW-like data,
    as one value per channel; None when the op is not that (Sub and Div
    only with the constant second)."""
    if len(node.inputs) != 2:
        return None
    a, b = node.inputs
    x, c = (a, b) if b.is_constant and not a.is_constant else (b, a) if node.op not in ("Sub", "Div") else (None, None)
    if x is None or c is None or not c.is_constant:
        return None
    return _channel_vector_of(x, c.const)


def _channel_vector_of(x: Value, const: np.ndarray) -> np.ndarray | None:
    """``const`` as one value per channel of ``x`` (NCHW-like, rank >= 2)
    when it broadcasts to x along the channel axis alone."""
    if x.type.rank < 2 or x.type.shape[1] is None:
        return None
    channels, rank = x.type.shape[1], x.type.rank
    aligned = (1,) * (rank - const.ndim) + const.shape
    if len(aligned) != rank or any(d != 1 for i, d in enumerate(aligned) if i != 1) or aligned[1] not in (1, channels):
        return None
    return np.broadcast_to(const.reshape(-1), (channels,))


def _two_operands(node: Node) -> bool:
    """Two operands, at least one a tensor (the other may be a constant,
    ELTWISE's operand from DRAM)."""
    return len([v for v in node.inputs if v is not None]) == 2 and _tensor_operands(node) >= 1


def _tensor_operands(node: Node) -> int:
    return sum(1 for v in node.inputs if v is not None and not v.is_constant)


def _same_shapes(node: Node) -> bool:
    shapes = {v.type.shape for v in node.inputs}
    return len(shapes) == 1


def build_units(body: Graph) -> list[Node]:
    """Open up ``body``'s Fused groups and regroup its nodes into units; a
    unit of several nodes becomes a Fused node. A "lut" unit that alone
    reads a convolution's output becomes that convolution's table
    (``annotations["table_of"]`` names the convolution unit). Returns the
    unit nodes."""
    flatten_fused(body)
    result = []
    for unit in match_units(body):
        if len(unit.nodes) == 1:
            unit.nodes[0].annotations["unit"] = unit.kind
            result.append(unit.nodes[0])
        else:
            fused = make_fused(body, list(unit.nodes))
            fused.attrs["pattern"] = int(Pattern.OUT_ELEMWISE_FUSABLE if unit.kind == "conv" else Pattern.BROADCAST)
            fused.annotations["unit"] = unit.kind
            result.append(fused)
    body.sort()
    _mark_tables(body, result)
    return result


def _mark_tables(body: Graph, units: list[Node]) -> None:
    for unit in units:
        if unit.annotations["unit"] != "lut":
            continue
        source = next(v for v in unit.inputs if v is not None and not v.is_constant)
        producer = source.producer
        if (producer is not None and producer.annotations.get("unit") == "conv" and source not in body.outputs
                and all(user is unit for user, _ in source.uses)):
            unit.annotations["table_of"] = producer.name
