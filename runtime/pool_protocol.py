"""The protocol the thread pool's threads follow inside Numba
(runtime/parallel.py runs the pool and its jobs): the layout of the pool's
state and of a job's team array, the spins, and what a team driver
(``team_enter``, ``team_next``, ``team_leave``) or a phased driver
(``phase_begin``, ``phase_claim``, ``phase_done``, ``phase_wait``,
``phase_end``) calls. Counters that different threads write get cache lines
of their own; chunks are claimed with atomic counters, the caller from the
front and pool threads from the back."""
from __future__ import annotations

import numpy as np

from runtime.atomics import cpu_relax, fetch_add, load_acquire
from runtime.jit import jit

LINE = 8
"""int64 slots per cache line: counters that different threads write get lines of their own."""

# the pool's state: jobs published (by a caller, without the GIL) and posted
# (in Python, before; what a blocked pool thread waits for), and the user
# threads inside jobs (cpu_load.Callers keeps it)
GO, POSTED, CROWD = 0, LINE, LINE + 1
# a team job's counters, a cache line each, then its constants, then the claim counters at either end
NEXT, DONE, ENTERED, FAILED = 0, LINE, 2 * LINE, 3 * LINE
COUNT, SEQ, EXPECTED, SPIN, JOIN_SPIN = (4 * LINE + i for i in range(5))
FRONT, BACK = 5 * LINE, 6 * LINE
TEAM_SIZE = 7 * LINE
CALLER, WORKER, RESUME, ALONE = 0, 1, 2, 3
"""A driver's ``role``: the thread that called parallel_for, or a pool
thread; for a phased job also the caller coming back after a pause
(:class:`runtime.parallel._Phases`), or a caller running every phase by itself."""
# a phased job's team: counters a cache line each, its constants, then NEXT and DONE of each phase
P_ENTERED, P_FAILED, P_YIELD = 0, LINE, LINE + 1
P_SEQ, P_EXPECTED, P_SPIN, P_JOIN_SPIN = (2 * LINE + i for i in range(4))
P_PHASES = 3 * LINE
P_STRIDE = 4 * LINE
P_COUNT = 1
"""Within a phase's first line (its claim counter's): a count set at run
time (:func:`phase_set_count`)."""
FINISHED = -1
"""What a phased driver returns when every phase is done."""


# ---------------------------------------------------------------- spinning (Numba)
@jit
def _spin_until(state, index, target, limit):
    """Spin until ``state[index] >= target`` or for ``limit`` rounds (atomic
    loads, a ``pause`` between them); return ``state[index]``."""
    for _ in range(limit):
        value = load_acquire(state, index)
        if value >= target:
            return value
        cpu_relax()
    return load_acquire(state, index)


@jit
def _await_job(state, target, limit):
    """A pool thread between jobs: spin until job ``target`` is published
    (True), or for ``limit`` rounds, or until two user threads are inside
    jobs, which then run alone and leave no core to spin on (False)."""
    for _ in range(limit):
        if load_acquire(state, GO) >= target:
            return True
        if load_acquire(state, CROWD) > 1:
            break
        cpu_relax()
    return load_acquire(state, GO) >= target


@jit
def _await(array, index, target, limit):
    """:func:`_spin_until`; say whether ``array[index]`` got to ``target``."""
    return _spin_until(array, np.int64(index), target, limit) >= target  # one signature, whatever constant index


# ---------------------------------------------------------------- team drivers (Numba)
@jit
def team_enter(team, state, role):
    """Join the team (the caller also publishes the job); the first chunk
    to run, or -1."""
    fetch_add(team, ENTERED, 1)
    if role == CALLER:
        fetch_add(state, GO, 1)
    return team_next(team, False, role)


@jit
def team_next(team, finished, role):
    """Count the chunk just ``finished``; claim the next one, or -1: the
    caller from the front, pool threads from the back (as
    :func:`phase_claim`)."""
    if finished:
        fetch_add(team, DONE, 1)
    if fetch_add(team, FAILED, 0):
        return -1
    return _claim(team, NEXT, FRONT, BACK, team[COUNT], role)


