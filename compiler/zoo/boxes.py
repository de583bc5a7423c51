"""Detections as boxes, and how two lists of them agree: what the zoo's
trained detectors (digit_detector, text_detector) are measured by."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Box:
    """A detection (or a ground-truth box): corners in input pixels."""

    label: int
    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0


def iou(a: Box, b: Box) -> float:
    """Intersection over union."""
    w = max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0))
    h = max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))
    inter = w * h
    union = (a.x1 - a.x0) * (a.y1 - a.y0) + (b.x1 - b.x0) * (b.y1 - b.y0) - inter
    return inter / union if union > 0 else 0.0


def agreement(reference: list[Box], test: list[Box], threshold: float = 0.5) -> tuple[int, int]:
    """(boxes of ``reference`` matched by a box of ``test`` of the same label
    at IoU >= ``threshold``, each test box used once; boxes of ``reference``)."""
    used, matched = set(), 0
    for box in sorted(reference, key=lambda b: -b.score):
        best = max(((j, iou(box, t)) for j, t in enumerate(test) if j not in used and t.label == box.label),
                   key=lambda p: p[1], default=(None, 0.0))
        if best[0] is not None and best[1] >= threshold:
            used.add(best[0])
            matched += 1
    return matched, len(reference)
