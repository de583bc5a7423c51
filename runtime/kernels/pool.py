"""CPU kernels: pooling (MaxPool with optional indices, AveragePool, LpPool and
their global forms).

Windowed pools are Numba loops over the N*C planes, run in parallel with
:func:`runtime.parallel.parallel_for`; 1-D and 2-D pools are lifted to 3-D so
each loop compiles once per float dtype. A float32 1-D or 2-D MaxPool with
unit dilations (ResNet's stem) has a separable loop over output rows
instead. Global pools are numpy reductions, but for GlobalAveragePool on
float32/64, a Numba loop over planes.
Window attributes are validated in Python before any loop runs; MaxPool keeps
what it works out from them (its plan) per input shape, dtype and attributes.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np

from runtime.errors import KernelError
from runtime.jit import jit
from runtime.kernels.limits import check_output_size
from runtime.kernels.nn_window import MAX_SPATIAL, Window, grain, lift, make_window, out_shape, valid_range
from runtime.kernels.registry import kernel
from runtime.parallel import drives, parallel_for, team_enter, team_leave, team_next
from runtime.schedule.records import MAX_POOL, PLANE_MEANS, Operand

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
def _rows_max(src, at, width, count, dst, to, ninf):
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
def _rows_max_into(src, at, width, count, dst, to):
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
def _windows_max(dst, to, count, buf, step, kw):
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
        _rows_max(src, (p * height + r) * width, width, count, buf, pw, ninf)
        r += count
        while r < r_end:
            count = min(r_end - r, 2)
            _rows_max_into(src, (p * height + r) * width, width, count, buf, pw)
            r += count
        if sw == 1:
            _windows_max(dst, row * out_w, out_w, buf, 1, kw)
        elif sw == 2:
            _windows_max(dst, row * out_w, out_w, buf, 2, kw)
        else:
            _windows_max(dst, row * out_w, out_w, buf, sw, kw)
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
def _avg_pool_planes(start, stop, x, y, geo, mode):
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


# ---------------------------------------------------------------- helpers
def _pool_input(op: str, x: np.ndarray, allowed: str) -> tuple[np.ndarray, np.dtype]:
    """x as a C-contiguous float32/float64 array (float16 and 8- and 16-bit
    ints are widened exactly), and the dtype to give the result back in."""
    x = np.asarray(x)
    return np.ascontiguousarray(x, dtype=_work_dtype(op, x, allowed)), x.dtype


def _work_dtype(op: str, x: np.ndarray, allowed: str) -> type:
    """The dtype the loops run ``x`` in (float64 or float32), once its rank
    and dtype are checked."""
    if x.ndim < 3:
        raise KernelError(f"{op}: X must have rank 3 to 5 (N, C, spatial...), got shape {list(x.shape)}")
    if x.dtype.name not in allowed:
        raise KernelError(f"{op}: dtype {x.dtype} is not supported")
    return np.float64 if x.dtype == np.float64 else np.float32


def _window(op: str, x: np.ndarray, attrs) -> Window:
    return make_window(op, x.ndim - 2, attrs["kernel_shape"], attrs["strides"], attrs["pads"], attrs["dilations"])


def _planes(x: np.ndarray) -> np.ndarray:
    """(N, C, *spatial) -> (N*C, D, H, W) view."""
    lifted = lift(x)
    return lifted.reshape((-1,) + lifted.shape[2:])


def _planes_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape :func:`_planes` gives an array of ``shape``."""
    return (shape[0] * shape[1],) + (1,) * (MAX_SPATIAL + 2 - len(shape)) + tuple(shape[2:])


FLOATS = ("float16", "float32", "float64")


# ---------------------------------------------------------------- MaxPool
MAX_POOL_TYPES = FLOATS + ("int8", "uint8", "int16", "uint16")  # int16: the codes of int16 layers


