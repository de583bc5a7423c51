"""Tessera's Conv kernel against onnxruntime on every distinct conv of a model.

The layer shapes come from the model (batch 1), any of bench_cpu's:
ResNet-50 (onnx's light_resnet50.onnx, the default), MobileNetV2 or
ResNet-18 (Tessera's built-in ones), the zoo's MobileNetV3-Small and
PP-LCNet at 224 x 224 (their 5x5 depthwise layers), ... Each layer runs as one Conv with a bias (as after BatchNorm
folding) through Tessera's CPU kernel and through an onnxruntime session
holding that single Conv; both use 2 threads. All layers run through Tessera
first, then, after a pause, through onnxruntime: both keep idle threads
spinning for a while after a call (OpenBLAS's and onnxruntime's pools), which
would slow the other down if their runs were interleaved. Each time is the
median of --runs warm runs. Prints a table (g: group, p: first pad) and the
ratio of the totals, each layer weighted by how often the model uses it.

    python bench/bench_conv.py [--runs 30] [--model resnet50|mobilenet_v2|resnet18|mobilenet_v3|ppLCNet|...]
"""
from __future__ import annotations

from timing import ort_options, pause, time_runs  # first: sets the thread counts
# isort: split

import argparse
import collections
import statistics

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper, shape_inference

from bench_cpu import MODELS
from runtime.kernels import get_kernel


def model_convs(name: str) -> collections.Counter:
    """(x shape, w shape, strides, pads, group) of each Conv in the model -> count."""
    model = shape_inference.infer_shapes(MODELS[name]())
    graph = model.graph
    shapes = {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim)
              for v in list(graph.value_info) + list(graph.input)}
    for init in graph.initializer:
        shapes[init.name] = tuple(init.dims)
    layers = collections.Counter()
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        w_shape = shapes[node.input[1]]
        spatial = len(w_shape) - 2
        layers[(shapes[node.input[0]], w_shape, tuple(attrs.get("strides", [1] * spatial)),
                tuple(attrs.get("pads", [0] * 2 * spatial)), attrs.get("group", 1))] += 1
    return layers


def ort_session(x: np.ndarray, w: np.ndarray, b: np.ndarray, strides, pads, group) -> ort.InferenceSession:
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=list(strides), pads=list(pads), group=group)
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x.shape)],
                              [helper.make_empty_tensor_value_info("y")],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    return ort.InferenceSession(model.SerializeToString(), ort_options(), providers=["CPUExecutionProvider"])


def make_layer(x_shape, w_shape, strides, pads, group, rng):
    """(our call, onnxruntime's call, max abs difference) for one layer."""
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = (rng.standard_normal(w_shape, dtype=np.float32) / np.sqrt(np.prod(w_shape[1:]))).astype(np.float32)
    b = rng.standard_normal(w_shape[0], dtype=np.float32)
    spatial = len(w_shape) - 2
    attrs = {"kernel_shape": tuple(w_shape[2:]), "strides": strides, "pads": pads,
             "dilations": (1,) * spatial, "group": group}
    conv = get_kernel("Conv")
    session = ort_session(x, w, b, strides, pads, group)
    feeds = {"x": x}
    diff = float(np.max(np.abs(conv([x, w, b], attrs)[0] - session.run(None, feeds)[0])))
    return (lambda: conv([x, w, b], attrs)), (lambda: session.run(None, feeds)), diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="timed runs per layer (median; at least 20)")
    parser.add_argument("--model", default="resnet50", choices=sorted(MODELS))
    args = parser.parse_args()
    runs = max(args.runs, 20)
    rng = np.random.default_rng(0)
    layers = model_convs(args.model)
    calls = [make_layer(*layer, rng) for layer in layers]
    ours = [time_runs(call[0], runs) for call in calls]
    pause()
    theirs = [time_runs(call[1], runs) for call in calls]
    print(f"{'input':>18} {'weight':>18} {'s':>2} {'p':>2} {'g':>4} {'n':>2} {'tessera ms':>10} {'ort ms':>8} "
          f"{'ratio':>6} {'GMAC/s':>7} {'max|diff|':>9}")
    totals = np.zeros(4)
    for ((x_shape, w_shape, strides, pads, group), count), call, a, b in zip(layers.items(), calls, ours, theirs):
        mine, other = statistics.median(a), statistics.median(b)
        totals += count * np.array([mine, other, min(a), min(b)])
        macs = np.prod(x_shape[2:]) // (strides[0] * strides[1]) * np.prod(w_shape)
        print(f"{'x'.join(map(str, x_shape)):>18} {'x'.join(map(str, w_shape)):>18} {strides[0]:>2} {pads[0]:>2} "
              f"{group:>4} {count:>2} {mine * 1e3:>10.3f} {other * 1e3:>8.3f} {mine / other:>6.2f} "
              f"{macs / mine / 1e9:>7.1f} {call[2]:>9.1e}")
    print(f"all {sum(layers.values())} convs of {args.model} (medians): tessera {totals[0] * 1e3:.1f} ms, "
          f"onnxruntime {totals[1] * 1e3:.1f} ms, ratio {totals[0] / totals[1]:.2f}")
    print(f"same with each layer's fastest run: tessera {totals[2] * 1e3:.1f} ms, "
          f"onnxruntime {totals[3] * 1e3:.1f} ms, ratio {totals[2] / totals[3]:.2f}")


if __name__ == "__main__":
    main()
