"""Op definitions: element-wise math, activations, logic and comparisons."""
from __future__ import annotations

from ir.ops.common import broadcast_shapes, same_as_input
from ir.registry import InferContext, Pattern, register_op
from ir.types import TensorType


def _broadcast_same_dtype(ctx: InferContext) -> list[TensorType]:
    dtypes = {t.dtype for t in ctx.types if t is not None}
    if len(dtypes) != 1:
        raise ctx.error(f"inputs must share one dtype, got {[str(t) for t in ctx.types]}")
    return [TensorType(broadcast_shapes(ctx, *(t.shape for t in ctx.types)), dtypes.pop())]


register_op("Relu", same_as_input(), Pattern.ELEMWISE)
register_op("Add", _broadcast_same_dtype, Pattern.BROADCAST, inputs=2)
