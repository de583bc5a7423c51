"""The onnx backend node test cases that exercise ops Tessera supports, made
at test time from onnx.backend.test.case (nothing is downloaded)."""
from __future__ import annotations

import functools
import warnings

import onnx
from onnx import helper

from compiler.frontend.context import handled_ops
from compiler.frontend.functions import has_function_body
from ir.errors import IRError
from ir.registry import is_registered
from ir.types import parse_dtype

# Ops the frontend handles without an IR op of the same name.
FRONTEND_ONLY = {"Constant"}


def tessera_ops() -> set[str]:
    import compiler.frontend  # noqa: F401  (registers the handlers)
    return handled_ops() | FRONTEND_ONLY


def _ops_of(graph: onnx.GraphProto) -> set[str]:
    ops = set()
    for node in graph.node:
        ops.add(node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}")
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                ops |= _ops_of(attr.g)
    return ops


def _elem_types(graph: onnx.GraphProto):
    """Every element type a graph declares or creates (values, initializers,
    Constant tensors, Cast targets, output_dtype attributes), subgraphs included."""
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.type.HasField("tensor_type"):
            yield value.type.tensor_type.elem_type
    for tensor in graph.initializer:
        yield tensor.data_type
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t.data_type
            elif attr.name in ("to", "output_dtype") and attr.type == onnx.AttributeProto.INT and attr.i:
                yield attr.i
            elif attr.type == onnx.AttributeProto.GRAPH:
                yield from _elem_types(attr.g)


def dtype_gap(case) -> str | None:
    """Why the IR cannot hold one of the case's element types (bfloat16,
    float8, int4... have no numpy dtype), or None."""
    for elem in _elem_types(case.model.graph):
        if elem == onnx.TensorProto.UNDEFINED:
            continue
        try:
            parse_dtype(helper.tensor_dtype_to_np_dtype(elem))
        except (IRError, KeyError, ValueError, TypeError):
            name = onnx.TensorProto.DataType.Name(elem)
            return f"{name} tensors: numpy has no such dtype, so the IR cannot hold them"
    return None


def _tensor_only(case) -> bool:
    graph = case.model.graph
    values = list(graph.input) + list(graph.output)
    return all(v.type.HasField("tensor_type") for v in values)


@functools.lru_cache(maxsize=1)
def all_cases() -> list:
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return collect_testcases()


def importable(op: str) -> bool:
    """Tessera imports the op: it has an IR op or handler, or onnx defines a
    function body the frontend expands."""
    return op in tessera_ops() or is_registered(op) or has_function_body(op)


def supported(case) -> bool:
    return _tensor_only(case) and all(importable(op) for op in _ops_of(case.model.graph))


def supported_cases() -> list:
    return [c for c in all_cases() if supported(c)]
