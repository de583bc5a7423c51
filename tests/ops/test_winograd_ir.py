"""Winograd's tile transforms as LLVM IR kernels (runtime.kernels.winograd_ir)
against the Numba loops (runtime.kernels.nn_winograd), the transforms'
definition in float64, each other on AVX2 and this host, and the bounds of
what they write; then whole convolutions on the packed (IR) path against a
direct convolution."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.gemm.family import host_isa
from runtime.jit import readonly
from runtime.kernels import nn_winograd, winograd_ir, winograd_matrices
from runtime.kernels.nn_winograd import packed_winograd_weights, winograd_conv2d
from tests.helpers.conv import naive_conv

SETTINGS = settings(max_examples=30, deadline=None)


def geometry(x_shape, pads, m):
    """(TH, TW, tiles) of a 3x3 stride-1 conv of ``x_shape`` with ``pads`` = (top, left, bottom, right)."""
    out_h = x_shape[2] + pads[0] + pads[2] - 2
    out_w = x_shape[3] + pads[1] + pads[3] - 2
    th, tw = -(-out_h // m), -(-out_w // m)
    return out_h, out_w, th, tw, x_shape[0] * th * (tw + 1)


def ir_input(x, pads, m, parts=1, isa=None, items=None):
    """V (n*n, item) from the IR kernels, its rows' tails NaN (never written)."""
    chans, n = x.shape[1], m + 2
    _, _, th, tw, tiles = geometry(x.shape, pads, m)
    v = np.full((n * n, items or winograd_ir.item_stride(chans, tiles)), np.nan, np.float32)
    geo = np.array([pads[0], pads[1], th, tw, parts], np.int64)
    winograd_ir.input_tiles_ir(0, parts * x.shape[0] * chans, x, v, geo, winograd_ir.kernel_addresses(isa))
    return v


def numba_input(x, pads, m):
    chans, n = x.shape[1], m + 2
    _, _, th, tw, tiles = geometry(x.shape, pads, m)
    v = np.full((n * n, chans, tiles), np.nan, np.float32)
    nn_winograd.input_tiles(0, x.shape[0] * chans, x, v, winograd_matrices.B_T[m],
                            np.array([pads[0], pads[1], th, tw, 1], np.int64))  # as winograd_conv2d: one signature
    return v


def float64_input(x, pads, m):
    """B^T d B for every tile, in float64 (the extra tile column too)."""
    a_t, _, b_t = winograd_matrices.toom_cook(m)
    n = m + 2
    _, _, th, tw, _ = geometry(x.shape, pads, m)
    padded = np.zeros((x.shape[0], x.shape[1], th * m + 2 + m, (tw + 1) * m + 2))
    padded[:, :, pads[0]:pads[0] + x.shape[2], pads[1]:pads[1] + x.shape[3]] = x
    out = np.empty((n * n, x.shape[1], x.shape[0], th, tw + 1))
    for ty in range(th):
        for tx in range(tw + 1):
            d = padded[:, :, ty * m:ty * m + n, tx * m:tx * m + n]
            out[:, :, :, ty, tx] = np.einsum("ij,bcjl,kl->ikcb", b_t, d, b_t).reshape(n * n, x.shape[1], x.shape[0])
    return out.reshape(n * n, x.shape[1], -1)


@st.composite
def planes(draw):
    batch, chans = draw(st.integers(1, 2)), draw(st.integers(1, 5))
    pads = [draw(st.integers(0, 2)) for _ in range(4)]
    height = draw(st.integers(max(1, 3 - pads[0] - pads[2]), 40))
    width = draw(st.integers(max(1, 3 - pads[1] - pads[3]), 40))
    x = np.random.default_rng(draw(st.integers(0, 10_000))).standard_normal((batch, chans, height, width))
    return x.astype(np.float32), tuple(pads), draw(st.sampled_from([2, 4]))


