"""Instructions the interpreter runs through entry points compiled on first
use: CONVs off the planned GEMM (runtime/sim/conv.py: the 8-bit dot-product,
depthwise and row kernels and the 16-bit loops), POOL (one entry point per
pair of input and output widths), ELTWISE, LUT, MATMUL and SOFTMAX.

Called directly, these would be compiled into the interpreter itself, with
everything they call, whether or not a program has such an instruction, and
Numba would optimise and generate their code again inside it (it links a
callee's code into each caller and optimises the whole). Through a C entry
point whose address the interpreter reads from a table, each compiles once,
on its own, and only when a program has that instruction: ResNet-18's
program has none of them but an 8-bit POOL (every CONV on the planned GEMM,
no ELTWISE, no LUT), so its first run compiles much less (docs/runtime.md,
"Kernel compilation"). The call costs an indirect jump; the arrays go as pointers
and sizes and are rebuilt as the same typed views of the card's memory.

:func:`handler_table` gives a program's table; a zero entry (never built for
an instruction the program has) makes the interpreter hand the instruction
back to Python (:func:`run_here`), so a missing entry is slower, never a
jump to address 0.
"""
from __future__ import annotations

import threading

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, register_jitable

from runtime.isa import COL_OPCODE, Op
from runtime.jit import cfunc, jit
from runtime.sim.conv import conv
from runtime.sim.vector import P_IN_BITS, P_OUT_BITS, eltwise, lut, matmul, pool, pool_widths, softmax

CONV, ELTWISE, LUT, POOL = 0, 1, 2, 3
"""Entries of the table (:func:`handler_table`): POOL is the first of four,
POOL + 2 * (input is 16-bit) + (output is 16-bit)."""
MATMUL, SOFTMAX = POOL + 4, POOL + 5
HANDLERS = POOL + 6
VECTOR_ENTRIES = {Op.ELTWISE: ELTWISE, Op.LUT: LUT, Op.MATMUL: MATMUL, Op.SOFTMAX: SOFTMAX}
"""The table entry of each vector op but POOL (:func:`pool_entry`)."""


@register_jitable
def pool_entry(in_bits, out_bits):
    """The table entry of a POOL of these widths (arrays of them give an
    array of entries): the interpreter's and the PLANES phase's pick too."""
    return POOL + 2 * (in_bits == 16) + (out_bits == 16)


def _conv(ins_p, ncols, wgt, wsize, act, asize, acc, csize, wbase, abase, cbase, err_p, nerr):
    """One CONV off the planned GEMM (runtime.sim.conv.conv): 1, or 0 with
    ``err`` filled on a bad PARAM record."""
    ins, err = numba.carray(ins_p, ncols), numba.carray(err_p, nerr)
    a8, a16 = numba.carray(act, asize, np.int8), numba.carray(act, asize >> 1, np.int16)
    w8, w16 = numba.carray(wgt, wsize, np.int8), numba.carray(wgt, wsize >> 1, np.int16)
    w32, w64 = numba.carray(wgt, wsize >> 2, np.int32), numba.carray(wgt, wsize >> 3, np.int64)
    c32, c64 = numba.carray(acc, csize >> 2, np.int32), numba.carray(acc, csize >> 3, np.int64)
    return np.int64(1) if conv(ins, a8, a16, abase, w8, w16, w32, w64, wbase, c32, c64, cbase, err) else np.int64(0)


def _eltwise(ins_p, ncols, wgt, wsize, act, asize, acc, csize, wbase, abase, cbase, err_p, nerr):
    """One ELTWISE (runtime.sim.vector.eltwise): 1."""
    a8, a16 = numba.carray(act, asize, np.int8), numba.carray(act, asize >> 1, np.int16)
    eltwise(numba.carray(ins_p, ncols), a8, a16, abase)
    return np.int64(1)


