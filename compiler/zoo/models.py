"""Tessera's built-in models, built in code with seeded weights: a
ResNet-style CNN (the default model of ``tessera run``), a MobileNetV2-style
CNN and a transformer encoder block."""
from __future__ import annotations

import numpy as np
import onnx

from compiler.zoo.builder import OPSET, OnnxBuilder


def resnet(depth: int = 18, image: int = 224, classes: int = 1000, width: int = 64, seed: int = 0,
           opset: int = OPSET) -> onnx.ModelProto:
    """A ResNet v1 with basic blocks (depth 10, 18 or 34): conv-BN-ReLU stem,
    max pool, four stages, global average pool, Gemm, Softmax. Each residual
    branch's last BatchNorm has a small gamma, as in trained ResNets."""
    blocks = {10: [1, 1, 1, 1], 18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}[depth]
    b = OnnxBuilder(f"resnet{depth}", seed, opset)
    x = b.input("image", [1, 3, image, image])
    x = b.node("Relu", [b.batchnorm(b.conv(x, 3, width, 7, stride=2, bias=False), width)])
    x = b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = width
    for stage, count in enumerate(blocks):
        cout = width * 2 ** stage
        for i in range(count):
            stride = 2 if stage > 0 and i == 0 else 1
            x = _basic_block(b, x, cin, cout, stride)
            cin = cout
    x = b.node("GlobalAveragePool", [x])
    x = b.node("Flatten", [x], axis=1)
    logits = b.linear(x, cin, classes)
    return b.model([b.node("Softmax", [logits], name="probabilities", axis=1)])


def _basic_block(b: OnnxBuilder, x: str, cin: int, cout: int, stride: int) -> str:
    y = b.node("Relu", [b.batchnorm(b.conv(x, cin, cout, 3, stride, bias=False), cout)])
    y = b.batchnorm(b.conv(y, cout, cout, 3, bias=False), cout, scale=0.2)
    if stride != 1 or cin != cout:
        x = b.batchnorm(b.conv(x, cin, cout, 1, stride, bias=False), cout)
    return b.node("Relu", [b.node("Add", [x, y])])


def mobilenet_v2(image: int = 224, classes: int = 1000, width: float = 1.0, seed: int = 0,
                 opset: int = OPSET) -> onnx.ModelProto:
    """A MobileNetV2: inverted residual blocks (1x1 expand, 3x3 depthwise,
    1x1 project) with BatchNorm and ReLU6 (Clip 0..6), residual adds where
    the shape allows."""
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1)]
    b = OnnxBuilder("mobilenet_v2", seed, opset)
    x = b.input("image", [1, 3, image, image])
    cin = _scaled(32, width)
    x = _relu6(b, b.batchnorm(b.conv(x, 3, cin, 3, stride=2, bias=False), cin))
    for expand, channels, repeat, first_stride in settings:
        cout = _scaled(channels, width)
        for i in range(repeat):
            x = _inverted_residual(b, x, cin, cout, first_stride if i == 0 else 1, expand)
            cin = cout
    last = _scaled(1280, max(width, 1.0))
    x = _relu6(b, b.batchnorm(b.conv(x, cin, last, 1, bias=False), last))
    x = b.node("Flatten", [b.node("GlobalAveragePool", [x])], axis=1)
    return b.model([b.linear(x, last, classes)])


def _scaled(channels: int, width: float) -> int:
    return max(8, int(channels * width + 4) // 8 * 8)


def _relu6(b: OnnxBuilder, x: str) -> str:
    if b.opset < 11:  # Clip's bounds were attributes before opset 11
        return b.node("Clip", [x], min=0.0, max=6.0)
    return b.node("Clip", [x, b.const_f32(0.0, "min"), b.const_f32(6.0, "max")])


def _inverted_residual(b: OnnxBuilder, x: str, cin: int, cout: int, stride: int, expand: int) -> str:
    hidden = cin * expand
    y = x
    if expand != 1:
        y = _relu6(b, b.batchnorm(b.conv(y, cin, hidden, 1, bias=False), hidden))
    y = _relu6(b, b.batchnorm(b.conv(y, hidden, hidden, 3, stride, groups=hidden, bias=False), hidden))
    residual = stride == 1 and cin == cout
    y = b.batchnorm(b.conv(y, hidden, cout, 1, bias=False, gain=1.0), cout, scale=0.2 if residual else 1.0)
    return b.node("Add", [x, y]) if residual else y


def transformer_block(seq: int = 32, dim: int = 64, heads: int = 4, ffn: int = 256, seed: int = 0,
                      gelu: str = "erf") -> onnx.ModelProto:
    """One post-norm transformer encoder block: multi-head self-attention
    (MatMul, Reshape, Transpose, Softmax), residual adds, LayerNormalization,
    and a GELU feed-forward network: ``gelu`` "erf" writes it out with Erf
    (as exporters do below opset 20), "none" or "tanh" as opset 20's Gelu
    with that ``approximate``."""
    if gelu not in ("erf", "none", "tanh"):
        raise ValueError(f"transformer_block: gelu={gelu!r} is not 'erf', 'none' or 'tanh'")
    b = OnnxBuilder("transformer_block", seed, opset=20 if gelu != "erf" else OPSET)
    x = b.input("tokens", [1, seq, dim])
    head_dim = dim // heads
    q, k, v = (_split_heads(b, b.matmul_weight(x, dim, dim), seq, heads, head_dim) for _ in range(3))
    scores = b.node("Div", [b.node("MatMul", [q, b.node("Transpose", [k], perm=[0, 1, 3, 2])]),
                            b.const_f32(np.sqrt(head_dim), "scale")])
    context = b.node("MatMul", [b.node("Softmax", [scores], axis=-1), v])
    context = b.node("Reshape", [b.node("Transpose", [context], perm=[0, 2, 1, 3]), b.const_i64([1, seq, dim])])
    x = _layer_norm(b, b.node("Add", [x, b.matmul_weight(context, dim, dim)]), dim)
    hidden = b.matmul_weight(x, dim, ffn)
    hidden = _gelu(b, hidden) if gelu == "erf" else b.node("Gelu", [hidden], approximate=gelu)
    x = _layer_norm(b, b.node("Add", [x, b.matmul_weight(hidden, ffn, dim)]), dim)
    return b.model([x])


def _split_heads(b: OnnxBuilder, x: str, seq: int, heads: int, head_dim: int) -> str:
    x = b.node("Reshape", [x, b.const_i64([1, seq, heads, head_dim])])
    return b.node("Transpose", [x], perm=[0, 2, 1, 3])


def _layer_norm(b: OnnxBuilder, x: str, dim: int) -> str:
    gamma = b.const_f32(b.rng.uniform(0.9, 1.1, dim), "ln_scale")
    beta = b.const_f32(b.rng.standard_normal(dim) * 0.02, "ln_bias")
    return b.node("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=1e-5)


def _gelu(b: OnnxBuilder, x: str) -> str:
    """GELU written out with Erf, as exporters emit it: x * 0.5 * (1 + erf(x / sqrt 2))."""
    erf = b.node("Erf", [b.node("Div", [x, b.const_f32(np.sqrt(2.0), "sqrt2")])])
    return b.node("Mul", [b.node("Mul", [x, b.const_f32(0.5, "half")]), b.node("Add", [erf, b.const_f32(1.0, "one")])])
