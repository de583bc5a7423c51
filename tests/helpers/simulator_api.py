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
from onnx import TensorProto, helper
from PIL import Image
from sklearn.datasets import load_sample_images

from compiler.quantize import quantize_model
from compiler.zoo import resnet

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
    photos = [Image.fromarray(pixels) for pixels in load_sample_images().images]
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
