"""What one card executes in one phase of a program (:class:`CardRun`):
its streams' rows, their order, its SRAM, the GEMM's plans and the phases
its stretches run as (runtime.sim.phased), and the calls that run them
(through runtime/sim/whole.py's tables); and a card run that runs beside
the phase's others (:class:`Lane`). runtime/sim/simulator.py builds them
at Init and runs them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from runtime import parallel
from runtime.gemm.microkernel_epilogue import REQUANT_WORDS
from runtime.gemm.tasks import PLAN_SIZE, plan_shape
from runtime.hardware import HardwareConfig
from runtime.isa import StreamKey
from runtime.jit import compiled_entry
from runtime.sim import chains, conv_gemm, groups, phased, whole
from runtime.sim.memory import CardMemory

PACK_PARTS = parallel.NUM_THREADS * parallel.CHUNKS_PER_THREAD
"""Chunks a pooled CONV's patches are packed in (as parallel_for cuts a job)."""

SLOW_KERNEL_FACTOR = 8
"""How many times longer a MAC takes outside the int8 GEMM (depthwise and
short dense tiles: 10-20 GMAC/s on one thread, the GEMM's serial tiles
~100), so that the pool takes the tiles that are long, not the ones with many MACs."""


@dataclass
class Lane:
    """A card run that runs concurrently with the phase's other lanes:
    epoch ``e`` is ``run.order[stops[e - 1]:stops[e]]`` (from 0, to the end)."""

    run: CardRun
    stops: np.ndarray
    epochs: list[np.ndarray] = field(init=False, repr=False)
    """Each epoch's rows, cut once."""

    def __post_init__(self):
        order, stops = self.run.order, self.stops
        self.epochs = [order[int(stops[e - 1]) if e > 0 else 0:int(stops[e]) if e < stops.size else order.size]
                       for e in range(stops.size + 1)]

    def epoch(self, e: int) -> np.ndarray:
        return self.epochs[e] if e < len(self.epochs) else self.run.order[:0]


