"""Convolution and transposed convolution on the CPU (NC + 1 to 3 spatial dims).

Strategy, chosen for speed on ResNet-like models:

* float32 convolutions with one group run on Tessera's GEMM
  (:mod:`runtime.gemm`) with the weights packed once per weight array
  (:data:`packed_weights`), the bias and the fused epilogue (residual,
  clamp: :mod:`runtime.kernels.conv_epilogue`) applied to each output tile
  in registers;
* pointwise (1x1, no padding) convolutions are one GEMM ``W(K, C) @ X(C, S)``
  written straight into the output (strided 1x1 convs subsample first);
* depthwise convolutions (one input channel per group) use direct Numba
  kernels (:mod:`runtime.kernels.nn_depthwise`);
* float32 3x3 convolutions with unit strides and dilations and one group
  use Winograd's algorithm (:mod:`runtime.kernels.nn_winograd`) where the
  channels and planes are large enough for it to be faster;
* everything else goes through a Numba im2col, parallel over rows of the
  column matrix, feeding one GEMM per image (BLAS batched over groups when
  there are several);
* ConvTranspose is a GEMM per image followed by a Numba col2im, parallel over
  output channels.

BLAS is only called from the calling thread (it has its own threads); the
Numba loops and Tessera's GEMM run on :func:`runtime.parallel.parallel_for`.
Every loop reads its sizes from its arrays' shapes and the window attributes
are validated in Python first, so no loop can index out of bounds.
"""
from __future__ import annotations

import functools
import itertools
import sys
from typing import Sequence

import numba
import numpy as np

from runtime import gemm, parallel
from runtime.errors import KernelError
from runtime.gemm.sgemm import run_strip
from runtime.jit import jit
from runtime.kernels.conv_epilogue import NO_CLAMP, apply_epilogue, check_epilogue
from runtime.kernels.limits import check_output_size
from runtime.kernels.nn_depthwise import (
    depthwise_padded_3x3,
    depthwise_phases_3x3,
    depthwise_planes_finished,
    depthwise_rows_channels_last,
    depthwise_same_3x3,
)
from runtime.kernels.nn_window import MAX_ATTR, Window, grain, lift, make_window, out_shape, valid_range
from runtime.kernels.nn_winograd import (
    packed_winograd_weights,
    scratch,
    tile_size,
    winograd_conv2d,
    winograd_weights,
)
from runtime.kernels.weight_cache import WeightCache
from runtime.parallel import drives, parallel_for, team_enter, team_leave, team_next

COMPUTE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

packed_weights = WeightCache(lambda w, _: gemm.pack_weights(w.reshape(w.shape[0], -1)))
"""A float32 weight array (K, C, *kernel) packed as the GEMM's left operand
(K, C * taps), kept while the array lives."""


# ---------------------------------------------------------------- Numba loops
# The loops index flat views with unsigned indices (``_u``): with signed ones
# Numba tests every index for negative wraparound, which blocks vectorisation
# and made im2col 3-7x slower. Each final index is non-negative by
# construction (a partial sum such as ``row + off_w`` may be negative; unsigned
# wraparound keeps the final sum exact).
_u = numba.uint64


@jit(inline="always")
def _fill(flat, start, count, value):
    first = _u(start)
    for i in range(first, first + _u(count)):
        flat[i] = value


@jit
def _im2col_rows(start, stop, x, col, geo):
    """Rows [start, stop) of one image's column matrix.

    x: (C, D, H, W); col: (C*KD*KH*KW, OD, OH, OW); row r holds, for kernel
    offset (c, kd, kh, kw), the input value each output position reads there
    (0 in the padding). With unit strides and an output as wide as the input
    (SAME-style padding) a row's valid part is one contiguous run of the
    input, copied in one go and then given its zero edge columns."""
    _im2col_core(start, stop, x, col, geo, geo[7])


