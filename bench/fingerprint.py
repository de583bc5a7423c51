"""Fingerprints of everything the device path computes, to show that a change
(a refactor, a new pass) changes no result bit for bit: for onnx's model-zoo
topologies and the MobileNetV2-style model (as bench_quant.py builds them,
calibrated on 8 photo crops), the binary's SHA-256, and on 3 other crops the
simulator's outputs (Run_sw), the quantized model's CPU outputs and the float
reference's (Run_th), and hwtime. Run it before and after, then compare:

    PYTHONPATH=. python bench/fingerprint.py --out before.json
    PYTHONPATH=. python bench/fingerprint.py --out after.json --compare before.json

The same comparison under another kernel family (docs/runtime.md, "Kernel
families": TESSERA_GEMM_ISA, NUMBA_CPU_NAME and, for numpy's code,
NPY_DISABLE_CPU_FEATURES) shows whether another host computes the same bits.
"""
from __future__ import annotations

from timing import THREADS  # noqa: F401  first: sets the thread counts
# isort: split

import argparse
import hashlib
import json
import time
import warnings

import numpy as np
from bench_quant import MODELS, trained_like

from codegen.binary import write_binary
from compiler.compile import build
from compiler.quantize import quantize_model
from compiler.zoo.images import image_crops
from runtime.binary import read_binary
from runtime.engine import Engine
from runtime.hardware import HardwareConfig


def digest(data) -> str:
    raw = data if isinstance(data, bytes) else np.ascontiguousarray(data).tobytes()
    return hashlib.sha256(raw).hexdigest()[:16]


def fingerprint(name: str, calibration, evaluation) -> dict[str, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = quantize_model(trained_like(name), calibration_data=calibration,
                                   calibration_count=len(calibration))
    blob = write_binary(build(quantized.graph, HardwareConfig(), quantized.float_graph))
    engine = Engine(read_binary(blob))
    record: dict[str, object] = {"binary": digest(blob)}
    for i, image in enumerate(evaluation):
        feeds = {quantized.input_names[0]: image}
        runs = {"sim": engine.run(feeds), "cpu": quantized.run(feeds), "th": engine.run_reference(feeds)}
        record.update({f"{kind}{i}:{out}": digest(values[out]) for kind, values in runs.items()
                       for out in quantized.output_names})
    record["hwtime_ms"] = engine.device.hwtime_ms
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out", required=True)
    parser.add_argument("--compare", help="an earlier --out file: say which fingerprints differ")
    args = parser.parse_args()
    calibration, evaluation = image_crops(8, seed=1), image_crops(3, seed=2)
    result = {}
    for name in args.models.split(","):
        start = time.perf_counter()
        result[name] = fingerprint(name, calibration, evaluation)
        print(f"{name:<14} binary {result[name]['binary']}  hwtime {result[name]['hwtime_ms']:.3f} ms  "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    with open(args.out, "w") as out:
        json.dump(result, out, indent=1, sort_keys=True)
    if args.compare:
        with open(args.compare) as before_file:
            before = json.load(before_file)
        differ = [f"{m}/{k}" for m in result for k in result[m] if before.get(m, {}).get(k) != result[m][k]]
        count = sum(len(r) for r in result.values())
        print(f"{count - len(differ)} of {count} fingerprints identical" + (f"; differ: {differ}" if differ else ""))


if __name__ == "__main__":
    main()
