"""--profile: the original script's timestamp and derived-time columns
and its describe() table (api-notes 6.2), Tessera's own derived times and
their summary table (count, mean, p50, p90, p99), and the throughput
lines: the original's duration and FPS, and the FPS projected from the
simulator's hwtime; and, for --trace, each image's stages as host spans
of a trace (runtime/trace.py, docs/trace.md)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from runtime.app.pipeline import STAGES, Row
from runtime.trace import HostSpan

DERIVED = {
    "total_ms": ("start", "download_end"),
    "preprocess_ms": ("start", "preprocessed"),
    "queue_ms": ("preprocessed", "upload_start"),
    "upload_ms": ("upload_start", "upload_end"),
    "device_ms": ("upload_end", "device_end"),
    "download_ms": ("device_end", "download_end"),
}
"""Derived per-image times in milliseconds: name -> (from stage, to stage)."""
COLUMNS = [*(f"{stage}_s" for stage in STAGES), *DERIVED, "hwtime_ms"]
"""The profile columns added to each CSV row."""
SUMMARY_HEADER = ("time", "count", "mean", "p50", "p90", "p99")

ORIGINAL_STAMPS = {
    "Start TS": "start", "Upload Start TS": "upload_start", "Upload End TS": "upload_end",
    "Inference Start TS": "inference_start", "Inference End TS": "device_end",
    "Download Start TS": "device_end", "Download End TS": "download_end",
}
"""The original script's timestamp columns (api-notes 6.2, in its order) ->
the stage that stamps them here. The simulated device runs a PutInput's
images from the later of the end of their upload and the end of the run
before (inference_start) until GetResult hands them back (device_end);
GetResult is also the download, so Download Start TS is device_end."""
ORIGINAL_DERIVED = {
    "Total Latency": ("Start TS", "Download End TS"),
    "Preprocessing Time": ("Start TS", "Upload Start TS"),
    "Upload Time": ("Upload Start TS", "Upload End TS"),
    "Accelerator Time": ("Inference Start TS", "Inference End TS"),
    "Download Time": ("Download Start TS", "Download End TS"),
    "Inference Time": ("Upload Start TS", "Download End TS"),
}
"""The original's derived times, in seconds: name -> (from column, to column)."""
ORIGINAL_COLUMNS = [*ORIGINAL_STAMPS, *ORIGINAL_DERIVED]
"""The profile columns of the original script, after File Name and Prediction."""


def original_values(row: Row) -> list[float]:
    """The original's profile columns of one row: timestamps (seconds from
    the start of the run) and derived times (seconds)."""
    stamps = {column: row.times[stage] for column, stage in ORIGINAL_STAMPS.items()}
    return [*stamps.values(), *(stamps[b] - stamps[a] for a, b in ORIGINAL_DERIVED.values())]


def describe_lines(rows: Sequence[Row]) -> list[str]:
    """The original's ``describe()`` of its six derived times (seconds):
    count, mean, std, min, quartiles and max per column, as pandas prints
    them (without needing pandas)."""
    table = np.array([original_values(r)[len(ORIGINAL_STAMPS):] for r in rows], np.float64).reshape(-1, 6)
    widths = [max(len(name), 10) for name in ORIGINAL_DERIVED]
    lines = ["     " + "".join(f"  {name:>{w}}" for name, w in zip(ORIGINAL_DERIVED, widths))]
    if not len(table):
        return lines
    std = table.std(axis=0, ddof=1) if len(table) > 1 else np.full(6, np.nan)
    stats = {"count": np.full(6, float(len(table))), "mean": table.mean(axis=0), "std": std,
             "min": table.min(axis=0), "25%": np.percentile(table, 25, axis=0),
             "50%": np.percentile(table, 50, axis=0), "75%": np.percentile(table, 75, axis=0),
             "max": table.max(axis=0)}
    for label, values in stats.items():
        lines.append(f"{label:<5}" + "".join(f"  {v:>{w}.6f}" for v, w in zip(values, widths)))
    return lines


def profile_values(row: Row) -> list[float]:
    """The profile columns of one row."""
    times = row.times
    derived = [1000.0 * (times[b] - times[a]) for a, b in DERIVED.values()]
    return [*(times[s] for s in STAGES), *derived, row.hwtime_ms]


