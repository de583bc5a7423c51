"""One large LOAD, STORE or ELTWISE cut into parts over the threads: the
PARTS phase of runtime.sim.phased.

A card run's segments are one thread's work while the others wait at the
next barrier (runtime.sim.phased). Between two pooled CONVs a segment moves
the first one's output to DRAM and the next one's input back (SqueezeNet:
48 DMAs of 46 to 194 KB, a third of its segments' time, which was a quarter
of its Run_sw), and every byte such a DMA moves was written by the other
thread's CONV tasks a moment before, each line fetched from the other core.
Each part costs two barriers (~1 us each, more when the host's cores share
lines slowly): from 64 KB, and with SqueezeNet's Concat COPYs of 46 656
codes in parts too, it gained nothing (those COPYs' segments had been
GROUPS phases, runtime/sim/groups.py); from 128 KB it did (docs/simulator.md).

:func:`splits` decides at Init which instructions are cut: a LOAD or STORE
of at least :data:`MIN_BYTES` whose rows are copied whole (x stride 1) and,
for a STORE, whose destination rows do not overlap (every byte is written
once, so the parts' order does not matter); an ELTWISE of at least
:data:`MIN_ELEMENTS` whose operands each lie exactly where its output does
(in place) or apart from it (each element reads only bytes no other part
writes). :func:`part` runs part ``k`` of ``count``: the same instruction
over a run of its outermost extent of more than one (planes, then rows,
then elements), its addresses moved to that run's first, through the code
the interpreter runs it with (runtime.sim.dma, the ELTWISE entry point).
Each part writes only its own bytes, and each byte is what the whole
instruction writes there.
"""
from __future__ import annotations

import numpy as np

from runtime.isa import COL_OPCODE, Bcast, EltOp, Op
from runtime.jit import jit
from runtime.sim.dma import dma_load, dma_store
from runtime.sim.handlers import ELTWISE, call_handler
from runtime.sim.interpreter import (
    D_DRAM,
    D_ELEM,
    D_PB,
    D_PL,
    D_PR,
    D_PT,
    D_PV,
    D_SPACE,
    D_SRAM,
    D_X,
    D_XS,
    D_Y,
    D_YS,
    D_Z,
    D_ZS,
    REDIRECT,
    UNREAD,
)
from runtime.sim.vector import (
    E_A,
    E_A_BITS,
    E_B,
    E_B_BITS,
    E_BCAST,
    E_C,
    E_FUNC,
    E_H,
    E_OUT,
    E_OUT_BITS,
    E_W,
)
from runtime.unlinked import call_unlinked

MIN_BYTES, MIN_ELEMENTS = 1 << 17, 1 << 17
"""The least bytes a LOAD or STORE moves, and elements an ELTWISE
computes, to be cut into parts (Run_sw in-process A/B against no parts,
Zen 4: SqueezeNet 0.93-0.95 from 2^17 bytes, 0.98 from 2^16)."""
PART_BYTES = 1 << 13
"""The least bytes (or elements) a part takes."""

OP_LOAD, OP_STORE, OP_ELTWISE = int(Op.LOAD), int(Op.STORE), int(Op.ELTWISE)


def splits(code: np.ndarray, row: int, table: np.ndarray) -> bool:
    """Whether row ``row`` of ``code`` (the program as the card run executes
    it: runtime/sim/forward.py's column when redirected) runs as a PARTS
    phase (see the module docstring); ``table`` the program's entry points
    (runtime.sim.handlers.handler_table: an ELTWISE needs its own)."""
    ins = code[row]
    op = int(ins[COL_OPCODE])
    if code.shape[1] > REDIRECT and int(ins[REDIRECT]) == UNREAD:
        return False
    if op in (OP_LOAD, OP_STORE):
        z, y, x, elem = (int(ins[k]) for k in (D_Z, D_Y, D_X, D_ELEM))
        if int(ins[D_XS]) != 1 or z * y * x * elem < MIN_BYTES:
            return False
        padded = op == OP_LOAD and any(int(ins[k]) for k in (D_PT, D_PB, D_PL, D_PR))
        if padded and z < 2:  # a padded box is cut by planes only (each part fills its own)
            return False
        if op == OP_STORE:  # every DRAM byte written once: rows apart, planes apart
            ys, zs = int(ins[D_YS]), int(ins[D_ZS])
            if (y > 1 and ys < x) or (z > 1 and zs < (y - 1) * ys + x):
                return False
        return True
    if op == OP_ELTWISE and table[ELTWISE] != 0:
        c, h, w = (int(ins[k]) for k in (E_C, E_H, E_W))
        n = c * h * w
        if n < MIN_ELEMENTS:
            return False
        out = (int(ins[E_OUT]), int(ins[E_OUT]) + n * (int(ins[E_OUT_BITS]) >> 3))
        operands = [(int(ins[E_A]), n * (int(ins[E_A_BITS]) >> 3))]
        if int(ins[E_FUNC]) != EltOp.COPY:
            count = {Bcast.FULL: n, Bcast.CHANNEL: c, Bcast.SPATIAL: h * w}.get(int(ins[E_BCAST]), 1)
            operands.append((int(ins[E_B]), count * (int(ins[E_B_BITS]) >> 3)))
        for first, size in operands:
            if (first, first + size) != out and first < out[1] and out[0] < first + size:
                return False
        return True
    return False


