"""CONV (docs/isa.md): a convolution tile with bias, requantisation,
residual and clamp, or one pass of a split reduction.

Two implementations of one semantics, chosen per instruction by
``kernel_kind``:

* 8-bit data and weights, dense or depthwise (every CONV the compiler emits
  for int8 models): the int32 kernels of runtime/sim/conv8.py (pixel-major
  patches, one contiguous dot product per output; depthwise tap by tap).
  Tiles with a short reduction and many pixels sum row by row over a
  channel-major im2col matrix (the tile itself for 1x1 stride 1).
  Large dense tiles (``GEMM_MIN_*``) take the patches to Tessera's exact
  int8 GEMM (``runtime.gemm.igemm``: VNNI microkernels, int32 sums modulo
  2^32 like the device's accumulator).
* Everything else (16-bit operands, grouped tiles): ``conv_channels``, loops
  on int16 copies of the tile and the weights with an int64 accumulator per
  output channel, for every width, group count and dilation.

The interpreter runs small CONVs (``conv``) on its own thread; it hands the
large ones back to Python, and ``run_large`` splits them over the thread pool
(split by output channel; operands are built on one thread; the GEMM
splits its own work, and a 1x1 stride-1 tile goes to it as the views of
the weights and the tile in SRAM, which its packing reads directly).

The accumulator is int32 for 8-bit weights, int64 for 16-bit: sums are
formed exactly (modulo 2^64) and wrapped to int32 where the device's
accumulator is int32, which equals int32 arithmetic throughout.
"""
from __future__ import annotations

import numpy as np

from runtime import gemm
from runtime.gemm.pack import MAX_INT8_DEPTH as GEMM_MAX_DEPTH
from runtime.isa import AccMode
from runtime.jit import jit
from runtime.parallel import drives, parallel_for
from runtime.pool_protocol import team_enter, team_leave, team_next
from runtime.sim import conv8
from runtime.sim.epilogue import (
    C_ACC,
    C_DH,
    C_DW,
    C_GROUPS,
    C_IN,
    C_IN_BITS,
    C_IN_C,
    C_IN_H,
    C_IN_W,
    C_KH,
    C_KW,
    C_MODE,
    C_OUT_C,
    C_PARAM,
    C_SH,
    C_SW,
    C_WGT,
    C_WGT_BITS,
    epilogue,
    epilogue_block,
    out_size,
)
from runtime.sim.memory import load16
from runtime.sim.params import check_conv_records
from runtime.unlinked import call_unlinked

GEMM_MIN_CHANNELS, GEMM_MIN_PIXELS, GEMM_MIN_DEPTH = 32, 128, 64
"""Dense CONVs with at least this many output channels, pixels and
reduction depth run their sums on Tessera's int8 GEMM (VNNI microkernels,
1.2-3x the direct dot products on such tiles); smaller ones, where packing
the operands costs more than it saves, on conv8's kernels."""

GENERIC, DENSE8, DEPTHWISE8 = 0, 1, 2
"""Which kernel runs a CONV: the generic int16/int64 loops, the 8-bit dense
kernel, the 8-bit depthwise kernel."""


@jit
def kernel_kind(ins):
    """GENERIC, DENSE8 or DEPTHWISE8 for a CONV row."""
    if ins[C_IN_BITS] != 8 or ins[C_WGT_BITS] != 8:
        return GENERIC
    if ins[C_GROUPS] == 1:
        return DENSE8
    if ins[C_GROUPS] == ins[C_IN_C] and ins[C_GROUPS] == ins[C_OUT_C]:
        return DEPTHWISE8
    return GENERIC


@jit
def epilogue_channels(start, stop, acc, ins, a8, a16, abase, wgt32, wbase):
    """epilogue over channels [start, stop) of acc [out_c][P]. ``run_large``'s
    GEMM path runs it on one thread (3-30 us a tile, less than the pool's
    hand-off, ~30 us, then); the planned GEMM (conv_gemm) runs
    ``epilogue_block`` after each task's products instead."""
    epilogue_block(start, stop, acc, ins, a8, a16, abase, wgt32, wbase, np.int64(0), acc.shape[1], np.int64(0))


@jit
def _gather(ins, x, g, cols):
    """cols [Cg*kh*kw][P] = group g's input patches (row (c, ky, kx), column
    (oy, ox)) from the int16 tile x."""
    in_h, in_w, kh, kw = ins[C_IN_H], ins[C_IN_W], ins[C_KH], ins[C_KW]
    sh, sw, dh, dw = ins[C_SH], ins[C_SW], ins[C_DH], ins[C_DW]
    cg = ins[C_IN_C] // ins[C_GROUPS]
    out_h, out_w = out_size(ins)
    for c in range(cg):
        plane = (g * cg + c) * in_h * in_w
        for ky in range(kh):
            for kx in range(kw):
                row = cols[(c * kh + ky) * kw + kx]
                for oy in range(out_h):
                    base = plane + (oy * sh + ky * dh) * in_w + kx * dw
                    for ox in range(out_w):
                        row[oy * out_w + ox] = x[base + ox * sw]


