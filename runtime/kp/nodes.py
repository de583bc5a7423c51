"""Output nodes out of a raw result: float values, or fixed-point data with
the radix and scale that turn it back into them, in a channel ordering.

A node the device produced carries its codes: the fixed data is code -
zero_point (int8 when the zero point is 0, int16 when shifting an int8 code
needs 9 bits, int32 when an asymmetric int16 code needs 17), with the radix
and scale of its grid (runtime/kp/model.py), so data / (scale * 2**radix)
is the float node. A node the CPU computed (after the device) has no codes:
its fixed data is its float values on the int16 power-of-two grid that
holds their largest magnitude (scale 1.0, the largest radix up to 30 with
max|value| * 2**radix <= 32767), which reproduces the float node within
2**-(radix+1).
"""
from __future__ import annotations

import math

import numpy as np

from runtime.errors import ExecutionError
from runtime.kp.enums import ChannelOrdering, FixedPointDType
from runtime.kp.model import radix_scale
from runtime.kp.value import (
    InferenceFixedNodeOutput,
    InferenceFloatNodeOutput,
    QuantizationParameters,
    QuantizationParametersV1,
    QuantizedFixedPointDescriptor,
    RawNode,
    Scale,
)
from runtime.nonfinite import located

_ORDER = {ChannelOrdering.KP_CHANNEL_ORDERING_CHW: (0, 1, 2, 3),
          ChannelOrdering.KP_CHANNEL_ORDERING_HCW: (0, 2, 1, 3),
          ChannelOrdering.KP_CHANNEL_ORDERING_HWC: (0, 2, 3, 1)}
_FIXED_DTYPES = ((np.int8, FixedPointDType.KP_FIXED_POINT_DTYPE_INT8),
                 (np.int16, FixedPointDType.KP_FIXED_POINT_DTYPE_INT16),
                 (np.int32, FixedPointDType.KP_FIXED_POINT_DTYPE_UNKNOWN))
MAX_RADIX = 30


def ordered(array: np.ndarray, ordering: ChannelOrdering) -> np.ndarray:
    """A rank-4 [N, C, H, W] array in ``ordering`` (CHW keeps it); other
    ranks have no spatial axes to order and keep the ONNX shape."""
    if array.ndim != 4:
        return array
    return np.ascontiguousarray(array.transpose(_ORDER[ordering]))


def _sizes(shape) -> tuple[int, int, int]:
    """1.x's (width, height, channel) of an ONNX shape."""
    if len(shape) == 4:
        return shape[3], shape[2], shape[1]
    return 1, 1, (shape[1] if len(shape) > 1 else (shape[0] if shape else 1))


def float_node(node: RawNode, ordering: ChannelOrdering) -> InferenceFloatNodeOutput:
    data = ordered(node.values, ordering)
    width, height, channel = _sizes(node.values.shape)
    return InferenceFloatNodeOutput(name=node.name, shape=list(node.values.shape), width=width, height=height,
                                    channel=channel, num_data=int(data.size), data=data,
                                    channels_ordering=ordering)


def _fixed(node: RawNode) -> tuple[np.ndarray, int, float, int]:
    """(fixed data in ONNX order, in its type, radix, scale, zero point) of a node."""
    if node.codes is not None:
        radix, scale = radix_scale(node.scale)
        width = node.codes.itemsize * 8 + (node.zero_point != 0)
        numpy_type = next(t for t, _ in _FIXED_DTYPES if np.iinfo(t).bits >= width)
        return (node.codes.astype(np.int64) - node.zero_point).astype(numpy_type), radix, scale, node.zero_point
    values = node.values.astype(np.float64)
    finite = np.isfinite(values)
    if np.isnan(values).any():
        raise ExecutionError(f"output {node.name!r} holds NaN at {located(np.isnan(values))}, which no fixed-point "
                             "value stands for: retrieve it as float")
    peak = float(np.abs(values[finite]).max()) if finite.any() else 0.0
    radix = MAX_RADIX if peak == 0.0 else min(MAX_RADIX, math.floor(math.log2(32767 / peak)))
    while radix > -MAX_RADIX and peak * 2.0 ** radix > 32767:
        radix -= 1
    fixed = np.clip(np.rint(values * 2.0 ** radix), -32768, 32767)  # ±Inf saturates, as on the device
    return fixed.astype(np.int16), radix, 1.0, 0


def fixed_node(node: RawNode, ordering: ChannelOrdering) -> InferenceFixedNodeOutput:
    data, radix, scale, zero = _fixed(node)
    dtype = next(d for t, d in _FIXED_DTYPES if t == data.dtype.type)
    data = ordered(data, ordering)
    width, height, channel = _sizes(node.values.shape)
    params = QuantizationParameters(data=QuantizationParametersV1(quantized_fixed_point_descriptor_list=[
        QuantizedFixedPointDescriptor(scale=Scale(value=scale), radix=radix, zero_point=zero)]))
    return InferenceFixedNodeOutput(name=node.name, shape=list(node.values.shape), width=width, height=height,
                                    channel=channel, radix=radix, scale=scale, factor=1.0 / (scale * 2.0 ** radix),
                                    quantization_parameters=params, dtype=dtype, num_data=int(data.size),
                                    data=data, channels_ordering=ordering)
