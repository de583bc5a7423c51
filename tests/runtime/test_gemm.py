"""Tessera's GEMM engine: results against numpy, packed operands, errors
raised before any compiled code runs, no access outside the operands, and
concurrent callers."""
import ctypes
import mmap
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.errors import KernelError
from runtime.gemm import (
    PackedMatrix,
    PackedProduct,
    family,
    igemm,
    pack_weights,
    sgemm,
    sgemm_batched,
)
from runtime.gemm.family import UNIT, host_isa
from runtime.gemm.microkernel_ir import kernel_ir
from runtime.gemm.tasks import task_block
from tests.helpers.gemm import LAYOUTS, SETTINGS, driver, forbid_compiled_code, int_reference, layout, packers


def reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a.astype(np.float64) @ b.astype(np.float64)


def assert_close(got: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Within float32 rounding of the float64 product: error relative to the
    largest |a| @ |b| (a bound on every partial sum)."""
    scale = max(float((np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))).max()), 1e-30)
    err = float(np.abs(got - reference(a, b)).max()) if got.size else 0.0
    assert err <= 4e-6 * scale, f"error {err:.3g} vs scale {scale:.3g}"




@SETTINGS
@given(m=st.integers(1, 70), k=st.integers(1, 300), n=st.integers(1, 130),
       a_kind=st.sampled_from(LAYOUTS), b_kind=st.sampled_from(LAYOUTS), seed=st.integers(0, 2 ** 16))
def test_matches_numpy_for_any_shape_and_layout(m, k, n, a_kind, b_kind, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    assert_close(sgemm(layout(a, a_kind), layout(b, b_kind)), a, b)


@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (1, 7, 1), (5, 1, 9), (1, 300, 3136), (300, 64, 1), (8, 257, 48),
                                     (9, 513, 49), (64, 64, 3136), (512, 4608, 49), (2048, 512, 49),
                                     (17, 1, 100), (3, 2, 1000)])
def test_edges_and_resnet_shapes(m, k, n):
    rng = np.random.default_rng(m * 7 + k * 3 + n)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    got = sgemm(a, b)
    assert got.shape == (m, n) and got.dtype == np.float32
    assert_close(got, a, b)


@pytest.mark.parametrize("m", [60, 64, 67, 128, 200])
@pytest.mark.parametrize("n", [1, 2, 3, 9, 11, 25, 50, 51, 52, 57])
def test_ragged_last_columns_of_many_rows(m, n):
    """The last 1 to 3 columns past a multiple of 8 go through the remainder
    kernels, Isa.remainder_panels row panels at a time (8 on AVX-512, 4 on AVX2)."""
    rng = np.random.default_rng(m * n)
    a = rng.standard_normal((m, 70), dtype=np.float32)
    b = rng.standard_normal((70, n), dtype=np.float32)
    bias = rng.standard_normal(m, dtype=np.float32)
    got = sgemm(a, b, bias=bias)
    assert_close(got - bias[:, None], a, b)
    sgemm(None, None, got, packed_a=pack_weights(a), packed_b=pack_weights(b, side="right"), accumulate=True)
    assert_close((got - bias[:, None]) / 2, a, b)


def test_error_is_numpy_class_for_deep_products():
    """K = 4608: about as close to float64 as numpy's own float32 BLAS."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((64, 4608), dtype=np.float32)
    b = rng.standard_normal((4608, 49), dtype=np.float32)
    exact = reference(a, b)
    ours = np.abs(sgemm(a, b) - exact).max() / np.abs(exact).max()
    theirs = np.abs(a @ b - exact).max() / np.abs(exact).max()
    assert ours < 2e-6 and ours < 3 * theirs + 1e-7


@pytest.mark.parametrize("side", ["left", "right", "both"])
def test_packed_operands_are_reused(side):
    rng = np.random.default_rng(2)
    a = rng.standard_normal((70, 300), dtype=np.float32)
    b1, b2 = (rng.standard_normal((300, 61), dtype=np.float32) for _ in range(2))
    packed_a = pack_weights(a) if side in ("left", "both") else None
    for b in (b1, b2):
        packed_b = pack_weights(b, side="right") if side in ("right", "both") else None
        got = sgemm(None if packed_a else a, None if packed_b else b, packed_a=packed_a, packed_b=packed_b)
        np.testing.assert_array_equal(got, sgemm(a, b))


def test_packed_form_is_an_immutable_copy():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((20, 40), dtype=np.float32)
    b = rng.standard_normal((40, 30), dtype=np.float32)
    packed = pack_weights(a)
    expected = sgemm(a, b)
    a[:] = 0
    np.testing.assert_array_equal(sgemm(None, b, packed_a=packed), expected)
    assert isinstance(packed, PackedMatrix) and packed.shape == (20, 40)
    with pytest.raises(ValueError):
        packed.data[0] = 1.0


def test_out_and_accumulate_write_only_the_output_view():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((19, 33), dtype=np.float32)
    b = rng.standard_normal((33, 50), dtype=np.float32)
    canvas = np.full((25, 60), 7.0, np.float32)
    view = canvas[3:22, 5:55]
    result = sgemm(a, b, view)
    assert result is view
    assert_close(view, a, b)
    sgemm(a, b, view, accumulate=True)
    assert_close(view / 2, a, b)
    untouched = np.ones_like(canvas, bool)
    untouched[3:22, 5:55] = False
    assert (canvas[untouched] == 7.0).all()


def test_output_overlapping_an_input_is_still_right():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((40, 40), dtype=np.float32)
    b = rng.standard_normal((40, 40), dtype=np.float32)
    expected = reference(a, b)
    sgemm(a, b, out=b)
    np.testing.assert_allclose(b, expected, rtol=1e-4, atol=1e-4)


def test_transposed_output_is_filled():
    rng = np.random.default_rng(6)
    a = rng.standard_normal((30, 20), dtype=np.float32)
    b = rng.standard_normal((20, 40), dtype=np.float32)
    out = np.empty((40, 30), np.float32).T
    sgemm(a, b, out)
    assert_close(out, a, b)


@SETTINGS
@given(g=st.integers(1, 36), m=st.integers(1, 40), k=st.integers(1, 90), n=st.integers(1, 100),
       packed=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_batched_products(g, m, k, n, packed, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((g, m, k), dtype=np.float32)
    b = rng.standard_normal((g, k, n), dtype=np.float32)
    got = sgemm_batched(None, b, packed_a=pack_weights(a)) if packed else sgemm_batched(a, b)
    assert got.shape == (g, m, n)
    for i in range(g):
        assert_close(got[i], a[i], b[i])


def test_depth_zero_gives_zeros_or_leaves_accumulator():
    out = np.full((3, 4), 5.0, np.float32)
    sgemm(np.ones((3, 0), np.float32), np.ones((0, 4), np.float32), out, accumulate=True)
    assert (out == 5.0).all()
    assert (sgemm(np.ones((3, 0), np.float32), np.ones((0, 4), np.float32)) == 0).all()
    assert sgemm(np.ones((0, 3), np.float32), np.ones((3, 4), np.float32)).shape == (0, 4)


@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (13, 300, 61), (64, 64, 100), (9, 600, 49)])
def test_row_bias_joins_the_sum(m, k, n):
    rng = np.random.default_rng(m + k + n)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    bias = rng.standard_normal(m, dtype=np.float32)
    assert_close(sgemm(a, b, bias=bias) - bias[:, None], a, b)
    out = np.ones((m, n), np.float32)
    sgemm(None, b, out, packed_a=pack_weights(a), bias=bias, accumulate=True)
    assert_close(out - 1 - bias[:, None], a, b)
    batched = sgemm_batched(a[None], b[None], bias=bias[None])
    assert_close(batched[0] - bias[:, None], a, b)


def test_non_finite_values_stay_in_their_rows_and_columns():
    a = np.ones((10, 12), np.float32)
    b = np.ones((12, 20), np.float32)
    a[3, 5] = np.nan
    b[7, 11] = np.inf
    got = sgemm(a, b)
    expected = a @ b
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))


