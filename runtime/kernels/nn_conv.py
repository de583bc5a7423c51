"""Convolution and transposed convolution on the CPU (NC + 1 to 3 spatial dims).

Strategy, chosen for speed on ResNet-like models:

* float32 convolutions with one group run on Tessera's GEMM
  (:mod:`runtime.gemm`) with the weights packed once per weight array
  (:data:`packed_weights`), the bias and the fused epilogue (residual,
  clamp, HardSigmoid / HardSwish gate: :mod:`runtime.kernels.conv_epilogue`)
  applied to each output tile in registers;
* pointwise (1x1, no padding) convolutions are one GEMM ``W(K, C) @ X(C, S)``
  written straight into the output (strided 1x1 convs subsample first);
* a convolution of one output position per image (fewer than FEW_ROWS
  images) whose column is not its input (a kernel larger than 1x1, or
  padding) is dot products of each channel's weights with the images'
  columns (:func:`conv_one_position`), which stream the weights once;
* depthwise convolutions (one input channel per group) use direct Numba
  kernels (:mod:`runtime.kernels.nn_depthwise`);
* float32 3x3 convolutions with unit strides and dilations and one group
  use Winograd's algorithm (:mod:`runtime.kernels.nn_winograd`) where the
  channels and planes are large enough for it to be faster;
* everything else goes through a Numba im2col (:mod:`runtime.kernels.nn_im2col`):
  by bands of output rows, each band's column matrix built and multiplied
  by one task in L2, where the weights are small next to a band; otherwise
  parallel over rows of the column matrix, feeding one GEMM per image (BLAS
  batched over groups when there are several); in a schedule, a small
  column matrix is built by every thread for itself, each then running its
  share of the product (:func:`lower_conv_gemm`), and one whose input and
  weights are small and reduction deep (ResNet-10's layers at 32 x 32) is
  a direct product, read from a zero-padded copy of its input with no
  column matrix (:mod:`runtime.kernels.nn_direct`);
* ConvTranspose is a GEMM per image followed by a Numba col2im, parallel over
  output channels.

BLAS is only called from the calling thread (it has its own threads); the
Numba loops and Tessera's GEMM run on :func:`runtime.parallel.parallel_for`.
Every loop reads its sizes from its arrays' shapes and the window attributes
are validated in Python first, so no loop can index out of bounds.
"""
from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from runtime import gemm, parallel
from runtime.errors import KernelError
from runtime.gemm.gemv import FEW_ROWS, NO_BIAS, dot_rows, lower_dot_rows
from runtime.jit import readonly
from runtime.kernels import depthwise_blocks, depthwise_ir
from runtime.kernels.conv_epilogue import NO_CLAMP, apply_epilogue, check_epilogue
from runtime.kernels.conv_products import _geo, _lower_im2col, _pointwise_product, _subsampled, column_blocks
from runtime.kernels.conv_weights import packed_for, packed_weights, product_columns, row_block
from runtime.kernels.limits import check_output_size
from runtime.kernels.nn_depthwise import depthwise_planes_finished, depthwise_rows_channels_last
from runtime.kernels.nn_depthwise_3x3 import depthwise_padded_3x3
from runtime.kernels.nn_grouped import _conv_grouped, group_bands
from runtime.kernels.nn_im2col import (
    OWN_COLUMNS_MAX,
    band_rows,
    conv_by_bands,
    im2col_rows,
    lower_own_columns,
)
from runtime.kernels.nn_window import Window, grain, lift, make_window, out_shape
from runtime.kernels.nn_winograd import (
    packed_winograd_weights,
    scratch,
    tile_size,
    winograd_conv2d,
    winograd_weights,
)
from runtime.parallel import parallel_for
from runtime.schedule.records import DEPTHWISE, DW_BLOCKS, DW_IR, DW_PADDED, GEO, Operand

COMPUTE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
"""float64 convolutions are the exact and reference path (the quantized
kernels' integer sums, ONNX's double models), not a speed target: their
depthwise ones take the grouped column-matrix GEMM of every other
convolution (exact on integers below 2**53 in any order, as BLAS sums them),
not the depthwise kernels, whose specialised paths cost some 30 s of Numba
compilation per dtype."""

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
def window_attrs(attrs, w: np.ndarray) -> dict:
    """A Conv node's window attributes as conv_nd's keywords, its kernel_shape
    checked against W."""
    kernel_shape = tuple(int(k) for k in attrs["kernel_shape"])
    if kernel_shape != tuple(w.shape[2:]):
        raise KernelError(f"kernel_shape={list(kernel_shape)} does not match W of shape {list(w.shape)}")
    return dict(strides=attrs["strides"], pads=attrs["pads"], dilations=attrs["dilations"], group=attrs["group"])


