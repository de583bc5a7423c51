"""What the thread pool (:mod:`runtime.parallel`) learns from the host: the
cores it may use, the core a thread runs on, whether other processes are
taking those cores, and whether other user threads of this process are
running jobs (:class:`Callers`).

When another process takes a core, the pool stands aside and the caller
runs its jobs alone (with a core taken, a pool thread descheduled mid-chunk,
or spinning on the shared core, made ResNet-50's float path 1.7x slower than
one thread). Every :data:`WINDOW_SECONDS` of wall clock the caller reads how
busy its cores were (``/proc/stat``: every process, and the hypervisor's
steal) less what this process used: the CPU other processes took. The pool
stands aside after :data:`STRIKES` windows in a row found them holding the
cores the pool needs, and comes back at the first window that finds the
cores free again. The same measure serves in both states, so the pool
needs no probing runs to see that a core came back, and it does not matter
whether a job is a 0.1 ms layer or a whole 40 ms schedule. Threads of this
process (another library's spinning pool) are not counted: standing aside
would not help against them. Where ``/proc/stat`` cannot be read, the pool
never stands aside.
"""
from __future__ import annotations

import ctypes
import os
import time
from collections import deque

import numpy as np

WINDOW_SECONDS = 0.1
"""Wall-clock span of one verdict on the cores' load (``/proc/stat`` counts
in hundredths of a second: ±0.2 of a core over 0.1 s on two cores). A
window that grew past STALE_SECONDS (no jobs meanwhile) is dropped."""
STALE_SECONDS = 1.0
TAKEN, STRIKES = 0.5, 2
"""Other processes took the cores the pool needs when they used more than
TAKEN of a core beyond the cores the pool leaves free; STRIKES such windows
in a row make the pool stand aside (one alone can be a transient)."""


def allowed_cpus() -> tuple[int, ...]:
    """The cores this process may run on, where the system says (else none:
    the pool threads are never bound)."""
    if not (hasattr(os, "sched_getaffinity") and hasattr(os, "sched_setaffinity")):
        return ()
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except OSError:
        return ()


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def busy_seconds(cpus: tuple[int, ...]) -> float | None:
    """Seconds ``cpus`` have spent busy since boot, whoever ran (user,
    nice, system, interrupts, and steal: time the hypervisor gave the core
    to another machine), from ``/proc/stat``; None where it cannot be read."""
    try:
        with open("/proc/stat", "rb") as file:
            text = file.read()
    except OSError:
        return None
    wanted = {f"cpu{cpu}".encode() for cpu in cpus}
    ticks = 0
    found = 0
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] in wanted:
            try:
                user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
            except ValueError:
                return None
            ticks += user + nice + system + irq + softirq + steal
            found += 1
    return ticks / _CLOCK_TICKS if found == len(wanted) and found else None


def load_sample(cpus: tuple[int, ...]) -> tuple[float, float, float] | None:
    """(wall clock, ``cpus``' busy seconds, this process's CPU seconds), or
    None where the cores' load cannot be read."""
    busy = busy_seconds(cpus)
    return None if busy is None else (time.perf_counter(), busy, time.process_time())


def _cpu_getter():
    """libc's ``sched_getcpu`` (the core the calling thread runs on), or a
    stand-in that says -1 (unknown)."""
    try:
        getcpu = ctypes.CDLL(None).sched_getcpu
    except (OSError, AttributeError, TypeError):
        return lambda: -1
    getcpu.restype, getcpu.argtypes = ctypes.c_int, []
    return getcpu


current_cpu = _cpu_getter()
"""The core the calling thread runs on (-1: unknown)."""


