"""LRN on the accelerator, as ops it already has.

``LRN(x) = x * (bias + alpha / size * s) ** -beta``, where ``s`` sums
``x**2`` over a window of ``size`` channels around each channel. Each LRN
the affinity pass put on the accelerator becomes

    x*x (a table) -> 1x1 Conv with a banded 0/1 weight matrix (the window sum)
      -> (bias + alpha/size * s) ** -beta (a table) -> Mul with x (ELTWISE)

so calibration, quantization, tiling and the integer reference treat it
like any other layers; an LRN on the CPU keeps its kernel (a dense 1x1
convolution costs the CPU more than the window sum). Runs after
assign_affinity, before fusion; the float reference keeps the LRN, which
the rewrite computes in the same float terms. passes/target.py's LRN rule
says which LRNs qualify.
"""
from __future__ import annotations

import numpy as np

from ir.graph import HELPER_SEPARATOR, Graph, Node
from passes.infra import PassContext, graph_pass
from passes.rewrite import conv_1x1_attrs, replace_node
from runtime.hardware import ACCELERATOR


@graph_pass(opt_level=0)
def lower_lrn(graph: Graph, ctx: PassContext) -> Graph:
    """Rewrite each accelerator LRN; its helper nodes keep its device and
    are named ``<LRN>::<role>`` (their ONNX node is the LRN)."""
    for node in [n for n in graph.nodes if n.op == "LRN" and n.affinity == ACCELERATOR]:
        _lower(graph, node)
    return graph


def window_matrix(channels: int, size: int) -> np.ndarray:
    """The 1x1 Conv weights [C, C, 1, 1] summing, for output channel c,
    input channels c - floor((size-1)/2) .. c + ceil((size-1)/2) (ONNX LRN)."""
    before, after = (size - 1) // 2, size // 2
    offset = np.arange(channels)[None, :] - np.arange(channels)[:, None]
    band = (offset >= -before) & (offset <= after)
    return band.astype(np.float32).reshape(channels, channels, 1, 1)


def _lower(graph: Graph, node: Node) -> None:
    x, a = node.inputs[0], node.attrs
    index = graph.nodes.index(node)

    def add(role: str, op: str, inputs, attrs=None) -> Node:
        nonlocal index
        helper = graph.add_node(op, inputs, attrs or {}, name=f"{node.name}{HELPER_SEPARATOR}{role}", index=index)
        helper.affinity = node.affinity
        helper.annotations.update(node.annotations)
        index += 1
        return helper

    def scalar(value: float, role: str):
        return graph.add_constant(np.array(value, np.float32), f"{node.name}{HELPER_SEPARATOR}{role}")

    square = add("square", "Mul", [x, x])
    weights = graph.add_constant(window_matrix(x.type.shape[1], a["size"]), f"{node.name}{HELPER_SEPARATOR}window")
    window = add("window", "Conv", [square.outputs[0], weights], conv_1x1_attrs())
    scaled = add("scale", "Mul", [window.outputs[0], scalar(a["alpha"] / a["size"], "alpha")])
    shifted = add("shift", "Add", [scaled.outputs[0], scalar(a["bias"], "bias")])
    power = add("power", "Pow", [shifted.outputs[0], scalar(-a["beta"], "beta")])
    product = replace_node(graph, node, "Mul", [x, power.outputs[0]], {})
    product.affinity = node.affinity
    product.annotations.update(node.annotations)
