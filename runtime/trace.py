"""Timelines in Chrome's trace-event format: the JSON that chrome://tracing,
Perfetto (ui.perfetto.dev) and onnxruntime's and PyTorch's profilers read
and write (docs/trace.md says how to open one).

Two clocks, two kinds of process in one file:

* the simulated device on its modelled clock (runtime/timeline.py): a
  "device" process whose one event is the whole run, from 0 to hwtime (the
  modules' last instructions, END and NOP, are not drawn, so their events
  may end a few cycles before it); one process per card, one thread per
  cluster module (DMA load, compute, DMA store); and a "host link" process
  for split mode's copies between cards;
* the host on the wall clock (time.perf_counter, from the first host span):
  one thread per track (CPU segments, device segments as the simulator ran
  them, the app's stages per image, ...).

Complete events ("X") with microsecond ``ts`` and ``dur``; metadata events
("M") name and order the processes and threads.
"""
from __future__ import annotations

import json
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

from runtime.files import write_atomic
from runtime.timeline import HOST_LINK, DeviceTimeline, Lane

HOST_PID = 1
"""The host's process id; cards are 100 + card, the host link 99, the whole device run 98."""
RUN_PID = 98
_LINK_PID = 99
_CARD_PID = 100
_UNIT_ORDER = ("DMA load", "compute", "DMA store")


@dataclass(frozen=True)
class HostSpan:
    """Something the host did on track ``track`` from ``start_s`` to
    ``end_s`` (time.perf_counter seconds)."""

    track: str
    name: str
    start_s: float
    end_s: float
    args: Mapping[str, Any] = field(default_factory=dict)


class HostRecorder:
    """Collects host spans from any thread (the app's workers, IE's
    requests); ``span`` times a block."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.spans: list[HostSpan] = []

    def add(self, span: HostSpan) -> None:
        with self._lock:
            self.spans.append(span)

    def snapshot(self) -> list[HostSpan]:
        """The spans recorded so far (a copy: safe while other threads still add)."""
        with self._lock:
            return list(self.spans)

    @contextmanager
    def span(self, track: str, name: str, **args: Any) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(HostSpan(track, name, start, time.perf_counter(), args))


def trace_document(timeline: DeviceTimeline | None = None, host: Sequence[HostSpan] = (),
                   metadata: Mapping[str, Any] | None = None) -> dict:
    """The trace of a device ``timeline`` and the ``host`` spans, as the
    JSON object format ({"traceEvents": [...], ...})."""
    events: list[dict] = []
    other: dict[str, Any] = dict(metadata or {})
    if timeline is not None:
        events += _device_events(timeline)
        other["hwtime_ms"] = timeline.hwtime_ms
        other["clock_hz"] = timeline.clock_hz
    if host:
        events += _host_events(host)
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": other}


def write_trace(path: str | os.PathLike, timeline: DeviceTimeline | None = None, host: Sequence[HostSpan] = (),
                metadata: Mapping[str, Any] | None = None) -> None:
    """Write :func:`trace_document` to ``path`` (atomically: a failure keeps the previous file)."""
    write_atomic(path, json.dumps(trace_document(timeline, host, metadata), separators=(",", ":")))


def _lane_ids(lane: Lane) -> tuple[int, int]:
    if lane.unit == HOST_LINK:
        return _LINK_PID, 0
    return _CARD_PID + lane.card, lane.cluster * len(_UNIT_ORDER) + _UNIT_ORDER.index(lane.unit)


def _device_events(timeline: DeviceTimeline) -> list[dict]:
    events = [_meta("process_name", RUN_PID, 0, name="device (modelled clock)"),
              _meta("process_sort_index", RUN_PID, 0, sort_index=RUN_PID),
              _meta("thread_name", RUN_PID, 0, name="run"),
              _meta("thread_sort_index", RUN_PID, 0, sort_index=0),
              {"ph": "X", "pid": RUN_PID, "tid": 0, "name": "run", "cat": "run", "ts": 0.0,
               "dur": timeline.microseconds(timeline.total_cycles),
               "args": {"hwtime_ms": timeline.hwtime_ms, "cycles": timeline.total_cycles,
                        "segments": _segments(timeline)}}]
    named: set[int] = set()
    for lane in timeline.lanes:
        pid, tid = _lane_ids(lane)
        if pid not in named:
            named.add(pid)
            title = "host link (modelled clock)" if pid == _LINK_PID else f"card {lane.card} (modelled clock)"
            events += [_meta("process_name", pid, 0, name=title), _meta("process_sort_index", pid, 0, sort_index=pid)]
        label = HOST_LINK if pid == _LINK_PID else f"cluster {lane.cluster} {lane.unit}"
        events += [_meta("thread_name", pid, tid, name=label), _meta("thread_sort_index", pid, tid, sort_index=tid)]
    us = 1e6 / timeline.clock_hz
    for span in timeline.spans:
        pid, tid = _lane_ids(span.lane)
        events.append({"ph": "X", "pid": pid, "tid": tid, "name": span.layer or span.kind, "cat": span.kind,
                       "ts": span.start * us, "dur": (span.end - span.start) * us,
                       "args": {"kind": span.kind, "op": span.op, "segment": span.segment,
                                "onnx_nodes": list(span.onnx_nodes), "instructions": span.instructions,
                                "busy_cycles": span.busy, "start_cycle": span.start, "end_cycle": span.end}})
    return events


def _segments(timeline: DeviceTimeline) -> list[str]:
    """The device segments of the run, in the order they ran."""
    first: dict[str, int] = {}
    for span in timeline.spans:
        first[span.segment] = min(first.get(span.segment, span.start), span.start)
    return sorted(first, key=first.__getitem__)


def _host_events(spans: Sequence[HostSpan]) -> list[dict]:
    origin = min(span.start_s for span in spans)
    tracks: dict[str, int] = {}
    for span in sorted(spans, key=lambda s: s.start_s):
        tracks.setdefault(span.track, len(tracks))
    events = [_meta("process_name", HOST_PID, 0, name="host (wall clock)"),
              _meta("process_sort_index", HOST_PID, 0, sort_index=0)]
    for track, tid in tracks.items():
        events += [_meta("thread_name", HOST_PID, tid, name=track),
                   _meta("thread_sort_index", HOST_PID, tid, sort_index=tid)]
    for span in sorted(spans, key=lambda s: (tracks[s.track], s.start_s)):
        events.append({"ph": "X", "pid": HOST_PID, "tid": tracks[span.track], "name": span.name, "cat": span.track,
                       "ts": (span.start_s - origin) * 1e6, "dur": max(span.end_s - span.start_s, 0.0) * 1e6,
                       "args": dict(span.args)})
    return events


def _meta(kind: str, pid: int, tid: int, **args: Any) -> dict:
    return {"ph": "M", "pid": pid, "tid": tid, "name": kind, "args": args}
