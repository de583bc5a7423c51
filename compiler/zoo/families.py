"""Family models: small networks of the families users bring, written the
way their exporters write them (the graphs real models arrive as, not
tidied ones), with seeded weights.

Each builder mimics one exporter's idioms: its opset, Constant nodes where
it writes shapes and scalars that way, its activation decompositions, its
node names and its free batch dim (-1 for Paddle2ONNX, a named dim for
torch.onnx and tf2onnx). Spatial sizes are static and small, widths those of
the family's smallest member, so each model compiles and runs in seconds.
``static=True`` (the default) fixes the batch at 1 as well, so the model
compiles without giving a shape.
"""
from __future__ import annotations

import numpy as np
import onnx

from compiler.zoo.builder import OnnxBuilder
from compiler.zoo.exporters import PADDLE, TORCH, batch_shape, conv_bn, divisible
from compiler.zoo.tensorflow import channels_last_layernorm, keras_audio, nhwc_resnet
from compiler.zoo.ultralytics import yolo11_seg, yolov8

# ---------------------------------------------------------------- Paddle2ONNX

def _paddle_hardswish(b: OnnxBuilder, x: str) -> str:
    """hard_swish below opset 14: x * Clip(x + 3, 0, 6) / 6, scalars as Constant nodes."""
    relu6 = b.node("Clip", [b.node("Add", [x, b.constant(3.0)]), b.constant(0.0), b.constant(6.0)])
    return b.node("Div", [b.node("Mul", [x, relu6]), b.constant(6.0)])


def _paddle_hardsigmoid(b: OnnxBuilder, x: str, written_out: bool) -> str:
    """hardsigmoid(slope 0.2, offset 0.5): the HardSigmoid op, or written out
    as Paddle2ONNX does in places: Clip(x * 1.2 + 3, 0, 6) / 6."""
    if not written_out:
        return b.node("HardSigmoid", [x], alpha=0.2, beta=0.5)
    scaled = b.node("Add", [b.node("Mul", [x, b.constant(1.2)]), b.constant(3.0)])
    return b.node("Div", [b.node("Clip", [scaled, b.constant(0.0), b.constant(6.0)]), b.constant(6.0)])


def _paddle_se(b: OnnxBuilder, x: str, channels: int, hardsigmoid) -> str:
    """Squeeze-and-excitation: GlobalAveragePool -> 1x1 conv -> Relu -> 1x1 conv -> hardsigmoid -> Mul."""
    squeezed = channels // 4
    s = b.node("Relu", [b.conv(b.node("GlobalAveragePool", [x]), channels, squeezed, 1)])
    return b.node("Mul", [x, hardsigmoid(b.conv(s, squeezed, channels, 1, gain=1.0))])


def ppocr_det(image: int = 64, static: bool = True, seed: int = 0) -> onnx.ModelProto:
    """A PP-OCR-style text detector as Paddle2ONNX exports it at opset 11:
    a MobileNetV3-large x0.5 backbone (hard_swish written out as
    Add/Clip/Mul/Div, squeeze-and-excitation with the HardSigmoid op in some
    blocks and Mul/Add/Clip/Div in others), an FPN neck (1x1 convs, nearest
    Resize x2 + Add top-down, 3x3 convs, Resize to 1/4 and Concat), and a DB
    head (3x3 conv, ConvTranspose 2x2 stride 2 -> BN -> Relu ->
    ConvTranspose -> Sigmoid). Scalars, Resize scales and roi are Constant
    nodes; the free batch dim is ``dim_value -1``."""
    b = OnnxBuilder("ppocr_det", seed, opset=11, **PADDLE)
    x = b.input("x", [1 if static else -1, 3, image, image])
    # kernel, expansion, output, SE, hard_swish, stride (MobileNetV3 large, scaled x0.5)
    config = [(3, 16, 16, False, False, 1), (3, 64, 24, False, False, 2), (3, 72, 24, False, False, 1),
              (5, 72, 40, True, False, 2), (5, 120, 40, True, False, 1), (3, 240, 80, False, True, 2),
              (3, 184, 80, False, True, 1), (3, 480, 112, True, True, 1), (5, 672, 160, True, True, 2)]
    cin = 8
    x = _paddle_hardswish(b, conv_bn(b, x, 3, cin, 3, stride=2))
    features = []
    for index, (k, expansion, out, se, hswish, stride) in enumerate(config):
        if stride == 2 and index > 1:
            features.append((x, cin))
        exp, cout = divisible(expansion / 2), divisible(out / 2)
        act = (lambda v: _paddle_hardswish(b, v)) if hswish else (lambda v: b.node("Relu", [v]))
        y = act(conv_bn(b, x, cin, exp, 1))
        y = act(conv_bn(b, y, exp, exp, k, stride, groups=exp))
        if se:
            y = _paddle_se(b, y, exp, lambda v, i=index: _paddle_hardsigmoid(b, v, written_out=i % 2 == 1))
        y = conv_bn(b, y, exp, cout, 1)
        x = b.node("Add", [x, y]) if stride == 1 and cin == cout else y
        cin = cout
    features.append((x, cin))
    return b.model([_db_head(b, _db_fpn(b, features, 96), 96)])


