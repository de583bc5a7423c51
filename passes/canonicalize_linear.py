"""CanonicalizeLinear: every matrix product with constant weights takes one
form, the one the accelerator's linear layers and later passes expect:

    Gemm(A, W, C)   transA=0, transB=1, alpha=1, beta=1
                    W constant [N, K] (output features x input features), C constant [N] or absent

MatMul(A, B const) becomes that Gemm (A with more than two dims is reshaped
to 2-D around it, which is free), a following bias Add by a constant [N]
becomes its C, and a Gemm with constant B is normalised (transposes and
alpha/beta folded into W and C).
"""
from __future__ import annotations

import numpy as np

from ir.graph import Graph, Node, Value
from passes.infra import PassContext, graph_pass
from passes.rewrite import bypass, const_input, replace_node, single_consumer


@graph_pass(opt_level=1)
def canonicalize_linear(graph: Graph, ctx: PassContext) -> Graph:
    """Rewrite MatMul/Gemm with constant weights into the canonical Gemm."""
    for node in list(graph.nodes):
        if node not in graph.nodes:
            continue
        if node.op == "MatMul" and _matmul_ok(node):
            _matmul_to_gemm(graph, node)
        elif node.op == "Gemm" and _gemm_ok(node) and not _canonical(node):
            _normalize_gemm(graph, node)
    return graph


def _matmul_ok(node: Node) -> bool:
    a, b = node.inputs
    return (b.is_constant and b.const.ndim == 2 and a.type.rank >= 2 and a.type.is_static
            and a.type.dtype == b.type.dtype and a.type.dtype.kind == "f")


def _gemm_ok(node: Node) -> bool:
    c = node.inputs[2] if len(node.inputs) > 2 else None
    return (node.inputs[1].is_constant and not node.attrs["transA"] and (c is None or c.is_constant)
            and node.inputs[0].type.dtype.kind == "f")


def _canonical(node: Node) -> bool:
    c = const_input(node, 2) if len(node.inputs) > 2 else None
    attrs = node.attrs
    return (attrs["transB"] == 1 and attrs["alpha"] == 1.0 and attrs["beta"] == 1.0
            and (c is None or c.ndim == 1))


def _matmul_to_gemm(graph: Graph, node: Node) -> None:
    a, b = node.inputs
    weight = np.ascontiguousarray(b.const.T)
    bias, add = _bias_add(graph, node.outputs[0], weight.shape[0])
    out = node.outputs[0]
    inputs = [a] if a.type.rank == 2 else [_reshape(graph, node, a, [-1, weight.shape[1]], "in")]
    inputs.append(graph.add_constant(weight, f"{node.name}_weight"))
    if bias is not None:
        inputs.append(graph.add_constant(bias, f"{node.name}_bias"))
    attrs = {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1}
    if a.type.rank == 2:
        gemm = replace_node(graph, node, "Gemm", inputs, attrs)
    else:
        index = graph.nodes.index(node)
        gemm = graph.add_node("Gemm", inputs, attrs, name=f"{node.name}_gemm", index=index)
        back = _reshape(graph, node, gemm.outputs[0], list(out.type.shape), "out")
        graph.replace_all_uses(out, back)
        graph.remove_node(node)
        graph.rename_value(back, out.name)
        gemm = back.producer
    if add is not None:
        bypass(graph, add, gemm.outputs[0])


def _bias_add(graph: Graph, value: Value, features: int) -> tuple[np.ndarray | None, Node | None]:
    """The constant [N] of an Add that is ``value``'s only user, if any."""
    add = single_consumer(graph, value)
    if add is None or add.op != "Add":
        return None, None
    other = add.inputs[1] if add.inputs[0] is value else add.inputs[0]
    if not other.is_constant or other.const.dtype != value.type.dtype:
        return None, None
    const = other.const
    if const.size != features or (const.ndim and const.shape[-1] != features) or const.ndim > value.type.rank:
        return None, None
    return const.reshape(-1).copy(), add


def _reshape(graph: Graph, node: Node, value: Value, shape: list[int], side: str) -> Value:
    target = graph.add_constant(np.array(shape, np.int64), f"{node.name}_{side}_shape")
    index = graph.nodes.index(node) + (1 if side == "out" else 0)
    reshape = graph.add_node("Reshape", [value, target], {"allowzero": 0}, name=f"{node.name}_reshape_{side}",
                             index=index)
    return reshape.outputs[0]


def _normalize_gemm(graph: Graph, node: Node) -> None:
    attrs = node.attrs
    weight = node.inputs[1].const.astype(np.float64) * attrs["alpha"]
    weight = weight if attrs["transB"] else weight.T
    n = weight.shape[0]
    c = const_input(node, 2) if len(node.inputs) > 2 else None
    inputs = [node.inputs[0], graph.add_constant(np.ascontiguousarray(weight).astype(node.inputs[1].const.dtype),
                                                 f"{node.name}_weight")]
    if c is not None:
        bias = c.astype(np.float64) * attrs["beta"]
        if bias.size not in (1, n) and bias.shape != tuple(node.outputs[0].type.shape):
            return
        bias = np.broadcast_to(bias, node.outputs[0].type.shape) if bias.size not in (1, n) else \
            np.broadcast_to(bias.reshape(-1), (n,))
        if bias.ndim == 2 and not np.all(bias == bias[:1]):
            return  # a [M, N] C that varies by row is not a bias
        inputs.append(graph.add_constant(np.ascontiguousarray(bias.reshape(-1, n)[0]).astype(c.dtype),
                                         f"{node.name}_bias"))
    replace_node(graph, node, "Gemm", inputs, {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1})
