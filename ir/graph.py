"""The graph IR: Values, Nodes and Graphs.

A Graph holds its nodes in topological order. Every Value has at most one
producer (SSA); a Value with no producer is a graph input or a constant (its
numpy array is owned by the Value). Use lists (``Value.uses``) are kept up to
date by every mutation method, so passes never see a stale def-use chain.

Nodes with subgraphs (If, Loop) hold them as Graph attributes. A subgraph never
names an outer Value directly: the values it captures are trailing inputs of
the node (``attrs["captures"]`` of them), bound to the subgraph's trailing
inputs, so dependencies stay explicit in the outer graph.
"""
from __future__ import annotations

import heapq
import itertools
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from ir.errors import IRError
from ir.types import QuantParams, TensorType


class Value:
    """A typed SSA value: a node output, a graph input or a constant. A
    quantized value also has ``quant``: how its integers map to reals."""

    __slots__ = ("name", "type", "producer", "uses", "const", "quant")

    def __init__(self, name: str, type: TensorType, producer: Node | None = None,
                 const: np.ndarray | None = None):
        self.name = name
        self.type = type
        self.producer = producer
        self.uses: list[tuple[Node, int]] = []
        self.const = const
        self.quant: QuantParams | None = None

    @property
    def is_constant(self) -> bool:
        return self.const is not None

    @property
    def users(self) -> list[Node]:
        """Distinct consumer nodes, in first-use order."""
        return list(dict.fromkeys(node for node, _ in self.uses))

    def __repr__(self) -> str:
        quant = f" {self.quant}" if self.quant is not None else ""
        return f"%{self.name}: {self.type}{quant}"


class Node:
    """One operation. ``inputs`` may contain None for omitted optional inputs."""

    __slots__ = ("op", "name", "inputs", "outputs", "attrs", "affinity", "annotations")

    def __init__(self, op: str, name: str, attrs: dict[str, Any] | None = None):
        self.op = op
        self.name = name
        self.inputs: list[Value | None] = []
        self.outputs: list[Value] = []
        self.attrs: dict[str, Any] = dict(attrs or {})
        self.affinity: str | None = None
        self.annotations: dict[str, Any] = {}

    def set_input(self, index: int, value: Value | None) -> None:
        """Rebind input ``index``, keeping both values' use lists right."""
        old = self.inputs[index]
        if old is not None:
            old.uses.remove((self, index))
        self.inputs[index] = value
        if value is not None:
            value.uses.append((self, index))

    def subgraphs(self) -> list[Graph]:
        """The graphs held in this node's attributes (If branches, Loop body)."""
        return [v for v in self.attrs.values() if isinstance(v, Graph)]

    def __repr__(self) -> str:
        return f"<Node {self.op} {self.name!r}>"


