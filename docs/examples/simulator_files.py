"""What the Simulator examples share: a model, its encodings and a data folder.

The user gives their own (--model, --encodings, --data) or, for any not
given, the example writes one into a temporary folder (removed at exit):
the tiny built-in ResNet-10 (32x32 inputs, 10 classes, seeded random
weights), its int8 encodings calibrated on crops of the two photographs
scikit-learn ships (an AIMET-style file, as compiler.quantize exports it),
Exynos' empty encodings file (run in float), and a data folder of four
other crops, one .npy per sample. The photographs are read with Pillow
from scikit-learn's package folder, without importing scikit-learn (slow
to import).
"""
from __future__ import annotations

import argparse
import atexit
import importlib.util
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

EMPTY_ENCODINGS = {"activation_encodings": {}, "param_encodings": {}, "quantizer_args": {}, "version": None,
                   "modules": {}}
SIZE = 32


def arguments(description: str) -> argparse.ArgumentParser:
    """A parser with the shared --model, --encodings and --data options."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("-m", "--model", help="an ONNX model (default: a tiny built-in ResNet-10)")
    parser.add_argument("-e", "--encodings", help="its encodings file (default: int8, calibrated on photos)")
    parser.add_argument("-d", "--data", help="a folder of .npy/.npz/.h5 samples (default: four photo crops)")
    return parser


def files(args: argparse.Namespace) -> tuple[str, str, str]:
    """(model, encodings, data folder): the user's, or written here."""
    model = args.model or _write_model()
    encodings, data = args.encodings, args.data
    if encodings is None:
        from compiler.quantize import quantize_model

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # calibration progress
            quantized = quantize_model(model, calibration_data=photo_crops(8, seed=0))
        encodings = str(_folder() / "model.encodings")
        quantized.export_encodings(encodings)
    if data is None:
        data = _folder() / "data"
        data.mkdir()
        for index, image in enumerate(photo_crops(4, seed=1)):
            np.save(data / f"sample_{index}.npy", image)
    return model, encodings, str(data)


def empty_encodings() -> str:
    """Exynos' empty encodings file, written to a temporary folder."""
    path = _folder() / "empty.encodings"
    path.write_text(json.dumps(EMPTY_ENCODINGS))
    return str(path)


def photo_crops(count: int, seed: int) -> list[np.ndarray]:
    """``count`` random square crops of the sample photos as [1, 3, 32, 32]
    float32 inputs in [0, 1]."""
    rng = np.random.default_rng(seed)
    folder = Path(importlib.util.find_spec("sklearn").submodule_search_locations[0]) / "datasets" / "images"
    photos = [Image.open(folder / name).convert("RGB") for name in ("china.jpg", "flower.jpg")]
    crops = []
    for index in range(count):
        photo = photos[index % len(photos)]
        side = int(rng.integers(min(photo.size) // 2, min(photo.size) + 1))
        left, top = int(rng.integers(0, photo.width - side + 1)), int(rng.integers(0, photo.height - side + 1))
        square = photo.crop((left, top, left + side, top + side)).resize((SIZE, SIZE), Image.BILINEAR)
        crops.append(np.ascontiguousarray((np.asarray(square, np.float32) / 255.0).transpose(2, 0, 1)[None]))
    return crops


def _write_model() -> str:
    import onnx

    from compiler.zoo import resnet

    path = _folder() / "resnet10.onnx"
    onnx.save(resnet(depth=10, image=SIZE, classes=10, width=8), path)
    return str(path)


def _folder() -> Path:
    folder = tempfile.TemporaryDirectory(prefix="tessera-simulator-")
    atexit.register(folder.cleanup)
    return Path(folder.name)
