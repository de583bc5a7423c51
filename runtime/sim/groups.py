"""Groups: a segment's instructions on two threads at once.

A segment of a card run (runtime.sim.phased) is interpreted on one thread
while the pool's other threads wait for the next pooled CONV. Where its
instructions do not depend on each other, two can run at once: the two
expand CONVs of each SqueezeNet fire module read the same input and write
different outputs, its DMAs and ELTWISEs between them too. (Its last CONV,
125 tiles of 8 channels of one input through two weight and two output
buffers, ran here until it became a chain: runtime/sim/chains.py.)

A segment is cut into *groups*: the LOADs before an instruction that
computes, that instruction, and the STOREs and NOPs after it. Group ``g``
depends on an earlier group ``f`` when one of them writes a byte the other
reads or writes (WGT, ACT and ACC of each cluster, and DRAM, by the sizes
the validator bounds: runtime.isa.footprints). Groups alternate
between two *sets* of the GEMM's working buffers (``g % 2``,
runtime.sim.conv_gemm.second_set), so group ``g`` also waits for ``g - 2``,
which used its set before it; of the groups of the other set it depends
on, it waits for the last one only (that one waited for the earlier ones).
Threads take the groups in order (the phase's chunks, runtime.sim.phased's
``GROUPS``) and wait for what each needs: with one thread they run in
program order; with more, at most two at once, each with its own set, and
every byte read or written as in program order.

A group that fails (a bad PARAM record) is reported as the interpreter
would have: the earliest failed group in program order wins (every group
before it ran, as a group after a failed one on its set does not run), its
set's ``err`` and position.

Whether a segment is worth cutting is estimated at Init from the groups'
work (``cost``): the two-set schedule's length against the serial sum.
"""
from __future__ import annotations

import numpy as np

from runtime.hardware import HardwareConfig
from runtime.isa import COL_OPCODE, Op
from runtime.isa.footprints import DRAM, footprints
from runtime.sim.interpreter import FROM_DRAM, REDIRECT, UNREAD
from runtime.sim.timing import conv_work

START, END, NEED = range(3)
"""Columns of a group table: where the group's rows lie, [START, END), in
the groups' rows (each group's in program order, one group after
another: ``split``), and the group of the other set it waits for (-1:
none)."""

OK, FAILED, STOPPED, SKIPPED = 0, 1, 2, 3
"""A group's outcome in a run: ran; a bad PARAM value; the interpreter
stopped short (an internal error); not run (its set's previous group did
not finish)."""

MACS_PER_NS, BYTES_PER_NS, INSTRUCTION_NS, GROUP_NS = 40, 8, 20, 400
"""The cost model of a group on one thread (Zen 3): MACs of a planned
CONV, bytes moved or touched, an instruction's and a group's hand-off."""

MIN_SEGMENT_NS, GAIN = 40_000, 0.8
"""Cut a segment whose estimated work is at least this, when two sets
would take at most ``GAIN`` of its serial time."""

MAX_TOUCHES, BLOCK = 4096, 512
"""Segments whose instructions touch more buffers than this are not cut
(the dependency test compares every pair, ``BLOCK`` rows at a time)."""

COMPUTE = np.array([Op.CONV, Op.POOL, Op.ELTWISE, Op.LUT, Op.MATMUL, Op.SOFTMAX], np.int64)
TOUCH_NOTHING = np.array([Op.NOP_LOAD, Op.NOP_COMPUTE, Op.NOP_STORE, Op.SYNC, Op.END], np.int64)
"""Whose bytes ``footprints`` knows: LOAD, STORE and ``COMPUTE``'s touch
the bytes it names, these none. A program with another opcode is not cut."""


def known(prog: np.ndarray) -> bool:
    """Whether every instruction of ``prog`` is one ``footprints`` covers."""
    ops = prog[:, COL_OPCODE]
    return bool(np.isin(ops, np.concatenate([COMPUTE, TOUCH_NOTHING, [Op.LOAD, Op.STORE]])).all())


class Touches:
    """What each row of a card run touches (``footprints``), as the run
    executes it: a redirected program's UNREAD LOADs touch nothing, its
    FROM_DRAM CONVs read constant DRAM instead of WGT (which nothing
    writes). Sorted by row; a buffer is (space, cluster slot), DRAM one of
    its own."""

    def __init__(self, code: np.ndarray, prog: np.ndarray, slot: np.ndarray, config: HardwareConfig):
        row, space, first, end, written = footprints(prog, config)
        keep = first < end
        if code.shape[1] > REDIRECT:
            how = code[row, REDIRECT]
            keep &= (how != UNREAD) & ~((how == FROM_DRAM) & (space == 0))
        order = np.argsort(row[keep], kind="stable")
        self.row = row[keep][order]
        self.buffer = np.where(space == DRAM, DRAM, space + 4 * slot[row])[keep][order]
        self.first, self.end, self.written = first[keep][order], end[keep][order], written[keep][order]

    def of(self, rows: np.ndarray) -> np.ndarray:
        """Indices of the touches of ``rows``."""
        at = np.searchsorted(self.row, rows, side="left")
        stop = np.searchsorted(self.row, rows, side="right")
        return np.concatenate([np.arange(a, b) for a, b in zip(at, stop)]) if rows.size else np.zeros(0, np.int64)


