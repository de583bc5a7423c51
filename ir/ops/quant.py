"""Op definitions: linear quantization and the integer ops of already-quantized
ONNX models.

The checks of scales and zero points are the kernels' own
(runtime/kernels/quant.py), run here on static shapes so that a bad model
fails at import, naming the input at fault.

Canonical attributes: dtypes are numpy dtype names (``"uint8"``) or None;
the integer convolutions have Conv's window attributes (ir/ops/nn.py):
explicit kernel_shape, strides, pads and dilations, no auto_pad.
"""
from __future__ import annotations

import contextlib

import numpy as np

from ir.ops.common import FLOAT_TYPES, broadcast_shapes
from ir.ops.nn import spatial_rank, window_attrs, window_out_shape
from ir.registry import REQUIRED, InferContext, Pattern, register_op
from ir.types import TensorType
from runtime.errors import KernelError
from runtime.kernels import quant as qk

INT32 = np.dtype(np.int32)


@contextlib.contextmanager
def _as_shape_errors(ctx: InferContext):
    """Report a kernel-side parameter check failure as this node's error."""
    try:
        yield
    except KernelError as exc:
        raise ctx.error(str(exc)) from None


def _require_dtype(ctx: InferContext, index: int, name: str, allowed) -> TensorType:
    t = ctx.type(index)
    if t.dtype not in allowed:
        raise ctx.error(f"{name} (input {index}) must be one of {sorted(str(d) for d in allowed)}, got {t}")
    return t


def _optional_dtype(ctx: InferContext, index: int):
    return ctx.type(index).dtype if ctx.has(index) else None


# ---------------------------------------------------------------- (de)quantization
def _check_quant_params(ctx: InferContext, x: TensorType, scale_name: str, zero_point_name: str) -> None:
    axis, block_size = ctx.attrs["axis"], ctx.attrs["block_size"]
    with _as_shape_errors(ctx):
        qk.check_quant_param(x.shape, ctx.shape(1), axis, block_size, scale_name)
        if ctx.has(2):
            qk.check_same_shape(ctx.shape(1), ctx.shape(2), scale_name, zero_point_name)


def _quantize_linear(ctx: InferContext) -> list[TensorType]:
    x = _require_dtype(ctx, 0, "x", FLOAT_TYPES + (INT32,))
    _require_dtype(ctx, 1, "y_scale", FLOAT_TYPES + (INT32,))
    precision = ctx.attrs["precision"]
    if precision is not None and np.dtype(precision) not in FLOAT_TYPES:
        raise ctx.error(f"precision={precision} must be a float type")
    with _as_shape_errors(ctx):
        dtype = qk.quantized_dtype(_optional_dtype(ctx, 2), ctx.attrs["output_dtype"])
    _check_quant_params(ctx, x, "y_scale", "y_zero_point")
    return [TensorType(x.shape, dtype)]


def _dequantize_linear(ctx: InferContext) -> list[TensorType]:
    x = _require_dtype(ctx, 0, "x", qk.DEQUANT_INPUT_TYPES)
    scale = _require_dtype(ctx, 1, "x_scale", FLOAT_TYPES)
    if ctx.has(2) and ctx.type(2).dtype != x.dtype:
        raise ctx.error(f"x_zero_point has type {ctx.type(2)} but x has type {x}; they must match")
    _check_quant_params(ctx, x, "x_scale", "x_zero_point")
    out = ctx.attrs["output_dtype"]
    if out is not None and np.dtype(out) not in FLOAT_TYPES:
        raise ctx.error(f"output_dtype={out} must be a float type")
    return [TensorType(x.shape, scale.dtype if out is None else out)]


def _dynamic_quantize_linear(ctx: InferContext) -> list[TensorType]:
    x = _require_dtype(ctx, 0, "x", (np.dtype(np.float32),))
    return [x.with_dtype(np.uint8), TensorType((), np.float32), TensorType((), np.uint8)]


