"""ONNX import handlers: quantization ops.

They turn ONNX dtype enums into numpy dtype names, drop attributes that do
not change results for the types Tessera supports, and give the integer
convolutions Conv's canonical window attributes (through the nn family's
helpers). MatMulInteger, QLinearMatMul and DynamicQuantizeLinear need none.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from compiler.frontend.context import NodeContext, handler
from compiler.frontend.ops.nn import check_attrs, kernel_shape, resolve_pads, spatial_dims, window
from passes.quant.extract_qdq import weight_grid
from runtime.kernels.quant import QUANT_RANGES

FLOAT_OUTPUTS = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64))


def _dtype_attr(ctx: NodeContext, name: str, allowed) -> str | None:
    """The numpy name of dtype attribute ``name`` (an ONNX enum; 0 or absent
    means unset -> None); types Tessera cannot hold are unsupported."""
    enum = int(ctx.attrs.get(name, 0))
    if enum == 0:
        return None
    try:
        label = TensorProto.DataType.Name(enum)
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(enum))
    except (KeyError, ValueError, TypeError):
        raise ctx.error(f"{name}={enum} is not an ONNX data type") from None
    if dtype not in allowed:
        raise ctx.unsupported(f"{name}={label} is not supported; Tessera handles "
                              f"{sorted(str(d) for d in allowed)}")
    return dtype.name


@handler("QuantizeLinear")
def _quantize_linear(ctx: NodeContext) -> None:
    attrs = dict(ctx.attrs)
    # saturate only changes float8 outputs, which Tessera does not produce
    attrs.pop("saturate", None)
    attrs["output_dtype"] = _dtype_attr(ctx, "output_dtype", QUANT_RANGES)
    attrs["precision"] = _dtype_attr(ctx, "precision", FLOAT_OUTPUTS)
    ctx.emit_final("QuantizeLinear", ctx.inputs, attrs)


@handler("DequantizeLinear")
def _dequantize_linear(ctx: NodeContext) -> None:
    attrs = dict(ctx.attrs)
    attrs["output_dtype"] = _dtype_attr(ctx, "output_dtype", FLOAT_OUTPUTS)
    grid = weight_grid(ctx.inputs, attrs)  # int8/int16 weights of a pre-quantized model: keep their grid
    (value,) = ctx.emit_final("DequantizeLinear", ctx.inputs, attrs)
    if grid is not None and value.is_constant:
        value.quant = grid


@handler("ConvInteger")
def _conv_integer(ctx: NodeContext) -> None:
    ctx.emit_final("ConvInteger", ctx.inputs, _conv_attrs(ctx, weight_index=1))


@handler("QLinearConv")
def _qlinear_conv(ctx: NodeContext) -> None:
    ctx.emit_final("QLinearConv", ctx.inputs, _conv_attrs(ctx, weight_index=3))


def _conv_attrs(ctx: NodeContext, weight_index: int) -> dict:
    """Conv's canonical window attributes, resolved as the nn family does for Conv."""
    check_attrs(ctx, {"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"})
    spatial = spatial_dims(ctx)
    attrs = window(ctx, len(spatial), kernel_shape(ctx, weight_index))
    attrs["pads"] = resolve_pads(ctx, spatial, attrs["kernel_shape"], attrs["strides"], attrs["dilations"])
    attrs["group"] = int(ctx.attrs.get("group", 1))
    return attrs
