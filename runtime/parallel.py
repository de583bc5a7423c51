"""Work splitting over a small thread pool, for nogil Numba kernels.

``parallel_for(fn, n, *args)`` calls ``fn(start, stop, *args)`` on disjoint
chunks of ``range(n)``. The range is cut into a few chunks per thread, and the
caller and the pool threads claim chunks from a shared counter until none is
left: when a pool thread cannot get a core (OpenBLAS's idle threads spin for a
while after each GEMM), the caller simply does more of the work instead of
waiting for it.

Waking a blocked thread costs tens of microseconds, as much as a small
layer's whole kernel, so the pool threads spin (in Numba, without the GIL)
for up to :data:`SPIN_SECONDS` after each job, waiting for the next, and the
caller spins the same way for the chunks they still run; only then do they
block. An idle pool therefore burns no core for longer than that.

Guarantees: calls made from a pool thread run inline, and so do calls made
while another thread's call holds the pool (including nested calls from the
caller's own chunks), so nesting never deadlocks and several user threads may
run kernels at once; every index is visited exactly once; an error raised in
any chunk is re-raised in the caller.
"""
from __future__ import annotations

import itertools
import os
import threading
import time

import numpy as np

from runtime.jit import jit

CHUNKS_PER_THREAD = 4
SPIN_SECONDS = 0.0015
"""Longest a pool thread (or the caller) spins before it blocks."""
LINE = 8
"""int64 slots per cache line: each spinner writes its own line."""


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


@jit
def _spin_until(state, index, target, scratch, limit):
    """Spin until ``state[index] >= target`` or for ``limit`` rounds; return
    ``state[index]``. The store to ``state[scratch]`` (which the compiler
    must assume may be ``state[index]``) keeps the load inside the loop."""
    for i in range(limit):
        value = state[index]
        if value >= target:
            return value
        state[scratch] = i
    return state[index]


class _Pool:
    """Threads that run the posted job's chunks. ``state[0]`` counts the jobs
    posted; each thread spins on it, then sleeps on ``wake``."""

    def __init__(self, workers: int):
        self.state = np.zeros(LINE * (workers + 1), np.int64)
        self.job: _Job | None = None
        self.wake = threading.Condition()
        self.sleepers = 0
        self.busy = threading.Lock()
        self.spin_limit = _calibrated_spin_limit()
        for slot in range(1, workers + 1):
            threading.Thread(target=self._serve, args=(LINE * slot,), name=f"tessera-{slot}", daemon=True).start()

    def post(self, job: _Job) -> None:
        self.job = job
        self.state[0] += 1
        if self.sleepers:
            with self.wake:
                self.wake.notify_all()

    def _serve(self, scratch: int) -> None:
        _local.worker = True
        seen = 0
        while True:
            target = seen + 1
            if _spin_until(self.state, 0, target, scratch, self.spin_limit) < target:
                with self.wake:
                    self.sleepers += 1
                    while self.state[0] < target:
                        self.wake.wait()
                    self.sleepers -= 1
            seen = int(self.state[0])
            job = self.job
            if job is not None:
                job.work()
            job = None


def _calibrated_spin_limit() -> int:
    """Spin rounds that take about SPIN_SECONDS on this machine."""
    state = np.zeros(2 * LINE, np.int64)
    _spin_until(state, 0, 1, LINE, 10)  # compile or load before timing
    rounds = 200_000
    start = time.perf_counter()
    _spin_until(state, 0, 1, LINE, rounds)
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


def chunks(n: int, parts: int, grain: int = 1) -> list[tuple[int, int]]:
    """Split ``range(n)`` into at most ``parts`` near-equal chunks of at least ``grain``."""
    parts = max(1, min(parts, n // max(grain, 1)))
    step, extra = divmod(n, parts)
    bounds, start = [], 0
    for i in range(parts):
        stop = start + step + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


class _Job:
    """Chunks of one parallel_for, claimed one at a time by whoever is free.
    ``state[0]`` counts the finished chunks (the caller spins on it)."""

    def __init__(self, fn, spans: list[tuple[int, int]], args: tuple):
        self.fn, self.spans, self.args = fn, spans, args
        self._next = itertools.count()
        self._lock = threading.Lock()
        self.state = np.zeros(2 * LINE, np.int64)
        self._done = threading.Event()
        self.error: BaseException | None = None

    def work(self) -> None:
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

    def wait(self, spin_limit: int) -> None:
        """Wait for the chunks other threads claimed (spinning first); re-raise
        their error."""
        total = len(self.spans)
        if _spin_until(self.state, 0, total, LINE, spin_limit) < total:
            self._done.wait()
        if self.error is not None:
            raise self.error


def parallel_for(fn, n: int, *args, grain: int = 1) -> None:
    """Run ``fn(start, stop, *args)`` over ``range(n)`` on all threads, in
    chunks of at least ``grain`` items."""
    if n <= 0:
        return
    spans = chunks(n, NUM_THREADS * CHUNKS_PER_THREAD, grain)
    if NUM_THREADS == 1 or len(spans) == 1 or getattr(_local, "worker", False):
        fn(0, n, *args)
        return
    pool = _get_pool()
    if not pool.busy.acquire(blocking=False):  # another call holds the pool
        fn(0, n, *args)
        return
    try:
        job = _Job(fn, spans, args)
        pool.post(job)
        job.work()
        job.wait(pool.spin_limit)
    finally:
        pool.job = None
        pool.busy.release()
