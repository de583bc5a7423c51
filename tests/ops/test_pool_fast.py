"""MaxPool's row loop (float32 1-D and 2-D pools with unit dilations, the
fast path) and its cached plans, against a numpy reference of Tessera's
MaxPool semantics (NaNs skipped, a window of nothing but NaN and padding
gives -inf), against the general loop (float64 inputs take it) and against
onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.errors import KernelError
from runtime.kernels import pool, run_kernel
from tests.helpers.node_models import make_node_model, node_feeds, run_onnxruntime, run_tessera


# ---------------------------------------------------------------- reference
def out_len(size, kernel, stride, pad_begin, pad_end, dilation, ceil_mode):
    span = (kernel - 1) * dilation + 1
    numer = size + pad_begin + pad_end - span
    if not ceil_mode:
        return numer // stride + 1
    out = -(-numer // stride) + 1
    if (out - 1) * stride >= size + pad_begin:  # the last window must start inside the input or its left pad
        out -= 1
    return out


def reference_max_pool(x, kernel, strides, pads, dilations=None, ceil_mode=0):
    """Max over each window's taps inside the input, NaNs skipped (-inf when
    there is nothing else), in float64."""
    spatial = x.ndim - 2
    dilations = dilations or [1] * spatial
    outs = [out_len(x.shape[2 + i], kernel[i], strides[i], pads[i], pads[spatial + i], dilations[i], ceil_mode)
            for i in range(spatial)]
    # pad with -inf far enough that every tap of every window exists
    extra = [max(0, (outs[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - pads[i] - x.shape[2 + i])
             for i in range(spatial)]
    clean = np.where(np.isnan(x), -np.inf, x.astype(np.float64))
    padded = np.pad(clean, [(0, 0), (0, 0)] + [(pads[i], extra[i]) for i in range(spatial)],
                    constant_values=-np.inf)
    y = np.full(x.shape[:2] + tuple(outs), -np.inf)
    for taps in np.ndindex(*kernel):
        index = tuple(slice(t * d, t * d + (o - 1) * s + 1, s) for t, d, o, s in zip(taps, dilations, outs, strides))
        y = np.maximum(y, padded[(slice(None), slice(None)) + index])
    return y


def attrs_of(kernel, strides, pads, dilations=None, ceil_mode=0, **more):
    spatial = len(kernel)
    return dict(kernel_shape=tuple(kernel), strides=tuple(strides), pads=tuple(pads),
                dilations=tuple(dilations or (1,) * spatial), ceil_mode=ceil_mode, **more)


def specials(shape, seed, nan=0.05, inf=0.03):
    """Random float32 values with some NaN, -inf and +inf, and (with NaNs)
    a few windows' worth of nothing but NaN or -inf."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    draw = rng.random(shape)
    x[draw < nan] = np.nan
    x[(draw >= nan) & (draw < nan + inf)] = -np.inf
    x[(draw >= nan + inf) & (draw < nan + inf + inf / 3)] = np.inf
    if nan and x.ndim == 4 and min(x.shape[2:]) >= 4:
        x[0, 0, :3, :3] = np.nan
        x[-1, -1, -3:, -3:] = -np.inf
        x[0, -1, 1:4, -4:-1] = np.nan
        x[0, -1, 2, -2] = -np.inf
    return x


def check(x, attrs, fast=True):
    """Tessera's MaxPool of x equals the reference, bit for bit (and equals
    the general loop's result on the float64 input); ``fast``: the plan
    takes the row loop."""
    plan = pool._cached_plan(x, attrs, False)
    assert (plan.loop is pool.max_pool_2d_rows) == fast
    (y,) = run_kernel("MaxPool", [x], attrs)
    want = reference_max_pool(x, attrs["kernel_shape"], attrs["strides"], attrs["pads"], attrs["dilations"],
                              attrs["ceil_mode"])
    assert y.dtype == x.dtype and y.shape == want.shape
    np.testing.assert_array_equal(y, want.astype(x.dtype))
    assert not np.isnan(y).any()
    (y64,) = run_kernel("MaxPool", [x.astype(np.float64)], attrs)
    np.testing.assert_array_equal(y, y64.astype(np.float32))


