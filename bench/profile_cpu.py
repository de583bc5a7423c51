"""Where a model's CPU time goes: each kernel step timed, summed by kernel
(and the heaviest steps listed). Same thread settings as the benchmarks.
The run is the one Run_th makes (the executor's schedule: the driver stamps
each operation, so timing adds no Python between steps).
With --ort, onnxruntime's own profile of the same model (its per-node kernel
times, same threads) is set beside each step: steps and nodes are matched by
op and input shapes, in the order they ran (:func:`_signature`), so the rows
sorted by the gap (ours minus theirs) name the layers to fix first. Its
profiler adds to every node's time; its unprofiled time a run is printed
beside the profiled one for scale.

With --scaling, the same profile on one thread (a child process) is set
beside each step: the steps that gain least from the pool's threads, by
how much longer they take than a perfect split of their one-thread time
(a small model's 2-thread loss is spread over many short steps: barriers,
and data one core wrote that the other reads).

    python bench/profile_cpu.py [--model resnet50] [--runs 10] [--top 15] [--ort] [--scaling]
"""
from __future__ import annotations

from timing import THREAD_VARS, THREADS  # first: sets the thread counts
# isort: split

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from bench_cpu import MODELS
from codegen.cpu import lower_to_program
from compiler.frontend import import_onnx
from compiler.pipeline import optimize
from runtime.executor import Executor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet50", choices=sorted(MODELS))
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--ort", action="store_true", help="set onnxruntime's per-node profile beside each step")
    parser.add_argument("--scaling", action="store_true", help="set the one-thread profile beside each step")
    parser.add_argument("--steps-json", help=argparse.SUPPRESS)  # where a --scaling child writes its steps
    args = parser.parse_args()
    model = MODELS[args.model]()
    graph = optimize(import_onnx(model))
    executor = Executor(lower_to_program(graph).frozen())  # as a binary's: what Run_th runs
    feeds = {v.name: np.random.default_rng(0).standard_normal(v.type.shape).astype(np.float32)
             for v in graph.inputs}
    for _ in range(3):
        executor.run(feeds, timings=[])
    by_step: dict[tuple[str, str], float] = collections.defaultdict(float)
    total = 0.0
    for _ in range(args.runs):
        timings: list = []
        start = time.perf_counter()
        executor.run(feeds, timings=timings)  # scheduled, as an untimed run: steps timed by cycle stamps
        total += time.perf_counter() - start
        for name, kernel, seconds in timings:  # a fused pair of steps is one call, "a+b"
            by_step[name, kernel] += seconds
    total = total / args.runs * 1e3
    by_kernel: dict[str, list] = collections.defaultdict(lambda: [0.0, 0])
    for (name, kernel), seconds in by_step.items():
        by_kernel[kernel][0] += seconds / args.runs * 1e3
        by_kernel[kernel][1] += 1
    kernels_ms = sum(v[0] for v in by_kernel.values())
    print(f"{args.model}: {total:.2f} ms per run, {kernels_ms:.2f} ms in kernels, "
          f"{total - kernels_ms:.2f} ms in the executor")
    for kernel, (ms, count) in sorted(by_kernel.items(), key=lambda kv: -kv[1][0]):
        print(f"  {kernel:<24}{count:>5} steps {ms:>9.2f} ms")
    print("heaviest steps:")
    for (name, kernel), seconds in sorted(by_step.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"  {name:<40}{kernel:<20}{seconds / args.runs * 1e3:>8.3f} ms")
    per_run = {key: seconds / args.runs * 1e3 for key, seconds in by_step.items()}
    if args.steps_json:
        with open(args.steps_json, "w") as out:
            json.dump({"total": total, "steps": [[name, kernel, ms] for (name, kernel), ms in per_run.items()]}, out)
    if args.ort:
        compare(model, feeds, executor.program, per_run, args)
    if args.scaling:
        scaling(per_run, total, args)


def scaling(per_run: dict, total: float, args) -> None:
    """Each step's ms here beside its ms on one thread (the same profile
    in a child process), sorted by the excess over a perfect split."""
    threads = int(THREADS)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "steps.json")
        env = dict(os.environ, BENCH_THREADS="1", **dict.fromkeys(THREAD_VARS, "1"))
        subprocess.run([sys.executable, __file__, "--model", args.model, "--runs", str(args.runs), "--top", "0",
                        "--steps-json", path], env=env, check=True, stdout=subprocess.DEVNULL)
        with open(path) as file:
            alone = json.load(file)
    one = {(name, kernel): ms for name, kernel, ms in alone["steps"]}
    print(f"scaling: {alone['total']:.2f} ms per run on one thread, {total:.2f} on {threads} "
          f"({alone['total'] / total:.2f}x; the one-thread run came after this one)")
    print(f"  {'step':<40}{'kernel':<20}{'1 thread':>9}{'ours ms':>8}{'speedup':>8}{'excess':>8}")
    rows = scaling_rows(per_run, one, threads)
    for (name, kernel), single, ms, excess in rows[:args.top]:
        speedup = f"{single / ms:.2f}" if single == single and ms > 0 else "-"
        print(f"  {name:<40}{kernel:<20}{single:>9.3f}{ms:>8.3f}{speedup:>8}{excess:>8.3f}")
    print(f"  excess over a perfect split, all steps: {sum(row[3] for row in rows):.3f} ms")


def scaling_rows(per_run: dict, one: dict, threads: int) -> list[tuple]:
    """(step, one-thread ms (NaN where that run had no such step), ms here,
    excess over ``threads`` sharing the one-thread time perfectly) per
    step, the largest excess first."""
    rows = [(key, one.get(key, float("nan")), ms, ms - one.get(key, 0.0) / threads) for key, ms in per_run.items()]
    return sorted(rows, key=lambda row: -row[3])


