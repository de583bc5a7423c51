"""ONNX import handlers: elementwise.

Clip before opset 11 takes min/max as attributes (they become constant
inputs); Cast's ``to`` becomes a numpy dtype name (what the kernel reads);
CastLike becomes a Cast to the dtype of its second input, which the IR knows
statically.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from compiler.frontend.context import NodeContext, default_handler, handler
from ir.errors import IRError
from ir.types import parse_dtype

_ROUND_MODES = ("up", "down", "nearest")


@handler("Clip")
def _clip(ctx: NodeContext) -> None:
    if ctx.op_version >= 11:
        default_handler(ctx)
        return
    x = ctx.input(0)
    bounds = [_clip_bound(ctx, name, x.type.dtype) for name in ("min", "max")]
    if ctx.attrs:
        raise ctx.unsupported(f"attribute(s) {sorted(ctx.attrs)} are not supported")
    inputs = [x, *bounds]
    while inputs[-1] is None:
        inputs.pop()
    ctx.emit_final("Clip", inputs, {})


def _clip_bound(ctx: NodeContext, name: str, dtype: np.dtype):
    """Clip-6's min/max attribute as a constant input (None when absent)."""
    value = ctx.pop_attr(name)
    return None if value is None else ctx.const(np.array(value, dtype=dtype), f"{ctx.name}_{name}")


@handler("Cast")
def _cast(ctx: NodeContext) -> None:
    to = ctx.pop_attr("to")
    if to is None:
        raise ctx.error("missing required attribute 'to'")
    _drop_cast_options(ctx)
    ctx.emit_final("Cast", ctx.inputs[:1], {"to": _dtype_name(ctx, to)})


@handler("CastLike")
def _cast_like(ctx: NodeContext) -> None:
    _drop_cast_options(ctx)
    target = ctx.input(1)
    if target is None:
        raise ctx.error("input 1 (target_type) is required")
    ctx.emit_final("Cast", ctx.inputs[:1], {"to": target.type.dtype.name})


def _drop_cast_options(ctx: NodeContext) -> None:
    """saturate and round_mode only affect float8 targets, which the IR lacks:
    check their values and drop them."""
    saturate = ctx.pop_attr("saturate", 1)
    round_mode = ctx.pop_attr("round_mode", "up")
    if saturate not in (0, 1):
        raise ctx.error(f"saturate must be 0 or 1, got {saturate}")
    if round_mode not in _ROUND_MODES:
        raise ctx.error(f"round_mode={round_mode!r} is not one of {list(_ROUND_MODES)}")
    if ctx.attrs:
        raise ctx.unsupported(f"attribute(s) {sorted(ctx.attrs)} are not supported")


def _dtype_name(ctx: NodeContext, to) -> str:
    """The numpy dtype name of an ONNX element type (an int of TensorProto.DataType)."""
    try:
        label = onnx.TensorProto.DataType.Name(int(to))
    except (ValueError, TypeError):
        raise ctx.error(f"to={to!r} is not an ONNX element type") from None
    try:
        return parse_dtype(helper.tensor_dtype_to_np_dtype(int(to))).name
    except (IRError, KeyError, ValueError, TypeError):
        raise ctx.unsupported(f"casting to {label} is not supported: Tessera's IR has no such dtype") from None