# ---------------------------------------------------------------- the row loop
GEOMETRIES = [
    # (shape, kernel, strides, pads, ceil_mode)
    ((1, 64, 112, 112), (3, 3), (2, 2), (1, 1, 1, 1), 0),  # ResNet-50's stem
    ((1, 3, 13, 13), (3, 3), (2, 2), (1, 1, 1, 1), 0),
    ((2, 5, 13, 11), (3, 3), (2, 2), (1, 1, 1, 1), 1),
    ((2, 7, 14, 15), (3, 3), (2, 2), (0, 0, 0, 0), 1),
    ((3, 1, 9, 10), (2, 2), (2, 2), (0, 0, 0, 0), 0),
    ((1, 5, 9, 10), (2, 2), (2, 2), (0, 0, 1, 1), 1),
    ((1, 13, 10, 9), (3, 3), (1, 1), (1, 1, 1, 1), 0),  # SAME at stride 1
    ((2, 3, 11, 7), (5, 5), (1, 1), (2, 2, 2, 2), 0),
    ((1, 3, 17, 19), (5, 5), (3, 3), (4, 1, 0, 4), 1),
    ((1, 2, 8, 9), (3, 2), (2, 1), (2, 0, 1, 1), 0),
    ((1, 2, 8, 9), (2, 3), (1, 3), (0, 2, 1, 0), 1),
    ((2, 3, 7, 7), (7, 7), (1, 1), (0, 0, 0, 0), 0),  # a global-sized window
    ((1, 4, 6, 6), (4, 4), (4, 4), (3, 3, 3, 3), 1),
    ((1, 3, 12, 5), (6, 1), (2, 1), (5, 0, 5, 0), 0),  # more rows than the three-row pass
    ((1, 3, 5, 12), (1, 6), (1, 2), (0, 5, 0, 5), 1),
    ((1, 2, 1, 1), (1, 1), (1, 1), (0, 0, 0, 0), 0),
    ((1, 2, 1, 5), (3, 3), (1, 1), (1, 1, 1, 1), 0),  # one input row: two of each window's are padding
    ((1, 2, 5, 1), (3, 3), (2, 3), (2, 2, 2, 2), 1),
    ((3, 7, 45, 53), (3, 3), (1, 1), (1, 1, 1, 1), 0),  # many chunks, split inside planes
    ((2, 9, 31, 33), (3, 3), (2, 2), (1, 1, 1, 1), 1),
]


@pytest.mark.parametrize("shape,kernel,strides,pads,ceil_mode", GEOMETRIES)
def test_row_loop_matches_reference(shape, kernel, strides, pads, ceil_mode):
    x = specials(shape, seed=sum(shape))
    check(x, attrs_of(kernel, strides, pads, ceil_mode=ceil_mode))


@pytest.mark.parametrize("shape,kernel,strides,pads,ceil_mode", [
    ((2, 3, 17), (3,), (2,), (1, 1), 0),
    ((1, 5, 16), (2,), (2,), (0, 1), 1),
    ((3, 2, 9), (4,), (3,), (3, 2), 1),
    ((1, 1, 1), (1,), (1,), (0, 0), 0),
])
def test_row_loop_1d(shape, kernel, strides, pads, ceil_mode):
    check(specials(shape, seed=1), attrs_of(kernel, strides, pads, ceil_mode=ceil_mode))


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_row_loop_random_geometries(data):
    kernel = [data.draw(st.integers(1, 5)) for _ in range(2)]
    strides = [data.draw(st.integers(1, 4)) for _ in range(2)]
    pads = [data.draw(st.integers(0, k - 1)) for k in kernel] + [data.draw(st.integers(0, k - 1)) for k in kernel]
    dims = [data.draw(st.integers(max(1, k - pads[i] - pads[2 + i]), 24)) for i, k in enumerate(kernel)]
    shape = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 11)), *dims)
    x = specials(shape, seed=data.draw(st.integers(0, 999)), nan=data.draw(st.sampled_from([0.0, 0.1, 0.6])))
    fast = kernel[1] <= 2 * dims[1] + 2  # else the row buffer would be mostly padding
    check(x, attrs_of(kernel, strides, pads, ceil_mode=int(data.draw(st.booleans()))), fast)


def test_nan_and_infinity_windows():
    """NaNs never win; windows of NaN, or of NaN and -inf, give -inf; +inf
    wins over NaN."""
    x = np.array([[[[np.nan, np.nan, 1.0, np.nan, np.nan, -np.inf],
                    [np.nan, np.nan, np.nan, np.inf, -np.inf, np.nan]]]], dtype=np.float32)
    (y,) = run_kernel("MaxPool", [x], attrs_of((2, 2), (2, 2), (0, 0, 0, 0)))
    np.testing.assert_array_equal(y, [[[[-np.inf, np.inf, -np.inf]]]])
    (y,) = run_kernel("MaxPool", [x], attrs_of((1, 2), (1, 2), (0, 0, 0, 0)))
    np.testing.assert_array_equal(y, [[[[-np.inf, 1.0, -np.inf], [-np.inf, np.inf, -np.inf]]]])


