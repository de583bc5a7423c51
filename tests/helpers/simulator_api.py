"""A Simulator API workspace for tests: the small built-in ResNet-10 as an
ONNX file, its int8 encodings calibrated on photo crops, Exynos' empty
encodings file, and a data folder of photo crops, one .npy per sample."""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from compiler.quantize import quantize_model
from compiler.zoo import resnet
from compiler.zoo.images import sample_photos

EMPTY_ENCODINGS = {"activation_encodings": {}, "param_encodings": {}, "quantizer_args": {}, "version": None,
                   "modules": {}}
"""Exynos AI Studio's models/cnnx/empty.encodings: run in float."""
IMAGE = 32


@dataclass
class Workspace:
    folder: Path
    model: onnx.ModelProto
    model_path: str
    encodings_path: str
    empty_path: str
    data_path: str
    samples: list[np.ndarray]
    """The data folder's inputs, in sorted file-name order."""


def photo_crops(count: int, seed: int, size: int = IMAGE) -> list[np.ndarray]:
    """Random square crops of scikit-learn's two sample photographs, as
    [1, 3, size, size] float32 inputs in [0, 1]."""
    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(pixels) for pixels in sample_photos()]
    crops = []
    for i in range(count):
        photo = photos[i % len(photos)]
        side = int(rng.integers(min(photo.size) // 4, min(photo.size) + 1))
        left, top = int(rng.integers(0, photo.width - side + 1)), int(rng.integers(0, photo.height - side + 1))
        pixels = np.asarray(photo.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR),
                            np.float32) / 255.0
        crops.append(np.ascontiguousarray(pixels.transpose(2, 0, 1)[None]))
    return crops


def workspace(folder: Path, samples: int = 4) -> Workspace:
    """The ResNet-10 (32x32, width 8), its encodings calibrated on 8 crops,
    and ``samples`` other crops saved as s0.npy, s1.npy, ..."""
    model = resnet(depth=10, image=IMAGE, classes=10, width=8)
    model_path = folder / "resnet10.onnx"
    onnx.save(model, model_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # calibration progress
        quantized = quantize_model(model, calibration_data=photo_crops(8, seed=1))
    encodings = folder / "resnet10.encodings"
    quantized.export_encodings(encodings)
    empty = folder / "empty.encodings"
    empty.write_text(json.dumps(EMPTY_ENCODINGS))
    data = folder / "data"
    data.mkdir()
    inputs = photo_crops(samples, seed=2)
    for index, x in enumerate(inputs):
        np.save(data / f"s{index}.npy", x)
    return Workspace(folder, model, str(model_path), str(encodings), str(empty), str(data), inputs)


def two_input_model() -> onnx.ModelProto:
    """y = Relu(a + b) and z = a * b on [1, 4] float inputs: two inputs, two outputs."""
    nodes = [helper.make_node("Add", ["a", "b"], ["s"], name="add"),
             helper.make_node("Relu", ["s"], ["y"], name="relu"),
             helper.make_node("Mul", ["a", "b"], ["z"], name="mul")]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in ("a", "b")]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in ("y", "z")]
    graph = helper.make_graph(nodes, "two_inputs", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _conv(name: str, x: str, out: str, stride: int) -> list:
    """A 3x3 Conv with bias and SiLU (Sigmoid * Mul), as Ultralytics exports its Conv block."""
    return [helper.make_node("Conv", [x, f"{name}.weight", f"{name}.bias"], [f"{name}_conv"], name=name,
                             kernel_shape=[3, 3], strides=[stride, stride], pads=[1, 1, 1, 1]),
            helper.make_node("Sigmoid", [f"{name}_conv"], [f"{name}_sig"], name=f"{name}_sigmoid"),
            helper.make_node("Mul", [f"{name}_conv", f"{name}_sig"], [out], name=f"{name}_silu")]


def yolo_like(dims=("batch", 3, "height", "width"), classes: int = 2, seed: int = 0) -> onnx.ModelProto:
    """A tiny detector written the way ``yolo export format=onnx dynamic=True``
    writes YOLOv8: input ``images`` of dims ``['batch', 3, 'height', 'width']``,
    Conv+SiLU blocks at strides 2 and 4, a nearest x2 Resize by scales and a
    Concat (a feature pyramid), a 1x1 head whose box and class channels are
    split (classes through a Sigmoid) and concatenated again, flattened to
    ``output0`` of dims ``['batch', 4 + classes, 'anchors']`` through
    Shape -> Gather -> Concat -> Reshape. Height and width must be multiples of 4."""
    rng = np.random.default_rng(seed)

    def weights(name, k, c, size):
        return [numpy_helper.from_array((rng.standard_normal((k, c, size, size)) / np.sqrt(c * size * size))
                                        .astype(np.float32), f"{name}.weight"),
                numpy_helper.from_array((0.1 * rng.standard_normal(k)).astype(np.float32), f"{name}.bias")]

    head = 4 + classes
    initializers = weights("stem", 8, 3, 3) + weights("down", 8, 8, 3) + weights("head", head, 16, 1)
    initializers += [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
                     numpy_helper.from_array(np.array([0], np.int64), "zero"),
                     numpy_helper.from_array(np.array([head, -1], np.int64), "rest"),
                     numpy_helper.from_array(np.array([4, classes], np.int64), "split")]
    nodes = _conv("stem", "images", "p3", stride=2) + _conv("down", "p3", "p4", stride=2)
    nodes += [helper.make_node("Resize", ["p4", "", "scales"], ["up"], name="upsample", mode="nearest"),
              helper.make_node("Concat", ["up", "p3"], ["cat"], name="concat", axis=1),
              helper.make_node("Conv", ["cat", "head.weight", "head.bias"], ["raw"], name="head", kernel_shape=[1, 1]),
              helper.make_node("Split", ["raw", "split"], ["box", "cls_raw"], name="split", axis=1),
              helper.make_node("Sigmoid", ["cls_raw"], ["cls"], name="cls_sigmoid"),
              helper.make_node("Concat", ["box", "cls"], ["pred"], name="pred", axis=1),
              helper.make_node("Shape", ["pred"], ["pred_shape"], name="shape"),
              helper.make_node("Gather", ["pred_shape", "zero"], ["n"], name="batch", axis=0),
              helper.make_node("Concat", ["n", "rest"], ["target"], name="target", axis=0),
              helper.make_node("Reshape", ["pred", "target"], ["output0"], name="flatten")]
    graph = helper.make_graph(nodes, "yolo_like", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                                  list(dims))],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT,
                                                             [dims[0], head, "anchors"])], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def paddle_like(seed: int = 0) -> onnx.ModelProto:
    """A classifier as paddle2onnx writes one: input ``x`` of dims
    ``[-1, 3, -1, -1]``, Conv + Relu, global average pooling, Flatten, a
    MatMul + Add and a Softmax, output ``[-1, 5]``."""
    rng = np.random.default_rng(seed)
    initializers = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) / 5, "conv_w"),
                    numpy_helper.from_array(rng.standard_normal((8, 5)).astype(np.float32), "fc_w"),
                    numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "fc_b")]
    nodes = [helper.make_node("Conv", ["x", "conv_w"], ["conv"], name="conv2d_0", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["relu"], name="relu_0"),
             helper.make_node("GlobalAveragePool", ["relu"], ["pool"], name="pool2d_0"),
             helper.make_node("Flatten", ["pool"], ["flat"], name="flatten_0", axis=1),
             helper.make_node("MatMul", ["flat", "fc_w"], ["fc"], name="linear_0"),
             helper.make_node("Add", ["fc", "fc_b"], ["logits"], name="linear_0.add"),
             helper.make_node("Softmax", ["logits"], ["softmax_0.tmp_0"], name="softmax_0", axis=-1)]
    graph = helper.make_graph(nodes, "paddle_like", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                    [-1, 3, -1, -1])],
                              [helper.make_tensor_value_info("softmax_0.tmp_0", TensorProto.FLOAT, [-1, 5])],
                              initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