class LoadWatch:
    """The pool's verdicts on its cores' load: ``serial`` while it stands
    aside; ``strikes``, the windows in a row that found the cores taken;
    ``stood_aside``, how many times it has stood aside (the benches print
    it); ``window``, the sample the current window started from (None: no
    verdicts, as where ``/proc/stat`` cannot be read)."""

    def __init__(self, cpus: tuple[int, ...], workers: int):
        self.cpus = cpus
        self.workers = workers
        self.strikes = 0
        self.serial = False
        self.stood_aside = 0
        self.window = load_sample(cpus)

    def watch(self) -> bool:
        """At a job's start: at the end of a window, the verdict on it
        (stand aside, or come back). Cheap otherwise: one clock read.
        Whether the pool stands aside."""
        start = self.window
        if start is None:
            return self.serial
        now = time.perf_counter()
        if now - start[0] < WINDOW_SECONDS:
            return self.serial
        sample = self.window = load_sample(self.cpus)
        if sample is None or now - start[0] > STALE_SECONDS:
            return self.serial
        wall = sample[0] - start[0]
        others = ((sample[1] - start[1]) - (sample[2] - start[2])) / wall  # cores' busy time not this process's
        free = max(len(self.cpus) - (self.workers + 1), 0)  # cores the pool leaves to others
        if others <= free + TAKEN:
            self.strikes, self.serial = 0, False
        elif not self.serial:
            self.strikes += 1
            if self.strikes >= STRIKES:
                self.serial = True
                self.stood_aside += 1
        return self.serial

    def pause(self):
        """Turn the verdicts off (the pool never stands aside) until the
        returned callable is called; they resume then, from a new window."""
        window = self.window
        self.window, self.serial, self.strikes = None, False, 0

        def resume() -> None:
            self.window = None if window is None else load_sample(self.cpus)

        return resume


RESTART_SECONDS = 0.002
"""A whole run starts alone while another thread's run that met a third job
ended less than this ago: two inference requests in flight, one finished and
about to be restarted (IE requests restarted by one thread as each finishes,
the benches' way: the restart comes 0.1-0.3 ms later). Taking the pool then
gave it back as soon as the other started: MobileNetV2 through the IE CPU
plugin, 2 requests, 1.10x the images a second against no window (quartiles
1.03-1.25; 1.07x with the window at 1 and at 3 ms; in-process rounds, Zen 4;
`/work/notes/s93/restartab.py`). Only runs that met another count, so one
request at a time on alternating threads keeps the pool; device runs' jobs
do not look (a window on them cost the FPGA plugin's 2 requests 0.72x)."""


class Callers:
    """The user threads of this process inside jobs now. While another user thread is
    inside one (two inference requests in flight, say), a caller runs its
    job alone on its own thread and the pool threads stay out: a caller
    sharing the pool while another ran alone made three busy threads on two
    cores, and each job's last chunk waited for a descheduled thread
    (MobileNetV2 through the Inference Engine's CPU plugin with 2 requests:
    78-95 images/s that way, 94-104 with the pool left out). A float run on
    a schedule is one job from start to end, so two such runs see each
    other throughout. Only jobs in progress count: a quiet window after
    each job (5 ms tried) also sent a device run's convolutions alone
    whenever another request had just quantized its input, and cost the
    Inference Engine's FPGA plugin more than it won. One user thread by
    itself is never crowded."""

    def __init__(self, count=None, slot: int = 0):
        self._jobs: dict[int, int] = {}
        """Thread ident -> jobs it has in progress (nested calls count too)."""
        self._count, self._slot = (np.zeros(1, np.int64), 0) if count is None else (count, slot)
        """Where the number of user threads inside jobs is kept for Numba
        code to read (the pool's state: an idle pool thread stops spinning
        when it passes one)."""
        self._overlapped: set[int] = set()
        """Threads whose job in progress has met another thread's."""
        self._ended: dict[int, float] = {}
        """Thread ident -> when its last whole run that met another thread's job ended."""

    def start(self, me: int, whole_run: bool = False) -> bool:
        """``me`` starts a job (``whole_run``: as a float schedule's run);
        whether another user thread is inside one, or, for a run, whether
        another thread's run that met a third job ended less than
        :data:`RESTART_SECONDS` ago: two requests in flight, the other about
        to be restarted."""
        jobs = self._jobs
        jobs[me] = jobs.get(me, 0) + 1
        self._count[self._slot] = len(jobs)
        if len(jobs) > 1:
            self._overlapped.update(jobs)
            return True
        if whole_run and self._ended:
            now = time.perf_counter()
            return any(thread != me and now - end < RESTART_SECONDS for thread, end in list(self._ended.items()))
        return False

    def shared(self) -> bool:
        """Whether two or more user threads are inside jobs now."""
        return len(self._jobs) > 1

    def threads(self) -> list[int]:
        """The user threads inside jobs now."""
        return list(self._jobs)

    def stop(self, me: int, whole_run: bool = False) -> None:
        jobs = self._jobs
        left = jobs.get(me, 1) - 1
        if left:
            jobs[me] = left
        else:
            jobs.pop(me, None)
        self._count[self._slot] = len(jobs)
        if whole_run and me in self._overlapped:
            now = time.perf_counter()
            ended = self._ended
            ended[me] = now
            for thread in [t for t, end in ended.items() if now - end > 1.0]:  # threads long gone
                del ended[thread]
        if not left:
            self._overlapped.discard(me)


