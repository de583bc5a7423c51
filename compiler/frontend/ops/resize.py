"""ONNX import handlers: Resize (every opset form) and Upsample -> canonical Resize.

The canonical Resize has the newest opset's inputs (X, roi, scales, sizes):
empty scales/sizes become omitted inputs and roi is kept only where
tf_crop_and_resize reads it. Before opset 11, Resize and Upsample had no
coordinate or rounding attributes; their behaviour (that of onnxruntime, the
reference runtime for old models) is asymmetric coordinates, with nearest
rounding down on upsampled axes and up on downsampled ones.
"""
from __future__ import annotations

import numpy as np

from compiler.frontend.context import NodeContext, handler
from ir.graph import Value
from ir.registry import get_op

LEGACY_MODES = {"nearest": "nearest", "linear": "linear", "bilinear": "linear"}

# tf_half_pixel_for_nn (opsets 11-12) samples at (x + 0.5) / scale, half a pixel
# right of half_pixel: its rounding becomes a different rounding of half_pixel.
_TF_HALF_PIXEL_FOR_NN = {"round_prefer_floor": "ceil", "floor": "round_prefer_ceil"}


@handler("Resize")
def _resize(ctx: NodeContext) -> None:
    if ctx.op_version is not None and ctx.op_version < 11:
        _check_attrs(ctx, {"mode"})
        _emit_legacy(ctx, ctx.input(0), ctx.input(1), _legacy_mode(ctx))
        return
    _check_attrs(ctx, set(get_op("Resize").attrs))
    attrs = dict(ctx.attrs)
    if attrs.get("coordinate_transformation_mode") == "tf_half_pixel_for_nn":
        attrs.update(_from_tf_half_pixel_for_nn(ctx, attrs))
    keep_roi = attrs.get("coordinate_transformation_mode") == "tf_crop_and_resize"
    roi = ctx.input(1) if keep_roi else None
    scales, sizes = (None if _is_empty(v) else v for v in (ctx.input(2), ctx.input(3)))
    ctx.emit_final("Resize", _trimmed([ctx.input(0), roi, scales, sizes]), attrs)


@handler("Upsample")
def _upsample(ctx: NodeContext) -> None:
    if ctx.op_version is not None and ctx.op_version < 9:
        _check_attrs(ctx, {"mode", "scales"})
        if "scales" not in ctx.attrs:
            raise ctx.error("Upsample before opset 9 needs the 'scales' attribute")
        scales = ctx.const(np.array(ctx.attrs["scales"], dtype=np.float32), f"{ctx.name}_scales")
    else:
        _check_attrs(ctx, {"mode"})
        scales = ctx.input(1)
    _emit_legacy(ctx, ctx.input(0), scales, _legacy_mode(ctx))


def _check_attrs(ctx: NodeContext, known: set[str]) -> None:
    unknown = set(ctx.attrs) - known
    if unknown:
        raise ctx.unsupported(f"attribute(s) {sorted(unknown)} are not supported")


def _legacy_mode(ctx: NodeContext) -> str:
    mode = ctx.attr("mode", "nearest")
    if mode not in LEGACY_MODES:
        raise ctx.unsupported(f"mode={mode!r} is not supported (nearest or linear)")
    return LEGACY_MODES[mode]


def _emit_legacy(ctx: NodeContext, x: Value, scales: Value | None, mode: str) -> None:
    """Upsample / Resize-10: asymmetric coordinates. Nearest rounds down on
    upsampled axes and up on downsampled ones; with both kinds of axes the
    resize is split in two (nearest resizing is separable, so this is exact)."""
    if scales is None:
        raise ctx.error("the scales input is required")
    base = {"mode": mode, "coordinate_transformation_mode": "asymmetric"}
    factors = None if scales.const is None else np.asarray(scales.const, dtype=np.float64).reshape(-1)
    if mode != "nearest" or factors is None or np.all(factors >= 1):
        ctx.emit_final("Resize", [x, None, scales], {**base, "nearest_mode": "floor"})
        return
    down = [i for i, f in enumerate(factors) if f < 1]
    up = [i for i, f in enumerate(factors) if f > 1]
    if up:
        x = ctx.emit("Resize", [x, None, _subset(ctx, factors, up)],
                     {**base, "nearest_mode": "floor", "axes": up})[0]
    ctx.emit_final("Resize", [x, None, _subset(ctx, factors, down)], {**base, "nearest_mode": "ceil", "axes": down})


def _subset(ctx: NodeContext, factors: np.ndarray, axes: list[int]) -> Value:
    return ctx.const(factors[axes].astype(np.float32), f"{ctx.name}_scales")


def _from_tf_half_pixel_for_nn(ctx: NodeContext, attrs: dict) -> dict:
    nearest_mode = attrs.get("nearest_mode", "round_prefer_floor")
    if attrs.get("mode", "nearest") != "nearest" or nearest_mode not in _TF_HALF_PIXEL_FOR_NN:
        raise ctx.unsupported("coordinate_transformation_mode='tf_half_pixel_for_nn' is supported only with "
                              "mode='nearest' and nearest_mode 'round_prefer_floor' or 'floor'")
    return {"coordinate_transformation_mode": "half_pixel", "nearest_mode": _TF_HALF_PIXEL_FOR_NN[nearest_mode]}


def _is_empty(value: Value | None) -> bool:
    """An input that is absent or statically empty (opsets 11-12 pass empty
    scales when sizes is used)."""
    return value is None or (value.type.numel == 0)


def _trimmed(inputs: list) -> list:
    while inputs and inputs[-1] is None:
        inputs.pop()
    return inputs
