"""Reading the application's inputs: the image list, one image decoded and
pre-processed into the binary's input layout, the labels and class-name
files, and the host-side FC weights (--fcweights). Pillow is imported only
when an image is read, so the rest of the runtime never needs it."""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime import preprocess
from runtime.errors import TesseraError
from runtime.files import MAX_DATA_BYTES, MAX_TEXT_BYTES, FileError, check_regular, open_regular, read_regular

SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
"""File name endings taken from a folder (any other file is ignored)."""


class InferError(TesseraError):
    """A fatal problem with the application's inputs (the message names it)."""


class ImageError(TesseraError):
    """One image that cannot be read; the run skips it and counts it."""


@dataclass(frozen=True)
class Settings:
    """The binary's image input, its size and channels, and how an image
    becomes it: the one pre-processing record (runtime.preprocess.PreprocessSpec)."""

    height: int
    width: int
    channels: int
    spec: preprocess.PreprocessSpec


def list_images(path: str) -> list[Path]:
    """``path`` itself when a regular file, else the images of the folder
    (regular files only), sorted by name."""
    where = Path(path)
    if not where.is_dir():
        try:
            check_regular(where, MAX_DATA_BYTES, "image")
        except FileError as exc:
            raise InferError(f"--img_path {path!r}: {exc.cause}") from None
        return [where]
    files = sorted(p for p in where.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise InferError(f"--img_path {path!r} holds no image files (looked for {', '.join(sorted(SUFFIXES))})")
    return files


def settings_for(inshape: str, layout: str | None, mean, std, recorded: dict | None = None) -> Settings:
    """The pre-processing for the binary's input shape ("1x3x32x32", from
    GetInfo('inshapes')): what the options say (``mean``/``std`` in RGB
    order), else what the compiler recorded (GetInfo('preprocess')), else
    layout NCHW when the channel axis (1 or 3 values) comes first, NHWC when
    last, RGB on the [0, 1] scale with mean 0 and std 1."""
    dims = [int(d) for d in inshape.split(";")[0].split("x")]
    if len(dims) != 4:
        raise InferError(f"the binary's input has shape {dims}; tessera-infer needs an image input "
                         "[N, C, H, W] or [N, H, W, C]")
    recorded = recorded or {}
    layout = layout or recorded.get("layout")
    if layout is None:
        layout = "NCHW" if dims[1] in (1, 3) else "NHWC" if dims[3] in (1, 3) else None
        if layout is None:
            raise InferError(f"cannot tell the layout of the binary's input {dims}; give --layout NCHW or NHWC")
    channels, height, width = (dims[1], dims[2], dims[3]) if layout == "NCHW" else (dims[3], dims[1], dims[2])
    if channels not in (1, 3):
        raise InferError(f"the binary's input {dims} in layout {layout} has {channels} channels; images give 1 or 3")
    order, scale = recorded.get("channel_order", "RGB"), float(recorded.get("scale", 1 / 255))

    def per_channel(name: str, given, default: float) -> tuple[float, ...]:
        if given is not None:  # on the [0, 1] scale: in units of pixel * scale
            values = tuple(v * 255.0 * scale for v in _per_channel(name, given, channels, default))
            return values[::-1] if order == "BGR" else values
        if name[2:] in recorded:
            values = tuple(recorded[name[2:]])
            return values * channels if len(values) == 1 else _per_channel(f"the binary's recorded {name[2:]}",
                                                                          values, channels, default)
        return (default,) * channels

    mean, std = per_channel("--mean", mean, 0.0), per_channel("--std", std, 1.0)
    if any(s == 0 for s in std):
        raise InferError(f"--std {','.join(map(str, std))}: a standard deviation of 0")
    try:
        return Settings(height, width, channels, preprocess.PreprocessSpec(layout, order, scale, mean, std))
    except preprocess.PreprocessError as exc:
        raise InferError(str(exc)) from None


def _per_channel(name: str, value, channels: int, default: float) -> tuple[float, ...]:
    if value is None:
        return (default,) * channels
    if len(value) == 3 and channels == 1:
        return (float(np.dot(value, (0.299, 0.587, 0.114))),)
    if len(value) != channels:
        raise InferError(f"{name} has {len(value)} values; the binary's input has {channels} channel(s)")
    return tuple(value)


def load_image(source: Path | tuple[str, bytes], settings: Settings) -> np.ndarray:
    """One image as the model's input for one image (float32, the binary's
    layout, no batch axis): ``source`` a file, or a file's name and bytes
    (read on another host); decoded by Pillow to the channel count, then
    pre-processed as calibration pre-processes (runtime.preprocess.image_input).
    ImageError when it cannot be read."""
    pil = _pillow()
    if isinstance(source, Path):
        name, opened = source.name, _open_image(source)
    else:
        name, opened = source[0], io.BytesIO(source[1])
    try:
        with opened, pil.Image.open(opened) as image:
            pixels = np.asarray(image.convert("L" if settings.channels == 1 else "RGB"), np.float32)
    except (OSError, ValueError, SyntaxError, MemoryError, pil.Image.DecompressionBombError) as exc:
        # Pillow raises SyntaxError on a broken PNG chunk, MemoryError reading a chunk of the length a file
        # claims, and UnidentifiedImageError with a message that shows the file object, not its name
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, pil.Image.UnidentifiedImageError):
            reason = "not an image format Pillow reads"
        raise ImageError(f"{name}: {reason}") from None
    try:
        return preprocess.image_input(pixels, settings.spec, settings.height, settings.width)
    except preprocess.PreprocessError as exc:
        raise ImageError(f"{name}: {exc}") from None


