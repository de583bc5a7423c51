"""CPU kernels: shape and data movement (numpy views and copies)."""
from __future__ import annotations

import numpy as np

from runtime.errors import KernelError
from runtime.kernels.registry import kernel


@kernel("Shape")
def shape(inputs, attrs):
    dims = np.array(inputs[0].shape, dtype=np.int64)
    end = attrs["end"]
    return (dims[attrs["start"]:end].copy(),)


@kernel("Reshape")
def reshape(inputs, attrs):
    data, target = inputs
    target = [int(d) for d in target]
    if not attrs["allowzero"]:
        target = [data.shape[i] if d == 0 else d for i, d in enumerate(target)]
    try:
        return (data.reshape(target),)
    except ValueError:
        raise KernelError(f"cannot reshape {list(data.shape)} to {target}") from None
