"""Winograd convolution (runtime.kernels.nn_winograd): the transforms, the
kernels against a float64 direct convolution (borders, partial tiles, pads,
batches), its accuracy on ResNet-like data, the weight cache, and Conv's
choice of it; plus the depthwise and 2-D max-pool fast paths added with it."""
from __future__ import annotations

import gc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.errors import KernelError
from runtime.kernels import nn_winograd, run_kernel
from runtime.kernels.nn import conv_nd
from runtime.kernels.nn_winograd import tile_size, winograd_conv2d, winograd_weights
from runtime.kernels.weight_cache import frozen
from runtime.kernels.winograd_matrices import toom_cook
from tests.helpers.conv import naive_conv

SETTINGS = settings(max_examples=40, deadline=None)


def winograd(x, w, b, pads, m):
    """Conv through the Winograd kernel; pads as ONNX gives them."""
    out_h = x.shape[2] + pads[0] + pads[2] - 2
    out_w = x.shape[3] + pads[1] + pads[3] - 2
    out = np.empty((x.shape[0], w.shape[0], out_h, out_w), dtype=np.float32)
    winograd_conv2d(x, winograd_weights.get(w, m), b, out, pads, m)
    return out


def reference(x, w, b, pads):
    return naive_conv(x, w, b, (1, 1), pads, (1, 1), 1)


def relative_error(got, want):
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


def he_case(chans, out_c, size, seed=0, batch=1):
    """ResNet-like operands: non-negative (post-ReLU) activations, He-scaled
    weights, a bias."""
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal((batch, chans, size, size)), 0).astype(np.float32)
    w = (rng.standard_normal((out_c, chans, 3, 3)) * np.sqrt(2 / (9 * chans))).astype(np.float32)
    b = (0.1 * rng.standard_normal(out_c)).astype(np.float32)
    return x, w, b


# ---------------------------------------------------------------- transforms
@pytest.mark.parametrize("m", [2, 4])
def test_toom_cook_matrices_compute_a_correlation(m):
    a_t, g, b_t = toom_cook(m)
    rng = np.random.default_rng(m)
    for _ in range(5):
        d, k = rng.standard_normal(m + 2), rng.standard_normal(3)
        want = np.array([d[i:i + 3] @ k for i in range(m)])
        np.testing.assert_allclose(a_t @ ((g @ k) * (b_t @ d)), want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("m", [2, 4])
def test_transforms_are_exact_in_float32(m):
    """Every entry of A^T and B^T is a short binary fraction, so the float32
    transforms in the kernels round nothing."""
    a_t, _, b_t = toom_cook(m)
    for matrix in (a_t, b_t):
        np.testing.assert_array_equal(matrix.astype(np.float32).astype(np.float64), matrix)
        np.testing.assert_array_equal(matrix * 8, np.round(matrix * 8))


# ---------------------------------------------------------------- kernel
@st.composite
def winograd_cases(draw):
    batch = draw(st.integers(1, 3))
    chans, out_c = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    pads = [draw(st.integers(0, 2)) for _ in range(4)]
    height = draw(st.integers(max(1, 3 - pads[0] - pads[2]), 13))
    width = draw(st.integers(max(1, 3 - pads[1] - pads[3]), 13))
    seed = draw(st.integers(0, 10_000))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, chans, height, width)).astype(np.float32)
    w = rng.standard_normal((out_c, chans, 3, 3)).astype(np.float32)
    b = rng.standard_normal(out_c).astype(np.float32) if draw(st.booleans()) else None
    return x, w, b, pads, draw(st.sampled_from([2, 4]))


@SETTINGS
@given(case=winograd_cases())
def test_winograd_matches_direct_convolution(case):
    """Sizes not divisible by the tile, asymmetric pads, batches, no bias."""
    x, w, b, pads, m = case
    want = reference(x, w, b, pads)
    got = winograd(x, w, b, pads, m)
    scale = np.abs(x).max() * np.abs(w).sum(axis=(1, 2, 3)).max() + (0 if b is None else np.abs(b).max())
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale + 1e-6)


@pytest.mark.parametrize("chans, size, m", [(64, 28, 4), (128, 14, 4), (256, 14, 2), (64, 9, 4)])
def test_winograd_accuracy_on_resnet_like_data(chans, size, m):
    """Error within 1e-5 of the output's largest magnitude (F(4x4) measures
    about 2e-6 to 4e-6, F(2x2) about 5e-7)."""
    x, w, b = he_case(chans, chans, size)
    want = reference(x, w, b, (1, 1, 1, 1))
    assert relative_error(winograd(x, w, b, (1, 1, 1, 1), m), want) < 1e-5


