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

A pooled run's phased driver (runtime.sim.phased.run_card, on every thread
of the pool) takes its arrays the same way (:func:`driver_table`,
:func:`run_card_table`): arrays with no MemInfo take no reference, so the
views the interpreter, the GEMM's preparation and the epilogues make of the
card's shared buffers count no references either. Those counts were
atomics on lines both threads wrote (SqueezeNet's last CONV, 125 tiles of 8
channels run two at a time: 20 % of a thread's time in ``NRT_incref`` and
``NRT_decref``).
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
from runtime.sim.phased import run_card
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


WORK_LAYOUT = LAYOUT[WORK:WORK + 15]
DRIVER_LAYOUT = LAYOUT + ((_I64, 1), (_I64, 1), (_I64, 2),  # the driver's control slots, plan, the GEMM's shapes
                          (_I64, 2), (_I64, 1), (_I64, 1), (_I64, 1), (_I64, 1),  # the groups' table, rows, flags
                          *WORK_LAYOUT, (_I64, 1), (_U8, 1),  # the second set of working buffers, its err, pad
                          (_I64, 2), (_I32, 2), (_I32, 2), (_I64, 2))  # the chains' tiles, offsets, sums, plans
"""The driver's arrays (:func:`driver_table`): the interpreter's, then
run_card's own (``ctl``, ``plan``, ``shapes`` and ``grouped`` flat)."""
EXTRA = len(LAYOUT)
"""Where the driver's own arrays start in :data:`DRIVER_LAYOUT`."""


def _flatten(args: tuple) -> list:
    """The interpreter's arguments as :data:`LAYOUT` lists them."""
    arrays = [a for a in args[:2]] + [a for a in args[3:] if not isinstance(a, tuple)]
    work = next(a for a in args if isinstance(a, tuple))
    return arrays[:WORK] + list(work) + arrays[WORK:]


def _table(arrays: list, layout: tuple, what: str) -> np.ndarray:
    """Each of ``arrays``' address and first two dimensions, checked against
    ``layout``'s dtype and rank (``what`` takes them: for the error)."""
    if len(arrays) != len(layout):
        raise SimulatorError(f"internal error: {what} takes {len(arrays)} arrays, the table {len(layout)}")
    table = np.zeros(FIELDS * len(arrays), np.int64)
    for i, (array, (dtype, ndim)) in enumerate(zip(arrays, layout)):
        if not (isinstance(array, np.ndarray) and array.dtype == dtype and array.ndim == ndim
                and array.flags.c_contiguous and array.flags.writeable):
            raise SimulatorError(f"internal error: {what}'s array {i} is {getattr(array, 'dtype', array)!r}"
                                 f", {getattr(array, 'ndim', '?')}-D; the table holds a writable C-contiguous "
                                 f"{dtype}, {ndim}-D")
        table[FIELDS * i] = array.ctypes.data
        table[FIELDS * i + 1:FIELDS * i + 1 + ndim] = array.shape
    return table


def argument_table(args: tuple) -> np.ndarray:
    """The table of ``args`` (the interpreter's arguments, as
    runtime.sim.interpreter.interpret takes them)."""
    return _table(_flatten(args), LAYOUT, "the interpreter")


def driver_table(args: tuple, ctl: np.ndarray, plan: np.ndarray, shapes: np.ndarray, grouped: tuple) -> np.ndarray:
    """The table of a card run's arrays as :func:`run_card_table` takes
    them: ``args`` the interpreter's arguments (its order the run's), then
    the driver's control slots, the plan, the GEMM's shapes and the groups
    (runtime.sim.phased.run_card's ``grouped``)."""
    table, rows, done, outcome, where, work, err, pad, tiles, offsets, sums, plans = grouped
    arrays = _flatten(args) + [ctl, plan, shapes, table, rows, done, outcome, where, *work, err, pad, tiles, offsets,
                               sums, plans]
    return _table(arrays, DRIVER_LAYOUT, "the phased driver")


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