def bounds(ops: np.ndarray) -> np.ndarray:
    """Where groups start in a segment's opcodes ``ops``: at a LOAD or a
    computing instruction after the group's computing instruction."""
    compute = np.isin(ops, COMPUTE)
    starts, seen = [0], False
    for i in range(ops.size):
        if seen and (ops[i] == Op.LOAD or compute[i]):
            starts.append(i)
            seen = False
        seen |= bool(compute[i])
    return np.array(starts + [ops.size], np.int64)


def clash(buffer, first, end, written, buffer2, first2, end2, written2) -> np.ndarray:
    """Whether touches conflict, element by element (broadcast): the same
    buffer, overlapping bytes, a write on either side."""
    return (buffer == buffer2) & (first < end2) & (first2 < end) & (written | written2)


def needs(group: np.ndarray, buffer: np.ndarray, first: np.ndarray, end: np.ndarray, written: np.ndarray,
          count: int) -> np.ndarray:
    """For each of ``count`` groups, the last earlier group of the other
    set it depends on (-1: none), from its touches (group, buffer, [first,
    end), written)."""
    need = np.full(count, -1, np.int64)
    for i in range(0, group.size, BLOCK):  # every pair, a block of touches at a time
        g, b, f, e, w = (a[i:i + BLOCK, None] for a in (group, buffer, first, end, written))
        conflict = (g > group) & ((g - group) % 2 == 1) & clash(b, f, e, w, buffer, first, end, written)
        np.maximum.at(need, g[:, 0], np.where(conflict, group, -1).max(axis=1, initial=-1))
    return need


def cost(prog: np.ndarray, rows: np.ndarray, touches: Touches, planned: np.ndarray, slow: int) -> float:
    """Estimated ns of ``rows`` on one thread: a CONV's MACs (``slow`` times
    for one off the GEMM: ``planned[row]`` < 0), the bytes every row touches."""
    convs = rows[prog[rows, COL_OPCODE] == Op.CONV]
    macs = 0.0
    if convs.size:
        pixels, channels, depth = conv_work(prog, convs)
        macs = float(np.sum(pixels * channels * depth * np.where(planned[convs] >= 0, 1, slow)))
    at = touches.of(rows)
    moved = float(np.sum(touches.end[at] - touches.first[at]))
    return macs / MACS_PER_NS + moved / BYTES_PER_NS + INSTRUCTION_NS * rows.size


def _hoist(prog: np.ndarray, rows: np.ndarray, cuts: np.ndarray, touches: Touches) -> list[np.ndarray]:
    """The groups' rows: each a run of ``rows`` between ``cuts``, but for a
    STORE that reads what the previous group wrote (the scheduler puts a
    tile's STORE after the next tile's LOADs), which goes to the end of
    that group instead, where nothing before it in its own group touches
    what it touches with a write on either side (the order of every
    conflicting pair stays the program's)."""
    out = [list(rows[cuts[g]:cuts[g + 1]]) for g in range(cuts.size - 1)]
    spans = {}
    for r in rows.tolist():
        at = touches.of(np.array([r], np.int64))
        spans[r] = (touches.buffer[at], touches.first[at], touches.end[at], touches.written[at])

    def conflict(a: int, b: int) -> bool:
        return bool(clash(*(t[:, None] for t in spans[a]), *spans[b]).any())

    for g in range(1, len(out)):
        kept = []
        for r in out[g]:
            if prog[r, COL_OPCODE] == Op.STORE and any(conflict(r, q) for q in out[g - 1]) \
                    and not any(conflict(r, q) for q in kept):
                out[g - 1].append(r)
            else:
                kept.append(r)
        out[g] = kept
    return [np.array(group, np.int64) for group in out]


def split(prog: np.ndarray, code: np.ndarray, order: np.ndarray, first: int, end: int, touches: Touches,
          planned: np.ndarray, slow: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Positions [first, end) of ``order`` as groups: (their table:
    ``START``, ``END`` into the rows, ``NEED`` counted from the first group;
    their rows one group after another), or None where cutting does not pay."""
    rows = order[first:end]
    if rows.size < 4:
        return None
    cuts = bounds(code[rows, COL_OPCODE])
    count = cuts.size - 1
    if count < 2:
        return None
    at = touches.of(rows)
    if at.size > MAX_TOUCHES or cost(prog, rows, touches, planned, slow) < MIN_SEGMENT_NS:
        return None
    members = _hoist(prog, rows, cuts, touches)
    work = np.array([cost(prog, group, touches, planned, slow) for group in members])
    serial = float(work.sum())
    sizes = np.array([group.size for group in members], np.int64)
    grouped = np.concatenate(members)
    group_of = np.zeros(prog.shape[0], np.int64)
    group_of[grouped] = np.repeat(np.arange(count), sizes)
    need = needs(group_of[touches.row[at]], touches.buffer[at], touches.first[at], touches.end[at],
                 touches.written[at], count)
    ends = np.zeros(count)
    for g in range(count):
        start = ends[g - 2] if g >= 2 else 0.0
        if need[g] >= 0:
            start = max(start, ends[need[g]])
        ends[g] = start + work[g] + GROUP_NS
    if ends.max() > GAIN * serial:
        return None
    edges = np.concatenate([[0], np.cumsum(sizes)])
    return np.stack([edges[:-1], edges[1:], need], axis=1).astype(np.int64), grouped
