"""A trained DB-style text detector on rendered documents, for measuring
quantization on a segmentation-style detector (its fidelity is detections
kept, not only SNR) without downloading anything.

Data: 64x128 grey "documents" with one to three lines of random words drawn
with Pillow's built-in font (``ImageFont.load_default(size=...)``, sizes 10
to 16) in dark ink on a light, noisy page, and each line's box.

The model, as PaddleOCR exports a DBNet: a MobileNet-style backbone
(Conv-BN-Relu stem, stride 2; depthwise-separable pairs with ReLU6; two
more stride-2 stages) to 1/4 and 1/8 resolution, an FPN neck (1x1 laterals,
the 1/8 one upsampled by a nearest Resize and added to the 1/4 one, a 3x3
Conv-BN-Relu), and the DB head's probability branch: a 1x1 convolution and
a Sigmoid, the text probability map ``maps`` [1, 1, 16, 32] at 1/4
resolution.

Training: the backbone and neck keep seeded weights with BatchNorm
statistics of the training pages (a random-feature network, normalised as a
trained one is); the head's convolution is trained by ridge regression onto
the logit of the (shrunk) text mask of each cell. :func:`detect` decodes as
DB does: connected regions of the map over a threshold, each region's box
expanded back to the text's size."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from compiler.agreement import DB_THRESHOLD, Box, db_boxes
from compiler.zoo.builder import OnnxBuilder

HEIGHT, WIDTH = 64, 128
STRIDE = 4
THRESHOLD = DB_THRESHOLD
"""Probability above which a cell is text."""
_WORDS = ("invoice", "total", "date", "name", "tessera", "int8", "layer", "page", "model", "score", "12.50",
          "2026", "No.", "qty", "sum", "item", "paid", "ref")


def documents(count: int, seed: int) -> tuple[list[np.ndarray], list[list[Box]]]:
    """``count`` pages ([1, 1, 64, 128] float32 in [0, 1], ink dark) and the
    box of each text line."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    pages, truths = [], []
    for _ in range(count):
        page = Image.new("L", (WIDTH, HEIGHT), int(rng.integers(200, 250)))
        draw = ImageDraw.Draw(page)
        boxes, y = [], int(rng.integers(2, 10))
        for _line in range(int(rng.integers(1, 4))):
            font = ImageFont.load_default(size=int(rng.integers(10, 17)))
            text = " ".join(rng.choice(_WORDS, int(rng.integers(1, 4))))
            x = int(rng.integers(2, 30))
            x0, y0, x1, y1 = draw.textbbox((x, y), text, font=font)
            if y1 > HEIGHT - 2 or x1 > WIDTH - 2:
                break
            draw.text((x, y), text, fill=int(rng.integers(0, 60)), font=font)
            boxes.append(Box(0, x0, y0, min(x1, WIDTH), y1))
            y = y1 + int(rng.integers(4, 12))
        pixels = np.asarray(page, np.float64) / 255.0 + rng.normal(0.0, 0.03, (HEIGHT, WIDTH))
        pages.append(np.clip(pixels, 0.0, 1.0).astype(np.float32)[None, None])
        truths.append(boxes)
    return pages, truths


def _network(seed: int) -> tuple[OnnxBuilder, str]:
    b = OnnxBuilder("paddle-dbnet", seed, opset=13)
    x = b.input("x", [1, 1, HEIGHT, WIDTH])
    x = b.conv_bn(x, 1, 16, 3, 2)
    x = b.conv_bn(x, 16, 16, 3, groups=16, act="ReLU6")
    x = b.conv_bn(x, 16, 24, 1, act="ReLU6")
    c2 = b.conv_bn(x, 24, 24, 3, 2)                      # 1/4
    x = b.conv_bn(c2, 24, 24, 3, groups=24, act="ReLU6")
    x = b.conv_bn(x, 24, 48, 1, act="ReLU6")
    c3 = b.conv_bn(x, 48, 48, 3, 2)                      # 1/8
    lateral3 = b.conv(c3, 48, 32, 1)
    scales = b.const_f32([1.0, 1.0, 2.0, 2.0], "scales")
    up = b.node("Resize", [lateral3, b.const_f32([], "roi"), scales], mode="nearest")
    fused = b.node("Add", [b.conv(c2, 24, 32, 1), up])
    return b, b.conv_bn(fused, 32, 32, 3)


def text_detector(seed: int = 0, train: int = 200, saturated: bool = False) -> onnx.ModelProto:
    """The trained detector: input ``x`` [1, 1, 64, 128], output ``maps``
    [1, 1, 16, 32] (text probability). ``saturated``: the head trained by
    logistic regression onto the 0/1 text mask instead, so that the map is
    mostly saturated as a trained DB detector's is (background near 0, text
    near 1, as PP-OCR v3 to v5's probability maps are), where least squares
    onto the logits of 0.05 and 0.95 keeps it off both."""
    from compiler.zoo.statistics import feature_rows, logistic, ridge

    pages, truths = documents(train, seed + 1000)
    b, features = _network(seed)
    network, rows = feature_rows(b.model([features]), pages)
    name = network.graph.output[0].name
    target = np.concatenate([_mask(boxes).reshape(-1) for boxes in truths])
    if saturated:
        weights, bias = logistic(rows, (target > 0.5)[:, None].astype(np.float64), penalty=1.0, steps=6)
    else:
        weights, bias = ridge(rows, np.log(target / (1.0 - target))[:, None])
    graph = network.graph
    graph.initializer.extend([numpy_helper.from_array(weights.reshape(1, 32, 3, 3).astype(np.float32), "head.weight"),
                              numpy_helper.from_array(bias.reshape(1).astype(np.float32), "head.bias")])
    graph.node.extend([helper.make_node("Conv", [name, "head.weight", "head.bias"], ["logits"], name="head/Conv",
                                        kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                       helper.make_node("Sigmoid", ["logits"], ["maps"], name="head/Sigmoid")])
    del graph.output[:]
    graph.output.append(helper.make_empty_tensor_value_info("maps"))
    return onnx.shape_inference.infer_shapes(network)


def _mask(boxes: list[Box]) -> np.ndarray:
    """The text mask at 1/4 resolution, as probabilities kept off 0 and 1:
    a cell is text where its centre lies inside a line's box."""
    ys, xs = (np.mgrid[0:HEIGHT // STRIDE, 0:WIDTH // STRIDE] + 0.5) * STRIDE
    mask = np.full(ys.shape, 0.05)
    for box in boxes:
        mask[(xs >= box.x0) & (xs <= box.x1) & (ys >= box.y0) & (ys <= box.y1)] = 0.95
    return mask


def detect(outputs: dict[str, np.ndarray], threshold: float = THRESHOLD, stride: int = STRIDE,
           name: str = "maps") -> list[Box]:
    """DB decoding (compiler/agreement.db_boxes): each 4-connected region of
    the map ``name`` (a [1, 1, H, W] probability map at ``stride`` pixels a
    cell) over ``threshold`` (two cells or more) a text box."""
    return db_boxes(np.asarray(outputs[name])[0, 0], (stride, stride), threshold)
