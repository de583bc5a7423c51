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
from runtime.gemm.family import host_isa
from runtime.gemm.microkernel_ir import kernel_ir
from tests.helpers.gemm import (
    LAYOUTS,
    NEEDS_NARROW,
    SETTINGS,
    assert_close,
    forbid_compiled_code,
    int_reference,
    layout,
    reference,
)


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


@pytest.mark.parametrize("m", [1, 2])
def test_each_product_of_a_batch_adds_its_own_bias_after_one_without(m):
    """A product's plan is kept by layout: one without a bias (kept under
    ``True`` once) served a batch with one bias row per product (1 == True)
    and read the first product's bias for every product (found by the Conv
    property: two groups of one output channel each)."""
    rng = np.random.default_rng(m)
    a = rng.standard_normal((3, m, 9), dtype=np.float32)
    b = rng.standard_normal((3, 9, 6), dtype=np.float32)
    bias = np.array([[1.0], [20.0], [300.0]], np.float32).repeat(m, axis=1)
    sgemm_batched(None, b, packed_a=pack_weights(a))
    got = sgemm_batched(None, b, packed_a=pack_weights(a), bias=bias)
    for i in range(3):
        assert_close(got[i] - bias[i][:, None], a[i], b[i])


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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="guard pages through mprotect")
def test_every_last_panel_width_stays_inside_b():
    """Every width of the last column panel (N = 1 to 2 nr + 8: remainder
    kernels, ragged panels packed, panels B fills read in place, a wide
    tail) against a B whose last row ends at a guard page, a packed A and a
    residual as a layer gives them: a kernel reading a panel in place past
    B's last column faults (an nr-wide panel over 17 columns did)."""
    rng = np.random.default_rng(11)
    m, k = 13, 70
    a = rng.standard_normal((m, k)).astype(np.float32)
    packed = pack_weights(a)
    for n in range(1, 2 * host_isa().nr + 9):
        b = guarded((k, n))
        b[:] = rng.standard_normal((k, n))
        residual = guarded((m, n))
        residual[:] = 1.0
        got = PackedProduct(packed, n, None, (-3.0, 3.0), residual=True).run(b, np.empty((m, n), np.float32),
                                                                            residual)
        np.testing.assert_allclose(got, np.clip(reference(a, b) + 1.0, -3, 3), rtol=1e-4, atol=1e-3, err_msg=str(n))
        assert_close(sgemm(a, b), a, b)


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
if host_isa().name == "avx2":  # its narrow family, forced on an AVX-512 host too: the host's bits
    from runtime.gemm.family import narrow_isa
    na = rng.standard_normal((13, 600), dtype=np.float32)
    host, narrow = pack_weights(na), pack_weights(na, narrow=True)
    assert narrow.isa == narrow_isa(host_isa()) and narrow.isa.mr == 8
    for n in (1, 4, 9, 12):
        nb = rng.standard_normal((600, n), dtype=np.float32)
        nr = rng.standard_normal((13, n), dtype=np.float32)
        for kw in ({}, dict(bias=np.ones(13, np.float32), residual=nr, clamp=(0.0, 6.0))):
            assert (sgemm(None, nb, packed_a=narrow, **kw) == sgemm(None, nb, packed_a=host, **kw)).all(), (n, kw)
