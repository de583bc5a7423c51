"""Running a model segment by segment: the one mechanism every path uses.

A model is a list of segments in execution order over one table of named
tensors (float32 at the boundaries between segments). How a segment runs is
decided in one place, :func:`segment_runner`: a :class:`CpuSegment` runs its
kernel Program on the CPU executor; a :class:`DeviceSegment` runs on the
device backend the caller gives (runtime/device.py: the simulator, as there
is no card here). A compiled binary (runtime/engine.py) and a quantized
graph lowered for the CPU (codegen.cpu.lower_segments: its accelerator
segments become integer kernel Programs) both run through
:class:`SegmentExecutor`, which can record each segment and CPU kernel it
runs as host spans of a trace (runtime/trace.py).
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol, Sequence

import numpy as np

from runtime.compiled import CpuSegment, DeviceSegment, Segment
from runtime.errors import ExecutionError
from runtime.executor import Executor
from runtime.trace import HostRecorder, HostSpan

Table = dict[str, np.ndarray]
"""One image's tensors crossing segments, by name."""
CODES = "\0codes"
"""A table's entry under this key, put there by a caller that wants them, is
a dict the device backend fills with each tensor it produced, as
runtime.device.DeviceCodes (no tensor name can hold a NUL)."""
INTO = "\0into"
"""A table's entry under this key, put there by :meth:`SegmentExecutor.run_tables`
for a caller that gives it, maps model outputs to the float32 arrays (of
their shapes, C-contiguous, writable: the caller's result buffers) the
device backend writes their values into, instead of new arrays; given only
where the last segment runs on the device and produces every model output,
so that nothing can fail after a value is written."""
FINITE = "\0finite"
"""A table's entry under this key, put there by a caller that owes a
non-finite policy (runtime/nonfinite.py; the engine), is ``check(name,
array)``: the policy's error if ``array``, the value of the tensor ``name``,
holds what the policy refuses, nothing otherwise (nor for a tensor that is
no model input). A device backend that finds a NaN or ±Inf in an input as it
quantizes it calls it before the device runs (:attr:`SegmentExecutor.inspected`)."""
Runner = Callable[..., None]
"""``run(tables, timings=None)``: runs one segment on every image of a run,
reading its inputs from each image's table and writing its outputs into it;
a CPU segment appends ``(step name, kernel, seconds)`` of each kernel call
to ``timings`` when given."""


@dataclass
class SegmentedProgram:
    """A model as segments in execution order, with the names of its inputs
    and outputs in the table of tensors."""

    name: str
    inputs: list[str]
    outputs: list[str]
    segments: list[Segment]


class Device(Protocol):
    """A backend that runs accelerator segments (runtime.device.SimulatedDevice)."""

    def runner(self, segment: DeviceSegment) -> Runner:
        """The runner of one of the model's device segments, prepared once."""

    def inspected(self, segment: DeviceSegment) -> frozenset[str]:
        """The inputs of ``segment`` whose every value its runner inspects
        as it reads them, reporting a NaN or ±Inf to the table's FINITE check."""


def segment_runner(segment: Segment, device: Device | None, check: bool = False) -> Runner:
    """How ``segment`` runs: the one place that decides it."""
    if isinstance(segment, CpuSegment):
        return _cpu_runner(segment, check)
    if isinstance(segment, DeviceSegment):
        if device is None:
            raise ExecutionError(f"segment {segment.name!r} is accelerator code (instruction streams) and no device "
                                 "backend was given to run it")
        return device.runner(segment)
    raise ExecutionError(f"segment {getattr(segment, 'name', '?')!r} is a {type(segment).__name__}, which this "
                         "runtime cannot run (it runs CpuSegment and DeviceSegment)")


def _cpu_runner(segment: CpuSegment, check: bool) -> Runner:
    """A segment's kernel Program on the CPU executor, image after image."""
    executor = Executor(segment.program, check=check)
    program = segment.program

    def run(tables: list[Table], timings: list | None = None) -> None:
        for table in tables:
            results = executor.run(dict(zip(program.input_names, (table[n] for n in segment.inputs))),
                                   timings=timings)
            table.update(zip(segment.outputs, (results[n] for n in program.output_names)))

    return run


