"""FWDNXT's PutInput/GetResult under load, against plain Run calls.

One binary, two ways through it, measured in the same run: ``--requests``
sequential ``Run`` calls on one thread, then as many requests through a
putter thread (PutInput) and a getter thread (GetResult, checking every
userobj comes back once, in order, with its own image's result), the
documented fast pattern of api-notes 1.6. Prints requests/s of each and
their ratio (put/get over Run: above 1 when the worker thread's simulation
overlaps the threads' copies and checks).

The model is the smallest the API compiles (one 1x1 convolution of a 2x2
image: the per-request machinery dominates) or, with ``--model resnet``, a
ResNet-10 on 32x32 images (the simulation dominates).

    python bench/bench_putget.py [--requests 100000] [--model tiny|resnet]
"""
from __future__ import annotations

from timing import THREADS  # first: sets the thread counts
# isort: split

import argparse
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import onnx

from compiler.zoo import resnet
from compiler.zoo.builder import OnnxBuilder
from runtime import FWDNXT

DISTINCT = 16
"""Different images cycled through; each result is checked against its image's."""


def _model(name: str) -> tuple[onnx.ModelProto, str, tuple[int, ...]]:
    if name == "resnet":
        return resnet(depth=10, image=32, classes=10, width=8), "32x32x3", (1, 3, 32, 32)
    builder = OnnxBuilder("tiny", seed=1)
    x = builder.input("x", [1, 2, 2, 2])
    return builder.model([builder.conv(x, 2, 2, 1)]), "2x2x2", (1, 2, 2, 2)


def _sequential(ie: FWDNXT, images: list[np.ndarray], count: int, size: int) -> float:
    result = np.zeros(size, np.float32)
    start = time.perf_counter()
    for i in range(count):
        ie.Run(images[i % DISTINCT], result)
    return time.perf_counter() - start


def _put_get(ie: FWDNXT, images: list[np.ndarray], expected: list[np.ndarray], count: int, size: int) -> float:
    seen, wrong = [], []

    def getter():
        result = np.zeros(size, np.float32)
        while (tag := ie.GetResult(result)) is not None:
            seen.append(tag)
            if not np.array_equal(result, expected[tag % DISTINCT]):
                wrong.append(tag)

    start = time.perf_counter()
    thread = threading.Thread(target=getter)
    thread.start()
    for i in range(count):
        ie.PutInput(images[i % DISTINCT], i)
    ie.PutInput(None, None)
    thread.join()
    spent = time.perf_counter() - start
    if seen != list(range(count)) or wrong:
        raise SystemExit(f"put/get lost or mixed results: {len(seen)} of {count} back, {len(wrong)} wrong")
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--model", choices=("tiny", "resnet"), default="tiny")
    args = parser.parse_args()
    model, image, shape = _model(args.model)
    rng = np.random.default_rng(0)
    images = [rng.standard_normal(shape).astype(np.float32) for _ in range(DISTINCT)]
    with tempfile.TemporaryDirectory() as folder:
        onnx.save(model, Path(folder) / "m.onnx")
        ie = FWDNXT()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            size = ie.Compile(image, str(Path(folder) / "m.onnx"), str(Path(folder) / "m.bin"), samples=images[:4])
        ie.Init(str(Path(folder) / "m.bin"), "")
    expected = []
    for x in images:
        expected.append(np.zeros(size, np.float32))
        ie.Run(x, expected[-1])
    _sequential(ie, images, min(1000, args.requests), size)  # warm
    sequential = _sequential(ie, images, args.requests, size)
    put_get = _put_get(ie, images, expected, args.requests, size)
    hwtime = ie.GetInfo("hwtime")
    ie.Free()
    print(f"model {args.model}, {args.requests} requests, host threads {THREADS}, modelled hwtime {hwtime:.4f} ms")
    print(f"Run, sequential         {args.requests / sequential:10.0f} requests/s")
    print(f"PutInput/GetResult      {args.requests / put_get:10.0f} requests/s (putter and getter threads)")
    print(f"ratio put/get over Run  {sequential / put_get:10.2f}")


if __name__ == "__main__":
    main()
