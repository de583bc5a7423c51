"""Weights read where they lie: CONVs that take their weights from DRAM, and
the weight LOADs that no instruction then reads.

A small model's weights pass through WGT on every run: a LOAD copies a
CONV's weights and PARAM records from DRAM (where Init put the binary's
weight image) into WGT, the CONV reads them there, the next LOAD overwrites
them. Where a CONV's every WGT read (weights, PARAM records, table) lies in
one LOAD's copy of a part of DRAM that nothing writes after Init (the
*constant* bytes: the weight image, below every STORE, input and
exchange), the bytes it would read in WGT are the bytes in DRAM, and it
reads them there: its row, as the interpreter runs it, names DRAM offsets
instead of WGT addresses (``FROM_DRAM``). A LOAD into WGT whose bytes no
instruction but such CONVs reads (``UNREAD``) is not copied at all: what it
would write no instruction reads, and SRAM is not something a caller can
see. ResNet-10 at 32 x 32 copied 4.9 MB of weights per run for its dense
CONVs (a fifth of its Run_sw time, Zen 3).

Nothing else changes: the cycle model times every LOAD (runtime.sim.timing
reads the streams, not this); every result, DRAM byte and error is the
same, and the PARAM records are checked where they are read, as before.
The analysis is conservative: a LOAD stays wherever an instruction other
than a CONV that reads from DRAM may read its bytes (a POOL's table: any
instruction but LOAD, STORE and CONV in its cluster), in any later phase;
only CONVs the interpreter or the GEMM's phases run are redirected (not a
``large`` one off the GEMM, which a CHANNELS phase or Python runs); and a
caller that owns no DRAM
(``Simulator.run`` on DRAM images it may change between runs) has no
constant bytes, so nothing is redirected.

:func:`redirect` returns, per card run, the program as the interpreter runs
it: the rows with one more column, :data:`REDIRECT` (0, ``FROM_DRAM`` or
``UNREAD``), the redirected CONVs' weight, PARAM and table addresses being
DRAM offsets from address 0 of the card's DRAM (the interpreter calls their
kernels with the DRAM as WGT and a WGT base of 0).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from runtime.isa import COL_OPCODE, COLUMNS, N_COLUMNS, Op, Space
from runtime.isa.validate import conv_wgt_reads
from runtime.sim.handlers import CONV as CONV_ENTRY
from runtime.sim.interpreter import (
    D_DRAM,
    D_ELEM,
    D_PB,
    D_PL,
    D_PR,
    D_PT,
    D_SPACE,
    D_SRAM,
    D_X,
    D_XS,
    D_Y,
    D_YS,
    D_Z,
    D_ZS,
    FROM_DRAM,
    REDIRECT,
    UNREAD,
)

_ALIGN = 8
"""A redirected read keeps its WGT address's alignment modulo this (the PARAM
records and tables are read as 32- and 64-bit words)."""


def _sram_bytes(ins: np.ndarray) -> int:
    """Bytes of a LOAD's dense padded SRAM box."""
    rows = int(ins[D_PT]) + int(ins[D_Y]) + int(ins[D_PB])
    cols = int(ins[D_PL]) + int(ins[D_X]) + int(ins[D_PR])
    return int(ins[D_Z]) * rows * cols * int(ins[D_ELEM])


def linear(ins: np.ndarray) -> bool:
    """Whether a LOAD's SRAM box is its DRAM bytes in order: no padding, and
    each axis's stride the size of the axes inside it (an axis of one
    element may have any stride)."""
    if int(ins[D_PT]) + int(ins[D_PB]) + int(ins[D_PL]) + int(ins[D_PR]):
        return False
    x, y = int(ins[D_X]), int(ins[D_Y])
    return ((x == 1 or int(ins[D_XS]) == 1) and (y == 1 or int(ins[D_YS]) == x)
            and (int(ins[D_Z]) == 1 or int(ins[D_ZS]) == x * y))


def lowest_store(prog: np.ndarray) -> int:
    """The lowest DRAM byte any STORE of ``prog`` writes (2^62 where none
    does): its first, the strides being non-negative."""
    stores = prog[prog[:, COL_OPCODE] == Op.STORE, D_DRAM]
    return int(stores.min()) if stores.size else 2 ** 62


def _conv_reads(prog: np.ndarray) -> dict[int, list[tuple[int, int, int]]]:
    """Per CONV row of ``prog``, (column, address, bytes) of each WGT range it
    reads (the validator's :func:`~runtime.isa.validate.conv_wgt_reads`)."""
    rows = np.flatnonzero(prog[:, COL_OPCODE] == Op.CONV)
    fields = COLUMNS[Op.CONV]
    reads = conv_wgt_reads({name: prog[rows, k] for name, k in fields.items()})
    out: dict[int, list[tuple[int, int, int]]] = {int(r): [] for r in rows}
    for name, (size, used) in reads.items():
        for j in np.flatnonzero(used):
            r = int(rows[j])
            out[r].append((fields[name], int(prog[r, fields[name]]), int(size[j])))
    return out


