"""Image pre-processing the way an accelerator's input stage does it: decode
a camera/display pixel format, crop, resize to the model's input, pad, and
normalise, giving a float32 planar image the model's input quantization then
maps to its grid.

Any API can use it (kp's hardware pre-processing is one; docs/kp.md). The
steps, in order:

* decode (:func:`decode`): RGB565 (little-endian 16-bit words, red in the
  top 5 bits, blue in the low 5; each channel widened by a left shift, as
  OpenCV's BGR5652BGR does), RGBA8888 (alpha dropped), RAW8 (grey), packed
  YUV 4:2:2 in any of its byte orders (YUYV, YVYU, UYVY, VYUY) and planar
  YUV 4:2:0 (I420), both converted with full-range BT.601 (JPEG) equations;
* crop (:func:`crop`) a box of the decoded image;
* fit (:func:`fit`) to the model's height and width: with resizing, bilinear
  (the ONNX Resize kernel, half-pixel centres) keeping the aspect ratio when
  padding is asked for, stretching otherwise; padding puts the zero bands at
  the right and bottom ("corner") or shares them between both sides
  ("symmetric"); the padding value is 0 after normalisation;
* normalise (:func:`normalize`) the 0..255 pixel values (:data:`NORMALIZE`).

A model's own image input is made by :func:`image_input` as one
:class:`PreprocessSpec` says (channel order, scale, mean and std, layout):
the one pre-processing of calibration images (passes/quant/calibration_data.py)
and of the images the runtime's APIs feed (tessera-infer), recorded in the
binary by the compiler and read back from it with :meth:`PreprocessSpec.from_metadata`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from runtime.errors import TesseraError
from runtime.kernels import get_kernel

MIN_SIDE = 4
"""The smallest image (and crop) width and height accepted, in pixels."""

YUV422_ORDERS = {"yuyv": "YUYV", "yvyu": "YVYU", "uyvy": "UYVY", "vyuy": "VYUY"}
"""Packed 4:2:2 formats: the byte order of each two-pixel group."""
FORMATS = ("rgb565", "rgba8888", "raw8", "yuv420", *YUV422_ORDERS)
BYTES_PER_PIXEL = {"rgb565": 2.0, "rgba8888": 4.0, "raw8": 1.0, "yuv420": 1.5, **dict.fromkeys(YUV422_ORDERS, 2.0)}
EVEN_WIDTH = frozenset({"rgb565", "yuv420", *YUV422_ORDERS})
"""Formats whose width must be even (two pixels share a word or chroma pair)."""

NORMALIZE = {
    "none": (1.0, 0.0),
    "kneron": (1 / 256, -0.5),
    "tensorflow": (1 / 127.5, -1.0),
    "yolo": (1 / 255, 0.0),
    "sub128": (1.0, -128.0),
    "div2": (0.5, 0.0),
    "sub128_div2": (0.5, -64.0),
}
"""Normalisation modes: value = pixel * factor + offset (pixel in 0..255)."""
PADDINGS = ("none", "corner", "symmetric")
LAYOUTS = ("NCHW", "NHWC")
CHANNEL_ORDERS = ("RGB", "BGR")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""torchvision's ImageNet normalisation, RGB on the [0, 1] scale."""
RECORD = "preprocess"
"""The key of a binary's metadata that holds the :class:`PreprocessSpec` it was calibrated with."""


class PreprocessError(TesseraError):
    """An image the pre-processing cannot take (the message says why)."""


class ImageTooSmall(PreprocessError):
    """The image or a crop box is narrower or lower than MIN_SIDE pixels."""


class OddWidth(PreprocessError):
    """A format that packs two pixels together was given an odd width."""


class OddHeight(PreprocessError):
    """YUV 4:2:0 was given an odd height."""


class BufferSizeError(PreprocessError):
    """The buffer does not hold width x height pixels of the format."""


class CropOutside(PreprocessError):
    """A crop box reaches outside the image."""


class SizeMismatch(PreprocessError):
    """Without resizing, the image does not fit the model's input."""


