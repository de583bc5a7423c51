"""Choosing quantization parameters: a layer's precision, activation grids
from calibrated ranges, per-channel weight grids (docs/quantization.md)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ir.graph import onnx_name
from ir.types import QuantParams
from passes.infra import PassContext, PassError, register_option
from runtime.qscheme import (
    ACCUMULATOR,
    INT8,
    INT16,
    WEIGHT_RANGE,
    activation_params,
    quantize,
    radix_params,
    weight_scales,
)

PRECISIONS = ("int8", "int16", "radix8", "radix16")

register_option("quant.mode", str, "int8",
                "default precision of accelerator layers: 'int8' (scale and zero point) or 'radix8' / "
                "'radix16' (power-of-two scales, FWDNXT's fixed point); 'int16' too")
register_option("quant.layer_precision", dict, {},
                "per-layer precision by ONNX node name: 'int8', 'int16', 'radix8' or 'radix16'")


@dataclass(frozen=True)
class Precision:
    """A layer's storage type and whether its scales are powers of two."""

    dtype: np.dtype
    radix: bool

    @property
    def accumulator(self) -> np.dtype:
        return ACCUMULATOR[self.dtype]


def parse_precision(text: str, where: str) -> Precision:
    if text not in PRECISIONS:
        raise PassError(f"{where}: precision {text!r} is not one of {list(PRECISIONS)}")
    return Precision(INT16 if text.endswith("16") else INT8, text.startswith("radix"))


def layer_precision(names, ctx: PassContext) -> Precision:
    """The precision of a unit made of the nodes ``names`` (a per-layer
    setting on any of them wins over the model's mode)."""
    overrides = ctx.option("quant.layer_precision")
    for name in map(onnx_name, names):
        if name in overrides:
            return parse_precision(overrides[name], f"quant.layer_precision[{name!r}]")
    return parse_precision(ctx.option("quant.mode"), "quant.mode")


def activation_quant(low: float, high: float, precision: Precision) -> QuantParams:
    """The grid of an activation whose calibrated range is [low, high]."""
    if precision.radix:
        scale, zero = radix_params(max(abs(low), abs(high)), precision.dtype)
    else:
        scale, zero = activation_params(low, high, precision.dtype)
    return QuantParams(scale, zero, precision.dtype)


def weight_quant(weight: np.ndarray, precision: Precision, axis: int = 0,
                 floor: np.ndarray | None = None) -> tuple[np.ndarray, QuantParams]:
    """(integer weights, their per-channel grid): symmetric, max |w| per
    output channel, or power-of-two per channel in radix mode. ``floor``
    (per channel) is the smallest scale the layer can use (see rewrite.py)."""
    scales = weight_scales(weight, precision.dtype, axis)
    if floor is not None:
        scales = np.maximum(scales, np.asarray(floor, np.float64)).astype(np.float32)
    if precision.radix:
        qmax = WEIGHT_RANGE[precision.dtype][1]
        scales = np.array([radix_params(s * qmax, precision.dtype)[0] for s in scales], np.float32)
    q = quantize(weight, scales, np.zeros(len(scales), np.int64), precision.dtype, axis=axis)
    return q, QuantParams(scales, np.zeros(len(scales), np.int64), precision.dtype, axis=axis)


def same_params(a: QuantParams, b: QuantParams) -> bool:
    return a.scale == b.scale and a.zero == b.zero and a.dtype == b.dtype
