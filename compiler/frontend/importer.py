"""ONNX graph -> IR graph.

Nodes are imported in order; each goes through its op's handler, and every
new node whose inputs are all known at compile time is folded to constants on
the spot (through the runtime kernels), so shape computations such as
Shape -> Gather -> Concat -> Reshape become constants as soon as shapes are
known. Constant nodes and initializers both become constant Values.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from compiler.errors import ModelImportError
from compiler.frontend.attributes import convert_attributes
from compiler.frontend.context import NodeContext, default_handler, get_handler
from compiler.frontend.loader import node_op_version
from ir.errors import IRError, ShapeError
from ir.graph import HELPER_SEPARATOR, Graph, Value
from ir.types import TensorType
from passes.fold import fold_node
from runtime.errors import TesseraError
from runtime.kernels.limits import MAX_ELEMENTS


class GraphImporter:
    """Imports one ONNX graph (the main graph or a subgraph) into an IR Graph."""

    def __init__(self, name: str, opset: int, file: str, onnx_types: dict[str, onnx.TypeProto] | None = None,
                 parent: GraphImporter | None = None):
        """``onnx_types`` (onnx's inferred types by value name, or None) makes
        every node's output types checked against onnx's (strict_types)."""
        self.graph = Graph(name)
        self.opset = opset
        self.file = file
        self.onnx_types = onnx_types
        self.parent = parent
        self.scope: dict[str, Value] = {}
        self.captures: list[Value] = []  # outer values this subgraph reads, in input order
        self._node_names: set[str] = set()

    # ------------------------------------------------------------ values
    def add_initializers(self, initializers: Sequence[onnx.TensorProto]) -> None:
        for tensor in initializers:
            array = _to_array(tensor, self.file)
            try:
                self.scope[tensor.name] = self.graph.add_constant(array, tensor.name)
            except IRError as exc:
                raise ModelImportError(f"initializer {tensor.name!r}: {exc}", file=self.file) from None

    def add_input(self, name: str, type: TensorType) -> Value:
        value = self.graph.add_input(name, type)
        self.scope[name] = value
        return value

    def lookup(self, name: str, ctx: NodeContext | None = None) -> Value:
        """The IR value of an ONNX name; outer-scope names become captures."""
        if name in self.scope:
            return self.scope[name]
        if self.parent is not None:
            outer = self.parent.lookup(name, ctx)
            if outer.is_constant:
                inner = self.graph.add_constant(outer.const, name)
            else:
                inner = self.graph.add_input(name, outer.type)
                self.captures.append(outer)
            self.scope[name] = inner
            return inner
        where = dict(op=ctx.op_type, node=ctx.name, opset=self.opset) if ctx else {}
        raise ModelImportError(f"input {name!r} is not defined before it is used", file=self.file, **where)

    def bind(self, onnx_name: str, value: Value) -> None:
        self.scope[onnx_name] = value

    # ------------------------------------------------------------ nodes
    def import_nodes(self, nodes: Sequence[onnx.NodeProto]) -> None:
        for index, node in enumerate(nodes):
            self.import_node(node, index)

    def import_node(self, node: onnx.NodeProto, index: int, opset: int | None = None) -> None:
        """Import one node; ``opset`` overrides the graph's (function bodies
        are written for an opset of their own)."""
        name = node.name or f"{node.op_type}_{index}"
        opset = opset or self.opset
        where = dict(op=node.op_type, node=name, opset=opset, file=self.file)
        try:
            if node.op_type == "Constant":
                self._import_constant(node, where)
                return
            ctx = NodeContext(self, node, name, opset, node_op_version(node.op_type, opset),
                              convert_attributes(node, where))
            (get_handler(node.op_type) or default_handler)(ctx)
        except ModelImportError:
            raise
        except TesseraError as exc:
            raise ModelImportError(str(exc), **where) from None
        except Exception as exc:  # a bug in a handler or rule: still name the node, keep the cause
            raise ModelImportError(f"internal error while importing this node: {type(exc).__name__}: {exc}",
                                   **where) from exc
        for out in node.output:
            if out and out not in self.scope:
                raise ModelImportError(f"the import handler did not define output {out!r}", **where)

    def emit(self, op: str, inputs: list[Value | None], attrs: dict[str, Any], ctx: NodeContext,
             outputs: Sequence[str] | None, num_outputs: int | None, final: bool = False) -> list[Value]:
        """Add one IR node for ``ctx``'s ONNX node, then fold it if it can be."""
        node_name = self._node_name(ctx.name, op, final)
        try:
            node = self.graph.add_node(op, inputs, attrs, name=node_name, output_names=outputs,
                                       num_outputs=num_outputs)
        except ShapeError as exc:
            raise ctx.error(exc.reason) from None
        except IRError as exc:
            raise ctx.error(str(exc)) from None
        self._node_names.add(node.name)
        if self.onnx_types is not None:
            self._check_types(node, ctx)
        _check_sizes(node.outputs, ctx)
        values = list(node.outputs)
        for value in values:
            self.scope[value.name] = value
        folded = self._fold(node, ctx)
        if folded is not None:
            values = folded
            for value in values:
                self.scope[value.name] = value
        return values

    def _node_name(self, onnx_name: str, op: str, final: bool) -> str | None:
        """The ONNX node's name for the node defining its outputs, and
        ``<name>::<op>`` for helper nodes (None: a fresh one), so that every
        IR node maps back to the ONNX node it came from (ir.graph.onnx_name)."""
        if not onnx_name:
            return None
        name = onnx_name if final else f"{onnx_name}{HELPER_SEPARATOR}{op}"
        unique, count = name, 1
        while unique in self._node_names:
            count += 1
            unique = f"{name}#{count}"
        return unique

    def _fold(self, node, ctx: NodeContext) -> list[Value] | None:
        try:
            return fold_node(self.graph, node)
        except TesseraError as exc:
            raise ctx.error(f"evaluating this node at compile time failed: {exc}") from None

    def _check_types(self, node, ctx: NodeContext) -> None:
        """A disagreement with onnx's shape inference on the rank or a dim
        both know is an error (a bug on one side)."""
        for value in node.outputs:
            proto = self.onnx_types.get(value.name)
            if proto is None or not proto.HasField("tensor_type") or not proto.tensor_type.HasField("shape"):
                continue
            theirs = [d.dim_value if d.HasField("dim_value") else None for d in proto.tensor_type.shape.dim]
            ours = value.type.shape
            if len(theirs) != len(ours):
                raise ctx.error(f"output {value.name!r}: Tessera infers {value.type}, onnx infers rank {len(theirs)}")
            if any(a is not None and b is not None and a != b for a, b in zip(ours, theirs)):
                raise ctx.error(f"output {value.name!r}: Tessera infers {value.type}, onnx infers {theirs}")

    def _import_constant(self, node: onnx.NodeProto, where: dict) -> None:
        attrs = convert_attributes(node, where)
        if len(attrs) != 1:
            raise ModelImportError(f"a Constant needs exactly one value attribute, got {sorted(attrs)}", **where)
        (key, value), = attrs.items()
        if key in ("value_float", "value_int"):
            array = np.array(value, dtype=np.float32 if key == "value_float" else np.int64)
        elif key in ("value_floats", "value_ints"):
            array = np.array(value, dtype=np.float32 if key == "value_floats" else np.int64)
        elif key in ("value_string", "value_strings"):
            array = np.array(value, dtype=object)
        elif key in ("value", "sparse_value"):
            array = value
        else:
            raise ModelImportError(f"unknown Constant attribute {key!r}", **where)
        self.scope[node.output[0]] = self.graph.add_constant(array, node.output[0])

    # ------------------------------------------------------------ subgraphs
    def import_subgraph(self, proto: onnx.GraphProto, input_types: Sequence[TensorType], name: str,
                        ctx: NodeContext) -> tuple[Graph, list[Value]]:
        """Import ``proto`` with the given formal input types. The subgraph's
        inputs are the formal ones followed by one per captured outer value;
        the returned list holds those outer values, in the same order."""
        if len(proto.input) != len(input_types):
            raise ctx.error(f"subgraph {name!r} declares {len(proto.input)} inputs, expected {len(input_types)}")
        child = GraphImporter(f"{ctx.name}.{name}", self.opset, self.file, self.onnx_types, parent=self)
        for value, type in zip(proto.input, input_types):
            child.add_input(value.name, type)
        child.add_initializers(proto.initializer)
        child.import_nodes(proto.node)
        outputs = [child.lookup(v.name, ctx) for v in proto.output]
        child.graph.outputs = outputs
        return child.graph, list(child.captures)


def _check_sizes(values: Sequence[Value], ctx) -> None:
    """Refuse an output of more than MAX_ELEMENTS elements before anything
    (folding, a pass, a kernel) allocates it: the input shapes a user gave
    can make a valid model's tensors absurd (a 100000x100000 image)."""
    for value in values:
        shape = value.type.shape
        if all(isinstance(d, int) for d in shape) and math.prod(shape) > MAX_ELEMENTS:
            raise ctx.error(f"output {value.name!r} would have shape {list(shape)} ({math.prod(shape)} elements), "
                            f"more than the limit of {MAX_ELEMENTS} (runtime.kernels.limits.MAX_ELEMENTS): "
                            "are the input shapes right?")


def _to_array(tensor: onnx.TensorProto, file: str) -> np.ndarray:
    try:
        return numpy_helper.to_array(tensor)
    except Exception as exc:
        raise ModelImportError(f"initializer {tensor.name!r} cannot be read: {exc}", file=file) from None
