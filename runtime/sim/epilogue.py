"""The fields of a CONV row and its epilogue (docs/isa.md): requantisation
of the accumulators by the channel's PARAM record, the residual, the output
zero point, the clamp and the optional table (256 entries read by int8
codes, or with lut_wide 513 read by int16 codes and interpolated by
``qscheme.lookup_wide``). Shared by every CONV kernel
(runtime/sim/conv.py, runtime/sim/conv8.py)."""
from __future__ import annotations

import numba
import numpy as np

from runtime.isa import LUT_ENTRIES, PARAM_CHANNEL_BYTES, WIDE_LUT_ENTRIES, Op, column
from runtime.jit import jit
from runtime.qscheme import (
    HIGH_SHIFT,
    SHORT_SHIFTS,
    high_params,
    lookup_wide,
    rescale,
    rescale_high,
    rescale_short,
    rescale_small,
    short_params,
)
from runtime.sim.memory import lookup
from runtime.sim.params import MULT_HIGH, MULT_LOW
from runtime.wrapping import add32

(C_IN, C_IN_BITS, C_IN_C, C_IN_H, C_IN_W, C_WGT, C_WGT_BITS, C_GROUPS, C_KH, C_KW, C_SH, C_SW, C_DH, C_DW, C_OUT_C,
 C_OUT, C_OUT_BITS, C_OZ, C_LO, C_HI, C_PARAM, C_RES, C_RES_ADDR, C_RES_BITS, C_RES_ZERO, C_RES_MULT, C_RES_SHIFT,
 C_MODE, C_ACC, C_LUT, C_LUT_ADDR, C_LUT_WIDE) = (column(Op.CONV, name) for name in (
    "in_addr", "in_bits", "in_c", "in_h", "in_w", "wgt_addr", "wgt_bits", "groups", "kernel_h", "kernel_w",
    "stride_h", "stride_w", "dilation_h", "dilation_w", "out_c", "out_addr", "out_bits", "out_zero", "lo", "hi",
    "param_addr", "residual", "res_addr", "res_bits", "res_zero", "res_mult", "res_shift", "acc_mode", "acc_addr",
    "lut", "lut_addr", "lut_wide"))
RECORD_WORDS = PARAM_CHANNEL_BYTES // 4
_u = numba.uint64


@jit(inline="always")
def out_size(ins):
    """(out_h, out_w) of a CONV row."""
    span_h = ins[C_DH] * (ins[C_KH] - 1) + 1
    span_w = ins[C_DW] * (ins[C_KW] - 1) + 1
    return (ins[C_IN_H] - span_h) // ins[C_SH] + 1, (ins[C_IN_W] - span_w) // ins[C_SW] + 1


@jit(inline="always")
def _requantize(acc, a0, out, o0, res, r0, count, residual, m, n, neg_m, neg_n, rz, rm, rs, oz, lo, hi):
    """out[o0 + i] = clamp(rescale(acc[a0 + i]) [+ rescale(res[r0 + i] - rz)]
    + oz, lo, hi) for i < count. Offsets into whole arrays, not views: a
    view costs a reference count up and down on its parent, an atomic that
    both threads of the pool contended for on every channel of every task
    (~12 % of ResNet-50's Run_sw)."""
    for i in range(_u(count)):
        a = np.int64(acc[_u(a0) + i])
        v = rescale(a, neg_m, neg_n) if a < 0 else rescale(a, m, n)
        if residual:
            v += rescale(np.int64(res[_u(r0) + i]) - rz, rm, rs)
        out[_u(o0) + i] = min(max(v + oz, lo), hi)


@jit(inline="always")
def high_path(m, n, neg_m, neg_n):
    """Whether a channel's rescale of int32 sums takes the 32-bit path
    (``qscheme.rescale_high``): one multiplier and shift for both signs,
    the shift at least HIGH_SHIFT. The GEMM's kernels requantise a CONV
    whose every channel does (runtime.sim.conv_gemm._requant_records)."""
    return m == neg_m and n == neg_n and n >= HIGH_SHIFT


@jit(inline="always")
def _multipliers(ins, wgt32, wbase, k):
    """(mult, shift, neg_mult, neg_shift) of channel k's PARAM record."""
    rec = ((wbase + ins[C_PARAM]) >> 2) + RECORD_WORDS * k
    return (np.int64(wgt32[rec + 2]), np.int64(wgt32[rec + 3]), np.int64(wgt32[rec + 4]),
            np.int64(wgt32[rec + 5]))


