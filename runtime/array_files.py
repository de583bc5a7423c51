""".npy and .npz files read as data, never as code, and never larger than
the reader can afford.

numpy's own ``np.load`` allocates what a header promises before checking
it against anything: a 2 MB .npz of zeros can expand to gigabytes, and an
.npy header can claim 10^15 values. Here every array's header is read
first, its element count checked against the caller's ``max_elements``
(the largest input the model takes) and its byte count against
runtime.files.MAX_DATA_BYTES and against the bytes the file (or the zip
member) really holds, and only then is the data read. Object arrays
(pickles: unpickling runs code) are refused.
"""
from __future__ import annotations

import io
import math
import os
import struct
import tokenize
import zipfile
import zlib
from typing import IO

import numpy as np
from numpy.lib import format as npy_format

from runtime.files import MAX_DATA_BYTES, FileError, open_regular
from runtime.kernels.limits import MAX_ELEMENTS

MAX_HEADER_BYTES = 10_000
"""Largest .npy header read (numpy's own default limit)."""


class ArrayFileError(ValueError):
    """A file numpy cannot read as arrays without unpickling or without
    more memory than allowed (the message says why)."""


READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError, RuntimeError,
               tokenize.TokenError, zlib.error, SyntaxError)
"""What numpy and zipfile raise on a corrupt .npy/.npz: a header that does
not tokenize (TokenError, SyntaxError), an .npz member with a compression
zipfile lacks (NotImplementedError), marked encrypted (RuntimeError) or
with corrupt deflate data (zlib.error), besides the usual."""


def load_arrays(path: str | os.PathLike, max_elements: int = MAX_ELEMENTS) -> np.ndarray | dict[str, np.ndarray]:
    """An .npy file's array, or an .npz file's arrays by name (numpy's names:
    the member name without ``.npy``); ArrayFileError for anything else."""
    try:
        with open_regular(path, MAX_DATA_BYTES, "array file") as handle:
            size = os.fstat(handle.fileno()).st_size
            if handle.read(2) == b"PK":
                handle.seek(0)
                return _read_npz(handle, max_elements)
            handle.seek(0)
            return _read_npy(handle, size, max_elements)
    except FileError as exc:
        raise ArrayFileError(exc.cause) from None
    except READ_ERRORS as exc:
        if isinstance(exc, ArrayFileError):
            raise
        raise ArrayFileError(f"{type(exc).__name__}: {exc}") from None


def _read_npz(handle: IO[bytes], max_elements: int) -> dict[str, np.ndarray]:
    arrays, total = {}, 0
    with zipfile.ZipFile(handle) as archive:
        for info in archive.infolist():
            if info.filename.endswith("/"):  # a folder entry (ZipInfo.is_dir fails on an empty name)
                continue
            total += info.file_size
            if total > MAX_DATA_BYTES:
                raise ArrayFileError(f"its members expand to more than {MAX_DATA_BYTES} bytes "
                                     "(runtime.files.MAX_DATA_BYTES)")
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            with archive.open(info) as member:
                try:
                    arrays[name] = _read_npy(member, info.file_size, max_elements)
                except ArrayFileError as exc:
                    raise ArrayFileError(f"member {info.filename!r}: {exc}") from None
    return arrays


def _read_npy(stream: IO[bytes], size: int, max_elements: int) -> np.ndarray:
    """The array of an .npy stream of ``size`` bytes, its header checked first."""
    version = npy_format.read_magic(stream)
    shape, fortran, dtype = _header(stream, version)
    if dtype.hasobject:
        raise ArrayFileError("it holds Python objects (a pickle), which are refused: unpickling runs code")
    count = math.prod(shape)
    if count > max_elements:
        raise ArrayFileError(f"its header declares shape {list(shape)} ({count} elements), more than the "
                             f"{max_elements} allowed for this model's inputs")
    nbytes = count * dtype.itemsize
    held = size - stream.tell()
    if nbytes != held:
        raise ArrayFileError(f"its header declares shape {list(shape)} of {dtype} ({nbytes} bytes) but the "
                             f"file holds {held} bytes of data")
    data = bytearray(nbytes)
    if stream.readinto(memoryview(data)) != nbytes:
        raise ArrayFileError("the file ended before its data")
    array = np.frombuffer(data, dtype)
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def _header(stream: IO[bytes], version: tuple[int, int]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) from the header after the magic, its
    length checked before it is read (numpy reads what the length says)."""
    readers = {(1, 0): ("<H", npy_format.read_array_header_1_0), (2, 0): ("<I", npy_format.read_array_header_2_0)}
    if version not in readers:
        raise ArrayFileError(f".npy format version {version[0]}.{version[1]} is not read (1.0 and 2.0 are)")
    layout, read = readers[version]
    field = stream.read(struct.calcsize(layout))
    if len(field) != struct.calcsize(layout):
        raise ArrayFileError("the file ends inside its header")
    (length,) = struct.unpack(layout, field)
    if length > MAX_HEADER_BYTES:
        raise ArrayFileError(f"its header claims {length} bytes, more than the {MAX_HEADER_BYTES} allowed")
    header = stream.read(length)
    if len(header) != length:
        raise ArrayFileError("the file ends inside its header")
    return read(io.BytesIO(field + header), max_header_size=MAX_HEADER_BYTES)
