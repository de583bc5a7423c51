"""Quantized accuracy on real data.

The data is scikit-learn's bundled handwritten digits: 1797 8x8 images in 10
classes, split with a fixed seed into 1200 training and 597 held-out images.
The module trains a small convolutional network on the training images in
NumPy (well under a second): Conv 3x3 (1->8) + Relu, Conv 3x3 stride 2
(8->16) + Relu, Flatten, Gemm (256->32) + Relu, Gemm (32->10). It exports
the network as an ONNX model and compiles it with ``target.hwlinear`` on,
so that every layer runs on the accelerator.

Then it quantizes the model, calibrated on 64 training images (never
held-out ones), and runs the held-out images through each quantized graph.
The checks: top-1 accuracy within 1 percentage point of float32, the
predictions agree with float32, the SNR of the logits is above a measured
floor, and the segment evaluates bit for bit like the integer reference. The
graph structure is checked too: every layer must really be a quantized op,
so that no check can pass with the model left in float.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from threadpoolctl import threadpool_limits

from codegen.cpu import lower_segments, lower_with_names
from compiler.backend import prepare
from compiler.frontend import import_onnx
from compiler.pipeline import partition_graph
from ir.graph import Graph, walk
from passes.infra import PassContext
from passes.quant.metrics import snr_db
from passes.quant.quantize import quantize
from runtime.hardware import ACCELERATOR
from runtime.segments import SegmentExecutor
from tests.oracle import run_reference

SEED = 0
TRAIN = 1200  # the other 597 images are held out
CALIBRATION = 64  # training images
EPOCHS, BATCH, LEARNING_RATE = 15, 32, 3e-3
C1, C2, HIDDEN, CLASSES = 8, 16, 32, 10
LAYERS = {"conv1": "QConv", "conv2": "QConv", "fc1": "QGemm", "fc2": "QGemm"}

# Floors on the held-out logits' SNR against float32 (dB). Measured with 64
# calibration images: int8 37.3, radix8 32.3, int16 44.8, radix16 71.2; the
# same recipe with seeds 1-5 gives at least 35.4, 32.3, 38.9 and 81.2. int16
# is held back by clipping, not by rounding: some held-out activations fall
# outside the ranges calibrated on 64 training images (int16 calibrated with
# minmax on the held-out images themselves measures 85.2 dB).
SNR_FLOOR_DB = {"int8": 30.0, "radix8": 27.0, "int16": 33.0, "radix16": 62.0}
MIN_AGREEMENT = {"int8": 0.98, "radix8": 0.98, "int16": 0.998, "radix16": 0.998}
STORAGE = {"int8": np.int8, "radix8": np.int8, "int16": np.int16, "radix16": np.int16}
REFERENCE_SAMPLES = 16


@dataclass(frozen=True)
class Digits:
    train_x: np.ndarray  # [n, 1, 8, 8] float32, normalised
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def load_split() -> Digits:
    data = load_digits()
    images = data.images.astype(np.float32) / 16.0
    order = np.random.default_rng(SEED).permutation(len(images))
    train, test = order[:TRAIN], order[TRAIN:]
    mean, std = images[train].mean(), images[train].std()
    x = ((images - mean) / std).astype(np.float32)[:, None]
    return Digits(x[train], data.target[train], x[test], data.target[test])


# ------------------------------------------------ a small CNN in NumPy

def im2col(x: np.ndarray, stride: int) -> np.ndarray:
    """3x3 windows with padding 1: [n*oh*ow, c*9], rows in (n, oh, ow) order."""
    n, c, h, w = x.shape
    oh, ow = (h - 1) // stride + 1, (w - 1) // stride + 1
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.empty((n, c, 3, 3, oh, ow), x.dtype)
    for i in range(3):
        for j in range(3):
            cols[:, :, i, j] = padded[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(n * oh * ow, c * 9)


def col2im(cols: np.ndarray, shape: tuple, stride: int) -> np.ndarray:
    """The adjoint of :func:`im2col`: window gradients summed back into the image."""
    n, c, h, w = shape
    oh, ow = (h - 1) // stride + 1, (w - 1) // stride + 1
    windows = cols.reshape(n, oh, ow, c, 3, 3).transpose(0, 3, 4, 5, 1, 2)
    padded = np.zeros((n, c, h + 2, w + 2), cols.dtype)
    for i in range(3):
        for j in range(3):
            padded[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += windows[:, :, i, j]
    return padded[:, :, 1:-1, 1:-1]


def to_nchw(rows: np.ndarray, n: int, size: int) -> np.ndarray:
    return rows.reshape(n, size, size, -1).transpose(0, 3, 1, 2)


def forward(p: dict, x: np.ndarray):
    """Logits, and what the backward pass needs."""
    n = x.shape[0]
    c1 = im2col(x, 1)
    z1 = c1 @ p["w1"].reshape(C1, -1).T + p["b1"]
    c2 = im2col(to_nchw(np.maximum(z1, 0), n, 8), 2)
    z2 = c2 @ p["w2"].reshape(C2, -1).T + p["b2"]
    flat = to_nchw(np.maximum(z2, 0), n, 4).reshape(n, -1)  # ONNX Flatten order: c, h, w
    z3 = flat @ p["w3"].T + p["b3"]
    a3 = np.maximum(z3, 0)
    return a3 @ p["w4"].T + p["b4"], (c1, z1, c2, z2, flat, z3, a3)


def gradients(p: dict, x: np.ndarray, y: np.ndarray) -> dict:
    """Gradients of the mean softmax cross-entropy."""
    n = x.shape[0]
    logits, (c1, z1, c2, z2, flat, z3, a3) = forward(p, x)
    d4 = np.exp(logits - logits.max(1, keepdims=True))
    d4 /= d4.sum(1, keepdims=True)
    d4[np.arange(n), y] -= 1
    d4 /= n
    d3 = (d4 @ p["w4"]) * (z3 > 0)
    d2 = (d3 @ p["w3"]).reshape(n, C2, 4, 4).transpose(0, 2, 3, 1).reshape(n * 16, C2) * (z2 > 0)
    da1 = col2im(d2 @ p["w2"].reshape(C2, -1), (n, C1, 8, 8), 2)
    d1 = da1.transpose(0, 2, 3, 1).reshape(n * 64, C1) * (z1 > 0)
    return {"w1": (d1.T @ c1).reshape(p["w1"].shape), "b1": d1.sum(0),
            "w2": (d2.T @ c2).reshape(p["w2"].shape), "b2": d2.sum(0),
            "w3": d3.T @ flat, "b3": d3.sum(0), "w4": d4.T @ a3, "b4": d4.sum(0)}


def train(digits: Digits) -> dict:
    """He-initialised weights trained with Adam on minibatches."""
    rng = np.random.default_rng(SEED)

    def he(shape, fan_in):
        return (rng.standard_normal(shape) * np.sqrt(2 / fan_in)).astype(np.float32)

    p = {"w1": he((C1, 1, 3, 3), 9), "b1": np.zeros(C1, np.float32),
         "w2": he((C2, C1, 3, 3), 9 * C1), "b2": np.zeros(C2, np.float32),
         "w3": he((HIDDEN, C2 * 16), C2 * 16), "b3": np.zeros(HIDDEN, np.float32),
         "w4": he((CLASSES, HIDDEN), HIDDEN), "b4": np.zeros(CLASSES, np.float32)}
    first = {k: np.zeros_like(v) for k, v in p.items()}
    second = {k: np.zeros_like(v) for k, v in p.items()}
    step = 0
    for _ in range(EPOCHS):
        order = rng.permutation(len(digits.train_x))
        for start in range(0, len(order), BATCH):
            batch = order[start:start + BATCH]
            g = gradients(p, digits.train_x[batch], digits.train_y[batch])
            step += 1
            for k in p:
                first[k] = 0.9 * first[k] + 0.1 * g[k]
                second[k] = 0.999 * second[k] + 0.001 * g[k] ** 2
                mean, variance = first[k] / (1 - 0.9 ** step), second[k] / (1 - 0.999 ** step)
                update = LEARNING_RATE * mean / (np.sqrt(variance) + 1e-8)
                p[k] = (p[k] - update).astype(np.float32)
    return p


def to_onnx(p: dict) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["z1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["z1"], ["a1"], name="relu1"),
        helper.make_node("Conv", ["a1", "w2", "b2"], ["z2"], name="conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         strides=[2, 2]),
        helper.make_node("Relu", ["z2"], ["a2"], name="relu2"),
        helper.make_node("Flatten", ["a2"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "w3", "b3"], ["z3"], name="fc1", transB=1),
        helper.make_node("Relu", ["z3"], ["a3"], name="relu3"),
        helper.make_node("Gemm", ["a3", "w4", "b4"], ["logits"], name="fc2", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "digits_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, CLASSES])],
        [numpy_helper.from_array(v, k) for k, v in p.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    return model


# ------------------------------------------------ compile, quantize, run

def quantized_graph(model: onnx.ModelProto, calibration: list, mode: str) -> Graph:
    options = {"target.hwlinear": True}  # Gemm on the accelerator
    graph = partition_graph(import_onnx(model), options=options)
    with PassContext(options={**options, "quant.calibration_data": calibration,
                              "quant.calibration_count": len(calibration), "quant.mode": mode}, lower=lower_with_names):
        return quantize(graph)


def run_one_by_one(run, images: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(run(image[None])).reshape(1, -1) for image in images])


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(logits.argmax(1) == labels))


@pytest.fixture(scope="module")
def digits() -> Digits:
    return load_split()


@pytest.fixture(scope="module")
def trained(digits) -> dict:
    with threadpool_limits(1):  # small products: one BLAS thread is faster, and its sums do not depend on the machine
        return train(digits)


@pytest.fixture(scope="module")
def model(trained) -> onnx.ModelProto:
    return to_onnx(trained)


@pytest.fixture(scope="module")
def float_logits(model, digits) -> np.ndarray:
    """Held-out logits from Tessera's float32 path."""
    rep = prepare(model)
    return run_one_by_one(lambda x: rep.run(x)[0], digits.test_x)


