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

PADDLE = {"names": "p2o.{op}.{n}", "outputs": "{node}.tmp_{i}", "producer": "PaddlePaddle"}
TORCH = {"names": "{scope}/{op}_{n}", "outputs": "{node}_output_{i}", "producer": "pytorch"}
TF2ONNX = {"names": "StatefulPartitionedCall/model{scope}/{op}_{n}", "producer": "tf2onnx"}


def _divisible(channels: float, divisor: int = 8) -> int:
    """Channels rounded to a multiple of ``divisor`` as MobileNet code does
    (never more than 10 % below the request)."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


def _batch_shape(b: OnnxBuilder, x: str, rest: list[int], static: bool) -> str:
    """A Reshape target ``[batch, *rest]``: a Constant for a static export;
    torch.onnx's Shape -> Gather -> Unsqueeze -> Concat when the batch is free."""
    if static:
        return b.constant([1, *rest], np.int64)
    batch = b.node("Gather", [b.node("Shape", [x]), b.constant(0, np.int64)], axis=0)
    batch = b.node("Unsqueeze", [batch, b.constant([0], np.int64)])
    return b.node("Concat", [batch, b.constant(rest, np.int64)], axis=0)


def _conv_bn(b: OnnxBuilder, x: str, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
             pad: int | None = None) -> str:
    """Conv without bias followed by BatchNorm, as every trained CNN here has it."""
    return b.batchnorm(b.conv(x, cin, cout, k, stride, groups, bias=False, pad=pad), cout)


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
    x = _paddle_hardswish(b, _conv_bn(b, x, 3, cin, 3, stride=2))
    features = []
    for index, (k, expansion, out, se, hswish, stride) in enumerate(config):
        if stride == 2 and index > 1:
            features.append((x, cin))
        exp, cout = _divisible(expansion / 2), _divisible(out / 2)
        act = (lambda v: _paddle_hardswish(b, v)) if hswish else (lambda v: b.node("Relu", [v]))
        y = act(_conv_bn(b, x, cin, exp, 1))
        y = act(_conv_bn(b, y, exp, exp, k, stride, groups=exp))
        if se:
            y = _paddle_se(b, y, exp, lambda v, i=index: _paddle_hardsigmoid(b, v, written_out=i % 2 == 1))
        y = _conv_bn(b, y, exp, cout, 1)
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
    y = b.node("Relu", [_conv_bn(b, x, channels, quarter, 3)])
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
    cin = _divisible(16 * scale)
    x = b.node("HardSwish", [_conv_bn(b, x, 3, cin, 3, stride=2)])
    for k, _, out, stride, se in config:
        cout = _divisible(out * scale)
        y = b.node("HardSwish", [_conv_bn(b, x, cin, cin, k, stride, groups=cin)])
        if se:
            y = _paddle_se(b, y, cin, lambda v: b.node("HardSigmoid", [v], alpha=1 / 6, beta=0.5))
        x = b.node("HardSwish", [_conv_bn(b, y, cin, cout, 1)])
        cin = cout
    x = b.node("GlobalAveragePool", [x])
    x = b.node("HardSwish", [b.conv(x, cin, 1280, 1, bias=False)])
    x = b.node("Flatten", [x], axis=1)
    logits = b.matmul_weight(x, 1280, classes)
    return b.model([b.node("Softmax", [logits], axis=-1, outputs=["softmax_0.tmp_0"])])


# ---------------------------------------------------------------- torch.onnx: Ultralytics YOLOv8

def _silu_conv(b: OnnxBuilder, x: str, cin: int, cout: int, k: int, stride: int = 1) -> str:
    """Ultralytics Conv after fuse(): Conv with bias (BN folded), SiLU as Mul(x, Sigmoid(x))."""
    with b.scope("conv"):
        y = b.conv(x, cin, cout, k, stride)
    with b.scope("act"):
        return b.node("Mul", [y, b.node("Sigmoid", [y])])


