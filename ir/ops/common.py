"""Helpers shared by the type rules of many ops."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ir.registry import Derived, InferContext
from ir.types import Dim, TensorType
from runtime.kernels.nn_window import out_size

FLOAT_TYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16))

ONES_PER_AXIS = Derived(lambda types: [1] * (types[0].rank - 2), "1 per spatial axis of input 0")
ZEROS_PER_AXIS = Derived(lambda types: [0] * (types[0].rank - 2), "0 per spatial axis of input 0")
ZERO_PADS = Derived(lambda types: [0] * 2 * (types[0].rank - 2), "0 at both ends of each spatial axis")


def broadcast_shapes(ctx: InferContext, *shapes: Sequence[Dim]) -> tuple[Dim, ...]:
    """Numpy (multidirectional) broadcasting, with None for data-dependent dims."""
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for axis in range(rank):
        dims = [s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise ctx.error(f"shapes {[tuple(s) for s in shapes]} do not broadcast")
        if known:
            out.append(known.pop())
        elif any(d is None for d in dims):
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


def normalize_axis(ctx: InferContext, axis: int, rank: int, name: str = "axis") -> int:
    """An axis in [-rank, rank) turned non-negative; anything else is an error."""
    if not -rank <= axis < rank:
        raise ctx.error(f"{name}={axis} is out of range for rank {rank}")
    return axis % rank


def normalize_axes(ctx: InferContext, axes, rank: int, name: str = "axes") -> list[int]:
    out = [normalize_axis(ctx, int(a), rank, name) for a in axes]
    if len(set(out)) != len(out):
        raise ctx.error(f"{name}={list(axes)} repeats an axis")
    return out


def same_as_input(index: int = 0):
    """Type rule: one output with the type of input ``index``."""
    def rule(ctx: InferContext) -> list[TensorType]:
        return [ctx.type(index)]
    return rule


def require_float(ctx: InferContext, index: int = 0) -> TensorType:
    t = ctx.type(index)
    if t.dtype not in FLOAT_TYPES:
        raise ctx.error(f"input {index} must be a float tensor, got {t}")
    return t


def require_rank(ctx: InferContext, index: int, low: int, high: int | None = None) -> TensorType:
    t = ctx.type(index)
    high = low if high is None else high
    if not low <= t.rank <= high:
        want = str(low) if low == high else f"{low} to {high}"
        raise ctx.error(f"input {index} must have rank {want}, got {t}")
    return t


def const_ints(ctx: InferContext, index: int, name: str) -> list[int] | None:
    """A constant integer input as a list (None when it is not a constant)."""
    value = ctx.const(index)
    if value is None:
        return None
    if value.dtype.kind not in "iu":
        raise ctx.error(f"{name} (input {index}) must be an integer tensor, got {value.dtype}")
    return [int(v) for v in np.asarray(value).reshape(-1)]


def window_out_dim(size: Dim, kernel: int, stride: int, pad_begin: int, pad_end: int,
                   dilation: int = 1, ceil_mode: bool = False) -> Dim:
    """Output length of a sliding window (conv, pooling), None when the input
    length is data-dependent. The kernels' own function: one definition."""
    if size is None:
        return None
    return out_size(size, kernel, stride, pad_begin, pad_end, dilation, ceil_mode)
