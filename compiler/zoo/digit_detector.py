"""A trained CenterNet-style detector of handwritten digits on canvases, for
measuring quantization on a detector (its fidelity is detections kept, not
only SNR) without downloading anything.

Data: scikit-learn's digits (8x8, 1797 of them; BSD licence) scaled to 12,
16 or 24 pixels and placed, one to three to a canvas, on 48x48 grey canvases
with a little noise. The model, as torch.onnx exports a MobileNet-style
CenterNet: a depthwise-separable backbone (Conv-BN-Relu stem, stride 2;
depthwise and pointwise Conv-BN-ReLU6; a stride-2 Conv-BN-Relu; another
depthwise-separable pair) to 64 channels at 1/4 resolution, and three 3x3
heads: ``hm`` (10 class heatmaps), ``wh`` (box width and height in pixels)
and ``reg`` (the centre's sub-cell offset), as CenterNet has them.

Training: the backbone's convolutions keep their seeded weights, its
BatchNorms the statistics of the training canvases (a random-feature
backbone, normalised as a trained one is); the heads are trained by ridge
regression on the backbone's features: ``hm`` onto Gaussian heatmaps at the
digits' centres, ``wh`` and ``reg`` onto the box sizes and offsets at the
centres only (CenterNet's losses). Deterministic for a seed; a few seconds.

:func:`detect` decodes the outputs as CenterNet does (3x3 peak picking over
a score threshold); compiler.agreement.match matches two detection lists."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from compiler.agreement import Box, centernet_boxes, iou
from compiler.zoo.builder import OnnxBuilder

SIDE = 48
STRIDE = 4
GRID = SIDE // STRIDE
FEATURES = 64
SIZES = (12, 16, 24)
SCORE = 0.3
"""Heatmap value above which a peak is a detection."""


def canvases(count: int, seed: int, side: int = SIDE,
             sizes: tuple[int, ...] = SIZES) -> tuple[list[np.ndarray], list[list[Box]]]:
    """``count`` canvases ([1, 1, side, side] float32 in [0, 1], 48 by
    default) with one to three digits of ``sizes`` pixels, and their boxes
    (labelled with the digit; this detector finds digits, not which)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    images, truths = [], []
    for _ in range(count):
        canvas = rng.uniform(0.0, 0.08, (side, side))
        boxes: list[Box] = []
        for _ in range(int(rng.integers(1, 4))):
            size = int(rng.choice(sizes))
            for _attempt in range(20):
                x0, y0 = (int(v) for v in rng.integers(0, side - size + 1, 2))
                if all(iou(Box(0, x0, y0, x0 + size, y0 + size), b) < 0.05 for b in boxes):
                    break
            else:
                continue
            index = int(rng.integers(0, len(digits.images)))
            picture = Image.fromarray((digits.images[index] * 16).astype(np.uint8)).resize((size, size),
                                                                                          Image.BILINEAR)
            patch = np.asarray(picture, np.float64) / 255.0
            canvas[y0:y0 + size, x0:x0 + size] = np.maximum(canvas[y0:y0 + size, x0:x0 + size], patch)
            boxes.append(Box(int(digits.target[index]), x0, y0, x0 + size, y0 + size))
        images.append(canvas.astype(np.float32)[None, None])
        truths.append(boxes)
    return images, truths


def _backbone(seed: int) -> tuple[OnnxBuilder, str]:
    b = OnnxBuilder("torch-jit-export", seed, opset=13, names="/{scope}/{op}_{n}".replace("/{scope}", "{scope}"))
    x = b.input("input", [1, 1, SIDE, SIDE])
    x = b.conv_bn(x, 1, 16, 3, 2)
    x = b.conv_bn(x, 16, 16, 3, groups=16, act="ReLU6")
    x = b.conv_bn(x, 16, 32, 1, act="ReLU6")
    x = b.conv_bn(x, 32, 32, 3, 2)
    x = b.conv_bn(x, 32, 32, 3, groups=32, act="ReLU6")
    x = b.conv_bn(x, 32, FEATURES, 1, act="ReLU6")
    return b, x


