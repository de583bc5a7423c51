"""A schedule: an executor's plan lowered, once, to operations over fixed
buffers, run by one call on every thread.

For each step of the plan, in order, the builder asks the step's kernel to
lower itself (its ``lower(ctx, args, attrs)``, given a :class:`Lowering`):
to emit operations (:mod:`runtime.schedule.ops`) over the operands it is
given and the outputs it places, or to decline (return False), in which
case the step stays a Python call between two runs of operations. The
values that operations write live in one arena, planned from their
lifetimes (first fit, largest first) and kept between runs, so that a
layer's output is warm memory, not a fresh mapping. Program inputs and the
outputs of Python steps that operations read are bound per run.

A scheduled run makes one Python call per run of consecutive operations
instead of several per step, and the pool threads go from one operation to
the next inside Numba (a barrier each: :func:`runtime.parallel.run_phases`),
where the per-step path published a job per kernel call: on a 2-core host
that Python cost ~30 us a step once the kernels before had evicted it.
"""
from __future__ import annotations

import math
import os
import platform
import threading
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from runtime import parallel
from runtime.chunking import tapered_chunks
from runtime.cpu_load import SplitWatch, watched
from runtime.errors import ExecutionError, TesseraError
from runtime.jit import data_address
from runtime.kernels.weight_cache import freeze_guards, frozen
from runtime.schedule.arena import ALIGN, Buffer
from runtime.schedule.arena import plan as arena_plan
from runtime.schedule.ops import COUNT, ENTRY, FIRST, KIND, REC, op_address, run_schedule
from runtime.schedule.records import Operand

