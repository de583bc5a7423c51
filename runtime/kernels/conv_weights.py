"""A float32 convolution's weights packed for Tessera's GEMM, and how many
columns the products that read them have.

The weights (K, C, *kernel) are the GEMM's left operand (K, C x taps),
packed once and kept while the array lives (runtime.kernels.weight_cache):
as every product reads them (:data:`packed_weights`), or, for products of
a few columns (a 3 x 3, 2 x 2 or 1 x 1 output plane: the counts
runtime.gemm.family.narrow_columns gives this CPU), for the host's narrow kernel family (:data:`narrow_weights`,
runtime.gemm.family.narrow_isa), with the same results. A 2-D convolution's
column matrix is built a block of output rows at a time
(:func:`row_block`), which sets its products' columns
(:func:`product_columns`) and so the packing they take (:func:`packed_for`).
"""
from __future__ import annotations

import math

import numpy as np

from runtime import gemm
from runtime.gemm.family import host_isa, narrow_columns
from runtime.kernels.weight_cache import WeightCache

COLUMN_BLOCK = 1 << 19
"""Most elements of column matrix built at once (2 MiB): a larger one (the
stem of ResNet-50 needs 7 MiB) falls out of cache before its GEMM reads it,
so 2-D convolutions go a block of output rows at a time."""


packed_weights = WeightCache(lambda w, _: gemm.pack_weights(w.reshape(w.shape[0], -1)))
"""A float32 weight array (K, C, *kernel) packed as the GEMM's left operand
(K, C * taps), kept while the array lives."""
narrow_weights = WeightCache(lambda w, _: gemm.pack_weights(w.reshape(w.shape[0], -1), narrow=True))
"""The same, packed for products of a few columns (runtime.gemm.family.narrow_isa
and narrow_columns; the host's packing where it has none)."""


grouped_weights = WeightCache(lambda w, group: gemm.pack_weights(w.reshape(group, w.shape[0] // group, -1)))
"""A float32 weight array (K, C/G, *kernel) of a convolution of G groups
packed as G left operands (K/G, C/G * taps), keyed by G."""


transposed_weights = WeightCache(
    lambda w, narrow: gemm.pack_weights(np.ascontiguousarray(w.reshape(w.shape[0], -1).T), narrow=narrow))
"""A ConvTranspose's float32 weights (C, K, *kernel), one group, packed as
the left operand of its product (K x taps, C) (runtime.kernels.nn_transposed);
keyed by whether narrow."""


transposed_groups = WeightCache(lambda w, group: gemm.pack_weights(
    np.ascontiguousarray(w.reshape(group, w.shape[0] // group, -1).transpose(0, 2, 1))))
"""A ConvTranspose's float32 weights (C, K/G, *kernel) of G groups packed as
G left operands (K/G x taps, C/G), keyed by G."""


def transposed_for(w: np.ndarray, columns: int, group: int = 1):
    """A ConvTranspose's ``w`` of ``group`` groups packed for products of
    ``columns`` columns (one group: narrow for a few, as :func:`packed_for`)."""
    return transposed_weights.get(w, is_narrow(columns)) if group == 1 else transposed_groups.get(w, group)


def row_block(out_h: int, out_w: int, rows: int) -> int:
    """Output rows of a 2-D convolution's column matrix per product: as
    many as keep it under ``COLUMN_BLOCK`` elements (``rows`` = C x taps)."""
    return max(1, min(out_h, COLUMN_BLOCK // (rows * out_w)))


def product_columns(out_shape: tuple, rows: int, pointwise: bool) -> int:
    """Columns of each product of a convolution on its column matrix, as
    :func:`_conv_gemm` and :func:`lower_conv_gemm` cut it: per image, or
    per :func:`row_block` of output rows of a 2-D one."""
    if pointwise or len(out_shape) != 4:
        return math.prod(out_shape[2:])
    return row_block(*out_shape[2:], rows) * out_shape[3]


def is_narrow(columns: int | None) -> bool:
    """Whether products of ``columns`` columns take the narrow packing
    (runtime.gemm.family.narrow_columns: this CPU's family decides)."""
    return columns is not None and gemm.available() and columns in narrow_columns(host_isa())


def packed_for(w: np.ndarray, columns: int | None):
    """``w`` packed for the products of a convolution whose column matrix
    (per image or block of rows) has ``columns`` columns: narrow for a few
    (a 3 x 3, 2 x 2 or 1 x 1 output plane), else (or None) as every other
    product reads it. Only the products through ``sgemm`` and
    ``PackedProduct`` may take a narrow packing (not the banded or fused
    kernels, which call the host's kernels directly)."""
    return (narrow_weights if is_narrow(columns) else packed_weights).get(w)
