"""The modelled device timeline of one run: what each module of each
cluster does, and when, on the cycle model's clock.

The simulator's static schedule (runtime.sim.timing.Timing) gives every
instruction its start and end cycle. Here those rows become *spans*: on one
lane (a card's cluster's LOAD, COMPUTE or STORE module, or the host link
that split mode's copies between cards take), a run of consecutive
instructions of one layer and one kind of work (MAC, vector, DMA load, DMA
store, barrier). Device segments follow one another, and the host's copies
between the phases of a segment delay the phases after them, exactly as
FWDNXT's hwtime counts them (runtime.device.SimulatedDevice.hwtime_ms), so
the timeline ends at hwtime. The compile report's schedule chart and the
trace files (runtime/trace.py) both draw this.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from runtime.compiled import DeviceSegment
from runtime.hardware import HardwareConfig
from runtime.isa import COL_OPCODE, Module, Op, StreamKey
from runtime.sim import Simulator
from runtime.sim.timing import exchange_cycles

UNITS = {Module.LOAD: "DMA load", Module.COMPUTE: "compute", Module.STORE: "DMA store"}
"""Lane names of a cluster's three modules."""
HOST_LINK = "host link"
"""The lane of the host's copies between cards (split mode across cards)."""

_KIND = {Op.LOAD: "DMA load", Op.STORE: "DMA store", Op.CONV: "MAC", Op.MATMUL: "MAC", Op.POOL: "vector",
         Op.ELTWISE: "vector", Op.LUT: "vector", Op.SOFTMAX: "vector", Op.SYNC: "barrier"}
KINDS = ("MAC", "vector", "DMA load", "DMA store", "barrier", "exchange")
"""Kinds of work a span can be (NOP and END take no time worth drawing)."""


@dataclass(frozen=True, order=True)
class Lane:
    """Where a span runs: a module (``unit``) of cluster ``cluster`` of card
    ``card``; the host link has card and cluster -1."""

    card: int
    cluster: int
    unit: str

    @property
    def label(self) -> str:
        return self.unit if self.card < 0 else f"card {self.card} cluster {self.cluster} {self.unit}"


@dataclass(frozen=True)
class Span:
    """Instructions ``instructions`` of one layer (``layer``; "" for rows no
    layer owns) and one kind of work, back to back on one lane, from cycle
    ``start`` to ``end`` of the run; ``busy`` of those cycles keep the module
    working (the rest it waits on a queue or barrier)."""

    lane: Lane
    layer: str
    kind: str
    start: int
    end: int
    busy: int
    instructions: int
    segment: str
    op: str = ""
    onnx_nodes: tuple[str, ...] = ()


@dataclass
class DeviceTimeline:
    """Every span of one run, in lane order then time order."""

    clock_hz: int
    total_cycles: int
    spans: list[Span] = field(default_factory=list)

    @property
    def hwtime_ms(self) -> float:
        return self.total_cycles / self.clock_hz * 1e3

    @property
    def lanes(self) -> list[Lane]:
        """The lanes that have work, sorted (cards, clusters, modules; the host link first)."""
        return sorted({span.lane for span in self.spans})

    def microseconds(self, cycles: int) -> float:
        return cycles / self.clock_hz * 1e6


def device_timeline(config: HardwareConfig, segments: Sequence[tuple[DeviceSegment, Simulator]]) -> DeviceTimeline:
    """The timeline of one run of the device ``segments`` (each with its
    Simulator, in execution order) on the hardware ``config``."""
    timeline = DeviceTimeline(config.clock_hz, 0)
    offset = 0
    for segment, simulator in segments:
        timing = simulator.timing
        delays = _phase_delays(segment, sorted(timing.phase_cycles), config)
        for key, rows in simulator.streams.items():
            shift = offset + delays[key.phase]
            timeline.spans.extend(_stream_spans(segment, key, rows, timing.starts[key] + shift,
                                                timing.ends[key] + shift, timing.durations[key]))
        phase_end = offset
        for phase in sorted(timing.phase_cycles):
            phase_end += timing.phase_cycles[phase]
            copy = delays.get(phase + 1, delays[phase]) - delays[phase]
            if copy:
                start = phase_end + delays[phase]
                timeline.spans.append(Span(Lane(-1, -1, HOST_LINK), f"copies after phase {phase}", "exchange", start,
                                           start + copy, copy, 0, segment.name))
        offset += timing.total_cycles + delays[max(delays)]
    timeline.total_cycles = offset
    timeline.spans.sort(key=lambda s: (s.lane, s.start))
    return timeline


def _phase_delays(segment: DeviceSegment, phases: list[int], config: HardwareConfig) -> dict[int, int]:
    """Per phase, the cycles the host's copies after earlier phases delay
    it; one entry past the last phase holds them all. Cumulative, so that
    their sum rounds as hwtime's one sum of the segment's copies does."""
    copies = [e for e in segment.exchanges if e.phase >= 0]
    delays = {p: exchange_cycles([e for e in copies if e.phase < p], config) for p in phases}
    delays[(phases[-1] if phases else 0) + 1] = exchange_cycles(copies, config)
    return delays


def _stream_spans(segment: DeviceSegment, key: StreamKey, rows: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                  durations: np.ndarray) -> list[Span]:
    """The spans of one stream: per module, runs of consecutive rows of one
    layer and one kind (rows of a module execute in program order)."""
    layers = [layer for layer in segment.layers if tuple(layer.stream) == tuple(key)]
    owner = np.full(rows.shape[0], -1, np.int64)
    for i, layer in enumerate(layers):
        owner[layer.start:layer.stop] = i
    ops = rows[:, COL_OPCODE].astype(np.int64)
    kind = np.full(rows.shape[0], -1, np.int64)
    for op, name in _KIND.items():
        kind[ops == op] = KINDS.index(name)
    spans = []
    for module, unit in UNITS.items():
        mine = np.flatnonzero(((ops >> 4) == module) & (kind >= 0))
        if mine.size == 0:
            continue
        label = owner[mine] * len(KINDS) + kind[mine]
        cuts = np.flatnonzero(np.diff(label)) + 1
        for run in np.split(mine, cuts):
            layer = layers[owner[run[0]]] if owner[run[0]] >= 0 else None
            spans.append(Span(Lane(key.card, key.cluster, unit), layer.name if layer else "", KINDS[kind[run[0]]],
                              int(starts[run].min()), int(ends[run].max()), int(durations[run].sum()), int(run.size),
                              segment.name, layer.op if layer else "", tuple(layer.onnx_nodes) if layer else ()))
    return spans
