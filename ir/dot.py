"""Graphviz DOT text of a graph, to look at placement, fusion and partitions.

Nodes are filled by affinity; a ``Segment`` is a cluster labelled with its
device, holding its body's nodes; a ``Fused`` node is one box naming its
members' ops; edges carry the tensor types. Constants (weights) are left
out. Every name is quoted and escaped by runtime.dot.quote, so any ONNX name is safe.

    dot -Tsvg model.dot -o model.svg
"""
from __future__ import annotations

import itertools

from ir.graph import Graph, Node, Value
from runtime.dot import quote
from runtime.hardware import ACCELERATOR, HOST

FILL = {ACCELERATOR: "#b3de69", HOST: "#80b1d3"}
CLUSTER_FILL = {ACCELERATOR: "#eef7e0", HOST: "#e5eff7"}
UNPLACED_FILL = "#ffffff"
OTHER_FILL = "#d9d9d9"
BOUNDARY_FILL = "#fdfdc8"


def to_dot(graph: Graph) -> str:
    """The graph as a DOT ``digraph``."""
    return _Writer().render(graph)


class _Writer:
    """Emits node and cluster statements, remembering which DOT node makes
    each value so edges can cross segment bodies."""

    def __init__(self):
        self.lines: list[str] = []
        self.edges: list[str] = []
        self.source: dict[int, str] = {}
        self._ids = itertools.count()

    def render(self, graph: Graph) -> str:
        self.lines += [f"digraph {quote(graph.name)} {{", "  rankdir=TB;",
                       '  node [shape=box, style="rounded,filled", fontname="Helvetica"];',
                       '  edge [fontname="Helvetica", fontsize=10];']
        for value in graph.inputs:
            self.source[id(value)] = self._boundary(f"input {value.name}", "  ")
        self._nodes(graph, "  ")
        for value in graph.outputs:
            self._edge(value, self._boundary(f"output {value.name}", "  "))
        return "\n".join(self.lines + self.edges + ["}"]) + "\n"

    def _new_id(self) -> str:
        return f"n{next(self._ids)}"

    def _boundary(self, label: str, indent: str) -> str:
        node_id = self._new_id()
        self.lines.append(f"{indent}{node_id} [label={quote(label)}, shape=ellipse, fillcolor=\"{BOUNDARY_FILL}\"];")
        return node_id

    def _nodes(self, graph: Graph, indent: str) -> None:
        for node in graph.nodes:
            if node.op == "Segment":
                self._segment(node, indent)
            else:
                self._node(node, indent)

    def _node(self, node: Node, indent: str) -> None:
        node_id = self._new_id()
        attrs = [f"label={quote(_label(node))}", f'fillcolor="{_fill(node.affinity)}"']
        if node.annotations:
            attrs.append("tooltip=" + quote("\n".join(f"{k}: {v}" for k, v in node.annotations.items())))
        self.lines.append(f"{indent}{node_id} [{', '.join(attrs)}];")
        for value in node.inputs:
            self._edge(value, node_id)
        for value in node.outputs:
            self.source[id(value)] = node_id

    def _segment(self, node: Node, indent: str) -> None:
        """A cluster of the body's nodes; edges go straight to and from them."""
        body: Graph = node.attrs["body"]
        device = node.attrs["device"]
        for formal, actual in zip(body.inputs, node.inputs):
            if id(actual) in self.source:
                self.source[id(formal)] = self.source[id(actual)]
        self.lines += [f"{indent}subgraph cluster_{self._new_id()} {{",
                       f"{indent}  label={quote(f'{node.name} @ {device}')};",
                       f'{indent}  style="rounded,filled"; fillcolor="{CLUSTER_FILL.get(device, OTHER_FILL)}";']
        self._nodes(body, indent + "  ")
        self.lines.append(f"{indent}}}")
        for inner, outer in zip(body.outputs, node.outputs):
            if id(inner) in self.source:
                self.source[id(outer)] = self.source[id(inner)]

    def _edge(self, value: Value | None, target: str) -> None:
        if value is not None and id(value) in self.source:
            self.edges.append(f"  {self.source[id(value)]} -> {target} [label={quote(str(value.type))}];")


def _label(node: Node) -> str:
    if node.op == "Fused":
        members = "+".join(member.op for member in node.attrs["body"].nodes)
        return f"{node.name}\nFused: {members}"
    return f"{node.name}\n{node.op}"


def _fill(affinity: str | None) -> str:
    if affinity is None:
        return UNPLACED_FILL
    return FILL.get(affinity, OTHER_FILL)
