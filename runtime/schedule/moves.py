"""The schedule's adapters of operations that move data (runtime.schedule.ops
holds the others and the driver): a Concat's or Split's COPY, a Transpose's
tiles, a Pad's rows, a Resize's fused 2-D passes. Each calls the kernel the
per-step path calls, with the same argument types."""
from __future__ import annotations

import numba

from runtime.kernels.resize import linear_rows, nearest_rows
from runtime.kernels.shape_lowering import PAD_DIMS, TRANSPOSE_DIMS, pad_rows, transpose_tiles
from runtime.schedule.addresses import address, f32, i64, i64_ptr, records, u8_ptr, u16_ptr, u32_ptr
from runtime.schedule.records import COPY_PIECE


def resize_nearest(start, stop, rec, nrec, bases, nbases):
    """Nearest resize of planes (runtime.kernels.resize): rec = X (planes,
    H, W), planes, H, W, Y (planes, OH, OW), OH, OW, the source row of each
    output row (OH,) and column of each output column (OW,), whether the
    columns are the x2 pairs; chunks of output rows."""
    rec, bases = records(rec, nrec, bases, nbases)
    planes, h, w, oh, ow = rec[2], rec[3], rec[4], rec[7], rec[8]
    nearest_rows(start, min(stop, planes * oh), f32(rec, 0, bases, (planes, h, w)), i64(rec, 9, bases, oh),
                 i64(rec, 11, bases, ow), rec[13] != 0, f32(rec, 5, bases, (planes, oh, ow)))


def resize_linear(start, stop, rec, nrec, bases, nbases):
    """Bilinear resize of planes (runtime.kernels.resize): rec as
    RESIZE_NEAREST's to OW, then the tables y0, y1 (OH,) int64, wy0, wy1
    (OH,) float32, x0, x1 (OW,) int64, wx0, wx1 (OW,) float32."""
    rec, bases = records(rec, nrec, bases, nbases)
    planes, h, w, oh, ow = rec[2], rec[3], rec[4], rec[7], rec[8]
    linear_rows(start, min(stop, planes * oh), f32(rec, 0, bases, (planes, h, w)), i64(rec, 9, bases, oh),
                i64(rec, 11, bases, oh), f32(rec, 13, bases, oh), f32(rec, 15, bases, oh),
                i64(rec, 17, bases, ow), i64(rec, 19, bases, ow), f32(rec, 21, bases, ow),
                f32(rec, 23, bases, ow), f32(rec, 5, bases, (planes, oh, ow)))


def copy(start, stop, rec, nrec, bases, nbases):
    """Pieces of a strided copy of byte rows (Concat: runtime.kernels.shape):
    rec = source, destination, rows, bytes per row, the source's and the
    destination's row strides in bytes, pieces per row; item ``i`` is piece
    ``i % pieces`` (:data:`COPY_PIECE` bytes) of row ``i // pieces``."""
    rec, bases = records(rec, nrec, bases, nbases)
    rows, length, src_stride, dst_stride, pieces = rec[4], rec[5], rec[6], rec[7], rec[8]
    src, dst = address(rec, 0, bases), address(rec, 2, bases)
    for i in range(start, min(stop, rows * pieces)):
        row, low = i // pieces, (i % pieces) * COPY_PIECE
        count = min(length - low, COPY_PIECE)
        a = numba.carray(u8_ptr(src + row * src_stride + low), count)
        b = numba.carray(u8_ptr(dst + row * dst_stride + low), count)
        for k in range(count):
            b[k] = a[k]


def transpose(start, stop, rec, nrec, bases, nbases):
    """Tiles of a Transpose (runtime.kernels.shape_lowering): rec = X, Y,
    bytes an element (1, 2, 4 or 8), elements, Y's dims and X's strides
    along them (TRANSPOSE_DIMS each)."""
    rec, bases = records(rec, nrec, bases, nbases)
    item, count = rec[4], rec[5]
    dims, strides = rec[6:6 + TRANSPOSE_DIMS], rec[6 + TRANSPOSE_DIMS:6 + 2 * TRANSPOSE_DIMS]
    x, y = address(rec, 0, bases), address(rec, 2, bases)
    if item == 4:
        transpose_tiles(start, stop, numba.carray(u32_ptr(x), count), numba.carray(u32_ptr(y), count), dims,
                        strides)
    elif item == 8:
        transpose_tiles(start, stop, numba.carray(i64_ptr(x), count), numba.carray(i64_ptr(y), count), dims,
                        strides)
    elif item == 2:
        transpose_tiles(start, stop, numba.carray(u16_ptr(x), count), numba.carray(u16_ptr(y), count), dims,
                        strides)
    else:
        transpose_tiles(start, stop, numba.carray(u8_ptr(x), count), numba.carray(u8_ptr(y), count), dims,
                        strides)


def pad(start, stop, rec, nrec, bases, nbases):
    """Rows of a Pad (runtime.kernels.shape_lowering): rec = X, Y, bytes an
    element (1, 2, 4 or 8), X's and Y's elements, Y's dims and X's strides
    (PAD_DIMS each), the source index maps (their length), each dim's start
    in them (PAD_DIMS), the fill value's bits."""
    rec, bases = records(rec, nrec, bases, nbases)
    item, xs, ys = rec[4], rec[5], rec[6]
    dims, strides = rec[7:7 + PAD_DIMS], rec[7 + PAD_DIMS:7 + 2 * PAD_DIMS]
    at = 7 + 2 * PAD_DIMS
    maps, starts, bits = i64(rec, at, bases, rec[at + 2]), rec[at + 3:at + 3 + PAD_DIMS], rec[at + 3 + PAD_DIMS]
    x, y = address(rec, 0, bases), address(rec, 2, bases)
    if item == 4:
        pad_rows(start, stop, numba.carray(u32_ptr(x), xs), numba.carray(u32_ptr(y), ys), dims, strides, maps, starts,
                 numba.uint32(bits))
    elif item == 8:
        pad_rows(start, stop, numba.carray(i64_ptr(x), xs), numba.carray(i64_ptr(y), ys), dims, strides, maps, starts,
                 bits)
    elif item == 2:
        pad_rows(start, stop, numba.carray(u16_ptr(x), xs), numba.carray(u16_ptr(y), ys), dims, strides, maps, starts,
                 numba.uint16(bits))
    else:
        pad_rows(start, stop, numba.carray(u8_ptr(x), xs), numba.carray(u8_ptr(y), ys), dims, strides, maps, starts,
                 numba.uint8(bits))