# ------------------------------------------------------------------ errors
@pytest.fixture
def no_compiled_code(monkeypatch):
    forbid_compiled_code(monkeypatch)


@pytest.mark.parametrize("a, b, kwargs, match", [
    (np.ones((2, 3)), np.ones((3, 4), np.float32), {}, "a must be float32"),
    (np.ones((2, 3), np.float32), np.ones((3, 4), np.int8), {}, "b must be float32"),
    (np.ones((2, 3), np.float32), np.ones((4, 4), np.float32), {}, "cannot multiply"),
    (np.ones(3, np.float32), np.ones((3, 4), np.float32), {}, "2-D"),
    (np.ones((2, 3), np.float32), [[1.0]], {}, "numpy array"),
    (None, np.ones((3, 4), np.float32), {}, "a is missing"),
    (np.ones((2, 3), np.float32), np.ones((3, 4), np.float32), {"out": np.ones((2, 5), np.float32)}, "out has shape"),
    (np.ones((2, 3), np.float32), np.ones((3, 4), np.float32), {"out": np.ones((2, 4))}, "out must be float32"),
    (np.ones((2, 3), np.float32), np.ones((3, 4), np.float32), {"accumulate": True}, "needs out"),
])
def test_bad_operands_raise_kernel_error(no_compiled_code, a, b, kwargs, match):
    with pytest.raises(KernelError, match=match):
        sgemm(a, b, **kwargs)


