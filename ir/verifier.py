"""The verifier: checks SSA, topological order, use lists, registered ops,
arity, attributes and types against each op's type rule."""
from __future__ import annotations

from ir.errors import IRError, VerificationError
from ir.graph import Graph, Node, Value
from ir.registry import get_op, infer_types


def verify(graph: Graph) -> None:
    """Raise :class:`VerificationError` listing every broken invariant."""
    problems = collect_problems(graph)
    if problems:
        raise VerificationError(problems, f"graph {graph.name!r}")


def collect_problems(graph: Graph) -> list[str]:
    problems: list[str] = []
    defined: set[int] = set()
    for value in graph.values.values():
        if value.producer is None:
            defined.add(id(value))
        if value.producer is None and not value.is_constant and value not in graph.inputs:
            problems.append(f"value %{value.name} has no producer and is neither an input nor a constant")
    for value in graph.inputs:
        if value.producer is not None or value.is_constant:
            problems.append(f"graph input %{value.name} must have no producer and no constant")
    names: set[str] = set()
    for node in graph.nodes:
        if node.name in names:
            problems.append(f"node name {node.name!r} is used twice")
        names.add(node.name)
        problems += _check_node(graph, node, defined)
        defined.update(id(v) for v in node.outputs)
    for value in graph.outputs:
        if id(value) not in defined:
            problems.append(f"graph output %{value.name} is not defined")
    problems += _check_uses(graph)
    return problems


def _check_node(graph: Graph, node: Node, defined: set[int]) -> list[str]:
    where = f"{node.op} node {node.name!r}"
    try:
        opdef = get_op(node.op)
    except IRError:
        return [f"{where}: op {node.op!r} is not registered"]
    problems = []
    for i, value in enumerate(node.inputs):
        if value is None:
            continue
        if graph.values.get(value.name) is not value:
            problems.append(f"{where}: input {i} %{value.name} is not a value of this graph")
        elif id(value) not in defined:
            problems.append(f"{where}: input {i} %{value.name} is used before it is defined")
    for value in node.outputs:
        if value.producer is not node:
            problems.append(f"{where}: output %{value.name} names another producer")
        if graph.values.get(value.name) is not value:
            problems.append(f"{where}: output %{value.name} is not a value of this graph")
    missing = [k for k in opdef.attrs if k not in node.attrs]
    unknown = [k for k in node.attrs if k not in opdef.attrs]
    if missing or unknown:
        problems.append(f"{where}: attributes missing {missing}, unknown {unknown}")
        return problems
    problems += _check_types(node, where)
    for sub in node.subgraphs():
        problems += [f"{where} / {p}" for p in collect_problems(sub)]
    return problems


def _check_types(node: Node, where: str) -> list[str]:
    try:
        expected = infer_types(node, len(node.outputs))
    except IRError as exc:
        return [f"{where}: type rule failed: {exc}"]
    if len(expected) != len(node.outputs):
        return [f"{where}: has {len(node.outputs)} outputs, its type rule gives {len(expected)}"]
    problems = []
    for value, want in zip(node.outputs, expected):
        if not _compatible(value, want):
            problems.append(f"{where}: output %{value.name} has type {value.type}, its rule gives {want}")
    return problems


def _compatible(value: Value, want) -> bool:
    """Equal types, where a recorded static dim may refine an unknown one."""
    have = value.type
    if have.dtype != want.dtype or have.rank != want.rank:
        return False
    return all(w is None or h == w for h, w in zip(have.shape, want.shape))


def _check_uses(graph: Graph) -> list[str]:
    actual: dict[int, list] = {id(v): [] for v in graph.values.values()}
    for node in graph.nodes:
        for i, value in enumerate(node.inputs):
            if value is not None and id(value) in actual:
                actual[id(value)].append((node, i))
    problems = []
    for value in graph.values.values():
        if sorted(map(_use_key, value.uses)) != sorted(map(_use_key, actual[id(value)])):
            problems.append(f"value %{value.name}: use list is stale")
    return problems


def _use_key(use) -> tuple:
    node, index = use
    return id(node), index