@jit
def _claim(team, gate, front, back, count, role):
    """Chunk ``count`` claims at most through the counter at ``gate``, then
    the position from the ``front`` counter (the caller) or the ``back`` one
    (pool threads); -1 once every chunk is claimed."""
    if fetch_add(team, gate, 1) >= count:
        return -1
    if role == WORKER:
        return count - 1 - fetch_add(team, back, 1)
    return fetch_add(team, front, 1)


@jit
def team_leave(team, state, role):
    """The caller: wait until every chunk is done (True) or the spin runs
    out (False), then briefly for the pool threads to be past Python. A pool
    thread: linger until the next job is published (or the spin runs out),
    so that it goes back to Python only when the GIL is free."""
    if role == CALLER:
        if not _await(team, DONE, team[COUNT], team[SPIN]):
            return False
        _await(team, ENTERED, team[EXPECTED], team[JOIN_SPIN])
        return True
    _await(state, GO, team[SEQ] + 1, team[SPIN])
    return True


@jit
def phase_begin(team, state, role):
    """Join a phased job (the caller also publishes it); a caller coming
    back (RESUME) or running alone (ALONE) neither counts nor publishes."""
    if role == CALLER or role == WORKER:
        fetch_add(team, P_ENTERED, 1)
    if role == CALLER:
        fetch_add(state, GO, 1)


@jit
def phase_claim(team, phase, count, role):
    """The next chunk of ``phase`` (``count`` chunks) to run, or -1: the
    caller takes them from the front, pool threads from the back. Chunks
    are runs of an operation's items in order, so on two threads each keeps
    its end of every layer: a 1x1 convolution's GEMM cut by columns
    (runtime.gemm.tasks.task_block) then reads the part of its input that
    the same thread wrote, from its own caches, not the other core's, and
    one cut by rows reads half the weights on each thread. On a VM whose
    two cores the host sometimes puts on different sockets (a line the
    other core wrote then takes 550-750 ns to come back instead of 50-60),
    ResNet-50's float path ran 1.40x slower than when they shared a cache
    with the chunks claimed from one counter, 1.28x with these ends. A
    first counter hands out the claims (``count`` at most), a second and a
    third the positions at either end."""
    if load_acquire(team, P_FAILED) or (role == WORKER and load_acquire(team, P_YIELD)):
        return -1
    at = P_PHASES + P_STRIDE * phase
    return _claim(team, at, at + 3 * LINE, at + 2 * LINE, count, role)


@jit
def phase_set_count(team, phase, count):
    """Set the chunk count of a later ``phase`` of this run, where it is
    known only at run time (before the phases that precede it end): in the
    run's own team array, so that a pool thread still in an earlier run
    never reads it."""
    team[P_PHASES + P_STRIDE * phase + P_COUNT] = count


@jit
def phase_count(team, phase):
    """The chunk count :func:`phase_set_count` set for ``phase``."""
    return load_acquire(team, P_PHASES + P_STRIDE * phase + P_COUNT)


@jit
def phase_done(team, phase):
    """Count one finished chunk of ``phase``."""
    fetch_add(team, P_PHASES + P_STRIDE * phase + LINE, 1)


@jit
def phase_wait(team, phase, count, role):
    """Wait until every chunk of ``phase`` is done (True) or the spin runs
    out (False). Once the job has let its pool threads go
    (:meth:`runtime.parallel._Pool.release`: another user thread runs a job), a pool thread
    leaves at once (False), and the caller spins only briefly before it
    sleeps (runtime.parallel._Phases) while a pool thread finishes its last chunk,
    whose core three busy threads now share."""
    done = P_PHASES + P_STRIDE * phase + LINE
    if load_acquire(team, P_YIELD):
        return role != WORKER and _await(team, done, count, team[P_JOIN_SPIN])
    return _await(team, done, count, team[P_SPIN])


@jit
def phase_end(team, state, role):
    """After the last phase: a caller waits briefly for the pool threads to
    be past Python; a pool thread lingers until the next job is published
    (as :func:`team_leave`)."""
    if role == WORKER:
        _await(state, GO, team[P_SEQ] + 1, team[P_SPIN])
    elif role != ALONE:
        _await(team, P_ENTERED, team[P_EXPECTED], team[P_JOIN_SPIN])
