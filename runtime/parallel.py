"""Work splitting over a small thread pool, for nogil Numba kernels.

``parallel_for(fn, n, *args)`` calls ``fn(start, stop, *args)`` on disjoint
chunks of ``range(n)``. The range is cut into a few chunks per thread, and the
caller and the pool threads claim chunks from a shared counter until none is
left: when a pool thread cannot get a core (OpenBLAS's idle threads spin for a
while after each GEMM), the caller simply does more of the work instead of
waiting for it. Calls made from a pool thread run inline, so nesting never
deadlocks, and several user threads may run kernels at once.
"""
from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

CHUNKS_PER_THREAD = 4


def _default_threads() -> int:
    value = os.environ.get("TESSERA_NUM_THREADS")
    if value:
        return max(1, int(value))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


NUM_THREADS = _default_threads()
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_local = threading.local()


def _get_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(1, NUM_THREADS - 1), thread_name_prefix="tessera",
                                       initializer=_mark_worker)
        return _pool


def _mark_worker() -> None:
    _local.worker = True


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
    """Chunks of one parallel_for, claimed one at a time by whoever is free."""

    def __init__(self, fn, spans: list[tuple[int, int]], args: tuple):
        self.fn, self.spans, self.args = fn, spans, args
        self._next = itertools.count()
        self._lock = threading.Lock()
        self._finished = 0
        self._done = threading.Event()
        self.error: BaseException | None = None

    def work(self) -> None:
        """Run unclaimed chunks until there are none left."""
        while True:
            index = next(self._next)  # atomic under the GIL
            if index >= len(self.spans):
                return
            try:
                self.fn(*self.spans[index], *self.args)
            except BaseException as exc:  # re-raised in the caller
                self.error = self.error or exc
            with self._lock:
                self._finished += 1
                if self._finished == len(self.spans):
                    self._done.set()

    def wait(self) -> None:
        """Wait for the chunks other threads claimed; re-raise their error."""
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
    job = _Job(fn, spans, args)
    pool = _get_pool()
    for _ in range(min(NUM_THREADS - 1, len(spans) - 1)):
        pool.submit(job.work)
    job.work()
    job.wait()
