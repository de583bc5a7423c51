"""The CPU kernels' float sums in one order on every CPU
(runtime/kernels/ordered.py): each kernel against an exact model of the
documented order, and the kernels and the ops built on them (Softmax, a
classifier's Gemm, LayerNormalization, InstanceNormalization) giving the
same bits under every kernel family this host can run."""
from __future__ import annotations

import hashlib
from fractions import Fraction

import numpy as np
import pytest

from runtime.jit import jit
from runtime.kernels import ordered
from tests.helpers.kernel_families import run_check

LENGTHS = [*range(0, 70), 127, 128, 129, 131, 135, 136, 191, 255, 256, 263, 1280, 4099]
"""Every path: under half a vector, the half-width part alone, the main
part alone, with a half-width rest, with a scalar rest, with both."""


@jit
def _sum_f32(x):
    return ordered.sum_f32(x.size, x.ctypes.data)


@jit
def _dot_f32(x, w):
    return ordered.dot_f32(x.size, x.ctypes.data, w.ctypes.data)


@jit
def _sum_f32_f64(x):
    return ordered.sum_f32_f64(x.size, x.ctypes.data)


@jit
def _sqdev_f32_f64(x, mean):
    return ordered.sqdev_f32_f64(x.size, x.ctypes.data, mean)


@jit
def _taps_f32(x, taps, w, start):
    return ordered.taps_f32(taps.size, x.ctypes.data, taps.ctypes.data, w.ctypes.data, start)


@jit
def _taps_f64(x, taps, w, start):
    return ordered.taps_f64(taps.size, x.ctypes.data, taps.ctypes.data, w.ctypes.data, start)


@jit
def _sum_f64(x):
    return ordered.sum_f64(x.size, x.ctypes.data)


@jit
def _sqdev_f64(x, mean):
    return ordered.sqdev_f64(x.size, x.ctypes.data, mean)


def _fma(a, b, c, dtype):
    """a * b + c rounded once to ``dtype`` (float32 or float64), exactly:
    the nearest of the two neighbours of the exact value, ties to even."""
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    guess = dtype(float(exact))
    if Fraction(float(guess)) == exact:
        return guess
    other = np.nextafter(guess, dtype(np.inf if Fraction(float(guess)) < exact else -np.inf))
    d1, d2 = abs(Fraction(float(guess)) - exact), abs(Fraction(float(other)) - exact)
    if d1 != d2:
        return guess if d1 < d2 else other
    return guess if int(np.array(guess).view(np.int32 if dtype is np.float32 else np.int64)) % 2 == 0 else other


def _model(kind: str, x: np.ndarray, w: np.ndarray | None = None, mean: float = 0.0, taps=None, start=0.0):
    """The documented order, one IEEE operation at a time in numpy."""
    k = ordered.KERNELS[kind]
    dtype = np.float32 if k.source == "f32" else np.float64
    values = x.astype(dtype) if taps is None else x[taps].astype(dtype)

    def step(acc, i):
        if k.term == "add":
            return dtype(acc + values[i])
        a = dtype(values[i] - dtype(mean)) if k.term == "sqdev" else values[i]
        return _fma(a, a if k.term == "sqdev" else w[i], acc, dtype)

    def halve(lanes):
        while len(lanes) > 1:
            half = len(lanes) // 2
            lanes = [dtype(lanes[j] + lanes[j + half]) for j in range(half)]
        return lanes[0]

    n, lanes, half = len(values), k.lanes, k.part_lanes
    step_size = 4 * lanes
    total, i = dtype(start), 0
    if n >= step_size:
        accs = [[dtype(0)] * lanes for _ in range(4)]
        accs[0][0] = total
        for base in range(0, n - n % step_size, step_size):
            for u in range(4):
                accs[u] = [step(accs[u][j], base + u * lanes + j) for j in range(lanes)]
        sums = [[dtype(a + b) for a, b in zip(accs[0], accs[1])]]
        if k.combine == "pairwise":
            right = [dtype(a + b) for a, b in zip(accs[2], accs[3])]
            combined = [dtype(a + b) for a, b in zip(sums[0], right)]
        else:
            combined = [dtype(dtype(a + b) + c) for a, b, c in zip(sums[0], accs[2], accs[3])]
        total, i = halve(combined), n - n % step_size
    if n - i >= half:
        part = [total] + [dtype(0)] * (half - 1)
        end = n - n % half
        for base in range(i, end, half):
            part = [step(part[j], base + j) for j in range(half)]
        total, i = halve(part), end
    for j in range(i, n):
        total = step(total, j)
    return total


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.random.default_rng(seed)
    x = (r.standard_normal(n) * 10.0 ** r.uniform(-4, 4, n)).astype(np.float32)  # wide magnitudes: order shows
    return x, r.standard_normal(n).astype(np.float32)


