"""Op definitions: shape and data movement."""
from __future__ import annotations

import numpy as np

from ir.ops.common import const_ints
from ir.registry import InferContext, Pattern, register_op
from ir.types import TensorType


def _shape(ctx: InferContext) -> list[TensorType]:
    rank = ctx.type(0).rank
    start, end = ctx.attrs["start"], ctx.attrs["end"]
    start = min(max(start + rank if start < 0 else start, 0), rank)
    end = rank if end is None else min(max(end + rank if end < 0 else end, 0), rank)
    return [TensorType([max(end - start, 0)], np.int64)]


def _reshape(ctx: InferContext) -> list[TensorType]:
    data = ctx.type(0)
    target = const_ints(ctx, 1, "shape")
    if target is None:
        rank = ctx.shape(1)[0]
        if rank is None:
            raise ctx.error("the shape input must have a known length")
        return [TensorType([None] * rank, data.dtype)]
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


register_op("Shape", _shape, Pattern.OPAQUE, attrs={"start": 0, "end": None})
register_op("Reshape", _reshape, Pattern.INJECTIVE, inputs=2, attrs={"allowzero": 0})
