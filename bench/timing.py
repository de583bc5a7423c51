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
