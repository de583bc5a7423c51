"""Sum -> Add: ONNX's n-ary Sum (model-zoo ResNets add their residuals with
it) becomes a left-to-right chain of binary Adds, the one form every later
pass, the accelerator's residual add and its element-wise unit know. A
one-input Sum becomes an Identity (remove_noops then drops it). Same
broadcasting, same float order of additions as Sum's reference."""
from __future__ import annotations

from ir.graph import Graph
from passes.infra import PassContext, graph_pass
from passes.rewrite import replace_node


@graph_pass(opt_level=1)
def canonicalize_sum(graph: Graph, ctx: PassContext) -> Graph:
    """Rewrite every Sum as Adds (or an Identity)."""
    for node in [n for n in graph.nodes if n.op == "Sum"]:
        inputs = list(node.inputs)
        if len(inputs) == 1:
            replace_node(graph, node, "Identity", inputs, {})
            continue
        total = inputs[0]
        for index, value in enumerate(inputs[1:-1], start=1):
            add = graph.add_node("Add", [total, value], {}, name=f"{node.name}::add{index}",
                                 index=graph.nodes.index(node))
            total = add.outputs[0]
        replace_node(graph, node, "Add", [total, inputs[-1]], {})
    return graph
