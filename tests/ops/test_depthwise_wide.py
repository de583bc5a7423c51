"""5x5 and 7x7 depthwise convolutions with pads of half the kernel (PP-LCNet,
MnasNet, EfficientNet's) on the LLVM IR plane kernels
(runtime.kernels.depthwise_ir), at strides 1 and 2: the bits of the Numba
kernels they took over from (runtime.kernels.nn_depthwise, whole padded
planes, rows and channels last), and the naive convolution's values."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.kernels import depthwise_ir
from runtime.kernels.conv_epilogue import check_epilogue
from runtime.kernels.nn_conv import _conv_depthwise, _conv_geometry, conv_nd, plane_kernel
from tests.helpers.conv import ir_depthwise_in_both_families, naive_conv


def _numba_kernels(x, w, b, stride, residual, clamp):
    """The same convolution on the Numba kernels (the path these layers took before)."""
    pad = w.shape[2] // 2
    window, shape = _conv_geometry(x.shape, w.shape, (stride, stride), (pad,) * 4, (1, 1), x.shape[1])
    out = np.full(shape, np.nan, np.float32)
    residual, clamp = check_epilogue("Conv", residual, clamp, shape, np.float32, None)
    _conv_depthwise(x, w, b, out, window, residual, clamp)
    return out


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([5, 7]), st.sampled_from([1, 2]), st.integers(2, 4), st.sampled_from([1, 2]),
       st.integers(1, 17), st.integers(1, 40), st.integers(1, 2), st.sampled_from([None, (-1.0, 1.5)]),
       st.booleans(), st.integers(0, 1000))
def test_wide_depthwise_keeps_the_numba_kernels_bits(ksize, stride, chans, mult, height, width, batch, clamp,
                                                     with_residual, seed):
    """(One channel is an ordinary convolution, not depthwise: from 2.)"""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, chans, height, width)).astype(np.float32)
    w = rng.standard_normal((chans * mult, 1, ksize, ksize)).astype(np.float32)
    b = rng.standard_normal(chans * mult).astype(np.float32)
    pad = ksize // 2
    window, shape = _conv_geometry(x.shape, w.shape, (stride, stride), (pad,) * 4, (1, 1), chans)
    assert plane_kernel(x.shape, np.float32, window)[0] is depthwise_ir.depthwise_ir_planes
    residual = rng.standard_normal(shape).astype(np.float32) if with_residual else None
    got = conv_nd(x, w, b, strides=(stride, stride), pads=(pad,) * 4, dilations=(1, 1), group=chans,
                  residual=residual, clamp=clamp)
    np.testing.assert_array_equal(got.view(np.uint32), _numba_kernels(x, w, b, stride, residual, clamp).view(np.uint32))
    expected = naive_conv(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), (stride, stride),
                          (pad,) * 4, (1, 1), chans)
    if residual is not None:
        expected = expected + residual
    if clamp is not None:
        expected = np.clip(expected, *clamp)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ksize", [5, 7])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("width,column", [(8, 0), (8, 7), (40, 15), (40, 16), (40, 33), (41, 40)])
def test_an_infinity_reaches_exactly_the_windows_over_it(ksize, stride, width, column):
    """An Inf in one input column reaches exactly the output columns whose
    window covers it, across the vector blocks' edges (columns 15 and 16
    at stride 1, 31-33 at stride 2) and the plane's, of the output rows that
    read its row, never another: no masked lane reads past a row or keeps a
    stale value."""
    pad = ksize // 2
    x = np.ones((1, 2, 9, width), np.float32)
    x[0, 0, 4, column] = np.inf
    w = np.ones((2, 1, ksize, ksize), np.float32)
    both = conv_nd(x, w, None, strides=(stride, stride), pads=(pad,) * 4, dilations=(1, 1), group=2)[0]
    got = both[0]
    assert np.isfinite(both[1]).all()
    assert got.shape == ((9 - 1) // stride + 1, (width - 1) // stride + 1)
    hit = np.zeros(got.shape, bool)
    for oy in range(got.shape[0]):
        for ox in range(got.shape[1]):
            hit[oy, ox] = abs(stride * oy - 4) <= pad and abs(stride * ox - column) <= pad
    assert (got[hit] == np.inf).all() and np.isfinite(got[~hit]).all()


def test_wide_kernels_exist_only_for_their_sizes_and_strides():
    with pytest.raises(ValueError, match="5x5 depthwise plane kernel for stride 3"):
        depthwise_ir.kernel_addresses(3, ksize=5)
    with pytest.raises(ValueError, match="4x4"):
        depthwise_ir.kernel_addresses(1, ksize=4)
    x_shape = (1, 4, 10, 10)
    for pads, dilations in (((1,) * 4, (1, 1)), ((2, 2, 2, 1), (1, 1)), ((2,) * 4, (2, 2))):
        window, _ = _conv_geometry(x_shape, (4, 1, 5, 5), (1, 1), pads, dilations, 4)
        assert plane_kernel(x_shape, np.float32, window) is None, (pads, dilations)


@pytest.mark.parametrize("ksize", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("height,width", [(1, 1), (2, 5), (3, 7), (5, 8), (4, 9), (6, 14), (2, 16), (3, 17), (2, 40)])
def test_plane_kernels_write_their_planes_and_nothing_else(ksize, stride, height, width):
    """Rows of one vector block store whole vectors whose lanes past a row's
    end fall on the next rows (stored after them): every plane computed is
    right, and the planes outside [start, stop), before and after, keep
    their bytes (no store passes its plane's end, even for planes a few
    outputs long)."""
    from runtime.gemm.family import host_isa
    from runtime.jit import readonly

    chans = 4
    rng = np.random.default_rng(height * 100 + width)
    x = rng.standard_normal((1, chans, height, width)).astype(np.float32)
    w = rng.standard_normal((chans, ksize, ksize)).astype(np.float32)
    b = rng.standard_normal(chans).astype(np.float32)
    shape = (1, chans, (height - 1) // stride + 1, (width - 1) // stride + 1)
    clamp, flags = np.array([-np.inf, np.inf], np.float32), np.array([False, False])
    expected = naive_conv(x.astype(np.float64), w.reshape(chans, 1, ksize, ksize).astype(np.float64),
                          b.astype(np.float64), (stride, stride), (ksize // 2,) * 4, (1, 1), chans)
    for isa in {host_isa("avx2"), host_isa()}:
        out = np.full(shape, 7.0, np.float32)
        depthwise_ir.depthwise_ir_planes(1, chans - 1, x, readonly(w), readonly(b), out, out, clamp, flags,
                                         depthwise_ir.kernel_addresses(stride, isa, ksize), stride)
        assert (out[0, 0] == 7.0).all() and (out[0, chans - 1] == 7.0).all()
        np.testing.assert_allclose(out[0, 1:chans - 1], expected[0, 1:chans - 1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ksize", [3, 5, 7])
def test_flat_kernels_give_the_row_kernels_bits(ksize):
    """Stride-1 planes of at most FLAT outputs in rows narrower than a
    vector run on the flat kernel (runtime.kernels.depthwise_ir.flat_ir):
    bit for bit the row kernel's sums, clamp and epilogue (NaN and
    infinities in the input, a residual, a clamp), on every such plane
    size, for both kernel families; a call of planes [1, chans - 1) writes
    those planes only."""
    from runtime.gemm.family import host_isa
    from runtime.jit import readonly

    rng = np.random.default_rng(ksize)
    chans = 5
    flags = np.array([True, False])
    clamp = np.array([-1.0, 1.5], np.float32)
    for isa in {host_isa("avx2"), host_isa()}:
        table = depthwise_ir.kernel_addresses(1, isa, ksize)
        assert table.shape == (depthwise_ir.TABLE,) and table[depthwise_ir.FLAT_ENTRY] != 0
        assert table[depthwise_ir.LANES_ENTRY] == (isa.name == "avx2")  # masks of a lane each, a bit each
        rows_only = table.copy()
        rows_only[depthwise_ir.FLAT_ENTRY] = 0
        for height, width in ((h, w) for h in range(1, depthwise_ir.FLAT + 1) for w in range(1, 9)
                              if h * w <= depthwise_ir.FLAT):
            x = rng.standard_normal((1, chans, height, width)).astype(np.float32)
            x.flat[rng.integers(0, x.size, 3)] = [np.nan, np.inf, -np.inf]
            w = rng.standard_normal((chans, ksize, ksize)).astype(np.float32)
            b = rng.standard_normal(chans).astype(np.float32)
            res = rng.standard_normal(x.shape).astype(np.float32)
            outs = []
            for kernels in (table, rows_only):
                out = np.full(x.shape, 7.0, np.float32)
                depthwise_ir.depthwise_ir_planes(1, chans - 1, x, readonly(w), readonly(b), out, res, clamp,
                                                 flags, kernels, 1)
                outs.append(out)
            assert (outs[0][0, 0] == 7.0).all() and (outs[0][0, -1] == 7.0).all(), (height, width)
            np.testing.assert_array_equal(outs[0].view(np.uint32), outs[1].view(np.uint32),
                                          err_msg=f"{isa.name} {height}x{width}")


@pytest.mark.parametrize("ksize", [3, 5])
def test_avx2_flat_kernels_read_their_masks_as_vectors(ksize):
    """AVX2 has no mask registers: from a tap's 16 bits LLVM built the
    vector mask lane by lane (a byte insert per lane, 760 instructions in
    the 3x3 kernel), so the AVX2 family's flat kernels read one int32 a
    lane (depthwise_text.lane_masks). Compiled as that family compiles
    them, they insert no lane; the bits would insert 16 a tap."""
    from runtime.gemm.family import host_isa
    from runtime.gemm.microkernel import assembly
    from runtime.kernels import depthwise_text

    isa = host_isa("avx2")  # compiled only, not run: any x86 host can
    assert depthwise_text.lane_masks(isa)
    declarations = [line for line in depthwise_text.module_ir(ksize).splitlines() if line.startswith("declare")]
    inserts = {}
    for lanes in (True, False):
        asm = assembly("\n".join([*declarations, depthwise_text.flat_ir(ksize, lanes)]), isa)
        inserts[lanes] = sum(line.split()[0].startswith(("vpinsr", "vinsertps"))
                             for line in asm.splitlines() if line.startswith("\t"))
    assert inserts[True] == 0 and inserts[False] >= 8 * ksize * ksize, inserts


@pytest.mark.parametrize("ksize", [3, 5, 7])
@pytest.mark.parametrize("stride", [1, 2])
def test_every_width_up_to_several_blocks_reads_only_its_rows(ksize, stride):
    """Widths 1 to 72: every way a row ends against the 8- and 16-lane
    blocks, where blocks inside the row take plain loads and the others
    masked ones (depthwise_ir._inner), in both kernel families (AVX2 takes
    8-lane blocks on rows of more than 16, AVX-512 16-lane ones). A block
    that read one column past its row would add the next row's first
    value: the naive convolution says so; both families give the same
    bits, and 5x5 and 7x7 the Numba kernels' bits."""
    rng = np.random.default_rng(ksize * 10 + stride)
    pad, clamp, flags = ksize // 2, np.array([-np.inf, np.inf], np.float32), np.array([False, False])
    for width in range(1, 73):
        x = rng.standard_normal((1, 2, 5, width)).astype(np.float32) + 4.0  # no read past a row sums to nothing
        w = rng.standard_normal((2, ksize, ksize)).astype(np.float32)
        b = rng.standard_normal(2).astype(np.float32)
        outs = ir_depthwise_in_both_families(x, w, b, stride, clamp, flags)
        expected = naive_conv(x.astype(np.float64), w.reshape(2, 1, ksize, ksize).astype(np.float64),
                              b.astype(np.float64), (stride, stride), (pad,) * 4, (1, 1), 2)
        np.testing.assert_allclose(outs[0], expected, rtol=1e-5, atol=1e-4, err_msg=f"width {width}")
        np.testing.assert_array_equal(outs[0].view(np.uint32), outs[1].view(np.uint32), err_msg=f"width {width}")
        if ksize != 3:
            numba = _numba_kernels(x, w.reshape(2, 1, ksize, ksize), b, stride, None, None)
            np.testing.assert_array_equal(outs[0].view(np.uint32), numba.view(np.uint32), err_msg=f"width {width}")


def test_a_one_block_phased_kernel_leaves_a_wider_plane_alone():
    """The stride-2 5x5 kernels for planes of one block a row read their
    phase rows 16 floats apart (runtime.kernels.depthwise_phased): given a
    wider plane (the planes' loop never does that), such a kernel writes
    nothing, where it would have read and written rows out of place."""
    from runtime.jit import readonly

    narrow = depthwise_ir.kernel_addresses(2, ksize=5)[0]
    table = depthwise_ir.kernel_addresses(2, ksize=5).copy()
    table[:3] = narrow  # every width on the 8-lane, one-block kernel
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 6, 40)).astype(np.float32)
    w, b = readonly(rng.standard_normal((2, 5, 5)).astype(np.float32)), readonly(np.zeros(2, np.float32))
    out = np.full((1, 2, 3, 20), np.nan, np.float32)
    clamp, flags = np.array([-np.inf, np.inf], np.float32), np.array([False, False])
    depthwise_ir.depthwise_ir_planes(0, 2, x, w, b, out, out, clamp, flags, table, 2)
    assert np.isnan(out).all()
