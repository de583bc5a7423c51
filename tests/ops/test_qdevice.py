"""The quantized device ops (Q dialect): the CPU kernels against the integer
reference (tests/oracle.py) bit for bit, both against a direct Python-int
evaluation of docs/quantization.md's formulas (the oracle's rescale). Their
rejection of malformed parameters: test_qdevice_faults.py."""
from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codegen.cpu import lower_to_program
from ir import GraphBuilder
from ir.graph import Graph
from ir.registry import Pattern
from runtime import qscheme
from runtime.executor import Executor
from runtime.kernels import qdevice, run_kernel
from tests import oracle
from tests.helpers.graphs import run_graph
from tests.helpers.qops import (
    INT8,
    INT16,
    RANGE,
    assert_kernel_is_reference,
    ints,
    multipliers,
    one_node,
    output_attrs,
    py_store,
    py_table,
    table_attrs,
)
from tests.oracle import IntegerReferenceError, run_reference

SETTINGS = settings(max_examples=30, deadline=None)


# ---------------------------------------------------------------- rescale
LIMIT = qscheme.RESCALE_LIMIT


@settings(max_examples=300, deadline=None)
@given(v=st.one_of(st.integers(-2**63, 2**63 - 1), st.integers(-2**33, 2**33)),
       m=st.integers(2**30, 2**31 - 1), n=st.integers(1, 62))
def test_the_rescale_is_the_exact_formula(v, m, n):
    """Exact for every int64 v (v * m may pass int64), clamped to +-2^62."""
    assert qscheme.rescale_scalar(v, m, n) == min(max(oracle.rescale(v, m, n), -LIMIT), LIMIT)


@settings(max_examples=100, deadline=None)
@given(v=st.integers(-2**31 + 1, 2**31 - 1), m=st.integers(2**30, 2**31 - 1), n=st.integers(1, 62))
def test_the_short_rescale_is_exact_where_int64_holds_the_product(v, m, n):
    """rescale_small, the branch-free form the simulator's int32 epilogue uses."""
    assert qscheme.rescale_small(v, m, n) == oracle.rescale(v, m, n)


@settings(max_examples=100, deadline=None)
@given(v=st.integers(-2**31, 2**31 - 1), m=st.integers(2**30, 2**31 - 1), n=st.integers(qscheme.HIGH_SHIFT, 62))
def test_the_high_word_rescale_is_exact_for_int32_values_and_long_shifts(v, m, n):
    """rescale_high, the 32-bit-lane form of the epilogue's usual channel."""
    m32, bias, shift = qscheme.high_params(m, n)  # (Numba hands int32 back as int)
    got = qscheme.rescale_high(np.int32(v), np.int64(m32), np.int32(bias), np.int32(shift))
    assert got == oracle.rescale(v, m, n)


@settings(max_examples=100, deadline=None)
@given(d=st.integers(-511, 511), m=st.integers(2**30, 2**31 - 1), n=st.integers(*qscheme.SHORT_SHIFTS))
def test_the_short_shift_rescale_is_exact_for_byte_differences(d, m, n):
    """rescale_short, the 32-bit-lane form of an 8-bit ELTWISE COPY's rescale."""
    got = qscheme.rescale_short(np.int32(d), *(np.int32(p) for p in qscheme.short_params(m, n)))
    assert got == oracle.rescale(d, m, n)


@pytest.mark.parametrize("v, real, want", [
    (1, Fraction(1, 2), 1), (-1, Fraction(1, 2), 0), (3, Fraction(1, 2), 2), (-3, Fraction(1, 2), -1),
    (5, Fraction(1, 4), 1), (-5, Fraction(1, 4), -1), (-6, Fraction(1, 4), -1), (-7, Fraction(1, 4), -2),
    (-2**40 - 1, Fraction(1, 2**20), -2**20), (-2**50 + 2**9, Fraction(1, 2**10), -2**40 + 1),
    (-2**35 - 1, Fraction(32), -2**40 - 32), (2**62, Fraction(4), 2**62), (-2**63, Fraction(2), -2**62),
])
def test_rescale_rounds_half_up_and_shifts_arithmetically(v, real, want):
    """Halves go toward +inf, negatives included (an arithmetic >>); past
    +-2^62 the result saturates there."""
    m, n = qscheme.quantize_multiplier(float(real))
    assert qscheme.rescale_scalar(v, m, n) == want
    assert want == max(min(math.floor(v * real + Fraction(1, 2)), LIMIT), -LIMIT) == max(min(oracle.rescale(v, m, n),
                                                                                               LIMIT), -LIMIT)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from([INT8, INT16]))
