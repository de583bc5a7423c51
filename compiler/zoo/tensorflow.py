"""Family models as tf2onnx exports Keras and Caffe-to-TensorFlow networks:
NHWC inputs, Transposes around every Conv, BatchNorm and LayerNorm written
out element by element (the registry is compiler/zoo/families.py)."""
from __future__ import annotations

import numpy as np
import onnx

from compiler.zoo.builder import OnnxBuilder
from compiler.zoo.exporters import TF2ONNX

# ---------------------------------------------------------------- tf2onnx

def _keras_conv_bn(b: OnnxBuilder, x: str, cin: int, cout: int, name: str) -> str:
    """Keras Conv2D (bias, 'same' padding) and BatchNormalization."""
    with b.scope(name):
        y = b.conv(x, cin, cout, 3)
    with b.scope(name.replace("conv2d", "batch_normalization")):
        return b.batchnorm(y, cout)


def keras_audio(frames: int = 98, mels: int = 40, classes: int = 12, static: bool = True,
                seed: int = 0) -> onnx.ModelProto:
    """A Keras keyword-spotting CNN as tf2onnx exports it at opset 13: an NHWC
    log-mel input [N, 40, 98, 1] (a free batch named ``unk__38``),
    a Transpose to NCHW, Conv/BatchNormalization/Relu blocks, an
    element-wise Max of two conv branches (maxout), GlobalAveragePool, a
    Transpose back to NHWC and a Reshape (shape an initializer), MatMul +
    Add and Softmax; constants are initializers and nodes are named after
    the Keras layers (``StatefulPartitionedCall/model/conv2d/...``)."""
    b = OnnxBuilder("tf2onnx", seed, opset=13, **TF2ONNX)
    x = b.input("input_1", [1 if static else "unk__38", mels, frames, 1])
    with b.scope("conv2d"):
        x = b.node("Transpose", [x], perm=[0, 3, 1, 2])
    x = b.node("Relu", [_keras_conv_bn(b, x, 1, 16, "conv2d")])
    x = b.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    a = _keras_conv_bn(b, x, 16, 32, "conv2d_1")
    c = _keras_conv_bn(b, x, 16, 32, "conv2d_2")
    with b.scope("maximum"):
        x = b.node("Max", [a, c])
    x = b.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    x = b.node("Relu", [_keras_conv_bn(b, x, 32, 64, "conv2d_3")])
    with b.scope("global_average_pooling2d"):
        x = b.node("GlobalAveragePool", [x])
        x = b.node("Transpose", [x], perm=[0, 2, 3, 1])
        x = b.node("Reshape", [x, b.const_i64([-1, 64], "const_fold_opt")])
    with b.scope("dense"):
        logits = b.matmul_weight(x, 64, classes)
    return b.model([b.node("Softmax", [logits], axis=-1, outputs=["dense"])])


def _nhwc_conv(b: OnnxBuilder, x: str, cin: int, cout: int, k: int, stride: int = 1, pad: int | None = None) -> str:
    """A TensorFlow Conv2D on an NHWC tensor as tf2onnx writes it: Transpose
    to NCHW, the ONNX Conv, Transpose back to NHWC."""
    y = b.node("Transpose", [x], perm=[0, 3, 1, 2])
    y = b.conv(y, cin, cout, k, stride, bias=False, pad=pad)
    return b.node("Transpose", [y], perm=[0, 2, 3, 1])


def _caffe_batchnorm(b: OnnxBuilder, x: str, channels: int, scale: float = 1.0) -> str:
    """Caffe's BatchNorm and Scale layers after conversion to TensorFlow:
    (x - mean) * rsqrt(var + eps) * gamma + beta in four element-wise ops on
    the last (channel) axis, constants shaped ``[C]`` or ``[1, 1, 1, C]``."""
    gamma = b.rng.uniform(0.8, 1.2, channels) * scale
    beta = b.rng.standard_normal(channels) * 0.05
    mean = b.rng.standard_normal(channels) * 0.05
    inv_std = 1 / np.sqrt(b.rng.uniform(0.8, 1.2, channels) + 1e-5)
    y = b.node("Sub", [x, b.const_f32(mean.astype(np.float32), "bn_mean")])
    y = b.node("Mul", [y, b.const_f32(inv_std.reshape(1, 1, 1, -1).astype(np.float32), "bn_rsqrt")])
    y = b.node("Mul", [y, b.const_f32(gamma.reshape(1, 1, 1, -1).astype(np.float32), "bn_gamma")])
    return b.node("Add", [y, b.const_f32(beta.astype(np.float32), "bn_beta")])


def _nhwc_block(b: OnnxBuilder, x: str, cin: int, cout: int, stride: int) -> str:
    """A ResNet basic block in NHWC: two 3x3 convs with their batchnorms, a
    1x1 projection where the shape changes, the residual Add and Relu."""
    with b.scope("branch2a"):
        y = b.node("Relu", [_caffe_batchnorm(b, _nhwc_conv(b, x, cin, cout, 3, stride), cout)])
    with b.scope("branch2b"):
        y = _caffe_batchnorm(b, _nhwc_conv(b, y, cout, cout, 3), cout, scale=0.2)
    if stride != 1 or cin != cout:
        with b.scope("branch1"):
            x = _caffe_batchnorm(b, _nhwc_conv(b, x, cin, cout, 1, stride), cout)
    return b.node("Relu", [b.node("Add", [x, y])])


