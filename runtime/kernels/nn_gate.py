"""A FusedConv step and the FusedElementwise step after it that is one
HardSigmoid or HardSwish of its output, run as one step: the activation
becomes the gate of the convolution's epilogue (runtime.kernels.conv_epilogue),
applied to each output tile while it is in cache.

Codegen (codegen/cpu_fused.py) lowers a float32 Conv followed by an
activation the epilogue's clamp cannot express to a FusedConv step that
writes the Conv's own value, and the activation over it, in place: so that
value can be fetched and observed (calibration, layer-wise comparison). The
executor runs the two steps as one through :func:`fuse` (registered with
:func:`runtime.kernels.registry.fuses`) only when nothing fetches or watches
that value and nothing else reads it; then it is never written. The gate is
the same float32 operations, in the same order, as the element-wise
kernel: the same bits. PP-LCNet has 24 such pairs, MobileNetV3 its
HardSwish expansions.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from runtime.errors import KernelError
from runtime.kernels.fused import decode
from runtime.kernels.fused_interpreter import HARD_SIGMOID, HARD_SWISH
from runtime.kernels.nn_prepared import PreparedConv
from runtime.kernels.registry import Kernel

HARD_SWISH_GATE = ("HardSwish", float(np.float32(1.0 / 6.0)), 0.5)
"""The gate of the ``hard_swish`` opcode (activations.hard_swish's constants)."""


def gate_of(attrs: Mapping[str, Any]) -> tuple | None:
    """The gate (kind, alpha, beta) a FusedElementwise step's attributes
    describe when its code is one ``hard_sigmoid`` (finite parameters) or
    ``hard_swish`` of input 0 at rank 4 (a 2-D convolution's output, in
    place or not); else None."""
    if attrs.get("rank") != 4 or attrs.get("inplace", -1) not in (-1, 0):
        return None
    try:
        program = decode(attrs.get("code"), 1)
    except KernelError:
        return None
    if program.code.shape[0] != 1 or program.code[0, 2] != 0:
        return None
    opcode = program.code[0, 0]
    alpha, beta = (float(v) for v in program.params[0])
    if opcode == HARD_SWISH:
        return HARD_SWISH_GATE
    if opcode == HARD_SIGMOID and math.isfinite(alpha) and math.isfinite(beta):
        return ("HardSigmoid", alpha, beta)
    return None


def fuse(first: Kernel, second: Kernel, first_inputs: int, attrs: Mapping[str, Any], generic) -> Kernel | None:
    """The :class:`GatedConv` of a prepared FusedConv (X, W, B, R) and a
    FusedElementwise step that is a gate (:func:`gate_of`), or None.
    ``generic(inputs, attrs, gate)``: the FusedConv kernel with a gate, for
    the calls the prepared step hands on."""
    gate = gate_of(attrs["second"])
    if gate is None or first_inputs != 4 or not (isinstance(first, PreparedConv) and first.fused):
        return None
    try:
        return GatedConv(first, second, attrs, gate, generic)
    except (KernelError, KeyError, TypeError, ValueError):  # attributes from an untrusted binary
        return None


class GatedConv:
    """The fused step: the FusedConv step prepared again with the gate in
    its epilogue. Called with other attributes, or inputs beyond X, W, B,
    R, it runs the two steps one after the other."""

    def __init__(self, first: PreparedConv, second: Kernel, attrs: Mapping[str, Any], gate: tuple, generic):
        self.first, self.second, self.attrs = first, second, attrs
        self.conv = PreparedConv(lambda inputs, step_attrs: generic(inputs, step_attrs, gate), attrs["first"],
                                 first.w, first.b, True, gate)

    def __call__(self, inputs, attrs):
        if attrs is self.attrs and len(inputs) == 4:
            return self.conv(inputs, attrs["first"])
        return self.second([self.first(inputs[:4], attrs["first"])[0], *inputs[4:]], attrs["second"])

    def lower(self, ctx, args, attrs) -> bool:
        """The prepared step with its gate as schedule operations (runtime.schedule)."""
        return attrs is self.attrs and len(args) == 4 and self.conv.lower(ctx, args, attrs["first"])
