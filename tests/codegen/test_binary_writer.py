"""The binary writer (codegen/binary.py): deterministic bytes, the section
layout, stripping the reference, every storable attribute value coming back
exactly, and clear errors for what cannot be stored."""
from __future__ import annotations

import json

import numpy as np
import pytest

from codegen.binary import write_binary
from runtime.binary import BinaryFormatError, Section, describe, read_binary
from runtime.binary.format import HEADER, MAGIC, SECTION_ALIGN
from runtime.compiled import CompiledModel, CpuSegment, HostTensor
from runtime.hardware import HardwareConfig
from runtime.isa import StreamKey
from runtime.program import Program, Step
from tests.helpers.binary import Parts, assert_same, loop_model, quantized_model


def one_step_model(attrs: dict, constants: dict | None = None) -> CompiledModel:
    """A model whose one CPU segment is an Identity step carrying ``attrs``
    (the kernel ignores them: this is about storing values)."""
    program = Program(["x", "y", "c0", "c1", "c2", "c3"], [0], [1], [Step("Identity", (0,), (1,), attrs, "id")],
                      constants or {}, [((2, None), "float32"), ((2, None), "float32"), ((), "int64"),
                                        ((3,), "bool"), ((0, 4), "float16"), ((2, 2), "uint64")], "one step")
    return CompiledModel(HardwareConfig(), [HostTensor("x", (2, 1))], [HostTensor("y", (2, 1))],
                         [CpuSegment("s", program, ["x"], ["y"])], b"\x01\x02", 64, None, {"k": [1, "two"]})


EVERY_VALUE = {
    "none": None, "bools": (True, False), "int": -(1 << 63), "big": (1 << 63) - 1, "float": 0.1,
    "specials": (float("nan"), float("inf"), float("-inf"), -0.0), "text": "Ünïcode \u2603 \ud800",
    "nested": ((1, (2.5, ("deep", ()))), None), "empty": (),
    "f32": np.float32(1.5), "i8": np.int8(-7), "b": np.bool_(True),
    "array": np.arange(12, dtype=np.int16).reshape(3, 4), "scalar0d": np.array(3.25, np.float64),
    "empty_array": np.zeros((0, 3), np.uint8), "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    "program": Program(["a", "b"], [0], [1], [Step("Relu", (0,), (1,), {"k": (1,)}, "r")], {}, [], "sub"),
    "arrays in tuple": (np.ones(2, np.float32), np.array([1, 0], np.uint32)),
}


def test_every_storable_value_comes_back_exactly():
    constants = {2: np.array(5, np.int64), 3: np.array([True, False, True]), 4: np.zeros((0, 4), np.float16),
                 5: np.array([[1, 2], [3, 1 << 63]], np.uint64)}
    model = one_step_model(EVERY_VALUE, constants)
    back = read_binary(write_binary(model))
    assert_same(model, back)
    attrs = back.segments[0].program.steps[0].attrs
    assert attrs["fortran"].flags.c_contiguous and attrs["f32"].dtype == np.float32
    assert type(attrs["i8"]) is np.int8 and attrs["text"] == EVERY_VALUE["text"]


def test_big_endian_arrays_are_stored_little_endian():
    model = one_step_model({"w": np.arange(4, dtype=">i4")})
    back = read_binary(write_binary(model)).segments[0].program.steps[0].attrs["w"]
    assert back.dtype == np.dtype("<i4") and back.tolist() == [0, 1, 2, 3]


def test_output_is_deterministic_and_laid_out_in_order(tmp_path):
    first, second = quantized_model(), quantized_model()
    data = write_binary(first, tmp_path / "model.bin")
    assert (tmp_path / "model.bin").read_bytes() == data == write_binary(second) == write_binary(first)
    assert data[:8] == MAGIC
    sections = describe(data)["sections"]
    assert [s["id"] for s in sections] == list(Section)
    assert sections[0]["offset"] >= HEADER.size + 32 * len(sections)
    for before, after in zip(sections, sections[1:]):
        assert after["offset"] % SECTION_ALIGN == 0 and after["offset"] >= before["offset"] + before["length"]
    assert sections[-1]["offset"] + sections[-1]["length"] == len(data)
    parts = Parts(data)
    assert parts.config == first.config.to_dict()
    assert parts.meta["metadata"] == first.metadata and parts.meta["dram_size"] == first.dram_size
    streams = [e for s in parts.meta["segments"] if s["kind"] == "device" for e in s["streams"]]
    assert [e["key"] for e in streams] == [[0, 0, 0], [0, 0, 0], [0, 1, 0], [0, 2, 0], [0, 1, 1]]
    assert [e["offset"] for e in streams] == [0, 960, 1152, 1344, 1536] and parts.raw[Section.WEIGHTS] == \
        first.dram_image


def test_strip_reference_leaves_out_the_float_program():
    model = quantized_model()
    full, stripped = write_binary(model), write_binary(model, strip_reference=True)
    assert len(stripped) < len(full)
    info = describe(stripped)
    assert info["flags"] == 1 and "REFERENCE" not in [s["name"] for s in info["sections"]]
    back = read_binary(stripped)
    assert back.reference is None and len(back.segments) == len(model.segments)
    assert write_binary(back) == stripped


def test_models_without_device_segments_or_weights():
    model = loop_model()
    model.reference = None
    back = read_binary(write_binary(model))
    assert back.dram_image == b"" and back.device_segments == [] and back.reference is None
    assert_same(model, back)


def test_a_two_item_stream_key_is_stored_with_phase_zero():
    model = quantized_model()
    device = model.device_segments[0]
    device.streams = {(0, 0): device.streams[StreamKey(0, 0, 0)]}
    back = read_binary(write_binary(model))
    assert list(back.device_segments[0].streams) == [StreamKey(0, 0, 0)]


@pytest.mark.parametrize("value, message", [
    ([1, 2], r"CPU.programs\[0\].steps\[0\].attrs.bad: cannot store an attribute of type list"),
    ({"a": 1}, r"attrs.bad: cannot store an attribute of type dict"),
    (1 << 64, r"attrs.bad: 18446744073709551616 is outside"),
    (np.array(["a"], dtype=object), r"attrs.bad: cannot store an array of dtype object"),
    (np.complex64(1j), r"attrs.bad: cannot store an array of dtype complex64"),
    ((((((((((((((((((((1,),),),),),),),),),),),),),),),),),),), r"attrs.bad(\[0\])+: tuples nested more than 16"),
    (len, r"attrs.bad: cannot store an attribute of type builtin_function_or_method"),
])
def test_unstorable_attributes_are_named(value, message):
    with pytest.raises(BinaryFormatError, match=message):
        write_binary(one_step_model({"bad": value}))


def test_metadata_must_be_json():
    model = one_step_model({})
    model.metadata = {"scale": np.float32(1)}
    with pytest.raises(BinaryFormatError, match=r"META: cannot be written as JSON: Object of type float32"):
        write_binary(model)
    model.metadata = {"options": {"numcard": 2}, "nlayers": 3, "tuple": (1, 2)}
    assert read_binary(write_binary(model)).metadata == json.loads(json.dumps(model.metadata))