def test_bad_packed_operands_raise_kernel_error(monkeypatch):
    b = np.ones((3, 4), np.float32)
    packed = pack_weights(np.ones((2, 3), np.float32))
    forbid_compiled_code(monkeypatch)
    with pytest.raises(KernelError, match="side='left'"):
        sgemm(None, b, packed_a=np.ones((2, 3), np.float32))
    with pytest.raises(KernelError, match="packed from shape"):
        sgemm(np.ones((2, 5), np.float32), np.ones((5, 4), np.float32), packed_a=packed)
    with pytest.raises(KernelError, match="batch of matrices"):
        sgemm_batched(None, b[None], packed_a=packed)
    with pytest.raises(KernelError, match="side"):
        pack_weights(np.ones((2, 3), np.float32), side="top")
    with pytest.raises(KernelError, match="non-empty"):
        pack_weights(np.ones((0, 3), np.float32))
    readonly = np.ones((2, 4), np.float32)
    readonly.flags.writeable = False
    with pytest.raises(KernelError, match="read-only"):
        sgemm(None, b, readonly, packed_a=packed)


# ------------------------------------------------------------------ memory safety
def guarded(shape, dtype=np.float32) -> np.ndarray:
    """An array whose last byte is followed by an inaccessible page, so any
    read or write past its end faults."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    page = mmap.PAGESIZE
    pages = -(-nbytes // page) + 1
    region = mmap.mmap(-1, pages * page)
    base = ctypes.addressof(ctypes.c_char.from_buffer(region))
    guard = base + (pages - 1) * page
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    if libc.mprotect(guard, page, 0) != 0:
        pytest.skip("mprotect is not available")
    return np.frombuffer(region, dtype, count=int(np.prod(shape)), offset=guard - base - nbytes).reshape(shape)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="guard pages through mprotect")
@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (9, 3, 49), (13, 70, 17), (8, 16, 48), (3, 5, 61), (16, 300, 33),
                                     (60, 40, 49), (64, 20, 1), (130, 33, 51)])
def test_edge_tiles_stay_inside_the_operands(m, k, n):
    rng = np.random.default_rng(7)
    a, b, out = guarded((m, k)), guarded((k, n)), guarded((m, n))
    a[:] = rng.standard_normal((m, k))
    b[:] = rng.standard_normal((k, n))
    sgemm(a, b, out)
    assert_close(out, a, b)
    bias = guarded((m,))
    bias[:] = 1.0
    sgemm(None, None, out, packed_a=pack_weights(a), packed_b=pack_weights(b, side="right"), bias=bias,
          accumulate=True)
    np.testing.assert_allclose(out, 2 * reference(a, b) + 1, rtol=1e-5, atol=1e-5 * np.sqrt(k))
    ia, ib, iout = guarded((m, k), np.int8), guarded((k, n), np.int8), guarded((m, n), np.int32)
    ia[:] = rng.integers(-128, 128, (m, k))
    ib[:] = rng.integers(-128, 128, (k, n))
    ibias = guarded((m,), np.int32)
    ibias[:] = 5
    igemm(ia, ib, iout, bias=ibias)
    np.testing.assert_array_equal(iout, int_reference(ia, ib) + 5)


# ------------------------------------------------------------------ threads, ISAs, BLAS
def test_concurrent_callers_get_their_own_results():
    rng = np.random.default_rng(8)
    jobs = [(rng.standard_normal((64 + 8 * i, 100 + i), dtype=np.float32),
             rng.standard_normal((100 + i, 300 - 20 * i), dtype=np.float32)) for i in range(4)]
    packed = [pack_weights(a) for a, _ in jobs]
    failures = []

    def worker(index):
        a, b = jobs[index]
        for _ in range(15):
            got = sgemm(None, b, packed_a=packed[index]) if index % 2 else sgemm(a, b)
            if np.abs(got - reference(a, b)).max() > 1e-3:
                failures.append(index)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_kernels_are_llvm_ir_text():
    float_ir, int_ir = kernel_ir(host_isa(), "f32"), kernel_ir(host_isa(), "u8s8")
    assert float_ir.startswith("; Tessera GEMM microkernels") and "define void @tessera_f32_" in float_ir
    assert "llvm.fma" in float_ir and "define void @tessera_u8s8_" in int_ir
    assert "%anext" in float_ir and "%anext" not in int_ir  # float tiles ask for the A lines ahead


AVX2_CHECK = """
import numpy as np
from runtime.gemm import igemm, pack_weights, sgemm
from runtime.gemm import microkernel
from runtime.gemm.family import host_isa
assert host_isa().name == "avx2"
rng = np.random.default_rng(0)
a = rng.standard_normal((37, 129), dtype=np.float32)
b = rng.standard_normal((129, 53), dtype=np.float32)
ref = a.astype(np.float64) @ b
assert np.abs(sgemm(a, b) - ref).max() < 1e-4
assert np.abs(sgemm(None, b, packed_a=pack_weights(a), bias=np.ones(37, np.float32)) - ref - 1).max() < 1e-4
ia = rng.integers(-128, 128, (37, 131), dtype=np.int8)
ib = rng.integers(-128, 128, (131, 53), dtype=np.int8)
assert (igemm(ia, ib) == ia.astype(np.int64) @ ib.astype(np.int64)).all()
r = rng.standard_normal((37, 53), dtype=np.float32)
got = sgemm(a, b, bias=np.ones(37, np.float32), residual=r, clamp=(0.0, 6.0))
assert np.abs(got - np.clip(ref + 1 + r, 0, 6)).max() < 1e-4
"""


def test_avx2_kernels_when_the_host_has_avx2():
    """The AVX2 family (and its int8 kernels without VNNI), forced on this host."""
    import llvmlite.binding as llvm
    if not llvm.get_host_cpu_features().get("avx2"):
        pytest.skip("no AVX2 on this host")
    env = dict(os.environ, TESSERA_GEMM_ISA="avx2")
    result = subprocess.run([sys.executable, "-c", AVX2_CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


TALL_CHECK = """
import dataclasses
import numpy as np
from runtime.gemm import PackedProduct, pack_weights, sgemm
import importlib
driver = importlib.import_module("runtime.gemm.sgemm")
from runtime.gemm.family import host_isa
isa = host_isa()
assert isa.name == "avx2" and isa.tall_panels == 2
plain = dataclasses.replace(isa, tall_panels=0)
def products(a, b, bias, residual, start, chosen):
    driver.host_isa = lambda: chosen
    driver._plans.clear()
    packed = pack_weights(a)
    acc = start.copy()
    sgemm(None, b, acc, packed_a=packed, accumulate=True)
    m, n = acc.shape
    return (sgemm(None, b, packed_a=packed, bias=bias, residual=residual, clamp=(-1.0, 2.0)), acc,
            sgemm(a, np.asfortranarray(b)),
            PackedProduct(packed, n, bias, (0.0, 6.0), residual=True).run(b, np.empty((m, n), np.float32), residual))
