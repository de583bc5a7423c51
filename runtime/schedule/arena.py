"""The arena of a schedule (runtime.schedule.builder): where each buffer
operations write sits, planned once from the plan positions that use it.

First fit by lifetime, largest first, gives values alive together disjoint
bytes and the rest the same ones. Which of the free places a value takes
also decides what it costs to write there: on a host of two cores a line
the other core holds must be taken from it first (~30 ns a line measured
on Zen 4, 100 and more when the two vCPUs sit on far cores, where a line a
core holds alone costs ~1), and operations that do little work per line
written wait on every one (:func:`_spare_light_writers`).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

ALIGN = 64
"""Byte alignment of every arena buffer (a cache line, an AVX-512 vector)."""


@dataclass
class Buffer:
    """A run of bytes operations use: in the arena (``kind`` "arena": its
    offset once planned), or bound elsewhere (a pinned constant, a program
    input, a Python step's output). ``first``/``last``: the plan positions
    that use it."""

    kind: str
    nbytes: int = 0
    first: int = 1 << 60
    last: int = -1
    offset: int = 0
    spread_at: int = -1
    """The last position at which an operation read it on every thread
    (:meth:`runtime.schedule.builder.Lowering.spread`)."""
    light: bool = False
    """Written by an operation that does little work per line it writes
    (:meth:`runtime.schedule.builder.Lowering.light`)."""

    def touch(self, position: int) -> None:
        self.first, self.last = min(self.first, position), max(self.last, position)


def plan(buffers: list[Buffer]) -> int:
    """Offsets of the arena ``buffers`` (first fit by lifetime, largest
    first, then :func:`_spare_light_writers`); the arena's size."""
    placed: list[Buffer] = []
    size = 0
    for buffer in sorted(buffers, key=lambda b: -b.nbytes):
        if buffer.last < 0:
            buffer.first = buffer.last = 0
        offset = 0
        for other in sorted((o for o in placed if o.first <= buffer.last and buffer.first <= o.last),
                            key=lambda o: o.offset):
            if offset + buffer.nbytes <= other.offset:
                break
            offset = max(offset, -(-(other.offset + other.nbytes) // ALIGN) * ALIGN)
        buffer.offset = offset
        placed.append(buffer)
        size = max(size, offset + buffer.nbytes)
    _spare_light_writers(placed)
    return size


def _spare_light_writers(placed: list[Buffer]) -> None:
    """Swap the offsets of same-sized arena buffers, in the order they are
    first written, so that a light writer's output (``Lowering.light``)
    does not land on lines a spread read (``Lowering.spread``) has just
    left in both cores' caches.

    In MobileNetV2's blocks first fit puts each depthwise output where the
    block before's depthwise output was, which the 1x1 product after it
    read on both threads: 960 planes of 7 x 7 took 35 us on two threads,
    no less than on one, and 137 in minutes when the two vCPUs sat far
    apart (Zen 4). Swapped with the block's expansion (same size, written
    and read in the same leading-plane cut), the depthwise writes lines
    its own core last held: 20 us; the expansion's GEMM, with work to hide
    the transfers behind, pays 4-5 us for the other place. The model runs
    1.5 % faster, 6 % in the far minutes; the arena keeps its size.
    """
    light = sorted((b for b in placed if b.light), key=lambda b: b.first)
    if not light:
        return
    history = _History(placed)
    for buffer in light:
        if not history.spread_below(buffer, buffer.offset, buffer):
            continue
        live = history.live(buffer)
        for other in live:
            if other is buffer or other.nbytes != buffer.nbytes:
                continue  # a same-sized buffer live with it: no position between them planned around either
            if (history.spread_below(buffer, other.offset, other)
                    or (other.light and history.spread_below(other, buffer.offset, buffer))
                    or not _free(buffer, other.offset, live, other)
                    or not _free(other, buffer.offset, history.live(other), buffer)):
                continue
            buffer.offset, other.offset = other.offset, buffer.offset
            break


class _History:
    """The placed buffers by their plan positions, for the questions
    :func:`_spare_light_writers` asks of each light buffer: which are live
    with it, and which held its bytes last before it (the most recent
    first, stopping once they cover them all), each without a pass over
    every buffer and a sort (3000 buffers: 13.9 s to plan, ~0.1 s of it
    first fit)."""

    def __init__(self, placed: list[Buffer]):
        self.by_first = sorted(placed, key=lambda b: b.first)
        self.firsts = [b.first for b in self.by_first]
        self.by_last = sorted(placed, key=lambda b: -b.last)
        self.lasts = [-b.last for b in self.by_last]
        self.longest = max(b.last - b.first for b in placed)

    def live(self, buffer: Buffer) -> list[Buffer]:
        """The buffers whose positions overlap ``buffer``'s (itself among them)."""
        lo = bisect.bisect_left(self.firsts, buffer.first - self.longest)
        hi = bisect.bisect_right(self.firsts, buffer.last)
        return [o for o in self.by_first[lo:hi] if o.last >= buffer.first]

    def spread_below(self, buffer: Buffer, offset: int, moving: Buffer) -> bool:
        """Whether, at ``offset``, some of ``buffer``'s bytes were last held
        by a buffer read spread at its last use (``moving``, which would
        leave that place, aside)."""
        end = offset + buffer.nbytes
        covered: list[tuple[int, int]] = []
        left = buffer.nbytes
        for other in self.by_last[bisect.bisect_right(self.lasts, -buffer.first):]:  # last < first, latest first
            if other is moving or other.offset >= end or other.offset + other.nbytes <= offset:
                continue
            start, stop = max(offset, other.offset), min(end, other.offset + other.nbytes)
            fresh = _uncovered(start, stop, covered)
            if other.spread_at == other.last and fresh:
                return True
            covered.append((start, stop))
            left -= sum(hi - lo for lo, hi in fresh)
            if left <= 0:
                return False
        return False


def _uncovered(start: int, stop: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    pieces = [(start, stop)]
    for a, b in covered:
        pieces = [piece for lo, hi in pieces for piece in ((lo, min(hi, a)), (max(lo, b), hi)) if piece[0] < piece[1]]
    return pieces


def _free(buffer: Buffer, offset: int, live: list[Buffer], moving: Buffer) -> bool:
    """Whether ``buffer`` may sit at ``offset`` among the buffers ``live``
    with it (``moving`` aside)."""
    end = offset + buffer.nbytes
    return not any(o is not buffer and o is not moving and o.offset < end and offset < o.offset + o.nbytes
                   for o in live)