def test_row_loop_spans_write_only_their_rows():
    """Any [start, stop) of rows, crossing planes, writes exactly those rows."""
    x = specials((3, 9, 10), seed=3)
    y_all = np.empty((3, 5, 5), np.float32)
    params = (3, 3, 2, 2, 1, 1, 11)
    pool.max_pool_2d_rows(0, 15, x, y_all, *params)
    want = reference_max_pool(x[None], (3, 3), (2, 2), (1, 1, 1, 1))[0].astype(np.float32)
    np.testing.assert_array_equal(y_all, want)
    for start, stop in [(0, 1), (3, 7), (4, 11), (14, 15), (9, 30), (7, 7)]:
        y = np.full((3, 5, 5), 7.0, np.float32)
        pool.max_pool_2d_rows(start, stop, x, y, *params)
        rows = y.reshape(15, 5)
        written = np.zeros(15, bool)
        written[start:min(stop, 15)] = True
        np.testing.assert_array_equal(rows[written], want.reshape(15, 5)[written])
        assert (rows[~written] == 7.0).all()


# ---------------------------------------------------------------- the other loops stay
@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int8, np.uint8, np.int16])
def test_other_dtypes_take_the_general_loop(dtype):
    x = (np.random.default_rng(0).integers(0, 100, (2, 3, 9, 8)) - 40).astype(dtype)
    attrs = attrs_of((3, 3), (2, 2), (1, 1, 1, 1), ceil_mode=1)
    (y,) = run_kernel("MaxPool", [x], attrs)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, reference_max_pool(x.astype(np.float64), (3, 3), (2, 2), (1, 1, 1, 1),
                                                        ceil_mode=1).astype(dtype))


@pytest.mark.parametrize("shape,kernel,strides,pads,dilations", [
    ((1, 3, 11, 12), (3, 3), (2, 2), (1, 1, 1, 1), (2, 2)),  # dilations
    ((1, 3, 11, 12), (3, 3), (1, 2), (2, 1, 1, 2), (1, 2)),
    ((1, 2, 5, 6), (3, 3), (1, 1), (3, 3, 3, 3), None),  # pads as large as the kernel
    ((1, 2, 3, 2), (1, 9), (1, 1), (0, 4, 0, 4), None),  # a kernel much wider than the input
    ((1, 2, 4, 5, 6), (2, 3, 2), (2, 1, 2), (1, 1, 0, 0, 1, 1), None),  # 3-D
])
def test_general_loop_cases(shape, kernel, strides, pads, dilations):
    x = specials(shape, seed=5)
    check(x, attrs_of(kernel, strides, pads, dilations), fast=False)


