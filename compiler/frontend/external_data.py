"""ONNX external data: tensors whose bytes live in side files, read from
beside the model file (ONNX's rule: a location is relative to the model's
folder), never from the working directory.

A location that is absolute, holds ``..`` or leaves the folder through a
symbolic link is refused, as is a side file that is not a regular file or
does not hold the bytes the tensor's dims need at its offset. Each tensor's
bytes are read (exactly as many as its dims describe) into the model, so
nothing after the loader ever sees an external reference. A model given as
bytes or a ModelProto has no folder: an external tensor there is an error
that says to pass the path.
"""
from __future__ import annotations

import math
import os
from typing import Iterator

import onnx
from onnx import AttributeProto, TensorProto

from compiler.errors import ModelImportError
from compiler.frontend.validate import raw_bytes, tensor_dims_problem
from runtime.files import MAX_DATA_BYTES, FileError, inside, read_regular


def read_external_data(model: onnx.ModelProto, folder: str | os.PathLike | None, label: str) -> None:
    """Replace every external tensor of ``model`` (in place) by one holding
    its bytes, read from ``folder`` (the model file's; None: none)."""
    for tensor in _tensors(model):
        if tensor.data_location == TensorProto.EXTERNAL:
            _read_tensor(tensor, folder, label)


def _read_tensor(tensor: TensorProto, folder: str | os.PathLike | None, label: str) -> None:
    fields = {entry.key: entry.value for entry in tensor.external_data}
    location = fields.get("location", "")
    where = f"tensor {tensor.name!r} keeps its data in the side file {location!r}"
    if folder is None:
        raise ModelImportError(f"{where}, which can only be read from beside the model file: pass the model's "
                               "path, not bytes or a ModelProto", file=label)
    problem = tensor_dims_problem(tensor)
    if problem is None and tensor.data_type == TensorProto.STRING:
        problem = "is a STRING tensor, which ONNX does not store externally"
    if problem is not None:
        raise ModelImportError(f"tensor {tensor.name!r} {problem}", file=label)
    try:
        path = inside(folder, location)
    except ValueError as exc:
        raise ModelImportError(f"{where}: {exc}", file=label) from None
    want = raw_bytes(tensor.data_type, math.prod(tensor.dims))
    offset = _field(fields, "offset", 0, where, label)
    length = _field(fields, "length", want, where, label)
    if length != want:
        raise ModelImportError(f"{where}: its length is {length} bytes, but its dims {list(tensor.dims)} need "
                               f"{want}", file=label)
    try:
        data = read_regular(path, MAX_DATA_BYTES, "side file", offset=offset, length=want)
    except FileError as exc:
        raise ModelImportError(f"{where}: {exc}", file=label) from None
    del tensor.external_data[:]
    tensor.data_location = TensorProto.DEFAULT
    tensor.raw_data = data


def _field(fields: dict[str, str], key: str, default: int, where: str, label: str) -> int:
    """An external-data entry's ``offset`` or ``length``: a non-negative integer."""
    text = fields.get(key)
    if text is None:
        return default
    if not text.isdigit() or len(text) > 19:
        raise ModelImportError(f"{where}: its {key} {text!r} is not a non-negative integer", file=label)
    return int(text)


def _tensors(model: onnx.ModelProto) -> Iterator[TensorProto]:
    """Every TensorProto in ``model``: initializers (sparse ones' values and
    indices too), and node attributes in the graph, its subgraphs and local
    functions."""
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from _node_tensors(node)


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: onnx.NodeProto) -> Iterator[TensorProto]:
    for attr in node.attribute:
        if attr.type == AttributeProto.TENSOR:
            yield attr.t
        elif attr.type == AttributeProto.TENSORS:
            yield from attr.tensors
        elif attr.type == AttributeProto.SPARSE_TENSOR:
            yield from (attr.sparse_tensor.values, attr.sparse_tensor.indices)
        elif attr.type == AttributeProto.SPARSE_TENSORS:
            for sparse in attr.sparse_tensors:
                yield from (sparse.values, sparse.indices)
        elif attr.type == AttributeProto.GRAPH:
            yield from _graph_tensors(attr.g)
        elif attr.type == AttributeProto.GRAPHS:
            for sub in attr.graphs:
                yield from _graph_tensors(sub)
