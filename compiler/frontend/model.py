"""An ONNX model loaded and prepared once, importable for any input shapes.

Loading, function inlining and opset upgrades do not depend on the input
shapes, so they happen here once; :meth:`OnnxModel.to_graph` then imports
the model for one set of static input shapes (the backend does this per input
signature of a model with dynamic dims).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import ModelProto, helper

from compiler.errors import ModelImportError, UnsupportedOpError
from compiler.frontend.importer import GraphImporter
from compiler.frontend.loader import infer_onnx_types, load_model, prepare_model
from compiler.frontend.shapes import DeclaredDim, declared_dims, image_spec_to_shapes, merge_input_shape
from ir.errors import IRError
from ir.graph import Graph
from ir.types import TensorType, parse_dtype


@dataclass(frozen=True)
class ModelInput:
    """An input a caller feeds: its name, declared dims (None: no shape
    declared) and element type."""
    name: str
    dims: tuple[DeclaredDim, ...] | None
    dtype: np.dtype


class OnnxModel:
    """A loaded and prepared ONNX model (a path, bytes or ModelProto)."""

    def __init__(self, model: str | os.PathLike | bytes | ModelProto):
        proto, self.label = load_model(model)
        self.proto, self.opset = prepare_model(proto, self.label)
        self.inputs = [_model_input(v, self.label) for v in runtime_inputs(self.proto.graph)]

    def input_dims(self, shapes: Mapping[str, Sequence[int]] | None = None,
                   image: str | None = None) -> dict[str, list[DeclaredDim] | None]:
        """Each input's dims once the user's ``shapes`` (by input name) and
        FWDNXT ``image`` string are applied; dims neither fixes stay dynamic."""
        declared = {v.name: v.dims for v in self.inputs}
        given = dict(shapes or {})
        try:
            if image is not None:
                given.update(image_spec_to_shapes(image, declared))
            unknown = set(given) - set(declared)
            if unknown:
                raise ModelImportError(f"shapes given for unknown input(s) {sorted(unknown)}; the inputs are "
                                       f"{list(declared)}")
            return {name: merge_input_shape(name, dims, given.get(name)) for name, dims in declared.items()}
        except ModelImportError as exc:
            raise ModelImportError(exc.reason, file=self.label) from None

    def to_graph(self, shapes: Mapping[str, Sequence[int]], strict_types: bool = False) -> Graph:
        """Import the model with these static input shapes (one per input).
        ``strict_types`` runs onnx's shape inference too and makes a
        disagreement with Tessera's type rules an error (on in tests)."""
        graph_proto = self.proto.graph
        onnx_types = infer_onnx_types(self.proto, shapes, self.label) if strict_types else None
        importer = GraphImporter(graph_proto.name or "model", self.opset, self.label, onnx_types)
        importer.add_initializers(graph_proto.initializer)
        for value in self.inputs:
            importer.add_input(value.name, TensorType(shapes[value.name], value.dtype))
        importer.import_nodes(graph_proto.node)
        graph = importer.graph
        graph.outputs = [importer.lookup(v.name) for v in graph_proto.output]
        graph.remove_unused_values()
        return graph


def runtime_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """The inputs a caller feeds: graph inputs that are not initializers."""
    initialized = {t.name for t in graph.initializer}
    return [v for v in graph.input if v.name not in initialized]


def _model_input(value: onnx.ValueInfoProto, label: str) -> ModelInput:
    if not value.type.HasField("tensor_type"):
        kind = value.type.WhichOneof("value")
        raise UnsupportedOpError(f"input {value.name!r} is a {kind}; only tensor inputs are supported", file=label)
    elem_type = value.type.tensor_type.elem_type
    try:
        dtype = parse_dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, ValueError, IRError):
        type_name = onnx.TensorProto.DataType.Name(elem_type) if elem_type in \
            onnx.TensorProto.DataType.values() else str(elem_type)
        raise UnsupportedOpError(f"input {value.name!r} has element type {type_name}, which Tessera does not "
                                 "support", file=label) from None
    dims = declared_dims(value)
    return ModelInput(value.name, None if dims is None else tuple(dims), dtype)
