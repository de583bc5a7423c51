"""Loading an ONNX model: file or ModelProto, opset checks and upgrades,
local function inlining, and onnx's own shape inference for cross-checks.

Every model is validated first (compiler.frontend.validate). onnx's C++
then runs only where Tessera has no code of its own for the job, and always
in a worker process (compiler.frontend.onnx_isolated), since checks cannot
foresee every crash (a MaxPool kernel wider than its input infers a
negative dim, and a Slice of it aborts shape inference): the inliner for
local functions, the version converter below opset 7, and shape inference
for ``strict_types``' cross-check (tests). An ordinary import runs no shape
inference of onnx's: Tessera's type rules type every value, and shape
computations fold to constants as they are imported."""
from __future__ import annotations

import math
import os
from typing import Mapping, Sequence

import onnx
import onnx.defs
from onnx import ModelProto, TypeProto

from compiler.errors import ModelImportError, UnsupportedOpError
from compiler.frontend.external_data import read_external_data
from compiler.frontend.model_file import read_model_file
from compiler.frontend.onnx_isolated import OnnxOperationError, run_isolated
from compiler.frontend.validate import DEFAULT_DOMAINS, validate_model

MIN_OPSET = 7
"""Older default-domain opsets are upgraded with onnx.version_converter."""

MAX_TESTED_OPSET = 23
"""The newest opset the test-suite models are written in (newer ones load:
each node is checked against the op version Tessera implements)."""


def load_model(model: str | os.PathLike | bytes | ModelProto) -> tuple[ModelProto, str]:
    """A ModelProto and a label for errors (the file name, or "<model>"),
    its external data read from beside the file (compiler.frontend.external_data)."""
    if isinstance(model, (ModelProto, bytes, bytearray)):
        proto, label = (model, model.graph.name or "<model>") if isinstance(model, ModelProto) else \
            (_parse(bytes(model), "<bytes>"), "<bytes>")
        read_external_data(proto, None, label)  # no folder: an external tensor is an error naming it
        return proto, label
    path = os.fspath(model)
    proto = _parse(read_model_file(path), path)
    read_external_data(proto, os.path.dirname(os.path.abspath(path)), path)
    return proto, path


def _parse(data: bytes, label: str) -> ModelProto:
    model = ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError or RuntimeWarning-like errors
        raise ModelImportError(f"not a valid ONNX model ({type(exc).__name__}: {exc})", file=label) from None
    if not model.HasField("graph"):
        raise ModelImportError("not a valid ONNX model (it has no graph)", file=label)
    return model


def prepare_model(model: ModelProto, label: str) -> tuple[ModelProto, int]:
    """Validate the model, inline local functions, check the domains nodes
    use, and upgrade a default-domain opset below 7. Returns the model and
    its opset."""
    opset = model_opset(model, label)
    validate_model(model, opset, label)
    if model.functions:
        model = _inline(model, label)
        validate_model(model, opset, label)  # function attribute references are bound now
    opsets = {imp.domain: imp.version for imp in model.opset_import}
    _check_domains(model.graph, opsets, label)
    if 0 < opset < MIN_OPSET:
        model, opset = _upgrade(model, opset, label)
    return model, opset


def model_opset(model: ModelProto, label: str) -> int:
    """The model's default-domain opset (MIN_OPSET when it imports none but
    has nodes); one newer than the installed onnx knows is an error."""
    opset = max((imp.version for imp in model.opset_import if imp.domain in DEFAULT_DOMAINS), default=0)
    if opset == 0 and model.graph.node:
        opset = MIN_OPSET  # the default domain is implied; treat as the oldest we read
    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise ModelImportError(f"opset {opset} is newer than the installed onnx knows ({newest})", file=label)
    return opset


def _inline(model: ModelProto, label: str) -> ModelProto:
    """onnx's inliner, run in the worker on the model without its large
    weights: they pass through unchanged, and sending them both ways cost
    more than the inlining (ResNet-50's 100 MB: 1.4 s)."""
    light = ModelProto()
    light.CopyFrom(model)
    weights = _weights_as_inputs(light.graph)
    try:
        inlined = run_isolated("inline_local_functions", light, label)
    except OnnxOperationError as exc:  # onnx raised ValidationError or RuntimeError (a failed assertion)
        raise ModelImportError(f"the local functions cannot be inlined: {exc}", file=label) from None
    _restore_weights(inlined.graph, model.graph, weights)
    return inlined


