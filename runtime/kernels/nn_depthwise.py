"""Depthwise convolution (one input channel per group, as in MobileNets):
direct Numba kernels.

* ``depthwise_planes`` runs over output planes (NCHW). For 3x3 kernels on 2-D
  planes the interior (where no tap reaches the padding) is one fused pass
  per output row, or per plane when strides are 1 and the output is as wide
  as the input (SAME padding: the interior rows are then one flat run in
  both input and output); border rows go tap by tap and the few edge columns
  point by point. Other kernels go tap by tap, row by row.
* ``depthwise_rows_channels_last`` runs over output rows of NHWC copies:
  each tap is a vector update over the channels. Small planes (short rows)
  and strided windows are faster that way.

Inner loops run over contiguous array views indexed from 0, which lets
Numba prove the indices non-negative and LLVM vectorise them (flat indexing
with computed offsets, or strided views, were several times slower). The
index arithmetic keeps every view inside its plane; the callers validate the
window attributes first.
"""
from __future__ import annotations

import numpy as np

from runtime.jit import jit
from runtime.kernels.nn_window import valid_range


@jit(inline="always")
def _axpy(acc, values, weight):
    for i in range(acc.shape[0]):
        acc[i] += weight * values[i]


@jit(inline="always")
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
def _point(src, in_base, w_flat, tap0, bias, oh, ow, dims, geo):
    """One output value of a 2-D plane, every tap bounds-checked."""
    depth, height, width, out_h, out_w, kd_n, kh_n, kw_n = dims
    sh, sw, ph, pw, dh, dw = geo[4], geo[5], geo[7], geo[8], geo[13], geo[14]
    total = bias
    for kh in range(kh_n):
        iy = oh * sh - ph + kh * dh
        if iy < 0 or iy >= height:
            continue
        for kw in range(kw_n):
            ix = ow * sw - pw + kw * dw
            if 0 <= ix < width:
                total += w_flat[tap0 + kh * kw_n + kw] * src[in_base + iy * width + ix]
    return total


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
def _edges(src, in_base, dst, out_base, w_flat, tap0, bias, oh, x_lo, x_hi, dims, geo):
    """Columns outside [x_lo, x_hi) of output row ``oh`` of a 2-D plane."""
    out_w = dims[4]
    for ow in range(x_lo):
        dst[out_base + oh * out_w + ow] = _point(src, in_base, w_flat, tap0, bias, oh, ow, dims, geo)
    for ow in range(x_hi, out_w):
        dst[out_base + oh * out_w + ow] = _point(src, in_base, w_flat, tap0, bias, oh, ow, dims, geo)


@jit(fastmath=True)
def depthwise_planes(start, stop, x, w, b, out, geo):
    """Output planes [start, stop) (index n*K + k) of a depthwise convolution.

    x: (N, C, D, H, W); w: (K, KD, KH, KW) with K = C * multiplier; b: (K,);
    out: (N, K, OD, OH, OW); geo: the window's loop parameters. 2-D planes
    with a 3x3 kernel take the fused interior passes; the rest goes row by
    row."""
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
    fused = kd_n == 1 and depth == 1 and out_d == 1 and geo[6] == 0 and kh_n == 3 and kw_n == 3
    y_lo, y_hi = valid_range(-ph, sh, height - 2 * dh, out_h)
    x_lo, x_hi = valid_range(-pw, sw, width - 2 * dw, out_w)
    if not fused or y_lo >= y_hi or x_lo >= x_hi:
        y_lo = y_hi = 0
    flat = sh == 1 and sw == 1 and out_w == width
    scratch = np.empty(width, dtype=out.dtype)
    for p in range(start, min(stop, batch * out_c)):
        k = p % out_c
        c = k // mult
        if c >= chans:
            continue
        in_base = ((p // out_c) * chans + c) * depth * height * width
        out_base = p * out_d * out_h * out_w
        bias = b[k]
        tap0 = k * taps
        if y_lo == y_hi:
            for od in range(out_d):
                _rows(src, in_base, dst, out_base, w_flat, tap0, bias, cols, od, 0, out_h, dims, geo)
            continue
        _rows(src, in_base, dst, out_base, w_flat, tap0, bias, cols, 0, 0, y_lo, dims, geo)
        _rows(src, in_base, dst, out_base, w_flat, tap0, bias, cols, 0, y_hi, out_h, dims, geo)
        if flat:
            # Interior rows are one run; columns outside [x_lo, x_hi) wrap
            # into neighbouring rows and are redone point by point.
            j0, j1 = y_lo * out_w + x_lo, (y_hi - 1) * out_w + x_hi
            _fused_3x3(dst[out_base + j0:out_base + j1], src, in_base + j0 - ph * width - pw, dh * width, dw,
                       w_flat, tap0, bias)
            for oh in range(y_lo, y_hi):
                _edges(src, in_base, dst, out_base, w_flat, tap0, bias, oh, x_lo, x_hi, dims, geo)
            continue
        for oh in range(y_lo, y_hi):
            start_out = out_base + oh * out_w
            first = in_base + (oh * sh - ph) * width + x_lo * sw - pw
            if sw == 1:
                _fused_3x3(dst[start_out + x_lo:start_out + x_hi], src, first, dh * width, dw, w_flat, tap0, bias)
            else:
                # Every column at unit stride, then every sw-th: strided
                # loads would not vectorise.
                dense = scratch[:(x_hi - x_lo - 1) * sw + 1]
                _fused_3x3(dense, src, first, dh * width, dw, w_flat, tap0, bias)
                out_row = dst[start_out + x_lo:start_out + x_hi]
                for i in range(x_hi - x_lo):
                    out_row[i] = dense[i * sw]
            _edges(src, in_base, dst, out_base, w_flat, tap0, bias, oh, x_lo, x_hi, dims, geo)


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
