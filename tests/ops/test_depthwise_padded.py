"""The padded-plane depthwise kernel (small 3x3 depthwise convolutions with
the epilogue in the same pass) against a naive convolution, over strides,
asymmetric pads, channel multipliers, odd sizes, residual and clamp."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.kernels.nn_conv import conv_nd
from tests.helpers.conv import ir_depthwise_in_both_families, naive_conv


@st.composite
def depthwise_cases(draw):
    chans = draw(st.integers(1, 5))
    mult = draw(st.sampled_from([1, 1, 2]))
    height, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    strides = (draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2])))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    if height + pads[0] + pads[2] < 3 or width + pads[1] + pads[3] < 3:
        pads = (1, 1, 2, 2)
    rng = np.random.default_rng(draw(st.integers(0, 1000)))
    x = rng.standard_normal((draw(st.integers(1, 2)), chans, height, width)).astype(np.float32)
    w = rng.standard_normal((chans * mult, 1, 3, 3)).astype(np.float32)
    b = rng.standard_normal(chans * mult).astype(np.float32) if draw(st.booleans()) else None
    return x, w, b, strides, pads


@settings(max_examples=60, deadline=None)
@given(depthwise_cases(), st.sampled_from([None, (0.0, 6.0), (-0.5, 0.5)]), st.booleans())
def test_padded_depthwise_matches_naive_conv(case, clamp, with_residual):
    x, w, b, strides, pads = case
    expected = naive_conv(x.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64),
                          strides, pads, (1, 1), x.shape[1])
    residual = np.random.default_rng(1).standard_normal(expected.shape).astype(np.float32) if with_residual else None
    if residual is not None:
        expected = expected + residual
    if clamp is not None:
        expected = np.minimum(np.maximum(expected, clamp[0]), clamp[1])
    kept = None if residual is None else residual.copy()
    got = conv_nd(x, w, b, strides=strides, pads=pads, dilations=(1, 1), group=x.shape[1], residual=residual,
                  clamp=clamp)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    if residual is not None:
        np.testing.assert_array_equal(residual, kept)


@pytest.mark.parametrize("shape,strides", [((1, 16, 14, 14), (1, 1)), ((1, 16, 28, 28), (2, 2)),
                                           ((1, 8, 7, 7), (1, 1)), ((2, 3, 5, 9), (2, 1))])
def test_padded_depthwise_keeps_nan_and_clamps(shape, strides):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 10).astype(np.float32)
    x[0, 0, 2, 3] = np.nan
    w = rng.standard_normal((shape[1], 1, 3, 3)).astype(np.float32)
    got = conv_nd(x, w, None, strides=strides, pads=(1, 1, 1, 1), dilations=(1, 1), group=shape[1],
                  clamp=(0.0, 6.0))
    expected = naive_conv(x.astype(np.float64), w.astype(np.float64), None, strides, (1, 1, 1, 1), (1, 1), shape[1])
    np.testing.assert_allclose(got, np.minimum(np.maximum(expected, 0.0), 6.0), rtol=1e-5, atol=1e-5)
    assert np.isnan(got[0, 0]).any() and not np.isnan(got[0, 1:]).any()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.sampled_from([1, 2]), st.integers(1, 17), st.integers(1, 17), st.integers(1, 2),
       st.sampled_from([None, (0.0, 6.0)]), st.booleans(), st.integers(0, 1000))
def test_same_stride_one_depthwise_matches_naive_conv(chans, mult, height, width, batch, clamp, with_residual, seed):
    """SAME 3x3 at stride 1 (pads of 1) takes the LLVM IR plane kernel on
    float32 (float64: the grouped column-matrix GEMM) at any size, down to
    one row or one column, with multipliers and epilogues."""
    _check_against_naive((batch, chans, height, width), mult, 1, clamp, with_residual, seed)
    _check_against_naive((batch, chans, height, width), mult, 1, clamp, with_residual, seed, np.float64)


def test_same_stride_one_depthwise_keeps_infinities_beyond_the_row_ends_out():
    """A tap that would wrap over a row end is masked out, not multiplied by
    zero: an Inf in the last column of one row must not make the first
    output of the next row NaN (0 * Inf)."""
    x = np.ones((1, 1, 4, 5), np.float32)
    x[0, 0, 1, 4] = np.inf
    x[0, 0, 2, 0] = -np.inf
    w = np.ones((1, 1, 3, 3), np.float32)
    got = conv_nd(x, w, None, strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), group=1)
    expected = naive_conv(np.where(np.isfinite(x), x, 0).astype(np.float64), w.astype(np.float64), None, (1, 1),
                          (1, 1, 1, 1), (1, 1), 1)
    plus, minus = np.zeros((4, 5), bool), np.zeros((4, 5), bool)
    plus[0:3, 3:5] = True  # the windows that hold the Inf at (1, 4)
    minus[1:4, 0:2] = True  # and the -Inf at (2, 0)
    assert (got[0, 0][plus] == np.inf).all() and (got[0, 0][minus] == -np.inf).all()
    rest = ~(plus | minus)
    np.testing.assert_array_equal(got[0, 0][rest], expected[0, 0][rest].astype(np.float32))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.sampled_from([1, 2]), st.integers(1, 17), st.integers(1, 19), st.integers(1, 2),
       st.sampled_from([None, (0.0, 6.0)]), st.booleans(), st.integers(0, 1000))
def test_stride_two_depthwise_matches_naive_conv(chans, mult, height, width, batch, clamp, with_residual, seed):
    """Stride 2 with pads of 1 takes the LLVM IR plane kernel
    (runtime.kernels.depthwise_ir): odd and even heights and widths, one
    row, one column, multipliers, epilogues; 8- and 16-lane kernels."""
    _check_against_naive((batch, chans, height, width), mult, 2, clamp, with_residual, seed)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("height,width", [(3, 34), (8, 35), (5, 66), (4, 113)])
def test_ir_depthwise_on_rows_of_several_vectors_matches_naive_conv(stride, height, width):
    """Output rows of more than one vector: at stride 2 each block's left
    column comes from the block before (and is zero at the plane's left
    edge); at stride 1 every tap is a load masked at both edges."""
    _check_against_naive((1, 3, height, width), 1, stride, (-1.0, 1.5), stride == 1, 7)


@pytest.mark.parametrize("width,column", [(8, 7), (40, 31), (40, 32), (41, 40)])
def test_stride_two_depthwise_keeps_an_infinity_in_its_own_row(width, column):
    """An Inf in one input column reaches exactly the output columns whose
    window covers it (across a vector block's edge too: column 31 is the
    last odd column of the first 16-lane block and the left column of the
    second), of the output rows that read its row, never another row."""
    x = np.ones((1, 1, 6, width), np.float32)
    x[0, 0, 2, column] = np.inf
    w = np.ones((1, 1, 3, 3), np.float32)
    got = conv_nd(x, w, None, strides=(2, 2), pads=(1, 1, 1, 1), dilations=(1, 1), group=1)[0, 0]
    assert got.shape == (3, (width + 1) // 2)
    hit = np.zeros(got.shape, bool)
    for ox in range(got.shape[1]):
        hit[1, ox] = 2 * ox - 1 <= column <= 2 * ox + 1  # output row 1 reads input rows 1-3
    assert (got[hit] == np.inf).all() and np.isfinite(got[~hit]).all()


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("ksize", [3, 5])
def test_ir_depthwise_kernels_agree_bit_for_bit_on_avx2_and_the_host(stride, ksize):
    """The plane kernels compiled for AVX2 (the portable family) and for
    this host compute the same bits: the same chains of fused multiply-adds,
    whatever the vector width; 8- and 16-lane kernels, several blocks a row."""
    rng = np.random.default_rng(3)
    clamp, flags = np.array([-1.0, 2.0], np.float32), np.array([False, True])
    for width in (13, 37):
        x = rng.standard_normal((1, 5, 13, width)).astype(np.float32)
        w = rng.standard_normal((5, ksize, ksize)).astype(np.float32)
        b = rng.standard_normal(5).astype(np.float32)
        outs = ir_depthwise_in_both_families(x, w, b, stride, clamp, flags)
        np.testing.assert_array_equal(outs[0], outs[1])
        expected = naive_conv(x.astype(np.float64), w.reshape(5, 1, ksize, ksize).astype(np.float64),
                              b.astype(np.float64), (stride, stride), (ksize // 2,) * 4, (1, 1), 5)
        np.testing.assert_allclose(outs[0], np.clip(expected, -1.0, 2.0), rtol=1e-5, atol=1e-5)


def _check_against_naive(x_shape, mult, stride, clamp, with_residual, seed, dtype=np.float32):
    """A depthwise 3x3 with pads of 1 at ``stride`` (both axes), a bias, an
    optional residual and clamp, against the naive convolution."""
    rng = np.random.default_rng(seed)
    chans = x_shape[1]
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((chans * mult, 1, 3, 3)).astype(dtype)
    b = rng.standard_normal(chans * mult).astype(dtype)
    strides = (stride, stride)
    expected = naive_conv(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), strides, (1, 1, 1, 1),
                          (1, 1), chans)
    residual = rng.standard_normal(expected.shape).astype(dtype) if with_residual else None
    if residual is not None:
        expected = expected + residual
    if clamp is not None:
        expected = np.minimum(np.maximum(expected, clamp[0]), clamp[1])
    got = conv_nd(x, w, b, strides=strides, pads=(1, 1, 1, 1), dilations=(1, 1), group=chans, residual=residual,
                  clamp=clamp)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("ksize", [3, 5])
def test_ir_depthwise_rows_a_trip_change_no_bit(stride, ksize, monkeypatch):
    """The plane kernels computing several output rows a trip (sharing their
    input rows' loads) give the bits of kernels computing one row at a
    time, for every count of rows left over (heights 1 to 11), on rows of
    masked blocks only (21 wide) and with plain blocks inside (70 wide)."""
    from runtime.gemm.family import host_isa
    from runtime.gemm.microkernel import compile_module
    from runtime.jit import readonly
    from runtime.kernels import depthwise_ir, depthwise_text

    blocked = depthwise_ir.kernel_addresses(stride, ksize=ksize)  # compiled (or cached) with the module's ROWS
    monkeypatch.setattr(depthwise_text, "ROWS", {1: 1, 2: 1})
    monkeypatch.setattr(depthwise_text, "PHASED_ROWS", 1)  # 5x5 at stride 2 (runtime.kernels.depthwise_phased)
    engine, addresses = compile_module(f"depthwise{ksize}-test-one-row", depthwise_ir.module_ir(ksize),
                                       depthwise_ir.kernel_names(ksize), host_isa())
    one_row = depthwise_ir.tables(addresses, ksize, host_isa())[stride]
    rng = np.random.default_rng(stride)
    clamp, flags = np.array([-1.0, 2.0], np.float32), np.array([True, True])
    for height, width in ((h, w) for h in range(1, 12) for w in (21, 70)):
        x = rng.standard_normal((1, 3, height, width)).astype(np.float32)
        w = rng.standard_normal((3, ksize, ksize)).astype(np.float32)
        b = rng.standard_normal(3).astype(np.float32)
        shape = (1, 3, (height - 1) // stride + 1, (width - 1) // stride + 1)
        res = rng.standard_normal(shape).astype(np.float32)
        outs = []
        for kernels in (blocked, one_row):
            out = np.full(shape, np.nan, np.float32)
            depthwise_ir.depthwise_ir_planes(0, 3, x, readonly(w), readonly(b), out, res, clamp, flags, kernels, stride)
            outs.append(out)
        np.testing.assert_array_equal(outs[0], outs[1])
    del engine