def test_requantisation_rounds_like_the_exact_product(seed, dtype):
    """QConcat's rescale of every code equals floor(v * m / 2^n + 1/2)."""
    rng = np.random.default_rng(seed)
    x = np.arange(*RANGE[dtype], max(1, (RANGE[dtype][1] - RANGE[dtype][0]) // 2000), dtype=np.int64).astype(dtype)
    (m,), (n,) = multipliers(rng, 1, 1e-3, 4.0)
    zero = int(rng.integers(*RANGE[dtype]))
    wide = RANGE[INT16]
    (y,) = run_kernel("QConcat", [x], dict(axis=0, zeros=[zero], mults=[m], shifts=[n], out_zero=0, lo=wide[0],
                                           hi=wide[1], out_dtype="int16"))
    exact = [min(max(math.floor(Fraction(int(v) - zero) * m / 2**n + Fraction(1, 2)), wide[0]), wide[1]) for v in x]
    assert y.tolist() == exact


# ---------------------------------------------------------------- QConv
@st.composite
def conv_cases(draw):
    """x, w, b, optional r and attributes of a QConv: dense, grouped or
    depthwise, any padding, strides, dilations, 8- and 16-bit data."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["dense", "grouped", "depthwise"]))
    per_in = 1 if kind == "depthwise" else draw(st.integers(1, 3))
    group = {"dense": 1, "grouped": draw(st.integers(2, 3)), "depthwise": draw(st.integers(1, 4))}[kind]
    per_out = draw(st.integers(1, 2 if kind == "depthwise" else 3))
    kernel = [draw(st.integers(1, 3)) for _ in range(2)]
    strides = [draw(st.integers(1, 2)) for _ in range(2)]
    dilations = [draw(st.integers(1, 2)) for _ in range(2)]
    pads = [draw(st.integers(0, 2)) for _ in range(4)]
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    dims = [draw(st.integers(max(1, s - pads[i] - pads[i + 2]), s + 5)) for i, s in enumerate(spans)]
    x_dtype, w_dtype = draw(st.sampled_from([INT8, INT16])), draw(st.sampled_from([INT8, INT16]))
    acc = np.int32 if x_dtype == w_dtype == INT8 and draw(st.booleans()) else np.int64
    x = ints(rng, (draw(st.integers(1, 2)), per_in * group, *dims), x_dtype)
    channels = per_out * group
    w = ints(rng, (channels, per_in, *kernel), w_dtype, -RANGE[w_dtype][1], RANGE[w_dtype][1])
    b = rng.integers(-2**20, 2**20, channels).astype(acc)
    mult, shift = multipliers(rng, channels, 1e-9 if w_dtype == INT16 or x_dtype == INT16 else 1e-6, 1e-1)
    attrs = dict(kernel_shape=kernel, strides=strides, pads=pads, dilations=dilations, group=group,
                 x_zero=int(rng.integers(*RANGE[x_dtype])), mult=mult, shift=shift,
                 **output_attrs(rng, draw(st.sampled_from([INT8, INT16]))))
    if draw(st.booleans()):  # a table after the clamp: int8 or int16 codes, out_dtype entries
        out = np.dtype(attrs["out_dtype"])  # a table read by int16 codes has int16 entries (mapped in place)
        attrs.update(table_attrs(rng, out, wide=out == INT16 and draw(st.booleans())))
    if draw(st.booleans()):  # LeakyRelu
        attrs["neg_mult"], attrs["neg_shift"] = multipliers(rng, channels, 1e-9, 1e-2)
    r = None
    if draw(st.booleans()):
        r_dtype = draw(st.sampled_from([INT8, INT16]))
        out_dims = [(d + pads[i] + pads[i + 2] - span) // stride + 1
                    for i, (d, span, stride) in enumerate(zip(dims, spans, strides))]
        r = ints(rng, (x.shape[0], channels, *out_dims), r_dtype)
        (res_mult,), (res_shift,) = multipliers(rng, 1, 1e-3, 4.0)
        attrs.update(res_zero=int(rng.integers(*RANGE[r_dtype])), res_mult=res_mult, res_shift=res_shift)
    return [x, w, b, r], attrs


@SETTINGS
@given(case=conv_cases())
def test_qconv_kernel_is_the_reference(case):
    inputs, attrs = case
    graph, feeds = one_node("QConv", inputs if inputs[3] is not None else inputs[:3], consts=(1, 2), **attrs)
    assert_kernel_is_reference(graph, feeds)


def test_qconv_on_a_winograd_sized_layer_stays_exact():
    """3x3, stride 1, 16+ channels: the shape float32 convolutions take
    Winograd for, which is not exact; the integer path must not."""
    rng = np.random.default_rng(7)
    x, w = ints(rng, (1, 16, 12, 12), INT8), ints(rng, (16, 16, 3, 3), INT8, -127, 127)
    b = rng.integers(-5000, 5000, 16).astype(np.int32)
    mult, shift = multipliers(rng, 16, 1e-5, 1e-3)
    graph, feeds = one_node("QConv", [x, w, b], consts=(1, 2), pads=[1, 1, 1, 1], x_zero=-3, mult=mult,
                            shift=shift, out_zero=4, lo=-128, hi=127)
    assert_kernel_is_reference(graph, feeds)


def py_qconv(x, w, b, r, attrs) -> np.ndarray:
    """docs/quantization.md's QConv, one output at a time in Python integers."""
    (kh, kw), (sh, sw), (dh, dw), pads = attrs["kernel_shape"], attrs["strides"], attrs["dilations"], attrs["pads"]
    group, x_zero = attrs["group"], attrs["x_zero"]
    batch, chans, height, width = x.shape
    out_c, per_in = w.shape[:2]
    out_h = (height + pads[0] + pads[2] - (kh - 1) * dh - 1) // sh + 1
    out_w = (width + pads[1] + pads[3] - (kw - 1) * dw - 1) // sw + 1
    y = np.zeros((batch, out_c, out_h, out_w), np.int64)
    for n, k, oh, ow in itertools.product(range(batch), range(out_c), range(out_h), range(out_w)):
        acc = int(b[k])
        for c, i, j in itertools.product(range(per_in), range(kh), range(kw)):
            iy, ix = oh * sh - pads[0] + i * dh, ow * sw - pads[1] + j * dw
            inside = 0 <= iy < height and 0 <= ix < width
            channel = k // (out_c // group) * per_in + c
            acc += (int(x[n, channel, iy, ix]) if inside else x_zero) * int(w[k, c, i, j])
        leaky = acc < 0 and len(attrs.get("neg_mult", ()))
        m, s = (attrs["neg_mult"][k], attrs["neg_shift"][k]) if leaky else (attrs["mult"][k], attrs["shift"][k])
        v = oracle.rescale(acc, m, s)
        if r is not None:
            v += oracle.rescale(int(r[n, k, oh, ow]) - attrs["res_zero"], attrs["res_mult"], attrs["res_shift"])
        y[n, k, oh, ow] = py_store(v, attrs)
    return y


@pytest.mark.parametrize("seed", range(6))
def test_qconv_is_the_documented_formula(seed):
    """Small cases against a direct evaluation, every feature on."""
    rng = np.random.default_rng(seed)
    dtype = [INT8, INT16][seed % 2]
    x = ints(rng, (1, 4, 5, 6), dtype)
    w = ints(rng, (4, 2, 2, 3), dtype, -RANGE[dtype][1], RANGE[dtype][1])
    b = rng.integers(-3000, 3000, 4).astype(np.int64)
    r = ints(rng, (1, 4, 3, 3), INT8)
    mult, shift = multipliers(rng, 4, 1e-8 if dtype == INT16 else 1e-5, 1e-2)
    neg_mult, neg_shift = multipliers(rng, 4, 1e-9, 1e-3)
    (res_mult,), (res_shift,) = multipliers(rng, 1, 0.1, 2.0)
    attrs = dict(kernel_shape=[2, 3], strides=[2, 2], pads=[1, 2, 0, 1], dilations=[1, 2], group=2,
                 x_zero=int(rng.integers(-50, 50)), mult=mult, shift=shift, neg_mult=neg_mult, neg_shift=neg_shift,
                 res_zero=-7, res_mult=res_mult, res_shift=res_shift, out_zero=9, lo=-100, hi=120, out_dtype="int8")
    graph, feeds = one_node("QConv", [x, w, b, r], consts=(1, 2), **attrs)
    got = assert_kernel_is_reference(graph, feeds)
    np.testing.assert_array_equal(next(iter(got.values())), py_qconv(x, w, b, r, attrs))


def test_qconv_int64_path_past_the_float_bound(monkeypatch):
    """Reductions too long for exact float64 sums go through int64."""
    monkeypatch.setattr(qdevice, "FLOAT_EXACT", 1)
    rng = np.random.default_rng(3)
    for group in (1, 2):
        x, w = ints(rng, (2, 4, 6, 5), INT16), ints(rng, (4, 4 // group, 3, 2), INT16, -32767, 32767)
        b = rng.integers(-2**40, 2**40, 4).astype(np.int64)
        mult, shift = multipliers(rng, 4, 1e-9, 1e-7)
        attrs = dict(strides=[2, 1], pads=[1, 0, 2, 1], dilations=[1, 2], group=group, x_zero=123, mult=mult,
                     shift=shift, out_zero=0, lo=-32768, hi=32767, out_dtype="int16")
        graph, feeds = one_node("QConv", [x, w, b], consts=(1, 2), **attrs)
        assert_kernel_is_reference(graph, feeds)
        x, w = ints(rng, (5, 20), INT16), ints(rng, (4, 20), INT16, -32767, 32767)
        graph, feeds = one_node("QGemm", [x, w, b], consts=(1, 2),
                                **{k: attrs[k] for k in ("x_zero", "mult", "shift", "out_zero", "lo", "hi",
                                                         "out_dtype")})
        assert_kernel_is_reference(graph, feeds)


# ---------------------------------------------------------------- QGemm
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), m=st.integers(1, 5), k=st.integers(1, 40), n=st.integers(1, 6),
       dtypes=st.sampled_from([(INT8, INT8), (INT8, INT16), (INT16, INT8), (INT16, INT16)]),
       residual=st.booleans(), leaky=st.booleans())
def test_qgemm_kernel_is_the_reference(seed, m, k, n, dtypes, residual, leaky):
    rng = np.random.default_rng(seed)
    x_dtype, w_dtype = dtypes
    x, w = ints(rng, (m, k), x_dtype), ints(rng, (n, k), w_dtype, -RANGE[w_dtype][1], RANGE[w_dtype][1])
    b = rng.integers(-2**20, 2**20, n).astype(np.int32 if dtypes == (INT8, INT8) else np.int64)
    mult, shift = multipliers(rng, n, 1e-9, 1e-2)
    attrs = dict(x_zero=int(rng.integers(*RANGE[x_dtype])), mult=mult, shift=shift,
                 **output_attrs(rng, [INT8, INT16][seed % 2]))
    if seed % 3 == 0:
        attrs.update(table_attrs(rng, np.dtype(attrs["out_dtype"]), wide=seed % 2 == 1))
    if leaky:
        attrs["neg_mult"], attrs["neg_shift"] = multipliers(rng, n, 1e-9, 1e-3)
    inputs = [x, w, b]
    if residual:
        inputs.append(ints(rng, (m, n), INT8))
        (res_mult,), (res_shift,) = multipliers(rng, 1, 0.01, 3.0)
        attrs.update(res_zero=int(rng.integers(-128, 128)), res_mult=res_mult, res_shift=res_shift)
    graph, feeds = one_node("QGemm", inputs, consts=(1, 2), **attrs)
    got = next(iter(assert_kernel_is_reference(graph, feeds).values()))
    for i, j in itertools.product(range(m), range(n)):
        acc = int(b[j]) + sum(int(x[i, t]) * int(w[j, t]) for t in range(k))
        neg = acc < 0 and leaky
        v = oracle.rescale(acc, (attrs["neg_mult"] if neg else mult)[j], (attrs["neg_shift"] if neg else shift)[j])
        if residual:
            v += oracle.rescale(int(inputs[3][i, j]) - attrs["res_zero"], attrs["res_mult"], attrs["res_shift"])
        assert got[i, j] == py_store(v, attrs)


# ---------------------------------------------------------------- QAdd, QMul
broadcast_pairs = st.sampled_from([((2, 3, 4, 5), (2, 3, 4, 5)), ((2, 3, 4, 5), (1, 3, 1, 1)), ((3, 1), (1, 4)),
                                   ((4,), (2, 3, 4)), ((), (2, 2)), ((1, 16, 7, 7), (1, 16, 7, 7))])


TWO_GRIDS = {"QAdd": lambda a, b: a + b, "QSub": lambda a, b: a - b, "QMax": max, "QMin": min}
"""How each two-grid op combines its rescaled operands (docs/quantization.md)."""


@pytest.mark.parametrize("op", list(TWO_GRIDS))
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), shapes=broadcast_pairs, a_dtype=st.sampled_from([INT8, INT16]),
       b_dtype=st.sampled_from([INT8, INT16]), out=st.sampled_from([INT8, INT16]))
