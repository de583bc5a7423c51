"""RemoveNoOps: nodes that return their input unchanged."""
from __future__ import annotations

import numpy as np

from ir.graph import Graph, Node
from passes.infra import PassContext, graph_pass
from passes.rewrite import bypass, const_input

ALWAYS = frozenset({"Identity", "Dropout"})  # Dropout: inference, the IR has no training mode


@graph_pass(opt_level=1)
def remove_noops(graph: Graph, ctx: PassContext) -> Graph:
    """Remove Identity and Dropout, and Reshape/Transpose/Cast/Pad/Expand that
    change nothing (same shape, identity permutation, same dtype, zero pads)."""
    for node in list(graph.nodes):
        if node.op in ALWAYS or _is_noop(node):
            bypass(graph, node, node.inputs[0])
    return graph


def _is_noop(node: Node) -> bool:
    if len(node.outputs) != 1 or not node.inputs or node.inputs[0] is None:
        return False
    x, y = node.inputs[0].type, node.outputs[0].type
    same = x.is_static and x == y
    if node.op in ("Reshape", "Expand", "Squeeze", "Unsqueeze", "Flatten"):
        return same
    if node.op == "Transpose":
        perm = node.attrs["perm"]
        return perm is not None and list(perm) == list(range(len(perm)))
    if node.op == "Cast":
        return x.dtype == y.dtype
    if node.op == "Pad":
        pads = const_input(node, 1)
        return same and pads is not None and not np.any(pads)
    return False
