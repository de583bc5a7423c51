"""Folding one node to constants through the runtime kernels.

One op semantics: a node whose inputs are all constants is evaluated by its
CPU kernel, never by a second interpreter. ``Shape`` and ``Size`` fold as soon
as their input's shape is static, whatever its value.
"""
from __future__ import annotations

import numpy as np

from ir.errors import IRError
from ir.graph import Graph, Node, Value
from ir.types import TensorType
from runtime.kernels import has_kernel, run_kernel

SHAPE_OPS = frozenset({"Shape", "Size"})
# Random ops differ per run; Fail (an If branch that does not fit) must raise
# only when the branch is taken at run time, never when the compiler folds it.
NEVER_FOLD = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                        "Bernoulli", "Fail"})


def can_fold(node: Node) -> bool:
    if node.op in NEVER_FOLD or node.subgraphs() or not has_kernel(node.op):
        return False
    if node.op in SHAPE_OPS:
        return node.inputs[0].type.is_static
    return all(v is None or v.is_constant for v in node.inputs)


def fold_node(graph: Graph, node: Node) -> list[Value] | None:
    """Replace ``node`` by constants holding its outputs, if it can be folded.
    The constants keep the output names. Returns them, or None."""
    if not can_fold(node):
        return None
    results = [np.asarray(r) for r in run_kernel(node.op, [_const_of(v) for v in node.inputs], node.attrs)]
    _check_results(node, results)
    names = [v.name for v in node.outputs]
    consts = [graph.add_constant(r, f"{n}__folded") for n, r in zip(names, results)]
    for old, new in zip(node.outputs, consts):
        graph.replace_all_uses(old, new)
    graph.remove_node(node)
    for const, name in zip(consts, names):
        graph.rename_value(const, name)
    return consts


def _check_results(node: Node, results: list[np.ndarray]) -> None:
    """A kernel and a type rule that disagree are a bug: say so at the node."""
    if len(results) != len(node.outputs):
        raise IRError(f"{node.op} node {node.name!r}: kernel gave {len(results)} outputs, "
                      f"the IR has {len(node.outputs)}")
    for value, array in zip(node.outputs, results):
        want = value.type
        if array.dtype != want.dtype or array.ndim != want.rank or any(
                d is not None and d != a for d, a in zip(want.shape, array.shape)):
            raise IRError(f"{node.op} node {node.name!r}: kernel result {TensorType.of(array)} for "
                          f"%{value.name} disagrees with its type {want}")


def _const_of(value: Value | None) -> np.ndarray | None:
    if value is None:
        return None
    if value.is_constant:
        return value.const
    # Shape/Size read only the shape: a zero-stride view costs no memory.
    return np.broadcast_to(np.zeros((), value.type.dtype), value.type.shape)
