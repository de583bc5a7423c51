"""LOAD and STORE: strided 3-D boxes between DRAM and a dense SRAM box
(docs/isa.md), byte for byte.

Where the x stride is 1 a box is a set of rows of contiguous bytes on both
sides, copied by ``copy_rows`` (rows that are also back to back on both sides
merge into one, and so do planes: a dense 192x13x13 box is one copy of
32 KB, not 192 of 169 bytes), each by ``memcpy``. A padded LOAD fills the
whole SRAM box with the pad value first, then copies the rows over it. Loops index with
unsigned integers: with signed computed indices Numba checks each for a
negative value and LLVM does not vectorise the loop (~1 GB/s against ~30 on
long rows).
"""
from __future__ import annotations

import numba
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from runtime.jit import jit

_u = numba.uint64


@intrinsic
def copy_run(typingctx, dst, at, src, start, count):
    """dst[at:at + count] = src[start:start + count] for two distinct int8 or
    uint8 arrays (non-negative offsets), as one ``llvm.memcpy`` (no views, no bounds or overlap checks:
    the validator bounded every box). The library's copy moves a short row
    (7-56 bytes, most activation rows) in a few wide moves, where a loop's
    vectorised body never starts and it copies byte by byte."""
    if not (all(isinstance(a, types.Array) and a.dtype in (types.int8, types.uint8) for a in (dst, src))
            and all(isinstance(i, types.Integer) for i in (at, start, count))):
        return None

    def codegen(context, builder, signature, args):
        dst_type, at_type, src_type, start_type, count_type = signature.args
        at, start, count = (context.cast(builder, args[i], t, types.intp)
                            for i, t in ((1, at_type), (3, start_type), (4, count_type)))
        to = builder.gep(context.make_array(dst_type)(context, builder, args[0]).data, [at])
        origin = builder.gep(context.make_array(src_type)(context, builder, args[2]).data, [start])
        cgutils.raw_memcpy(builder, to, origin, count, 1)
        return context.get_dummy_value()

    return types.void(dst, at, src, start, count), codegen


@jit
def copy_rows(dst, at, dst_plane, dst_row, src, start, src_plane, src_row, planes, rows, length):
    """``planes`` x ``rows`` runs of ``length`` bytes, plane by plane and row
    by row (so where destinations overlap the last write wins), from
    ``src[start + z·src_plane + y·src_row]`` to ``dst[at + z·dst_plane +
    y·dst_row]``; all offsets non-negative."""
    if rows > 1 and dst_row == length and src_row == length:
        length, rows = length * rows, 1
    if planes > 1 and rows == 1 and dst_plane == length and src_plane == length:  # whole planes back to back
        length, planes = length * planes, 1
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
