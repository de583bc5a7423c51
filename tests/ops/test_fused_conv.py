"""FusedConv: a convolution with its bias, a residual add and a clamp done
by the conv's own paths (GEMM microkernel epilogue, Winograd output
transform, a pass after the depthwise and grouped kernels), against the
same conv followed by numpy's add, maximum and minimum."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.errors import KernelError
from runtime.kernels import run_kernel
from runtime.kernels.conv_weights import COLUMN_BLOCK
from runtime.kernels.nn import conv_nd
from tests.helpers.conv import naive_conv

CLAMPS = [None, (0.0, math.inf), (0.0, 6.0), (-math.inf, 0.25)]

# (x shape, w shape, strides, pads, group): one per conv path
PATHS = {
    "pointwise": ((1, 24, 9, 9), (40, 24, 1, 1), (1, 1), (0, 0, 0, 0), 1),
    "strided pointwise": ((2, 16, 10, 10), (24, 16, 1, 1), (2, 2), (0, 0, 0, 0), 1),
    "im2col 3x3 stride 2": ((1, 8, 11, 11), (20, 8, 3, 3), (2, 2), (1, 1, 1, 1), 1),
    "im2col 7x7 stem": ((1, 3, 20, 20), (16, 3, 7, 7), (2, 2), (3, 3, 3, 3), 1),
    "im2col in row blocks": ((1, 3, 130, 131), (8, 3, 7, 7), (2, 2), (3, 2, 3, 4), 1),  # > COLUMN_BLOCK
    "winograd F(2x2)": ((1, 16, 12, 12), (16, 16, 3, 3), (1, 1), (1, 1, 1, 1), 1),
    "winograd F(4x4)": ((2, 16, 40, 41), (24, 16, 3, 3), (1, 1), (1, 1, 1, 1), 1),
    "depthwise": ((1, 12, 9, 9), (12, 1, 3, 3), (1, 1), (1, 1, 1, 1), 12),
    "depthwise wide planes": ((2, 6, 9, 40), (6, 1, 3, 3), (1, 1), (1, 1, 1, 1), 6),  # > PADDED_WIDTH
    "depthwise wide, stride 2, multiplier 2": ((1, 4, 11, 41), (8, 1, 3, 3), (2, 2), (1, 1, 1, 1), 4),
    "depthwise 5x5 channels last": ((2, 8, 6, 6), (8, 1, 5, 5), (1, 1), (2, 2, 2, 2), 8),  # <= SMALL_PLANE
    "grouped": ((1, 12, 8, 8), (18, 4, 3, 3), (1, 1), (1, 1, 1, 1), 3),
    "one position, 3x3 of a 1x1 map": ((1, 20, 1, 1), (24, 20, 3, 3), (1, 1), (1, 1, 1, 1), 1),  # dot products
    "one position, stride 2 of a 2x2 map": ((3, 8, 2, 2), (16, 8, 3, 3), (2, 2), (1, 1, 1, 1), 1),
    "one position, strided 1x1 of a 2x2 map": ((2, 32, 2, 2), (12, 32, 1, 1), (2, 2), (0, 0, 1, 1), 1),
    "one position, 8 images (GEMM)": ((8, 16, 1, 1), (12, 16, 3, 3), (1, 1), (1, 1, 1, 1), 1),
}


def expected(x, w, b, strides, pads, group, residual, clamp):
    """float64 conv, plus the residual, then numpy's maximum and minimum."""
    ref = naive_conv(x.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64),
                     strides, pads, (1, 1), group)
    if residual is not None:
        ref = ref + residual
    if clamp is not None:
        ref = np.minimum(np.maximum(ref, clamp[0]), clamp[1])
    return ref


def case(path: str, seed: int):
    x_shape, w_shape, strides, pads, group = PATHS[path]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal(w_shape) / math.sqrt(np.prod(w_shape[1:]))).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    return x, w, b, strides, pads, group


@settings(max_examples=30, deadline=None)
@given(path=st.sampled_from(sorted(PATHS)), clamp=st.sampled_from(CLAMPS), with_bias=st.booleans(),
       with_residual=st.booleans(), seed=st.integers(0, 2**16))
def test_fused_conv_matches_conv_then_add_and_clamp(path, clamp, with_bias, with_residual, seed):
    x, w, b, strides, pads, group = case(path, seed)
    b = b if with_bias else None
    plain = conv_nd(x, w, b, strides=strides, pads=pads, dilations=(1, 1), group=group)
    residual = np.random.default_rng(seed + 1).standard_normal(plain.shape).astype(np.float32) \
        if with_residual else None
    got = run_kernel("FusedConv", [x, w, b, residual], {
        "kernel_shape": w.shape[2:], "strides": strides, "pads": pads, "dilations": (1, 1), "group": group,
        "clamp": clamp})[0]
    want = expected(x, w, b, strides, pads, group, residual, clamp)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * max(1.0, float(np.abs(want).max())))
    if clamp is not None:
        assert got.min() >= clamp[0] and got.max() <= clamp[1]


