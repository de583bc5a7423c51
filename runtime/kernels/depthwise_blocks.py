"""Depthwise convolutions of small planes a block of channels at a time, on
the LLVM IR kernels of runtime.kernels.depthwise_blocks_text (its
docstring says how they compute): which layers take them
(:func:`takes_blocks`), the plan a geometry needs (:func:`block_plan`:
the kernel, its scratch sizes, where each pixel goes), the weights in the
kernels' layout (:data:`blocked_weights`) and the planes' loop with the
epilogue (:func:`block_planes`).

Same bits as the plane kernels (runtime.kernels.depthwise_ir), so a layer
may take either; the block kernels pay two transposes a plane and gain
``V`` independent lanes an output, which wins where a plane's rows are
short (the plane kernels' lanes idle, their few chains wait). Kernels
alone, one thread, Zen 4, in-process A/B (us, the plane kernels' -> these;
in brackets onnxruntime's whole one-Conv session, one thread; per layer
against onnxruntime, two threads: ``bench/bench_conv.py --model
mobilenet_v3``):

* 960 x 7 x 7, 5x5: 85 -> 39 (50); 7x7: 189 -> 58 (67); 3x3: 34 -> 23 (35);
* 672 x 14 x 14 at stride 2, 5x5: 86 -> 38 (55); 480 x 14 x 14, 7x7: 169
  -> 104 (128); 240 x 14 x 14, 5x5: 47 -> 34 (52);
* AVX2 code (emulated on the same core): 960 x 7 x 7 5x5 109 -> 54, 7x7
  218 -> 67; 480 x 14 x 14 7x7 257 -> 126.

Where the plane kernels stay ahead: 3x3 kernels on planes of more than 64
pixels (384 x 14 x 14: 27 against 31 us), every kernel on rows wider
than 28 outputs (the row's vectors are full, the transposes cost more
than the chains gain).
"""
from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from runtime.chunking import tapered_chunks
from runtime.gemm.family import Isa, host_isa
from runtime.gemm.microkernel import compile_module
from runtime.jit import flat_view, jit
from runtime.kernels.conv_epilogue import finish_row, gate_run
from runtime.kernels.depthwise_blocks_text import GROUPS, SIZES, kernel_names, module_ir
from runtime.kernels.nn_depthwise_3x3 import pass_clamp
from runtime.kernels.weight_cache import WeightCache
from runtime.parallel import drives
from runtime.pool_protocol import team_enter, team_leave, team_next
from runtime.unlinked import call_unlinked

WIDEST = 28
"""5x5 and 7x7 kernels take the block kernels on output rows up to this
wide (at 28 they gain 3-35 %, at 56 they tie)."""
SMALL_3X3 = 64
"""3x3 kernels take them on input planes of up to this many pixels (8 x
8: the transposes cost a pixel what a 3x3 sum does, so only where the
plane kernels' vectors are mostly empty)."""

HEADER = 13
"""Fields of a plan (:func:`block_plan`) before its two maps."""
VB, ADDRESS, GROUP, HEIGHT, WIDTH, OUT_H, OUT_W, KSIZE, STRIDE, PAD_FLOATS, ACC_FLOATS, IN_COUNT, OUT_COUNT = \
    range(HEADER)


def takes_blocks(ksize: int, stride: int, height: int, width: int) -> bool:
    """Whether a depthwise convolution of ``height`` x ``width`` planes by
    a square kernel of ``ksize`` (pads of ``ksize // 2``) at ``stride``,
    one output channel an input channel, runs on the block kernels."""
    if stride not in SIZES.get(ksize, ()):
        return False
    out_w = (width - 1) // stride + 1
    return height * width <= SMALL_3X3 if ksize == 3 else out_w <= WIDEST


