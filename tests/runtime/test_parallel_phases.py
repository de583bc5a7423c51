"""Phased jobs on the thread pool (runtime.parallel.run_phases): every
chunk once and each phase after the last, the caller from the front and the
pool thread from the back, a caller whose wait runs out, errors, and a job
that lets its pool thread go when another user thread starts one."""
import threading
import time

import numpy as np
import pytest

from runtime import parallel, pool_late, pool_protocol
from runtime.jit import jit
from runtime.parallel import parallel_for
from tests.helpers.pool import steady_pool


@pytest.fixture(autouse=True)
def _steady_pool(monkeypatch):
    steady_pool(monkeypatch)


_WHO = np.zeros((8, 9), np.int64)
"""Where the tests that do not look at it let _phased write who ran each chunk."""


@jit
def _phased(team, state, role, first, hits, work, fail_at, who):
    """Phase p, chunk i: hits[p, i] += 1, after checking that every chunk of
    phase p - 1 is done (else it marks -1000: a barrier let it through);
    who[p, i] = the role of the thread that ran it."""
    pool_protocol.phase_begin(team, state, role)
    phases, count = hits.shape
    for p in range(first, phases):
        chunk = pool_protocol.phase_claim(team, p, count, role)
        while chunk >= 0:
            if p > 0 and hits[p - 1].min() != 1:
                hits[p, chunk] = -1000
            if p * count + chunk == fail_at:
                raise ValueError("chunk fail_at reached")
            total = 0.0
            for k in range(work):
                total += np.sqrt(k)
            hits[p, chunk] += 1 if total >= 0 else 2
            who[p, chunk] = role
            pool_protocol.phase_done(team, p)
            chunk = pool_protocol.phase_claim(team, p, count, role)
        if role != pool_protocol.ALONE and not pool_protocol.phase_wait(team, p, count, role):
            return -1 if role == pool_protocol.WORKER else p
    pool_protocol.phase_end(team, state, role)
    return pool_protocol.FINISHED


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_a_phased_job_runs_every_chunk_once_and_each_phase_after_the_last(monkeypatch, threads):
    monkeypatch.setattr(parallel, "NUM_THREADS", threads)
    for _ in range(100):  # back to back: pool threads come late, early, or not at all
        hits = np.zeros((7, 9), np.int64)
        parallel.run_phases(_phased, 7, hits, 200, -1, _WHO)
        assert (hits == 1).all()


def test_the_caller_takes_a_phase_from_the_front_and_the_pool_thread_from_the_back(monkeypatch):
    """Each thread keeps its end of every phase (the same part of the image
    from one layer to the next): the chunks the caller ran come first."""
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    shared = 0
    for _ in range(50):
        who = np.full((6, 8), -1, np.int64)
        with parallel.steady():
            parallel.run_phases(_phased, 6, np.zeros((6, 8), np.int64), 20_000, -1, who)
        assert (who >= 0).all()
        pool = (who == pool_protocol.WORKER).astype(np.int64)
        assert (np.diff(pool, axis=1) >= 0).all(), who  # caller's chunks, then the pool thread's, in every phase
        shared += int((pool.min(axis=1) < pool.max(axis=1)).sum())
    assert shared > 0  # the pool thread did take part


def test_a_caller_whose_wait_runs_out_comes_back_to_the_phase(monkeypatch):
    """With spins far shorter than a chunk, the caller's waits run out while
    the pool thread still runs one (it returns, sleeps and comes back), and
    the pool thread leaves at a wait of its own: still every chunk once."""
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    pool = parallel._get_pool()
    monkeypatch.setattr(pool, "spin_limit", 2)
    for _ in range(20):
        hits = np.zeros((4, 3), np.int64)
        parallel.run_phases(_phased, 4, hits, 200_000, -1, _WHO)
        assert (hits == 1).all()


