"""LOAD and STORE: strided 3-D boxes between DRAM and a dense SRAM box
(docs/isa.md), byte for byte.

Where the x stride is 1 a box is a set of rows of contiguous bytes on both
sides, copied by ``copy_rows`` (rows that are also back to back on both sides
merge into one). A padded LOAD fills the whole SRAM box with the pad value
first, then copies the rows over it. Copies index with unsigned integers:
with signed computed indices Numba checks each for a negative value and LLVM
does not vectorise the loop (~1 GB/s against ~30 on long rows).
"""
from __future__ import annotations

import numba

from runtime.jit import jit

_u = numba.uint64


@jit(inline="always")
def copy_run(dst, at, src, start, count):
    """dst[at:at + count] = src[start:start + count] (no views, no overlap
    check: a slice assignment costs both on every row)."""
    a, s = _u(at), _u(start)
    for i in range(_u(count)):
        dst[a + i] = src[s + i]


@jit
def copy_rows(dst, at, dst_plane, dst_row, src, start, src_plane, src_row, planes, rows, length):
    """``planes`` x ``rows`` runs of ``length`` bytes, plane by plane and row
    by row (so where destinations overlap the last write wins), from
    ``src[start + z·src_plane + y·src_row]`` to ``dst[at + z·dst_plane +
    y·dst_row]``; all offsets non-negative."""
    if rows > 1 and dst_row == length and src_row == length:
        length, rows = length * rows, 1
    at, dst_plane, dst_row = _u(at), _u(dst_plane), _u(dst_row)
    start, src_plane, src_row = _u(start), _u(src_plane), _u(src_row)
    for z in range(_u(planes)):
        for y in range(_u(rows)):
            copy_run(dst, at + z * dst_plane + y * dst_row, src, start + z * src_plane + y * src_row, length)


@jit(inline="always")
def _fill(sram, at, count, pad, elem):
    """``count`` elements of the sign-extended pad bytes from byte ``at``."""
    a = _u(at)
    if elem == 1:
        value = pad[0]
        for i in range(_u(count)):
            sram[a + i] = value
        return
    for i in range(_u(count)):
        for b in range(_u(elem)):
            sram[a + i * _u(elem) + b] = pad[b]


@jit
def dma_load(dram, sram, sram_addr, dram_addr, elem, z_size, y_size, x_size, z_stride, y_stride, x_stride,
             pad_top, pad_bottom, pad_left, pad_right, pad_value, pad):
    """DRAM box -> dense padded SRAM box (``pad``: 8 scratch bytes)."""
    rows = pad_top + y_size + pad_bottom
    cols = pad_left + x_size + pad_right
    if pad_top + pad_bottom + pad_left + pad_right > 0:
        for b in range(8):
            pad[b] = (pad_value >> (8 * b)) & 0xFF
        _fill(sram, sram_addr, z_size * rows * cols, pad, elem)
    first = sram_addr + (pad_top * cols + pad_left) * elem
    if x_stride == 1:
        copy_rows(sram, first, rows * cols * elem, cols * elem, dram, dram_addr,
                  z_stride * elem, y_stride * elem, z_size, y_size, x_size * elem)
        return
    for z in range(z_size):
        for y in range(y_size):
            dst = first + (z * rows + y) * cols * elem
            src = dram_addr + (z * z_stride + y * y_stride) * elem
            for x in range(x_size):
                s = src + x * x_stride * elem
                for b in range(elem):
                    sram[dst + x * elem + b] = dram[s + b]


@jit
def dma_store(dram, sram, sram_addr, dram_addr, elem, z_size, y_size, x_size, z_stride, y_stride, x_stride):
    """Dense SRAM box -> strided DRAM box, in z, y, x order (last write wins)."""
    row_bytes = x_size * elem
    if x_stride == 1:
        copy_rows(dram, dram_addr, z_stride * elem, y_stride * elem, sram, sram_addr, y_size * row_bytes, row_bytes,
                  z_size, y_size, row_bytes)
        return
    for z in range(z_size):
        for y in range(y_size):
            src = sram_addr + (z * y_size + y) * row_bytes
            dst = dram_addr + (z * z_stride + y * y_stride) * elem
            for x in range(x_size):
                d = dst + x * x_stride * elem
                for b in range(elem):
                    dram[d + b] = sram[src + x * elem + b]