@SETTINGS
@given(case=planes())
def test_input_transform_matches_its_definition_and_writes_nothing_else(case):
    """Every tile (the extra one of each row included: it is what the GEMM
    carries) is B^T d B of the zero-padded plane, within float32 rounding;
    nothing past each item's C x tiles matrix is written. Widths from 1 to
    40: one or several blocks of 8 or 16 tiles a row, partial last blocks."""
    x, pads, m = case
    chans, n = x.shape[1], m + 2
    tiles = geometry(x.shape, pads, m)[4]
    v = ir_input(x, pads, m)
    got = v[:, :chans * tiles].reshape(n * n, chans, tiles)
    want = float64_input(x.astype(np.float64), pads, m)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * max(np.abs(want).max(), 1))
    assert np.isnan(v[:, chans * tiles:]).all()


@SETTINGS
@given(case=planes())
def test_output_transform_matches_the_numba_loops_bit_for_bit(case):
    """The same products, bias, residual and clamp give the Numba loops'
    output exactly (the same sums, in the same order); the output's margins
    past OH x OW are the only elements it writes."""
    x, pads, m = case
    rng = np.random.default_rng(1)
    n = m + 2
    out_h, out_w, th, tw, tiles = geometry(x.shape, pads, m)
    out_c = x.shape[1] + 1
    item = winograd_ir.item_stride(out_c, tiles)
    prods = np.full((n * n, item), np.nan, np.float32)
    prods[:, :out_c * tiles] = rng.standard_normal((n * n, out_c * tiles))
    bias = readonly(rng.standard_normal(out_c).astype(np.float32))  # as a conv passes it: one compiled kernel
    residual = rng.standard_normal((x.shape[0], out_c, out_h, out_w)).astype(np.float32)
    clamp = np.array([-0.5, 1.5], np.float32)
    for flags in ([False, False], [True, False], [False, True], [True, True]):
        flags = np.array(flags)
        want = np.full(residual.shape, np.nan, np.float32)
        matrices = np.ascontiguousarray(prods[:, :out_c * tiles]).reshape(n * n, out_c, tiles)
        nn_winograd.output_tiles(0, want.shape[0] * out_c, matrices, want, winograd_matrices.A_T[m], bias,
                                 np.array([th, tw], np.int64),
                                 residual, clamp, flags)
        got = np.full(residual.shape, np.nan, np.float32)
        winograd_ir.output_tiles_ir(0, got.shape[0] * out_c, prods, got, bias, np.array([th, tw]), residual, clamp,
                                    flags, winograd_ir.kernel_addresses())
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("m", [2, 4])
def test_input_transform_agrees_with_the_numba_loops(m):
    """On ResNet-like planes (several blocks a row at F(2x2)), within a few
    float32 roundings of the loops it replaced, on every tile the output
    transform reads (the loops leave other values in the extra tile of each
    row)."""
    x = np.maximum(np.random.default_rng(m).standard_normal((2, 6, 37, 30)), 0).astype(np.float32)
    pads = (1, 1, 1, 1)
    chans, n = 6, m + 2
    _, _, th, tw, tiles = geometry(x.shape, pads, m)
    got = ir_input(x, pads, m)[:, :chans * tiles].reshape(n * n, chans, 2, th, tw + 1)[..., :tw]
    want = numba_input(x, pads, m).reshape(n * n, chans, 2, th, tw + 1)[..., :tw]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max())


@pytest.mark.parametrize("m", [2, 4])
def test_the_input_transform_in_parts_writes_each_part_its_half_of_the_items(m):
    """With the rows i of B^T d B cut in two (nn_winograd.input_parts), the
    first part's items write V's items e = i*n + k of the front half and no
    other (the half the batched product's caller claims), and both parts
    together write exactly what the uncut transform does."""
    x = np.random.default_rng(m).standard_normal((2, 5, 11, 11)).astype(np.float32)
    pads, n = (1, 1, 1, 1), m + 2
    whole = ir_input(x, pads, m)
    th, tw = geometry(x.shape, pads, m)[2:4]
    parts = np.full_like(whole, np.nan)
    geo = np.array([1, 1, th, tw, 2], np.int64)
    kernels = winograd_ir.kernel_addresses()
    winograd_ir.input_tiles_ir(0, 10, x, parts, geo, kernels)  # part 0: items 0-9 of 20
    front = n * n // 2
    np.testing.assert_array_equal(parts[:front], whole[:front])
    assert np.isnan(parts[front:]).all()
    winograd_ir.input_tiles_ir(10, 20, x, parts, geo, kernels)
    np.testing.assert_array_equal(parts, whole)