from runtime import parallel  # a stem on the family's row kernels: the column matrix's bits
from runtime.kernels import nn_im2col, nn_rows
from runtime.kernels.nn_conv import conv_nd
parallel.NUM_THREADS = 1  # bands whatever the host's cores
assert nn_im2col.band_rows(20, 27, 1, 112, 111) > 0
x = rng.standard_normal((1, 3, 224, 221), dtype=np.float32)
w = rng.standard_normal((20, 3, 3, 3), dtype=np.float32)
stem = dict(strides=(2, 2), pads=(1, 1, 1, 1), dilations=(1, 1), exact=True)
assert nn_rows.kernels_for(3, (1, 3, 3, 1, 2, 2, 0, 1, 1, 0, 1, 1, 1, 1, 1), pack_weights(w.reshape(20, 27)))[0]
rows = conv_nd(x, w, np.ones(20, np.float32), clamp=(0.0, 6.0), **stem)
nn_im2col.BAND_BLOCK = 0
assert (conv_nd(x, w, np.ones(20, np.float32), clamp=(0.0, 6.0), **stem) == rows).all()
"""


def test_avx2_kernels_when_the_host_has_avx2():
    """The AVX2 family (its int8 kernels without VNNI, its narrow packing),
    forced on this host: an AVX-512 host runs them too, beside its own
    (16-row) narrow family, which the in-process tests below check."""
    import llvmlite.binding as llvm
    if not llvm.get_host_cpu_features().get("avx2"):
        pytest.skip("no AVX2 on this host")
    env = dict(os.environ, TESSERA_GEMM_ISA="avx2")
    result = subprocess.run([sys.executable, "-c", AVX2_CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("family, vnni", [("avx512bw", False), ("avx512vnni", True)])
def test_the_intel_avx512_families_when_the_host_has_avx512(family, vnni):
    """The AVX-512 family as a Skylake-SP runs it (no VNNI: its int8
    kernels multiply the 16-bit pairs of A that the packers split) and as a
    Cascade Lake does (VNNI), each compiled for that CPU's features alone
    (no VBMI), forced on an AVX-512 host; a host without them cannot run
    their code."""
    import llvmlite.binding as llvm
    features = llvm.get_host_cpu_features()
    if not features.get("avx512bw") or (vnni and not features.get("avx512vnni")):
        pytest.skip(f"no AVX-512 BW{' and VNNI' if vnni else ''} on this host: the {family} kernels cannot run here")
    env = dict(os.environ, TESSERA_GEMM_ISA=family)
    check = AVX2_CHECK.replace('assert host_isa().name == "avx2"',
                               f'assert host_isa().name == "avx512" and host_isa().vnni is {vnni} '
                               'and not host_isa().vbmi and "vbmi" not in host_isa().features')
    result = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


UNKNOWN_FAMILY = "error: TESSERA_GEMM_ISA='avx1024': expected avx2, avx512bw, avx512vnni or nothing"


def test_an_unknown_kernel_family_is_named_not_ignored():
    """Named at the first kernel (``import runtime`` still works), and by
    both command lines in one line, though the app links its simulator's
    kernels while it is imported."""
    env = dict(os.environ, TESSERA_GEMM_ISA="avx1024")
    with pytest.raises(KernelError, match=UNKNOWN_FAMILY.removeprefix("error: ")):
        family.host_isa("avx1024")
    for prog, code in (("tessera", "from compiler.cli import main; sys.exit(main(['run', 'identity']))"),
                       ("tessera-infer", "from runtime.app import main; sys.exit(main(['--xclbin', 'x.bin', "
                                         "'--img_path', '.']))")):
        result = subprocess.run([sys.executable, "-c", "import sys, runtime; " + code], env=env,
                                capture_output=True, text=True, timeout=120)
        assert (result.returncode, result.stderr) == (1, f"{prog}: {UNKNOWN_FAMILY} (the host's own kernel family)\n")


def test_a_cpu_without_avx2_is_reported_not_crashed(monkeypatch):
    assert family.available() is True
    monkeypatch.setattr(family.llvm, "get_host_cpu_features", lambda: {})
    with pytest.raises(KernelError, match="AVX2"):
        host_isa.__wrapped__("")


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


# ---------------------------------------------------------------- narrow packing (few columns)
@NEEDS_NARROW
@pytest.mark.parametrize("m, k, n", [(256, 600, 4), (37, 70, 1), (13, 300, 2), (64, 1152, 3), (9, 257, 4),
                                     (130, 33, 4), (320, 960, 9), (37, 70, 11), (13, 300, 12), (9, 257, 7)])
@pytest.mark.parametrize("with_bias, with_residual, clamp", [(False, False, None), (True, True, (0.0, 6.0))])
def test_a_narrow_packing_gives_the_hosts_bits_through_every_entry(m, k, n, with_bias, with_residual, clamp):
    """Products of 1 to NARROW_COLUMNS columns with A packed for the narrow
    family (remainder kernels, the 8-wide tile, ragged or with 1 to 3 tail
    columns, the tile then a remainder): the same float32 bits as the host's
    packing (each sum the same chain over the same reduction blocks, 600,
    960 and 1152 deep making three, four and five), through sgemm and a
    PackedProduct, with the epilogue, on rows that fill no whole panel group
    (9, 13, 37, 130)."""
    rng = np.random.default_rng(m + k + n)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32) if with_bias else None
    residual = rng.standard_normal((m, n)).astype(np.float32) if with_residual else None
    host, narrow = pack_weights(a), pack_weights(a, narrow=True)
    assert narrow.isa == family.narrow_isa(host_isa()) and narrow.isa.mr == narrow.isa.vw != host.isa.mr
    expected = sgemm(None, b, packed_a=host, bias=bias, residual=residual, clamp=clamp)
    np.testing.assert_array_equal(sgemm(None, b, packed_a=narrow, bias=bias, residual=residual, clamp=clamp),
                                  expected)
    got = PackedProduct(narrow, n, bias, clamp, residual is not None).run(b, np.empty((m, n), np.float32), residual)
    np.testing.assert_array_equal(got, expected)
    assert_close(sgemm(None, b, packed_a=narrow), a, b)


@NEEDS_NARROW
def test_a_narrow_packing_is_for_float_left_operands_and_unpacked_b_only():
    narrow = pack_weights(np.ones((8, 4), np.float32), narrow=True)
    with pytest.raises(KernelError, match="unpacked B only"):
        sgemm(None, None, packed_a=narrow, packed_b=pack_weights(np.ones((4, 3), np.float32), side="right"))
    assert pack_weights(np.ones((8, 4), np.int8), narrow=True).isa == host_isa()  # int8: the host's packing
    assert pack_weights(np.ones((4, 8), np.float32), side="right", narrow=True).isa == host_isa()
    forged = PackedMatrix("left", (8, 4), np.dtype(np.int8), narrow.kc, narrow.isa, narrow.data)
    with pytest.raises(KernelError, match=f"packed for {narrow.isa.name}"):
        igemm(None, np.ones((4, 3), np.int8), packed_a=forged)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="guard pages through mprotect")
@NEEDS_NARROW
@pytest.mark.parametrize("m", [1, 9, 13, 64])
def test_a_narrow_product_stays_inside_its_operands(m):
    rng = np.random.default_rng(m)
    k = 70
    a = rng.standard_normal((m, k)).astype(np.float32)
    for n in range(1, family.NARROW_COLUMNS + 1):
        b, out, bias = guarded((k, n)), guarded((m, n)), guarded((m,))
        b[:] = rng.standard_normal((k, n))
        bias[:] = 1.0
        sgemm(None, b, out, packed_a=pack_weights(a, narrow=True), bias=bias)
        np.testing.assert_allclose(out, reference(a, b) + 1, rtol=1e-4, atol=1e-3, err_msg=str(n))