class SegmentExecutor:
    """Runs a SegmentedProgram.

    Several threads may run at once: the device's segments run one run at a
    time between them (the accelerator runs one thing at a time; its DRAM is
    shared state), so one run's CPU segment overlaps another's device
    segment; CPU segments run for several threads at once (their Executor
    keeps an arena per concurrent run, runtime.executor.MAX_SCHEDULES), so
    two requests of a model on the CPU run side by side, each on its own
    thread (runtime.cpu_load.Callers). Until 2026-11 each CPU segment ran
    one run at a time too, and the Inference Engine's CPU plugin with two
    requests ran no faster than with one."""

    def __init__(self, program: SegmentedProgram, device: Device | None = None, check: bool = False):
        self.program = program
        self._runners = [segment_runner(s, device, check) for s in program.segments]
        accelerator = threading.Lock()
        self._locks = [accelerator if isinstance(s, DeviceSegment) else contextlib.nullcontext()
                       for s in program.segments]
        self._kinds = [(s.name, isinstance(s, CpuSegment)) for s in program.segments]
        """Per segment: its name and whether it runs on the CPU."""
        self._steps: tuple = ()
        """Per segment: its runner, lock and whether it runs on the CPU (what
        an unrecorded run loops over: a small model's run is a few
        microseconds, and zipping the three lists took a tenth of one);
        :meth:`_gather_steps` makes it from the lists."""
        self._gather_steps()
        first = program.segments[0] if program.segments else None
        self.inspected = (device.inspected(first) & frozenset(program.inputs) if isinstance(first, DeviceSegment)
                          else frozenset())
        """The program inputs the first segment inspects for NaN and ±Inf as it
        reads them, before anything has run (a device segment's prepared
        quantization): a caller with a FINITE check in its tables need not
        scan them first."""
        last = program.segments[-1] if program.segments else None
        self._into = isinstance(last, DeviceSegment) and set(program.outputs) <= {t.name for t in last.outputs}
        """Whether a run can take its outputs' destinations (:data:`INTO`)."""

    def _gather_steps(self) -> None:
        """:attr:`_steps` from the runners, locks and kinds (again after a
        caller replaced a runner: a test recording what runs)."""
        self._steps = tuple(zip(self._runners, self._locks, (cpu for _, cpu in self._kinds)))

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model's outputs for ``feeds`` (input name -> array)."""
        return self.run_batch([feeds])[0]

    def run_batch(self, images: Sequence[Mapping[str, np.ndarray]], timings: list | None = None,
                  codes: list | None = None, recorder: HostRecorder | None = None) -> list[dict[str, np.ndarray]]:
        """The outputs of every image of one run (a device segment compiled
        for a batch takes them all at once; CPU segments run image after
        image); ``timings`` gets each CPU kernel call's (step name, kernel,
        seconds) appended; ``codes`` gets, per image, the DeviceCodes of
        each output the device produced (by name; CPU-computed ones absent);
        ``recorder`` gets each segment and CPU kernel as host spans
        (:func:`record_segment`)."""
        names = self.program.inputs
        tables = []
        for feeds in images:
            try:
                tables.append({n: np.asarray(feeds[n]) for n in names})
            except KeyError:
                raise ExecutionError(f"missing input(s) {[n for n in names if n not in feeds]}; the inputs are "
                                     f"{names}") from None
        return self.run_tables(tables, timings, codes, recorder)

    def run_tables(self, tables: list[Table], timings: list | None = None, codes: list | None = None,
                   recorder: HostRecorder | None = None,
                   into: Sequence[Mapping[str, np.ndarray]] | None = None) -> list[dict[str, np.ndarray]]:
        """:meth:`run_batch` on tables the caller made for this run, one per
        image, holding each program input as an array (the engine's checked
        inputs); the segments write their tensors into them. ``into``, per
        image, may name arrays for the outputs' values (:data:`INTO`); an
        output returned is then that array where the program could write it
        there, a new one otherwise."""
        if codes is not None:
            for table in tables:
                table[CODES] = {}
        if into is not None and self._into:
            if len(tables) == 1:
                tables[0][INTO] = into[0]
            else:
                for table, arrays in zip(tables, into):
                    table[INTO] = arrays
        if recorder is None:
            for run, lock, cpu in self._steps:
                # `with`, never acquire() then try: a KeyboardInterrupt landing
                # as acquire() returns (CPython checks for one after each call
                # of a C function) would leave the lock held for good, and the
                # next run waiting on it forever (the FWDNXT interrupt tests hung
                # so); `with` starts its protected range as the lock is taken.
                if cpu:
                    with lock:
                        run(tables, timings)
                else:
                    with lock:
                        run(tables)
        else:
            self._run_recorded(tables, timings, recorder)
        outputs = self.program.outputs
        if codes is not None:
            codes.extend({n: table[CODES][n] for n in outputs if n in table[CODES]} for table in tables)
        if len(tables) == 1 and len(outputs) == 1:
            name = outputs[0]
            return [{name: tables[0][name]}]
        return [{n: table[n] for n in outputs} for table in tables]

    def _run_recorded(self, tables: list[Table], timings: list | None, recorder: HostRecorder) -> None:
        """Every segment, each recorded as a host span with its CPU kernel calls."""
        if timings is None:
            timings = []
        for run, lock, (name, cpu) in zip(self._runners, self._locks, self._kinds):
            with lock:
                mark = len(timings)
                start = time.perf_counter()
                if cpu:
                    run(tables, timings)
                else:
                    run(tables)
                end = time.perf_counter()
            record_segment(recorder, name, "CPU" if cpu else "device (simulator)", start, end, timings[mark:],
                           len(tables))


def record_segment(recorder: HostRecorder, name: str, where: str, start: float, end: float,
                   steps: Sequence[tuple[str, str, float]], images: int) -> None:
    """One segment's run from ``start`` to ``end`` (time.perf_counter) as a
    host span on the running thread's "segments" track, and its CPU kernel
    calls ``steps`` (step name, kernel, seconds) on its "CPU kernels" track.
    The executor times each kernel's duration, not its start, so the calls
    are laid end to end from the segment's start (what the executor does
    between them gathers at the segment's end)."""
    thread = threading.current_thread().name
    recorder.add(HostSpan(f"{thread}: segments", name, start, end, {"where": where, "images": images}))
    at = start
    for step, kernel, seconds in steps:
        recorder.add(HostSpan(f"{thread}: CPU kernels", step, at, at + seconds, {"kernel": kernel, "segment": name}))
        at += seconds
