"""Real images for calibration and evaluation without downloads: crops of
the two photographs scikit-learn ships (china.jpg, flower.jpg), normalised
like ImageNet inputs. Needs scikit-learn and Pillow (the test extra)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from runtime import preprocess

IMAGENET_MEAN = np.array(preprocess.IMAGENET_MEAN, np.float32)
IMAGENET_STD = np.array(preprocess.IMAGENET_STD, np.float32)


_MISSING = "real sample images need scikit-learn and Pillow: pip install 'tessera[images]'"


def sample_photo_files() -> list[Path]:
    """The photographs' files (china.jpg, flower.jpg), found where
    scikit-learn installed them without importing it: ``import
    sklearn.datasets`` takes about 3 s (scipy and the estimators come with
    it), which every ``tessera run`` and example paid for two JPEG files.
    ImportError when scikit-learn or Pillow is missing."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or importlib.util.find_spec("PIL") is None:
        raise ImportError(_MISSING)
    for folder in spec.submodule_search_locations or ():
        files = sorted((Path(folder) / "datasets" / "images").glob("*.jpg"))
        if files:
            return files
    from sklearn.datasets import load_sample_images  # a layout of scikit-learn's own: ask it

    return [Path(name) for name in load_sample_images().filenames]


def sample_photos() -> list[np.ndarray]:
    """The photographs as HxWx3 uint8 arrays, decoded as scikit-learn's
    ``load_sample_images`` decodes them (Pillow)."""
    from PIL import Image

    photos = []
    for path in sample_photo_files():
        with Image.open(path) as image:
            photos.append(np.asarray(image))
    return photos


def image_crops(count: int, size: int = 224, seed: int = 0) -> list[np.ndarray]:
    """``count`` NCHW float32 [1, 3, size, size] crops (random position,
    scale and flip; seeded), normalised with ImageNet's mean and std."""
    photos = sample_photos()
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(count):
        photo = photos[i % len(photos)]
        side = int(rng.integers(size, min(photo.shape[:2]) + 1))
        top = int(rng.integers(0, photo.shape[0] - side + 1))
        left = int(rng.integers(0, photo.shape[1] - side + 1))
        patch = _resize(photo[top:top + side, left:left + side], size)
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        normalised = (patch.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        crops.append(np.ascontiguousarray(normalised.transpose(2, 0, 1)[None]))
    return crops


def _resize(patch: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of an HxWxC patch to size x size."""
    rows = (np.arange(size) * patch.shape[0] // size).clip(0, patch.shape[0] - 1)
    cols = (np.arange(size) * patch.shape[1] // size).clip(0, patch.shape[1] - 1)
    return patch[rows][:, cols]
