"""Where the fixed cost of a Run_sw call goes (issue 57; docs/runtime.md,
"The fixed cost of a call"): each stage of a warm FWDNXT Run_sw of a small
model, in microseconds a call, beside onnxruntime's int8 QDQ call of the
same model measured in the same process.

Each stage is timed by a wrapper (time.perf_counter_ns) around the function
that does it; "other" is the rest of the call (the layers between the
stages, the wrappers' own ~0.2 us each included). Of ``--rounds`` rounds of
``--runs`` calls, the quietest (least total) is printed.

    PYTHONPATH=. python bench/profile_call.py [--models identity,one_conv] [--runs 5000] [--rounds 5]
"""
from __future__ import annotations

from timing import load, ort_options  # first: sets the thread counts
# isort: split

import argparse
import collections
import logging
import os
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from bench_cpu import MODELS
from bench_device import _for_onnxruntime, _input_name, _qdq

import runtime.device as device
import runtime.engine as engine
import runtime.fwdnxt_buffers as flat
import runtime.requests as requests
import runtime.sim.simulator as simulator
from compiler.zoo.images import image_crops
from runtime import FWDNXT

STAGES = [
    ("FWDNXT input checks + split", flat, "inputs"),
    ("FWDNXT result-buffer checks", flat, "results"),
    ("Request object", requests.Request, "__init__"),
    ("engine input checks (+ scans)", engine.Engine, "_device_inputs"),
    ("quantize into DRAM (+ inspection)", device._Edge, "write"),
    ("simulator run", simulator.Simulator, "run_checked"),
    ("dequantize out of DRAM", device._Edge, "read"),
    ("fill the result buffer", flat, "fill"),
]
_spent: dict[str, int] = collections.defaultdict(int)


def _timed(owner, attr: str, label: str) -> None:
    """Replace ``owner.attr`` by a wrapper adding its time to ``_spent[label]``."""
    fn = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)

    def timed(*args, **kwargs):
        start = time.perf_counter_ns()
        try:
            return fn(*args, **kwargs)
        finally:
            _spent[label] += time.perf_counter_ns() - start

    setattr(owner, attr, timed)


def _quietest(call, runs: int, rounds: int) -> dict[str, float]:
    """Microseconds a call per stage in the round of least total."""
    best = None
    for _ in range(rounds):
        for _ in range(max(runs // 10, 10)):
            call()
        _spent.clear()
        for _ in range(runs):
            call()
        stages = {label: ns / runs / 1e3 for label, ns in _spent.items()}
        if best is None or stages["total"] < best["total"]:
            best = stages
    return best


def _ort_us(session, feeds, runs: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(runs):
            session.run(None, feeds)
        best = min(best, (time.perf_counter_ns() - start) / runs / 1e3)
    return best


def profile(name: str, runs: int, rounds: int, folder: str) -> None:
    model = _for_onnxruntime(MODELS[name]())
    inp = _input_name(model)
    shape = [d.dim_value for d in next(v for v in model.graph.input if v.name == inp).type.tensor_type.shape.dim]
    crops = image_crops(33, size=shape[-1], seed=1)
    image = np.ascontiguousarray(crops.pop())
    source, binary = os.path.join(folder, f"{name}.onnx"), os.path.join(folder, f"{name}.bin")
    onnx.save(model, source)
    ie = FWDNXT()
    result = np.empty(ie.Compile(f"{shape[3]}x{shape[2]}x{shape[1]}", source, binary, samples=crops), np.float32)
    ie.Init(binary, "")
    stages = _quietest(lambda: ie.Run_sw(image, result), runs, rounds)
    int8 = ort.InferenceSession(_qdq(source, folder, inp, crops, "u8s8"), ort_options(),
                                providers=["CPUExecutionProvider"])
    theirs = _ort_us(int8, {inp: image}, runs, rounds)
    print(f"\n{name}: FWDNXT Run_sw, us a call")
    for label, _, _ in STAGES:
        print(f"  {label:<36}{stages.get(label, 0.0):8.1f}")
    print(f"  {'other':<36}{stages['total'] - sum(stages.get(label, 0.0) for label, _, _ in STAGES):8.1f}")
    print(f"  {'total':<36}{stages['total']:8.1f}   onnxruntime int8 QDQ u8s8 {theirs:.1f} us: "
          f"{stages['total'] / theirs:.2f}x", flush=True)
    ie.Free()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="identity,one_conv")
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)
    for label, owner, attr in STAGES:
        _timed(owner, attr, label)
    _timed(FWDNXT, "Run_sw", "total")
    print(load(), flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models.split(","):
            profile(name, max(args.runs, 10), max(args.rounds, 1), folder)


if __name__ == "__main__":
    main()
