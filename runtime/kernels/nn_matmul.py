"""float32 MatMul on Tessera's GEMM: the products of two computed operands
(attention's ``Q K^T`` and ``softmax(S) V``, a layer whose weights arrive as
an input), with numpy.matmul's broadcast batch dims; vectors, and products
too small or narrow for the GEMM (:func:`product_fits`), stay numpy's.

Before this they went to numpy's matmul, that is OpenBLAS with threads of
its own: beside the pool's threads, which spin a while after each job,
three threads shared two cores, and OpenBLAS's threads wait on each other
(a 3 x 197 x 64 by 64 x 197 product took 2.8 ms inside a transformer
block, 0.37 ms alone; AMD EPYC Zen 4, 2 threads). Its bits also depended
on the host (OpenBLAS picks its kernel per CPU); Tessera's GEMM sums each
element in one order on every host (runtime.gemm.sgemm), the same as a
schedule's operations compute it.

Integer and float64 products stay on :func:`runtime.kernels.nn.matmul`.
"""
from __future__ import annotations

import math

import numpy as np

from runtime import gemm
from runtime.errors import KernelError
from runtime.gemm.computed import lower_computed_left
from runtime.kernels.weight_cache import WeightCache
from runtime.schedule.records import Operand

_F32 = np.dtype(np.float32)

right_weights = WeightCache(lambda w, transposed: gemm.pack_weights(np.ascontiguousarray(w.T if transposed else w),
                                                                    side="right"))
"""A Gemm's constant float32 B packed as the GEMM's right operand (K, N),
kept while the array lives; keyed by whether the Gemm transposes it."""


MIN_SIDE = 8
"""Fewest rows, columns and depth of a product Tessera's GEMM takes: a
matrix times a vector (4096 x 4096 by 4096 x 1: 3.6 ms in numpy, 18 on
its panels of 48 columns) or a row times a matrix streams rather than
multiplies, and numpy's BLAS does that without threads."""
MIN_ITEM_MACS = 1 << 15
"""Fewest multiply-adds per matrix of a product Tessera's GEMM takes: a
batch of small matrices (1000 of 4 x 4, 12 of 32 x 32) spends its time in
the GEMM's tasks and packing, which numpy's loop does not have (31 against
181 us, 9 against 72)."""


def ours(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether Tessera's GEMM computes ``a @ b`` (:func:`product_fits`):
    float32 operands on a host with its kernels."""
    return a.dtype == _F32 and b.dtype == _F32 and product_fits(a.shape, b.shape) and gemm.available()


def product_fits(a_shape: tuple, b_shape: tuple) -> bool:
    """Whether a product of operands of these shapes is Tessera's GEMM's:
    both of rank 2 or more, no side under :data:`MIN_SIDE`, each matrix
    product :data:`MIN_ITEM_MACS` or more (others are numpy's, per step and
    in a schedule alike, so both compute the same bits)."""
    if len(a_shape) < 2 or len(b_shape) < 2:
        return False
    (m, k), n = a_shape[-2:], b_shape[-1]
    return min(m, n, k) >= MIN_SIDE and m * n * k >= MIN_ITEM_MACS


def product_shapes(a_shape: tuple, b_shape: tuple) -> tuple[tuple, int, int, int, bool]:
    """(batch dims, M, K, N, folded) of ``a @ b`` for operands of rank 2 or
    more (:func:`product_fits`), with numpy's broadcasting; ``folded``
    where B has no batch of its own and A's is the whole batch: A's rows
    are then one product. A KernelError naming both shapes where they do
    not multiply."""
    (m, k), (depth, n) = a_shape[-2:], b_shape[-2:]
    try:
        if k != depth:
            raise ValueError
        batch = tuple(np.broadcast_shapes(a_shape[:-2], b_shape[:-2]))
    except ValueError:
        raise KernelError(f"MatMul: shapes {list(a_shape)} and {list(b_shape)} do not match") from None
    return batch, m, k, n, math.prod(b_shape[:-2]) == 1 and a_shape[:-2] == batch


def matmul_f32(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``numpy.matmul(a, b)`` for float32 operands :func:`ours`, on
    Tessera's GEMM: one product of all of A's rows where B has no batch of
    its own, else a batch of products (an operand broadcast over batch dims
    it lacks is copied)."""
    batch, m, k, n, folded = product_shapes(a.shape, b.shape)
    count = math.prod(batch)
    if folded:
        return gemm.sgemm(a.reshape(count * m, k), b.reshape(k, n)).reshape(batch + (m, n))
    return gemm.sgemm_batched(np.broadcast_to(a, batch + (m, k)).reshape(count, m, k),
                              np.broadcast_to(b, batch + (k, n)).reshape(count, k, n)).reshape(batch + (m, n))


def lower_matmul(ctx, args, attrs) -> bool:
    """A float32 MatMul of two computed operands that Tessera's GEMM
    computes per step (:func:`product_fits`) as schedule operations
    (runtime.gemm.computed): A's rows folded into one product where B has
    no batch of its own, else batch dims that match; as :func:`matmul_f32`
    computes it (other broadcasts stay Python steps)."""
    a, b = args
    if (not isinstance(a, Operand) or not isinstance(b, Operand) or a.dtype != _F32 or b.dtype != _F32
            or not product_fits(a.shape, b.shape) or not gemm.available() or 0 in a.shape or 0 in b.shape):
        return False
    try:
        batch, m, k, n, folded = product_shapes(a.shape, b.shape)
    except KernelError:
        return False
    count = math.prod(batch)
    out = ctx.output(0, batch + (m, n))
    if folded:
        lower_computed_left(ctx, a.reshape((1, count * m, k)), out.reshape((1, count * m, n)), b.reshape((1, k, n)))
    elif a.shape[:-2] == b.shape[:-2] == batch:
        lower_computed_left(ctx, a.reshape((count, m, k)), out.reshape((count, m, n)), b.reshape((count, k, n)))
    else:
        return False
    return True
