"""The small models people deploy, and the fixed cost of a call, against
onnxruntime in the same process (issue 57, item 2).

For each model, batch 1, 2 threads (bench/timing.py), warm, Tessera and
onnxruntime alternating in blocks (timing.paired_ms), min/median/max of the
ratio over --rounds:

* compiler.backend (prepare(model).run: the optimised float program) and
  FWDNXT Run_th against onnxruntime fp32; the backend also in a long
  stream of back-to-back calls (timing.streamed_ms: no pause for either
  library's threads to fall asleep in; the same target);
* FWDNXT Run_sw (the simulator) against onnxruntime int8 QDQ u8s8
  (quantize_static, per-channel weights, the same 32 calibration crops);
  for ``identity`` and ``one_conv``, also the Inference Engine's FPGA
  plugin (a synchronous request's infer, calibrated on the same crops).

``identity`` (one ReLU of a [1,3,8,8] input) and ``one_conv`` (3x3, 3 -> 8
channels, 32x32) measure what a call costs beyond its arithmetic; for them
the rows are in microseconds. Ratios are Tessera / onnxruntime (lower is
better); the targets are issue 57's (backend and Run_th <= 1.3x, Run_sw
<= 1.5x, the fixed cost <= 2x).

    PYTHONPATH=. python bench/bench_small.py [--models ppLCNet,resnet10_32] [--rounds 3]
"""
from __future__ import annotations

from timing import load, ort_options, pause, spread, streamed_ms  # first: sets the thread counts
# isort: split

import argparse
import logging
import os
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from bench_cpu import MODELS
from bench_device import _for_onnxruntime, _input_name, _paired_rounds, _qdq, notes

from compiler import backend
from compiler.zoo.images import image_crops
from runtime import FWDNXT
from runtime.inference_engine import IENetwork, IEPlugin

SMALL = ["ppLCNet", "mobilenet_v2", "mobilenet_v2_96", "squeezenet", "resnet10_32", "identity", "one_conv"]
FIXED_COST = {"identity", "one_conv"}
"""Models whose rows are per-call costs, in microseconds."""
FLOAT_TARGET, SW_TARGET, FIXED_TARGET = 1.3, 1.5, 2.0
CALIBRATION = 32


def _row(model: str, what: str, ours: float, theirs: float, ratios, target: float, micro: bool) -> None:
    scale, unit = (1e3, "us") if micro else (1.0, "ms")
    print(f"{model:<16}{what + ' ' + unit:<32}{ours * scale:>11.3f}{theirs * scale:>12.3f}{spread(ratios):>18}"
          f"  target <= {target:g}{notes()}", flush=True)


def bench(name: str, runs: int, rounds: int, folder: str) -> None:
    model = _for_onnxruntime(MODELS[name]())
    inp = _input_name(model)
    shape = [d.dim_value for d in next(v for v in model.graph.input if v.name == inp).type.tensor_type.shape.dim]
    size = shape[-1]
    crops = image_crops(CALIBRATION + 1, size=size, seed=1)
    image = np.ascontiguousarray(crops.pop())
    feeds = {inp: image}
    micro = name in FIXED_COST
    target = FIXED_TARGET if micro else FLOAT_TARGET
    source, binary = os.path.join(folder, f"{name}.onnx"), os.path.join(folder, f"{name}.bin")
    onnx.save(model, source)
    fp32 = ort.InferenceSession(source, ort_options(), providers=["CPUExecutionProvider"])

    rep = backend.prepare(model)
    pause()
    ours, theirs, ratios = _paired_rounds(lambda: rep.run(feeds), lambda: fp32.run(None, feeds), runs, rounds)
    _row(name, "backend / ORT fp32", ours, theirs, ratios, target, micro)
    pause()
    ours, theirs, ratios = _paired_rounds(lambda: rep.run(feeds), lambda: fp32.run(None, feeds), runs, rounds,
                                          timer=streamed_ms)
    _row(name, "backend, stream / ORT fp32", ours, theirs, ratios, target, micro)

    ie = FWDNXT()
    out_size = ie.Compile(f"{shape[3]}x{shape[2]}x{shape[1]}", source, binary, samples=crops)
    ie.Init(binary, "")
    result = np.empty(out_size, np.float32)
    pause()
    ours, theirs, ratios = _paired_rounds(lambda: ie.Run_th(image, result), lambda: fp32.run(None, feeds), runs,
                                          rounds)
    _row(name, "Run_th / ORT fp32", ours, theirs, ratios, target, micro)
    int8 = ort.InferenceSession(_qdq(source, folder, inp, crops, "u8s8"), ort_options(),
                                providers=["CPUExecutionProvider"])
    pause()
    ours, theirs, ratios = _paired_rounds(lambda: ie.Run_sw(image, result), lambda: int8.run(None, feeds), runs,
                                          rounds)
    _row(name, "Run_sw / ORT int8 QDQ u8s8", ours, theirs, ratios, FIXED_TARGET if micro else SW_TARGET, micro)
    ie.Free()
    if micro:  # the Inference Engine's synchronous request: the same device call behind another API
        plugin = IEPlugin(device="FPGA")
        plugin.set_config({"TESSERA_CALIBRATION_DATA": crops})
        request = plugin.load(IENetwork(model=source), num_requests=1).requests[0]
        pause()
        ours, theirs, ratios = _paired_rounds(lambda: request.infer(feeds), lambda: int8.run(None, feeds), runs,
                                              rounds)
        _row(name, "IE infer / ORT int8 QDQ u8s8", ours, theirs, ratios, FIXED_TARGET, micro)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(SMALL))
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3, help="paired measurements per ratio (min/median/max)")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime.quantization's advice, once per model
    print(f"{load()}; ratios min/median/max over {args.rounds} rounds of {args.runs} paired runs", flush=True)
    print(f"{'model':<16}{'measure':<32}{'tessera':>11}{'onnxruntime':>12}{'ratio':>18}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models.split(","):
            bench(name, max(args.runs, 3), max(args.rounds, 1), folder)
    print(f"after: {load()}", flush=True)


if __name__ == "__main__":
    main()