def test_qadd_qsub_qmax_qmin_kernels_are_the_reference_and_the_formula(op, seed, shapes, a_dtype, b_dtype, out):
    rng = np.random.default_rng(seed)
    a, b = ints(rng, shapes[0], a_dtype), ints(rng, shapes[1], b_dtype)
    (a_mult, b_mult), (a_shift, b_shift) = multipliers(rng, 2, 1e-3, 4.0)
    attrs = dict(a_zero=int(rng.integers(*RANGE[a_dtype])), a_mult=a_mult, a_shift=a_shift,
                 b_zero=int(rng.integers(*RANGE[b_dtype])), b_mult=b_mult, b_shift=b_shift, **output_attrs(rng, out))
    graph, feeds = one_node(op, [a, b], **attrs)
    got = next(iter(assert_kernel_is_reference(graph, feeds).values()))
    want = [py_store(TWO_GRIDS[op](oracle.rescale(int(p) - attrs["a_zero"], a_mult, a_shift),
                                   oracle.rescale(int(q) - attrs["b_zero"], b_mult, b_shift)), attrs)
            for p, q in zip(*(v.reshape(-1) for v in np.broadcast_arrays(a, b)))]
    assert got.reshape(-1).tolist() == want


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), shapes=broadcast_pairs, a_dtype=st.sampled_from([INT8, INT16]),
       b_dtype=st.sampled_from([INT8, INT16]), out=st.sampled_from([INT8, INT16]))
