"""Tessera's sgemm against numpy's matmul (OpenBLAS) on ResNet-50's GEMMs.

Shapes are (M, K, N) = (output channels, input channels x window, output
pixels) of ResNet-50's 1x1 convolutions and im2col'd 3x3 ones at batch 1,
plus batched Winograd-style products (G, M, K, N). Tessera runs with packed
weights (as a conv kernel would hold them) on its thread pool; numpy with
OpenBLAS; both on BENCH_THREADS (default 2) threads. Each round runs all
shapes through Tessera, then, after a pause, through numpy (OpenBLAS's idle
threads spin after a call and would slow Tessera down if single runs were
interleaved); rounds repeat so that a busy spell on a shared machine does not
hit one library only. The third table follows each GEMM by a ReLU of its
output on Tessera's pool, as a conv's fused tail would run: there OpenBLAS's
spinning idle thread competes with the pool. Prints GMAC/s (GEMM MACs over
the whole call) from the median and from the best run, and the ratio
Tessera / numpy of the medians; then the cold-start cost. The last table
times the exact int8 GEMM against numpy's float64 BLAS on operands widened
in advance (exact too; float32 would not be for K > 1024).

    python bench/bench_gemm.py [--runs 10] [--rounds 3] [--only 2d|batched|tail|int8]
"""
from __future__ import annotations

from timing import pause, time_runs  # first: sets the thread counts
# isort: split

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np

from runtime import parallel
from runtime.gemm import igemm, pack_weights, sgemm, sgemm_batched
from runtime.jit import jit

SHAPES_2D = [
    (64, 64, 3136), (256, 64, 3136), (64, 256, 3136), (128, 512, 784), (512, 128, 784), (256, 1024, 196),
    (1024, 256, 196), (512, 2048, 49), (2048, 512, 49),
    (64, 576, 3136), (128, 1152, 784), (256, 2304, 196), (512, 4608, 49),
]
SHAPES_BATCHED = [(16, 64, 64, 784), (36, 64, 64, 196), (36, 128, 128, 64), (16, 256, 256, 64),
                  (36, 256, 256, 25), (16, 512, 512, 16)]


@jit
def _relu_rows(start, stop, x):
    """ReLU of rows [start, stop) of a 2-D array, in place (a conv's tail)."""
    for i in range(start, stop):
        for j in range(x.shape[1]):
            x[i, j] = max(x[i, j], 0.0)


def _with_tail(gemm, out: np.ndarray):
    """``gemm`` followed by a ReLU of its output on Tessera's threads."""
    rows = out.reshape(-1, out.shape[-1])

    def call():
        gemm()
        parallel.parallel_for(_relu_rows, rows.shape[0], rows)

    return call


def _case(shape: tuple[int, ...], rng: np.random.Generator, tail: bool):
    """(Tessera call, numpy call, MACs) for one shape."""
    *batch, m, k, n = shape
    a = rng.standard_normal((*batch, m, k), dtype=np.float32)
    b = rng.standard_normal((*batch, k, n), dtype=np.float32)
    out_t = np.empty((*batch, m, n), np.float32)
    out_n = np.empty_like(out_t)
    packed = pack_weights(a)
    gemm = sgemm_batched if batch else sgemm
    np.testing.assert_allclose(gemm(None, b, packed_a=packed), a @ b, rtol=1e-3, atol=1e-3 * np.sqrt(k))
    ours, theirs = (lambda: gemm(None, b, out_t, packed_a=packed)), (lambda: np.matmul(a, b, out=out_n))
    if tail:
        ours, theirs = _with_tail(ours, out_t), _with_tail(theirs, out_n)
    return ours, theirs, int(np.prod(shape))


def _int8_case(shape: tuple[int, ...], rng: np.random.Generator):
    """(Tessera igemm, numpy float64 matmul of pre-widened operands (exact),
    MACs) for one shape."""
    m, k, n = shape
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    out_t, out_n = np.empty((m, n), np.int32), np.empty((m, n), np.float64)
    packed = pack_weights(a)
    np.testing.assert_array_equal(igemm(None, b, packed_a=packed), a64 @ b64)
    return (lambda: igemm(None, b, out_t, packed_a=packed)), (lambda: np.matmul(a64, b64, out=out_n)), m * k * n


def _gmacs(macs: int, times: list[float]) -> tuple[float, float]:
    return macs / statistics.median(times) / 1e9, macs / min(times) / 1e9


def _table(title: str, shapes, runs: int, rounds: int, tail: bool = False, int8: bool = False) -> None:
    print(title)
    rng = np.random.default_rng(0)
    cases = [_int8_case(s, rng) if int8 else _case(s, rng, tail) for s in shapes]
    ours: list[list[float]] = [[] for _ in cases]
    theirs: list[list[float]] = [[] for _ in cases]
    for _ in range(rounds):
        pause()
        for case, times in zip(cases, ours):
            times += time_runs(case[0], runs)
        pause()
        for case, times in zip(cases, theirs):
            times += time_runs(case[1], runs)
    print(f"{'shape':>24} | {'Tessera med / best':>19} | {'numpy med / best':>19} | ratio")
    ratios = []
    for shape, (_, _, macs), t, o in zip(shapes, cases, ours, theirs):
        tm, tb = _gmacs(macs, t)
        om, ob = _gmacs(macs, o)
        ratios.append(tm / om)
        print(f"{str(shape):>24} | {tm:8.1f} / {tb:8.1f} | {om:8.1f} / {ob:8.1f} | {tm / om:5.2f}")
    print(f"geometric mean ratio {np.exp(np.mean(np.log(ratios))):.2f} "
          f"(GMAC/s, {parallel.NUM_THREADS} threads, {rounds} rounds of {runs} runs)")


def _cold_start() -> None:
    """Time a fresh process's first sgemm (kernel compile + Numba load)."""
    code = ("import time; t = time.perf_counter(); import numpy as np; from runtime.gemm import sgemm; "
            "sgemm(np.ones((8, 8), np.float32), np.ones((8, 8), np.float32)); "
            "print(f'{time.perf_counter() - t:.2f}')")
    seconds = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    print(f"cold start (import + first call, fresh process, warm Numba cache): {seconds.strip()} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per shape and round")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds alternating Tessera and numpy (the machine may be shared)")
    parser.add_argument("--only", choices=("2d", "batched", "tail", "int8"))
    args = parser.parse_args()
    start = time.perf_counter()
    if args.only in (None, "2d"):
        _table("conv GEMMs (M, K, N)", SHAPES_2D, args.runs, args.rounds)
    if args.only in (None, "batched"):
        _table("batched products (G, M, K, N)", SHAPES_BATCHED, args.runs, args.rounds)
    if args.only in (None, "tail"):
        _table("conv GEMMs followed by a ReLU on Tessera's pool (a fused tail)", SHAPES_2D, args.runs, args.rounds,
               tail=True)
    if args.only in (None, "int8"):
        _table("int8 conv GEMMs: igemm (exact int32) vs numpy float64 matmul of pre-widened operands (exact)",
               SHAPES_2D, args.runs, args.rounds, int8=True)
    print(f"bench time {time.perf_counter() - start:.0f} s")
    _cold_start()


if __name__ == "__main__":
    main()
