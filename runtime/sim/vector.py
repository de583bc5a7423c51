"""POOL, ELTWISE, LUT, MATMUL and SOFTMAX (docs/isa.md): element loops over
the ACT views, exact integer arithmetic, the one ``runtime.qscheme.rescale``
of the CPU kernels (and MATMUL's and SOFTMAX's ``qscheme.matmul_block`` and
``qscheme.softmax_row``)."""
from __future__ import annotations

import numba
import numpy as np

from runtime.isa import AVG_ENTRY_BYTES, LUT_ENTRIES, WIDE_LUT_ENTRIES, Bcast, EltOp, Op, PoolMode, column
from runtime.jit import jit
from runtime.kernels.pool_loops import rows_max, rows_max_into, windows_max
from runtime.qscheme import (
    HIGH_SHIFT,
    SHORT_SHIFTS,
    SOFTMAX_ENTRIES,
    binary,
    high_params,
    lookup_wide,
    matmul_block,
    rescale,
    rescale_high,
    rescale_short,
    rescale_small,
    short_params,
    softmax_row,
)
from runtime.sim.bytevec import fast, fast_table, max3s2
from runtime.sim.memory import get, lookup, map_codes, put
from runtime.sim.params import BAD_AVG_MULT, BAD_AVG_SHIFT, MULT_HIGH, MULT_LOW, SHIFT_HIGH, SHIFT_LOW, check
from runtime.unlinked import call_unlinked
from runtime.wrapping import add32

_P = {name: column(Op.POOL, name) for name in (
    "mode", "in_addr", "in_bits", "c", "in_h", "in_w", "kernel_h", "kernel_w", "stride_h", "stride_w", "pad_top",
    "pad_bottom", "pad_left", "pad_right", "out_addr", "out_bits", "x_zero", "out_zero", "lo", "hi", "param_addr")}
P_MODE, P_IN, P_IN_BITS, P_C, P_IN_H, P_IN_W = (_P[k] for k in ("mode", "in_addr", "in_bits", "c", "in_h", "in_w"))
P_KH, P_KW, P_SH, P_SW = (_P[k] for k in ("kernel_h", "kernel_w", "stride_h", "stride_w"))
P_PT, P_PB, P_PL, P_PR = (_P[k] for k in ("pad_top", "pad_bottom", "pad_left", "pad_right"))
P_OUT, P_OUT_BITS, P_XZ, P_OZ, P_LO, P_HI, P_PARAM = (_P[k] for k in (
    "out_addr", "out_bits", "x_zero", "out_zero", "lo", "hi", "param_addr"))
AVG_WORDS = AVG_ENTRY_BYTES // 4
_u = numba.uint64

_E = {name: column(Op.ELTWISE, name) for name in (
    "func", "bcast", "c", "h", "w", "a_addr", "a_bits", "a_zero", "a_mult", "a_shift", "b_addr", "b_bits", "b_zero",
    "b_mult", "b_shift", "out_addr", "out_bits", "out_zero", "lo", "hi")}
E_FUNC, E_BCAST, E_C, E_H, E_W = (_E[k] for k in ("func", "bcast", "c", "h", "w"))
E_A, E_A_BITS, E_A_ZERO, E_A_MULT, E_A_SHIFT = (_E[k] for k in ("a_addr", "a_bits", "a_zero", "a_mult", "a_shift"))
E_B, E_B_BITS, E_B_ZERO, E_B_MULT, E_B_SHIFT = (_E[k] for k in ("b_addr", "b_bits", "b_zero", "b_mult", "b_shift"))
E_OUT, E_OUT_BITS, E_OZ, E_LO, E_HI = (_E[k] for k in ("out_addr", "out_bits", "out_zero", "lo", "hi"))

L_IN, L_COUNT, L_PARAM, L_OUT, L_OUT_BITS, L_WIDE = (column(Op.LUT, k) for k in (
    "in_addr", "count", "param_addr", "out_addr", "out_bits", "wide"))