@jit
def epilogue(k, acc, ins, a8, a16, abase, wgt32, wbase):
    """Output channel k of a FULL or LAST CONV from its int64 accumulators
    ``acc`` (1-D, already the device accumulator's values; the 16-bit
    loops): the general loops (one per combination of output and residual
    width), then the table. int32 accumulators take ``epilogue_block``'s
    vectorising loops (a row of one channel: ``acc.reshape(1, size)``); a
    branch on the accumulator's width here would compile both forms into
    each signature (Numba types the branch not taken too)."""
    size = acc.shape[0]
    m, n, neg_m, neg_n = _multipliers(ins, wgt32, wbase, k)
    dst, oz, lo, hi = abase + ins[C_OUT] + k * size * (ins[C_OUT_BITS] >> 3), ins[C_OZ], ins[C_LO], ins[C_HI]
    res = abase + ins[C_RES_ADDR] + k * size * (ins[C_RES_BITS] >> 3)
    rz, rm, rs, residual = ins[C_RES_ZERO], ins[C_RES_MULT], ins[C_RES_SHIFT], ins[C_RES] == 1
    if ins[C_OUT_BITS] == 8:
        if ins[C_RES_BITS] == 16:
            _requantize(acc, 0, a8, dst, a16, res >> 1, size, residual, m, n, neg_m, neg_n, rz, rm, rs, oz, lo, hi)
        else:
            _requantize(acc, 0, a8, dst, a8, res, size, residual, m, n, neg_m, neg_n, rz, rm, rs, oz, lo, hi)
    elif ins[C_RES_BITS] == 16:
        _requantize(acc, 0, a16, dst >> 1, a16, res >> 1, size, residual, m, n, neg_m, neg_n, rz, rm, rs, oz, lo, hi)
    else:
        _requantize(acc, 0, a16, dst >> 1, a8, res, size, residual, m, n, neg_m, neg_n, rz, rm, rs, oz, lo, hi)
    if ins[C_LUT] == 1:  # the clamp gave the table's codes (the validator checked lo, hi): map them in place
        table = wbase + ins[C_LUT_ADDR]
        out8, out16 = a8[dst:dst + size], a16[dst >> 1:(dst >> 1) + size]
        if ins[C_OUT_BITS] == 8:
            lookup(out8, out8, wgt32.view(np.int8)[table:table + LUT_ENTRIES])
        elif ins[C_LUT_WIDE] == 1:  # int16 codes (out_bits is 16): interpolated
            lookup_wide(out16, out16, wgt32.view(np.int16)[table >> 1:(table >> 1) + WIDE_LUT_ENTRIES])
        else:
            lookup(out16, out16, wgt32.view(np.int16)[table >> 1:(table >> 1) + LUT_ENTRIES])


@jit
def epilogue_block(start, stop, acc, ins, a8, a16, abase, wgt32, wbase, col0, col1, row0):
    """Columns [col0, col1) of output channels [start, stop) of a FULL or
    LAST CONV, channel k from the int32 accumulators ``acc[k - row0]`` (a
    row per channel, of all the output's columns): one choice of loop for
    the output and residual widths, then the channels' rows, then the table."""
    size = acc.shape[1]
    count = ins[C_OUT_C] * size
    dst, res = abase + ins[C_OUT], abase + ins[C_RES_ADDR]
    flat = acc.reshape(-1)
    if ins[C_OUT_BITS] == 8:
        if ins[C_RES_BITS] == 16:
            _channel_rows(start, stop, flat, size, a8, dst, a16, res >> 1, ins, wgt32, wbase, col0, col1, row0)
        else:
            _channel_rows(start, stop, flat, size, a8, dst, a8, res, ins, wgt32, wbase, col0, col1, row0)
    elif ins[C_RES_BITS] == 16:
        _channel_rows(start, stop, flat, size, a16, dst >> 1, a16, res >> 1, ins, wgt32, wbase, col0, col1, row0)
    else:
        _channel_rows(start, stop, flat, size, a16, dst >> 1, a8, res, ins, wgt32, wbase, col0, col1, row0)
    if ins[C_LUT] == 1:  # the clamp gave the table's codes (the validator checked lo, hi): map them in place
        table = wbase + ins[C_LUT_ADDR]
        out8, out16 = a8[dst:dst + count], a16[dst >> 1:(dst >> 1) + count]
        entries = WIDE_LUT_ENTRIES if ins[C_LUT_WIDE] == 1 else LUT_ENTRIES
        t8 = wgt32.view(np.int8)[table:table + LUT_ENTRIES]
        t16 = wgt32.view(np.int16)[table >> 1:(table >> 1) + entries]
        for k in range(start, stop):
            first, last = k * size + col0, k * size + col1
            if ins[C_OUT_BITS] == 8:
                lookup(out8[first:last], out8[first:last], t8)
            elif ins[C_LUT_WIDE] == 1:  # int16 codes (out_bits is 16): interpolated
                lookup_wide(out16[first:last], out16[first:last], t16)
            else:
                lookup(out16[first:last], out16[first:last], t16)


