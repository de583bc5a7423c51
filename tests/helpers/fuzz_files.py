"""The file campaign's target (tests/helpers/fuzzing.py): truncated, mutated
and random files through every loader of a file Tessera reads: the ONNX
loader and importer, the binary reader behind FWDNXT Init, kp's
load_model_from_file and IENetwork, the section listing of `tessera info`, the encodings reader, the calibration
and Simulator API sample readers (.npy, .npz, .h5), and tessera-infer's
images, labels, classes and FC-weight files. Each loader starts from a valid
file of its kind; a case is its kind (loader and mutation, e.g.
``encodings_truncate``), and is accepted when the loader returns."""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Callable, NamedTuple

import h5py
import numpy as np
from PIL import Image

from compiler.frontend import import_onnx
from compiler.simulator.data import TensorSpec, load_sample
from compiler.zoo import transformer_block
from ir.types import QuantParams
from passes.quant.encodings import export_encodings, import_encodings
from runtime import FWDNXT, kp
from runtime.app.images import Settings, load_image, read_classes, read_fc_weights, read_labels
from runtime.array_files import ArrayFileError, load_arrays
from runtime.binary import describe
from runtime.inference_engine import IENetwork
from runtime.preprocess import PreprocessSpec
from tests.helpers.binary import compiled_binary
from tests.helpers.fuzzing import Case
from tests.helpers.mutate import mutate_bytes, pick

NAMED_ERRORS = (kp.ApiKPException, ArrayFileError)
"""Named errors besides TesseraError: kp's exception, the .npy/.npz reader's."""
MUTATIONS = ("valid", "truncate", "truncate", "mutate", "mutate", "mutate", "random", "prefix")


class Loader(NamedTuple):
    """A reader of one kind of file: its call, its suffix and a valid file."""
    read: Callable[[str], object]
    suffix: str
    seed: bytes


def _npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=allow_pickle)
    return out.getvalue()


def _npz(**arrays: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def _h5(**arrays: np.ndarray) -> bytes:
    out = io.BytesIO()
    with h5py.File(out, "w") as handle:
        for name, array in arrays.items():
            handle[name] = array
    return out.getvalue()


def _png() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(out, "PNG")
    return out.getvalue()


def _encodings() -> bytes:
    params = {"x": QuantParams(0.02, -3, np.int8), "w": QuantParams([0.1, 0.2], [0, 0], np.int8, axis=0)}
    return json.dumps(export_encodings(params, weights={"w"}), indent=1).encode()


IMAGE = (1, 3, 4, 4)
SPECS = [TensorSpec("x", IMAGE, np.dtype(np.float32))]
SETTINGS = Settings(height=8, width=8, channels=3, spec=PreprocessSpec(mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2)))


def _init(path: str) -> None:
    ie = FWDNXT()
    try:
        ie.Init(path)
    finally:
        ie.Free()


def _kp(path: str) -> None:
    group = kp.core.connect_devices([kp.core.scan_devices().device_descriptor_list[0].usb_port_id])
    try:
        kp.core.load_model_from_file(group, path)
    finally:
        kp.core.disconnect_devices(group)


def loaders() -> dict[str, Loader]:
    x = np.random.default_rng(1).standard_normal(IMAGE).astype(np.float32)
    onnx_bytes = transformer_block(seq=4, dim=8, heads=2, ffn=16).SerializeToString()
    binary = compiled_binary()
    return {
        "onnx": Loader(import_onnx, ".onnx", onnx_bytes),
        "ie_onnx": Loader(IENetwork, ".onnx", onnx_bytes),
        "fwdnxt_init": Loader(_init, ".bin", binary),
        "describe": Loader(describe, ".bin", binary),
        "kp": Loader(_kp, ".bin", binary),
        "ie_binary": Loader(IENetwork, ".bin", binary),
        "encodings": Loader(import_encodings, ".encodings", _encodings()),
        "calibration_npy": Loader(lambda p: load_arrays(Path(p)), ".npy", _npy(x)),
        "calibration_npz": Loader(lambda p: load_arrays(Path(p)), ".npz", _npz(x=x, y=x[0])),
        "calibration_pickle": Loader(lambda p: load_arrays(Path(p)), ".npy",
                                     _npy(np.array([{"a": 1}], dtype=object), allow_pickle=True)),
        "sample_npy": Loader(lambda p: load_sample(Path(p), SPECS), ".npy", _npy(x)),
        "sample_npz": Loader(lambda p: load_sample(Path(p), SPECS), ".npz", _npz(x=x)),
        "sample_h5": Loader(lambda p: load_sample(Path(p), SPECS), ".h5", _h5(x=x)),
        "image": Loader(lambda p: load_image(Path(p), SETTINGS), ".png", _png()),
        "labels": Loader(lambda p: read_labels(p, {"a.png", "b.png"}), ".txt", b"a.png 3\nb.png 0\nc.png 7\n"),
        "classes": Loader(read_classes, ".txt", b"cat\ndog\n\xc3\xa9l\xc3\xa9phant\n"),
        "fc_weights": Loader(lambda p: read_fc_weights(p, 4), ".csv", b"1,2,3,4\n-1,0.5,7,-128\n"),
    }


def setup() -> dict[str, Loader]:
    return loaders()


def generate(state: dict[str, Loader], rng: np.random.Generator) -> Case:
    name = pick(rng, sorted(state))
    loader = state[name]
    mutation = pick(rng, MUTATIONS)
    data = loader.seed
    if mutation == "truncate":
        data = data[:int(rng.integers(len(data)))]
    elif mutation == "mutate":
        for _ in range(int(rng.integers(1, 5))):
            data = mutate_bytes(rng, data)
    elif mutation in ("random", "prefix"):
        tail = rng.integers(0, 256, int(rng.integers(0, 4096)), dtype=np.uint8).tobytes()
        data = (data[:int(rng.integers(1, 65))] + tail) if mutation == "prefix" else tail
    return Case(data, f"{name}_{mutation}", loader.suffix)


def execute(state: dict[str, Loader], path: str, kind: str) -> None:
    state[kind.rsplit("_", 1)[0]].read(path)