@jit
def conv_channels(start, stop, ins, x, w, a8, a16, abase, wgt32, wgt64, wbase, c32, c64, cbase):
    """Output channels [start, stop) of a CONV: x and w are int16 copies of
    the input tile and the weights (parallel_for splits the channels). Each
    group's patches are gathered once, then every channel's sums are rows
    of products added over the reduction (contiguous, so they vectorise)."""
    groups, out_c = ins[C_GROUPS], ins[C_OUT_C]
    depth = ins[C_IN_C] // groups * ins[C_KH] * ins[C_KW]
    kg = out_c // groups
    out_h, out_w = out_size(ins)
    size = out_h * out_w
    mode, wide = ins[C_MODE], ins[C_WGT_BITS] == 16
    from_acc, to_acc = (mode & 1) == 1, (mode & 2) == 2
    acc_at = (cbase + ins[C_ACC]) >> (3 if wide else 2)
    bias_at = (wbase + ins[C_PARAM]) >> 3
    acc = np.empty(size, np.int64)
    cols = np.empty((depth, size), np.int16)
    gathered = -1
    for k in range(start, stop):
        g = k // kg
        if g != gathered:
            _gather(ins, x, g, cols)
            gathered = g
        if from_acc:
            for i in range(size):
                acc[i] = c64[acc_at + k * size + i] if wide else c32[acc_at + k * size + i]
        else:
            acc[:] = wgt64[bias_at + 3 * k]
        for r in range(depth):
            wv = np.int64(w[k * depth + r])
            if wv != 0:
                row = cols[r]
                for i in range(size):
                    acc[i] += row[i] * wv
        if not wide:
            for i in range(size):
                acc[i] = np.int64(np.int32(acc[i]))
        if not to_acc:
            epilogue(k, acc, ins, a8, a16, abase, wgt32, wbase)
        elif wide:
            c64[acc_at + k * size:acc_at + (k + 1) * size] = acc
        else:
            for i in range(size):
                c32[acc_at + k * size + i] = acc[i]


