"""Family models as torch.onnx exports Ultralytics' detectors: YOLOv8 and
YOLO11-seg (the registry is compiler/zoo/families.py)."""
from __future__ import annotations

import numpy as np
import onnx

from compiler.zoo.builder import OnnxBuilder
from compiler.zoo.exporters import TORCH, batch_shape

# ---------------------------------------------------------------- torch.onnx: Ultralytics YOLOv8

class _Modules:
    """The ``model.N`` modules of an Ultralytics export, built in order,
    each in its scope; ``modules[N]`` is module N's output."""

    def __init__(self, b: OnnxBuilder):
        self.b, self.outputs = b, []

    def add(self, index: int, build) -> str:
        with self.b.scope(f"model.{index}"):
            self.outputs.append(build())
        return self.outputs[-1]

    def __getitem__(self, index: int) -> str:
        return self.outputs[index]


def _export(image: int, static: bool, seed: int) -> tuple[OnnxBuilder, str, _Modules]:
    """torch.onnx's graph of an Ultralytics model (opset 17, module-path
    names): the builder, the ``images`` input (batch ``batch`` unless
    static) and the modules to add."""
    b = OnnxBuilder("main_graph", seed, opset=17, **TORCH)
    return b, b.input("images", [1 if static else "batch", 3, image, image]), _Modules(b)


def _silu_conv(b: OnnxBuilder, x: str, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> str:
    """Ultralytics Conv (DWConv with ``groups``) after fuse(): Conv with bias
    (BN folded), SiLU as Mul(x, Sigmoid(x))."""
    with b.scope("conv"):
        y = b.conv(x, cin, cout, k, stride, groups)
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
    b, x, layers = _export(image, static, seed)
    layer = layers.add
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
        flat.append(b.node("Reshape", [level, batch_shape(b, level, [4 * reg_max + classes, -1], static)]))
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
    x = b.node("Reshape", [box, batch_shape(b, box, [4, reg_max, anchors], static)])
    x = b.node("Softmax", [b.node("Transpose", [x], perm=[0, 2, 1, 3])], axis=1)
    with b.scope("conv"):
        weights = b.weight(np.arange(reg_max, dtype=np.float32).reshape(1, reg_max, 1, 1), "dfl_w")
        x = b.node("Conv", [x, weights], kernel_shape=[1, 1], strides=[1, 1], pads=[0, 0, 0, 0], group=1)
    return b.node("Reshape", [x, batch_shape(b, x, [4, anchors], static)])


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
    qkv = b.node("Reshape", [qkv, batch_shape(b, qkv, [heads, 2 * key_dim + head_dim, positions], static)])
    q, k, v = b.node("Split", [qkv, b.constant([key_dim, key_dim, head_dim], np.int64)], num_outputs=3, axis=2)
    attn = b.node("MatMul", [b.node("Transpose", [q], perm=[0, 1, 3, 2]), k])
    attn = b.node("Softmax", [b.node("Mul", [attn, b.constant(key_dim ** -0.5)])], axis=-1)
    y = b.node("MatMul", [v, b.node("Transpose", [attn], perm=[0, 1, 3, 2])])
    y = b.node("Reshape", [y, batch_shape(b, y, [channels, size, size], static)])
    with b.scope("pe"):
        with b.scope("conv"):
            pe = b.conv(b.node("Reshape", [v, batch_shape(b, v, [channels, size, size], static)]),
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
    b, x, layers = _export(image, static, seed)
    layer = layers.add
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
            coefficients.append(b.node("Reshape", [y, batch_shape(b, y, [masks, -1], static)]))
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
                x = _silu_conv(b, x, cin, cin, 3, groups=cin)
            with b.scope("1"):
                x = _silu_conv(b, x, cin, width, 1)
    return x
