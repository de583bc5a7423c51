"""Shared by the GEMM engine's tests (tests/runtime/test_gemm.py and
test_gemm_panels.py, float; test_igemm.py, int8): operand layouts, the float64
and exact int8 products, the float tolerance, hypothesis settings, and a guard
that errors come before any compiled code runs."""
from __future__ import annotations

import importlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from runtime.gemm.family import host_isa, narrow_isa

driver = importlib.import_module("runtime.gemm.sgemm")
packers = importlib.import_module("runtime.gemm.pack")
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NEEDS_NARROW = pytest.mark.skipif(
    narrow_isa(host_isa()) is None,
    reason="this host's kernel family has no narrow variant (runtime.gemm.family.narrow_isa: AVX2 and AVX-512 "
           "have one)")
"""Tests of the float kernels' narrow packing, run in-process where the host's family has one."""


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


def reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a.astype(np.float64) @ b.astype(np.float64)


def assert_close(got: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Within float32 rounding of the float64 product: error relative to the
    largest |a| @ |b| (a bound on every partial sum)."""
    scale = max(float((np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))).max()), 1e-30)
    err = float(np.abs(got - reference(a, b)).max()) if got.size else 0.0
    assert err <= 4e-6 * scale, f"error {err:.3g} vs scale {scale:.3g}"
