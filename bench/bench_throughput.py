"""Images per second with several requests in flight, against onnxruntime
with the same thread budget, same process (issue 57, item 3).

For each model (MobileNetV2 and ResNet-50 at 224, calibrated on 32 photo
crops), --images images, after a warm-up, min/median/max over --rounds,
Tessera and onnxruntime timed one after the other in each round:

* the device path (int8, the simulator) against onnxruntime's int8 QDQ
  u8s8 session run back to back on 2 threads: FWDNXT Run_sw one image
  after another; the Inference Engine's FPGA plugin with 2 requests, each
  started while the other runs (start_async, wait); FWDNXT PutInput /
  GetResult with a putter and a getter thread; tessera-infer's pipeline
  (runtime.app.pipeline.run_images, as the command runs it: 2 pre-processing
  workers, one image a batch) over JPEG crops of the sample photos, against
  onnxruntime decoding each image with the same function
  (runtime.app.images.load_image) and running it, one after another (the
  way onnxruntime's own samples go through a folder);
* the float path against onnxruntime fp32: the IE's CPU plugin with 2
  requests the same way.

Each round runs each side's images in turns of ``BLOCK`` (16), alternating.

Ratios are Tessera's images/s over onnxruntime's (higher is better; the
target is >= 1).

    PYTHONPATH=. python bench/bench_throughput.py [--models mobilenet_v2,resnet50] [--images 64]
"""
from __future__ import annotations

from timing import load, ort_options, pause, spread  # first: sets the thread counts
# isort: split

import argparse
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from bench_device import CALIBRATION, MODELS, _for_onnxruntime, _input_name, _qdq

from bench_infer_app import _jpegs

from compiler.zoo.images import image_crops
from runtime import FWDNXT
from runtime.app.images import load_image, settings_for
from runtime.app.pipeline import run_images
from runtime.inference_engine import IENetwork, IEPlugin


BLOCK = 16
"""Images per turn: a round's images go in turns of this many, the two
sides alternating, and each side's rate is its images over the sum of its
turns. In whole rounds of 64 images a side (seconds apart), onnxruntime's
own rate moved 40 % between two rows of one run on Zen 3 (57 and 82
images/s on MobileNetV2): the host's load changed between the halves of a
round."""


def _rates(ours, theirs, images: int, rounds: int) -> tuple[list[float], list[float]]:
    """Images per second of ``ours`` and ``theirs`` (``run(count)`` runs
    ``count`` images, each call its own requests or threads from start to
    end), per round: ``images`` each, in alternating turns of ``BLOCK``
    (which side goes first alternates from round to round), so that each
    round's ratio compares the two under the same load of this shared
    machine."""
    ours(4)  # warm
    theirs(4)
    rates: tuple[list[float], list[float]] = ([], [])
    for r in range(rounds):
        sides = [ours, theirs] if r % 2 == 0 else [theirs, ours]
        spent = {ours: 0.0, theirs: 0.0}
        for done in range(0, images, BLOCK):
            count = min(BLOCK, images - done)
            for run in sides:
                pause()
                start = time.perf_counter()
                run(count)
                spent[run] += time.perf_counter() - start
        rates[0].append(images / spent[ours])
        rates[1].append(images / spent[theirs])
    return rates


def _ort(session, feeds):
    def run(count: int) -> None:
        for _ in range(count):
            session.run(None, feeds)
    return run


def _requests(executable, name: str, image: np.ndarray):
    """Two requests in flight: request i % 2 starts image i once it has
    finished image i - 2."""
    def run(count: int) -> None:
        started = [False, False]
        for i in range(count):
            request = executable.requests[i % 2]
            if started[i % 2]:
                request.wait()
            request.async_infer({name: image})
            started[i % 2] = True
        for request, was in zip(executable.requests, started):
            if was:
                request.wait()
    return run


