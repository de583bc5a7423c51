"""The Numba interpreter: executes decoded instructions in a precomputed
order (rows of one matrix, possibly from several streams of one card), with
no Python between instructions. It stops at CONVs marked ``large`` (handed
to the thread pool by the caller) and at a bad PARAM value. CONVs off the
planned GEMM, POOL, ELTWISE, LUT, MATMUL and SOFTMAX go through entry points compiled only
for programs that have them (runtime/sim/handlers.py). A program with a
``REDIRECT`` column (runtime/sim/forward.py) has CONVs that read their
weights from DRAM and LOADs it does not copy."""
from __future__ import annotations

import numpy as np

from runtime.isa import COL_OPCODE, N_COLUMNS, Op, column
from runtime.jit import jit
from runtime.sim import conv_gemm
from runtime.sim.dma import dma_load, dma_store
from runtime.sim.epilogue import C_MODE, C_OUT, C_OUT_BITS, C_OUT_C, out_size
from runtime.sim.handlers import CONV, ELTWISE, LUT, MATMUL, SOFTMAX, call_handler, pool_entry
from runtime.sim.vector import (
    E_C,
    E_H,
    E_OUT,
    E_OUT_BITS,
    E_W,
    L_COUNT,
    L_OUT,
    L_OUT_BITS,
    M_BATCH,
    M_M,
    M_N,
    M_OUT,
    M_OUT_BITS,
    P_C,
    P_IN_BITS,
    P_IN_H,
    P_IN_W,
    P_KH,
    P_KW,
    P_OUT,
    P_OUT_BITS,
    P_SH,
    P_SW,
    S_COLS,
    S_OUT,
    S_OUT_BITS,
    S_ROWS,
)
from runtime.unlinked import call_unlinked

(D_SPACE, D_ELEM, D_SRAM, D_DRAM, D_Z, D_Y, D_X, D_ZS, D_YS, D_XS, D_PT, D_PB, D_PL, D_PR, D_PV) = (
    column(Op.LOAD, name) for name in (
        "space", "elem_bytes", "sram_addr", "dram_addr", "z_size", "y_size", "x_size", "z_stride", "y_stride",
        "x_stride", "pad_top", "pad_bottom", "pad_left", "pad_right", "pad_value"))
assert all(column(Op.STORE, name) == column(Op.LOAD, name) for name in ("space", "x_stride"))
REDIRECT = N_COLUMNS
FROM_DRAM, UNREAD = 1, 2
"""The column of a redirected program (runtime/sim/forward.py) saying how a
row runs: a CONV reading its weights, PARAM records and table from DRAM at
the offsets its row names; a LOAD not copied (no instruction reads its bytes)."""
OP_LOAD, OP_STORE, OP_CONV, OP_POOL, OP_ELTWISE, OP_LUT, OP_MATMUL, OP_SOFTMAX = (
    int(Op.LOAD), int(Op.STORE), int(Op.CONV), int(Op.POOL), int(Op.ELTWISE), int(Op.LUT), int(Op.MATMUL),
    int(Op.SOFTMAX))
GEMM_KEY = conv_gemm.KEY


@jit(inline="always")
def dram_views(dram):
    """A card's DRAM as int8, int32 and int64 (its whole words): the WGT
    views of a CONV that reads its weights there (``FROM_DRAM``)."""
    size = dram.shape[0]
    return dram.view(np.int8), dram[:size - size % 4].view(np.int32), dram[:size - size % 8].view(np.int64)


@jit
def act_bytes(ins):
    """(first, end) of the ACT bytes an instruction writes, relative to its
    cluster's ACT (end == first when it writes none): a LOAD into ACT its
    padded box, a CONV that finishes (FULL, LAST) its output, POOL,
    ELTWISE, LUT, MATMUL and SOFTMAX theirs."""
    op = ins[COL_OPCODE]
    if op == OP_LOAD and ins[D_SPACE] == 1:
        rows, cols = ins[D_PT] + ins[D_Y] + ins[D_PB], ins[D_PL] + ins[D_X] + ins[D_PR]
        return ins[D_SRAM], ins[D_SRAM] + ins[D_Z] * rows * cols * ins[D_ELEM]
    if op == OP_CONV and ins[C_MODE] & 2 == 0:
        out_h, out_w = out_size(ins)
        return ins[C_OUT], ins[C_OUT] + ins[C_OUT_C] * out_h * out_w * (ins[C_OUT_BITS] >> 3)
    if op == OP_POOL:
        out_h, out_w = (ins[P_IN_H] - ins[P_KH]) // ins[P_SH] + 1, (ins[P_IN_W] - ins[P_KW]) // ins[P_SW] + 1
        return ins[P_OUT], ins[P_OUT] + ins[P_C] * out_h * out_w * (ins[P_OUT_BITS] >> 3)
    if op == OP_ELTWISE:
        return ins[E_OUT], ins[E_OUT] + ins[E_C] * ins[E_H] * ins[E_W] * (ins[E_OUT_BITS] >> 3)
    if op == OP_LUT:
        return ins[L_OUT], ins[L_OUT] + ins[L_COUNT] * (ins[L_OUT_BITS] >> 3)
    if op == OP_MATMUL:
        return ins[M_OUT], ins[M_OUT] + ins[M_BATCH] * ins[M_M] * ins[M_N] * (ins[M_OUT_BITS] >> 3)
    if op == OP_SOFTMAX:
        return ins[S_OUT], ins[S_OUT] + ins[S_ROWS] * ins[S_COLS] * (ins[S_OUT_BITS] >> 3)
    return 0, 0


