"""ReduceMean -> the layers every device has. torchvision-style models
write global pooling as ``x.mean([2, 3])``, a ReduceMean over the spatial
axes of an N,C,H,W tensor: a GlobalAveragePool (the accelerator's POOL or
its GEMM against ones), with a Reshape to [N, C] without keepdims. A mean
over other trailing axes (a LayerNorm's over the channels of an NHWC map,
``axes=[-1]``) is the same pool of a view: Reshape to [N, rows, 1, cols],
GlobalAveragePool, Reshape to the output. A mean over the channels of an
N,C,H,W map (a LayerNorm's over axis 1, as tf2onnx's transpose optimizer
and ConvNeXt write it) is a 1x1 Conv to one channel with weights 1/C. Each
is the mean of the same elements (the float sum's order may differ in the
last bits)."""
from __future__ import annotations

import math

import numpy as np

from ir.graph import Graph, Node, Value
from passes.infra import PassContext, graph_pass
from passes.rewrite import conv_1x1_attrs, replace_node

SPATIAL = (2, 3)


@graph_pass(opt_level=1)
def canonicalize_mean(graph: Graph, ctx: PassContext) -> Graph:
    """Rewrite each ReduceMean over the spatial axes of a 4-D tensor, over
    trailing axes of any tensor (not the batch), or over the channels of a
    4-D tensor."""
    for node in list(graph.nodes):
        axes = _mean_axes(node)
        if axes is None:
            continue
        x = node.inputs[0]
        if axes == SPATIAL and x.type.rank == 4:
            _global_pool(graph, node, x)
        elif axes == tuple(range(x.type.rank - len(axes), x.type.rank)):
            _trailing_mean(graph, node, x, len(axes))
        elif axes == (1,) and x.type.rank == 4:
            _channel_mean(graph, node, x)
    return graph


def _global_pool(graph: Graph, node: Node, x: Value) -> None:
    if node.attrs["keepdims"]:
        replace_node(graph, node, "GlobalAveragePool", [x], {})
        return
    pooled = graph.add_node("GlobalAveragePool", [x], {}, name=f"{node.name}::pool", index=graph.nodes.index(node))
    _reshape_into(graph, node, pooled.outputs[0])


def _trailing_mean(graph: Graph, node: Node, x: Value, count: int) -> None:
    """The pool of the view [N, rows, 1, cols] whose plane is the reduced axes."""
    shape = x.type.shape
    rows, cols = math.prod(shape[1:len(shape) - count]), math.prod(shape[len(shape) - count:])
    view = _reshape(graph, node, x, [shape[0], rows, 1, cols], "view")
    pooled = graph.add_node("GlobalAveragePool", [view], {}, name=f"{node.name}::pool", index=graph.nodes.index(node))
    _reshape_into(graph, node, pooled.outputs[0])


def _channel_mean(graph: Graph, node: Node, x: Value) -> None:
    """A 1x1 Conv of the C channels to one, each weight 1/C."""
    channels = x.type.shape[1]
    weight = graph.add_constant(np.full((1, channels, 1, 1), 1.0 / channels, np.float32), f"{node.name}::weights")
    attrs = conv_1x1_attrs()
    if node.attrs["keepdims"]:
        replace_node(graph, node, "Conv", [x, weight], attrs)
        return
    summed = graph.add_node("Conv", [x, weight], attrs, name=f"{node.name}::conv", index=graph.nodes.index(node))
    _reshape_into(graph, node, summed.outputs[0])


def _reshape(graph: Graph, node: Node, x: Value, shape: list[int], what: str) -> Value:
    target = graph.add_constant(np.array(shape, np.int64), f"{node.name}::{what}_shape")
    return graph.add_node("Reshape", [x, target], {"allowzero": 0}, name=f"{node.name}::{what}",
                          index=graph.nodes.index(node)).outputs[0]


def _reshape_into(graph: Graph, node: Node, value: Value) -> None:
    """``node`` becomes a Reshape of ``value`` to its output's shape."""
    shape = graph.add_constant(np.array(node.outputs[0].type.shape, np.int64), f"{node.name}::shape")
    replace_node(graph, node, "Reshape", [value, shape], {"allowzero": 0})


def _mean_axes(node: Node) -> tuple[int, ...] | None:
    """The sorted axes of a ReduceMean of a static float tensor over
    constant axes that leave the batch axis, else None."""
    if node.op != "ReduceMean" or len(node.inputs) < 2 or node.inputs[1] is None or not node.inputs[1].is_constant:
        return None
    x = node.inputs[0].type
    if x.rank < 2 or x.dtype.kind != "f" or not x.is_static:
        return None
    axes = tuple(sorted({int(a) % x.rank for a in node.inputs[1].const.reshape(-1)}))
    return axes if axes and 0 not in axes else None
