"""Fuzzing the binary reader: mutated and truncated real binaries (hand-built
and compiled ones), above and below the checksums. Every case reads back
identical or is rejected with a BinaryFormatError; whatever the reader
accepts runs without crashing."""
from __future__ import annotations

import copy
import functools
import json
import struct

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from codegen.binary import write_binary
from codegen.cpu import lower_to_program
from compiler.frontend import import_onnx
from compiler.pipeline import OPTIMIZE
from compiler.zoo import resnet
from runtime.binary import BinaryFormatError, container, describe, read_binary
from runtime.binary.format import ENTRY, HEADER, Section
from runtime.compiled import CompiledModel
from runtime.hardware import HardwareConfig
from tests.helpers.binary import (
    Parts,
    compiled_binary,
    dram_image,
    fuzz,
    header_patched,
    loop_model,
    rejects,
    with_device,
)
from tests.helpers.mutate import json_places


# ---------------------------------------------------------------- fuzzing
@functools.cache
def fuzz_binary() -> bytes:
    """A small binary with every kind of content: a CPU program with a Loop,
    a fused reference, device segments with several streams."""
    loop = loop_model()
    reference = lower_to_program(OPTIMIZE(import_onnx(resnet(10, image=16, width=4, classes=4))))
    segments, inputs, outputs = with_device(list(loop.segments), loop.inputs, loop.outputs)
    model = CompiledModel(HardwareConfig(), inputs, outputs, segments, dram_image()[:0x2000], 0x40000,
                          reference, {"source": "fuzz"})
    return write_binary(model)


def read_or_reject(data: bytes):
    """The model ``data`` holds, or None when the reader rejects it; any other
    exception fails the test."""
    try:
        return read_binary(data)
    except BinaryFormatError:
        return None


MUTATIONS = st.sampled_from(["flip", "overwrite", "insert", "delete", "truncate"])


def mutate(data: bytes, draw, kind: str) -> bytes:
    out = bytearray(data)
    at = draw(st.integers(0, len(out) - 1))
    if kind == "flip":
        out[at] ^= 1 << draw(st.integers(0, 7))
    elif kind == "overwrite":
        chunk = draw(st.binary(min_size=1, max_size=16))
        out[at:at + len(chunk)] = chunk
    elif kind == "insert":
        out[at:at] = draw(st.binary(min_size=1, max_size=16))
    elif kind == "delete":
        del out[at:at + draw(st.integers(1, 64))]
    else:
        del out[at:]
    return bytes(out)


def identical_or_rejected(original: bytes, draw, kind: str) -> None:
    """A mutated binary either is the original (a no-op mutation) and reads
    back to the same bytes, or is rejected with a format error."""
    mutated = mutate(original, draw, kind)
    model = read_or_reject(mutated)
    if model is not None:
        assert mutated == original and write_binary(model) == original


@fuzz(1500)
@given(data=st.data(), kind=MUTATIONS)
def test_fuzz_raw_bytes_read_identically_or_are_rejected(data, kind):
    identical_or_rejected(fuzz_binary(), data.draw, kind)


@fuzz(200)
@given(data=st.data(), at=st.sampled_from([0, 8, 10, 12, 16, 24, 28, 32, 40, 48, 56, 60, 64, 72, 80, 88]))
def test_fuzz_header_and_table_fields(data, at):
    """Fields of the header and table changed with the header CRC fixed: the
    layout checks, not the checksum, must catch them."""
    fuzz_bytes = fuzz_binary()
    value = data.draw(st.one_of(st.integers(0, 255), st.sampled_from([0, 1, 63, 64, 65, 1 << 31, 1 << 40])))
    fmt = {0: "<B", 8: "<H", 10: "<H", 16: "<Q", 40: "<Q", 48: "<Q", 72: "<Q", 80: "<Q"}.get(at, "<I")
    value &= (1 << (8 * struct.calcsize(fmt))) - 1
    mutated = header_patched(fuzz_bytes, at, fmt, value)
    model = read_or_reject(mutated)
    if model is not None:
        assert write_binary(model) == fuzz_bytes


JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70),
    st.sampled_from([0, -1, 1, 2, 3, 7, 8, 63, 64, 65, 255, 256, (1 << 31) - 1, 1 << 31, (1 << 63) - 1, 1 << 63]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
    st.sampled_from(["float32", "int8", "int16", "cpu", "device", "Relu", "FusedElementwise", "add"]),
    st.lists(st.integers(-2, 70), max_size=4), st.just({}), st.just({"array": 0}), st.just({"scalar": 0}),
    st.just({"program": {}}))


def tweak(draw, places) -> None:
    """Change one place of a JSON document: a nearby or hostile value, a
    deleted key or item, or a duplicated item."""
    node, key = draw(st.sampled_from(places))
    value = node[key]
    action = draw(st.sampled_from(["replace", "nudge", "delete", "duplicate"]))
    if action == "nudge" and isinstance(value, int) and not isinstance(value, bool):
        node[key] = value + draw(st.sampled_from([-65, -64, -1, 1, 2, 64, 1 << 20]))
    elif action == "delete":
        del node[key]
    elif action == "duplicate" and isinstance(node, list):
        node.insert(key, copy.deepcopy(value))
    else:
        node[key] = copy.deepcopy(draw(JSON_VALUES))  # st.just gives the same object every time


