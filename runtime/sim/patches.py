"""A planned CONV's patches in the int8 GEMM's B lanes
(runtime/sim/conv_gemm.py): where each reduction row's bytes lie under each
output pixel (:func:`geometry`, computed once at Init) and the gather of
the tile's bytes into the lanes (:func:`pack_patches`), + 128 each (the
kernels multiply unsigned B by signed A): bytes of the tile in its own
reduction order (c, ky, kx), or, for a kernel of several taps over whole
words of channels, words of a pixel-major copy of it (:func:`pixel_words`,
reduction order (ky, kx, c)).
"""
from __future__ import annotations

import numba
import numpy as np

from runtime.gemm.family import UNIT
from runtime.gemm.pack import panel_width
from runtime.jit import jit
from runtime.sim.epilogue import C_DH, C_DW, C_IN_C, C_IN_H, C_IN_W, C_KH, C_KW, C_SH, C_SW, out_size

_u = numba.uint64

FLIP = np.uint32(0x80808080)

SHORT_RUN = 8
"""Runs of pixels with consecutive origins shorter than this (a column
stride's: every run is one pixel) are packed pixel by pixel inline, unless
at least this many have origins two apart (``_weave`` with a step of 2)."""


@jit
def by_words(ins):
    """Whether a planned CONV's patches are read as words of a pixel-major
    copy of its tile (a kernel of several taps over whole words of
    channels: reduction order (ky, kx, c)) rather than as bytes of the tile
    (reduction order (c, ky, kx), the weights' own)."""
    return ins[C_KH] * ins[C_KW] > 1 and ins[C_IN_C] % 4 == 0


