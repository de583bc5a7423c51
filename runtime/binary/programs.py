"""Kernel Programs as section payloads: a JSON structure and one binary blob.

A program section is :data:`PROGRAM_PREFIX` (the JSON's length, the blob's
offset), the UTF-8 JSON ``{"programs": [...], "arrays": [...]}``, zero
padding, then the blob: every constant and array attribute, little-endian,
each at an :data:`ARRAY_ALIGN`-aligned offset given with its dtype and shape
in ``arrays``. Attribute values are JSON scalars, arrays for tuples, and
one-key objects for the rest: ``{"array": i}`` (a numpy array),
``{"scalar": i}`` (a numpy scalar, stored as a 0-d array) and
``{"program": {...}}`` (a sub-Program). Nothing else can be stored, and
decoding checks every field, slot and array before building a Program.
"""
from __future__ import annotations

import json
import math
import sys
from typing import Any

import numpy as np

from runtime.binary.fields import array, fail, integer, parse_json, record, shape, text, texts
from runtime.binary.format import (
    ARRAY_ALIGN,
    ARRAY_DTYPES,
    MAX_PROGRAM_DEPTH,
    MAX_VALUE_DEPTH,
    PROGRAM_PREFIX,
    SECTION_ALIGN,
    TYPE_DTYPES,
    align,
)
from runtime.errors import KernelError
from runtime.kernels import has_kernel
from runtime.kernels.fused import decode as decode_fused
from runtime.program import NO_SLOT, Program, Step

PROGRAM_KEYS = ("name", "slots", "inputs", "outputs", "types", "constants", "steps")
STEP_KEYS = ("kernel", "name", "inputs", "outputs", "attrs")
ARRAY_KEYS = ("dtype", "shape", "offset", "length")