def _c2f(b: OnnxBuilder, x: str, cin: int, cout: int, count: int, shortcut: bool) -> str:
    """C2f: 1x1 conv, Split into two halves, bottlenecks on the last piece,
    Concat of every piece, 1x1 conv."""
    hidden = cout // 2
    with b.scope("cv1"):
        y = _silu_conv(b, x, cin, 2 * hidden, 1)
    pieces = list(b.node("Split", [y, b.constant([hidden, hidden], np.int64)], num_outputs=2, axis=1))
    for i in range(count):
        with b.scope(f"m.{i}"):
            with b.scope("cv1"):
                z = _silu_conv(b, pieces[-1], hidden, hidden, 3)
            with b.scope("cv2"):
                z = _silu_conv(b, z, hidden, hidden, 3)
            pieces.append(b.node("Add", [pieces[-1], z]) if shortcut else z)
    with b.scope("cv2"):
        return _silu_conv(b, b.node("Concat", pieces, axis=1), (2 + count) * hidden, cout, 1)


def _sppf(b: OnnxBuilder, x: str, channels: int) -> str:
    """SPPF: 1x1 conv, three chained 5x5 stride-1 MaxPools, Concat, 1x1 conv."""
    hidden = channels // 2
    with b.scope("cv1"):
        pieces = [_silu_conv(b, x, channels, hidden, 1)]
    with b.scope("m"):
        for _ in range(3):
            pieces.append(b.node("MaxPool", [pieces[-1]], kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2]))
    with b.scope("cv2"):
        return _silu_conv(b, b.node("Concat", pieces, axis=1), 4 * hidden, channels, 1)


def _upsample(b: OnnxBuilder, x: str) -> str:
    """nn.Upsample(scale_factor=2, mode='nearest') at opset 17: Resize with no roi, Constant scales."""
    return b.node("Resize", [x, "", b.constant([1.0, 1.0, 2.0, 2.0])], mode="nearest",
                  coordinate_transformation_mode="asymmetric", nearest_mode="floor")


def yolov8(image: int = 64, classes: int = 80, static: bool = True, seed: int = 0) -> onnx.ModelProto:
    """A YOLOv8n-style detector as Ultralytics exports it (torch.onnx, opset
    17, model fused): Conv+BN folded into Conv with bias, SiLU written as
    Mul(x, Sigmoid(x)), C2f blocks (Split into 2 along channels, Concat of
    the branches), SPPF (three MaxPools + Concat), a neck of Resize + Concat,
    and the detect head with DFL (Reshape -> Transpose -> Softmax -> 1x1 Conv
    with arange weights -> Reshape), Sigmoid class scores and box decoding
    (Split, Sub/Add/Div/Mul with anchor and stride constants). Node names
    follow the module path (``/model.22/dfl/conv/Conv``); the free batch dim
    is named ``batch``. Output ``output0``: [batch, 4 + classes, anchors]."""
    b = OnnxBuilder("main_graph", seed, opset=17, **TORCH)
    x = b.input("images", [1 if static else "batch", 3, image, image])
    layers: list[str] = []

    def layer(index: int, build) -> str:
        with b.scope(f"model.{index}"):
            layers.append(build())
        return layers[-1]

    layer(0, lambda: _silu_conv(b, x, 3, 16, 3, 2))
    layer(1, lambda: _silu_conv(b, layers[0], 16, 32, 3, 2))
    layer(2, lambda: _c2f(b, layers[1], 32, 32, 1, True))
    layer(3, lambda: _silu_conv(b, layers[2], 32, 64, 3, 2))
    layer(4, lambda: _c2f(b, layers[3], 64, 64, 1, True))
    layer(5, lambda: _silu_conv(b, layers[4], 64, 128, 3, 2))
    layer(6, lambda: _c2f(b, layers[5], 128, 128, 1, True))
    layer(7, lambda: _silu_conv(b, layers[6], 128, 256, 3, 2))
    layer(8, lambda: _c2f(b, layers[7], 256, 256, 1, True))
    layer(9, lambda: _sppf(b, layers[8], 256))
    layer(10, lambda: _upsample(b, layers[9]))
    layer(11, lambda: b.node("Concat", [layers[10], layers[6]], axis=1))
    layer(12, lambda: _c2f(b, layers[11], 384, 128, 1, False))
    layer(13, lambda: _upsample(b, layers[12]))
    layer(14, lambda: b.node("Concat", [layers[13], layers[4]], axis=1))
    layer(15, lambda: _c2f(b, layers[14], 192, 64, 1, False))
    layer(16, lambda: _silu_conv(b, layers[15], 64, 64, 3, 2))
    layer(17, lambda: b.node("Concat", [layers[16], layers[12]], axis=1))
    layer(18, lambda: _c2f(b, layers[17], 192, 128, 1, False))
    layer(19, lambda: _silu_conv(b, layers[18], 128, 128, 3, 2))
    layer(20, lambda: b.node("Concat", [layers[19], layers[9]], axis=1))
    layer(21, lambda: _c2f(b, layers[20], 384, 256, 1, False))
    with b.scope("model.22"):
        out = _detect(b, [(layers[15], 64, 8), (layers[18], 128, 16), (layers[21], 256, 32)], image, classes,
                      static)
    return b.model([out])


