"""Work splitting over a small thread pool, for nogil Numba kernels.

``parallel_for(fn, n, *args)`` calls ``fn(start, stop, *args)`` on disjoint
chunks of ``range(n)``, the caller's thread taking the first chunk. Calls
made from a pool thread run inline, so nesting can never deadlock, and
several user threads may run kernels at once.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor


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


def parallel_for(fn, n: int, *args, grain: int = 1) -> None:
    """Run ``fn(start, stop, *args)`` over ``range(n)`` on all threads."""
    if n <= 0:
        return
    spans = chunks(n, NUM_THREADS, grain)
    if len(spans) == 1 or getattr(_local, "worker", False):
        fn(0, n, *args)
        return
    pool = _get_pool()
    futures = [pool.submit(fn, start, stop, *args) for start, stop in spans[1:]]
    try:
        fn(*spans[0], *args)
    finally:
        for future in futures:
            future.result()
