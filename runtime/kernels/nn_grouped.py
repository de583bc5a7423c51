"""Grouped float32 convolutions (groups of several channels: AlexNet's,
ShuffleNet v1's, ResNeXt's) on Tessera's GEMM, per step (a schedule lowers
them as nn_conv.lower_conv_gemm and the prepared 1x1 product do)."""
from __future__ import annotations

import math

from runtime import gemm
from runtime.kernels import nn_rows
from runtime.kernels.conv_products import _geo, _pointwise_product, _subsampled, column_blocks
from runtime.kernels.conv_weights import grouped_weights, row_block
from runtime.kernels.nn_im2col import band_rows, conv_by_bands
from runtime.kernels.nn_window import Window, lift


def group_bands(w_shape: tuple, geo: tuple, out3: tuple, group: int) -> int:
    """Output rows per band where a convolution of ``group`` groups
    (weights ``w_shape``, window ``geo``, output positions ``out3`` = (OD,
    OH, OW)), 2-D, runs by bands on the row kernels
    (a task per group and band, each reading its group's input rows:
    runtime.kernels.nn_rows), else 0. No column matrix of all the groups
    then goes through memory: at 16 channels a group, one output row of
    the matrix per 16 multiply-adds, as costly as they are (Zen 4, one
    thread: 128 channels at 56 x 56 in 8 groups 2.77 -> 1.54 ms, in 32
    1.93 -> 0.91 ms, 256 at 28 x 28 in 32 0.76 -> 0.52 ms)."""
    if len(w_shape) != 4 or not nn_rows.rows_fit(w_shape[1], geo):
        return 0
    return band_rows(w_shape[0] // group, math.prod(w_shape[1:]), *out3, group)


def _conv_grouped(x, w, b, out, window: Window, pointwise: bool, residual, clamp, group: int) -> None:
    """Several groups of more than one channel, float32: per image, the
    groups' products as one batch on Tessera's GEMM (their weights packed
    once), the bias and the epilogue in the kernels: a 1x1 convolution's
    of the (subsampled) input, another's of its column matrix, a block of
    output rows at a time as :func:`_conv_gemm` takes them (and
    ``nn_conv.lower_conv_gemm`` in a schedule). Each output is then the sum
    the GEMM of a one-group convolution of its group's channels gives
    (where that takes no Winograd tiles), on every host; numpy's OpenBLAS
    chose its kernel per CPU and, for some shapes, by its thread count
    (AlexNet's binary changed with OPENBLAS_NUM_THREADS, calibration reading
    its outputs), and its threads, spinning for milliseconds after each
    call, took a core from the pool's next jobs."""
    batch, out_c = out.shape[:2]
    size = out[0, 0].size
    packed = grouped_weights.get(w, group)
    outs = out.reshape(batch, group, out_c // group, size)
    residuals = None if residual is None else residual.reshape(outs.shape)
    if pointwise:
        product = _pointwise_product(packed, size, b, clamp, residual is not None)
        x = _subsampled(x, window)
        columns = x.reshape(batch, group, x.shape[1] // group, size)
        for n in range(batch):
            product.run(columns[n], outs[n], None if residuals is None else residuals[n])
        return
    x3, geo = lift(x), _geo(window)
    out_d, out_h, out_w = lift(out).shape[2:]
    band = group_bands(w.shape, geo, (out_d, out_h, out_w), group)
    if band:
        conv_by_bands(x3, packed, b, out.reshape(batch, out_c, size), None if residual is None
                      else residual.reshape(batch, out_c, size), clamp, geo, band, out_h, out_w)
        return
    rows = w[0].size * group
    step = out_h if out_d > 1 else row_block(out_h, out_w, rows)
    biases = None if b is None else b.reshape(group, -1)
    for n in range(batch):
        for col, part in column_blocks(x3[n], rows, geo, (out_d, out_h, out_w), step, x.dtype):
            gemm.sgemm_batched(None, col.reshape(group, rows // group, -1), outs[n][:, :, part], packed_a=packed,
                               bias=biases, residual=None if residuals is None else residuals[n][:, :, part],
                               clamp=clamp)
