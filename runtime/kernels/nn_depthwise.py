"""Depthwise convolution (one input channel per group, as in MobileNets):
direct Numba kernels.

* ``depthwise_planes`` runs over output planes (NCHW). For 3x3 kernels on 2-D
  planes the interior (where no tap reaches the padding) is one fused pass:
  - strides 1 and an output as wide as the input (SAME padding): one flat
    run over the interior rows in both input and output; on small planes
    the taps that wrap over row ends are masked out in that pass, on large
    ones the edge columns are redone afterwards, over contiguous copies of
    the input columns they read;
  - strides 2 and an output as wide as half the input: the plane is cut
    into its four stride-2 phases, and the interior is again one flat run;
  - otherwise one pass per output row.
  Border rows go by kernel row (or tap by tap), the few remaining points one
  by one. Other kernels go tap by tap, row by row.
* the whole-plane 3x3 kernels (padded planes, SAME at stride 1, the four
  stride-2 phases) are in :mod:`runtime.kernels.nn_depthwise_3x3`;
* ``depthwise_rows_channels_last`` runs over output rows of NHWC copies:
  each tap is a vector update over the channels. Very small planes are
  faster that way, the transposes included.

Inner loops run over contiguous array views indexed from 0, which lets
Numba prove the indices non-negative and LLVM vectorise them (flat indexing
with computed offsets, or strided views, were several times slower). The
index arithmetic keeps every view inside its plane; the callers validate the
window attributes first.
"""
from __future__ import annotations

import numba
import numpy as np

from runtime.jit import jit
from runtime.kernels.conv_epilogue import finish_row, gate_run
from runtime.kernels.nn_window import valid_range
from runtime.parallel import drives
from runtime.pool_protocol import team_enter, team_leave, team_next
from runtime.unlinked import call_unlinked

_u = numba.uint64

MASKED_PLANE = 1024
"""Flat 3x3 interiors up to this many outputs mask their wrapped taps;
larger ones redo their edge columns instead (cheaper per output there)."""


PADDED_PLANE = 1 << 15
"""Stride-1 planes (other than the fused 3x3 ones) up to this many padded
elements are convolved whole: copied into a zero-bordered plane once, then
one long vector update per tap (:func:`_padded_plane`)."""


@jit(inline="always")
def _padded_plane(src, in_base, dst, out_base, w_flat, tap0, bias, padded, acc, dims, ph, pw, wp, dh, dw):
    """One stride-1 plane, exactly as :func:`_rows` sums it (bias, then each
    tap in order; a tap over the zero border adds nothing): the plane is
    copied into ``padded`` (its border stays zero), and each tap is one
    update of the run of outputs laid out at the padded plane's width
    (``acc``; the columns past ``out_w`` of each row are never copied out)."""
    height, width, out_h, out_w, kh_n, kw_n = dims[1], dims[2], dims[3], dims[4], dims[6], dims[7]
    for iy in range(height):
        row = padded[(iy + ph) * wp + pw:(iy + ph) * wp + pw + width]
        source = src[in_base + iy * width:in_base + (iy + 1) * width]
        for i in range(width):
            row[i] = source[i]
    run = acc.shape[0]
    acc[:] = bias
    for kh in range(kh_n):
        for kw in range(kw_n):
            at = kh * dh * wp + kw * dw
            _axpy(acc, padded[at:at + run], w_flat[tap0 + kh * kw_n + kw])
    for oh in range(out_h):
        out_row = dst[out_base + oh * out_w:out_base + (oh + 1) * out_w]
        part = acc[oh * wp:oh * wp + out_w]
        for i in range(out_w):
            out_row[i] = part[i]


@jit(inline="always")
def _axpy(acc, values, weight):
    for i in range(acc.shape[0]):
        acc[i] += weight * values[i]