class _MaxPoolPlan(NamedTuple):
    """What a MaxPool call does, which depends only on its input's shape and
    dtype and on its attributes: checked and worked out once for them (done
    in Python on every call it took ~40 us, as long as a quarter of the stem
    pool of ResNet-50 now takes)."""

    work: type
    """The dtype the loop runs in."""
    y_shape: tuple[int, ...]
    loop: object
    """The Numba loop parallel_for runs (None: the output is empty)."""
    x_view: tuple[int, ...]
    """The shapes the loop sees the input and the outputs as."""
    y_view: tuple[int, ...]
    items: int
    """parallel_for's range: planes, or rows of all planes."""
    params: tuple
    """The loop's arguments after the arrays."""
    grain: int


def _max_pool_plan(x: np.ndarray, attrs, with_indices: bool) -> _MaxPoolPlan:
    op = "MaxPool"
    work = _work_dtype(op, x, MAX_POOL_TYPES)
    window = _window(op, x, attrs)
    dims = out_shape(op, x.shape[2:], window, bool(attrs["ceil_mode"]))
    y_shape = check_output_size(x.shape[:2] + dims, op)
    x_planes, y_planes = _planes_shape(x.shape), _planes_shape(y_shape)
    if 0 in y_shape:
        return _MaxPoolPlan(work, y_shape, None, x_planes, y_planes, 0, (), 1)
    geo = window.loop_params()
    chunk = grain(int(np.prod(y_planes[1:])) * int(np.prod(window.kernel)))
    if with_indices:
        return _MaxPoolPlan(work, y_shape, _max_pool_index_planes, x_planes, y_planes, y_planes[0],
                            (geo, bool(attrs["storage_order"])), chunk)
    kh, kw, sh, sw, ph, pw, pw_end = geo[1], geo[2], geo[4], geo[5], geo[7], geo[8], geo[11]
    _, _, height, width = x_planes
    planes, _, out_h, out_w = y_planes
    if (x.ndim <= 4 and work == np.float32 and all(d == 1 for d in window.dilations)
            and pw < kw and pw_end < kw and kw <= 2 * width + 2):
        # the row loop reads every window's kw taps from a padded row buffer:
        # with ONNX's pads < kernel and no kernel much wider than the input
        # that buffer is short and few taps are padding
        buf_len = max(pw + width, (out_w - 1) * sw + kw)
        return _MaxPoolPlan(work, y_shape, max_pool_2d_rows, (planes, height, width), (planes, out_h, out_w),
                            planes * out_h, (kh, kw, sh, sw, ph, pw, buf_len), grain(out_w * kh * kw))
    return _MaxPoolPlan(work, y_shape, _max_pool_planes, x_planes, y_planes, y_planes[0], (geo,), chunk)


_PLANS: dict = {}
PLANS_KEPT = 256
"""Most MaxPool plans kept (a model has a few MaxPools; more are forgotten
all at once)."""


def _cached_plan(x: np.ndarray, attrs, with_indices: bool) -> _MaxPoolPlan:
    try:
        key = (x.shape, x.dtype, with_indices, attrs["kernel_shape"], attrs["strides"], attrs["pads"],
               attrs["dilations"], attrs["ceil_mode"], attrs["storage_order"] if with_indices else None)
        plan = _PLANS.get(key)
    except (KeyError, TypeError):  # a missing attribute (the plan reports it) or an unhashable one
        return _max_pool_plan(x, attrs, with_indices)
    if plan is None:
        plan = _max_pool_plan(x, attrs, with_indices)  # raises for invalid attributes: nothing kept
        if len(_PLANS) >= PLANS_KEPT:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


def max_pool(x: np.ndarray, attrs, with_indices: bool) -> tuple[np.ndarray, np.ndarray | None]:
    x = np.asarray(x)
    plan = _cached_plan(x, attrs, with_indices)
    y = np.empty(plan.y_shape, dtype=plan.work)
    if plan.loop is None:
        return y.astype(x.dtype), (np.empty(y.shape, dtype=np.int64) if with_indices else None)
    x_view = np.ascontiguousarray(x, dtype=plan.work).reshape(plan.x_view)
    idx = None
    if with_indices:
        idx = np.empty(plan.y_shape, dtype=np.int64)
        parallel_for(plan.loop, plan.items, x_view, y.reshape(plan.y_view), idx.reshape(plan.y_view), *plan.params,
                     grain=plan.grain)
    else:
        parallel_for(plan.loop, plan.items, x_view, y.reshape(plan.y_view), *plan.params, grain=plan.grain)
    return y.astype(x.dtype, copy=False), idx


