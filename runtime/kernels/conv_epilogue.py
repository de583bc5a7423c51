"""The epilogue of a fused convolution (the "FusedConv" kernel): the conv's
output plus its bias, plus a residual of the output's shape, clamped to
[low, high] (ReLU is (0, inf), ReLU6 (0, 6)), then put through a gate
(HardSigmoid or HardSwish), each step optional.

The clamp and the gate travel as one float32 clamp array (runtime.gemm.
operands.CLAMP_SIZE: ``[low, high, alpha, beta, gate]``). The GEMM paths
apply both in the microkernels' epilogue and Winograd in its output
transform (:func:`finish_run` a row, then :func:`gate_run` a plane, while
it is in cache); the other paths run :func:`apply_epilogue` over the
finished output. The clamp is numpy's ``minimum(maximum(v, low), high)``:
NaN stays NaN; the gate computes what the element-wise HardSigmoid and
HardSwish kernels do, bit for bit.
"""
from __future__ import annotations

import functools
import math
import numbers

import numba
import numpy as np
from numba import types
from numba.extending import overload

from runtime.errors import KernelError
from runtime.gemm.operands import CLAMP_SIZE, HARD_SWISH, NO_GATE, clamp_array
from runtime.jit import jit, readonly
from runtime.kernels.activations import unit_clamp
from runtime.kernels.nn_window import grain
from runtime.parallel import drives, parallel_for
from runtime.pool_protocol import team_enter, team_leave, team_next
from runtime.unlinked import call_unlinked

NO_CLAMP = np.array([-np.inf, np.inf, 0, 0, NO_GATE], np.float32)
"""The clamp array of a kernel without one (never applied)."""


