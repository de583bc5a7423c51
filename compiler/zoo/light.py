"""The model-zoo topologies onnx ships (onnx/backend/test/data/light), with
their ConstantOfShape weight generators replaced by seeded weights.

Each weight is drawn for the role it plays (read off its consumer): conv and
linear weights He-scaled so activations stay finite, BatchNorm variances
positive, biases and means small; the last BatchNorm of each residual branch
gets a small gamma, as in trained ResNets.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import numpy_helper

LIGHT_MODELS = ("resnet50", "squeezenet", "shufflenet", "inception_v1", "inception_v2", "densenet121",
                "vgg19", "bvlc_alexnet", "zfnet512")
_PASS_THROUGH = {"Unsqueeze", "Reshape", "Squeeze", "Flatten", "Identity"}


def light_model_path(name: str) -> str:
    folder = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    return os.path.join(folder, f"light_{name}.onnx")


def load_light_model(name: str, seed: int = 0) -> onnx.ModelProto:
    """One of :data:`LIGHT_MODELS` with seeded weights in place of ConstantOfShape."""
    if name not in LIGHT_MODELS:
        raise ValueError(f"unknown model-zoo model {name!r}; choose from {list(LIGHT_MODELS)}")
    model = onnx.load(light_model_path(name))
    graph = model.graph
    rng = np.random.default_rng(seed)
    shapes = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consumers = _consumers(graph)
    shrink = _residual_tails(graph)
    kept, weights = [], []
    for node in graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in shapes:
            out = node.output[0]
            role = _role(out, consumers)
            array = _draw(rng, tuple(int(d) for d in shapes[node.input[0]]), role)
            if role == ("BatchNormalization", 1) and consumers[out][0][0].output[0] in shrink:
                array *= 0.2
            weights.append(numpy_helper.from_array(array.astype(np.float32), out))
        else:
            kept.append(node)
    used = {i for n in kept for i in n.input}
    inits = [t for t in graph.initializer if t.name in used] + weights
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(inits)
    names = {t.name for t in inits}
    inputs = [v for v in graph.input if v.name not in names and v.name in used]
    del graph.input[:]
    graph.input.extend(inputs)
    model.ir_version = max(model.ir_version, 4)  # initializers need not be listed as inputs
    return model


def _consumers(graph: onnx.GraphProto) -> dict[str, list[tuple[onnx.NodeProto, int]]]:
    users: dict[str, list] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            users.setdefault(name, []).append((node, index))
    return users


def _role(name: str, consumers) -> tuple[str, int]:
    """(op, input index) of the first real consumer, looking through reshapes."""
    for _ in range(4):
        uses = consumers.get(name, [])
        if not uses:
            return ("", 0)
        node, index = uses[0]
        if node.op_type not in _PASS_THROUGH:
            return node.op_type, index
        name = node.output[0]
    return ("", 0)


def _draw(rng: np.random.Generator, shape: tuple[int, ...], role: tuple[str, int]) -> np.ndarray:
    op, index = role
    if op in ("Conv", "Gemm", "MatMul") and index == 1:
        fan_in = int(np.prod(shape[1:])) if op == "Conv" else shape[-1] if op == "Gemm" else shape[0]
        return rng.standard_normal(shape) * np.sqrt(2.0 / max(fan_in, 1))
    if op == "BatchNormalization" and index in (1, 4):
        return rng.uniform(0.5, 1.5, shape)
    if op == "Mul":
        return rng.uniform(0.5, 1.5, shape)
    return rng.standard_normal(shape) * 0.05


def _residual_tails(graph: onnx.GraphProto) -> set[str]:
    """Outputs of the BatchNorm that ends a residual branch: of the BatchNorm
    inputs of each Add/Sum merging two paths, the one computed last."""
    order = {out: i for i, node in enumerate(graph.node) for out in node.output}
    producers = {out: node for node in graph.node for out in node.output}
    tails = set()
    for node in graph.node:
        if node.op_type in ("Add", "Sum") and len(node.input) == 2:
            bns = [i for i in node.input if i in producers and producers[i].op_type == "BatchNormalization"]
            if bns:
                tails.add(max(bns, key=lambda n: order[n]))
    return tails
