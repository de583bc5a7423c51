"""Where calibration inputs come from.

:func:`calibration_batches` turns a source into feeds dicts (input name ->
array of the input's shape and dtype, float32 unless the spec says
otherwise), one per calibration sample:

* a list, tuple or other iterable of arrays (single-input models) or of
  dicts input name -> array;
* a folder of ``.npy`` files (one array per sample, single-input models) or
  ``.npz`` files (one array per input name), read in name order;
* a folder of images (PNG, JPEG, BMP, PPM; read with Pillow), preprocessed
  as a PreprocessSpec says, by the pre-processing every runtime API uses
  (runtime/preprocess.py; PreprocessSpec is re-exported here);
* ``None``: synthetic data, with a :class:`CalibrationWarning`.

A sample may leave out a leading batch dimension of 1. Everything that can
be checked before running is checked when the batches are built (a missing
folder, Pillow absent); a bad file fails when it is read, naming the file.
"""
from __future__ import annotations

import itertools
import math
import operator
import os
import warnings
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np

from runtime.array_files import ArrayFileError, load_arrays
from runtime.errors import TesseraError
from runtime.files import MAX_DATA_BYTES, FileError, open_regular
from runtime.kernels.limits import MAX_ELEMENTS
from runtime.preprocess import PreprocessError, PreprocessSpec, image_input

SYNTHETIC_COUNT = 8
"""Samples of synthetic data when no count is given."""
ARRAY_SUFFIXES = (".npy", ".npz")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm")


class CalibrationDataError(TesseraError):
    """Calibration inputs are missing, unreadable or do not fit the model."""


class CalibrationWarning(UserWarning):
    """Calibration ran on data that may not reflect what the model will see."""


class CalibrationBatches:
    """The feeds dicts of a source, read lazily; iterable again for
    re-readable sources (sequences, folders, synthetic data)."""

    def __init__(self, samples: Callable[[], Iterator[tuple[str, dict]]], specs: dict, count: int | None,
                 total: int | None, preprocess: PreprocessSpec | None = None):
        self._samples, self._specs, self._count, self.total = samples, specs, count, total
        self.preprocess = preprocess
        """The pre-processing images were read with (None: not images)."""

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for where, sample in itertools.islice(self._samples(), self._count):
            yield _feeds(sample, self._specs, where)

    def __length_hint__(self) -> int:
        return self.total or 0


def calibration_batches(source, input_specs: Mapping, *, count: int | None = None,
                        preprocess: PreprocessSpec | None = None, seed: int = 0) -> CalibrationBatches:
    """The feeds dicts of ``source`` for a model whose inputs ``input_specs``
    describes (input name -> shape, or -> (shape, dtype); None dims are
    free): at most ``count`` of them (``SYNTHETIC_COUNT`` for synthetic
    data). ``preprocess`` applies to image folders (default: RGB in [0, 1],
    NCHW); ``seed`` to synthetic data."""
    specs = _specs(input_specs)
    if count is not None and (not isinstance(count, (int, np.integer)) or count < 1):
        raise CalibrationDataError(f"the calibration count must be a positive integer, got {count!r}")
    if preprocess is not None and not isinstance(preprocess, PreprocessSpec):
        raise CalibrationDataError(f"preprocess must be a PreprocessSpec, got a {type(preprocess).__name__}")
    if source is None:
        _reject_preprocess(preprocess, "synthetic data")
        return _synthetic_batches(specs, SYNTHETIC_COUNT if count is None else int(count), seed)
    if isinstance(source, (str, os.PathLike)):
        return _folder(Path(source), specs, count, preprocess)
    if isinstance(source, (np.ndarray, Mapping)) or not isinstance(source, Iterable):
        raise CalibrationDataError(f"calibration data must be a list of samples, a folder or None, got a "
                                   f"{type(source).__name__} (wrap a single sample in a list)")
    _reject_preprocess(preprocess, "in-memory samples")
    known = operator.length_hint(source, 0) or None
    return CalibrationBatches(lambda: _items(source, specs), specs, count, _at_most(known, count))


def context_batches(graph, ctx, count: int | None = None) -> CalibrationBatches:
    """The calibration inputs of ``graph`` as the PassContext ``ctx``'s
    options give them: ``quant.calibration_data`` read with
    ``quant.preprocess``, at most ``count`` (default
    ``quant.calibration_count``); read anew on each iteration. Every pass
    that measures on calibration inputs reads them here, so all see what
    calibration sees."""
    specs = {v.name: (v.type.shape, v.type.dtype) for v in graph.inputs}
    return calibration_batches(ctx.option("quant.calibration_data"), specs,
                               count=ctx.option("quant.calibration_count") if count is None else count,
                               preprocess=ctx.option("quant.preprocess"))


