"""The Simulator: validates and decodes a program's streams once, computes
the static schedule, and runs the streams bit-exactly on DRAM images.

Execution order: all streams of a phase run together. The schedule gives
every instruction a start cycle; the instructions of a card execute in order
of start cycle (ties by stream, then index). An instruction that depends on
another (program order in a module, a token, a barrier) starts no earlier
than the other's end, so this order respects every dependency, and results
equal the hardware's for any program whose conflicting accesses are ordered
by tokens (docs/isa.md). Cards share no memory, so each card's instructions
run on their own; a SYNC spanning cards orders time only.

Host threads: where the streams of a card pass the check of
runtime/sim/lanes.py (no DRAM byte shared between clusters within an epoch
between barriers), each stream is a *lane* of its own; the lanes of every
card of a phase run concurrently on the thread pool (runtime/parallel.py),
epoch by epoch, when there are at least as many lanes as threads (each lane
runs its large CONVs on its own thread); with fewer, the lanes run one after
another and each large CONV gets every thread. Either way the bytes are
those of the scheduled order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from runtime import parallel
from runtime.hardware import HardwareConfig
from runtime.isa import (
    COL_MODULE,
    COL_OPCODE,
    COMMAND_QUEUE_DEPTH,
    TOKEN_QUEUE_DEPTH,
    IsaError,
    Module,
    Op,
    StreamKey,
    column,
    decode_array,
    validate_streams,
)
from runtime.isa.codec import stream_bytes
from runtime.isa.validate import queue_masks
from runtime.jit import compiled_entry
from runtime.parallel import parallel_for
from runtime.sim import conv as conv_kernels
from runtime.sim import conv_gemm, forward, groups, lanes, phased, whole
from runtime.sim.errors import SimulatorError
from runtime.sim.handlers import handler_table, run_here
from runtime.sim.interpreter import GEMM_KEY, act_bytes
from runtime.sim.memory import CardMemory
from runtime.sim.params import KINDS, MULT_HIGH, MULT_LOW, SHIFT_HIGH, SHIFT_LOW
from runtime.sim.schedule import schedule
from runtime.sim.timing import MODULES, Timing, conv_macs, conv_work, dma_bytes, durations, stream_activity

LARGE_CONV_MACS = 1 << 22
"""CONVs with at least this many MACs run on the thread pool (the int8 GEMM
as phases of runtime.sim.phased, or channel-split kernels from Python);
smaller ones inside the interpreter's segments, on one thread. A CONV the
GEMM does not run counts ``SLOW_KERNEL_FACTOR`` times its MACs, an 8-bit
depthwise one ``DEPTHWISE_FACTOR`` times. (With the
GEMM's CONVs as phases, 2^20 and 2^18 did no better on ResNet-50,
MobileNetV2 at 96 x 96 and ResNet-10 at 32 x 32, Zen 3: a barrier and the
last task's wait cost as much as the smaller CONVs gain. SqueezeNet's last
CONV is 125 tiles of 8 channels over 13 x 13 pixels, 0.7 M MACs each, a
quarter of its MACs, one after another through two weight buffers: pooled
from 2^19 or 2^18 its Run_sw took 1.15-1.17 times as long, and more tasks
per pooled CONV (``MIN_TASK_MACS`` at 2^16) changed nothing, in-process A/B,
2 threads, 2026-11-28.)"""

WIDE_FACTOR, WIDE_PIXELS = 4, 512
"""A CONV the GEMM runs with at least ``WIDE_PIXELS`` output pixels counts
``WIDE_FACTOR`` times its MACs against ``LARGE_CONV_MACS`` (on the pool
from 2^20): its products reuse each weight over that many columns, so they
are bound by the multiply-adds, which two threads share, not by reading
the weights, which they do not. SqueezeNet has 133 M of its 349 M MACs in
CONVs of 1 to 4 M MACs over 729 to 3025 pixels (its fire modules' squeeze
and expand tiles), which ran on one thread inside the segments while the
other waited. Run_sw, in-process A/B against ``LARGE_CONV_MACS`` alone,
Zen 3, 2 threads, same bits: SqueezeNet 0.955-0.965 (three runs), PP-LCNet
0.95 and 1.00, MobileNetV2 at 96 and 224 and ResNet-50 1.00-1.01.
ResNet-10 at 32 x 32 is untouched: its CONVs of 1 to 2.4 M MACs have 256
pixels or fewer, and pooled (at 2^21) it took 1.3 (one thread) to 1.6 times
as long, its stem's planned GEMM costing more than the interpreter's dense
kernel and the whole run no longer one interpreter call."""

DEPTHWISE_FACTOR = 256
"""An 8-bit depthwise CONV counts this many times its MACs against
``LARGE_CONV_MACS``: from 2^14 MACs it runs as a CHANNELS phase of
runtime.sim.phased (its channels in chunks over the pool, no Python between
it and the segments around; a phase's barrier costs ~1 us, 2^14 MACs ~3 us
on one thread). At ``SLOW_KERNEL_FACTOR`` (from 2^19 MACs) all but 2 of
MobileNetV2 at 96 x 96's 18 (47K to 750K MACs) and 18 of MobileNetV2's 33
ran inside the interpreter's segments, on one thread. Run_sw, in-process
A/B against 8 (the CHANNELS phase in both), Zen 3, two runs: MobileNetV2 96
0.85 and 0.90, MobileNetV2 0.91 and 0.88, PP-LCNet 0.95 and 0.93 (256, and
every depthwise CONV on the pool)."""

PACK_PARTS = parallel.NUM_THREADS * parallel.CHUNKS_PER_THREAD
"""Chunks a pooled CONV's patches are packed in (as parallel_for cuts a job)."""

