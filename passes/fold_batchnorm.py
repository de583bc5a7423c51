"""FoldBatchNorm: an inference BatchNormalization after a Conv, ConvTranspose
or Gemm with constant weights becomes part of that op's weights and bias.

    y = (conv(x, W) + b - mean) * gamma / sqrt(var + eps) + beta
      = conv(x, W * s) + (b - mean) * s + beta,     s = gamma / sqrt(var + eps)

The scale is per output channel, so the fold is exact up to float rounding.
"""
from __future__ import annotations

import numpy as np

from ir.graph import Graph, Node
from passes.infra import PassContext, graph_pass
from passes.rewrite import bypass, const_input, single_consumer

PRODUCERS = ("Conv", "ConvTranspose", "Gemm")


@graph_pass(opt_level=1)
def fold_batchnorm(graph: Graph, ctx: PassContext) -> Graph:
    """Fold each BatchNormalization into the Conv/ConvTranspose/Gemm feeding
    it, when that op's weights are constants and the BN is its only user."""
    for bn in list(graph.nodes):
        if bn.op != "BatchNormalization" or bn not in graph.nodes:
            continue
        producer = bn.inputs[0].producer
        if producer is None or producer.op not in PRODUCERS or single_consumer(graph, bn.inputs[0]) is not bn:
            continue
        affine = bn_affine(bn)
        if affine is not None and _fold_into(graph, producer, *affine):
            bypass(graph, bn, producer.outputs[0])
    return graph


def bn_affine(bn: Node) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, shift) per channel of an inference BatchNormalization with
    constant parameters, computed in float64."""
    params = [const_input(bn, i) for i in range(1, 5)]
    if any(p is None for p in params):
        return None
    gamma, beta, mean, var = (np.asarray(p, np.float64).reshape(-1) for p in params)
    scale = gamma / np.sqrt(var + bn.attrs["epsilon"])
    return scale, beta - mean * scale


def _fold_into(graph: Graph, node: Node, scale: np.ndarray, shift: np.ndarray) -> bool:
    weight = const_input(node, 1)
    if weight is None:
        return False
    if node.op == "Gemm":
        return _fold_gemm(graph, node, weight, scale, shift)
    channels = node.outputs[0].type.shape[1]
    if scale.size != channels:
        return False
    new_weight = weight * _weight_scale(node, weight, scale)
    bias = const_input(node, 2) if len(node.inputs) > 2 else None
    new_bias = (np.zeros(channels) if bias is None else bias.astype(np.float64)) * scale + shift
    set_weights(graph, node, new_weight.astype(weight.dtype), new_bias.astype(weight.dtype))
    return True


def _weight_scale(node: Node, weight: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``scale`` laid out along the weight's output-channel axis: axis 0 for
    Conv; for ConvTranspose ([C_in, C_out/group, ...]) channel g*C_out/group + j."""
    extra = (1,) * (weight.ndim - 2)
    if node.op == "Conv":
        return scale.reshape(-1, 1, *extra)
    group = node.attrs["group"]
    per_group = weight.shape[1]
    rows_per_group = weight.shape[0] // group
    channel = (np.arange(weight.shape[0]) // rows_per_group)[:, None] * per_group + np.arange(per_group)[None, :]
    return scale[channel].reshape(*channel.shape, *extra)


def _fold_gemm(graph: Graph, node: Node, weight: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> bool:
    """y = s * (alpha * A B + beta * C) + shift, per column: scale B's
    columns and C, and make the shift part of C."""
    out = node.outputs[0].type.shape
    if len(out) != 2 or scale.size != out[1]:
        return False
    b = weight.astype(np.float64) * node.attrs["alpha"]
    b = b * (scale[:, None] if node.attrs["transB"] else scale[None, :])
    c = const_input(node, 2) if len(node.inputs) > 2 else None
    if len(node.inputs) > 2 and node.inputs[2] is not None and c is None:
        return False
    c = np.zeros(out[1]) if c is None else c.astype(np.float64) * node.attrs["beta"]
    c = c * scale + shift
    node.attrs.update(alpha=1.0, beta=1.0)
    set_weights(graph, node, b.astype(weight.dtype), c.astype(weight.dtype))
    return True


def set_weights(graph: Graph, node: Node, weight: np.ndarray, bias: np.ndarray) -> None:
    """Rebind a Conv/ConvTranspose/Gemm's weight (input 1) and bias (input 2)
    to new constants named after the node."""
    node.set_input(1, graph.add_constant(weight, f"{node.name}_weight"))
    bias_value = graph.add_constant(bias, f"{node.name}_bias")
    if len(node.inputs) > 2:
        node.set_input(2, bias_value)
    else:
        node.inputs.append(None)
        node.set_input(2, bias_value)
