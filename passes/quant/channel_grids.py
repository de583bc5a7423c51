"""Channel grids: a grid per channel for the tensors between a convolution
and the depthwise convolutions that read it (docs/quantization.md).

An activation has one grid for the tensor, so a quiet channel beside a loud
one keeps few codes. Between a convolution and depthwise convolutions the
device can give each channel its own scale for free: the producer already
requantises each output channel with its own multiplier
(``s_in s_w[k] / s_out[k]``), and a depthwise convolution reads each
channel alone, so its accumulator for output ``k`` is on ``s_x[k] s_w[k]``
and its own per-channel multipliers absorb the input's scale. The zero point
stays common (it is the convolution's ``x_zero``, folded into the bias and
filling the padding), the float model is untouched and every activation is
exact: unlike cross-layer equalization, nothing has to commute with a
scale. No instruction, binary field or kernel changes: the scales live in
the integer multipliers.

A channel's range is what calibration saw of it times :data:`HEADROOM`,
within the tensor's own calibrated grid: a channel's extremes on a few dozen
inputs are a noisier estimate than the tensor's, and a clipped value costs
far more than a coarser step (measured on the digit detector, the stem's
output: reg 30.6 dB with the tensor's grid, 36.9 with each channel's seen
range on the calibration inputs but 3 dB lost elsewhere to clipping on new
inputs; 1.5 x keeps the gain where it is large and loses nowhere).
"""
from __future__ import annotations

import numpy as np

from ir.graph import Graph, Node, Value
from ir.types import QuantParams
from passes.infra import register_option
from passes.quant.units import clip_limits
from runtime.qscheme import ACTIVATION_RANGE

register_option("quant.channel_grids", bool, True,
                "a grid per channel for tensors a convolution writes and only depthwise convolutions read "
                "(free on the device: the scales live in the per-channel multipliers)")

HEADROOM = 1.5
"""A channel's grid covers this many times the range calibration saw of it
(within the tensor's grid)."""
FINEST = 2.0 ** -8
"""A channel's scale is at least this fraction of the tensor's: a nearly
silent channel would otherwise ask for multipliers the device cannot hold."""
CHANNEL_AXIS = 1


def eligible(body: Graph, units: list[Node]) -> list[Value]:
    """The stored values of one accelerator segment ``body`` (its ``units``,
    passes/quant/units.py) that can take a grid per channel: written by a
    convolution or a per-channel affine (no residual, no lookup-table
    epilogue) inside the segment, not a segment output, and read only by
    depthwise convolutions or affines as their data input."""
    tables = {n.annotations["table_of"] for n in units if "table_of" in n.annotations}
    users: dict[int, list[Node]] = {}
    for unit in units:
        for value in unit.inputs:
            if value is not None:
                users.setdefault(id(value), []).append(unit)
    outputs = {id(v) for v in body.outputs}
    found = []
    for unit in units:
        value = unit.outputs[0]
        readers = users.get(id(value), [])
        if (id(value) not in outputs and unit.name not in tables and readers and _writes_channels(unit)
                and value.type.rank == 4 and all(_reads_channels_alone(r, value) for r in readers)):
            found.append(value)
    return found


def channel_grid(tensor: QuantParams, lows: np.ndarray, highs: np.ndarray,
                 clamp: tuple[float | None, float | None] = (None, None)) -> QuantParams:
    """The grid per channel (axis 1) of a tensor whose own grid is ``tensor``
    and whose channels calibration saw within ``lows``/``highs``: the
    tensor's zero point, each channel's scale the smallest that holds
    :data:`HEADROOM` times its range without leaving the tensor's grid or
    ``clamp`` (an activation's bounds, so that the producer's clamp codes
    are the same for every channel)."""
    qmin, qmax = ACTIVATION_RANGE[np.dtype(tensor.dtype)]
    s, z = tensor.scale[0], tensor.zero[0]
    top, bottom = s * (qmax - z), s * (qmin - z)
    if clamp[1] is not None:
        top = min(top, clamp[1])
    if clamp[0] is not None:
        bottom = max(bottom, clamp[0])
    highs = np.minimum(HEADROOM * np.maximum(np.asarray(highs, np.float64), 0.0), max(top, 0.0))
    lows = np.maximum(HEADROOM * np.minimum(np.asarray(lows, np.float64), 0.0), min(bottom, 0.0))
    scales = np.zeros(len(highs))
    if qmax > z:
        scales = np.maximum(scales, highs / (qmax - z))
    if qmin < z:
        scales = np.maximum(scales, lows / (qmin - z))
    scales = np.where(scales > 0, np.maximum(scales, s * FINEST), s).astype(np.float32)
    return QuantParams(np.minimum(scales, np.float32(s)), [z] * len(scales), tensor.dtype, axis=CHANNEL_AXIS)


def clip_bounds(unit: Node) -> tuple[float | None, float | None]:
    """The bounds of the Clip a conv or affine unit folds in ((None, None) without one)."""
    members = unit.attrs["body"].nodes if unit.op == "Fused" else [unit]
    clip = next((m for m in members if m.op == "Clip"), None)
    return (None, None) if clip is None else clip_limits(clip)


def per_output_scales(grid: QuantParams, channels: int) -> np.ndarray:
    """The input scale of each of a layer's ``channels`` outputs: the grid's
    one scale, or with a grid per channel (read by a depthwise layer, whose
    output ``k`` reads input channel ``k // multiplier``) that channel's."""
    scales = np.asarray(grid.scale, np.float64)
    if scales.size == 1:
        return np.full(channels, scales[0])
    if channels % scales.size:
        raise ValueError(f"a grid of {scales.size} channels cannot feed {channels} depthwise outputs")
    return np.repeat(scales, channels // scales.size)


def _writes_channels(unit: Node) -> bool:
    """A conv unit on a Conv without a residual, or an affine unit: its
    requantisation is per output channel."""
    kind = unit.annotations.get("unit")
    members = unit.attrs["body"].nodes if unit.op == "Fused" else [unit]
    if kind == "affine":
        return True
    return (kind == "conv" and members[0].op == "Conv"
            and not any(m.op in ("Add", "Sum") and not any(v.is_constant for v in m.inputs) for m in members[1:]))


def _reads_channels_alone(unit: Node, value: Value) -> bool:
    """Whether ``unit`` is a depthwise convolution or an affine reading
    ``value`` as its data input (and nowhere else)."""
    kind = unit.annotations.get("unit")
    if kind not in ("conv", "affine") or sum(v is value for v in unit.inputs) != 1:
        return False
    first = unit.attrs["body"].nodes[0] if unit.op == "Fused" else unit
    formal = unit.attrs["body"].inputs[list(unit.inputs).index(value)] if unit.op == "Fused" else value
    if kind == "affine":
        return all(v.is_constant for v in first.inputs if v is not formal)
    weight = first.inputs[1]
    return (first.op == "Conv" and first.inputs[0] is formal and weight.is_constant and weight.const.ndim == 4
            and weight.const.shape[1] == 1 and int(first.attrs["group"]) == value.type.shape[CHANNEL_AXIS])