@pytest.mark.parametrize("n", LENGTHS)
def test_each_sum_is_the_documented_order_bit_for_bit(n):
    x, w = _data(n, n)
    x64 = x.astype(np.float64) * 1.1
    mean = float(x64.mean()) if n else 0.0
    got = {"sum_f32": _sum_f32(x), "dot_f32": _dot_f32(x, w), "sum_f32_f64": _sum_f32_f64(x),
           "sqdev_f32_f64": _sqdev_f32_f64(x, mean), "sum_f64": _sum_f64(x64), "sqdev_f64": _sqdev_f64(x64, mean)}
    for kind, value in got.items():
        source = x64 if ordered.KERNELS[kind].source == "f64" else x
        want = _model(kind, source, w, mean)
        assert np.array(value, type(want)).tobytes() == np.array(want).tobytes(), (kind, n, value, want)
    source = np.repeat(x, 2)[::-1].copy()  # a resize's taps: offsets into a longer row, repeated, out of order
    taps = np.random.default_rng(n).integers(0, max(source.size, 1), n).astype(np.int64)
    start = np.float32(w[0] if n else 0.5)
    want = _model("taps_f32", source, w, taps=taps, start=start)
    assert np.float32(_taps_f32(source, taps, w, start)).tobytes() == want.tobytes(), ("taps_f32", n)
    source64, w64 = source.astype(np.float64) * 1.1, w.astype(np.float64) / 3
    want = _model("taps_f64", source64, w64, taps=taps, start=float(start))
    assert np.float64(_taps_f64(source64, taps, w64, float(start))).tobytes() == want.tobytes(), ("taps_f64", n)


def test_a_few_rows_by_a_matrix_is_each_rows_dot_product():
    """The loop over rows and columns (gemv's DOT_ROWS) indexes and strides
    as one dot product at a time does."""
    from runtime.gemm.gemv import sgemv_rows
    x, w = _data(3 * 300, 7)
    a, b = x.reshape(3, 300), np.concatenate([w, w[:600]]).reshape(5, 300)
    got = sgemv_rows(a, b, True)
    want = np.array([[_dot_f32(a[i], b[j]) for j in range(5)] for i in range(3)], np.float32)
    assert got.tobytes() == want.tobytes()


def _steps(n: int, salt: int) -> np.ndarray:
    """Data of wide magnitudes from integers and powers of two alone (no
    random generator or libm whose bits could change)."""
    i = np.arange(n, dtype=np.int64) + salt
    values = (((i * 2654435761) % 10007) - 5003).astype(np.float64) / 7.0
    return (values * np.ldexp(1.0, (i % 17) - 8)).astype(np.float32)


def _digest(values) -> str:
    return hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()[:16]


def test_the_order_is_the_one_earlier_results_were_computed_in():
    """The digests the fastmath loops these kernels replaced (Softmax's
    sum, gemv's dot products, the normalisations' moments) gave on these
    data, on the AVX-512 host (Zen 4) whose order the kernels keep: a
    binary compiled there before stays the binary compiled now."""
    lengths = [*range(1, 70), 129, 263, 1280, 4099]

    def moments(x, total, sqdev):
        mean = total(x) / x.size
        return mean, sqdev(x, mean) / x.size

    sums = np.array([_sum_f32(_steps(n, 0)) for n in lengths], np.float32)
    dots = np.array([_dot_f32(_steps(n, 0), _steps(n, 1)) for n in lengths], np.float32)
    m32 = np.array([moments(_steps(n, 0), _sum_f32_f64, _sqdev_f32_f64) for n in lengths])
    m64 = np.array([moments(_steps(n, 0).astype(np.float64) / 3, _sum_f64, _sqdev_f64) for n in lengths])
    assert [_digest(v) for v in (sums, dots, m32, m64)] == ["122c2c61e62557ac", "05c04f1a266b9e91",
                                                             "d57202c2d8714c92", "9586372c53a2e006"]


