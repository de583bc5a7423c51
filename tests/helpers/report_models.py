"""The compile report tests' binaries (tests/compiler/test_report*.py),
built once per test session: a small ResNet compiled by compile_model
(one layer in 16 bits, the target-SNR record kept), the same model in
split mode over 2 cards x 2 clusters, and a diagnosis file of it."""
from __future__ import annotations

import functools
import tempfile
import warnings
from pathlib import Path

import numpy as np

from codegen.binary import write_binary
from compiler.compile import build, compile_model, system_config
from compiler.quantize import quantize_model
from compiler.zoo import resnet
from passes.distribute import Placement
from runtime.hardware import HardwareConfig

SHAPE = (1, 3, 32, 32)
WIDE_LAYER = "conv_11"
"""The ONNX node the small model computes in 16 bits."""


@functools.cache
def folder() -> Path:
    """A folder that lasts as long as the test session."""
    return Path(_FOLDER.name)


_FOLDER = tempfile.TemporaryDirectory(prefix="tessera-report-")


def tiny_resnet():
    return resnet(depth=10, image=32, classes=10, width=8)


def samples(count: int = 2, seed: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(SHAPE).astype(np.float32) for _ in range(count)]


@functools.cache
def small_binary() -> Path:
    """compile_model's binary of the tiny ResNet: 1 card, 1 cluster."""
    path = folder() / "small.bin"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compile_model(tiny_resnet(), samples=samples(), outfile=path, strip_reference=True, target_snr=20.0,
                      layer_precision={WIDE_LAYER: "int16"})
    return path


@functools.cache
def quantized():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_model(tiny_resnet(), calibration_data=samples())


def binary_of(name: str, cards: int, clusters: int, mode: str, metadata: dict | None = None) -> Path:
    """The tiny ResNet built for ``cards`` x ``clusters`` in ``mode``, with ``metadata`` (default: its coverage)."""
    q = quantized()
    config = system_config(HardwareConfig(), cards)
    meta = {"coverage": q.coverage().to_metadata()} if metadata is None else metadata
    model = build(q.graph, config, metadata=meta, placement=Placement(cards, clusters, mode))
    path = folder() / name
    write_binary(model, path, strip_reference=True)
    return path


@functools.cache
def split_binary() -> Path:
    """Split mode over 2 cards x 2 clusters (barriers, copies between cards)."""
    return binary_of("split.bin", 2, 2, "split")


@functools.cache
def diagnosis_file() -> Path:
    """A diagnosis of the tiny ResNet (compiler.diagnose), as tessera quantize --report FILE.json writes it."""
    path = folder() / "diagnosis.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized().diagnose(samples(2, seed=5)).write(path)
    return path
