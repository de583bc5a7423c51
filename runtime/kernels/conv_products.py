"""What the convolution kernels share: a window's loop parameters, the
planned products of packed weights (a 1x1 convolution's, a grouped one's,
a ConvTranspose's), the subsampled input of a strided 1x1 convolution and
the im2col of one image as a schedule operation."""
from __future__ import annotations

import functools

import numpy as np

from runtime import gemm
from runtime.kernels.nn_im2col import im2col_record
from runtime.kernels.nn_window import Window, grain
from runtime.schedule.records import IM2COL

_geo = functools.lru_cache(maxsize=1024)(Window.loop_params)
"""A window's ``loop_params()``, built once per window."""


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
