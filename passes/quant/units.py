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

ANCHORS = frozenset({"Conv", "Gemm"})
CLAMP_ACTIVATIONS = frozenset({"Relu", "Clip"})
"""Activations a macro op folds into its final clamp."""
LUT_OPS = frozenset({"Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Elu",
                     "Softplus", "Neg", "Abs", "Exp", "Erf", "Gelu"})
"""Unary ops a 256-entry lookup table computes on 8-bit data."""
LAYOUT_OPS = frozenset({"MaxPool", "GlobalMaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze",
                        "Identity", "Resize", "Slice", "Pad", "DepthToSpace", "SpaceToDepth"})
"""Ops that move codes unchanged (their output keeps the input's parameters)."""
AVERAGE_POOLS = frozenset({"AveragePool", "GlobalAveragePool"})


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
    for node in body.nodes:
        if id(node) in taken:
            continue
        unit = _grow(body, node, taken)
        taken.update(id(n) for n in unit.nodes)
        units.append(unit)
    return units


def _grow(body: Graph, node: Node, taken: set[int]) -> Unit:
    def absorb(nodes: list[Node], accepts) -> bool:
        return _absorb(body, nodes, lambda b, n: id(n) not in taken and accepts(b, n))

    if node.op in ANCHORS:
        nodes = [node]
        absorb(nodes, _is_bias_add)
        absorb(nodes, _is_residual_add)
        absorb(nodes, _is_activation(allow_leaky=len(nodes) == 1 or not _is_residual_add(body, nodes[-1])))
        return Unit("conv", tuple(nodes))
    if is_channel_affine(node):
        nodes = [node]
        while absorb(nodes, lambda b, n: is_channel_affine(n)):
            pass
        absorb(nodes, _is_activation(allow_leaky=False))
        return Unit("affine", tuple(nodes))
    if node.op in ("Add", "Sum") and _tensor_operands(node) == 2:
        nodes = [node]
        absorb(nodes, _is_activation(allow_leaky=False))
        return Unit("add", tuple(nodes))
    if node.op == "Mul" and _tensor_operands(node) == 2:
        return Unit("mul", (node,))
    return Unit(_single_kind(node), (node,))


def _single_kind(node: Node) -> str:
    if node.op in LUT_OPS:
        return "lut"
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


def _is_activation(allow_leaky: bool):
    def accepts(body: Graph, node: Node) -> bool:
        if node.op == "LeakyRelu":
            return allow_leaky
        if node.op == "Clip":
            return all(v is None or v.is_constant for v in node.inputs[1:])
        return node.op in CLAMP_ACTIVATIONS
    return accepts


def is_channel_affine(node: Node) -> bool:
    """Whether ``node`` multiplies, adds or subtracts one constant per channel."""
    return node.op in ("Mul", "Add", "Sub") and channel_constant(node) is not None


def channel_constant(node: Node) -> np.ndarray | None:
    """The per-channel constant of a binary op x (op) c on NCHW-like data,
    as one value per channel; None when the op is not that."""
    if len(node.inputs) != 2:
        return None
    a, b = node.inputs
    x, c = (a, b) if b.is_constant and not a.is_constant else (b, a) if node.op != "Sub" else (None, None)
    if x is None or c is None or not c.is_constant or x.type.rank < 2 or x.type.shape[1] is None:
        return None
    channels, rank = x.type.shape[1], x.type.rank
    aligned = (1,) * (rank - c.const.ndim) + c.const.shape
    if len(aligned) != rank or any(d != 1 for i, d in enumerate(aligned) if i != 1) or aligned[1] not in (1, channels):
        return None
    return np.broadcast_to(c.const.reshape(-1), (channels,))


def _tensor_operands(node: Node) -> int:
    return sum(1 for v in node.inputs if v is not None and not v.is_constant)


def _same_shapes(node: Node) -> bool:
    shapes = {v.type.shape for v in node.inputs}
    return len(shapes) == 1


def build_units(body: Graph) -> list[Node]:
    """Open up ``body``'s Fused groups and regroup its nodes into units; a
    unit of several nodes becomes a Fused node. Returns the unit nodes."""
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
    return result
