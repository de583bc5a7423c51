"""A trained YOLOv8-style detector of handwritten digits on colour
canvases, for measuring quantization where a real YOLO export meets it: DFL
box decoding, sigmoid class scores that are saturated (nearly all near 0,
the objects near 1) and boxes in input pixels, in one output ``output0``
[1, 4 + 10, 84] (boxes as centre and size, then the ten digits' scores).

Data: compiler.zoo.digit_detector's canvases at 64x64, digits of 16 to 32
pixels, each drawn in its class's ink colour on a dark background (RGB in
[0, 1], as Ultralytics feeds images).

The model: a small backbone (Conv with bias and SiLU as Ultralytics exports
them, BatchNorms folded: a 4x4 stride-4 stem, then stride-2 convolutions to
strides 8, 16 and 32) under compiler.zoo.ultralytics's Detect head as
torch.onnx exports it (per level a box branch ``cv2`` and a class branch
``cv3`` of two 3x3 convolutions and a 1x1 one; DFL with 16 bins; anchors
and strides as constants; Sigmoid scores). YOLOv8n's own deep backbone,
seeded, fades the digits out of its features; this one keeps them.

Training, deterministic for a seed, in seconds: the backbone keeps seeded
weights rescaled as if BatchNorms were folded into them (statistics of the
training canvases); each head branch is fitted layer by layer: the hidden
3x3 convolutions' first channels by least squares onto the branch's targets
(class one-hots and objectness; box sides and DFL logits), the rest seeded,
every channel normalised; the class branch's 1x1 convolution by logistic
regression onto one-hot targets at the anchors assigned to a digit and
zeros elsewhere (YOLOv8's BCE), the box branch's by least squares onto DFL
logits peaked at each side's distance in strides. An anchor is assigned to
a digit when its centre lies in the digit's box and its level's stride is
at most the digit's size.

:func:`detect` decodes as Ultralytics' predictor does: the best class of
each anchor over a score threshold, then non-maximum suppression per
class."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from compiler.agreement import Box, yolo_boxes
from compiler.zoo.digit_detector import canvases

SIDE = 64
CLASSES = 10
SIZES = (16, 24, 32)
STRIDES = (8, 16, 32)
REG_MAX = 16
SCORE = 0.25
"""Class score above which an anchor is a detection (Ultralytics' default ``conf``)."""
NMS_IOU = 0.5
INKS = np.array([[1.0, 0.2, 0.2], [0.2, 1.0, 0.2], [0.3, 0.3, 1.0], [1.0, 1.0, 0.2], [1.0, 0.2, 1.0],
                 [0.2, 1.0, 1.0], [1.0, 0.6, 0.1], [0.6, 0.3, 1.0], [0.9, 0.9, 0.9], [0.5, 1.0, 0.5]])
"""Each digit's ink colour (RGB in [0, 1])."""


def colour_canvases(count: int, seed: int) -> tuple[list[np.ndarray], list[list[Box]]]:
    """``count`` [1, 3, 64, 64] float32 canvases in [0, 1] and their boxes
    (labelled with the digit): each digit is drawn in its class's ink
    colour (:data:`INKS`, a little jittered) on a dark background of random
    colour, so that a seeded network's features carry the class."""
    grey, truths = canvases(count, seed, side=SIDE, sizes=SIZES)
    rng = np.random.default_rng(seed + 7)
    images = []
    for canvas, boxes in zip(grey, truths):
        background = rng.uniform(0.0, 0.3, 3)
        rgb = np.repeat(background[:, None, None], SIDE, 1).repeat(SIDE, 2)
        for box in boxes:
            ink = np.clip(INKS[box.label] + rng.normal(0.0, 0.05, 3), 0.0, 1.0)
            window = (slice(None), slice(box.y0, box.y1), slice(box.x0, box.x1))
            rgb[window] = background[:, None, None] + canvas[0, 0][window[1:]] * (ink - background)[:, None, None]
        images.append(rgb.astype(np.float32)[None])
    return images, truths


def _network(seed: int) -> onnx.ModelProto:
    """A small backbone (a 4x4 stride-4 stem, then three stride-2 3x3
    convolutions to strides 8, 16 and 32, Conv with bias and SiLU as
    Ultralytics exports them) under compiler.zoo.ultralytics's Detect head
    (DFL, anchors and strides as constants, Sigmoid scores)."""
    from compiler.zoo.ultralytics import _detect, _export, _silu_conv

    b, x, layers = _export(SIDE, True, seed)
    layers.add(0, lambda: _silu_conv(b, x, 3, 32, 4, 4))
    layers.add(1, lambda: _silu_conv(b, layers[0], 32, 64, 3, 2))
    layers.add(2, lambda: _silu_conv(b, layers[1], 64, 128, 3, 2))
    layers.add(3, lambda: _silu_conv(b, layers[2], 128, 128, 3, 2))
    with b.scope("model.4"):
        out = _detect(b, [(layers[1], 64, 8), (layers[2], 128, 16), (layers[3], 128, 32)], SIDE, CLASSES, True)
    return b.model([out])


def _heads(model: onnx.ModelProto) -> dict[tuple[str, int, int], onnx.NodeProto]:
    """The convolutions of each head branch: ("cv2"|"cv3", level, layer 0..2) -> node."""
    found = {}
    for node in model.graph.node:
        parts = node.name.split("/")
        if node.op_type == "Conv" and len(parts) >= 5 and parts[2][:4] in ("cv2.", "cv3."):
            branch, level = parts[2].split(".")
            found[(branch, int(level), int(parts[3]))] = node
    return found


def yolo_detector(seed: int = 0, train: int = 300) -> onnx.ModelProto:
    """The trained detector: input ``images`` [1, 3, 64, 64], output
    ``output0`` [1, 14, 84]."""
    from compiler.zoo.statistics import normalised_convolutions, tensors

    images, truths = colour_canvases(train, seed + 1000)
    model = _network(seed)
    heads = _heads(model)
    model = normalised_convolutions(model, images[:64], skip=[node.name for node in heads.values()])
    features = tensors(model, images, sorted({heads[(branch, level, 0)].input[0] for branch, level, _ in heads}))
    initializers = {t.name: t for t in model.graph.initializer}
    for level, stride in enumerate(STRIDES):
        classes, sides, assigned = _targets(truths, stride)
        for branch in ("cv3", "cv2"):
            x = features[heads[(branch, level, 0)].input[0]]
            for layer in range(3):
                node = heads[(branch, level, layer)]
                weights, bias = (numpy_helper.to_array(initializers[name]) for name in node.input[1:3])
                weights, bias, x = _fit(weights, bias, x, classes, sides, assigned, branch)
                for name, value in ((node.input[1], weights), (node.input[2], bias)):
                    initializers[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))
    return model