def _lut(ins_p, ncols, wgt, wsize, act, asize, acc, csize, wbase, abase, cbase, err_p, nerr):
    """One LUT (runtime.sim.vector.lut): 1."""
    a8, a16 = numba.carray(act, asize, np.int8), numba.carray(act, asize >> 1, np.int16)
    w8, w16 = numba.carray(wgt, wsize, np.int8), numba.carray(wgt, wsize >> 1, np.int16)
    lut(numba.carray(ins_p, ncols), a8, a16, abase, w8, w16, wbase)
    return np.int64(1)


def _matmul(ins_p, ncols, wgt, wsize, act, asize, acc, csize, wbase, abase, cbase, err_p, nerr):
    """One MATMUL (runtime.sim.vector.matmul): 1."""
    a8, a16 = numba.carray(act, asize, np.int8), numba.carray(act, asize >> 1, np.int16)
    matmul(numba.carray(ins_p, ncols), a8, a16, abase)
    return np.int64(1)


def _softmax(ins_p, ncols, wgt, wsize, act, asize, acc, csize, wbase, abase, cbase, err_p, nerr):
    """One SOFTMAX (runtime.sim.vector.softmax): 1."""
    a8, a16 = numba.carray(act, asize, np.int8), numba.carray(act, asize >> 1, np.int16)
    softmax(numba.carray(ins_p, ncols), a8, a16, abase, numba.carray(wgt, wsize >> 2, np.int32), wbase)
    return np.int64(1)


@jit(inline="always")
def _pool(ins_p, ncols, x_act, y_act, wgt, wsize, wbase, abase, err_p, nerr):
    """One POOL from the ACT view ``x_act`` into ``y_act`` (int8 or int16):
    1, or 0 with ``err`` filled on a bad average-pool multiplier."""
    ok = pool_widths(numba.carray(ins_p, ncols), x_act, y_act, abase, numba.carray(wgt, wsize >> 2, np.int32), wbase,
                     numba.carray(err_p, nerr))
    return np.int64(1) if ok else np.int64(0)


def _pool_8_8(ins_p, ncols, wgt, wsize, act, asize, acc, csize, wbase, abase, cbase, err_p, nerr):
    a8 = numba.carray(act, asize, np.int8)
    return _pool(ins_p, ncols, a8, a8, wgt, wsize, wbase, abase, err_p, nerr)


def _pool_8_16(ins_p, ncols, wgt, wsize, act, asize, acc, csize, wbase, abase, cbase, err_p, nerr):
    a8, a16 = numba.carray(act, asize, np.int8), numba.carray(act, asize >> 1, np.int16)
    return _pool(ins_p, ncols, a8, a16, wgt, wsize, wbase, abase, err_p, nerr)


def _pool_16_8(ins_p, ncols, wgt, wsize, act, asize, acc, csize, wbase, abase, cbase, err_p, nerr):
    a8, a16 = numba.carray(act, asize, np.int8), numba.carray(act, asize >> 1, np.int16)
    return _pool(ins_p, ncols, a16, a8, wgt, wsize, wbase, abase, err_p, nerr)


def _pool_16_16(ins_p, ncols, wgt, wsize, act, asize, acc, csize, wbase, abase, cbase, err_p, nerr):
    a16 = numba.carray(act, asize >> 1, np.int16)
    return _pool(ins_p, ncols, a16, a16, wgt, wsize, wbase, abase, err_p, nerr)


_ADAPTERS = {CONV: _conv, ELTWISE: _eltwise, LUT: _lut, POOL: _pool_8_8, POOL + 1: _pool_8_16, POOL + 2: _pool_16_8,
             POOL + 3: _pool_16_16, MATMUL: _matmul, SOFTMAX: _softmax}
_SIGNATURE = types.int64(types.CPointer(types.int64), types.int64, types.voidptr, types.int64, types.voidptr,
                         types.int64, types.voidptr, types.int64, types.int64, types.int64, types.int64,
                         types.CPointer(types.int64), types.int64)
_compiled: dict[int, object] = {}
_lock = threading.Lock()