def preprocess_image(pixels: np.ndarray, shape, spec: PreprocessSpec, where: str = "image") -> np.ndarray:
    """An H x W x C uint8 image (C = 1 or 3, RGB) as a float32 input of
    ``shape`` (rank 4, batch 1 or free; free height/width keep the image's),
    by the runtime's one pre-processing (runtime.preprocess.image_input)."""
    _, channels, height, width = _image_dims(shape, spec.layout, where)
    x = np.asarray(pixels)
    if (x.shape[2] if x.ndim == 3 else 1) != channels:
        raise CalibrationDataError(f"{where}: the image has {x.shape[2] if x.ndim == 3 else 1} channel(s), the "
                                   f"input takes {channels}")
    try:
        return image_input(x, spec, height, width)[None]
    except PreprocessError as exc:
        raise CalibrationDataError(f"{where}: {exc}") from None


def _specs(input_specs: Mapping) -> dict[str, tuple[tuple, np.dtype]]:
    """name -> (shape with None for free dims, dtype) from either spec form."""
    if not isinstance(input_specs, Mapping) or not input_specs:
        raise CalibrationDataError(f"input specs must be a non-empty mapping name -> shape, got {input_specs!r}")
    specs = {}
    for name, spec in input_specs.items():
        has_dtype = isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], (tuple, list))
        shape, dtype = (spec if has_dtype else (spec, np.float32))
        specs[name] = (tuple(d if isinstance(d, (int, np.integer)) and d >= 0 else None for d in shape),
                       np.dtype(dtype))
    return specs


def _reject_preprocess(preprocess, what: str) -> None:
    if preprocess is not None:
        raise CalibrationDataError(f"preprocess applies to image folders only, not to {what}")


def _at_most(known: int | None, count: int | None) -> int | None:
    if known is None or count is None:
        return known if count is None else count
    return min(known, count)


def _synthetic_batches(specs: dict, count: int, seed: int) -> CalibrationBatches:
    """``count`` synthetic samples, announced with a CalibrationWarning."""
    shapes = {name: _concrete(name, shape, dtype) for name, (shape, dtype) in specs.items()}
    warnings.warn(f"calibrating on {count} synthetic (random normal) inputs: the quantization ranges will not "
                  "reflect real data and accuracy may suffer; pass calibration data (a list of arrays, a folder "
                  "of .npy files or of images)", CalibrationWarning, stacklevel=3)
    return CalibrationBatches(lambda: _synthetic(shapes, count, seed), specs, count, count)