def test_qmul_kernel_is_the_reference_and_the_formula(seed, shapes, a_dtype, b_dtype, out):
    """16-bit products reach 2^32: v * m passes int64 and must stay exact."""
    rng = np.random.default_rng(seed)
    a, b = ints(rng, shapes[0], a_dtype), ints(rng, shapes[1], b_dtype)
    (mult,), (shift,) = multipliers(rng, 1, 1e-9, 1e-1)
    attrs = dict(a_zero=int(rng.integers(*RANGE[a_dtype])), b_zero=int(rng.integers(*RANGE[b_dtype])), mult=mult,
                 shift=shift, **output_attrs(rng, out))
    graph, feeds = one_node("QMul", [a, b], **attrs)
    got = next(iter(assert_kernel_is_reference(graph, feeds).values()))
    want = [py_store(oracle.rescale((int(p) - attrs["a_zero"]) * (int(q) - attrs["b_zero"]), mult, shift), attrs)
            for p, q in zip(*(v.reshape(-1) for v in np.broadcast_arrays(a, b)))]
    assert got.reshape(-1).tolist() == want


# ---------------------------------------------------------------- QAvgPool
def py_qavg_pool(x, attrs) -> np.ndarray:
    (kh, kw), (sh, sw), pads = attrs["kernel_shape"], attrs["strides"], attrs["pads"]
    batch, chans, height, width = x.shape
    out = []
    for size, k, s, begin, end in ((height, kh, sh, pads[0], pads[2]), (width, kw, sw, pads[1], pads[3])):
        room = size + begin + end - k
        n = (-(-room // s) if attrs["ceil_mode"] else room // s) + 1
        out.append(n - 1 if attrs["ceil_mode"] and (n - 1) * s >= size + begin else n)
    y = np.zeros((batch, chans, *out), np.int64)
    for n, c, oh, ow in itertools.product(range(batch), range(chans), *map(range, out)):
        total = count = 0
        for i, j in itertools.product(range(kh), range(kw)):
            iy, ix = oh * sh - pads[0] + i, ow * sw - pads[1] + j
            if 0 <= iy < height and 0 <= ix < width:
                total += int(x[n, c, iy, ix]) - attrs["x_zero"]
            padded = -pads[0] <= iy < height + pads[2] and -pads[1] <= ix < width + pads[3]
            count += padded if attrs["count_include_pad"] else (0 <= iy < height and 0 <= ix < width)
        y[n, c, oh, ow] = py_store(oracle.rescale(total, attrs["mults"][count - 1], attrs["shifts"][count - 1]), attrs)
    return y


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       strides=st.tuples(st.integers(1, 3), st.integers(1, 2)), ceil_mode=st.integers(0, 1),
       include_pad=st.integers(0, 1), dtype=st.sampled_from([INT8, INT16]), data=st.data())
def test_qavg_pool_kernel_is_the_reference_and_the_formula(seed, kernel, strides, ceil_mode, include_pad, dtype,
                                                           data):
    rng = np.random.default_rng(seed)
    pads = [data.draw(st.integers(0, k - 1)) for k in kernel * 2]
    x = ints(rng, (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3)),
                   *(data.draw(st.integers(k, k + 5)) for k in kernel)), dtype)
    reals = [float(rng.uniform(0.5, 2.0)) / c for c in range(1, kernel[0] * kernel[1] + 1)]
    mults, shifts = qscheme.quantize_multipliers(reals)
    attrs = dict(kernel_shape=list(kernel), strides=list(strides), pads=pads, ceil_mode=ceil_mode,
                 count_include_pad=include_pad, x_zero=int(rng.integers(*RANGE[dtype])), mults=mults.tolist(),
                 shifts=shifts.tolist(), **output_attrs(rng, dtype))
    graph, feeds = one_node("QAvgPool", [x], **attrs)
    got = next(iter(assert_kernel_is_reference(graph, feeds).values()))
    np.testing.assert_array_equal(got, py_qavg_pool(x, attrs))


