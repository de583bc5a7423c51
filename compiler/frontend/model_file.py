"""Reading an ONNX file: a regular file of at most MAX_MODEL_BYTES
(protobuf's own limit), whose top-level protobuf structure is walked before
the file is read whole.

The walk reads only each top-level field's tag and length and seeks past its
payload (the graph is one field), so a file that is not a protobuf message,
one whose fields run past its end, or a valid model followed by a sparse
gigabyte of zeros is refused after a few reads, before anything the size of
the file is allocated.
"""
from __future__ import annotations

import os
from typing import BinaryIO

from compiler.errors import ModelImportError
from runtime.files import MAX_MODEL_BYTES, FileError, open_regular

MAX_TOP_LEVEL_FIELDS = 1 << 20
"""Most top-level fields walked (ONNX writes about ten)."""


def read_model_file(path: str) -> bytes:
    """The bytes of the ONNX file ``path``, after the checks above."""
    try:
        with open_regular(path, MAX_MODEL_BYTES, "model file") as handle:
            size = os.fstat(handle.fileno()).st_size
            problem = _structure_problem(handle, size)
            if problem is not None:
                raise ModelImportError(f"not a valid ONNX model: {problem}", file=path)
            handle.seek(0)
            return handle.read()
    except FileError as exc:
        raise ModelImportError(exc.cause, file=path) from None
    except OSError as exc:
        raise ModelImportError(f"cannot read the model file: {exc.strerror or exc}", file=path) from None


def _structure_problem(handle: BinaryIO, size: int) -> str | None:
    """What is wrong with the top level of the protobuf message in
    ``handle`` (None: each field's tag is valid and its payload ends inside
    the file, the last exactly at its end)."""
    for _ in range(MAX_TOP_LEVEL_FIELDS):
        offset = handle.tell()
        if offset == size:
            return None
        tag = _varint(handle)
        if tag is None or tag >> 3 == 0:
            return f"the bytes at offset {offset} are not a protobuf field (a file of zeros, or not ONNX)"
        wire = tag & 7
        if wire == 0:
            skip = 0 if _varint(handle) is not None else -1
        elif wire == 2:
            length = _varint(handle)
            skip = -1 if length is None else length
        else:
            skip = {1: 8, 5: 4}.get(wire, -1)
        if skip < 0:
            return f"field {tag >> 3} at offset {offset} has wire type {wire}, which ONNX does not use, or is cut off"
        if skip > size - handle.tell():
            return (f"field {tag >> 3} at offset {offset} runs {skip} bytes past offset {handle.tell()}, beyond the "
                    f"{size}-byte file (truncated)")
        handle.seek(skip, os.SEEK_CUR)
    return f"more than {MAX_TOP_LEVEL_FIELDS} top-level fields"


def _varint(handle: BinaryIO) -> int | None:
    """A base-128 varint (None: cut off, or longer than 10 bytes)."""
    value = 0
    for shift in range(0, 70, 7):
        byte = handle.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
    return None
