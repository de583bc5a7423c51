"""What the kp examples share: a compiled Tessera binary and real photos in
the pixel formats a camera gives.

The model is the user's Tessera binary or, without one, the tiny built-in
ResNet-10 (32x32 inputs, 10 classes) compiled to a temporary file with its
int8 ranges calibrated on the sample photos (normalised as KP_NORMALIZE_KNERON
does, pixel/256 - 0.5, the pre-processing the examples ask the device for).
Photos are scikit-learn's china.jpg and flower.jpg, converted with numpy as
OpenCV would (cv2.COLOR_RGB2BGR565, RGBA, YUYV).
"""
from __future__ import annotations

import atexit
import os
import tempfile

import numpy as np
from sample_data import calibration_images, photos


def binary_path(path: str | None) -> str:
    """``path``, or the built-in ResNet-10 compiled to a temporary binary (removed at exit)."""
    if path is not None:
        return path
    import warnings

    from compiler.compile import compile_model
    from compiler.zoo import resnet

    folder = tempfile.TemporaryDirectory(prefix="tessera-kp-example-")
    atexit.register(folder.cleanup)
    path = os.path.join(folder.name, "resnet10.bin")
    samples = [x * (255 / 256) - 0.5 for x in calibration_images(32, 32)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compile_model(resnet(depth=10, image=32, classes=10, width=8), samples=samples, outfile=path)
    return path


def photo(name: str = "china.jpg") -> np.ndarray:
    """A sample photo as an [H, W, 3] uint8 RGB array."""
    return np.asarray(photos()[name])


def to_rgb565(rgb: np.ndarray) -> np.ndarray:
    """[H, W, 3] RGB -> [H, W, 2] RGB565 bytes (red in the top bits, little-endian)."""
    r, g, b = (rgb[..., i].astype(np.uint16) for i in range(3))
    words = ((r >> 3) << 11) | ((g >> 2) << 5) | (b >> 3)
    return words.astype("<u2").view(np.uint8).reshape(rgb.shape[0], rgb.shape[1], 2)


def to_rgba8888(rgb: np.ndarray) -> np.ndarray:
    """[H, W, 3] RGB -> [H, W, 4] RGBA (alpha 255)."""
    return np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)


def to_yuyv(rgb: np.ndarray) -> np.ndarray:
    """[H, W, 3] RGB (even width) -> [H, W, 2] YUYV bytes, full-range BT.601."""
    x = rgb.astype(np.float64)
    y = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    u = 128 - 0.168736 * x[..., 0] - 0.331264 * x[..., 1] + 0.5 * x[..., 2]
    v = 128 + 0.5 * x[..., 0] - 0.418688 * x[..., 1] - 0.081312 * x[..., 2]
    out = np.empty(rgb.shape[:2] + (2,))
    out[..., 0] = y
    out[:, 0::2, 1] = (u[:, 0::2] + u[:, 1::2]) / 2
    out[:, 1::2, 1] = (v[:, 0::2] + v[:, 1::2]) / 2
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def top(probabilities: np.ndarray, k: int = 3) -> str:
    """'class (probability)' of the k best classes."""
    flat = probabilities.reshape(-1)
    return ", ".join(f"{int(c)} ({flat[c]:.4f})" for c in np.argsort(flat)[::-1][:k])
