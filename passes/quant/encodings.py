"""AIMET-style encodings files: Tessera's quantization parameters in and out.

An encodings file maps ONNX tensor names to quantization grids. Two layouts
are read and written (docs: AIMET's quantization encoding specification):

* ``0.6.1`` (also read: ``0.4.0``, ``0.5.0``, and no version at all, which
  means 0.4.0): ``activation_encodings`` and ``param_encodings`` are objects
  mapping a tensor name to a list of encodings, one per tensor or one per
  channel: ``{"bitwidth", "dtype": "int", "is_symmetric": "True"|"False",
  "min", "max", "offset", "scale"}``, or ``{"bitwidth", "dtype": "float"}``.
* ``1.0.0``: both sections are lists of records ``{"name", "dtype": "INT",
  "enc_type": "PER_TENSOR"|"PER_CHANNEL", "bw", "is_sym", "scale": [...],
  "offset": [...]}``, or ``{"name", "dtype": "FLOAT", "bw"}``.

**Offsets.** AIMET's integers live on an unsigned grid, ``real = scale *
(q_u + offset)`` with ``q_u`` in ``[0, 2^bw - 1]``; Tessera's are signed,
``real = scale * (q - zero)`` with ``q`` in ``[-2^(bw-1), 2^(bw-1) - 1]``.
The same code is ``q_u = q + 2^(bw-1)``, hence ``offset = -zero - 2^(bw-1)``
(and back, the same formula). A symmetric grid (``zero = 0``) has offset
``-2^(bw-1)``: -128 for 8 bits, -8 for 4. Its range is ``min = offset *
scale``, ``max = (offset + 2^bw - 1) * scale``.

**Scales** are float32, as everywhere in Tessera: a file's scale is rounded
to float32 on import, and written as the exact decimal of its float32 value,
so export -> import gives back identical parameters.

**Per-channel axes** are not in the file (AIMET's per-channel means per output
channel). Import puts a per-channel ``param_encodings`` entry on axis 0, the
output channel of Conv and of the canonical ``Gemm(x, W[N, K])``, and a
per-channel ``activation_encodings`` entry on axis 1, the channel axis of an
NCHW activation (Tessera's channel grids, passes/quant/channel_grids.py);
``axes`` overrides either per tensor.

Only 8- and 16-bit integer grids are supported (Tessera's storage types);
float encodings (16 or 32 bits) mark tensors kept in float, which Tessera
computes in float32. Exynos AI Studio's empty file
(``{"activation_encodings": {}, "param_encodings": {}, "quantizer_args": {},
"version": null, "modules": {}}``) imports as an empty :class:`Encodings`:
run the whole model in float.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, NoReturn

import numpy as np

from ir.types import QuantParams
from runtime.errors import TesseraError
from runtime.files import MAX_TEXT_BYTES, FileError, read_regular, write_atomic

READ_VERSIONS = ("0.4.0", "0.5.0", "0.6.1", "1.0.0")
WRITE_VERSIONS = ("0.6.1", "1.0.0")
INT_DTYPES = {8: np.dtype(np.int8), 16: np.dtype(np.int16)}
FLOAT_BITWIDTHS = (16, 32)
WRITTEN_FLOAT_BITWIDTH = 32
WEIGHT_AXIS = 0
ACTIVATION_AXIS = 1
ACTIVATIONS, PARAMS = "activation_encodings", "param_encodings"
_ENC_TYPES = ("PER_TENSOR", "PER_CHANNEL")
_UNSUPPORTED_ENC_TYPES = ("PER_BLOCK", "LPBQ")
_KEYS_0X = ("bitwidth", "is_symmetric", "min", "max", "offset", "scale")
_KEYS_1 = ("name", "dtype", "enc_type", "bw", "is_sym", "scale", "offset")


class EncodingsError(TesseraError):
    """An encodings file (or the parameters to export) is malformed; the
    message names the file, the tensor and the field at fault."""

    def __init__(self, message: str, *, file: str | None = None, tensor: str | None = None,
                 field: str | None = None):
        where = [file or "<encodings>"]
        if tensor is not None:
            where.append(f"tensor {tensor!r}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(": ".join(where + [message]))
        self.file, self.tensor, self.field, self.reason = file, tensor, field, message


class UnsupportedEncodingError(EncodingsError):
    """A well-formed encoding Tessera cannot run: a bitwidth other than 8 or
    16, a blockwise grid, a fractional zero point."""


@dataclass(frozen=True)
class Encodings:
    """What an encodings file says, keyed by ONNX tensor name.

    ``params``: the integer grid of each quantized tensor; ``weights``: the
    names found under ``param_encodings`` (int or float); ``float_tensors``:
    the tensors to keep in float; ``quantizer_args``: the file's settings, as
    written. No params and no float tensors (Exynos' empty file) means: run
    in float."""

    params: dict[str, QuantParams] = field(default_factory=dict)
    weights: frozenset[str] = frozenset()
    float_tensors: frozenset[str] = frozenset()
    quantizer_args: dict[str, Any] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not self.params and not self.float_tensors


# ---------------------------------------------------------------- conversions

def offset_from_zero(zero: int, bitwidth: int) -> int:
    """AIMET's unsigned-grid offset of Tessera's signed zero point."""
    return -int(zero) - 2 ** (bitwidth - 1)


def zero_from_offset(offset: int, bitwidth: int) -> int:
    """Tessera's signed zero point of AIMET's unsigned-grid offset."""
    return -int(offset) - 2 ** (bitwidth - 1)


def grid_range(scale: float, offset: int, bitwidth: int) -> tuple[float, float]:
    """(min, max): the reals of AIMET's codes 0 and 2^bw - 1."""
    return offset * scale, (offset + 2 ** bitwidth - 1) * scale


# --------------------------------------------------------------------- export

def export_encodings(params: Mapping[str, QuantParams], path: str | os.PathLike | None = None, *,
                     weights: Iterable[str] = (), float_tensors: Iterable[str] = (),
                     version: str = "0.6.1", quantizer_args: Mapping[str, Any] | None = None) -> dict:
    """The encodings document of ``params`` (and of ``float_tensors``, kept in
    float), written as JSON to ``path`` when given. Names in ``weights`` go
    under ``param_encodings``, the others under ``activation_encodings``."""
    file = None if path is None else str(path)
    weights, floats = frozenset(weights), frozenset(float_tensors)
    _check_export_names(params, weights, floats, file)
    if version not in WRITE_VERSIONS:
        raise EncodingsError(f"cannot write version {version!r}; one of {WRITE_VERSIONS}", file=file,
                             field="version")
    document = _new_document(version, quantizer_args, file)
    for name in [*params, *sorted(floats)]:
        section = PARAMS if name in weights else ACTIVATIONS
        if version == "1.0.0":
            document[section].append(_record_1(name, params.get(name), file))
        else:
            document[section][name] = _entries_0x(name, params.get(name), file)
    if path is not None:
        try:
            write_atomic(path, json.dumps(document, indent=2) + "\n")
        except FileError as exc:
            raise EncodingsError(exc.cause, file=exc.path) from None
    return document


def _check_export_names(params: Mapping[str, QuantParams], weights: frozenset[str], floats: frozenset[str],
                        file: str | None) -> None:
    """Every name is quantized or float, not both; every weight is one of them."""
    both = sorted(floats & set(params))
    if both:
        raise EncodingsError("is both quantized and kept in float", file=file, tensor=both[0])
    unknown = sorted(weights - floats - set(params))
    if unknown:
        raise EncodingsError("is listed as a weight but has no parameters", file=file, tensor=unknown[0])


def _new_document(version: str, quantizer_args: Mapping[str, Any] | None, file: str | None) -> dict:
    if quantizer_args is not None and not isinstance(quantizer_args, Mapping):
        raise EncodingsError("quantizer_args must be a mapping", file=file, field="quantizer_args")
    empty = list if version == "1.0.0" else dict
    return {"version": version, ACTIVATIONS: empty(), PARAMS: empty(),
            "quantizer_args": dict(quantizer_args or {})}


def _entries_0x(name: str, params: QuantParams | None, file: str | None) -> list[dict]:
    """The 0.6.1 list of encodings of one tensor: one per channel."""
    if params is None:
        return [{"bitwidth": WRITTEN_FLOAT_BITWIDTH, "dtype": "float"}]
    bitwidth = _bitwidth_of(name, params, file)
    entries = []
    for scale, offset in zip(_scales32(name, params, file), _offsets_of(name, params, bitwidth, file)):
        low, high = grid_range(scale, offset, bitwidth)
        entries.append({"bitwidth": bitwidth, "dtype": "int",
                        "is_symmetric": str(offset == offset_from_zero(0, bitwidth)),
                        "max": high, "min": low, "offset": offset, "scale": scale})
    return entries


def _record_1(name: str, params: QuantParams | None, file: str | None) -> dict:
    """The 1.0.0 record of one tensor."""
    if params is None:
        return {"name": name, "dtype": "FLOAT", "enc_type": "PER_TENSOR", "bw": WRITTEN_FLOAT_BITWIDTH}
    bitwidth = _bitwidth_of(name, params, file)
    return {"name": name, "dtype": "INT", "enc_type": "PER_CHANNEL" if params.per_channel else "PER_TENSOR",
            "bw": bitwidth, "is_sym": all(z == 0 for z in params.zero),
            "scale": _scales32(name, params, file), "offset": _offsets_of(name, params, bitwidth, file)}


def _bitwidth_of(name: str, params: QuantParams, file: str | None) -> int:
    for bitwidth, dtype in INT_DTYPES.items():
        if params.dtype == dtype:
            return bitwidth
    raise UnsupportedEncodingError(f"storage type {params.dtype} cannot be written; int8 or int16",
                                   file=file, tensor=name, field="dtype")


def _scales32(name: str, params: QuantParams, file: str | None) -> list[float]:
    """The scales as float32 values (exact in JSON)."""
    scales = [_float32(s) for s in params.scale]
    if not all(0 < s < math.inf for s in scales):
        raise EncodingsError(f"a scale is not a positive finite float32: {params.scale[:4]}",
                             file=file, tensor=name, field="scale")
    return scales


def _offsets_of(name: str, params: QuantParams, bitwidth: int, file: str | None) -> list[int]:
    low, high = -(2 ** (bitwidth - 1)), 2 ** (bitwidth - 1) - 1
    for zero in params.zero:
        if not low <= zero <= high:
            raise EncodingsError(f"zero point {zero} is outside [{low}, {high}]", file=file, tensor=name,
                                 field="zero")
    return [offset_from_zero(z, bitwidth) for z in params.zero]


# --------------------------------------------------------------------- import

def import_encodings(source: str | os.PathLike | Mapping[str, Any], *,
                     axes: Mapping[str, int] | None = None) -> Encodings:
    """The :class:`Encodings` of a file (a path) or of an already parsed
    document. ``axes`` gives the channel axis of per-channel tensors; a
    per-channel weight without one is on axis 0, an activation on axis 1."""
    document, file = _load(source)
    reader = _Reader(file, dict(axes or {}))
    version = reader.version(document)
    for section in (ACTIVATIONS, PARAMS):
        for name, params in reader.section(document, section, version):
            reader.add(name, params, section)
    return Encodings(reader.params, frozenset(reader.weights), frozenset(reader.floats),
                     reader.quantizer_args(document))


def _load(source: str | os.PathLike | Mapping[str, Any]) -> tuple[Any, str]:
    """(parsed document, its name for messages)."""
    if isinstance(source, Mapping):
        return source, "<encodings>"
    file = str(source)
    try:
        text = read_regular(source, MAX_TEXT_BYTES, "encodings file").decode("utf-8")
    except FileError as exc:
        raise EncodingsError(exc.cause, file=file) from None
    except UnicodeDecodeError:
        raise EncodingsError("not a JSON text file (bytes that are not UTF-8: a binary or pickled file?)",
                             file=file) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EncodingsError(f"not JSON: {exc}", file=file) from exc
    if not isinstance(document, dict):
        raise EncodingsError(f"the top level must be an object, not {_json_type(document)}", file=file)
    return document, file


class _Reader:
    """Parses one file's entries into QuantParams, naming the file, the tensor
    and the field in every error."""

    def __init__(self, file: str, axes: dict[str, int]):
        self.file, self.axes = file, axes
        self.params: dict[str, QuantParams] = {}
        self.weights: set[str] = set()
        self.floats: set[str] = set()

    def fail(self, message: str, tensor: str | None = None, field: str | None = None,
             unsupported: bool = False) -> NoReturn:
        error = UnsupportedEncodingError if unsupported else EncodingsError
        raise error(message, file=self.file, tensor=tensor, field=field)

    def version(self, document: Mapping[str, Any]) -> str:
        """The file's version; none means 0.4.0."""
        version = document.get("version")
        if version is None:
            return "0.4.0"
        if not isinstance(version, str):
            self.fail(f"must be a string, not {_json_type(version)}", field="version")
        if version not in READ_VERSIONS:
            self.fail(f"version {version!r} is not supported; one of {READ_VERSIONS}", field="version",
                      unsupported=True)
        return version

    def section(self, document: Mapping[str, Any], section: str, version: str):
        """(name, params, or None when kept in float) of each tensor of a section."""
        if section not in document:
            self.fail("missing", field=section)
        if version == "1.0.0":
            return self.records_1(document[section], section)
        return self.entries_0x(document[section], section, version)

    def quantizer_args(self, document: Mapping[str, Any]) -> dict[str, Any]:
        value = document.get("quantizer_args", {})
        if not isinstance(value, dict):
            self.fail(f"must be an object, not {_json_type(value)}", field="quantizer_args")
        return dict(value)

    def add(self, name: str, params: QuantParams | None, section: str) -> None:
        """Record one tensor's encoding (None: kept in float)."""
        if name in self.params or name in self.floats:
            self.fail("has more than one encoding", tensor=name)
        if params is None:
            self.floats.add(name)
        else:
            self.params[name] = params
        if section == PARAMS:
            self.weights.add(name)

    # 0.4.0 / 0.5.0 / 0.6.1

    def entries_0x(self, section_value: Any, section: str, version: str):
        """(name, params) of each tensor of a dict-keyed section."""
        if not isinstance(section_value, dict):
            self.fail(f"must be an object in version {version}, not {_json_type(section_value)}", field=section)
        for name, entries in section_value.items():
            if isinstance(entries, dict):
                self.fail("is keyed by module (nested input/output encodings); Tessera needs encodings "
                          "keyed by ONNX tensor name", tensor=name)
            if not isinstance(entries, list) or not entries:
                self.fail(f"must be a non-empty list of encodings, not {_json_type(entries)}", tensor=name)
            yield name, self.tensor_0x(name, entries, section, version)

    def tensor_0x(self, name: str, entries: list, section: str, version: str) -> QuantParams | None:
        """One tensor's params from its list of encodings (one per channel)."""
        kinds = {self.dtype_0x(name, entry, version) for entry in entries}
        if kinds == {"float"}:
            for entry in entries:
                self.require(name, entry, ("bitwidth",))
                self.float_bitwidth(name, entry["bitwidth"], "bitwidth")
            return None
        if len(kinds) > 1:
            self.fail("mixes int and float encodings", tensor=name, field="dtype")
        grids = [self.grid_0x(name, entry) for entry in entries]
        bitwidths = {bitwidth for bitwidth, _, _ in grids}
        if len(bitwidths) > 1:
            self.fail(f"channels have different bitwidths {sorted(bitwidths)}", tensor=name, field="bitwidth")
        return self.quant_params(name, bitwidths.pop(), [g[1] for g in grids], [g[2] for g in grids], section)

    def dtype_0x(self, name: str, entry: Any, version: str) -> str:
        if not isinstance(entry, dict):
            self.fail(f"an encoding must be an object, not {_json_type(entry)}", tensor=name)
        if "dtype" not in entry:
            if version != "0.4.0":
                self.fail("missing (required since version 0.5.0)", tensor=name, field="dtype")
            return "int"
        if entry["dtype"] not in ("int", "float"):
            self.fail(f"must be 'int' or 'float', not {entry['dtype']!r}", tensor=name, field="dtype")
        return entry["dtype"]

    def grid_0x(self, name: str, entry: dict) -> tuple[int, float, int]:
        """(bitwidth, scale, offset) of one int encoding, checked against its
        min, max and is_symmetric."""
        self.require(name, entry, _KEYS_0X)
        bitwidth = self.int_bitwidth(name, entry["bitwidth"], "bitwidth")
        scale = self.scale(name, entry["scale"], "scale")
        offset = self.offset(name, entry["offset"], bitwidth, "offset")
        self.check_symmetric(name, self.symmetric_0x(name, entry["is_symmetric"]), offset, bitwidth,
                             "is_symmetric")
        for key, expected in zip(("min", "max"), grid_range(scale, offset, bitwidth)):
            value = self.number(name, entry[key], key)
            if not abs(value - expected) <= scale / 2:
                self.fail(f"{value!r} disagrees with scale {scale!r} and offset {offset} "
                          f"(which give {expected!r})", tensor=name, field=key)
        return bitwidth, scale, offset

    def symmetric_0x(self, name: str, value: Any) -> bool:
        """is_symmetric: the strings 'True'/'False' (AIMET), or a JSON bool."""
        if isinstance(value, bool):
            return value
        if value not in ("True", "False"):
            self.fail(f"must be 'True' or 'False', not {value!r}", tensor=name, field="is_symmetric")
        return value == "True"

    # 1.0.0

    def records_1(self, section_value: Any, section: str):
        """(name, params) of each record of a list section."""
        if not isinstance(section_value, list):
            self.fail(f"must be a list in version 1.0.0, not {_json_type(section_value)}", field=section)
        for index, record in enumerate(section_value):
            if not isinstance(record, dict):
                self.fail(f"record {index} must be an object, not {_json_type(record)}", field=section)
            name = record.get("name")
            if not isinstance(name, str) or not name:
                self.fail(f"record {index} needs a non-empty string name, got {name!r}", field="name")
            yield name, self.record_1(name, record, section)

    def record_1(self, name: str, record: dict, section: str) -> QuantParams | None:
        self.require(name, record, ("dtype", "bw"))
        dtype = record["dtype"]
        if dtype == "FLOAT":
            self.float_bitwidth(name, record["bw"], "bw")
            return None
        if dtype != "INT":
            self.fail(f"must be 'INT' or 'FLOAT', not {dtype!r}", tensor=name, field="dtype")
        self.require(name, record, _KEYS_1)
        enc_type = self.enc_type(name, record["enc_type"])
        bitwidth = self.int_bitwidth(name, record["bw"], "bw")
        scales, offsets = self.list_field(name, record, "scale"), self.list_field(name, record, "offset")
        if len(scales) != len(offsets):
            self.fail(f"{len(scales)} scales but {len(offsets)} offsets", tensor=name, field="offset")
        if enc_type == "PER_TENSOR" and len(scales) != 1:
            self.fail(f"PER_TENSOR needs one scale, got {len(scales)}", tensor=name, field="scale")
        self.check_zero_point_shift(name, record.get("zero_point_shift", 0))
        is_sym = record["is_sym"]
        if not isinstance(is_sym, bool):
            self.fail(f"must be a JSON bool, not {_json_type(is_sym)}", tensor=name, field="is_sym")
        scales = [self.scale(name, s, "scale") for s in scales]
        offsets = [self.offset(name, o, bitwidth, "offset") for o in offsets]
        for offset in offsets:
            self.check_symmetric(name, is_sym, offset, bitwidth, "is_sym")
        return self.quant_params(name, bitwidth, scales, offsets, section)

    def enc_type(self, name: str, value: Any) -> str:
        if value in _UNSUPPORTED_ENC_TYPES:
            self.fail(f"{value} (blockwise) encodings are not supported", tensor=name, field="enc_type",
                      unsupported=True)
        if value not in _ENC_TYPES:
            self.fail(f"must be one of {_ENC_TYPES + _UNSUPPORTED_ENC_TYPES}, not {value!r}", tensor=name,
                      field="enc_type")
        return value

    def list_field(self, name: str, record: dict, key: str) -> list:
        value = record[key]
        if not isinstance(value, list) or not value:
            self.fail(f"must be a non-empty list, not {_json_type(value)}", tensor=name, field=key)
        return value

    def check_zero_point_shift(self, name: str, value: Any) -> None:
        """Fractional zero points (AIMET's zero_point_shift) have no integer grid."""
        if self.number(name, value, "zero_point_shift") != 0:
            self.fail(f"{value!r}: fractional zero points are not supported", tensor=name,
                      field="zero_point_shift", unsupported=True)

    # fields shared by both layouts

    def require(self, name: str, entry: dict, keys: Iterable[str]) -> None:
        for key in keys:
            if key not in entry:
                self.fail("missing", tensor=name, field=key)

    def int_bitwidth(self, name: str, value: Any, key: str) -> int:
        if not _is_int(value):
            self.fail(f"must be an integer, not {_json_type(value)}", tensor=name, field=key)
        if value not in INT_DTYPES:
            self.fail(f"{value}-bit integer grids are not supported; 8 or 16", tensor=name, field=key,
                      unsupported=True)
        return value

    def float_bitwidth(self, name: str, value: Any, key: str) -> None:
        if not _is_int(value):
            self.fail(f"must be an integer, not {_json_type(value)}", tensor=name, field=key)
        if value not in FLOAT_BITWIDTHS:
            self.fail(f"{value}-bit floats are not supported; one of {FLOAT_BITWIDTHS}", tensor=name,
                      field=key, unsupported=True)

    def number(self, name: str, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(f"must be a number, not {_json_type(value)}", tensor=name, field=key)
        return float(value)

    def scale(self, name: str, value: Any, key: str) -> float:
        """A positive finite scale, rounded to float32."""
        scale = _float32(self.number(name, value, key))
        if not 0 < scale < math.inf:
            self.fail(f"{value!r} is not a positive finite float32", tensor=name, field=key)
        return scale

    def offset(self, name: str, value: Any, bitwidth: int, key: str) -> int:
        """An integer offset whose grid holds 0 (so Tessera's zero point fits)."""
        number = self.number(name, value, key)
        if not number.is_integer():
            self.fail(f"{value!r} is not an integer", tensor=name, field=key)
        offset, lowest = int(number), -(2 ** bitwidth - 1)
        if not lowest <= offset <= 0:
            self.fail(f"{offset} is outside [{lowest}, 0]: the grid must hold 0", tensor=name, field=key)
        return offset

    def check_symmetric(self, name: str, symmetric: bool, offset: int, bitwidth: int, key: str) -> None:
        """A symmetric grid is signed (offset -2^(bw-1)) or unsigned (offset 0)."""
        if symmetric and offset not in (offset_from_zero(0, bitwidth), 0):
            self.fail(f"symmetric, but offset {offset} is neither {offset_from_zero(0, bitwidth)} nor 0",
                      tensor=name, field=key)

    def quant_params(self, name: str, bitwidth: int, scales: list[float], offsets: list[int],
                     section: str) -> QuantParams:
        axis = None
        if len(scales) > 1:
            axis = self.axes.get(name, WEIGHT_AXIS if section == PARAMS else ACTIVATION_AXIS)
        zeros = [zero_from_offset(o, bitwidth) for o in offsets]
        return QuantParams(scales, zeros, INT_DTYPES[bitwidth], axis)


def _float32(value: float) -> float:
    """``value`` rounded to float32 (inf beyond its range, 0 below it)."""
    with np.errstate(over="ignore", under="ignore"):
        return float(np.float32(value))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_JSON_TYPES = {type(None): "null", bool: "a bool", str: "a string", int: "an integer", float: "a number",
               list: "a list", dict: "an object"}


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type (with the value when short), for messages."""
    label = _JSON_TYPES.get(type(value), type(value).__name__)
    return label if isinstance(value, (list, dict)) else f"{label} {value!r}"
