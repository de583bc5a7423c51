"""The binary campaign's target (tests/helpers/fuzzing.py): a small compiled
ResNet's binary (device streams, packed weights, a CPU segment, the float
reference) mutated above and below the checksums, through FWDNXT Init,
Run_sw and Run_th.

Most mutations re-pack the file with every checksum recomputed (the section
CRCs and the per-stream CRCs in META), as an attacker would, so that they
reach the checks behind the checksums; the instruction mutations decode the
streams with runtime.isa, change fields (opcode, token flags, addresses,
lengths, counts, any field to a value of its width), re-encode and
re-checksum. A case is accepted when the file loads and runs."""
from __future__ import annotations

import json
import re
import struct
import sys
from typing import NamedTuple

import numpy as np

from runtime import FWDNXT, isa
from runtime.binary.format import ENTRY, HEADER, Section
from runtime.isa import COL_OPCODE, COL_TOKENS, FIRST_FIELD_COLUMN, SPECS, Op
from tests.helpers.binary import Parts, compiled_binary, header_patched
from tests.helpers.fuzzing import Case, warm_up
from tests.helpers.mutate import boundary_int, mutate_bytes, pick, tweak_json

KINDS = ("instr_field", "instr_field", "instr_field", "instr_opcode", "instr_tokens", "instr_swap",
         "stream_table", "json", "json", "section", "section", "weights", "header", "raw")
MAX_ELEMENTS = 1 << 24
"""Inputs larger than this are not allocated by the harness (the binary is
accepted; what it declares is too big to feed)."""


class State(NamedTuple):
    data: bytes
    ops: tuple[Op, ...]
    header_fields: list[tuple[int, str]]


def setup() -> State:
    data = compiled_binary()
    state = State(data, tuple(SPECS), header_fields(HEADER.unpack_from(data)[3]))
    warm_up(sys.modules[__name__], state, [(data, ".bin")])
    return state


def header_fields(sections: int) -> list[tuple[int, str]]:
    """(offset, struct format) of every field of the header (the magic's
    first byte for the magic) and of the section table's entries."""
    fields = []
    for base, layout in [(0, HEADER)] + [(HEADER.size + ENTRY.size * i, ENTRY) for i in range(sections)]:
        offset = base
        for code in re.findall(r"\d*[A-Za-z]", layout.format[1:]):
            fields.append((offset, "<B" if code.endswith("s") else "<" + code))
            offset += struct.calcsize("<" + code)
    return fields


def generate(state: State, rng: np.random.Generator) -> Case:
    kind = pick(rng, KINDS)
    if kind == "raw":
        return Case(mutate_bytes(rng, state.data), kind)
    if kind == "header":
        offset, fmt = pick(rng, state.header_fields)
        value = boundary_int(rng) & ((1 << (8 * struct.calcsize(fmt))) - 1)
        return Case(header_patched(state.data, offset, fmt, value), kind)
    parts = Parts(state.data)
    if kind.startswith("instr"):
        _mutate_instructions(rng, parts, kind, state.ops)
    elif kind == "stream_table":
        _mutate_stream_table(rng, parts)
    elif kind == "json":
        _mutate_json(rng, parts)
    elif kind == "section":
        _mutate_section(rng, parts)
    else:
        parts.raw[Section.WEIGHTS] = mutate_bytes(rng, parts.raw[Section.WEIGHTS], "flip")
    return Case(parts.build(), kind)


def _mutate_instructions(rng: np.random.Generator, parts: Parts, kind: str, ops: tuple[Op, ...]) -> None:
    """Decode the streams, change one instruction, re-encode (values kept
    within their fields' widths so that the encoder takes them)."""
    arr, _ = isa.decode_array(parts.raw[Section.STREAMS])
    row = int(rng.integers(len(arr)))
    if kind == "instr_swap":
        other = int(rng.integers(len(arr)))
        arr[[row, other]] = arr[[other, row]]
    elif kind == "instr_tokens":
        arr[row, COL_TOKENS] = rng.integers(0, 2, len(COL_TOKENS))
    else:
        if kind == "instr_opcode":
            arr[row, COL_OPCODE] = int(pick(rng, ops))
        spec = SPECS[Op(int(arr[row, COL_OPCODE]))]
        for _ in range(1 if kind == "instr_opcode" else int(rng.integers(1, 3))):
            if spec.fields:
                k = int(rng.integers(len(spec.fields)))
                column = FIRST_FIELD_COLUMN + k
                arr[row, column] = _field_value(rng, spec.fields[k], int(arr[row, column]))
        for k, field in enumerate(spec.fields):  # an opcode change keeps the old values where they fit
            column = FIRST_FIELD_COLUMN + k
            arr[row, column] = min(max(int(arr[row, column]), field.lowest), field.highest)
    parts.raw[Section.STREAMS] = isa.encode_array(arr)


