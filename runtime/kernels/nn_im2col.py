"""Column matrices for convolutions on Tessera's GEMM: im2col (a block of
output rows at a time, or one band of output rows per task, multiplied at
once) and col2im.

Strided reads that would not vectorise are avoided: at stride 2 a float32
input of an even size is read as 64-bit words, keeping the half each output
column needs. Flat views are indexed with unsigned indices (``_u``): with
signed ones Numba tests every index for negative wraparound, which blocks
vectorisation and made im2col 3-7x slower. Every size and window attribute
is validated in Python first (:mod:`runtime.kernels.nn_conv`).
"""
from __future__ import annotations

import itertools
import sys

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from runtime import gemm, parallel
from runtime.chunking import tapered_chunks
from runtime.gemm.tasks import run_strip
from runtime.jit import jit, readonly
from runtime.kernels import nn_rows
from runtime.kernels.conv_epilogue import NO_CLAMP
from runtime.kernels.nn_window import grain, valid_range
from runtime.parallel import drives, parallel_for
from runtime.pool_protocol import team_enter, team_leave, team_next
from runtime.schedule.records import BANDS, OWN_COLUMNS, Operand
from runtime.unlinked import call_unlinked
from runtime.vector_lanes import first_lanes, masked_load, masked_store

_u = numba.uint64


@jit
def _fill(flat, start, count, value):
    first = _u(start)
    for i in range(first, first + _u(count)):
        flat[i] = value


@jit
def im2col_rows(start, stop, x, col, geo):
    """Rows [start, stop) of one image's column matrix.

    x: (C, D, H, W); col: (C*KD*KH*KW, OD, OH, OW); row r holds, for kernel
    offset (c, kd, kh, kw), the input value each output position reads there
    (0 in the padding). With unit strides and an output as wide as the input
    (SAME-style padding) a row's valid part is one contiguous run of the
    input, copied in one go and then given its zero edge columns. Small 2-D
    planes (a one-deep input and output whose depth window reads that one
    plane: no depth tap or pad) take :func:`_im2col_shifted` where the
    strides are 1 and the output is as wide as the input (and has at least
    4 positions), else :func:`_im2col_small`."""
    way = im2col_way(x.shape[1], x.shape[3], col.shape[1], col.shape[2], col.shape[3], geo)
    if way == SHIFTED:
        _im2col_shifted(start, stop, x, col, geo)
    elif way == SMALL:
        _im2col_small(start, stop, x, col, geo)
    else:
        _im2col_core(start, stop, x, col, geo, geo[7])


CORE, SMALL, SHIFTED = range(3)
"""How :func:`im2col_rows` builds a column matrix (:func:`im2col_way`)."""


@jit
def im2col_way(depth, width, out_d, out_h, out_w, geo):
    """Which loops :func:`im2col_rows` takes for an input of ``depth``
    and ``width`` and an output of (``out_d``, ``out_h``, ``out_w``):
    SHIFTED, SMALL or CORE."""
    size = out_h * out_w
    if depth == 1 and out_d == 1 and geo[0] == 1 and geo[6] == 0 and geo[1] * geo[2] > 1 and size <= SMALL_PLANE:
        if size >= 4 and geo[4] == geo[5] == 1 and out_w == width:
            return SHIFTED
        return SMALL
    return CORE


LANES = 16
"""The most elements :func:`_im2col_shifted` moves per vector operation."""


