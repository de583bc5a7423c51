"""The DRAM image: the constant region of every card's DRAM (packed
weights, PARAM records, lookup tables, constant operands), which the binary
stores and Init copies to address 0; activations follow it
(passes/plan_memory.py places them)."""
from __future__ import annotations

import numpy as np

from passes.plan_memory import align


class ConstantImage:
    """The DRAM image: constant blocks appended at aligned addresses."""

    def __init__(self):
        self._parts: list[bytes] = []
        self.size = 0

    def add(self, data: bytes | np.ndarray) -> int:
        """Append ``data`` (little-endian bytes of an array); its address."""
        raw = np.ascontiguousarray(data).astype(np.asarray(data).dtype.newbyteorder("<"), copy=False).tobytes() \
            if isinstance(data, np.ndarray) else bytes(data)
        addr = align(self.size)
        self._parts.append(b"\0" * (addr - self.size))
        self._parts.append(raw)
        self.size = addr + len(raw)
        return addr

    def tobytes(self) -> bytes:
        return b"".join(self._parts)