def conv_nd(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, *, strides: Sequence[int],
            pads: Sequence[int], dilations: Sequence[int], group: int = 1, exact: bool = False,
            residual: np.ndarray | None = None, clamp: Sequence[float] | None = None,
            gate: tuple | None = None) -> np.ndarray:
    """ONNX Conv on NCW / NCHW / NCDHW data: ``x`` (N, C, *in), ``w``
    (K, C/group, *kernel), optional bias ``b`` (K,); ``pads`` lists all begins
    then all ends. ``x`` and ``w`` share one dtype, float32 or float64; ``b``
    is cast to it. ``exact`` computes every output as a plain sum of products
    (no Winograd transforms): integer operands whose sums fit the float's
    mantissa then give exact integer results. The fused epilogue follows
    when asked: ``residual`` (the output's shape and dtype) is added, and
    the sum clamped to ``clamp`` = (low, high), then put through ``gate`` =
    ("HardSigmoid" or "HardSwish", alpha, beta) (float32 only: the bits of
    the element-wise kernel run after). Returns a new (N, K, *out) array of
    that dtype."""
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
    residual, clamp = check_epilogue(op, residual, clamp, out.shape, dtype, gate)
    if out.size == 0:
        return out
    if chans == 0:
        out[...] = 0
        apply_epilogue(out, b, residual, clamp)
        return out
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    if group > 1 and group == chans and dtype == np.float32:  # float64: below (COMPUTE_DTYPES)
        chosen = plane_kernel(x.shape, x.dtype, window, w.shape[0])
        if chosen is not None:
            run_plane_kernel(chosen, x, w, b, out, residual, clamp)
            return out
        _conv_depthwise(x, w, b, out, window, residual, clamp)
        return out
    if dtype == np.float32 and one_position(x.shape, shape, window, group):
        conv_one_position(x, w, b, out, window, residual, clamp)
        return out
    m = 0 if exact else _winograd_tile(x.dtype, x.shape, w.shape, window, group)
    u = (packed_winograd_weights if gemm.available() else winograd_weights).get(w, m) if m else None
    if u is not None:
        winograd_conv2d(x, u, b, out, window.pads_begin + window.pads_end, m, residual, clamp)
        return out
    pointwise = all(k == 1 for k in window.kernel) and not any(window.pads_begin + window.pads_end)
    if dtype == np.float32 and gemm.available():
        if group == 1:
            _conv_gemm(x, w, b, out, window, pointwise, residual, clamp)
        else:
            _conv_grouped(x, w, b, out, window, pointwise, residual, clamp, group)
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


def _winograd_tile(dtype, x_shape: tuple, w_shape: tuple, window: Window, group: int) -> int:
    """Winograd's tile size for this convolution, or 0 to use another path."""
    if (dtype != np.float32 or group != 1 or window.kernel != (3, 3) or window.strides != (1, 1)
            or window.dilations != (1, 1)):
        return 0
    return tile_size(x_shape, w_shape, window.pads_begin + window.pads_end)


def gemm_bands(x_shape: tuple, w_shape: tuple, window: Window, group: int) -> int:
    """Output rows per band where :func:`conv_nd` (not ``exact``) runs this
    float32 convolution by bands (:func:`conv_by_bands`), else 0: 2-D, not
    1x1 unpadded, no Winograd tile, bands that pay, and one group or
    several of more than one channel that the row kernels take
    (:func:`group_bands`)."""
    if (len(w_shape) != 4 or not gemm.available() or int(group) == x_shape[1] > 1
            or _winograd_tile(np.float32, x_shape, w_shape, window, group)):
        return 0
    if all(k == 1 for k in window.kernel) and not any(window.pads_begin + window.pads_end):
        return 0
    out_h, out_w = out_shape("Conv", x_shape[2:], window)
    if int(group) > 1:
        return group_bands(w_shape, _geo(window), (1, out_h, out_w), int(group))
    return band_rows(w_shape[0], int(np.prod(w_shape[1:])), 1, out_h, out_w)