def test_a_large_column_matrix_goes_in_row_blocks():
    x, w, b, strides, pads, _ = case("im2col in row blocks", 2)
    out_h, out_w = (130 + 6 - 7) // 2 + 1, (131 + 6 - 7) // 2 + 1
    assert 147 * out_h * out_w > COLUMN_BLOCK > 147 * out_w  # several blocks of whole output rows
    residual = np.random.default_rng(3).standard_normal((1, 8, out_h, out_w)).astype(np.float32)
    got = conv_nd(x, w, b, strides=strides, pads=pads, dilations=(1, 1), residual=residual, clamp=(0.0, 6.0))
    want = expected(x, w, b, strides, pads, 1, residual, (0.0, 6.0))
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * float(np.abs(want).max()))


def test_fused_conv_reads_the_residual_and_leaves_it():
    x, w, b, strides, pads, group = case("pointwise", 0)
    residual = np.ones((1, 40, 9, 9), np.float32)
    kept = residual.copy()
    got = conv_nd(x, w, b, strides=strides, pads=pads, dilations=(1, 1), residual=residual, clamp=(0.0, math.inf))
    np.testing.assert_array_equal(residual, kept)
    np.testing.assert_allclose(got, expected(x, w, b, strides, pads, 1, residual, (0.0, math.inf)), atol=1e-5)


def test_fused_conv_float64_and_empty_channels_take_the_plain_paths():
    x, w, b, strides, pads, group = case("im2col 3x3 stride 2", 1)
    x64, w64, b64 = x.astype(np.float64), w.astype(np.float64), b.astype(np.float64)
    residual = np.full((1, 20, 6, 6), -0.5)
    got = conv_nd(x64, w64, b64, strides=strides, pads=pads, dilations=(1, 1), residual=residual, clamp=(0.0, 1.0))
    np.testing.assert_allclose(got, expected(x, w, b, strides, pads, 1, residual, (0.0, 1.0)), atol=1e-6)
    empty = conv_nd(np.ones((1, 0, 4, 4), np.float32), np.ones((3, 0, 1, 1), np.float32),
                    np.array([1, -1, 9], np.float32), strides=(1, 1), pads=(0,) * 4, dilations=(1, 1),
                    clamp=(0.0, 6.0))
    np.testing.assert_array_equal(empty[0, :, 0, 0], [1, 0, 6])


@pytest.mark.parametrize("inputs, attrs, match", [
    (lambda x, w, r: [x, w, None], {}, "4 inputs"),
    (lambda x, w, r: [x.astype(np.float64), w.astype(np.float64), None, None], {}, "float32"),
    (lambda x, w, r: [x, w, None, r[:, :3]], {}, "residual must be"),
    (lambda x, w, r: [x, w, None, r], {"clamp": (0.0,)}, "clamp must be"),
    (lambda x, w, r: [x, w, None, r], {"clamp": (math.nan, 1.0)}, "clamp must be"),
])
def test_fused_conv_errors_name_what_is_wrong(inputs, attrs, match):
    x, w, _, strides, pads, group = case("pointwise", 0)
    r = np.zeros((1, 40, 9, 9), np.float32)
    base = {"kernel_shape": (1, 1), "strides": strides, "pads": pads, "dilations": (1, 1), "group": 1}
    with pytest.raises(KernelError, match=match):
        run_kernel("FusedConv", inputs(x, w, r), {**base, **attrs})


ONE_POSITION = [path for path in PATHS if path.startswith("one position")]


@pytest.mark.parametrize("path", ONE_POSITION)
@pytest.mark.parametrize("clamp", [None, (0.0, 6.0)])
def test_a_convolution_of_one_position_is_its_conv_then_add_and_clamp_bit_for_bit(path, clamp):
    """Dot products (runtime.gemm.gemv) with the epilogue on each chunk of
    channels: the float64 sums to float32 accuracy, and bit for bit the
    unfused conv followed by numpy's add, maximum and minimum; a NaN of the
    residual stays NaN through the clamp."""
    x, w, b, strides, pads, group = case(path, 4)
    plain = conv_nd(x, w, b, strides=strides, pads=pads, dilations=(1, 1))
    residual = np.random.default_rng(5).standard_normal(plain.shape).astype(np.float32)
    residual.reshape(-1)[::7] = np.nan
    got = conv_nd(x, w, b, strides=strides, pads=pads, dilations=(1, 1), residual=residual, clamp=clamp)
    want = plain + residual if clamp is None else np.minimum(np.maximum(plain + residual, clamp[0]), clamp[1])
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got.reshape(-1)[::7]).all()
    ref = expected(x, w, b, strides, pads, group, None, None)
    np.testing.assert_allclose(plain, ref, rtol=0, atol=2e-5 * max(1.0, float(np.abs(ref).max())))