def handler_address(kind: int) -> int:
    """The entry point of ``kind`` (an entry of the table), compiled (or loaded
    from the kernel cache) the first time a program needs it."""
    with _lock:
        entry = _compiled.get(kind)
        if entry is None:
            entry = _compiled[kind] = cfunc(_SIGNATURE, _ADAPTERS[kind])
        return entry.address


def handler_table(prog: np.ndarray, large: np.ndarray, gemm_index: np.ndarray) -> np.ndarray:
    """The interpreter's table for the rows ``prog``: the entry point of each
    kind of instruction it runs there (CONVs that are neither ``large`` nor
    planned on the GEMM, each pair of POOL widths, ELTWISE, LUT, MATMUL, SOFTMAX), 0 for
    kinds it does not have."""
    ops = prog[:, COL_OPCODE]
    table = np.zeros(HANDLERS, np.int64)
    if np.any((ops == Op.CONV) & (large == 0) & (gemm_index < 0)):
        table[CONV] = handler_address(CONV)
    if np.any(ops == Op.ELTWISE):
        table[ELTWISE] = handler_address(ELTWISE)
    for op, kind in VECTOR_ENTRIES.items():
        if np.any(ops == op):
            table[kind] = handler_address(kind)
    pools = prog[ops == Op.POOL]
    for kind in np.unique(pool_entry(pools[:, P_IN_BITS], pools[:, P_OUT_BITS])):
        table[kind] = handler_address(int(kind))
    return table


@intrinsic
def call_handler(typingctx, address, ins, wu8, au8, cu8, wbase, abase, cbase, err):
    """Call the entry point at ``address`` on instruction ``ins`` with the
    card's memory (the uint8 arrays of WGT, ACT and ACC), the cluster's
    bases and ``err``; its int64 result."""
    sig = types.int64(types.int64, ins, wu8, au8, cu8, types.int64, types.int64, types.int64, err)

    def codegen(context, builder, signature, args):
        i64, i8p = ir.IntType(64), ir.IntType(8).as_pointer()
        arrays = [context.make_array(signature.args[k])(context, builder, args[k]) for k in (1, 2, 3, 4, 8)]
        ins_a, w_a, a_a, c_a, err_a = arrays
        fnty = ir.FunctionType(i64, [i64.as_pointer(), i64, i8p, i64, i8p, i64, i8p, i64, i64, i64, i64,
                                     i64.as_pointer(), i64])
        target = builder.inttoptr(args[0], fnty.as_pointer())
        return builder.call(target, [
            builder.bitcast(ins_a.data, i64.as_pointer()), ins_a.nitems,
            builder.bitcast(w_a.data, i8p), w_a.nitems, builder.bitcast(a_a.data, i8p), a_a.nitems,
            builder.bitcast(c_a.data, i8p), c_a.nitems, args[5], args[6], args[7],
            builder.bitcast(err_a.data, i64.as_pointer()), err_a.nitems])

    return sig, codegen


def run_here(ins: np.ndarray, mem, slot: int, err: np.ndarray) -> bool:
    """Run a POOL, ELTWISE, LUT, MATMUL or SOFTMAX the interpreter handed back (its table had
    no entry) from Python, by the same kernels; False (err filled) on a bad
    average-pool multiplier."""
    wbase, abase = mem.wgt.stride * slot, mem.act.stride * slot
    op = int(ins[COL_OPCODE])
    if op == Op.POOL:
        return bool(pool(ins, mem.act.i8, mem.act.i16, abase, mem.wgt.i32, wbase, err))
    if op == Op.ELTWISE:
        eltwise(ins, mem.act.i8, mem.act.i16, abase)
    elif op == Op.MATMUL:
        matmul(ins, mem.act.i8, mem.act.i16, abase)
    elif op == Op.SOFTMAX:
        softmax(ins, mem.act.i8, mem.act.i16, abase, mem.wgt.i32, wbase)
    else:
        lut(ins, mem.act.i8, mem.act.i16, abase, mem.wgt.i8, mem.wgt.i16, wbase)
    return True
