"""The Numba loops of the pooling kernels (runtime.kernels.pool, which checks
the attributes and plans the calls) and their team drivers: windowed max,
max with indices and average/sum loops over (planes, D, H, W) views, the
separable float32 row loop of a 2-D MaxPool, and the per-plane means of a
global average pool. They index flat views and trust the geometry they are
given."""
from __future__ import annotations

import numba
import numpy as np

from runtime.jit import jit
from runtime.kernels.nn_window import valid_range
from runtime.kernels.ordered import sum_f32_f64, sum_f64
from runtime.parallel import drives
from runtime.pool_protocol import team_enter, team_leave, team_next
from runtime.unlinked import call_unlinked

AVG_EXCLUDE_PAD, AVG_INCLUDE_PAD, SUM = 0, 1, 2
"""Modes of the averaging loop: mean of the in-bounds values, mean counting
the padding (ONNX count_include_pad), plain sum (for LpPool)."""


# ---------------------------------------------------------------- Numba loops
# Flat views with unsigned indices (``_u``), as in runtime.kernels.nn_conv:
# every index is non-negative by construction and Numba then skips its
# negative-index wraparound test.
_u = numba.uint64


@jit(inline="always")
def _tap_table(out_n, stride, pad, dilation, size, k_n):
    """Per output position o: the [lo, hi) taps of its window that fall in
    [0, size). Built once per call: integer divisions are too slow to do per
    output element."""
    table = np.empty((out_n, 2), dtype=np.int64)
    for o in range(out_n):
        table[o, 0], table[o, 1] = valid_range(o * stride - pad, dilation, size, k_n)
    return table


@jit
def _max_pool_planes(start, stop, x, y, geo):
    """Planes [start, stop) of a max pool. x: (P, D, H, W); y: (P, OD, OH, OW).
    NaNs are skipped: a window of NaNs only gives -inf."""
    kd_n, kh_n, kw_n, sd, sh, sw, pd, ph, pw = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6], geo[7], geo[8]
    dd, dh, dw = geo[12], geo[13], geo[14]
    planes, depth, height, width = x.shape
    _, out_d, out_h, out_w = y.shape
    plane_size = depth * height * width
    src = x.reshape(-1)
    dst = y.reshape(-1)
    z_taps = _tap_table(out_d, sd, pd, dd, depth, kd_n)
    y_taps = _tap_table(out_h, sh, ph, dh, height, kh_n)
    x_taps = _tap_table(out_w, sw, pw, dw, width, kw_n)
    for p in range(start, min(stop, planes)):
        plane = p * plane_size
        for od in range(out_d):
            z0 = od * sd - pd
            for oh in range(out_h):
                y0 = oh * sh - ph
                out_row = ((p * out_d + od) * out_h + oh) * out_w
                for ow in range(out_w):
                    x0 = ow * sw - pw
                    best = -np.inf
                    for kz in range(z_taps[od, 0], z_taps[od, 1]):
                        for ky in range(y_taps[oh, 0], y_taps[oh, 1]):
                            row = plane + ((z0 + kz * dd) * height + y0 + ky * dh) * width + x0
                            for kx in range(x_taps[ow, 0], x_taps[ow, 1]):
                                value = src[_u(row + kx * dw)]
                                if value > best:
                                    best = value
                    dst[_u(out_row + ow)] = best


@jit(inline="always")
def rows_max(src, at, width, count, dst, to, ninf):
    """dst[to + i] = max(ninf, src[at + i], src[at + width + i], ...) over
    the first ``count`` (0 to 3) of those rows, i < width, NaNs skipped: one
    pass, each max a select that LLVM makes one vector max (x86 maxps is
    ``a > b ? a : b``). Flat unsigned offsets into one array: the same pass
    over three row views measured half as fast. ``ninf`` must have the rows'
    dtype: a literal -inf is float64 and widens every compare to float64
    (the row pass before this one ran as vmaxpd on half-width vectors)."""
    if count == 0:
        for i in range(width):
            dst[_u(to + i)] = ninf
    elif count == 1:
        for i in range(width):
            x0 = src[_u(at + i)]
            dst[_u(to + i)] = x0 if x0 > ninf else ninf
    elif count == 2:
        for i in range(width):
            x0, x1 = src[_u(at + i)], src[_u(at + width + i)]
            m = x0 if x0 > ninf else ninf
            dst[_u(to + i)] = x1 if x1 > m else m
    else:
        for i in range(width):
            x0, x1, x2 = src[_u(at + i)], src[_u(at + width + i)], src[_u(at + 2 * width + i)]
            m = x0 if x0 > ninf else ninf
            m = x1 if x1 > m else m
            dst[_u(to + i)] = x2 if x2 > m else m