@jit(fastmath=True)
def _rows(src, in_base, dst, out_base, w_flat, tap0, bias, cols, od, oh_lo, oh_hi, dims, geo):
    """Output rows [oh_lo, oh_hi) of depth slice ``od`` of one plane, exactly:
    bias, then one pass per kernel tap over its valid columns."""
    depth, height, width, out_h, out_w, kd_n, kh_n, kw_n = dims
    sd, sh, sw, pd, ph, pw, dd, dh, dw = geo[3], geo[4], geo[5], geo[6], geo[7], geo[8], geo[12], geo[13], geo[14]
    for oh in range(oh_lo, oh_hi):
        start = out_base + (od * out_h + oh) * out_w
        out_row = dst[start:start + out_w]
        out_row[:] = bias
        for kd in range(kd_n):
            iz = od * sd - pd + kd * dd
            if iz < 0 or iz >= depth:
                continue
            for kh in range(kh_n):
                iy = oh * sh - ph + kh * dh
                if iy < 0 or iy >= height:
                    continue
                row = in_base + (iz * height + iy) * width - pw
                for kw in range(kw_n):
                    lo, hi = cols[kw, 0], cols[kw, 1]
                    first = row + kw * dw + lo * sw
                    weight = w_flat[tap0 + (kd * kh_n + kh) * kw_n + kw]
                    if lo >= hi:
                        continue
                    if sw == 1:
                        _axpy(out_row[lo:hi], src[first:first + hi - lo], weight)
                    else:
                        _axpy(out_row[lo:hi], src[first:first + (hi - lo - 1) * sw + 1:sw], weight)


@jit(inline="always")
def _sum_3x3(run, bias, w_flat, tap0, a0, a1, a2, b0, b1, b2, c0, c1, c2):
    w0, w1, w2, w3, w4 = w_flat[tap0], w_flat[tap0 + 1], w_flat[tap0 + 2], w_flat[tap0 + 3], w_flat[tap0 + 4]
    w5, w6, w7, w8 = w_flat[tap0 + 5], w_flat[tap0 + 6], w_flat[tap0 + 7], w_flat[tap0 + 8]
    for j in range(run.shape[0]):
        run[j] = (bias + w0 * a0[j] + w1 * a1[j] + w2 * a2[j] + w3 * b0[j] + w4 * b1[j] + w5 * b2[j]
                  + w6 * c0[j] + w7 * c1[j] + w8 * c2[j])


@jit(inline="always")
def _fused_3x3(run, src, first, row_step, col_step, w_flat, tap0, bias):
    """run[j] = bias + sum of the 9 taps of a 3x3 kernel, in one pass:
    tap (kh, kw) of output j reads src[first + kh*row_step + kw*col_step + j]."""
    n = run.shape[0]
    s0, s1, s2 = first, first + row_step, first + 2 * row_step
    e0, e1 = col_step, 2 * col_step
    _sum_3x3(run, bias, w_flat, tap0, src[s0:s0 + n], src[s0 + e0:s0 + e0 + n], src[s0 + e1:s0 + e1 + n],
             src[s1:s1 + n], src[s1 + e0:s1 + e0 + n], src[s1 + e1:s1 + e1 + n],
             src[s2:s2 + n], src[s2 + e0:s2 + e0 + n], src[s2 + e1:s2 + e1 + n])


@jit(inline="always")
def _masked_3x3(run, src, first, row_step, col_step, w_flat, tap0, bias, left, right):
    """_fused_3x3 over a run that wraps over row ends: the taps of kernel
    column 0 (2) count only where left[j] (right[j]) is set, so columns whose
    window crosses the left (right) edge come out exact in the same pass
    (the wrapped taps are left out by a select, never multiplied by zero, so
    an Inf or NaN across the edge stays out of the sum)."""
    n = run.shape[0]
    s0, s1, s2 = first, first + row_step, first + 2 * row_step
    e1, e2 = col_step, 2 * col_step
    a0, a1, a2 = src[s0:s0 + n], src[s0 + e1:s0 + e1 + n], src[s0 + e2:s0 + e2 + n]
    b0, b1, b2 = src[s1:s1 + n], src[s1 + e1:s1 + e1 + n], src[s1 + e2:s1 + e2 + n]
    c0, c1, c2 = src[s2:s2 + n], src[s2 + e1:s2 + e1 + n], src[s2 + e2:s2 + e2 + n]
    w0, w1, w2, w3, w4 = w_flat[tap0], w_flat[tap0 + 1], w_flat[tap0 + 2], w_flat[tap0 + 3], w_flat[tap0 + 4]
    w5, w6, w7, w8 = w_flat[tap0 + 5], w_flat[tap0 + 6], w_flat[tap0 + 7], w_flat[tap0 + 8]
    zero = run.dtype.type(0)
    for j in range(n):
        first_col = w0 * a0[j] + w3 * b0[j] + w6 * c0[j]
        last_col = w2 * a2[j] + w5 * b2[j] + w8 * c2[j]
        run[j] = (bias + w1 * a1[j] + w4 * b1[j] + w7 * c1[j] + (first_col if left[j] else zero)
                  + (last_col if right[j] else zero))


