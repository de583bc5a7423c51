"""Real images for calibration and evaluation without downloads: crops of
the two photographs scikit-learn ships (china.jpg, flower.jpg), normalised
like ImageNet inputs. Needs scikit-learn and Pillow (the test extra)."""
from __future__ import annotations

import numpy as np

from runtime import preprocess

IMAGENET_MEAN = np.array(preprocess.IMAGENET_MEAN, np.float32)
IMAGENET_STD = np.array(preprocess.IMAGENET_STD, np.float32)


def sample_photos() -> list[np.ndarray]:
    """The photographs as HxWx3 uint8 arrays."""
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        raise ImportError("real sample images need scikit-learn and Pillow: pip install 'tessera[test]'") from None
    return list(load_sample_images().images)


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
