"""Products whose left operand is computed, as schedule operations: a
transformer's linear layers (a Gemm's A: the tokens, B its constant
weights) and attention's products (a MatMul of two computed operands).

Tessera's GEMM reads A packed in row panels (runtime.gemm.pack). A
convolution's A is its weights, packed once; here A changes every run, so a
PACK_LEFT operation packs it into scratch memory first (the per-step path's
:func:`~runtime.gemm.pack.pack_left`: the same panels, by the same
function), then the GEMM operation reads it there. B is a constant packed
once as the right operand (the per-step path reads the same packing), or a
computed operand read as it is. The plan is the one the per-step product
runs (:func:`~runtime.gemm.sgemm.planned`), so the bits are the same: each
element's sum depends on the depth alone (runtime.gemm.sgemm).

A Gemm's C, a row added to every output row, is the GEMM's residual with
row stride 0: added to each tile in registers after its sum, as ``y += C``
adds it, and with the same bits.
"""
from __future__ import annotations

import numpy as np

from runtime.gemm.family import UNIT, host_isa
from runtime.gemm.microkernel import kernel_addresses
from runtime.gemm.pack import PackedMatrix, block_depth, roundup
from runtime.gemm.sgemm import SERIAL_MACS, b_reading, emit_gemm, gemm_record, planned, work
from runtime.gemm.tasks import PREPACKED, TASKS
from runtime.kernels.nn_window import grain
from runtime.schedule.records import PACK_LEFT, Operand


def lower_computed_left(ctx, a: Operand, out: Operand, b: Operand | None = None, packed_b: PackedMatrix | None = None,
                        columns: np.ndarray | None = None) -> None:
    """``out`` (G, M, N) = ``a`` (G, M, K) @ B, plus ``columns`` (a float32
    (N,) row) on every row: B is ``b`` (G, K, N), or ``packed_b`` (K, N,
    packed as the right operand on this host) for G = 1. Operands
    C-contiguous, float32, none empty; ``out`` apart from the others."""
    batch, m, depth = a.shape
    isa = host_isa()
    kc = block_depth(depth)
    panels = -(-m // isa.mr)
    packed = ctx.scratch((batch * depth * panels * isa.mr,), np.float32)
    if packed_b is None:
        n = b.shape[2]
        source, b_ref, b_size = (b_reading(m, kc, 1, isa), None, depth * n, n, 1), b.ref(), batch * depth * n
    else:
        n = packed_b.matrix[1]
        source = (PREPACKED, None, depth * roundup(n, UNIT), 0, 0)
        b_ref, b_size = ctx.pin(packed_b.data), packed_b.data.size
    template = planned("f32", isa, (batch, m, n, depth, kc), source, (m * n * 4, n * 4, 4), None,
                       None if columns is None else (0, 0), False)
    tasks = int(template[TASKS])
    serial = tasks == 1 or batch * work(m, n, depth) <= SERIAL_MACS
    count = batch * panels
    ctx.emit(PACK_LEFT, [*a.ref(), batch * m * depth, depth, 1, m * depth, m, depth, kc, isa.mr, *packed.ref(),
                         packed.shape[0]], count, grain(isa.mr * depth), spans=[(0, count)] if serial else None)
    record = gemm_record(ctx, template, kernel_addresses(isa, "f32"), packed.ref(), b_ref, b_size, out.ref(), None,
                         None if columns is None else ctx.pin(columns), None)
    emit_gemm(ctx, record, tasks, serial, b_ref[0])
