"""A planned CONV's patches in the int8 GEMM's B lanes
(runtime/sim/conv_gemm.py): where each reduction row's bytes lie under each
output pixel (:func:`geometry`, computed once at Init) and the gather of
the tile's bytes into the lanes (:func:`pack_patches`), + 128 each (the
kernels multiply unsigned B by signed A): bytes of the tile in its own
reduction order (c, ky, kx), or, for a kernel of several taps over whole
words of channels, words of a woven copy of it (:func:`pixel_words`,
reduction order (ky, kx, c)). Either way a step's lanes under an output
row's pixels are a run of consecutive bytes of four rows (or words of one
row), copied ``LANES`` lanes per vector operation.
"""
from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from runtime.gemm.family import UNIT, host_isa
from runtime.gemm.pack import panel_width
from runtime.jit import jit
from runtime.sim.epilogue import C_DH, C_DW, C_IN_C, C_IN_H, C_IN_W, C_KH, C_KW, C_SH, C_SW, out_size
from runtime.vector_lanes import first_lanes, masked_load, masked_store

_u = numba.uint64

FLIP = np.uint32(0x80808080)

LANES = 16
"""Lanes :func:`_weave` writes per vector operation."""
MASKED_TAILS = host_isa().name == "avx512"
"""Whether the last lanes of a run (fewer than ``LANES``) are one masked
vector operation (AVX-512: byte-masked loads), else a scalar loop (AVX2,
where LLVM would expand a byte-masked load into a branch per lane)."""

SHORT_RUN = 8
"""Fewest pixels with origins two apart that :func:`geometry` makes a run
(``_weave`` with a step of 2: a stride-2 stem's windows), where fewer than
this many from the same pixel on are one apart; a column stride's other
pixels are packed one by one. (Runs one apart, a stride of 1's, are packed
whatever their length: ``LANES`` at a time, the last few masked.)"""