_NO_PAIRS = np.zeros(1, np.uint64)
_LITTLE = sys.byteorder == "little"
"""Element 2p of a float32 array is the low half of its 64-bit word p."""


@jit(inline="always")
def _im2col_core(start, stop, x, col, geo, ph):
    """:func:`_im2col_rows` with the top padding ``ph`` given: ``geo[7] -
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
    for r in range(start, min(stop, rows)):
        kw = r % kw_n
        kh = (r // kw_n) % kh_n
        kd = (r // (kw_n * kh_n)) % kd_n
        c = r // (kw_n * kh_n * kd_n)
        off_w = kw * dw - pw
        lo, hi = valid_range(off_w, sw, width, out_w)
        ylo, yhi = valid_range(kh * dh - ph, sh, height, out_h)
        zlo, zhi = valid_range(kd * dd - pd, sd, depth, out_d)
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
def _col2im_planes(start, stop, col, b, out, geo):
    """Output channels [start, stop) of one image of a transposed convolution:
    scatter-add the GEMM result col (K, KD, KH, KW, ID, IH, IW) into
    out (K, OD, OH, OW), starting from the bias b (K,)."""
    sd, sh, sw, pd, ph, pw = geo[3], geo[4], geo[5], geo[6], geo[7], geo[8]
    dd, dh, dw = geo[12], geo[13], geo[14]
    out_c, kd_n, kh_n, kw_n, in_d, in_h, in_w = col.shape
    _, out_d, out_h, out_w = out.shape
    src = col.reshape(-1)
    dst = out.reshape(-1)
    plane = out_d * out_h * out_w
    for k in range(start, min(stop, out_c, out.shape[0], b.shape[0])):
        _fill(dst, k * plane, plane, b[k])
        for kd in range(kd_n):
            for kh in range(kh_n):
                for kw in range(kw_n):
                    off_w = kw * dw - pw
                    lo, hi = valid_range(off_w, sw, out_w, in_w)
                    tap = (((k * kd_n + kd) * kh_n + kh) * kw_n + kw) * in_d
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
                            for iw in range(_u(lo), _u(hi)):
                                dst[base + iw * _u(sw)] += src[row + iw]


# ---------------------------------------------------------------- operands
def _compute_dtype(op: str, x: np.ndarray, w: np.ndarray) -> np.dtype:
    if x.dtype != w.dtype:
        raise KernelError(f"{op}: X is {x.dtype} but W is {w.dtype}; they must match")
    if x.dtype not in COMPUTE_DTYPES:
        raise KernelError(f"{op}: dtype {x.dtype} is not supported (float32 or float64)")
    return x.dtype


def _bias(op: str, b: np.ndarray | None, channels: int, dtype: np.dtype) -> np.ndarray | None:
    if b is None:
        return None
    b = np.asarray(b)
    if b.shape != (channels,):
        raise KernelError(f"{op}: B has shape {list(b.shape)}, expected [{channels}]")
    if b.dtype == dtype and b.flags.c_contiguous:
        return b  # the very array: a layer's planned product is kept by its bias' identity
    return np.ascontiguousarray(b, dtype=dtype)


def _check_rank(op: str, x_shape: tuple, w_shape: tuple) -> int:
    spatial = len(x_shape) - 2
    if spatial < 1:
        raise KernelError(f"{op}: X must have rank 3 to 5 (N, C, spatial...), got shape {list(x_shape)}")
    if len(w_shape) != len(x_shape):
        raise KernelError(f"{op}: W has rank {len(w_shape)} but X has rank {len(x_shape)}")
    return spatial


# ---------------------------------------------------------------- Conv
def conv_nd(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, *, strides: Sequence[int],
            pads: Sequence[int], dilations: Sequence[int], group: int = 1, exact: bool = False,
            residual: np.ndarray | None = None, clamp: Sequence[float] | None = None) -> np.ndarray:
    """ONNX Conv on NCW / NCHW / NCDHW data: ``x`` (N, C, *in), ``w``
    (K, C/group, *kernel), optional bias ``b`` (K,); ``pads`` lists all begins
    then all ends. ``x`` and ``w`` share one dtype, float32 or float64; ``b``
    is cast to it. ``exact`` computes every output as a plain sum of products
    (no Winograd transforms): integer operands whose sums fit the float's
    mantissa then give exact integer results. The fused epilogue follows
    when asked: ``residual`` (the output's shape and dtype) is added, and
    the sum clamped to ``clamp`` = (low, high). Returns a new (N, K, *out)
    array of that dtype."""
    op = "Conv"
    x, w = np.asarray(x), np.asarray(w)
    dtype = _compute_dtype(op, x, w)
    try:
        window, shape = _conv_geometry(x.shape, w.shape, tuple(strides), tuple(pads), tuple(dilations), group)
    except TypeError:  # attributes that are not sequences of hashable ints: validated uncached (and named)
        window, shape = _conv_geometry.__wrapped__(x.shape, w.shape, strides, pads, dilations, group)
    group, chans = int(group), x.shape[1]
    b = _bias(op, b, shape[1], dtype)
    out = np.empty(shape, dtype=dtype)
    residual, clamp = check_epilogue(op, residual, clamp, out.shape, dtype)
    if out.size == 0:
        return out
    if chans == 0:
        out[...] = 0
        apply_epilogue(out, b, residual, clamp)
        return out
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    if group > 1 and group == chans:
        if _padded_depthwise(x, w, b, out, window, residual, clamp):
            return out
        _conv_depthwise(x, w, b, out, window, residual, clamp)
        return out
    m = 0 if exact else _winograd_tile(x, w, window, group)
    u = (packed_winograd_weights if gemm.available() else winograd_weights).get(w, m) if m else None
    if u is not None:
        winograd_conv2d(x, u, b, out, window.pads_begin + window.pads_end, m, residual, clamp)
        return out
    pointwise = all(k == 1 for k in window.kernel) and not any(window.pads_begin + window.pads_end)
    if dtype == np.float32 and group == 1 and gemm.available():
        _conv_gemm(x, w, b, out, window, pointwise, residual, clamp)
        return out
    if pointwise:
        _conv_pointwise(x, w, out, window, group)
    else:
        _conv_im2col(x, w, out, window, group)
    apply_epilogue(out, b, residual, clamp)
    return out


@functools.lru_cache(maxsize=1024)
def _conv_geometry(x_shape: tuple, w_shape: tuple, strides: tuple, pads: tuple, dilations: tuple,
                   group) -> tuple[Window, tuple[int, ...]]:
    """The validated window and output shape of a Conv; cached, since a
    model calls each layer's geometry again on every run (validating it in
    Python cost as much as a small layer's kernel)."""
    op = "Conv"
    spatial = _check_rank(op, x_shape, w_shape)
    window = make_window(op, spatial, w_shape[2:], strides, pads, dilations)
    batch, chans = x_shape[:2]
    out_c, group_c = w_shape[:2]
    group = int(group)
    if group < 1 or chans != group_c * group or out_c % group:
        raise KernelError(f"{op}: group={group} does not fit X with {chans} channels and W of shape "
                          f"{list(w_shape)} (need C == W.shape[1] * group and K % group == 0)")
    return window, check_output_size((batch, out_c) + out_shape(op, x_shape[2:], window), op)


_geo = functools.lru_cache(maxsize=1024)(Window.loop_params)
"""A window's ``loop_params()``, built once per window."""


def _winograd_tile(x, w, window: Window, group: int) -> int:
    """Winograd's tile size for this convolution, or 0 to use another path."""
    if (x.dtype != np.float32 or group != 1 or window.kernel != (3, 3) or window.strides != (1, 1)
            or window.dilations != (1, 1)):
        return 0
    return tile_size(x.shape, w.shape, window.pads_begin + window.pads_end)


COLUMN_BLOCK = 1 << 19
"""Most elements of column matrix built at once (2 MiB): a larger one (the
stem of ResNet-50 needs 7 MiB) falls out of cache before its GEMM reads it,
so 2-D convolutions go a block of output rows at a time."""


def _conv_gemm(x, w, b, out, window: Window, pointwise: bool, residual, clamp) -> None:
    """One group, float32: per image, Tessera's GEMM of the packed weights
    by the (subsampled) input or its column matrix, with the bias and the
    epilogue in the kernels."""
    packed = packed_weights.get(w)
    out_c, size = out.shape[1], out[0, 0].size
    outs = out.reshape(out.shape[0], out_c, size)
    residuals = None if residual is None else residual.reshape(outs.shape)
    if pointwise:
        x = _subsampled(x, window)
        if residual is not None and not residual.flags.c_contiguous:
            residuals = np.ascontiguousarray(residuals)
        product = _pointwise_product(packed, size, b, clamp, residual is not None)
        for n in range(x.shape[0]):
            product.run(x[n].reshape(x.shape[1], size), outs[n], None if residuals is None else residuals[n])
        return
    x3, geo = lift(x), _geo(window)
    out_d, out_h, out_w = lift(out).shape[2:]
    rows = w[0].size
    band = _band_rows(out.shape[1], rows, out_d, out_h, out_w)
    if band:
        _conv_by_bands(x3, packed, b, outs, residuals, clamp, geo, band, out_h, out_w)
        return
    step = out_h if out_d > 1 else max(1, min(out_h, COLUMN_BLOCK // (rows * out_w)))
    for n in range(x.shape[0]):
        for top in range(0, out_h, step):
            height = min(step, out_h - top)
            col = scratch("column matrix", (rows, out_d, height, out_w), x.dtype)
            part = slice(top * out_w, (top + height) * out_w) if height < out_h else slice(None)
            shifted = geo[:7] + (geo[7] - top * geo[4],) + geo[8:]  # rows from ``top``: the top pad moves up
            parallel_for(_im2col_rows, rows, x3[n], col, shifted, grain=grain(col[0].size))
            gemm.sgemm(None, col.reshape(rows, -1), outs[n][:, part], packed_a=packed, bias=b,
                       residual=None if residuals is None else residuals[n][:, part], clamp=clamp)


BAND_BLOCK = 1 << 16
"""Most elements of the column matrix of one band of output rows (256 KiB:
it stays in L2 between its im2col and its product)."""


def _band_rows(out_c: int, rows: int, out_d: int, out_h: int, out_w: int) -> int:
    """Output rows per band for :func:`_conv_by_bands`, or 0 where a band
    would be narrower than one GEMM tile, there are too few bands for every
    thread to get several, or the weights are large next to a band's
    columns (each band reads all of them again: ResNet-50's 128-channel
    stride-2 3x3 ran 5% slower by bands, its 3-channel 7x7 stem 12% faster)."""
    if out_d != 1:
        return 0
    band = min(out_h, BAND_BLOCK // (rows * out_w))
    if (band < 1 or band * out_w < 48 or -(-out_h // band) < 2 * parallel.NUM_THREADS
            or 4 * out_c > band * out_w):
        return 0
    return band


def _conv_by_bands(x3, packed, b, outs, residuals, clamp, geo, band: int, out_h: int, out_w: int) -> None:
    """A 2-D convolution by bands of ``band`` output rows, one band a task:
    each thread builds its band's column matrix in a buffer of its own,
    which stays in L2, and multiplies it at once (one parallel call instead
    of an im2col and a GEMM that each go through memory: MobileNetV2's stem
    1.3x, ResNet-50's 1.2x faster). The same products in the same order as
    the one-GEMM path, so the same results."""
    m, rows = packed.matrix
    size = out_h * out_w
    flags = _BAND_FLAGS[b is not None, residuals is not None, clamp is not None]
    full = gemm.strip_template(m, band * out_w, rows, size, b is not None, residuals is not None)
    last_rows = out_h - (out_h - 1) // band * band
    last = gemm.strip_template(m, last_rows * out_w, rows, size, b is not None, residuals is not None)
    kernels = gemm.kernel_addresses(gemm.host_isa(), "f32")
    bias = _NO_BIAS if b is None else b
    for n in range(outs.shape[0]):
        parallel_for(_conv_bands, -(-out_h // band), x3[n], geo, band, out_h, out_w, full, last, kernels, packed.data,
                     bias, outs[n], outs[n] if residuals is None else residuals[n],
                     NO_CLAMP if clamp is None else clamp, flags, grain=1)


_BAND_FLAGS = {key: np.array(key, np.bool_) for key in itertools.product((False, True), repeat=3)}
_NO_BIAS = np.zeros(1, np.float32)


@jit
def _conv_bands(start, stop, x, geo, band, out_h, out_w, full, last, kernels, a, bias, out, res, clamp, flags):
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
        _im2col_core(0, rows, x, strip.reshape(rows, 1, height, out_w), geo, geo[7] - top * geo[4])
        at = top * out_w
        run_strip(full if height == band else last, kernels, a, strip, out[:, at:at + n], bias, res[:, at:at + n],
                  clamp, flags)


_products: dict[tuple, "gemm.PackedProduct"] = {}
_MAX_PRODUCTS = 1024


def _pointwise_product(packed, size: int, b, clamp, residual: bool) -> "gemm.PackedProduct":
    """The planned product of a 1x1 convolution's packed weights by a
    (C, ``size``) input, kept by the weights' and bias' identities (the
    product holds both, so neither identity can be reused meanwhile)."""
    clamp = None if clamp is None else tuple(float(v) for v in clamp)
    key = (id(packed), id(b), size, clamp, residual)
    product = _products.get(key)
    if product is None:
        if len(_products) >= _MAX_PRODUCTS:
            _products.clear()
        product = _products[key] = gemm.PackedProduct(packed, size, b, clamp, residual)
    return product


def _subsampled(x, window: Window):
    """The input a strided 1x1 convolution reads (a copy), or ``x``."""
    if all(s == 1 for s in window.strides):
        return x
    return np.ascontiguousarray(x[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in window.strides)])


def _conv_pointwise(x, w, out, window: Window, group: int) -> None:
    """1x1 convolution: a (batched, grouped) GEMM over the subsampled input."""
    x = _subsampled(x, window)
    batch, chans = x.shape[:2]
    out_c = w.shape[0]
    size = out[0, 0].size
    np.matmul(w.reshape(group, out_c // group, chans // group), x.reshape(batch, group, chans // group, size),
              out=out.reshape(batch, group, out_c // group, size))


def _conv_im2col(x, w, out, window: Window, group: int) -> None:
    """General convolution: Numba im2col per image, then one GEMM per image."""
    x3 = lift(x)
    rows = w[0].size * group
    out_spatial = lift(out).shape[2:]
    col = scratch("column matrix", (rows,) + out_spatial, x.dtype)
    geo = _geo(window)
    out_c = w.shape[0]
    w_groups = w.reshape(group, out_c // group, rows // group)
    col_groups = col.reshape(group, rows // group, -1)
    row_grain = grain(col[0].size)
    for n in range(x.shape[0]):
        parallel_for(_im2col_rows, rows, x3[n], col, geo, grain=row_grain)
        np.matmul(w_groups, col_groups, out=out[n].reshape(group, out_c // group, -1))


PADDED_WIDTH = 64
"""2-D 3x3 depthwise convolutions at strides 1 or 2 (unit dilations) with
inputs up to this wide run on padded planes, with the epilogue in the same
pass: :func:`depthwise_padded_3x3` (no border cases, so a small fixed cost
per plane); wider ones are faster on the per-plane kernel (MobileNetV2's
112-wide planes: 10-20% at stride 2). SAME convolutions at stride 1 (pads
of 1) take :func:`depthwise_same_3x3` at any width (one flat pass per plane,
no copy-out: 2.4x faster than padded planes on 7x7 and 14x14)."""


_EPILOGUE_FLAGS = {(res, clamp): np.array([res, clamp], np.bool_) for res in (False, True) for clamp in (False, True)}
"""The kernels' (residual given, clamp given) flag arrays (only read)."""


def _padded_depthwise(x, w, b, out, window: Window, residual, clamp) -> bool:
    """Run the depthwise convolution on a flat or padded plane kernel, with
    its epilogue, if its geometry suits one; say whether it did."""
    if x.ndim != 4 or window.kernel != (3, 3) or window.dilations != (1, 1):
        return False
    pads = window.pads_begin + window.pads_end
    if window.strides == (1, 1) and pads == (1, 1, 1, 1):
        kernel, geo = depthwise_same_3x3, ()
    elif (window.strides == (2, 2) and pads == (1, 1, 1, 1) and x.dtype == np.float32 and x.shape[3] % 2 == 0
          and sys.byteorder == "little"):
        kernel, geo = depthwise_phases_3x3, ()
    elif all(s in (1, 2) for s in window.strides) and x.shape[3] <= PADDED_WIDTH:
        kernel, geo = depthwise_padded_3x3, (_geo(window),)
    else:
        return False
    b = np.zeros(w.shape[0], dtype=x.dtype) if b is None else b
    flags = _EPILOGUE_FLAGS[residual is not None, clamp is not None]
    parallel_for(kernel, out.shape[0] * out.shape[1], x, w.reshape(w.shape[0], 3, 3), b, out,
                 out if residual is None else residual, NO_CLAMP if clamp is None else clamp, flags, *geo,
                 grain=grain(out[0, 0].size * 9))
    return True


SMALL_PLANE = 100
"""Output planes up to this size run depthwise convolutions channels last:
per-plane work is too small there for the plane kernel's fixed costs."""


def _conv_depthwise(x, w, b, out, window: Window, residual, clamp) -> None:
    """Depthwise convolution (one input channel per group) and its epilogue:
    direct kernel, per plane with the epilogue in the same call, or channels
    last for small planes."""
    if b is None:
        b = np.zeros(w.shape[0], dtype=x.dtype)
    plane = out[0, 0].size
    if w.shape[0] == x.shape[1] and plane <= SMALL_PLANE:
        _conv_depthwise_channels_last(x, w, b, out, window)
        apply_epilogue(out, None, residual, clamp)
        return
    w3 = lift(w)
    flags = _EPILOGUE_FLAGS[residual is not None, clamp is not None]
    parallel_for(depthwise_planes_finished, out.shape[0] * out.shape[1], lift(x),
                 w3.reshape(w3.shape[0], *w3.shape[2:]), b, lift(out), lift(out if residual is None else residual),
                 np.asarray(NO_CLAMP if clamp is None else clamp, out.dtype), flags, _geo(window),
                 grain=grain(plane * w[0].size))


def _conv_depthwise_channels_last(x, w, b, out, window: Window) -> None:
    """Transpose to channels last, run the kernel over output rows, transpose
    the result back into ``out``."""
    x_last = np.ascontiguousarray(np.moveaxis(lift(x), 1, -1))
    w3 = lift(w)
    w_last = np.ascontiguousarray(np.moveaxis(w3.reshape(w3.shape[0], *w3.shape[2:]), 0, -1))
    out3 = lift(out)
    out_last = np.empty(out3.shape[:1] + out3.shape[2:] + out3.shape[1:2], dtype=out.dtype)
    rows = out_last.shape[0] * out_last.shape[1] * out_last.shape[2]
    parallel_for(depthwise_rows_channels_last, rows, x_last, w_last, b, out_last, _geo(window),
                 grain=grain(out_last[0, 0, 0].size * w[0].size))
    out3[...] = np.moveaxis(out_last, -1, 1)


# ---------------------------------------------------------------- ConvTranspose
def conv_transpose_nd(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, *, strides: Sequence[int],
                      pads: Sequence[int], dilations: Sequence[int], group: int = 1,
                      output_padding: Sequence[int] | None = None) -> np.ndarray:
    """ONNX ConvTranspose with explicit pads: ``x`` (N, C, *in), ``w``
    (C, K/group, *kernel); output length per axis is
    ``stride * (in - 1) + output_padding + (kernel - 1) * dilation + 1 - pads``.
    Pads may be negative (they then extend the output, as an ``output_shape``
    larger than the natural one does). float32 or float64."""
    op = "ConvTranspose"
    x, w = np.asarray(x), np.asarray(w)
    dtype = _compute_dtype(op, x, w)
    spatial = _check_rank(op, x.shape, w.shape)
    window = make_window(op, spatial, w.shape[2:], strides, pads, dilations, negative_pads=True)
    extra = (0,) * spatial if output_padding is None else tuple(int(v) for v in output_padding)
    if len(extra) != spatial or any(not 0 <= v <= MAX_ATTR for v in extra):
        raise KernelError(f"{op}: output_padding={list(extra)} must be {spatial} ints in [0, {MAX_ATTR}]")
    batch, chans = x.shape[:2]
    group = int(group)
    if group < 1 or w.shape[0] != chans or chans % group:
        raise KernelError(f"{op}: group={group} does not fit X with {chans} channels and W of shape "
                          f"{list(w.shape)} (need W.shape[0] == C and C % group == 0)")
    out_c = w.shape[1] * group
    b = _bias(op, b, out_c, dtype)
    dims = _transpose_out_shape(op, x.shape[2:], window, extra)
    out = np.empty(check_output_size((batch, out_c) + dims, op), dtype=dtype)
    if out.size == 0:
        return out
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    _conv_transpose_gemm_col2im(x, w, b, out, window, group)
    return out


def _transpose_out_shape(op: str, in_shape, window: Window, extra) -> tuple[int, ...]:
    dims = []
    for axis, size in enumerate(in_shape):
        dim = (window.strides[axis] * (size - 1) + extra[axis] + window.spans[axis]
               - window.pads_begin[axis] - window.pads_end[axis])
        if dim < 1 or size < 1:
            raise KernelError(f"{op}: spatial axis {axis} (input size {size}) gives output size {dim}")
        dims.append(dim)
    return tuple(dims)


def _conv_transpose_gemm_col2im(x, w, b, out, window: Window, group: int) -> None:
    batch, chans = x.shape[:2]
    out_c = out.shape[1]
    kernel3 = window.lifted().kernel
    in3 = lift(x).shape[2:]
    size = int(np.prod(in3))
    taps = int(np.prod(kernel3))
    w_t = w.reshape(group, chans // group, (out_c // group) * taps).transpose(0, 2, 1)
    cols = np.empty(check_output_size((group, (out_c // group) * taps, size), "ConvTranspose column matrix"),
                    dtype=x.dtype)
    col_view = cols.reshape((out_c,) + kernel3 + in3)
    bias = b if b is not None else np.zeros(out_c, dtype=x.dtype)
    out3 = lift(out)
    geo = _geo(window)
    for n in range(batch):
        np.matmul(w_t, x[n].reshape(group, chans // group, size), out=cols)
        parallel_for(_col2im_planes, out_c, col_view, bias, out3[n], geo, grain=grain(col_view[0].size))


# ---------------------------------------------------------------- team drivers (runtime.parallel)
@drives(_conv_bands)
@jit
def _conv_bands_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        _conv_bands(spans[index, 0], spans[index, 1], *args)
        index = team_next(team, True)
    return team_leave(team, state, role)


@drives(_im2col_rows)
@jit
def _im2col_rows_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        _im2col_rows(spans[index, 0], spans[index, 1], *args)
        index = team_next(team, True)
    return team_leave(team, state, role)
