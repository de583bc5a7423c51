"""Exact int8 GEMM: ``int32 = int8 @ int8`` (or ``int8 @ uint8``).

The same blocked driver as :mod:`runtime.gemm.sgemm`, with ``u8s8``
microkernels (``vpdpbusd`` on AVX512-VNNI): each lane multiplies four
unsigned bytes of ``B`` by four signed bytes of ``A`` and adds the four
products to an int32 accumulator. An int8 ``B`` is packed as ``b + 128``
(unsigned), and ``128 * rowsum(A)`` is taken back out of each row through
the kernels' per-row bias, which also carries the caller's bias. Integer
sums are exact; with depth at most ``MAX_INT8_DEPTH`` every product sum fits
in int32, and the bias is added modulo 2^32 as int32 arithmetic does.
"""
from __future__ import annotations

import numpy as np

from runtime.gemm.family import UNIT, host_isa
from runtime.gemm.operands import Target, plan_product
from runtime.gemm.pack import (
    MAX_INT8_DEPTH,
    block_depth,
    flat_view,
    pack_left_int8,
    pack_right_int8,
    reduction_steps,
    roundup,
)
from runtime.gemm.sgemm import launch
from runtime.gemm.tasks import PREPACKED

__all__ = ["igemm", "igemm_batched", "MAX_INT8_DEPTH"]

_INT8 = (np.dtype(np.int8),)
_B_TYPES = (np.dtype(np.int8), np.dtype(np.uint8))


def igemm(a, b, out=None, *, packed_a=None, bias=None, accumulate=False) -> np.ndarray:
    """Exact ``a @ b`` in int32 for int8 ``a`` (M, K) and int8 or uint8
    ``b`` (K, N) of any strides, plus ``bias`` (M,) int32 per row if given;
    into ``out`` (M, N) int32 when given, added to it with ``accumulate``.
    ``packed_a`` (:func:`~runtime.gemm.pack.pack_weights` of an int8 array)
    replaces ``a``. K is at most ``MAX_INT8_DEPTH``."""
    return _int_product(a, b, out, packed_a, bias, accumulate, batched=False)


def igemm_batched(a, b, out=None, *, packed_a=None, bias=None, accumulate=False) -> np.ndarray:
    """``out[g] = a[g] @ b[g] (+ bias[g][:, None])`` exactly in int32 for
    ``a`` (G, M, K) int8 and ``b`` (G, K, N) int8 or uint8."""
    return _int_product(a, b, out, packed_a, bias, accumulate, batched=True)


def _int_product(a, b, out, packed_a, bias, accumulate: bool, batched: bool) -> np.ndarray:
    """Validate, pack, fold the offsets into the bias, run."""
    op = "igemm_batched" if batched else "igemm"
    (batch, m, n, depth), out, biases, done = plan_product(op, (a, packed_a, _INT8), (b, None, _B_TYPES), out, bias,
                                                          accumulate, batched, np.int32, MAX_INT8_DEPTH)
    if done:
        return out
    isa = host_isa()
    steps = reduction_steps(depth, np.dtype(np.int8))
    kc = block_depth(steps)
    if packed_a is None:
        flat, strides = flat_view(a if batched else a[None])
        a_data, sums = pack_left_int8(flat, strides, batch, m, depth, kc, isa)
    else:
        a_data, sums = packed_a.data, packed_a.row_sums
    b_lanes = pack_right_int8(b, kc, isa)
    offsets = _row_offsets(sums, biases, 128 if b.dtype == np.int8 else 0, m)
    with Target(out, (a, b, bias)) as target:
        launch(target, "u8s8", isa, (batch, m, n, steps, kc), a_data,
               (PREPACKED, b_lanes, steps * roundup(n, UNIT), 0, 0), offsets, accumulate)
    return out


def _row_offsets(sums: np.ndarray, biases: np.ndarray | None, shift: int, rows: int) -> np.ndarray | None:
    """What each row gets added (int32, wrapping): its bias minus ``shift``
    times its sum, which takes the packed B's offset back out."""
    if biases is None and shift == 0:
        return None
    offsets = -shift * sums
    if biases is not None:
        offsets[:, :rows] += biases
    return np.ascontiguousarray(offsets.astype(np.int32))