(M_BATCH, M_M, M_K, M_N, M_A, M_A_BITS, M_A_ZERO, M_B, M_B_BITS, M_B_ZERO, M_OUT, M_OUT_BITS, M_OZ, M_MULT, M_SHIFT,
 M_LO, M_HI) = (column(Op.MATMUL, k) for k in (
    "batch", "m", "k", "n", "a_addr", "a_bits", "a_zero", "b_addr", "b_bits", "b_zero", "out_addr", "out_bits",
    "out_zero", "mult", "shift", "lo", "hi"))
(S_ROWS, S_COLS, S_IN, S_IN_BITS, S_IN_MULT, S_IN_SHIFT, S_PARAM, S_OUT, S_OUT_BITS, S_OZ, S_MULT, S_SHIFT, S_LO,
 S_HI) = (column(Op.SOFTMAX, k) for k in (
    "rows", "cols", "in_addr", "in_bits", "in_mult", "in_shift", "param_addr", "out_addr", "out_bits", "out_zero",
    "mult", "shift", "lo", "hi"))


@jit
def pool(ins, a8, a16, abase, wgt32, wbase, err):
    """One POOL; False (err filled) on a bad average-pool multiplier (every
    window's entry is checked first, in window order)."""
    if ins[P_IN_BITS] == 8:
        if ins[P_OUT_BITS] == 8:
            return pool_widths(ins, a8, a8, abase, wgt32, wbase, err)
        return pool_widths(ins, a8, a16, abase, wgt32, wbase, err)
    if ins[P_OUT_BITS] == 8:
        return pool_widths(ins, a16, a8, abase, wgt32, wbase, err)
    return pool_widths(ins, a16, a16, abase, wgt32, wbase, err)


@jit
def pool_widths(ins, x_act, y_act, abase, wgt32, wbase, err):
    """:func:`pool` for one pair of input and output widths: ``x_act`` and
    ``y_act`` are ACT's int8 or int16 view (the interpreter's entry points
    compile only the pairs a program has, runtime/sim/handlers.py)."""
    in_h, in_w, kh, kw, sh, sw = ins[P_IN_H], ins[P_IN_W], ins[P_KH], ins[P_KW], ins[P_SH], ins[P_SW]
    top, left, bottom, right = ins[P_PT], ins[P_PL], in_h - ins[P_PB], in_w - ins[P_PR]
    out_h, out_w = (in_h - kh) // sh + 1, (in_w - kw) // sw + 1
    avg = ins[P_MODE] == PoolMode.AVG
    table = (wbase + ins[P_PARAM]) >> 2
    if avg:
        for oy in range(out_h):
            rows = min(oy * sh + kh, bottom) - max(oy * sh, top)
            for ox in range(out_w):
                count = rows * (min(ox * sw + kw, right) - max(ox * sw, left))
                at = table + AVG_WORDS * (count - 1)
                if not (check(np.int64(wgt32[at]), MULT_LOW, MULT_HIGH, BAD_AVG_MULT, count - 1, err)
                        and check(np.int64(wgt32[at + 1]), SHIFT_LOW, SHIFT_HIGH, BAD_AVG_SHIFT, count - 1, err)):
                    return False
    src, dst = abase + ins[P_IN], abase + ins[P_OUT]
    n_in, n_out = ins[P_C] * in_h * in_w, ins[P_C] * out_h * out_w
    if x_act.itemsize == 2:
        src >>= 1
    if not avg:  # the validator: MAX keeps the codes' width (so x_act views its output too, one MAX compiled a
        # width, not a pair), lo and hi lie in its range
        out = dst // x_act.itemsize
        call_unlinked(_max_planes, (ins, x_act[src:src + n_in], x_act[out:out + n_out],
                                    -(1 << (8 * x_act.itemsize - 1)), (1 << (8 * x_act.itemsize - 1)) - 1))
        return True
    if y_act.itemsize == 2:
        dst >>= 1
    call_unlinked(_avg_planes, (ins, x_act[src:src + n_in], y_act[dst:dst + n_out], wgt32, table))
    return True


