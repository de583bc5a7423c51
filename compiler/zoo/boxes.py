"""Detections as boxes, and how two lists of them agree: what the zoo's
trained detectors (digit_detector, text_detector) are measured by. One
implementation, compiler/agreement.py's (the quantization reports' task
agreement); named here for the zoo's models and benches."""
from __future__ import annotations

from compiler.agreement import Box, agreement, iou, match

__all__ = ["Box", "agreement", "iou", "match"]
