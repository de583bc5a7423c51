"""Fast exact kernels for the CONVs of 8-bit data and 8-bit weights, reading
the SRAM views directly (no int16 copies). Same semantics as the generic
loops of runtime/sim/conv.py: int32 accumulators that wrap modulo 2^32 like
the device's.

* Dense tiles (one group): the tile is copied pixel-major (``to_pixels``:
  [in_h·in_w][in_c]), the weights reordered to [out_c][kh][kw][in_c] (the
  order of a sum does not change an integer result), so that every patch is
  kh·kw contiguous runs of in_c bytes (``gather_patches``) and every output
  one contiguous int8 dot product (``dense_channels``); or, for a short
  reduction over many pixels, a channel-major im2col matrix summed row by
  row (``rows``, ``short_channels``); or, for a tile of fewer output pixels
  than channels (a 3x3 CONV of a 2x2 or 1x1 map), the patches put in the
  weights' own order and every channel's sums requantised together
  (``few_pixels``, ``few_pixel_channels``).
* Depthwise tiles (groups = in_c = out_c): per channel, tap by tap, a loop
  over the pixels (``depthwise_channels``).

The ``*_channels`` kernels do output channels [start, stop), so that
``parallel_for`` can split them; their operands are built on one thread.
Loops index views from 0 or use unsigned indices: with signed computed
indices Numba checks each for wraparound and LLVM does not vectorise (see
runtime/sim/dma.py).
"""
from __future__ import annotations

import numba
import numpy as np

from runtime.jit import jit
from runtime.parallel import drives
from runtime.pool_protocol import team_enter, team_leave, team_next
from runtime.sim.bytevec import split2
from runtime.sim.dma import copy_run
from runtime.sim.dots import dot1, dot4
from runtime.sim.epilogue import (
    C_ACC,
    C_DH,
    C_DW,
    C_IN,
    C_IN_C,
    C_IN_H,
    C_IN_W,
    C_KH,
    C_KW,
    C_MODE,
    C_OUT_C,
    C_PARAM,
    C_SH,
    C_SW,
    C_WGT,
    epilogue_block,
    out_size,
)
from runtime.unlinked import call_unlinked
from runtime.wrapping import add32, mul32

_u = numba.uint64

BLOCK_SUMS = 1 << 12
"""Accumulators (int32) of the channels ``depthwise_channels`` requantises
together: one ``epilogue_block`` call for many small planes."""

SHORT_DEPTH, SHORT_MIN_PIXELS = 160, 256
"""Dense CONVs with a shorter reduction and at least this many output
pixels run ``short_channels``."""

FEW_PIXELS = 8
"""Dense CONVs of fewer output pixels than this, and than output channels,
run ``few_pixel_channels``."""


@jit
def pointwise(ins):
    """Whether a dense CONV is 1x1 with stride 1: its patches are the
    pixel-major tile itself and its weights need no reordering."""
    return ins[C_KH] == 1 and ins[C_KW] == 1 and ins[C_SH] == 1 and ins[C_SW] == 1


@jit
def to_pixels(ins, a8, abase, xt):
    """The input tile (in ACT, [in_c][in_h][in_w])
    copied to xt [in_h][in_w·in_c] (pixel-major): writes in order, reads a
    column of channels (a tile fits in L2, so those reads hit the cache)."""
    in_c, in_w = _u(ins[C_IN_C]), _u(ins[C_IN_W])
    plane = _u(ins[C_IN_H]) * in_w
    at = _u(abase + ins[C_IN])
    for y in range(_u(ins[C_IN_H])):
        row = xt[y]
        for x in range(in_w):
            src = at + y * in_w + x
            for c in range(in_c):
                row[x * in_c + c] = a8[src + c * plane]


