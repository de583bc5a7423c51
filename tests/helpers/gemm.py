"""Shared by the GEMM engine's tests (tests/runtime/test_gemm.py, float;
test_igemm.py, int8): operand layouts, the exact int8 product, hypothesis settings, and a guard
that errors come before any compiled code runs."""
from __future__ import annotations

import importlib

import numpy as np
from hypothesis import HealthCheck, settings

driver = importlib.import_module("runtime.gemm.sgemm")
packers = importlib.import_module("runtime.gemm.pack")
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def layout(x: np.ndarray, kind: str) -> np.ndarray:
    """The same values as ``x`` in another memory layout."""
    if kind == "transposed":
        return np.ascontiguousarray(x.T).T
    if kind == "strided":
        wide = np.zeros((x.shape[0] * 2, x.shape[1] * 3), x.dtype)
        wide[::2, ::3] = x
        return wide[::2, ::3]
    if kind == "row_slice":
        wide = np.zeros((x.shape[0], x.shape[1] + 5), x.dtype)
        wide[:, 2:2 + x.shape[1]] = x
        return wide[:, 2:2 + x.shape[1]]
    if kind == "reversed":
        return np.ascontiguousarray(x[::-1])[::-1]
    return np.ascontiguousarray(x)


LAYOUTS = ("c", "transposed", "strided", "row_slice", "reversed")


def int_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a.astype(np.int64) @ b.astype(np.int64)


def forbid_compiled_code(monkeypatch) -> None:
    """Fail if a compiled loop is reached: errors must come first."""
    def forbidden(*args):
        raise AssertionError("compiled code ran before the error")
    monkeypatch.setattr(driver, "_run_placed", forbidden)  # every product sgemm runs goes through it
    for name in ("pack_a_panels", "pack_b_items", "pack_a_int8", "pack_b_int8"):
        monkeypatch.setattr(packers, name, forbidden)
