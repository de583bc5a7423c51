"""DRAM planning for a compiled model: one address space per card.

The constant region (packed weights, PARAM records, lookup tables, constant
operands) comes first and is the binary's DRAM image; activations follow.
Activation tensors get addresses by liveness: two tensors share bytes only
when their lifetimes (first write to last read, in layer order) do not
overlap. Placement is greedy, largest first, at the lowest address free for
the tensor's whole lifetime (the classic offset-assignment heuristic of
TFLite's and TVM's memory planners).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALIGN = 64
"""Every DRAM block starts on a 64-byte boundary (a DRAM burst)."""


def align(value: int, to: int = ALIGN) -> int:
    return -(-value // to) * to


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


@dataclass
class Interval:
    """A tensor's bytes and lifetime [first, last] in layer indices."""

    key: object
    size: int
    first: int
    last: int
    addr: int = -1


def assign_addresses(intervals: list[Interval], base: int) -> int:
    """Give each interval an address >= ``base`` so that intervals alive at
    the same time never overlap; returns the end of the highest block."""
    placed: list[Interval] = []
    end = base
    for item in sorted(intervals, key=lambda i: (-i.size, i.first)):
        busy = sorted((p.addr, p.addr + align(p.size)) for p in placed
                      if p.first <= item.last and item.first <= p.last)
        addr = base
        for start, stop in busy:
            if addr + item.size <= start:
                break
            addr = max(addr, stop)
        item.addr = addr
        placed.append(item)
        end = max(end, addr + align(item.size))
    return end