def _restore_weights(graph: onnx.GraphProto, source: onnx.GraphProto, names: set[str]) -> None:
    """Turn the inputs :func:`_weights_as_inputs` made of ``names`` back into
    ``source``'s initializers, in place."""
    inputs = [v for v in graph.input if v.name not in names]
    del graph.input[:]
    graph.input.extend(inputs)
    graph.initializer.extend(t for t in source.initializer if t.name in names)


def _check_domains(graph: onnx.GraphProto, opsets: Mapping[str, int], label: str) -> None:
    for node in _all_nodes(graph):
        if node.domain not in DEFAULT_DOMAINS:
            version = opsets.get(node.domain)
            raise UnsupportedOpError(f"domain {node.domain!r} is not supported (only the default ONNX domain)",
                                     op=f"{node.domain}.{node.op_type}", node=node.name, opset=version,
                                     file=label)


def _all_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _all_nodes(sub)


def _upgrade(model: ModelProto, opset: int, label: str) -> tuple[ModelProto, int]:
    try:
        upgraded = run_isolated("convert_version", model, label, target=MIN_OPSET)
    except OnnxOperationError as exc:
        raise ModelImportError(f"opset {opset} is older than {MIN_OPSET} and onnx.version_converter could not "
                               f"upgrade it: {exc}", file=label) from None
    return upgraded, MIN_OPSET


def infer_onnx_types(model: ModelProto, input_shapes: Mapping[str, Sequence[int]],
                     label: str) -> dict[str, TypeProto]:
    """onnx shape inference (with data propagation, in the worker process)
    after fixing the input shapes: value name -> TypeProto, for
    ``strict_types``' cross-check of Tessera's own type rules. An exception
    of onnx's gives an empty map (nothing to check against); a crash is a
    ModelImportError."""
    fixed = ModelProto()
    fixed.CopyFrom(model)
    stripped = _weights_as_inputs(fixed.graph)
    _drop_declared_shapes(fixed.graph)
    for value in fixed.graph.input:
        if value.name in input_shapes and value.type.HasField("tensor_type"):
            dims = value.type.tensor_type.shape.dim
            del dims[:]
            for d in input_shapes[value.name]:
                dims.add().dim_value = int(d)
    try:
        inferred = run_isolated("infer_shapes", fixed, label)
    except OnnxOperationError:
        return {}
    graph = inferred.graph
    return {v.name: v.type for v in (*graph.value_info, *graph.output, *graph.input) if v.name not in stripped}


def _drop_declared_shapes(graph: onnx.GraphProto) -> None:
    """Forget the shapes ``graph`` declares for its outputs and inner values,
    in place, so that onnx's types come from its rules and not from what the
    file claims (onnx keeps a declared shape that contradicts its own)."""
    del graph.value_info[:]
    for value in graph.output:
        if value.type.HasField("tensor_type"):
            value.type.tensor_type.ClearField("shape")


INFERENCE_WEIGHT_ELEMENTS = 64
"""Float initializers larger than this go to shape inference as typed
inputs, without their values (no shape depends on them)."""
_FLOAT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                          onnx.TensorProto.BFLOAT16})


def _weights_as_inputs(graph: onnx.GraphProto) -> set[str]:
    """Replace the large float initializers of ``graph`` that are not graph
    inputs by inputs of their type and shape, in place; their names. Shape
    inference reads no weight's values (shapes come from small integer
    tensors), and serializing and parsing them again took most of its
    time (ResNet-50's 100 MB: half a second)."""
    declared = {v.name for v in graph.input}
    heavy = [t for t in graph.initializer if t.name not in declared and t.data_type in _FLOAT_TYPES
             and math.prod(t.dims) > INFERENCE_WEIGHT_ELEMENTS]
    if not heavy:
        return set()
    names = {t.name for t in heavy}
    kept = [t for t in graph.initializer if t.name not in names]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    graph.input.extend(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in heavy)
    return names


def node_op_version(op_type: str, opset: int) -> int | None:
    """The version of ``op_type`` in effect at ``opset`` (None if onnx has none)."""
    try:
        return onnx.defs.get_schema(op_type, opset, "").since_version
    except onnx.defs.SchemaError:
        return None