@jit(inline="always")
def _extent(ins):
    """(which extent is cut: 0, 1, 2 outermost first, its length, the
    bytes or elements in all) of a PARTS instruction: the outermost of
    more than one."""
    if ins[COL_OPCODE] == OP_ELTWISE:
        c, h, w = ins[E_C], ins[E_H], ins[E_W]
        total = c * h * w
    else:
        c, h, w = ins[D_Z], ins[D_Y], ins[D_X]
        total = c * h * w * ins[D_ELEM]
    if c > 1:
        return 0, c, total
    if h > 1:
        return 1, h, total
    return 2, w, total


@jit
def count(ins, parts):
    """How many parts instruction ``ins`` is cut into (at most ``parts``)."""
    _, length, total = _extent(ins)
    return max(1, min(parts, length, total // PART_BYTES))


@jit
def part(k, n, ins, dram, wu8, au8, cu8, wbase, abase, cbase, handlers, err):
    """Part ``k`` of ``n`` of instruction ``ins`` (see the module docstring)."""
    which, length, _ = _extent(ins)
    first, stop = k * length // n, (k + 1) * length // n
    if stop <= first:
        return
    piece = ins.copy()
    if ins[COL_OPCODE] == OP_ELTWISE:
        h, w = ins[E_H], ins[E_W]
        step = h * w if which == 0 else w if which == 1 else 1  # elements per unit of the cut extent
        piece[E_C if which == 0 else E_H if which == 1 else E_W] = stop - first
        piece[E_A] += first * step * (ins[E_A_BITS] >> 3)
        piece[E_OUT] += first * step * (ins[E_OUT_BITS] >> 3)
        bcast = ins[E_BCAST]
        if ins[E_FUNC] != EltOp.COPY:
            if bcast == Bcast.FULL:
                piece[E_B] += first * step * (ins[E_B_BITS] >> 3)
            elif bcast == Bcast.CHANNEL and which == 0:
                piece[E_B] += first * (ins[E_B_BITS] >> 3)
            elif bcast == Bcast.SPATIAL and which != 0:
                piece[E_B] += first * step * (ins[E_B_BITS] >> 3)
        call_handler(handlers[ELTWISE], piece, wu8, au8, cu8, wbase, abase, cbase, err)
        return
    space, elem = ins[D_SPACE], ins[D_ELEM]
    sram = wu8 if space == 0 else au8 if space == 1 else cu8
    base = wbase if space == 0 else abase if space == 1 else cbase
    z, y, x = ins[D_Z], ins[D_Y], ins[D_X]
    rows, cols = y, x
    if ins[COL_OPCODE] == OP_LOAD:
        rows, cols = ins[D_PT] + y + ins[D_PB], ins[D_PL] + x + ins[D_PR]
    # the SRAM box is dense (its planes rows x cols, padding included); DRAM's is strided
    sram_step = rows * cols if which == 0 else cols if which == 1 else 1
    dram_step = ins[D_ZS] if which == 0 else ins[D_YS] if which == 1 else 1
    sram_at = base + ins[D_SRAM] + first * sram_step * elem
    dram_at = ins[D_DRAM] + first * dram_step * elem
    if which == 0:
        z = stop - first
    elif which == 1:
        y = stop - first
    else:
        x = stop - first
    if ins[COL_OPCODE] == OP_LOAD:
        scratch = np.empty(8, np.uint8)  # the pad value's bytes: each part its own
        call_unlinked(dma_load, (dram, sram, sram_at, dram_at, elem, z, y, x, ins[D_ZS], ins[D_YS], ins[D_XS],
                                 ins[D_PT], ins[D_PB], ins[D_PL], ins[D_PR], ins[D_PV], scratch))
    else:
        call_unlinked(dma_store, (dram, sram, sram_at, dram_at, elem, z, y, x, ins[D_ZS], ins[D_YS], ins[D_XS]))
