"""How a range of work items is cut into the chunks threads claim
(runtime.parallel): near-equal, or tapered toward the middle for the
schedule's operations, which are claimed from both ends."""
from __future__ import annotations


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


def tapered_chunks(n: int, parts: int, grain: int = 1) -> list[tuple[int, int]]:
    """Split ``range(n)`` into at most ``parts`` chunks of at least ``grain``
    that shrink toward the middle (sizes in proportion to 4 3 2 1 1 2 3 4
    for 8 parts). The caller claims chunks from the front and pool threads
    from the back, so the middle ones are claimed last: when they are small
    the threads finish an operation closer together, and a thread that ran
    slow waits less for the other at the barrier that follows."""
    unit = max(grain, 1)
    parts = max(1, min(parts, n // unit))
    if parts < 4:
        return chunks(n, parts, grain)
    half = parts // 2
    weights = [half - i for i in range(half)] + [1] * (parts % 2) + [i + 1 for i in range(half)]
    total = sum(weights)
    sizes = [max(unit, n * w // total) for w in weights]
    ends_first = sorted(range(parts), key=lambda i: -weights[i])
    excess, turn = sum(sizes) - n, 0
    while excess:  # settle the rounding at the ends, keeping every chunk at least a unit
        i = ends_first[turn % parts]
        if excess < 0:
            sizes[i] += 1
            excess += 1
        elif sizes[i] > unit:
            sizes[i] -= 1
            excess -= 1
        turn += 1
    bounds, start = [], 0
    for size in sizes:
        bounds.append((start, start + size))
        start += size
    return bounds
