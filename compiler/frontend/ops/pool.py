"""ONNX import handlers: windowed pools (global pools use the default handler).

auto_pad is resolved into explicit pads; with SAME padding the output size is
ceil(in / stride) by definition, so ceil_mode is dropped there. A MaxPool
whose Indices output is wanted becomes MaxPoolWithIndices.
"""
from __future__ import annotations

from compiler.frontend.context import NodeContext, handler
from compiler.frontend.ops.nn import auto_pad, check_attrs, resolve_pads, spatial_dims, window

WINDOW_ATTRS = {"auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides"}


def _pool_attrs(ctx: NodeContext) -> dict:
    spatial = spatial_dims(ctx)
    kernel = ctx.attrs.get("kernel_shape")
    if not kernel:
        raise ctx.error("kernel_shape is required")
    attrs = window(ctx, len(spatial), [int(k) for k in kernel])
    attrs["pads"] = resolve_pads(ctx, spatial, attrs["kernel_shape"], attrs["strides"], attrs["dilations"])
    same = auto_pad(ctx) in ("SAME_UPPER", "SAME_LOWER")
    attrs["ceil_mode"] = 0 if same else int(ctx.attrs.get("ceil_mode", 0))
    return attrs


@handler("MaxPool")
def _max_pool(ctx: NodeContext) -> None:
    check_attrs(ctx, WINDOW_ATTRS | {"storage_order"})
    attrs = _pool_attrs(ctx)
    names = ctx.output_names
    if len(names) > 1 and names[1]:
        attrs["storage_order"] = int(ctx.attrs.get("storage_order", 0))
        ctx.emit_final("MaxPoolWithIndices", [ctx.input(0)], attrs)
    else:
        ctx.emit("MaxPool", [ctx.input(0)], attrs, outputs=[names[0]])


@handler("AveragePool")
def _average_pool(ctx: NodeContext) -> None:
    check_attrs(ctx, WINDOW_ATTRS | {"count_include_pad"})
    attrs = _pool_attrs(ctx)
    attrs["count_include_pad"] = int(ctx.attrs.get("count_include_pad", 0))
    ctx.emit_final("AveragePool", [ctx.input(0)], attrs)


@handler("LpPool")
def _lp_pool(ctx: NodeContext) -> None:
    check_attrs(ctx, WINDOW_ATTRS | {"p"})
    attrs = _pool_attrs(ctx)
    attrs["p"] = int(ctx.attrs.get("p", 2))
    ctx.emit_final("LpPool", [ctx.input(0)], attrs)