def _put_get(ie: FWDNXT, image: np.ndarray, size: int):
    def run(count: int) -> None:
        def getter():
            result = np.empty(size, np.float32)
            while ie.GetResult(result) is not None:
                pass
        thread = threading.Thread(target=getter)
        thread.start()
        for i in range(count):
            ie.PutInput(image, i)
        ie.PutInput(None, None)
        thread.join()
    return run


def _pipeline(ie: FWDNXT, paths: list, settings, workers: int = 2):
    def run(count: int) -> None:
        run_images(ie, paths[:count], settings, workers=workers)
    return run


def _ort_decoded(session, name: str, paths: list, settings):
    def run(count: int) -> None:
        for path in paths[:count]:
            session.run(None, {name: load_image(path, settings)[None]})
    return run


def _row(model: str, what: str, ours: list[float], theirs: list[float]) -> None:
    ratios = [a / b for a, b in zip(ours, theirs)]
    print(f"{model:<14}{what:<44}{np.median(ours):>10.1f}{np.median(theirs):>12.1f}{spread(ratios):>18}"
          "  target >= 1", flush=True)


def bench(name: str, images: int, rounds: int, folder: str, calibration) -> None:
    model = _for_onnxruntime(MODELS[name]())
    inp = _input_name(model)
    source, binary = os.path.join(folder, f"{name}.onnx"), os.path.join(folder, f"{name}.bin")
    onnx.save(model, source)
    image = image_crops(1, size=224, seed=2)[0]
    feeds = {inp: image}
    int8 = ort.InferenceSession(_qdq(source, folder, inp, calibration, "u8s8"), ort_options(),
                                providers=["CPUExecutionProvider"])
    fp32 = ort.InferenceSession(source, ort_options(), providers=["CPUExecutionProvider"])
    ort_int8, ort_fp32 = _ort(int8, feeds), _ort(fp32, feeds)

    ie = FWDNXT()
    size = ie.Compile("224x224x3", source, binary, samples=calibration)
    ie.Init(binary, "")
    result = np.empty(size, np.float32)

    def run_sw(count: int) -> None:
        for _ in range(count):
            ie.Run_sw(image, result)
    _row(name, "Run_sw, one after another / ORT int8", *_rates(run_sw, ort_int8, images, rounds))
    _row(name, "PutInput/GetResult / ORT int8", *_rates(_put_get(ie, image, size), ort_int8, images, rounds))
    jpegs = os.path.join(folder, "jpegs")
    if not os.path.isdir(jpegs):
        os.mkdir(jpegs)
        _jpegs(jpegs, BLOCK)
    paths = [Path(jpegs, file) for file in sorted(os.listdir(jpegs))]
    settings = settings_for(ie.GetInfo("inshapes"), None, None, None, ie.GetInfo("preprocess"))
    _row(name, "tessera-infer / ORT int8, same decode",
         *_rates(_pipeline(ie, paths, settings), _ort_decoded(int8, inp, paths, settings), images, rounds))
    ie.Free()
    net = IENetwork(model=source)
    for device, reference, what in (("FPGA", ort_int8, "int8"), ("CPU", ort_fp32, "fp32")):
        plugin = IEPlugin(device=device)
        plugin.set_config({"TESSERA_CALIBRATION_DATA": calibration})
        executable = plugin.load(net, num_requests=2)
        _row(name, f"IE {device}, 2 requests / ORT {what}",
             *_rates(_requests(executable, inp, image), reference, images, rounds))
        del executable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mobilenet_v2,resnet50")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)
    calibration = image_crops(CALIBRATION, size=224, seed=1)
    print(f"{load()}; images/s, ratios min/median/max over {args.rounds} rounds of {args.images} images", flush=True)
    print(f"{'model':<14}{'measure':<44}{'tessera':>10}{'onnxruntime':>12}{'ratio':>18}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models.split(","):
            bench(name, args.images, max(args.rounds, 1), folder, calibration)
    print(f"after: {load()}", flush=True)


if __name__ == "__main__":
    main()
