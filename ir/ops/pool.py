"""Op definitions: pooling.

Windowed pools take the canonical window attributes of :mod:`ir.ops.nn`
(explicit kernel_shape, strides, pads, dilations; no auto_pad). ONNX MaxPool
with its optional Indices output becomes ``MaxPoolWithIndices`` (a kernel
cannot see how many outputs its node has, so the two forms are two ops).
"""
from __future__ import annotations

import numpy as np

from ir.ops.common import FLOAT_TYPES, ONES_PER_AXIS, ZERO_PADS
from ir.ops.nn import spatial_rank, window_attrs, window_out_shape
from ir.registry import REQUIRED, InferContext, Pattern, register_op
from ir.types import TensorType

MAX_POOL_TYPES = FLOAT_TYPES + (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16))
"""ONNX's types, and int16: the codes of 16-bit quantized layers (max commutes with the grid)."""


def _input(ctx: InferContext, allowed) -> TensorType:
    x = ctx.type(0)
    if x.dtype not in allowed:
        raise ctx.error(f"X has dtype {x.dtype}, expected one of {[str(d) for d in allowed]}")
    return x


def _pooled(ctx: InferContext, allowed) -> TensorType:
    x = _input(ctx, allowed)
    spatial = spatial_rank(ctx)
    kernel, strides, pads, dilations = window_attrs(ctx, spatial)
    ceil_mode = int(ctx.attrs["ceil_mode"])
    if ceil_mode not in (0, 1):
        raise ctx.error(f"ceil_mode={ceil_mode} must be 0 or 1")
    out = window_out_shape(ctx, x.shape[2:], kernel, strides, pads, dilations, bool(ceil_mode))
    return TensorType([*x.shape[:2], *out], x.dtype)


def _max_pool(ctx: InferContext) -> list[TensorType]:
    return [_pooled(ctx, MAX_POOL_TYPES)]


def _max_pool_with_indices(ctx: InferContext) -> list[TensorType]:
    if int(ctx.attrs["storage_order"]) not in (0, 1):
        raise ctx.error(f"storage_order={ctx.attrs['storage_order']} must be 0 or 1")
    y = _pooled(ctx, MAX_POOL_TYPES)
    return [y, y.with_dtype(np.int64)]


def _average_pool(ctx: InferContext) -> list[TensorType]:
    return [_pooled(ctx, FLOAT_TYPES)]


def _lp_pool(ctx: InferContext) -> list[TensorType]:
    _check_p(ctx)
    return [_pooled(ctx, FLOAT_TYPES)]


def _check_p(ctx: InferContext) -> None:
    if int(ctx.attrs["p"]) < 1:
        raise ctx.error(f"p={ctx.attrs['p']} must be >= 1")


def _global(allowed):
    def rule(ctx: InferContext) -> list[TensorType]:
        x = _input(ctx, allowed)
        if x.rank < 3:
            raise ctx.error(f"X must have rank >= 3 (N, C, spatial...), got {x}")
        if "p" in ctx.attrs:
            _check_p(ctx)
        return [TensorType([*x.shape[:2]] + [1] * (x.rank - 2), x.dtype)]
    return rule


_WINDOW = {"kernel_shape": REQUIRED, "strides": ONES_PER_AXIS, "pads": ZERO_PADS, "dilations": ONES_PER_AXIS,
           "ceil_mode": 0}

register_op("MaxPool", _max_pool, Pattern.OPAQUE, attrs=dict(_WINDOW),
            doc="ONNX MaxPool without the Indices output.")
register_op("MaxPoolWithIndices", _max_pool_with_indices, Pattern.OPAQUE, outputs=2,
            attrs={**_WINDOW, "storage_order": 0},
            doc="ONNX MaxPool with its Indices output (flat int64 input positions).")
register_op("AveragePool", _average_pool, Pattern.OPAQUE, attrs={**_WINDOW, "count_include_pad": 0})
register_op("LpPool", _lp_pool, Pattern.OPAQUE, attrs={**_WINDOW, "p": 2})
register_op("GlobalAveragePool", _global(FLOAT_TYPES), Pattern.REDUCTION)
register_op("GlobalMaxPool", _global(MAX_POOL_TYPES), Pattern.REDUCTION)
register_op("GlobalLpPool", _global(FLOAT_TYPES), Pattern.REDUCTION, attrs={"p": 2})