@jit
def _max_planes(ins, x, y, floor, ceiling):
    """MAX POOL of codes in [``floor``, ``ceiling``] (the range of ``x``'s
    and ``y``'s type, which holds ``lo`` and ``hi``), separably, with the
    CPU max pool's loops (runtime.kernels.pool_loops): per output row, the
    maximum of its window's input rows in one contiguous pass, its padding
    columns set to ``floor`` (every window holds an element of the map: the
    validator), then each window's maximum over that row, a literal stride
    of 1 or 2 so that LLVM vectorises the loads, then the clamp. (Taking
    the row's columns by phase in scalar loops before, SqueezeNet's three
    pools took 1.7 ms a run, now 0.33 ms; Zen 3, one thread.)"""
    channels, in_h, in_w = ins[P_C], ins[P_IN_H], ins[P_IN_W]
    kh, kw, sh, sw = ins[P_KH], ins[P_KW], ins[P_SH], ins[P_SW]
    top, left, bottom, right = ins[P_PT], ins[P_PL], in_h - ins[P_PB], in_w - ins[P_PR]
    out_h, out_w = (in_h - kh) // sh + 1, (in_w - kw) // sw + 1
    bounds = np.empty(3, x.dtype)
    bounds[0], bounds[1], bounds[2] = floor, ins[P_LO], ins[P_HI]
    low, lo, hi = bounds[0], bounds[1], bounds[2]
    clamp = ins[P_LO] > floor or ins[P_HI] < ceiling
    if (x.itemsize == 1 and kh == 3 and kw == 3 and sh == 2 and sw == 2 and left == 0 and right == in_w
            and (fast() or out_w >= FLAT_POOL_COLUMNS)):
        _max_rows_3x3s2(channels, in_h, in_w, top, bottom, out_h, out_w, x, y)
        if clamp:
            for i in range(_u(channels * out_h * out_w)):
                y[i] = min(max(y[i], lo), hi)
        return
    if top == 0 and left == 0 and bottom == in_h and right == in_w and out_w < FLAT_POOL_COLUMNS:
        _max_planes_flat(channels, in_h, in_w, kh, kw, sh, sw, out_h, out_w, x, y, lo, hi, clamp)
        return
    row = np.empty(in_w, x.dtype)
    for ch in range(channels):
        plane, out = ch * in_h * in_w, ch * out_h * out_w
        for oy in range(out_h):
            r, end = max(oy * sh, top), min(oy * sh + kh, bottom)
            count = min(end - r, 3)
            rows_max(x, plane + r * in_w, in_w, count, row, 0, low)
            r += count
            while r < end:
                count = min(end - r, 2)
                rows_max_into(x, plane + r * in_w, in_w, count, row, 0)
                r += count
            for xx in range(left):
                row[xx] = low
            for xx in range(right, in_w):
                row[xx] = low
            to = out + oy * out_w
            if sw == 1:
                windows_max(y, to, out_w, row, 1, kw)
            elif sw == 2:
                windows_max(y, to, out_w, row, 2, kw)
            else:
                windows_max(y, to, out_w, row, sw, kw)
            if clamp:
                for q in range(out_w):
                    v = y[_u(to + q)]
                    y[_u(to + q)] = min(max(v, lo), hi)


