"""The fuzz campaigns' runner: cases run in worker processes so that a crash
or a hang is counted, not fatal, and the input that caused it is kept.

A campaign is a *target* module (tests/helpers/fuzz_onnx.py, fuzz_binary.py,
fuzz_files.py) with three functions:

* ``setup()``: what its cases start from (seed models, a compiled binary),
  built once per worker, which also runs the valid inputs once (so that
  Numba compiles what they need before the per-case timeout applies);
* ``generate(state, rng) -> Case``: case ``i`` of seed ``s`` is generated
  from ``numpy.random.default_rng([s, i])``, so it is the same whichever
  worker runs it, and ``--seed`` reproduces a campaign;
* ``execute(state, path, kind)``: run the case held in the file ``path``;
  returning is *accepted*, raising a TesseraError (or one of the target's
  ``NAMED_ERRORS``) is *rejected*, any other exception an *unclean* error.

Each worker writes its case to a scratch file before running it, so when the
worker dies by a signal (a *crash*) or runs past the per-case timeout (a
*hang*, the worker is killed) the parent copies that file into the results
folder, starts a fresh worker and goes on. Unclean errors keep their first
few inputs per exception type the same way. The workers run with one
thread each (Numba, OpenMP, BLAS) and a cap on their address space, so a
runaway allocation is a MemoryError, not the machine's memory.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import multiprocessing
import os
import shutil
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Iterable, NamedTuple

THREAD_ENV = {"NUMBA_NUM_THREADS": "1", "TESSERA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
              "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
MEMORY_LIMIT = 4 << 30
"""Address-space cap of a worker (bytes): past it an allocation raises MemoryError."""
KEEP_UNCLEAN = 3
"""Inputs (and distinct messages) kept per unclean exception type."""


class Case(NamedTuple):
    """One generated input: its bytes, what kind of mutation (or which
    loader) made it, and the file suffix its loader expects."""
    payload: bytes
    kind: str
    suffix: str = ".bin"


@dataclass
class Report:
    """A campaign's counts: every case is accepted, rejected with a named
    error, an unclean error, a crash or a hang."""
    cases: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    unclean: Counter = field(default_factory=Counter)
    crashes: list = field(default_factory=list)
    hangs: list = field(default_factory=list)
    kinds: Counter = field(default_factory=Counter)
    accepted_kinds: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    examples: dict = field(default_factory=dict)
    unclean_cases: list = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """No crash, no hang, no unclean error."""
        return not (self.crashes or self.hangs or self.unclean)

    def lines(self) -> list[str]:
        rate = self.cases / self.seconds if self.seconds else 0.0
        out = [f"cases      {self.cases}  ({rate:.1f} cases/s, {self.seconds:.1f} s)",
               f"accepted   {self.accepted}",
               f"rejected   {sum(self.rejected.values())}  (named errors: {dict(self.rejected.most_common())})",
               f"unclean    {sum(self.unclean.values())}  {dict(self.unclean.most_common())}",
               f"crashes    {len(self.crashes)}  {self.crashes[:10]}",
               f"hangs      {len(self.hangs)}  {self.hangs[:10]}",
               "kinds      " + ", ".join(f"{k} {self.accepted_kinds[k]}/{n}" for k, n in sorted(self.kinds.items()))
               + " (accepted/cases)"]
        out += [f"  {name}: {text}" for name, texts in self.examples.items() for text in texts]
        return out

    def to_json(self) -> dict:
        return {"cases": self.cases, "accepted": self.accepted, "rejected": dict(self.rejected),
                "unclean": dict(self.unclean), "crashes": self.crashes, "hangs": self.hangs,
                "kinds": dict(self.kinds), "accepted_kinds": dict(self.accepted_kinds),
                "seconds": round(self.seconds, 2), "examples": self.examples, "unclean_cases": self.unclean_cases}


# ---------------------------------------------------------------- named errors
def named_errors(target) -> tuple[type, ...]:
    """The exception classes that are a clear, named rejection: Tessera's
    errors, and those the target adds (``NAMED_ERRORS``: the kp API's
    exception, the array reader's error)."""
    from runtime.errors import TesseraError

    return (TesseraError, *getattr(target, "NAMED_ERRORS", ()))


def outcome(target, state, path: str, kind: str, named: tuple[type, ...]) -> tuple[str, str, str]:
    """(verdict, exception type, message) of one case run in this process."""
    try:
        target.execute(state, path, kind)
    except named as exc:
        return "rejected", type(exc).__name__, str(exc)[:300]
    except Exception as exc:  # noqa: BLE001 - every other exception is what the campaign counts
        where = traceback.extract_tb(exc.__traceback__)[-1]
        detail = f"{str(exc)[:200]} at {Path(where.filename).name}:{where.lineno}"
        return "unclean", type(exc).__name__, detail
    return "accepted", "", ""


# ---------------------------------------------------------------- the worker
def _worker(target_name: str, scratch: str, conn) -> None:
    """Set up the target, then run the jobs the parent sends (None stops):
    ("generate", seed, index) or ("file", path); answer each with ("start",
    path, kind) and (verdict, exception type, message)."""
    import faulthandler
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    quiet = os.open(os.devnull, os.O_WRONLY)  # progress lines and warnings of the code under test
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    faulthandler.enable(open(_fault_log(scratch, os.getpid()), "w"))
    try:
        target = importlib.import_module(target_name)
        state = target.setup()
    except Exception:  # noqa: BLE001 - a bug of the campaign itself: the parent stops on it
        conn.send(("harness", traceback.format_exc()))
        return
    named = named_errors(target)
    import numpy as np

    conn.send(("ready",))
    while (job := conn.recv()) is not None:
        if job[0] == "file":
            path, kind = job[1], kind_of(job[1])
        else:
            try:
                case = target.generate(state, np.random.default_rng([job[1], job[2]]))
            except Exception:  # noqa: BLE001 - a bug of the campaign itself: the parent stops on it
                conn.send(("harness", traceback.format_exc()))
                continue
            path, kind = os.path.join(scratch, f"{os.getpid()}-case{case.suffix}"), case.kind
            with open(path, "wb") as handle:
                handle.write(case.payload)
        conn.send(("start", path, kind))
        conn.send(outcome(target, state, path, kind, named))


def _fault_log(scratch: str, pid: int) -> str:
    """Where a worker's faulthandler writes the Python stack of a fatal signal."""
    return os.path.join(scratch, f"{pid}.fault")


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    """os.environ with ``values`` set while workers start (they inherit it)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _Slot:
    """One worker process and the case it is running."""

    def __init__(self, context, target_name: str, scratch: str):
        self.conn, child = context.Pipe()
        with _environment(THREAD_ENV):
            self.process = context.Process(target=_worker, args=(target_name, scratch, child), daemon=True)
            self.process.start()
        child.close()
        self.ready = False
        self.job: tuple | None = None
        self.path: str | None = None
        self.kind = ""
        self.since = time.monotonic()

    def send(self, job) -> None:
        self.job, self.path, self.kind, self.since = job, None, "unstarted", time.monotonic()
        self.conn.send(job)

    def kill(self) -> None:
        self.process.join(0.5)  # a worker that died on its own gets to give its exit code
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


# ---------------------------------------------------------------- the parent
class Campaign:
    """Runs a target's cases over ``workers`` processes and keeps the inputs
    of crashes, hangs and unclean errors under ``out``."""

    def __init__(self, target_name: str, out: str | os.PathLike, *, workers: int = 2, timeout: float = 30.0,
                 setup_timeout: float = 600.0, progress: float | None = None):
        self.target_name, self.out = target_name, Path(out)
        self.workers, self.timeout, self.setup_timeout = workers, timeout, setup_timeout
        self.progress = progress
        self.report = Report()
        self._kept: Counter = Counter()

    def run_generated(self, seed: int, cases: Iterable[int]) -> Report:
        """Run case indices ``cases`` of ``seed``."""
        return self.run([("generate", seed, index) for index in cases])

    def run_files(self, paths: Iterable[str | os.PathLike]) -> Report:
        """Run saved inputs (kept crashes, the regression files)."""
        return self.run([("file", str(path)) for path in paths])

    def run(self, jobs: list[tuple]) -> Report:
        """Run ``jobs`` over the workers; the report counts them all."""
        self.out.mkdir(parents=True, exist_ok=True)
        pending = jobs[::-1]
        context = multiprocessing.get_context("spawn")
        scratch = tempfile.mkdtemp(prefix="tessera-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        start = shown = time.monotonic()
        slots = [_Slot(context, self.target_name, scratch) for _ in range(max(1, min(self.workers, len(pending))))]
        try:
            while slots:
                for slot in list(slots):
                    if slot.ready and slot.job is None:
                        if pending:
                            slot.send(pending.pop())
                        else:
                            slot.conn.send(None)
                            slot.kill()
                            slots.remove(slot)
                for conn in wait([s.conn for s in slots], timeout=1.0):
                    slot = next(s for s in slots if s.conn is conn)
                    slots[slots.index(slot)] = self._receive(slot, context, scratch)
                slots = [self._check_time(s, context, scratch) for s in slots]
                if self.progress and time.monotonic() - shown > self.progress:
                    shown = time.monotonic()
                    self._show(shown - start, len(jobs))
        finally:
            for slot in slots:
                slot.kill()
            shutil.rmtree(scratch, ignore_errors=True)
        self.report.seconds = time.monotonic() - start
        (self.out / "summary.json").write_text(json.dumps(self.report.to_json(), indent=1))
        return self.report

    def _show(self, seconds: float, total: int) -> None:
        r = self.report
        print(f"  {r.cases}/{total} cases in {seconds:.0f} s: {r.accepted} accepted, {sum(r.rejected.values())} "
              f"rejected, {sum(r.unclean.values())} unclean, {len(r.crashes)} crashes, {len(r.hangs)} hangs",
              flush=True)

    def _receive(self, slot: _Slot, context, scratch: str) -> _Slot:
        try:
            message = slot.conn.recv()
        except (EOFError, OSError):
            return self._lost(slot, context, scratch, "crash")
        if message[0] == "ready":
            slot.ready, slot.since = True, time.monotonic()
        elif message[0] == "harness":
            raise RuntimeError(f"{self.target_name} failed to set up or to generate {slot.job}:\n{message[1]}")
        elif message[0] == "start":
            slot.path, slot.kind = message[1], message[2]
        else:
            self._record(slot, *message)
            slot.job = None
        return slot

    def _record(self, slot: _Slot, verdict: str, error: str, message: str) -> None:
        report = self.report
        report.cases += 1
        report.kinds[slot.kind] += 1
        if verdict == "accepted":
            report.accepted += 1
            report.accepted_kinds[slot.kind] += 1
        elif verdict == "rejected":
            report.rejected[error] += 1
        else:
            report.unclean[error] += 1
            texts = report.examples.setdefault(error, [])
            if message not in texts and len(texts) < KEEP_UNCLEAN:
                texts.append(message)
            report.unclean_cases.append(f"{slot.kind} {slot.job}")
            if self._kept[error] < KEEP_UNCLEAN:
                self._kept[error] += 1
                self._keep(slot, f"unclean/{error}")

    def _check_time(self, slot: _Slot, context, scratch: str) -> _Slot:
        limit = self.timeout if slot.ready else self.setup_timeout
        if slot.job is not None and time.monotonic() - slot.since > limit:
            return self._lost(slot, context, scratch, "hang")
        if not slot.ready and time.monotonic() - slot.since > limit:
            raise RuntimeError(f"a {self.target_name} worker did not set up in {limit:.0f} s")
        return slot

    def _lost(self, slot: _Slot, context, scratch: str, what: str) -> _Slot:
        """A worker that died (crash) or ran out of time (hang): count it,
        keep its input, and start a fresh worker in its place."""
        slot.kill()
        if not slot.ready:
            raise RuntimeError(f"a {self.target_name} worker died while setting up "
                               f"(exit code {slot.process.exitcode})")
        report = self.report
        report.cases += 1
        report.kinds[slot.kind] += 1
        name = self._keep(slot, f"{what}es" if what == "crash" else f"{what}s")
        fault = _fault_log(scratch, slot.process.pid)
        if what == "crash" and os.path.exists(name) and os.path.getsize(fault):
            shutil.copyfile(fault, name + ".fault.txt")
        code = slot.process.exitcode
        (report.crashes if what == "crash" else report.hangs).append(
            f"{name} (exit {code})" if what == "crash" else name)
        return _Slot(context, self.target_name, scratch)

    def _keep(self, slot: _Slot, folder: str) -> str:
        """Copy the slot's current case file to ``out/folder``; its new name."""
        if slot.path is None or slot.job is None or not os.path.exists(slot.path):
            return f"job {slot.job} (input not written)"
        name = Path(slot.path).name if slot.job[0] == "file" else \
            f"{slot.kind}-s{slot.job[1]}-i{slot.job[2]}{Path(slot.path).suffix}"
        target = self.out / folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(slot.path, target)
        return str(target)


def warm_up(target, state, payloads: Iterable[tuple[bytes, str]]) -> None:
    """Run valid inputs (bytes, file suffix) through ``target.execute``; each
    must be accepted (a seed that is rejected would make a weak campaign)."""
    with tempfile.TemporaryDirectory() as folder:
        for i, (payload, suffix) in enumerate(payloads):
            path = os.path.join(folder, f"seed{i}{suffix}")
            Path(path).write_bytes(payload)
            target.execute(state, path, "seed")


def kind_of(path: str | os.PathLike) -> str:
    """The kind a kept input's file name starts with (``kind-s<seed>-i<index>.suffix``)."""
    return Path(path).name.split("-")[0].split(".")[0]


# ---------------------------------------------------------------- the command line
def main(target_name: str, name: str, description: str, *, cases: int, timeout: float,
         argv: list[str] | None = None) -> int:
    """The campaign scripts' command line: run, print the counts, exit 1
    unless the campaign is clean of crashes and hangs. ``--case N`` runs one
    case in this process instead (to debug it) and ``--replay FILE...`` runs
    kept inputs."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--cases", type=int, default=cases, help=f"cases to run (default {cases})")
    parser.add_argument("--seed", type=int, default=0, help="campaign seed (case i uses default_rng([seed, i]))")
    parser.add_argument("--start", type=int, default=0, help="first case index")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--timeout", type=float, default=timeout, help="seconds a case may take before it is a hang")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "bench" / "fuzz_out" / name),
                        help="results folder (crashes/, hangs/, unclean/, summary.json)")
    parser.add_argument("--case", type=int, help="run this one case here, with its traceback, and save its input")
    parser.add_argument("--replay", nargs="+", metavar="FILE", help="run these kept inputs instead")
    parser.add_argument("--progress", type=float, default=60.0, help="seconds between progress lines (0: none)")
    args = parser.parse_args(argv)
    if args.case is not None:
        return _debug_case(target_name, args.seed, args.case, Path(args.out))
    campaign = Campaign(target_name, args.out, workers=args.workers, timeout=args.timeout, progress=args.progress)
    what = f"{len(args.replay)} kept inputs" if args.replay else \
        f"seed {args.seed}, cases {args.start}..{args.start + args.cases - 1}"
    print(f"{name}: {what}, {args.workers} workers, timeout {args.timeout:g} s, results in {args.out}", flush=True)
    report = campaign.run_files(args.replay) if args.replay else \
        campaign.run_generated(args.seed, range(args.start, args.start + args.cases))
    print("\n".join(report.lines()))
    return 0 if not (report.crashes or report.hangs) else 1


def _debug_case(target_name: str, seed: int, index: int, out: Path) -> int:
    """Generate case ``index`` of ``seed``, save it under ``out/cases`` and run
    it here, letting any exception but a named error propagate."""
    import numpy as np

    target = importlib.import_module(target_name)
    state = target.setup()
    case = target.generate(state, np.random.default_rng([seed, index]))
    path = out / "cases" / f"{case.kind}-s{seed}-i{index}{case.suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(case.payload)
    print(f"case {index} of seed {seed}: {case.kind}, {len(case.payload)} bytes, saved as {path}")
    try:
        target.execute(state, str(path), case.kind)
    except named_errors(target) as exc:
        print(f"rejected: {type(exc).__name__}: {exc}")
        return 0
    print("accepted")
    return 0
