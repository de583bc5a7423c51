"""Op definitions: shape and data movement.

Parameter inputs (Reshape shape, Slice starts, Pad pads, Squeeze axes...) may
be constants, giving static output dims, or runtime tensors, giving None dims
with the rank taken from the parameter's length. Parameter semantics (slice
clamping, split sizes, Range length...) live once, in runtime.kernels.shape;
the rules here call them so that compile time and run time agree.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np

from ir.ops.common import broadcast_shapes, normalize_axis
from ir.registry import INFINITE, REQUIRED, InferContext, Pattern, register_op
from ir.types import Dim, TensorType
from runtime.errors import KernelError
from runtime.kernels import shape as sem

INT64 = np.dtype(np.int64)
RANGE_TYPES = tuple(np.dtype(t) for t in (np.float32, np.float64, np.float16, np.int16, np.int32, np.int64))


# ---------------------------------------------------------------- helpers
@contextmanager
def _checked(ctx: InferContext):
    """Turn a parameter error from the shared semantics into a ShapeError."""
    try:
        yield
    except KernelError as exc:
        raise ctx.error(str(exc)) from None


def _param(ctx: InferContext, index: int, name: str) -> list[int] | None:
    """A constant integer parameter input as ints; None when it is a runtime tensor."""
    value = ctx.const(index)
    if value is None:
        return None
    with _checked(ctx):
        return sem.int_list(value, f"{name} (input {index})")


def _param_len(ctx: InferContext, index: int, name: str) -> int:
    """The number of values of a 1-D parameter input, constant or not."""
    t = ctx.type(index)
    if t.dtype.kind not in "iu":
        raise ctx.error(f"{name} (input {index}) must be an integer tensor, got {t}")
    if t.rank > 1:
        raise ctx.error(f"{name} (input {index}) must be 1-D, got {t}")
    length = t.shape[0] if t.rank == 1 else 1
    if length is None:
        raise ctx.error(f"{name} (input {index}) must have a known length, got {t}")
    return length


def _product(dims) -> Dim:
    return None if any(d is None for d in dims) else math.prod(dims)


def _require_scalar(ctx: InferContext, index: int, name: str) -> TensorType:
    t = ctx.type(index)
    if t.numel not in (1, None) or t.rank > 1:
        raise ctx.error(f"{name} (input {index}) must be a scalar, got {t}")
    return t


# ---------------------------------------------------------------- shape queries
def _shape(ctx: InferContext) -> list[TensorType]:
    rank = ctx.type(0).rank
    start, end = ctx.attrs["start"], ctx.attrs["end"]
    start = min(max(start + rank if start < 0 else start, 0), rank)
    end = rank if end is None else min(max(end + rank if end < 0 else end, 0), rank)
    return [TensorType([max(end - start, 0)], np.int64)]


def _size(ctx: InferContext) -> list[TensorType]:
    ctx.type(0)
    return [TensorType([], np.int64)]


# ---------------------------------------------------------------- views
def _reshape(ctx: InferContext) -> list[TensorType]:
    data = ctx.type(0)
    target = _param(ctx, 1, "shape")
    if target is None:
        return [TensorType([None] * _param_len(ctx, 1, "shape"), data.dtype)]
    allow_zero = ctx.attrs["allowzero"]
    out: list = []
    for i, d in enumerate(target):
        if d == 0 and not allow_zero:
            if i >= data.rank:
                raise ctx.error(f"shape {target}: 0 at position {i} copies a dim the input does not have")
            out.append(data.shape[i])
        else:
            out.append(d)
    if out.count(-1) > 1:
        raise ctx.error(f"shape {target} has more than one -1")
    if -1 in out:
        known = [d for d in out if d != -1]
        if data.is_static and all(d is not None for d in known):
            rest = int(np.prod(known, dtype=np.int64))
            total = data.numel
            if rest == 0 or total % rest:
                raise ctx.error(f"cannot reshape {data} to {target}")
            out[out.index(-1)] = total // rest
        else:
            out[out.index(-1)] = None
    elif data.is_static and all(d is not None for d in out) and int(np.prod(out, dtype=np.int64)) != data.numel:
        raise ctx.error(f"cannot reshape {data} to {target}")
    if any(d is not None and d < 0 for d in out):
        raise ctx.error(f"shape {target} has a negative dim other than -1")
    return [TensorType(out, data.dtype)]


def _flatten(ctx: InferContext) -> list[TensorType]:
    data = ctx.type(0)
    with _checked(ctx):
        axis = sem.flatten_axis(ctx.attrs["axis"], data.rank)
    return [data.with_shape([_product(data.shape[:axis]), _product(data.shape[axis:])])]


def _transpose(ctx: InferContext) -> list[TensorType]:
    data = ctx.type(0)
    with _checked(ctx):
        perm = sem.transpose_perm(ctx.attrs["perm"], data.rank)
    return [data.with_shape([data.shape[p] for p in perm])]


def _squeeze(ctx: InferContext) -> list[TensorType]:
    """Without axes every static 1 goes; a data-dependent dim is assumed not
    to be 1 (the IR has no unknown ranks; onnx infers no shape there)."""
    data = ctx.type(0)
    if not ctx.has(1):
        return [data.with_shape([d for d in data.shape if d != 1])]
    axes = _param(ctx, 1, "axes")
    if axes is None:
        return [data.with_shape([None] * (data.rank - _param_len(ctx, 1, "axes")))]
    with _checked(ctx):
        axes = sem.normalize_axes(axes, data.rank, "Squeeze axes")
    wide = [a for a in axes if data.shape[a] not in (1, None)]
    if wide:
        raise ctx.error(f"axes {wide} of input {data} do not have size 1")
    return [data.with_shape([d for i, d in enumerate(data.shape) if i not in axes])]


def _unsqueeze(ctx: InferContext) -> list[TensorType]:
    data = ctx.type(0)
    axes = _param(ctx, 1, "axes")
    if axes is None:
        return [data.with_shape([None] * (data.rank + _param_len(ctx, 1, "axes")))]
    with _checked(ctx):
        return [data.with_shape(sem.unsqueeze_shape(data.shape, axes))]


def _dropout(ctx: InferContext) -> list[TensorType]:
    data = ctx.type(0)
    if ctx.has(1):
        _require_scalar(ctx, 1, "ratio")
    if ctx.has(2):
        _require_scalar(ctx, 2, "training_mode")
    return [data]


def _identity(ctx: InferContext) -> list[TensorType]:
    return [ctx.type(0)]


# ---------------------------------------------------------------- slicing and joining
def _slice(ctx: InferContext) -> list[TensorType]:
    data = ctx.type(0)
    count = _param_len(ctx, 1, "starts")
    starts, ends = _param(ctx, 1, "starts"), _param(ctx, 2, "ends")
    axes = _param(ctx, 3, "axes") if ctx.has(3) else list(range(count))
    steps = _param(ctx, 4, "steps") if ctx.has(4) else [1] * count
    if axes is None:
        return [data.with_shape([None] * data.rank)]
    out = list(data.shape)
    if starts is None or ends is None or steps is None:
        with _checked(ctx):
            for axis in sem.normalize_axes(axes, data.rank, "Slice axes"):
                out[axis] = None
        return [data.with_shape(out)]
    with _checked(ctx):
        for axis, start, end, step in sem.slice_params(data.rank, starts, ends, axes, steps):
            out[axis] = None if out[axis] is None else sem.slice_bounds(out[axis], start, end, step)[2]
    return [data.with_shape(out)]


def _concat(ctx: InferContext) -> list[TensorType]:
    types = [ctx.type(i) for i in range(len(ctx))]
    first = types[0]
    if first.rank == 0:
        raise ctx.error("inputs must have rank 1 or more, got a scalar")
    axis = normalize_axis(ctx, ctx.attrs["axis"], first.rank)
    out = list(first.shape)
    for i, t in enumerate(types[1:], 1):
        if t.dtype != first.dtype or t.rank != first.rank:
            raise ctx.error(f"input {i} ({t}) does not match input 0 ({first})")
        for k, d in enumerate(t.shape):
            if k == axis or d is None:
                continue
            if out[k] is not None and out[k] != d:
                raise ctx.error(f"input {i} ({t}) does not match input 0 ({first}) off axis {axis}")
            out[k] = d
    axis_dims = [t.shape[axis] for t in types]
    out[axis] = None if None in axis_dims else sum(axis_dims)
    return [first.with_shape(out)]


def _split(ctx: InferContext) -> list[TensorType]:
    data = ctx.type(0)
    axis = normalize_axis(ctx, ctx.attrs["axis"], data.rank)
    dim = data.shape[axis]
    wanted = ctx.attrs["num_outputs"]
    with _checked(ctx):
        sizes = _split_sizes(ctx, dim, wanted)
    for what, count in (("num_outputs", wanted), ("the node's output count", ctx.num_outputs)):
        if count is not None and count != len(sizes):
            raise ctx.error(f"the split makes {len(sizes)} outputs but {what} is {count}")
    return [data.with_shape(data.shape[:axis] + (s,) + data.shape[axis + 1:]) for s in sizes]


def _split_sizes(ctx: InferContext, dim: Dim, wanted: int | None) -> list[Dim]:
    if ctx.has(1):
        sizes = _param(ctx, 1, "split")
        if sizes is None:
            return [None] * _param_len(ctx, 1, "split")
        if dim is not None:
            sem.check_split(sizes, dim)
        return sizes
    count = wanted if wanted is not None else ctx.num_outputs
    if count is None:
        raise ctx.error("needs the split input or the num_outputs attribute")
    return [None] * count if dim is None else sem.split_sizes(dim, count)


def _pad(ctx: InferContext) -> list[TensorType]:
    data = ctx.type(0)
    mode = ctx.attrs["mode"]
    if mode not in sem.PAD_MODES:
        raise ctx.error(f"mode {mode!r} must be one of {sem.PAD_MODES}")
    if ctx.has(2):
        _require_scalar(ctx, 2, "constant_value")
    pads = _param(ctx, 1, "pads")
    axes = _param(ctx, 3, "axes") if ctx.has(3) else list(range(data.rank))
    if axes is None:
        return [data.with_shape([None] * data.rank)]
    with _checked(ctx):
        if pads is None:
            return [_pad_unknown(ctx, data, axes)]
        widths = sem.pad_widths(data.rank, pads, axes)
    out = [None if d is None else d + b + e for d, (b, e) in zip(data.shape, widths)]
    if any(d is not None and d < 0 for d in out):
        raise ctx.error(f"pads {pads} crop more than input {data} holds")
    empty = [i for i, (d, (b, e)) in enumerate(zip(data.shape, widths))
             if d is not None and d + min(b, 0) + min(e, 0) == 0 and max(b, 0) + max(e, 0) > 0]
    if empty and mode != "constant":
        raise ctx.error(f"mode {mode!r} cannot pad axes {empty} of {data}: they are empty")
    return [data.with_shape(out)]


def _pad_unknown(ctx: InferContext, data: TensorType, axes: list[int]) -> TensorType:
    """Runtime pads: the padded axes get None dims."""
    axes = sem.normalize_axes(axes, data.rank, "Pad axes")
    if _param_len(ctx, 1, "pads") != 2 * len(axes):
        raise ctx.error(f"pads (input 1) must hold 2 values per padded axis ({2 * len(axes)})")
    return data.with_shape([None if i in axes else d for i, d in enumerate(data.shape)])


def _expand(ctx: InferContext) -> list[TensorType]:
    data = ctx.type(0)
    target = _param(ctx, 1, "shape")
    if target is None:
        rank = max(data.rank, _param_len(ctx, 1, "shape"))
        padded = (None,) * (rank - data.rank) + data.shape
        return [data.with_shape([d if d is not None and d != 1 else None for d in padded])]
    if any(d < 0 for d in target):
        raise ctx.error(f"shape {target} holds a negative dim")
    return [data.with_shape(broadcast_shapes(ctx, data.shape, target))]


def _tile(ctx: InferContext) -> list[TensorType]:
    data = ctx.type(0)
    repeats = _param(ctx, 1, "repeats")
    if repeats is None:
        if _param_len(ctx, 1, "repeats") != data.rank:
            raise ctx.error(f"repeats (input 1) needs one value per axis of {data}")
        return [data.with_shape([None] * data.rank)]
    if len(repeats) != data.rank or any(r < 0 for r in repeats):
        raise ctx.error(f"repeats {repeats} must hold one non-negative value per axis of {data}")
    return [data.with_shape([None if d is None else d * r for d, r in zip(data.shape, repeats)])]


def _space_depth(to_depth: bool):
    def rule(ctx: InferContext) -> list[TensorType]:
        data = ctx.type(0)
        with _checked(ctx):
            return [data.with_shape(sem.space_depth_shape(data.shape, ctx.attrs["blocksize"], to_depth,
                                                          ctx.attrs["mode"]))]
    return rule


def _trilu(ctx: InferContext) -> list[TensorType]:
    data = ctx.type(0)
    if data.rank < 2:
        raise ctx.error(f"the input must have rank 2 or more, got {data}")
    if ctx.has(1):
        k = _require_scalar(ctx, 1, "k")
        if k.dtype != INT64:
            raise ctx.error(f"k (input 1) must be int64, got {k}")
    return [data]


# ---------------------------------------------------------------- generators
def _constant_of_shape(ctx: InferContext) -> list[TensorType]:
    with _checked(ctx):
        dtype = sem.constant_value(ctx.attrs["value"]).dtype
    dims = _param(ctx, 0, "shape")
    if dims is None:
        return [TensorType([None] * _param_len(ctx, 0, "shape"), dtype)]
    with _checked(ctx):
        sem.check_output_size(dims, "shape")
    return [TensorType(dims, dtype)]


def _range(ctx: InferContext) -> list[TensorType]:
    types = [_require_scalar(ctx, i, n) for i, n in enumerate(("start", "limit", "delta"))]
    dtype = types[0].dtype
    if dtype not in RANGE_TYPES or any(t.dtype != dtype for t in types):
        raise ctx.error(f"start, limit and delta must share one of {[t.name for t in RANGE_TYPES]}, "
                        f"got {[str(t) for t in types]}")
    values = [ctx.const(i) for i in range(3)]
    if any(v is None for v in values):
        return [TensorType([None], dtype)]
    with _checked(ctx):
        return [TensorType([sem.range_length(*(v.reshape(-1)[0].item() for v in values))], dtype)]


def _nonzero(ctx: InferContext) -> list[TensorType]:
    return [TensorType([ctx.type(0).rank, None], np.int64)]


register_op("Shape", _shape, Pattern.OPAQUE, attrs={"start": 0, "end": None})
register_op("Size", _size, Pattern.OPAQUE)
register_op("Reshape", _reshape, Pattern.INJECTIVE, inputs=2, attrs={"allowzero": 0})
register_op("Flatten", _flatten, Pattern.INJECTIVE, attrs={"axis": 1})
register_op("Transpose", _transpose, Pattern.INJECTIVE, attrs={"perm": None})
register_op("Squeeze", _squeeze, Pattern.INJECTIVE, inputs=(1, 2))
register_op("Unsqueeze", _unsqueeze, Pattern.INJECTIVE, inputs=2)
register_op("Identity", _identity, Pattern.ELEMWISE)
register_op("Dropout", _dropout, Pattern.ELEMWISE, inputs=(1, 3),
            doc="Inference Dropout (the identity); the mask output is built by the frontend.")
register_op("Slice", _slice, Pattern.INJECTIVE, inputs=(3, 5))
register_op("Concat", _concat, Pattern.INJECTIVE, inputs=(1, INFINITE), attrs={"axis": REQUIRED})
register_op("Split", _split, Pattern.INJECTIVE, inputs=(1, 2), outputs=(1, INFINITE),
            attrs={"axis": 0, "num_outputs": None})
register_op("Pad", _pad, Pattern.INJECTIVE, inputs=(2, 4), attrs={"mode": "constant"})
register_op("Expand", _expand, Pattern.INJECTIVE, inputs=2)
register_op("Tile", _tile, Pattern.INJECTIVE, inputs=2)
register_op("DepthToSpace", _space_depth(False), Pattern.INJECTIVE, attrs={"blocksize": REQUIRED, "mode": "DCR"})
register_op("SpaceToDepth", _space_depth(True), Pattern.INJECTIVE, attrs={"blocksize": REQUIRED, "mode": "DCR"})
register_op("Trilu", _trilu, Pattern.INJECTIVE, inputs=(1, 2), attrs={"upper": 1})
register_op("ConstantOfShape", _constant_of_shape, Pattern.OPAQUE, attrs={"value": None})
register_op("Range", _range, Pattern.OPAQUE, inputs=3, attrs={"stash_type": 1})
register_op("NonZero", _nonzero, Pattern.OPAQUE)
