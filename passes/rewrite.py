"""Small graph-editing helpers the passes share."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from ir.graph import Graph, Node, Value


def bypass(graph: Graph, node: Node, replacement: Value) -> bool:
    """Remove a single-output ``node``, its users reading ``replacement``
    instead. A graph output keeps its name: the replacement takes it when it
    is a plain intermediate value; otherwise nothing changes and False is
    returned."""
    (old,) = node.outputs
    if old in graph.outputs:
        if not _renamable(graph, replacement):
            return False
        name = old.name
        graph.replace_all_uses(old, replacement)
        graph.remove_node(node)
        graph.rename_value(replacement, name)
        return True
    graph.replace_all_uses(old, replacement)
    graph.remove_node(node)
    return True


def _renamable(graph: Graph, value: Value) -> bool:
    return value.producer is not None and value not in graph.outputs


def replace_node(graph: Graph, node: Node, op: str, inputs, attrs: dict) -> Node:
    """A new node in ``node``'s place computing the same outputs (which keep
    their names); the old node is removed."""
    index = graph.nodes.index(node)
    names = [v.name for v in node.outputs]
    new = graph.add_node(op, inputs, attrs, name=graph.fresh_node_name(op), index=index,
                         output_names=[f"{n}__new" for n in names])
    for old, value in zip(node.outputs, new.outputs):
        graph.replace_all_uses(old, value)
    graph.remove_node(node)
    new.name = node.name
    for value, name in zip(new.outputs, names):
        graph.rename_value(value, name)
    return new


def conv_1x1_attrs(group: int = 1) -> dict:
    """A 1x1 Conv's attributes: stride 1, no padding or dilation, ``group`` groups."""
    return {"kernel_shape": [1, 1], "strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1], "group": group}


def single_consumer(graph: Graph, value: Value) -> Node | None:
    """The one node reading ``value`` (once), when it is not also a graph output."""
    if value in graph.outputs or len(value.uses) != 1:
        return None
    return value.uses[0][0]


def const_input(node: Node, index: int) -> np.ndarray | None:
    value = node.inputs[index] if index < len(node.inputs) else None
    return None if value is None else value.const


def nodes_of(graph: Graph, *ops: str) -> Iterator[Node]:
    """The nodes of the given ops, safe to edit while iterating."""
    for node in list(graph.nodes):
        if node.op in ops and node in graph.nodes:
            yield node