@jit
def operands(ins, a8, a16, abase, w8, w16, wbase):
    """int16 copies of a CONV's input tile and weights."""
    x = load16(a8, a16, abase + ins[C_IN], ins[C_IN_BITS], ins[C_IN_C] * ins[C_IN_H] * ins[C_IN_W])
    count = ins[C_OUT_C] * (ins[C_IN_C] // ins[C_GROUPS]) * ins[C_KH] * ins[C_KW]
    return x, load16(w8, w16, wbase + ins[C_WGT], ins[C_WGT_BITS], count)


@jit
def conv(ins, a8, a16, abase, w8, w16, wgt32, wgt64, wbase, c32, c64, cbase, err):
    """One CONV on this thread; False (err filled) on a bad PARAM record."""
    if ins[C_MODE] & 2 == 0 and not check_conv_records(wgt32, wbase + ins[C_PARAM], ins[C_OUT_C], err):
        return False
    kind = kernel_kind(ins)
    if kind == DENSE8:
        call_unlinked(conv8.dense, (ins, a8, a16, abase, w8, wgt32, wgt64, wbase, c32, cbase))
    elif kind == DEPTHWISE8:
        call_unlinked(conv8.depthwise_channels, (np.int64(0), ins[C_OUT_C], ins, a8, a16, abase, w8, wgt32, wgt64,
                                                 wbase, c32, cbase))
    else:
        x, w = operands(ins, a8, a16, abase, w8, w16, wbase)
        call_unlinked(conv_channels, (np.int64(0), ins[C_OUT_C], ins, x, w, a8, a16, abase, wgt32, wgt64, wbase, c32,
                                      c64, cbase))
    return True


def run_large(ins: np.ndarray, mem, slot: int, err: np.ndarray) -> bool:
    """One CONV over the thread pool (``mem``: the card's CardMemory, ``slot``
    the cluster's buffer slot); False (err filled) on a bad PARAM record."""
    wbase, abase, cbase = (space.stride * slot for space in (mem.wgt, mem.act, mem.acc))
    wgt, act, acc = mem.wgt, mem.act, mem.acc
    out_c = int(ins[C_OUT_C])
    if int(ins[C_MODE]) & 2 == 0 and not check_conv_records(wgt.i32, wbase + int(ins[C_PARAM]), out_c, err):
        return False
    kind = kernel_kind(ins)
    if kind == DENSE8 and _on_gemm(ins):
        w, x = _gemm_operands(ins, mem, slot)
        sums = _gemm_sums(ins, mem, slot, w, x)
        if int(ins[C_MODE]) & 2 == 0:
            epilogue_channels(0, out_c, sums, ins, act.i8, act.i16, abase, wgt.i32, wbase)
    elif kind == DENSE8 and _few_pixels(ins):
        cols = conv8.patches_in_order(ins, act.i8, abase).copy()  # not a view of the tile: the chunks write ACT
        parallel_for(conv8.few_pixel_channels, out_c, ins, cols, act.i8, act.i16, abase, wgt.i8, wgt.i32, wgt.i64,
                     wbase, acc.i32, cbase)
    elif kind == DENSE8 and _short(ins):
        x, w = conv8.row_operands(ins, act.i8, abase, wgt.i8, wbase)
        parallel_for(conv8.short_channels, out_c, ins, x, w, act.i8, act.i16, abase, wgt.i32, wgt.i64, wbase,
                     acc.i32, cbase)
    elif kind == DENSE8:
        cols, w = conv8.dense_operands(ins, act.i8, abase, wgt.i8, wbase)
        parallel_for(conv8.dense_channels, out_c, ins, cols, w, act.i8, act.i16, abase, wgt.i32, wgt.i64, wbase,
                     acc.i32, cbase)
    elif kind == DEPTHWISE8:
        parallel_for(conv8.depthwise_channels, out_c, ins, act.i8, act.i16, abase, wgt.i8, wgt.i32, wgt.i64, wbase,
                     acc.i32, cbase)
    else:
        x, w = operands(ins, act.i8, act.i16, abase, wgt.i8, wgt.i16, wbase)
        parallel_for(conv_channels, out_c, ins, x, w, act.i8, act.i16, abase, wgt.i32, wgt.i64, wbase, acc.i32,
                     acc.i64, cbase)
    return True


def _on_gemm(ins: np.ndarray) -> bool:
    """Whether a dense 8-bit CONV's sums run on the int8 GEMM."""
    out_h, out_w = out_size(ins)
    return (ins[C_OUT_C] >= GEMM_MIN_CHANNELS and out_h * out_w >= GEMM_MIN_PIXELS
            and ins[C_IN_C] * ins[C_KH] * ins[C_KW] >= GEMM_MIN_DEPTH and gemm.available())


def _few_pixels(ins: np.ndarray) -> bool:
    """Whether the few-pixel dot products run (conv8.few_pixels; tests
    replace this to send every tile down one path)."""
    return bool(conv8.few_pixels(ins))


def _short(ins: np.ndarray) -> bool:
    """Whether the short-reduction kernel runs (conv8.short; tests replace
    this to send every tile down one path)."""
    return bool(conv8.short(ins))


def _gemm_operands(ins: np.ndarray, mem, slot: int) -> tuple[np.ndarray, np.ndarray]:
    """(w [out_c][R], x [R][P]) of a dense CONV for the GEMM: for a 1x1
    stride-1 CONV, views of the weights and the tile in SRAM (the GEMM's
    packing reads them as they lie); otherwise the tap-major weights and the
    transposed pixel-major patches of ``conv8.dense_operands``."""
    wbase, abase = mem.wgt.stride * slot, mem.act.stride * slot
    if conv8.pointwise(ins):
        x, w = conv8.row_operands(ins, mem.act.i8, abase, mem.wgt.i8, wbase)
        return w, x
    cols, w = conv8.dense_operands(ins, mem.act.i8, abase, mem.wgt.i8, wbase)
    return w, cols.T


def _gemm_sums(ins: np.ndarray, mem, slot: int, w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The int32 accumulators [out_c][P] of a dense CONV from its weights
    w [out_c][R] and patches x [R][P] by Tessera's int8 GEMM: into ACC
    (FIRST, MIDDLE) or a new array (FULL, LAST). The bias is added modulo
    2^32, as int32 arithmetic does."""
    wbase, cbase = mem.wgt.stride * slot, mem.acc.stride * slot
    out_c, size, depth = w.shape[0], x.shape[1], w.shape[1]
    mode = int(ins[C_MODE])
    if mode == AccMode.FULL:
        sums = np.empty((out_c, size), np.int32)
    else:
        at = (cbase + int(ins[C_ACC])) >> 2
        stored = mem.acc.i32[at:at + out_c * size].reshape(out_c, size)
        sums = stored if mode & 2 else stored.copy()
    bias = None
    if mode & 1 == 0:
        first = (wbase + int(ins[C_PARAM])) >> 3
        bias = mem.wgt.i64[first:first + 3 * out_c:3].astype(np.int32)
    for k0 in range(0, depth, GEMM_MAX_DEPTH):
        k1 = min(depth, k0 + GEMM_MAX_DEPTH)
        gemm.igemm(w[:, k0:k1], x[k0:k1], sums, bias=bias if k0 == 0 else None,
                   accumulate=k0 > 0 or bias is None)
    return sums


# ---------------------------------------------------------------- team drivers (runtime.parallel)
@drives(epilogue_channels)
@jit
def epilogue_channels_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(epilogue_channels, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)


@drives(conv_channels)
@jit
def conv_channels_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(conv_channels, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)
