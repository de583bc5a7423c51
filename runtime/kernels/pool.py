"""CPU kernels: pooling (MaxPool with optional indices, AveragePool, LpPool and
their global forms).

Windowed pools are Numba loops over the N*C planes, run in parallel with
:func:`runtime.parallel.parallel_for`; 1-D and 2-D pools are lifted to 3-D so
each loop compiles once per float dtype. Global pools are numpy reductions,
but for GlobalAveragePool on float32/64, a Numba loop over planes.
Window attributes are validated in Python before any loop runs.
"""
from __future__ import annotations

import numba
import numpy as np

from runtime.errors import KernelError
from runtime.jit import jit
from runtime.kernels.limits import check_output_size
from runtime.kernels.nn_window import Window, grain, lift, make_window, out_shape, valid_range
from runtime.kernels.registry import kernel
from runtime.parallel import drives, parallel_for, team_enter, team_leave, team_next

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
def _fill(dst, value):
    for i in range(dst.shape[0]):
        dst[i] = value


@jit(inline="always")
def _max_into(acc, values, first):
    """acc = max(acc, values) elementwise (max(-inf, values) when ``first``),
    NaNs in values skipped; a select, not a branch, so that LLVM vectorises
    it."""
    for i in range(acc.shape[0]):
        value = values[i]
        best = -np.inf if first else acc[i]
        acc[i] = value if value > best else best


