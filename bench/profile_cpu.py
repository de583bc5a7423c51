"""Where a model's CPU time goes: each kernel step timed, summed by kernel
(and the heaviest steps listed). Same thread settings as the benchmarks.

    python bench/profile_cpu.py [--model resnet50] [--runs 10] [--top 15]
"""
from __future__ import annotations

from timing import THREADS  # noqa: F401  first: sets the thread counts
# isort: split

import argparse
import collections
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
    args = parser.parse_args()
    graph = optimize(import_onnx(MODELS[args.model]()))
    executor = Executor(lower_to_program(graph))
    feeds = {v.name: np.random.default_rng(0).standard_normal(v.type.shape).astype(np.float32)
             for v in graph.inputs}
    spent: dict[int, float] = collections.defaultdict(float)

    def timed(index, fn):
        def run(args, attrs):
            start = time.perf_counter()
            result = fn(args, attrs)
            spent[index] += time.perf_counter() - start
            return result
        return run

    for _ in range(3):
        executor.run(feeds)
    executor._calls = [(timed(i, fn), step) for i, (fn, step) in enumerate(executor._calls)]
    executor._plans.clear()
    start = time.perf_counter()
    for _ in range(args.runs):
        executor.run(feeds)
    total = (time.perf_counter() - start) / args.runs * 1e3
    steps = [step for _, step in executor._calls]
    by_kernel: dict[str, list] = collections.defaultdict(lambda: [0.0, 0])
    for index, step in enumerate(steps):
        by_kernel[step.kernel][0] += spent[index] / args.runs * 1e3
        by_kernel[step.kernel][1] += 1
    kernels_ms = sum(v[0] for v in by_kernel.values())
    print(f"{args.model}: {total:.2f} ms per run, {kernels_ms:.2f} ms in kernels, "
          f"{total - kernels_ms:.2f} ms in the executor")
    for kernel, (ms, count) in sorted(by_kernel.items(), key=lambda kv: -kv[1][0]):
        print(f"  {kernel:<24}{count:>5} steps {ms:>9.2f} ms")
    print("heaviest steps:")
    order = sorted(range(len(steps)), key=lambda i: -spent[i])[:args.top]
    for index in order:
        print(f"  {steps[index].name:<40}{steps[index].kernel:<20}{spent[index] / args.runs * 1e3:>8.2f} ms")


if __name__ == "__main__":
    main()