def group_for(out_w: int) -> int:
    """The output pixels a trip (:data:`GROUPS`) for rows of ``out_w``:
    the fewest pixels computed past the row's end, the larger group of a
    tie."""
    return min(GROUPS, key=lambda g: (-(-out_w // g) * g, -g))


_compiled: dict[tuple, tuple] = {}
_lock = threading.Lock()


def kernel_table(ksize: int, isa: Isa | None = None) -> dict[tuple[int, int], int]:
    """Entry points of the block kernels of ``ksize`` for ``isa`` (the
    host's family by default), by (stride, group): the module compiled (or
    loaded from the kernel cache) on first use, kept for the process."""
    isa = host_isa() if isa is None else isa
    with _lock:
        if (isa, ksize) not in _compiled:
            engine, addresses = compile_module(f"depthwise-blocks{ksize}-{isa.name}", module_ir(ksize, isa.vw),
                                               kernel_names(ksize, isa.vw), isa)
            keys = [(stride, group) for stride in SIZES[ksize] for group in GROUPS]
            _compiled[isa, ksize] = (engine, dict(zip(keys, addresses.tolist())))
        return _compiled[isa, ksize][1]


@lru_cache(maxsize=256)
def _plan(height: int, width: int, ksize: int, stride: int, isa: Isa) -> np.ndarray:
    v, pad = isa.vw, ksize // 2
    out_h, out_w = (height - 1) // stride + 1, (width - 1) // stride + 1
    group = group_for(out_w)
    wp, rows_w = width + 2 * pad, -(-out_w // group) * group
    last_read = (stride * (out_h - 1) + ksize - 1) * wp + stride * (rows_w - 1) + ksize - 1
    spare = (height + 2 * pad) * wp  # the pixel the transposes' lanes past the plane go to
    q = np.arange(height * width)
    inmap = np.full(-(-q.size // v) * v, spare, np.int64)
    inmap[:q.size] = (q // width + pad) * wp + q % width + pad
    r = np.arange(out_h * out_w)
    outmap = np.zeros(-(-r.size // v) * v, np.int64)
    outmap[:r.size] = (r // out_w) * rows_w + r % out_w
    header = [v, kernel_table(ksize, isa)[stride, group], group, height, width, out_h, out_w, ksize, stride,
              (max(spare, last_read) + 1) * v, out_h * rows_w * v, inmap.size, outmap.size]
    plan = np.concatenate([np.array(header, np.int64), inmap, outmap])
    plan.flags.writeable = False
    return plan


def block_plan(height: int, width: int, ksize: int, stride: int, isa: Isa | None = None) -> np.ndarray:
    """What :func:`block_planes` needs for planes of ``height`` x
    ``width`` (read-only int64, made once per geometry): :data:`HEADER`
    fields (the lanes a vector, the kernel's entry point and group, the
    geometry, the floats of the two scratch buffers, the lengths of the
    maps), then the maps: for each input pixel (rounded up to vectors),
    its pixel in the zero-bordered scratch plane (past the plane: a spare
    pixel after it); for each output pixel, its slot in the output scratch
    (rows of a multiple of the group; past the plane: slot 0)."""
    return _plan(height, width, ksize, stride, host_isa() if isa is None else isa)


def _transposed(w: np.ndarray, lanes) -> np.ndarray:
    chans = w.shape[0]
    taps = w.reshape(chans, -1)
    out = np.zeros((taps.shape[1], chans + lanes), np.float32)
    out[:, :chans] = taps.T
    out.flags.writeable = False
    return out


blocked_weights = WeightCache(_transposed)
"""A depthwise convolution's weights (K, [1,] S, S) as the block kernels
read them: (S * S, K + lanes), a row of every channel's weight a tap, zero
past K (a block's vector may reach past the last channel); ``get(w,
lanes)``, kept while the array lives."""


def block_spans(batch: int, chans: int, lanes: int, parts: int, grain: int) -> list[tuple[int, int]]:
    """The planes (index n * chans + k) of ``batch`` images cut into at
    most ``parts`` chunks (as runtime.chunking.tapered_chunks cuts them, at
    least ``grain`` planes) that start and end on a block of ``lanes``
    channels of an image, so that no block is split between two chunks."""
    blocks = -(-chans // lanes)

    def plane(i: int) -> int:
        return (i // blocks) * chans + min((i % blocks) * lanes, chans)

    return [(plane(a), plane(b)) for a, b in tapered_chunks(batch * blocks, parts, max(1, grain // lanes))]


@intrinsic
def _call_block(typingctx, address, x, n, h, w, y, oh, ow, wt, wstride, bias, lo, hi, pad, acc, inmap, outmap):
    """Call the block kernel at ``address`` (x, y, wt, bias, pad, acc and the maps are addresses)."""
    i64, f32 = types.int64, types.float32
    sig = types.void(i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, f32, f32, i64, i64, i64, i64)

    def codegen(context, builder, signature, args):
        i64_t, ptr, f32_t = ir.IntType(64), ir.PointerType(), ir.FloatType()
        fnty = ir.FunctionType(ir.VoidType(), [ptr, i64_t, i64_t, i64_t, ptr, i64_t, i64_t, ptr, i64_t, ptr, f32_t,
                                               f32_t, ptr, ptr, ptr, ptr])
        target = builder.inttoptr(args[0], ir.PointerType(fnty))
        values = list(args[1:])
        for i in (0, 4, 7, 9, 12, 13, 14, 15):
            values[i] = builder.inttoptr(values[i], ptr)
        builder.call(target, values)
        return context.get_dummy_value()

    return sig, codegen


@jit
def _fits(x, wt, b, out, res, plan) -> bool:
    """Whether ``plan`` was made for these arrays' geometry (one output
    channel an input channel, the weights as wide as the blocks read)."""
    batch, chans, height, width = x.shape
    ks = plan[KSIZE] if plan.shape[0] >= HEADER else 0
    return (plan.shape[0] >= HEADER and plan.shape[0] == HEADER + plan[IN_COUNT] + plan[OUT_COUNT]
            and out.shape[0] == batch and out.shape[1] == chans and plan[HEIGHT] == height and plan[WIDTH] == width
            and plan[OUT_H] == out.shape[2] and plan[OUT_W] == out.shape[3] and wt.shape[0] == ks * ks
            and wt.shape[1] >= chans + plan[VB] - 1 and b.shape[0] == chans and res.shape == out.shape)


@jit
def block_planes(start, stop, x, wt, b, out, res, clamp, flags, plan):
    """Output planes [start, stop) (index n*K + k) of a 2-D depthwise
    convolution of float32 planes, one output channel an input channel,
    by the square kernel and stride ``plan`` was made for
    (:func:`block_plan`; pads of half the kernel), with the weights
    ``wt`` as :data:`blocked_weights` lays them out; then the epilogue as
    runtime.kernels.depthwise_ir's: the bias, the residual ``res``
    (flags[0]) and the clamp with its gate (flags[1]). ``V`` planes of an
    image a kernel call (fewer where the run or the image ends). Every
    array is C-contiguous. Writes nothing where ``plan`` is not this
    geometry's (its callers make both from the same shapes)."""
    if not _fits(x, wt, b, out, res, plan):
        return
    batch, chans, height, width = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    lanes = plan[VB]
    lo, hi = pass_clamp(clamp, flags)
    pad = np.zeros(plan[PAD_FLOATS], np.float32)  # its border stays zero: the kernels write only the plane
    acc = np.empty(plan[ACC_FLOATS], np.float32)
    plane, size = height * width, out_h * out_w
    dst, extra = flat_view(out), flat_view(res)
    x_at, y_at, w_at, b_at = flat_view(x).ctypes.data, dst.ctypes.data, wt.ctypes.data, b.ctypes.data
    maps = plan.ctypes.data + 8 * HEADER
    p, end = start, min(stop, batch * chans)
    while p < end:
        k = p % chans
        n = min(lanes, chans - k, end - p)
        _call_block(plan[ADDRESS], x_at + p * plane * 4, n, height, width, y_at + p * size * 4, out_h, out_w,
                    w_at + k * 4, wt.shape[1], b_at + k * 4, lo, hi, pad.ctypes.data, acc.ctypes.data, maps,
                    maps + 8 * plan[IN_COUNT])
        for q in range(p, p + n):
            if flags[0]:
                o = dst[q * size:(q + 1) * size]
                finish_row(o, o, extra[q * size:(q + 1) * size], clamp[0], clamp[1], True, flags[1])
            if flags[1]:
                gate_run(dst, q * size, size, clamp)
        p += n


@drives(block_planes)
@jit
def _block_planes_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(block_planes, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)