SLOW_KERNEL_FACTOR = 8
"""How many times longer a MAC takes outside the int8 GEMM (depthwise and
short dense tiles: 10-20 GMAC/s on one thread, the GEMM's serial tiles
~100), so that the pool takes the tiles that are long, not the ones with many MACs."""


@dataclass
class _Lane:
    """A card run that runs concurrently with the phase's other lanes:
    epoch ``e`` is ``run.order[stops[e - 1]:stops[e]]`` (from 0, to the end)."""

    run: _CardRun
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
class _CardRun:
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
    GEMM working buffers, its ``err`` and ``pad``), planned at Init
    (:meth:`plan_groups`)."""
    _touches: groups.Touches | None = field(init=False, repr=False, default=None)
    _tables: list = field(init=False, repr=False, default_factory=list)

    def __post_init__(self):
        self.code = self.prog
        self.err = np.zeros(4, np.int64)
        self.ctl = np.zeros(3, np.int64)
        self.plan = np.zeros(conv_gemm.PLAN_SIZE, np.int64)
        self._gather()
        self.grouped = (np.zeros((0, 3), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                        np.zeros(0, np.int64), np.zeros(0, np.int64), self.gemm.work, self.err,
                        np.zeros(8, np.uint8))

    def _gather(self) -> None:
        """The interpreter's arguments after ``dram``."""
        mem, gemm = self.memory, self.gemm
        strides = np.array([mem.wgt.stride, mem.act.stride, mem.acc.stride], np.int64)
        self.state = (mem.wgt.i8, mem.wgt.i16, mem.wgt.i32, mem.wgt.i64, mem.wgt.u8, mem.act.i8, mem.act.i16,
                      mem.act.u8, mem.acc.i32, mem.acc.i64, mem.acc.u8, strides, self.err, np.zeros(8, np.uint8),
                      gemm.index, gemm.templates, gemm.kernels, gemm.work, self.handlers)

    def plan_groups(self, orders: Sequence[np.ndarray], config: HardwareConfig) -> None:
        """Work out the stretches of ``orders`` (the lane's epochs, run
        after run), cutting the segments that pay into GROUPS phases
        (runtime/sim/groups.py); with any, the second set of working
        buffers. At Init, before any run: the arguments gathered here are
        the ones every later call uses."""
        if parallel.NUM_THREADS < 2 or not np.any(self.gemm.index >= 0) or not groups.known(self.prog):
            return
        self._touches = groups.Touches(self.code, self.prog, self.slot, config)
        for order in orders:
            self.stretches(order)
        self._touches = None
        if not self._tables:
            return
        tables, rows, offset, base = [], [], 0, 0
        for table, grouped in self._tables:
            table = table.copy()
            table[:, :2] += offset
            table[:, groups.NEED] = np.where(table[:, groups.NEED] >= 0, table[:, groups.NEED] + base, -1)
            tables.append(table)
            rows.append(grouped)
            offset += grouped.size
            base += table.shape[0]
        first, second = conv_gemm.second_set(self.gemm.work)
        self.gemm.work = first
        self._gather()
        count = base
        self.grouped = (np.concatenate(tables), np.concatenate(rows), np.zeros(count, np.int64),
                        np.zeros(count, np.int64), np.zeros(count, np.int64), second, np.zeros(4, np.int64),
                        np.zeros(8, np.uint8))

    def _cut(self, phases: np.ndarray, order: np.ndarray) -> np.ndarray:
        """``phases`` with each SEGMENT that pays cut into a GROUPS phase
        between a segment that reports the previous pooled CONV's output and
        one that prepares the next (group numbers count on from the groups
        planned so far)."""
        out = []
        for row in phases.tolist():
            kind, first, end, after, conv = row
            found = None
            if kind == phased.SEGMENT and end > first:
                found = groups.split(self.prog, self.code, order, first, end, self._touches, self.gemm.index,
                                     SLOW_KERNEL_FACTOR)
            if found is None:
                out.append(row)
                continue
            low = sum(table.shape[0] for table, _ in self._tables)
            self._tables.append(found)
            out += [[phased.SEGMENT, first, first, after, -1], [phased.GROUPS, low, low + found[0].shape[0], -1, -1],
                    [phased.SEGMENT, end, end, -1, conv]]
        return np.array(out, np.int64).reshape(-1, 5)

    def stretches(self, order: np.ndarray) -> list[tuple]:
        """``order``'s stretches (runtime.sim.phased.stretches) as (phase
        table, position of the Python step after it or -1, whether it runs
        alone: no phase to share, the span of ``order`` it interprets when
        it is one segment or None), worked out on its first run (an order is
        a lane's epoch: the same array, run after run)."""
        known = self._stretches.get(id(order))
        if known is not None and known[0] is order:  # the same array object (kept alive here), not a new one at its id
            return known[1]
        found = []
        for phases, python in phased.stretches(self.prog, order, self.gemm.index, self.large, self.handlers,
                                               self.code):
            if self._touches is not None:
                phases = self._cut(phases, order)
            first, end = int(phases[0, phased.FIRST]), int(phases[0, phased.END])
            span = None
            if phases.shape[0] == 1:
                span = order if first == 0 and end == order.shape[0] else order[first:end]
            found.append((phases, python, not phased.shares_work(phases), span))
        self._stretches[id(order)] = (order, found)
        return found

    def stopped(self, phases: np.ndarray, done: int) -> int:
        """What failed where the interpreter, run on a stretch of one segment
        (``phases``), returned ``done`` short of its end: ``ctl[FAILED_AT]``
        set, phased.BAD_PARAM or phased.STOPPED returned."""
        self.ctl[phased.FAILED_AT] = int(phases[0, phased.FIRST]) + (-done - 1 if done < 0 else done)
        return phased.BAD_PARAM if done < 0 else phased.STOPPED

    def run_stretch(self, phases: np.ndarray, order: np.ndarray, dram: np.ndarray, alone: bool, span) -> int:
        """One stretch: its phases on the pool (runtime.sim.phased.run_card),
        or, for a stretch of one segment, the interpreter on ``span`` with no
        driver around it (a small model's whole run). Returns 0, or what
        failed (phased.BAD_PARAM, phased.STOPPED; ``ctl[FAILED_AT]`` where).
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
            return 0 if done == span.shape[0] else self.stopped(phases, done)
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
        parallel.run_phases(driver, phases.shape[0], phases, PACK_PARTS, known[2], alone=alone)
        return int(self.ctl[phased.STATUS])


class Simulator:
    """Instruction-accurate simulator of a program's streams (see the module
    docstring and docs/simulator.md). ``timing`` is static; ``instructions``
    is the number executed per run. ``constant_bytes``: the DRAM bytes from
    address 0 that the caller writes only before the first run (the weight
    image; runtime.device says which), where CONVs may read their weights in
    place (runtime/sim/forward.py); 0, the default, for DRAM images the
    caller may change between runs."""

    def __init__(self, config: HardwareConfig, streams: Mapping[Any, bytes], dram_bytes_used: int,
                 constant_bytes: int = 0):
        try:
            self._extents = validate_streams(streams, config, dram_bytes_used)
        except IsaError as exc:
            raise SimulatorError(str(exc)) from None
        self.config, self.dram_bytes_used = config, dram_bytes_used
        decoded = {StreamKey(*(int(k) for k in key)): decode_array(stream_bytes(data))[0]
                   for key, data in streams.items()}
        self._streams = dict(sorted(decoded.items(), key=lambda item: (item[0].phase, item[0].card, item[0].cluster)))
        self._slots = {}
        for key in self._streams:
            self._slots.setdefault(key.card, {}).setdefault(key.cluster, len(self._slots.get(key.card, {})))
        self._memory = {card: CardMemory.allocate(config, len(slots)) for card, slots in self._slots.items()}
        self.instructions = sum(arr.shape[0] for arr in self._streams.values())
        self._phases: list[list[_Lane]] = []
        self.timing = self._plan()
        runs = [lane.run for phase in self._phases for lane in phase]
        for run, code in zip(runs, forward.redirect(runs, constant_bytes)):
            if code is not None:
                run.code = code
                plans = run.gemm.index[(code[:, forward.REDIRECT] == forward.FROM_DRAM) & (run.gemm.index >= 0)]
                run.gemm.work[conv_gemm.HELD_AT][plans] = conv_gemm.CONSTANT  # packed once, never compared
        for phase in self._phases:
            for lane in phase:
                lane.run.plan_groups(lane.epochs, config)
        self._epochs = [max(len(lane.epochs) for lane in phase) for phase in self._phases]
        self._sram = [view for memory in self._memory.values() for view in memory.reachable(self._extents)
                      if view.size]
        """The SRAM a run zeroes first (runtime.sim.memory.CardMemory.reachable)."""
        self._patch_keys = [lane.run.gemm.work[key] for phase in self._phases for lane in phase
                            for key in (GEMM_KEY, conv_gemm.PEER)]
        self._single = None
        """(lane, its rows) where the whole program is one lane of one epoch
        in one phase (a one-card program of one cluster: the usual binary),
        which :meth:`run_checked` runs with no loops over phases, epochs and
        lanes."""
        if len(self._phases) == 1 and len(self._phases[0]) == 1 and self._epochs[0] == 1:
            lane = self._phases[0][0]
            self._single = (lane, lane.epoch(0))
        self._whole: tuple | None = None
        """The single lane's run as one call of the interpreter, where it is
        one (:meth:`_whole_run`): what a small model's run comes down to."""

    # ------------------------------------------------------------ planning
    def _plan(self) -> Timing:
        """Schedule every phase; build the per-card execution plans; sum up."""
        starts, ends, durs, phase_cycles = {}, {}, {}, {}
        offset = 0
        self._phase_numbers = sorted({key.phase for key in self._streams})
        for phase in self._phase_numbers:
            keys = [key for key in self._streams if key.phase == phase]
            sharers = {card: sum(1 for k in keys if k.card == card) for card in {k.card for k in keys}}
            for key in keys:
                durs[key] = durations(self._streams[key], self.config, sharers[key.card])
            start, end = self._schedule(phase, keys, durs)
            bases = np.cumsum([0] + [self._streams[k].shape[0] for k in keys])
            for j, key in enumerate(keys):
                starts[key] = start[bases[j]:bases[j + 1]] + offset
                ends[key] = end[bases[j]:bases[j + 1]] + offset
            cycles = int(end.max())
            phase_cycles[phase] = cycles
            offset += cycles
            self._phases.append([lane for card in sorted(sharers)
                                 for lane in self._lanes(card, [k for k in keys if k.card == card], start, end,
                                                         keys, bases)])
        return self._summary(starts, ends, durs, phase_cycles)

    def _schedule(self, phase: int, keys: list[StreamKey], durs: dict) -> tuple[np.ndarray, np.ndarray]:
        """start and end cycles of the phase's rows (streams concatenated)."""
        prog = np.concatenate([self._streams[k] for k in keys])
        sbase = np.cumsum([0] + [self._streams[k].shape[0] for k in keys]).astype(np.int64)
        module = prog[:, COL_MODULE].astype(np.int64)
        pops, pushes = (m.astype(np.int64) for m in queue_masks(prog))
        modidx = np.zeros(prog.shape[0], np.int64)
        modseq, mstart = [], [0]
        for j in range(len(keys)):
            rows = np.arange(sbase[j], sbase[j + 1])
            for m in Module:
                mine = rows[module[rows] == m]
                modidx[mine] = np.arange(mine.size)
                modseq.append(mine)
                mstart.append(mstart[-1] + mine.size)
        barrier = np.full(prog.shape[0], -1, np.int64)
        syncs = np.flatnonzero(prog[:, COL_OPCODE] == Op.SYNC)
        ids = prog[syncs, column(Op.SYNC, "barrier")]
        unique, index = np.unique(ids, return_inverse=True)
        barrier[syncs] = index
        participants = np.zeros(unique.size, np.int64)
        participants[index] = prog[syncs, column(Op.SYNC, "participants")]
        start = np.zeros(prog.shape[0], np.int64)
        end = np.zeros(prog.shape[0], np.int64)
        done = schedule(sbase, module, pops, pushes, np.concatenate([durs[k] for k in keys]), barrier, participants,
                        modidx, np.concatenate(modseq).astype(np.int64), np.array(mstart, np.int64),
                        COMMAND_QUEUE_DEPTH, TOKEN_QUEUE_DEPTH, start, end)
        if not done:
            raise SimulatorError(f"phase {phase}: the streams {[tuple(k) for k in keys]} deadlock")
        return start, end

    def _lanes(self, card: int, keys: list[StreamKey], start: np.ndarray, end: np.ndarray,
               phase_keys: list[StreamKey], phase_bases: np.ndarray) -> list[_Lane]:
        """The card's streams as lanes (runtime/sim/lanes.py), or all of
        them as one lane where they share DRAM bytes within an epoch."""
        first = {k: int(phase_bases[phase_keys.index(k)]) for k in keys}
        cycles = {k: (start[first[k]:first[k] + self._streams[k].shape[0]],
                      end[first[k]:first[k] + self._streams[k].shape[0]]) for k in keys}
        if len(keys) > 1:
            prog = np.concatenate([self._streams[k] for k in keys])
            begun = np.concatenate([cycles[k][0] for k in keys])
            cuts = lanes.epochs(prog, np.concatenate([cycles[k][1] for k in keys]))
            owner = np.concatenate([np.full(self._streams[k].shape[0], j) for j, k in enumerate(keys)])
            if lanes.race_free(prog, begun, owner, cuts, self.dram_bytes_used):
                out = []
                for k in keys:
                    run = self._card_run(card, [k], cycles)
                    out.append(_Lane(run, np.searchsorted(cycles[k][0][run.order], cuts, side="left")))
                return out
        return [_Lane(self._card_run(card, keys, cycles), np.zeros(0, np.int64))]

    def _card_run(self, card: int, keys: list[StreamKey], cycles: dict) -> _CardRun:
        """The rows of ``keys`` (streams of ``card``) in execution order: by
        start cycle, stream, index."""
        prog = np.ascontiguousarray(np.concatenate([self._streams[k] for k in keys]))
        cycle = np.concatenate([cycles[k][0] for k in keys])
        stream = np.concatenate([np.full(self._streams[k].shape[0], j) for j, k in enumerate(keys)])
        index = np.concatenate([np.arange(self._streams[k].shape[0]) for k in keys])
        order = np.lexsort((index, stream, cycle)).astype(np.int64)
        slot = np.concatenate([np.full(self._streams[k].shape[0], self._slots[card][k.cluster]) for k in keys])
        large = np.zeros(prog.shape[0], np.uint8)
        convs = np.flatnonzero(prog[:, COL_OPCODE] == Op.CONV)
        pixels, channels, depth = conv_work(prog, convs)
        weight = np.array([1 if conv_gemm.eligible(prog[r]) else DEPTHWISE_FACTOR
                           if conv_kernels.kernel_kind(prog[r]) == conv_kernels.DEPTHWISE8 else SLOW_KERNEL_FACTOR
                           for r in convs], np.int64)
        macs = pixels * channels * depth
        large[convs] = (macs * weight >= LARGE_CONV_MACS) | ((weight == 1) & (pixels >= WIDE_PIXELS)
                                                             & (macs * WIDE_FACTOR >= LARGE_CONV_MACS))
        bases = np.cumsum([0] + [self._streams[k].shape[0] for k in keys]).astype(np.int64)
        gemm = conv_gemm.plan(prog, large)
        return _CardRun(card, prog, order, slot.astype(np.int64), large, keys, bases, gemm,
                        handler_table(prog, large, gemm.index), self._memory[card])

    def _summary(self, starts, ends, durs, phase_cycles) -> Timing:
        busy = dict.fromkeys(MODULES, 0)
        macs = read = written = 0
        capacity = 0
        per_cluster = self.config.units_per_cluster * self.config.macs_per_unit
        for key, arr in self._streams.items():
            for m, name in zip(Module, MODULES):
                busy[name] += int(durs[key][arr[:, COL_MODULE] == m].sum())
            macs += conv_macs(arr)
            read += int(dma_bytes(arr, np.flatnonzero(arr[:, COL_OPCODE] == Op.LOAD), Op.LOAD).sum())
            written += int(dma_bytes(arr, np.flatnonzero(arr[:, COL_OPCODE] == Op.STORE), Op.STORE).sum())
            capacity += phase_cycles[key.phase] * per_cluster
        total = sum(phase_cycles.values())
        activity = {key: stream_activity(arr, starts[key], ends[key], durs[key]) for key, arr in self._streams.items()}
        return Timing(self.config.clock_hz, starts, ends, durs, phase_cycles, total, busy, macs, read, written,
                      macs / capacity if capacity else 0.0, activity)

    @property
    def streams(self) -> dict[StreamKey, np.ndarray]:
        """The decoded streams (one row per instruction), by key, in phase, card, cluster order."""
        return dict(self._streams)

    @property
    def lanes(self) -> list[int]:
        """Per phase, how many lanes it runs as (runtime/sim/lanes.py): one
        per stream where the streams of each card share no DRAM byte between
        barriers, one per card where they do."""
        return [len(phase) for phase in self._phases]

    # ------------------------------------------------------------ running
    def run(self, drams: Sequence[np.ndarray], after_phase: Callable[[int], None] | None = None) -> None:
        """Run every phase on the DRAM images (one uint8 array per card,
        modified in place), ``after_phase(phase)`` between phases (the host's
        copies between cards). SRAM starts zeroed on every run (up to the
        extents no instruction reaches past: the rest was never written)."""
        self.check_drams(drams)
        self.run_checked(drams, after_phase)

    def check_drams(self, drams: Sequence[np.ndarray]) -> None:
        """SimulatorError unless ``drams`` has a DRAM image the program can
        run on for each of its cards: what :meth:`run` checks first."""
        for card in self._memory:
            if card >= len(drams):
                raise SimulatorError(f"the program runs on card {card} but only {len(drams)} DRAM images were given")
            dram = drams[card]
            if not (isinstance(dram, np.ndarray) and dram.dtype == np.uint8 and dram.ndim == 1
                    and dram.flags.c_contiguous and dram.flags.writeable):
                raise SimulatorError(f"DRAM image of card {card} must be a writeable contiguous 1-D uint8 array")
            if dram.size < self.dram_bytes_used:
                raise SimulatorError(f"DRAM image of card {card} has {dram.size} bytes; the program uses "
                                     f"{self.dram_bytes_used}")

    def run_checked(self, drams: Sequence[np.ndarray], after_phase: Callable[[int], None] | None = None) -> None:
        """:meth:`run` on DRAM images :meth:`check_drams` passed, which stay
        as they were (a backend that owns them checks them once)."""
        if self._single is not None and after_phase is None:
            ready = self._whole
            if ready is not None and ready[1] is drams[ready[0].card]:  # the interpreter on every row, directly,
                done = ready[2](*ready[3])  # SRAM and the patch keys cleared by it first
                if done != ready[4]:
                    self._stopped(ready[0], ready[0].stopped(ready[5], done))
                return
        for view in self._sram:
            view.fill(0)
        for key in self._patch_keys:  # SRAM is zeroed: no packed patches stand for a tile any more
            key[0] = 0
        if self._single is not None and after_phase is None:
            lane, order = self._single
            if order.size:
                self._execute(lane.run, order, drams[lane.run.card])
                self._whole = self._whole_run(lane.run, order, drams[lane.run.card],
                                              whole.clear_table(self._sram, self._patch_keys))
            return
        for number, phase, epochs in zip(self._phase_numbers, self._phases, self._epochs):
            concurrent = len(phase) > 1 and len(phase) >= parallel.NUM_THREADS
            for e in range(epochs):
                if concurrent:
                    parallel_for(_run_lanes, len(phase), self, phase, e, drams)
                    continue
                for lane in phase:
                    order = lane.epoch(e)
                    if order.size:
                        self._execute(lane.run, order, drams[lane.run.card])
            if after_phase is not None:
                after_phase(number)

    def _execute(self, run: _CardRun, order: np.ndarray, dram: np.ndarray) -> None:
        """Run ``order`` (some of ``run``'s rows, in order) on the card's
        memory: its phases on the pool (runtime.sim.phased), and between
        them what the interpreter hands back (large CONVs the GEMM does not
        plan; instructions without an entry point), from Python."""
        mem, err, gemm = run.memory, run.err, run.gemm
        for phases, python, alone, span in run.stretches(order):
            status = run.run_stretch(phases, order, dram, alone, span)
            if status:
                self._stopped(run, status)
            if python < 0:
                continue
            row = order[python]
            ins, slot = run.prog[row], int(run.slot[row])
            if not (conv_kernels.run_large(ins, mem, slot, err) if int(ins[COL_OPCODE]) == Op.CONV
                    else run_here(ins, mem, slot, err)):
                err[3] = row
                raise self._param_error(run, err)
            first, end = act_bytes(run.prog[row])
            if end > first:
                base = mem.act.stride * int(run.slot[row])
                conv_gemm.report_written(gemm.work, base + int(first), base + int(end))

    def _stopped(self, run: _CardRun, status: int) -> None:
        """The error of a stretch that returned ``status`` (not 0)."""
        if status == phased.BAD_PARAM:
            raise self._param_error(run, run.err)
        raise SimulatorError(f"internal error: the interpreter stopped at position "
                             f"{int(run.ctl[phased.FAILED_AT])} of a segment it should have run through")

    @staticmethod
    def _whole_run(run: _CardRun, order: np.ndarray, dram: np.ndarray, clear: np.ndarray) -> tuple | None:
        """(run, dram, the interpreter's compiled entry, its arguments, the
        rows, the phase table, the arrays its table of addresses points to,
        kept alive) where ``order`` is one stretch that the interpreter runs
        through with no Python step (a small model's whole run), after a
        first run resolved them, clearing what ``clear`` names first
        (runtime.sim.whole.clear_table); None otherwise."""
        stretches = run.stretches(order)
        if len(stretches) != 1:
            return None
        phases, python, _, span = stretches[0]
        known = run._span_args
        if python >= 0 or span is None or run._interpreter is None or known is None or known[0] is not span \
                or known[1] is not dram:
            return None
        return (run, dram, run._interpreter, (known[2][0], known[2][1], clear), span.shape[0], phases, known[3])

    def _param_error(self, run: _CardRun, err: np.ndarray) -> SimulatorError:
        kind, index, value, row = (int(v) for v in err)
        j = int(np.searchsorted(run.bases, row, side="right")) - 1
        key, i = run.keys[j], row - int(run.bases[j])
        op = Op(int(run.prog[row, COL_OPCODE]))
        what, name = KINDS[kind]
        low, high = (MULT_LOW, MULT_HIGH) if "mult" in name else (SHIFT_LOW, SHIFT_HIGH)
        return SimulatorError(f"stream {tuple(key)}: instruction {i} ({op.mnemonic}): {what} {index} has "
                              f"{name}={value}, outside [{low}, {high}] (a bad PARAM block in SRAM)")


def _run_lanes(begin: int, stop: int, simulator: Simulator, phase: list[_Lane], e: int, drams) -> None:
    """Epoch ``e`` of lanes [begin, stop) of a phase (a parallel_for body)."""
    for lane in phase[begin:stop]:
        order = lane.epoch(e)
        if order.size:
            simulator._execute(lane.run, order, drams[lane.run.card])
