"""--profile: the per-image derived times, their summary table (count,
mean, p50, p90, p99) and the throughput lines, measured and projected from
the simulator's hwtime."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from runtime.app.pipeline import STAGES, Row

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


def profile_values(row: Row) -> list[float]:
    """The profile columns of one row."""
    times = row.times
    derived = [1000.0 * (times[b] - times[a]) for a, b in DERIVED.values()]
    return [*(times[s] for s in STAGES), *derived, row.hwtime_ms]


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


def throughput_lines(rows: Sequence[Row], wall_s: float) -> list[str]:
    """Measured FPS over the wall time (pre-processing included) and the
    projected FPS and latency of the modelled hardware: each device run
    counted once, at its hwtime; runtime instances (Ray actors, each a
    card) run side by side, so the busiest one sets the projected time."""
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