class _Copies:
    """The WGT of one cluster: which LOAD last wrote each byte, as disjoint
    intervals [first, end) -> (LOAD row, DRAM offset of ``first`` or -1
    where the copy is not of constant bytes in order)."""

    def __init__(self):
        self.spans: list[tuple[int, int, int, int]] = []

    def write(self, first: int, end: int, row: int, dram: int) -> None:
        kept = []
        for a, b, r, d in self.spans:
            if b <= first or end <= a:
                kept.append((a, b, r, d))
                continue
            if a < first:
                kept.append((a, first, r, d))
            if end < b:
                kept.append((end, b, r, d + (end - a) if d >= 0 else -1))
        kept.append((first, end, row, dram))
        self.spans = kept

    def source(self, first: int, end: int) -> int:
        """The DRAM offset ``first`` was copied from where one constant copy
        wrote all of [first, end), else -1."""
        for a, b, _, d in self.spans:
            if a <= first and end <= b:
                return d + (first - a) if d >= 0 else -1
        return -1

    def writers(self, first: int, end: int) -> set[int]:
        """The LOADs (run index << 32 | row) whose bytes lie in [first, end)."""
        return {r for a, b, r, _ in self.spans if a < end and first < b}

    def all_writers(self) -> set[int]:
        return {r for _, _, r, _ in self.spans}


def redirect(runs: Sequence, constant: int) -> list[np.ndarray | None]:
    """Per card run of ``runs`` (runtime.sim.card_run.CardRun: ``prog``,
    ``order``, ``slot``, ``large``, ``gemm.index``, ``handlers``, ``card``;
    every run of the simulator, in execution order), the program as its
    interpreter runs it, or None where nothing is redirected. ``constant``:
    the DRAM bytes [0, constant) that nothing writes after Init."""
    if constant <= 0 or not runs:
        return [None] * len(runs)
    constant = min([constant] + [lowest_store(run.prog) for run in runs])
    copies: dict[tuple[int, int], _Copies] = {}
    read: set[tuple[int, int]] = set()  # (run index, LOAD row) some instruction reads from WGT
    found: list[dict[int, list[tuple[int, int]]]] = [{} for _ in runs]  # CONV row -> (column, DRAM offset)
    loads: list[list[int]] = [[] for _ in runs]
    for j, run in enumerate(runs):
        prog = run.prog
        conv_reads = _conv_reads(prog)
        for row in run.order:
            row = int(row)
            ins = prog[row]
            op = int(ins[COL_OPCODE])
            where = copies.setdefault((run.card, int(run.slot[row])), _Copies())
            if op == Op.STORE or op == Op.LOAD and int(ins[D_SPACE]) != Space.WGT:
                continue  # (a STORE reads ACT or ACC: the ISA has none from WGT)
            if op == Op.LOAD:
                first, end = int(ins[D_SRAM]), int(ins[D_SRAM]) + _sram_bytes(ins)
                low = int(ins[D_DRAM])  # an in-order copy reads [low, low + end - first)
                dram = low if linear(ins) and low + end - first <= constant else -1
                where.write(first, end, (j << 32) | row, dram)
                if dram >= 0:
                    loads[j].append(row)
                continue
            if op == Op.CONV:
                reads = conv_reads[row]
                inside = run.gemm.index[row] >= 0 or not run.large[row] and run.handlers[CONV_ENTRY] != 0
                sources = [where.source(at, at + size) for _, at, size in reads] if inside else [-1]
                if all(s >= 0 and s % _ALIGN == at % _ALIGN for s, (_, at, _) in zip(sources, reads)):
                    found[j][row] = [(column, s) for (column, _, _), s in zip(reads, sources)]
                    continue
                for _, at, size in reads:
                    read.update(divmod(w, 1 << 32) for w in where.writers(at, at + size))
                continue
            if op in (Op.END, Op.NOP_COMPUTE):
                continue
            read.update(divmod(w, 1 << 32) for w in where.all_writers())  # any other instruction: any byte
    out: list[np.ndarray | None] = []
    for j, run in enumerate(runs):
        unread = [row for row in loads[j] if (j, row) not in read]
        if not found[j] and not unread:
            out.append(None)
            continue
        code = np.zeros((run.prog.shape[0], N_COLUMNS + 1), np.int64)
        code[:, :N_COLUMNS] = run.prog
        for row, columns in found[j].items():
            for column, offset in columns:
                code[row, column] = offset
            code[row, REDIRECT] = FROM_DRAM
        code[unread, REDIRECT] = UNREAD
        out.append(code)
    return out