@pytest.mark.parametrize("tile_elements", [1, 1 << 22])
def test_large_batches_go_image_group_by_image_group(monkeypatch, tile_elements):
    x, w, b = he_case(8, 5, 10, batch=5)
    monkeypatch.setattr(nn_winograd, "TILE_ELEMENTS", tile_elements)
    for m in (2, 4):
        got = winograd(x, w, b, (1, 0, 2, 1), m)
        assert relative_error(got, reference(x, w, b, (1, 0, 2, 1))) < 1e-5


def test_winograd_rejects_inconsistent_operands():
    x, w, b = he_case(4, 3, 6)
    u = winograd_weights.get(w, 4)
    out = np.empty((1, 3, 6, 6), dtype=np.float32)
    with pytest.raises(KernelError, match="output has shape"):
        winograd_conv2d(x, u, b, out, (1, 1, 0, 0), 4)
    with pytest.raises(KernelError, match="transformed weights"):
        winograd_conv2d(x, winograd_weights.get(w, 2), b, out, (1, 1, 1, 1), 4)
    with pytest.raises(KernelError, match="float32"):
        winograd_conv2d(x.astype(np.float64), u, b, out, (1, 1, 1, 1), 4)
    with pytest.raises(KernelError, match="tile size"):
        winograd_conv2d(x, u, b, out, (1, 1, 1, 1), 3)
    with pytest.raises(KernelError, match="B has shape"):
        winograd_conv2d(x, u, b[:2], out, (1, 1, 1, 1), 4)


# ---------------------------------------------------------------- weight cache
def test_weight_cache_serves_the_same_array_only():
    _, w, _ = he_case(4, 3, 6)
    u = winograd_weights.get(w, 4)
    assert winograd_weights.get(w, 4) is u
    twin = w.copy()
    assert winograd_weights.get(twin, 4) is not u
    np.testing.assert_array_equal(winograd_weights.get(twin, 4), u)
    assert winograd_weights.get(w, 2).shape == (16, 3, 4)


def test_weight_cache_sees_arrays_rewritten_in_place():
    _, w, _ = he_case(4, 3, 6)
    u = winograd_weights.get(w, 4)
    w *= 2
    np.testing.assert_allclose(winograd_weights.get(w, 4), 2 * u, rtol=1e-6)


def test_weight_cache_trusts_frozen_arrays_until_they_are_writeable_again():
    _, w, _ = he_case(4, 3, 6)
    w.flags.writeable = False
    view = w[1:]  # read-only too: its memory is w's
    assert frozen(w) and frozen(view) and not frozen(np.ones(3))
    u = winograd_weights.get(view, 4)
    assert winograd_weights.get(view, 4) is u
    w.flags.writeable = True  # the owner can be written again: the view is sampled again, and the rewrite is seen
    assert not frozen(view)
    w *= 2
    np.testing.assert_allclose(winograd_weights.get(view, 4), 2 * u, rtol=1e-6)
    blob = np.frombuffer(bytes(w.tobytes()), np.float32)  # immutable bytes behind it
    assert frozen(blob) and not frozen(np.frombuffer(bytearray(8), np.float32))


def test_weight_cache_forgets_dead_arrays():
    _, w, _ = he_case(4, 3, 6)
    winograd_weights.get(w, 4)
    gc.collect()  # entries of earlier tests' arrays that wait in reference cycles go now, not in the count below
    before = len(winograd_weights)
    del w
    gc.collect()
    assert len(winograd_weights) == before - 1


def test_non_finite_weights_are_not_transformed():
    _, w, _ = he_case(4, 3, 6)
    w[0, 0, 1, 1] = np.inf
    assert winograd_weights.get(w, 4) is None


# ---------------------------------------------------------------- Conv's choice
@pytest.mark.parametrize("shape, pads, want", [
    ((1, 64, 56, 56), (1, 1, 1, 1), 4),
    ((1, 128, 28, 28), (1, 1, 1, 1), 2),
    ((1, 256, 14, 14), (1, 1, 1, 1), 2),
    ((1, 512, 7, 7), (1, 1, 1, 1), 0),
    ((1, 8, 56, 56), (1, 1, 1, 1), 0),
    ((2, 32, 40, 38), (1, 1, 0, 0), 2),
])
def test_tile_size_choice(shape, pads, want):
    assert tile_size(shape, (shape[1], shape[1], 3, 3), pads) == want


