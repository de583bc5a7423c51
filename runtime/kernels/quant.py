"""CPU kernels: linear quantization and the integer ops of already-quantized
ONNX models (QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear,
MatMulInteger, ConvInteger, QLinearMatMul, QLinearConv).

Integer products are computed exactly through the float BLAS kernels of the
nn family: each operand minus its zero point is a small integer (|v| <= 255
for 8-bit types), so a product is below 2**16 and a float64 sum of them stays
an exact integer while it is below 2**53, i.e. for reduction lengths up to
2**37 -- any real layer. Where a bound taken from the data proves every
partial sum below 2**24, float32 is exact too and twice as fast. Requantisation follows the
ONNX reference evaluator operation by operation (the same dtypes, in the same
order), so results are bit-identical to it. Dtypes are chosen explicitly
rather than left to numpy's promotion, which changed between numpy 1 and 2.

The parameter checks here are shared with the IR type rules (ir/ops/quant.py),
which pass shapes that may hold None for data-dependent dims.
"""
from __future__ import annotations

import math

import numpy as np

from runtime.errors import KernelError
from runtime.kernels import nn
from runtime.kernels.registry import kernel
from runtime.nonfinite import located
from runtime.qscheme import saturated_codes

QUANT_RANGES = {np.dtype(t): (int(np.iinfo(t).min), int(np.iinfo(t).max))
                for t in (np.uint8, np.int8, np.uint16, np.int16)}
"""Saturation bounds of the integer types QuantizeLinear can produce: each type's whole range."""

DEQUANT_INPUT_TYPES = frozenset(QUANT_RANGES) | {np.dtype(np.int32)}
INTEGER_OP_TYPES = frozenset({np.dtype(np.uint8), np.dtype(np.int8)})
"""Operand types of the integer conv / matmul ops."""


# ---------------------------------------------------------------- parameter checks
def _size(shape) -> int | None:
    """Element count of a shape, None when a dim is unknown."""
    if any(d is None for d in shape):
        return None
    return math.prod(int(d) for d in shape)


def quantized_dtype(zero_point_dtype, output_dtype) -> np.dtype:
    """QuantizeLinear's output type: the zero point's type, else ``output_dtype``,
    else uint8; the two must agree when both are given."""
    wanted = None if output_dtype is None else np.dtype(output_dtype)
    if zero_point_dtype is not None:
        zero_point_dtype = np.dtype(zero_point_dtype)
        if wanted is not None and wanted != zero_point_dtype:
            raise KernelError(f"output_dtype={wanted} disagrees with y_zero_point's type {zero_point_dtype}")
        wanted = zero_point_dtype
    wanted = np.dtype(np.uint8) if wanted is None else wanted
    if wanted not in QUANT_RANGES:
        raise KernelError(f"cannot quantize to {wanted}; supported: {sorted(str(t) for t in QUANT_RANGES)}")
    return wanted


def check_quant_param(data_shape, param_shape, axis: int, block_size: int, name: str) -> int | None:
    """Validate a scale or zero point of (De)QuantizeLinear against the data
    shape. Returns the quantization axis (made non-negative), or None for
    per-tensor parameters (one element)."""
    if _size(param_shape) == 1 or len(param_shape) == 0:
        return None
    if block_size < 0:
        raise KernelError(f"block_size must be >= 0, got {block_size}")
    rank = len(data_shape)
    if not -rank <= axis < rank:
        raise KernelError(f"axis={axis} is out of range for x of rank {rank}")
    axis %= rank
    if block_size == 0:
        _check_per_axis(data_shape, param_shape, axis, name)
    else:
        _check_blocked(data_shape, param_shape, axis, block_size, name)
    return axis


def _check_per_axis(data_shape, param_shape, axis: int, name: str) -> None:
    if len(param_shape) != 1:
        raise KernelError(f"{name} must be a scalar or a 1-D tensor when block_size is 0, "
                          f"got shape {list(param_shape)}")
    length, want = param_shape[0], data_shape[axis]
    if length is not None and want is not None and length != want:
        raise KernelError(f"{name} has {length} elements, expected {want} (dim {axis} of x)")