PROBE_RUNS = 5
"""Runs of each way :class:`SplitWatch` compares (medians), after one
untimed run of the way it probes."""
FIRST_PROBE_SECONDS, LAST_PROBE_SECONDS = 0.5, 8.0
"""Wall clock from a choice to its first probe of the other way, doubled
after each probe that keeps the choice, up to the last."""
SWITCH = 0.9
"""The other way is taken when its median run is under this fraction of
the chosen way's."""
PROBE_SHARE = 0.002
"""The most of the wall clock a probe that kept the choice may cost until
the next: the next probe comes no sooner than its runs' loss over the
chosen way divided by this (ResNet-50's float run alone, 60 against 34 ms
on the pool: a probe every ~80 s, where the doubling alone would probe
every 8 s at 2 % of the time)."""


class SplitWatch:
    """Whether a model's whole runs go to the pool or run on the calling
    thread alone, chosen by timing both ways on this host, now. A small
    model's run is many short operations, each a barrier both threads pass
    and data one core wrote and the other reads: where the two cores are
    far apart (a host that placed the two vCPUs on different dies: a cache
    line's round trip 330-700 ns against 65), ResNet-10 at 32 x 32 took 650
    us a run on two threads and 480 on one (Zen 4), where with the cores
    close it took 330 against 490. Neither the cores' features nor their
    caches tell which holds, and on these hosts it changes by the minute.

    The chosen way runs; every so often (:data:`FIRST_PROBE_SECONDS`,
    doubling to :data:`LAST_PROBE_SECONDS` while the choice holds, or
    longer where a probe's runs cost more than :data:`PROBE_SHARE` of
    that) the other runs :data:`PROBE_RUNS` times after a run to warm it,
    and is taken when its median is under :data:`SWITCH` of the chosen
    way's last runs' (the interval starts again after a switch). Runs the pool could
    not take (another call held it, other processes took the cores) count
    for neither way. Results do not depend on the way: the operations run
    the same chunks in either. ``switches`` counts the changes, and
    ``SplitWatch.every_switch`` those of every watch (the benches print it)."""

    every_switch = 0

    def __init__(self):
        self.alone = False
        self.switches = 0
        self._recent: deque[float] = deque(maxlen=PROBE_RUNS)
        self._probe: list[float] | None = None
        self._interval = FIRST_PROBE_SECONDS
        self._next = time.perf_counter() + FIRST_PROBE_SECONDS

    def choose(self) -> bool:
        """Whether the next run goes alone."""
        if self._probe is None and len(self._recent) >= PROBE_RUNS and time.perf_counter() >= self._next:
            self._probe = []
        return self.alone != (self._probe is not None)

    def record(self, alone: bool, seconds: float, pooled: bool) -> None:
        """A run taken ``alone`` (as :meth:`choose` said) lasted ``seconds``;
        ``pooled``: the pool's threads took part."""
        if not alone and not pooled:
            return  # the pool could not take it: it timed neither way
        if alone == self.alone:
            self._recent.append(seconds)
            return
        probe = self._probe
        if probe is None:
            return
        probe.append(seconds)
        if len(probe) <= PROBE_RUNS:
            return
        now = time.perf_counter()
        other, chosen = float(np.median(probe[1:])), float(np.median(self._recent))
        if other < SWITCH * chosen:
            self.alone = not self.alone
            self.switches += 1
            SplitWatch.every_switch += 1
            self._recent = deque(probe[1:], maxlen=PROBE_RUNS)
            self._interval = FIRST_PROBE_SECONDS
        else:
            loss = (other - chosen) * len(probe)
            self._interval = max(min(2 * self._interval, LAST_PROBE_SECONDS), loss / PROBE_SHARE)
        self._probe = None
        self._next = now + self._interval


def watched(watch: SplitWatch | None, run) -> None:
    """``run(alone)``, ``alone`` as ``watch`` chooses (False where there is
    none), timed for it; ``run`` returns whether the pool's threads took part."""
    alone = watch is not None and watch.choose()
    began = time.perf_counter()
    pooled = run(alone)
    if watch is not None:
        watch.record(alone, time.perf_counter() - began, pooled)
