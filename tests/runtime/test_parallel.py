"""parallel_for: every index exactly once, errors re-raised, nesting inline."""
import os
import threading
import time

import numpy as np
import pytest

from runtime import atomics, cpu_load, parallel, pool_protocol
from runtime.chunking import chunks, tapered_chunks
from runtime.jit import jit
from runtime.parallel import parallel_for
from tests.helpers.pool import steady_pool


@pytest.fixture(autouse=True)
def _steady_pool(monkeypatch):
    steady_pool(monkeypatch)


@pytest.mark.parametrize("n, parts, grain", [(16, 8, 1), (36, 8, 1), (128, 8, 1), (1000, 8, 64), (64, 8, 7),
                                             (9, 8, 1), (100, 8, 30), (7, 5, 1)])
def test_tapered_chunks_cover_the_range_once_and_shrink_toward_the_middle(n, parts, grain):
    """The schedule's chunks: claimed from both ends, they end in the middle,
    where they are smallest (each at least ``grain``, as many as chunks
    gives, and the two halves meet in the middle of the range)."""
    spans = tapered_chunks(n, parts, grain)
    assert spans[0][0] == 0 and spans[-1][1] == n and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert len(spans) == len(chunks(n, parts, grain))
    sizes = [stop - start for start, stop in spans]
    assert min(sizes) >= max(grain, 1)
    half = len(sizes) // 2
    if len(sizes) >= 4:
        assert sizes[:half] == sorted(sizes[:half], reverse=True) and sizes[-half:] == sorted(sizes[-half:])
        assert sizes[half - 1] < sizes[0] or sizes[0] == max(grain, 1)
        assert abs(spans[half][0] - n / 2) <= max(sizes[0] - sizes[-1], 1) + max(grain, 1)


@pytest.mark.parametrize("n, parts, grain", [(10, 3, 1), (7, 8, 1), (100, 4, 30), (1, 4, 1)])
def test_chunks_cover_the_range_once(n, parts, grain):
    spans = chunks(n, parts, grain)
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert len(spans) <= parts and (len(spans) == 1 or min(e - s for s, e in spans) >= grain)


def test_every_index_is_visited_exactly_once(monkeypatch):
    monkeypatch.setattr(parallel, "NUM_THREADS", 3)
    hits = np.zeros(1000, np.int64)
    lock = threading.Lock()

    def body(start, stop, out):
        with lock:
            out[start:stop] += 1

    parallel_for(body, len(hits), hits)
    assert (hits == 1).all()


def test_errors_in_any_chunk_reach_the_caller(monkeypatch):
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)

    def body(start, stop):
        if start <= 500 < stop:
            raise ValueError("chunk with 500")

    with pytest.raises(ValueError, match="chunk with 500"):
        parallel_for(body, 1000)


def test_nested_calls_from_pool_threads_run_inline(monkeypatch):
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    seen = []

    def inner(start, stop):
        seen.append((start, stop))

    def outer(start, stop):
        parallel_for(inner, 10)

    parallel_for(outer, 8)
    assert sum(stop - start for start, stop in seen) == 10 * 8