class Graph:
    """A named DAG of nodes in topological order, with inputs and outputs."""

    def __init__(self, name: str = "graph"):
        self.name = name
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.nodes: list[Node] = []
        self.values: dict[str, Value] = {}
        self._counter = itertools.count()

    # ------------------------------------------------------------ names
    def fresh_name(self, hint: str = "v") -> str:
        """A value or node name not used in this graph yet."""
        if hint not in self.values:
            return hint
        while True:
            name = f"{hint}_{next(self._counter)}"
            if name not in self.values:
                return name

    def _new_value(self, name: str, type: TensorType, **kwargs) -> Value:
        if name in self.values:
            raise IRError(f"value name {name!r} is already defined in graph {self.name!r}")
        value = Value(name, type, **kwargs)
        self.values[name] = value
        return value

    # ------------------------------------------------------------ building
    def add_input(self, name: str, type: TensorType) -> Value:
        value = self._new_value(name, type)
        self.inputs.append(value)
        return value

    def add_constant(self, array: np.ndarray, name: str | None = None) -> Value:
        """A constant Value owning ``array`` (made read-only)."""
        array = np.asarray(array)
        array.flags.writeable = False
        return self._new_value(self.fresh_name(name or "const"), TensorType.of(array), const=array)

    def add_node(self, op: str, inputs: Sequence[Value | None], attrs: dict[str, Any] | None = None,
                 *, name: str | None = None, output_names: Sequence[str] | None = None,
                 output_types: Sequence[TensorType] | None = None, num_outputs: int | None = None,
                 index: int | None = None) -> Node:
        """Append (or insert at ``index``) a node; its output types come from the
        op's type rule unless ``output_types`` is given."""
        from ir.registry import infer_types  # registry imports graph for type hints

        node = Node(op, name or self.fresh_node_name(op), attrs)
        for value in inputs:
            self._check_owned(value, node)
        node.inputs = list(inputs)
        if output_types is None:
            output_types = infer_types(node, num_outputs)
        names = list(output_names or [])
        names += [self.fresh_name(f"{node.name}_out{i}" if i else node.name)
                  for i in range(len(names), len(output_types))]
        node.outputs = [self._new_value(n, t, producer=node) for n, t in zip(names, output_types)]
        for i, value in enumerate(node.inputs):
            if value is not None:
                value.uses.append((node, i))
        self.nodes.insert(len(self.nodes) if index is None else index, node)
        return node

    def fresh_node_name(self, op: str) -> str:
        existing = {n.name for n in self.nodes}
        while True:
            name = f"{op}_{next(self._counter)}"
            if name not in existing:
                return name

    def _check_owned(self, value: Value | None, node: Node) -> None:
        if value is not None and self.values.get(value.name) is not value:
            raise IRError(f"node {node.name!r} ({node.op}) uses value {value.name!r}, "
                          f"which does not belong to graph {self.name!r}")

    # ------------------------------------------------------------ editing
    def replace_all_uses(self, old: Value, new: Value) -> None:
        """Make every consumer of ``old`` (and the graph outputs) use ``new``."""
        for node, index in list(old.uses):
            node.set_input(index, new)
        self.outputs = [new if v is old else v for v in self.outputs]

    def rename_value(self, value: Value, name: str) -> None:
        """Give ``value`` a new name that is not taken yet."""
        if self.values.get(value.name) is not value:
            raise IRError(f"value {value.name!r} does not belong to graph {self.name!r}")
        if name != value.name and name in self.values:
            raise IRError(f"value name {name!r} is already defined in graph {self.name!r}")
        del self.values[value.name]
        value.name = name
        self.values[name] = value

    def remove_node(self, node: Node) -> None:
        """Remove a node whose outputs are unused."""
        for value in node.outputs:
            if value.uses or value in self.outputs:
                raise IRError(f"cannot remove node {node.name!r}: output {value.name!r} is still used")
        for index, value in enumerate(node.inputs):
            if value is not None:
                value.uses.remove((node, index))
        for value in node.outputs:
            del self.values[value.name]
        self.nodes.remove(node)

    def remove_unused_values(self) -> None:
        """Drop constants and inputs-free values nobody uses (graph inputs stay)."""
        for name, value in list(self.values.items()):
            if value.producer is None and value.is_constant and not value.uses and value not in self.outputs:
                del self.values[name]

    def sort(self) -> None:
        """Restore topological order after edits (stable: keeps the current
        order where it is already legal)."""
        position = {node: i for i, node in enumerate(self.nodes)}
        indegree = {node: 0 for node in self.nodes}
        for node in self.nodes:
            for value in node.inputs:
                if value is not None and value.producer in indegree:
                    indegree[node] += 1
        ready = [(position[n], id(n), n) for n, d in indegree.items() if d == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            _, _, node = heapq.heappop(ready)
            order.append(node)
            for value in node.outputs:
                for user, _ in value.uses:
                    if user in indegree:
                        indegree[user] -= 1
                        if indegree[user] == 0:
                            heapq.heappush(ready, (position[user], id(user), user))
        if len(order) != len(self.nodes):
            raise IRError(f"graph {self.name!r} has a cycle")
        self.nodes = order

    # ------------------------------------------------------------ queries
    def constants(self) -> Iterator[Value]:
        return (v for v in self.values.values() if v.is_constant)

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node named {name!r} in graph {self.name!r}")

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __str__(self) -> str:
        from ir.printer import format_graph
        return format_graph(self)


HELPER_SEPARATOR = "::"
"""IR nodes the importer adds to express one ONNX node N are named N (the
node defining N's outputs) or N::<op> (helpers), with #k for repeats."""


def onnx_name(node_name: str) -> str:
    """The ONNX node an IR node name comes from (see HELPER_SEPARATOR)."""
    return node_name.split(HELPER_SEPARATOR, 1)[0]


def carry_quant(olds: Iterable[Value], news: Iterable[Value]) -> None:
    """Copy quantization parameters from values to their copies (passes that
    rebuild graphs keep what a pre-quantized model said about its tensors)."""
    for old, new in zip(olds, news):
        new.quant = old.quant


def clone(graph: Graph) -> Graph:
    """A structural copy of ``graph`` (subgraphs too): new Values and Nodes,
    the same constant arrays (read-only, so safe to share)."""
    copy = Graph(graph.name)
    mapping: dict[int, Value] = {}
    for value in graph.values.values():
        if value.producer is None:
            if value.is_constant:
                new = copy._new_value(value.name, value.type, const=value.const)
            else:
                new = copy._new_value(value.name, value.type)
            new.quant = value.quant
            mapping[id(value)] = new
    copy.inputs = [mapping[id(v)] for v in graph.inputs]
    for node in graph.nodes:
        attrs = {k: clone(v) if isinstance(v, Graph) else v for k, v in node.attrs.items()}
        new = copy.add_node(node.op, [None if v is None else mapping[id(v)] for v in node.inputs], attrs,
                            name=node.name, output_names=[v.name for v in node.outputs],
                            output_types=[v.type for v in node.outputs])
        new.affinity, new.annotations = node.affinity, dict(node.annotations)
        for old, value in zip(node.outputs, new.outputs):
            value.quant = old.quant
            mapping[id(old)] = value
    copy.outputs = [mapping[id(v)] for v in graph.outputs]
    return copy


def walk(graph: Graph) -> Iterable[tuple[Graph, Node]]:
    """Every (graph, node) pair, subgraphs included, outer nodes first."""
    for node in graph.nodes:
        yield graph, node
        for sub in node.subgraphs():
            yield from walk(sub)
