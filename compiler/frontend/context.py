"""What an op import handler sees of one ONNX node, and the handler table.

A handler turns one ONNX node into IR nodes in the canonical form of its op
(the newest opset's semantics, attributes completed with defaults):

    @handler("Softmax")
    def _softmax(ctx: NodeContext) -> None:
        ...
        ctx.emit_final("Softmax", [ctx.input(0)], {"axis": axis})

Ops with no handler of their own go through :func:`default_handler`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import onnx

from compiler.errors import ModelImportError, UnsupportedOpError
from compiler.frontend.functions import expand, function_body
from ir.errors import IRError
from ir.graph import Graph, Value
from ir.registry import get_op, is_registered, with_defaults

if TYPE_CHECKING:
    from compiler.frontend.importer import GraphImporter

Handler = Callable[["NodeContext"], None]
_HANDLERS: dict[str, Handler] = {}


def handler(*op_types: str) -> Callable[[Handler], Handler]:
    """Register the import handler of one or more ONNX op types."""
    def register(fn: Handler) -> Handler:
        for op in op_types:
            if op in _HANDLERS:
                raise RuntimeError(f"import handler for {op!r} registered twice")
            _HANDLERS[op] = fn
        return fn
    return register


def get_handler(op_type: str) -> Handler | None:
    return _HANDLERS.get(op_type)


def handled_ops() -> set[str]:
    return set(_HANDLERS)


class NodeContext:
    """One ONNX node being imported: its resolved inputs, attributes, opset."""

    def __init__(self, importer: GraphImporter, node: onnx.NodeProto, name: str, opset: int,
                 op_version: int | None, attrs: dict[str, Any]):
        self.importer = importer
        self.proto = node
        self.op_type = node.op_type
        self.name = name
        self.opset = opset
        self.op_version = op_version
        self.attrs = attrs
        self.inputs: list[Value | None] = [importer.lookup(n, self) if n else None for n in node.input]
        self.output_names: list[str] = list(node.output)

    @property
    def graph(self) -> Graph:
        return self.importer.graph

    # ------------------------------------------------------------ inputs
    def input(self, index: int) -> Value | None:
        return self.inputs[index] if index < len(self.inputs) else None

    def const_input(self, index: int) -> np.ndarray | None:
        value = self.input(index)
        return None if value is None else value.const

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    def pop_attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.pop(name, default)

    # ------------------------------------------------------------ emitting
    def const(self, array, name: str | None = None) -> Value:
        """A new constant in the graph being built."""
        return self.graph.add_constant(np.asarray(array), name or f"{self.name}_const")

    def emit(self, op: str, inputs: Sequence[Value | None], attrs: dict[str, Any] | None = None,
             outputs: Sequence[str] | None = None, num_outputs: int | None = None, final: bool = False) -> list[Value]:
        """Add an IR node (attributes completed with the op's defaults); its
        outputs get ``outputs`` as names, or fresh ones. The node that
        defines the ONNX node's outputs (``final``) takes the ONNX node's
        name; helper nodes before it are named ``<onnx name>::<op>``."""
        try:
            full = with_defaults(op, dict(attrs or {}), self.name)
        except IRError as exc:
            raise self.error(str(exc)) from None
        final = final or any(name in self.output_names for name in outputs or ())
        return self.importer.emit(op, list(inputs), full, self, outputs, num_outputs, final)

    def emit_final(self, op: str, inputs: Sequence[Value | None], attrs: dict[str, Any] | None = None) -> list[Value]:
        """Emit the node that defines this ONNX node's outputs (empty output
        names, meaning "not wanted", still get a value)."""
        names = [n or None for n in self.output_names]
        values = self.emit(op, inputs, attrs, [n for n in names if n] if all(names) else None,
                           num_outputs=len(names), final=True)
        if not all(names):
            for name, value in zip(names, values):
                if name:
                    self.bind(name, value)
        return values

    def bind(self, onnx_name: str, value: Value) -> None:
        """Make an ONNX output name refer to an existing IR value."""
        self.importer.bind(onnx_name, value)

    def import_subgraph(self, graph: onnx.GraphProto, input_types, name: str):
        """Import a subgraph attribute; returns (IR graph, captured outer values)."""
        return self.importer.import_subgraph(graph, input_types, name, self)

    # ------------------------------------------------------------ errors
    def error(self, message: str) -> ModelImportError:
        return ModelImportError(message, op=self.op_type, node=self.name, opset=self.opset,
                                file=self.importer.file)

    def unsupported(self, message: str) -> UnsupportedOpError:
        return UnsupportedOpError(message, op=self.op_type, node=self.name, opset=self.opset,
                                  file=self.importer.file)


def default_handler(ctx: NodeContext) -> None:
    """ONNX op == IR op, attributes as given (defaults filled in); an op with
    no IR op of its own is expanded into its ONNX function body, if it has one."""
    if not is_registered(ctx.op_type):
        body = function_body(ctx)
        if body is None:
            raise ctx.unsupported("this op is not supported by Tessera")
        expand(ctx, body)
        return
    graphs = [k for k, v in ctx.attrs.items() if isinstance(v, onnx.GraphProto)]
    if graphs:
        raise ctx.unsupported(f"subgraph attribute(s) {graphs} are not supported here")
    unknown = set(ctx.attrs) - set(get_op(ctx.op_type).attrs)
    if unknown:
        raise ctx.unsupported(f"attribute(s) {sorted(unknown)} are not supported")
    ctx.emit_final(ctx.op_type, ctx.inputs, ctx.attrs)