def _detect(b: OnnxBuilder, levels: list[tuple[str, int, int]], image: int, classes: int, static: bool,
            output: str | None = "output0", cls_branch=None) -> str:
    """YOLOv8's Detect head in export mode (DFL with reg_max 16, anchors and strides as constants);
    ``cls_branch(b, x, channels, width)`` builds the class branch's first two layers (YOLOv8's two
    3x3 convs by default), ``output`` names the result (None: a fresh name)."""
    reg_max, box_width = 16, max(16, levels[0][1] // 4, 64)
    cls_width = max(levels[0][1], min(classes, 100))
    flat = []
    for i, (x, channels, _) in enumerate(levels):
        branches = []
        for head, width, outputs in (("cv2", box_width, 4 * reg_max), ("cv3", cls_width, classes)):
            with b.scope(f"{head}.{i}"):
                if head == "cv3" and cls_branch is not None:
                    y = cls_branch(b, x, channels, width)
                else:
                    with b.scope("0"):
                        y = _silu_conv(b, x, channels, width, 3)
                    with b.scope("1"):
                        y = _silu_conv(b, y, width, width, 3)
                with b.scope("2"):
                    branches.append(b.conv(y, width, outputs, 1, gain=1.0))
        level = b.node("Concat", branches, axis=1)
        flat.append(b.node("Reshape", [level, _batch_shape(b, level, [4 * reg_max + classes, -1], static)]))
    x = b.node("Concat", flat, axis=2)
    box, cls = b.node("Split", [x, b.constant([4 * reg_max, classes], np.int64)], num_outputs=2, axis=1)
    anchors, strides = _anchors([(image // s, s) for _, _, s in levels])
    with b.scope("dfl"):
        distances = _dfl(b, box, reg_max, anchors.shape[1], static)
    lt, rb = b.node("Split", [distances, b.constant([2, 2], np.int64)], num_outputs=2, axis=1)
    anchor_points = b.const_f32(anchors[None], "anchors")
    top_left = b.node("Sub", [anchor_points, lt])
    bottom_right = b.node("Add", [anchor_points, rb])
    centre = b.node("Div", [b.node("Add", [top_left, bottom_right]), b.constant(2.0)])
    size = b.node("Sub", [bottom_right, top_left])
    boxes = b.node("Mul", [b.node("Concat", [centre, size], axis=1), b.const_f32(strides[None], "strides")])
    return b.node("Concat", [boxes, b.node("Sigmoid", [cls])], axis=1, outputs=[output] if output else None)


def _anchors(grids: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Anchor centres [2, A] (in grid cells, +0.5) and strides [1, A] of each level's cells."""
    points, strides = [], []
    for size, stride in grids:
        ys, xs = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="ij")
        points.append(np.stack([xs.ravel(), ys.ravel()]))
        strides.append(np.full((1, size * size), float(stride)))
    return np.concatenate(points, 1).astype(np.float32), np.concatenate(strides, 1).astype(np.float32)


def _dfl(b: OnnxBuilder, box: str, reg_max: int, anchors: int, static: bool) -> str:
    """Distribution focal loss decoding: the expected bin of each side's softmax."""
    x = b.node("Reshape", [box, _batch_shape(b, box, [4, reg_max, anchors], static)])
    x = b.node("Softmax", [b.node("Transpose", [x], perm=[0, 2, 1, 3])], axis=1)
    with b.scope("conv"):
        weights = b.weight(np.arange(reg_max, dtype=np.float32).reshape(1, reg_max, 1, 1), "dfl_w")
        x = b.node("Conv", [x, weights], kernel_shape=[1, 1], strides=[1, 1], pads=[0, 0, 0, 0], group=1)
    return b.node("Reshape", [x, _batch_shape(b, x, [4, anchors], static)])


# ---------------------------------------------------------------- torch.onnx: Ultralytics YOLO11-seg

def _bottleneck(b: OnnxBuilder, x: str, channels: int, shortcut: bool) -> str:
    """Ultralytics Bottleneck (e=1.0): two 3x3 convs, the input added back when ``shortcut``."""
    with b.scope("cv1"):
        y = _silu_conv(b, x, channels, channels, 3)
    with b.scope("cv2"):
        y = _silu_conv(b, y, channels, channels, 3)
    return b.node("Add", [x, y]) if shortcut else y


def _c3k(b: OnnxBuilder, x: str, cin: int, cout: int, shortcut: bool) -> str:
    """C3k: two 1x1 branches, two bottlenecks on the first, Concat, 1x1 conv."""
    hidden = cout // 2
    with b.scope("cv1"):
        y = _silu_conv(b, x, cin, hidden, 1)
    with b.scope("cv2"):
        z = _silu_conv(b, x, cin, hidden, 1)
    for i in range(2):
        with b.scope(f"m.{i}"):
            y = _bottleneck(b, y, hidden, shortcut)
    with b.scope("cv3"):
        return _silu_conv(b, b.node("Concat", [y, z], axis=1), 2 * hidden, cout, 1)


def _c3k2(b: OnnxBuilder, x: str, cin: int, cout: int, c3k: bool, expansion: float = 0.5) -> str:
    """C3k2 (YOLO11's C2f): 1x1 conv, Split in two, one Bottleneck (or C3k)
    on the last piece, Concat of the three, 1x1 conv."""
    hidden = int(cout * expansion)
    with b.scope("cv1"):
        y = _silu_conv(b, x, cin, 2 * hidden, 1)
    pieces = list(b.node("Split", [y, b.constant([hidden, hidden], np.int64)], num_outputs=2, axis=1))
    with b.scope("m.0"):
        pieces.append(_c3k(b, pieces[-1], hidden, hidden, True) if c3k else _bottleneck(b, pieces[-1], hidden, True))
    with b.scope("cv2"):
        return _silu_conv(b, b.node("Concat", pieces, axis=1), 3 * hidden, cout, 1)


def _attention(b: OnnxBuilder, x: str, channels: int, size: int, static: bool) -> str:
    """Ultralytics Attention (attn_ratio 0.5, 64 channels a head) as
    torch.onnx writes it: qkv 1x1 conv, view [B, heads, 2 key_dim +
    head_dim, N], Split into q, k, v, MatMul(q^T, k) * key_dim^-0.5,
    Softmax over the last axis, MatMul(v, attn^T), view back, plus a
    depthwise 3x3 positional conv of v, and a 1x1 projection."""
    heads = max(1, channels // 64)
    head_dim = channels // heads
    key_dim = head_dim // 2
    positions = size * size
    with b.scope("qkv"):
        with b.scope("conv"):
            qkv = b.conv(x, channels, channels + 2 * key_dim * heads, 1, gain=1.0)
    qkv = b.node("Reshape", [qkv, _batch_shape(b, qkv, [heads, 2 * key_dim + head_dim, positions], static)])
    q, k, v = b.node("Split", [qkv, b.constant([key_dim, key_dim, head_dim], np.int64)], num_outputs=3, axis=2)
    attn = b.node("MatMul", [b.node("Transpose", [q], perm=[0, 1, 3, 2]), k])
    attn = b.node("Softmax", [b.node("Mul", [attn, b.constant(key_dim ** -0.5)])], axis=-1)
    y = b.node("MatMul", [v, b.node("Transpose", [attn], perm=[0, 1, 3, 2])])
    y = b.node("Reshape", [y, _batch_shape(b, y, [channels, size, size], static)])
    with b.scope("pe"):
        with b.scope("conv"):
            pe = b.conv(b.node("Reshape", [v, _batch_shape(b, v, [channels, size, size], static)]),
                        channels, channels, 3, groups=channels, gain=1.0)
    with b.scope("proj"):
        with b.scope("conv"):
            return b.conv(b.node("Add", [y, pe]), channels, channels, 1, gain=1.0)


def _c2psa(b: OnnxBuilder, x: str, channels: int, size: int, static: bool) -> str:
    """C2PSA: 1x1 conv, Split in two, a PSABlock (attention and a two-conv
    feed-forward, each added back) on the second half, Concat, 1x1 conv."""
    hidden = channels // 2
    with b.scope("cv1"):
        y = _silu_conv(b, x, channels, 2 * hidden, 1)
    a, z = b.node("Split", [y, b.constant([hidden, hidden], np.int64)], num_outputs=2, axis=1)
    with b.scope("m/m.0"):
        with b.scope("attn"):
            z = b.node("Add", [z, _attention(b, z, hidden, size, static)])
        with b.scope("ffn.0"):
            f = _silu_conv(b, z, hidden, 2 * hidden, 1)
        with b.scope("ffn.1/conv"):
            z = b.node("Add", [z, b.conv(f, 2 * hidden, hidden, 1, gain=1.0)])
    with b.scope("cv2"):
        return _silu_conv(b, b.node("Concat", [a, z], axis=1), 2 * hidden, channels, 1)


def _proto(b: OnnxBuilder, x: str, channels: int, width: int, masks: int) -> str:
    """Segment's Proto: 3x3 conv, ConvTranspose 2x2 stride 2, 3x3 conv, 1x1 conv to the mask prototypes."""
    with b.scope("cv1"):
        y = _silu_conv(b, x, channels, width, 3)
    with b.scope("upsample"):
        y = b.conv_transpose(y, width, width, 2, 2)
    with b.scope("cv2"):
        y = _silu_conv(b, y, width, width, 3)
    with b.scope("cv3"):
        return _silu_conv(b, y, width, masks, 1)


def yolo11_seg(image: int = 64, classes: int = 80, static: bool = True, seed: int = 0) -> onnx.ModelProto:
    """A YOLO11n-seg-style segmenter as Ultralytics exports it (torch.onnx,
    opset 17, model fused, the n widths): Conv+SiLU, C3k2 blocks (C3k in
    the deep ones), SPPF, C2PSA with its multi-head attention (MatMul of
    two activations, Softmax over the last axis), the PAN neck, and the
    Segment head: YOLO11's Detect (depthwise-separable class branch, DFL,
    anchors and a ``[1, anchors]`` stride constant) with 32 mask
    coefficients per anchor, and the mask prototypes. Outputs ``output0``
    [batch, 4 + classes + 32, anchors] and ``output1`` [batch, 32, image/4, image/4]."""
    b = OnnxBuilder("main_graph", seed, opset=17, **TORCH)
    x = b.input("images", [1 if static else "batch", 3, image, image])
    layers: list[str] = []

    def layer(index: int, build) -> str:
        with b.scope(f"model.{index}"):
            layers.append(build())
        return layers[-1]

    layer(0, lambda: _silu_conv(b, x, 3, 16, 3, 2))
    layer(1, lambda: _silu_conv(b, layers[0], 16, 32, 3, 2))
    layer(2, lambda: _c3k2(b, layers[1], 32, 64, False, 0.25))
    layer(3, lambda: _silu_conv(b, layers[2], 64, 64, 3, 2))
    layer(4, lambda: _c3k2(b, layers[3], 64, 128, False, 0.25))
    layer(5, lambda: _silu_conv(b, layers[4], 128, 128, 3, 2))
    layer(6, lambda: _c3k2(b, layers[5], 128, 128, True))
    layer(7, lambda: _silu_conv(b, layers[6], 128, 256, 3, 2))
    layer(8, lambda: _c3k2(b, layers[7], 256, 256, True))
    layer(9, lambda: _sppf(b, layers[8], 256))
    layer(10, lambda: _c2psa(b, layers[9], 256, image // 32, static))
    layer(11, lambda: _upsample(b, layers[10]))
    layer(12, lambda: b.node("Concat", [layers[11], layers[6]], axis=1))
    layer(13, lambda: _c3k2(b, layers[12], 384, 128, False))
    layer(14, lambda: _upsample(b, layers[13]))
    layer(15, lambda: b.node("Concat", [layers[14], layers[4]], axis=1))
    layer(16, lambda: _c3k2(b, layers[15], 256, 64, False))
    layer(17, lambda: _silu_conv(b, layers[16], 64, 64, 3, 2))
    layer(18, lambda: b.node("Concat", [layers[17], layers[13]], axis=1))
    layer(19, lambda: _c3k2(b, layers[18], 192, 128, False))
    layer(20, lambda: _silu_conv(b, layers[19], 128, 128, 3, 2))
    layer(21, lambda: b.node("Concat", [layers[20], layers[10]], axis=1))
    layer(22, lambda: _c3k2(b, layers[21], 384, 256, True))
    levels = [(layers[16], 64, 8), (layers[19], 128, 16), (layers[22], 256, 32)]
    masks = 32
    with b.scope("model.23"):
        with b.scope("proto"):
            prototypes = _proto(b, layers[16], 64, 64, masks)
        coefficients = []
        for i, (feature, channels, _) in enumerate(levels):
            with b.scope(f"cv4.{i}"):
                width = max(levels[0][1] // 4, masks)
                with b.scope("0"):
                    y = _silu_conv(b, feature, channels, width, 3)
                with b.scope("1"):
                    y = _silu_conv(b, y, width, width, 3)
                with b.scope("2"):
                    y = b.conv(y, width, masks, 1, gain=1.0)
            coefficients.append(b.node("Reshape", [y, _batch_shape(b, y, [masks, -1], static)]))
        coefficients = b.node("Concat", coefficients, axis=2)
        detections = _detect(b, levels, image, classes, static, output=None, cls_branch=_yolo11_cls)
        out = b.node("Concat", [detections, coefficients], axis=1, outputs=["output0"])
    prototypes = b.node("Identity", [prototypes], outputs=["output1"])
    return b.model([out, prototypes])


def _yolo11_cls(b: OnnxBuilder, x: str, channels: int, width: int) -> str:
    """YOLO11's class branch: (depthwise 3x3 + 1x1) twice, each conv with SiLU."""
    for index, cin in (("0", channels), ("1", width)):
        with b.scope(index):
            with b.scope("0"):
                x = _silu_conv_groups(b, x, cin, cin, 3, cin)
            with b.scope("1"):
                x = _silu_conv(b, x, cin, width, 1)
    return x


def _silu_conv_groups(b: OnnxBuilder, x: str, cin: int, cout: int, k: int, groups: int) -> str:
    """Ultralytics DWConv after fuse(): a grouped Conv with bias, SiLU as Mul(x, Sigmoid(x))."""
    with b.scope("conv"):
        y = b.conv(x, cin, cout, k, groups=groups)
    with b.scope("act"):
        return b.node("Mul", [y, b.node("Sigmoid", [y])])


# ---------------------------------------------------------------- torch.onnx: torchvision-style

def _channel_shuffle(b: OnnxBuilder, x: str, channels: int, size: int, static: bool) -> str:
    """view(b, 2, c/2, h, w) -> transpose(1, 2) -> view(b, c, h, w): a 5-D Reshape/Transpose/Reshape."""
    y = b.node("Reshape", [x, _batch_shape(b, x, [2, channels // 2, size, size], static)])
    y = b.node("Transpose", [y], perm=[0, 2, 1, 3, 4])
    return b.node("Reshape", [y, _batch_shape(b, y, [channels, size, size], static)])


def _shuffle_unit(b: OnnxBuilder, x: str, cin: int, cout: int, stride: int, size: int, static: bool) -> str:
    """ShuffleNetV2's InvertedResidual: split (stride 1) or two branches (stride 2), Concat, shuffle."""
    half = cout // 2
    if stride == 1:
        left, right = b.node("Split", [x, b.constant([half, half], np.int64)], num_outputs=2, axis=1)
        branch_in = half
    else:
        with b.scope("branch1"):
            left = _conv_bn(b, x, cin, cin, 3, stride, groups=cin)
            left = b.node("Relu", [_conv_bn(b, left, cin, half, 1)])
        right, branch_in = x, cin
    with b.scope("branch2"):
        y = b.node("Relu", [_conv_bn(b, right, branch_in, half, 1)])
        y = _conv_bn(b, y, half, half, 3, stride, groups=half)
        y = b.node("Relu", [_conv_bn(b, y, half, half, 1)])
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
        x = b.node("Relu", [_conv_bn(b, x, 3, widths[0], 3, stride=2)])
    x = b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    size, cin = image // 4, widths[0]
    for stage, (count, cout) in enumerate(zip(repeats, widths[1:4]), 2):
        for i in range(count):
            with b.scope(f"stage{stage}/stage{stage}.{i}"):
                stride = 2 if i == 0 else 1
                x = _shuffle_unit(b, x, cin, cout, stride, size, static)
            size, cin = size // stride, cout
    with b.scope("conv5"):
        x = b.node("Relu", [_conv_bn(b, x, cin, widths[4], 1)])
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
            y = act(_conv_bn(b, y, cin, expanded, 1))
        index += 1
    with b.scope(f"block/{index}"):
        y = act(_conv_bn(b, y, expanded, expanded, k, stride, groups=expanded))
    if se:
        index += 1
        with b.scope(f"block/{index}"):
            squeezed = _divisible(expanded // 4)
            s = b.node("Relu", [b.conv(b.node("GlobalAveragePool", [y]), expanded, squeezed, 1)])
            s = b.node("HardSigmoid", [b.conv(s, squeezed, expanded, 1, gain=1.0)], alpha=1 / 6, beta=0.5)
            y = b.node("Mul", [s, y])
    with b.scope(f"block/{index + 1}"):
        y = _conv_bn(b, y, expanded, cout, 1)
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
        x = b.node("HardSwish", [_conv_bn(b, x, 3, 16, 3, stride=2)])
    for index, settings in enumerate(config, 1):
        with b.scope(f"features/{index}"):
            x = _mobilenet_v3_block(b, x, *settings)
    with b.scope(f"features/{len(config) + 1}"):
        x = b.node("HardSwish", [_conv_bn(b, x, 96, 576, 1)])
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
    y = b.node("Relu", [_conv_bn(b, x, cin, cout, 3, stride)])
    y = b.batchnorm(b.conv(y, cout, cout, 3, bias=False), cout, scale=0.2)
    if stride != 1 or cin != cout:
        x = _conv_bn(b, x, cin, cout, 1, stride)
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
    x = b.node("Relu", [_conv_bn(b, x, 3, 16, 7, stride=2)])
    x = b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 16
    for cout, stride in ((16, 1), (32, 2), (64, 2), (128, 2)):
        x, cin = _basic_block(b, x, cin, cout, stride), cout
    for planes, depthwise in ((64, False), (64, False), (64, True)):
        x = b.node("Relu", [_conv_bn(b, x, cin, planes, 3)])
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
