"""Work splitting over a small thread pool, for nogil Numba kernels.

``parallel_for(fn, n, *args)`` calls ``fn(start, stop, *args)`` on disjoint
chunks of ``range(n)``. The range is cut into a few chunks per thread, and the
caller and the pool threads claim chunks until none is left (the caller from
the front of the range, pool threads from the back, so that each thread
keeps its own part of the data from one job to the next): when a pool thread
cannot get a core, the caller simply does more of the work instead of
waiting for it.

Two ways to run a job:

* **Team drivers** (the hot kernels). A kernel registered with
  :func:`drives` has a jitted driver that claims chunks with atomic counters
  and calls the kernel in a loop, so a job costs each thread one Python call,
  not one per chunk. The protocol also keeps the threads from contending for
  the GIL, whose handover costs a futex sleep and wake (tens of
  microseconds on a VM, as much as a small layer's kernel): the caller
  publishes a job from inside its driver, when it no longer holds the GIL;
  a pool thread that finished its chunks lingers inside the driver (without
  the GIL) until the next job is published, and only then returns to Python;
  the caller leaves its driver only when every chunk is done and the pool
  threads have entered theirs (or a short wait ran out).
* **Python chunks** (any other callable): each chunk is a Python call.

The drivers' side of the protocol (the counters' layout, the spins, the
claims) is :mod:`runtime.pool_protocol`.

Waking a blocked thread costs tens of microseconds too, so pool threads spin
(in Numba, without the GIL) for up to :data:`SPIN_SECONDS` after each job,
waiting for the next, and the caller spins the same way for the chunks they
still run; only then do they block. An idle pool burns no core for longer.
A blocked pool thread is bound to a core other than the caller's just before
it is woken (:meth:`_Pool._steer`), and frees itself once it runs: Linux
tends to wake it on the caller's own core and keep it there.

When another process takes a core, the pool stands aside and the caller
runs its jobs alone (:mod:`runtime.cpu_load` says when).

Guarantees: calls made from a pool thread run inline, and so do calls made
while another thread's call holds the pool (including nested calls from the
caller's own chunks), so nesting never deadlocks and several user threads may
run kernels at once; every index is visited exactly once; an error raised in
any chunk is re-raised in the caller.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import os
import threading
import time

import numpy as np

from runtime import cpu_load, pool_late
from runtime.chunking import chunks
from runtime.pool_protocol import (
    ALONE,
    CALLER,
    COUNT,
    CROWD,
    DONE,
    EXPECTED,
    FAILED,
    FINISHED,
    GO,
    JOIN_SPIN,
    LINE,
    P_EXPECTED,
    P_FAILED,
    P_JOIN_SPIN,
    P_PHASES,
    P_SEQ,
    P_SPIN,
    P_STRIDE,
    P_YIELD,
    POSTED,
    RESUME,
    SEQ,
    SPIN,
    TEAM_SIZE,
    WORKER,
    _await,
    _await_job,
    _spin_until,
)

CHUNKS_PER_THREAD = 4
SPIN_SECONDS = 0.0015
"""Longest a pool thread (or the caller) spins before it blocks."""
JOIN_SECONDS = 0.00002
"""Longest a team's caller waits, its chunks done, for the pool threads to
enter their drivers (so that it does not take the GIL back while one of them
still needs it)."""


def _default_threads() -> int:
    value = os.environ.get("TESSERA_NUM_THREADS")
    if value:
        return max(1, int(value))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


NUM_THREADS = _default_threads()
_local = threading.local()


def drives(kernel):
    """Register the decorated jitted function as ``kernel``'s team driver.

    A driver is ``driver(team, state, role, spans, *args)`` and runs::

        index = team_enter(team, state, role)
        while index >= 0:
            call_unlinked(kernel, (spans[index, 0], spans[index, 1]) + args)
            index = team_next(team, True, role)
        return team_leave(team, state, role)

    (written out per kernel, at module level, so that Numba caches it; the
    kernel called through its address, :mod:`runtime.unlinked`, so that
    compiling a driver does not compile its kernel's code again).
    A jitted caller that runs the whole range itself passes
    ``np.int64(0)``, not ``0``: Numba types a literal 0 as ``Literal[int]``
    and would compile the kernel a second time for it."""
    def register(driver):
        _DRIVERS[kernel] = driver
        return driver
    return register


_DRIVERS: dict = {}


# ---------------------------------------------------------------- the pool
class _Pool:
    """Threads that run the posted jobs. ``state[GO]`` counts the jobs
    published; each thread spins on it, then sleeps on ``wake`` until
    ``state[POSTED]`` moves (``asleep[slot]`` says which threads sleep)."""

    def __init__(self, workers: int):
        self.workers = workers
        self.state = np.zeros(2 * LINE, np.int64)
        self.job: _Job | _Team | None = None
        self.wake = threading.Condition()
        self.busy = threading.Lock()
        self.callers = cpu_load.Callers(self.state, CROWD)
        self.seq = 0
        self.spin_limit = _calibrated_spin_limit()
        self.load = cpu_load.LoadWatch(cpu_load.allowed_cpus(), workers)
        self.waiting: _Phases | None = None
        """A phased job running on its caller alone that the pool's threads
        may join once it is free (:func:`runtime.pool_late.run_late`)."""
        self.waiting_lock = threading.Lock()
        self.last_late: dict[int, int] = {}
        """User thread -> the ``late`` key (a device's) of its last late job."""
        self.tids = [0] * workers
        self.asleep = [False] * workers
        self.steered = [False] * workers
        for slot in range(workers):
            threading.Thread(target=self._serve, args=(slot,), name=f"tessera-{slot + 1}", daemon=True).start()

    def post(self, job) -> None:
        """Make ``job`` the current one (the caller holds ``busy``). A team
        or phased job is published by its caller's driver; any other job here."""
        self.seq += 1
        job.seq = self.seq
        self.job = job
        self.state[POSTED] = self.seq
        if isinstance(job, _Team):
            job.team[SEQ] = self.seq
        elif isinstance(job, _Phases):
            job.team[P_SEQ] = self.seq
            if self.callers.shared():  # a user thread whose job began since found none to release (release())
                self.release()
        else:
            self.state[GO] = self.seq
        if any(self.asleep):
            with self.wake:
                self._steer()
                self.wake.notify_all()

    def release(self) -> None:
        """Another user thread starts a job while one holds the pool (two
        inference requests in flight): let the pool threads go from the
        phased job that holds it, if it is a ``whole_run`` (a float
        schedule's), at their next chunk, so that each job runs on a core of
        its own. Its caller does the chunks left (a pool thread
        that leaves changes nothing else, :class:`_Phases`). Kept, a pool
        thread made three busy threads on two cores for the rest of that job
        (a float run on a schedule is one job), and the caller spun at each
        barrier for a chunk whose thread had lost its core: MobileNetV2
        through the Inference Engine's CPU plugin, 2 requests each restarted
        by one thread as it finished (one then often starts while the other
        waits to be restarted, and takes the pool), ran 0.77-0.89x as many
        images a second as with every job alone, and 0.90-0.96x with the
        release and no spinning while crowded (Zen 4, in-process rounds). A
        device run's jobs (runtime.sim.phased) keep theirs: they are short,
        the next one runs alone anyway, and letting go cost the FPGA plugin's
        2 requests 0.95x (quartiles 0.82-1.09) as many images a second. A
        job the pool took late (runtime/pool_late.py) lets them go too: it
        ran alone beside another thread's job once already."""
        job = self.job
        if isinstance(job, _Phases) and (job.whole_run or job.posted):
            job.team[P_YIELD] = 1

    def _steer(self) -> None:
        """Before sleeping pool threads are woken (``wake`` held, so that a
        thread's ``asleep`` and ``steered`` agree): bind each to a core other
        than the caller's, one core each (it widens its affinity again as
        soon as it runs). Left to itself, Linux often wakes a thread on the
        core of the thread that woke it, and leaves it there while the other
        core idles: after a pause of 10 ms or more between inferences, three
        small layers in four then ran on one core, at half the speed."""
        cpus = self.load.cpus
        if len(cpus) < 2:
            return
        here = cpu_load.current_cpu()
        others = [cpu for cpu in cpus if cpu != here]
        for slot, tid in enumerate(self.tids):
            if self.asleep[slot] and tid:
                try:
                    os.sched_setaffinity(tid, (others[slot % len(others)],))
                    self.steered[slot] = True
                except OSError:  # the thread or the core is gone: the scheduler places it
                    pass

    def _serve(self, slot: int) -> None:
        _local.worker = True
        self.tids[slot] = threading.get_native_id()
        seen = 0
        while True:
            target = seen + 1
            if not _await_job(self.state, target, self.spin_limit):
                with self.wake:
                    self.asleep[slot] = True
                    while self.state[POSTED] < target:
                        self.wake.wait()
                    self.asleep[slot] = False
                if self.steered[slot]:  # woken where _steer bound it: free to move again
                    self.steered[slot] = False
                    try:
                        os.sched_setaffinity(0, self.load.cpus)
                    except OSError:
                        pass
            job = self.job
            if job is None or job.seq < target:  # that job is over
                seen = target
                continue
            seen = job.seq
            job.join()
            job = None


def _calibrated_spin_limit() -> int:
    """Spin rounds that take about SPIN_SECONDS on this machine."""
    state = np.zeros(2 * LINE, np.int64)
    _spin_until(state, 0, 1, 10)  # compile or load before timing
    rounds = 200_000
    start = time.perf_counter()
    _spin_until(state, 0, 1, rounds)
    elapsed = max(time.perf_counter() - start, 1e-6)
    return max(1000, int(rounds * SPIN_SECONDS / elapsed))


_pool: _Pool | None = None
_pool_lock = threading.Lock()


def _get_pool() -> _Pool:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = _Pool(max(1, NUM_THREADS - 1))
        return _pool


def _forget_pool() -> None:
    """In a forked child: the pool's threads did not come along (and its locks
    may be held), so the first parallel call starts a new pool."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


@functools.lru_cache(maxsize=4096)
def _span_array(n: int, parts: int, grain: int) -> np.ndarray:
    """:func:`chunks` as a read-only (chunks, 2) int64 array, built once."""
    spans = np.array(chunks(n, parts, grain), np.int64).reshape(-1, 2)
    spans.flags.writeable = False
    return spans


class _Job:
    """Python chunks of one parallel_for, claimed one at a time by whoever
    is free. ``state[0]`` counts the finished chunks (the caller spins on it)."""

    def __init__(self, fn, spans: list[tuple[int, int]], args: tuple):
        self.fn, self.spans, self.args = fn, spans, args
        self.seq = 0
        self._next = itertools.count()
        self._lock = threading.Lock()
        self.state = np.zeros(2 * LINE, np.int64)
        self._done = threading.Event()
        self.error: BaseException | None = None

    def join(self) -> None:
        """Run unclaimed chunks until there are none left."""
        total = len(self.spans)
        while True:
            index = next(self._next)  # atomic under the GIL
            if index >= total:
                return
            try:
                self.fn(*self.spans[index], *self.args)
            except BaseException as exc:  # re-raised in the caller
                self.error = self.error or exc
            with self._lock:
                self.state[0] += 1
                if self.state[0] == total:
                    self._done.set()

    def run(self, pool: _Pool) -> None:
        self.join()
        total = len(self.spans)
        if _spin_until(self.state, 0, total, pool.spin_limit) < total:
            self._done.wait()
        if self.error is not None:
            raise self.error


class _Team:
    """One parallel_for of a kernel with a team driver: the counters live in
    ``team``; every thread runs the same jitted driver."""

    def __init__(self, driver, pool: _Pool, spans: np.ndarray, args: tuple):
        self.driver, self.pool, self.spans, self.args = driver, pool, spans, args
        self.seq = 0
        self.error: BaseException | None = None
        team = self.team = np.zeros(TEAM_SIZE, np.int64)
        team[COUNT], team[EXPECTED] = len(spans), 1 + min(pool.workers, len(spans) - 1)
        team[SPIN], team[JOIN_SPIN] = pool.spin_limit, max(1, int(pool.spin_limit * JOIN_SECONDS / SPIN_SECONDS))

    def join(self) -> None:
        """A pool thread's part (it returns once the next job is published)."""
        try:
            self.driver(self.team, self.pool.state, WORKER, self.spans, *self.args)
        except BaseException as exc:  # re-raised in the caller
            self.error = self.error or exc
            self.team[FAILED] = 1

    def run(self, pool: _Pool) -> None:
        """The caller's part: its driver publishes the job; then wait for
        every chunk, without spinning forever if a pool thread lost its core."""
        try:
            done = self.driver(self.team, pool.state, CALLER, self.spans, *self.args)
        except BaseException:
            self.team[FAILED] = 1
            raise
        team, count = self.team, len(self.spans)
        while not done:
            if self.error is not None:
                break
            time.sleep(0.00005)
            done = _await(team, DONE, count, pool.spin_limit // 16)
        if self.error is not None:
            raise self.error


class _Phases:
    """One run of a phased job: every thread runs the same jitted driver
    ``driver(team, state, role, first, *args)``, which goes through the
    job's phases from ``first`` in order, claims chunks of each with
    :func:`phase_claim`, and waits for a phase's chunks to be done
    (:func:`phase_wait`) before the next: a barrier per phase, with no
    Python between phases. It returns :data:`FINISHED`, or the phase whose
    wait ran out (a pool thread then leaves; the caller sleeps briefly and
    comes back as RESUME at that phase). A pool thread that is late or never
    comes changes nothing: the caller claims whatever chunks are left."""

    def __init__(self, driver, pool: _Pool, team: np.ndarray, args: tuple, whole_run: bool = False):
        self.driver, self.pool, self.team, self.args = driver, pool, team, args
        self.whole_run = whole_run
        self.seq = 0
        self.posted = False
        """For a job run late (:func:`runtime.pool_late.run_late`): whether the pool took it."""
        self.key = 0
        """For a job run late: its ``late`` key."""
        self.error: BaseException | None = None
        team[P_EXPECTED] = 1 + pool.workers
        team[P_SPIN], team[P_JOIN_SPIN] = pool.spin_limit, max(1, int(pool.spin_limit * JOIN_SECONDS / SPIN_SECONDS))

    def join(self) -> None:
        """A pool thread's part."""
        try:
            self.driver(self.team, self.pool.state, WORKER, 0, *self.args)
        except BaseException as exc:  # re-raised in the caller
            self.error = self.error or exc
            self.team[P_FAILED] = 1

    def run(self, pool: _Pool, state: np.ndarray | None = None) -> None:
        """The caller's part, publishing the job from inside its driver (in
        ``state``: the pool's, or one of its own for a job run late)."""
        team = self.team
        state = pool.state if state is None else state
        try:
            at = self.driver(team, state, CALLER, 0, *self.args)
            while at != FINISHED and self.error is None:
                time.sleep(0.00005)
                at = self.driver(team, state, RESUME, at, *self.args)
        except BaseException:
            team[P_FAILED] = 1
            raise
        if self.error is not None:
            raise self.error


_NO_POOL_STATE = np.zeros(2 * LINE, np.int64)
"""The pool state a phased driver running alone is given (it publishes nothing)."""


@contextlib.contextmanager
def steady():
    """Inside, the pool never stands aside (its load verdicts are off), so
    jobs run as on an idle machine: through the pool threads and their team
    drivers. For compiler.warmup, which fills the kernel cache ``pip
    install`` ships: on a busy build host the pool stood aside and the team
    drivers were never compiled, so a fresh install compiled them at its
    first run (2-3 kernels, 2 s). The verdicts resume after, from a new
    window."""
    resume = _get_pool().load.pause()
    try:
        yield
    finally:
        resume()


def stood_aside() -> int:
    """How many times this process's pool has stood aside (a core taken by
    another process), for benches to print beside their figures."""
    return 0 if _pool is None else _pool.load.stood_aside


def stands_aside() -> bool:
    """Whether a job started now would run on its caller alone because
    other processes hold the cores (the pool's verdict, renewed at the end
    of its window as a job's start renews it: :class:`runtime.cpu_load.LoadWatch`),
    so that a caller with a way of its own to run alone can take it."""
    return NUM_THREADS > 1 and _get_pool().load.watch()


def run_phases(driver, phases: int, *args, alone: bool = False, whole_run: bool = False, chosen: bool = False,
               late: int | None = None) -> bool:
    """Run a phased job (:class:`_Phases`) of ``phases`` phases on all
    threads. On one thread, from a pool thread, while another call holds
    the pool, while the pool stands aside, or ``alone`` (no phase has work
    to share), the caller runs every phase itself. Each run has counters of
    its own: a pool thread still leaving the last run's driver finds
    nothing there left to claim. ``whole_run``: the job is a whole run (a
    float schedule's), which lets its pool threads go when another user
    thread starts a job (:meth:`_Pool.release`) and which the other's
    restart may send alone (:class:`runtime.cpu_load.Callers`). ``chosen``:
    the caller runs it alone by choice (runtime.cpu_load.SplitWatch), a
    job in progress all the same for the other user threads (another
    request's run beside it goes alone too: three busy threads on two
    cores made each job's last chunk wait). Whether the pool's threads
    ran it (False: the caller ran it alone, or ran it late). ``late``: a
    key (an int naming the device a program runs on, which runs one at a
    time): where other user threads' jobs or a call holding the pool send
    it alone and each of those threads last ran a job of the same key, the
    pool's threads join it once those end (runtime/pool_late.py)."""
    team = np.zeros(P_PHASES + P_STRIDE * max(phases, 1), np.int64)

    def by_caller():
        team[P_SPIN] = 1
        driver(team, _NO_POOL_STATE, ALONE, 0, *args)

    if alone or NUM_THREADS == 1 or getattr(_local, "worker", False):
        by_caller()
        return False
    return _submit(lambda pool: _Phases(driver, pool, team, args, whole_run), by_caller, whole_run, chosen, late)


def parallel_for(fn, n: int, *args, grain: int = 1) -> None:
    """Run ``fn(start, stop, *args)`` over ``range(n)`` on all threads, in
    chunks of at least ``grain`` items (through ``fn``'s team driver when it
    has one)."""
    if n <= 0:
        return
    parts = NUM_THREADS * CHUNKS_PER_THREAD
    if NUM_THREADS == 1 or n < 2 * max(grain, 1) or getattr(_local, "worker", False):
        fn(0, n, *args)
        return
    driver = _DRIVERS.get(fn)
    _submit(lambda pool: (_Team(driver, pool, _span_array(n, parts, grain), args) if driver is not None
                          else _Job(fn, chunks(n, parts, grain), args)),
            lambda: fn(0, n, *args))


def _submit(make_job, alone, whole_run: bool = False, chosen: bool = False, late: int | None = None) -> bool:
    """Run ``make_job(pool)`` on the pool, or ``alone()`` on the caller where
    ``chosen``, while the pool stands aside, another call holds it, or
    other user threads run jobs too (:class:`runtime.cpu_load.Callers`;
    in the last two cases a ``late`` job runs on the caller where the pool
    can join it once free: runtime/pool_late.py); whether on the pool from
    the start. Another user thread's job that begins after this one takes
    the pool but before it is posted finds no job to release
    (:meth:`_Pool.release`): so a job crowded once it holds the pool gives it
    back and takes the crowded way, and one crowded while it is posted lets
    its pool threads go in :meth:`_Pool.post` (two requests started
    together: the first run kept its pool thread on the second's core for
    its whole run, 8-13 ms a first run where alone they take 7.4). The end
    of a job offers the pool to a job waiting for it, unless it is a
    ``late`` job itself."""
    pool = _get_pool()
    me = threading.get_ident()
    callers = pool.callers
    crowded = callers.start(me, whole_run)
    if crowded:
        pool.release()
    if late is not None:
        pool_late.note(pool, me, late)
    try:
        if chosen or pool.load.watch():  # other processes hold the cores, or the caller chose to run alone
            alone()
            return False
        pooled = not crowded and pool.busy.acquire(blocking=False)  # else others' jobs, or a call holding it
        if pooled and callers.shared():  # another user thread's job began meanwhile and found none of ours to release
            pool.busy.release()
            pooled = False
        if not pooled:
            if late is not None and pool.waiting is None and pool_late.followers(pool, me, late):
                return pool_late.run_late(pool, make_job(pool), alone, late)
            alone()
            return False
        try:
            job = make_job(pool)
            pool.post(job)
            job.run(pool)
            return True
        finally:
            pool.job = None
            pool.busy.release()
    finally:
        callers.stop(me, whole_run)
        if pool.waiting is not None and late is None:
            pool_late.post_waiting(pool, me)