@jit(inline="always")
def rows_max_into(src, at, width, count, dst, to):
    """dst[to + i] = max(dst[to + i], src[at + i]) (``count`` 1), or of the
    two rows from ``at`` (2), NaNs skipped."""
    if count == 1:
        for i in range(width):
            x0, m = src[_u(at + i)], dst[_u(to + i)]
            dst[_u(to + i)] = x0 if x0 > m else m
    else:
        for i in range(width):
            x0, x1, m = src[_u(at + i)], src[_u(at + width + i)], dst[_u(to + i)]
            m = x0 if x0 > m else m
            dst[_u(to + i)] = x1 if x1 > m else m


@jit(inline="always")
def windows_max(dst, to, count, buf, step, kw):
    """dst[to + i] = max(buf[i * step + kx] for kx < kw), i < count, taps in
    order; buf holds no NaN. Called with a literal ``step`` (1, 2) so that
    LLVM vectorises the loads."""
    if kw == 1:
        for i in range(count):
            dst[_u(to + i)] = buf[_u(i * step)]
    elif kw == 2:
        for i in range(count):
            a, b = buf[_u(i * step)], buf[_u(i * step + 1)]
            dst[_u(to + i)] = b if b > a else a
    else:
        for i in range(count):
            a, b, c = buf[_u(i * step)], buf[_u(i * step + 1)], buf[_u(i * step + 2)]
            m = b if b > a else a
            dst[_u(to + i)] = c if c > m else m
        for kx in range(3, kw):
            for i in range(count):
                a, m = buf[_u(i * step + kx)], dst[_u(to + i)]
                dst[_u(to + i)] = a if a > m else m


@jit
def max_pool_2d_rows(start, stop, x, y, kh, kw, sh, sw, ph, pw, buf_len):
    """Output rows [start, stop) of all planes (row r: plane r // OH, row
    r % OH) of a 2-D max pool with unit dilations, separably: the max over
    the window's input rows that exist (one contiguous pass over up to three
    input rows at a time) into a row buffer of ``buf_len`` elements whose
    padding, left and right, stays -inf; then the max over each window's kw
    taps of that buffer (unit and stride-2 steps compiled apart).
    x: (P, H, W); y: (P, OH, OW). NaNs are skipped as in _max_pool_planes:
    the row pass turns them into -inf, and a window of nothing but NaN and
    padding gives -inf. Taps are compared in order (rows, then columns), a
    later one winning only when strictly greater. The caller makes buf_len
    >= pw + W and >= (OW - 1) * sw + kw, so every index is in bounds (with a
    shorter buffer the loop writes nothing)."""
    planes, height, width = x.shape
    _, out_h, out_w = y.shape
    neg = np.full(1, -np.inf, dtype=x.dtype)
    ninf = neg[0]
    buf = np.full(buf_len, -np.inf, dtype=x.dtype)
    src = x.reshape(-1)
    dst = y.reshape(-1)
    stop = min(stop, planes * out_h, y.shape[0] * out_h)
    if start >= stop or buf_len < max(pw + width, (out_w - 1) * sw + kw):
        return
    p = start // out_h
    oh = start - p * out_h
    for row in range(start, stop):
        y0 = oh * sh - ph
        r = max(y0, 0)
        r_end = min(y0 + kh, height)
        count = min(max(r_end - r, 0), 3)
        rows_max(src, (p * height + r) * width, width, count, buf, pw, ninf)
        r += count
        while r < r_end:
            count = min(r_end - r, 2)
            rows_max_into(src, (p * height + r) * width, width, count, buf, pw)
            r += count
        if sw == 1:
            windows_max(dst, row * out_w, out_w, buf, 1, kw)
        elif sw == 2:
            windows_max(dst, row * out_w, out_w, buf, 2, kw)
        else:
            windows_max(dst, row * out_w, out_w, buf, sw, kw)
        oh += 1
        if oh == out_h:
            oh = 0
            p += 1


