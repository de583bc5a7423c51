"""ONNX attributes -> plain Python values (ints, floats, strings, lists,
numpy arrays; subgraphs stay GraphProtos for their op's handler)."""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import AttributeProto, numpy_helper

from compiler.errors import ModelImportError, UnsupportedOpError


def convert_attributes(node: onnx.NodeProto, where: dict) -> dict[str, Any]:
    attrs = {}
    for attr in node.attribute:
        if attr.ref_attr_name:
            raise ModelImportError(f"attribute {attr.name!r} refers to a function attribute outside a function",
                                   **where)
        attrs[attr.name] = convert_attribute(attr, where)
    return attrs


def convert_attribute(attr: AttributeProto, where: dict) -> Any:
    kind = attr.type
    try:
        if kind == AttributeProto.FLOAT:
            return float(attr.f)
        if kind == AttributeProto.INT:
            return int(attr.i)
        if kind == AttributeProto.STRING:
            return attr.s.decode("utf-8")
        if kind == AttributeProto.TENSOR:
            return numpy_helper.to_array(attr.t)
        if kind == AttributeProto.SPARSE_TENSOR:
            return _dense(attr.sparse_tensor)
        if kind == AttributeProto.GRAPH:
            return attr.g
        if kind == AttributeProto.FLOATS:
            return [float(v) for v in attr.floats]
        if kind == AttributeProto.INTS:
            return [int(v) for v in attr.ints]
        if kind == AttributeProto.STRINGS:
            return [s.decode("utf-8") for s in attr.strings]
        if kind == AttributeProto.TENSORS:
            return [numpy_helper.to_array(t) for t in attr.tensors]
        if kind == AttributeProto.GRAPHS:
            return list(attr.graphs)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ModelImportError(f"attribute {attr.name!r} cannot be read: {exc}", **where) from None
    raise UnsupportedOpError(f"attribute {attr.name!r} has type {AttributeProto.AttributeType.Name(kind)}, "
                             "which Tessera does not read", **where)


def _dense(sparse: onnx.SparseTensorProto) -> np.ndarray:
    values = numpy_helper.to_array(sparse.values)
    indices = numpy_helper.to_array(sparse.indices).astype(np.int64)
    dense = np.zeros(int(np.prod(sparse.dims)), dtype=values.dtype)
    flat = indices if indices.ndim == 1 else np.ravel_multi_index(indices.T, tuple(sparse.dims))
    dense[flat] = values
    return dense.reshape(tuple(sparse.dims))