def test_calls_from_several_user_threads_each_visit_every_index(monkeypatch):
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    hits = np.zeros((4, 500), np.int64)
    lock = threading.Lock()

    def body(start, stop, row):
        with lock:
            row[start:stop] += 1

    def caller(row):
        for _ in range(50):
            parallel_for(body, len(row), row)

    threads = [threading.Thread(target=caller, args=(hits[i],)) for i in range(len(hits))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (hits == 50).all()


def test_user_threads_running_jobs_at_once_each_run_alone(monkeypatch):
    """While another user thread is inside a job (two requests in flight),
    a caller runs each of its jobs whole on its own thread (one call of the
    body, not the chunks offered to the pool); once the other has left its
    job, a lone caller's job goes to the pool again. Every index is visited
    once either way. The other thread is held inside its job by an event,
    not by timing, so a loaded host cannot change what is checked."""
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    pool = parallel._get_pool()
    jobs, n = 20, 400
    hits = np.zeros((2, n), np.int64)
    calls = [0, 0]
    lock = threading.Lock()
    inside, leave = threading.Event(), threading.Event()

    def body(start, stop, row, who):
        with lock:
            row[start:stop] += 1
            calls[who] += 1
        if who == 1:
            inside.set()
            assert leave.wait(30), "the held job was never let go"

    def held():
        parallel_for(body, n, hits[1], 1)

    other = threading.Thread(target=held)
    # the held job runs on its own thread (as if other processes held the
    # cores), so the pool is free: only the other job in progress keeps this
    # thread's jobs whole
    standing_aside = pool.load.watch
    monkeypatch.setattr(pool.load, "watch", lambda: threading.current_thread() is other or standing_aside())
    other.start()
    try:
        assert inside.wait(30), "the other thread never entered its job"
        for job in range(jobs):
            before = calls[0]
            parallel_for(body, n, hits[0], 0)
            assert calls[0] - before == 1, f"job {job} was split while another thread ran one"
    finally:
        leave.set()
        other.join(30)
    assert not other.is_alive()
    assert (hits[0] == jobs).all() and (hits[1] == 1).all() and calls[1] == 1
    split = len(chunks(n, 2 * parallel.CHUNKS_PER_THREAD, 1))
    seq, before = pool.seq, calls[0]
    parallel_for(body, n, hits[0], 0)
    assert split > 1 and pool.seq == seq + 1 and calls[0] - before == split, \
        "a lone thread's job did not go to the pool"
    assert (hits[0] == jobs + 1).all()


def test_one_thread_alone_is_never_crowded():
    """Jobs of one thread, nested or not, one after another: never crowded;
    while a second thread is inside a job, both are."""
    callers = cpu_load.Callers()
    me, other = 1, 2
    assert not callers.start(me)
    assert not callers.start(me)  # nested
    callers.stop(me)
    callers.stop(me)
    assert not callers.start(me)
    assert callers.start(other)  # me is inside a job
    callers.stop(me)
    assert callers.start(me)  # other is inside one
    callers.stop(me)
    callers.stop(other)
    assert not callers.start(me)  # other has stopped
    callers.stop(me)


def test_a_run_restarted_just_after_another_that_met_a_third_job_starts_alone(monkeypatch):
    """Two requests in flight, restarted one at a time: a whole run (a
    float schedule's) that starts within RESTART_SECONDS of the end of
    another thread's run that met another job is crowded, though no job is
    in progress. One request at a time on alternating threads (runs that
    met nothing) is not, nor is a device run's job (not a whole run), nor a
    run after the window."""
    now = [100.0]
    monkeypatch.setattr(cpu_load.time, "perf_counter", lambda: now[0])
    callers = cpu_load.Callers()
    a, b = 1, 2
    assert not callers.start(a, whole_run=True)
    callers.stop(a, whole_run=True)
    assert not callers.start(b, whole_run=True)  # a's run met no other: one request at a time
    callers.stop(b, whole_run=True)
    assert not callers.start(a, whole_run=True)
    assert callers.start(b, whole_run=True)  # two in flight
    callers.stop(b, whole_run=True)
    callers.stop(a, whole_run=True)
    now[0] += cpu_load.RESTART_SECONDS / 2
    assert callers.start(b, whole_run=True)  # a's run, which met b's, just ended: a is about to be restarted
    callers.stop(b, whole_run=True)
    assert not callers.start(a, whole_run=False)  # a device run's job does not look
    callers.stop(a)
    now[0] += 2 * cpu_load.RESTART_SECONDS
    assert not callers.start(a, whole_run=True)  # after the window
    callers.stop(a, whole_run=True)


def _asleep(pool) -> bool:
    """Wait until every pool thread sleeps (a thread woken, but still waiting
    for the GIL, counts as a sleeper but is still ``steered``)."""
    for _ in range(200):  # the spin is capped at SPIN_SECONDS; allow a loaded machine 2 s
        if all(pool.asleep) and not any(pool.steered):
            return True
        time.sleep(0.01)
    return False


def test_idle_pool_threads_stop_spinning_and_block(monkeypatch):
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    parallel_for(lambda start, stop: None, 8)
    assert _asleep(parallel._get_pool())
    hits = np.zeros(100, np.int64)
    parallel_for(lambda start, stop: hits.__setitem__(slice(start, stop), hits[start:stop] + 1), len(hits))
    assert (hits == 1).all()


@pytest.mark.parametrize("cpus", [(3, 5), (3,)])
def test_a_sleeping_pool_thread_is_woken_away_from_the_callers_core(monkeypatch, cpus):
    """Linux tends to wake a thread on its waker's core and leave it there
    (after a 10 ms pause, three small layers in four ran on one core): the
    pool binds a sleeping thread to another core before it wakes it, and the
    thread frees itself as soon as it runs. With one core, nothing is bound."""
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    parallel_for(lambda start, stop: None, 8)
    pool = parallel._get_pool()
    monkeypatch.setattr(pool.load, "serial", False)  # not standing aside after a loaded moment earlier in the suite
    assert _asleep(pool)
    calls = []
    monkeypatch.setattr(pool.load, "cpus", cpus)
    monkeypatch.setattr(cpu_load, "current_cpu", lambda: 3)
    monkeypatch.setattr(os, "sched_setaffinity", lambda tid, mask: calls.append((tid, tuple(mask))), raising=False)
    hits = np.zeros(100, np.int64)
    parallel_for(lambda start, stop: hits.__setitem__(slice(start, stop), hits[start:stop] + 1), len(hits))
    assert (hits == 1).all()
    if len(cpus) == 1:
        assert calls == [] and not any(pool.steered)
        return
    for _ in range(200):  # each woken thread unbinds itself once it runs
        if len(calls) == 2 * pool.workers:
            break
        time.sleep(0.01)
    bound, freed = calls[:pool.workers], calls[pool.workers:]  # all bound before any is woken
    assert sorted(bound) == sorted((tid, (5,)) for tid in pool.tids)
    assert freed == [(0, cpus)] * pool.workers
    assert not any(pool.steered)


def test_spin_until_sees_a_value_written_by_another_thread():
    state = np.zeros(2 * pool_protocol.LINE, np.int64)
    timer = threading.Timer(0.01, lambda: state.__setitem__(0, 5))
    timer.start()
    seen = pool_protocol._spin_until(state, 0, 5, 10**10)  # the load is redone each round
    timer.join()
    assert seen == 5


def test_a_forked_child_starts_its_own_pool(monkeypatch):
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    parallel_for(lambda start, stop: None, 8)
    pid = os.fork()
    if pid == 0:  # the child: its parent's pool threads did not come along
        hits = np.zeros(100, np.int64)
        parallel_for(lambda start, stop: hits.__setitem__(slice(start, stop), hits[start:stop] + 1), len(hits))
        parallel_for(_count_visits, len(hits), hits, -1)  # a team job too
        os._exit(0 if (hits == 2).all() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# ---------------------------------------------------------------- team drivers
@jit
def _count_visits(start, stop, hits, fail_at):
    for i in range(start, stop):
        if i == fail_at:
            raise ValueError("index fail_at reached")
        hits[i] += 1


@parallel.drives(_count_visits)
@jit
def _count_visits_team(team, state, role, spans, *args):
    index = pool_protocol.team_enter(team, state, role)
    while index >= 0:
        _count_visits(spans[index, 0], spans[index, 1], *args)
        index = pool_protocol.team_next(team, True, role)
    return pool_protocol.team_leave(team, state, role)


@jit
def _add_many(counter, times):
    for _ in range(times):
        atomics.fetch_add(counter, 0, 1)


def test_fetch_add_is_atomic_across_threads():
    counter = np.zeros(8, np.int64)
    threads = [threading.Thread(target=_add_many, args=(counter, 200_000)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counter[0] == 800_000


@pytest.mark.parametrize("n, grain", [(1000, 1), (37, 1), (64, 20), (2, 1)])
def test_a_team_driver_visits_every_index_exactly_once(monkeypatch, n, grain):
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    for _ in range(200):  # many jobs back to back: the pool thread lingers between them
        hits = np.zeros(n, np.int64)
        parallel_for(_count_visits, n, hits, -1, grain=grain)
        assert (hits == 1).all()


@jit
def _spin_items(start, stop, who):
    for i in range(start, stop):
        total = 0.0
        for k in range(2000):
            total += np.sqrt(k)
        who[i] = -1 if total < 0 else -2


@parallel.drives(_spin_items)
@jit
def _spin_items_team(team, state, role, spans, who):
    index = pool_protocol.team_enter(team, state, role)
    while index >= 0:
        _spin_items(spans[index, 0], spans[index, 1], who)
        for i in range(spans[index, 0], spans[index, 1]):
            who[i] = role
        index = pool_protocol.team_next(team, True, role)
    return pool_protocol.team_leave(team, state, role)


def test_a_team_job_goes_to_the_caller_from_the_front_and_to_the_pool_from_the_back(monkeypatch):
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    shared = 0
    for _ in range(50):
        who = np.full(64, -3, np.int64)
        with parallel.steady():  # on the pool even if another process loads the machine
            parallel_for(_spin_items, 64, who)
        assert ((who == pool_protocol.CALLER) | (who == pool_protocol.WORKER)).all(), who
        pool = (who == pool_protocol.WORKER).astype(np.int64)
        assert (np.diff(pool) >= 0).all(), who
        shared += int(pool.min() < pool.max())
    assert shared > 0


def test_an_error_in_a_team_chunk_reaches_the_caller_and_the_pool_goes_on(monkeypatch):
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    for fail_at in (0, 500, 999):
        with pytest.raises(ValueError, match="fail_at"):
            parallel_for(_count_visits, 1000, np.zeros(1000, np.int64), fail_at)
    hits = np.zeros(1000, np.int64)
    parallel_for(_count_visits, 1000, hits, -1)
    assert (hits == 1).all()


def test_team_jobs_from_several_user_threads_each_visit_every_index(monkeypatch):
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    hits = np.zeros((4, 500), np.int64)

    def caller(row):
        for _ in range(100):
            parallel_for(_count_visits, len(row), row, -1)

    threads = [threading.Thread(target=caller, args=(hits[i],)) for i in range(len(hits))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (hits == 100).all()


def test_team_and_python_jobs_interleave(monkeypatch):
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    hits = np.zeros(300, np.int64)
    lock = threading.Lock()

    def body(start, stop, row):
        with lock:
            row[start:stop] += 1

    for _ in range(50):
        parallel_for(_count_visits, len(hits), hits, -1)
        parallel_for(body, len(hits), hits)
    assert (hits == 100).all()


# ---------------------------------------------------------------- a core taken by another process
def _calls_of(n: int) -> list[tuple[int, int, bool]]:
    """(start, stop, on the calling thread) of each chunk of one Python job."""
    seen, me = [], threading.get_ident()
    lock = threading.Lock()

    def body(start, stop):
        with lock:
            seen.append((start, stop, threading.get_ident() == me))

    parallel_for(body, n)
    return sorted(seen)


@pytest.mark.parametrize("others, stands_aside", [(1.0, True), (0.3, False)])
@pytest.mark.parametrize("job_s", [2.0 ** -13, 2.0 ** -5])  # ~0.1 and ~30 ms, exact in binary
def test_the_pool_stands_aside_while_other_processes_take_its_cores(monkeypatch, others, stands_aside, job_s):
    """Every WINDOW_SECONDS the caller reads how busy its cores were, less
    this process's CPU time: another process keeping a core busy (ResNet-50's
    float path 110 ms on two threads, 63 ms on one) makes the pool stand
    aside after STRIKES windows, and stay aside (no probing runs) until a
    window finds the core free; a process using a third of a core does not.
    Measured in seconds, not jobs, it reacts alike whether a job is a small
    layer (0.1 ms) or a whole scheduled run (30 ms); and a window that spans
    a long idle gap is dropped, not judged."""
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    pool = parallel._get_pool()
    clock, busy, mine = [1000.0], [0.0], [0.0]
    load = [others]

    def job(start, stop):  # job_s of wall clock; this process on its threads, the others on theirs
        if start == 0:  # once a job, on whichever thread runs its first chunk
            cores = 1.0 if watch.serial else 2.0
            clock[0] += job_s
            mine[0] += job_s * cores
            busy[0] += job_s * (cores + load[0])

    monkeypatch.setattr(cpu_load.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(cpu_load.time, "process_time", lambda: mine[0])
    monkeypatch.setattr(cpu_load, "busy_seconds", lambda cpus: busy[0])
    watch = pool.load
    monkeypatch.setattr(watch, "cpus", (0, 1))
    monkeypatch.setattr(watch, "strikes", 0)
    monkeypatch.setattr(watch, "serial", False)
    monkeypatch.setattr(watch, "stood_aside", 0)
    monkeypatch.setattr(watch, "window", cpu_load.load_sample(watch.cpus))

    def run_for(seconds, until=lambda: False):
        """Jobs for ``seconds`` of wall clock or until ``until()``: the seconds they took."""
        begin = clock[0]
        while clock[0] - begin < seconds and not until():
            parallel_for(job, 8)
        return clock[0] - begin

    window = cpu_load.WINDOW_SECONDS
    assert run_for(window) >= window and not watch.serial  # one window is not enough
    if not stands_aside:
        run_for(1.0)
        assert not watch.serial and watch.strikes == 0 and parallel.stood_aside() == 0
        assert len(_calls_of(100)) == parallel.NUM_THREADS * parallel.CHUNKS_PER_THREAD
        return
    waited = run_for(1.0, lambda: watch.serial)
    assert watch.serial and parallel.stood_aside() == 1
    assert window - 2 * job_s <= waited <= window + 2 * job_s  # the second window, at the next job after it ends
    run_for(1.0)  # the core still taken: aside all along, with no run on the pool to find it out
    assert watch.serial and parallel.stood_aside() == 1
    assert _calls_of(100) == [(0, 100, True)]
    with parallel.steady():  # compiler.warmup: jobs as on an idle machine, the core taken or not
        assert not watch.serial
        run_for(1.0)
        assert not watch.serial and parallel.stood_aside() == 1
        assert len(_calls_of(100)) == parallel.NUM_THREADS * parallel.CHUNKS_PER_THREAD
    waited = run_for(1.0, lambda: watch.serial)  # the verdicts resume, from a new window
    assert watch.serial and parallel.stood_aside() == 2 and waited <= 2 * window + 3 * job_s
    load[0] = 0.0  # the core is back
    waited = run_for(1.0, lambda: not watch.serial)
    assert waited <= 2 * window + 2 * job_s and watch.strikes == 0  # the window after the one it came back in
    assert len(_calls_of(100)) == parallel.NUM_THREADS * parallel.CHUNKS_PER_THREAD  # the pool again
    load[0] = others
    clock[0] += 5.0  # idle for 5 s while another process ran: not a window to judge
    busy[0] += 5.0 * others
    parallel_for(job, 8)
    run_for(window / 2)
    assert not watch.serial and watch.strikes == 0


# ---------------------------------------------------------------- phased jobs
def test_an_idle_pool_thread_stops_spinning_while_two_user_threads_run_jobs():
    """Between jobs a pool thread spins for the next (``_await_job``), but
    not while two user threads are inside jobs (they run alone, on both
    cores): then it goes to sleep at once."""
    state = np.zeros(2 * pool_protocol.LINE, np.int64)
    state[pool_protocol.GO] = 4
    assert pool_protocol._await_job(state, 4, 1)  # published: no spin
    state[pool_protocol.CROWD] = 1
    assert not pool_protocol._await_job(state, 5, 2000)
    state[pool_protocol.CROWD] = 2
    start = time.perf_counter()
    assert not pool_protocol._await_job(state, 5, parallel._get_pool().spin_limit * 4000)  # ~6 s of spinning, but
    assert time.perf_counter() - start < 1  # two threads run jobs
    callers = cpu_load.Callers(state, pool_protocol.CROWD)
    callers.start(1)
    assert state[pool_protocol.CROWD] == 1
    callers.start(2)
    assert state[pool_protocol.CROWD] == 2
    callers.stop(1)
    callers.stop(2)
    assert state[pool_protocol.CROWD] == 0
