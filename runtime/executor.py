"""The one CPU executor: runs a kernel Program step by step.

Every CPU path (the float reference, CPU fallback segments, constant folding
through single kernels, calibration) runs through here. Values are freed after
their last use unless the caller asked to fetch them, so any named
intermediate can be returned without keeping every activation alive. A step
that may write its result into one of its inputs (``attrs["inplace"]``: the
fused element-wise kernel, FusedConv into its residual) does not when that
input is fetched, watched or one of the caller's inputs.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Callable, Mapping, Sequence

import numpy as np

from runtime.errors import ExecutionError, TesseraError
from runtime.kernels.registry import fused_kernel, prepared_kernel
from runtime.program import NO_SLOT, Program, Step
from runtime.schedule.builder import build as build_schedule

_UNBUILT = object()
MAX_SCHEDULES = 4
"""Most schedules (arenas) one executor keeps for runs from several threads
at once; a run finding them all busy goes step by step."""


class Executor:
    """Runs one Program. Kernels are resolved once, at construction.

    ``check=True`` also verifies every kernel output against the dtype and
    static shape the program records for it (on in tests)."""

    def __init__(self, program: Program, check: bool = False):
        self.program = program
        self.check = check
        self._calls = [(self._kernel(step), step) for step in program.steps]
        self._pairs = self._fusable_pairs()
        self._plans: dict[tuple[int, ...], list[tuple]] = {}
        self._scheduled = _UNBUILT
        self._spares: list = []
        """More schedules of the same plan, each with its own arena, built
        when a run finds every one busy (runs from several threads)."""
        self._building = threading.Lock()
        self._constants_env: list = [None] * len(program.slots)
        """A run's values before its inputs are bound: the constants (copied per run)."""
        for slot, array in program.constants.items():
            self._constants_env[slot] = array
        self._input_set = frozenset(program.input_names)
        self._expected_inputs = [_expected_input(program, slot, name)
                                 for slot, name in zip(program.inputs, program.input_names)]
        """(slot, name, static shape or None, dtype or None) per input: a fed
        array of exactly that shape and dtype needs no further check."""

    def run(self, feeds: Mapping[str, np.ndarray], fetch: Sequence[str] | None = None,
            observe: Callable[[str, np.ndarray], None] | None = None,
            watch: Sequence[str] = (), timings: list | None = None) -> dict[str, np.ndarray]:
        """Run on ``feeds`` (input name -> array); return the graph outputs, or
        the values named in ``fetch`` (any intermediate) when it is given.

        ``observe(name, array)`` is called with each value named in ``watch``
        as soon as it is computed (graph inputs first), before anything can
        free or overwrite it: calibration streams statistics this way without
        keeping activations alive. ``timings`` gets ``(step name, kernel,
        seconds)`` of each step appended (a fused pair: one entry), timed in
        the run an untimed call makes (the schedule's, where it serves)."""
        program = self.program
        wanted = program.outputs if fetch is None else [program.slot(n) for n in fetch]
        env = self._fresh_env(feeds)
        if fetch is None and observe is None and not watch and not self.check:
            outputs = self._scheduled_run(env, wanted, timings)
            if outputs is not None:
                return outputs
        watched = self._watched(watch) if observe is not None else {}
        for slot in program.inputs:
            if slot in watched:
                observe(watched[slot], env[slot])
        for fn, step, attrs, dead in self._plan(tuple(wanted), tuple(watched)):
            start = time.perf_counter() if timings is not None else 0.0
            self._step(env, fn, step, attrs)
            if timings is not None:
                timings.append((step.name, step.kernel, time.perf_counter() - start))
            for slot in step.outputs:
                if slot in watched:
                    observe(watched[slot], env[slot])
            for slot in dead:
                env[slot] = None
        return {program.slots[i]: env[i] for i in wanted}

    def _schedule(self):
        """The plan computing the program's outputs lowered to a schedule
        (runtime.schedule), built on the first run that can use it; None
        where nothing lowers."""
        if self._scheduled is _UNBUILT:
            self._scheduled = self._build_schedule()
        return self._scheduled

    def _build_schedule(self):
        """A schedule of the plan computing the program's outputs (None where nothing lowers)."""
        wanted = tuple(self.program.outputs)
        return build_schedule(self, self._plan(wanted), wanted)

    def _scheduled_run(self, env: list, wanted, timings) -> dict | None:
        """The outputs of a scheduled run, on the first schedule no other
        thread is running; when every one is busy, one more is built (up to
        MAX_SCHEDULES: concurrent requests each run scheduled, on their own
        arena, instead of step by step). None where no schedule serves."""
        first = self._schedule()
        if first is None:
            return None
        for schedule in [first, *self._spares]:
            if not schedule.busy:
                return schedule.run(self, env, wanted, timings)
        with self._building:
            if len(self._spares) + 1 >= MAX_SCHEDULES:
                return None
            spare = self._build_schedule()
            if spare is None:
                return None
            self._spares.append(spare)
        return spare.run(self, env, wanted, timings)

    def run_each(self, feeds: Sequence[Mapping[str, np.ndarray]], observe: Callable[[str, list[np.ndarray]], None],
                 watch: Sequence[str]) -> None:
        """Run on every feed dict of ``feeds`` in lockstep, each step for all
        of them before the next: ``observe(name, arrays)`` gets a watched
        value of every run at once (in the order of ``feeds``) as soon as the
        step computing it has run for all, graph inputs first. Calibration
        fixes a tensor's grid from all its values this way before the tensors
        after it are measured on their grids, in one pass over the inputs. The
        runs' live values are all held at once (:meth:`peak_bytes` each)."""
        envs = [self._fresh_env(feed) for feed in feeds]
        watched = self._watched(watch)
        for slot in self.program.inputs:
            if slot in watched:
                observe(watched[slot], [env[slot] for env in envs])
        for fn, step, attrs, dead in self._plan((), tuple(watched)):
            for env in envs:
                self._step(env, fn, step, attrs)
            for slot in step.outputs:
                if slot in watched:
                    observe(watched[slot], [env[slot] for env in envs])
            for slot in dead:
                for env in envs:
                    env[slot] = None

    def peak_bytes(self, watch: Sequence[str] = ()) -> int | None:
        """Most bytes the inputs and computed values of one run with nothing
        fetched hold at once (constants not counted); None when a shape is not
        static."""
        types = self.program.types
        if not types or any(d is None for shape, _ in types for d in shape):
            return None
        size = [int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize if dtype != "object" else 0
                for shape, dtype in types]
        live = peak = sum(size[slot] for slot in self.program.inputs)
        for _, step, _, dead in self._plan((), tuple(self._watched(watch))):
            live += sum(size[slot] for slot in step.outputs if slot != NO_SLOT)
            peak = max(peak, live)
            live -= sum(size[slot] for slot in dead)
        return peak

    def _fresh_env(self, feeds: Mapping[str, np.ndarray]) -> list:
        """A run's values by slot: the constants and the checked inputs."""
        env = self._constants_env.copy()
        self._bind_inputs(env, feeds)
        return env

    def _step(self, env: list, fn, step: Step, attrs) -> None:
        """Run one kernel on ``env``'s values and store its results there."""
        args = [env[i] if i != NO_SLOT else None for i in step.inputs]
        try:
            results = fn(args, attrs)
        except TesseraError as exc:
            raise ExecutionError(f"{step.kernel}: {exc}", step.name) from exc
        except Exception as exc:  # a kernel bug: still name the node
            raise ExecutionError(f"{step.kernel} failed: {type(exc).__name__}: {exc}", step.name) from exc
        self._store(env, step, results)

    def _kernel(self, step):
        """The step's kernel, prepared with its constant inputs where its op
        has a preparer (packed weights, planned products: done once here
        instead of on every run)."""
        constants = self.program.constants
        return prepared_kernel(step.kernel, step.attrs, [constants.get(i) for i in step.inputs])

    def _watched(self, names: Sequence[str]) -> dict[int, str]:
        return {self.program.slot(name): name for name in names}

    def _plan(self, wanted: tuple[int, ...], watched: tuple[int, ...] = ()) -> list[tuple]:
        """(kernel, step, attrs, slots to free after it) for each step, for
        one set of wanted slots (kept, and never written in place) and of
        watched ones (never written in place); a fusable pair of steps
        whose middle value is neither wanted nor watched is one entry."""
        key = (wanted, watched)
        plan = self._plans.get(key)
        if plan is None:
            frees = self.program.last_uses(set(wanted))
            protected = set(wanted) | set(watched) | set(self.program.inputs)
            plan, index = [], 0
            while index < len(self._calls):
                pair = self._pairs.get(index)
                # a pair whose steps must not write in place (FusedConv into its residual) runs as two steps
                both = [self._calls[index][1], self._calls[index + 1][1]] if pair is not None else []
                if (pair is not None and pair[2] not in protected
                        and all(_attrs_keeping(step, protected) is step.attrs for step in both)):
                    fused, step, _ = pair
                    plan.append((fused, step, step.attrs, frees[index] + frees[index + 1]))
                    index += 2
                    continue
                fn, step = self._calls[index]
                plan.append((fn, step, _attrs_keeping(step, protected), frees[index]))
                index += 1
            self._plans[key] = plan
        return plan

    def _fusable_pairs(self) -> dict[int, tuple]:
        """Step index -> (fused kernel, fused step, middle slot) for each
        step whose kernel fuses with the next one's (registry.fuses): the
        next step reads its only output as X, and nothing else reads it."""
        program = self.program
        readers = Counter(slot for step in program.steps for slot in step.inputs)
        pairs = {}
        for index in range(len(self._calls) - 1):
            (first, a), (second, b) = self._calls[index], self._calls[index + 1]
            if len(a.outputs) != 1 or not b.inputs or b.inputs[0] != a.outputs[0]:
                continue
            middle = a.outputs[0]
            if middle in program.outputs or readers[middle] != 1:
                continue
            step = Step(f"{a.kernel}+{b.kernel}", tuple(a.inputs) + tuple(b.inputs[1:]), b.outputs,
                        {"first": a.attrs, "second": b.attrs}, f"{a.name}+{b.name}")
            fused = fused_kernel(a.kernel, b.kernel, first, second, len(a.inputs), step.attrs)
            if fused is not None:
                pairs[index] = (fused, step, middle)
        return pairs

    def _bind_inputs(self, env: list, feeds: Mapping[str, np.ndarray]) -> None:
        if not self._input_set.issuperset(feeds):
            unknown = set(feeds) - self._input_set
            raise ExecutionError(f"unknown input(s) {sorted(unknown)}; the inputs are {self.program.input_names}")
        for slot, name, shape, dtype in self._expected_inputs:
            if name not in feeds:
                raise ExecutionError(f"missing input {name!r}; the inputs are {self.program.input_names}")
            array = feeds[name]
            if not isinstance(array, np.ndarray) or array.dtype != dtype or array.shape != shape:
                array = self._checked_input(slot, name, array)  # the exact match above is the fast path
            env[slot] = array

    def _checked_input(self, slot: int, name: str, array) -> np.ndarray:
        array = np.asarray(array)
        if not self.program.types:
            return array
        shape, dtype = self.program.types[slot]
        if array.dtype != np.dtype(dtype) and not (dtype == "object" and array.dtype.kind in "OUS"):
            raise ExecutionError(f"input {name!r} must have dtype {dtype}, got {array.dtype}")
        if len(shape) != array.ndim or any(d is not None and d != a for d, a in zip(shape, array.shape)):
            raise ExecutionError(f"input {name!r} must have shape {_fmt(shape)}, got {list(array.shape)}")
        return array

    def _store(self, env: list, step, results) -> None:
        if len(results) != len(step.outputs):
            raise ExecutionError(f"{step.kernel} returned {len(results)} outputs, expected {len(step.outputs)}",
                                 step.name)
        for slot, array in zip(step.outputs, results):
            if self.check and self.program.types:
                self._check_output(step, slot, array)
            env[slot] = array

    def _check_output(self, step, slot: int, array) -> None:
        shape, dtype = self.program.types[slot]
        name = self.program.slots[slot]
        if not isinstance(array, np.ndarray):
            raise ExecutionError(f"{step.kernel} output {name!r} is a {type(array).__name__}, not an array",
                                 step.name)
        if array.dtype != np.dtype(dtype):
            raise ExecutionError(f"{step.kernel} output {name!r} has dtype {array.dtype}, expected {dtype}",
                                 step.name)
        if len(shape) != array.ndim or any(d is not None and d != a for d, a in zip(shape, array.shape)):
            raise ExecutionError(f"{step.kernel} output {name!r} has shape {list(array.shape)}, "
                                 f"expected {_fmt(shape)}", step.name)


def _attrs_keeping(step, wanted: set[int]):
    """The step's attributes, with in-place writing off if it would
    overwrite a protected value (fetched, watched, or a caller's input)."""
    inplace = step.attrs.get("inplace", -1)
    if isinstance(inplace, int) and 0 <= inplace < len(step.inputs) and step.inputs[inplace] in wanted:
        return {**step.attrs, "inplace": -1}
    return step.attrs


def _expected_input(program: Program, slot: int, name: str) -> tuple:
    if not program.types:
        return slot, name, None, None
    shape, dtype = program.types[slot]
    return slot, name, None if None in shape else tuple(shape), np.dtype(dtype)


def _fmt(shape) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"
