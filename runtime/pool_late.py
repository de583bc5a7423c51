"""Device programs the thread pool takes late (runtime/parallel.py runs the pool).

The simulated device runs one program at a time, so with two inference
requests on one engine the other request's thread is only ever in short CPU
work beside a program (its float tail, a CPU segment: ~0.3 ms of ResNet-50's
last layers). A program that started while that work was inside a job (or
held the pool) ran alone to its end: ResNet-50's int8 program 27-31 ms
against 17 on the pool, 8 % of the programs of the Inference Engine's FPGA
plugin with 2 requests (Zen 4). Such a program now runs on its caller from
the pool's ``waiting`` slot (:func:`run_late`); the end of the other
thread's job hands it the pool (:func:`post_waiting`), and a pool thread
joins at the phase the caller is in (the earlier phases have no chunk left
to claim: runtime.pool_protocol).

A program waits only behind threads that will wait for the same device
before their next program (:func:`followers`): each thread's last ``late``
key (the device's) is kept (:func:`note`). Two programs of different engines
side by side (two FWDNXT objects run from two threads) would hand the pool
over and back at every program, a few microseconds before the next; they
run alone as before.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from runtime.pool_protocol import GO, LINE, P_EXPECTED

if TYPE_CHECKING:
    from runtime.parallel import _Phases, _Pool

MAX_LATE_THREADS = 64
"""The most user threads ``_Pool.last_late`` remembers (it starts again past that)."""
_OWN_STATE = np.zeros(2 * LINE, np.int64)
"""The state the waiting job's caller publishes into (nothing reads it): one
job waits at a time, so one array serves."""


def note(pool: _Pool, me: int, key: int) -> None:
    """User thread ``me`` starts a job of late key ``key``."""
    if len(pool.last_late) > MAX_LATE_THREADS:  # threads long gone (a thread a request, say)
        pool.last_late.clear()
    pool.last_late[me] = key


def followers(pool: _Pool, me: int, key: int) -> bool:
    """Whether every other user thread inside a job now last ran a late job
    of ``key`` (so it waits for that device before its next)."""
    last = pool.last_late
    return all(last.get(thread) == key for thread in pool.callers.threads() if thread != me)


def post_waiting(pool: _Pool, me: int) -> None:
    """After user thread ``me``'s job ends: hand the pool to the job waiting
    for it, if ``me`` last ran a job of the same key (it waits for that
    device next), no other user thread is inside a job now and no call holds
    the pool. Its caller already runs its phases, so the job is published
    here (``GO``), not by its driver."""
    job = pool.waiting
    if job is None or pool.last_late.get(me) != job.key or pool.callers.shared() \
            or not pool.busy.acquire(blocking=False):
        return
    with pool.waiting_lock:
        if pool.waiting is not job:  # it finished meanwhile
            pool.busy.release()
            return
        pool.waiting = None
        job.posted = True
    job.team[P_EXPECTED] = 1 + pool.workers
    pool.post(job)
    pool.state[GO] = pool.seq


def run_late(pool: _Pool, job: _Phases, alone, key: int) -> bool:
    """Run ``job``, which other user threads' jobs (or a call holding the
    pool) sent alone, on its caller, from the pool's ``waiting`` slot; where
    another job holds the slot, ``alone()``. The caller's driver publishes
    nothing (:data:`_OWN_STATE`). False: a run partly alone is no pooled
    run's time (runtime.cpu_load.SplitWatch times neither way by it)."""
    job.team[P_EXPECTED] = 1
    job.key = key
    with pool.waiting_lock:
        taken = pool.waiting is not None
        if not taken:
            pool.waiting = job
    if taken:  # another thread's job took the place meanwhile
        alone()
        return False
    try:
        job.run(pool, _OWN_STATE)
    finally:
        with pool.waiting_lock:
            posted = job.posted
            if pool.waiting is job:
                pool.waiting = None
        if posted:
            pool.job = None
            pool.busy.release()
    return False
