"""SimplifyInference: an inference BatchNormalization that could not be
folded into a preceding op becomes a per-channel Mul and Add (TVM's pass of
the same name), which element-wise fusion and the accelerator's element-wise
unit both handle:

    y = x * s + (beta - mean * s),    s = gamma / sqrt(var + eps)
"""
from __future__ import annotations

import numpy as np

from ir.graph import Graph, Node
from passes.fold_batchnorm import bn_affine
from passes.infra import PassContext, graph_pass
from passes.rewrite import replace_node


@graph_pass(opt_level=1)
def simplify_inference(graph: Graph, ctx: PassContext) -> Graph:
    """Rewrite each BatchNormalization with constant parameters as Mul + Add."""
    for node in list(graph.nodes):
        if node.op == "BatchNormalization" and node.inputs[0].type.rank >= 2:
            affine = bn_affine(node)
            if affine is not None:
                _decompose(graph, node, *affine)
    return graph


def _decompose(graph: Graph, bn: Node, scale: np.ndarray, shift: np.ndarray) -> None:
    x = bn.inputs[0]
    dtype = x.type.dtype
    shape = (-1,) + (1,) * (x.type.rank - 2)
    s = graph.add_constant(scale.astype(dtype).reshape(shape), f"{bn.name}_scale")
    t = graph.add_constant(shift.astype(dtype).reshape(shape), f"{bn.name}_shift")
    mul = graph.add_node("Mul", [x, s], {}, name=f"{bn.name}_mul", index=graph.nodes.index(bn))
    replace_node(graph, bn, "Add", [mul.outputs[0], t], {})
