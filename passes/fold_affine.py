"""FoldAffine: Mul/Div/Add/Sub by a per-channel constant after a Conv (or an
inference BatchNormalization) become part of its weights and bias (or of the
BatchNorm's scale and shift); a division is a multiplication by the
reciprocal (Paddle writes scales as divisions).

    (conv(x, W) + b) * m + a  =  conv(x, W * m) + (b * m + a)

Only constants that vary along the channel axis alone qualify: then the
rewrite is exact algebra, per output channel.
"""
from __future__ import annotations

import numpy as np

from ir.graph import Graph, Node, Value
from passes.fold_batchnorm import set_weights
from passes.infra import PassContext, graph_pass
from passes.rewrite import bypass, const_input, single_consumer

SCALE_OR_SHIFT = ("Mul", "Div", "Add", "Sub")


@graph_pass(opt_level=1)
def fold_affine(graph: Graph, ctx: PassContext) -> Graph:
    """Fold per-channel constant Mul/Div/Add/Sub into the Conv or BatchNorm before them."""
    for node in list(graph.nodes):
        if node.op not in SCALE_OR_SHIFT or node not in graph.nodes:
            continue
        operand, constant = _split(node)
        if operand is None or operand.producer is None or single_consumer(graph, operand) is not node:
            continue
        producer = operand.producer
        vector = _per_channel(constant, operand)
        if vector is None or producer.op not in ("Conv", "BatchNormalization") or (node.op == "Div" and
                                                                                 not vector.all()):
            continue
        scale, shift = _as_affine(node.op, vector)
        if _fold(graph, producer, scale, shift):
            bypass(graph, node, operand)
    return graph


def _split(node: Node) -> tuple[Value | None, np.ndarray | None]:
    """(the non-constant operand, the constant) of a binary op; Sub and Div
    only as x - c and x / c (c - x and c / x are not a scale and shift of x)."""
    a, b = node.inputs
    if b.is_constant and not a.is_constant:
        return a, b.const
    if node.op not in ("Sub", "Div") and a.is_constant and not b.is_constant:
        return b, a.const
    return None, None


def _per_channel(constant: np.ndarray, operand: Value) -> np.ndarray | None:
    """The constant as one value per channel (axis 1), if it varies along
    that axis only and broadcasting it does not change the operand's shape."""
    shape = operand.type.shape
    if len(shape) < 2 or shape[1] is None or constant.ndim > len(shape) or constant.dtype != operand.type.dtype:
        return None
    aligned = (1,) * (len(shape) - constant.ndim) + constant.shape
    if any(d != 1 for axis, d in enumerate(aligned) if axis != 1) or aligned[1] not in (1, shape[1]):
        return None
    return np.broadcast_to(constant.reshape(-1), (shape[1],)).astype(np.float64)


def _as_affine(op: str, vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if op in ("Mul", "Div"):
        return (vector if op == "Mul" else 1.0 / vector), np.zeros_like(vector)
    return np.ones_like(vector), vector if op == "Add" else -vector


def _fold(graph: Graph, producer: Node, scale: np.ndarray, shift: np.ndarray) -> bool:
    if producer.op == "Conv":
        return _fold_conv(graph, producer, scale, shift)
    return _fold_batchnorm(graph, producer, scale, shift)


def _fold_conv(graph: Graph, conv: Node, scale: np.ndarray, shift: np.ndarray) -> bool:
    weight = const_input(conv, 1)
    bias_given = len(conv.inputs) > 2 and conv.inputs[2] is not None
    bias = const_input(conv, 2) if bias_given else np.zeros(weight.shape[0] if weight is not None else 0)
    if weight is None or bias is None:
        return False
    new_weight = weight * scale.reshape(-1, *(1,) * (weight.ndim - 1))
    new_bias = bias.astype(np.float64) * scale + shift
    set_weights(graph, conv, new_weight.astype(weight.dtype), new_bias.astype(weight.dtype))
    return True


def _fold_batchnorm(graph: Graph, bn: Node, scale: np.ndarray, shift: np.ndarray) -> bool:
    """BN's output is gamma' * x_hat + beta': scale both, shift beta."""
    gamma, beta = const_input(bn, 1), const_input(bn, 2)
    if gamma is None or beta is None:
        return False
    bn.set_input(1, graph.add_constant((gamma * scale).astype(gamma.dtype), f"{bn.name}_scale"))
    bn.set_input(2, graph.add_constant((beta * scale + shift).astype(beta.dtype), f"{bn.name}_shift"))
    return True
