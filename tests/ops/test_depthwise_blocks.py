"""Depthwise convolutions of small planes on the block kernels
(runtime.kernels.depthwise_blocks: a vector of channels per output pixel):
the plane kernels' bits for every kernel size and stride, on both kernel
families, which layers take them, and chunks that hold whole blocks."""
from __future__ import annotations

import numpy as np
import pytest

from runtime.gemm.family import host_isa
from runtime.jit import readonly
from runtime.kernels import depthwise_blocks, depthwise_ir
from runtime.kernels.nn_conv import _conv_geometry, plane_kernel

SHAPES = [(1, 1), (1, 9), (2, 3), (3, 3), (4, 4), (5, 7), (6, 6), (7, 7), (8, 8), (9, 5), (13, 14), (14, 14)]
"""Plane heights and widths: one pixel, rows shorter and longer than every
group (runtime.kernels.depthwise_blocks_text.GROUPS), planes of fewer
pixels than a vector and of several vectors."""


def _both(x, w, b, stride, res, clamp, flags, isa, start, stop):
    """(plane kernels' output, block kernels' output) of planes [start,
    stop), the others left at 7."""
    ksize = w.shape[1]
    shape = (x.shape[0], x.shape[1], (x.shape[2] - 1) // stride + 1, (x.shape[3] - 1) // stride + 1)
    planes, blocks = np.full(shape, 7.0, np.float32), np.full(shape, 7.0, np.float32)
    depthwise_ir.depthwise_ir_planes(start, stop, x, readonly(w), readonly(b), planes, res, clamp, flags,
                                     depthwise_ir.kernel_addresses(stride, isa, ksize), stride)
    plan = depthwise_blocks.block_plan(x.shape[2], x.shape[3], ksize, stride, isa)
    depthwise_blocks.block_planes(start, stop, x, depthwise_blocks.blocked_weights.get(w, isa.vw), readonly(b),
                                  blocks, res, clamp, flags, plan)
    return planes, blocks


@pytest.mark.parametrize("ksize", [3, 5, 7])
def test_block_kernels_give_the_plane_kernels_bits(ksize):
    """Bit for bit the plane kernels' outputs (the same chains of fused
    multiply-adds, the same clamp and epilogue), with NaN and infinities in
    the input, a residual and a clamp or a clamp alone, at strides 1 and 2,
    for both kernel families (AVX2's 8 channels a vector, the host's); 19
    channels of two images, planes [1, 37): blocks cut short by the run,
    by an image's end and by the last channel, and planes 0 and 37 left
    alone."""
    rng = np.random.default_rng(ksize)
    chans = 19
    for isa in {host_isa("avx2"), host_isa()}:
        for stride in (1, 2):
            for height, width in SHAPES:
                x = rng.standard_normal((2, chans, height, width)).astype(np.float32)
                x.flat[rng.integers(0, x.size, 3)] = [np.nan, np.inf, -np.inf]
                w = rng.standard_normal((chans, ksize, ksize)).astype(np.float32)
                b = rng.standard_normal(chans).astype(np.float32)
                shape = (2, chans, (height - 1) // stride + 1, (width - 1) // stride + 1)
                res = rng.standard_normal(shape).astype(np.float32)
                for flags, clamp in (((True, True), (-1.0, 1.5)), ((False, True), (0.0, 6.0)),
                                     ((False, False), (-np.inf, np.inf))):
                    planes, blocks = _both(x, w, b, stride, res, np.array(clamp, np.float32), np.array(flags), isa,
                                           1, 2 * chans - 1)
                    where = f"{isa.name} {ksize}x{ksize} s{stride} {height}x{width} {flags}"
                    assert (blocks[0, 0] == 7.0).all() and (blocks[1, -1] == 7.0).all(), where
                    np.testing.assert_array_equal(blocks.view(np.uint32), planes.view(np.uint32), err_msg=where)


def test_which_layers_take_the_block_kernels():
    """One output channel an input channel, 5x5 and 7x7 kernels on rows of
    up to 28 outputs, 3x3 ones on planes of up to 64 pixels; two channels
    an input channel, wider rows and larger 3x3 planes stay on the plane
    kernels. A plane's rows take the group that computes the fewest
    pixels past their end."""
    def kernel(chans, out_c, size, height, width, stride=1):
        window, _ = _conv_geometry((1, chans, height, width), (out_c, 1, size, size), (stride, stride),
                                   (size // 2,) * 4, (1, 1), chans)
        return plane_kernel((1, chans, height, width), np.float32, window, out_c)[0]

    blocks, planes = depthwise_blocks.block_planes, depthwise_ir.depthwise_ir_planes
    assert kernel(16, 16, 5, 7, 7) is blocks and kernel(16, 16, 7, 28, 28) is blocks
    assert kernel(16, 16, 5, 56, 56, stride=2) is blocks and kernel(16, 16, 5, 58, 58, stride=2) is planes
    assert kernel(16, 16, 5, 29, 29) is planes and kernel(16, 32, 5, 7, 7) is planes
    assert kernel(16, 16, 3, 8, 8) is blocks and kernel(16, 16, 3, 9, 8) is planes
    assert kernel(16, 16, 3, 12, 12, stride=2) is planes
    assert [depthwise_blocks.group_for(w) for w in (3, 4, 5, 6, 7, 8, 12, 14, 16, 24, 28)] == [
        4, 4, 6, 6, 7, 8, 6, 7, 8, 8, 7]


@pytest.mark.parametrize("batch,chans,lanes", [(1, 40, 16), (2, 40, 16), (3, 19, 8), (1, 5, 16)])
def test_scheduled_chunks_hold_whole_blocks(batch, chans, lanes):
    """The schedule's chunks of a block-kernel layer (block_spans) cover
    every plane once, in order, and each starts on a block of its image:
    no block is split between two threads' chunks."""
    spans = depthwise_blocks.block_spans(batch, chans, lanes, 8, 1)
    assert spans[0][0] == 0 and spans[-1][1] == batch * chans
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:])) and all(a < b for a, b in spans)
    assert all(start % chans % lanes == 0 for start, _ in spans)


def test_a_plan_for_another_geometry_writes_nothing():
    """block_planes checks the plan against the arrays it is given (a plan
    for other planes, a kernel size the weights do not have) and leaves
    the output as it was, never reading past an array."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 5, 5)).astype(np.float32)
    b = np.zeros(4, np.float32)
    out = np.full((1, 4, 8, 8), 7.0, np.float32)
    clamp, flags = np.array([-np.inf, np.inf], np.float32), np.array([False, False])
    weights = depthwise_blocks.blocked_weights.get(w, host_isa().vw)
    for plan in (depthwise_blocks.block_plan(7, 7, 5, 1), depthwise_blocks.block_plan(8, 8, 3, 1)):
        depthwise_blocks.block_planes(0, 4, x, weights, readonly(b), out, out, clamp, flags, plan)
        assert (out == 7.0).all()
    depthwise_blocks.block_planes(0, 4, x, weights, readonly(b), out, out, clamp, flags,
                                  depthwise_blocks.block_plan(8, 8, 5, 1))
    assert not (out == 7.0).any()
