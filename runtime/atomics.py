"""Atomic operations and the spin-wait hint for Numba code: what the thread
pool's claim counters and barriers (:mod:`runtime.parallel`) are built of."""
from __future__ import annotations

import platform

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


@intrinsic
def fetch_add(typingctx, array, index, value):
    """``array[index] += value`` as one sequentially consistent atomic
    operation on an int64 array; returns the old value. ``value`` 0 is an
    atomic load (one a spinning loop cannot hoist)."""
    if not (isinstance(array, types.Array) and array.dtype == types.int64
            and isinstance(index, types.Integer) and isinstance(value, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        array_type, index_type, value_type = signature.args
        ary = context.make_array(array_type)(context, builder, args[0])
        at = context.cast(builder, args[1], index_type, types.intp)
        ptr = cgutils.get_item_pointer(context, builder, array_type, ary, [at])
        amount = context.cast(builder, args[2], value_type, types.int64)
        return builder.atomic_rmw("add", ptr, amount, "seq_cst")

    return types.int64(array, index, value), codegen


@intrinsic
def load_acquire(typingctx, array, index):
    """``array[index]`` of an int64 array as an atomic load with acquire
    ordering: a plain ``mov`` on x86 (a spinning loop cannot hoist it), where
    ``fetch_add(array, index, 0)`` is a locked read-modify-write that takes
    the cache line exclusive on every round."""
    if not (isinstance(array, types.Array) and array.dtype == types.int64 and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        array_type, index_type = signature.args
        ary = context.make_array(array_type)(context, builder, args[0])
        at = context.cast(builder, args[1], index_type, types.intp)
        ptr = cgutils.get_item_pointer(context, builder, array_type, ary, [at])
        return builder.load_atomic(ptr, "acquire", 8)

    return types.int64(array, index), codegen


@intrinsic
def cpu_relax(typingctx):
    """The spin-wait hint (x86 ``pause``): the waiting core yields its
    pipeline to a hyperthread sibling and leaves the loop without a memory
    order mis-speculation; nothing elsewhere."""
    def codegen(context, builder, signature, args):
        if _X86:
            pause = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), ()),
                                                   "llvm.x86.sse2.pause")
            builder.call(pause, ())
        return context.get_dummy_value()

    return types.none(), codegen
