"""Op definitions: reductions (ReduceX with axes as an optional input),
ArgMax/ArgMin, TopK and CumSum."""
from __future__ import annotations

import numpy as np

from ir.ops.common import const_ints, normalize_axes, normalize_axis
from ir.registry import InferContext, Pattern, register_op
from ir.types import Dim, TensorType

REDUCE_OPS = ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")


def _reduced_shape(shape: tuple, axes: list[int], keepdims: bool) -> tuple:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _reduce(ctx: InferContext) -> list[TensorType]:
    """Axes come from input 1 (omitted or empty: all axes, or none with
    noop_with_empty_axes). Runtime axes give data-dependent dims."""
    data = ctx.type(0)
    keepdims = bool(ctx.attrs["keepdims"])
    noop = bool(ctx.attrs["noop_with_empty_axes"])
    if not ctx.has(1):
        axes = []
    else:
        if ctx.type(1).rank != 1 or ctx.type(1).dtype != np.int64:
            raise ctx.error(f"axes (input 1) must be a 1-D int64 tensor, got {ctx.type(1)}")
        axes = const_ints(ctx, 1, "axes")
        if axes is None:
            return [data.with_shape(_runtime_axes_shape(ctx, data, keepdims, noop))]
    if not axes:
        if noop:
            return [data]
        axes = list(range(data.rank))
    axes = normalize_axes(ctx, axes, data.rank)
    return [data.with_shape(_reduced_shape(data.shape, axes, keepdims))]


def _runtime_axes_shape(ctx: InferContext, data: TensorType, keepdims: bool, noop: bool) -> tuple[Dim, ...]:
    """Output shape when the axes are only known at run time."""
    count = ctx.shape(1)[0]
    if count == 0:
        return data.shape if noop else _reduced_shape(data.shape, list(range(data.rank)), keepdims)
    if keepdims:
        return tuple(1 if d == 1 else None for d in data.shape)
    if count is None:
        raise ctx.error("with keepdims=0 the axes input needs a known length to give the output rank")
    if count > data.rank:
        raise ctx.error(f"axes (input 1) has {count} entries, more than the input's rank {data.rank}")
    return (None,) * (data.rank - count)


def _arg_reduce(ctx: InferContext) -> list[TensorType]:
    data = ctx.type(0)
    axis = normalize_axis(ctx, ctx.attrs["axis"], data.rank)
    if data.shape[axis] == 0:
        raise ctx.error(f"cannot take {ctx.op} over axis {axis}, which has size 0")
    shape = _reduced_shape(data.shape, [axis], bool(ctx.attrs["keepdims"]))
    return [TensorType(shape, np.int64)]


def _topk(ctx: InferContext) -> list[TensorType]:
    data = ctx.type(0)
    axis = normalize_axis(ctx, ctx.attrs["axis"], data.rank)
    k_type = ctx.type(1)
    if k_type.dtype != np.int64 or k_type.numel not in (1, None) or k_type.rank > 1:
        raise ctx.error(f"K (input 1) must be an int64 tensor holding one value, got {k_type}")
    k = const_ints(ctx, 1, "K")
    dim = data.shape[axis]
    if k is not None:
        k = k[0]
        if k < 0 or (dim is not None and k > dim):
            raise ctx.error(f"K={k} is out of range for axis {axis} of size {dim}")
    shape = data.shape[:axis] + (k,) + data.shape[axis + 1:]
    return [TensorType(shape, data.dtype), TensorType(shape, np.int64)]


def _cumsum(ctx: InferContext) -> list[TensorType]:
    data = ctx.type(0)
    axis_type = ctx.type(1)
    if axis_type.dtype not in (np.int32, np.int64) or axis_type.rank > 1 or axis_type.numel not in (1, None):
        raise ctx.error(f"axis (input 1) must be an int32/int64 scalar, got {axis_type}")
    axis = const_ints(ctx, 1, "axis")
    if axis is not None:
        normalize_axis(ctx, axis[0], data.rank)
    return [data]


for _op in REDUCE_OPS:
    register_op(_op, _reduce, Pattern.REDUCTION, inputs=(1, 2), attrs={"keepdims": 1, "noop_with_empty_axes": 0})
for _op in ("ArgMax", "ArgMin"):
    register_op(_op, _arg_reduce, Pattern.REDUCTION, attrs={"axis": 0, "keepdims": 1, "select_last_index": 0})
register_op("TopK", _topk, Pattern.OPAQUE, inputs=2, outputs=2, attrs={"axis": -1, "largest": 1},
            doc="Always sorted, ties by lower index (ONNX's sorted=0 leaves the order open).")
register_op("CumSum", _cumsum, Pattern.OPAQUE, inputs=2, attrs={"exclusive": 0, "reverse": 0})
