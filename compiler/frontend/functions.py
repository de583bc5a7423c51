"""Expanding ONNX function ops (GroupNormalization, RMSNormalization,
Attention, SwiGLU, ...) that Tessera has no IR op for into their function
bodies, as onnx defines them, so that they import through the ops Tessera
does have. The body's nodes import at the opset the body is written for."""
from __future__ import annotations

from typing import TYPE_CHECKING

import onnx
import onnx.defs
from onnx import helper

from ir.graph import HELPER_SEPARATOR
from ir.types import TensorType

if TYPE_CHECKING:
    from compiler.frontend.context import NodeContext


def has_function_body(op_type: str, known: frozenset[str] | None = None) -> bool:
    """Whether onnx defines a function body for the op (at its newest
    version). With ``known`` (the ops imported directly), a fixed body must
    also use only known or expandable ops (context-dependent bodies exist
    only for a given node, so they cannot be checked ahead)."""
    try:
        schema = onnx.defs.get_schema(op_type)
    except onnx.defs.SchemaError:
        return False
    if schema.has_function and known is not None:
        body = schema.function_body
        return all(n.op_type in known or (n.op_type != op_type and has_function_body(n.op_type, known))
                   for n in body.node)
    return bool(schema.has_function or schema.has_context_dependent_function)


def function_body(ctx: NodeContext) -> onnx.FunctionProto | None:
    """The body onnx defines for this node's op at the model's opset, or None."""
    try:
        schema = onnx.defs.get_schema(ctx.op_type, ctx.opset, "")
    except onnx.defs.SchemaError:
        return None
    body = onnx.FunctionProto()
    if schema.has_function:
        version = _body_version(schema.function_opset_versions, ctx.opset)
        body.ParseFromString(schema.get_function_with_opset_version(version))
    elif schema.has_context_dependent_function:
        version = _body_version(schema.context_dependent_function_opset_versions, ctx.opset)
        types = [_type_proto(v.type if v is not None else None).SerializeToString() for v in ctx.inputs]
        data = schema.get_context_dependent_function_with_opset_version(version, ctx.proto.SerializeToString(),
                                                                        types)
        if not data:
            return None
        body.ParseFromString(data)
    else:
        return None
    return body


def expand(ctx: NodeContext, body: onnx.FunctionProto) -> None:
    """Import the body's nodes in place of the node, names prefixed by it."""
    opset = next((imp.version for imp in body.opset_import if imp.domain in ("", "ai.onnx")), ctx.opset)
    names = _name_map(ctx, body)
    attrs = _attribute_values(ctx, body)
    for index, node in enumerate(body.node):
        label = node.name or f"{node.op_type}_{index}"
        inner = _instantiate(node, names, attrs, f"{ctx.name}{HELPER_SEPARATOR}{label}")
        ctx.importer.import_node(inner, index, opset=opset)


def _body_version(versions, opset: int) -> int:
    """The newest body written for an opset no newer than the model's."""
    usable = [v for v in versions if v <= opset]
    return max(usable) if usable else min(versions)


def _type_proto(type: TensorType | None) -> onnx.TypeProto:
    if type is None:
        return onnx.TypeProto()
    elem = helper.np_dtype_to_tensor_dtype(type.dtype)
    return helper.make_tensor_type_proto(elem, [d if d is not None else "?" for d in type.shape])


def _name_map(ctx: NodeContext, body: onnx.FunctionProto) -> dict[str, str]:
    """Formal inputs/outputs -> the node's names; locals -> names under the node."""
    names = {}
    for i, formal in enumerate(body.input):
        names[formal] = ctx.proto.input[i] if i < len(ctx.proto.input) else ""
    for i, formal in enumerate(body.output):
        names[formal] = ctx.proto.output[i] if i < len(ctx.proto.output) else ""
    for node in body.node:
        for out in node.output:
            names.setdefault(out, f"{ctx.name}/{out}" if out else "")
    return names


def _attribute_values(ctx: NodeContext, body: onnx.FunctionProto) -> dict[str, onnx.AttributeProto]:
    """The node's attributes, then the defaults (the op schema's, the body's)
    for those it lacks."""
    schema = onnx.defs.get_schema(ctx.op_type, ctx.opset, "")
    values = {name: a.default_value for name, a in schema.attributes.items() if a.default_value.name}
    values.update({a.name: a for a in body.attribute_proto})
    values.update({a.name: a for a in ctx.proto.attribute})
    return values


def _instantiate(node: onnx.NodeProto, names: dict[str, str], attrs: dict[str, onnx.AttributeProto],
                 name: str) -> onnx.NodeProto:
    inner = onnx.NodeProto()
    inner.CopyFrom(node)
    inner.name = name
    inner.input[:] = [names.get(n, n) for n in node.input]
    inner.output[:] = [names.get(n, n) for n in node.output]
    del inner.attribute[:]
    for attr in node.attribute:
        if attr.ref_attr_name:
            if attr.ref_attr_name in attrs:
                value = onnx.AttributeProto()
                value.CopyFrom(attrs[attr.ref_attr_name])
                value.name = attr.name
                inner.attribute.append(value)
        else:
            value = onnx.AttributeProto()
            value.CopyFrom(attr)
            if value.type == onnx.AttributeProto.GRAPH:
                _rename_graph(value.g, names)
            inner.attribute.append(value)
    return inner


def _rename_graph(graph: onnx.GraphProto, names: dict[str, str]) -> None:
    """Subgraphs in a body may read the body's values by name."""
    for value in graph.output:
        value.name = names.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [names.get(n, n) for n in node.input]
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _rename_graph(attr.g, names)
