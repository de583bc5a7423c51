"""Running a partitioned model segment by segment.

A :class:`SegmentedProgram` is the list of a model's device segments in
execution order, each a kernel Program with the names of the tensors it
reads and writes; the tensors crossing between segments live in one table
of named values. Each segment runs on the runner registered for its device:
CPU segments on the CPU executor; accelerator segments, until the device
backend exists, also on the CPU kernels in float32.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from runtime.errors import ExecutionError
from runtime.executor import Executor
from runtime.program import Program


@dataclass
class SegmentProgram:
    """One segment: its device, its program, and the names (in the model's
    table of crossing tensors) of its inputs and outputs, in the order of the
    program's own inputs and outputs."""

    device: str
    program: Program
    inputs: list[str]
    outputs: list[str]
    name: str = ""


@dataclass
class SegmentedProgram:
    name: str
    inputs: list[str]
    outputs: list[str]
    segments: list[SegmentProgram]


Runner = Callable[[Sequence[np.ndarray]], list[np.ndarray]]


def cpu_runner(segment: SegmentProgram, check: bool = False) -> Runner:
    """Run a segment's program on the CPU kernels."""
    executor = Executor(segment.program, check=check)
    names = segment.program.input_names

    def run(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        result = executor.run(dict(zip(names, arrays)))
        return [result[n] for n in segment.program.output_names]

    return run


RUNNERS: dict[str, Callable[..., Runner]] = {"CPU": cpu_runner, "FPGA": cpu_runner}
"""Device name -> factory of the runner of one of its segments."""


class SegmentExecutor:
    """Runs a SegmentedProgram; records each segment's wall time of the last run."""

    def __init__(self, program: SegmentedProgram, check: bool = False):
        self.program = program
        self._runners = [self._runner(s, check) for s in program.segments]
        self.last_times: list[float] = []

    @staticmethod
    def _runner(segment: SegmentProgram, check: bool) -> Runner:
        factory = RUNNERS.get(segment.device)
        if factory is None:
            raise ExecutionError(f"segment {segment.name!r} runs on device {segment.device!r}, which this "
                                 f"runtime cannot drive (it has {sorted(RUNNERS)})")
        return factory(segment, check=check)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model's outputs for ``feeds`` (input name -> array)."""
        missing = [n for n in self.program.inputs if n not in feeds]
        if missing:
            raise ExecutionError(f"missing input(s) {missing}; the inputs are {self.program.inputs}")
        table = {n: np.asarray(feeds[n]) for n in self.program.inputs}
        self.last_times = []
        for segment, run in zip(self.program.segments, self._runners):
            start = time.perf_counter()
            results = run([table[n] for n in segment.inputs])
            self.last_times.append(time.perf_counter() - start)
            table.update(zip(segment.outputs, results))
        return {n: table[n] for n in self.program.outputs}
