"""ONNX import handlers: normalisation and softmax-like ops.

* BatchNormalization: only the inference form. Training (training_mode=1,
  or the running/saved statistics outputs of any opset) is unsupported;
  momentum only matters in training and is dropped. Opset 7's spatial=0
  (statistics per element of C x D1 x ... x Dn) is imported as a
  BatchNormalization over the input reshaped to (N, C*D1*...*Dn).
* Softmax, LogSoftmax, Hardmax before opset 13 coerce the input to 2-D at
  ``axis``: imported as Reshape -> op on the last axis -> Reshape back.
* LayerNormalization: only stash_type=1 (float32 statistics), the IR op's
  only form, so the attribute is dropped.
"""
from __future__ import annotations

import numpy as np

from compiler.frontend.context import NodeContext, default_handler, handler
from ir.graph import Value

COERCE_2D_BEFORE = 13
"""The first opset version of Softmax, LogSoftmax, Hardmax with a single axis."""

STASH_FLOAT = 1
"""The LayerNormalization stash_type Tessera computes in (ONNX's FLOAT)."""


@handler("BatchNormalization")
def _batch_normalization(ctx: NodeContext) -> None:
    if ctx.pop_attr("training_mode", 0):
        raise ctx.unsupported("training_mode=1 is not supported (only the inference form)")
    if sum(1 for name in ctx.output_names if name) > 1:
        raise ctx.unsupported("the training outputs (running or saved mean and variance) are not supported; "
                              "only the inference form with one output is")
    ctx.pop_attr("momentum")
    spatial = ctx.pop_attr("spatial", 1)
    epsilon = ctx.pop_attr("epsilon", 1e-5)
    if ctx.attrs:
        raise ctx.unsupported(f"attribute(s) {sorted(ctx.attrs)} are not supported")
    if spatial == 0 and not _params_per_channel(ctx):
        _batch_norm_per_element(ctx, epsilon)
    else:
        ctx.emit_final("BatchNormalization", ctx.inputs, {"epsilon": epsilon})


def _params_per_channel(ctx: NodeContext) -> bool:
    """Whether every parameter has exactly one entry per channel (then
    spatial=0 means the same as spatial=1)."""
    x = ctx.input(0).type
    channels = x.shape[1] if x.rank > 1 else 1
    return all(p is not None and p.type.rank == 1 and p.type.shape[0] == channels for p in ctx.inputs[1:5])


def _batch_norm_per_element(ctx: NodeContext, epsilon: float) -> None:
    """spatial=0: flatten x to (N, K) and the parameters to (K,), so each
    element of an example is its own channel, then restore x's shape."""
    x = ctx.input(0)
    if x.type.rank < 2:
        raise ctx.error(f"spatial=0 needs an input of rank >= 2, got {x.type}")
    flat = _reshape(ctx, x, [0, -1])
    params = [_reshape(ctx, p, [-1]) for p in ctx.inputs[1:5]]
    y = ctx.emit("BatchNormalization", [flat, *params], {"epsilon": epsilon})[0]
    ctx.emit_final("Reshape", [y, ctx.emit("Shape", [x])[0]])


def _reshape(ctx: NodeContext, value: Value, target: list[int]) -> Value:
    return ctx.emit("Reshape", [value, ctx.const(np.array(target, np.int64))])[0]


@handler("Softmax", "LogSoftmax", "Hardmax")
def _softmax_like(ctx: NodeContext) -> None:
    axis = ctx.pop_attr("axis", 1 if ctx.op_version < COERCE_2D_BEFORE else -1)
    if ctx.attrs:
        raise ctx.unsupported(f"attribute(s) {sorted(ctx.attrs)} are not supported")
    x = ctx.input(0)
    rank = x.type.rank
    if ctx.op_version >= COERCE_2D_BEFORE:
        ctx.emit_final(ctx.op_type, [x], {"axis": axis})
        return
    if not -rank <= axis < max(rank, 1):
        raise ctx.error(f"axis={axis} is out of range for input {x.type}")
    axis %= max(rank, 1)
    if axis >= rank - 1:
        ctx.emit_final(ctx.op_type, [x], {"axis": -1})
        return
    matrix = _reshape(ctx, x, _coerced_2d(ctx, x.type.shape, axis))
    y = ctx.emit(ctx.op_type, [matrix], {"axis": -1})[0]
    ctx.emit_final("Reshape", [y, ctx.emit("Shape", [x])[0]])


def _coerced_2d(ctx: NodeContext, shape: tuple, axis: int) -> list[int]:
    """The (prod(shape[:axis]), prod(shape[axis:])) shape, with -1 for the side
    that has data-dependent dims."""
    head, tail = shape[:axis], shape[axis:]
    head_known, tail_known = None not in head, None not in tail
    if head_known and tail_known:
        return [int(np.prod(head, dtype=np.int64)), int(np.prod(tail, dtype=np.int64))]
    if head_known:
        return [int(np.prod(head, dtype=np.int64)), -1]
    if tail_known and int(np.prod(tail, dtype=np.int64)) > 0:
        return [-1, int(np.prod(tail, dtype=np.int64))]
    raise ctx.unsupported(f"coercing input {list(shape)} to 2-D at axis {axis} needs static dims on one side")


@handler("LayerNormalization")
def _layer_normalization(ctx: NodeContext) -> None:
    stash = ctx.pop_attr("stash_type", STASH_FLOAT)
    if stash != STASH_FLOAT:
        raise ctx.unsupported(f"stash_type={stash} is not supported (only 1: float32 statistics)")
    default_handler(ctx)