# ---------------------------------------------------------------- integer matmul
def _matmul_shape(ctx: InferContext, a: tuple, b: tuple) -> tuple:
    """numpy.matmul's output shape (1-D operands promoted, then dropped)."""
    if not a or not b:
        raise ctx.error(f"matmul operands must have rank >= 1, got {list(a)} and {list(b)}")
    a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)
    b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)
    k_a, k_b = a2[-1], b2[-2]
    if k_a is not None and k_b is not None and k_a != k_b:
        raise ctx.error(f"matmul inner dims differ: {list(a)} @ {list(b)}")
    batch = broadcast_shapes(ctx, a2[:-2], b2[:-2])
    out = batch + (a2[-2], b2[-1])
    if len(b) == 1:
        out = out[:-1]
    if len(a) == 1:
        out = out[:-2] + out[-1:] if len(b) > 1 else out[:-1]
    return out


def _check_matmul_operands(ctx: InferContext, a_index: int, a_zp: int, b_index: int, b_zp: int,
                           names: tuple[str, str, str, str]) -> tuple:
    a_name, a_zp_name, b_name, b_zp_name = names
    a, b = ctx.type(a_index), ctx.type(b_index)
    with _as_shape_errors(ctx):
        qk.check_operand_types(a.dtype, _optional_dtype(ctx, a_zp), a_name, a_zp_name)
        qk.check_operand_types(b.dtype, _optional_dtype(ctx, b_zp), b_name, b_zp_name)
        if ctx.has(a_zp):
            qk.check_row_param(a.shape, ctx.shape(a_zp), a_zp_name)
        if ctx.has(b_zp):
            qk.check_column_param(b.shape, ctx.shape(b_zp), b_zp_name)
    return _matmul_shape(ctx, a.shape, b.shape)


def _matmul_integer(ctx: InferContext) -> list[TensorType]:
    shape = _check_matmul_operands(ctx, 0, 2, 1, 3, ("A", "a_zero_point", "B", "b_zero_point"))
    return [TensorType(shape, INT32)]


def _check_output_params(ctx: InferContext, scale: int, zero_point: int) -> np.dtype:
    """The output scale and zero point: one element each; the zero point's
    type (int8 or uint8) is the output's."""
    with _as_shape_errors(ctx):
        qk.check_scalar_param(ctx.shape(scale), "y_scale")
        qk.check_scalar_param(ctx.shape(zero_point), "y_zero_point")
    return _require_dtype(ctx, zero_point, "y_zero_point", qk.INTEGER_OP_TYPES).dtype


def _qlinear_matmul(ctx: InferContext) -> list[TensorType]:
    shape = _check_matmul_operands(ctx, 0, 2, 3, 5, ("a", "a_zero_point", "b", "b_zero_point"))
    scale_type = _require_dtype(ctx, 1, "a_scale", FLOAT_TYPES).dtype
    for index, name in ((4, "b_scale"), (6, "y_scale")):
        if ctx.type(index).dtype != scale_type:
            raise ctx.error(f"{name} has type {ctx.type(index)} but a_scale has type {ctx.type(1)}; they must match")
    with _as_shape_errors(ctx):
        qk.check_row_param(ctx.shape(0), ctx.shape(1), "a_scale")
        qk.check_column_param(ctx.shape(3), ctx.shape(4), "b_scale")
        qk.check_same_shape(ctx.shape(1), ctx.shape(2), "a_scale", "a_zero_point")
        qk.check_same_shape(ctx.shape(4), ctx.shape(5), "b_scale", "b_zero_point")
    return [TensorType(shape, _check_output_params(ctx, 6, 7))]