def _shifted(width: int):
    """An intrinsic ``(dst, at, src, a, keep, k, plain, count)``: dst[at + l]
    = src[a + l] for the ``width`` lanes l that read the plane (those under
    0xFF bytes in run ``k`` of ``keep``: ``width`` elements' bytes a run),
    else 0, then stored, masked to the first ``count`` lanes unless
    ``count`` is the literal ``width``. Where ``plain``, one plain load of
    the lanes ANDed with the run's bytes (the offsets must lie in ``src``);
    else one load masked to the lanes that read the plane (lanes off the
    mask read nothing, so ``a`` may lie before the array or its lanes past
    it). Masked loads are for the edges only: on Zen 4 they stalled on
    lines another core had written last (ResNet-10's 2 x 2 column matrix
    13 -> 20 us in its two-thread schedule against the copies before, with
    plain loads 11). Arrays of one element type; bits are moved, not
    values: NaN payloads stay."""

    def typer(typingctx, dst, at, src, a, keep, k, plain, count):
        if not (isinstance(dst, types.Array) and isinstance(src, types.Array) and dst.dtype == src.dtype
                and isinstance(keep, types.Array) and keep.dtype == types.uint8 and isinstance(plain, types.Boolean)
                and all(isinstance(v, types.Integer) for v in (at, a, k, count))):
            return None
        return types.void(dst, at, src, a, keep, k, plain, count), codegen

    def codegen(context, builder, signature, args):
        item = context.get_data_type(signature.args[0].dtype)
        size = context.get_abi_sizeof(item)
        vec_t, bytes_t = ir.VectorType(item, width), ir.VectorType(ir.IntType(8), width * size)
        at, a, k = (context.cast(builder, args[i], signature.args[i], types.int64) for i in (1, 3, 5))
        out = context.make_array(signature.args[0])(context, builder, args[0]).data
        data = context.make_array(signature.args[2])(context, builder, args[2]).data
        keep = context.make_array(signature.args[4])(context, builder, args[4]).data
        origin = builder.gep(data, [a])
        run = builder.load(builder.gep(keep, [builder.mul(k, ir.Constant(k.type, width * size))]), typ=bytes_t,
                           align=1)
        with builder.if_else(context.cast(builder, args[6], signature.args[6], types.boolean)) as (plain, masked):
            with plain:
                loaded = builder.bitcast(builder.load(origin, typ=vec_t, align=size), bytes_t)
                anded = builder.bitcast(builder.and_(loaded, run), vec_t)
                plain_block = builder.block
            with masked:
                lanes_t = ir.VectorType(ir.IntType(8 * size), width)  # a lane's bytes are all 0xFF or all 0
                reads = builder.icmp_signed("!=", builder.bitcast(run, lanes_t), ir.Constant(lanes_t, None))
                read = masked_load(builder, vec_t, origin, size, reads)
                masked_block = builder.block
        value = builder.phi(vec_t)
        value.add_incoming(anded, plain_block)
        value.add_incoming(read, masked_block)
        to = builder.gep(out, [at])
        count_t = signature.args[7]
        if isinstance(count_t, types.IntegerLiteral) and count_t.literal_value == width:
            builder.store(value, to, align=size)
        else:
            masked_store(builder, value, to, size, first_lanes(builder, context.cast(builder, args[7], count_t,
                                                                                      types.int32), width))
        return context.get_dummy_value()

    typer.__name__ = f"_shifted_lanes{width}"
    return intrinsic(typer)


_shifted4, _shifted8, _shifted16 = _shifted(4), _shifted(8), _shifted(16)


@jit(inline="always")
def _shifted_run(dst, at, src, a, keep, k, count, width):
    """One run of ``width`` (4, 8 or 16) lanes (:func:`_shifted`), read
    plainly where all its lanes lie in ``src``, the store masked to
    ``count`` lanes where fewer."""
    plain = a >= 0 and a + width <= src.size
    if width == 4:
        if count < 4:
            _shifted4(dst, at, src, a, keep, k, plain, count)
        else:
            _shifted4(dst, at, src, a, keep, k, plain, 4)
    elif width == 8:
        if count < 8:
            _shifted8(dst, at, src, a, keep, k, plain, count)
        else:
            _shifted8(dst, at, src, a, keep, k, plain, 8)
    elif count < LANES:
        _shifted16(dst, at, src, a, keep, k, plain, count)
    else:
        _shifted16(dst, at, src, a, keep, k, plain, LANES)


