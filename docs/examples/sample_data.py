"""What the Inference-Engine examples share: a model and real photos.

The model is the user's ONNX file or, without one, a tiny built-in
ResNet-10 (32x32 inputs, 10 classes, seeded random weights) saved to a
temporary file. Images are an image file or one of the two photographs
scikit-learn ships (china.jpg, flower.jpg), resized with Pillow to the
network's input and scaled to [0, 1] float32 NCHW.
"""
from __future__ import annotations

import atexit
import os
import tempfile

import numpy as np
from PIL import Image


def model_path(path: str | None) -> str:
    """``path``, or the built-in ResNet-10 written to a temporary file (removed at exit)."""
    if path is not None:
        return path
    import onnx

    from compiler.zoo import resnet

    folder = tempfile.TemporaryDirectory(prefix="tessera-example-")
    atexit.register(folder.cleanup)
    path = os.path.join(folder.name, "resnet10.onnx")
    onnx.save(resnet(depth=10, image=32, classes=10, width=8), path)
    return path


def photos() -> dict[str, Image.Image]:
    """scikit-learn's sample photographs by file name."""
    from compiler.zoo.images import sample_photo_files, sample_photos

    return {path.name: Image.fromarray(pixels) for path, pixels in zip(sample_photo_files(), sample_photos())}


def load_image(path: str | None, height: int, width: int, default: str = "china.jpg") -> np.ndarray:
    """An image file (or the sample photo ``default``) as a [1, 3, height, width] input."""
    image = Image.open(path).convert("RGB") if path else photos()[default]
    return to_input(image, height, width)


def calibration_images(height: int, width: int, count: int = 8, seed: int = 0) -> list[np.ndarray]:
    """``count`` random square crops of the sample photos, as inputs: the
    calibration data the accelerator's int8 ranges are measured on."""
    rng = np.random.default_rng(seed)
    images = list(photos().values())
    crops = []
    for i in range(count):
        image = images[i % len(images)]
        side = int(rng.integers(min(image.size) // 2, min(image.size) + 1))
        left, top = int(rng.integers(0, image.width - side + 1)), int(rng.integers(0, image.height - side + 1))
        crops.append(to_input(image.crop((left, top, left + side, top + side)), height, width))
    return crops


def to_input(image: Image.Image, height: int, width: int) -> np.ndarray:
    """An RGB image resized to height x width, scaled to [0, 1], as float32 [1, 3, height, width]."""
    pixels = np.asarray(image.resize((width, height), Image.BILINEAR), np.float32) / 255.0
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None])
