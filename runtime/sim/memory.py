"""On-chip memory of the simulated clusters, and the element access helpers
the Numba kernels share.

Each space (WGT, ACT, ACC) of a card is one uint8 array holding the buffers
of every cluster of the card back to back, ``stride`` bytes apart (the
buffer size rounded up to 64 bytes, so every cluster's buffer starts at an
address aligned for any element type). Kernels read and write through typed
views of the whole array (int8, int16, int32, int64): the validator
guarantees every access is aligned to its element size and inside its
cluster's buffer, so an element at byte address ``a`` is view[a // size].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from runtime.jit import jit
from runtime.sim.bytevec import map8

ALIGN = 64
"""Cluster buffers start at multiples of this many bytes."""


@dataclass
class Space:
    """One space of a card: the bytes and the typed views of them."""

    stride: int
    u8: np.ndarray
    i8: np.ndarray
    i16: np.ndarray
    i32: np.ndarray
    i64: np.ndarray

    @classmethod
    def allocate(cls, size: int, slots: int) -> Space:
        """Room for ``slots`` cluster buffers of ``size`` bytes, zeroed."""
        stride = -(-size // ALIGN) * ALIGN
        raw = np.zeros(stride * max(slots, 1), np.uint8)
        return cls(stride, raw, raw.view(np.int8), raw.view(np.int16), raw.view(np.int32), raw.view(np.int64))

    def clear(self, extent: int | None = None) -> None:
        """Zero each cluster buffer's first ``extent`` bytes (all of them by
        default): bytes past the program's extent are never written, so they
        stay zero from allocation."""
        for view in self.reachable(extent):
            view.fill(0)

    def reachable(self, extent: int | None = None) -> list[np.ndarray]:
        """Views of each cluster buffer's first ``extent`` bytes (all of the
        space by default): what :meth:`clear` zeroes, for a caller that
        zeroes them on every run."""
        if extent is None or extent >= self.stride:
            return [self.u8]
        return [self.u8[start:start + extent] for start in range(0, self.u8.shape[0], self.stride)]


@jit(inline="always")
def get(b8, b16, addr, bits, i):
    """Element ``i`` of the int{bits} array at byte ``addr``, as int64."""
    if bits == 8:
        return np.int64(b8[addr + i])
    return np.int64(b16[(addr >> 1) + i])


@jit(inline="always")
def put(b8, b16, addr, bits, i, value):
    """Store ``value`` (already in range) as element ``i`` of the int{bits}
    array at byte ``addr``."""
    if bits == 8:
        b8[addr + i] = value
    else:
        b16[(addr >> 1) + i] = value


@jit(inline="always")
def lookup(out, x, table):
    """out[i] = table[x[i] + 128] for int8 codes x, element by element (in
    place works): LUT's and a CONV table's one lookup of int8 codes (int16
    codes interpolate a wide table: ``qscheme.lookup_wide``). A table of
    bytes goes through the host's table kernel (runtime/sim/bytevec.py:
    byte permutes with VBMI, word permutes on other AVX-512, shuffles on
    AVX2), the same bytes."""
    n = out.shape[0]
    if (out.itemsize == 1 and table.itemsize == 1 and x.shape[0] >= n and table.shape[0] >= 256
            and out.strides[0] == 1 and x.strides[0] == 1 and table.strides[0] == 1):
        map_codes(n, x, table, out)
        return
    for i in range(n):
        out[i] = table[np.int64(x[i]) + 128]


@jit
def load16(b8, b16, addr, bits, n):
    """A copy of the n int{bits} elements at byte ``addr`` as int16 (both
    widths fit), so the compute kernels compile one signature."""
    out = np.empty(n, np.int16)
    if bits == 8:
        for i in range(n):
            out[i] = b8[addr + i]
    else:
        base = addr >> 1
        for i in range(n):
            out[i] = b16[base + i]
    return out


@dataclass
class CardMemory:
    """The WGT, ACT and ACC spaces of one card's clusters (``slots`` of them:
    the clusters the program uses on the card)."""

    wgt: Space
    act: Space
    acc: Space

    @classmethod
    def allocate(cls, config, slots: int) -> CardMemory:
        return cls(Space.allocate(config.weight_buffer_bytes, slots),
                   Space.allocate(config.activation_buffer_bytes, slots),
                   Space.allocate(config.accumulator_buffer_bytes, slots))

    def clear(self, extents: Mapping[int, int] | None = None) -> None:
        """Zero the SRAM a program can reach: each space up to its extent
        (runtime.isa.validate_streams), or all of it."""
        for view in self.reachable(extents):
            view.fill(0)

    def reachable(self, extents: Mapping[int, int] | None = None) -> list[np.ndarray]:
        """Views of the SRAM :meth:`clear` zeroes."""
        return [view for key, space in enumerate((self.wgt, self.act, self.acc))
                for view in space.reachable(None if extents is None else extents[key])]


@jit
def map_codes(n, x, table, out):
    """:func:`~runtime.sim.bytevec.map8` of the first ``n`` codes of ``x``
    into ``out``: the arrays are this call's arguments, so their caller
    holds them while the kernel reads. (An address taken where an array is
    a temporary of the caller lets Numba free it, at the ``del`` after its
    last use, before the kernel reads it: ``vector._eltwise_8``'s table.)"""
    map8(n, x.ctypes.data, table.ctypes.data, out.ctypes.data)