def _conv_gemm(x, w, b, out, window: Window, pointwise: bool, residual, clamp) -> None:
    """One group, float32: per image, Tessera's GEMM of the packed weights
    by the (subsampled) input or its column matrix, with the bias and the
    epilogue in the kernels."""
    out_c, size = out.shape[1], out[0, 0].size
    outs = out.reshape(out.shape[0], out_c, size)
    residuals = None if residual is None else residual.reshape(outs.shape)
    if pointwise:
        packed = packed_for(w, size)
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
    band = band_rows(out.shape[1], rows, out_d, out_h, out_w)
    if band:
        conv_by_bands(x3, packed_weights.get(w), b, outs, residuals, clamp, geo, band, out_h, out_w)
        return
    step = out_h if out_d > 1 else row_block(out_h, out_w, rows)
    packed = packed_for(w, product_columns(out.shape, rows, False))
    for n in range(x.shape[0]):
        for col, part in column_blocks(x3[n], rows, geo, (out_d, out_h, out_w), step, x.dtype):
            gemm.sgemm(None, col.reshape(rows, -1), outs[n][:, part], packed_a=packed, bias=b,
                       residual=None if residuals is None else residuals[n][:, part], clamp=clamp)


def lower_conv_gemm(ctx, x, packed, b, out, window: Window, pointwise: bool, residual, clamp) -> None:
    """:func:`_conv_gemm` of a 2-D convolution that runs neither by bands
    nor unstrided 1x1, as schedule operations: per image, the column matrix
    (of a block of output rows, as there; a strided 1x1 convolution's is its
    subsampled input) into a scratch buffer, then its product; or, for a
    column matrix of at most ``OWN_COLUMNS_MAX`` elements, one OWN_COLUMNS
    operation (runtime.kernels.nn_im2col.lower_own_columns). With ``packed``
    a batch of G matrices (``grouped_weights``, not 1x1), the groups'
    products as one GEMM, as :func:`runtime.kernels.nn_grouped._conv_grouped`
    runs them. ``x``, ``out`` and ``residual`` are operands
    (runtime.schedule.records)."""
    if len(x.shape) != 4:
        raise ValueError("2-D convolutions only")
    batch, chans = x.shape[:2]
    out_c, out_h, out_w = out.shape[1:]
    size, rows = out_h * out_w, packed.matrix[1]
    y_bytes = out_c * size * 4
    geo = _geo(window)
    if pointwise:
        product = _pointwise_product(packed, size, b, clamp, residual is not None)
        col = ctx.scratch((chans, 1, out_h, out_w), np.float32)
        for n in range(batch):
            _lower_im2col(ctx, x, n, col, geo)
            product.lower(ctx, col.ref(), out.ref(n * y_bytes), None if residual is None else residual.ref(n * y_bytes))
        return
    group = packed.batch
    rows *= group
    bias = None if b is None else np.ascontiguousarray(b).reshape(group, -1)
    clamp = None if clamp is None else np.array(clamp, np.float32)
    strides = (out_c // group * size * 4, size * 4, 4)
    step = row_block(out_h, out_w, rows)
    own = group == 1 and step == out_h and rows * size <= OWN_COLUMNS_MAX and parallel.NUM_THREADS > 1
    for n in range(batch):
        for top in range(0, out_h, step):
            rows_here = min(step, out_h - top)
            at = n * y_bytes + top * out_w * 4
            shifted = geo[:7] + (geo[7] - top * geo[4],) + geo[8:]
            res = None if residual is None else residual.ref(at)
            if own:
                col = lower_own_columns(ctx, x, n, packed, (rows, 1, out_h, out_w), shifted, out.ref(at),
                                        strides, bias, res, clamp)
                if col is None:
                    continue
            else:
                col = ctx.scratch((rows, 1, rows_here, out_w), np.float32)
            _lower_im2col(ctx, x, n, col, shifted)
            gemm.lower_sgemm(ctx, packed, col.reshape((group, rows // group, rows_here * out_w)), out.ref(at),
                             strides, bias, res, clamp)


def one_position(x_shape: tuple, out_shape: tuple, window: Window, group) -> bool:
    """Whether a float32 convolution producing ``out_shape`` runs as dot
    products (:func:`conv_one_position`): 2-D, one group, Tessera's GEMM
    kernels on this CPU (the generic and the prepared kernel ask here, so
    both choose alike), one output position per image, fewer than
    FEW_ROWS images, and a column that is not the input
    itself (a kernel larger than 1x1, or padding). A 1x1 convolution of a
    1x1 map stays on the packed GEMM: as dot products its float sums would
    round differently, and with them the ranges calibrated on it (ONNX
    DenseNet-121's classifier: a different binary), which no speed-up may
    change."""
    return (len(x_shape) == 4 and int(group) == 1 and out_shape[2] == out_shape[3] == 1
            and out_shape[0] < FEW_ROWS and (window.kernel != (1, 1) or any(window.pads_begin + window.pads_end))
            and gemm.available())


def conv_one_position(x, w, b, out, window: Window, residual, clamp) -> None:
    """A float32 2-D convolution of one group with one output position per
    image (:func:`one_position`: a ResNet's last stage on 32x32 inputs, an
    SE block's 1x1 convolutions, a head on a pooled map): each image's one
    column of the input, then per output channel the dot products of its
    weights with the columns (runtime.gemm.gemv), which stream the weights
    once, in their own layout, where the GEMM would read them packed in
    panels for one column (279 -> 61 us for ResNet-10's 512x256x2x2 at
    32x32); then the bias, residual, clamp and gate, as everywhere."""
    batch, out_c = out.shape[:2]
    rows = w[0].size
    col = scratch("column matrix", (batch, rows), np.float32)
    geo, x3 = _geo(window), lift(x)
    for n in range(batch):
        parallel_for(im2col_rows, rows, x3[n], col[n].reshape(rows, 1, 1, 1), geo, grain=grain(1))
    parallel_for(dot_rows, out_c, col, readonly(w.reshape(out_c, rows)), out.reshape(batch, out_c),
                 NO_BIAS if b is None else readonly(b), grain=max(1, (1 << 14) // rows))
    apply_epilogue(out, None, residual, clamp)


def lower_conv_one_position(ctx, x, w, b, out, window: Window, residual, clamp) -> None:
    """:func:`conv_one_position` as schedule operations: the columns into a
    scratch buffer, then one DOT_ROWS operation with the epilogue in it.
    ``x``, ``out`` and ``residual`` are operands (runtime.schedule.records);
    ``w`` and ``b`` frozen arrays; ``clamp`` a clamp array or None."""
    batch = x.shape[0]
    out_c, rows = w.shape[0], w[0].size
    col, geo = ctx.scratch((batch, rows), np.float32), _geo(window)
    for n in range(batch):
        _lower_im2col(ctx, x, n, Operand(col.base, col.offset + n * rows * 4, (rows, 1, 1, 1), col.dtype), geo)
    lower_dot_rows(ctx, col, w.reshape(out_c, rows), out.reshape((batch, out_c)), b,
                   None if residual is None else residual.reshape((batch, out_c)), clamp)


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
        parallel_for(im2col_rows, rows, x3[n], col, geo, grain=row_grain)
        np.matmul(w_groups, col_groups, out=out[n].reshape(group, out_c // group, -1))


PADDED_WIDTH = 64
"""2-D 3x3 depthwise convolutions at strides 1 or 2 (unit dilations) with
inputs up to this wide run on padded planes, with the epilogue in the same
pass: :func:`depthwise_padded_3x3` (no border cases, so a small fixed cost
per plane); wider ones are faster on the per-plane kernel (MobileNetV2's
112-wide planes: 10-20% at stride 2). Pads of 1 at strides 1 or 2 take the
LLVM IR plane kernels (runtime.kernels.depthwise_ir) at any width."""


_EPILOGUE_FLAGS = {(res, clamp): np.array([res, clamp], np.bool_) for res in (False, True) for clamp in (False, True)}
"""The kernels' (residual given, clamp given) flag arrays (only read)."""


def plane_kernel(x_shape: tuple, dtype, window: Window, out_c: int | None = None) -> tuple | None:
    """(kernel, its extra arguments) of the depthwise kernel for this
    geometry, or None: float32 2-D planes, unit dilations, a square kernel
    with pads of half its size at a stride depthwise_ir.SIZES has (the block
    kernels where depthwise_blocks.takes_blocks and ``out_c`` is the input's
    channels, else the plane kernels), or a 3x3 of narrow planes at strides
    1 or 2 (padded-plane kernel)."""
    if len(x_shape) != 4 or window.dilations != (1, 1) or dtype != np.float32:
        return None
    size = window.kernel[0]
    pads = window.pads_begin + window.pads_end
    if (window.kernel == (size, size) and pads == (size // 2,) * 4 and window.strides[0] == window.strides[1]
            and window.strides[0] in depthwise_ir.SIZES.get(size, ())):
        stride = window.strides[0]
        if out_c == x_shape[1] and gemm.available() and depthwise_blocks.takes_blocks(size, stride, *x_shape[2:]):
            return depthwise_blocks.block_planes, (depthwise_blocks.block_plan(*x_shape[2:], size, stride),)
        return depthwise_ir.depthwise_ir_planes, (depthwise_ir.kernel_addresses(stride, ksize=size), stride)
    if window.kernel == (3, 3) and all(s in (1, 2) for s in window.strides) and x_shape[3] <= PADDED_WIDTH:
        return depthwise_padded_3x3, (_geo(window),)
    return None


def run_plane_kernel(chosen: tuple, x, w, b, out, residual, clamp) -> None:
    """The depthwise convolution on a :func:`plane_kernel`, with its epilogue."""
    kernel, extra = chosen
    b = np.zeros(w.shape[0], dtype=x.dtype) if b is None else b
    flags = _EPILOGUE_FLAGS[residual is not None, clamp is not None]
    taps = w[0].size
    weights = (depthwise_blocks.blocked_weights.get(w, int(extra[0][depthwise_blocks.VB]))
               if kernel is depthwise_blocks.block_planes else readonly(w.reshape(w.shape[0], *w.shape[2:])))
    parallel_for(kernel, out.shape[0] * out.shape[1], x, weights, readonly(b), out,
                 out if residual is None else residual, NO_CLAMP if clamp is None else clamp, flags, *extra,
                 grain=grain(out[0, 0].size * taps))


_VARIANTS = {depthwise_ir.depthwise_ir_planes: DW_IR, depthwise_padded_3x3: DW_PADDED,
             depthwise_blocks.block_planes: DW_BLOCKS}


def lower_plane_kernel(ctx, chosen: tuple, x, w, b, out, residual, clamp) -> None:
    """:func:`run_plane_kernel` as a schedule operation: ``x``, ``out`` and
    ``residual`` are operands (runtime.schedule.records), ``w`` and ``b``
    constants. The block kernels' chunks hold whole blocks of channels."""
    kernel, extra = chosen
    batch, chans, height, width = x.shape
    out_c, out_h, out_w = out.shape[1:]
    bias = np.zeros(out_c, np.float32) if b is None else b
    flags = (residual is not None, clamp is not None)
    variant = _VARIANTS[kernel]
    spans, weights = None, w
    if variant == DW_PADDED:
        tail = tuple(extra[0])
    elif variant == DW_IR:
        zeros, masks = depthwise_ir.plane_scratch(height, width, w.shape[2], extra[1], extra[0])  # read only
        tail = (*ctx.pin(extra[0]), extra[1], w.shape[2], *ctx.pin(zeros), zeros.size, *ctx.pin(masks), masks.size,
                *(0,) * (GEO - 10))
    else:
        plan, lanes = extra[0], int(extra[0][depthwise_blocks.VB])
        weights = depthwise_blocks.blocked_weights.get(w, lanes)
        tail = (*ctx.pin(plan), plan.size, *(0,) * (GEO - 3))
        spans = depthwise_blocks.block_spans(batch, out_c, lanes, parallel.NUM_THREADS * parallel.CHUNKS_PER_THREAD,
                                             grain(out_h * out_w * w[0].size))
    ctx.emit(DEPTHWISE, [variant, *x.ref(), batch, chans, height, width, *ctx.pin(weights), *ctx.pin(bias),
                         *ctx.light(out).ref(), out_c, out_h, out_w, *(out if residual is None else residual).ref(),
                         *ctx.pin(NO_CLAMP if clamp is None else clamp), *flags, *tail],
             batch * out_c, grain(out_h * out_w * w[0].size), spans=spans)


SMALL_PLANE = 100
"""Output planes up to this size of strided depthwise convolutions run
channels last: per-plane work is too small there for the plane kernel's
fixed costs (unit-stride 2-D planes of kernels other than 3x3 are
convolved whole: nn_depthwise.PADDED_PLANE)."""


def _conv_depthwise(x, w, b, out, window: Window, residual, clamp) -> None:
    """Depthwise convolution (one input channel per group) and its epilogue:
    direct kernel, per plane with the epilogue in the same call, or channels
    last for small planes."""
    if b is None:
        b = np.zeros(w.shape[0], dtype=x.dtype)
    plane = out[0, 0].size
    whole = len(window.kernel) == 2 and window.kernel != (3, 3) and all(s == 1 for s in window.strides)
    if w.shape[0] == x.shape[1] and plane <= SMALL_PLANE and not whole:
        _conv_depthwise_channels_last(x, w, b, out, window)
        apply_epilogue(out, None, residual, clamp)
        return
    w3 = lift(w)
    flags = _EPILOGUE_FLAGS[residual is not None, clamp is not None]
    parallel_for(depthwise_planes_finished, out.shape[0] * out.shape[1], lift(x),
                 readonly(w3.reshape(w3.shape[0], *w3.shape[2:])), readonly(b), lift(out),
                 lift(out if residual is None else residual),
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
    parallel_for(depthwise_rows_channels_last, rows, x_last, readonly(w_last), readonly(b), out_last, _geo(window),
                 grain=grain(out_last[0, 0, 0].size * w[0].size))
    out3[...] = np.moveaxis(out_last, -1, 1)


# ---------------------------------------------------------------- team drivers (runtime.parallel)