def test_the_numba_input_loops_cut_in_parts_the_same_way():
    """The Numba loops number their items as the IR kernels do."""
    x = np.random.default_rng(7).standard_normal((1, 3, 9, 9)).astype(np.float32)
    whole = numba_input(x, (1, 1, 1, 1), 2)
    parts = np.full_like(whole, np.nan)
    nn_winograd.input_tiles(0, 3, x, parts, winograd_matrices.B_T[2], np.array([1, 1, 5, 5, 2], np.int64))
    np.testing.assert_array_equal(parts[:8], whole[:8])
    assert np.isnan(parts[8:]).all()


@pytest.mark.parametrize("m", [2, 4])
def test_ir_transforms_agree_bit_for_bit_on_avx2_and_the_host(m):
    """Compiled for AVX2 (the portable family) and for this host, the
    kernels compute the same bits: the same operations in the same order,
    whatever the vector width."""
    x = np.random.default_rng(m).standard_normal((1, 3, 21, 38)).astype(np.float32)
    pads = (1, 1, 1, 1)
    inputs = [ir_input(x, pads, m, isa=isa) for isa in (host_isa("avx2"), host_isa())]
    np.testing.assert_array_equal(inputs[0], inputs[1])
    out_h, out_w, th, tw, _ = geometry(x.shape, pads, m)
    outs = []
    for isa in (host_isa("avx2"), host_isa()):
        y = np.full((1, 2, out_h, out_w), np.nan, np.float32)
        winograd_ir.output_tiles_ir(0, 2, np.nan_to_num(inputs[0]), y, readonly(np.ones(2, np.float32)),
                                    np.array([th, tw]), y, np.array([0, 6], np.float32), np.array([False, True]),
                                    winograd_ir.kernel_addresses(isa))
        outs.append(y)
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("m", [2, 4])
def test_output_stores_past_a_row_end_never_clobber_a_residual_written_in_place(m):
    """The output kernel stores whole vectors where what they pass over
    (the next rows' first columns) is written after them; a FusedConv may
    write its output into its residual's memory (codegen.cpu.
    residuals_in_place), whose later rows are still to be read: there the
    stores stay masked. Widths of one to several blocks a row, both kernel
    families: in place gives the bits of a separate residual, and a plane's
    neighbours are never touched."""
    rng = np.random.default_rng(m)
    n, chans, clamp, flags = m + 2, 3, np.array([-1.0, 1.5], np.float32), np.array([True, True])
    for out_h, out_w in [(5, 3), (6, 9), (3, 30), (7, 33), (4, 70), (9, 130)]:
        th, tw = -(-out_h // m), -(-out_w // m)
        tiles = th * (tw + 1)
        prods = rng.standard_normal((n * n, winograd_ir.item_stride(chans, tiles))).astype(np.float32)
        bias = readonly(rng.standard_normal(chans).astype(np.float32))
        residual = rng.standard_normal((1, chans, out_h, out_w)).astype(np.float32)
        for isa in (host_isa("avx2"), host_isa()):
            kernels = winograd_ir.kernel_addresses(isa)
            apart = np.full(residual.shape, np.nan, np.float32)
            winograd_ir.output_tiles_ir(0, chans, prods, apart, bias, np.array([th, tw]), residual, clamp, flags,
                                        kernels)
            framed = np.full((chans + 2, out_h, out_w), 7.0, np.float32)  # a plane on each side
            framed[1:-1] = residual[0]
            in_place = framed[1:-1][None]
            winograd_ir.output_tiles_ir(0, chans, prods, in_place, bias, np.array([th, tw]), in_place, clamp, flags,
                                        kernels)
            np.testing.assert_array_equal(in_place, apart, err_msg=f"{isa.name} {out_h}x{out_w}")
            assert (framed[0] == 7.0).all() and (framed[-1] == 7.0).all()
            outside = np.full((chans + 2, out_h, out_w), 7.0, np.float32)  # without a residual: may pass row ends
            winograd_ir.output_tiles_ir(0, chans, prods, outside[1:-1][None], bias, np.array([th, tw]),
                                        outside[1:-1][None], clamp, np.array([False, True]), kernels)
            assert (outside[0] == 7.0).all() and (outside[-1] == 7.0).all(), f"{isa.name} {out_h}x{out_w}"


def test_item_stride_puts_the_items_in_different_cache_sets():
    """Items are apart by a multiple of 64 bytes that is an odd number of
    lines, and never less than their size."""
    for rows, tiles in [(256, 56), (64, 210), (128, 210), (3, 5), (16, 4)]:
        item = winograd_ir.item_stride(rows, tiles)
        assert item >= rows * tiles and item % 16 == 0 and (item // 16) % 2 == 1
    assert winograd_ir.item_stride(256, 56) != 256 * 56  # 56 KiB: a multiple of the L1's way size


def test_bad_operands_write_nothing():
    """Inconsistent V or product shapes, or parts outside 1..n: the drivers
    return without touching memory."""
    x = np.ones((1, 2, 8, 8), np.float32)
    kernels = winograd_ir.kernel_addresses()
    small = np.full((16, 10), np.nan, np.float32)  # 2 x 25 tiles do not fit a row of 10
    winograd_ir.input_tiles_ir(0, 2, x, small, np.array([1, 1, 4, 4, 1]), kernels)
    winograd_ir.input_tiles_ir(0, 2, x, small, np.array([1, 1, 1, 1, 7]), kernels)
    assert np.isnan(small).all()
    y = np.full((1, 2, 8, 8), np.nan, np.float32)
    winograd_ir.output_tiles_ir(0, 2, np.ones((16, 100), np.float32), y, readonly(np.ones(2, np.float32)),
                                np.array([3, 3]), y, np.array([0, 1], np.float32), np.array([False, False]),
                                kernels)  # 3 tiles < 8 rows
    assert np.isnan(y).all()


@pytest.mark.parametrize("m", [2, 4])
def test_non_finite_inputs_reach_the_output_tiles_as_the_numba_loops_send_them(m):
    """A NaN or an Inf in the input spreads to its output tile(s) exactly as
    through the Numba loops (the same sums): no 0 * inf turns an Inf into a
    NaN that the loops would not make."""
    rng = np.random.default_rng(m)
    x = rng.standard_normal((1, 4, 14, 14)).astype(np.float32)
    x[0, 1, 5, 6], x[0, 2, 0, 13], x[0, 3, 9, 2] = np.inf, -np.inf, np.nan
    w = rng.standard_normal((3, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    packed, plain = np.empty((1, 3, 14, 14), np.float32), np.empty((1, 3, 14, 14), np.float32)
    winograd_conv2d(x, packed_winograd_weights.get(w, m), b, packed, (1, 1, 1, 1), m)
    winograd_conv2d(x, nn_winograd.winograd_weights.get(w, m), b, plain, (1, 1, 1, 1), m)
    np.testing.assert_array_equal(np.isnan(packed), np.isnan(plain))
    np.testing.assert_array_equal(np.isposinf(packed), np.isposinf(plain))
    np.testing.assert_array_equal(np.isneginf(packed), np.isneginf(plain))
    assert not np.isfinite(packed).all() and np.isfinite(packed).any()


@pytest.mark.parametrize("shape, m", [((1, 64, 56, 56), 4), ((2, 24, 28, 28), 2), ((1, 32, 14, 14), 2),
                                      ((1, 16, 15, 23), 4)])
def test_packed_path_matches_a_direct_convolution(shape, m):
    """The whole packed path (IR transforms, padded items, Tessera's
    batched GEMM on strided items) with a residual and a ReLU, against a
    float64 direct convolution."""
    rng = np.random.default_rng(shape[1])
    x = np.maximum(rng.standard_normal(shape), 0).astype(np.float32)
    w = (rng.standard_normal((shape[1], shape[1], 3, 3)) * np.sqrt(2 / (9 * shape[1]))).astype(np.float32)
    b = (0.1 * rng.standard_normal(shape[1])).astype(np.float32)
    residual = rng.standard_normal(shape).astype(np.float32)
    out = np.empty(shape, np.float32)
    winograd_conv2d(x, packed_winograd_weights.get(w, m), b, out, (1, 1, 1, 1), m, residual,
                    np.array([0, np.inf], np.float32))
    want = np.maximum(naive_conv(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), (1, 1),
                                 (1, 1, 1, 1), (1, 1), 1) + residual, 0)
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-5 * np.abs(want).max())