for m, k, n in [(8, 20, 4), (13, 700, 4), (37, 300, 8), (64, 129, 28), (5, 40, 2), (96, 1100, 100), (30, 64, 196)]:
    rng = np.random.default_rng(m * k + n)
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    bias, residual = rng.standard_normal(m).astype(np.float32), rng.standard_normal((m, n)).astype(np.float32)
    start = rng.standard_normal((m, n)).astype(np.float32)
    tall = products(a, b, bias, residual, start, isa)
    for got, expected in zip(tall, products(a, b, bias, residual, start, plain)):
        assert np.array_equal(got, expected), (m, k, n)
    assert np.abs(tall[2] - a.astype(np.float64) @ b).max() < 1e-3 * max(1, k ** 0.5)
"""


def test_the_tall_tile_gives_the_plain_tiles_bits():
    """AVX2's tall tile (two row panels of a column panel one UNIT wide at
    once: Isa.tall_panels) runs each element's multiply-add chain as the
    plain tile does: the same bits, with every epilogue, accumulating,
    packed or read in place, for products whose last panel is narrow (N =
    2, 4, 8, 28 = 24 + 4, 100, 196) and partial row pairs (M = 5, 13, 37)."""
    import llvmlite.binding as llvm
    if not llvm.get_host_cpu_features().get("avx2"):
        pytest.skip("no AVX2 on this host")
    env = dict(os.environ, TESSERA_GEMM_ISA="avx2")
    result = subprocess.run([sys.executable, "-c", TALL_CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_a_cpu_without_avx2_is_reported_not_crashed(monkeypatch):
    assert family.available() is True
    monkeypatch.setattr(family.llvm, "get_host_cpu_features", lambda: {})
    with pytest.raises(KernelError, match="AVX2"):
        host_isa.__wrapped__(False)


# ---------------------------------------------------------------- the float epilogue
def epilogue_reference(a, b, bias, residual, clamp):
    """float64 a @ b + bias + residual, then numpy's maximum and minimum."""
    ref = reference(a, b) + (0 if bias is None else bias[..., None]) + (0 if residual is None else residual)
    if clamp is not None:
        ref = np.minimum(np.maximum(ref, clamp[0]), clamp[1])
    return ref