@jit
def strided_pixels(ins, a8, abase, cols):
    """cols [P][in_c] for a 1x1 CONV with a stride:
    output pixel p's channels, read straight from the tile (only the pixels
    the stride keeps, which ``to_pixels`` would all copy)."""
    in_c, in_w = _u(ins[C_IN_C]), _u(ins[C_IN_W])
    plane = _u(ins[C_IN_H]) * in_w
    sh, sw, out_w = _u(ins[C_SH]), _u(ins[C_SW]), _u(out_size(ins)[1])
    at = _u(abase + ins[C_IN])
    for p in range(_u(cols.shape[0])):
        row = cols[p]
        src = at + (p // out_w) * sh * in_w + (p % out_w) * sw
        for c in range(in_c):
            row[c] = a8[src + c * plane]


@jit
def weights_by_tap(ins, w8, wbase):
    """The tile's weights [out_c][in_c][kh][kw] reordered to
    [out_c][kh·kw·in_c] (tap-major, the order of ``gather_patches``),
    written in order (1.4x the loop that reads in order)."""
    out_c, in_c, taps = _u(ins[C_OUT_C]), _u(ins[C_IN_C]), _u(ins[C_KH] * ins[C_KW])
    at, n = _u(wbase + ins[C_WGT]), in_c * taps
    w = np.empty((out_c, n), np.int8)
    for k in range(out_c):
        src = w8[at + k * n:at + (k + 1) * n]
        row = w[k]
        for t in range(taps):
            dst = row[t * in_c:(t + 1) * in_c]
            for c in range(in_c):
                dst[c] = src[c * taps + t]
    return w


@jit
def gather_patches(ins, xt, cols):
    """cols [P][kh·kw·in_c]: output pixel p's patch,
    tap by tap, each tap in_c contiguous bytes of the pixel-major tile xt
    (without dilation, a kernel row's kw taps are one run of kw·in_c)."""
    in_c, in_w, kh, kw = ins[C_IN_C], ins[C_IN_W], ins[C_KH], ins[C_KW]
    sh, sw, dh, dw = ins[C_SH], ins[C_SW], ins[C_DH], ins[C_DW]
    out_w = out_size(ins)[1]
    flat = xt.reshape(-1)
    runs, run = (1, kw * in_c) if dw == 1 else (kw, in_c)
    for p in range(cols.shape[0]):
        oy, ox = p // out_w, p % out_w
        row = cols[p]
        for ky in range(kh):
            for kx in range(runs):
                src = ((oy * sh + ky * dh) * in_w + ox * sw + kx * dw) * in_c
                copy_run(row, (ky * kw + kx) * in_c, flat, src, run)


@jit(inline="always")
def _add_start(acc, from_acc, c32, first, bias):
    """acc += the accumulator's start: ACC's values (MIDDLE, LAST) or the
    bias (FULL, FIRST), wrapping in int32."""
    if from_acc:
        for i in range(acc.shape[0]):
            acc[i] = add32(acc[i], c32[first + i])
    else:
        start = np.int32(bias)
        for i in range(acc.shape[0]):
            acc[i] = add32(acc[i], start)


@jit(inline="always")
def _finish(k, acc, ins, a8, a16, abase, wgt32, wbase, c32, first):
    """Channel k's accumulators into ACC (FIRST, MIDDLE) or through the
    epilogue into ACT (FULL, LAST)."""
    if ins[C_MODE] & 2 == 2:
        c32[first:first + acc.shape[0]] = acc
    else:
        epilogue_block(k, k + 1, acc.reshape(1, acc.shape[0]), ins, a8, a16, abase, wgt32, wbase, np.int64(0),
                       acc.shape[0], k)


@jit
def dense_channels(start, stop, ins, cols, w, a8, a16, abase, wgt32, wgt64, wbase, c32, cbase):
    """Output channels [start, stop) of a dense CONV: row k of the weights
    ``w`` [out_c][R] against every patch of ``cols`` [P][R], four patches a
    call of the host's dot kernel (runtime.sim.dots), the sums int32 and
    wrapping. The start is added after."""
    size = cols.shape[0]
    from_acc = ins[C_MODE] & 1 == 1
    acc_at = (cbase + ins[C_ACC]) >> 2
    bias_at = (wbase + ins[C_PARAM]) >> 3
    acc = np.empty(size, np.int32)
    cols, w = np.ascontiguousarray(cols), np.ascontiguousarray(w)  # rows a fixed pitch apart (no copy: both are)
    depth = np.int64(w.shape[1])
    patches, out = cols.ctypes.data, acc.ctypes.data
    for k in range(start, stop):
        wk = w.ctypes.data + k * depth
        p = np.int64(0)
        while p + 4 <= size:
            x = patches + p * depth
            dot4(depth, wk, x, x + depth, x + 2 * depth, x + 3 * depth, out + p * 4)
            p += 4
        while p < size:
            dot1(depth, wk, patches + p * depth, out + p * 4)
            p += 1
        first = acc_at + k * size
        _add_start(acc, from_acc, c32, first, wgt64[bias_at + 3 * k])
        _finish(k, acc, ins, a8, a16, abase, wgt32, wbase, c32, first)


@jit(inline="always")
def _tap(dst, xs, wv):
    """dst += wv * xs (int32, wrapping: 32-bit lanes, runtime.wrapping)."""
    for i in range(dst.shape[0]):
        dst[i] = add32(dst[i], mul32(wv, np.int32(xs[i])))


@jit
def rows(ins, a8, abase, out):
    """The channel-major im2col matrix out [R][P]: row (c, ky, kx) holds
    that tap's input under every output pixel (the weights' own order, so
    they need no reordering). Each output row of a tap is one contiguous run
    of the tile, or with a column stride, of the tile's ``column_phases``."""
    in_h, in_w, kh, kw = ins[C_IN_H], ins[C_IN_W], ins[C_KH], ins[C_KW]
    sh, sw, dh, dw = ins[C_SH], ins[C_SW], ins[C_DH], ins[C_DW]
    out_h, out_w = out_size(ins)
    at = abase + ins[C_IN]
    pitch = (in_w + sw - 1) // sw
    phases = np.empty(ins[C_IN_C] * in_h * sw * pitch if sw != 1 else 0, np.int8)
    if sw != 1:
        column_phases(ins, a8, at, phases, pitch)
    for r in range(out.shape[0]):
        c, t = r // (kh * kw), r % (kh * kw)
        ky, kx = t // kw, t % kw
        dst = out[r]
        for oy in range(out_h):
            y = c * in_h + oy * sh + ky * dh
            if sw == 1:
                copy_run(dst, oy * out_w, a8, at + y * in_w + kx * dw, out_w)
            else:
                src = (y * sw + kx * dw % sw) * pitch + kx * dw // sw
                copy_run(dst, oy * out_w, phases, src, out_w)


@jit
def column_phases(ins, a8, at, phases, pitch):
    """phases [in_c·in_h][sw][pitch]: every row of the tile (at ``at``)
    split by column modulo the column stride sw (phase s, column j holds
    input column j·sw + s), so that a strided tap's output row is one
    contiguous run (column kx·dw + ox·sw is phase (kx·dw) % sw, column
    (kx·dw) // sw + ox). Cells past the row's end are left unwritten; no
    valid tap reads them. One strided pass over the tile instead of a
    strided gather per tap and output row (a 7x7 stride-2 first layer:
    641 us a tile before, 122 us now)."""
    in_w, sw, pitch, start = _u(ins[C_IN_W]), _u(ins[C_SW]), _u(pitch), _u(at)
    for y in range(_u(ins[C_IN_C] * ins[C_IN_H])):
        src = a8[start + y * in_w:start + (y + 1) * in_w]
        for s in range(sw):
            dst = phases[(y * sw + s) * pitch:(y * sw + s + 1) * pitch]
            for j in range((in_w - s + sw - 1) // sw):
                dst[j] = src[s + j * sw]


@jit
def short_channels(start, stop, ins, x, w, a8, a16, abase, wgt32, wgt64, wbase, c32, cbase):
    """Output channels [start, stop) of a dense CONV with a short reduction,
    from x [R][P] (``rows``, or the tile itself for a 1x1 stride-1 CONV) and
    the weights w [out_c][R]: per channel, int32 sums built one loop over
    the pixels per reduction row. Faster than dot products when R is short
    and P long (``short``)."""
    size = x.shape[1]
    from_acc = ins[C_MODE] & 1 == 1
    acc_at = (cbase + ins[C_ACC]) >> 2
    bias_at = (wbase + ins[C_PARAM]) >> 3
    acc = np.empty(size, np.int32)
    for k in range(start, stop):
        acc[:] = 0
        wk = w[k]
        for r in range(x.shape[0]):
            _tap(acc, x[r], np.int32(wk[r]))
        first = acc_at + k * size
        _add_start(acc, from_acc, c32, first, wgt64[bias_at + 3 * k])
        _finish(k, acc, ins, a8, a16, abase, wgt32, wbase, c32, first)


@jit
def short(ins):
    """Whether a dense CONV's reduction is short and its output long enough
    for ``short_channels`` (measured: 1.5-4x the dot products there)."""
    out_h, out_w = out_size(ins)
    return ins[C_IN_C] * ins[C_KH] * ins[C_KW] < SHORT_DEPTH and out_h * out_w >= SHORT_MIN_PIXELS


@jit
def row_operands(ins, a8, abase, w8, wbase):
    """(x [R][P], w [out_c][R]) for ``short_channels``, built on one thread
    (as ``dense_operands``)."""
    in_c, taps, out_c = ins[C_IN_C], ins[C_KH] * ins[C_KW], ins[C_OUT_C]
    out_h, out_w = out_size(ins)
    at = wbase + ins[C_WGT]
    w = w8[at:at + out_c * in_c * taps].reshape(out_c, in_c * taps)
    if pointwise(ins):
        src = abase + ins[C_IN]
        return a8[src:src + in_c * out_h * out_w].reshape(in_c, out_h * out_w), w
    x = np.empty((in_c * taps, out_h * out_w), np.int8)
    rows(ins, a8, abase, x)
    return x, w


@jit
def polyphase(a8, plane, in_h, in_w, sh, sw, hp, wp, dst):
    """The channel plane at ``a8[plane:]`` ([in_h][in_w]) split by row
    modulo sh and column modulo sw: dst[((a·sw + b)·hp + y)·wp + x] holds
    input row y·sh + a, column x·sw + b. In it a strided tap's outputs are
    one run at the sub-plane's pitch wp, as a stride-1 tap's are in the
    plane itself. Cells past the plane's edge are left as they are; only
    the columns ``depthwise_channels`` drops read them. Split by two
    columns, each row's even and odd columns come from the host's byte
    kernel (runtime.sim.bytevec.split2: 128 codes a step with VBMI, 64
    without); the loop below, for other strides, moves one code at a time."""
    if sw == 2:
        for a in range(sh):
            even = dst.ctypes.data + a * 2 * hp * wp
            split2((in_w + 1) // 2, in_w // 2, (in_h - a + sh - 1) // sh, sh * in_w, wp,
                   a8.ctypes.data + plane + a * in_w, even, even + hp * wp)
        return
    for a in range(sh):
        for y in range((in_h - a + sh - 1) // sh):
            row = _u(plane + (y * sh + a) * in_w)
            for b in range(sw):
                out = _u(((a * sw + b) * hp + y) * wp)
                for x in range(_u((in_w - b + sw - 1) // sw)):
                    dst[out + x] = a8[row + x * _u(sw) + _u(b)]


@jit(inline="always")
def _taps(wide, src, o0, o1, o2, w0, w1, w2, first, start):
    """wide[i] = start + (or +=) w0·src[o0 + i] + w1·src[o1 + i] +
    w2·src[o2 + i], int32 wrapping: three taps per pass over ``wide``
    (w1 = w2 = 0 and o1 = o2 = o0 for a single tap). In 32-bit lanes
    (runtime.wrapping): as int64 sums narrowed at the store, Numba's own
    typing, LLVM vectorised the loop four lanes to a register, and a
    depthwise CONV ran ~20 % longer (MobileNetV2's, one thread, Zen 3)."""
    if first:
        for i in range(_u(wide.shape[0])):
            wide[i] = add32(_three(src, o0, o1, o2, i, w0, w1, w2), start)
    else:
        for i in range(_u(wide.shape[0])):
            wide[i] = add32(_three(src, o0, o1, o2, i, w0, w1, w2), wide[i])


@jit(inline="always")
def _three(src, o0, o1, o2, i, w0, w1, w2):
    """w0·src[o0 + i] + w1·src[o1 + i] + w2·src[o2 + i], int32 wrapping."""
    return add32(add32(mul32(w0, np.int32(src[o0 + i])), mul32(w1, np.int32(src[o1 + i]))),
                 mul32(w2, np.int32(src[o2 + i])))


@jit
def depthwise_channels(start, stop, ins, a8, a16, abase, w8, wgt32, wgt64, wbase, c32, cbase):
    """Channels [start, stop) of a depthwise CONV: per channel, int32 sums
    built three taps a pass over ``wide``, the outputs laid at the pitch of
    the plane the taps read (out_h rows of wp columns; the columns past
    out_w are computed and dropped): the plane itself for stride 1, else its
    ``polyphase`` split, so that every tap is one contiguous loop (MobileNetV2's
    stride-2 tiles: 2-3x the loop per output row over strided reads). Loops
    use unsigned indices, and rows are moved by loops, not slice copies
    (~40 ns each), which cost more than the sums on 7x7 planes."""
    in_h, in_w, kh, kw = ins[C_IN_H], ins[C_IN_W], ins[C_KH], ins[C_KW]
    sh, sw, dh, dw = ins[C_SH], ins[C_SW], ins[C_DH], ins[C_DW]
    out_h, out_w = out_size(ins)
    size = out_h * out_w
    from_acc = ins[C_MODE] & 1 == 1
    acc_at = (cbase + ins[C_ACC]) >> 2
    bias_at = (wbase + ins[C_PARAM]) >> 3
    x_at, w_at = abase + ins[C_IN], wbase + ins[C_WGT]
    unit = sh == 1 and sw == 1
    hp, wp = (in_h + sh - 1) // sh, (in_w + sw - 1) // sw
    phases = np.zeros(0 if unit else sh * sw * hp * wp, np.int8)
    taps = kh * kw
    offsets = np.empty(taps, np.uint64)
    for t in range(taps):
        ry, rx = (t // kw) * dh, (t % kw) * dw
        offsets[t] = (((ry % sh) * sw + rx % sw) * hp + ry // sh) * wp + rx // sw
    wide = np.empty((out_h - 1) * wp + out_w, np.int32)
    to_acc = ins[C_MODE] & 2 == 2
    block = 1 if to_acc else max(1, min(stop - start, BLOCK_SUMS // size))
    sums = np.empty((block, size), np.int32)
    for k0 in range(start, stop, block):
        k1 = min(stop, k0 + block)
        for k in range(k0, k1):
            if unit:
                src, base = a8, _u(x_at + k * in_h * in_w)
            else:
                polyphase(a8, x_at + k * in_h * in_w, in_h, in_w, sh, sw, hp, wp, phases)
                src, base = phases, _u(0)
            weights = w_at + k * taps
            bias = np.int32(0) if from_acc else np.int32(wgt64[bias_at + 3 * k])  # wraps, as the sum does
            t = 0
            while t < taps:
                o0 = base + offsets[t]
                if t + 3 <= taps:
                    _taps(wide, src, o0, base + offsets[t + 1], base + offsets[t + 2], np.int32(w8[weights + t]),
                          np.int32(w8[weights + t + 1]), np.int32(w8[weights + t + 2]), t == 0, bias)
                    t += 3
                else:
                    _taps(wide, src, o0, o0, o0, np.int32(w8[weights + t]), np.int32(0), np.int32(0), t == 0, bias)
                    t += 1
            first = acc_at + k * size
            acc = c32[first:first + size] if to_acc else sums[k - k0]
            for oy in range(_u(out_h)):
                row, o = oy * _u(wp), oy * _u(out_w)
                if from_acc:
                    for ox in range(_u(out_w)):
                        acc[o + ox] = add32(wide[row + ox], c32[_u(first) + o + ox])
                else:
                    for ox in range(_u(out_w)):
                        acc[o + ox] = wide[row + ox]
        if not to_acc:
            epilogue_block(k0, k1, sums, ins, a8, a16, abase, wgt32, wbase, np.int64(0), size, k0)


@jit
def dense_operands(ins, a8, abase, w8, wbase):
    """(cols [P][R], w [out_c][R]) of a dense CONV for ``dense_channels``
    or the GEMM: pixel-major patches and tap-major weights (for 1x1, the
    weights as they are). Built on one thread: a few % of the sums' time,
    less than a split over the pool costs on these tiles."""
    in_h, in_w, in_c, out_c = ins[C_IN_H], ins[C_IN_W], ins[C_IN_C], ins[C_OUT_C]
    out_h, out_w = out_size(ins)
    at = wbase + ins[C_WGT]
    if ins[C_KH] == 1 and ins[C_KW] == 1:
        w = w8[at:at + out_c * in_c].reshape(out_c, in_c)
        if pointwise(ins):
            xt = np.empty((in_h, in_w * in_c), np.int8)
            to_pixels(ins, a8, abase, xt)
            return xt.reshape(in_h * in_w, in_c), w
        cols = np.empty((out_h * out_w, in_c), np.int8)
        strided_pixels(ins, a8, abase, cols)
        return cols, w
    xt = np.empty((in_h, in_w * in_c), np.int8)
    to_pixels(ins, a8, abase, xt)
    w = weights_by_tap(ins, w8, wbase)
    cols = np.empty((out_h * out_w, w.shape[1]), np.int8)
    gather_patches(ins, xt, cols)
    return cols, w


@jit
def few_pixels(ins):
    """Whether a dense CONV has so few output pixels (fewer than
    ``FEW_PIXELS`` and than its channels) that reordering its weights for
    ``dense_channels`` would cost more than its sums: ``few_pixel_channels``."""
    out_h, out_w = out_size(ins)
    return out_h * out_w < FEW_PIXELS and out_h * out_w < ins[C_OUT_C]


@jit
def patches_in_order(ins, a8, abase):
    """cols [P·R] (flat): output pixel p's patch in the weights' own order
    r = (c, ky, kx), read straight from the tile (no views: a handful of
    pixels, thousands of reduction rows); for one window over the whole
    tile, the tile itself (a 3x3 of a padded 1x1 map: rebuilding it took a
    third of the sums' time, once per 16-channel tile of the layer). Three
    columns a window row (the usual 3x3 kernel, undilated) are copied as
    three bytes from one offset: with the column loop's count unknown to
    the compiler, each byte cost a loop trip and its own index (ResNet-10
    at 32 x 32, whose 2 x 2 and 4 x 4 layers rebuild these patches for
    each 16-channel tile: 18.5 -> 13.7 % of a one-thread Run_sw, Zen 4)."""
    in_h, in_w, kh, kw = _u(ins[C_IN_H]), _u(ins[C_IN_W]), _u(ins[C_KH]), _u(ins[C_KW])
    sh, sw, dh, dw = _u(ins[C_SH]), _u(ins[C_SW]), _u(ins[C_DH]), _u(ins[C_DW])
    out_h, out_w = out_size(ins)
    depth = _u(ins[C_IN_C]) * kh * kw
    at = _u(abase + ins[C_IN])
    if out_h == 1 and out_w == 1 and dh == 1 and dw == 1 and in_h == kh and in_w == kw:
        return a8[at:at + depth]  # one undilated window over the whole tile: the patch is the tile
    cols = np.empty(_u(out_h * out_w) * depth, np.int8)
    plane, three = in_h * in_w, kw == 3 and dw == 1
    for oy in range(_u(out_h)):
        for ox in range(_u(out_w)):
            r = (oy * _u(out_w) + ox) * depth
            src = at + oy * sh * in_w + ox * sw
            for c in range(_u(ins[C_IN_C])):
                for ky in range(kh):
                    t = src + c * plane + ky * dh * in_w
                    if three:
                        cols[r], cols[r + _u(1)], cols[r + _u(2)] = a8[t], a8[t + _u(1)], a8[t + _u(2)]
                        r += _u(3)
                        continue
                    for kx in range(kw):
                        cols[r] = a8[t + kx * dw]
                        r += _u(1)
    return cols


@jit
def few_pixel_channels(start, stop, ins, cols, a8, a16, abase, w8, wgt32, wgt64, wbase, c32, cbase):
    """Output channels [start, stop) of a dense CONV of few output pixels:
    each channel's weights as they lie in WGT dotted with every patch of
    ``cols`` (``patches_in_order``), the start added (bias, or ACC's values),
    then the block's sums into ACC (FIRST, MIDDLE) or through one
    ``epilogue_block`` into ACT: no per-channel views or epilogue calls,
    which cost more than these channels' few sums (``parallel_for`` body)."""
    out_h, out_w = out_size(ins)
    size = np.int64(out_h * out_w)
    depth = np.int64(ins[C_IN_C] * ins[C_KH] * ins[C_KW])
    w_at = np.int64(wbase + ins[C_WGT])
    from_acc = ins[C_MODE] & 1 == 1
    acc_at = (cbase + ins[C_ACC]) >> 2
    bias_at = (wbase + ins[C_PARAM]) >> 3
    sums = np.empty((stop - start, size), np.int32)
    weights, patches, out = w8.ctypes.data + w_at, cols.ctypes.data, sums.ctypes.data
    p = np.int64(0)
    while p < size:  # four pixels a pass, each weight byte loaded once for them (then one at a time)
        x = patches + p * depth
        for k in range(start, stop):
            wk, at = weights + k * depth, out + ((k - start) * size + p) * 4
            if p + 4 <= size:
                dot4(depth, wk, x, x + depth, x + 2 * depth, x + 3 * depth, at)
            else:
                dot1(depth, wk, x, at)
        p += 4 if p + 4 <= size else 1
    for k in range(start, stop):
        _add_start(sums[k - start], from_acc, c32, acc_at + k * size, 0 if from_acc else wgt64[bias_at + 3 * k])
    if ins[C_MODE] & 2 == 2:
        c32[acc_at + start * size:acc_at + stop * size] = sums.reshape(-1)
    else:
        epilogue_block(start, stop, sums, ins, a8, a16, abase, wgt32, wbase, np.int64(0), size, start)


@jit
def dense(ins, a8, a16, abase, w8, wgt32, wgt64, wbase, c32, cbase):
    """A whole dense CONV on this thread (the interpreter's small CONVs)."""
    if few_pixels(ins):
        cols = patches_in_order(ins, a8, abase)
        few_pixel_channels(np.int64(0), ins[C_OUT_C], ins, cols, a8, a16, abase, w8, wgt32, wgt64, wbase, c32,
                           cbase)
    elif short(ins):
        x, w = row_operands(ins, a8, abase, w8, wbase)
        short_channels(np.int64(0), ins[C_OUT_C], ins, x, w, a8, a16, abase, wgt32, wgt64, wbase, c32, cbase)
    else:
        cols, w = dense_operands(ins, a8, abase, w8, wbase)
        dense_channels(np.int64(0), ins[C_OUT_C], ins, cols, w, a8, a16, abase, wgt32, wgt64, wbase, c32, cbase)


# ---------------------------------------------------------------- team drivers (runtime.parallel)
@drives(dense_channels)
@jit
def dense_channels_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(dense_channels, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)


@drives(few_pixel_channels)
@jit
def few_pixel_channels_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(few_pixel_channels, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)


@drives(short_channels)
@jit
def short_channels_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(short_channels, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)


@drives(depthwise_channels)
@jit
def depthwise_channels_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(depthwise_channels, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)
