"""CPU kernels: pooling (MaxPool with optional indices, AveragePool, LpPool and
their global forms).

Windowed pools are Numba loops over the N*C planes (runtime.kernels.pool_loops),
run in parallel with :func:`runtime.parallel.parallel_for`; 1-D and 2-D pools are
lifted to 3-D so each loop compiles once per float dtype. A float32 1-D or 2-D
MaxPool with unit dilations (ResNet's stem) has a separable loop over output
rows instead. Global pools are numpy reductions, but for GlobalAveragePool on
float32/64, a Numba loop over planes.
Window attributes are validated in Python before any loop runs; MaxPool keeps
what it works out from them (its plan) per input shape, dtype and attributes.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from runtime.errors import KernelError
from runtime.kernels.limits import check_output_size
from runtime.kernels.nn_window import MAX_SPATIAL, Window, grain, lift, make_window, out_shape
from runtime.kernels.pool_loops import (
    AVG_EXCLUDE_PAD,
    AVG_INCLUDE_PAD,
    SUM,
    _max_pool_index_planes,
    _max_pool_planes,
    avg_pool_planes,
    max_pool_2d_rows,
    plane_means,
)
from runtime.kernels.registry import kernel
from runtime.parallel import parallel_for
from runtime.schedule.records import AVG_POOL, MAX_POOL, PLANE_MEANS, Operand


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
        parallel_for(avg_pool_planes, y.shape[0] * y.shape[1], _planes(x), _planes(y), window.loop_params(), mode,
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
        plane_means(np.ascontiguousarray(x).reshape(x.shape[0] * x.shape[1], -1), mean.reshape(-1))
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
    """AveragePool of float32: where one window covers each plane (ResNet-50's
    head) the plane means, else one AVG_POOL operation over the planes (the
    per-step kernel's loop: DenseNet's transitions, Inception's branches)."""
    x = args[0]
    if not isinstance(x, Operand) or x.dtype != np.float32 or not 3 <= len(x.shape) <= MAX_SPATIAL + 2 \
            or not math.prod(x.shape):
        return False
    try:
        window = _window("AveragePool", x.stand_in(), attrs)
        dims = out_shape("AveragePool", x.shape[2:], window, bool(attrs["ceil_mode"]))
        mode = AVG_INCLUDE_PAD if attrs["count_include_pad"] else AVG_EXCLUDE_PAD
    except (KernelError, KeyError, TypeError, ValueError):
        return False
    if (window.kernel == x.shape[2:] and not any(window.pads_begin + window.pads_end)
            and all(d == 1 for d in window.dilations)):
        return _lower_plane_means(ctx, x)
    y_shape = tuple(x.shape[:2]) + tuple(dims)
    if y_shape != ctx.out_types[0][0] or not math.prod(y_shape):
        return False
    planes = _planes_shape(x.shape)
    out = ctx.output(0, y_shape)
    ctx.emit(AVG_POOL, [*x.ref(), *planes, *out.ref(), *_planes_shape(y_shape)[1:], mode, *window.loop_params()],
             planes[0], grain(math.prod(dims) * math.prod(window.kernel)))
    return True


max_pool_kernel.lower = _lower_max_pool
global_average_pool.lower = _lower_global_average
average_pool.lower = _lower_average
