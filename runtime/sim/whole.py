"""The interpreter's call from Python on a table of addresses: a small
model's whole run in one call whose arguments cost nothing to pass.

A small model's device run is one call of the interpreter on the card's
buffers (runtime/sim/simulator.py, ``_whole_run``): 38 arrays (25 arguments,
the GEMM's working buffers a tuple of 15). Numba's entry point unboxes each
array on every call and wraps each in a reference-counted MemInfo, freed
when the call returns: 1.95 us of a call whose instructions took 0.37 (the
identity model: LOAD, LUT, STORE; AMD EPYC Zen 4), a fifth of a whole
Run_sw. The buffers never move after Init, so :func:`argument_table` writes
their addresses and shapes once into one int64 array, and
:func:`interpret_table` (three arguments: the position, the table, what to
clear first) makes the arrays from it with
``numba.carray``, which takes no reference, and calls the interpreter
through its address (runtime.unlinked), the same compiled code as every
other call of it. The caller keeps the arrays alive as long as it uses the
table. The same call first zeroes the SRAM and the packed patches' keys, as
every run starts (:func:`clear_table`: 0.37 us from Python).

Every array is C-contiguous and of the dtype and rank :data:`LAYOUT` lists,
in the interpreter's order (checked when the table is made: a change to
the interpreter's arguments that is not made here too is an error, not a
wrong address).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from runtime.jit import jit
from runtime.sim.errors import SimulatorError
from runtime.sim.interpreter import interpret
from runtime.unlinked import call_unlinked

_I8, _U8, _I16, _I32, _U32, _I64, _F32 = (np.dtype(t) for t in (np.int8, np.uint8, np.int16, np.int32, np.uint32,
                                                                np.int64, np.float32))
LAYOUT = ((_I64, 2), (_I64, 1), (_I64, 1), (_U8, 1), (_U8, 1),  # prog, order, slot, large, dram
          (_I8, 1), (_I16, 1), (_I32, 1), (_I64, 1), (_U8, 1),  # WGT as int8, int16, int32, int64, bytes
          (_I8, 1), (_I16, 1), (_U8, 1), (_I32, 1), (_I64, 1), (_U8, 1),  # ACT, ACC
          (_I64, 1), (_I64, 1), (_U8, 1), (_I64, 1), (_I64, 2), (_I64, 1),  # strides, err, pad, the GEMM's plans
          (_F32, 1), (_I32, 1), (_F32, 1), (_I32, 1), (_I64, 1), (_I64, 1), (_I64, 1), (_U32, 1), (_I64, 1),
          (_I64, 2), (_U8, 1), (_U32, 1), (_U8, 1), (_I64, 1), (_I64, 1),  # its working buffers
          (_I64, 1))  # the handlers' entry points
"""Dtype and rank of each array of the interpreter's arguments, in order
(the position, an integer, left out; the working buffers' tuple flat)."""
SIGNATURE = (types.int64, types.Array(types.int64, 1, "C"), types.Array(types.int64, 1, "C"))
"""The one signature :func:`interpret_table` is compiled for (the position,
the table, the clear table): what compiler/warmup.py ships."""
FIELDS = 3
"""Slots of the table per array: its address and its first two dimensions."""
WORK = 22
"""Where the working buffers' tuple starts in :data:`LAYOUT`."""


def argument_table(args: tuple) -> np.ndarray:
    """The table of ``args`` (the interpreter's arguments, as
    runtime.sim.interpreter.interpret takes them)."""
    arrays = [a for a in args[:2]] + [a for a in args[3:] if not isinstance(a, tuple)]
    work = next(a for a in args if isinstance(a, tuple))
    arrays = arrays[:WORK] + list(work) + arrays[WORK:]
    if len(arrays) != len(LAYOUT):
        raise SimulatorError(f"internal error: the interpreter takes {len(arrays)} arrays, the table {len(LAYOUT)}")
    table = np.zeros(FIELDS * len(arrays), np.int64)
    for i, (array, (dtype, ndim)) in enumerate(zip(arrays, LAYOUT)):
        if not (isinstance(array, np.ndarray) and array.dtype == dtype and array.ndim == ndim
                and array.flags.c_contiguous and array.flags.writeable):
            raise SimulatorError(f"internal error: the interpreter's array {i} is {getattr(array, 'dtype', array)!r}"
                                 f", {getattr(array, 'ndim', '?')}-D; the table holds a writable C-contiguous "
                                 f"{dtype}, {ndim}-D")
        table[FIELDS * i] = array.ctypes.data
        table[FIELDS * i + 1:FIELDS * i + 1 + ndim] = array.shape
    return table


def clear_table(views, keys) -> np.ndarray:
    """What a run clears before its first instruction, as
    :func:`interpret_table` takes it: the count of ``views`` (byte arrays:
    the SRAM a run zeroes), the address and size of each, the count of
    ``keys`` (int64 arrays whose first element is set to 0: the packed
    patches' keys), the address of each."""
    table = [len(views)]
    for view in views:
        if not (view.dtype == _U8 and view.ndim == 1 and view.flags.c_contiguous and view.flags.writeable):
            raise SimulatorError(f"internal error: SRAM to clear must be writable contiguous bytes, got {view.dtype}")
        table += [view.ctypes.data, view.size]
    table.append(len(keys))
    for key in keys:
        if not (key.dtype == _I64 and key.size and key.flags.writeable):
            raise SimulatorError(f"internal error: a patch key must be a writable int64 array, got {key.dtype}")
        table.append(key.ctypes.data)
    return np.array(table, np.int64)


NOTHING = np.zeros(2, np.int64)
"""A :func:`clear_table` of nothing."""


@intrinsic
def _pointer(typingctx, address):
    """``address`` (int64) as a void pointer, for ``numba.carray``."""
    sig = types.voidptr(types.int64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return sig, codegen


@jit(inline="always")
def _flat(t, i, dtype):
    return numba.carray(_pointer(t[FIELDS * i]), t[FIELDS * i + 1], dtype)


@jit(inline="always")
def _rows(t, i, dtype):
    return numba.carray(_pointer(t[FIELDS * i]), (t[FIELDS * i + 1], t[FIELDS * i + 2]), dtype)


@jit
def interpret_table(pos, t, clear):
    """``interpret(*args)`` with ``pos`` for the position, the other
    arguments the arrays of the table ``t`` (:func:`argument_table`), after
    clearing what ``clear`` names (:func:`clear_table`)."""
    i8, u8, i16, i32, u32, i64, f32 = np.int8, np.uint8, np.int16, np.int32, np.uint32, np.int64, np.float32
    views = clear[0]
    for i in range(views):
        numba.carray(_pointer(clear[1 + 2 * i]), clear[2 + 2 * i], u8)[:] = 0
    for i in range(clear[1 + 2 * views]):
        numba.carray(_pointer(clear[2 + 2 * views + i]), 1, i64)[0] = 0
    work = (_flat(t, 22, f32), _flat(t, 23, i32), _flat(t, 24, f32), _flat(t, 25, i32), _flat(t, 26, i64),
            _flat(t, 27, i64), _flat(t, 28, i64), _flat(t, 29, u32), _flat(t, 30, i64), _rows(t, 31, i64),
            _flat(t, 32, u8), _flat(t, 33, u32), _flat(t, 34, u8), _flat(t, 35, i64), _flat(t, 36, i64))
    return call_unlinked(interpret, (
        _rows(t, 0, i64), _flat(t, 1, i64), pos, _flat(t, 2, i64), _flat(t, 3, u8), _flat(t, 4, u8),
        _flat(t, 5, i8), _flat(t, 6, i16), _flat(t, 7, i32), _flat(t, 8, i64), _flat(t, 9, u8),
        _flat(t, 10, i8), _flat(t, 11, i16), _flat(t, 12, u8), _flat(t, 13, i32), _flat(t, 14, i64),
        _flat(t, 15, u8), _flat(t, 16, i64), _flat(t, 17, i64), _flat(t, 18, u8), _flat(t, 19, i64),
        _rows(t, 20, i64), _flat(t, 21, i64), work, _flat(t, 37, i64)))