@dataclass(frozen=True)
class PreprocessSpec:
    """How an image becomes a model input: channels in ``channel_order``
    (images are read as RGB), ``(pixel * scale - mean) / std`` per channel
    (mean and std in the model's channel order, after scaling; one value
    serves every channel), laid out NCHW or NHWC. A binary records it
    (:meth:`to_metadata`) so every API pre-processes as calibration did."""

    layout: str = "NCHW"
    channel_order: str = "RGB"
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise PreprocessError(f"PreprocessSpec.layout must be 'NCHW' or 'NHWC', got {self.layout!r}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise PreprocessError(f"PreprocessSpec.channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")
        if not np.isfinite(self.scale):
            raise PreprocessError(f"PreprocessSpec.scale must be finite, got {self.scale!r}")
        if not np.all(np.isfinite(self.std)) or np.any(np.asarray(self.std, np.float64) == 0):
            raise PreprocessError(f"PreprocessSpec.std must be finite and non-zero, got {self.std!r}")

    @classmethod
    def imagenet(cls, layout: str = "NCHW") -> PreprocessSpec:
        """torchvision's ImageNet normalisation: RGB in [0, 1], then mean/std."""
        return cls(layout, "RGB", 1 / 255, IMAGENET_MEAN, IMAGENET_STD)

    def to_metadata(self) -> dict:
        """The record a compiled binary keeps (its metadata's ``preprocess``)."""
        return {"layout": self.layout, "channel_order": self.channel_order, "scale": float(self.scale),
                "mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_metadata(cls, metadata: dict) -> PreprocessSpec | None:
        """The spec a binary's ``metadata`` records (None if none), checked
        field by field: a binary is untrusted input."""
        record = metadata.get(RECORD)
        if record is None:
            return None
        where = f"the binary's META.metadata.{RECORD}"
        if not isinstance(record, dict):
            raise PreprocessError(f"{where} must be an object, got {type(record).__name__}")
        if record.get("layout") not in LAYOUTS or record.get("channel_order") not in CHANNEL_ORDERS:
            raise PreprocessError(f"{where} needs layout NCHW or NHWC and channel_order RGB or BGR, got "
                                  f"{record.get('layout')!r:.20} and {record.get('channel_order')!r:.20}")
        scale = record.get("scale")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
            raise PreprocessError(f"{where}.scale must be a finite number, got {scale!r:.40}")
        mean, std = (_recorded_numbers(record.get(key), f"{where}.{key}") for key in ("mean", "std"))
        if 0 in std:
            raise PreprocessError(f"{where}.std holds a 0")
        return cls(record["layout"], record["channel_order"], float(scale), mean, std)

    def per_channel(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) as float32 arrays of ``channels`` values."""
        return _per_channel(self.mean, channels, "mean"), _per_channel(self.std, channels, "std")


def _recorded_numbers(values, where: str) -> tuple[float, ...]:
    if (not isinstance(values, list) or not 1 <= len(values) <= 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)):
        raise PreprocessError(f"{where} must be 1 to 3 finite numbers, got {values!r:.80}")
    return tuple(float(v) for v in values)


def _per_channel(values, channels: int, what: str) -> np.ndarray:
    values = np.asarray(values, np.float32).reshape(-1)
    if values.size == 1:
        return np.repeat(values, channels)
    if values.size != channels:
        raise PreprocessError(f"PreprocessSpec.{what} has {values.size} values for {channels} channel(s)")
    return values


def image_input(pixels: np.ndarray, spec: PreprocessSpec, height: int | None = None, width: int | None = None
                ) -> np.ndarray:
    """An [H, W, C] (or [H, W]) image of 0..255 RGB or grey values as one
    model input, float32 without a batch axis: channels in the spec's
    order, resized bilinear (:func:`fit`, the Resize kernel) to ``height`` x
    ``width`` (None: the image's own), scaled and normalised, in the spec's
    layout. Calibration and every runtime API make their inputs with it."""
    image = np.asarray(pixels, np.float32)
    if image.ndim == 2:
        image = image[:, :, None]
    planar, _ = fit(image, height or image.shape[0], width or image.shape[1], resize=True, padding="none")
    if spec.channel_order == "BGR":
        planar = planar[::-1]
    mean, std = spec.per_channel(planar.shape[0])
    planar = (planar * np.float32(spec.scale) - mean[:, None, None]) / std[:, None, None]
    return np.ascontiguousarray(planar if spec.layout == "NCHW" else planar.transpose(1, 2, 0), np.float32)


@dataclass(frozen=True)
class Geometry:
    """Where the image went in the model's input: its size after resizing
    and the padding on each side (height + top + bottom = model height)."""

    resized_width: int
    resized_height: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int


def decode(buffer, width: int, height: int, fmt: str) -> np.ndarray:
    """The pixels of ``buffer`` (bytes or a uint8 array) as float32 [height,
    width, 3] RGB or, for raw8, [height, width, 1] grey, in 0..255."""
    if fmt not in FORMATS:
        raise PreprocessError(f"image format {fmt!r} is not one of {list(FORMATS)}")
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageTooSmall(f"image of {width}x{height} pixels: width and height must be at least {MIN_SIDE}")
    if fmt in EVEN_WIDTH and width % 2:
        raise OddWidth(f"{fmt} image of width {width}: the width must be even")
    if fmt == "yuv420" and height % 2:
        raise OddHeight(f"yuv420 image of height {height}: the height must be even")
    data = np.frombuffer(buffer, np.uint8) if isinstance(buffer, (bytes, bytearray, memoryview)) \
        else np.ascontiguousarray(buffer, np.uint8).reshape(-1)
    expected = int(width * height * BYTES_PER_PIXEL[fmt])
    if data.size != expected:
        raise BufferSizeError(f"a {width}x{height} {fmt} image is {expected} bytes, the buffer holds {data.size}")
    if fmt == "rgb565":
        return _rgb565(data.view("<u2").reshape(height, width))
    if fmt == "rgba8888":
        return data.reshape(height, width, 4)[:, :, :3].astype(np.float32)
    if fmt == "raw8":
        return data.reshape(height, width, 1).astype(np.float32)
    if fmt == "yuv420":
        return _yuv420(data, width, height)
    return _yuv422(data.reshape(height, width // 2, 4), YUV422_ORDERS[fmt])


def _rgb565(words: np.ndarray) -> np.ndarray:
    red, green, blue = (words >> 11) & 31, (words >> 5) & 63, words & 31
    return np.stack([red << 3, green << 2, blue << 3], axis=-1).astype(np.float32)


def _yuv422(groups: np.ndarray, order: str) -> np.ndarray:
    """[height, width/2, 4] byte groups (two pixels each) -> RGB."""
    at = {c: i for i, c in enumerate(order)}
    luma = np.empty(groups.shape[:2] + (2,), np.float32)
    ys = [i for i, c in enumerate(order) if c == "Y"]
    luma[..., 0], luma[..., 1] = groups[..., ys[0]], groups[..., ys[1]]
    luma = luma.reshape(groups.shape[0], -1)
    u = np.repeat(groups[..., at["U"]].astype(np.float32), 2, axis=1)
    v = np.repeat(groups[..., at["V"]].astype(np.float32), 2, axis=1)
    return _bt601(luma, u, v)


def _yuv420(data: np.ndarray, width: int, height: int) -> np.ndarray:
    """I420: the Y plane, then U and V at half resolution both ways."""
    luma = data[:width * height].reshape(height, width).astype(np.float32)
    quarter = width * height // 4
    chroma = [data[width * height + i * quarter:width * height + (i + 1) * quarter].reshape(height // 2, width // 2)
              for i in range(2)]
    u, v = (np.repeat(np.repeat(c.astype(np.float32), 2, axis=0), 2, axis=1) for c in chroma)
    return _bt601(luma, u, v)


def _bt601(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Full-range BT.601 YCbCr -> RGB in 0..255 (rounded, as 8-bit hardware gives)."""
    u, v = u - 128.0, v - 128.0
    rgb = np.stack([y + 1.402 * v, y - 0.344136 * u - 0.714136 * v, y + 1.772 * u], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.float32)


def crop(image: np.ndarray, x: int, y: int, width: int, height: int) -> np.ndarray:
    """The box of ``image`` ([H, W, C]) at column ``x``, row ``y``."""
    rows, cols = image.shape[:2]
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageTooSmall(f"crop box of {width}x{height} pixels: width and height must be at least {MIN_SIDE}")
    if x < 0 or y < 0 or x + width > cols or y + height > rows:
        raise CropOutside(f"crop box ({x}, {y}, {width}x{height}) is outside the {cols}x{rows} image")
    return image[y:y + height, x:x + width]


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """``image`` ([H, W, 1 or 3]) with the model's channel count: grey
    repeated to RGB, RGB to grey by BT.601 luma."""
    have = image.shape[-1]
    if have == channels:
        return image
    if channels == 3 and have == 1:
        return np.repeat(image, 3, axis=-1)
    if channels == 1 and have == 3:
        return image @ np.array([[0.299], [0.587], [0.114]], np.float32)
    raise PreprocessError(f"cannot make a {channels}-channel model input from a {have}-channel image")


def fit(image: np.ndarray, height: int, width: int, resize: bool = True, padding: str = "corner"
        ) -> tuple[np.ndarray, Geometry]:
    """``image`` ([H, W, C]) as a planar [C, height, width] float32 array of
    the model's size, with where it went; the padding is NaN here, filled by
    :func:`normalize`."""
    if padding not in PADDINGS:
        raise PreprocessError(f"padding mode {padding!r} is not one of {list(PADDINGS)}")
    rows, cols = image.shape[:2]
    planar = np.ascontiguousarray(image.transpose(2, 0, 1), np.float32)
    if resize:
        if padding == "none":
            new_rows, new_cols = height, width
        else:
            ratio = min(height / rows, width / cols)
            new_rows, new_cols = (max(1, min(limit, round(n * ratio))) for n, limit in ((rows, height),
                                                                                       (cols, width)))
        planar = _resize(planar, new_rows, new_cols)
    elif rows > height or cols > width or (padding == "none" and (rows, cols) != (height, width)):
        raise SizeMismatch(f"the {cols}x{rows} image is not the model's {width}x{height} input and resizing is off"
                           + ("" if padding != "none" else " (nor padding)"))
    rows, cols = planar.shape[1:]
    top, left = ((height - rows) // 2, (width - cols) // 2) if padding == "symmetric" else (0, 0)
    out = np.full((planar.shape[0], height, width), np.nan, np.float32)
    out[:, top:top + rows, left:left + cols] = planar
    return out, Geometry(cols, rows, top, height - rows - top, left, width - cols - left)


def _resize(planar: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Bilinear resize of [C, H, W] through the ONNX Resize kernel."""
    if planar.shape[1:] == (rows, cols):
        return planar
    attrs = {"mode": "linear", "coordinate_transformation_mode": "half_pixel", "nearest_mode": "round_prefer_floor",
             "cubic_coeff_a": -0.75, "exclude_outside": 0, "extrapolation_value": 0.0, "antialias": 0,
             "axes": None, "keep_aspect_ratio_policy": "stretch"}
    sizes = np.array([1, planar.shape[0], rows, cols], np.int64)
    return get_kernel("Resize")([planar[None], None, None, sizes], attrs)[0][0]


def normalize(planar: np.ndarray, mode: str) -> np.ndarray:
    """``pixel * factor + offset`` (:data:`NORMALIZE`), padding (NaN) made 0."""
    if mode not in NORMALIZE:
        raise PreprocessError(f"normalisation mode {mode!r} is not one of {list(NORMALIZE)}")
    factor, offset = NORMALIZE[mode]
    out = planar * np.float32(factor) + np.float32(offset)
    return np.nan_to_num(out, nan=0.0).astype(np.float32, copy=False)
