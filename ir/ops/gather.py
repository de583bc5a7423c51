"""Op definitions: gather, scatter, one-hot and compress."""
from __future__ import annotations

import numpy as np

from ir.ops.common import normalize_axis
from ir.registry import InferContext, Pattern, register_op
from ir.types import Dim, TensorType
from runtime.errors import KernelError
from runtime.kernels.gather import normalize_indices, onehot_depth

INDEX_TYPES = (np.dtype(np.int32), np.dtype(np.int64))
REDUCTIONS = ("none", "add", "mul", "max", "min")


def _indices(ctx: InferContext, index: int, name: str = "indices") -> TensorType:
    t = ctx.type(index)
    if t.dtype not in INDEX_TYPES:
        raise ctx.error(f"{name} (input {index}) must be int32 or int64, got {t}")
    return t


def _merge(ctx: InferContext, a: Dim, b: Dim, what: str) -> Dim:
    """One dim known from two places: equal when both are known."""
    if a is not None and b is not None and a != b:
        raise ctx.error(f"{what}: {a} != {b}")
    return a if a is not None else b


def _check_const_indices(ctx: InferContext, size: Dim, axis: int) -> None:
    """Constant indices out of range are a compile-time error (when the axis is known)."""
    value = ctx.const(1)
    if value is not None and size is not None:
        try:
            normalize_indices(value, size, f"indices (axis {axis})")
        except KernelError as exc:
            raise ctx.error(str(exc)) from None


def _gather(ctx: InferContext) -> list[TensorType]:
    data, indices = ctx.type(0), _indices(ctx, 1)
    axis = normalize_axis(ctx, ctx.attrs["axis"], data.rank)
    _check_const_indices(ctx, data.shape[axis], axis)
    shape = data.shape[:axis] + indices.shape + data.shape[axis + 1:]
    return [TensorType(shape, data.dtype)]


def _gather_elements(ctx: InferContext) -> list[TensorType]:
    data, indices = ctx.type(0), _indices(ctx, 1)
    if data.rank != indices.rank or data.rank == 0:
        raise ctx.error(f"data {data} and indices {indices} must have one rank >= 1")
    axis = normalize_axis(ctx, ctx.attrs["axis"], data.rank)
    _check_not_larger(ctx, indices, data, axis)
    _check_const_indices(ctx, data.shape[axis], axis)
    return [TensorType(indices.shape, data.dtype)]


def _check_not_larger(ctx: InferContext, indices: TensorType, data: TensorType, axis: int) -> None:
    for d, (i, n) in enumerate(zip(indices.shape, data.shape)):
        if d != axis and i is not None and n is not None and i > n:
            raise ctx.error(f"indices {indices} exceed data {data} on axis {d}")


def _nd_depth(ctx: InferContext, data: TensorType, indices: TensorType, batch_dims: int) -> int:
    if indices.rank < 1 or not 0 <= batch_dims < min(data.rank, indices.rank):
        raise ctx.error(f"batch_dims={batch_dims} must be less than the ranks of data {data} and indices {indices}")
    k = indices.shape[-1]
    if k is None:
        raise ctx.error(f"the last dim of indices {indices} must be known")
    if k > data.rank - batch_dims:
        raise ctx.error(f"indices {indices}: last dim {k} exceeds the rank of data {data} minus batch_dims")
    return k


def _gather_nd(ctx: InferContext) -> list[TensorType]:
    data, indices = ctx.type(0), _indices(ctx, 1)
    b = ctx.attrs["batch_dims"]
    k = _nd_depth(ctx, data, indices, b)
    batch = tuple(_merge(ctx, i, d, f"batch dim {n} of indices and data")
                  for n, (i, d) in enumerate(zip(indices.shape[:b], data.shape[:b])))
    shape = batch + indices.shape[b:-1] + data.shape[b + k:]
    return [TensorType(shape, data.dtype)]


def _reduction(ctx: InferContext) -> None:
    if ctx.attrs["reduction"] not in REDUCTIONS:
        raise ctx.error(f"reduction={ctx.attrs['reduction']!r} is not one of {list(REDUCTIONS)}")