def check_epilogue(op: str, residual, clamp, shape: tuple, dtype,
                   gate=None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``residual`` (C-contiguous, of the output's shape and dtype) and the
    clamp array of ``clamp`` (low, high) and ``gate`` (("HardSigmoid" or
    "HardSwish", alpha, beta); float32 outputs only), each None when absent."""
    if residual is not None:
        if not isinstance(residual, np.ndarray) or residual.dtype != dtype or residual.shape != shape:
            got = f"{residual.dtype} {list(residual.shape)}" if isinstance(residual, np.ndarray) else \
                type(residual).__name__
            raise KernelError(f"{op}: the residual must be a {np.dtype(dtype).name} array of shape {list(shape)}, "
                              f"got {got}")
        residual = np.ascontiguousarray(residual)
    if gate is not None and np.dtype(dtype) != np.float32:
        raise KernelError(f"{op}: a gate needs a float32 output, got {np.dtype(dtype).name}")
    if clamp is not None or gate is not None:
        if clamp is not None and not isinstance(clamp, (tuple, list)):
            raise KernelError(f"{op}: clamp must be (low, high), two numbers, got {clamp!r:.60}")
        try:
            clamp, gate = None if clamp is None else tuple(clamp), None if gate is None else tuple(gate)
            clamp = _clamp_array(op, clamp, gate, repr((clamp, gate)))
        except TypeError:  # unhashable values
            raise KernelError(f"{op}: clamp must be (low, high) and gate (kind, alpha, beta), got {clamp!r:.60} "
                              f"and {gate!r:.60}") from None
    return residual, clamp


@functools.lru_cache(maxsize=256)
def _clamp_array(op: str, clamp: tuple | None, gate: tuple | None, key: str) -> np.ndarray:
    """The float32 clamp array of a valid clamp and gate; cached (kernels
    only read it), since building it cost a few microseconds per layer and
    run; ``key``, their repr, tells -0.0 from 0.0 (equal, and so one
    entry, as numbers)."""
    if clamp is not None and (
            len(clamp) != 2 or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in clamp)
            or any(math.isnan(v) for v in clamp)):
        raise KernelError(f"{op}: clamp must be (low, high), two numbers, got {clamp!r:.60}")
    if gate is not None and (len(gate) != 3 or not all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) for v in gate[1:])):
        raise KernelError(f"{op}: gate must be (kind, alpha, beta), got {gate!r:.60}")
    return clamp_array(op, clamp, gate)


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


def gate_run(dst, d0, count, clamp):
    """dst[d0 + z] for z < count through the gate of the clamp array
    ``clamp`` (nothing where it has none, or is a bare [low, high]), in
    compiled code: ``dst`` a flat C-contiguous array. Kernels compiled with
    fastmath call it too: the gate runs in a function of its own, compiled
    without (contracting ``alpha * v + beta`` would change its bits)."""


@overload(gate_run, inline="always")
def _gate_run(dst, d0, count, clamp):
    if not isinstance(dst, types.Array) or dst.dtype != types.float32:
        return lambda dst, d0, count, clamp: None  # a gate is float32 only (check_epilogue)
    if dst.ndim != 1 or dst.layout != "C":
        raise numba.core.errors.TypingError("gate_run takes a flat C-contiguous array")

    def gate(dst, d0, count, clamp):
        if clamp.shape[0] >= CLAMP_SIZE and clamp[4] != NO_GATE:
            _gate_float32(dst, np.int64(d0), np.int64(count), clamp[4] == HARD_SWISH, np.float32(clamp[2]),
                          np.float32(clamp[3]))
    return gate


@jit
def _gate_float32(dst, d0, count, swish, alpha, beta):
    """HardSwish (``swish``) or HardSigmoid of dst[d0:d0 + count], in place:
    activations' ``hard_swish`` / ``hard_sigmoid`` with these parameters."""
    d, n = numba.uint64(d0), numba.uint64(count)
    if swish:
        for z in range(n):
            v = dst[d + z]
            dst[d + z] = v * unit_clamp(alpha * v + beta)
    else:
        for z in range(n):
            dst[d + z] = unit_clamp(alpha * dst[d + z] + beta)


@jit
def _finish_planes(start, stop, out, bias, res, clamp, flags):
    """Planes [start, stop) of out (N*K, S): + bias[p % K] (flags[0]),
    + res[p] (flags[1]), clamp and gate (flags[2])."""
    count, size = out.shape
    lo, hi = clamp[0], clamp[1]
    flat = out.reshape(-1)
    for p in range(start, min(stop, count)):
        row = out[p]
        if flags[0]:
            b = bias[p % bias.shape[0]]
            for z in range(size):
                row[z] += b
        finish_row(row, row, res[p] if flags[1] else row, lo, hi, flags[1], flags[2])
        if flags[2]:
            gate_run(flat, p * size, size, clamp)


@jit
def finish_columns(start, stop, out, res, clamp, has_res, has_clamp):
    """Columns [start, stop) of ``out`` (M, N), C-contiguous: + ``res`` (of
    its shape; ``has_res``), clamped and gated (``has_clamp``), each element
    as :func:`_finish_planes` finishes it: the epilogue of a convolution of
    one output position run as dot products (runtime.gemm.gemv), whose
    chunks are output channels."""
    rows, n = out.shape
    stop = min(stop, n)
    if start >= stop or not (has_res or has_clamp):
        return
    flat, rflat = out.reshape(-1), res.reshape(-1)
    lo, hi = (clamp[0], clamp[1]) if has_clamp else (np.float32(0), np.float32(0))  # no clamp: never read
    for i in range(rows):
        d0 = i * n + start
        finish_run(flat, d0, flat[d0:d0 + stop - start], rflat, stop - start, lo, hi, has_res, has_clamp)
        if has_clamp:
            gate_run(flat, d0, stop - start, clamp)


def apply_epilogue(out: np.ndarray, bias: np.ndarray | None, residual: np.ndarray | None,
                   clamp: np.ndarray | None) -> None:
    """``out`` (N, K, ...) += bias per channel, += residual, clamped and
    gated (``clamp``: a clamp array): in place, on all threads."""
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
        call_unlinked(_finish_planes, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)
