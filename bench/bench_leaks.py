"""Leaks: the process's resident memory over many Run_sw calls and many
Init/Free cycles of one binary (issue 23 item 5).

The built-in model ``tessera run`` uses (ResNet-18 on 224x224 images,
compiler/cli.py DEFAULT_MODEL) is compiled once to a temporary binary;
then ``--runs`` Run_sw calls on one FWDNXT object, then ``--cycles`` Init,
Run_sw, Free cycles, each on a new object. Prints the RSS curve (MiB, at
``--points`` evenly spaced checkpoints) of each and the ratio of its last
point to its first after the warm-up (the first ``--warmup`` fraction of
calls): flat means within 5 %, a leak of a few KiB per call shows there.

    python bench/bench_leaks.py [--runs 10000] [--cycles 1000] [--model resnet18]
"""
from __future__ import annotations

from timing import THREADS  # first: sets the thread counts
# isort: split

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from compiler.cli import DEFAULT_MODEL
from compiler.compile import compile_model
from compiler.zoo import builtin_model
from runtime import FWDNXT

TOLERANCE = 0.05
"""Flat: the last checkpoint's RSS within this fraction of the first after the warm-up."""
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    """The resident set size of this process now, MiB (Linux /proc)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE / (1 << 20)


def curve(title: str, step, count: int, points: int, warmup: float) -> tuple[float, bool]:
    """Print the RSS after 0 calls, after the warm-up and at ``points``
    checkpoints of ``count`` calls of ``step(i)`` (each line as it is
    taken), then the ratio of the last to the warm-up's point; that ratio
    and whether it is flat."""
    settled = max(1, int(count * warmup))
    marks = sorted({settled, *(round(count * k / points) for k in range(1, points + 1))})
    print(f"{title}\n   calls   RSS MiB   seconds", flush=True)
    start, done = time.perf_counter(), 0
    taken = {0: rss_mib()}
    print(f"  {0:6d}  {taken[0]:8.1f}  {0:8.1f}", flush=True)
    for mark in marks:
        while done < mark:
            step(done)
            done += 1
        taken[done] = rss_mib()
        note = "  (after the warm-up)" if done == settled else ""
        print(f"  {done:6d}  {taken[done]:8.1f}  {time.perf_counter() - start:8.1f}{note}", flush=True)
    ratio = taken[done] / taken[settled]
    flat = abs(ratio - 1) <= TOLERANCE
    print(f"  {(time.perf_counter() - start) / count * 1e3:.1f} ms a call; last / after warm-up = {ratio:.4f}: "
          f"{'flat' if flat else 'NOT flat'} (within {TOLERANCE:.0%})", flush=True)
    return ratio, flat


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="a built-in model (default: tessera run's)")
    parser.add_argument("--runs", type=int, default=10_000, help="Run_sw calls on one object")
    parser.add_argument("--cycles", type=int, default=1_000, help="Init/Run_sw/Free cycles")
    parser.add_argument("--points", type=int, default=10, help="checkpoints on each curve")
    parser.add_argument("--warmup", type=float, default=0.1, help="fraction of calls before the reference point")
    args = parser.parse_args()
    print(f"bench_leaks: model {args.model}, {args.runs} Run_sw, {args.cycles} Init/Free, threads {THREADS}")

    model = builtin_model(args.model)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    rng = np.random.default_rng(0)
    images = [rng.standard_normal(shape).astype(np.float32) for _ in range(4)]
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        binary = str(Path(folder) / "model.bin")
        start = time.perf_counter()
        compiled = compile_model(model, samples=images, outfile=binary)
        print(f"compiled in {time.perf_counter() - start:.1f} s: {Path(binary).stat().st_size} bytes, "
              f"DRAM {compiled.dram_size} bytes", flush=True)
        size = int(sum(np.prod(t.shape) for t in compiled.outputs))
        result = np.zeros(size, np.float32)

        ie = FWDNXT()
        ie.Init(binary, "")
        runs, flat_runs = curve("Run_sw on one object", lambda i: ie.Run_sw(images[i % 4], result), args.runs,
                                args.points, args.warmup)
        ie.Free()

        def cycle(i: int) -> None:
            fresh = FWDNXT()
            fresh.Init(binary, "")
            fresh.Run_sw(images[i % 4], result)
            fresh.Free()

        cycles, flat_cycles = curve("Init, Run_sw, Free on a new object", cycle, args.cycles, args.points,
                                    args.warmup)
    print(f"verdict: {'no leak' if flat_runs and flat_cycles else 'LEAK'} "
          f"(Run_sw ratio {runs:.4f}, Init/Free ratio {cycles:.4f})")
    return 0 if flat_runs and flat_cycles else 1


if __name__ == "__main__":
    raise SystemExit(main())
