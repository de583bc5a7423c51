"""What the convolution kernels share: a window's loop parameters, the
planned products of packed weights (a 1x1 convolution's, a grouped one's,
a ConvTranspose's), the subsampled input of a strided 1x1 convolution, an
image's column matrix a block of output rows at a time, and the im2col of
one image as a schedule operation."""
from __future__ import annotations

import functools

import numpy as np

from runtime import gemm
from runtime.kernels.nn_im2col import im2col_record, im2col_rows
from runtime.kernels.nn_window import Window, grain
from runtime.kernels.nn_winograd import scratch
from runtime.parallel import parallel_for
from runtime.schedule.records import IM2COL

_geo = functools.lru_cache(maxsize=1024)(Window.loop_params)
"""A window's ``loop_params()``, built once per window."""


def column_blocks(image, rows: int, geo: tuple, out3: tuple, step: int, dtype):
    """The column matrix of ``image`` (C, D, H, W) for each block of ``step``
    output rows of ``out3`` = (OD, OH, OW), built over the pool into a
    scratch buffer (the next block reuses it), with the columns of the
    flattened output it covers."""
    out_d, out_h, out_w = out3
    for top in range(0, out_h, step):
        height = min(step, out_h - top)
        col = scratch("column matrix", (rows, out_d, height, out_w), dtype)
        shifted = geo[:7] + (geo[7] - top * geo[4],) + geo[8:]  # rows from ``top``: the top pad moves up
        parallel_for(im2col_rows, rows, image, col, shifted, grain=grain(col[0].size))
        yield col, slice(top * out_w, (top + height) * out_w) if height < out_h else slice(None)


def _lower_im2col(ctx, x, n: int, col, geo: tuple) -> None:
    """:func:`im2col_rows` of image ``n`` of the (N, C, H, W) operand ``x``
    into the (rows, 1, OH, OW) operand ``col``, as a schedule operation."""
    rows, _, out_h, out_w = col.shape
    ctx.emit(IM2COL, im2col_record(x, n, col, geo), rows, grain(out_h * out_w))


_products: dict[tuple, "gemm.PackedProduct"] = {}
_MAX_PRODUCTS = 1024


def _pointwise_product(packed, size: int, b, clamp, residual: bool) -> "gemm.PackedProduct":
    """The planned product of a 1x1 convolution's packed weights by a
    (C, ``size``) input (of G groups' weights, packed as a batch, by a (G,
    C/G, ``size``) one, the bias (K,) read as (G, K/G)), kept by the
    weights' and bias' identities (the product holds both, so neither
    identity can be reused meanwhile)."""
    clamp = None if clamp is None else tuple(float(v) for v in clamp)
    key = (id(packed), id(b), size, clamp, residual)
    product = _products.get(key)
    if product is None:
        if len(_products) >= _MAX_PRODUCTS:
            _products.clear()
        bias = b if b is None or packed.batch == 1 else b.reshape(packed.batch, -1)
        product = _products[key] = gemm.PackedProduct(packed, size, bias, clamp, residual)
    return product


def _subsampled(x, window: Window):
    """The input a strided 1x1 convolution reads (a copy), or ``x``."""
    if all(s == 1 for s in window.strides):
        return x
    return np.ascontiguousarray(x[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in window.strides)])