def test_the_order_is_not_the_naive_one():
    """The model is not vacuous: on these data the lanes' order and a
    left-to-right sum round differently (else any order would pass)."""
    x, _ = _data(4099, 1)
    naive = np.float32(0)
    for v in x:
        naive = np.float32(naive + v)
    assert _sum_f32(x) != naive and _model("sum_f32", x) == _sum_f32(x)


def test_special_values_propagate():
    nan = np.full(100, 1.0, np.float32)
    nan[77] = np.nan
    assert np.isnan(_sum_f32(nan)) and np.isnan(_dot_f32(nan, np.ones(100, np.float32)))
    inf = np.ones(100, np.float32)
    inf[3] = np.inf
    assert _sum_f32(inf) == np.inf and _sum_f32(-inf) == -np.inf
    assert _sum_f32(np.zeros(0, np.float32)) == 0 and _sum_f64(np.zeros(0)) == 0


FAMILY_CHECK = """
import hashlib, numpy as np
from runtime.gemm.gemv import sgemv_rows
from runtime.kernels import get_kernel
from onnx import TensorProto, helper
from compiler import backend
r = np.random.default_rng(0)
digest = hashlib.sha256()
node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="cubic", antialias=1)  # 11 to 13 taps an output
graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 40, 44]),
                                        helper.make_tensor_value_info("s", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
resize = backend.prepare(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
image = r.standard_normal((1, 2, 40, 44)).astype(np.float32)
for n in (5, 37, 100, 1000, 1280, 4099):
    x = (r.standard_normal((3, n)) * 10.0 ** r.uniform(-3, 3, (3, n))).astype(np.float32)
    b = r.standard_normal((7, n)).astype(np.float32)
    ones, zeros = np.ones(n, np.float32), np.zeros(n, np.float32)
    outs = [get_kernel("Softmax")([x], {"axis": -1})[0], sgemv_rows(x[:1], b, True),
            get_kernel("LayerNormalization")([x, ones, zeros], {"axis": -1, "epsilon": 1e-5})[0],
            get_kernel("LayerNormalization")([x.astype(np.float64), ones, zeros], {"axis": -1, "epsilon": 1e-5})[0],
            get_kernel("InstanceNormalization")([x.reshape(1, 3, n), np.ones(3, np.float32), np.zeros(3, np.float32)],
                                                {"epsilon": 1e-5})[0],
            get_kernel("GlobalAveragePool")([x.reshape(1, 3, n, 1)], {})[0]]
    digest.update(resize.run([image, np.array([1, 1, 0.3, 0.45], np.float32)])[0].tobytes())
from runtime.kernels.resize import _tap_rows
for n in (3, 9, 20, 40):  # float64 taps (a float64 model's resize)
    src, taps, w = r.standard_normal((2, 50, 1)), r.integers(0, 50, (30, n)), r.standard_normal((30, n))
    out = np.empty((2, 30, 1))
    _tap_rows(0, 60, src, taps, w, out)
    digest.update(out.tobytes())
    for out in outs:
        digest.update(np.ascontiguousarray(out).tobytes())
print(digest.hexdigest())
"""


@pytest.mark.parametrize("family", ["avx2", "avx512bw"])
def test_the_same_bits_under_every_kernel_family(family):
    """Softmax, a classifier's Gemm, the normalisations, a global average
    pool and an antialiased resize compiled as an AVX2 host and a
    Skylake-SP would compile them give this host's bits: their fastmath
    loops had given other ones (8 lanes, not 16)."""
    assert run_check(FAMILY_CHECK, family, numba_too=True) == run_check(FAMILY_CHECK)