def test_global_average_pool_as_a_whole_plane_qavg_pool():
    rng = np.random.default_rng(0)
    x = ints(rng, (2, 8, 7, 7), INT8)
    mults, shifts = qscheme.quantize_multipliers([0.9 / c for c in range(1, 50)])
    graph, feeds = one_node("QAvgPool", [x], kernel_shape=[7, 7], x_zero=-5, mults=mults.tolist(),
                            shifts=shifts.tolist(), out_zero=3, lo=-128, hi=127)
    got = next(iter(assert_kernel_is_reference(graph, feeds).values()))
    sums = (x.astype(np.int64) + 5).sum(axis=(2, 3), keepdims=True)
    want = [py_store(oracle.rescale(int(s), int(mults[48]), int(shifts[48])), dict(out_zero=3, lo=-128, hi=127))
            for s in sums.reshape(-1)]
    assert got.shape == (2, 8, 1, 1) and got.reshape(-1).tolist() == want


# ---------------------------------------------------------------- QLut, QConcat
@pytest.mark.parametrize("out", [INT8, INT16])
def test_qlut_is_a_table_lookup(out):
    rng = np.random.default_rng(1)
    table = ints(rng, 256, out).astype(np.int64).tolist()
    x = np.arange(-128, 128, dtype=np.int8).reshape(4, 64)
    graph, feeds = one_node("QLut", [x], table=table, out_dtype=out.name)
    got = next(iter(assert_kernel_is_reference(graph, feeds).values()))
    assert got.dtype == out and got.reshape(-1).tolist() == table