@jit(inline="always")
def _work(t, at):
    """The GEMM's working buffers (a tuple of 15) from entry ``at`` of ``t``."""
    i32, u8, u32, i64, f32 = np.int32, np.uint8, np.uint32, np.int64, np.float32
    return (_flat(t, at, f32), _flat(t, at + 1, i32), _flat(t, at + 2, f32), _flat(t, at + 3, i32),
            _flat(t, at + 4, i64), _flat(t, at + 5, i64), _flat(t, at + 6, i64), _flat(t, at + 7, u32),
            _flat(t, at + 8, i64), _rows(t, at + 9, i64), _flat(t, at + 10, u8), _flat(t, at + 11, u32),
            _flat(t, at + 12, u8), _flat(t, at + 13, i64), _flat(t, at + 14, i64))


@jit
def interpret_table(pos, t, clear):
    """``interpret(*args)`` with ``pos`` for the position, the other
    arguments the arrays of the table ``t`` (:func:`argument_table`), after
    clearing what ``clear`` names (:func:`clear_table`)."""
    i8, u8, i16, i32, i64 = np.int8, np.uint8, np.int16, np.int32, np.int64
    views = clear[0]
    for i in range(views):
        numba.carray(_pointer(clear[1 + 2 * i]), clear[2 + 2 * i], u8)[:] = 0
    for i in range(clear[1 + 2 * views]):
        numba.carray(_pointer(clear[2 + 2 * views + i]), 1, i64)[0] = 0
    return call_unlinked(interpret, (
        _rows(t, 0, i64), _flat(t, 1, i64), pos, _flat(t, 2, i64), _flat(t, 3, u8), _flat(t, 4, u8),
        _flat(t, 5, i8), _flat(t, 6, i16), _flat(t, 7, i32), _flat(t, 8, i64), _flat(t, 9, u8),
        _flat(t, 10, i8), _flat(t, 11, i16), _flat(t, 12, u8), _flat(t, 13, i32), _flat(t, 14, i64),
        _flat(t, 15, u8), _flat(t, 16, i64), _flat(t, 17, i64), _flat(t, 18, u8), _flat(t, 19, i64),
        _rows(t, 20, i64), _flat(t, 21, i64), _work(t, WORK), _flat(t, 37, i64)))


DRIVER_SIGNATURE = (types.Array(types.int64, 1, "C"), types.Array(types.int64, 1, "C"), types.int64, types.int64,
                    types.Array(types.int64, 2, "C"), types.int64, types.Array(types.int64, 1, "C"))
"""The one signature :func:`run_card_table` is compiled for (the team, its
state, the role, the first phase, the phase table, the parts a CONV's
patches are packed in, the table): what compiler/warmup.py ships."""


@jit
def run_card_table(team, state, role, first, phases, parts, t):
    """runtime.sim.phased.run_card (a phased driver for
    runtime.parallel.run_phases) on the arrays of the table ``t``
    (:func:`driver_table`)."""
    i8, u8, i16, i32, i64 = np.int8, np.uint8, np.int16, np.int32, np.int64
    e = EXTRA
    grouped = (_rows(t, e + 3, i64), _flat(t, e + 4, i64), _flat(t, e + 5, i64), _flat(t, e + 6, i64),
               _flat(t, e + 7, i64), _work(t, e + 8), _flat(t, e + 23, i64), _flat(t, e + 24, u8),
               _rows(t, e + 25, i64), _rows(t, e + 26, i32), _rows(t, e + 27, i32), _rows(t, e + 28, i64))
    return call_unlinked(run_card, (
        team, state, role, first, phases, _flat(t, e, i64), _flat(t, e + 1, i64), parts,
        _rows(t, 0, i64), _flat(t, 1, i64), _flat(t, 2, i64), _flat(t, 3, u8), _flat(t, 4, u8),
        _flat(t, 5, i8), _flat(t, 6, i16), _flat(t, 7, i32), _flat(t, 8, i64), _flat(t, 9, u8),
        _flat(t, 10, i8), _flat(t, 11, i16), _flat(t, 12, u8), _flat(t, 13, i32), _flat(t, 14, i64),
        _flat(t, 15, u8), _flat(t, 16, i64), _flat(t, 17, i64), _flat(t, 18, u8), _flat(t, 19, i64),
        _rows(t, 20, i64), _flat(t, 21, i64), _work(t, WORK), _flat(t, 37, i64), _rows(t, e + 2, i64), grouped))
