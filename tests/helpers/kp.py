"""A tiny model for the kp tests (the built-in ResNet-10 with its logits as
a second output: one output the CPU computes, one the device writes) and
the image conversions a camera would do."""
from __future__ import annotations

import numpy as np
import onnx


def resnet_with_device_outputs(classes: int = 10) -> onnx.ModelProto:
    """ResNet-10 on 32x32 images; outputs probabilities (the softmax, on the
    CPU) and the logits (on the device when compiled with hwlinear)."""
    from compiler.zoo import resnet

    model = resnet(depth=10, image=32, classes=classes, width=8)
    model.graph.output.extend([onnx.helper.make_empty_tensor_value_info(model.graph.node[-1].input[0])])
    return model


def calibration_images(count: int = 4, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((1, 3, 32, 32), np.float32) for _ in range(count)]


def rgb565(rgb: np.ndarray) -> np.ndarray:
    """An [H, W, 3] uint8 RGB image as [H, W, 2] RGB565 bytes (red in the top bits, little-endian)."""
    r, g, b = (rgb[..., i].astype(np.uint16) for i in range(3))
    words = ((r >> 3) << 11) | ((g >> 2) << 5) | (b >> 3)
    return words.astype("<u2").view(np.uint8).reshape(rgb.shape[0], rgb.shape[1], 2)


def yuyv(rgb: np.ndarray) -> np.ndarray:
    """An [H, W, 3] uint8 RGB image (W even) as [H, W, 2] YUYV bytes (full-range BT.601)."""
    x = rgb.astype(np.float64)
    y = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    u = 128 - 0.168736 * x[..., 0] - 0.331264 * x[..., 1] + 0.5 * x[..., 2]
    v = 128 + 0.5 * x[..., 0] - 0.418688 * x[..., 1] - 0.081312 * x[..., 2]
    out = np.empty(rgb.shape[:2] + (2,), np.float64)
    out[..., 0] = y
    out[:, 0::2, 1] = (u[:, 0::2] + u[:, 1::2]) / 2
    out[:, 1::2, 1] = (v[:, 0::2] + v[:, 1::2]) / 2
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
