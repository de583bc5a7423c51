"""ONNX import handlers: reductions and TopK.

* ReduceX: ``axes`` was an attribute before opset 18 (ReduceSum: before 13)
  and is an optional input since; the attribute becomes a constant input.
  Old versions have no noop_with_empty_axes (its default 0 is their meaning).
* TopK before opset 10: ``k`` attribute -> constant input. ``sorted`` is
  dropped: the kernel always sorts, a valid answer for sorted=0 too.
"""
from __future__ import annotations

import numpy as np

from compiler.frontend.context import NodeContext, default_handler, handler
from ir.ops.reduce import REDUCE_OPS

AXES_INPUT_SINCE = {op: 18 for op in REDUCE_OPS} | {"ReduceSum": 13}
"""The opset version from which each reduction takes ``axes`` as an input."""

TOPK_K_INPUT_SINCE = 10


@handler(*REDUCE_OPS)
def _reduce(ctx: NodeContext) -> None:
    if ctx.op_version >= AXES_INPUT_SINCE[ctx.op_type]:
        default_handler(ctx)
        return
    axes = ctx.pop_attr("axes")
    inputs = [ctx.input(0)]
    if axes is not None:
        inputs.append(ctx.const(np.array(axes, np.int64).reshape(-1)))
    ctx.inputs = inputs
    default_handler(ctx)


@handler("TopK")
def _top_k(ctx: NodeContext) -> None:
    if ctx.op_version < TOPK_K_INPUT_SINCE:
        k = ctx.pop_attr("k")
        if k is None:
            raise ctx.error("attribute 'k' is required before opset 10")
        ctx.inputs = [ctx.input(0), ctx.const(np.array([k], np.int64))]
    ctx.pop_attr("sorted")
    default_handler(ctx)
