"""Products of a few rows by a large float32 matrix: ``a (M, K) @ op(B)``
with M small (a classifier's Gemm at batch 1), as streaming dot products.

Such a product is bound by reading ``B`` once: 5 MB for MobileNetV2's
1280 x 1000 classifier. The blocked GEMM (:mod:`runtime.gemm.sgemm`) reads
it packed, through 8-row panels and a one-column remainder kernel, at
13 GB/s; here each thread streams its share of ``B`` in memory order and
keeps ``a`` in L1 (171 -> 40 us with ``B`` in cache, 526 -> 240 us cold):

* ``B`` given as (N, K) (Gemm with transB=1): ``y[i, j] = a[i] . B[j]``,
  rows of ``B`` split over the threads;
* ``B`` given as (K, N): ``y[i] += a[i, k] * B[k]`` over ``k``, columns of
  ``B`` split over the threads (each a run of every row).

Sums are float32: a dot product's vectorised in one order on every CPU
(runtime.kernels.ordered), an axpy's in order along ``k``.
"""
from __future__ import annotations

import numpy as np

from runtime.errors import KernelError
from runtime.jit import jit, readonly
from runtime.kernels.ordered import dot_rows_f32
from runtime.parallel import drives, parallel_for
from runtime.pool_protocol import team_enter, team_leave, team_next
from runtime.schedule.records import DOT_ROWS, NONE
from runtime.unlinked import call_unlinked

__all__ = ["sgemv_rows"]

COLUMN_CHUNK = 256
"""Columns of a (K, N) ``B`` per task: a multiple of the vector width."""
FEW_ROWS = 8
"""Products with fewer rows in ``a`` (a Gemm at batch 1, a convolution of
one output position) stream ``B`` as dot products here."""


def sgemv_rows(a: np.ndarray, b: np.ndarray, transposed: bool, bias: np.ndarray | None = None) -> np.ndarray:
    """``a @ B.T`` when ``transposed`` (``b`` is (N, K)), else ``a @ B``
    (``b`` is (K, N)); ``a`` (M, K); float32, C-contiguous; a new (M, N)
    array. ``bias`` (N,) float32 is then added to every row, as ``y +=
    bias`` would (by the tasks, while their columns are in cache: the
    numpy call cost ~25 us in a running model)."""
    if a.dtype != np.float32 or b.dtype != np.float32 or a.ndim != 2 or b.ndim != 2:
        raise KernelError(f"sgemv_rows: float32 matrices only, got {a.dtype} {list(a.shape)} and "
                          f"{b.dtype} {list(b.shape)}")
    depth, n = (b.shape[1], b.shape[0]) if transposed else b.shape
    if a.shape[1] != depth:
        raise KernelError(f"sgemv_rows: a is {list(a.shape)}, op(b) is {[depth, n]}")
    if bias is not None and (bias.dtype != np.float32 or bias.shape != (n,)):
        raise KernelError(f"sgemv_rows: bias must be float32 of shape [{n}], got {bias.dtype} {list(bias.shape)}")
    a, b = np.ascontiguousarray(a), readonly(np.ascontiguousarray(b))  # b, bias: typed as frozen constants are
    out = np.zeros((a.shape[0], n), np.float32)
    if out.size == 0:
        return out
    bias = NO_BIAS if bias is None else readonly(bias)
    if depth == 0:
        _add_bias(out, bias, 0, n)
    elif transposed:
        parallel_for(dot_rows, n, a, b, out, bias, grain=max(1, (1 << 14) // depth))
    else:
        chunks = -(-n // COLUMN_CHUNK)
        parallel_for(_axpy_columns, chunks, a, b, out, bias, grain=max(1, (1 << 14) // (depth * COLUMN_CHUNK)))
    return out


NO_BIAS = readonly(np.zeros(0, np.float32))
"""The bias of a product without one."""


def lower_dot_rows(ctx, a, b: np.ndarray, out, bias: np.ndarray | None, residual=None,
                   clamp: np.ndarray | None = None) -> None:
    """``sgemv_rows(a, b, True, bias)`` as a schedule operation
    (runtime.schedule): ``a`` (M, K) and ``out`` (M, N) float32 operands,
    ``b`` (N, K) and ``bias`` (N,) C-contiguous float32 arrays, K > 0; then,
    where given, a convolution's epilogue on each chunk of columns: + the
    ``residual`` operand (M, N), then the clamp array ``clamp`` (clamp and
    gate: runtime.kernels.conv_epilogue)."""
    (m, depth), n = a.shape, b.shape[0]
    bias = NO_BIAS if bias is None else bias
    finish = [*(NONE if residual is None else residual.ref()), *(NONE if clamp is None else ctx.pin(clamp)),
              residual is not None, clamp is not None]
    ctx.emit(DOT_ROWS, [*a.ref(), m, depth, *ctx.pin(b), n, *out.ref(), *ctx.pin(bias), bias.size, *finish], n,
             max(1, (1 << 14) // depth))


@jit
def _add_bias(out, bias, lo, hi):
    """out[:, lo:hi] += bias[lo:hi] (no bias: empty); not fastmath, so each
    sum is the one float32 add numpy's would be."""
    if bias.shape[0] == 0:
        return
    for i in range(out.shape[0]):
        for j in range(lo, hi):
            out[i, j] += bias[j]


@jit
def dot_rows(start, stop, a, b, out, bias):
    """out[i, j] = a[i] . b[j] (+ bias[j]) for the rows j of b in [start,
    stop), the rows of ``a``, ``b`` and ``out`` contiguous. Each dot product
    is summed in one order on every CPU (runtime.kernels.ordered)."""
    rows, depth = a.shape
    stop = min(stop, b.shape[0])
    if (depth > 1 and (a.strides[1] != 4 or b.strides[1] != 4)) or (out.shape[1] > 1 and out.strides[1] != 4):
        raise KernelError("dot_rows: the rows of a, b and out must be contiguous")  # (a stride of a length 1 is moot)
    if start < stop:
        dot_rows_f32(depth, rows, stop - start, a.strides[0] // 4, b.strides[0] // 4, out.strides[0] // 4,
                     a.ctypes.data, b.ctypes.data + start * b.strides[0], out.ctypes.data + start * 4)
    _add_bias(out, bias, start, stop)


@jit(fastmath=True)
def _axpy_columns(start, stop, a, b, out, bias):
    """out[i, cols] += a[i, k] * b[k, cols] over every k (then + bias[cols]),
    for the column chunks [start, stop) of ``COLUMN_CHUNK`` columns."""
    rows, depth = a.shape
    n = b.shape[1]
    for chunk in range(start, stop):
        lo = chunk * COLUMN_CHUNK
        hi = min(n, lo + COLUMN_CHUNK)
        if lo >= hi:
            break
        for k in range(depth):
            w = b[k, lo:hi]
            for i in range(rows):
                scale = a[i, k]
                y = out[i, lo:hi]
                for j in range(hi - lo):
                    y[j] += scale * w[j]
        _add_bias(out, bias, lo, hi)


# ---------------------------------------------------------------- team drivers (runtime.parallel)
@drives(dot_rows)
@jit
def _dot_rows_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(dot_rows, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)


@drives(_axpy_columns)
@jit
def _axpy_columns_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(_axpy_columns, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)
