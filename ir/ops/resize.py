"""Op definitions: Resize (Upsample is imported as Resize).

The canonical Resize is the newest opset's: inputs (X, roi, scales, sizes),
roi only read by tf_crop_and_resize, exactly one of scales and sizes given.
The output shape is static when that one is a constant; it is computed by
the kernel module's :func:`output_size`, so compile time and run time agree.
"""
from __future__ import annotations

from ir.registry import InferContext, Pattern, register_op
from ir.types import TensorType
from runtime.errors import KernelError
from runtime.kernels.resize import check_attrs, given, output_size, resize_axes


def _check_inputs(ctx: InferContext) -> None:
    for index, name, kinds in ((1, "roi", "f"), (2, "scales", "f"), (3, "sizes", "i")):
        if ctx.has(index):
            t = ctx.type(index)
            if t.dtype.kind not in kinds or t.rank != 1:
                raise ctx.error(f"{name} (input {index}) must be a 1-D {'float' if kinds == 'f' else 'int64'} "
                                f"tensor, got {t}")
    if ctx.attrs["coordinate_transformation_mode"] == "tf_crop_and_resize" and not ctx.has(1):
        raise ctx.error("coordinate_transformation_mode='tf_crop_and_resize' needs the roi input")


def _resize(ctx: InferContext) -> list[TensorType]:
    x = ctx.type(0)
    _check_inputs(ctx)
    scales, sizes = ctx.const(2), ctx.const(3)
    try:
        check_attrs(ctx.attrs)
        axes = resize_axes(ctx.attrs["axes"], x.rank)
        if given(scales) or given(sizes) or not _runtime_parameter(ctx):
            shape, _ = output_size(x.shape, scales if given(scales) else None, None if given(scales) else sizes,
                                   axes, ctx.attrs["keep_aspect_ratio_policy"])
        else:
            shape = [None if d in axes else n for d, n in enumerate(x.shape)]
    except KernelError as exc:
        raise ctx.error(str(exc).removeprefix("Resize: ")) from None
    return [TensorType(shape, x.dtype)]


def _runtime_parameter(ctx: InferContext) -> bool:
    """Whether scales or sizes is a runtime input (its value unknown now)."""
    return any(ctx.has(i) and ctx.const(i) is None for i in (2, 3))


register_op(
    "Resize", _resize, Pattern.INJECTIVE, inputs=(1, 4),
    attrs={"mode": "nearest", "coordinate_transformation_mode": "half_pixel", "nearest_mode": "round_prefer_floor",
           "cubic_coeff_a": -0.75, "exclude_outside": 0, "extrapolation_value": 0.0, "antialias": 0, "axes": None,
           "keep_aspect_ratio_policy": "stretch"},
    doc="ONNX Resize (opset 19 semantics); Upsample and older Resize forms are imported as this.")
