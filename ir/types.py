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