@jit
def by_words(ins):
    """Whether a planned CONV's patches are read as words of a woven
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
    apart (a stride-2 window's), minus their count. Words: offsets[s] is step
    s's word offset from a window's origin in the woven copy (its rows of
    four channels, :func:`pixel_words`), and origins and runs count words
    as they count bytes."""
    in_c, in_h, in_w, kh, kw = ins[C_IN_C], ins[C_IN_H], ins[C_IN_W], ins[C_KH], ins[C_KW]
    sh, sw, dh, dw = ins[C_SH], ins[C_SW], ins[C_DH], ins[C_DW]
    depth = in_c * kh * kw
    steps = (depth + 3) // 4
    out_h, out_w = out_size(ins)
    size = out_h * out_w
    if by_words(ins):
        for s in range(steps):
            t, c0 = (4 * s) // in_c, (4 * s) % in_c
            offsets[s] = (c0 // 4) * in_h * in_w + (t // kw) * dh * in_w + (t % kw) * dw
    else:
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


def _vector_lanes(context, builder, signature, args, sources):
    """The codegen of :func:`_weave_vector` (``sources`` 4: uint8 rows
    woven, + 128 each) and :func:`_copy_vector` (1: uint32 words copied)."""
    item = ir.IntType(8) if sources == 4 else ir.IntType(32)
    loaded_t, lanes_t = ir.VectorType(item, LANES), ir.VectorType(ir.IntType(32), LANES)
    offsets = [context.cast(builder, args[k], signature.args[k], types.int64) for k in (1, *range(3, 3 + sources))]
    out = context.make_array(signature.args[0])(context, builder, args[0]).data
    data = context.make_array(signature.args[2])(context, builder, args[2]).data
    count_t = signature.args[3 + sources]
    mask = None
    if not (isinstance(count_t, types.IntegerLiteral) and count_t.literal_value == LANES):
        mask = first_lanes(builder, context.cast(builder, args[3 + sources], count_t, types.int32), LANES)
    lane = ir.Constant(lanes_t, [int(FLIP) if sources == 4 else 0] * LANES)
    align = 1 if sources == 4 else 4
    for k in range(sources):
        at_k = builder.gep(data, [offsets[1 + k]])
        if mask is None:
            loaded = builder.load(at_k, typ=loaded_t, align=align)
        else:
            loaded = masked_load(builder, loaded_t, at_k, align, mask)
        wide = builder.zext(loaded, lanes_t) if sources == 4 else loaded
        if k:
            wide = builder.shl(wide, ir.Constant(lanes_t, [8 * k] * LANES))
        lane = builder.xor(lane, wide)  # the four bytes' bits are disjoint: xor is their or, then FLIP's
    to = builder.gep(out, [offsets[0]])
    if mask is None:
        builder.store(lane, to, align=4)
    else:
        masked_store(builder, lane, to, 4, mask)
    return context.get_dummy_value()


@intrinsic
def _copy_vector(typingctx, row, at, src, a, count):
    """row[at + i] = src[a + i] for i < ``count`` (1 to ``LANES``; both
    uint32): :func:`_weave_vector` for words woven already."""
    if not (isinstance(row, types.Array) and row.dtype == types.uint32 and isinstance(src, types.Array)
            and src.dtype == types.uint32 and all(isinstance(v, types.Integer) for v in (at, a, count))):
        return None
    return types.void(row, at, src, a, count), lambda c, b, sig, args: _vector_lanes(c, b, sig, args, 1)


@intrinsic
def _weave_vector(typingctx, row, at, src, a0, a1, a2, a3, count):
    """row[at + i] = (src[a0 + i] | src[a1 + i] << 8 | src[a2 + i] << 16 |
    src[a3 + i] << 24) ^ ``FLIP`` for i < ``count`` (1 to ``LANES``): four
    byte loads, one lane store, each a single vector operation, masked to
    ``count`` lanes unless ``count`` is the literal ``LANES`` (``row``
    uint32, ``src`` uint8, non-negative offsets: the caller bounds them).
    Written as vector IR because Numba's arrays carry no aliasing facts:
    LLVM vectorised the plain loop behind a run-time overlap check of the
    five ranges and a 64-lane main loop, so the 13 to 48 lanes of a panel's
    run went through its 8-lane remainder loop and scalar tail."""
    if not (isinstance(row, types.Array) and row.dtype == types.uint32 and isinstance(src, types.Array)
            and src.dtype == types.uint8 and all(isinstance(v, types.Integer) for v in (at, a0, a1, a2, a3, count))):
        return None
    return types.void(row, at, src, a0, a1, a2, a3, count), lambda c, b, sig, args: _vector_lanes(c, b, sig, args, 4)


@jit(inline="always")
def _lane(src, a0, a1, a2, a3):
    """One lane: the bytes src[a0], src[a1], src[a2], src[a3], + 128 each."""
    return (np.uint32(src[a0]) | (np.uint32(src[a1]) << 8) | (np.uint32(src[a2]) << 16)
            | (np.uint32(src[a3]) << 24)) ^ FLIP


@jit(inline="always")
def _weave(row, at, src, a0, a1, a2, a3, count, step):
    """row[at + i] = the bytes src[a0 + step·i], src[a1 + step·i],
    src[a2 + step·i], src[a3 + step·i] as one lane, + 128 each: pixels
    ``step`` bytes apart (called with a literal 1, or 2 for a stride-2
    stem's windows, so that the code compiles for it). For 1, ``LANES`` lanes
    at a time (:func:`_weave_vector`; the last few masked, or one by one
    without AVX-512): a 1 x 1 CONV's 48-lane panels ~0.37 -> ~0.1 ns a
    lane, one thread, Zen 4; for 2 one tight loop, where pixel by pixel
    each lane also looked up its run and took a branch, ~2.7 ns a lane
    against ~0.55). Whole arrays and offsets, not views: a view counts a
    reference up and down on its parent, an atomic both threads contend
    for when they pack one B."""
    a0, a1, a2, a3 = _u(a0), _u(a1), _u(a2), _u(a3)
    if step == 1:
        n, i = _u(count), _u(0)
        while i + _u(LANES) <= n:
            _weave_vector(row, _u(at) + i, src, a0 + i, a1 + i, a2 + i, a3 + i, LANES)
            i += _u(LANES)
        if i < n and MASKED_TAILS:
            _weave_vector(row, _u(at) + i, src, a0 + i, a1 + i, a2 + i, a3 + i, n - i)
            return
        while i < n:
            row[_u(at) + i] = _lane(src, a0 + i, a1 + i, a2 + i, a3 + i)
            i += _u(1)
        return
    for i in range(_u(count)):
        j = _u(step) * i
        row[_u(at) + i] = _lane(src, a0 + j, a1 + j, a2 + j, a3 + j)


@jit(inline="always")
def _copy(row, at, src, a, count, step):
    """row[at + i] = src[a + step·i]: :func:`_weave` for the words of
    :func:`pixel_words`' copy, woven and + 128 already."""
    a = _u(a)
    if step == 1:
        n, i = _u(count), _u(0)
        while i + _u(LANES) <= n:
            _copy_vector(row, _u(at) + i, src, a + i, LANES)
            i += _u(LANES)
        if i < n and MASKED_TAILS:
            _copy_vector(row, _u(at) + i, src, a + i, n - i)
            return
        while i < n:
            row[_u(at) + i] = src[a + i]
            i += _u(1)
        return
    for i in range(_u(count)):
        row[_u(at) + i] = src[a + _u(step) * i]


@jit
def pack_patches(start, stop, ins, au8, at, xt32, offsets, origins, runs, steps, size, kc, nr, dst):
    """B lanes of column panels [start, stop), laid out as the u8s8 kernels
    read a prepacked B (per ``kc`` block, per panel, step-major): lane (s, p)
    holds reduction rows 4s..4s+3 under pixel p, + 128 each (``geometry``
    says where: the tile's bytes at ``au8[at:]`` or the woven copy's words
    ``xt32``), a run of pixels at a time; lanes past ``size`` are zero
    (``parallel_for`` body)."""
    # a stride of 1 has no runs two apart (geometry): a row's pixels are one apart
    if ins[C_SW] == 1 and out_size(ins)[1] > 1:
        _pack(start, stop, au8, at, xt32, offsets, origins, runs, steps, size, kc, nr, dst, by_words(ins), False)
    else:
        _pack(start, stop, au8, at, xt32, offsets, origins, runs, steps, size, kc, nr, dst, by_words(ins), True)


@jit(inline="always")
def _pack(start, stop, au8, at, xt32, offsets, origins, runs, steps, size, kc, nr, dst, words, strided):
    """:func:`pack_patches`'s panels: ``strided`` (a constant at each call,
    so each call is its own loop nest) for a column stride of 2 or more,
    step by step. With a stride of 1, run by run, each run's lanes of
    every step of the block in turn: its origin, length and mask found
    once, not once a step (ResNet-50's packs, one thread: 0.75 of the time;
    its 14-pixel output rows make four runs of a 48-lane panel). The
    stride-1 nest has only the vector runs in it: beside the strided paths
    the same vector loop ran 2.5 times as long (a 1 x 1 CONV's panels, one
    thread, Zen 4: 12.9 -> 5.1 us for 48 400 lanes)."""
    npad = (size + UNIT - 1) // UNIT * UNIT
    for index in range(start, stop):
        j0 = index * nr
        width = panel_width(j0, size, nr, UNIT, 0)
        valid = min(width, size - j0)
        for g0 in range(0, steps, kc):
            kcp = min(kc, steps - g0)
            lane0 = g0 * npad + j0 * kcp  # step g's lanes: dst[lane0 + g * width:][:width] (no views: see _weave)
            if strided:
                for g in range(kcp):
                    o0, o1, o2, o3 = _step_offsets(words, at, offsets, g0 + g)
                    _strided_runs(dst, _u(lane0 + g * width), au8, xt32, origins, runs, j0, valid, o0, o1, o2, o3,
                                  words)
            else:
                c = 0
                while c < valid:
                    q = _u(origins[j0 + c])
                    count = min(runs[j0 + c], valid - c)
                    for g in range(kcp):
                        o0, o1, o2, o3 = _step_offsets(words, at, offsets, g0 + g)
                        row = _u(lane0 + g * width + c)
                        if words:
                            _copy(dst, row, xt32, q + o0, count, 1)
                        else:
                            _weave(dst, row, au8, q + o0, q + o1, q + o2, q + o3, count, 1)
                    c += count
            for g in range(kcp):
                for c in range(_u(lane0 + g * width + valid), _u(lane0 + (g + 1) * width)):
                    dst[c] = 0


@jit(inline="always")
def _step_offsets(words, at, offsets, s):
    """Where step ``s``'s lanes are read from a window's origin: one word of
    the woven copy, or four rows of the tile's bytes."""
    if words:
        return _u(offsets[s]), _u(0), _u(0), _u(0)
    r = 4 * s
    return _u(at + offsets[r]), _u(at + offsets[r + 1]), _u(at + offsets[r + 2]), _u(at + offsets[r + 3])


@jit(inline="always")
def _strided_runs(dst, row, au8, xt32, origins, runs, j0, valid, o0, o1, o2, o3, words):
    """A step's lanes of a panel for a column stride of 2 or more: runs of
    pixels two bytes (words) apart (a stride-2 stem's), or one pixel at a
    time."""
    c = 0
    while c < valid:
        q = _u(origins[j0 + c])
        run = runs[j0 + c]
        if run < 0:
            count = min(-run, valid - c)
            if words:
                _copy(dst, row + _u(c), xt32, q + o0, count, 2)
            else:
                _weave(dst, row + _u(c), au8, q + o0, q + o1, q + o2, q + o3, count, 2)
        else:  # a strided window: one pixel at a time, no call
            count = 1
            if words:
                dst[row + _u(c)] = xt32[q + o0]
            else:
                dst[row + _u(c)] = _lane(au8, q + o0, q + o1, q + o2, q + o3)
        c += count


@jit
def pixel_words(ins, au8, at, xt32):
    """The tile at byte ``at`` ([in_c][in_h][in_w], in_c a multiple of 4)
    as rows of words, + 128 each: xt32[j * plane + pixel] holds channels
    4j..4j+3 of that pixel (four channel rows woven per row), so that a
    step's lanes under an output row's pixels are a run of one row's
    words, as the bytes path's are runs of four rows' bytes. (It was
    pixel-major, xt32[pixel * in_c / 4 + j]: each lane a gather of a word
    ``in_c / 4`` words from the last, ~0.35 ns a lane on one thread, Zen 4.)"""
    q, plane = _u(ins[C_IN_C] // 4), _u(ins[C_IN_H] * ins[C_IN_W])
    for j in range(q):
        a0 = _u(at) + _u(4) * j * plane
        _weave(xt32, j * plane, au8, a0, a0 + plane, a0 + _u(2) * plane, a0 + _u(3) * plane, plane, 1)