ENABLED = os.environ.get("TESSERA_SCHEDULE", "1") != "0"
"""``TESSERA_SCHEDULE=0`` runs every step through Python (to compare)."""
class Lowering:
    """What a kernel's ``lower`` works with for one step: its outputs'
    types, and the means to place them, pin constants, take scratch memory
    and emit operations. Nothing it does is kept unless ``lower`` returns
    True."""

    def __init__(self, builder: "_Builder", outputs: Sequence[tuple[tuple, np.dtype]]):
        self._builder = builder
        self.out_types = list(outputs)
        self.outputs: list[Operand | None] = [None] * len(outputs)
        self.touched: list[int] = []
        self.spread_bases: list[int] = []
        self.light_bases: list[int] = []
        self.constants: list[np.ndarray] = []
        self.ops: list[tuple[int, list[int], list[tuple[int, int]]]] = []

    def frozen(self, array: np.ndarray) -> bool:
        """Whether a program constant is frozen (runtime.kernels.weight_cache):
        a step may lower the forms derived from it (packed weights) only
        then, and each run checks it still is (else the run goes through
        Python, which looks them up again)."""
        if not frozen(array):
            return False
        self.constants.append(array)
        return True

    def pin(self, array: np.ndarray) -> tuple[int, int]:
        """(base, 0) of an array that stays as it is while the schedule
        lives (a constant, packed weights, a plan), kept alive by the
        schedule: it must be C-contiguous, as everything operations read."""
        if not (isinstance(array, np.ndarray) and array.flags.c_contiguous):
            raise ValueError("only C-contiguous arrays can be pinned")
        return self._builder.pin(array), 0

    def uses(self, operand: Operand) -> Operand:
        """``operand``, noted as read or written by this step."""
        self.touched.append(operand.base)
        return operand

    def spread(self, base: int) -> None:
        """Note that this step's operation reads buffer ``base`` on every
        thread, each a share of all its lines or all of them (a GEMM's B,
        whether its tasks cut A's rows or B's columns): afterwards the
        lines sit in every core's cache, and a core writing one must first
        take it from the others (~30 ns a line measured on Zen 4, where a
        line it holds alone costs ~1)."""
        self.spread_bases.append(base)

    def light(self, operand: Operand) -> Operand:
        """``operand``, an output this step writes with little work per line
        (a depthwise convolution: 9 multiply-adds an element), cut into
        leading planes as the GEMM cuts its output rows: the arena keeps
        it off lines a :meth:`spread` read just left in both cores' caches,
        where it can (:func:`runtime.schedule.arena.plan`)."""
        self.light_bases.append(operand.base)
        return operand

    def output(self, index: int, shape: tuple, dtype=np.float32, like: Operand | None = None) -> Operand:
        """Output ``index``, of the ``shape`` and ``dtype`` the step's kernel
        writes (the program must say the same: a binary is not trusted to
        size the memory operations write): a new arena buffer, or ``like``'s
        memory (a step writing in place: ``like`` must be writable and of
        the output's size and dtype)."""
        if (tuple(shape), np.dtype(dtype)) != self.out_types[index]:
            raise ValueError(f"output {index} is {list(shape)} {np.dtype(dtype)}, the program says "
                             f"{list(self.out_types[index][0])} {self.out_types[index][1]}")
        shape, dtype = self.out_types[index]
        if like is not None:
            if not like.writable or like.nbytes != math.prod(shape) * dtype.itemsize or like.dtype != dtype:
                raise ValueError("an output can take only a writable value of its own size and dtype")
            out = Operand(like.base, like.offset, shape, dtype)
        else:
            out = self.scratch(shape, dtype)
        self.outputs[index] = out
        return self.uses(out)

    def alias(self, index: int, like: Operand) -> Operand:
        """Output ``index`` as ``like``'s bytes in the output's shape (a
        reshaping view: no operation); nothing may write it in place."""
        shape, dtype = self.out_types[index]
        if like.nbytes != math.prod(shape) * dtype.itemsize or like.dtype != dtype:
            raise ValueError("a view must have its input's size and dtype")
        self.outputs[index] = Operand(like.base, like.offset, shape, dtype, writable=False)
        return self.uses(self.outputs[index])

    def scratch(self, shape: tuple, dtype) -> Operand:
        """Arena memory for this step alone."""
        dtype = np.dtype(dtype)
        base = self._builder.add(Buffer("arena", max(math.prod(shape) * dtype.itemsize, 1)))
        return self.uses(Operand(base, 0, tuple(shape), dtype))

    def part_scratch(self, nbytes: int, parts: int) -> tuple[Operand, int]:
        """Arena memory for this step alone, ``parts`` buffers of ``nbytes``
        each on cache lines of their own (one per thread of an operation
        whose parts each write their own): float32 elements, and the bytes
        from one buffer to the next."""
        stride = -(-nbytes // ALIGN) * ALIGN
        return self.scratch((parts * stride // 4,), np.float32), stride

    def emit(self, kind: int, rec: Sequence[int], count: int, grain: int = 1, spans=None,
             spread: Sequence[int] = ()) -> None:
        """One operation of ``kind`` over ``count`` items, in chunks as
        ``parallel_for`` would cut them, tapered toward the middle
        (:func:`~runtime.chunking.tapered_chunks`), or ``spans``: the chunks
        given. ``spread``: the buffers each of its chunks reads lines of
        throughout (:meth:`spread`, where it has more than one chunk)."""
        if spans is None:
            spans = tapered_chunks(count, parallel.NUM_THREADS * parallel.CHUNKS_PER_THREAD, grain)
        if len(spans) > 1:
            for base in spread:
                self.spread(base)
        self.ops.append((kind, [int(v) for v in rec], [(int(a), int(b)) for a, b in spans]))


@dataclass
class _Ops:
    """A run of consecutive operations: one call of the driver (none when
    its steps emit no operation: views). ``steps``: the plan steps lowered
    into it, each with the number of operations it emitted, in order.
    ``alone``: no operation has a second chunk for another thread, so the
    caller runs them all and wakes no pool thread, whose wake-up it would
    wait for at each operation's barrier (one 3x3 convolution of a 32x32
    image: 51-62 -> 32 us a call, Zen 3)."""

    ops: np.ndarray
    spans: np.ndarray
    steps: list[tuple[Any, int]]

    def __post_init__(self):
        self.alone = bool(len(self.ops)) and bool((self.ops[:, COUNT] <= 1).all())


@dataclass
class _Computed:
    """Where a value operations computed is, for Python to read: an array
    over the arena (``view``), or ``shape``/``dtype`` at byte ``offset``
    of the value in slot ``source`` (a program input or a Python step's
    output it is a view of)."""

    view: np.ndarray | None
    source: int = -1
    offset: int = 0
    shape: tuple = ()
    dtype: np.dtype | None = None

    def array(self, env: list) -> np.ndarray:
        if self.view is not None:
            return self.view
        flat = env[self.source].reshape(-1).view(np.uint8)
        return flat[self.offset:self.offset + math.prod(self.shape) * self.dtype.itemsize].view(
            self.dtype).reshape(self.shape)


@dataclass
class _PythonStep:
    """A step run through Python: ``reads`` are the values operations
    computed that it reads (slot, :class:`_Computed`), ``binds`` the outputs
    operations read later (slot, base, shape, dtype)."""

    fn: Any
    step: Any
    attrs: Any
    reads: list
    binds: list


class Schedule:
    """One plan lowered (see the module docstring). :meth:`run` runs it on
    a run's values, or returns None when it cannot (another thread is
    running it, or a pinned constant has been made writeable, or timings
    are asked for off x86: :data:`CYCLE_COUNTER`)."""

    def __init__(self, parts: list, recs: np.ndarray, bases: np.ndarray, arena: np.ndarray, inputs: list,
                 outputs: list, pinned: list, constants: list, lowered: int):
        self.parts, self.recs, self.bases, self.arena = parts, recs, bases, arena
        self.inputs, self.outputs, self.pinned, self.constants = inputs, outputs, pinned, constants
        self.lowered = lowered
        """Steps that run as operations (the others run through Python)."""
        self.guards = freeze_guards(constants)
        """The arrays whose read-only flags a run checks: while none is
        writeable, every constant operations rely on is still frozen."""
        self._lock = threading.Lock()
        shared = any(isinstance(part, _Ops) and len(part.ops) and not part.alone for part in parts)
        self.split = SplitWatch() if shared and parallel.NUM_THREADS > 1 else None
        """Whether runs go to the pool or stay on the caller
        (runtime.cpu_load.SplitWatch); None where no operation has chunks
        to share or there is one thread."""

    @property
    def busy(self) -> bool:
        """Whether a thread is running this schedule now."""
        return self._lock.locked()

    def run(self, executor, env: list, wanted: Sequence[int], timings: list | None = None) -> dict | None:
        """The outputs ``wanted`` of a run on ``env``; ``timings`` gets each
        step's (name, kernel, seconds) as the executor's does, from cycle
        stamps the driver takes after each operation's barrier: the steps
        timed as they run here, with no Python between them."""
        if timings is not None and not CYCLE_COUNTER:
            return None
        if not self._lock.acquire(blocking=False):
            return None
        try:
            for array in self.guards:
                if array.flags.writeable:  # a constant thawed, perhaps rewritten: Python looks its forms up again
                    return None
            bases = self.bases
            for slot, base in self.inputs:
                value = env[slot]
                if not value.flags.c_contiguous:
                    value = env[slot] = np.ascontiguousarray(value)
                bases[base] = data_address(value)
            watched(self.split if timings is None else None, lambda alone: self._parts(executor, env, timings, alone))
            return {executor.program.slots[slot]: self._result(env, slot, computed, executor.program.slots[slot])
                    for slot, computed in zip(wanted, self.outputs)}
        finally:
            self._lock.release()

    def _parts(self, executor, env: list, timings: list | None, alone: bool) -> bool:
        """The run's parts in order, the operations on the caller alone
        where ``alone``; whether the pool's threads took part."""
        pooled = False
        for part in self.parts:
            if isinstance(part, _PythonStep):
                start = time.perf_counter()
                self._python(executor, env, part)
                if timings is not None:
                    timings.append((part.step.name, part.step.kernel, time.perf_counter() - start))
            elif timings is not None:
                self._timed(part, timings)
            elif len(part.ops):
                pooled |= parallel.run_phases(run_schedule, len(part.ops), part.ops, part.spans, self.recs,
                                              self.bases, _NO_STAMPS, alone=part.alone, whole_run=True, chosen=alone)
        return pooled

    def _timed(self, part: _Ops, timings: list) -> None:
        """Run ``part`` stamping each operation; the cycles between stamps
        are turned into seconds by the part's wall time (no clock rate
        assumed), and a step's consecutive operations summed (steps that
        emit none, views, are timed 0)."""
        if not len(part.ops):
            timings.extend((step.name, step.kernel, 0.0) for step, _ in part.steps)
            return
        stamps = np.zeros(len(part.ops) + 1, np.int64)
        wall = time.perf_counter()
        parallel.run_phases(run_schedule, len(part.ops), part.ops, part.spans, self.recs, self.bases, stamps,
                            alone=part.alone, whole_run=True)
        wall = time.perf_counter() - wall
        seconds = wall / max(int(stamps[-1] - stamps[0]), 1)
        marks = np.maximum.accumulate(stamps).tolist()  # a counter read on another core may lag a little
        at = 0
        for step, count in part.steps:
            timings.append((step.name, step.kernel, (marks[at + count] - marks[at]) * seconds))
            at += count

    def _python(self, executor, env: list, part: _PythonStep) -> None:
        for slot, computed in part.reads:
            env[slot] = computed.array(env)
        executor._step(env, part.fn, part.step, part.attrs)
        for slot, base, shape, dtype in part.binds:
            value = env[slot]
            if not isinstance(value, np.ndarray) or value.dtype != dtype or value.shape != shape:
                raise ExecutionError(f"{part.step.kernel} output {executor.program.slots[slot]!r} is "
                                     f"{getattr(value, 'dtype', type(value).__name__)} "
                                     f"{list(getattr(value, 'shape', ()))}, the program says {dtype} {list(shape)}",
                                     part.step.name)
            if not value.flags.c_contiguous:
                value = env[slot] = np.ascontiguousarray(value)
            self.bases[base] = data_address(value)

    def _result(self, env: list, slot: int, computed: _Computed | None, name: str) -> np.ndarray:
        """An output as the caller keeps it: never memory the next run reuses
        (a copy out of the arena: where memory runs out for it, an error
        naming the output, as a step's kernel names its node)."""
        value = env[slot] if computed is None else computed.array(env)
        if isinstance(value, np.ndarray) and np.may_share_memory(value, self.arena):
            try:
                return value.copy()
            except MemoryError:
                raise ExecutionError(f"out of memory for a copy of output {name!r} of shape {list(value.shape)} "
                                     f"({value.nbytes} bytes) out of the run's working memory") from None
        return value


_NO_STAMPS = np.zeros(0, np.int64)
CYCLE_COUNTER = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
"""Whether the driver may stamp operations with the cycle counter (x86's
``rdtsc``, readable from user code): timed runs elsewhere take the per-step
path (AArch64's counter register traps in user code on Linux)."""


UNKNOWN = object()
"""What a lowering would get for a value without a static type: it does not lower."""


class _Builder:
    def __init__(self, program):
        self.program = program
        self.buffers: list[Buffer] = [Buffer("none")]
        self.pinned: dict[int, tuple[int, np.ndarray]] = {}
        self.constants: dict[int, np.ndarray] = {}
        """The program constants operations rely on (frozen), by id."""
        self.operands: dict[int, Operand] = {}
        self.shadows: dict[int, set[int]] = {}
        """Slot -> the buffers a Python step's output may be a view of."""
        self.recs: list[int] = []
        self.parts: list = []
        self.pending: list[tuple[int, int, list]] = []
        self.pending_steps: list[tuple[Any, int]] = []
        self.python_reads: list[tuple[_PythonStep, list[int]]] = []
        self.computed: set[int] = set()
        """Slots operations compute (a run's ``env`` does not hold them)."""
        self.sources: dict[int, int] = {}
        """Base of a program input or a Python step's output -> its slot."""
        self.lowered = 0

    def add(self, buffer: Buffer) -> int:
        self.buffers.append(buffer)
        return len(self.buffers) - 1

    def bind(self, slot: int, shape, dtype) -> int:
        """A buffer bound at run time to ``slot``'s value (a program input,
        a Python step's output): read-only to operations; its base."""
        base = self.add(Buffer("bound"))
        self.operands[slot] = Operand(base, 0, tuple(shape), np.dtype(dtype), writable=False)
        self.sources[base] = slot
        return base

    def pin(self, array: np.ndarray) -> int:
        entry = self.pinned.get(id(array))
        if entry is None:
            entry = self.pinned[id(array)] = (self.add(Buffer("pinned")), array)
        return entry[0]

    def touch(self, base: int, position: int) -> None:
        self.buffers[base].touch(position)

    def arg(self, slot: int):
        """What a step's lowering gets for an input slot."""
        if slot < 0:
            return None
        constant = self.program.constants.get(slot)
        if constant is not None:
            return constant
        return self.operands.get(slot, UNKNOWN)

    def read(self, slot: int, position: int) -> None:
        """Note that the step at ``position`` reads ``slot`` (and so
        whatever memory it may be a view of)."""
        operand = self.operands.get(slot)
        if operand is not None:
            self.touch(operand.base, position)
        for base in self.shadows.get(slot, ()):
            self.touch(base, position)

    def lower(self, position: int, fn, step, attrs) -> bool:
        lower = getattr(fn, "lower", None)
        if lower is None or any(slot < 0 for slot in step.outputs):
            return False
        types = [self.program.types[slot] for slot in step.outputs]
        args = [self.arg(slot) for slot in step.inputs]
        if any(None in shape or dtype == "object" for shape, dtype in types) or any(a is UNKNOWN for a in args):
            return False
        ctx = Lowering(self, [(tuple(shape), np.dtype(dtype)) for shape, dtype in types])
        buffers, pinned = len(self.buffers), dict(self.pinned)
        try:
            done = bool(lower(ctx, args, attrs))
        except (ValueError, KeyError, IndexError, TypeError, TesseraError):
            done = False  # a step its lowering cannot read (a hostile binary's): the per-step kernel names it
        if not done or any(out is None for out in ctx.outputs):
            del self.buffers[buffers:]
            self.pinned = pinned
            return False
        for slot in step.inputs:
            self.read(slot, position)
        for base in ctx.touched:
            self.touch(base, position)
        for base in ctx.spread_bases:
            self.buffers[base].spread_at = position
        for base in ctx.light_bases:
            self.buffers[base].light = True
        for slot, out in zip(step.outputs, ctx.outputs):  # a view or an in-place output views what its input may
            shadows = set().union(*(self.shadows.get(s, ()) for s in step.inputs
                                    if s in self.operands and self.operands[s].base == out.base))
            self.operands[slot] = out
            self.computed.add(slot)
            if shadows:
                self.shadows[slot] = shadows
        for array in ctx.constants:
            self.constants[id(array)] = array
        for kind, rec, spans in ctx.ops:
            self.pending.append((kind, len(self.recs), spans))
            self.recs.extend(rec)
        self.pending_steps.append((step, len(ctx.ops)))
        self.lowered += 1
        return True

    def python(self, position: int, fn, step, attrs) -> None:
        self.flush()
        reads = [slot for slot in step.inputs if slot in self.computed]
        shadows = set()
        for slot in step.inputs:
            self.read(slot, position)
            if slot in self.operands:
                shadows.add(self.operands[slot].base)
            shadows |= self.shadows.get(slot, set())
        part = _PythonStep(fn, step, attrs, [], [])
        self.python_reads.append((part, reads))
        for slot in step.outputs:
            if slot < 0:
                continue
            self.shadows[slot] = shadows
            shape, dtype = self.program.types[slot]
            if None in shape or dtype == "object":
                continue
            base = self.bind(slot, shape, dtype)  # not writable: it may be a view of an input or a constant
            part.binds.append((slot, base, tuple(shape), np.dtype(dtype)))
        self.parts.append(part)

    def flush(self) -> None:
        """Close the run of operations emitted since the last Python step."""
        if not self.pending_steps:
            return
        ops, spans = [], []
        for kind, rec, chunks in self.pending:
            ops.append((kind, rec, len(spans), len(chunks)))
            spans.extend(chunks)
        table = np.zeros((len(ops), 5), np.int64)
        for row, (kind, rec, first, count) in enumerate(ops):
            table[row, KIND], table[row, REC], table[row, FIRST], table[row, COUNT] = kind, rec, first, count
            table[row, ENTRY] = op_address(kind)
        self.parts.append(_Ops(table, np.array(spans, np.int64).reshape(-1, 2), self.pending_steps))
        self.pending, self.pending_steps = [], []

    def plan_arena(self) -> int:
        """Offsets of the arena buffers (:func:`runtime.schedule.arena.plan`); the arena's size."""
        return arena_plan([b for b in self.buffers if b.kind == "arena"])


def build(executor, plan: list, wanted: Sequence[int]) -> Schedule | None:
    """The schedule of ``plan`` (an executor's plan computing ``wanted``),
    or None when no step lowers (or the program's types are not static)."""
    program = executor.program
    if not ENABLED or not program.types:
        return None
    builder = _Builder(program)
    inputs = []
    for slot in program.inputs:
        shape, dtype = program.types[slot]
        if None in shape or dtype == "object":
            return None
        inputs.append((slot, builder.bind(slot, shape, dtype)))
    for position, (fn, step, attrs, _) in enumerate(plan):
        if not builder.lower(position, fn, step, attrs):
            builder.python(position, fn, step, attrs)
    builder.flush()
    if not builder.lowered:
        return None
    for slot in wanted:
        builder.read(slot, len(plan))
    try:
        arena = np.empty(builder.plan_arena() + ALIGN, np.uint8)
    except MemoryError:  # no room for every value at once: the steps allocate their own (and name one that fails)
        return None
    shift = (-arena.ctypes.data) % ALIGN
    bases = np.zeros(len(builder.buffers), np.int64)
    for index, buffer in enumerate(builder.buffers):
        if buffer.kind == "arena":
            bases[index] = arena.ctypes.data + shift + buffer.offset
    for index, array in builder.pinned.values():
        bases[index] = array.ctypes.data

    def computed(slot: int) -> _Computed:
        operand = builder.operands[slot]
        if builder.buffers[operand.base].kind != "arena":
            return _Computed(None, builder.sources[operand.base], operand.offset, operand.shape, operand.dtype)
        start = int(bases[operand.base]) + operand.offset - arena.ctypes.data
        return _Computed(arena[start:start + operand.nbytes].view(operand.dtype).reshape(operand.shape))

    for part, reads in builder.python_reads:
        part.reads = [(slot, computed(slot)) for slot in reads]
    outputs = [computed(slot) if slot in builder.computed else None for slot in wanted]
    return Schedule(builder.parts, np.array(builder.recs, np.int64), bases, arena, inputs, outputs,
                    [array for _, array in builder.pinned.values()], list(builder.constants.values()),
                    builder.lowered)
