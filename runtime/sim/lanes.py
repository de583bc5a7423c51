"""Lanes: the streams of a card run on the host's threads at once.

The simulator executes a card's instructions in order of their scheduled
start cycle (runtime/sim/simulator.py). Cut that order at the cycles where
the card's barriers release (the end cycle of its SYNCs): every instruction
of an *epoch* (between two cuts) comes before every instruction of the next.
Within an epoch, the streams of the card (one per cluster) touch their own
SRAM buffers and meet only in the card's DRAM; if no stream writes a DRAM
byte that another stream reads or writes in the same epoch, any interleaving
of the epoch's streams gives the bytes the scheduled order gives. Those
streams are then *lanes*: each runs its own rows of the epoch, in its own
order, concurrently with the others, and the epochs follow one another.

Whether a card's streams are lanes is decided once, at Init, byte for byte
(:func:`lanes_conflict`): split mode's shares of a layer write disjoint
parts of its output and read what the barrier before them completed; batch
mode's images live in DRAM regions of their own and share only the
read-only weights. A program that fails the check (a data race between
clusters, which the hardware would resolve by timing) runs as before, its
streams interleaved on one thread, with the results of the modelled order.
Cards share no memory: each card is a lane of its own at least.
"""
from __future__ import annotations

import numpy as np

from runtime.isa import COL_OPCODE, Op, column
from runtime.jit import jit

(L_ELEM, L_DRAM, L_Z, L_Y, L_X, L_ZS, L_YS, L_XS) = (
    column(Op.LOAD, name) for name in ("elem_bytes", "dram_addr", "z_size", "y_size", "x_size", "z_stride",
                                       "y_stride", "x_stride"))
assert all(column(Op.STORE, name) == column(Op.LOAD, name)
           for name in ("elem_bytes", "dram_addr", "z_size", "y_size", "x_size", "z_stride", "y_stride", "x_stride"))
OP_LOAD, OP_STORE = int(Op.LOAD), int(Op.STORE)
MAX_LANES = 254
"""Streams of one card the check can tell apart (an owner byte per DRAM byte)."""


@jit
def _box_span(ins):
    """[first, last] DRAM byte a LOAD or STORE box touches (strides are
    non-negative: the validator's DMA bounds)."""
    elem = ins[L_ELEM]
    first = ins[L_DRAM]
    last = first + ((ins[L_Z] - 1) * ins[L_ZS] + (ins[L_Y] - 1) * ins[L_YS] + (ins[L_X] - 1) * ins[L_XS]) * elem \
        + elem - 1
    return first, last


@jit
def _visit(ins, owner, lane, mode):
    """Every byte of the box: mode 0 claims it for ``lane`` (False where
    another lane holds it), 1 checks that no other lane holds it, 2 frees it."""
    elem = ins[L_ELEM]
    base = ins[L_DRAM]
    mark = lane + 1
    for z in range(ins[L_Z]):
        for y in range(ins[L_Y]):
            row = base + (z * ins[L_ZS] + y * ins[L_YS]) * elem
            for x in range(ins[L_X]):
                at = row + x * ins[L_XS] * elem
                for b in range(elem):
                    held = owner[at + b]
                    if mode == 2:
                        owner[at + b] = 0
                    elif held != 0 and held != mark:
                        return False
                    elif mode == 0:
                        owner[at + b] = mark
    return True


@jit
def lanes_conflict(prog, rows, bounds, lane, owner):
    """Whether, in some epoch, one lane writes a DRAM byte another reads or
    writes. ``rows[bounds[e]:bounds[e + 1]]`` are the rows of epoch ``e``
    (rows of ``prog``), ``lane[row]`` a row's lane, ``owner`` a zeroed
    uint8 array the size of DRAM (left zeroed where the answer is False)."""
    for e in range(bounds.shape[0] - 1):
        low, high = owner.shape[0], -1
        for i in range(bounds[e], bounds[e + 1]):
            r = rows[i]
            if prog[r, COL_OPCODE] == OP_STORE:
                first, last = _box_span(prog[r])
                low, high = min(low, first), max(high, last)
                if not _visit(prog[r], owner, lane[r], np.int64(0)):
                    return True
        for i in range(bounds[e], bounds[e + 1]):
            r = rows[i]
            if prog[r, COL_OPCODE] == OP_LOAD:
                first, last = _box_span(prog[r])
                if last >= low and first <= high and not _visit(prog[r], owner, lane[r], np.int64(1)):
                    return True
        for i in range(bounds[e], bounds[e + 1]):
            r = rows[i]
            if prog[r, COL_OPCODE] == OP_STORE:
                _visit(prog[r], owner, lane[r], np.int64(2))
    return False


def epochs(prog: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The cut cycles of a card's rows (``prog``, their scheduled ``end``
    cycles): where its barriers release, sorted, distinct."""
    syncs = prog[:, COL_OPCODE] == Op.SYNC
    return np.unique(end[syncs]).astype(np.int64)


def race_free(prog: np.ndarray, start: np.ndarray, lane: np.ndarray, cuts: np.ndarray, dram_bytes: int) -> bool:
    """Whether the card's rows (``lane[row]`` their stream) may run as lanes
    between the ``cuts`` (see the module docstring)."""
    if int(lane.max(initial=0)) >= MAX_LANES:
        return False
    epoch = np.searchsorted(cuts, start, side="right")
    rows = np.argsort(epoch, kind="stable").astype(np.int64)
    bounds = np.searchsorted(epoch[rows], np.arange(cuts.size + 2)).astype(np.int64)
    owner = np.zeros(max(dram_bytes, 1), np.uint8)
    return not lanes_conflict(prog, rows, bounds, lane.astype(np.int64), owner)