@dataclass(frozen=True)
class Quantized:
    mode: str
    graph: Graph
    logits: np.ndarray  # held-out


@pytest.fixture(scope="module")
def quantize_mode(model, digits):
    """mode -> its :class:`Quantized`, each computed once for the module."""
    cache: dict[str, Quantized] = {}

    def get(mode: str) -> Quantized:
        if mode not in cache:
            calibration = list(digits.train_x[:CALIBRATION])  # [1, 8, 8] each: the batch dimension left out
            graph = quantized_graph(model, calibration, mode)
            executor = SegmentExecutor(lower_segments(graph))
            logits = run_one_by_one(lambda x: executor.run({"x": x})["logits"], digits.test_x)
            cache[mode] = Quantized(mode, graph, logits)
        return cache[mode]

    return get


@pytest.fixture(params=list(SNR_FLOOR_DB))
def quantized(request, quantize_mode) -> Quantized:
    return quantize_mode(request.param)


# ------------------------------------------------ the tests

def test_trained_network_is_a_sane_digit_classifier(trained, float_logits, digits):
    numpy_logits, _ = forward(trained, digits.test_x)
    np.testing.assert_allclose(float_logits, numpy_logits, rtol=1e-4, atol=1e-4)  # the export is the network
    assert top1(forward(trained, digits.train_x)[0], digits.train_y) >= 0.99
    assert top1(float_logits, digits.test_y) >= 0.95  # measured 99.3%