@jit
def interpret(prog, order, pos, slot, large, dram, w8, w16, w32, w64, wu8, a8, a16, au8, c32, c64, cu8, strides,
              err, pad, gemm_index, gemm_plans, gemm_kernels, gemm_work, handlers):
    """Execute order[pos:] (rows of prog); return len(order) when done, the
    position of a ``large`` CONV to run outside (or of an instruction whose
    entry in ``handlers`` is 0), or -(position + 1) after a bad PARAM value
    (err: kind, index, value, then the row). CONVs with a GEMM plan
    (``gemm_index`` >= 0, runtime/sim/conv_gemm.py) run on it, other CONVs,
    POOL, ELTWISE, LUT, MATMUL and SOFTMAX through ``handlers`` (runtime.sim.handlers.handler_table);
    every write to ACT is reported to the plans' keys of packed patches
    (``conv_gemm.report_written``)."""
    n = order.shape[0]
    redirected = prog.shape[1] > REDIRECT
    d8, d32, d64 = dram_views(dram)
    while pos < n:
        r = order[pos]
        ins = prog[r]
        op = ins[COL_OPCODE]
        s = slot[r]
        wb, ab, cb = s * strides[0], s * strides[1], s * strides[2]
        if redirected and ins[REDIRECT] == UNREAD:
            pass
        elif op == OP_LOAD or op == OP_STORE:
            space = ins[D_SPACE]
            sram = wu8 if space == 0 else au8 if space == 1 else cu8
            base = wb if space == 0 else ab if space == 1 else cb
            if op == OP_LOAD:
                dma_load(dram, sram, base + ins[D_SRAM], ins[D_DRAM], ins[D_ELEM], ins[D_Z], ins[D_Y], ins[D_X],
                         ins[D_ZS], ins[D_YS], ins[D_XS], ins[D_PT], ins[D_PB], ins[D_PL], ins[D_PR], ins[D_PV], pad)
            else:
                dma_store(dram, sram, base + ins[D_SRAM], ins[D_DRAM], ins[D_ELEM], ins[D_Z], ins[D_Y], ins[D_X],
                          ins[D_ZS], ins[D_YS], ins[D_XS])
        elif op == OP_CONV:
            if large[r]:
                return pos
            g = gemm_index[r]
            wgt, wgt8, wgt32, wgt64, wgt_base = wu8, w8, w32, w64, wb
            if redirected and ins[REDIRECT] == FROM_DRAM:  # the DRAM is its WGT, from address 0
                wgt, wgt8, wgt32, wgt64, wgt_base = dram, d8, d32, d64, np.int64(0)
            if g >= 0:
                done = call_unlinked(conv_gemm.conv_serial, (ins, g, gemm_plans[g], gemm_kernels, au8, a8, a16, ab,
                                                             wgt, wgt8, wgt32, wgt64, wgt_base, c32, cb, gemm_work,
                                                             err))
            elif handlers[CONV] == 0:
                return pos
            else:
                done = call_handler(handlers[CONV], ins, wgt, au8, cu8, wgt_base, ab, cb, err) != 0
            if not done:
                err[3] = r
                return -pos - 1
        elif op == OP_POOL:
            entry = handlers[pool_entry(ins[P_IN_BITS], ins[P_OUT_BITS])]
            if entry == 0:
                return pos
            if call_handler(entry, ins, wu8, au8, cu8, wb, ab, cb, err) == 0:
                err[3] = r
                return -pos - 1
        elif op == OP_ELTWISE or op == OP_LUT or op == OP_MATMUL or op == OP_SOFTMAX:
            entry = handlers[ELTWISE] if op == OP_ELTWISE else handlers[LUT] if op == OP_LUT else \
                handlers[MATMUL] if op == OP_MATMUL else handlers[SOFTMAX]
            if entry == 0:
                return pos
            call_handler(entry, ins, wu8, au8, cu8, wb, ab, cb, err)
        first, end = act_bytes(ins)
        if end > first:
            conv_gemm.report_written(gemm_work, ab + first, ab + end)
        pos += 1
    return n