@jit(inline="always")
def _max_rows_3x3s2(channels, in_h, in_w, top, bottom, out_h, out_w, x, y):
    """A 3 x 3, stride-2 MAX POOL of 8-bit codes with no padding columns by
    the host's vector kernel (runtime.sim.bytevec.max3s2): per channel, the
    output rows whose windows lie inside [top, bottom) in one call, each
    other row in a call of its own on the window's rows inside (one or two
    of them given again)."""
    base = x.ctypes.data
    for ch in range(channels):
        plane, out = base + ch * in_h * in_w, y.ctypes.data + ch * out_h * out_w
        first = min((top + 1) // 2, out_h)  # the first output row whose window starts at or below top
        last = max(first, min((bottom - 3) // 2 + 1, out_h))  # past the last whose window ends by bottom
        if last > first:
            at = plane + 2 * first * in_w
            max3s2(out_w, last - first, 2 * in_w, at, at + in_w, at + 2 * in_w, out + first * out_w)
        for oy in range(out_h):
            if first <= oy < last:
                continue
            r, end = max(oy * 2, top), min(oy * 2 + 3, bottom)
            r0, r1, r2 = plane + r * in_w, plane + min(r + 1, end - 1) * in_w, plane + min(r + 2, end - 1) * in_w
            max3s2(out_w, 1, 0, r0, r1, r2, out + oy * out_w)


FLAT_POOL_COLUMNS, FLAT_POOL_BLOCK = 32, 1 << 14
"""A max POOL with no padding and fewer output columns than this runs on
whole blocks of planes (:func:`_max_planes_flat`), each block of about
``FLAT_POOL_BLOCK`` input elements: a row of a small plane (SqueezeNet's
13 to 27 outputs) is shorter than one vector, and the per-row passes ran in
their scalar remainders (0.41 ns an input byte on a 27 x 27 map against
0.12 on a 111-wide one, Zen 4)."""


@jit
def _max_planes_flat(channels, in_h, in_w, kh, kw, sh, sw, out_h, out_w, x, y, lo, hi, clamp):
    """MAX POOL with no padding over blocks of whole planes, each block as
    one flat run of elements: ``h[i]`` the maximum of ``x[i:i + kw]``, then
    ``v[i]`` the maximum of ``h[i + ky·in_w]`` over ky < kh, both long
    passes that LLVM vectorises (the windows that straddle a row's or a
    plane's end are computed too, and never read), then each output the
    ``v`` at its window's top left corner, clamped. Every window is one of
    the map's (no padding), so its maximum is the same as the per-row
    passes'."""
    plane = in_h * in_w
    per = max(1, FLAT_POOL_BLOCK // plane)
    h = np.empty(per * plane, x.dtype)
    v = np.empty(per * plane, x.dtype)
    for c0 in range(0, channels, per):
        nc = min(per, channels - c0)
        base = _u(c0 * plane)
        n = nc * plane - (kw - 1)  # every h a window of the map's columns reads
        for i in range(_u(n)):
            h[i] = x[base + i]
        for kx in range(1, kw):
            for i in range(_u(n)):
                a, m = x[base + i + _u(kx)], h[i]
                h[i] = a if a > m else m
        m_end = n - (kh - 1) * in_w  # every v a window's top left corner reads
        for i in range(_u(m_end)):
            v[i] = h[i]
        for ky in range(1, kh):
            step = _u(ky * in_w)
            for i in range(_u(m_end)):
                a, m = h[i + step], v[i]
                v[i] = a if a > m else m
        for c in range(nc):
            out = (c0 + c) * out_h * out_w
            for oy in range(out_h):
                at = _u(c * plane + oy * sh * in_w)
                to = _u(out + oy * out_w)
                for ox in range(_u(out_w)):
                    y[to + ox] = v[at + ox * _u(sw)]
        if clamp:
            first = _u(c0 * out_h * out_w)
            for i in range(_u(nc * out_h * out_w)):
                y[first + i] = min(max(y[first + i], lo), hi)


@jit
def _avg_planes(ins, x, y, wgt32, table):
    """AVG POOL over the input planes ``x`` into the output planes ``y``:
    each window's sum of its elements clear of the padding, less the zero
    point, rescaled by its count's PARAM record (checked by the caller)."""
    channels, in_h, in_w = ins[P_C], ins[P_IN_H], ins[P_IN_W]
    kh, kw, sh, sw = ins[P_KH], ins[P_KW], ins[P_SH], ins[P_SW]
    top, left, bottom, right = ins[P_PT], ins[P_PL], in_h - ins[P_PB], in_w - ins[P_PR]
    out_h, out_w = (in_h - kh) // sh + 1, (in_w - kw) // sw + 1
    x_zero, out_zero, lo, hi = ins[P_XZ], ins[P_OZ], ins[P_LO], ins[P_HI]
    plane, size = in_h * in_w, out_h * out_w
    for ch in range(channels):  # offsets into x and y, not a view of each plane: no reference counted per channel
        first, to = _u(ch * plane), ch * size
        for oy in range(out_h):
            y0, y1 = max(oy * sh, top), min(oy * sh + kh, bottom)
            for ox in range(out_w):
                x0, x1 = max(ox * sw, left), min(ox * sw + kw, right)
                count = (y1 - y0) * (x1 - x0)
                at = table + AVG_WORDS * (count - 1)
                if x0 == 0 and x1 == in_w:  # whole rows (a global pool's window): one run of the plane
                    total = _run_sum(x, first + _u(y0 * in_w), _u(count))
                else:
                    total = np.int64(0)
                    for yy in range(y0, y1):
                        line = first + _u(yy * in_w)
                        for xx in range(_u(x0), _u(x1)):
                            total += np.int64(x[line + xx])
                v = rescale(total - x_zero * count, np.int64(wgt32[at]), np.int64(wgt32[at + 1])) + out_zero
                y[to + oy * out_w + ox] = min(max(v, lo), hi)


SUM_BLOCK = 1 << 15
"""Codes summed in 32-bit lanes at a time by :func:`_run_sum`: 2^15
16-bit codes (at most 2^15 in magnitude) sum to under 2^31. A window is at
most ``max_pool_kernel`` squared (64 x 64 at most: runtime.hardware), one
block."""


@jit(inline="always")
def _run_sum(x, first, count):
    """The sum of ``x[first:first + count]`` (8- or 16-bit codes) as int64,
    in 32-bit lanes a block at a time (exact: no block's sum reaches 2^31):
    a global average pool's plane, which int64 lanes summed at a quarter of
    the speed."""
    total = np.int64(0)
    start = _u(0)
    while start < count:
        stop = min(count, start + _u(SUM_BLOCK))
        part = np.int32(0)
        for i in range(start, stop):
            part = np.int32(part + np.int32(x[first + i]))
        total += np.int64(part)
        start = stop
    return total


@jit
def eltwise(ins, a8, a16, abase):
    """One ELTWISE (element by element, so exact in-place operands work);
    ADD, SUB, MAX and MIN combine the rescaled operands by ``qscheme.binary``."""
    func, bcast, channels, h, w = ins[E_FUNC], ins[E_BCAST], ins[E_C], ins[E_H], ins[E_W]
    pa, ab, az, am, ash = abase + ins[E_A], ins[E_A_BITS], ins[E_A_ZERO], ins[E_A_MULT], ins[E_A_SHIFT]
    pb, bb, bz, bm, bsh = abase + ins[E_B], ins[E_B_BITS], ins[E_B_ZERO], ins[E_B_MULT], ins[E_B_SHIFT]
    po, ob, oz, lo, hi = abase + ins[E_OUT], ins[E_OUT_BITS], ins[E_OZ], ins[E_LO], ins[E_HI]
    plane = h * w
    if _eltwise_8(func, bcast, channels, plane, a8, pa, ab, az, am, ash, pb, bb, bz, bm, bsh, po, ob, oz, lo, hi):
        return
    for ch in range(channels):
        for s in range(plane):
            i = ch * plane + s
            a = get(a8, a16, pa, ab, i) - az
            if func == EltOp.COPY:
                v = rescale(a, am, ash)
            else:
                j = i if bcast == Bcast.FULL else ch if bcast == Bcast.CHANNEL else s if bcast == Bcast.SPATIAL else 0
                b = get(a8, a16, pb, bb, j) - bz
                if func == EltOp.MUL:
                    v = rescale(a * b, am, ash)
                else:
                    v = binary(func, rescale(a, am, ash), rescale(b, bm, bsh))
            put(a8, a16, po, ob, i, min(max(v + oz, lo), hi))


@jit(inline="always")
def _small_rescale(zero, mult, shift):
    """Whether rescale's small case holds for every 8-bit code minus ``zero``
    (|v| < 2^31, so rescale(v) == rescale_small(v)), with its multiplier and
    shift in their ranges."""
    return -(1 << 20) < zero < (1 << 20) and (1 << 30) <= mult < (1 << 31) and 1 <= shift <= 62


COPY_TABLE_MIN = 1024
"""Codes from which a requantising COPY of 8-bit codes is made a table of
the 256 codes' results and applied by the host's table kernel
(runtime/sim/bytevec.py) where that is a vector permute (VBMI's bytes,
AVX-512's words; where it is AVX2's shuffles, the arithmetic's vector loop
is the faster). The table is :func:`_copy_8` of every code, so each output
is the one the arithmetic gives its code: the same bits. Zen 4, per code:
the arithmetic 0.137 ns, the VBMI table 0.027, the word table 0.064, and
building the table ~80 ns: it pays from ~700 codes (VBMI), ~1100 (words)."""
ALL_CODES = np.arange(-128, 128).astype(np.int8)


@jit(inline="always")
def _copy_8(x, out, az, am, ash, oz, lo, hi):
    """out[i] = clamp(rescale(x[i] - az, am, ash) + oz, lo, hi) for the 8-bit
    codes x, whose rescale is ``rescale_small`` (:func:`_small_rescale`
    holds): in 32-bit lanes where the zero point is 8-bit and the shift
    short or long enough, else in 64."""
    n = x.shape[0]
    oz32, lo32, hi32 = np.int32(oz), np.int32(lo), np.int32(hi)
    if -128 <= az <= 127 and SHORT_SHIFTS[0] <= ash <= SHORT_SHIFTS[1]:  # a Concat's grids, close: 32-bit lanes
        neg_z = np.int32(-az)
        high, low, bias, shift = short_params(am, ash)
        for i in range(n):
            v = rescale_short(add32(np.int32(x[i]), neg_z), high, low, bias, shift)
            out[i] = min(max(add32(v, oz32), lo32), hi32)
    elif -128 <= az <= 127 and ash >= HIGH_SHIFT:  # grids far apart: the product's high word
        neg_z = np.int32(-az)
        m32, bias, shift = high_params(am, ash)
        for i in range(n):
            v = rescale_high(add32(np.int32(x[i]), neg_z), m32, bias, shift)
            out[i] = min(max(add32(v, oz32), lo32), hi32)
    else:
        for i in range(n):
            out[i] = min(max(rescale_small(np.int64(x[i]) - az, am, ash) + oz, lo), hi)


@jit(inline="always")
def _mul_8(bcast, channels, plane, x, a8, pb, out, az, am, ash, bz, oz, lo, hi):
    """ELTWISE MUL of 8-bit codes: out[i] = clamp(rescale((x[i] - az)(b - bz),
    am, ash) + oz, lo, hi), b the element of operand b (at ``pb`` in ``a8``)
    its broadcast gives element i. Per channel, b is one code (CHANNEL: the
    channel's, a squeeze-excitation's gate; SCALAR: the one) or a run read
    with x (FULL: the channel's plane; SPATIAL: the one plane), so each
    inner loop is a contiguous one that LLVM vectorises."""
    per_channel = bcast == Bcast.CHANNEL or bcast == Bcast.SCALAR
    step = plane if bcast == Bcast.FULL else 1 if bcast == Bcast.CHANNEL else 0
    for ch in range(channels):
        first, at = ch * plane, pb + ch * step
        if per_channel:
            b = np.int64(a8[at]) - bz
            for s in range(plane):
                v = rescale_small((np.int64(x[first + s]) - az) * b, am, ash)
                out[first + s] = min(max(v + oz, lo), hi)
        else:
            for s in range(plane):
                v = rescale_small((np.int64(x[first + s]) - az) * (np.int64(a8[at + s]) - bz), am, ash)
                out[first + s] = min(max(v + oz, lo), hi)


@jit(inline="always")
def _eltwise_8(func, bcast, channels, plane, a8, pa, ab, az, am, ash, pb, bb, bz, bm, bsh, po, ob, oz, lo, hi):
    """The common ELTWISE, 8-bit codes in and out: a requantising COPY (a
    Concat's inputs onto its grid), a MUL (a squeeze-excitation's gate per
    channel) or ADD/SUB/MAX/MIN of two full-shape operands. The same
    element-by-element arithmetic as the general loop (rescale's small case:
    the codes are 8-bit), without its per-element branches on widths and
    broadcasts, so LLVM vectorises it. False (nothing done) for the other
    cases."""
    if ab != 8 or ob != 8 or not _small_rescale(az, am, ash):
        return False
    n = channels * plane
    x, out = a8[pa:pa + n], a8[po:po + n]
    if func == EltOp.MUL:  # |(x - az)(y - bz)| < 2^16 with 8-bit zero points: rescale's small case
        if bb != 8 or not (-128 <= az <= 127 and -128 <= bz <= 127):
            return False
        _mul_8(bcast, channels, plane, x, a8, pb, out, az, am, ash, bz, oz, lo, hi)
        return True
    if func == EltOp.COPY:
        if n >= COPY_TABLE_MIN and fast_table():  # a function of the code: its table, then the table kernel
            table = np.empty(256, np.int8)
            _copy_8(ALL_CODES, table, az, am, ash, oz, lo, hi)
            map_codes(n, x, table, out)  # the table as an argument: held while the kernel reads it
        else:
            _copy_8(x, out, az, am, ash, oz, lo, hi)
        return True
    if bb != 8 or bcast != Bcast.FULL or not _small_rescale(bz, bm, bsh):
        return False
    y = a8[pb:pb + n]
    for i in range(n):
        v = binary(func, rescale_small(np.int64(x[i]) - az, am, ash), rescale_small(np.int64(y[i]) - bz, bm, bsh))
        out[i] = min(max(v + oz, lo), hi)
    return True


@jit
def lut(ins, a8, a16, abase, w8, w16, wbase):
    """One LUT: Y[i] = T[X[i] + 128] for int8 codes X; with wide=1,
    Y[i] = qscheme.wide_lookup(T, X[i]) for int16 codes X (513 entries)."""
    src, table, dst, ob = abase + ins[L_IN], wbase + ins[L_PARAM], abase + ins[L_OUT], ins[L_OUT_BITS]
    count = ins[L_COUNT]
    if ins[L_WIDE] == 1:
        x16 = a16[src >> 1:(src >> 1) + count]
        if ob == 8:
            lookup_wide(a8[dst:dst + count], x16, w8[table:table + WIDE_LUT_ENTRIES])
        else:
            lookup_wide(a16[dst >> 1:(dst >> 1) + count], x16, w16[table >> 1:(table >> 1) + WIDE_LUT_ENTRIES])
        return
    x = a8[src:src + count]
    if ob == 8:
        lookup(a8[dst:dst + count], x, w8[table:table + LUT_ENTRIES])
    else:
        lookup(a16[dst >> 1:(dst >> 1) + count], x, w16[table >> 1:(table >> 1) + LUT_ENTRIES])


@jit
def matmul(ins, a8, a16, abase):
    """One MATMUL: each of ``batch`` pairs by ``qscheme.matmul_block`` on
    int64 copies of the operands."""
    m, k, n = ins[M_M], ins[M_K], ins[M_N]
    pa, ab, pb, bb, po, ob = (abase + ins[M_A], ins[M_A_BITS], abase + ins[M_B], ins[M_B_BITS], abase + ins[M_OUT],
                              ins[M_OUT_BITS])
    a, b, y = np.empty(m * k, np.int64), np.empty(k * n, np.int64), np.empty(m * n, np.int64)
    for p in range(ins[M_BATCH]):
        for i in range(m * k):
            a[i] = get(a8, a16, pa, ab, p * m * k + i)
        for i in range(k * n):
            b[i] = get(a8, a16, pb, bb, p * k * n + i)
        matmul_block(a, b, y, m, k, n, ins[M_A_ZERO], ins[M_B_ZERO], ins[M_MULT], ins[M_SHIFT], ins[M_OZ],
                     ins[M_LO], ins[M_HI])
        for i in range(m * n):
            put(a8, a16, po, ob, p * m * n + i, y[i])


@jit
def softmax(ins, a8, a16, abase, w32, wbase):
    """One SOFTMAX: each row by ``qscheme.softmax_row`` with the int32 table at param_addr."""
    cols = ins[S_COLS]
    pi, ib, po, ob = abase + ins[S_IN], ins[S_IN_BITS], abase + ins[S_OUT], ins[S_OUT_BITS]
    start = (wbase + ins[S_PARAM]) >> 2
    table = w32[start:start + SOFTMAX_ENTRIES]
    x, y = np.empty(cols, np.int64), np.empty(cols, np.int64)
    for r in range(ins[S_ROWS]):
        for i in range(cols):
            x[i] = get(a8, a16, pi, ib, r * cols + i)
        softmax_row(x, table, ins[S_IN_MULT], ins[S_IN_SHIFT], ins[S_MULT], ins[S_SHIFT], ins[S_OZ], ins[S_LO],
                    ins[S_HI], y)
        for i in range(cols):
            put(a8, a16, po, ob, r * cols + i, y[i])
