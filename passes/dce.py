"""Dead-code elimination."""
from __future__ import annotations

from ir.graph import Graph
from passes.infra import PassContext, graph_pass


@graph_pass(opt_level=0)
def eliminate_dead_code(graph: Graph, ctx: PassContext) -> Graph:
    """Remove nodes none of whose outputs is used or returned, and unused
    constants, in subgraphs too (a subgraph keeps its declared inputs)."""
    remove_dead(graph)
    return graph


def remove_dead(graph: Graph) -> None:
    outputs = set(map(id, graph.outputs))
    for node in reversed(list(graph.nodes)):
        if all(not v.uses and id(v) not in outputs for v in node.outputs):
            graph.remove_node(node)
        else:
            for body in node.subgraphs():
                remove_dead(body)
    graph.remove_unused_values()
