"""What one chunk of each schedule operation costs before its first item
(issue 57; docs/runtime.md, "Threads"): every operation's adapter
(runtime.schedule.ops) called on an empty range from Numba, as the driver
calls it, for a bench model's float schedule; per operation kind, the
minimum, median and maximum nanoseconds a call, and the sum over every
chunk of one run (what two threads split between them on top of the work).

    PYTHONPATH=. python bench/chunk_cost.py [--models mobilenet_v2_96,ppLCNet] [--calls 5000]
"""
from __future__ import annotations

from timing import THREADS  # noqa: F401  first: sets the thread counts
# isort: split

import argparse
import collections
import time

import numba
import numpy as np
from bench_cpu import MODELS

import runtime.schedule.records as records
from compiler import backend
from runtime.schedule import ops

KINDS = {getattr(records, name): name for name in dir(records)
         if name.isupper() and isinstance(getattr(records, name), int)
         and not name.startswith(("DW_", "GEO", "CLAMP", "COPY_PIECE", "GEMM_FIELDS", "IM2COL_FIELDS"))}


@numba.njit
def _calls(n, entry, start, stop, recs, at, bases):
    for _ in range(n):
        ops._call_op(entry, start, stop, recs, at, bases)


def measure(name: str, calls: int) -> None:
    model = MODELS[name]()
    feed = model.graph.input[0]
    shape = [d.dim_value for d in feed.type.tensor_type.shape.dim]
    prepared = backend.prepare(model)
    prepared.run({feed.name: np.zeros(shape, np.float32)})
    schedule = prepared.executor._schedule()
    if schedule is None:
        print(f"{name}: no schedule (no step lowers to an operation)")
        return
    costs, total = collections.defaultdict(list), 0.0
    for part in (p for p in schedule.parts if hasattr(p, "ops")):
        for row in part.ops:
            entry, at, count = row[ops.ENTRY], row[ops.REC], int(row[ops.COUNT])
            _calls(10, entry, 0, 0, schedule.recs, at, schedule.bases)
            start = time.perf_counter()
            _calls(calls, entry, 0, 0, schedule.recs, at, schedule.bases)
            seconds = (time.perf_counter() - start) / calls
            costs[KINDS.get(int(row[ops.KIND]), str(row[ops.KIND]))].append(seconds * 1e9)
            total += seconds * count
    print(f"{name}: ns a chunk before its first item (min/median/max over operations)")
    for kind, values in sorted(costs.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {kind:<18} {len(values):3d} ops  {min(values):6.0f} {np.median(values):6.0f} {max(values):6.0f}")
    print(f"  every chunk of a run: {total * 1e6:.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mobilenet_v2_96,ppLCNet,squeezenet,resnet50")
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    for name in args.models.split(","):
        measure(name, args.calls)


if __name__ == "__main__":
    main()