def digit_detector(seed: int = 0, train: int = 300, layout: str = "heads") -> onnx.ModelProto:
    """The trained detector: outputs ``hm`` [1, 1, 12, 12], ``wh`` and
    ``reg`` [1, 2, 12, 12] (``layout="heads"``, CenterNet's export), or the
    same three heads as one convolution whose output ``out`` [1, 5, 12, 12]
    holds them channel after channel (``layout="single"``, as YOLO- and
    PicoDet-style exports write a scale's boxes and scores), or CenterFace's
    outputs (``layout="centerface"``): ``heatmap`` [1, 1, 12, 12] through a
    Sigmoid, fitted to the logits of the Gaussian heatmap kept within
    [0.0001, 0.99] so that it saturates as a trained one does (background
    near 0), ``scale`` [1, 2, 12, 12] (log of height and width over the
    stride) and ``offset`` [1, 2, 12, 12] (the centre's dy, dx within its
    cell, from the cell's middle)."""
    if layout not in ("heads", "single", "centerface"):
        raise ValueError(f"layout must be 'heads', 'single' or 'centerface', got {layout!r}")
    from compiler.zoo.statistics import feature_rows, ridge

    images, truths = canvases(train, seed + 1000)
    b, features = _backbone(seed)
    backbone, rows = feature_rows(b.model([features]), images)
    name = backbone.graph.output[0].name
    hm, sizes, centres = _targets(truths)
    if layout == "centerface":
        probability = np.clip(hm, 1e-4, 0.99)
        scale = np.log(sizes[centres][:, [1, 0]] / STRIDE)
        heads = {"heatmap": ridge(rows, np.log(probability / (1.0 - probability))),
                 "scale": ridge(rows[centres], scale), "offset": ridge(rows[centres], sizes[centres][:, [3, 2]] - 0.5)}
    else:
        heads = {"hm": ridge(rows, hm), "wh": ridge(rows[centres], sizes[centres, :2]),
                 "reg": ridge(rows[centres], sizes[centres, 2:])}
    if layout == "single":
        heads = {"out": tuple(np.concatenate(parts) for parts in zip(*heads.values()))}
    graph = backbone.graph
    outputs = []
    for head, (weights, bias) in heads.items():
        w = numpy_helper.from_array(weights.reshape(-1, FEATURES, 3, 3).astype(np.float32), f"{head}.weight")
        c = numpy_helper.from_array(bias.astype(np.float32), f"{head}.bias")
        graph.initializer.extend([w, c])
        conv = f"{head}_logits" if head == "heatmap" else head
        graph.node.append(helper.make_node("Conv", [name, w.name, c.name], [conv], name=f"/{head}/Conv",
                                           kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        if head == "heatmap":
            graph.node.append(helper.make_node("Sigmoid", [conv], [head], name=f"/{head}/Sigmoid"))
        outputs.append(helper.make_empty_tensor_value_info(head))
    del graph.output[:]
    graph.output.extend(outputs)
    return onnx.shape_inference.infer_shapes(backbone)


def _targets(truths: list[list[Box]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cell of every canvas: the Gaussian centre heatmap [., 1], and
    (w, h, dx, dy) at centres [., 4], and which cells are centres."""
    ys, xs = np.mgrid[0:GRID, 0:GRID]
    hm = np.zeros((len(truths), GRID, GRID))
    sizes = np.zeros((len(truths), GRID, GRID, 4))
    centre = np.zeros((len(truths), GRID, GRID), bool)
    for n, boxes in enumerate(truths):
        for box in boxes:
            cx, cy = (box.x0 + box.x1) / 2 / STRIDE, (box.y0 + box.y1) / 2 / STRIDE
            ix, iy = min(int(cx), GRID - 1), min(int(cy), GRID - 1)
            sigma = max((box.x1 - box.x0) / STRIDE / 3, 0.8)
            hm[n] = np.maximum(hm[n], np.exp(-((xs - ix) ** 2 + (ys - iy) ** 2) / (2 * sigma ** 2)))
            sizes[n, iy, ix] = (box.x1 - box.x0, box.y1 - box.y0, cx - ix, cy - iy)
            centre[n, iy, ix] = True
    return hm.reshape(-1, 1), sizes.reshape(-1, 4), centre.reshape(-1)


def head_outputs(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``hm``, ``wh`` and ``reg`` of any layout's outputs (CenterFace's
    decoded: sizes exp(scale) * stride, offsets from the cell's corner)."""
    if "heatmap" in outputs:
        scale, offset = outputs["scale"][:, [1, 0]], outputs["offset"][:, [1, 0]]
        return {"hm": outputs["heatmap"], "wh": np.exp(scale) * STRIDE, "reg": offset + 0.5}
    if "out" not in outputs:
        return {k: outputs[k] for k in ("hm", "wh", "reg")}
    out = outputs["out"]
    return {"hm": out[:, :1], "wh": out[:, 1:3], "reg": out[:, 3:5]}


def detect(outputs: dict[str, np.ndarray], score: float = SCORE) -> list[Box]:
    """CenterNet decoding (compiler/agreement.centernet_boxes): a heatmap
    cell over ``score`` that is the largest of its 3x3 neighbourhood is a
    box centred at (cell + reg) * stride, of size wh in pixels (any
    layout's outputs; the box's label is its heatmap's class)."""
    hm, wh, reg = (np.asarray(v)[0] for v in head_outputs(outputs).values())
    return centernet_boxes(hm, (STRIDE, STRIDE), wh, reg, 1.0, score)