def test_conv_uses_winograd_where_chosen(monkeypatch):
    x, w, b = he_case(32, 32, 24, batch=2)
    pads = (1, 2, 0, 1)
    calls = []
    monkeypatch.setattr("runtime.kernels.nn_conv.winograd_conv2d",
                        lambda *args: calls.append(args) or winograd_conv2d(*args))
    got = conv_nd(x, w, b, strides=(1, 1), pads=pads, dilations=(1, 1))
    assert len(calls) == 1
    assert relative_error(got, reference(x, w, b, pads)) < 1e-5


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_conv_with_non_finite_weights_keeps_direct_semantics():
    x, w, b = he_case(32, 32, 24)
    w[3, 5, 0, 0] = np.inf
    got = conv_nd(x, w, b, strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1))
    want = reference(x, w, b, (1, 1, 1, 1))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))


def test_scratch_buffers_are_reused_per_thread_up_to_a_size(monkeypatch):
    first = nn_winograd.scratch("test", (3, 4), np.float32)
    again = nn_winograd.scratch("test", (2, 5), np.float32)
    assert np.shares_memory(first, again) and again.shape == (2, 5)
    assert not np.shares_memory(first, nn_winograd.scratch("test", (3, 4), np.float64))
    monkeypatch.setattr(nn_winograd, "SCRATCH_BYTES", 16)
    big = nn_winograd.scratch("test", (3, 4), np.float32)
    assert not np.shares_memory(big, nn_winograd.scratch("test", (3, 4), np.float32))


# ---------------------------------------------------------------- other fast paths of this change
# The depthwise (nn_depthwise) and 2-D max-pool (pool) fast paths added with
# the Winograd kernel, on planes large enough to take them.
@pytest.mark.parametrize("size, stride, pad, dilation", [
    ((14, 14), 1, 1, 1),   # flat interior, wrapped taps masked
    ((40, 36), 1, 1, 1),   # flat interior, edge columns redone
    ((17, 23), 1, 2, 2),   # dilated, masked
    ((20, 16), 2, 1, 1),   # stride 2 over the four phases
    ((21, 15), 2, 1, 1),   # odd sizes, stride 2
    ((19, 22), 2, 2, 1),   # stride 2, per-row path
    ((6, 6), 1, 1, 1),     # small plane: channels last
])
def test_depthwise_paths_match_direct_convolution(size, stride, pad, dilation):
    rng = np.random.default_rng(sum(size) + stride)
    x = rng.standard_normal((2, 5, *size)).astype(np.float32)
    w = rng.standard_normal((5, 1, 3, 3)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    pads, strides, dilations = (pad,) * 4, (stride, stride), (dilation, dilation)
    got = conv_nd(x, w, b, strides=strides, pads=pads, dilations=dilations, group=5)
    want = naive_conv(x, w, b, strides, pads, dilations, 5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def max_pool_reference(x, kernel, stride, pad):
    """2-D max pool skipping NaNs (a window of NaNs gives -inf)."""
    padded = np.pad(np.where(np.isnan(x), -np.inf, x), [(0, 0), (0, 0), (pad, pad), (pad, pad)],
                    constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kernel, kernel), axis=(2, 3))
    return windows[:, :, ::stride, ::stride].max(axis=(-2, -1))


@pytest.mark.parametrize("kernel, stride, pad", [(3, 2, 1), (2, 2, 0), (3, 1, 1), (3, 3, 0)])
def test_max_pool_2d_fast_path_skips_nan(kernel, stride, pad):
    rng = np.random.default_rng(kernel * 10 + stride)
    x = rng.standard_normal((2, 3, 13, 12)).astype(np.float32)
    x[0, 0, :4, :4] = np.nan
    x[1, 2, 5, ::3] = np.nan
    x[1, 1, 7, 7] = -np.inf
    attrs = dict(kernel_shape=(kernel, kernel), strides=(stride, stride), pads=(pad,) * 4, dilations=(1, 1),
                 ceil_mode=0, storage_order=0)
    got = run_kernel("MaxPool", [x], attrs)[0]
    np.testing.assert_array_equal(got, max_pool_reference(x, kernel, stride, pad))



@pytest.mark.parametrize("m", [2, 4])
def test_packed_weights_run_on_tessera_gemm_like_blas(m):
    """U packed for Tessera's GEMM (transforms on the thread pool) gives the
    BLAS path's result; weights holding NaN get no packed form either."""
    x, w, b = he_case(16, 24, 13, seed=m, batch=2)
    out_shape = (2, 24, 13, 13)
    packed, plain = np.empty(out_shape, np.float32), np.empty(out_shape, np.float32)
    winograd_conv2d(x, nn_winograd.packed_winograd_weights.get(w, m), b, packed, (1, 1, 1, 1), m)
    winograd_conv2d(x, winograd_weights.get(w, m), b, plain, (1, 1, 1, 1), m)
    np.testing.assert_allclose(packed, plain, rtol=0, atol=1e-5 * float(np.abs(plain).max()))
    w[0, 0, 0, 0] = np.nan
    assert nn_winograd.packed_winograd_weights.get(w.copy(), m) is None