# ---------------------------------------------------------------- writing
class _Encoder:
    """Programs to JSON-ready structures, arrays appended to one blob."""

    def __init__(self):
        self.arrays: list[dict[str, Any]] = []
        self.blob = bytearray()

    def add_array(self, value: np.ndarray, path: str) -> int:
        name = value.dtype.name
        if name not in ARRAY_DTYPES:
            raise fail(path, f"cannot store an array of dtype {value.dtype}; storable: {list(ARRAY_DTYPES)}")
        shape(list(value.shape), path)
        data = np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<"), copy=False).reshape(-1).view(np.uint8)
        self.blob.extend(bytes(align(len(self.blob), ARRAY_ALIGN) - len(self.blob)))
        self.arrays.append({"dtype": name, "shape": list(value.shape), "offset": len(self.blob),
                            "length": len(data)})
        self.blob.extend(data)
        return len(self.arrays) - 1

    def program(self, program: Program, path: str) -> dict[str, Any]:
        steps = [{"kernel": s.kernel, "name": s.name, "inputs": list(s.inputs), "outputs": list(s.outputs),
                  "attrs": {k: self.value(v, f"{path}.steps[{i}].attrs.{k}", 0) for k, v in s.attrs.items()}}
                 for i, s in enumerate(program.steps)]
        constants = [[int(slot), self.add_array(np.asarray(c), f"{path}.constants[{slot}]")]
                     for slot, c in program.constants.items()]
        return {"name": program.name, "slots": list(program.slots), "inputs": list(program.inputs),
                "outputs": list(program.outputs),
                "types": [[list(dims), dtype] for dims, dtype in program.types],
                "constants": constants, "steps": steps}

    def value(self, value: Any, path: str, depth: int) -> Any:
        if isinstance(value, np.ndarray):
            return {"array": self.add_array(value, path)}
        if isinstance(value, np.generic):
            return {"scalar": self.add_array(np.asarray(value), path)}
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int):
            return integer(int(value), path)
        if isinstance(value, float):
            return float(value)
        if isinstance(value, tuple):
            if depth >= MAX_VALUE_DEPTH:
                raise fail(path, f"tuples nested more than {MAX_VALUE_DEPTH} deep")
            return [self.value(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
        if isinstance(value, Program):
            return {"program": self.program(value, path)}
        raise fail(path, f"cannot store an attribute of type {type(value).__name__}: attributes are None, bool, "
                         "int, float, str, tuples of these, numpy arrays and scalars, and Programs")


def encode_programs(programs: list[Program], section: str) -> bytes:
    """The section payload holding ``programs`` (errors name ``section``)."""
    encoder = _Encoder()
    structure = [encoder.program(p, f"{section}.programs[{i}]") for i, p in enumerate(programs)]
    document = json.dumps({"programs": structure, "arrays": encoder.arrays}, separators=(",", ":"),
                          ensure_ascii=True).encode("ascii")
    blob_offset = align(PROGRAM_PREFIX.size + len(document), SECTION_ALIGN)
    head = PROGRAM_PREFIX.pack(len(document), blob_offset) + document
    return b"".join([head, bytes(blob_offset - len(head)), encoder.blob])


# ---------------------------------------------------------------- reading
class _Decoder:
    """Checks and builds Programs from a parsed structure and its blob."""

    def __init__(self, arrays: list[np.ndarray]):
        self.arrays = arrays

    def array_ref(self, value: Any, path: str) -> np.ndarray:
        return self.arrays[integer(value, path, 0, len(self.arrays) - 1)]

    def program(self, value: Any, path: str, depth: int) -> Program:
        if depth > MAX_PROGRAM_DEPTH:
            raise fail(path, f"sub-Programs nested more than {MAX_PROGRAM_DEPTH} deep")
        obj = record(value, path, PROGRAM_KEYS)
        slots = texts(obj["slots"], f"{path}.slots")
        if len(set(slots)) != len(slots):
            duplicate = next(s for i, s in enumerate(slots) if s in slots[:i])
            raise fail(f"{path}.slots", f"slot name {duplicate!r:.60} appears twice")
        n = len(slots)
        inputs = [integer(v, f"{path}.inputs[{i}]", 0, n - 1) for i, v in enumerate(array(obj["inputs"], path))]
        types = self.types(obj["types"], f"{path}.types", n)
        constants = {}
        for i, entry in enumerate(array(obj["constants"], f"{path}.constants")):
            where = f"{path}.constants[{i}]"
            pair = array(entry, where)
            if len(pair) != 2:
                raise fail(where, "must be [slot, array index]")
            slot = integer(pair[0], f"{where}[0]", 0, n - 1)
            if slot in constants or slot in inputs:
                raise fail(f"{where}[0]", f"slot {slot} is already an input or a constant")
            constants[slot] = self.array_ref(pair[1], f"{where}[1]")
        written = set(inputs) | set(constants)
        if len(set(inputs)) != len(inputs):
            raise fail(f"{path}.inputs", "names a slot twice")
        steps = [self.step(s, f"{path}.steps[{i}]", n, written, depth)
                 for i, s in enumerate(array(obj["steps"], f"{path}.steps"))]
        outputs = []
        for i, v in enumerate(array(obj["outputs"], f"{path}.outputs")):
            slot = integer(v, f"{path}.outputs[{i}]", 0, n - 1)
            if slot not in written:
                raise fail(f"{path}.outputs[{i}]", f"slot {slot} ({slots[slot]!r:.60}) is never written")
            outputs.append(slot)
        return Program(slots, inputs, outputs, steps, constants, types, text(obj["name"], f"{path}.name"))

    @staticmethod
    def types(value: Any, path: str, n: int) -> list[tuple]:
        entries = array(value, path)
        if len(entries) not in (0, n):
            raise fail(path, f"has {len(entries)} entries for {n} slots (must be none or one per slot)")
        out = []
        for i, entry in enumerate(entries):
            pair = array(entry, f"{path}[{i}]")
            if len(pair) != 2:
                raise fail(f"{path}[{i}]", "must be [shape, dtype]")
            out.append((shape(pair[0], f"{path}[{i}][0]", dynamic=True), text(pair[1], f"{path}[{i}][1]",
                                                                             TYPE_DTYPES)))
        return out

    def step(self, value: Any, path: str, n: int, written: set[int], depth: int) -> Step:
        obj = record(value, path, STEP_KEYS)
        kernel = text(obj["kernel"], f"{path}.kernel")
        if not has_kernel(kernel):
            raise fail(f"{path}.kernel", f"no CPU kernel is registered for {kernel!r:.60}")
        inputs = []
        for i, v in enumerate(array(obj["inputs"], f"{path}.inputs")):
            slot = integer(v, f"{path}.inputs[{i}]", NO_SLOT, n - 1)
            if slot != NO_SLOT and slot not in written:
                raise fail(f"{path}.inputs[{i}]", f"slot {slot} is read before anything writes it")
            inputs.append(slot)
        outputs = []
        for i, v in enumerate(array(obj["outputs"], f"{path}.outputs")):
            slot = integer(v, f"{path}.outputs[{i}]", 0, n - 1)
            if slot in written:
                raise fail(f"{path}.outputs[{i}]", f"slot {slot} is written twice")
            outputs.append(slot)
        written.update(outputs)
        attrs_obj = obj["attrs"]
        if not isinstance(attrs_obj, dict):
            raise fail(f"{path}.attrs", "must be an object")
        attrs = {k: self.value(v, f"{path}.attrs.{k}", 0, depth) for k, v in attrs_obj.items()}
        if kernel == "FusedElementwise":
            try:
                decode_fused(attrs.get("code"), len(inputs))
            except KernelError as exc:
                raise fail(f"{path}.attrs.code", str(exc)) from None
        return Step(kernel, tuple(inputs), tuple(outputs), attrs, text(obj["name"], f"{path}.name"))

    def value(self, value: Any, path: str, depth: int, program_depth: int) -> Any:
        if value is None or isinstance(value, (bool, str, float)):
            return value
        if isinstance(value, int):
            return integer(value, path)
        if isinstance(value, list):
            if depth >= MAX_VALUE_DEPTH:
                raise fail(path, f"tuples nested more than {MAX_VALUE_DEPTH} deep")
            return tuple(self.value(v, f"{path}[{i}]", depth + 1, program_depth) for i, v in enumerate(value))
        if isinstance(value, dict) and len(value) == 1:
            (tag, inner), = value.items()
            if tag == "array":
                return self.array_ref(inner, f"{path}.array")
            if tag == "scalar":
                scalar = self.array_ref(inner, f"{path}.scalar")
                if scalar.ndim:
                    raise fail(f"{path}.scalar", f"array {inner} has shape {list(scalar.shape)}, not a scalar")
                return scalar[()]
            if tag == "program":
                return self.program(inner, f"{path}.program", program_depth + 1)
        raise fail(path, "must be null, a boolean, number, string, array, or an object with one key "
                         "'array', 'scalar' or 'program'")


def _native(array: np.ndarray) -> np.ndarray:
    """A little-endian array in the host's byte order, labelled native
    ('=', as numpy makes arrays): a '<'-labelled float32 array is equal in
    dtype but not identical, so ``np.ascontiguousarray(b, np.float32)``
    made a new view of it on every call, and the caches kept by an array's
    identity (a layer's planned GEMM) missed on every inference."""
    native = array.dtype.newbyteorder("=")
    return array.view(native) if sys.byteorder == "little" else array.astype(native)


def _arrays(entries: Any, blob: np.ndarray, path: str) -> list[np.ndarray]:
    """Views of the blob, one per table entry, each checked against it."""
    out, end = [], 0
    for i, entry in enumerate(array(entries, path)):
        where = f"{path}[{i}]"
        obj = record(entry, where, ARRAY_KEYS)
        dtype = np.dtype(text(obj["dtype"], f"{where}.dtype", ARRAY_DTYPES)).newbyteorder("<")
        dims = shape(obj["shape"], f"{where}.shape")
        offset = integer(obj["offset"], f"{where}.offset", end, blob.size)
        if offset % ARRAY_ALIGN:
            raise fail(f"{where}.offset", f"{offset} is not a multiple of {ARRAY_ALIGN}")
        length = integer(obj["length"], f"{where}.length", 0, blob.size - offset)
        if length != math.prod(dims) * dtype.itemsize:
            raise fail(f"{where}.length", f"{length} bytes do not hold a {dtype.name} array of shape {list(dims)}")
        data = blob[offset:offset + length]
        if dtype.kind == "b" and data.size and data.max() > 1:
            raise fail(where, "a bool array holds bytes other than 0 and 1")
        out.append(_native(data.view(dtype)).reshape(dims))
        end = offset + length
    return out


def decode_programs(payload, section: str) -> list[Program]:
    """The Programs of a program section, every field checked; errors name
    ``section`` and the JSON path."""
    if len(payload) < PROGRAM_PREFIX.size:
        raise fail(section, f"{len(payload)} bytes, shorter than its {PROGRAM_PREFIX.size}-byte prefix")
    json_length, blob_offset = PROGRAM_PREFIX.unpack_from(payload)
    json_end = PROGRAM_PREFIX.size + json_length
    if not json_end <= blob_offset <= len(payload) or blob_offset % SECTION_ALIGN:
        raise fail(section, f"JSON length {json_length} and blob offset {blob_offset} do not fit the "
                            f"{len(payload)}-byte section (the blob starts after the JSON, {SECTION_ALIGN}-aligned)")
    if any(payload[json_end:blob_offset]):
        raise fail(section, "the padding between the JSON and the blob is not zero")
    document = record(parse_json(payload[PROGRAM_PREFIX.size:json_end], section), section, ("programs", "arrays"))
    blob = np.frombuffer(payload, np.uint8, offset=blob_offset).copy()
    blob.flags.writeable = False  # constants are constant: kernels may keep forms derived from them (weight_cache)
    decoder = _Decoder(_arrays(document["arrays"], blob, f"{section}.arrays"))
    return [decoder.program(p, f"{section}.programs[{i}]", 0)
            for i, p in enumerate(array(document["programs"], f"{section}.programs"))]

