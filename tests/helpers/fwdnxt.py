"""The smallest model the FWDNXT API can compile, for tests of the API's
machinery (flags, PutInput/GetResult) that need a real binary and the
real simulator but no particular network: one 1x1 convolution of a
2-channel 2x2 image, 8 output values, about 0.2 ms a run."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx

from compiler.zoo.builder import OnnxBuilder
from runtime import FWDNXT

SHAPE = (1, 2, 2, 2)
OUTPUTS = 8


def images(count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` distinct float32 inputs of the tiny model."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(SHAPE).astype(np.float32) for _ in range(count)]


def tiny_onnx(folder: Path) -> Path:
    """The model as an ONNX file in ``folder``."""
    builder = OnnxBuilder("tiny", seed=1)
    x = builder.input("x", list(SHAPE))
    path = folder / "tiny.onnx"
    onnx.save(builder.model([builder.conv(x, 2, 2, 1)]), path)
    return path


def compile_tiny(folder: Path, name: str = "tiny.bin", ie: FWDNXT | None = None, **kwargs) -> tuple[Path, int]:
    """The tiny model compiled (with ``ie``'s flags, calibrated on a few
    images) to ``folder/name``; its path and Compile's output count."""
    source = folder / "tiny.onnx"
    if not source.exists():
        tiny_onnx(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        count = (ie or FWDNXT()).Compile("2x2x2", str(source), str(folder / name), samples=images(4, seed=9),
                                         **kwargs)
    return folder / name, count