def _synthetic(shapes: dict, count: int, seed: int) -> Iterator[tuple[str, dict]]:
    """Seeded standard normal samples: the inputs of most exported vision
    models are mean/std-normalised, roughly N(0, 1) per channel."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        yield f"synthetic sample {index}", {name: rng.standard_normal(shape, np.float32)
                                            for name, shape in shapes.items()}


def _concrete(name: str, shape: tuple, dtype: np.dtype) -> tuple[int, ...]:
    """The shape of a synthetic sample: a free batch dimension is 1."""
    if dtype.kind != "f":
        raise CalibrationDataError(f"input {name!r} has dtype {dtype}: synthetic data is only made for float "
                                   "inputs; pass calibration data")
    free = [axis for axis, d in enumerate(shape) if d is None and axis > 0]
    if free:
        raise CalibrationDataError(f"input {name!r} has free dimension(s) {free} in shape {_fmt(shape)}: "
                                   "synthetic data needs static shapes; pass calibration data")
    return tuple(1 if d is None else d for d in shape)


def _items(source: Iterable, specs: dict) -> Iterator[tuple[str, dict]]:
    """(where, sample) of each item of an in-memory source."""
    names = list(specs)
    for index, item in enumerate(source):
        where = f"calibration sample {index}"
        if isinstance(item, Mapping):
            yield where, dict(item)
        else:
            yield where, {_single_input(names, where, "an array"): item}


def _single_input(names: list[str], where: str, what: str) -> str:
    if len(names) != 1:
        raise CalibrationDataError(f"{where} is {what}, but the model has inputs {names}: give one array per "
                                   "input name (a dict, or an .npz file)")
    return names[0]


def _folder(path: Path, specs: dict, count: int | None, preprocess: PreprocessSpec | None) -> CalibrationBatches:
    """The batches of a folder of array files or of images."""
    files = _listing(path)
    arrays = [f for f in files if f.suffix.lower() in ARRAY_SUFFIXES]
    images = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
    if arrays and images:
        raise CalibrationDataError(f"calibration folder {path} mixes array files ({arrays[0].name}, ...) and "
                                   f"images ({images[0].name}, ...): keep one kind")
    if not arrays and not images:
        raise CalibrationDataError(f"calibration folder {path} has no {'/'.join(ARRAY_SUFFIXES)} files or "
                                   f"images ({'/'.join(IMAGE_SUFFIXES)})")
    total = _at_most(len(arrays or images), count)
    if arrays:
        _reject_preprocess(preprocess, f"array files ({path})")
        return CalibrationBatches(lambda: ((f"file {f}", _read_arrays(f, specs)) for f in arrays),
                                  specs, count, total)
    image_module = _pillow()
    name = _single_input(list(specs), f"calibration folder {path}", "a folder of images")
    shape = specs[name][0]
    spec = preprocess or PreprocessSpec()
    _image_dims(shape, spec.layout, f"input {name!r}")
    return CalibrationBatches(lambda: ((f"file {f}", {name: _read_image(image_module, f, shape, spec)})
                                       for f in images), specs, count, total, spec)


def _listing(path: Path) -> list[Path]:
    """The visible files of a folder, sorted by name."""
    if not path.exists():
        raise CalibrationDataError(f"calibration data folder {path} does not exist")
    if not path.is_dir():
        raise CalibrationDataError(f"calibration data {path} is not a folder (give a folder of .npy files or "
                                   "images, or a list of arrays)")
    return sorted((f for f in path.iterdir() if not f.is_dir() and not f.name.startswith(".")), key=lambda f: f.name)


def _read_arrays(path: Path, specs: dict) -> dict[str, np.ndarray]:
    """The sample an .npy (one array) or .npz (input name -> array) file
    holds; no array may hold more elements than the largest input."""
    names = list(specs)
    try:
        loaded = load_arrays(path, sample_element_cap(shape for shape, _ in specs.values()))
    except ArrayFileError as exc:
        raise CalibrationDataError(f"cannot read calibration file {path}: {exc}") from None
    return loaded if isinstance(loaded, dict) else {_single_input(names, f"file {path}", "a single array"): loaded}


def sample_element_cap(shapes: Iterable[tuple]) -> int:
    """The most elements one array of a data file for inputs of ``shapes``
    may hold before it is read: four times the largest input (at least 2^20;
    a dynamic dim counts as MAX_ELEMENTS), so a file that would expand far
    beyond any input is refused by its header, and a near miss still reaches
    the shape check with its exact message."""
    sizes = [MAX_ELEMENTS if None in shape else math.prod(shape) for shape in shapes]
    return min(max(4 * max(sizes, default=MAX_ELEMENTS), 1 << 20), MAX_ELEMENTS)


def _pillow():
    """PIL.Image, or an error saying image folders need Pillow."""
    try:
        from PIL import Image
    except ImportError:
        raise CalibrationDataError("reading a folder of images needs Pillow (pip install pillow); without it, "
                                   "save the preprocessed samples as .npy files") from None
    return Image


def _read_image(image_module, path: Path, shape: tuple, spec: PreprocessSpec) -> np.ndarray:
    channels = _image_dims(shape, spec.layout, f"file {path}")[1]
    try:
        with open_regular(path, MAX_DATA_BYTES, "image") as handle, image_module.open(handle) as image:
            pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    except FileError as exc:
        raise CalibrationDataError(f"cannot read image {path}: {exc.cause}") from None
    except (OSError, ValueError, SyntaxError, MemoryError, image_module.DecompressionBombError) as exc:
        # Pillow: SyntaxError on a broken PNG chunk; DecompressionBombError past Image.MAX_IMAGE_PIXELS x 2
        raise CalibrationDataError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from None
    return preprocess_image(pixels, shape, spec, f"file {path}")


def _image_dims(shape: tuple, layout: str, where: str) -> tuple:
    """(batch, channels, height, width) of an image input's shape in
    ``layout``; channels must be 1 or 3 and the batch 1 (or free)."""
    if len(shape) != 4:
        raise CalibrationDataError(f"{where}: an image input must have rank 4, the input has shape {_fmt(shape)}")
    batch, channels, height, width = shape if layout == "NCHW" else (shape[0], shape[3], shape[1], shape[2])
    if channels not in (1, 3):
        other = "NHWC" if layout == "NCHW" else "NCHW"
        raise CalibrationDataError(f"{where}: with layout {layout} the input {_fmt(shape)} has {channels} "
                                   f"channels, not 1 or 3 (is the layout {other}?)")
    if batch not in (1, None):
        raise CalibrationDataError(f"{where}: an image fills a batch of 1, the input has shape {_fmt(shape)}")
    return batch, channels, height, width


def _feeds(sample: dict, specs: dict, where: str) -> dict[str, np.ndarray]:
    """The feeds dict of one sample, each array checked against its input."""
    missing = [name for name in specs if name not in sample]
    unknown = [name for name in sample if name not in specs]
    if missing or unknown:
        raise CalibrationDataError(f"{where}: missing input(s) {missing}, unknown input(s) {unknown}; "
                                   f"the inputs are {list(specs)}")
    return {name: _fit(sample[name], *specs[name], where, name) for name in specs}


def _fit(array, shape: tuple, dtype: np.dtype, where: str, name: str) -> np.ndarray:
    """``array`` in the input's dtype and shape (a leading batch
    dimension of 1 added if missing); errors name the sample."""
    array = np.asarray(array)
    if array.dtype.kind not in "biuf" or not np.can_cast(array.dtype, dtype, "same_kind"):
        raise CalibrationDataError(f"{where}: input {name!r} takes {dtype}, got an array of {array.dtype}")
    if array.ndim == len(shape) - 1 and shape and shape[0] in (1, None):
        array = array[None]
    if array.ndim != len(shape) or any(d is not None and d != a for d, a in zip(shape, array.shape)):
        raise CalibrationDataError(f"{where}: input {name!r} has shape {_fmt(shape)}, got an array of shape "
                                   f"{list(array.shape)}")
    return np.ascontiguousarray(array, dtype)


def _fmt(shape) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"