def _check_blocked(data_shape, param_shape, axis: int, block_size: int, name: str) -> None:
    expected = [None if d is None else (-(-d // block_size) if i == axis else d) for i, d in enumerate(data_shape)]
    if len(param_shape) != len(expected) or any(
            p is not None and e is not None and p != e for p, e in zip(param_shape, expected)):
        shown = ["?" if d is None else d for d in expected]
        raise KernelError(f"{name} must have shape {shown} for blocks of {block_size} along axis {axis} of x, "
                          f"got {list(param_shape)}")


def check_same_shape(scale_shape, zero_point_shape, scale_name: str, zero_point_name: str) -> None:
    """A scale and its zero point must have one shape (two single elements agree)."""
    if tuple(scale_shape) == tuple(zero_point_shape):
        return
    if _size(scale_shape) == 1 and _size(zero_point_shape) == 1:
        return
    raise KernelError(f"{zero_point_name} has shape {list(zero_point_shape)} but {scale_name} has shape "
                      f"{list(scale_shape)}; they must match")


def expand_quant_param(value: np.ndarray, data_shape, axis: int | None, block_size: int) -> np.ndarray:
    """A checked scale or zero point reshaped (blocked: repeated) so that it
    broadcasts against data of ``data_shape``."""
    if axis is None:
        return value.reshape(())
    if block_size == 0:
        dims = [1] * len(data_shape)
        dims[axis] = value.size
        return value.reshape(dims)
    repeated = np.repeat(value, block_size, axis=axis)
    return repeated[(slice(None),) * axis + (slice(0, data_shape[axis]),)]


def _quant_params(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, attrs,
                  scale_name: str, zero_point_name: str) -> tuple:
    """(scale, zero point or None), checked and expanded to broadcast against ``x``."""
    axis, block_size = attrs["axis"], attrs["block_size"]
    where = check_quant_param(x.shape, scale.shape, axis, block_size, scale_name)
    if zero_point is not None:
        check_same_shape(scale.shape, zero_point.shape, scale_name, zero_point_name)
        zero_point = expand_quant_param(zero_point, x.shape, where, block_size)
    return expand_quant_param(scale, x.shape, where, block_size), zero_point


def dtype_attr(attrs, name: str) -> np.dtype | None:
    """A dtype-name attribute (None when unset); a bad name is the program's fault."""
    value = attrs[name]
    if value is None:
        return None
    try:
        return np.dtype(value)
    except TypeError:
        raise KernelError(f"{name}={value!r} is not a dtype name") from None


def _optional(inputs, count: int) -> list:
    """``inputs`` padded with None up to ``count`` (omitted trailing inputs)."""
    return list(inputs) + [None] * (count - len(inputs))


# ---------------------------------------------------------------- (de)quantization
@kernel("QuantizeLinear")
def quantize_linear(inputs, attrs):
    """y = saturate(round_half_even(x / y_scale) + y_zero_point); ±Inf
    saturates like any value beyond the range, a NaN is a KernelError (no
    integer code stands for it, and casting one is undefined)."""
    x, scale, zero_point = _optional(inputs, 3)
    dtype = quantized_dtype(None if zero_point is None else zero_point.dtype, dtype_attr(attrs, "output_dtype"))
    scale, zero_point = _quant_params(x, scale, zero_point, attrs, "y_scale", "y_zero_point")
    work = dtype_attr(attrs, "precision")
    if work is None:
        work = np.promote_types(x.dtype, scale.dtype)
    if work.kind != "f":
        work = np.dtype(np.float64)  # true division of integers, as numpy does it
    y = saturated_codes(x, scale, zero_point, *QUANT_RANGES[dtype], work)
    nan = np.isnan(y)
    if nan.any():
        raise KernelError(f"x / y_scale is NaN at {located(nan)}: no integer code stands for NaN "
                          "(docs/runtime.md, \"Non-finite inputs\")")
    return (y.astype(dtype),)


@kernel("DequantizeLinear")
def dequantize_linear(inputs, attrs):
    """y = (x - x_zero_point) * x_scale, computed in float32 unless an input
    type needs more (int32 zero points), then cast to the output type."""
    x, scale, zero_point = _optional(inputs, 3)
    if x.dtype not in DEQUANT_INPUT_TYPES:
        raise KernelError(f"x has type {x.dtype}; DequantizeLinear takes {sorted(str(t) for t in DEQUANT_INPUT_TYPES)}")
    if zero_point is not None and zero_point.dtype != x.dtype:
        raise KernelError(f"x_zero_point has type {zero_point.dtype} but x has type {x.dtype}; they must match")
    out = dtype_attr(attrs, "output_dtype")
    out = scale.dtype if out is None else out
    scale, zero_point = _quant_params(x, scale, zero_point, attrs, "x_scale", "x_zero_point")
    y = x.astype(np.float32)
    if zero_point is not None:
        y = np.subtract(y, zero_point, dtype=np.promote_types(np.float32, zero_point.dtype))
    y = np.multiply(y, scale, dtype=np.promote_types(y.dtype, scale.dtype))
    return (y.astype(out, copy=False),)


@kernel("DynamicQuantizeLinear")
def dynamic_quantize_linear(inputs, attrs):
    """uint8 quantization of x with a scale and zero point fitted to the range
    of x extended to include 0, all in float32 like ONNX specifies."""
    (x,) = inputs
    if x.dtype != np.float32:
        raise KernelError(f"x must be float32, got {x.dtype}")
    if not np.isfinite(x).all():
        raise KernelError(f"x holds NaN or ±Inf at {located(~np.isfinite(x))}: the grid is fitted to x's range, "
                          "which then has none (docs/runtime.md, \"Non-finite inputs\")")
    zero = np.float32(0)
    high = np.maximum(zero, x.max()) if x.size else zero
    low = np.minimum(zero, x.min()) if x.size else zero
    scale = (np.float32(1) if high == low else high - low) / np.float32(255)
    zero_point = np.rint(np.clip(zero - low / scale, zero, np.float32(255)))
    y = np.clip(np.rint(x / scale) + zero_point, zero, np.float32(255))
    return y.astype(np.uint8), np.array(scale, np.float32), np.array(zero_point, np.uint8)


# ---------------------------------------------------------------- integer operands
def check_operand_types(q_dtype, zero_point_dtype, q_name: str, zero_point_name: str) -> None:
    """An integer-op operand is int8 or uint8 and its zero point has its type."""
    q_dtype = np.dtype(q_dtype)
    if q_dtype not in INTEGER_OP_TYPES:
        raise KernelError(f"{q_name} must be int8 or uint8, got {q_dtype}")
    if zero_point_dtype is not None and np.dtype(zero_point_dtype) != q_dtype:
        raise KernelError(f"{zero_point_name} has type {np.dtype(zero_point_dtype)} but {q_name} has type "
                          f"{q_dtype}; they must match")


def _broadcasts_into(param_shape, data_shape) -> bool:
    """True when ``param_shape`` broadcasts to ``data_shape`` without growing it."""
    if len(param_shape) > len(data_shape):
        return False
    tail = data_shape[len(data_shape) - len(param_shape):]
    return all(p is None or d is None or p in (1, d) for p, d in zip(param_shape, tail))


def check_scalar_param(param_shape, name: str) -> None:
    """A per-tensor parameter holds exactly one element."""
    size = _size(param_shape)
    if size is not None and size != 1:
        raise KernelError(f"{name} must hold one element (per-tensor), got shape {list(param_shape)}")


def check_channel_param(param_shape, channels, name: str) -> None:
    """A conv weight parameter: one element, or one per output channel (1-D)."""
    size = _size(param_shape)
    if size == 1 or (len(param_shape) == 1 and None in (param_shape[0], channels)):
        return
    if len(param_shape) != 1 or param_shape[0] != channels:
        raise KernelError(f"{name} must be a scalar or a 1-D tensor of {channels} elements (one per output "
                          f"channel), got shape {list(param_shape)}")


def check_row_param(a_shape, param_shape, name: str) -> None:
    """A parameter of matmul's left operand: one element, one per row (an
    M-vector), or a tensor broadcasting to it with a last dim of 1."""
    if _size(param_shape) == 1:
        return
    rows = a_shape[-2] if len(a_shape) >= 2 else 1
    if len(param_shape) == 1 and len(a_shape) >= 2 and param_shape[0] in (rows, None):
        return
    if len(param_shape) >= 2 and param_shape[-1] in (1, None) and _broadcasts_into(param_shape, a_shape):
        return
    raise KernelError(f"{name} must be a scalar, a vector of {rows} elements (one per row of the left operand) "
                      f"or a tensor broadcasting to {list(a_shape)} with a last dim of 1, got shape "
                      f"{list(param_shape)}")


def check_column_param(b_shape, param_shape, name: str) -> None:
    """A parameter of matmul's right operand: one element, one per column (an
    N-vector), or a tensor broadcasting to it with a second-last dim of 1."""
    if _size(param_shape) == 1:
        return
    columns = b_shape[-1] if len(b_shape) >= 2 else 1
    if len(param_shape) == 1 and len(b_shape) >= 2 and param_shape[0] in (columns, None):
        return
    if len(param_shape) >= 2 and param_shape[-2] in (1, None) and _broadcasts_into(param_shape, b_shape):
        return
    raise KernelError(f"{name} must be a scalar, a vector of {columns} elements (one per column of the right "
                      f"operand) or a tensor broadcasting to {list(b_shape)} with a second-last dim of 1, got "
                      f"shape {list(param_shape)}")


def _as_rows(value: np.ndarray) -> np.ndarray:
    """A checked row parameter in a shape that broadcasts over the left operand."""
    if value.size == 1:
        return value.reshape(())
    return value.reshape(-1, 1) if value.ndim == 1 else value


def _as_columns(value: np.ndarray) -> np.ndarray:
    return value.reshape(()) if value.size == 1 else value


def _as_channels(value: np.ndarray, rank: int, axis: int) -> np.ndarray:
    """A checked per-output-channel parameter shaped to broadcast over a
    tensor of ``rank`` whose channels lie on ``axis`` (0 for weights, 1 for
    NC... data)."""
    if value.size == 1:
        return value.reshape(())
    dims = [1] * rank
    dims[axis] = -1
    return value.reshape(dims)


def _bound(q: np.ndarray, zero_point: np.ndarray | None) -> int:
    """An upper bound of |q - zero_point| over the data, from four extremes."""
    if q.size == 0:
        return 0
    low, high = int(q.min()), int(q.max())
    z_low, z_high = (0, 0) if zero_point is None else (int(zero_point.min()), int(zero_point.max()))
    return max(high - z_low, z_high - low)


def _exact_float_type(depth: int, a_bound: int, b_bound: int) -> np.dtype:
    """float32 when every partial sum of ``depth`` products, each at most
    a_bound * b_bound in magnitude, stays below 2**24: then each one is an
    integer float32 holds exactly, whatever order BLAS adds in. Otherwise
    float64, exact up to 2**53 (depth 2**37 for 8-bit operands)."""
    return np.dtype(np.float32) if depth * a_bound * b_bound < 2**24 else np.dtype(np.float64)


def _centered(q: np.ndarray, zero_point: np.ndarray | None, dtype: np.dtype) -> np.ndarray:
    """q - zero_point in ``dtype`` (exact: both are small integers)."""
    if zero_point is None:
        return q.astype(dtype)
    return np.subtract(q, zero_point, dtype=dtype)


def _integer_matmul(a, b, a_zero_point, b_zero_point) -> np.ndarray:
    """The exact product (a - a_zero_point) @ (b - b_zero_point) as floats;
    the zero points are already shaped as rows / columns."""
    dtype = _exact_float_type(a.shape[-1], _bound(a, a_zero_point), _bound(b, b_zero_point))
    return nn.matmul(_centered(a, a_zero_point, dtype), _centered(b, b_zero_point, dtype))


def _conv_args(w: np.ndarray, attrs) -> dict:
    """conv_nd's keyword arguments from the node's window attributes."""
    kernel = tuple(int(k) for k in attrs["kernel_shape"])
    if kernel != tuple(w.shape[2:]):
        raise KernelError(f"kernel_shape={list(kernel)} does not match w of shape {list(w.shape)}")
    return dict(strides=attrs["strides"], pads=attrs["pads"], dilations=attrs["dilations"], group=attrs["group"])


def _requantize(acc: np.ndarray, multiplier: np.ndarray, zero_point: np.ndarray) -> np.ndarray:
    """saturate(round_half_even(acc * multiplier + zero_point)) in the zero
    point's type, computed in float64 like the reference evaluator."""
    acc = acc.astype(np.float64, copy=False)
    np.multiply(acc, multiplier.astype(np.float64), out=acc)
    np.add(acc, zero_point.astype(np.float64), out=acc)
    np.rint(acc, out=acc)
    low, high = QUANT_RANGES[zero_point.dtype]
    np.clip(acc, low, high, out=acc)
    return acc.astype(zero_point.dtype)


# ---------------------------------------------------------------- integer matmul / conv
@kernel("MatMulInteger")
def matmul_integer(inputs, attrs):
    """int32 (A - a_zero_point) @ (B - b_zero_point), numpy.matmul broadcasting."""
    a, b, a_zero_point, b_zero_point = _optional(inputs, 4)
    _check_matmul_operands(a, b, a_zero_point, b_zero_point)
    a_zero_point = None if a_zero_point is None else _as_rows(a_zero_point)
    b_zero_point = None if b_zero_point is None else _as_columns(b_zero_point)
    return (_integer_matmul(a, b, a_zero_point, b_zero_point).astype(np.int32),)


def _check_matmul_operands(a, b, a_zero_point, b_zero_point) -> None:
    if a.ndim == 0 or b.ndim == 0:
        raise KernelError(f"matmul operands must have rank >= 1, got shapes {list(a.shape)} and {list(b.shape)}")
    check_operand_types(a.dtype, None if a_zero_point is None else a_zero_point.dtype, "A", "a_zero_point")
    check_operand_types(b.dtype, None if b_zero_point is None else b_zero_point.dtype, "B", "b_zero_point")
    if a_zero_point is not None:
        check_row_param(a.shape, a_zero_point.shape, "a_zero_point")
    if b_zero_point is not None:
        check_column_param(b.shape, b_zero_point.shape, "b_zero_point")


@kernel("QLinearMatMul")
def qlinear_matmul(inputs, attrs):
    """Quantized matmul: the exact integer product, rescaled by
    a_scale * b_scale / y_scale (in the scales' type), then requantized."""
    a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point = inputs
    _check_matmul_operands(a, b, a_zero_point, b_zero_point)
    check_row_param(a.shape, a_scale.shape, "a_scale")
    check_column_param(b.shape, b_scale.shape, "b_scale")
    check_same_shape(a_scale.shape, a_zero_point.shape, "a_scale", "a_zero_point")
    check_same_shape(b_scale.shape, b_zero_point.shape, "b_scale", "b_zero_point")
    _check_output_params(y_scale, y_zero_point)
    acc = _integer_matmul(a, b, _as_rows(a_zero_point), _as_columns(b_zero_point))
    multiplier = _matmul_multiplier(a_scale, b_scale, y_scale, a.ndim, b.ndim)
    return (_requantize(acc, multiplier, y_zero_point.reshape(())),)


def _matmul_multiplier(a_scale, b_scale, y_scale, a_rank: int, b_rank: int) -> np.ndarray:
    """a_scale * b_scale / y_scale in the scales' type, shaped like the
    product (whose row / column axis is gone when that operand is 1-D)."""
    multiplier = np.multiply(_as_rows(a_scale), _as_columns(b_scale), dtype=y_scale.dtype) / y_scale.reshape(())
    if b_rank == 1 and multiplier.ndim >= 1:
        multiplier = multiplier[..., 0]
    if a_rank == 1 and multiplier.ndim >= 2:
        multiplier = multiplier[..., 0, :]
    return multiplier


def _check_output_params(y_scale: np.ndarray, y_zero_point: np.ndarray) -> None:
    check_scalar_param(y_scale.shape, "y_scale")
    check_scalar_param(y_zero_point.shape, "y_zero_point")
    if y_zero_point.dtype not in INTEGER_OP_TYPES:
        raise KernelError(f"y_zero_point must be int8 or uint8, got {y_zero_point.dtype}")


@kernel("ConvInteger")
def conv_integer(inputs, attrs):
    """int32 convolution of (x - x_zero_point) by (w - w_zero_point); padding
    contributes zero after the zero point is taken off, as in ONNX."""
    x, w, x_zero_point, w_zero_point = _optional(inputs, 4)
    _check_conv_operands(x, w, x_zero_point, w_zero_point)
    return (_integer_conv(x, w, x_zero_point, w_zero_point, attrs).astype(np.int32),)


@kernel("QLinearConv")
def qlinear_conv(inputs, attrs):
    """Quantized convolution: the exact integer result plus the int32 bias,
    rescaled by x_scale * w_scale / y_scale (float32), then requantized."""
    x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, bias = _optional(inputs, 9)
    _check_conv_operands(x, w, x_zero_point, w_zero_point)
    check_scalar_param(x_scale.shape, "x_scale")
    check_channel_param(w_scale.shape, w.shape[0], "w_scale")
    check_same_shape(w_scale.shape, w_zero_point.shape, "w_scale", "w_zero_point")
    _check_output_params(y_scale, y_zero_point)
    if bias is not None and (bias.dtype != np.int32 or bias.shape != (w.shape[0],)):
        raise KernelError(f"B must be an int32 vector of {w.shape[0]} elements, got {bias.dtype}{list(bias.shape)}")
    acc = _integer_conv(x, w, x_zero_point, w_zero_point, attrs).astype(np.float64, copy=False)
    if bias is not None:
        acc += _as_channels(bias.astype(np.float64), x.ndim, 1)
    multiplier = np.multiply(x_scale.reshape(()), w_scale, dtype=np.float32) / y_scale.reshape(())
    return (_requantize(acc, _as_channels(multiplier, x.ndim, 1), y_zero_point.reshape(())),)


def _check_conv_operands(x, w, x_zero_point, w_zero_point) -> None:
    if x.ndim < 3 or w.ndim != x.ndim:
        raise KernelError(f"x and w must have one rank of at least 3, got {list(x.shape)} and {list(w.shape)}")
    check_operand_types(x.dtype, None if x_zero_point is None else x_zero_point.dtype, "x", "x_zero_point")
    check_operand_types(w.dtype, None if w_zero_point is None else w_zero_point.dtype, "w", "w_zero_point")
    if x_zero_point is not None:
        check_scalar_param(x_zero_point.shape, "x_zero_point")
    if w_zero_point is not None:
        check_channel_param(w_zero_point.shape, w.shape[0], "w_zero_point")


def _integer_conv(x, w, x_zero_point, w_zero_point, attrs) -> np.ndarray:
    """The exact result of the integer convolution, as floats."""
    x_zero_point = None if x_zero_point is None else x_zero_point.reshape(())
    w_zero_point = None if w_zero_point is None else _as_channels(w_zero_point, w.ndim, 0)
    dtype = _exact_float_type(w[0].size, _bound(x, x_zero_point), _bound(w, w_zero_point))
    return nn.conv_nd(_centered(x, x_zero_point, dtype), _centered(w, w_zero_point, dtype), None,
                      exact=True, **_conv_args(w, attrs))
