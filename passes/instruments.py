"""Pass instruments shipped with Tessera: per-pass (and per-stage) timing,
IR dumps before and after each pass, and verification after every pass."""
from __future__ import annotations

import os
import re
import time
from contextlib import contextmanager
from typing import Iterable, Iterator

from ir.errors import VerificationError
from ir.graph import Graph
from ir.printer import format_graph
from ir.verifier import collect_problems
from passes.infra import PassContext, PassError, PassInfo, PassInstrument
from runtime.files import write_atomic


class PassTiming(PassInstrument):
    """Wall time of every pass run, and of every stage reported to it
    (:func:`timed`, PassContext.record_time); ``render()`` gives a table,
    slowest first."""

    def __init__(self):
        self.times: list[tuple[str, float]] = []
        self._starts: list[float] = []

    def run_before_pass(self, graph: Graph, info: PassInfo) -> None:
        self._starts.append(time.perf_counter())

    def run_after_pass(self, graph: Graph, info: PassInfo) -> None:
        self.times.append((info.name, time.perf_counter() - self._starts.pop()))

    def record_time(self, stage: str, seconds: float) -> None:
        self.times.append((stage, seconds))

    def total(self, name: str) -> float:
        return sum(t for n, t in self.times if n == name)

    def render(self) -> str:
        totals: dict[str, float] = {}
        for name, seconds in self.times:
            totals[name] = totals.get(name, 0.0) + seconds
        lines = [f"{'pass':<28}{'ms':>10}"]
        lines += [f"{name:<28}{seconds * 1e3:>10.2f}" for name, seconds in
                  sorted(totals.items(), key=lambda item: -item[1])]
        return "\n".join(lines)


@contextmanager
def timed(stage: str, instruments: Iterable[PassInstrument] | None = None) -> Iterator[None]:
    """Report the seconds the with-block takes as ``stage`` to ``instruments``
    (default: those of the current PassContext)."""
    start = time.perf_counter()
    yield
    seconds = time.perf_counter() - start
    for inst in PassContext.current().instruments if instruments is None else instruments:
        inst.record_time(stage, seconds)


class DumpIR(PassInstrument):
    """Writes the printed graph before and/or after each pass to a folder, as
    ``NNN_<pass>_before.txt`` / ``NNN_<pass>_after.txt``."""

    def __init__(self, folder: str | os.PathLike, before: bool = True, after: bool = True):
        self.folder = os.fspath(folder)
        self.before, self.after = before, after
        self._count = 0
        self._running: list[int] = []  # the number of each pass still running (nested pipelines)

    def enter_pass_ctx(self) -> None:
        os.makedirs(self.folder, exist_ok=True)

    def run_before_pass(self, graph: Graph, info: PassInfo) -> None:
        self._count += 1
        self._running.append(self._count)
        if self.before:
            self._write(graph, info, "before", self._count)

    def run_after_pass(self, graph: Graph, info: PassInfo) -> None:
        number = self._running.pop()
        if self.after:
            self._write(graph, info, "after", number)

    def _write(self, graph: Graph, info: PassInfo, when: str, number: int) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", info.name)
        path = os.path.join(self.folder, f"{number:03d}_{safe}_{when}.txt")
        write_atomic(path, format_graph(graph) + "\n")


class VerifyEachPass(PassInstrument):
    """Runs the verifier after every pass; a pass that leaves a broken graph
    is a PassError naming it and listing the problems."""

    def run_after_pass(self, graph: Graph, info: PassInfo) -> None:
        problems = collect_problems(graph)
        if problems:
            raise PassError(f"pass {info.name!r} broke the IR:\n  " + "\n  ".join(problems)) from \
                VerificationError(problems, f"graph {graph.name!r}")
