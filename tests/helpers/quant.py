"""Small models for the quantize pass tests (seeded weights, calibration
inputs), quantized and run on the CPU integer kernels, and the float
reference they are compared with."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from codegen.cpu import lower_segments, lower_with_names
from compiler.frontend import import_onnx
from compiler.pipeline import partition_graph
from ir.graph import Graph, Node
from passes.infra import PassContext
from passes.quant.quantize import quantize
from runtime.segments import SegmentExecutor

SHAPE = [1, 3, 8, 8]


def make_model(nodes, inputs: dict, outputs: dict, weights: dict) -> onnx.ModelProto:
    """A checked opset-17 model; an input is a float32 shape or (ONNX element type, shape)."""
    typed = {n: s if isinstance(s, tuple) and isinstance(s[1], (list, tuple)) else (TensorProto.FLOAT, s)
             for n, s in inputs.items()}
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(n, t, s) for n, (t, s) in typed.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs.items()],
        [numpy_helper.from_array(np.asarray(a), n) for n, a in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9  # what onnxruntime reads
    onnx.checker.check_model(model, full_check=True)
    return model


def conv(x: str, out: str, w: str, b: str | None = None, k: int = 3, name: str | None = None):
    pads = [(k - 1) // 2] * 4
    return helper.make_node("Conv", [x, w] + ([b] if b else []), [out], name=name or out, kernel_shape=[k, k],
                            pads=pads)


def node(op: str, inputs: list[str], out: str, name: str | None = None, **attrs):
    return helper.make_node(op, inputs, [out], name=name or out, **attrs)


def seeded(seed: int, **shapes) -> dict[str, np.ndarray]:
    """Weights w*: He-like normal; biases b*: small normal."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes.items():
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        std = np.sqrt(2.0 / fan_in) if len(shape) > 1 else 0.1
        out[name] = (rng.standard_normal(shape) * std).astype(np.float32)
    return out


def inputs(count: int, seed: int, shape=SHAPE) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, shape).astype(np.float32) for _ in range(count)]


def quantized(model: onnx.ModelProto, data=None, partition: dict | None = None, **options) -> Graph:
    graph = partition_graph(import_onnx(model), options=partition or {})
    options = {"quant.calibrator": "minmax", **options}
    if data is not None:
        options["quant.calibration_data"] = data
    with PassContext(options=options, lower=lower_with_names):
        return quantize(graph)


def run(graph: Graph, feeds: dict) -> dict[str, np.ndarray]:
    return SegmentExecutor(lower_segments(graph)).run(feeds)


def run_float(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def segments(graph: Graph, device: str) -> list[Node]:
    return [n for n in graph.nodes if n.op == "Segment" and n.attrs["device"] == device]


def q_ops(graph: Graph) -> list[Node]:
    return [n for s in segments(graph, "FPGA") for n in s.attrs["body"].nodes]


def from_source(graph: Graph, onnx_name: str) -> Node:
    (found,) = [n for n in q_ops(graph) if onnx_name in n.annotations.get("source", ())]
    return found


def minmax_grid(low: float, high: float) -> tuple[float, int]:
    """docs/quantization.md: s = (max - min) / 255 over [min, max] widened to 0,
    z = clamp(round_half_even(-128 - min / s))."""
    low, high = min(low, 0.0), max(high, 0.0)
    s = (high - low) / 255
    return float(np.float32(s)), int(np.clip(np.rint(-128 - low / s), -128, 127))


def weight_codes(w: np.ndarray, qmax: int = 127) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel codes and scales: s = max|w_c| / qmax."""
    scales = (np.abs(w).reshape(len(w), -1).max(axis=1).astype(np.float64) / qmax).astype(np.float32)
    codes = np.rint(w / scales.reshape(-1, *[1] * (w.ndim - 1)))
    return np.clip(codes, -qmax, qmax), scales


def conv_model(activation: str | None, seed: int = 0) -> onnx.ModelProto:
    w = seeded(seed, w=(8, 3, 3, 3), b=(8,))
    nodes = [conv("x", "c", "w", "b", name="conv0")]
    if activation == "Relu":
        nodes.append(node("Relu", ["c"], "y", name="act0"))
    elif activation == "Clip":
        w.update(lo=np.float32(0.0), hi=np.float32(1.5))
        nodes.append(node("Clip", ["c", "lo", "hi"], "y", name="act0"))
    else:
        nodes.append(node("Identity", ["c"], "y", name="act0"))
    return make_model(nodes, {"x": SHAPE}, {"y": [1, 8, 8, 8]}, w)


def quantize_quietly(model, calibration, **kwargs):
    """compiler.quantize.quantize_model on ``calibration``, its warnings silenced."""
    import warnings

    from compiler.quantize import quantize_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_model(model, calibration_data=calibration, **kwargs)


def model_snr(q, evaluation, x: str = "x", y: str = "y") -> float:
    """The SNR (dB) of a QuantizedModel's output ``y`` against its float model's over ``evaluation``."""
    from passes.quant.metrics import snr_db

    return snr_db(np.concatenate([q.run_float({x: v})[y].ravel() for v in evaluation]),
                  np.concatenate([q.run({x: v})[y].ravel() for v in evaluation]))