def _nearest(b: OnnxBuilder, x: str, factor: int) -> str:
    """Paddle's nearest upsampling: Resize with an empty roi and Constant scales."""
    return b.node("Resize", [x, b.constant(np.zeros(0)), b.constant([1.0, 1.0, factor, factor])],
                  mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")


def _db_fpn(b: OnnxBuilder, features: list[tuple[str, int]], width: int) -> str:
    """DB's FPN neck over strides 4, 8, 16, 32: the fused 1/4-resolution map."""
    laterals = [b.conv(f, c, width, 1, bias=False) for f, c in features]
    merged = [laterals[-1]]
    for lateral in reversed(laterals[:-1]):
        merged.insert(0, b.node("Add", [lateral, _nearest(b, merged[0], 2)]))
    outs = [b.conv(m, width, width // 4, 3, bias=False) for m in merged]
    scaled = [outs[0]] + [_nearest(b, o, 2 ** i) for i, o in enumerate(outs[1:], 1)]
    return b.node("Concat", list(reversed(scaled)), axis=1)


def _db_head(b: OnnxBuilder, x: str, channels: int) -> str:
    """Binarization head: probability map at the input's resolution."""
    quarter = channels // 4
    y = b.node("Relu", [conv_bn(b, x, channels, quarter, 3)])
    y = b.node("Relu", [b.batchnorm(b.conv_transpose(y, quarter, quarter, 2, 2), quarter)])
    return b.node("Sigmoid", [b.conv_transpose(y, quarter, 1, 2, 2)], outputs=["sigmoid_0.tmp_0"])


def ppLCNet(image: int = 64, scale: float = 0.25, classes: int = 1000, static: bool = True,
            seed: int = 0) -> onnx.ModelProto:
    """A PP-LCNet classifier as Paddle2ONNX exports it at opset 14 (HardSwish
    an ONNX op): depthwise-separable blocks with HardSwish everywhere,
    squeeze-and-excitation (HardSigmoid slope 1/6) in the last stage,
    GlobalAveragePool, a 1x1 conv head, Flatten, MatMul + Add and Softmax;
    the free batch dim is ``dim_value -1``."""
    b = OnnxBuilder("ppLCNet", seed, opset=14, **PADDLE)
    x = b.input("x", [1 if static else -1, 3, image, image])
    # kernel, input, output, stride, SE (PP-LCNet's NET_CONFIG, blocks2..blocks6)
    config = [(3, 16, 32, 1, False), (3, 32, 64, 2, False), (3, 64, 64, 1, False), (3, 64, 128, 2, False),
              (3, 128, 128, 1, False), (3, 128, 256, 2, False), (5, 256, 256, 1, False), (5, 256, 256, 1, False),
              (5, 256, 512, 2, True), (5, 512, 512, 1, True)]
    cin = divisible(16 * scale)
    x = b.node("HardSwish", [conv_bn(b, x, 3, cin, 3, stride=2)])
    for k, _, out, stride, se in config:
        cout = divisible(out * scale)
        y = b.node("HardSwish", [conv_bn(b, x, cin, cin, k, stride, groups=cin)])
        if se:
            y = _paddle_se(b, y, cin, lambda v: b.node("HardSigmoid", [v], alpha=1 / 6, beta=0.5))
        x = b.node("HardSwish", [conv_bn(b, y, cin, cout, 1)])
        cin = cout
    x = b.node("GlobalAveragePool", [x])
    x = b.node("HardSwish", [b.conv(x, cin, 1280, 1, bias=False)])
    x = b.node("Flatten", [x], axis=1)
    logits = b.matmul_weight(x, 1280, classes)
    return b.model([b.node("Softmax", [logits], axis=-1, outputs=["softmax_0.tmp_0"])])


# ---------------------------------------------------------------- torch.onnx: torchvision-style

def _channel_shuffle(b: OnnxBuilder, x: str, channels: int, size: int, static: bool) -> str:
    """view(b, 2, c/2, h, w) -> transpose(1, 2) -> view(b, c, h, w): a 5-D Reshape/Transpose/Reshape."""
    y = b.node("Reshape", [x, batch_shape(b, x, [2, channels // 2, size, size], static)])
    y = b.node("Transpose", [y], perm=[0, 2, 1, 3, 4])
    return b.node("Reshape", [y, batch_shape(b, y, [channels, size, size], static)])


def _shuffle_unit(b: OnnxBuilder, x: str, cin: int, cout: int, stride: int, size: int, static: bool) -> str:
    """ShuffleNetV2's InvertedResidual: split (stride 1) or two branches (stride 2), Concat, shuffle."""
    half = cout // 2
    if stride == 1:
        left, right = b.node("Split", [x, b.constant([half, half], np.int64)], num_outputs=2, axis=1)
        branch_in = half
    else:
        with b.scope("branch1"):
            left = conv_bn(b, x, cin, cin, 3, stride, groups=cin)
            left = b.node("Relu", [conv_bn(b, left, cin, half, 1)])
        right, branch_in = x, cin
    with b.scope("branch2"):
        y = b.node("Relu", [conv_bn(b, right, branch_in, half, 1)])
        y = conv_bn(b, y, half, half, 3, stride, groups=half)
        y = b.node("Relu", [conv_bn(b, y, half, half, 1)])
    return _channel_shuffle(b, b.node("Concat", [left, y], axis=1), cout, size // stride, static)


def shufflenet_v2(image: int = 64, classes: int = 1000, repeats=(4, 8, 4), static: bool = True,
                  seed: int = 0) -> onnx.ModelProto:
    """A ShuffleNetV2 x0.5 as torch.onnx exports torchvision's at opset 13:
    channel split by Split (its sizes a Constant input), depthwise 3x3 convs,
    channel shuffle as Reshape -> Transpose -> Reshape through a 5-D tensor
    (Constant shapes, or Shape -> Gather -> Concat with a free batch), Concat,
    and the head's mean over H and W as ReduceMean. The free batch dim is
    named ``batch_size``."""
    b = OnnxBuilder("main_graph", seed, opset=13, **TORCH)
    x = b.input("input", [1 if static else "batch_size", 3, image, image])
    widths = [24, 48, 96, 192, 1024]
    with b.scope("conv1"):
        x = b.node("Relu", [conv_bn(b, x, 3, widths[0], 3, stride=2)])
    x = b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    size, cin = image // 4, widths[0]
    for stage, (count, cout) in enumerate(zip(repeats, widths[1:4]), 2):
        for i in range(count):
            with b.scope(f"stage{stage}/stage{stage}.{i}"):
                stride = 2 if i == 0 else 1
                x = _shuffle_unit(b, x, cin, cout, stride, size, static)
            size, cin = size // stride, cout
    with b.scope("conv5"):
        x = b.node("Relu", [conv_bn(b, x, cin, widths[4], 1)])
    x = b.node("ReduceMean", [x], axes=[2, 3], keepdims=0)
    with b.scope("fc"):
        return b.model([b.linear(x, widths[4], classes, outputs=["output"])])


def _mobilenet_v3_block(b: OnnxBuilder, x: str, cin: int, k: int, expanded: int, cout: int, se: bool,
                        hswish: bool, stride: int) -> str:
    """torchvision's InvertedResidual: 1x1 expansion (when it widens), kxk
    depthwise, SE with HardSigmoid, 1x1 projection, residual Add."""
    def act(v: str) -> str:
        return b.node("HardSwish" if hswish else "Relu", [v])

    y, index = x, 0
    if expanded != cin:
        with b.scope(f"block/{index}"):
            y = act(conv_bn(b, y, cin, expanded, 1))
        index += 1
    with b.scope(f"block/{index}"):
        y = act(conv_bn(b, y, expanded, expanded, k, stride, groups=expanded))
    if se:
        index += 1
        with b.scope(f"block/{index}"):
            squeezed = divisible(expanded // 4)
            s = b.node("Relu", [b.conv(b.node("GlobalAveragePool", [y]), expanded, squeezed, 1)])
            s = b.node("HardSigmoid", [b.conv(s, squeezed, expanded, 1, gain=1.0)], alpha=1 / 6, beta=0.5)
            y = b.node("Mul", [s, y])
    with b.scope(f"block/{index + 1}"):
        y = conv_bn(b, y, expanded, cout, 1)
    return b.node("Add", [y, x]) if stride == 1 and cin == cout else y


def mobilenet_v3(image: int = 64, classes: int = 1000, static: bool = True, seed: int = 0) -> onnx.ModelProto:
    """A MobileNetV3-Small as torch.onnx exports torchvision's at opset 17
    (HardSwish and HardSigmoid as ONNX ops): 1x1 expansion, depthwise 3x3
    and 5x5 convs, squeeze-and-excitation (GlobalAveragePool, 1x1 convs,
    Relu, HardSigmoid, Mul), residual Adds, a Gemm classifier with HardSwish
    between its layers. The free batch dim is named ``batch_size``."""
    b = OnnxBuilder("main_graph", seed, opset=17, **TORCH)
    x = b.input("input", [1 if static else "batch_size", 3, image, image])
    # input, kernel, expanded, output, SE, hard_swish, stride (mobilenet_v3_small)
    config = [(16, 3, 16, 16, True, False, 2), (16, 3, 72, 24, False, False, 2), (24, 3, 88, 24, False, False, 1),
              (24, 5, 96, 40, True, True, 2), (40, 5, 240, 40, True, True, 1), (40, 5, 240, 40, True, True, 1),
              (40, 5, 120, 48, True, True, 1), (48, 5, 144, 48, True, True, 1), (48, 5, 288, 96, True, True, 2),
              (96, 5, 576, 96, True, True, 1), (96, 5, 576, 96, True, True, 1)]
    with b.scope("features/0"):
        x = b.node("HardSwish", [conv_bn(b, x, 3, 16, 3, stride=2)])
    for index, settings in enumerate(config, 1):
        with b.scope(f"features/{index}"):
            x = _mobilenet_v3_block(b, x, *settings)
    with b.scope(f"features/{len(config) + 1}"):
        x = b.node("HardSwish", [conv_bn(b, x, 96, 576, 1)])
    x = b.node("Flatten", [b.node("GlobalAveragePool", [x])], axis=1)
    with b.scope("classifier"):
        x = b.node("HardSwish", [b.linear(x, 576, 1024)])
        return b.model([b.linear(x, 1024, classes, outputs=["output"])])


# ---------------------------------------------------------------- torch.onnx 1.x: CenterNet, MTCNN

TORCH_LEGACY = {"names": "{op}_{n}", "producer": "pytorch"}
"""torch.onnx before scoped names (1.x): nodes are ``Conv_12``."""


def _bilinear(channels: int, k: int) -> np.ndarray:
    """CenterNet's fill_up_weights: a bilinear upsampling kernel per channel, [channels, 1, k, k]."""
    f = int(np.ceil(k / 2))
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    taps = 1 - np.abs(np.arange(k) / f - c)
    return np.broadcast_to(np.outer(taps, taps), (channels, 1, k, k)).astype(np.float32)


def _basic_block(b: OnnxBuilder, x: str, cin: int, cout: int, stride: int) -> str:
    y = b.node("Relu", [conv_bn(b, x, cin, cout, 3, stride)])
    y = b.batchnorm(b.conv(y, cout, cout, 3, bias=False), cout, scale=0.2)
    if stride != 1 or cin != cout:
        x = conv_bn(b, x, cin, cout, 1, stride)
    return b.node("Relu", [b.node("Add", [y, x])])


def centernet(image: int = 64, classes: int = 80, static: bool = True, seed: int = 0) -> onnx.ModelProto:
    """A CenterNet (objects as points) detector as torch.onnx 1.x exports it
    at opset 11: a ResNet-style backbone, three upsampling stages (3x3 conv
    standing in for DCN, BN, Relu, ConvTranspose kernel 4 stride 2 pad 1,
    BN, Relu; the last ConvTranspose depthwise with bilinear weights, as
    DLA's IDAUp), and three heads at 1/4 resolution: ``hm`` (Sigmoid),
    ``wh`` and ``reg``. The free batch dim is named ``batch``."""
    b = OnnxBuilder("torch-jit-export", seed, opset=11, **TORCH_LEGACY)
    x = b.input("input", [1 if static else "batch", 3, image, image])
    x = b.node("Relu", [conv_bn(b, x, 3, 16, 7, stride=2)])
    x = b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 16
    for cout, stride in ((16, 1), (32, 2), (64, 2), (128, 2)):
        x, cin = _basic_block(b, x, cin, cout, stride), cout
    for planes, depthwise in ((64, False), (64, False), (64, True)):
        x = b.node("Relu", [conv_bn(b, x, cin, planes, 3)])
        weights = _bilinear(planes, 4) if depthwise else None
        up = b.conv_transpose(x, planes, planes, 4, 2, pad=1, groups=planes if depthwise else 1, bias=False,
                              weights=weights)
        x, cin = b.node("Relu", [b.batchnorm(up, planes)]), planes
    heads = []
    for name, outputs in (("hm", classes), ("wh", 2), ("reg", 2)):
        y = b.node("Relu", [b.conv(x, cin, 64, 3)])
        y = b.conv(y, 64, outputs, 1, gain=1.0)
        heads.append(b.node("Sigmoid", [y], outputs=[name]) if name == "hm" else
                     b.node("Identity", [y], outputs=[name]))
    return b.model(heads)


def _softmax_dim1(b: OnnxBuilder, x: str, output: str) -> str:
    """softmax(dim=1) of an N,C,H,W tensor below opset 13: torch.onnx moves
    the axis last (Transpose), takes Softmax over it and moves it back."""
    y = b.node("Softmax", [b.node("Transpose", [x], perm=[0, 3, 2, 1])], axis=3)
    return b.node("Transpose", [y], perm=[0, 3, 2, 1], outputs=[output])


def _ceil_pool(b: OnnxBuilder, x: str, k: int) -> str:
    return b.node("MaxPool", [x], kernel_shape=[k, k], strides=[2, 2], ceil_mode=1)


def mtcnn_pnet(image: int = 96, static: bool = True, seed: int = 0) -> onnx.ModelProto:
    """MTCNN's P-Net as torch.onnx 1.x exports facenet-pytorch's at opset 11:
    unpadded 3x3 convs with PRelu (per-channel slopes shaped [C, 1, 1]),
    MaxPool 2x2 with ceil_mode, 1x1 heads: face probability by softmax over
    channels (Transpose, Softmax, Transpose) and box regression. Fully
    convolutional, so it runs on a pyramid of whole frames (here one 96x96
    level; at its 12x12 training size an accelerator would not pay for its
    transfers); the free batch dim is named ``batch``."""
    b = OnnxBuilder("torch-jit-export", seed, opset=11, **TORCH_LEGACY)
    x = b.input("input", [1 if static else "batch", 3, image, image])
    x = _ceil_pool(b, b.prelu(b.conv(x, 3, 10, 3, pad=0), 10), 2)
    x = b.prelu(b.conv(x, 10, 16, 3, pad=0), 16)
    x = b.prelu(b.conv(x, 16, 32, 3, pad=0), 32)
    box = b.node("Identity", [b.conv(x, 32, 4, 1, gain=1.0)], outputs=["box"])
    return b.model([box, _softmax_dim1(b, b.conv(x, 32, 2, 1, gain=1.0), "prob")])


def mtcnn_rnet(static: bool = True, seed: int = 0) -> onnx.ModelProto:
    """MTCNN's R-Net (24x24 crops) as torch.onnx 1.x exports facenet-pytorch's
    at opset 11: convs with PRelu ([C, 1, 1] slopes), MaxPool 3x3 stride 2
    with ceil_mode, then ``permute(0, 3, 2, 1)`` as a Transpose before
    Flatten and Gemm, PRelu on the dense layer ([128] slopes), a softmax
    face score and box regression. The free batch dim is named ``batch``."""
    b = OnnxBuilder("torch-jit-export", seed, opset=11, **TORCH_LEGACY)
    x = b.input("input", [1 if static else "batch", 3, 24, 24])
    x = _ceil_pool(b, b.prelu(b.conv(x, 3, 28, 3, pad=0), 28), 3)
    x = _ceil_pool(b, b.prelu(b.conv(x, 28, 48, 3, pad=0), 48), 3)
    x = b.prelu(b.conv(x, 48, 64, 2, pad=0), 64)
    x = b.node("Flatten", [b.node("Transpose", [x], perm=[0, 3, 2, 1])], axis=1)
    x = b.prelu(b.linear(x, 576, 128), 128, slope_shape=(128,))
    prob = b.node("Softmax", [b.linear(x, 128, 2)], axis=1, outputs=["prob"])
    return b.model([b.linear(x, 128, 4, outputs=["box"]), prob])


FAMILY_MODELS = {
    "ppocr_det": ppocr_det,
    "ppLCNet": ppLCNet,
    "yolov8": yolov8,
    "shufflenet_v2": shufflenet_v2,
    "mobilenet_v3": mobilenet_v3,
    "centernet": centernet,
    "mtcnn_pnet": mtcnn_pnet,
    "mtcnn_rnet": mtcnn_rnet,
    "keras_audio": keras_audio,
    "nhwc_resnet": nhwc_resnet,
    "yolo11_seg": yolo11_seg,
    "channels_last_layernorm": channels_last_layernorm,
}
"""Each family's builder by name; called with no arguments, a static model."""
