"""Random one-operator models through the schedule's lowerings, each run
scheduled on one and two threads against the per-step run, bit for bit
and the per-step run against the ONNX reference implementation and onnxruntime (tests/helpers/lowering_cases.py:
Resize, Softmax along any axis, Transpose, Conv, ConvTranspose, AveragePool,
Pad, Concat and Split, MatMul, Gemm, LayerNormalization, and Erf, Tanh,
GELU, Pow and LRN). Prints the outcomes by kind and exits 1 on a mismatch or a wrong
result.

    PYTHONPATH=. python bench/lowering_sweep.py [--cases 700] [--seed 0] [--kind pad]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.lowering_cases import KINDS, sweep  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=700)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kind", choices=KINDS)
    args = parser.parse_args()
    counts = sweep(args.seed, range(args.cases), args.kind)
    for (kind, outcome), count in sorted(counts.items()):
        print(f"{kind:16s} {outcome:10s} {count}")
    mismatches = sum(n for (_, outcome), n in counts.items() if outcome.startswith(("MISMATCH", "WRONG")))
    print(f"{args.cases} cases, seed {args.seed}: {mismatches} mismatches or wrong results")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