@jit(fastmath=True)
def _border_row(src, in_base, dst, out_base, w_flat, tap0, bias, oh, x_lo, x_hi, x_taps, dims, geo):
    """Output row ``oh`` of a 2-D plane whose windows cross the top or
    bottom edge, unit column stride: columns [x_lo, x_hi) with one fused
    pass per kernel row inside the input, the rest point by point."""
    height, width, out_w = dims[1], dims[2], dims[4]
    ph, pw, dh, dw = geo[7], geo[8], geo[13], geo[14]
    y0 = oh * geo[4] - ph
    kh_lo, kh_hi = valid_range(y0, dh, height, dims[6])
    run = dst[out_base + oh * out_w + x_lo:out_base + oh * out_w + x_hi]
    for j in range(run.shape[0]):
        run[j] = bias
    for kh in range(kh_lo, kh_hi):
        first = in_base + (y0 + kh * dh) * width + x_lo - pw
        w0, w1, w2 = w_flat[tap0 + kh * 3], w_flat[tap0 + kh * 3 + 1], w_flat[tap0 + kh * 3 + 2]
        a, b, c = src[first:], src[first + dw:], src[first + 2 * dw:]
        for j in range(run.shape[0]):
            run[j] += w0 * a[j] + w1 * b[j] + w2 * c[j]
    for ow in range(x_lo):
        dst[out_base + oh * out_w + ow] = _border_point(src, in_base, w_flat, tap0, bias, y0, kh_lo, kh_hi, ow,
                                                        x_taps, dims, geo)
    for ow in range(x_hi, out_w):
        dst[out_base + oh * out_w + ow] = _border_point(src, in_base, w_flat, tap0, bias, y0, kh_lo, kh_hi, ow,
                                                        x_taps, dims, geo)


@jit(fastmath=True)
def _border_point(src, in_base, w_flat, tap0, bias, y0, kh_lo, kh_hi, ow, x_taps, dims, geo):
    """One output of a border row (unit column stride) over its taps inside
    the input: kernel rows [kh_lo, kh_hi), columns x_taps[ow]."""
    width, kw_n, pw, dh, dw = dims[2], dims[7], geo[8], geo[13], geo[14]
    total = bias
    for kh in range(kh_lo, kh_hi):
        row = in_base + (y0 + kh * dh) * width + ow - pw
        for kw in range(x_taps[ow, 0], x_taps[ow, 1]):
            total += w_flat[tap0 + kh * kw_n + kw] * src[row + kw * dw]
    return total


