"""ReduceMean over H and W -> GlobalAveragePool: torchvision-style models
write global pooling as ``x.mean([2, 3])``, which exports as a ReduceMean
over the spatial axes of an N,C,H,W tensor; as a GlobalAveragePool it is a
layer every device has (the accelerator's POOL or its GEMM against ones).
Without keepdims a Reshape to [N, C] follows. The result is the mean of
the same elements (the float sum's order may differ in the last bit)."""
from __future__ import annotations

import numpy as np

from ir.graph import Graph, Node
from passes.infra import PassContext, graph_pass
from passes.rewrite import replace_node

SPATIAL = (2, 3)


@graph_pass(opt_level=1)
def canonicalize_mean(graph: Graph, ctx: PassContext) -> Graph:
    """Rewrite each ReduceMean over exactly the spatial axes of a 4-D tensor."""
    for node in [n for n in graph.nodes if _spatial_mean(n)]:
        x = node.inputs[0]
        if node.attrs["keepdims"]:
            replace_node(graph, node, "GlobalAveragePool", [x], {})
            continue
        pooled = graph.add_node("GlobalAveragePool", [x], {}, name=f"{node.name}::pool",
                                index=graph.nodes.index(node))
        shape = graph.add_constant(np.array(x.type.shape[:2], np.int64), f"{node.name}::shape")
        replace_node(graph, node, "Reshape", [pooled.outputs[0], shape], {"allowzero": 0})
    return graph


def _spatial_mean(node: Node) -> bool:
    """A ReduceMean of a static 4-D float tensor over axes 2 and 3 alone."""
    if node.op != "ReduceMean" or len(node.inputs) < 2 or node.inputs[1] is None or not node.inputs[1].is_constant:
        return False
    x = node.inputs[0].type
    if x.rank != 4 or x.dtype.kind != "f" or None in x.shape[:2]:
        return False
    axes = sorted(int(a) % 4 for a in node.inputs[1].const.reshape(-1))
    return tuple(axes) == SPATIAL