def _updates(ctx: InferContext, data: TensorType) -> TensorType:
    updates = ctx.type(2)
    if updates.dtype != data.dtype:
        raise ctx.error(f"updates {updates} must have the dtype of data {data}")
    return updates


def _scatter_elements(ctx: InferContext) -> list[TensorType]:
    _reduction(ctx)
    data, indices = ctx.type(0), _indices(ctx, 1)
    updates = _updates(ctx, data)
    if not data.rank == indices.rank == updates.rank or data.rank == 0:
        raise ctx.error(f"data {data}, indices {indices} and updates {updates} must have one rank >= 1")
    for d, (i, u) in enumerate(zip(indices.shape, updates.shape)):
        _merge(ctx, i, u, f"dim {d} of indices and updates")
    axis = normalize_axis(ctx, ctx.attrs["axis"], data.rank)
    _check_not_larger(ctx, indices, data, axis)
    return [data]


def _scatter_nd(ctx: InferContext) -> list[TensorType]:
    _reduction(ctx)
    data, indices = ctx.type(0), _indices(ctx, 1)
    updates = _updates(ctx, data)
    k = _nd_depth(ctx, data, indices, 0)
    want = indices.shape[:-1] + data.shape[k:]
    if updates.rank != len(want):
        raise ctx.error(f"updates {updates} must have rank {len(want)} (indices {indices}, data {data})")
    for d, (u, w) in enumerate(zip(updates.shape, want)):
        _merge(ctx, u, w, f"dim {d} of updates and of indices/data")
    return [data]


def _one_hot(ctx: InferContext) -> list[TensorType]:
    indices, values = ctx.type(0), ctx.type(2)
    rank = indices.rank
    axis = ctx.attrs["axis"]
    if not -rank - 1 <= axis <= rank:
        raise ctx.error(f"axis={axis} is out of range for an output of rank {rank + 1}")
    axis %= rank + 1
    depth = ctx.const(1)
    if depth is not None:
        try:
            depth = onehot_depth(depth)
        except KernelError as exc:
            raise ctx.error(str(exc)) from None
    shape = indices.shape[:axis] + (depth,) + indices.shape[axis:]
    return [TensorType(shape, values.dtype)]


def _compress(ctx: InferContext) -> list[TensorType]:
    data, cond = ctx.type(0), ctx.type(1)
    if cond.dtype != np.dtype(bool) or cond.rank != 1:
        raise ctx.error(f"condition must be a 1-D bool tensor, got {cond}")
    value = ctx.const(1)
    kept = None if value is None else int(np.count_nonzero(value))
    axis = ctx.attrs["axis"]
    if axis is None:
        return [TensorType([kept], data.dtype)]
    axis = normalize_axis(ctx, axis, data.rank)
    if data.shape[axis] is not None and cond.shape[0] is not None and cond.shape[0] > data.shape[axis]:
        raise ctx.error(f"condition {cond} is longer than axis {axis} of {data}")
    return [TensorType(data.shape[:axis] + (kept,) + data.shape[axis + 1:], data.dtype)]


register_op("Gather", _gather, Pattern.INJECTIVE, inputs=2, attrs={"axis": 0})
register_op("GatherElements", _gather_elements, Pattern.INJECTIVE, inputs=2, attrs={"axis": 0})
register_op("GatherND", _gather_nd, Pattern.INJECTIVE, inputs=2, attrs={"batch_dims": 0})
register_op("ScatterElements", _scatter_elements, Pattern.OPAQUE, inputs=3, attrs={"axis": 0, "reduction": "none"})
register_op("ScatterND", _scatter_nd, Pattern.OPAQUE, inputs=3, attrs={"reduction": "none"})
register_op("OneHot", _one_hot, Pattern.INJECTIVE, inputs=3, attrs={"axis": -1})
register_op("Compress", _compress, Pattern.OPAQUE, inputs=2, attrs={"axis": None})