@jit(fastmath=True)
def _split_plane(plane, phases):
    """phases[r % 2, c % 2, r // 2, c // 2] = plane[r, c]: a 2-D plane cut
    into its four stride-2 phases, so that the taps of a stride-2 window
    read unit-stride runs (the loads of each row pair up, which LLVM
    vectorises)."""
    height, width = plane.shape
    half = width // 2
    for r in range(height):
        row = plane[r]
        even, odd = phases[r % 2, 0, r // 2], phases[r % 2, 1, r // 2]
        for q in range(half):
            even[q], odd[q] = row[2 * q], row[2 * q + 1]
        if width % 2:
            even[half] = row[width - 1]


@jit(inline="always")
def _strided_3x3(run, phases, first_row, first_col, w_flat, tap0, bias):
    """run[j] = bias + the 9 taps of a 3x3 window with strides 2 over the
    plane cut by _split_plane, output j's tap (kh, kw) reading plane element
    (first_row + kh, first_col + kw + 2j) (rows of run follow each other in
    the phases when the output is as wide as a phase)."""
    cols = phases.shape[3]
    flat = phases.reshape(4, -1)
    s = np.empty(9, dtype=np.int64)
    for kh in range(3):
        for kw in range(3):
            r, c = first_row + kh, first_col + kw
            s[kh * 3 + kw] = (r % 2 * 2 + c % 2) * flat.shape[1] + (r // 2) * cols + c // 2
    src = phases.reshape(-1)
    _sum_3x3(run, bias, w_flat, tap0, src[s[0]:], src[s[1]:], src[s[2]:], src[s[3]:], src[s[4]:], src[s[5]:],
             src[s[6]:], src[s[7]:], src[s[8]:])


@jit(inline="always")
def _edge_column(src, in_base, dst, out_base, w_flat, tap0, bias, y_lo, y_hi, ow, x_taps, bufs, dims, geo):
    """Output column ``ow`` over rows [y_lo, y_hi) of a 2-D plane, whose
    windows lie inside the input vertically, over the column's taps inside
    the input (x_taps[ow] = [first, stop)). The input columns it reads are
    gathered into contiguous runs first, so that the sums over the rows
    vectorise; bufs: (kw_n + 1, max(height, out_h)) scratch."""
    height, width, out_w, kh_n, kw_n = dims[1], dims[2], dims[4], dims[6], dims[7]
    sh, sw, ph, pw, dh, dw = geo[4], geo[5], geo[7], geo[8], geo[13], geo[14]
    first, stop = x_taps[ow, 0], x_taps[ow, 1]
    for kw in range(first, stop):
        column = bufs[kw]
        ix = in_base + ow * sw - pw + kw * dw
        for r in range(height):
            column[r] = src[ix + r * width]
    total = bufs[kw_n, y_lo:y_hi]
    for i in range(total.shape[0]):
        total[i] = bias
    for kh in range(kh_n):
        for kw in range(first, stop):
            weight = w_flat[tap0 + kh * kw_n + kw]
            rows = bufs[kw, y_lo * sh - ph + kh * dh:]
            if sh == 1:
                for i in range(total.shape[0]):
                    total[i] += weight * rows[i]
            else:
                for i in range(total.shape[0]):
                    total[i] += weight * rows[i * sh]
    for i in range(total.shape[0]):
        dst[out_base + (y_lo + i) * out_w + ow] = total[i]


@jit(fastmath=True)
def _edges(src, in_base, dst, out_base, w_flat, tap0, bias, y_lo, y_hi, x_lo, x_hi, x_taps, bufs, dims, geo):
    """Columns outside [x_lo, x_hi) of output rows [y_lo, y_hi)."""
    for ow in range(x_lo):
        _edge_column(src, in_base, dst, out_base, w_flat, tap0, bias, y_lo, y_hi, ow, x_taps, bufs, dims, geo)
    for ow in range(x_hi, dims[4]):
        _edge_column(src, in_base, dst, out_base, w_flat, tap0, bias, y_lo, y_hi, ow, x_taps, bufs, dims, geo)


@jit(fastmath=True)
def depthwise_planes(start, stop, x, w, b, out, geo):
    """Output planes [start, stop) (index n*K + k) of a depthwise convolution.

    x: (N, C, D, H, W); w: (K, KD, KH, KW) with K = C * multiplier; b: (K,);
    out: (N, K, OD, OH, OW); geo: the window's loop parameters. 2-D planes
    with a 3x3 kernel take the fused interior passes, other stride-1 2-D
    planes up to PADDED_PLANE padded elements go whole; the rest goes row
    by row."""
    sh, sw, ph, pw, dh, dw = geo[4], geo[5], geo[7], geo[8], geo[13], geo[14]
    batch, chans, depth, height, width = x.shape
    _, out_c, out_d, out_h, out_w = out.shape
    _, kd_n, kh_n, kw_n = w.shape
    if w.shape[0] != out_c or b.shape[0] != out_c:
        return
    dims = (depth, height, width, out_h, out_w, kd_n, kh_n, kw_n)
    mult = max(out_c // max(chans, 1), 1)
    src = x.reshape(-1)
    dst = out.reshape(-1)
    w_flat = w.reshape(-1)
    taps = kd_n * kh_n * kw_n
    cols = np.empty((kw_n, 2), dtype=np.int64)
    for kw in range(kw_n):
        cols[kw, 0], cols[kw, 1] = valid_range(kw * dw - pw, sw, width, out_w)
    x_taps = np.empty((out_w, 2), dtype=np.int64)
    for ow in range(out_w):
        x_taps[ow, 0], x_taps[ow, 1] = valid_range(ow * sw - pw, dw, width, kw_n)
    fused = kd_n == 1 and depth == 1 and out_d == 1 and geo[6] == 0 and kh_n == 3 and kw_n == 3
    hp, wp = height + ph + geo[10], width + pw + geo[11]
    whole = (not fused and kd_n == 1 and depth == 1 and out_d == 1 and geo[6] == 0 and geo[9] == 0 and sh == 1
             and sw == 1 and min(ph, pw, geo[10], geo[11]) >= 0 and hp * wp <= PADDED_PLANE
             and out_h == hp - dh * (kh_n - 1) and out_w == wp - dw * (kw_n - 1) and out_h > 0 and out_w > 0)
    padded = np.zeros(hp * wp if whole else 0, dtype=x.dtype)
    acc = np.empty((out_h - 1) * wp + out_w if whole else 0, dtype=out.dtype)
    y_lo, y_hi = valid_range(-ph, sh, height - 2 * dh, out_h)
    x_lo, x_hi = valid_range(-pw, sw, width - 2 * dw, out_w)
    if not fused or y_lo >= y_hi or x_lo >= x_hi:
        y_lo = y_hi = 0
    flat = sh == 1 and sw == 1 and out_w == width
    scratch = np.empty(width, dtype=out.dtype)
    masked = flat and pw == dw and out_h * out_w <= MASKED_PLANE
    inside = np.empty((2, out_h * out_w if masked else 0), dtype=np.bool_)
    for j in range(inside.shape[1]):
        inside[0, j], inside[1, j] = j % out_w >= dw, j % out_w < out_w - dw
    halves = sh == 2 and sw == 2 and dh == 1 and dw == 1 and out_w == (width + 1) // 2
    phases = np.empty((2, 2, (height + 1) // 2, (width + 1) // 2) if halves else (0, 0, 0, 0), dtype=x.dtype)
    bufs = np.empty((kw_n + 1, max(height, out_h)), dtype=out.dtype)
    for p in range(start, min(stop, batch * out_c)):
        k = p % out_c
        c = k // mult
        if c >= chans:
            continue
        in_base = ((p // out_c) * chans + c) * depth * height * width
        out_base = p * out_d * out_h * out_w
        bias = b[k]
        tap0 = k * taps
        if whole:
            _padded_plane(src, in_base, dst, out_base, w_flat, tap0, bias, padded, acc, dims, ph, pw, wp, dh, dw)
            continue
        if y_lo == y_hi:
            for od in range(out_d):
                call_unlinked(_rows, (src, in_base, dst, out_base, w_flat, tap0, bias, cols, od, 0, out_h, dims, geo))
            continue
        if flat:
            for oh in range(y_lo):
                _border_row(src, in_base, dst, out_base, w_flat, tap0, bias, oh, x_lo, x_hi, x_taps, dims, geo)
            for oh in range(y_hi, out_h):
                _border_row(src, in_base, dst, out_base, w_flat, tap0, bias, oh, x_lo, x_hi, x_taps, dims, geo)
        else:
            call_unlinked(_rows, (src, in_base, dst, out_base, w_flat, tap0, bias, cols, 0, 0, y_lo, dims, geo))
            call_unlinked(_rows, (src, in_base, dst, out_base, w_flat, tap0, bias, cols, 0, y_hi, out_h, dims, geo))
        if flat and masked:
            # Interior rows are one run from column x_lo of the first to
            # x_hi of the last; the taps that wrap over row ends are masked.
            # The first row's columns before x_lo and the last row's after
            # x_hi remain.
            j0, j1 = y_lo * out_w + x_lo, (y_hi - 1) * out_w + x_hi
            _masked_3x3(dst[out_base + j0:out_base + j1], src, in_base + j0 - ph * width - pw, dh * width, dw,
                        w_flat, tap0, bias, inside[0, j0:j1], inside[1, j0:j1])
            _edges(src, in_base, dst, out_base, w_flat, tap0, bias, y_lo, y_lo + 1, x_lo, out_w, x_taps, bufs, dims,
                   geo)
            _edges(src, in_base, dst, out_base, w_flat, tap0, bias, y_hi - 1, y_hi, np.int64(0), x_hi, x_taps, bufs,
                   dims, geo)  # np.int64: a literal 0 would compile _edges once more
            continue
        if halves:
            # Stride 2, output as wide as a phase: the interior rows are one
            # run over the phases; edge columns as in the flat case.
            _split_plane(x[p // out_c, c, 0], phases)
            j0, j1 = y_lo * out_w + x_lo, (y_hi - 1) * out_w + x_hi
            _strided_3x3(dst[out_base + j0:out_base + j1], phases, 2 * y_lo - ph, 2 * x_lo - pw, w_flat, tap0, bias)
        else:
            # Flat: the interior rows are one run (columns outside [x_lo,
            # x_hi) wrap into neighbouring rows and are redone point by
            # point). Otherwise row by row, a strided one at every column
            # at unit stride, then every sw-th (strided loads would not
            # vectorise). One call site: each inlined copy of the 3x3 pass
            # costs seconds of compilation.
            for oh in range(y_lo, y_lo + 1 if flat else y_hi):
                start_out = out_base + oh * out_w
                if flat:
                    j0 = y_lo * out_w + x_lo
                    first, run = in_base + j0 - ph * width - pw, dst[out_base + j0:out_base + (y_hi - 1) * out_w + x_hi]
                else:
                    first = in_base + (oh * sh - ph) * width + x_lo * sw - pw
                    run = dst[start_out + x_lo:start_out + x_hi] if sw == 1 else scratch[:(x_hi - x_lo - 1) * sw + 1]
                _fused_3x3(run, src, first, dh * width, dw, w_flat, tap0, bias)
                if not flat and sw != 1:
                    out_row = dst[start_out + x_lo:start_out + x_hi]
                    for i in range(x_hi - x_lo):
                        out_row[i] = run[i * sw]
        _edges(src, in_base, dst, out_base, w_flat, tap0, bias, y_lo, y_hi, x_lo, x_hi, x_taps, bufs, dims, geo)


@jit(fastmath=True)
def depthwise_rows_channels_last(start, stop, x, w, b, out, geo):
    """Output rows [start, stop) (index (n*OD + od)*OH + oh) of a depthwise
    convolution with one output channel per input channel, channels last:
    x: (N, D, H, W, C); w: (KD, KH, KW, C); b: (C,); out: (N, OD, OH, OW, C).
    Every tap of every pixel is one vector update over the channels, which
    suits small planes with many channels (per-plane rows there are too short
    to vectorise) and strided windows."""
    sd, sh, sw, pd, ph, pw = geo[3], geo[4], geo[5], geo[6], geo[7], geo[8]
    dd, dh, dw = geo[12], geo[13], geo[14]
    batch, depth, height, width, chans = x.shape
    _, out_d, out_h, out_w, out_c = out.shape
    kd_n, kh_n, kw_n, w_c = w.shape
    count = min(chans, out_c, w_c, b.shape[0])
    for r in range(start, min(stop, batch * out_d * out_h)):
        oh = r % out_h
        od = (r // out_h) % out_d
        n = r // (out_h * out_d)
        for ow in range(out_w):
            acc = out[n, od, oh, ow, :count]
            acc[:] = b[:count]
            for kd in range(kd_n):
                iz = od * sd - pd + kd * dd
                if iz < 0 or iz >= depth:
                    continue
                for kh in range(kh_n):
                    iy = oh * sh - ph + kh * dh
                    if iy < 0 or iy >= height:
                        continue
                    for kw in range(kw_n):
                        ix = ow * sw - pw + kw * dw
                        if 0 <= ix < width:
                            _axpy_channels(acc, x[n, iz, iy, ix, :count], w[kd, kh, kw, :count])


@jit(inline="always")
def _axpy_channels(acc, values, weights):
    for c in range(acc.shape[0]):
        acc[c] += weights[c] * values[c]


@jit
def depthwise_planes_finished(start, stop, x, w, b, out, res, clamp, flags, geo):
    """``depthwise_planes``, then the epilogue on the same planes while they
    are still in cache: + ``res`` (flags[0]; of out's shape), clamped to
    [clamp[0], clamp[1]] and gated (flags[1]). One pass over memory and one
    parallel call fewer than a separate epilogue."""
    call_unlinked(depthwise_planes, (start, stop, x, w, b, out, geo))  # its tree is not compiled again here
    count = out.shape[0] * out.shape[1]
    if res.shape != out.shape or not (flags[0] or flags[1]):
        return
    planes = out.reshape(count, -1)
    extra = res.reshape(count, -1)
    flat, size = out.reshape(-1), planes.shape[1]
    for p in range(start, min(stop, count)):
        finish_row(planes[p], planes[p], extra[p], clamp[0], clamp[1], flags[0], flags[1])
        if flags[1]:
            gate_run(flat, p * size, size, clamp)


# ---------------------------------------------------------------- team drivers (runtime.parallel)
@drives(depthwise_planes_finished)
@jit
def _depthwise_planes_finished_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(depthwise_planes_finished, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)


@drives(depthwise_rows_channels_last)
@jit
def _depthwise_rows_channels_last_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(depthwise_rows_channels_last, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)
