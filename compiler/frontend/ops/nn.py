"""ONNX import handlers: Conv and ConvTranspose (Gemm, MatMul and Einsum use
the default handler).

The handlers put windowed ops into canonical form: explicit kernel_shape,
strides, pads and dilations; ``auto_pad`` (and ConvTranspose's
``output_shape``) resolved into pads from the static input shape.
"""
from __future__ import annotations

from compiler.frontend.context import NodeContext, handler

AUTO_PADS = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")


def check_attrs(ctx: NodeContext, known: set[str]) -> None:
    unknown = set(ctx.attrs) - known
    if unknown:
        raise ctx.unsupported(f"attribute(s) {sorted(unknown)} are not supported")


def spatial_dims(ctx: NodeContext) -> tuple:
    """The spatial dims of input 0 (N, C, spatial...)."""
    x = ctx.input(0)
    if x is None or x.type.rank < 3:
        raise ctx.error(f"input X must have rank >= 3 (N, C, spatial...), got {None if x is None else x.type}")
    return x.type.shape[2:]


def int_list(ctx: NodeContext, name: str, default: list[int]) -> list[int]:
    value = ctx.attrs.get(name)
    return default if value is None or len(value) == 0 else [int(v) for v in value]


def auto_pad(ctx: NodeContext) -> str:
    mode = ctx.attrs.get("auto_pad") or "NOTSET"
    if mode not in AUTO_PADS:
        raise ctx.error(f"auto_pad={mode!r} is not one of {list(AUTO_PADS)}")
    return mode


def same_pads(total: int, mode: str) -> tuple[int, int]:
    """(begin, end) split of ``total`` padding: SAME_UPPER puts the odd one at the end."""
    return (total // 2, total - total // 2) if mode == "SAME_UPPER" else (total - total // 2, total // 2)


def resolve_pads(ctx: NodeContext, spatial_shape, kernel, strides, dilations) -> list[int]:
    """Explicit pads (begins then ends) from ``pads`` / ``auto_pad``."""
    mode = auto_pad(ctx)
    n = len(spatial_shape)
    if mode == "NOTSET":
        return int_list(ctx, "pads", [0] * 2 * n)
    if mode == "VALID":
        return [0] * 2 * n
    begins, ends = [], []
    for axis, size in enumerate(spatial_shape):
        if size is None:
            raise ctx.unsupported(f"auto_pad={mode} on spatial axis {axis} whose size is only known at run time")
        out = -(-size // strides[axis])
        span = (kernel[axis] - 1) * dilations[axis] + 1
        begin, end = same_pads(max((out - 1) * strides[axis] + span - size, 0), mode)
        begins.append(begin)
        ends.append(end)
    return begins + ends


def kernel_shape(ctx: NodeContext, weight_index: int = 1) -> list[int]:
    """kernel_shape as given, else the weight's spatial dims."""
    given = ctx.attrs.get("kernel_shape")
    if given:
        return [int(k) for k in given]
    weight = ctx.input(weight_index)
    dims = weight.type.shape[2:] if weight is not None else ()
    if not dims or any(d is None for d in dims):
        raise ctx.unsupported("kernel_shape is not given and the weight's spatial dims are not static")
    return list(dims)


def window(ctx: NodeContext, spatial: int, kernel: list[int]) -> dict:
    """kernel_shape, strides, dilations with defaults, checked for length."""
    strides = int_list(ctx, "strides", [1] * spatial)
    dilations = int_list(ctx, "dilations", [1] * spatial)
    for name, value in (("kernel_shape", kernel), ("strides", strides), ("dilations", dilations)):
        if len(value) != spatial:
            raise ctx.error(f"{name}={value} must have {spatial} values, one per spatial axis")
    return {"kernel_shape": kernel, "strides": strides, "dilations": dilations}


@handler("Conv")
def _conv(ctx: NodeContext) -> None:
    check_attrs(ctx, {"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"})
    spatial = spatial_dims(ctx)
    attrs = window(ctx, len(spatial), kernel_shape(ctx))
    attrs["pads"] = resolve_pads(ctx, spatial, attrs["kernel_shape"], attrs["strides"], attrs["dilations"])
    attrs["group"] = int(ctx.attrs.get("group", 1))
    ctx.emit_final("Conv", ctx.inputs, attrs)


@handler("ConvTranspose")
def _conv_transpose(ctx: NodeContext) -> None:
    check_attrs(ctx, {"auto_pad", "dilations", "group", "kernel_shape", "output_padding", "output_shape",
                      "pads", "strides"})
    spatial = spatial_dims(ctx)
    attrs = window(ctx, len(spatial), kernel_shape(ctx))
    attrs["group"] = int(ctx.attrs.get("group", 1))
    attrs["output_padding"] = int_list(ctx, "output_padding", [0] * len(spatial))
    if len(attrs["output_padding"]) != len(spatial):
        raise ctx.error(f"output_padding={attrs['output_padding']} must have {len(spatial)} values")
    attrs["pads"] = _transpose_pads(ctx, spatial, attrs)
    ctx.emit_final("ConvTranspose", ctx.inputs, attrs)


def _transpose_pads(ctx: NodeContext, spatial, attrs) -> list[int]:
    """ConvTranspose pads: from output_shape (or SAME's in * stride) when
    given, as the ONNX spec's total_padding split; else explicit or zero."""
    mode = auto_pad(ctx)
    target = int_list(ctx, "output_shape", [])
    if not target and mode in ("SAME_UPPER", "SAME_LOWER"):
        if any(size is None for size in spatial):
            raise ctx.unsupported(f"auto_pad={mode} with spatial dims only known at run time")
        target = [size * s for size, s in zip(spatial, attrs["strides"])]
    if not target:
        return [0] * 2 * len(spatial) if mode == "VALID" else int_list(ctx, "pads", [0] * 2 * len(spatial))
    if len(target) == len(spatial) + 2:
        target = target[2:]
    if len(target) != len(spatial):
        raise ctx.error(f"output_shape={target} must have {len(spatial)} values, one per spatial axis")
    begins, ends = [], []
    for axis, size in enumerate(spatial):
        if size is None:
            raise ctx.unsupported(f"output_shape with spatial axis {axis} only known at run time")
        span = (attrs["kernel_shape"][axis] - 1) * attrs["dilations"][axis] + 1
        total = attrs["strides"][axis] * (size - 1) + attrs["output_padding"][axis] + span - target[axis]
        begin, end = same_pads(total, "SAME_UPPER" if mode == "SAME_UPPER" else "SAME_LOWER")
        begins.append(begin)
        ends.append(end)
    return begins + ends