def nhwc_resnet(image: int = 32, classes: int = 10, static: bool = True, seed: int = 0) -> onnx.ModelProto:
    """A small ResNet converted Caffe -> TensorFlow -> ONNX (tf2onnx, opset
    13), in NHWC throughout: an NHWC input (a free batch named ``unk__97``),
    an edge-mode Pad before the unpadded stem conv, every Conv and MaxPool
    between a Transpose to NCHW and one back, each BatchNorm written as
    Sub/Mul/Mul/Add with ``[C]`` and ``[1, 1, 1, C]`` constants, residual
    Adds, a ReduceMean over H and W, MatMul + Add and Softmax."""
    b = OnnxBuilder("tf2onnx", seed, opset=13, **TF2ONNX)
    x = b.input("input_1", [1 if static else "unk__97", image, image, 3])
    with b.scope("conv1"):
        x = b.node("Pad", [x, b.const_i64([0, 1, 1, 0, 0, 1, 1, 0], "pads")], mode="edge")
        x = b.node("Relu", [_caffe_batchnorm(b, _nhwc_conv(b, x, 3, 16, 3, pad=0), 16)])
    with b.scope("pool1"):
        x = b.node("Transpose", [x], perm=[0, 3, 1, 2])
        x = b.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
        x = b.node("Transpose", [x], perm=[0, 2, 3, 1])
    cin = 16
    for stage, (cout, stride) in enumerate(((16, 1), (32, 2), (64, 2)), 2):
        with b.scope(f"res{stage}a"):
            x, cin = _nhwc_block(b, x, cin, cout, stride), cout
    with b.scope("pool5"):
        x = b.node("ReduceMean", [x], axes=[1, 2], keepdims=0)
    with b.scope("fc"):
        logits = b.matmul_weight(x, cin, classes)
    return b.model([b.node("Softmax", [logits], axis=-1, outputs=["prob"])])


def _channel_layer_norm(b: OnnxBuilder, x: str, channels: int, axis: int) -> str:
    """LayerNorm over the channels (``axis`` 1 of NCHW or -1 of NHWC) as
    torch.onnx and tf2onnx decompose it below opset 17: ReduceMean, Sub,
    Pow, ReduceMean, Add epsilon, Sqrt, 1 / that (rsqrt), times gamma
    (the outer product of a per-pixel [1,1,H,W] and a per-channel
    [1,C,1,1]: TF's batch_normalization folds gamma into the rsqrt), times
    the centred input, plus beta."""
    shape = [channels] if axis == -1 else [1, channels, 1, 1]
    gamma = b.weight(b.rng.uniform(0.5, 1.5, shape).astype(np.float32), "gamma")
    beta = b.weight((b.rng.standard_normal(shape) * 0.1).astype(np.float32), "beta")
    mean = b.node("ReduceMean", [x], axes=[axis], keepdims=1)
    centred = b.node("Sub", [x, mean])
    var = b.node("ReduceMean", [b.node("Pow", [centred, b.constant(2.0)])], axes=[axis], keepdims=1)
    rsqrt = b.node("Div", [b.constant(1.0), b.node("Sqrt", [b.node("Add", [var, b.constant(1e-3)])])])
    return b.node("Add", [b.node("Mul", [centred, b.node("Mul", [rsqrt, gamma])]), beta])


def channels_last_layernorm(image: int = 32, classes: int = 10, static: bool = True,
                            seed: int = 0) -> onnx.ModelProto:
    """A Keras CNN with LayerNormalization over channels as tf2onnx exports
    it at opset 13: an NHWC input [N, 32, 32, 3] (a free batch named
    ``unk__12``), Transposes around each Conv, a LayerNorm over the last
    axis of an NHWC map between Transposes, then one as tf2onnx's
    transpose optimizer leaves it, over axis 1 of an NCHW map with
    [1,C,1,1] gamma and beta (its rsqrt times gamma the outer product
    [1,1,H,W] x [1,C,1,1]), and a 1x1 conv head back to NHWC."""
    b = OnnxBuilder("tf2onnx", seed, opset=13, **TF2ONNX)
    x = b.input("input_1", [1 if static else "unk__12", image, image, 3])
    with b.scope("conv2d"):
        x = b.node("Relu", [b.conv(b.node("Transpose", [x], perm=[0, 3, 1, 2]), 3, 16, 3, stride=2)])
    with b.scope("layer_normalization"):
        x = b.node("Transpose", [x], perm=[0, 2, 3, 1])
        x = b.node("Transpose", [_channel_layer_norm(b, x, 16, -1)], perm=[0, 3, 1, 2])
    with b.scope("conv2d_1"):
        x = b.node("Relu", [b.conv(x, 16, 32, 3, stride=2)])
    with b.scope("layer_normalization_1"):
        x = _channel_layer_norm(b, x, 32, 1)
    with b.scope("conv2d_2"):
        x = b.node("Relu", [b.conv(x, 32, 32, 3)])
    with b.scope("head"):
        y = b.node("Transpose", [b.conv(x, 32, classes, 1, gain=1.0)], perm=[0, 2, 3, 1], outputs=["head"])
    return b.model([y])