@jit(inline="always")
def _im2col_shifted(start, stop, x, col, geo):
    """:func:`im2col_rows` for a 2-D convolution of unit strides whose
    output is as wide as its input (SAME padding: the 3x3 layers of
    ResNets): output position q of tap (kh, kw) reads element q + (kh dh -
    ph) width + (kw dw - pw) of its channel's plane, or a zero, so a row is
    the plane shifted, a run of 4, 8 or 16 lanes per vector load
    (:func:`_shifted`). Which lanes read the plane depends on the tap and
    the lanes' place in the row only: one mask per (tap, run), made once a
    call. A row's last run may spill past the row's end: the next row,
    written next, covers it; nothing past the rows ``[start, stop)`` is
    written (the last runs' stores are masked). Before, each channel was
    copied between zero margins and each row gathered or copied from that
    copy a few positions at a time. One thread, warm, Zen 4, 3x3 kernels:
    4 x 4 planes of 128 channels 10.8 -> 4.7 us, 8 x 8 x 64 12.7 -> 8.4,
    7 x 7 x 512 108 -> 52, 14 x 14 x 256 161 -> 77, 16 x 16 x 64 34 -> 29,
    2 x 2 x 256 9.6 -> 7.9."""
    kh_n, kw_n, ph, pw, dh, dw = geo[1], geo[2], geo[7], geo[8], geo[13], geo[14]
    chans, _, height, width = x.shape
    rows, _, out_h, out_w = col.shape
    src, dst = x.reshape(-1), col.reshape(-1)
    size = out_h * out_w
    taps = kh_n * kw_n
    lanes = 4 if size <= 4 else 8 if size <= 8 else LANES  # a row in one run where it fits
    runs = (size + lanes - 1) // lanes
    keep = np.zeros(taps * runs * lanes * x.itemsize, np.uint8)
    shifts = np.empty(taps, np.int64)
    for t in range(taps):
        dy, dx = (t // kw_n) * dh - ph, (t % kw_n) * dw - pw
        shifts[t] = dy * width + dx
        for oh in range(max(0, -dy), min(out_h, height - dy)):
            for ow in range(max(0, -dx), min(out_w, width - dx)):
                q = oh * out_w + ow
                keep[(t * runs * lanes + q) * x.itemsize:(t * runs * lanes + q + 1) * x.itemsize] = 0xFF
    end = min(stop, rows, chans * taps)
    limit = end * size
    r = start
    if r < end:
        c, t = r // taps, r % taps
        while r < end:
            row, read = r * size, c * height * width + shifts[t]
            for k in range(runs):
                p = k * lanes
                _shifted_run(dst, row + p, src, read + p, keep, t * runs + k, limit - row - p, lanes)
            r += 1
            t += 1
            if t == taps:
                t, c = 0, c + 1
    if min(stop, rows) > max(start, end):  # rows past the channels (none in a well-formed call) are zeros
        first = max(start, end)
        _fill(dst, first * size, (min(stop, rows) - first) * size, 0)


RUN_WIDTH = 8
"""Output rows at least this wide are copied a row at a time from the
padded plane by :func:`_im2col_small` (a vectorised copy); narrower ones
(2 x 2, 4 x 4 planes) as one gather of the tap's row, which was faster
there (measured in a Numba loop on Zen 4: 8 x 8 3x3 rows 16.9 -> 13.3 us
for 64 channels by runs; 2 x 2 9.5 us gathered against 18 by runs)."""
SMALL_PLANE = 256
"""Output planes up to this many positions take :func:`_im2col_shifted` or
:func:`_im2col_small` (for kernels larger than 1 x 1: its copy of the plane
serves all their taps). The shifted rows at 28 x 28 were slower than the
general loops' (one thread, Zen 4: 160 against 126 us for 128 channels)."""


@jit(inline="always")
def _im2col_small(start, stop, x, col, geo):
    """:func:`im2col_rows` for a 2-D convolution with a small output plane
    (ResNet-50's 7 x 7 layers: 49 outputs a row, where the general loops
    spent most of a row on its zero edges and ranges): each channel is
    copied once between zero margins (which no channel writes), and each of
    its rows is then read off that plane: with unit strides along the width
    and output rows of at least :data:`RUN_WIDTH`, a copy of ``out_w``
    elements per output row, else one gather of the whole row through
    offsets that are the same for every tap but for a constant (the tap's).
    The rows are walked channel by channel and tap by tap, with no division
    per row: at 2 x 2 and 4 x 4 a row is 4 or 16 elements, and the two
    divisions that located each row's channel and tap cost about as much as
    its copy."""
    kh_n, kw_n, sh, sw, ph, pw = geo[1], geo[2], geo[4], geo[5], geo[7], geo[8]
    dh, dw = geo[13], geo[14]
    chans, _, height, width = x.shape
    rows, _, out_h, out_w = col.shape
    pad_h = (out_h - 1) * sh + (kh_n - 1) * dh + 1  # the padded plane the windows span
    pad_w = (out_w - 1) * sw + (kw_n - 1) * dw + 1
    plane = np.zeros(pad_h * pad_w, x.dtype)
    at = np.empty(out_h * out_w, np.int64)
    for oh in range(out_h):
        for ow in range(out_w):
            at[oh * out_w + ow] = oh * sh * pad_w + ow * sw
    src, dst = x.reshape(-1), col.reshape(-1)
    size = out_h * out_w
    taps = kh_n * kw_n
    runs = sw == 1 and out_w >= RUN_WIDTH
    end = min(stop, rows)
    r = start
    while r < end:
        c, tap = r // taps, r % taps  # once a channel
        if c >= chans:  # rows past the channels (none in a well-formed call) are zeros
            _fill(dst, r * size, (end - r) * size, 0)
            break
        for i in range(max(0, ph), min(pad_h, height + ph)):  # the channel's rows into the plane; its margins stay zero
            first = (c * height + i - ph) * width - pw
            for j in range(max(0, pw), min(pad_w, width + pw)):
                plane[i * pad_w + j] = src[first + j]
        kh, kw = tap // kw_n, tap % kw_n
        while tap < taps and r < end:
            base = kh * dh * pad_w + kw * dw
            row = _u(r * size)
            if runs:
                for oh in range(out_h):
                    out = row + _u(oh * out_w)
                    read = _u(base + oh * sh * pad_w)
                    for ow in range(_u(out_w)):
                        dst[out + ow] = plane[read + ow]
            else:
                for j in range(_u(size)):
                    dst[row + j] = plane[_u(base + at[j])]
            r += 1
            tap += 1
            kw += 1
            if kw == kw_n:
                kw = 0
                kh += 1


_NO_PAIRS = np.zeros(1, np.uint64)
_LITTLE = sys.byteorder == "little"
"""Element 2p of a float32 array is the low half of its 64-bit word p."""


@jit
def _im2col_core(start, stop, x, col, geo, ph):
    """:func:`im2col_rows` with the top padding ``ph`` given: ``geo[7] -
    top * stride`` makes ``col`` the output rows from ``top`` on."""
    kd_n, kh_n, kw_n, sd, sh, sw, pd, pw = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6], geo[8]
    dd, dh, dw = geo[12], geo[13], geo[14]
    chans, depth, height, width = x.shape
    rows, out_d, out_h, out_w = col.shape
    plane = out_h * out_w
    src = x.reshape(-1)
    dst = col.reshape(-1)
    contiguous = sw == 1 and sh == 1 and out_w == width
    paired = _LITTLE and sw == 2 and src.itemsize == 4 and src.size % 2 == 0  # stride-2 reads: halves of words
    pairs, words = src.view(np.uint64) if paired else _NO_PAIRS, dst.view(np.uint32)
    # each tap's valid output ranges, once per call: a row of a 7 x 7 plane
    # (49 outputs) spent most of its time on the divisions they take
    spans = np.empty((3, max(kd_n, kh_n, kw_n), 2), np.int64)
    for kw in range(kw_n):
        spans[0, kw, 0], spans[0, kw, 1] = valid_range(kw * dw - pw, sw, width, out_w)
    for kh in range(kh_n):
        spans[1, kh, 0], spans[1, kh, 1] = valid_range(kh * dh - ph, sh, height, out_h)
    for kd in range(kd_n):
        spans[2, kd, 0], spans[2, kd, 1] = valid_range(kd * dd - pd, sd, depth, out_d)
    first_row = min(start, rows)
    kw, kh = first_row % kw_n, (first_row // kw_n) % kh_n
    kd, c = (first_row // (kw_n * kh_n)) % kd_n, first_row // (kw_n * kh_n * kd_n)
    for r in range(first_row, min(stop, rows)):
        if r > first_row:  # the next tap: (c, kd, kh, kw) counted up without dividing
            kw += 1
            if kw == kw_n:
                kw, kh = 0, kh + 1
                if kh == kh_n:
                    kh, kd = 0, kd + 1
                    if kd == kd_n:
                        kd, c = 0, c + 1
        off_w = kw * dw - pw
        lo, hi = spans[0, kw, 0], spans[0, kw, 1]
        ylo, yhi = spans[1, kh, 0], spans[1, kh, 1]
        zlo, zhi = spans[2, kd, 0], spans[2, kd, 1]
        row_base = r * out_d * plane
        if c >= chans or lo >= hi or ylo >= yhi:
            zlo = zhi = 0
        _fill(dst, row_base, zlo * plane, 0)
        _fill(dst, row_base + zhi * plane, (out_d - zhi) * plane, 0)
        for od in range(zlo, zhi):
            base = row_base + od * plane
            _fill(dst, base, ylo * out_w, 0)
            _fill(dst, base + yhi * out_w, (out_h - yhi) * out_w, 0)
            iz = od * sd - pd + kd * dd
            first = base + ylo * out_w
            src_first = ((c * depth + iz) * height + ylo * sh - ph + kh * dh) * width + off_w
            if contiguous:
                count = (yhi - ylo) * out_w - lo - (out_w - hi)
                d0, s0 = _u(first + lo), _u(src_first + lo)
                for i in range(_u(count)):
                    dst[d0 + i] = src[s0 + i]
                if lo > 0 or hi < out_w:
                    for oh in range(yhi - ylo):
                        _fill(dst, first + oh * out_w, lo, 0)
                        _fill(dst, first + oh * out_w + hi, out_w - hi, 0)
                continue
            for oh in range(yhi - ylo):
                d0 = first + oh * out_w
                s0 = src_first + oh * sh * width
                _fill(dst, d0, lo, 0)
                if paired:  # element s0 + 2 * ow is one half of pair (s0 + 2 * ow) // 2: the same half each time
                    at, p0, count = _u(d0 + lo), _u((s0 + 2 * lo) // 2), _u(hi - lo)
                    if (s0 + 2 * lo) % 2 == 0:
                        for i in range(count):
                            words[at + i] = numba.uint32(pairs[p0 + i] & 0xFFFFFFFF)
                    else:
                        for i in range(count):
                            words[at + i] = numba.uint32(pairs[p0 + i] >> 32)
                else:
                    for ow in range(_u(lo), _u(hi)):
                        dst[_u(d0) + ow] = src[_u(s0) + ow * _u(sw)]
                _fill(dst, d0 + hi, out_w - hi, 0)


@jit
def col2im_planes(start, stop, col, scale, b, out, geo):
    """Output channels [start, stop) of one image of a transposed convolution:
    scatter-add the GEMM result col (K, KD x KH x KW, ID, IH, IW) into
    out (K, OD, OH, OW), starting from the bias b (K,). A depthwise one
    (one input channel an output channel) passes its input as col (K, 1,
    ID, IH, IW) and its weights as ``scale`` (K, taps): each term is the
    weight times the input, rounded, as a product of one term is (scale
    (0, 0) otherwise)."""
    kd_n, kh_n, kw_n = geo[0], geo[1], geo[2]
    sd, sh, sw, pd, ph, pw = geo[3], geo[4], geo[5], geo[6], geo[7], geo[8]
    dd, dh, dw = geo[12], geo[13], geo[14]
    out_c, _, in_d, in_h, in_w = col.shape
    _, out_d, out_h, out_w = out.shape
    depthwise = scale.shape[0] > 0
    src = col.reshape(-1)
    dst = out.reshape(-1)
    plane = out_d * out_h * out_w
    for k in range(start, min(stop, out_c, out.shape[0], b.shape[0])):
        _fill(dst, k * plane, plane, b[k])
        for kd in range(kd_n):
            for kh in range(kh_n):
                for kw in range(kw_n):
                    t = (kd * kh_n + kh) * kw_n + kw
                    weight = scale[k, t] if depthwise else np.float32(1)
                    off_w = kw * dw - pw
                    lo, hi = valid_range(off_w, sw, out_w, in_w)
                    tap = k * in_d if depthwise else (k * kd_n * kh_n * kw_n + t) * in_d
                    for iz in range(in_d):
                        oz = iz * sd - pd + kd * dd
                        if oz < 0 or oz >= out_d:
                            continue
                        for iy in range(in_h):
                            oy = iy * sh - ph + kh * dh
                            if oy < 0 or oy >= out_h:
                                continue
                            row = _u(((tap + iz) * in_h + iy) * in_w)
                            base = _u(((k * out_d + oz) * out_h + oy) * out_w + off_w)
                            if depthwise:
                                for iw in range(_u(lo), _u(hi)):
                                    dst[base + iw * _u(sw)] += weight * src[row + iw]
                            else:
                                for iw in range(_u(lo), _u(hi)):
                                    dst[base + iw * _u(sw)] += src[row + iw]


BAND_BLOCK = 1 << 16
"""Most elements of the column matrix of one band of output rows (256 KiB:
it stays in L2 between its im2col and its product)."""


def band_rows(out_c: int, rows: int, out_d: int, out_h: int, out_w: int, groups: int = 1) -> int:
    """Output rows per band for :func:`conv_by_bands` (``out_c`` and
    ``rows`` = C kh kw a group's), or 0 where a band would be narrower
    than one GEMM tile, there are too few bands (of all groups) for every
    thread to get several, or the weights are large next to a band's
    columns (each band reads all of them again: ResNet-50's 128-channel
    stride-2 3x3 ran 5% slower by bands, its 3-channel 7x7 stem 12% faster)."""
    if out_d != 1:
        return 0
    band = min(out_h, BAND_BLOCK // (rows * out_w))
    if (band < 1 or band * out_w < 48 or groups * -(-out_h // band) < 2 * parallel.NUM_THREADS
            or 4 * out_c > band * out_w):
        return 0
    return band


def conv_by_bands(x3, packed, b, outs, residuals, clamp, geo, band: int, out_h: int, out_w: int) -> None:
    """A 2-D convolution by bands of ``band`` output rows, one band a task:
    each thread builds its band's column matrix in a buffer of its own,
    which stays in L2, and multiplies it at once (one parallel call instead
    of an im2col and a GEMM that each go through memory: MobileNetV2's stem
    1.3x, ResNet-50's 1.2x faster). The same products in the same order as
    the one-GEMM path, so the same results. A short reduction (a stem's)
    reads the band's input rows instead (runtime.kernels.nn_rows), as
    every band of a convolution of several groups (``packed`` a batch of
    G matrices, one a group: a task per group and band)."""
    full, last, kernels, bias = _band_plan(packed, b, residuals is not None, band, out_h, out_w)
    flags = _BAND_FLAGS[b is not None, residuals is not None, clamp is not None]
    rows = nn_rows.kernels_for(x3.shape[1], geo, packed)
    for n in range(outs.shape[0]):
        res, epilogue = outs[n] if residuals is None else residuals[n], NO_CLAMP if clamp is None else clamp
        if rows is not None:
            parallel_for(nn_rows.run_row_bands, packed.batch * -(-out_h // band), x3[n], geo, band, out_h, out_w, rows,
                         packed.data, packed.isa.mr, packed.isa.vw, readonly(bias), outs[n], res, epilogue, flags,
                         packed.batch, grain=1)
            continue
        parallel_for(run_bands, -(-out_h // band), x3[n], geo, band, out_h, out_w, full, last, kernels, packed.data,
                     readonly(bias), outs[n], res, epilogue, flags, grain=1)


def lower_bands(ctx, x, packed, b, out, residual, clamp, geo: tuple, band: int, out_h: int, out_w: int) -> None:
    """:func:`conv_by_bands` as schedule operations (one per image, over
    its bands): ``x`` (N, C, H, W), ``out`` and ``residual`` (N, M, OH, OW)
    operands (runtime.schedule.records)."""
    full, last, kernels, bias = _band_plan(packed, b, residual is not None, band, out_h, out_w)
    m = packed.matrix[0] * packed.batch
    chans, height, width = x.shape[1:]
    rows = nn_rows.kernels_for(chans, geo, packed)
    way = [0, 0, 0] if rows is None else [1, packed.isa.mr, packed.isa.vw]  # the row kernels' way and tile
    kernels = kernels if rows is None else rows
    x_bytes, y_bytes = chans * height * width * 4, m * out_h * out_w * 4
    flags = (b is not None, residual is not None, clamp is not None)
    clamp, residual = NO_CLAMP if clamp is None else clamp, out if residual is None else residual
    for n in range(x.shape[0]):
        ctx.emit(BANDS, [*x.ref(n * x_bytes), chans, 1, height, width, *geo, band, out_h, out_w, *ctx.pin(full),
                         *ctx.pin(last), *ctx.pin(kernels), kernels.size, *ctx.pin(packed.data), packed.data.size,
                         *ctx.pin(bias), bias.size, *out.ref(n * y_bytes), *residual.ref(n * y_bytes), m,
                         *ctx.pin(clamp), *flags, *way, packed.batch], packed.batch * -(-out_h // band))


def _band_plan(packed, b, has_residual: bool, band: int, out_h: int, out_w: int):
    """The strip templates of a full and of the last band, the kernel table
    and the bias array :func:`run_bands` takes."""
    m, rows = packed.matrix
    size = out_h * out_w
    full = gemm.strip_template(m, band * out_w, rows, size, b is not None, has_residual)
    last_rows = out_h - (out_h - 1) // band * band
    last = gemm.strip_template(m, last_rows * out_w, rows, size, b is not None, has_residual)
    return full, last, gemm.kernel_addresses(gemm.host_isa(), "f32"), _NO_BIAS if b is None else b


_BAND_FLAGS = {key: np.array(key, np.bool_) for key in itertools.product((False, True), repeat=3)}
_NO_BIAS = np.zeros(1, np.float32)
_NO_BIAS.flags.writeable = False  # typed as a frozen bias is: one compiled run_bands for both


OWN_COLUMNS_MAX = BAND_BLOCK
"""The most elements of a column matrix that every thread builds for
itself (:func:`lower_own_columns`): one that stays in L2 with the tasks'
packed B panels."""


def lower_own_columns(ctx, x, n: int, packed, col_shape: tuple, geo: tuple, out: tuple, out_strides: tuple, bias,
                      residual, clamp) -> Operand | None:
    """Image ``n``'s column matrix (``col_shape``) and its product as one
    OWN_COLUMNS operation (runtime.schedule.ops._own_columns) of a part per
    thread, where the product has tasks for several: each part builds the
    whole matrix in a buffer of its own, then runs its share of the
    product's tasks (the same tasks on the same matrix: the same bits).
    Where one thread built the matrix and every thread's tasks read all of
    it (the product is cut by rows of the weights), it crossed between the
    cores at every layer: on Zen 4 ResNet-10's 4 x 4 and 8 x 8 column
    matrices (74 and 147 KB) took 11-13 us an IM2COL operation against 4-8
    us built on one core from its own caches, and 33-40 us while the host
    kept the two cores far apart. Where an IM2COL operation would have
    split the matrix over the threads, only a shifted plane qualifies
    (:func:`_im2col_shifted`): one built by slower loops costs more twice
    over than its crossing (ResNet-10's 7x7 stride-2 stem at 32 x 32, cores
    close: 44 against 40 us). None once emitted; else the scratch matrix
    the caller's IM2COL and GEMM take (part 0 of the parts' buffer where
    the product alone fell short)."""
    rows, _, out_h, out_w = col_shape
    split = len(tapered_chunks(rows, parallel.NUM_THREADS * parallel.CHUNKS_PER_THREAD, grain(out_h * out_w))) > 1
    if split and im2col_way(1, x.shape[3], 1, out_h, out_w, geo) != SHIFTED:
        return ctx.scratch(col_shape, np.float32)
    buffers, stride = ctx.part_scratch(rows * out_h * out_w * 4, parallel.NUM_THREADS)
    col = Operand(buffers.base, buffers.offset, tuple(col_shape), np.float32)
    record, tasks, serial = gemm.sgemm_record(ctx, packed, col.reshape((1, rows, out_h * out_w)), out, out_strides,
                                              bias, residual, clamp)
    if serial or tasks < 2:
        return col
    parts = min(parallel.NUM_THREADS, tasks)
    ctx.emit(OWN_COLUMNS, [*record, *im2col_record(x, n, col, geo), parts, stride], parts,
             spans=[(p, p + 1) for p in range(parts)])
    return None


def im2col_record(x, n: int, col, geo: tuple) -> list:
    """The IM2COL record (runtime.schedule.ops._im2col) of image ``n`` of
    the (N, C, H, W) operand ``x`` into the (rows, 1, OH, OW) operand
    ``col``: X (C, D, H, W), the column matrix (rows, OD, OH, OW), the window."""
    chans, height, width = x.shape[1:]
    return [*x.ref(n * chans * height * width * 4), chans, 1, height, width, *col.ref(), *col.shape, *geo]


@jit
def run_bands(start, stop, x, geo, band, out_h, out_w, full, last, kernels, a, bias, out, res, clamp, flags):
    """Bands [start, stop) of output rows of one image: the band's column
    matrix (rows x band x out_w) into this call's buffer, then its product
    by the packed weights ``a`` (:func:`runtime.gemm.run_strip`) into the
    band's columns of ``out`` (M, OH*OW), with the epilogue."""
    rows = x.shape[0] * geo[0] * geo[1] * geo[2]
    col = np.empty(rows * band * out_w, np.float32)
    for t in range(start, stop):
        top = t * band
        if top >= out_h:
            break
        height = min(band, out_h - top)
        n = height * out_w
        strip = col[:rows * n]
        _im2col_core(np.int64(0), rows, x, strip.reshape(rows, 1, height, out_w), geo, geo[7] - top * geo[4])
        at = top * out_w
        run_strip(full if height == band else last, kernels, a, strip, out[:, at:at + n], bias, res[:, at:at + n],
                  clamp, flags)


# ---------------------------------------------------------------- team drivers (runtime.parallel)
@drives(run_bands)
@jit
def _conv_bands_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(run_bands, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)


@drives(im2col_rows)
@jit
def _im2col_rows_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(im2col_rows, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)
