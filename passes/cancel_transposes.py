"""CancelTransposes: consecutive Transposes compose into one, and a
composition that is the identity disappears."""
from __future__ import annotations

from ir.graph import Graph, Node
from passes.infra import PassContext, graph_pass
from passes.rewrite import bypass


@graph_pass(opt_level=1)
def cancel_transposes(graph: Graph, ctx: PassContext) -> Graph:
    """Transpose(Transpose(x, p), q) -> Transpose(x, p[q]); the identity
    permutation is removed. The inner Transpose stays while others use it."""
    for node in list(graph.nodes):
        if node.op != "Transpose" or node not in graph.nodes:
            continue
        inner = node.inputs[0].producer
        if inner is None or inner.op != "Transpose":
            continue
        perm = [_perm(inner)[axis] for axis in _perm(node)]
        node.set_input(0, inner.inputs[0])
        node.attrs["perm"] = perm
        if not inner.outputs[0].uses and inner.outputs[0] not in graph.outputs:
            graph.remove_node(inner)
        if perm == list(range(len(perm))):
            bypass(graph, node, node.inputs[0])
    return graph


def _perm(node: Node) -> list[int]:
    perm = node.attrs["perm"]
    rank = node.inputs[0].type.rank
    return list(range(rank))[::-1] if perm is None else [int(p) % rank for p in perm]