def ort_plain_ms(model, feeds, runs: int) -> float:
    """onnxruntime's ms per run without its profiler, the median of
    ``runs`` after a warm-up: profiling adds to every node's time (MobileNetV2
    at 96 x 96: 1.40 ms a run profiled, 0.88 plain), so the profiled per-node
    times are set beside ours with this figure for scale."""
    import onnxruntime as ort

    from timing import median_ms, ort_options

    session = ort.InferenceSession(model.SerializeToString(), ort_options(), providers=["CPUExecutionProvider"])
    return median_ms(lambda: session.run(None, feeds), runs)


def ort_profile(model, feeds, runs: int) -> tuple[float, list[tuple[str, tuple, float]]]:
    """onnxruntime's ms per run and, for each node in the order it ran, its
    name, :func:`_signature` and kernel ms per run (from its profile)."""
    import onnxruntime as ort

    from timing import ort_options

    options = ort_options()
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(tempfile.mkdtemp(prefix="ortprof-"), "profile")
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    warmup = 3
    for _ in range(warmup + runs):
        session.run(None, feeds)
    with open(session.end_profiling()) as file:
        events = json.load(file)
    nodes: dict[str, list] = {}
    total = 0.0
    for event in sorted(events, key=lambda e: e.get("ts", 0)):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            name = event["name"][:-len("_kernel_time")]
            shapes = [next(iter(entry.values())) for entry in event["args"].get("input_type_shape", [])]
            row = nodes.setdefault(name, [name, _signature(event["args"].get("op_name", ""), shapes), 0.0])
            row[2] += event["dur"] / 1e3
        elif event.get("cat") == "Session" and event["name"] == "model_run":
            total += event["dur"] / 1e3
    count = warmup + runs
    return total / count, [(name, signature, ms / count) for name, signature, ms in nodes.values()]


NCHWC_BLOCK = 16
"""Channels per block of onnxruntime's NCHWc layout (its widest: AVX-512's;
AVX2's 8 divides it). Its convolutions in that layout report their channel
counts padded up to whole blocks (MobileNetV2's 24-channel layers as 32:
activation (1, 32, 56, 56), weight (32, 96, 1, 1)), so :func:`_signature`
pads the channel dimensions it compares alike; counts under 8 (an image's 3
channels, a depthwise weight's 1) stay, as onnxruntime keeps them."""


def _signature(op: str, shapes) -> tuple:
    """What matches a step to an onnxruntime node: the kind of op and the
    shapes of its first two inputs (the activation and the weight; a
    product's activation alone), a convolution's channel counts padded as
    onnxruntime's NCHWc layout pads them (:data:`NCHWC_BLOCK`)."""
    kind = "conv" if "Conv" in op else "gemm" if op in ("Gemm", "MatMul", "FusedGemm", "FusedMatMul") else op
    dims = [[int(d) for d in shape] for shape in list(shapes)[:2]]
    if kind == "conv" and len(dims) == 2 and len(dims[0]) == len(dims[1]) == 4:
        (x, w), pad = dims, lambda c: c if c < 8 else -(-c // NCHWC_BLOCK) * NCHWC_BLOCK
        x[1], w[0], w[1] = pad(x[1]), pad(w[0]), pad(w[1])
    elif kind == "gemm":
        dims = dims[:1]  # onnxruntime lists a Gemm's prepacked weight as absent (its bias comes second)
    return (kind, *(tuple(shape) for shape in dims))


def compare(model, feeds, program, ours: dict[tuple[str, str], float], args) -> None:
    """Each step beside the onnxruntime nodes of the same signatures (its
    parts' for a fused pair), in the same order; sorted by the gap."""
    plain = ort_plain_ms(model, feeds, args.runs)
    total, theirs = ort_profile(model, feeds, args.runs)
    queues: dict[tuple, list] = collections.defaultdict(list)
    for name, signature, ms in theirs:
        queues[signature].append(ms)
    types = program.types
    parts = {step.name: _signature(step.kernel, [types[i][0] for i in step.inputs[:2] if i >= 0])
             for step in program.steps}
    matched: dict[tuple[str, str], float] = {}
    for key in ours:  # in the order the steps ran
        found = [queues[parts[part]].pop(0) for part in key[0].split("+") if queues.get(parts.get(part))]
        if found:
            matched[key] = sum(found)
    left = sum(ms for queue in queues.values() for ms in queue)
    print(f"onnxruntime: {total:.2f} ms per run profiled ({plain:.2f} unprofiled), "
          f"{sum(ms for _, _, ms in theirs):.2f} ms in kernels "
          f"({left:.2f} ms in nodes matched to no step); Tessera {sum(ours.values()):.2f} ms in kernels")
    print(f"  {'step':<40}{'kernel':<20}{'ours ms':>8}{'ort ms':>8}{'ratio':>7}{'gap ms':>8}")
    for key in sorted(ours, key=lambda key: matched.get(key, 0.0) - ours[key])[:args.top]:
        mine, other = ours[key], matched.get(key, 0.0)
        ratio = f"{mine / other:>7.2f}" if other else f"{'-':>7}"
        shape = parts.get(key[0].split("+")[0], ())[1:]
        print(f"  {key[0]:<40}{key[1]:<20}{mine:>8.3f}{other:>8.3f}{ratio}{mine - other:>8.3f}  {shape}")

if __name__ == "__main__":
    main()
