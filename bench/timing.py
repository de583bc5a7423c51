"""What every benchmark shares: the thread settings (set before numpy or
onnxruntime is imported) and warm, repeated timing."""
from __future__ import annotations

import os
import statistics
import time

THREADS = os.environ.get("BENCH_THREADS", "2")
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TESSERA_NUM_THREADS"):
    os.environ.setdefault(_var, THREADS)

PAUSE_S = 0.5
"""Pause between timing one library and the other: OpenBLAS's and
onnxruntime's idle threads spin for a while after a call and would slow the
other down."""


def time_runs(fn, runs: int, warmup: int = 3) -> list[float]:
    """Seconds of each of ``runs`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median_ms(fn, runs: int) -> float:
    return statistics.median(time_runs(fn, runs)) * 1e3


SETTLE_S = 0.1
"""Pause between the blocks :func:`paired_ms` alternates: longer than any
pool thread spins after a call, so neither library runs while the other's
idle threads still hold a core. Tessera's spin for 1.5 ms at most;
onnxruntime's (allow_spinning, its default) for about 40 ms: measured on a
2-core Zen 4 host, the process used 0.8-1.6 cores for 41 ms after a
MobileNetV2 call and nothing after. With the 10 ms pause used before,
Tessera's blocks ran beside them: its MobileNetV2 float path took 7.4-8.7
ms after onnxruntime's blocks against 4.7 ms after a no-op's, while
onnxruntime, after Tessera's, took what it took alone."""
BLOCK = 5
"""Timed calls in a row per block of :func:`paired_ms`."""


def paired_ms(ours, theirs, runs: int) -> tuple[float, float]:
    """Median ms of ``ours`` and of ``theirs`` over ``runs`` calls each,
    timed in alternating blocks of :data:`BLOCK` back-to-back calls (each
    block after one untimed call), so that a change in the shared machine's
    load over the run weighs on both medians alike, while every call runs
    warm, as in a stream of inferences."""
    times: tuple[list[float], list[float]] = ([], [])
    while len(times[1]) < runs:
        for fn, spent in ((ours, times[0]), (theirs, times[1])):
            time.sleep(SETTLE_S)
            fn()
            for _ in range(BLOCK):
                start = time.perf_counter()
                fn()
                spent.append(time.perf_counter() - start)
    return statistics.median(times[0]) * 1e3, statistics.median(times[1]) * 1e3


FRAME_S = 0.05
"""Time between two requests of :func:`paced_ms`: a camera's 20 frames a second."""


def paced_ms(ours, theirs, runs: int, every: float = FRAME_S) -> tuple[float, float]:
    """Median ms of ``ours`` and of ``theirs`` over ``runs`` calls each,
    alternating, each call ``every`` seconds after the one before: requests
    as a stream delivers them, when the pool threads have gone to sleep and
    the caches have cooled between calls (back-to-back timing misses both)."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for fn, spent in ((ours, times[0]), (theirs, times[1])):
            time.sleep(every)
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return statistics.median(times[0]) * 1e3, statistics.median(times[1]) * 1e3


def pause() -> None:
    time.sleep(PAUSE_S)


def ort_options():
    """onnxruntime session options on THREADS threads, quiet."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(THREADS)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def spread(values, fmt: str = "{:.2f}") -> str:
    """min/median/max of ``values``, as every figure of issue 24 is printed."""
    values = sorted(values)
    return "/".join(fmt.format(v) for v in (values[0], statistics.median(values), values[-1]))


def load() -> str:
    """The machine's load averages (1, 5, 15 min) and its cores, for the record."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"