@jit
def geometry(ins, offsets, origins, runs):
    """Where the patches are read. Bytes: offsets[r] is reduction row r's
    byte offset from a window's origin (rows past the depth repeat row 0:
    their weights are zero), origins[p] output pixel p's window origin in
    the tile, runs[p] how many pixels from p on have origins one byte apart
    (read as one contiguous run), or, where those are fewer than
    ``SHORT_RUN`` and at least that many from p on have origins two bytes
    apart (a stride-2 window's), minus their count. Words: offsets[s] is step s's word offset
    in the pixel-major copy, origins[p] pixel p's window origin there."""
    in_c, in_h, in_w, kh, kw = ins[C_IN_C], ins[C_IN_H], ins[C_IN_W], ins[C_KH], ins[C_KW]
    sh, sw, dh, dw = ins[C_SH], ins[C_SW], ins[C_DH], ins[C_DW]
    depth = in_c * kh * kw
    steps = (depth + 3) // 4
    out_h, out_w = out_size(ins)
    size = out_h * out_w
    if by_words(ins):
        for s in range(steps):
            t, c0 = (4 * s) // in_c, (4 * s) % in_c
            offsets[s] = ((t // kw) * dh * in_w + (t % kw) * dw) * (in_c // 4) + c0 // 4
        for p in range(size):
            origins[p] = ((p // out_w) * sh * in_w + (p % out_w) * sw) * (in_c // 4)
        return
    for r in range(4 * steps):
        c, t = r // (kh * kw), r % (kh * kw)
        offsets[r] = c * in_h * in_w + (t // kw) * dh * in_w + (t % kw) * dw if r < depth else 0
    for p in range(size):
        origins[p] = (p // out_w) * sh * in_w + (p % out_w) * sw
    one = two = 0  # pixels from p on one, two bytes apart (counted apart from runs[], which may hold -two)
    for p in range(size - 1, -1, -1):
        one = one + 1 if p + 1 < size and origins[p + 1] == origins[p] + 1 else 1
        two = two + 1 if p + 1 < size and origins[p + 1] == origins[p] + 2 else 1
        # a column stride of 2 (a stem's): -(pixels two bytes apart from p on)
        runs[p] = -two if one < SHORT_RUN <= two else one


@jit(inline="always")
def _weave(row, at, src, a0, a1, a2, a3, count, step):
    """row[at + i] = the bytes src[a0 + step·i], src[a1 + step·i],
    src[a2 + step·i], src[a3 + step·i] as one lane, + 128 each: pixels
    ``step`` bytes apart (called with a literal 1, or 2 for a stride-2
    stem's windows, so that the loop compiles for it: it vectorises for 1;
    for 2 it is one tight loop, where pixel by pixel each lane also looked
    up its run and took a branch, ~2.7 ns a lane against ~0.55). Whole
    arrays and offsets, not views: a view counts a reference up and down on
    its parent, an atomic both threads contend for when they pack one B."""
    a0, a1, a2, a3 = _u(a0), _u(a1), _u(a2), _u(a3)
    for i in range(_u(count)):
        j = _u(step) * i
        row[_u(at) + i] = (np.uint32(src[a0 + j]) | (np.uint32(src[a1 + j]) << 8) | (np.uint32(src[a2 + j]) << 16)
                           | (np.uint32(src[a3 + j]) << 24)) ^ FLIP


@jit
def pack_patches(start, stop, ins, au8, at, xt32, offsets, origins, runs, steps, size, kc, nr, dst):
    """B lanes of column panels [start, stop), laid out as the u8s8 kernels
    read a prepacked B (per ``kc`` block, per panel, step-major): lane (s, p)
    holds reduction rows 4s..4s+3 under pixel p, + 128 each (``geometry``
    says where: the tile's bytes at ``au8[at:]`` or the pixel-major copy's
    words ``xt32``); lanes past ``size`` are zero (``parallel_for`` body)."""
    words = by_words(ins)
    npad = (size + UNIT - 1) // UNIT * UNIT
    for index in range(start, stop):
        j0 = index * nr
        width = panel_width(j0, size, nr, UNIT, 0)
        valid = min(width, size - j0)
        for g0 in range(0, steps, kc):
            kcp = min(kc, steps - g0)
            lane0 = g0 * npad + j0 * kcp
            for g in range(kcp):
                row = _u(lane0 + g * width)  # this step's lanes: dst[row:row + width] (no views: see _weave)
                if words:
                    step = offsets[g0 + g]
                    for c in range(_u(valid)):
                        dst[row + c] = xt32[_u(origins[_u(j0) + c] + step)] ^ FLIP
                else:
                    r = 4 * (g0 + g)
                    o0, o1, o2, o3 = _u(at + offsets[r]), _u(at + offsets[r + 1]), _u(at + offsets[r + 2]), _u(
                        at + offsets[r + 3])
                    c = 0
                    while c < valid:
                        q = _u(origins[j0 + c])
                        run = runs[j0 + c]
                        if run >= SHORT_RUN:
                            count = min(run, valid - c)
                            _weave(dst, row + _u(c), au8, q + o0, q + o1, q + o2, q + o3, count, 1)
                            c += count
                        elif run < 0:
                            count = min(-run, valid - c)
                            _weave(dst, row + _u(c), au8, q + o0, q + o1, q + o2, q + o3, count, 2)
                            c += count
                        else:  # a strided window: one pixel at a time, no call
                            lane = (np.uint32(au8[q + o0]) | (np.uint32(au8[q + o1]) << 8)
                                    | (np.uint32(au8[q + o2]) << 16) | (np.uint32(au8[q + o3]) << 24))
                            dst[row + _u(c)] = lane ^ FLIP
                            c += 1
                for c in range(_u(valid), _u(width)):
                    dst[row + c] = 0


@jit
def pixel_words(ins, au8, at, xt32):
    """The tile at byte ``at`` ([in_c][in_h][in_w], in_c a multiple of 4)
    as pixel-major words: xt32[pixel * in_c / 4 + j] holds channels 4j..4j+3
    of that pixel (four contiguous channel rows woven per pass)."""
    q, plane = _u(ins[C_IN_C] // 4), _u(ins[C_IN_H] * ins[C_IN_W])
    for j in range(q):
        a0 = _u(at) + _u(4) * j * plane
        a1, a2, a3 = a0 + plane, a0 + _u(2) * plane, a0 + _u(3) * plane
        for pix in range(plane):
            xt32[pix * q + j] = (np.uint32(au8[a0 + pix]) | (np.uint32(au8[a1 + pix]) << 8)
                                 | (np.uint32(au8[a2 + pix]) << 16) | (np.uint32(au8[a3 + pix]) << 24))