@jit
def _max_pool_index_planes(start, stop, x, y, idx, geo, col_major):
    """_max_pool_planes that also writes idx (like y): the flat input index
    of each max (row- or column-major inside a plane), the window's first tap
    when nothing beats -inf, -1 for an empty window."""
    kd_n, kh_n, kw_n, sd, sh, sw, pd, ph, pw = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6], geo[7], geo[8]
    dd, dh, dw = geo[12], geo[13], geo[14]
    planes, depth, height, width = x.shape
    _, out_d, out_h, out_w = y.shape
    plane_size = depth * height * width
    src = x.reshape(-1)
    dst = y.reshape(-1)
    arg_out = idx.reshape(-1)
    z_taps = _tap_table(out_d, sd, pd, dd, depth, kd_n)
    y_taps = _tap_table(out_h, sh, ph, dh, height, kh_n)
    x_taps = _tap_table(out_w, sw, pw, dw, width, kw_n)
    for p in range(start, min(stop, planes, idx.shape[0])):
        plane = p * plane_size
        for od in range(out_d):
            z0 = od * sd - pd
            zlo, zhi = z_taps[od, 0], z_taps[od, 1]
            for oh in range(out_h):
                y0 = oh * sh - ph
                ylo, yhi = y_taps[oh, 0], y_taps[oh, 1]
                out_row = ((p * out_d + od) * out_h + oh) * out_w
                for ow in range(out_w):
                    x0 = ow * sw - pw
                    xlo, xhi = x_taps[ow, 0], x_taps[ow, 1]
                    best = -np.inf
                    arg = -1
                    if zlo < zhi and ylo < yhi and xlo < xhi:
                        arg = ((z0 + zlo * dd) * height + y0 + ylo * dh) * width + x0 + xlo * dw
                    for kz in range(zlo, zhi):
                        for ky in range(ylo, yhi):
                            row = ((z0 + kz * dd) * height + y0 + ky * dh) * width + x0
                            for kx in range(xlo, xhi):
                                value = src[_u(plane + row + kx * dw)]
                                if value > best:
                                    best = value
                                    arg = row + kx * dw
                    dst[_u(out_row + ow)] = best
                    if arg >= 0 and col_major:
                        iz, rest = arg // (height * width), arg % (height * width)
                        arg = iz + (rest // width + (rest % width) * height) * depth
                    arg_out[_u(out_row + ow)] = plane + arg if arg >= 0 else -1


@jit
def avg_pool_planes(start, stop, x, y, geo, mode):
    """Planes [start, stop) of an average (or sum) pool; x: (P, D, H, W),
    y: (P, OD, OH, OW); ``mode`` is one of the module's mode constants.
    Counting the padding counts the window taps inside the padded input."""
    kd_n, kh_n, kw_n, sd, sh, sw, pd, ph, pw = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6], geo[7], geo[8]
    ped, peh, pew, dd, dh, dw = geo[9], geo[10], geo[11], geo[12], geo[13], geo[14]
    planes, depth, height, width = x.shape
    _, out_d, out_h, out_w = y.shape
    plane_size = depth * height * width
    src = x.reshape(-1)
    dst = y.reshape(-1)
    z_taps = _tap_table(out_d, sd, pd, dd, depth, kd_n)
    y_taps = _tap_table(out_h, sh, ph, dh, height, kh_n)
    x_taps = _tap_table(out_w, sw, pw, dw, width, kw_n)
    if mode == AVG_INCLUDE_PAD:
        z_taps_pad = _tap_table(out_d, sd, 0, dd, depth + pd + ped, kd_n)
        y_taps_pad = _tap_table(out_h, sh, 0, dh, height + ph + peh, kh_n)
        x_taps_pad = _tap_table(out_w, sw, 0, dw, width + pw + pew, kw_n)
    else:
        z_taps_pad, y_taps_pad, x_taps_pad = z_taps, y_taps, x_taps
    for p in range(start, min(stop, planes)):
        for od in range(out_d):
            z0 = od * sd - pd
            for oh in range(out_h):
                y0 = oh * sh - ph
                out_row = ((p * out_d + od) * out_h + oh) * out_w
                for ow in range(out_w):
                    x0 = ow * sw - pw
                    total = 0.0
                    for kz in range(z_taps[od, 0], z_taps[od, 1]):
                        for ky in range(y_taps[oh, 0], y_taps[oh, 1]):
                            row = p * plane_size + ((z0 + kz * dd) * height + y0 + ky * dh) * width + x0
                            for kx in range(x_taps[ow, 0], x_taps[ow, 1]):
                                total += src[_u(row + kx * dw)]
                    if mode != SUM:
                        total /= ((z_taps_pad[od, 1] - z_taps_pad[od, 0]) * (y_taps_pad[oh, 1] - y_taps_pad[oh, 0])
                                  * (x_taps_pad[ow, 1] - x_taps_pad[ow, 0]))
                    dst[_u(out_row + ow)] = total


@jit
def plane_means(planes, out):
    """out[i] = the mean of row i of the C-contiguous float32 or float64 ``planes``,
    summed in float64 in one order on every CPU (runtime.kernels.ordered),
    times 1 / count (numpy's mean over a short trailing axis pays a fixed
    cost per row: MobileNetV2's 1280 planes of 7x7 took 50 us, this 2 us)."""
    count = planes.shape[1]
    scale = 1.0 / count
    base = planes.ctypes.data
    for i in range(planes.shape[0]):
        at = base + i * planes.strides[0]
        out[i] = (sum_f32_f64(count, at) if planes.itemsize == 4 else sum_f64(count, at)) * scale


# ---------------------------------------------------------------- team drivers (runtime.parallel)
@drives(_max_pool_planes)
@jit
def _max_pool_planes_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(_max_pool_planes, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)


@drives(max_pool_2d_rows)
@jit
def _max_pool_2d_rows_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(max_pool_2d_rows, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)


@drives(avg_pool_planes)
@jit
def _avg_pool_planes_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(avg_pool_planes, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)
