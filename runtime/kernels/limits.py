"""Limits on what a kernel may allocate from parameter values, which can come
from an untrusted model or program: beyond them the value is taken as corrupt
or hostile, and the kernel refuses with a clear error instead of exhausting
memory."""
from __future__ import annotations

import math
from typing import Sequence

from runtime.errors import KernelError

MAX_ELEMENTS = 1 << 30
"""Largest element count an op may produce from its parameter inputs (4 GiB
of float32)."""

MAX_RANK = 64
"""numpy's largest rank."""


def check_output_size(shape: Sequence[int], name: str) -> tuple[int, ...]:
    """Refuse negative dims, ranks numpy cannot hold and outputs of more than
    MAX_ELEMENTS elements; returns the shape as a tuple of ints."""
    shape = tuple(int(d) for d in shape)
    if len(shape) > MAX_RANK:
        raise KernelError(f"{name} gives an output of rank {len(shape)}, more than {MAX_RANK}")
    if any(d < 0 for d in shape):
        raise KernelError(f"{name} gives the negative output shape {list(shape)}")
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise KernelError(f"{name} gives an output of shape {list(shape)} ({count} elements), "
                          f"more than the limit of {MAX_ELEMENTS}")
    return shape
