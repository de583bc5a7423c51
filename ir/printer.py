"""Text form of a graph: one line per node with types, affinity and annotations.

    graph tiny(%x: f32[1,3,8,8]) {
      %w = const f32[4,3,3,3]
      %y = Conv(%x, %w) {pads=[1,1,1,1], strides=[1,1]} : f32[1,4,8,8]
      %z = Relu(%y) : f32[1,4,8,8] @accel
      return %z
    }
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ir.graph import Graph, Node, Value

_DEFAULTS_HIDDEN = ("captures",)


def format_graph(graph: Graph, indent: str = "") -> str:
    """The whole graph, subgraphs nested under their node."""
    args = ", ".join(f"%{v.name}: {_typed(v)}" for v in graph.inputs)
    lines = [f"{indent}graph {graph.name}({args}) {{"]
    used_consts = [v for v in graph.values.values() if v.is_constant and (v.uses or v in graph.outputs)]
    lines += [f"{indent}  %{v.name} = const {_typed(v)}{_preview(v.const)}" for v in used_consts]
    for node in graph.nodes:
        lines.append(indent + "  " + format_node(node))
        for key, sub in node.attrs.items():
            if isinstance(sub, Graph):
                lines.append(f"{indent}    {key}:")
                lines.append(format_graph(sub, indent + "    "))
    lines.append(f"{indent}  return " + ", ".join(f"%{v.name}" for v in graph.outputs))
    lines.append(f"{indent}}}")
    return "\n".join(lines)


def format_node(node: Node) -> str:
    """``%out = Op(%a, %b) {attr=..} : type @affinity [annotations]``."""
    outs = ", ".join(f"%{v.name}" for v in node.outputs)
    args = ", ".join("_" if v is None else f"%{v.name}" for v in node.inputs)
    attrs = ", ".join(f"{k}={_format_attr(v)}" for k, v in node.attrs.items()
                      if k not in _DEFAULTS_HIDDEN and not isinstance(v, Graph))
    types = ", ".join(_typed(v) for v in node.outputs)
    line = f"{outs} = {node.op}({args})"
    if attrs:
        line += f" {{{attrs}}}"
    line += f" : {types}"
    if node.affinity:
        line += f" @{node.affinity}"
    if node.annotations:
        line += " [" + ", ".join(f"{k}={_format_attr(v)}" for k, v in node.annotations.items()) + "]"
    return line


def format_value(value: Value) -> str:
    return f"%{value.name}: {_typed(value)}"


def _typed(value: Value) -> str:
    """A value's type, and its quantization when it has one."""
    return f"{value.type} {value.quant}" if value.quant is not None else str(value.type)


def _format_attr(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}={_format_attr(v)}" for k, v in value.items()) + "}"
    if isinstance(value, np.ndarray):
        return f"tensor<{value.dtype}{list(value.shape)}>{_preview(value)}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_format_attr(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _preview(array: np.ndarray) -> str:
    """Small constants show their values, big ones only their type."""
    if array.size == 0 or array.size > 8 or array.dtype == object:
        return ""
    flat = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in array.reshape(-1).tolist())
    return f" = [{flat}]"
