"""Tensor types: a dtype and a shape whose dims are ints, or None where the size
depends on data (the output of NonZero, a Loop's scan outputs)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ir.errors import IRError

_SHORT_NAMES = {
    np.dtype(np.float32): "f32", np.dtype(np.float64): "f64", np.dtype(np.float16): "f16",
    np.dtype(np.int8): "i8", np.dtype(np.int16): "i16", np.dtype(np.int32): "i32",
    np.dtype(np.int64): "i64", np.dtype(np.uint8): "u8", np.dtype(np.uint16): "u16",
    np.dtype(np.uint32): "u32", np.dtype(np.uint64): "u64", np.dtype(np.bool_): "bool",
    np.dtype(object): "str",
}
_FROM_SHORT = {v: k for k, v in _SHORT_NAMES.items()}

Dim = int | None


def dtype_name(dtype: np.dtype) -> str:
    """Short printable name of a dtype (``f32``, ``i8``...)."""
    return _SHORT_NAMES.get(np.dtype(dtype), str(np.dtype(dtype)))


def parse_dtype(name: str | np.dtype | type) -> np.dtype:
    """Inverse of :func:`dtype_name`; also accepts numpy dtypes and names."""
    if isinstance(name, str) and name in _FROM_SHORT:
        return _FROM_SHORT[name]
    try:
        dtype = np.dtype(name)
    except TypeError as exc:
        raise IRError(f"unknown dtype {name!r}") from exc
    if dtype.kind in "US":
        return np.dtype(object)
    if dtype not in _SHORT_NAMES:
        raise IRError(f"dtype {dtype} is not supported by the IR")
    return dtype


@dataclass(frozen=True)
class TensorType:
    """A tensor's dtype and shape. ``None`` dims are data-dependent."""

    shape: tuple[Dim, ...]
    dtype: np.dtype

    def __init__(self, shape: Iterable[Dim], dtype=np.float32):
        dims = tuple(None if d is None else int(d) for d in shape)
        if any(d is not None and d < 0 for d in dims):
            raise IRError(f"negative dimension in shape {dims}")
        object.__setattr__(self, "shape", dims)
        object.__setattr__(self, "dtype", parse_dtype(dtype))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(d is not None for d in self.shape)

    @property
    def numel(self) -> int | None:
        """Element count, or None when a dim is data-dependent."""
        return int(np.prod(self.shape, dtype=np.int64)) if self.is_static else None

    def with_shape(self, shape: Iterable[Dim]) -> TensorType:
        return TensorType(shape, self.dtype)

    def with_dtype(self, dtype) -> TensorType:
        return TensorType(self.shape, dtype)

    def __str__(self) -> str:
        dims = ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{dtype_name(self.dtype)}[{dims}]"

    @staticmethod
    def of(array: np.ndarray) -> TensorType:
        """The type of a concrete array."""
        return TensorType(array.shape, array.dtype)


@dataclass(frozen=True)
class QuantParams:
    """How a quantized value's integers map to reals: ``real = scale * (q - zero)``,
    per tensor (one scale) or per channel along ``axis``."""

    scale: tuple[float, ...]
    zero: tuple[int, ...]
    dtype: np.dtype
    axis: int | None = None

    def __init__(self, scale, zero, dtype, axis: int | None = None):
        scales = tuple(float(s) for s in np.asarray(scale, np.float64).reshape(-1))
        zeros = tuple(int(z) for z in np.asarray(zero).reshape(-1))
        if not scales or len(zeros) != len(scales):
            raise IRError(f"quantization needs as many zero points as scales, got {len(scales)} and {len(zeros)}")
        if not all(s > 0 and np.isfinite(s) for s in scales):
            raise IRError(f"quantization scales must be positive and finite, got {scales[:4]}")
        if len(scales) > 1 and axis is None:
            raise IRError("per-channel quantization needs an axis")
        object.__setattr__(self, "scale", scales)
        object.__setattr__(self, "zero", zeros)
        object.__setattr__(self, "dtype", parse_dtype(dtype))
        object.__setattr__(self, "axis", None if len(scales) == 1 else int(axis))

    @property
    def per_channel(self) -> bool:
        return len(self.scale) > 1

    def __str__(self) -> str:
        if self.per_channel:
            return f"q({dtype_name(self.dtype)}, {len(self.scale)} scales on axis {self.axis})"
        return f"q({dtype_name(self.dtype)}, {self.scale[0]:.4g}, {self.zero[0]})"
