"""CPU kernels: reductions, ArgMax/ArgMin, TopK and CumSum.

These are numpy's own reductions, called so that they have ONNX's exact
semantics: the result keeps the input dtype, an empty reduction gives the
identity element (0 for sums, 1 for products, -inf/+inf or the integer
extremes for max/min, -inf for the log reductions), and empty axes with
noop_with_empty_axes=1 apply the element-wise part only (ReduceSumSquare
squares, ReduceLogSum takes the log), as the onnx reference does.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from runtime.errors import KernelError
from runtime.kernels.registry import kernel


def _axes(op: str, data: np.ndarray, axes_input: np.ndarray | None, noop: bool) -> tuple[int, ...]:
    """The axes input validated and made non-negative; all axes when it is
    omitted or empty, unless ``noop``."""
    if axes_input is None or axes_input.size == 0:
        return () if noop else tuple(range(data.ndim))
    rank = data.ndim
    axes = [int(a) for a in np.asarray(axes_input).reshape(-1)]
    bad = [a for a in axes if not -rank <= a < rank]
    if bad:
        raise KernelError(f"{op}: axes {axes} (input 1) are out of range for rank {rank}")
    axes = [a % rank for a in axes]
    if len(set(axes)) != len(axes):
        raise KernelError(f"{op}: axes {axes} (input 1) repeat an axis")
    return tuple(axes)


def _axis(op: str, axis: int, rank: int) -> int:
    """``axis`` made non-negative; out of range is an error (the binary is untrusted)."""
    if not -rank <= axis < rank:
        raise KernelError(f"{op}: axis={axis} is out of range for rank {rank}")
    return axis % rank


def _lowest(dtype: np.dtype):
    if dtype == np.bool_:
        return False
    return np.iinfo(dtype).min if dtype.kind in "iu" else -np.inf


def _highest(dtype: np.dtype):
    if dtype == np.bool_:
        return True
    return np.iinfo(dtype).max if dtype.kind in "iu" else np.inf


def _log_sum_exp(x: np.ndarray, axes: tuple, keepdims: bool) -> np.ndarray:
    """log(sum(exp(x))), shifted by the largest finite element of each set so
    that it neither overflows nor underflows."""
    finite = np.where(np.isfinite(x), x, x.dtype.type(-np.inf))
    peak = np.maximum.reduce(finite, axis=axes, keepdims=True, initial=-np.inf)
    peak = np.where(np.isfinite(peak), peak, x.dtype.type(0))
    total = np.sum(np.exp(x - peak), axis=axes, keepdims=True, dtype=x.dtype)
    result = np.log(total) + peak
    return result if keepdims else np.squeeze(result, axis=axes)


def _reduce_value(op: str, x: np.ndarray, axes: tuple, keepdims: bool) -> np.ndarray:
    dtype = x.dtype
    if op == "ReduceSum":
        return np.sum(x, axis=axes, keepdims=keepdims, dtype=dtype)
    if op == "ReduceMean":
        count = math.prod(x.shape[a] for a in axes)
        return np.sum(x, axis=axes, keepdims=keepdims, dtype=dtype) / count
    if op == "ReduceMax":
        return np.maximum.reduce(x, axis=axes, keepdims=keepdims, initial=_lowest(dtype))
    if op == "ReduceMin":
        return np.minimum.reduce(x, axis=axes, keepdims=keepdims, initial=_highest(dtype))
    if op == "ReduceProd":
        return np.prod(x, axis=axes, keepdims=keepdims, dtype=dtype)
    if op == "ReduceL1":
        return np.sum(np.abs(x), axis=axes, keepdims=keepdims, dtype=dtype)
    if op == "ReduceL2":
        return np.sqrt(np.sum(np.square(x), axis=axes, keepdims=keepdims))
    if op == "ReduceSumSquare":
        return np.sum(np.square(x), axis=axes, keepdims=keepdims, dtype=dtype)
    if op == "ReduceLogSum":
        return np.log(np.sum(x, axis=axes, keepdims=keepdims, dtype=dtype))
    if op == "ReduceLogSumExp":
        return _log_sum_exp(x, axes, keepdims)
    raise KernelError(f"unknown reduction {op!r}")


def _reduce(op: str, inputs, attrs) -> tuple[np.ndarray]:
    """One ReduceX kernel: validate the axes, reduce, keep the input dtype."""
    x = inputs[0]
    axes = _axes(op, x, inputs[1] if len(inputs) > 1 else None, bool(attrs["noop_with_empty_axes"]))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        result = np.asarray(_reduce_value(op, x, axes, bool(attrs["keepdims"]))).astype(x.dtype, copy=False)
    return (result,)


for _op in ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2",
            "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"):
    kernel(_op)(functools.partial(_reduce, _op))


# ---------------------------------------------------------------- ArgMax, ArgMin
def _arg_reduce(op: str, inputs, attrs) -> tuple[np.ndarray]:
    (x,) = inputs
    axis = _axis(op, attrs["axis"], x.ndim)
    if x.shape[axis] == 0:
        raise KernelError(f"{op}: axis {axis} has size 0, there is no {op[3:].lower()}imum to index")
    pick = np.argmax if op == "ArgMax" else np.argmin
    if attrs["select_last_index"]:
        index = x.shape[axis] - 1 - pick(np.flip(x, axis), axis=axis)
    else:
        index = pick(x, axis=axis)
    if attrs["keepdims"]:
        index = np.expand_dims(index, axis)
    return (np.asarray(index, dtype=np.int64),)


@kernel("ArgMax")
def arg_max(inputs, attrs):
    return _arg_reduce("ArgMax", inputs, attrs)


@kernel("ArgMin")
def arg_min(inputs, attrs):
    return _arg_reduce("ArgMin", inputs, attrs)


# ---------------------------------------------------------------- TopK, CumSum
def _single_int(op: str, array: np.ndarray, name: str) -> int:
    array = np.asarray(array)
    if array.size != 1 or array.dtype.kind not in "iu":
        raise KernelError(f"{op}: {name} (input 1) must be one integer, got {array.dtype} of shape {list(array.shape)}")
    return int(array.reshape(-1)[0])


@kernel("TopK")
def top_k(inputs, attrs):
    """The k largest (or smallest) along ``axis``, sorted; equal values keep
    their index order (lower index first), NaN counts as the largest."""
    x, k_input = inputs
    axis = _axis("TopK", attrs["axis"], x.ndim)
    k = _single_int("TopK", k_input, "K")
    size = x.shape[axis]
    if not 0 <= k <= size:
        raise KernelError(f"TopK: K={k} is out of range for axis {axis} of size {size}")
    if attrs["largest"]:
        # A stable ascending sort of the reversed axis, read backwards: descending
        # values, ties by increasing original index.
        order = np.argsort(np.flip(x, axis), axis=axis, kind="stable")
        order = size - 1 - np.flip(order, axis)
    else:
        order = np.argsort(x, axis=axis, kind="stable")
    indices = np.take(order, np.arange(k), axis=axis)
    return np.take_along_axis(x, indices, axis=axis), indices.astype(np.int64, copy=False)


def _shift_one(x: np.ndarray, axis: int) -> np.ndarray:
    """``x`` moved one step along ``axis``, a zero entering first (exclusive scan)."""
    out = np.zeros_like(x)
    dst = [slice(None)] * x.ndim
    src = list(dst)
    dst[axis], src[axis] = slice(1, None), slice(None, -1)
    out[tuple(dst)] = x[tuple(src)]
    return out


@kernel("CumSum")
def cum_sum(inputs, attrs):
    x, axis_input = inputs
    axis = _axis("CumSum", _single_int("CumSum", axis_input, "axis"), x.ndim)
    data = np.flip(x, axis) if attrs["reverse"] else x
    out = np.cumsum(data, axis=axis, dtype=x.dtype)
    if attrs["exclusive"]:
        out = _shift_one(out, axis)
    if attrs["reverse"]:
        out = np.flip(out, axis)
    return (np.ascontiguousarray(out),)