def test_indices_output_unchanged():
    x = specials((2, 3, 9, 10), seed=9, nan=0.1)
    for storage_order in (0, 1):
        attrs = attrs_of((3, 3), (2, 2), (1, 1, 1, 1), ceil_mode=1, storage_order=storage_order)
        y, idx = run_kernel("MaxPoolWithIndices", [x], attrs)
        (y_fast,) = run_kernel("MaxPool", [x], attrs)
        np.testing.assert_array_equal(y, y_fast)
        n, c, h, w = x.shape
        plane, rest = np.divmod(idx, h * w)
        flat = plane * h * w + (rest if storage_order == 0 else (rest % h) * w + rest // h)
        found = x.reshape(-1)[flat]
        np.testing.assert_array_equal(np.where(np.isnan(found), -np.inf, found)[np.isfinite(y)], y[np.isfinite(y)])


# ---------------------------------------------------------------- plans
def test_plans_follow_every_attribute():
    """One input shape under many attribute sets (tuples or lists), called
    twice each: every call gets its own window."""
    x = specials((1, 3, 10, 11), seed=2)
    cases = [attrs_of((3, 3), (2, 2), (1, 1, 1, 1)), attrs_of((3, 3), (2, 2), (1, 1, 1, 1), ceil_mode=1),
             attrs_of((3, 3), (1, 1), (1, 1, 1, 1)), attrs_of((2, 3), (2, 2), (0, 1, 1, 0)),
             attrs_of((3, 3), (2, 2), (1, 1, 1, 1), (2, 1)),
             dict(kernel_shape=[3, 3], strides=[2, 1], pads=[1, 0, 1, 0], dilations=[1, 1], ceil_mode=0)]
    for _ in range(2):
        for attrs in cases:
            (y,) = run_kernel("MaxPool", [x], attrs)
            np.testing.assert_array_equal(y, reference_max_pool(x, attrs["kernel_shape"], attrs["strides"],
                                                                attrs["pads"], attrs["dilations"],
                                                                attrs["ceil_mode"]).astype(np.float32))
    (y,) = run_kernel("MaxPool", [x.astype(np.float64)], cases[0])
    assert y.dtype == np.float64


def test_invalid_attributes_fail_every_time():
    x = specials((1, 1, 4, 4), seed=0)
    bad = attrs_of((2, 2), (0, 1), (0, 0, 0, 0))
    for _ in range(2):
        with pytest.raises(KernelError, match="strides"):
            run_kernel("MaxPool", [x], bad)
    with pytest.raises(KernelError, match="does not fit"):
        run_kernel("MaxPool", [x], attrs_of((9, 1), (1, 1), (0, 0, 0, 0)))
    with pytest.raises(KernelError, match="rank"):
        run_kernel("MaxPool", [np.zeros((4, 4), np.float32)], attrs_of((2,), (1,), (0, 0)))


def test_empty_batch():
    x = np.zeros((0, 3, 8, 8), np.float32)
    (y,) = run_kernel("MaxPool", [x], attrs_of((3, 3), (2, 2), (1, 1, 1, 1)))
    assert y.shape == (0, 3, 4, 4) and y.dtype == np.float32


# ---------------------------------------------------------------- against onnxruntime
@pytest.mark.parametrize("shape,kernel,strides,pads,ceil_mode", [
    ((1, 64, 112, 112), (3, 3), (2, 2), (1, 1, 1, 1), 0),
    ((2, 5, 13, 11), (3, 3), (2, 2), (1, 1, 1, 1), 1),
    ((1, 7, 15, 16), (2, 2), (2, 2), (0, 0, 0, 0), 1),
    ((3, 3, 10, 9), (3, 3), (1, 1), (1, 1, 1, 1), 0),
    ((1, 3, 17, 19), (5, 5), (3, 3), (4, 1, 0, 4), 1),
])
def test_matches_onnxruntime(shape, kernel, strides, pads, ceil_mode):
    """Through the whole pipeline (import, lowering, the executor's call),
    finite inputs with some infinities (onnxruntime starts its max at the
    lowest float, not -inf, and so differs on windows of -inf only)."""
    x = specials(shape, seed=11, nan=0.0, inf=0.01)
    model = make_node_model("MaxPool", [x], kernel_shape=list(kernel), strides=list(strides), pads=list(pads),
                            ceil_mode=ceil_mode)
    feeds = node_feeds([x])
    (ours,) = run_tessera(model, feeds)
    (theirs,) = run_onnxruntime(model, feeds)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


# ---------------------------------------------------------------- AveragePool over whole planes
@pytest.mark.parametrize("shape", [(1, 2048, 7, 7), (2, 5, 3, 4), (1, 3, 9), (1, 2, 2, 3, 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("include_pad", [0, 1])
def test_average_pool_of_one_window_a_plane_matches_the_general_loop(shape, dtype, include_pad):
    """A window as large as the plane, unpadded (ResNet-50's head), takes
    GlobalAveragePool's plane means: float64 sums like the general loop's,
    vectorised (reassociated), so equal to its result within a few units
    in the last place of the terms, with the same NaN spread."""
    rng = np.random.default_rng(len(shape))
    x = (rng.standard_normal(shape) * 10).astype(dtype)
    x.reshape(-1)[3] = np.nan if x.size > 40 else x.reshape(-1)[3]
    spatial = len(shape) - 2
    attrs = {"kernel_shape": shape[2:], "strides": (1,) * spatial, "pads": (0,) * (2 * spatial),
             "dilations": (1,) * spatial, "ceil_mode": 0, "count_include_pad": include_pad}
    got = run_kernel("AveragePool", [x], attrs)[0]
    work, _ = pool._pool_input("AveragePool", x, pool.FLOATS)
    general = pool._sum_or_mean_pool("AveragePool", work, attrs, pool.AVG_INCLUDE_PAD if include_pad
                                     else pool.AVG_EXCLUDE_PAD).astype(dtype)
    assert got.shape == shape[:2] + (1,) * spatial and got.dtype == dtype
    np.testing.assert_array_equal(np.isnan(got), np.isnan(general))
    scale = float(np.nanmax(np.abs(x.astype(np.float64))))  # the sums' rounding is relative to their terms
    np.testing.assert_allclose(got, general, rtol=2 * np.finfo(dtype).eps, atol=8 * np.finfo(dtype).eps * scale)
    np.testing.assert_allclose(got.astype(np.float64), np.mean(x.astype(np.float64), axis=tuple(range(2, x.ndim)),
                                                               keepdims=True), rtol=1e-3, atol=1e-3)
