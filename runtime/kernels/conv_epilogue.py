"""The epilogue of a fused convolution (the "FusedConv" kernel): the conv's
output plus its bias, plus a residual of the output's shape, clamped to
[low, high] (ReLU is (0, inf), ReLU6 (0, 6)), each step optional.

The GEMM paths do it in the microkernels' epilogue and Winograd in its
output transform (:func:`finish_row`, while the row is in cache); the other
paths run :func:`apply_epilogue` over the finished output. The clamp is
numpy's ``minimum(maximum(v, low), high)``: NaN stays NaN.
"""
from __future__ import annotations

import functools
import math
import numbers

import numba
import numpy as np

from runtime.errors import KernelError
from runtime.jit import jit, readonly
from runtime.kernels.nn_window import grain
from runtime.parallel import drives, parallel_for, team_enter, team_leave, team_next

NO_CLAMP = np.array([-np.inf, np.inf], np.float32)
"""The clamp arrays of a kernel without one (never applied)."""


def check_epilogue(op: str, residual, clamp, shape: tuple, dtype) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``residual`` (C-contiguous, of the output's shape and dtype) and
    ``clamp`` (a float32 [low, high] array), each None when absent."""
    if residual is not None:
        if not isinstance(residual, np.ndarray) or residual.dtype != dtype or residual.shape != shape:
            got = f"{residual.dtype} {list(residual.shape)}" if isinstance(residual, np.ndarray) else \
                type(residual).__name__
            raise KernelError(f"{op}: the residual must be a {np.dtype(dtype).name} array of shape {list(shape)}, "
                              f"got {got}")
        residual = np.ascontiguousarray(residual)
    if clamp is not None:
        if not isinstance(clamp, (tuple, list)):
            raise KernelError(f"{op}: clamp must be (low, high), two numbers, got {clamp!r:.60}")
        try:
            clamp = _clamp_array(op, tuple(clamp))
        except TypeError:  # unhashable values
            raise KernelError(f"{op}: clamp must be (low, high), two numbers, got {clamp!r:.60}") from None
    return residual, clamp


@functools.lru_cache(maxsize=256)
def _clamp_array(op: str, clamp: tuple) -> np.ndarray:
    """The float32 [low, high] array of a valid clamp; cached (kernels only
    read it), since building it cost a few microseconds per layer and run."""
    if (len(clamp) != 2 or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in clamp)
            or any(math.isnan(v) for v in clamp)):
        raise KernelError(f"{op}: clamp must be (low, high), two numbers, got {clamp!r:.60}")
    return np.array([float(v) for v in clamp], np.float32)


@jit(inline="always")
def clamp_value(v, lo, hi):
    """numpy's minimum(maximum(v, lo), hi)."""
    if not (v > lo or v != v):
        v = lo
    if not (v < hi or v != v):
        v = hi
    return v


@jit(inline="always")
def finish_run(dst, d0, src, res, count, lo, hi, has_res, has_clamp):
    """dst[d0 + z] = src[z] (+ res[d0 + z]) (clamped to [lo, hi]) for z <
    count, the steps as flagged (``res`` may be ``dst`` itself): offsets
    into whole arrays, so a kernel finishing many rows makes no views."""
    d, n = numba.uint64(d0), numba.uint64(count)
    if has_res and has_clamp:
        for z in range(n):
            dst[d + z] = clamp_value(src[z] + res[d + z], lo, hi)
    elif has_res:
        for z in range(n):
            dst[d + z] = src[z] + res[d + z]
    elif has_clamp:
        for z in range(n):
            dst[d + z] = clamp_value(src[z], lo, hi)
    else:
        for z in range(n):
            dst[d + z] = src[z]


@jit(inline="always")
def finish_row(dst, src, res, lo, hi, has_res, has_clamp):
    """dst = src (+ res) (clamped to [lo, hi]), the steps as flagged."""
    finish_run(dst, 0, src, res, dst.shape[0], lo, hi, has_res, has_clamp)


@jit
def _finish_planes(start, stop, out, bias, res, clamp, flags):
    """Planes [start, stop) of out (N*K, S): + bias[p % K] (flags[0]),
    + res[p] (flags[1]), clamp (flags[2])."""
    count, size = out.shape
    lo, hi = clamp[0], clamp[1]
    for p in range(start, min(stop, count)):
        row = out[p]
        if flags[0]:
            b = bias[p % bias.shape[0]]
            for z in range(size):
                row[z] += b
        finish_row(row, row, res[p] if flags[1] else row, lo, hi, flags[1], flags[2])


def apply_epilogue(out: np.ndarray, bias: np.ndarray | None, residual: np.ndarray | None,
                   clamp: np.ndarray | None) -> None:
    """``out`` (N, K, ...) += bias per channel, += residual, clamped: in
    place, on all threads."""
    if bias is None and residual is None and clamp is None:
        return
    planes = out.reshape(out.shape[0] * out.shape[1], -1)
    flags = np.array([bias is not None, residual is not None, clamp is not None], np.bool_)
    res = planes if residual is None else residual.reshape(planes.shape)
    bias = readonly(np.zeros(1, out.dtype) if bias is None else bias)
    parallel_for(_finish_planes, planes.shape[0], planes, bias, res, NO_CLAMP if clamp is None else clamp, flags,
                 grain=grain(planes.shape[1]))


# ---------------------------------------------------------------- team drivers (runtime.parallel)
@drives(_finish_planes)
@jit
def _finish_planes_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        _finish_planes(spans[index, 0], spans[index, 1], *args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)
