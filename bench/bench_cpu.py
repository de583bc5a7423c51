"""Tessera's float CPU path against onnxruntime fp32, same process.

The model is imported and optimised (simplify, fold, fuse: compiler/pipeline.py)
unless --no-optimize. Both run on 2 threads, warm, at batch 1, one after the
other (bench/timing.py); each time is the median of --runs runs (at least 20).
Prints the ratio Tessera / onnxruntime per model (lower is better) and the
compile time (import + pass pipeline).

    python bench/bench_cpu.py [--runs 30] [--models resnet50,mobilenet_v2] [--no-optimize]
"""
from __future__ import annotations

from timing import median_ms, ort_options, pause  # first: sets the thread counts
# isort: split

import argparse
import time

import numpy as np
import onnxruntime as ort

from codegen.cpu import lower_to_program
from compiler.frontend import import_onnx
from compiler.pipeline import optimize
from compiler.zoo import load_light_model, mobilenet_v2, resnet
from compiler.zoo.builder import OnnxBuilder
from compiler.zoo.families import mobilenet_v3, ppLCNet
from runtime.executor import Executor


def identity():
    """The fixed cost of a call: one ReLU of a [1,3,8,8] input."""
    b = OnnxBuilder("identity")
    return b.model([b.node("Relu", [b.input("x", [1, 3, 8, 8])])])


def one_conv():
    """The fixed cost of a call with one convolution: 3x3, 3 -> 8 channels, 32x32."""
    b = OnnxBuilder("one_conv")
    return b.model([b.conv(b.input("x", [1, 3, 32, 32]), 3, 8, 3)])


MODELS = {
    "resnet50": lambda: load_light_model("resnet50"),
    "mobilenet_v2": mobilenet_v2,
    "resnet18": resnet,
    # issue 57's small models: mobile CNNs and the fixed cost of a call
    "ppLCNet": lambda: ppLCNet(image=224, scale=1.0),
    "mobilenet_v3": lambda: mobilenet_v3(image=224),  # MobileNetV3-Small: 5x5 depthwise layers, SE, HardSwish
    "mobilenet_v2_96": lambda: mobilenet_v2(image=96),
    "squeezenet": lambda: load_light_model("squeezenet"),
    "resnet10_32": lambda: resnet(10, image=32, classes=10),
    "identity": identity,
    "one_conv": one_conv,
}


def bench(name: str, runs: int, optimized: bool) -> tuple[float, float, float, float]:
    model = MODELS[name]()
    start = time.perf_counter()
    graph = import_onnx(model)
    if optimized:
        graph = optimize(graph)
    compile_s = time.perf_counter() - start
    executor = Executor(lower_to_program(graph).frozen())  # as a binary's: what Run_th runs
    rng = np.random.default_rng(0)
    feeds = {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in graph.inputs}
    ours = median_ms(lambda: executor.run(feeds), runs)
    session = ort.InferenceSession(model.SerializeToString(), ort_options(), providers=["CPUExecutionProvider"])
    pause()
    theirs = median_ms(lambda: session.run(None, feeds), runs)
    reference = session.run(None, feeds)[0]
    got = executor.run(feeds)[graph.outputs[0].name]
    error = float(np.abs(got - reference).max() / np.abs(reference).max())
    return ours, theirs, error, compile_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--models", default="resnet50,mobilenet_v2")
    parser.add_argument("--no-optimize", action="store_true", help="run the graph as imported")
    args = parser.parse_args()
    print(f"{'model':<14}{'tessera ms':>12}{'onnxruntime ms':>16}{'ratio':>8}{'max rel err':>14}{'compile s':>11}")
    for name in args.models.split(","):
        ours, theirs, error, compile_s = bench(name, max(args.runs, 20), not args.no_optimize)
        print(f"{name:<14}{ours:>12.2f}{theirs:>16.2f}{ours / theirs:>8.2f}{error:>14.2e}{compile_s:>11.2f}")


if __name__ == "__main__":
    main()