def accepted_is_consistent(model) -> None:
    """What the reader accepts, the writer writes and the reader accepts again."""
    if model is not None:
        again = write_binary(model)
        assert write_binary(read_binary(again)) == again


@fuzz(700)
@given(data=st.data(), target=st.sampled_from(["META", "CONFIG", "CPU", "REFERENCE"]), edits=st.integers(1, 3))
def test_fuzz_json_below_the_checksums(data, target, edits):
    fuzz_bytes = fuzz_binary()
    parts = Parts(fuzz_bytes)
    document = {"META": parts.meta, "CONFIG": parts.config, "CPU": parts.programs[Section.CPU][0],
                "REFERENCE": parts.programs.get(Section.REFERENCE, [{}])[0]}[target]
    for _ in range(edits):
        places = json_places(document)
        if places:
            tweak(data.draw, places)
    accepted_is_consistent(read_or_reject(parts.build()))


@fuzz(400)
@given(data=st.data(), target=st.sampled_from([Section.STREAMS, Section.WEIGHTS, Section.CPU, Section.META]),
       kind=MUTATIONS)
def test_fuzz_section_bytes_below_the_checksums(data, target, kind):
    """Section bytes changed and every CRC (sections, streams) recomputed:
    instruction fields, blob contents and JSON text reach the semantic checks."""
    fuzz_bytes = fuzz_binary()
    parts = Parts(fuzz_bytes)
    if target == Section.CPU:
        blob = parts.programs[Section.CPU][1]
        if blob:
            parts.programs[Section.CPU][1] = bytearray(mutate(bytes(blob), data.draw, kind))
    elif target == Section.META:
        parts.raw[Section.META] = mutate(parts.raw[Section.META], data.draw, kind)
        meta = read_meta_or_none(parts.raw[Section.META])
        if meta is None:
            rejects(container.pack(sorted({**parts.raw}.items()), parts.flags), r"META: ")
            return
        parts.meta = meta
    elif parts.raw[target]:
        parts.raw[target] = mutate(parts.raw[target], data.draw, kind if target == Section.WEIGHTS else "flip")
    accepted_is_consistent(read_or_reject(parts.build()))


def read_meta_or_none(raw: bytes):
    try:
        return json.loads(raw)
    except ValueError:
        return None


@fuzz(400)
@given(data=st.data())
def test_fuzz_instruction_fields_below_the_checksums(data):
    """Random instruction words of the right opcode spliced into a stream:
    the ISA validator decides, and its verdict arrives as a format error."""
    fuzz_bytes = fuzz_binary()
    parts = Parts(fuzz_bytes)
    streams = bytearray(parts.raw[Section.STREAMS])
    index = data.draw(st.integers(0, len(streams) // 64 - 1))
    word = bytearray(data.draw(st.binary(min_size=64, max_size=64)))
    word[0] = streams[64 * index]
    if data.draw(st.booleans()):
        keep = data.draw(st.integers(2, 63))
        word[:keep] = streams[64 * index:64 * index + keep]
    streams[64 * index:64 * index + 64] = word
    parts.raw[Section.STREAMS] = bytes(streams)
    accepted_is_consistent(read_or_reject(parts.build()))


def test_every_accepted_mutation_needs_all_bytes():
    """No byte of a binary is unused: flipping any one bit of the header,
    the table or a section's first and last byte is rejected."""
    fuzz_bytes = fuzz_binary()
    info = describe(fuzz_bytes)
    positions = list(range(HEADER.size + ENTRY.size * len(info["sections"])))
    positions += [p for s in info["sections"] if s["length"] for p in (s["offset"], s["offset"] + s["length"] - 1)]
    for position in positions:
        corrupt = bytearray(fuzz_bytes)
        corrupt[position] ^= 0x10
        assert read_or_reject(bytes(corrupt)) is None, position
    assert len(positions) > 200


# ---------------------------------------------------------------- a compiled model's binary
def run_accepted(model) -> None:
    """A binary the reader accepts runs to the end or stops with a clear
    Tessera error (a PARAM record the simulator refuses), never worse."""
    from runtime.engine import Engine
    from runtime.errors import TesseraError

    if model is None:
        return
    try:
        Engine(model).run({t.name: np.ones(t.shape, np.float32) for t in model.inputs})
    except TesseraError:
        pass


@fuzz(600)
@given(data=st.data(), kind=MUTATIONS)
def test_fuzz_a_compiled_binary(data, kind):
    identical_or_rejected(compiled_binary(), data.draw, kind)


@fuzz(300)
@given(data=st.data(), target=st.sampled_from([Section.STREAMS, Section.WEIGHTS]))
def test_fuzz_a_compiled_binary_below_the_checksums(data, target):
    """Instruction words and weights changed with every CRC recomputed: the
    validator rejects what could go out of bounds, and whatever it accepts
    runs on the simulator without crashing."""
    parts = Parts(compiled_binary())
    raw = bytearray(parts.raw[target])
    at = data.draw(st.integers(0, len(raw) - 1))
    if target == Section.STREAMS:
        at -= at % 64
        word = data.draw(st.binary(min_size=64, max_size=64))
        keep = data.draw(st.integers(1, 63))
        raw[at + keep:at + 64] = word[keep:]
    else:
        raw[at] ^= 1 << data.draw(st.integers(0, 7))
    parts.raw[target] = bytes(raw)
    run_accepted(read_or_reject(parts.build()))
