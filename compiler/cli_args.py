"""Argument helpers the ``tessera`` commands share (compiler/cli.py and
compiler/cli_device.py): NAME=VALUE pairs, input shapes, input files, the
top outputs printed."""
from __future__ import annotations

import math

import numpy as np

from runtime.array_files import ArrayFileError, load_arrays
from runtime.errors import TesseraError
from runtime.kernels.limits import MAX_ELEMENTS, MAX_RANK


def pair_arg(spec: str, flag: str) -> tuple[str, str]:
    name, sep, value = spec.rpartition("=")
    if not sep or not name:
        raise TesseraError(f"{flag} {spec!r} must look like NAME=VALUE")
    return name, value


def given_shapes(model, args) -> dict[str, list[int]]:
    """The input shapes of --shape, completed for `run` by the shapes of the
    --input arrays: a model with dynamic dims runs on the data it is given
    (--image, when given, sets the shapes instead)."""
    shapes = parse_shapes(args.shape)
    if getattr(args, "input", None) and args.image is None:
        from compiler.frontend import OnnxModel

        names = [v.name for v in OnnxModel(model).inputs]
        for name, array in input_files(args, names).items():
            shapes.setdefault(name, list(array.shape))
    return shapes


def parse_shapes(specs: list[str]) -> dict[str, list[int]]:
    """--shape NAME=D1xD2x..., each dim at least 1 and at most MAX_ELEMENTS
    elements in all, checked before any pass allocates."""
    shapes = {}
    for spec in specs:
        name, _, dims = spec.rpartition("=")
        try:
            shape = [int(d) for d in dims.lower().split("x")]
        except ValueError:
            shape = []
        if not name or not shape:
            raise TesseraError(f"--shape {spec!r} must look like NAME=1x3x224x224")
        if min(shape) < 1:
            raise TesseraError(f"--shape {spec!r}: every dim must be at least 1")
        if len(shape) > MAX_RANK:
            raise TesseraError(f"--shape {spec!r} has {len(shape)} dims, more than {MAX_RANK}")
        check_elements("--shape", spec, shape)
        shapes[name] = shape
    return shapes


def check_elements(option: str, spec: str, shape: list[int]) -> None:
    """Refuse a shape the user gave of more than MAX_ELEMENTS elements, before any pass allocates it."""
    if math.prod(shape) > MAX_ELEMENTS:
        raise TesseraError(f"{option} {spec!r} has {math.prod(shape)} elements, more than the limit of "
                           f"{MAX_ELEMENTS} (runtime.kernels.limits.MAX_ELEMENTS)")


def input_files(args, names: list[str]) -> dict[str, np.ndarray]:
    """--input NAME=FILE.npy (or just FILE.npy for a one-input model)."""
    files = {}
    for spec in args.input:
        name, _, path = spec.rpartition("=")
        if not name:
            if len(names) != 1:
                raise TesseraError(f"--input {spec!r}: the model has inputs {names}; write NAME=FILE.npy")
            name = names[0]
        try:
            array = load_arrays(path)  # headers checked before anything is allocated; never unpickled
        except ArrayFileError as exc:
            raise TesseraError(f"--input {spec!r}: {exc}") from None
        if isinstance(array, dict):
            raise TesseraError(f"--input {spec!r}: an .npz file; give one .npy file per input")
        files[name] = array
    return files


def print_top(name: str, value: np.ndarray, k: int) -> None:
    flat = value.reshape(-1)
    if flat.dtype.kind not in "fiu" or flat.size == 0:
        print(f"output {name}: {value.dtype}{list(value.shape)}")
        return
    top = np.argsort(-flat, kind="stable")[:k]
    listing = ", ".join(f"#{i}: {flat[i]:.4g}" for i in top)
    print(f"output {name} {value.dtype}{list(value.shape)}: top {len(top)}: {listing}")