@jit
def _channel_rows(start, stop, acc, size, out, o0, res, r0, ins, wgt32, wbase, col0, col1, row0):
    """Each channel's columns [col0, col1) requantised by its PARAM record,
    for int32 accumulators: |a| <= 2^31 and a residual's |res - rz| < 2^17
    (8- or 16-bit values and zero point; the validator bounds the
    multipliers and shifts), so ``rescale_small`` is exact, and the loops
    have no branch left that stops LLVM vectorising them. Channel k's
    accumulators at acc[(k - row0)·size:] (``acc`` flat), its outputs at
    out[o0 + k·size:], its residual at res[r0 + k·size:]. The loops are
    written out here rather than inlined per channel: an inlined helper
    binds its array arguments anew, a reference count up and down on each
    per channel, atomics the pool's two threads contended for (~12 % of
    ResNet-50's Run_sw)."""
    oz, lo, hi = ins[C_OZ], ins[C_LO], ins[C_HI]
    oz32, lo32, hi32 = np.int32(oz), np.int32(lo), np.int32(hi)
    rz, rm, rs, residual = ins[C_RES_ZERO], ins[C_RES_MULT], ins[C_RES_SHIFT], ins[C_RES] == 1
    records = (wbase + ins[C_PARAM]) >> 2
    count = _u(col1 - col0)
    short_residual = (residual and ins[C_RES_BITS] == 8 and -128 <= rz <= 127 and MULT_LOW <= rm <= MULT_HIGH
                      and SHORT_SHIFTS[0] <= rs <= SHORT_SHIFTS[1])
    # an 8-bit residual whose rescale qscheme.rescale_short does in 32 bits (a residual's grid is close to the
    # output's: its shift is ~31, too short for the high word)
    neg_rz = np.int32(-rz)
    r_high, r_low, r_bias, r_shift = short_params(rm, rs)
    for k in range(start, stop):
        rec = records + RECORD_WORDS * k
        m, n = np.int64(wgt32[rec + 2]), np.int64(wgt32[rec + 3])
        neg_m, neg_n = np.int64(wgt32[rec + 4]), np.int64(wgt32[rec + 5])
        a0, first = _u((k - row0) * size + col0), k * size + col0
        at, r = _u(o0 + first), _u(r0 + first)
        if short_residual and high_path(m, n, neg_m, neg_n):  # a bottleneck's last CONV: 32 bits
            m32, bias, shift = high_params(m, n)
            for i in range(count):
                v = add32(rescale_high(acc[a0 + i], m32, bias, shift),
                          rescale_short(add32(np.int32(res[r + i]), neg_rz), r_high, r_low, r_bias, r_shift))
                out[at + i] = min(max(add32(v, oz32), lo32), hi32)
        elif residual and m == neg_m and n == neg_n:
            for i in range(count):
                v = rescale_small(np.int64(acc[a0 + i]), m, n) + rescale_small(np.int64(res[r + i]) - rz, rm, rs)
                out[at + i] = min(max(v + oz, lo), hi)
        elif residual:
            for i in range(count):
                a = np.int64(acc[a0 + i])
                v = rescale_small(a, neg_m, neg_n) if a < 0 else rescale_small(a, m, n)
                v += rescale_small(np.int64(res[r + i]) - rz, rm, rs)
                out[at + i] = min(max(v + oz, lo), hi)
        elif high_path(m, n, neg_m, neg_n):  # the usual channel: 32-bit lanes
            m32, bias, shift = high_params(m, n)
            for i in range(count):
                v = add32(rescale_high(acc[a0 + i], m32, bias, shift), oz32)
                out[at + i] = min(max(v, lo32), hi32)
        elif m == neg_m and n == neg_n:  # one multiplier for both signs (no leaky slope): one product
            for i in range(count):
                v = rescale_small(np.int64(acc[a0 + i]), m, n)
                out[at + i] = min(max(v + oz, lo), hi)
        else:
            for i in range(count):
                a = np.int64(acc[a0 + i])
                v = rescale_small(a, neg_m, neg_n) if a < 0 else rescale_small(a, m, n)
                out[at + i] = min(max(v + oz, lo), hi)