@kernel("MaxPool")
def max_pool_kernel(inputs, attrs):
    return (max_pool(inputs[0], attrs, with_indices=False)[0],)


@kernel("MaxPoolWithIndices")
def max_pool_with_indices(inputs, attrs):
    return max_pool(inputs[0], attrs, with_indices=True)


# ---------------------------------------------------------------- AveragePool, LpPool
def _sum_or_mean_pool(op: str, x: np.ndarray, attrs, mode: int, window: Window | None = None) -> np.ndarray:
    """The pool's output; ``window`` when the caller already made it from ``attrs``."""
    if window is None:
        window = _window(op, x, attrs)
    dims = out_shape(op, x.shape[2:], window, bool(attrs["ceil_mode"]))
    y = np.empty(check_output_size(x.shape[:2] + dims, op), dtype=x.dtype)
    if y.size:
        parallel_for(_avg_pool_planes, y.shape[0] * y.shape[1], _planes(x), _planes(y), window.loop_params(), mode,
                     grain=grain(y[0, 0].size * np.prod(window.kernel)))
    return y


@kernel("AveragePool")
def average_pool(inputs, attrs):
    x, dtype = _pool_input("AveragePool", inputs[0], FLOATS)
    mode = AVG_INCLUDE_PAD if attrs["count_include_pad"] else AVG_EXCLUDE_PAD
    window = _window("AveragePool", x, attrs)
    if (x.size and window.kernel == x.shape[2:] and not any(window.pads_begin + window.pads_end)
            and all(d == 1 for d in window.dilations)):  # one window a plane (ResNet-50's head): plane means
        mean = np.empty(x.shape[:2] + (1,) * (x.ndim - 2), x.dtype)
        plane_means(x.reshape(x.shape[0] * x.shape[1], -1), mean.reshape(-1))
        return (mean.astype(dtype, copy=False),)
    return (_sum_or_mean_pool("AveragePool", x, attrs, mode, window).astype(dtype, copy=False),)


def _lp_power(x: np.ndarray, p: int) -> np.ndarray:
    if p < 1:
        raise KernelError(f"LpPool: p={p} must be >= 1")
    ax = np.abs(x)
    return ax if p == 1 else ax * ax if p == 2 else ax ** p


def _lp_root(s: np.ndarray, p: int) -> np.ndarray:
    return s if p == 1 else np.sqrt(s) if p == 2 else s ** (1.0 / p)


@kernel("LpPool")
def lp_pool(inputs, attrs):
    x, dtype = _pool_input("LpPool", inputs[0], FLOATS)
    p = int(attrs["p"])
    powered = _lp_power(x, p)
    return (_lp_root(_sum_or_mean_pool("LpPool", powered, attrs, SUM), p).astype(dtype, copy=False),)


# ---------------------------------------------------------------- global pools
def _spatial_axes(op: str, x: np.ndarray) -> tuple[int, ...]:
    if x.ndim < 3:
        raise KernelError(f"{op}: X must have rank >= 3 (N, C, spatial...), got shape {list(x.shape)}")
    return tuple(range(2, x.ndim))


@kernel("GlobalAveragePool")
def global_average_pool(inputs, attrs):
    x = inputs[0]
    axes = _spatial_axes("GlobalAveragePool", x)
    if x.dtype in (np.float32, np.float64) and x.size:
        planes = np.ascontiguousarray(x).reshape(x.shape[0] * x.shape[1], -1)
        mean = np.empty(x.shape[:2] + (1,) * len(axes), x.dtype)
        plane_means(planes, mean.reshape(-1))
        return (mean,)
    work = np.float32 if x.dtype == np.float16 else x.dtype
    mean = np.mean(x, axis=axes, keepdims=True, dtype=work)
    return (mean.astype(x.dtype, copy=False),)


