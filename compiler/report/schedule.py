"""The report's schedule chart data: the modelled device timeline
(runtime/timeline.py) in a compact form the page draws as a Gantt chart.

Each lane is [card, cluster, unit] (the host link: -1, -1, "host link");
each span is seven integers in one flat list (a ResNet-50's thousands of
spans stay a few hundred kilobytes of JSON): lane, layer (an index into the
report's layers, -1 for none), kind (an index into ``kinds``), start, end,
busy cycles and instructions.
"""
from __future__ import annotations

from typing import Any, Mapping

from runtime.timeline import KINDS, DeviceTimeline

SPAN_FIELDS = ("lane", "layer", "kind", "start", "end", "busy", "instructions")


def schedule(timeline: DeviceTimeline, layer_ids: Mapping[tuple[str, str], int]) -> dict[str, Any]:
    """The chart data of ``timeline``; ``layer_ids`` maps (segment, layer
    name) to the layer's index in the report."""
    lanes = timeline.lanes
    lane_ids = {lane: i for i, lane in enumerate(lanes)}
    spans: list[int] = []
    for span in timeline.spans:
        spans += [lane_ids[span.lane], layer_ids.get((span.segment, span.layer), -1), KINDS.index(span.kind),
                  span.start, span.end, span.busy, span.instructions]
    return {"clock_hz": timeline.clock_hz, "total": timeline.total_cycles, "kinds": list(KINDS),
            "fields": list(SPAN_FIELDS), "lanes": [[lane.card, lane.cluster, lane.unit] for lane in lanes],
            "spans": spans}


def first_cycles(timeline: DeviceTimeline) -> dict[tuple[str, str], int]:
    """Each (segment, layer)'s first cycle on any lane: the order layers run in."""
    first: dict[tuple[str, str], int] = {}
    for span in timeline.spans:
        key = (span.segment, span.layer)
        first[key] = min(first.get(key, span.start), span.start)
    return first


__all__ = ["SPAN_FIELDS", "first_cycles", "schedule"]