@dataclass
class CardRun:
    """What one card executes in one phase: the rows of its streams (one
    matrix), their execution order, each row's cluster slot and whether it is
    a large CONV; ``keys`` and ``bases`` map rows back to streams; ``memory``
    is the card's SRAM."""

    card: int
    prog: np.ndarray
    order: np.ndarray
    slot: np.ndarray
    large: np.ndarray
    keys: list[StreamKey]
    bases: np.ndarray
    gemm: conv_gemm.GemmPlans
    handlers: np.ndarray
    memory: CardMemory
    err: np.ndarray = field(init=False, repr=False)
    """A bad PARAM value's kind, index, value and row, as the interpreter reports it."""
    code: np.ndarray = field(init=False, repr=False)
    """The rows as the interpreter and the phases run them: ``prog``, or
    ``prog`` redirected (runtime/sim/forward.py: CONVs reading their weights
    in DRAM, LOADs not copied)."""
    state: tuple = field(init=False, repr=False)
    """The interpreter's arguments after ``dram``: the card's SRAM views and
    this run's tables, gathered once."""

    ctl: np.ndarray = field(init=False, repr=False)
    """The phased driver's control slots (runtime.sim.phased: STATUS, ...)."""
    plan: np.ndarray = field(init=False, repr=False)
    """The plan of the pooled CONV being run, with its addresses."""
    _stretches: dict = field(init=False, repr=False, default_factory=dict)
    _driver: Callable | None = field(init=False, repr=False, default=None)
    _interpreter: Callable | None = field(init=False, repr=False, default=None)
    _driver_tables: dict = field(init=False, repr=False, default_factory=dict)
    """id(order) -> (order, DRAM, the table of the driver's arrays:
    runtime/sim/whole.py's ``driver_table``, then ``state`` and ``grouped``
    as they were), made on a stretch's first run with that order and DRAM
    and made again if the arrays were gathered again; the entry keeps the
    arrays the table points to alive."""
    _span_args: tuple | None = field(init=False, repr=False, default=None)
    """(span, DRAM, the interpreter's arguments for them as its entry takes
    them: the position and the table of the arrays' addresses, the arrays):
    the last one-segment stretch's call, gathered once (a small model's run
    is that call, run after run)."""
    grouped: tuple = field(init=False, repr=False)
    """The GROUPS phases' groups (runtime.sim.phased.run_card's ``grouped``:
    table, rows, done flags, outcomes, failure positions, the second set of
    GEMM working buffers, its ``err`` and ``pad``) and the TILES phases'
    chains (their tile table, each chunk's row offsets, sums and plan),
    planned at Init (:meth:`plan_groups`)."""
    _touches: groups.Touches | None = field(init=False, repr=False, default=None)
    _tables: list = field(init=False, repr=False, default_factory=list)
    _chains: list = field(init=False, repr=False, default_factory=list)

    def __post_init__(self):
        self.code = self.prog
        self.err = np.zeros(4, np.int64)
        self.ctl = np.zeros(3, np.int64)
        self.plan = np.zeros(conv_gemm.PLAN_SIZE, np.int64)
        self._gather()
        self.grouped = (np.zeros((0, 3), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                        np.zeros(0, np.int64), np.zeros(0, np.int64), self.gemm.work, self.err,
                        np.zeros(8, np.uint8), *self._tile_buffers())

    def _gather(self) -> None:
        """The interpreter's arguments after ``dram``."""
        mem, gemm = self.memory, self.gemm
        strides = np.array([mem.wgt.stride, mem.act.stride, mem.acc.stride], np.int64)
        self.state = (mem.wgt.i8, mem.wgt.i16, mem.wgt.i32, mem.wgt.i64, mem.wgt.u8, mem.act.i8, mem.act.i16,
                      mem.act.u8, mem.acc.i32, mem.acc.i64, mem.acc.u8, strides, self.err, np.zeros(8, np.uint8),
                      gemm.index, gemm.templates, gemm.kernels, gemm.work, self.handlers)

    def plan_groups(self, orders: Sequence[np.ndarray], config: HardwareConfig) -> None:
        """Work out the stretches of ``orders`` (the lane's epochs, run
        after run), running the chains of tiles as TILES phases
        (runtime/sim/chains.py) and cutting the segments that pay into
        GROUPS phases (runtime/sim/groups.py); with any groups, the second
        set of working buffers. At Init, before any run: the arguments
        gathered here are the ones every later call uses."""
        if parallel.NUM_THREADS < 2 or not np.any(self.gemm.index >= 0) or not groups.known(self.prog):
            return
        self._touches = groups.Touches(self.code, self.prog, self.slot, config)
        for order in orders:
            self.stretches(order)
        self._touches = None
        if not self._tables and not self._chains:
            return
        tables, rows, offset, base = [np.zeros((0, 3), np.int64)], [np.zeros(0, np.int64)], 0, 0
        for table, grouped in self._tables:
            table = table.copy()
            table[:, :2] += offset
            table[:, groups.NEED] = np.where(table[:, groups.NEED] >= 0, table[:, groups.NEED] + base, -1)
            tables.append(table)
            rows.append(grouped)
            offset += grouped.size
            base += table.shape[0]
        second = self.gemm.work
        if self._tables:
            first, second = conv_gemm.second_set(self.gemm.work)
            self.gemm.work = first
            self._gather()
        count = base
        self.grouped = (np.concatenate(tables), np.concatenate(rows), np.zeros(count, np.int64),
                        np.zeros(count, np.int64), np.zeros(count, np.int64), second, np.zeros(4, np.int64),
                        np.zeros(8, np.uint8), *self._tile_buffers())

    def _tile_buffers(self) -> tuple:
        """The chains' tile table, then each TILES chunk's row offsets, sums
        and plan (``PACK_PARTS`` chunks at most), sized for the largest tile."""
        tiles = np.concatenate(self._chains) if self._chains else np.zeros((0, 4), np.int64)
        mpad, sums = 1, 1
        for r in tiles[:, chains.CONV].tolist():
            m, size, _, _, mr, _ = (int(v) for v in plan_shape(self.gemm.templates[self.gemm.index[r]]))
            mpad, sums = max(mpad, -(-m // mr) * mr * (1 + REQUANT_WORDS)), max(sums, m * size)
        rows = PACK_PARTS if self._chains else 1
        return (tiles, np.zeros((rows, mpad), np.int32), np.zeros((rows, sums), np.int32),
                np.zeros((rows, PLAN_SIZE), np.int64))

    def _cut(self, phases: np.ndarray, order: np.ndarray) -> np.ndarray:
        """``phases`` with each chain of tiles in a SEGMENT run as a TILES
        phase (after a segment that prepares its first tile and the PACK
        phase of its patches), and each segment left that pays cut into a
        GROUPS phase (tile and group numbers count on from those planned
        so far)."""
        out = []
        for row in phases.tolist():
            kind, first, end, after, conv = row
            if kind != phased.SEGMENT or end <= first:
                out.append(row)
                continue
            for c0, c1, table in chains.find(self.code, order, first, end, self.slot, self.gemm, self.large):
                low = sum(t.shape[0] for t in self._chains)
                self._chains.append(table)
                tile = int(table[0, chains.CONV])
                out += self._grouped(first, c0, after, tile, order)
                out += [[phased.PACK, 0, 0, -1, tile], [phased.TILES, low, low + table.shape[0], -1, tile]]
                first, after = c1, -1
            out += self._grouped(first, end, after, conv, order)
        return np.array(out, np.int64).reshape(-1, 5)

    def _grouped(self, first: int, end: int, after: int, conv: int, order: np.ndarray) -> list[list[int]]:
        """Segment [first, end) (reporting ``after``, preparing ``conv``):
        cut into a GROUPS phase between two empty segments where that pays,
        else as it is."""
        found = None
        if end > first:
            found = groups.split(self.prog, self.code, order, first, end, self._touches, self.gemm.index,
                                 SLOW_KERNEL_FACTOR)
        if found is None:
            return [[phased.SEGMENT, first, end, after, conv]]
        low = sum(table.shape[0] for table, _ in self._tables)
        self._tables.append(found)
        return [[phased.SEGMENT, first, first, after, -1], [phased.GROUPS, low, low + found[0].shape[0], -1, -1],
                [phased.SEGMENT, end, end, -1, conv]]

    def stretches(self, order: np.ndarray, plain: bool = False) -> list[tuple]:
        """``order``'s stretches (runtime.sim.phased.stretches) as (phase
        table, position of the Python step after it or -1, whether it runs
        alone: no phase to share, the span of ``order`` it interprets when
        it is one segment or None), worked out on its first run (an order is
        a lane's epoch: the same array, run after run). ``plain``: as one
        thread runs them, without the chains and groups :meth:`plan_groups`
        cut for the pool's threads (the same as the others where it cut none)."""
        known = self._stretches.get(id(order))
        if known is None or known[0] is not order:  # not the same array object (kept alive here), a new one at its id
            found, plains, differ = [], [], False
            for phases, python in phased.stretches(self.prog, order, self.gemm.index, self.large, self.handlers,
                                                   self.code):
                plains.append(self._stretch(phases, python, order))
                cut = self._cut(phases, order) if self._touches is not None else phases
                same = np.array_equal(cut, phases)
                found.append(plains[-1] if same else self._stretch(cut, python, order))
                differ |= not same
            known = self._stretches[id(order)] = (order, found, plains if differ else found)
        return known[2] if plain else known[1]

    def two_ways(self, order: np.ndarray) -> bool:
        """Whether ``order`` runs one way on the pool's threads and another
        on one thread: some stretch has phases the pool shares, or chains
        and groups cut for it (:meth:`stretches`)."""
        known = self.stretches(order)
        return known is not self.stretches(order, plain=True) or any(not by_caller for _, _, by_caller, _ in known)

    @staticmethod
    def _stretch(phases: np.ndarray, python: int, order: np.ndarray) -> tuple:
        """A stretch as :meth:`stretches` gives it."""
        first, end = int(phases[0, phased.FIRST]), int(phases[0, phased.END])
        span = None
        if phases.shape[0] == 1:
            span = order if first == 0 and end == order.shape[0] else order[first:end]
        return phases, python, not phased.shares_work(phases), span

    def stopped(self, phases: np.ndarray, done: int) -> int:
        """What failed where the interpreter, run on a stretch of one segment
        (``phases``), returned ``done`` short of its end: ``ctl[FAILED_AT]``
        set, phased.BAD_PARAM or phased.STOPPED returned."""
        self.ctl[phased.FAILED_AT] = int(phases[0, phased.FIRST]) + (-done - 1 if done < 0 else done)
        return phased.BAD_PARAM if done < 0 else phased.STOPPED

    def run_stretch(self, phases: np.ndarray, order: np.ndarray, dram: np.ndarray, alone: bool, span,
                    chosen: bool = False) -> tuple[int, bool]:
        """One stretch: its phases on the pool (runtime.sim.phased.run_card;
        on the caller alone where ``alone``, or by choice where ``chosen``:
        runtime.parallel.run_phases; sent alone by the job of a thread that
        waits for this card's DRAM next, the pool joins it once that ends:
        ``late``), or, for a stretch of one segment, the interpreter on
        ``span`` with no driver around it (a small model's whole run). Returns 0, or what
        failed (phased.BAD_PARAM, phased.STOPPED; ``ctl[FAILED_AT]`` where),
        and whether the pool's threads took part.
        Both compiled entries are resolved on the first call and called
        directly after (runtime.jit.compiled_entry): the driver's 35
        arguments, the GEMM's tuple of 14 buffers among them, took ~30 us a
        call to match against its signature, as long as a small model's run;
        the driver costs ~5 us more than the interpreter alone (identity
        model, Zen 3). The interpreter takes its arrays from a table of
        their addresses (runtime/sim/whole.py: unboxing them was most of a
        small model's call), and so does the driver, on every thread (the
        views made of arrays with no MemInfo count no references on the
        lines both threads share)."""
        if span is not None:
            known = self._span_args
            if known is None or known[0] is not span or known[1] is not dram:
                arrays = (self.code, span, 0, self.slot, self.large, dram, *self.state)
                known = self._span_args = (span, dram, (0, whole.argument_table(arrays), whole.NOTHING), arrays)
            entry = self._interpreter
            if entry is None:
                entry = self._interpreter = compiled_entry(whole.interpret_table, known[2])
            done = entry(*known[2])
            return (0 if done == span.shape[0] else self.stopped(phases, done)), False
        known = self._driver_tables.get(id(order))
        if known is None or known[0] is not order or known[1] is not dram or known[3] is not self.state \
                or known[4] is not self.grouped:
            table = whole.driver_table((self.code, order, 0, self.slot, self.large, dram, *self.state), self.ctl,
                                       self.plan, self.gemm.shapes, self.grouped)
            known = self._driver_tables[id(order)] = (order, dram, table, self.state, self.grouped)
        driver = self._driver
        if driver is None:
            team = np.zeros(1, np.int64)
            driver = self._driver = compiled_entry(whole.run_card_table, (team, team, 0, 0, phases, PACK_PARTS,
                                                                          known[2]))
        self.ctl[phased.STATUS] = 0
        self.ctl[phased.SEQ] += 1
        pooled = parallel.run_phases(driver, phases.shape[0], phases, PACK_PARTS, known[2], alone=alone, chosen=chosen,
                                     late=id(dram))
        return int(self.ctl[phased.STATUS]), pooled
