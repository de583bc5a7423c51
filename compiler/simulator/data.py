"""The data folder of run_inference and the comparisons: one file per
sample, taken in sorted file-name order.

- ``.npy``: the one input of a single-input model;
- ``.npz``: one array per input, keyed by input name;
- ``.h5`` / ``.hdf5``: one dataset per input at the file's root, keyed by
  input name (Exynos AI Studio's datasets); read with h5py, an optional
  extra (``pip install tessera[simulator]``).

An array has the input's shape, or that shape without its leading batch
axis of 1; numbers are cast to the input's type. Where the model's input
has symbolic dims (``['batch', 3, 'height', 'width']``) the array gives
them: its rank and the fixed dims must agree, and a missing leading axis is
a batch of 1. Sub-folders and hidden
files are skipped; any other file is an error naming it. Arrays are read
without pickle.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from compiler.frontend.shapes import DeclaredDim, format_dims
from compiler.simulator.errors import SimulatorError
from passes.quant.calibration_data import sample_element_cap
from runtime.array_files import ArrayFileError, load_arrays
from runtime.files import MAX_DATA_BYTES, FileError, check_regular

ARRAY_SUFFIXES = (".npy", ".npz")
H5_SUFFIXES = (".h5", ".hdf5")


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: name, shape, element type. The shape of a
    model with dynamic dims holds their names (None: an unnamed or -1 dim);
    it is None where the model declares no shape."""

    name: str
    shape: tuple[DeclaredDim, ...] | None
    dtype: np.dtype

    def takes(self, shape: Sequence[int]) -> bool:
        """Whether an array of ``shape`` fits: same rank, same fixed dims."""
        if self.shape is None:
            return True
        return len(shape) == len(self.shape) and all(not isinstance(d, int) or d == n
                                                     for d, n in zip(self.shape, shape))

    def described(self) -> list:
        """The shape for a message (unnamed dynamic dims as '?')."""
        return ["?"] if self.shape is None else format_dims(self.shape)


def sample_files(folder: str | os.PathLike) -> list[Path]:
    """The sample files of ``folder``, sorted by file name."""
    root = Path(folder)
    files = sorted((p for p in root.iterdir() if not p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    for path in files:
        if path.suffix.lower() not in ARRAY_SUFFIXES + H5_SUFFIXES:
            raise SimulatorError(f"{path}: not a sample file; the data folder holds .npy, .npz or .h5 files")
    if not files:
        raise SimulatorError(f"{root}: the data folder has no .npy, .npz or .h5 files")
    return files


def load_samples(folder: str | os.PathLike, inputs: Sequence[TensorSpec]) -> list[tuple[str, dict[str, np.ndarray]]]:
    """(file name, feeds) of every sample of ``folder``, in order."""
    return [(path.name, load_sample(path, inputs)) for path in sample_files(folder)]


def load_sample(path: Path, inputs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """The feeds one sample file holds for the model's ``inputs``."""
    limit = sample_element_cap((None,) if spec.shape is None else tuple(d if isinstance(d, int) else None
                                                                          for d in spec.shape) for spec in inputs)
    arrays = _read_h5(path, limit) if path.suffix.lower() in H5_SUFFIXES else _read_numpy(path, inputs, limit)
    _check_names(path, arrays, inputs)
    return {spec.name: _fit(path, spec, arrays[spec.name]) for spec in inputs}


def _read_numpy(path: Path, inputs: Sequence[TensorSpec], limit: int) -> dict[str, np.ndarray]:
    """The arrays of an .npz file by name, or the one array of an .npy file
    (for a single-input model), none of more than ``limit`` elements;
    pickled (object) data is refused, naming the file, since unpickling
    runs code."""
    try:
        loaded = load_arrays(path, limit)
    except ArrayFileError as exc:
        raise SimulatorError(f"{path}: cannot read it as numpy arrays: {exc}") from None
    if isinstance(loaded, dict):
        return loaded
    if len(inputs) != 1:
        raise SimulatorError(f"{path}: a .npy file holds one array, but the model has {len(inputs)} inputs "
                             f"{[i.name for i in inputs]}; use .npz or .h5 keyed by input name")
    return {inputs[0].name: loaded}


def _check_names(path: Path, arrays: Mapping[str, np.ndarray], inputs: Sequence[TensorSpec]) -> None:
    names = [spec.name for spec in inputs]
    missing = [n for n in names if n not in arrays]
    extra = sorted(set(arrays) - set(names))
    if missing or extra:
        raise SimulatorError(f"{path}: the model's inputs are {names}; the file "
                             + (f"lacks {missing}" if missing else "") + (" and " if missing and extra else "")
                             + (f"has arrays no input is named: {extra}" if extra else ""))


def _fit(path: Path, spec: TensorSpec, array: np.ndarray) -> np.ndarray:
    """``array`` with the input's shape and type (a missing batch axis of 1 added)."""
    array = np.asarray(array)
    if array.dtype.kind not in "biuf":
        raise SimulatorError(f"{path}: input {spec.name!r} holds {array.dtype} data, not numbers")
    if not spec.takes(array.shape) and spec.takes((1,) + array.shape):
        array = array[None]
    if not spec.takes(array.shape):
        raise SimulatorError(f"{path}: input {spec.name!r} has shape {list(array.shape)}; the model takes "
                             f"{spec.described()}")
    return np.ascontiguousarray(array, dtype=spec.dtype)


def _read_h5(path: Path, limit: int) -> dict[str, np.ndarray]:
    """The datasets at an HDF5 file's root by name, each of at most
    ``limit`` elements. Only data inside the file is read: external links,
    external storage and virtual datasets (which make h5py open other files
    by the names the sample gives) are refused."""
    try:
        import h5py
    except ImportError:
        raise SimulatorError(f"{path}: reading .h5 data needs h5py, which is not installed "
                             "(pip install 'tessera[simulator]', or pip install h5py)") from None
    try:
        check_regular(path, MAX_DATA_BYTES, "HDF5 file")
        with h5py.File(path, "r") as file:
            return {name: _h5_dataset(path, file, name, limit, h5py) for name in file
                    if isinstance(file.get(name, getlink=True), h5py.ExternalLink)
                    or isinstance(file.get(name), h5py.Dataset)}
    except FileError as exc:
        raise SimulatorError(str(exc)) from None
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:  # what h5py raises on a corrupt file
        raise SimulatorError(f"{path}: cannot read it as an HDF5 file: {exc}") from None


def _h5_dataset(path: Path, file, name: str, limit: int, h5py) -> np.ndarray:
    """One root dataset, checked before its data is read."""
    link = file.get(name, getlink=True)
    if isinstance(link, h5py.ExternalLink):
        raise SimulatorError(f"{path}: {name!r} is an external link to {link.filename!r}; sample data must be "
                             "inside the file")
    dataset = file[name]
    if dataset.external or dataset.is_virtual:
        kind = "external storage" if dataset.external else "a virtual dataset (mapped from other files)"
        raise SimulatorError(f"{path}: dataset {name!r} uses {kind}; sample data must be inside the file")
    if dataset.size > limit or dataset.size * dataset.dtype.itemsize > MAX_DATA_BYTES:
        raise SimulatorError(f"{path}: dataset {name!r} has shape {list(dataset.shape)} ({dataset.size} elements), "
                             f"more than the {limit} allowed for this model's inputs")
    return np.asarray(dataset[()])
