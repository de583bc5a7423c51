"""Operands of the schedule's operations as arrays (runtime.schedule.ops):
an operand is a pair (base, offset) of fields of an operation's record,
``bases[base] + offset`` its address; these turn it into a pointer or an
array view inside an adapter's compiled code (nothing is checked again:
the builder checked every size and address)."""
from __future__ import annotations

import numba
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from runtime.jit import jit


def pointer_to(kind):
    """An intrinsic taking an address (int64) to a pointer to ``kind``
    (its storage type: a byte for a bool)."""
    @intrinsic
    def cast(typingctx, address):
        sig = types.CPointer(kind)(types.int64)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], ir.PointerType(context.get_data_type(kind)))

        return sig, codegen

    return cast


f32_ptr, f64_ptr, i64_ptr, bool_ptr, u8_ptr, u16_ptr, u32_ptr = (
    pointer_to(kind) for kind in (types.float32, types.float64, types.int64, types.boolean, types.uint8, types.uint16,
                                  types.uint32))


@jit(inline="always")
def address(rec, k, bases):
    """The address of the operand at fields ``k, k + 1`` of ``rec``."""
    return bases[rec[k]] + rec[k + 1]


@jit(inline="always")
def f32(rec, k, bases, count):
    """``count`` float32 (or an array of that shape: no reshape, whose
    helper took ~25 ns a call) at the operand of fields ``k, k + 1``."""
    return numba.carray(f32_ptr(address(rec, k, bases)), count)


@jit(inline="always")
def i64(rec, k, bases, count):
    """``count`` int64 at the operand of fields ``k, k + 1``."""
    return numba.carray(i64_ptr(address(rec, k, bases)), count)


@jit(inline="always")
def records(rec, nrec, bases, nbases):
    """The record and the bases an adapter is called with, as arrays."""
    return numba.carray(rec, nrec), numba.carray(bases, nbases)
