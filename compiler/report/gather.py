"""Everything the compile report shows, gathered from a binary into one
plain JSON-ready dict (the page embeds it and draws it; tests read it).

The figures are the runtime's own: cycles from the cycle model
(runtime.device.SimulatedDevice.layer_times), the schedule from its
timeline (runtime/timeline.py), coverage and reasons from the record the
compiler kept (compiler.coverage.recorded_coverage). A metadata record that
is malformed (a binary is untrusted input) is left out and named in
``problems``; the rest of the report still stands.
"""
from __future__ import annotations

import os
from typing import Any, Callable

from compiler.coverage import Coverage, recorded_coverage
from compiler.report.layers import PART_FIELDS, cpu_layers, cpu_nodes, device_layers, reasons_by_name
from compiler.report.metadata import describe_file, describe_model, plain
from compiler.report.quality import attach_shares, read_diagnosis, target_record
from compiler.report.schedule import first_cycles, schedule
from runtime.binary import describe, read_binary
from runtime.compiled import CompiledModel, DeviceSegment
from runtime.device import SimulatedDevice
from runtime.engine import Engine
from runtime.errors import TesseraError
from runtime.timeline import DeviceTimeline

REPORT_FORMAT = 1
"""The layout of the gathered dict (the page checks it)."""


def gather_report(binary_path: str | os.PathLike, diagnosis: str | os.PathLike | None = None) -> dict[str, Any]:
    """The report data of the binary at ``binary_path``; ``diagnosis``: a
    diagnosis JSON file (``tessera quantize --report FILE.json``) whose
    layer shares of the output error to show."""
    path = os.fspath(binary_path)
    found = read_diagnosis(diagnosis) if diagnosis is not None else None  # a bad file: an error before the work
    description = describe(path)
    model = read_binary(path)
    device = Engine(model).device
    timeline = device.timeline()
    problems: list[str] = []
    coverage = _checked(lambda: recorded_coverage(model.metadata), "coverage", problems)
    layers = program_layers(model, device, timeline, coverage)
    target = _checked(lambda: target_record(model.metadata), "target_snr", problems)
    attach_shares(layers, target, found)
    ids = {(layer["segment"], layer["name"]): i for i, layer in enumerate(layers)}
    return plain({"format": REPORT_FORMAT, "file": describe_file(path, description), "model": describe_model(model),
                  "summary": _summary(model, device, layers, coverage), "layers": layers,
                  "part_fields": list(PART_FIELDS), "cpu_nodes": cpu_nodes(coverage),
                  "segments": [_segment(segment) for segment in model.segments],
                  "schedule": schedule(timeline, ids), "activity": _activity(device),
                  "quality": {"target": target, "diagnosis": found}, "problems": problems})


def program_layers(model: CompiledModel, device: SimulatedDevice, timeline: DeviceTimeline,
                   coverage: Coverage | None) -> list[dict[str, Any]]:
    """Every layer of every segment in execution order (a device segment's
    layers in the order they start on the modelled clock)."""
    simulators = dict(zip((id(s) for s in model.device_segments), device.simulators))
    times = iter(device.layer_times())
    reasons = reasons_by_name(coverage)
    first = first_cycles(timeline)
    layers: list[dict[str, Any]] = []
    for segment in model.segments:
        if isinstance(segment, DeviceSegment):
            mine = device_layers(segment, simulators[id(segment)], times, model.config)
            layers += sorted(mine, key=lambda layer: first.get((segment.name, layer["name"]), float("inf")))
        else:
            layers += cpu_layers(segment, reasons)
    return layers


def _summary(model: CompiledModel, device: SimulatedDevice, layers: list[dict[str, Any]],
             coverage: Coverage | None) -> dict[str, Any]:
    on_device = [layer for layer in layers if layer["where"] == "device"]
    return {"hwtime_ms": device.hwtime_ms, "efficiency": device.efficiency, "instructions": device.instructions,
            "device_layers": len(on_device), "cpu_layers": len(layers) - len(on_device),
            "macs": sum(layer["macs"] for layer in on_device),
            "coverage": None if coverage is None else {"line": coverage.summary_line(),
                                                       "mac_percent": coverage.mac_percent(),
                                                       "device_nodes": coverage.device_nodes,
                                                       "total_nodes": coverage.total_nodes}}


def _segment(segment) -> dict[str, Any]:
    if isinstance(segment, DeviceSegment):
        return {"name": segment.name, "where": "device", "streams": len(segment.streams),
                "images": len(segment.instances), "exchanges": len(segment.exchanges)}
    return {"name": segment.name, "where": "cpu", "steps": len(segment.program.steps)}


def _activity(device: SimulatedDevice) -> dict[str, Any]:
    """Per cluster, the cycles of each kind of work (compiler.cli_device.activity_table's figures)."""
    activity = device.cluster_activity()
    rows = [[card, cluster, *busy.values()] for (card, cluster), busy in sorted(activity.items())]
    kinds = list(next(iter(activity.values()), {}))
    return {"kinds": kinds, "rows": rows, "total": sum(s.timing.total_cycles for s in device.simulators)}


def _checked(read: Callable[[], Any], name: str, problems: list[str]) -> Any:
    """``read()``, or None with the reason in ``problems`` when the record is malformed."""
    try:
        return read()
    except (TesseraError, TypeError, ValueError, KeyError, AttributeError) as exc:
        problems.append(f"left out the malformed metadata record {name!r}: {exc}")
        return None


__all__ = ["REPORT_FORMAT", "gather_report", "program_layers"]