@pytest.mark.parametrize("out", [INT8, INT16])
def test_qlut_on_16_bit_codes_interpolates_its_513_entries(out):
    """Every int16 code, against the table's words in plain Python
    (tests/helpers/qops.py_table): entries at every 128th code exactly, the
    codes between rounded half up on the line between them."""
    rng = np.random.default_rng(2)
    table = ints(rng, 513, out).astype(np.int64).tolist()
    x = np.arange(-32768, 32768, dtype=np.int16).reshape(8, -1)
    graph, feeds = one_node("QLut", [x], table=table, out_dtype=out.name)
    got = next(iter(assert_kernel_is_reference(graph, feeds).values()))
    assert got.dtype == out
    codes = x.reshape(-1).tolist()
    assert got.reshape(-1).tolist() == [py_table(table, c) for c in codes]
    assert got.reshape(-1)[::128].tolist() == table[:512]


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(1, 4), axis=st.integers(-3, 2),
       out=st.sampled_from([INT8, INT16]), data=st.data())
def test_qconcat_kernel_is_the_reference_and_the_formula(seed, count, axis, out, data):
    rng = np.random.default_rng(seed)
    base = [2, 3, 4]
    xs = []
    for _ in range(count):
        shape = list(base)
        shape[axis] = data.draw(st.integers(1, 3))
        xs.append(ints(rng, shape, data.draw(st.sampled_from([INT8, INT16]))))
    mults, shifts = multipliers(rng, count, 1e-3, 4.0)
    zeros = [int(rng.integers(*RANGE[x.dtype])) for x in xs]
    attrs = dict(axis=axis, zeros=zeros, mults=mults, shifts=shifts, **output_attrs(rng, out))
    graph, feeds = one_node("QConcat", xs, **attrs)
    got = next(iter(assert_kernel_is_reference(graph, feeds).values()))
    parts = [np.vectorize(lambda v, i=i: py_store(oracle.rescale(int(v) - zeros[i], mults[i], shifts[i]), attrs),
                          otypes=[np.int64])(x) for i, x in enumerate(xs)]
    np.testing.assert_array_equal(got, np.concatenate(parts, axis=axis))


# ---------------------------------------------------------------- layout ops and segment edges
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       strides=st.tuples(st.integers(1, 3), st.integers(1, 3)), dilations=st.tuples(st.integers(1, 2),
                                                                                     st.integers(1, 2)),
       ceil_mode=st.integers(0, 1), data=st.data())