@jit(inline="always")
def _max_into_phases(phases, values, first):
    """phases[q % 2, q // 2] = max(phases[...], values[q]) (or of -inf when
    ``first``): a row max that also splits the row into its even and odd
    columns (for stride 2)."""
    even, odd = phases[0], phases[1]
    for i in range(values.shape[0] // 2):
        a, b = values[2 * i], values[2 * i + 1]
        best_a = -np.inf if first else even[i]
        best_b = -np.inf if first else odd[i]
        even[i] = a if a > best_a else best_a
        odd[i] = b if b > best_b else best_b
    if values.shape[0] % 2:
        last = values.shape[0] // 2
        a = values[2 * last]
        best_a = -np.inf if first else even[last]
        even[last] = a if a > best_a else best_a


@jit
def _max_pool_2d_planes(start, stop, x, y, geo):
    """Planes [start, stop) of a 2-D max pool with unit dilations, separably:
    for each output row, the max over its window's input rows (contiguous
    vector passes, which for stride 2 also split the columns into even and
    odd), then over each window's columns of that (interior windows one tap
    column at a time over all of them, the few windows clipped by the edges
    point by point). x: (P, H, W); y: (P, OH, OW). NaNs are skipped as in
    _max_pool_planes: the first pass turns them into -inf."""
    kh_n, kw_n, sh, sw, ph, pw = geo[1], geo[2], geo[4], geo[5], geo[7], geo[8]
    planes, height, width = x.shape
    _, out_h, out_w = y.shape
    split = 2 if sw == 2 else 1
    cols = np.empty((split, (width + 1) // split), dtype=x.dtype)
    flat = cols.reshape(-1)
    x_taps = _tap_table(out_w, sw, pw, 1, width, kw_n)
    lo, hi = valid_range(-pw, sw, width - kw_n + 1, out_w)
    for p in range(start, min(stop, planes, y.shape[0])):
        for oh in range(out_h):
            y0 = oh * sh - ph
            out_row = y[p, oh]
            first_ky = max(0, -y0)
            if first_ky >= min(kh_n, height - y0):
                _fill(flat, -np.inf)
            for ky in range(first_ky, min(kh_n, height - y0)):
                if split == 2:
                    _max_into_phases(cols, x[p, y0 + ky], ky == first_ky)
                else:
                    _max_into(flat[:width], x[p, y0 + ky], ky == first_ky)
            for ow in range(out_w):
                if lo <= ow < hi:
                    continue
                best = -np.inf
                for kx in range(x_taps[ow, 0], x_taps[ow, 1]):
                    at = ow * sw - pw + kx
                    value = cols[at % split, at // split]
                    best = value if value > best else best
                out_row[ow] = best
            inner = out_row[lo:hi]
            for kx in range(kw_n):
                at = lo * sw - pw + kx
                if split == 2:
                    _max_into(inner, cols[at % 2, at // 2:], kx == 0)
                elif sw == 1:
                    _max_into(inner, flat[at:], kx == 0)
                else:
                    row = flat[at:]
                    for i in range(inner.shape[0]):
                        value = row[i * sw]
                        best = -np.inf if kx == 0 else inner[i]
                        inner[i] = value if value > best else best


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
    if x.ndim < 3:
        raise KernelError(f"{op}: X must have rank 3 to 5 (N, C, spatial...), got shape {list(x.shape)}")
    if x.dtype.name not in allowed:
        raise KernelError(f"{op}: dtype {x.dtype} is not supported")
    work = np.float64 if x.dtype == np.float64 else np.float32
    return np.ascontiguousarray(x, dtype=work), x.dtype


def _window(op: str, x: np.ndarray, attrs) -> Window:
    return make_window(op, x.ndim - 2, attrs["kernel_shape"], attrs["strides"], attrs["pads"], attrs["dilations"])


def _planes(x: np.ndarray) -> np.ndarray:
    """(N, C, *spatial) -> (N*C, D, H, W) view."""
    lifted = lift(x)
    return lifted.reshape((-1,) + lifted.shape[2:])


FLOATS = ("float16", "float32", "float64")


# ---------------------------------------------------------------- MaxPool
def max_pool(x: np.ndarray, attrs, with_indices: bool) -> tuple[np.ndarray, np.ndarray | None]:
    op = "MaxPool"
    x, dtype = _pool_input(op, x, FLOATS + ("int8", "uint8", "int16", "uint16"))  # int16: the codes of int16 layers
    window = _window(op, x, attrs)
    dims = out_shape(op, x.shape[2:], window, bool(attrs["ceil_mode"]))
    y = np.empty(check_output_size(x.shape[:2] + dims, op), dtype=x.dtype)
    if y.size == 0:
        return y.astype(dtype), (np.empty(y.shape, dtype=np.int64) if with_indices else None)
    y_planes = _planes(y)
    chunk = grain(y_planes[0].size * np.prod(window.kernel))
    idx = None
    if with_indices:
        idx = np.empty(y_planes.shape, dtype=np.int64)
        parallel_for(_max_pool_index_planes, y_planes.shape[0], _planes(x), y_planes, idx, window.loop_params(),
                     bool(attrs["storage_order"]), grain=chunk)
        idx = idx.reshape(y.shape)
    elif x.ndim == 4 and x.dtype == np.float32 and window.dilations == (1, 1):
        planes = x.reshape((-1,) + x.shape[2:])
        parallel_for(_max_pool_2d_planes, planes.shape[0], planes, y.reshape((-1,) + y.shape[2:]),
                     window.loop_params(), grain=chunk)
    else:
        parallel_for(_max_pool_planes, y_planes.shape[0], _planes(x), y_planes, window.loop_params(), grain=chunk)
    return y.astype(dtype, copy=False), idx


@kernel("MaxPool")
def max_pool_kernel(inputs, attrs):
    return (max_pool(inputs[0], attrs, with_indices=False)[0],)


@kernel("MaxPoolWithIndices")
def max_pool_with_indices(inputs, attrs):
    return max_pool(inputs[0], attrs, with_indices=True)


# ---------------------------------------------------------------- AveragePool, LpPool
def _sum_or_mean_pool(op: str, x: np.ndarray, attrs, mode: int) -> np.ndarray:
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
    return (_sum_or_mean_pool("AveragePool", x, attrs, mode).astype(dtype, copy=False),)


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
        _plane_means(planes, mean.reshape(-1))
        return (mean,)
    work = np.float32 if x.dtype == np.float16 else x.dtype
    mean = np.mean(x, axis=axes, keepdims=True, dtype=work)
    return (mean.astype(x.dtype, copy=False),)


@jit(fastmath=True)
def _plane_means(planes, out):
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


# ---------------------------------------------------------------- team drivers (runtime.parallel)
@drives(_max_pool_planes)
@jit
def _max_pool_planes_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        _max_pool_planes(spans[index, 0], spans[index, 1], *args)
        index = team_next(team, True)
    return team_leave(team, state, role)


@drives(_max_pool_2d_planes)
@jit
def _max_pool_2d_planes_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        _max_pool_2d_planes(spans[index, 0], spans[index, 1], *args)
        index = team_next(team, True)
    return team_leave(team, state, role)


@drives(_avg_pool_planes)
@jit
def _avg_pool_planes_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        _avg_pool_planes(spans[index, 0], spans[index, 1], *args)
        index = team_next(team, True)
    return team_leave(team, state, role)
