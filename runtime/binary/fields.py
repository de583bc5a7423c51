"""Checked access to untrusted JSON: parsing with size and depth limits, and
typed field readers that name the JSON path of anything wrong
(``META.segments[2].inputs[0].addr``)."""
from __future__ import annotations

import json
import math
from typing import Any, Collection

from runtime.binary.format import (
    MAX_DIM,
    MAX_ELEMENTS,
    MAX_INT,
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    MAX_RANK,
    BinaryFormatError,
)


def fail(path: str, message: str) -> BinaryFormatError:
    """The error for ``path``: raise what this returns."""
    return BinaryFormatError(f"{path}: {message}")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return out


def parse_json(raw, path: str) -> Any:
    """The JSON document in ``raw`` (UTF-8 bytes), within the size and depth limits."""
    if len(raw) > MAX_JSON_BYTES:
        raise fail(path, f"{len(raw)} bytes of JSON, more than the limit of {MAX_JSON_BYTES}")
    try:
        document = json.loads(bytes(raw).decode("utf-8"), object_pairs_hook=_unique_keys)
    except RecursionError:
        raise fail(path, "JSON nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise fail(path, f"malformed JSON: {exc}") from None
    _check_depth(document, path)
    return document


def _check_depth(document: Any, path: str) -> None:
    """Refuse nesting deeper than MAX_JSON_DEPTH (iteratively: no recursion)."""
    pending = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, (list, dict)):
            if depth > MAX_JSON_DEPTH:
                raise fail(path, f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
            children = value.values() if isinstance(value, dict) else value
            pending.extend((child, depth + 1) for child in children if isinstance(child, (list, dict)))


def record(value: Any, path: str, keys: Collection[str], optional: Collection[str] = ()) -> dict[str, Any]:
    """A JSON object with exactly ``keys`` (and possibly ``optional`` ones)."""
    if not isinstance(value, dict):
        raise fail(path, f"must be an object, got {_kind(value)}")
    missing = [k for k in keys if k not in value]
    unknown = [k for k in value if k not in keys and k not in optional]
    if missing or unknown:
        raise fail(path, f"object lacks fields {missing} or has unknown fields {unknown}")
    return value


def array(value: Any, path: str, limit: int | None = None) -> list:
    if not isinstance(value, list):
        raise fail(path, f"must be an array, got {_kind(value)}")
    if limit is not None and len(value) > limit:
        raise fail(path, f"has {len(value)} items, more than {limit}")
    return value


def integer(value: Any, path: str, low: int = -MAX_INT - 1, high: int = MAX_INT) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise fail(path, f"must be an integer, got {_kind(value)}")
    if not low <= value <= high:
        raise fail(path, f"{value} is outside [{low}, {high}]")
    return value


def number(value: Any, path: str, positive: bool = False) -> float:
    """A finite number (an int is taken as a float); ``positive``: > 0."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise fail(path, f"must be a number, got {_kind(value)}")
    if isinstance(value, int):
        integer(value, path)
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        raise fail(path, f"{value} is not a finite{' positive' if positive else ''} number")
    return value


def text(value: Any, path: str, choices: Collection[str] | None = None) -> str:
    if not isinstance(value, str):
        raise fail(path, f"must be a string, got {_kind(value)}")
    if choices is not None and value not in choices:
        raise fail(path, f"{value!r:.60} is not one of {sorted(choices)}")
    return value


def texts(value: Any, path: str) -> list[str]:
    return [text(v, f"{path}[{i}]") for i, v in enumerate(array(value, path))]


def shape(value: Any, path: str, dynamic: bool = False) -> tuple:
    """A shape: at most MAX_RANK dims, each in [0, MAX_DIM] (or null where
    ``dynamic``), describing at most MAX_ELEMENTS elements."""
    dims = array(value, path, MAX_RANK)
    out = tuple(None if d is None and dynamic else integer(d, f"{path}[{i}]", 0, MAX_DIM)
                for i, d in enumerate(dims))
    if math.prod(max(d or 1, 1) for d in out) > MAX_ELEMENTS:
        raise fail(path, f"shape {list(out)} describes more than {MAX_ELEMENTS} elements")
    return out


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)
