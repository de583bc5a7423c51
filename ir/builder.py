"""GraphBuilder: build graphs by hand in a few lines (for pass tests).

    b = GraphBuilder("tiny")
    x = b.input("x", [1, 3, 8, 8])
    y = b.Conv(x, b.const(np.ones((4, 3, 3, 3), np.float32)), pads=[1, 1, 1, 1])
    graph = b.build(b.Relu(y))

Attributes not given take the op's registered defaults (some derived from
the input types, as a Conv's kernel_shape from its weight); output types
come from the op's type rule.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ir.graph import Graph, Value
from ir.registry import with_defaults
from ir.types import TensorType


class GraphBuilder:
    def __init__(self, name: str = "graph"):
        self.graph = Graph(name)

    def input(self, name: str, shape: Sequence[int | None], dtype=np.float32) -> Value:
        return self.graph.add_input(name, TensorType(shape, dtype))

    def const(self, array, name: str | None = None, dtype=None) -> Value:
        array = np.asarray(array, dtype=dtype)
        if array.dtype == np.float64 and dtype is None:
            array = array.astype(np.float32)
        return self.graph.add_constant(array, name)

    def op(self, op: str, *inputs: Value | None, name: str | None = None,
           num_outputs: int | None = None, output_names: Sequence[str] | None = None,
           **attrs: Any) -> Value | tuple[Value, ...]:
        """Add one node; returns its output, or a tuple when it has several."""
        node_name = name or self.graph.fresh_node_name(op)
        types = [v.type if v is not None else None for v in inputs]
        node = self.graph.add_node(op, list(inputs), with_defaults(op, attrs, node_name, types), name=node_name,
                                   num_outputs=num_outputs, output_names=output_names)
        return node.outputs[0] if len(node.outputs) == 1 else tuple(node.outputs)

    def __getattr__(self, op: str):
        if not op[:1].isupper():
            raise AttributeError(op)
        return lambda *inputs, **attrs: self.op(op, *inputs, **attrs)

    def build(self, *outputs: Value) -> Graph:
        self.graph.outputs = list(outputs)
        return self.graph
