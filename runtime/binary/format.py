"""The compiled binary's layout: magic, version, section ids, the header and
section-table records, and the limits a reader enforces on untrusted input.

A file is a 32-byte header, a table of 32-byte section entries, then the
sections, each starting on a :data:`SECTION_ALIGN` boundary with zero bytes
between them. Every integer is little-endian. docs/binary.md describes the
whole format; the writer (codegen/binary.py) and the reader share these
definitions, so the two cannot drift apart.
"""
from __future__ import annotations

import enum
import struct
import zlib

from runtime.errors import TesseraError

MAGIC = b"\x89TSR\r\n\x1a\n"
"""File signature (PNG-style: a non-ASCII byte, then line endings and ^Z that
text-mode transfers would mangle)."""
VERSION = 2
"""The format version this runtime reads and writes (2: the ISA's ELTWISE
function field is 3 bits wide and CONV carries a table, so version-1 streams
decode differently)."""

HEADER = struct.Struct("<8sHHIQII")
"""magic, version, flags, section count, file length, reserved (0), header CRC32."""
ENTRY = struct.Struct("<IIQQII")
"""section id, reserved (0), offset, length, CRC32, reserved (0)."""
PROGRAM_PREFIX = struct.Struct("<QQ")
"""A program section starts with its JSON length and its blob's offset."""

SECTION_ALIGN = 64
"""Sections, and a program section's blob, start on multiples of this."""
ARRAY_ALIGN = 64
"""Arrays in a blob start on multiples of this (relative to the blob)."""

FLAG_REFERENCE_STRIPPED = 1
"""Header flag: the writer left the float reference out (no REFERENCE section)."""
KNOWN_FLAGS = FLAG_REFERENCE_STRIPPED


class Section(enum.IntEnum):
    """Section ids, in the order the writer lays them out."""

    CONFIG = 1
    META = 2
    WEIGHTS = 3
    STREAMS = 4
    CPU = 5
    REFERENCE = 6


REQUIRED_SECTIONS = (Section.CONFIG, Section.META, Section.WEIGHTS, Section.STREAMS, Section.CPU)

# ---------------------------------------------------------------- limits on untrusted input
MAX_SECTIONS = 16
"""Most entries a section table may have (there are six kinds)."""
MAX_JSON_BYTES = 64 << 20
"""Largest JSON document (META, CONFIG, a program section's structure)."""
MAX_JSON_DEPTH = 96
"""Deepest nesting of JSON arrays and objects."""
MAX_PROGRAM_DEPTH = 12
"""Deepest nesting of sub-Programs (control-flow bodies)."""
MAX_VALUE_DEPTH = 16
"""Deepest nesting of tuples in an attribute value."""
MAX_RANK = 32
"""Largest rank of a stored shape."""
MAX_DIM = (1 << 31) - 1
"""Largest single dimension of a stored shape."""
MAX_ELEMENTS = 1 << 30
"""Largest element count a stored shape may describe (zero dims counted as 1,
so an empty array cannot hide an absurd shape)."""
MAX_INT = (1 << 63) - 1
"""Integers in JSON fields and attributes are int64."""

ARRAY_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                "float16", "float32", "float64")
"""Element types of arrays in a blob (constants and array attributes)."""
TYPE_DTYPES = ARRAY_DTYPES + ("object",)
"""dtype names a program's slot types may give ("object": strings, never stored)."""


class BinaryFormatError(TesseraError):
    """A compiled binary is malformed, corrupt or hostile, or a model cannot be
    written as one; the message names the place (section, JSON path, stream
    and instruction)."""


def crc32(data) -> int:
    """CRC-32 (zlib's polynomial) of a bytes-like object."""
    return zlib.crc32(data) & 0xFFFFFFFF


def align(offset: int, to: int = SECTION_ALIGN) -> int:
    """``offset`` rounded up to a multiple of ``to``."""
    return -(-offset // to) * to
