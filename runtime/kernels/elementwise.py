"""CPU kernels: element-wise math, activations, logic and comparisons."""
from __future__ import annotations

import numpy as np

from runtime.kernels.registry import kernel


@kernel("Relu")
def relu(inputs, attrs):
    (x,) = inputs
    return (np.maximum(x, x.dtype.type(0)),)


@kernel("Add")
def add(inputs, attrs):
    a, b = inputs
    return (np.add(a, b),)
