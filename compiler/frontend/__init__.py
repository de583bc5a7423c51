"""The ONNX frontend: ONNX model -> IR graph with static shapes."""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import onnx
from onnx import ModelProto, helper

import compiler.frontend.ops  # noqa: F401  (registers the import handlers)
from compiler.errors import ModelImportError, UnsupportedOpError
from compiler.frontend.importer import GraphImporter
from compiler.frontend.loader import infer_onnx_types, load_model, prepare_model
from compiler.frontend.shapes import image_spec_to_shapes, resolve_input_shape
from ir.errors import IRError
from ir.graph import Graph
from ir.types import TensorType, parse_dtype

__all__ = ["import_onnx", "runtime_inputs", "ModelImportError", "UnsupportedOpError"]


def import_onnx(model: str | os.PathLike | bytes | ModelProto, *,
                shapes: Mapping[str, Sequence[int]] | None = None, image: str | None = None,
                strict_types: bool = False) -> Graph:
    """Import an ONNX model (path, bytes or ModelProto) into an IR graph.

    ``shapes`` gives the shape of inputs with symbolic dims, by input name;
    ``image`` is the FWDNXT size string ("WxHxC" -> NCHW [1, C, H, W], ";"
    between inputs). ``strict_types`` makes a disagreement between Tessera's
    type rules and onnx shape inference an error (on in tests).
    """
    proto, label = load_model(model)
    proto, opset = prepare_model(proto, label)
    graph_proto = proto.graph
    inputs = runtime_inputs(graph_proto)
    given = dict(shapes or {})
    if image is not None:
        given.update(image_spec_to_shapes(image, [v.name for v in inputs]))
    unknown = set(given) - {v.name for v in inputs}
    if unknown:
        raise ModelImportError(f"shapes given for unknown input(s) {sorted(unknown)}; the inputs are "
                               f"{[v.name for v in inputs]}", file=label)
    input_types = {v.name: _input_type(v, given.get(v.name), label) for v in inputs}
    onnx_types = infer_onnx_types(proto, {k: t.shape for k, t in input_types.items()})
    importer = GraphImporter(graph_proto.name or "model", opset, label, onnx_types, strict_types=strict_types)
    importer.add_initializers(graph_proto.initializer)
    for value in inputs:
        importer.add_input(value.name, input_types[value.name])
    importer.import_nodes(graph_proto.node)
    graph = importer.graph
    graph.outputs = [importer.lookup(v.name) for v in graph_proto.output]
    graph.remove_unused_values()
    return graph


def runtime_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """The inputs a caller feeds: graph inputs that are not initializers."""
    initialized = {t.name for t in graph.initializer}
    return [v for v in graph.input if v.name not in initialized]


def _input_type(value: onnx.ValueInfoProto, given: Sequence[int] | None, label: str) -> TensorType:
    if not value.type.HasField("tensor_type"):
        kind = value.type.WhichOneof("value")
        raise UnsupportedOpError(f"input {value.name!r} is a {kind}; only tensor inputs are supported", file=label)
    tensor = value.type.tensor_type
    try:
        dtype = parse_dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type))
    except (KeyError, ValueError, IRError):
        type_name = onnx.TensorProto.DataType.Name(tensor.elem_type) if tensor.elem_type in \
            onnx.TensorProto.DataType.values() else str(tensor.elem_type)
        raise UnsupportedOpError(f"input {value.name!r} has element type {type_name}, which Tessera does not "
                                 "support", file=label) from None
    if not tensor.HasField("shape"):
        if given is None:
            raise ModelImportError(f"input {value.name!r} has no shape; give one with shapes=", file=label)
        declared = [None] * len(given)
    else:
        declared = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim]
    try:
        return TensorType(resolve_input_shape(value.name, declared, given), dtype)
    except ModelImportError as exc:
        raise ModelImportError(exc.reason, file=label) from None