def _field_value(rng: np.random.Generator, field, old: int) -> int:
    """A value of ``field``'s width: a boundary, a neighbour of the old one,
    an allowed value, or any."""
    choice = int(rng.integers(5))
    if choice == 0:
        value = pick(rng, (field.lowest, field.highest, 0, 1, -1, field.highest // 2 + 1))
    elif choice == 1:
        value = old + int(pick(rng, (-64, -8, -1, 1, 8, 64, 1 << 12, 1 << 20)))
    elif choice == 2:
        value = old * 2 if rng.random() < 0.5 else old // 2
    elif choice == 3 and field.allowed:
        value = pick(rng, field.allowed)
    else:
        value = int(rng.integers(field.lowest, field.highest, endpoint=True, dtype=np.int64)) \
            if field.bits < 64 else boundary_int(rng)
    return min(max(int(value), field.lowest), field.highest)


def _mutate_stream_table(rng: np.random.Generator, parts: Parts) -> None:
    """One stream table entry's key, offset, length or count changed."""
    entries = [e for s in parts.meta["segments"] for e in s.get("streams") or []]
    entry = pick(rng, entries)
    name = pick(rng, ("key", "offset", "length", "count"))
    if name == "key":
        entry["key"][int(rng.integers(3))] = boundary_int(rng, 0)
    else:
        entry[name] = boundary_int(rng, entry[name]) if rng.random() < 0.7 else entry[name] + 64 * int(
            pick(rng, (-2, -1, 1, 2)))


def _mutate_json(rng: np.random.Generator, parts: Parts) -> None:
    """One to three edits of META, CONFIG, or a CPU or reference program."""
    target = pick(rng, ("META", "META", "CONFIG", "CPU", "REFERENCE"))
    document = {"META": parts.meta, "CONFIG": parts.config, "CPU": parts.programs[Section.CPU][0],
                "REFERENCE": parts.programs[Section.REFERENCE][0]}[target]
    for _ in range(int(rng.integers(1, 4))):
        tweak_json(rng, document)


def _mutate_section(rng: np.random.Generator, parts: Parts) -> None:
    """A section's bytes mutated (streams, weights, META text, a program's
    blob), every checksum recomputed; META text that no longer parses is
    packed as it is."""
    target = pick(rng, ("STREAMS", "WEIGHTS", "META", "CPU_BLOB", "REFERENCE_BLOB"))
    if target.endswith("_BLOB"):
        program = parts.programs[Section[target[:-5]]]
        program[1] = bytearray(mutate_bytes(rng, bytes(program[1])))
    elif target == "META":
        text = mutate_bytes(rng, parts.raw[Section.META])
        try:
            parts.meta = json.loads(text)
        except ValueError:
            parts.meta = None
            parts.raw[Section.META] = text
    else:
        parts.raw[Section[target]] = mutate_bytes(rng, parts.raw[Section[target]])


# ---------------------------------------------------------------- running a case
def execute(state: State, path: str, kind: str) -> None:
    """Init the file, then Run_sw and Run_th on inputs of the shapes it declares."""
    ie = FWDNXT()
    try:
        counts = ie.Init(path)
        shapes = [[int(d) for d in s.split("x")] for s in str(ie.GetInfo("inshapes")).split(";") if s]
        if sum(int(np.prod(s)) for s in shapes) > MAX_ELEMENTS:
            return
        rng = np.random.default_rng(0)
        images = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        image = images[0] if len(images) == 1 else tuple(images)
        for run in (ie.Run_sw, ie.Run_th):
            result = np.empty(counts, np.float32) if isinstance(counts, int) else \
                tuple(np.empty(c, np.float32) for c in counts)
            run(image, result)
    finally:
        ie.Free()