def _open_image(path: Path) -> io.BufferedReader:
    """The image file opened if it is a regular file Tessera can afford (else ImageError: skipped)."""
    try:
        return open_regular(path, MAX_DATA_BYTES, "image")
    except FileError as exc:
        raise ImageError(f"{path.name}: {exc.cause}") from None


def _pillow():
    try:
        import PIL.Image
    except ImportError as exc:
        raise InferError(f"reading images needs Pillow ({exc}); install it with `pip install Pillow`") from None
    return PIL


def read_labels(path: str, names: set[str]) -> tuple[dict[str, int | str], list[str]]:
    """The labels of ``path`` for the files in ``names``, read as the
    original reads them (``pd.read_csv(sep=' ', header=None, index_col=0)``,
    api-notes 6.2): ``<filename> <label>`` lines (any blank between; the file
    name matched without its folder), no header, the last line of a name
    winning; a label that is a whole number (``3``, ``3.0``) is a class
    index, any other is kept as text and, as in the original, counts but
    never matches a prediction. Also the names it lists that are not among
    ``names``."""
    labels: dict[str, int | str] = {}
    missing: list[str] = []
    for number, line in enumerate(_text(path, "--labels").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise InferError(f"--labels {path!r} line {number}: expected '<filename> <label>', got "
                             f"{line.strip()!r}")
        name = os.path.basename(fields[0])
        if name in names:
            labels[name] = _label(fields[1])
        else:
            missing.append(name)
    return labels, missing


def _label(text: str) -> int | str:
    """A label as pandas parses it: a whole number is a class index."""
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if np.isfinite(value) and value == int(value) else text


def read_classes(path: str) -> list[str]:
    """One class name a line (line i names class i)."""
    return [line.strip() for line in _text(path, "--classes").splitlines()]


def _text(path: str, option: str) -> str:
    """The UTF-8 text of a regular file of at most MAX_TEXT_BYTES (an InferError naming ``option`` else)."""
    try:
        return read_regular(path, MAX_TEXT_BYTES, option[2:] + " file").decode("utf-8")
    except FileError as exc:
        raise InferError(f"{option} {path!r}: {exc.cause}") from None
    except UnicodeDecodeError as exc:
        raise InferError(f"{option} {path!r} is not UTF-8 text: {exc}") from None


def read_fc_weights(path: str, features: int) -> np.ndarray:
    """The host-side FC layer's weights, [classes, features] float32, from a
    CSV (one row per class, or one flat row, int8 codes or float values),
    checked against the binary's ``features`` output values per image."""
    text = _text(path, "--fcweights")
    if not text.strip():
        raise InferError(f"--fcweights {path!r} is empty")
    try:
        values = np.genfromtxt(io.StringIO(text), delimiter=",", dtype=np.float32, ndmin=2)
    except ValueError as exc:
        raise InferError(f"--fcweights {path!r} cannot be read as CSV: {exc}") from None
    if values.size and np.isnan(values[:, -1]).all():
        values = values[:, :-1]
    if values.size == 0 or np.isnan(values).any():
        raise InferError(f"--fcweights {path!r}: empty, or holds values that are not numbers")
    if values.shape[0] == 1 and values.size % features == 0:
        values = values.reshape(-1, features)
    if values.shape[1] != features:
        raise InferError(f"--fcweights {path!r} has shape {list(values.shape)}; the binary's output has "
                         f"{features} values per image, so the FC weights must be [classes, {features}]")
    return values
