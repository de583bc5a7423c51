"""The onnx backend node test cases that exercise ops Tessera supports, made
at test time from onnx.backend.test.case (nothing is downloaded)."""
from __future__ import annotations

import functools
import warnings

import onnx

from compiler.frontend.context import handled_ops
from ir.registry import is_registered

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


def supported(case) -> bool:
    ops = _ops_of(case.model.graph)
    return _tensor_only(case) and all(op in tessera_ops() or is_registered(op) for op in ops)


def supported_cases() -> list:
    return [c for c in all_cases() if supported(c)]