@jit(fastmath=True)
def plane_means(planes, out):
    """out[i] = the mean of row i of ``planes``, summed in float64 (numpy's
    mean over a short trailing axis pays a fixed cost per row: MobileNetV2's
    1280 planes of 7x7 took 50 us, this 2 us)."""
    count = planes.shape[1]
    for i in range(planes.shape[0]):
        row = planes[i]
        total = 0.0
        for j in range(count):
            total += np.float64(row[j])
        out[i] = total / count


@kernel("GlobalMaxPool")
def global_max_pool(inputs, attrs):
    x = inputs[0]
    return (np.max(x, axis=_spatial_axes("GlobalMaxPool", x), keepdims=True),)


@kernel("GlobalLpPool")
def global_lp_pool(inputs, attrs):
    x = inputs[0]
    axes = _spatial_axes("GlobalLpPool", x)
    p = int(attrs["p"])
    return (_lp_root(np.sum(_lp_power(x, p), axis=axes, keepdims=True), p).astype(x.dtype, copy=False),)


# ---------------------------------------------------------------- in a schedule (runtime.schedule)
def _lower_max_pool(ctx, args, attrs) -> bool:
    """MaxPool as one schedule operation where it runs on the float32 row loop."""
    x = args[0]
    if not isinstance(x, Operand) or x.dtype != np.float32:
        return False
    try:
        plan = _cached_plan(x.stand_in(), attrs, False)
    except KernelError:
        return False
    if plan.loop is not max_pool_2d_rows or plan.work != np.float32:
        return False
    planes, height, width = plan.x_view
    out_h, out_w = plan.y_view[1:]
    ctx.emit(MAX_POOL, [*x.ref(), planes, height, width, *ctx.output(0, plan.y_shape).ref(), out_h, out_w,
                        *plan.params],
             plan.items, plan.grain)
    return True


def _lower_plane_means(ctx, x: Operand) -> bool:
    """Each (image, channel) plane of float32 ``x`` to its mean, as
    :func:`plane_means` (chunks of planes)."""
    planes, size = x.shape[0] * x.shape[1], math.prod(x.shape[2:])
    out = ctx.output(0, x.shape[:2] + (1,) * (len(x.shape) - 2))
    ctx.emit(PLANE_MEANS, [*x.ref(), planes, size, *out.ref()], planes, grain(size))
    return True


def _lower_global_average(ctx, args, attrs) -> bool:
    x = args[0]
    return (isinstance(x, Operand) and x.dtype == np.float32 and len(x.shape) >= 3 and math.prod(x.shape) > 0
            and _lower_plane_means(ctx, x))


def _lower_average(ctx, args, attrs) -> bool:
    """AveragePool where one window covers each plane (ResNet-50's head)."""
    x = args[0]
    if not isinstance(x, Operand) or x.dtype != np.float32 or len(x.shape) < 3 or not math.prod(x.shape):
        return False
    try:
        window = _window("AveragePool", x.stand_in(), attrs)
    except KernelError:
        return False
    return (window.kernel == x.shape[2:] and not any(window.pads_begin + window.pads_end)
            and all(d == 1 for d in window.dilations) and _lower_plane_means(ctx, x))


max_pool_kernel.lower = _lower_max_pool
global_average_pool.lower = _lower_global_average
average_pool.lower = _lower_average


# ---------------------------------------------------------------- team drivers (runtime.parallel)
@drives(_max_pool_planes)
@jit
def _max_pool_planes_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        _max_pool_planes(spans[index, 0], spans[index, 1], *args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)


@drives(max_pool_2d_rows)
@jit
def _max_pool_2d_rows_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        max_pool_2d_rows(spans[index, 0], spans[index, 1], *args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)


@drives(_avg_pool_planes)
@jit
def _avg_pool_planes_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        _avg_pool_planes(spans[index, 0], spans[index, 1], *args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)
