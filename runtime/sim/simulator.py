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

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from runtime import parallel
from runtime.cpu_load import SplitWatch, watched
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
from runtime.parallel import parallel_for
from runtime.sim import conv as conv_kernels
from runtime.sim import conv_gemm, forward, lanes, phased, whole
from runtime.sim.card_run import SLOW_KERNEL_FACTOR, CardRun, Lane
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
        self._phases: list[list[Lane]] = []
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
        self._split = None
        """Whether the single lane's runs go to the pool or stay on the
        caller (runtime.cpu_load.SplitWatch), where it runs two ways
        (CardRun.two_ways): SqueezeNet's Run_sw took 1.08 and MobileNetV2
        at 96's 1.15 times as long on two threads as on one where the
        host's two cores were far apart (Zen 4), 0.64 where close. On the
        caller it runs as one thread would: without the groups cut for the
        pool (runtime/sim/groups.py), which cost ResNet-10 at 32 x 32 (a
        small model's whole run, one interpreter call without them, 72
        groups with them) 0.54-0.57 ms a run alone against 0.40-0.42 as
        one call (docs/simulator.md, "groups within a segment"). So does a
        run the pool would not take (it stands aside)."""
        if self._single is not None and parallel.NUM_THREADS > 1 and self._single[0].run.two_ways(self._single[1]):
            self._split = SplitWatch()

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
               phase_keys: list[StreamKey], phase_bases: np.ndarray) -> list[Lane]:
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
                    out.append(Lane(run, np.searchsorted(cycles[k][0][run.order], cuts, side="left")))
                return out
        return [Lane(self._card_run(card, keys, cycles), np.zeros(0, np.int64))]

    def _card_run(self, card: int, keys: list[StreamKey], cycles: dict) -> CardRun:
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
        return CardRun(card, prog, order, slot.astype(np.int64), large, keys, bases, gemm,
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
            if ready is not None and self._split is None and ready[1] is drams[ready[0].card]:
                self._run_whole(ready)
                return
            lane, order = self._single
            if order.size:
                run, dram = lane.run, drams[lane.run.card]
                if self._split is None or parallel.stands_aside():  # one way, or the pool would not take it
                    self._single_run(run, order, dram, True)
                else:
                    watched(self._split, lambda alone: self._single_run(run, order, dram, alone))
            return
        self._clear()
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

    def _single_run(self, run: CardRun, order: np.ndarray, dram: np.ndarray, alone: bool) -> bool:
        """The single lane's run (:attr:`_single`): on the pool's threads, or
        on the caller ``alone``, as one thread runs it (its plain stretches,
        CardRun.stretches), through the interpreter's compiled entry directly
        where that is one call (:attr:`_whole`). Whether the pool's threads
        took part."""
        ready = self._whole
        if alone and ready is not None and ready[1] is dram:
            self._run_whole(ready)
            return False
        self._clear()
        pooled = self._execute(run, order, dram, alone)
        if alone:
            self._whole = self._whole_run(run, order, dram, whole.clear_table(self._sram, self._patch_keys))
        return pooled

    def _run_whole(self, ready: tuple) -> None:
        """The single lane's run as :attr:`_whole` made it: the interpreter
        on every row through its compiled entry, which clears SRAM and the
        patch keys first."""
        done = ready[2](*ready[3])
        if done != ready[4]:
            self._stopped(ready[0], ready[0].stopped(ready[5], done))

    def _clear(self) -> None:
        """Zero SRAM, and with it every packed-patch key (no packed patches stand for a tile any more)."""
        for view in self._sram:
            view.fill(0)
        for key in self._patch_keys:
            key[0] = 0

    def _execute(self, run: CardRun, order: np.ndarray, dram: np.ndarray, alone: bool = False) -> bool:
        """Run ``order`` (some of ``run``'s rows, in order) on the card's
        memory: its phases on the pool (runtime.sim.phased; on the caller
        alone where ``alone``), and between them what the interpreter hands
        back (large CONVs the GEMM does not plan; instructions without an
        entry point), from Python. Whether the pool's threads took part."""
        mem, err, gemm = run.memory, run.err, run.gemm
        pooled = False
        for phases, python, by_caller, span in run.stretches(order, plain=alone):
            status, on_pool = run.run_stretch(phases, order, dram, by_caller, span, alone)
            pooled |= on_pool
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
        return pooled

    def _stopped(self, run: CardRun, status: int) -> None:
        """The error of a stretch that returned ``status`` (not 0)."""
        if status == phased.BAD_PARAM:
            raise self._param_error(run, run.err)
        raise SimulatorError(f"internal error: the interpreter stopped at position "
                             f"{int(run.ctl[phased.FAILED_AT])} of a segment it should have run through")

    @staticmethod
    def _whole_run(run: CardRun, order: np.ndarray, dram: np.ndarray, clear: np.ndarray) -> tuple | None:
        """(run, dram, the interpreter's compiled entry, its arguments, the
        rows, the phase table, the arrays its table of addresses points to,
        kept alive) where ``order`` is one stretch that the interpreter runs
        through with no Python step (a small model's whole run), after a
        first run resolved them, clearing what ``clear`` names first
        (runtime.sim.whole.clear_table); None otherwise."""
        stretches = run.stretches(order, plain=True)
        if len(stretches) != 1:
            return None
        phases, python, _, span = stretches[0]
        known = run._span_args
        if python >= 0 or span is None or run._interpreter is None or known is None or known[0] is not span \
                or known[1] is not dram:
            return None
        return (run, dram, run._interpreter, (known[2][0], known[2][1], clear), span.shape[0], phases, known[3])

    def _param_error(self, run: CardRun, err: np.ndarray) -> SimulatorError:
        kind, index, value, row = (int(v) for v in err)
        j = int(np.searchsorted(run.bases, row, side="right")) - 1
        key, i = run.keys[j], row - int(run.bases[j])
        op = Op(int(run.prog[row, COL_OPCODE]))
        what, name = KINDS[kind]
        low, high = (MULT_LOW, MULT_HIGH) if "mult" in name else (SHIFT_LOW, SHIFT_HIGH)
        return SimulatorError(f"stream {tuple(key)}: instruction {i} ({op.mnemonic}): {what} {index} has "
                              f"{name}={value}, outside [{low}, {high}] (a bad PARAM block in SRAM)")


def _run_lanes(begin: int, stop: int, simulator: Simulator, phase: list[Lane], e: int, drams) -> None:
    """Epoch ``e`` of lanes [begin, stop) of a phase (a parallel_for body)."""
    for lane in phase[begin:stop]:
        order = lane.epoch(e)
        if order.size:
            simulator._execute(lane.run, order, drams[lane.run.card])