def test_every_layer_is_a_quantized_op_on_the_accelerator(quantized):
    segments = quantized.graph.nodes
    assert [s.op for s in segments] == ["Segment"] and segments[0].attrs["device"] == ACCELERATOR
    body = segments[0].attrs["body"]
    layers = {}
    for _, node in walk(body):
        for source in node.annotations.get("source") or ():
            layers[source] = node
    assert {name: layers[name].op for name in LAYERS} == LAYERS
    storage = np.dtype(STORAGE[quantized.mode])
    for name in LAYERS:
        node = layers[name]
        weights, out = node.inputs[1], node.outputs[0]
        assert weights.type.dtype == storage and out.type.dtype == storage, name
        assert len(weights.quant.scale) == weights.type.shape[0]  # per output channel
        assert set(weights.quant.zero) == {0}
        if quantized.mode.startswith("radix"):  # fixed point: power-of-two scales, no zero point
            for params in (weights.quant, out.quant):
                assert all(math.log2(s).is_integer() for s in params.scale), name
                assert set(params.zero) == {0}, name
    assert {n.op for _, n in walk(body)} <= {"QuantizeLinear", "QConv", "Flatten", "QGemm", "DequantizeLinear"}


def test_top1_within_one_point_of_float(quantized, float_logits, digits):
    float_top1 = top1(float_logits, digits.test_y)
    quantized_top1 = top1(quantized.logits, digits.test_y)
    assert abs(quantized_top1 - float_top1) * 100 <= 1.0, (quantized.mode, float_top1, quantized_top1)


def test_predictions_and_logits_stay_close_to_float(quantized, float_logits):
    agreement = float(np.mean(quantized.logits.argmax(1) == float_logits.argmax(1)))
    assert agreement >= MIN_AGREEMENT[quantized.mode]
    snr = snr_db(float_logits, quantized.logits)
    assert SNR_FLOOR_DB[quantized.mode] <= snr < math.inf, (quantized.mode, snr)  # quantized, and close


def test_segment_matches_the_integer_reference_bit_for_bit(quantized, digits):
    executor = SegmentExecutor(lower_segments(quantized.graph))
    for image in digits.test_x[:REFERENCE_SAMPLES]:
        feeds = {"x": image[None]}
        np.testing.assert_array_equal(executor.run(feeds)["logits"], run_reference(quantized.graph, feeds)["logits"])


def test_sixteen_bits_are_closer_to_float_than_eight(quantize_mode, float_logits):
    snr = {mode: snr_db(float_logits, quantize_mode(mode).logits) for mode in STORAGE}
    assert snr["int16"] > snr["int8"] + 2.0, snr
    assert snr["radix16"] > snr["radix8"] + 20.0, snr