@SETTINGS
@given(m=st.integers(1, 40), k=st.integers(1, 300), n=st.integers(1, 70), with_bias=st.booleans(),
       with_residual=st.booleans(), clamp=st.sampled_from([None, (0.0, np.inf), (0.0, 6.0), (-np.inf, 0.5)]),
       packed=st.booleans(), seed=st.integers(0, 2**16))
def test_sgemm_epilogue_matches_float64(m, k, n, with_bias, with_residual, clamp, packed, seed):
    """Bias, residual and clamp on every tile kind: whole, partial, the
    remainder columns, several reduction blocks."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
    bias = rng.standard_normal(m, dtype=np.float32) if with_bias else None
    residual = rng.standard_normal((m, n), dtype=np.float32) if with_residual else None
    got = sgemm(None if packed else a, b, packed_a=pack_weights(a) if packed else None, bias=bias,
                residual=residual, clamp=clamp)
    scale = float((np.abs(a.astype(np.float64)) @ np.abs(b)).max()) + 1
    np.testing.assert_allclose(got, epilogue_reference(a, b, bias, residual, clamp), rtol=0, atol=4e-6 * scale)
    if clamp is not None:
        assert got.min() >= clamp[0] and got.max() <= clamp[1]


def test_sgemm_epilogue_clamp_keeps_nan_and_infinities():
    b = np.array([[np.nan, -np.inf, np.inf, -1, 0.5, 7, -0.0]], np.float32)
    got = sgemm(np.ones((1, 1), np.float32), b, clamp=(0.0, 6.0))
    np.testing.assert_array_equal(got, [[np.nan, 0, 6, 0, 0.5, 6, 0]])
    relu = sgemm(np.ones((1, 1), np.float32), b, clamp=(0.0, np.inf))
    np.testing.assert_array_equal(relu, np.maximum(b, 0))


def test_sgemm_residual_strided_overlapping_and_batched():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((20, 40), dtype=np.float32), rng.standard_normal((40, 30), dtype=np.float32)
    wide = rng.standard_normal((20, 45), dtype=np.float32)
    residual = wide[:, 5:35]
    np.testing.assert_allclose(sgemm(a, b, residual=residual), reference(a, b) + residual, atol=1e-4)
    out = residual.copy()  # the residual is the output itself: read before it is written
    sgemm(a, b, out, residual=out)
    np.testing.assert_allclose(out, reference(a, b) + residual, atol=1e-4)
    a3, b3 = rng.standard_normal((3, 9, 17), dtype=np.float32), rng.standard_normal((3, 17, 11), dtype=np.float32)
    r3 = rng.standard_normal((3, 9, 11), dtype=np.float32)
    got = sgemm_batched(None, b3, packed_a=pack_weights(a3), residual=r3, clamp=(0.0, np.inf))
    np.testing.assert_allclose(got, np.maximum(a3.astype(np.float64) @ b3 + r3, 0), atol=1e-4)


def test_sgemm_epilogue_on_a_depth_zero_product():
    out = sgemm(np.ones((3, 0), np.float32), np.ones((0, 4), np.float32), bias=np.array([1, -2, 8], np.float32),
                residual=np.ones((3, 4), np.float32), clamp=(0.0, 6.0))
    np.testing.assert_array_equal(out, np.repeat([[2.0], [0.0], [6.0]], 4, axis=1))


@pytest.mark.parametrize("kwargs, match", [
    ({"residual": np.ones((3, 5), np.float32)}, "residual has shape"),
    ({"residual": np.ones((3, 4), np.float64)}, "residual must be float32"),
    ({"clamp": (0.0,)}, "clamp must be"),
    ({"clamp": ("a", 1.0)}, "clamp must be"),
])
def test_sgemm_epilogue_errors(kwargs, match):
    with pytest.raises(KernelError, match=match):
        sgemm(np.ones((3, 2), np.float32), np.ones((2, 4), np.float32), **kwargs)


@pytest.mark.parametrize("m, k, n", [(64, 192, 49), (63, 512, 100), (128, 520, 30), (200, 1000, 7), (96, 400, 16),
                                     (70, 300, 8), (66, 260, 64)])
def test_packing_a_contiguous_b_or_reading_it_in_place_gives_the_same_bits(monkeypatch, m, k, n):
    """Deep products with many rows pack even a contiguous B where a packed
    panel stays in L1: the same products summed in the same order as reading
    it in place, so the same bits, through sgemm and a PackedProduct; a
    narrow last panel that B's columns fill (N = 8, 16, 64 = 48 + 16) is
    read in place too."""
    from runtime.gemm.tasks import DIRECT, PACK

    rng = np.random.default_rng(m + k + n)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    packed = pack_weights(a)
    kc, isa = packers.block_depth(k), host_isa()
    fits = kc * isa.nr * 4 <= driver.L1_BYTES
    expected_mode = PACK if m >= driver.PACK_MIN_ROWS and kc >= driver.PACK_MIN_KC and fits else DIRECT
    assert driver.b_reading(m, kc, 1, isa) == expected_mode and driver.b_reading(m, kc, 2, isa) == PACK
    monkeypatch.setattr(driver, "L1_BYTES", 1 << 40)  # every panel "fits": pack where the other rules say so
    assert driver.b_reading(m, kc, 1, isa) == (PACK if m >= driver.PACK_MIN_ROWS and kc >= driver.PACK_MIN_KC
                                               else DIRECT)

    def products():
        driver._plans.clear()
        return (sgemm(None, b, packed_a=packed, bias=bias, clamp=(0.0, 6.0)),
                PackedProduct(packed, n, bias, (0.0, 6.0)).run(b, np.empty((m, n), np.float32)))

    chosen = products()
    monkeypatch.setattr(driver, "PACK_MIN_ROWS", 1 << 40)  # every contiguous B read in place
    in_place = products()
    for got, other in zip(chosen, in_place):
        np.testing.assert_array_equal(got, other)
    np.testing.assert_allclose(chosen[0], np.clip(reference(a, b) + bias[:, None], 0, 6), rtol=1e-4, atol=1e-3)


def epilogue_operands(monkeypatch, m: int, k: int, n: int, in_place: bool):
    """Random operands of an (m, k) x (k, n) product with a bias, residual
    and accumulator start, B read in place or packed wherever the product is
    deep and tall enough (whatever the L1 holds); and a function computing
    its products with every epilogue (sgemm with bias, residual and clamp;
    sgemm accumulating; a PackedProduct), plans made afresh each time."""
    rng = np.random.default_rng(m * k + n)
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    bias, residual = rng.standard_normal(m).astype(np.float32), rng.standard_normal((m, n)).astype(np.float32)
    start = rng.standard_normal((m, n)).astype(np.float32)
    packed = pack_weights(a)
    monkeypatch.setattr(driver, "PACK_MIN_ROWS" if in_place else "L1_BYTES", 1 << 40)

    def products():
        driver._plans.clear()
        acc = start.copy()
        sgemm(None, b, acc, packed_a=packed, accumulate=True)
        return (sgemm(None, b, packed_a=packed, bias=bias, residual=residual, clamp=(-1.0, 2.0)), acc,
                PackedProduct(packed, n, bias, (0.0, 6.0), residual=True).run(b, np.empty((m, n), np.float32),
                                                                               residual))

    return a, b, start, products


@pytest.mark.parametrize("m, k, n", [(8, 20, 49), (61, 300, 50), (64, 192, 51), (130, 600, 97), (16, 24, 385),
                                     (72, 40, 433), (3, 7, 49)])
@pytest.mark.parametrize("in_place", [False, True])
def test_a_wide_last_panel_gives_the_remainder_kernels_bits(monkeypatch, m, k, n, in_place):
    """N = nr + 1 to 3 (49 on AVX-512): the last panel runs as one wide
    kernel (Isa.wide_tail) whose tail columns are the same fused
    multiply-add chains as the remainder kernels', so the same bits, with
    every epilogue, packed or read in place, across reduction and column
    blocks (385 = 8 panels + 1) and column chunks."""
    a, b, start, products = epilogue_operands(monkeypatch, m, k, n, in_place)
    wide = products()
    monkeypatch.setattr(driver, "tail_columns", lambda isa, kind: 0)
    for got, expected in zip(wide, products()):
        np.testing.assert_array_equal(got, expected)
    assert_close(wide[1] - start, a, b)


def test_a_wide_last_panel_is_one_column_chunk(monkeypatch):
    """49 columns are one chunk of tasks (split by rows), not a chunk of 48
    and a chunk of one column that re-reads all of A on its own."""
    monkeypatch.setattr(driver.parallel, "NUM_THREADS", 2)
    isa = host_isa()
    if not isa.wide_tail:
        pytest.skip(f"the {isa.name} kernels have no wide tail")
    assert f"tessera_f32_{isa.mr}x{isa.nr + 1}" in kernel_ir(isa, "f32")
    rows, cols, _, col_panels = driver._split(1, 512, isa.nr + 1, 4608, isa, isa.wide_tail)
    assert cols == 1 and rows > 1 and col_panels == 1
    assert driver._split(1, 512, isa.nr + 1, 4608, isa, 0)[1] == 2


@pytest.mark.parametrize("m, k, n", [(256, 300, 4), (100, 700, 4), (37, 40, 3), (64, 129, 20), (70, 50, 52),
                                     (33, 600, 196), (5, 9, 2)])
@pytest.mark.parametrize("in_place", [False, True])
def test_the_remainder_kernels_give_the_tiles_bits(monkeypatch, m, k, n, in_place):
    """A last column panel of a few columns (N = 4: a 2 x 2 output plane;
    20 = 16 + 4; 52 = 48 + 4; 196) runs on a remainder kernel, several row
    panels at once with A's steps as vectors, B read in place or packed:
    each element the same fused multiply-add chain as a tile's, so the same
    bits as without remainder kernels, with every epilogue, accumulating,
    across reduction blocks and row chunks."""
    monkeypatch.setattr(driver.parallel, "NUM_THREADS", 2)
    a, b, start, products = epilogue_operands(monkeypatch, m, k, n, in_place)
    isa = host_isa()
    assert driver.remainder_rows(4, isa, "f32", 0) == (family.remainder_group(isa, 4) if isa.remainder_cols >= 4 else 0)
    with_remainders = products()
    monkeypatch.setattr(driver, "split_columns", lambda isa, kind: 0)
    monkeypatch.setattr(driver, "tail_columns", lambda isa, kind: 0)
    for got, expected in zip(with_remainders, products()):
        np.testing.assert_array_equal(got, expected)
    assert_close(with_remainders[1] - start, a, b)


def test_the_in_place_columns_end_where_the_first_panel_b_does_not_fill_starts():
    """tasks.in_place_end against a walk of every panel (runtime.gemm.pack.panel_width):
    in place up to the first narrower panel B's columns do not fill, on both families'
    panel shapes (nr 24 and 48, remainder columns 3 and 4, wide tails 0 and 3)."""
    from runtime.gemm.pack import panel_width
    from runtime.gemm.tasks import in_place_end

    for nr, split, tail in ((24, 3, 0), (48, 4, 3), (48, 0, 0)):
        for n in range(1, 3 * nr + 9):
            j, want = 0, n
            while j < n:
                width = panel_width(j, n, nr, UNIT, split, tail)
                if width < nr and width != n - j:
                    want = j
                    break
                j += width
            assert in_place_end(n, nr, UNIT, split, tail) == want, (n, nr, split, tail)


@pytest.mark.parametrize("m, n, depth", [(512, 784, 1152), (64, 196, 576), (1024, 196, 256), (160, 49, 960),
                                         (2048, 49, 512), (8, 5, 3), (256, 4, 2304), (200, 3, 3000)])
def test_tasks_cover_the_product_once_in_chunks_a_panel_apart(monkeypatch, m, n, depth):
    """The tasks of a split product partition C: every row panel and column
    exactly once, as many chunks as wanted (17 column panels in 8 chunks,
    not 6 of 3 panels, one short: a thread then ran 3 chunks while the other
    waited), chunk sizes a panel apart at most; but where the last column
    panel runs on a remainder kernel, every row chunk holds at least one
    whole group of the panels it takes (N = 4: 256 rows in 4 chunks of 8
    panels on AVX-512, not 8 of 4)."""
    monkeypatch.setattr(driver.parallel, "NUM_THREADS", 2)
    isa = host_isa()
    tail = driver.tail_columns(isa, "f32")
    group = driver.remainder_rows(n, isa, "f32", tail)
    mt, nt, row_panels, col_panels = driver._split(1, m, n, depth, isa, tail, group)
    template = driver._plan_template("f32", isa, (1, m, n, depth, depth), (0, None, depth * n, n, 1),
                                     (m * n * 4, n * 4, 4), None, None, False)
    assert template[driver._TASKS] == mt * nt and template[driver._REMAINDER] == group
    wanted = max(1, min(8, m * n * depth // driver.MIN_TASK_MACS))
    if group > 1:
        wanted = min(wanted, max(1, row_panels // group) * col_panels)
    assert mt * nt >= min(wanted, -(-m // isa.mr) * (-(-n // isa.nr)))  # as many chunks as wanted, where there are
    assert col_panels == -(-n // isa.nr) - (1 if n > isa.nr and 0 < n % isa.nr <= tail else 0)
    covered = np.zeros((m, n), np.int64)
    heights, widths = [], []
    for task in range(mt * nt):
        item, first, last, n0, n1 = task_block(template, task)
        covered[first * isa.mr:last * isa.mr, n0:n1] += 1
        heights.append(last - first)
        widths.append((col_panels if n1 == n else n1 // isa.nr) - n0 // isa.nr)
    assert (covered == 1).all()
    assert min(heights) >= 1 and max(heights) - min(heights) <= 1 and sum(heights) == row_panels * nt
    assert min(widths) >= 1 and max(widths) - min(widths) <= 1 and sum(widths) == col_panels * mt
    if group > 1:
        assert min(heights) >= min(group, row_panels)
    elif m * n * depth >= 8 * driver.MIN_TASK_MACS:
        assert mt * nt >= 8


# ---------------------------------------------------------------- PackedProduct
@pytest.mark.parametrize("m, k, n", [(16, 24, 49), (64, 384, 196), (7, 5, 3)])
@pytest.mark.parametrize("with_bias, with_residual, clamp", [(False, False, None), (True, True, (0.0, 6.0)),
                                                              (True, False, (-1.0, 1.0))])
def test_a_packed_product_equals_sgemm_with_the_same_epilogue(m, k, n, with_bias, with_residual, clamp):
    rng = np.random.default_rng(m * k + n)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32) if with_bias else None
    residual = rng.standard_normal((m, n)).astype(np.float32) if with_residual else None
    packed = pack_weights(a)
    expected = sgemm(None, b, packed_a=packed, bias=bias, residual=residual, clamp=clamp)
    product = PackedProduct(packed, n, bias, clamp, residual is not None)
    for _ in range(2):  # the plan is reused
        got = product.run(b, np.empty((m, n), np.float32), residual)
        np.testing.assert_array_equal(got, expected)


def test_a_packed_product_refuses_operands_of_another_layout():
    packed = pack_weights(np.ones((8, 4), np.float32))
    product = PackedProduct(packed, 5)
    b, out = np.ones((4, 5), np.float32), np.empty((8, 5), np.float32)
    with pytest.raises(KernelError, match="planned layout"):
        product.run(np.ones((4, 6), np.float32), out)
    with pytest.raises(KernelError, match="planned layout"):
        product.run(np.asfortranarray(np.ones((4, 5), np.float32)), out)
    with pytest.raises(KernelError, match="planned layout"):
        product.run(b, out, np.ones((8, 5), np.float32))  # planned without a residual
    with pytest.raises(KernelError, match="overlaps"):
        shared = np.ones(40, np.float32)
        product.run(shared[:20].reshape(4, 5), shared.reshape(8, 5))
    np.testing.assert_array_equal(product.run(b, out), np.full((8, 5), 4.0, np.float32))