def test_max_pool_on_codes_matches_the_kernel(seed, kernel, strides, dilations, ceil_mode, data):
    rng = np.random.default_rng(seed)
    pads = [data.draw(st.integers(0, k - 1)) for k in kernel * 2]
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    x = ints(rng, (1, 2, *(data.draw(st.integers(s, s + 4)) for s in spans)), INT8)
    graph, feeds = one_node("MaxPool", [x], kernel_shape=list(kernel), strides=list(strides), pads=pads,
                            dilations=list(dilations), ceil_mode=ceil_mode)
    assert_kernel_is_reference(graph, feeds)


@pytest.mark.parametrize("coordinates", ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "asymmetric",
                                         "align_corners"])
@pytest.mark.parametrize("nearest", ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
def test_nearest_resize_on_codes_matches_the_kernel(coordinates, nearest):
    rng = np.random.default_rng(0)
    x = ints(rng, (1, 2, 3, 4), INT8)
    for parameter in (np.array([1, 1, 2, 3], np.float32), None):
        inputs = [x, None, parameter, None if parameter is not None else np.array([1, 2, 6, 4], np.int64)]
        graph, feeds = one_node("Resize", inputs, consts=(2, 3), mode="nearest",
                                coordinate_transformation_mode=coordinates, nearest_mode=nearest)
        assert_kernel_is_reference(graph, feeds)


def quantized_block(rng, x_shape=(2, 3, 8, 8)) -> tuple[Graph, dict]:
    """QuantizeLinear, QConv, MaxPool, QAvgPool, layout ops, QGemm, QAdd,
    QLut, QConcat, DequantizeLinear: one accelerator segment's body."""
    b = GraphBuilder("block")
    x = b.input("x", x_shape)
    q = b.QuantizeLinear(x, b.const(np.float32(0.05)), b.const(np.int8(-3)))
    mult, shift = multipliers(rng, 4, 1e-4, 1e-2)
    conv = b.QConv(q, b.const(ints(rng, (4, 3, 3, 3), INT8, -127, 127)),
                   b.const(rng.integers(-500, 500, 4).astype(np.int32)), pads=[1, 1, 1, 1], x_zero=-3, mult=mult,
                   shift=shift, out_zero=-20, lo=-20, hi=127)
    pooled = b.MaxPool(conv, kernel_shape=[2, 2], strides=[2, 2])
    up = b.Resize(pooled, None, b.const(np.array([1, 1, 2, 2], np.float32)), mode="nearest",
                  coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    mults, shifts = qscheme.quantize_multipliers([1.0 / c for c in range(1, 5)])
    avg = b.QAvgPool(up, kernel_shape=[2, 2], strides=[2, 2], x_zero=-20, mults=mults.tolist(),
                     shifts=shifts.tolist(), out_zero=-20, lo=-128, hi=127)
    flat = b.Flatten(b.Transpose(avg, perm=[0, 2, 3, 1]), axis=1)
    mult, shift = multipliers(rng, 5, 1e-4, 1e-2)
    gemm = b.QGemm(flat, b.const(ints(rng, (5, 64), INT8, -127, 127)),
                   b.const(rng.integers(-500, 500, 5).astype(np.int32)), x_zero=-20, mult=mult, shift=shift,
                   out_zero=0, lo=-128, hi=127)
    shaped = b.Unsqueeze(b.Squeeze(b.Reshape(gemm, b.const(np.array([0, 5, 1], np.int64))),
                                   b.const(np.array([2], np.int64))), b.const(np.array([-1], np.int64)))
    (m1, m2), (n1, n2) = multipliers(rng, 2, 0.2, 2.0)
    added = b.QAdd(shaped, shaped, a_zero=0, a_mult=m1, a_shift=n1, b_zero=0, b_mult=m2, b_shift=n2, out_zero=1,
                   lo=-128, hi=127)
    lut = b.QLut(added, table=ints(rng, 256, INT8).astype(np.int64).tolist())
    (m1, m2), (n1, n2) = multipliers(rng, 2, 0.2, 2.0)
    cat = b.QConcat(added, lut, axis=1, zeros=[1, 0], mults=[m1, m2], shifts=[n1, n2], out_zero=2, lo=-128,
                    hi=127)
    out = b.DequantizeLinear(cat, b.const(np.float32(0.1)), b.const(np.int8(2)))
    return b.build(out, conv), {"x": rng.standard_normal(x_shape).astype(np.float32) * 3}


def test_a_quantized_segment_body_matches_the_kernels():
    graph, feeds = quantized_block(np.random.default_rng(5))
    assert_kernel_is_reference(graph, feeds)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from([INT8, INT16]), per_axis=st.booleans())
def test_quantize_and_dequantize_at_segment_edges_match_the_kernels(seed, dtype, per_axis):
    """ONNX's float32 semantics, ties (x / scale exactly k + 1/2) included."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.01, 0.5, 3 if per_axis else 1).astype(np.float32).reshape(-1 if per_axis else ())
    zero = ints(rng, scale.shape, dtype, -100, 100)
    halves = (rng.integers(-300, 300, (2, 3, 4)) + 0.5).astype(np.float32) * np.float32(0.25)
    x = np.concatenate([halves, (rng.standard_normal((2, 3, 4)) * 40).astype(np.float32)])
    scale = scale if per_axis else np.float32(0.25)
    b = GraphBuilder()
    q = b.QuantizeLinear(b.input("x", x.shape), b.const(scale), b.const(zero))
    graph = b.build(b.DequantizeLinear(q, b.const(scale), b.const(zero)), q)
    assert_kernel_is_reference(graph, {"x": x})


# ---------------------------------------------------------------- partitioned graphs
def segment_graph() -> tuple[Graph, dict]:
    """CPU (Relu) -> accelerator (quantized block) -> CPU (Sigmoid), as
    Segment nodes."""
    rng = np.random.default_rng(11)
    body, feeds = quantized_block(rng)
    cpu_in = GraphBuilder("cpu_in")
    relu_body = cpu_in.build(cpu_in.Relu(cpu_in.input("a", [2, 3, 8, 8])))
    cpu_out = GraphBuilder("cpu_out")
    sigmoid_body = cpu_out.build(cpu_out.Sigmoid(cpu_out.input("c", [2, 10, 1])))
    graph = Graph("partitioned")
    x = graph.add_input("x", relu_body.inputs[0].type)
    (a,) = graph.add_node("Segment", [x], {"body": relu_body, "device": "CPU"}, name="seg0").outputs
    y, conv = graph.add_node("Segment", [a], {"body": body, "device": "FPGA"}, name="seg1").outputs
    (z,) = graph.add_node("Segment", [y], {"body": sigmoid_body, "device": "CPU"}, name="seg2").outputs
    graph.outputs = [z, conv]
    return graph, feeds


def run_on_executor(node, inputs):
    """The cpu callback: a CPU segment's body lowered and run by the executor."""
    body = node.attrs["body"]
    results = Executor(lower_to_program(body), check=True).run({v.name: a for v, a in zip(body.inputs, inputs)})
    return list(results.values())


def test_a_partitioned_graph_runs_cpu_segments_through_the_callback():
    graph, feeds = segment_graph()
    seen = []
    got = run_reference(graph, feeds, cpu=run_on_executor, observe=lambda name, _: seen.append(name))
    want = run_graph(graph, feeds)
    assert list(got) == list(want)
    for name in got:
        np.testing.assert_array_equal(got[name], want[name])
    accelerated = {v.name for node in graph.node("seg1").attrs["body"].nodes for v in node.outputs}
    assert accelerated | {"seg0", "seg2"} == set(seen) - {"seg1", "seg1_out1"}


def test_fused_groups_are_evaluated_through_their_bodies():
    rng = np.random.default_rng(2)
    inner = GraphBuilder("group")
    mult, shift = multipliers(rng, 3, 1e-4, 1e-2)
    conv = inner.QConv(inner.input("q", [1, 2, 5, 5], INT8), inner.const(ints(rng, (3, 2, 3, 3), INT8, -127, 127)),
                       inner.const(np.arange(3, dtype=np.int32)), x_zero=1, mult=mult, shift=shift, out_zero=0,
                       lo=0, hi=127)
    body = inner.build(inner.QLut(conv, table=ints(rng, 256, INT8).astype(np.int64).tolist()))
    graph = Graph("fused")
    q = graph.add_input("q", body.inputs[0].type)
    graph.outputs = graph.add_node("Fused", [q], {"body": body, "pattern": Pattern.OPAQUE, "anchor": "QConv"}).outputs
    assert_kernel_is_reference(graph, {"q": ints(rng, (1, 2, 5, 5), INT8)})


def test_float_ops_without_a_cpu_callback_are_named():
    graph, feeds = segment_graph()
    with pytest.raises(IntegerReferenceError, match="op Relu is not part of the integer reference"):
        run_reference(graph, feeds)
