"""The static schedule: when every instruction of a phase starts and ends.

A Kahn-style event simulation over all streams of a phase. In each stream
the fetch unit dispatches instructions in order into per-module command
queues (COMMAND_QUEUE_DEPTH: an instruction is dispatched once the one
COMMAND_QUEUE_DEPTH places before it in its module has started); each module
runs its instructions in order; an instruction starts when its module is
free, it has been dispatched and the tokens it pops have been pushed; it
ends ``duration`` cycles later, or later still while a queue it pushes is
full (TOKEN_QUEUE_DEPTH: push t waits for pop t - depth), and its tokens are
pushed at its end. A SYNC arrives at its barrier when it could start and
ends ``duration`` cycles after the last participant arrives. Every quantity
is known once its inputs are, so instructions are scheduled in whatever
order they become ready: the result does not depend on that order.
"""
from __future__ import annotations

import numpy as np

from runtime.jit import jit


@jit
def _fetch(s, sbase, module, modidx, modseq, mstart, nxt, start, disp, fetched, last, command_depth):
    """Dispatch stream s's instructions as far as the command queues allow."""
    progress = False
    length = sbase[s + 1] - sbase[s]
    while fetched[s] < length:
        r = sbase[s] + fetched[s]
        m = module[r] - 1
        k = modidx[r]
        t = last[s]
        if k >= command_depth:
            if nxt[s * 3 + m] <= k - command_depth:
                break
            t = max(t, start[modseq[mstart[s * 3 + m] + k - command_depth]])
        disp[r] = t
        last[s] = t
        fetched[s] += 1
        progress = True
    return progress


@jit
def schedule(sbase, module, pops, pushes, duration, barrier, participants, modidx, modseq, mstart,
             command_depth, token_depth, start, end):
    """Fill start and end (cycles from the phase's start) of every row;
    return whether every instruction could be scheduled (False: deadlock)."""
    n_streams = sbase.shape[0] - 1
    n = module.shape[0]
    nxt = np.zeros(3 * n_streams, np.int64)
    free = np.zeros(3 * n_streams, np.int64)
    fetched = np.zeros(n_streams, np.int64)
    last = np.zeros(n_streams, np.int64)
    disp = np.zeros(n, np.int64)
    pushed = np.zeros(4 * n_streams, np.int64)
    popped = np.zeros(4 * n_streams, np.int64)
    qpush = np.zeros(4 * n, np.int64)
    qpop = np.zeros(4 * n, np.int64)
    arrival = np.full(n, -1, np.int64)
    n_barriers = participants.shape[0]
    arrived = np.zeros(n_barriers, np.int64)
    latest = np.zeros(n_barriers, np.int64)
    scheduled = 0
    progress = True
    while progress:
        progress = False
        for s in range(n_streams):
            if _fetch(s, sbase, module, modidx, modseq, mstart, nxt, start, disp, fetched, last, command_depth):
                progress = True
            length = sbase[s + 1] - sbase[s]
            for m in range(3):
                qm = s * 3 + m
                while mstart[qm] + nxt[qm] < mstart[qm + 1]:
                    r = modseq[mstart[qm] + nxt[qm]]
                    if r - sbase[s] >= fetched[s]:
                        break
                    t = max(free[qm], disp[r])
                    b = barrier[r]
                    if arrival[r] < 0:
                        ok = True
                        for q in range(4):
                            if (pops[r] >> q) & 1:
                                if popped[s * 4 + q] >= pushed[s * 4 + q]:
                                    ok = False
                                else:
                                    t = max(t, qpush[4 * sbase[s] + q * length + popped[s * 4 + q]])
                        if not ok:
                            break
                    else:
                        t = arrival[r]
                    room = True
                    for q in range(4):
                        if (pushes[r] >> q) & 1 and pushed[s * 4 + q] >= token_depth:
                            room = room and popped[s * 4 + q] > pushed[s * 4 + q] - token_depth
                    if b >= 0 and arrival[r] < 0:  # arrive at the barrier: take the tokens now
                        arrival[r] = t
                        arrived[b] += 1
                        latest[b] = max(latest[b], t)
                        progress = True
                        for q in range(4):
                            if (pops[r] >> q) & 1:
                                qpop[4 * sbase[s] + q * length + popped[s * 4 + q]] = t
                                popped[s * 4 + q] += 1
                    if not room or (b >= 0 and arrived[b] < participants[b]):
                        break
                    finish = (latest[b] if b >= 0 else t) + duration[r]
                    for q in range(4):
                        if (pushes[r] >> q) & 1 and pushed[s * 4 + q] >= token_depth:
                            finish = max(finish, qpop[4 * sbase[s] + q * length + pushed[s * 4 + q] - token_depth])
                    if b < 0:
                        for q in range(4):
                            if (pops[r] >> q) & 1:
                                qpop[4 * sbase[s] + q * length + popped[s * 4 + q]] = t
                                popped[s * 4 + q] += 1
                    for q in range(4):
                        if (pushes[r] >> q) & 1:
                            qpush[4 * sbase[s] + q * length + pushed[s * 4 + q]] = finish
                            pushed[s * 4 + q] += 1
                    start[r] = t
                    end[r] = finish
                    free[qm] = finish
                    nxt[qm] += 1
                    scheduled += 1
                    progress = True
    return scheduled == n
