"""FoldConstants: every node computable at compile time becomes constants,
evaluated by the CPU kernels (one op semantics). This folds shape subgraphs
(Shape -> Gather -> Concat -> Reshape) once shapes are static."""
from __future__ import annotations

from ir.graph import Graph, Node
from ir.registry import infer_types
from passes.fold import fold_node
from passes.infra import PassContext, graph_pass


@graph_pass(opt_level=0)
def fold_constants(graph: Graph, ctx: PassContext) -> Graph:
    """Replace nodes whose inputs are all constants (and Shape/Size of a
    static value) by their results, subgraphs included."""
    fold_all(graph)
    return graph


def fold_all(graph: Graph) -> None:
    for node in list(graph.nodes):
        for body in node.subgraphs():
            fold_all(body)
        refine_types(node)
        fold_node(graph, node)


def refine_types(node: Node) -> None:
    """Re-run the node's type rule: inputs folded to constants upstream may
    now fix dims its outputs had as data-dependent."""
    if all(v.type.is_static for v in node.outputs):
        return
    for value, inferred in zip(node.outputs, infer_types(node, len(node.outputs))):
        if inferred.rank == value.type.rank:
            value.type = value.type.with_shape(a if a is not None else b
                                               for a, b in zip(value.type.shape, inferred.shape))
