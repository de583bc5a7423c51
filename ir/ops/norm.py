"""Op definitions: normalisation and softmax-like ops (BatchNormalization in
its inference form, InstanceNormalization, LayerNormalization, LRN,
MeanVarianceNormalization, Softmax, LogSoftmax, Hardmax)."""
from __future__ import annotations

import numpy as np

from ir.ops.common import normalize_axes, normalize_axis, require_float
from ir.registry import REQUIRED, InferContext, Pattern, register_op
from ir.types import TensorType


def _channels(ctx: InferContext) -> int | None:
    """The channel count of input 0 (dim 1; a rank-1 input has one channel)."""
    x = ctx.type(0)
    return 1 if x.rank == 1 else x.shape[1]


def _check_per_channel(ctx: InferContext, indices, names) -> None:
    """Each listed input is a 1-D float tensor with one entry per channel."""
    channels = _channels(ctx)
    for index, name in zip(indices, names):
        t = require_float(ctx, index)
        if t.rank != 1:
            raise ctx.error(f"{name} (input {index}) must be 1-D, got {t}")
        if channels is not None and t.shape[0] is not None and t.shape[0] != channels:
            raise ctx.error(f"{name} (input {index}) has {t.shape[0]} entries, the input has {channels} channels")


def _batch_norm(ctx: InferContext) -> list[TensorType]:
    x = require_float(ctx)
    if x.rank < 1:
        raise ctx.error(f"input 0 must have rank >= 1, got {x}")
    _check_per_channel(ctx, range(1, 5), ("scale", "B", "input_mean", "input_var"))
    return [x]


def _instance_norm(ctx: InferContext) -> list[TensorType]:
    x = require_float(ctx)
    if x.rank < 2:
        raise ctx.error(f"input 0 must have rank >= 2 (N, C, ...), got {x}")
    _check_per_channel(ctx, (1, 2), ("scale", "B"))
    return [x]


def _check_broadcasts_to(ctx: InferContext, index: int, name: str, target: tuple) -> None:
    """Input ``index`` must broadcast (unidirectionally) to ``target``."""
    shape = ctx.shape(index)
    if len(shape) > len(target):
        raise ctx.error(f"{name} (input {index}) {ctx.type(index)} has a higher rank than the normalized "
                        f"shape {list(target)}")
    for dim, want in zip(reversed(shape), reversed(target)):
        if dim is not None and want is not None and dim not in (1, want):
            raise ctx.error(f"{name} (input {index}) {ctx.type(index)} does not broadcast to the normalized "
                            f"shape {list(target)}")


def _layer_norm(ctx: InferContext) -> list[TensorType]:
    """Y, Mean and InvStdDev (float32 statistics, ONNX's stash_type=1): the node
    always has all three outputs (the kernel computes the statistics anyway;
    unused ones are dead values)."""
    x = require_float(ctx)
    axis = normalize_axis(ctx, ctx.attrs["axis"], x.rank)
    normalized = x.shape[axis:]
    _check_broadcasts_to(ctx, 1, "Scale", normalized)
    if ctx.has(2):
        _check_broadcasts_to(ctx, 2, "B", normalized)
    stats = TensorType(x.shape[:axis] + (1,) * len(normalized), np.float32)
    return [x, stats, stats]


def _lrn(ctx: InferContext) -> list[TensorType]:
    x = require_float(ctx)
    if x.rank < 3:
        raise ctx.error(f"input 0 must have rank >= 3 (N, C, D1, ...), got {x}")
    if ctx.attrs["size"] < 1:
        raise ctx.error(f"size={ctx.attrs['size']} must be positive")
    return [x]


def _mvn(ctx: InferContext) -> list[TensorType]:
    x = require_float(ctx)
    normalize_axes(ctx, ctx.attrs["axes"], x.rank)
    return [x]


def _along_axis(ctx: InferContext) -> list[TensorType]:
    """Softmax, LogSoftmax, Hardmax: same type, ``axis`` must be valid."""
    x = require_float(ctx)
    normalize_axis(ctx, ctx.attrs["axis"], max(x.rank, 1))
    return [x]


register_op("BatchNormalization", _batch_norm, Pattern.BROADCAST, inputs=5, attrs={"epsilon": 1e-5},
            doc="Inference form: (x - mean) / sqrt(var + epsilon) * scale + B, per channel (dim 1).")
register_op("InstanceNormalization", _instance_norm, Pattern.OPAQUE, inputs=3, attrs={"epsilon": 1e-5})
register_op("LayerNormalization", _layer_norm, Pattern.OPAQUE, inputs=(2, 3), outputs=3,
            attrs={"axis": -1, "epsilon": 1e-5})
register_op("LRN", _lrn, Pattern.OPAQUE,
            attrs={"alpha": 1e-4, "beta": 0.75, "bias": 1.0, "size": REQUIRED})
register_op("MeanVarianceNormalization", _mvn, Pattern.OPAQUE, attrs={"axes": [0, 2, 3]})
for _op in ("Softmax", "LogSoftmax", "Hardmax"):
    register_op(_op, _along_axis, Pattern.OPAQUE, attrs={"axis": -1})
