"""Compile time, import to binary, per stage (issue 24 item 4: ResNet-50 with
32 calibration inputs in 10 s or less on the 2-core machine).

Each compile runs in a fresh process with a warm Numba kernel cache (one
unreported compile per model fills it first): compile_model on the ONNX
model and 32 calibration inputs (crops of the sample photographs, or
seeded random data with --calibration synthetic), the binary written to a
temporary folder. The reference, measured in the same run: onnxruntime's
quantize_static on the same model and inputs (QDQ, per-channel int8, its
default MinMax calibration), in a fresh process too, alternating with
Tessera's. Printed: the seconds of each stage (compiler.compile.STAGES) and
of the whole compile, the interpreter's imports and the process's wall
time, min/median/max over --rounds, the ratio to onnxruntime's, and the
load average before and after.

    PYTHONPATH=. python bench/bench_compile.py [--models resnet50,resnet18] [--rounds 3]
"""
from __future__ import annotations

from timing import THREADS, load, spread  # first: sets the thread counts
# isort: split

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

COUNT = 32
TARGET_S = 10.0
"""Issue 24: ResNet-50, import to binary with 32 calibration inputs, <= 10 s."""


def _model(name: str):
    from compiler.zoo import builtin_model

    return builtin_model("zoo:resnet50" if name == "resnet50" else name)


def _inputs(kind: str, count: int):
    """``count`` calibration inputs for a 1x3x224x224 model."""
    if kind == "photos":
        from compiler.zoo.images import image_crops

        return list(image_crops(count, size=224, seed=1))
    import numpy as np

    rng = np.random.default_rng(1)
    return [rng.standard_normal((1, 3, 224, 224)).astype(np.float32) for _ in range(count)]


def child_tessera(name: str, kind: str, folder: str) -> dict:
    """One compile in this (fresh) process: the seconds of its parts."""
    import warnings

    start = time.perf_counter()

    from compiler.compile import compile_model, stage_times
    from passes.instruments import PassTiming

    imported = time.perf_counter()
    model, samples = _model(name), _inputs(kind, COUNT)
    prepared = time.perf_counter()
    timing = PassTiming()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compile_model(model, samples=samples, outfile=os.path.join(folder, f"{name}.bin"), instruments=[timing])
    done = time.perf_counter()
    return {"imports": imported - start, "model and inputs": prepared - imported, "compile": done - prepared,
            "stages": stage_times(timing)}


def child_onnxruntime(name: str, kind: str, folder: str) -> dict:
    """onnxruntime's quantize_static on the same model and inputs, in this process."""
    import logging

    start = time.perf_counter()

    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    logging.getLogger().setLevel(logging.ERROR)
    imported = time.perf_counter()
    model, samples = _model(name), _inputs(kind, COUNT)
    if max(i.version for i in model.opset_import if i.domain in ("", "ai.onnx")) < 13:
        model = onnx.version_converter.convert_version(model, 13)  # per-channel QDQ needs opset 13
    model.ir_version = min(model.ir_version, 10)
    source = os.path.join(folder, f"{name}.onnx")
    onnx.save(model, source)
    inits = {t.name for t in model.graph.initializer}
    input_name = next(v.name for v in model.graph.input if v.name not in inits)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{input_name: x} for x in samples])

        def get_next(self):
            return next(self.feeds, None)

    prepared = time.perf_counter()
    quantize_static(source, os.path.join(folder, f"{name}_qdq.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return {"imports": imported - start, "model and inputs": prepared - imported,
            "compile": time.perf_counter() - prepared, "stages": {}}


def _spawn(side: str, name: str, kind: str) -> dict:
    """Run one child in a fresh interpreter; its figures and its wall time."""
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", side, name, kind, folder],
                              capture_output=True, text=True)
        wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{side} compile of {name} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process wall"] = wall
    return result


def _row(model: str, what: str, values, note: str = "") -> None:
    print(f"{model:<10}{what:<38}{spread(values):>20}  {note}", flush=True)


def bench(name: str, kind: str, rounds: int) -> None:
    warm = _spawn("tessera", name, kind)  # fills the kernel cache if it is cold
    print(f"{name}: warm-up compile {warm['compile']:.2f} s (not counted)", flush=True)
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(_spawn("tessera", name, kind))
        theirs.append(_spawn("onnxruntime", name, kind))
    for stage in ours[0]["stages"]:
        _row(name, stage, [r["stages"].get(stage, 0.0) for r in ours])
    _row(name, "compile (import to binary)", [r["compile"] for r in ours],
         f"target <= {TARGET_S:g} s" if name == "resnet50" else "")
    _row(name, "interpreter imports", [r["imports"] for r in ours])
    _row(name, "process wall (model built, compiled)", [r["process wall"] for r in ours])
    _row(name, "onnxruntime quantize_static", [r["compile"] for r in theirs])
    _row(name, "ratio compile / quantize_static", [a["compile"] / b["compile"] for a, b in zip(ours, theirs)],
         "per round")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        side, name, kind, folder = sys.argv[2:6]
        run = child_tessera if side == "tessera" else child_onnxruntime
        print(json.dumps(run(name, kind, folder)), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet50,resnet18")
    parser.add_argument("--rounds", type=int, default=3, help="fresh-process compiles per model (min/median/max)")
    parser.add_argument("--calibration", default="photos", choices=["photos", "synthetic"])
    args = parser.parse_args()
    print(f"{load()}; {THREADS} threads; {COUNT} calibration inputs ({args.calibration}); seconds min/median/max "
          f"over {args.rounds} fresh-process rounds", flush=True)
    print(f"{'model':<10}{'stage':<38}{'seconds':>20}", flush=True)
    for name in args.models.split(","):
        bench(name, args.calibration, max(args.rounds, 1))
        print(f"after {name}: {load()}", flush=True)


if __name__ == "__main__":
    main()