def _fit(weights: np.ndarray, bias: np.ndarray, x: np.ndarray, classes: np.ndarray, sides: np.ndarray,
         assigned: np.ndarray, branch: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """One convolution of a head branch fitted on its input ``x`` [N, C, H,
    W]: the last (1x1) by logistic regression onto the class targets
    (``cv3``) or least squares onto DFL logits (``cv2``, at assigned
    anchors); a hidden one (3x3, SiLU after it) keeps its seeded weights
    but for its first channels, fitted by least squares onto the same
    targets and the box sides (a greedy, layer by layer fit), each channel
    then normalised to zero mean and unit variance (a BatchNorm folded).
    Returns the weights, the bias and, for a hidden layer, its output."""
    from compiler.zoo.statistics import logistic, patches, ridge

    hidden = weights.shape[-1] == 3
    rows = np.concatenate([patches(f) for f in x]) if hidden else \
        x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1]).astype(np.float64)
    if branch == "cv3":
        targets, where = np.concatenate([classes, classes.max(axis=1, keepdims=True)], axis=1), slice(None)
    else:
        targets, where = np.concatenate([sides, _dfl_logits(sides).reshape(-1, 4 * REG_MAX)], axis=1), assigned
    if not hidden:
        fitted = logistic(rows, classes, penalty=1.0) if branch == "cv3" else ridge(rows[where], targets[where, 4:])
        return fitted[0].reshape(weights.shape), fitted[1], None
    flat, bias = weights.reshape(len(weights), -1).astype(np.float64), bias.astype(np.float64)
    count = min(targets.shape[1], len(flat))
    flat[:count], bias[:count] = ridge(rows[where], targets[where][:, :count])
    pre = rows @ flat.T + bias
    mean, scale = pre.mean(axis=0), 1.0 / (pre.std(axis=0) + 1e-6)
    pre = (pre - mean) * scale
    out = (pre / (1.0 + np.exp(-pre))).reshape(len(x), x.shape[2], x.shape[3], -1).transpose(0, 3, 1, 2)
    return (flat * scale[:, None]).reshape(weights.shape), (bias - mean) * scale, out


def _targets(truths: list[list[Box]], stride: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per anchor of one level over every canvas: one-hot class targets
    [., 10], each side's distance in strides (left, top, right, bottom)
    [., 4], and whether the anchor is assigned to a digit [.]."""
    grid = SIDE // stride
    centres = (np.arange(grid) + 0.5) * stride
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    classes = np.zeros((len(truths), grid, grid, CLASSES))
    sides = np.zeros((len(truths), grid, grid, 4))
    for n, boxes in enumerate(truths):
        for box in sorted(boxes, key=lambda b: -(b.x1 - b.x0)):  # the smaller digit wins a shared anchor
            size = box.x1 - box.x0
            if stride > size:
                continue
            cx, cy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
            inside = (np.abs(xs - cx) < size / 2) & (np.abs(ys - cy) < size / 2)
            if not inside.any():  # the anchor nearest the centre
                inside = (np.abs(xs - cx) <= stride / 2) & (np.abs(ys - cy) <= stride / 2)
            classes[n][inside] = np.eye(CLASSES)[box.label]
            sides[n][inside] = np.stack([xs[inside] - box.x0, ys[inside] - box.y0, box.x1 - xs[inside],
                                         box.y1 - ys[inside]], axis=1) / stride
    assigned = classes.max(axis=-1) > 0
    return classes.reshape(-1, CLASSES), sides.reshape(-1, 4), assigned.reshape(-1)


def _dfl_logits(sides: np.ndarray, width: float = 0.6, floor: float = 8.0) -> np.ndarray:
    """DFL logits [., 4, 16] whose softmax peaks at each side's distance (a
    Gaussian over the bins, logits between 4 and 4 - ``floor``)."""
    bins = np.arange(REG_MAX)
    distance = np.clip(sides, 0.0, REG_MAX - 1.01)[..., None]
    return 4.0 - np.minimum((bins - distance) ** 2 / (2 * width ** 2), floor)


def detect(outputs: dict[str, np.ndarray], score: float = SCORE, classes: int | None = None,
           nms_iou: float = NMS_IOU) -> list[Box]:
    """Ultralytics' decoding of ``output0`` [1, 4 + classes (+ more), anchors]
    (compiler/agreement.yolo_boxes: centre x, centre y, width, height in
    pixels, then class scores; channels after the classes, as a segmenter's
    mask coefficients, are not read; ``classes`` defaults to every channel
    after the box): each anchor's best class over ``score``, then
    non-maximum suppression per class at ``nms_iou``."""
    out = np.asarray(outputs["output0"])[0]
    return yolo_boxes(out, out.shape[0] - 4 if classes is None else classes, score, nms_iou)