def stage_spans(rows: Sequence[Row]) -> list[HostSpan]:
    """The stages of every image as host spans on the run's clock:
    pre-processing on as few tracks as its overlapping workers need, then,
    per device run (PutInput), its upload, device and download (GetResult
    and the top classes) on a track each (per instance, when several
    instances ran: the Ray scale-out)."""
    spans = _preprocessing_spans(rows)
    runs: dict[tuple[int, int], list[Row]] = {}
    for row in rows:
        runs.setdefault((row.instance, row.run), []).append(row)
    several = len({instance for instance, _ in runs}) > 1
    for (instance, run), members in sorted(runs.items()):
        prefix = f"instance {instance} " if several else ""
        times = members[0].times
        args = {"images": [m.file for m in members], "hwtime_ms": members[0].hwtime_ms}
        done = max(m.times["download_end"] for m in members)
        spans += [HostSpan(prefix + "upload", f"run {run}", times["upload_start"], times["upload_end"], args),
                  HostSpan(prefix + "device", f"run {run}", times["inference_start"], times["device_end"], args),
                  HostSpan(prefix + "download", f"run {run}", times["device_end"], done, args)]
    return spans


def _preprocessing_spans(rows: Sequence[Row]) -> list[HostSpan]:
    """Each image's pre-processing, on the first track free when it started
    ("pre-processing 1", "pre-processing 2", ...: one per worker busy at once)."""
    ends: list[float] = []
    spans = []
    for row in sorted(rows, key=lambda r: r.times["start"]):
        start, end = row.times["start"], row.times["preprocessed"]
        track = next((i for i, busy_until in enumerate(ends) if busy_until <= start), len(ends))
        ends[track:track + 1] = [end]
        spans.append(HostSpan(f"pre-processing {track + 1}", row.file, start, end, {"image": row.index}))
    return spans


def summary_lines(rows: Sequence[Row]) -> list[str]:
    """The summary table over every derived time (milliseconds)."""
    lines = ["{:<16}{:>8}{:>11}{:>11}{:>11}{:>11}".format(*SUMMARY_HEADER)]
    for name, (a, b) in DERIVED.items():
        values = np.array([1000.0 * (r.times[b] - r.times[a]) for r in rows])
        if values.size == 0:
            continue
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        lines.append(f"{name:<16}{values.size:>8}{values.mean():>11.3f}{p50:>11.3f}{p90:>11.3f}{p99:>11.3f}")
    return lines


def duration_lines(images: int, wall_s: float) -> list[str]:
    """The original's last two lines, as its ``print`` calls wrote them:
    the wall time of the run (pre-processing included) and images over it."""
    return [" ".join(map(str, ("Duration for ", images, " images: ", wall_s))),
            " ".join(map(str, ("FPS: ", images / max(wall_s, 1e-9))))]


def throughput_lines(rows: Sequence[Row], wall_s: float) -> list[str]:
    """Tessera's lines: measured FPS over the wall time (pre-processing
    included) and the projected FPS and latency of the modelled hardware:
    each device run counted once, at its hwtime; runtime instances (Ray
    actors, each a card) run side by side, so the busiest one sets the
    projected time."""
    lines = [f"measured: {len(rows)} images in {wall_s:.3f} s wall time = {len(rows) / max(wall_s, 1e-9):.1f} FPS "
             "(this host's simulator, pre-processing included)"]
    runs = {(r.instance, r.run): r.hwtime_ms for r in rows}
    busy: dict[int, float] = {}
    for (instance, _), hwtime in runs.items():
        busy[instance] = busy.get(instance, 0.0) + hwtime
    hw_ms = max(busy.values(), default=0.0)
    if rows and hw_ms > 0:
        where = f"{len(runs)} runs" + (f" on {len(busy)} instances" if len(busy) > 1 else "")
        lines.append(f"projected: {len(rows) / (hw_ms / 1000.0):.1f} FPS, {sum(runs.values()) / len(runs):.3f} ms "
                     f"latency per device run of the binary's batch (modelled hardware, from hwtime; {where})")
    return lines