def test_a_phased_job_runs_alone_while_another_call_holds_the_pool(monkeypatch):
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    pool = parallel._get_pool()
    with pool.busy:
        hits = np.zeros((3, 5), np.int64)
        parallel.run_phases(_phased, 3, hits, 10, -1, _WHO)
    assert (hits == 1).all()


@pytest.mark.parametrize("whole_run", [True, False])
def test_a_phased_job_lets_its_pool_thread_go_when_another_user_thread_starts_a_job(monkeypatch, whole_run):
    """Two requests in flight: while one thread's phased job holds the pool,
    another thread's job runs alone and, where the first is a whole run, the
    pool thread leaves it at its next chunk (three busy threads on two
    cores otherwise); the first job's caller runs every chunk left, each
    once. The second job starts as soon as the first is on the pool, so the
    last half of the first's phases (a hundred milliseconds and more) run
    after the release. A job that is not a whole run keeps its pool thread."""
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    pool = parallel._get_pool()
    phases, count = 40, 8
    hits, who = np.zeros((phases, count), np.int64), np.full((phases, count), -1, np.int64)
    runner = threading.Thread(target=parallel.run_phases, args=(_phased, phases, hits, 100_000, -1, who),
                              kwargs={"whole_run": whole_run})
    runner.start()
    try:
        for _ in range(3000):
            if isinstance(pool.job, parallel._Phases):
                break
            time.sleep(0.001)
        job = pool.job
        assert isinstance(job, parallel._Phases), "the phased job never went to the pool"
        calls = []
        parallel_for(lambda start, stop: calls.append((start, stop)), 64)
        assert calls == [(0, 64)], "the second thread's job was split while the first held the pool"
        assert job.team[pool_protocol.P_YIELD] == whole_run
    finally:
        runner.join(60)
    assert not runner.is_alive()
    assert (hits == 1).all()
    if whole_run:
        assert (who[phases // 2:] != pool_protocol.WORKER).all(), who  # the caller (or it back after a short wait)


def _late_job_after_another(pool, late, cause):
    """One run of the scenario below; whether the pool thread took part."""
    other = -12345  # a user thread inside a job, as Callers counts them
    phases, count = 40, 8
    hits, who = np.zeros((phases, count), np.int64), np.full((phases, count), -1, np.int64)
    device = 7  # the key of the device both threads' programs run on
    pool.last_late[other] = device  # the other thread ran a program on it last
    if cause == "crowd":
        pool.callers.start(other)
    else:
        pool.busy.acquire()
    runner = threading.Thread(target=parallel.run_phases, args=(_phased, phases, hits, 200_000, -1, who),
                              kwargs={"late": device if late else None})
    runner.start()
    try:
        for _ in range(3000):
            if (hits[:2] == 1).all():
                break
            time.sleep(0.001)
        assert pool.waiting is not None if late else pool.waiting is None
    finally:  # the other job ends, as _submit ends one
        if cause == "crowd":
            pool.callers.stop(other)
        else:
            pool.busy.release()
        pool_late.post_waiting(pool, other)
        runner.join(60)
        del pool.last_late[other]
    assert not runner.is_alive()
    assert (hits == 1).all()
    assert (who[:2] != pool_protocol.WORKER).all()  # alone while the other job ran
    assert pool.waiting is None and pool.job is None
    assert pool.busy.acquire(blocking=False)  # given back
    pool.busy.release()
    return bool((who == pool_protocol.WORKER).any())


@pytest.mark.parametrize("late", [True, False])
@pytest.mark.parametrize("cause", ["crowd", "busy"])
def test_a_late_job_sent_alone_takes_the_pool_once_the_other_job_ends(monkeypatch, late, cause):
    """A device program that starts while another request's thread is inside
    a job (``crowd``), or while another call holds the pool (``busy``), runs
    alone at first; with ``late`` the pool thread joins it once that job ends
    (the end of a job of a thread that last ran a program on the same
    device hands the pool over): it then runs the back of the later
    phases, every chunk still once. Without, it never takes part.

    Whether the pool thread wakes before the caller has run the ~100 ms of
    phases left is up to the scheduler (CI's two cores run two test
    processes): it may be given no time at all, so the scenario runs up to
    five times and the pool thread must take part in one of them (and, without
    ``late``, in none)."""
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    pool = parallel._get_pool()
    joined = [_late_job_after_another(pool, late, cause) for _ in range(1 if late else 3)]
    while late and not any(joined) and len(joined) < 5:
        joined.append(_late_job_after_another(pool, late, cause))
    assert any(joined) == late, joined


def test_a_late_job_beside_another_devices_program_runs_alone(monkeypatch):
    """Two device programs of different engines side by side: the other
    thread last ran a program on another device, so it will not wait for
    this one's; the program runs alone and waits for no pool."""
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    pool = parallel._get_pool()
    other = -12346
    monkeypatch.setitem(pool.last_late, other, 8)
    pool.callers.start(other)
    try:
        hits, who = np.zeros((4, 8), np.int64), np.full((4, 8), -1, np.int64)
        assert parallel.run_phases(_phased, 4, hits, 1000, -1, who, late=7) is False
        assert pool.waiting is None
        assert (hits == 1).all() and (who == pool_protocol.ALONE).all()
    finally:
        pool.callers.stop(other)


def test_an_error_in_a_phase_reaches_the_caller_and_the_pool_goes_on(monkeypatch):
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    for fail_at in (0, 13, 26):
        with pytest.raises(ValueError, match="fail_at"):
            parallel.run_phases(_phased, 3, np.zeros((3, 9), np.int64), 10, fail_at, _WHO)
    hits = np.zeros((3, 9), np.int64)
    parallel.run_phases(_phased, 3, hits, 10, -1, _WHO)
    assert (hits == 1).all()


class _StartsAnotherJob:
    """The pool's ``busy`` lock, which lets another user thread's job begin
    right after this thread takes it (as the GIL may hand over there)."""

    def __init__(self, pool, other: int):
        self.lock, self.pool, self.other, self.started = pool.busy, pool, other, False

    def acquire(self, blocking=True):
        taken = self.lock.acquire(blocking)
        if taken and not self.started:
            self.started = True
            self.pool.callers.start(self.other)
        return taken

    def release(self):
        self.lock.release()


@pytest.mark.parametrize("window", ["after taking the pool", "while posting"])
def test_a_whole_run_that_another_threads_job_meets_before_it_is_posted_runs_alone(monkeypatch, window):
    """Two requests started together: one run takes the pool, and before
    its job is posted the other request's job begins, whose start finds no
    job to let go of (runtime.parallel._Pool.release). The first run must
    still leave the pool thread out, or it shares the second's core for
    its whole run (MobileNetV2, IE CPU plugin, 2 requests: each first run of
    a turn 8-13 ms where alone they take 7.4, Zen 4). Taken with the pool,
    the run goes alone; crowded while it is posted, the pool thread is let
    go before it can claim a chunk."""
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    pool = parallel._get_pool()
    other = -12347
    if window == "after taking the pool":
        monkeypatch.setattr(pool, "busy", _StartsAnotherJob(pool, other))
    else:
        class Crowded(parallel._Phases):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                pool.callers.start(other)
        monkeypatch.setattr(parallel, "_Phases", Crowded)
    try:
        phases, count = 6, 8
        hits, who = np.zeros((phases, count), np.int64), np.full((phases, count), -1, np.int64)
        pooled = parallel.run_phases(_phased, phases, hits, 20_000, -1, who, whole_run=True)
    finally:
        pool.callers.stop(other)
    assert (hits == 1).all()
    assert not (who == pool_protocol.WORKER).any(), who
    assert pooled == (window == "while posting")
    assert pool.job is None and pool.busy.acquire(blocking=False)
    pool.busy.release()