# ---------------------------------------------------------------- integer convolution
def _conv_output_shape(ctx: InferContext, x_index: int, w_index: int) -> tuple:
    """(N, M, spatial...) of a convolution of input ``x_index`` by input
    ``w_index`` with the node's window attributes and group."""
    x, w = ctx.type(x_index), ctx.type(w_index)
    spatial = spatial_rank(ctx, x_index)
    if w.rank != x.rank:
        raise ctx.error(f"w must have the rank of x ({x.rank}), got {w}")
    kernel, strides, pads, dilations = window_attrs(ctx, spatial)
    if any(d is not None and d != k for k, d in zip(kernel, w.shape[2:])):
        raise ctx.error(f"kernel_shape={kernel} does not match the spatial dims of w {list(w.shape[2:])}")
    group = int(ctx.attrs["group"])
    channels, out_channels, per_group = x.shape[1], w.shape[0], w.shape[1]
    if group < 1 or (out_channels is not None and out_channels % group):
        raise ctx.error(f"group={group} must be >= 1 and divide the {out_channels} output channels of w")
    if channels is not None and per_group is not None and channels != per_group * group:
        raise ctx.error(f"x has {channels} channels but w expects {per_group} x group {group}")
    out = window_out_shape(ctx, x.shape[2:], kernel, strides, pads, dilations)
    return (x.shape[0], out_channels, *out)


def _check_conv_operands(ctx: InferContext, x_zp: int, w_index: int, w_zp: int) -> tuple:
    x, w = ctx.type(0), ctx.type(w_index)
    shape = _conv_output_shape(ctx, 0, w_index)
    with _as_shape_errors(ctx):
        qk.check_operand_types(x.dtype, _optional_dtype(ctx, x_zp), "x", "x_zero_point")
        qk.check_operand_types(w.dtype, _optional_dtype(ctx, w_zp), "w", "w_zero_point")
        if ctx.has(x_zp):
            qk.check_scalar_param(ctx.shape(x_zp), "x_zero_point")
        if ctx.has(w_zp):
            qk.check_channel_param(ctx.shape(w_zp), w.shape[0], "w_zero_point")
    return shape


def _conv_integer(ctx: InferContext) -> list[TensorType]:
    return [TensorType(_check_conv_operands(ctx, 2, 1, 3), INT32)]


def _qlinear_conv(ctx: InferContext) -> list[TensorType]:
    shape = _check_conv_operands(ctx, 2, 3, 5)
    f32 = (np.dtype(np.float32),)
    for index, name in ((1, "x_scale"), (4, "w_scale"), (6, "y_scale")):
        _require_dtype(ctx, index, name, f32)
    out_channels = ctx.shape(3)[0]
    with _as_shape_errors(ctx):
        qk.check_scalar_param(ctx.shape(1), "x_scale")
        qk.check_channel_param(ctx.shape(4), out_channels, "w_scale")
        qk.check_same_shape(ctx.shape(4), ctx.shape(5), "w_scale", "w_zero_point")
    if ctx.has(8):
        bias = _require_dtype(ctx, 8, "B", (INT32,))
        if bias.rank != 1 or (None not in (bias.shape[0], out_channels) and bias.shape[0] != out_channels):
            raise ctx.error(f"B must be a vector of {out_channels} elements (one per output channel), got {bias}")
    return [TensorType(shape, _check_output_params(ctx, 6, 7))]


CONV_ATTRS = {"kernel_shape": REQUIRED, "strides": REQUIRED, "pads": REQUIRED, "dilations": REQUIRED, "group": 1}
QUANT_ATTRS = {"axis": 1, "block_size": 0}

register_op("QuantizeLinear", _quantize_linear, Pattern.BROADCAST, inputs=(2, 3),
            attrs={**QUANT_ATTRS, "output_dtype": None, "precision": None})
register_op("DequantizeLinear", _dequantize_linear, Pattern.BROADCAST, inputs=(2, 3),
            attrs={**QUANT_ATTRS, "output_dtype": None})
register_op("DynamicQuantizeLinear", _dynamic_quantize_linear, Pattern.OPAQUE, outputs=3)
register_op("MatMulInteger", _matmul_integer, Pattern.OUT_ELEMWISE_FUSABLE, inputs=(2, 4))
register_op("QLinearMatMul", _qlinear_matmul, Pattern.OUT_ELEMWISE_FUSABLE, inputs=8)
register_op("ConvInteger", _conv_integer, Pattern.OUT_ELEMWISE_FUSABLE, inputs=(2, 4), attrs=dict(CONV_ATTRS))
register_op("QLinearConv", _qlinear_conv, Pattern.OUT_ELEMWISE_FUSABLE, inputs=(8, 9), attrs=dict(CONV_ATTRS))
