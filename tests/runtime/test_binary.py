"""The binary reader (runtime/binary/): round trips of real models (programs
give identical outputs), every validation rule with the place it names, and
fuzzing both above the checksums (raw bytes: corruption is always caught)
and below them (sections edited and re-checksummed: the semantic checks).

The model builders and the section editor here serve the writer's tests too."""
from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest

from codegen.binary import write_binary
from codegen.cpu import lower_to_program
from compiler.frontend import import_onnx
from compiler.pipeline import OPTIMIZE
from compiler.zoo import resnet
from runtime import Executor, isa
from runtime.binary import BinaryFormatError, describe, read_binary
from runtime.binary.format import ENTRY, HEADER, PROGRAM_PREFIX, SECTION_ALIGN, VERSION, Section
from runtime.compiled import CompiledModel, CpuSegment, HostTensor
from runtime.hardware import HardwareConfig
from runtime.isa import Op, StreamKey, instr
from runtime.program import Program, Step
from tests.helpers.binary import (
    Parts,
    assert_same,
    calibration,
    header_patched,
    loop_model,
    quantized_model,
    rejects,
)

# ---------------------------------------------------------------- models


@pytest.fixture(scope="module")
def quantized():
    return quantized_model()


@pytest.fixture(scope="module")
def quantized_bytes(quantized):
    return write_binary(quantized)


# ---------------------------------------------------------------- equality


def run_cpu_segments(model: CompiledModel, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every CPU segment in order over one table of named tensors."""
    table = dict(feeds)
    for segment in model.segments:
        if isinstance(segment, CpuSegment):
            results = Executor(segment.program, check=True).run(dict(zip(segment.program.input_names,
                                                                          (table[n] for n in segment.inputs))))
            table.update(zip(segment.outputs, (results[n] for n in segment.program.output_names)))
    return table


# ---------------------------------------------------------------- round trips
def test_quantized_model_round_trips_and_runs_identically(quantized, quantized_bytes):
    back = read_binary(quantized_bytes)
    assert_same(quantized, back)
    assert write_binary(back) == quantized_bytes
    kernels = {s.kernel for seg in back.segments if isinstance(seg, CpuSegment) for s in seg.program.steps}
    assert {"QConv", "QAvgPool", "QuantizeLinear", "DequantizeLinear", "Gemm", "Softmax"} <= kernels
    assert "FusedElementwise" in {s.kernel for s in back.reference.steps}
    image = calibration()[0]
    want, got = run_cpu_segments(quantized, {"image": image}), run_cpu_segments(back, {"image": image})
    assert np.array_equal(want["probabilities"], got["probabilities"])
    assert got["probabilities"].shape == (1, 10) and np.isclose(got["probabilities"].sum(), 1, atol=1e-3)
    ref_want = Executor(quantized.reference).run({"image": image})
    ref_got = Executor(back.reference, check=True).run({"image": image})
    assert np.array_equal(ref_want["probabilities"], ref_got["probabilities"])
    programs = [back.reference] + [seg.program for seg in back.segments if isinstance(seg, CpuSegment)]
    constants = [a for p in programs for a in p.constants.values()]
    assert constants and not any(a.flags.writeable for a in constants)  # frozen: the kernels' caches trust them
    devices = back.device_segments
    assert [len(d.streams) for d in devices] == [1, 4] and back.layers == quantized.layers
    assert devices[1].streams[StreamKey(0, 1, 1)] == quantized.device_segments[1].streams[StreamKey(0, 1, 1)]


def test_loop_model_round_trips_with_its_sub_program(tmp_path):
    model = loop_model()
    path = tmp_path / "loop.bin"
    data = write_binary(model, path)
    back = read_binary(path)
    assert_same(model, back)
    loop = next(s for s in back.reference.steps if s.kernel == "Loop")
    assert isinstance(loop.attrs["body"], Program)
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 3
    assert np.array_equal(Executor(back.reference).run({"x": x})["out"], np.maximum(x + [1.5, -3, 6], 0))
    assert read_binary(str(path)).config.cards == 2 and read_binary(bytearray(data)).dram_size == 0


def test_describe_lists_sections_and_their_checksums(quantized_bytes):
    info = describe(quantized_bytes)
    assert info["version"] == VERSION and info["size"] == len(quantized_bytes) and info["flags"] == 0
    assert [s["name"] for s in info["sections"]] == ["CONFIG", "META", "WEIGHTS", "STREAMS", "CPU", "REFERENCE"]
    assert all(s["crc_ok"] and s["offset"] % SECTION_ALIGN == 0 for s in info["sections"])
    cpu = info["sections"][4]
    corrupt = bytearray(quantized_bytes)
    corrupt[cpu["offset"] + 100] ^= 1
    assert [s["crc_ok"] for s in describe(bytes(corrupt))["sections"]] == [True] * 4 + [False, True]


# ---------------------------------------------------------------- the section editor


def edited(data: bytes, edit) -> bytes:
    parts = Parts(data)
    edit(parts)
    return parts.build()


def test_an_unedited_rebuild_is_the_same_file(quantized_bytes):
    assert Parts(quantized_bytes).build() == quantized_bytes


# ---------------------------------------------------------------- the container


def entry_offset(index: int, field: int) -> int:
    """Byte offset of field ``field`` (0 id, 2 offset, 3 length, 4 crc) of table entry ``index``."""
    return HEADER.size + ENTRY.size * index + (0, 4, 8, 16, 24, 28)[field]


def test_an_error_in_a_file_names_the_file(quantized_bytes, tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(quantized_bytes[:-1])
    with pytest.raises(BinaryFormatError, match=rf"^{str(path)}: header: the file is \d+ bytes .*: truncated"):
        read_binary(path)
    with pytest.raises(BinaryFormatError, match=r"^header: the file is"):  # bytes have no name to give
        read_binary(quantized_bytes[:-1])


def test_container_errors_name_what_is_wrong(quantized_bytes):
    data = quantized_bytes
    rejects(data[:20], r"header: the file is 20 bytes, shorter than the 32-byte header")
    rejects(b"PK\x03\x04" + data[4:], r"header: bad magic")
    rejects(header_patched(data, 8, "<H", 7), rf"unknown format version 7 \(this runtime reads version {VERSION}\)")
    rejects(header_patched(data, 8, "<H", 1), r"unknown format version 1 \(this runtime reads version 2\)")
    rejects(data[:-1], r"the file is \d+ bytes but its header says \d+: truncated")
    rejects(data + b"\0", r"followed by extra bytes")
    rejects(header_patched(data, 12, "<I", 0), r"section count 0 is outside \[1, 16\]")
    corrupt = bytearray(data)
    corrupt[entry_offset(1, 3)] ^= 4
    rejects(bytes(corrupt), r"header: CRC32 mismatch over the header and section table")
    rejects(header_patched(data, 10, "<H", 2), r"reserved bits set")
    rejects(header_patched(data, entry_offset(2, 0), "<I", 9), r"section table\[2\] \(unknown section 9\): unknown")
    rejects(header_patched(data, entry_offset(2, 0), "<I", 1), r"section table\[2\] \(CONFIG\): duplicate section")
    rejects(header_patched(data, entry_offset(5, 3), "<Q", 1 << 40), r"section table\[5\] \(REFERENCE\): .* lies "
                                                                      r"outside the \d+-byte file")
    rejects(header_patched(data, entry_offset(1, 2), "<Q", 192), r"section table\[1\] \(META\): offset 192 "
                                                                 r"overlaps the table or the previous section")
    rejects(header_patched(data, entry_offset(1, 2), "<Q", 641), r"offset 641 is not a multiple of 64")
    corrupt = bytearray(data)
    corrupt[describe(data)["sections"][0]["offset"] + 10] ^= 1
    rejects(bytes(corrupt), r"section CONFIG: CRC32 mismatch \(stored 0x[0-9a-f]{8}, computed")
    corrupt = bytearray(data)
    corrupt[describe(data)["sections"][1]["offset"] - 1] = 1
    rejects(bytes(corrupt), r"META\): the padding before the section is not zero")
    rejects(header_patched(data, 10, "<H", 1), r"reference-stripped flag disagrees with the REFERENCE section")
    parts = Parts(data)
    del parts.raw[Section.STREAMS]
    rejects(parts.build(fix_stream_crcs=False), r"required sections \['STREAMS'\] are missing")


# ---------------------------------------------------------------- META, CONFIG and the device segments
def meta_edit(fn):
    return lambda parts: fn(parts.meta)


def device(meta, index=-2):
    return meta["segments"][index]


def set_instruction(parts: Parts, segment: int, index: int, instruction) -> None:
    """Replace one instruction of a segment's first stream in STREAMS."""
    entry = parts.meta["segments"][segment]["streams"][0]
    streams = bytearray(parts.raw[Section.STREAMS])
    start = entry["offset"] + 64 * index
    streams[start:start + 64] = isa.encode(instruction)
    parts.raw[Section.STREAMS] = bytes(streams)


META_CASES = {
    "malformed JSON": (lambda p: p.__dict__.update(meta=None, raw={**p.raw, Section.META: b'{"inputs": [}'}),
                       r"META: malformed JSON"),
    "deep JSON": (meta_edit(lambda m: m.__setitem__("metadata", {"x": json.loads("[" * 200 + "]" * 200)})),
                  r"META: JSON nested more than 96 levels deep"),
    "unknown field": (meta_edit(lambda m: m.__setitem__("extra", 1)),
                      r"META: object lacks fields \[\] or has unknown fields \['extra'\]"),
    "config field": (lambda p: p.config.__setitem__("cards", 0), r"CONFIG: hardware config field 'cards' = 0"),
    "config missing": (lambda p: p.config.pop("clock_hz"), r"CONFIG: .*lacks fields \['clock_hz'\]"),
    "dram size": (meta_edit(lambda m: m.__setitem__("dram_size", 5 << 30)),
                  r"META.dram_size: the model needs 5368709120 bytes of DRAM; the card has 4294967296"),
    "image too long": (meta_edit(lambda m: m.__setitem__("dram_size", 100)),
                       r"WEIGHTS: the DRAM image \(77824 bytes\) is longer than META.dram_size=100"),
    "input dtype": (meta_edit(lambda m: m["inputs"][0].__setitem__("dtype", "complex64")),
                    r"META.inputs\[0\].dtype: 'complex64' is not one of"),
    "input shape": (meta_edit(lambda m: m["inputs"][0].__setitem__("shape", [1, -3])),
                    r"META.inputs\[0\].shape\[1\]: -3 is outside \[0, 2147483647\]"),
    "huge shape": (meta_edit(lambda m: m["outputs"][0].__setitem__("shape", [1 << 20, 1 << 20])),
                   r"META.outputs\[0\].shape: shape \[1048576, 1048576\] describes more than"),
    "duplicate input": (meta_edit(lambda m: m["inputs"].append(m["inputs"][0])),
                        r"META.inputs: names a tensor twice"),
    "dram tensor outside": (meta_edit(lambda m: device(m)["outputs"][0].__setitem__("addr", 0x3FFF0)),
                            r"META.segments\[\d+\].outputs\[0\].addr: 262128 \(\+ 32768 bytes\) is not an "
                            r"1-aligned range inside \[0, dram_size=262144\)"),
    "dram tensor misaligned": (meta_edit(lambda m: device(m, -1)["outputs"][0].__setitem__("addr", 0x30001)),
                               r"segments\[\d+\].outputs\[0\].addr: 196609 .* is not an 2-aligned range"),
    "dram zero out of range": (meta_edit(lambda m: device(m)["inputs"][0].__setitem__("zero", 200)),
                               r"inputs\[0\].zero: 200 is outside \[-128, 127\]"),
    "dram scale": (meta_edit(lambda m: device(m)["inputs"][0].__setitem__("scale", -1.0)),
                   r"inputs\[0\].scale: -1.0 is not a finite positive number"),
    "dram perm repeats": (meta_edit(lambda m: device(m)["inputs"][0].__setitem__("perm", [0, 3, 3, 2])),
                          r"inputs\[0\].perm: \[0, 3, 3, 2\] is not a permutation of the tensor's 4 axes"),
    "dram perm short": (meta_edit(lambda m: device(m)["inputs"][0].__setitem__("perm", [1, 0])),
                        r"inputs\[0\].perm: \[1, 0\] is not a permutation of the tensor's 4 axes"),
    "dram perm long": (meta_edit(lambda m: device(m)["inputs"][0].__setitem__("perm", [0, 1, 2, 3, 4])),
                       r"inputs\[0\].perm: has 5 items, more than 4"),
    "dram perm axis": (meta_edit(lambda m: device(m)["outputs"][0].__setitem__("perm", [0, 1, 2, -4])),
                       r"outputs\[0\].perm\[3\]: -4 is outside \[0, 3\]"),
    "dram perm type": (meta_edit(lambda m: device(m)["outputs"][0].__setitem__("perm", "NHWC")),
                       r"outputs\[0\].perm: must be an array, got a string"),
    "segment kind": (meta_edit(lambda m: m["segments"][0].__setitem__("kind", "gpu")),
                     r"META.segments\[0\].kind: 'gpu' is not one of \['cpu', 'device'\]"),
    "stream offset": (meta_edit(lambda m: device(m)["streams"][0].__setitem__("offset", 64)),
                      r"streams\[0\].offset: 64 is outside \[0, 0\]"),
    "stream count": (meta_edit(lambda m: device(m)["streams"][0].__setitem__("count", 10 ** 6)),
                     r"streams\[0\].count: 1000000 is outside \[1, \d+\]"),
    "stream length": (meta_edit(lambda m: device(m)["streams"][0].__setitem__("length", 100)),
                      r"streams\[0\].length: 100 is outside \[960, 960\]"),
    "stream key": (meta_edit(lambda m: device(m, -1)["streams"][1].__setitem__("key", [0, 0, 0])),
                   r"streams\[1\].key: stream \(0, 0, 0\) appears twice"),
    "stream gap": (lambda p: p.raw.__setitem__(Section.STREAMS, p.raw[Section.STREAMS] + bytes(64)),
                   r"STREAMS: the stream tables cover \d+ of its \d+ bytes"),
    "layer stream": (meta_edit(lambda m: device(m)["layers"][0].__setitem__("stream", [0, 1, 0])),
                     r"layers\[0\].stream: stream \(0, 1, 0\) is not one of this segment's streams"),
    "layer range": (meta_edit(lambda m: device(m)["layers"][0].__setitem__("stop", 16)),
                    r"layers\[0\].stop: 16 is outside \[2, 15\]"),
    "cluster outside config": (meta_edit(lambda m: device(m, -1)["streams"][0].__setitem__("key", [0, 4, 0])),
                               r"segments\[\d+\] \('device1'\): stream \(0, 4, 0\): card or cluster outside"),
    "instruction": (lambda p: set_instruction(p, -2, 4, instr(Op.CONV, kernel_w=13)),
                    r"META.segments\[\d+\] \('device0'\): stream \(0, 0, 0\): instruction 4 \(CONV\): "),
    "barrier": (lambda p: set_instruction(p, -1, 0, instr(Op.SYNC, barrier=1, participants=2)),
                r"\('device1'\): stream \(0, 0, 0\): instruction 0 \(SYNC\): participants=2 but 3 streams"),
    "dram beyond dram_size": (meta_edit(lambda m: (m.__setitem__("dram_size", 0x20000),
                                                   device(m)["outputs"][0].__setitem__("addr", 0))),
                              r"\('device0'\): stream \(0, 0, 0\): instruction 5 \(STORE\): dram_addr=131072 \+ "
                              r"\d+ bytes runs past DRAM \(131072 bytes\)"),
    "flow input": (meta_edit(lambda m: device(m, -1)["inputs"][0].__setitem__("name", "nowhere")),
                   r"segments\[\d+\] \('device1'\).inputs\[0\]: tensor 'nowhere' is neither a model input"),
    "flow twice": (meta_edit(lambda m: device(m, -1)["outputs"][0].__setitem__("name", "conv_out")),
                   r"\('device1'\).outputs\[0\]: tensor 'conv_out' is already defined"),
    "flow output": (meta_edit(lambda m: m["outputs"][0].__setitem__("name", "logits")),
                    r"META.outputs\[0\]: model output 'logits' is produced by no segment"),
    "flow output size": (meta_edit(lambda m: m["outputs"][0].__setitem__("shape", [1])),
                         r"META.outputs\[0\]: tensor 'probabilities' holds 1 values per image here, but \d+ where "
                         r"it is produced"),
    "flow device input size": (meta_edit(lambda m: device(m)["inputs"][0].__setitem__("shape", [1, 1, 1, 2])),
                               r"segments\[2\] \('[^']+'\).inputs\[0\]: tensor '[^']+' holds 2 values per image here"),
    "cpu io count": (meta_edit(lambda m: m["segments"][0]["inputs"].append("image")),
                     r"META.segments\[0\]: names 2 inputs and 1 outputs; its program has 1 and 1"),
    "cpu segments": (meta_edit(lambda m: m["segments"].pop(0)), r"CPU.programs: holds 2 programs for 1 CPU"),
}


@pytest.mark.parametrize("case", list(META_CASES))
def test_meta_and_stream_errors_name_the_place(quantized_bytes, case):
    edit, pattern = META_CASES[case]
    rejects(edited(quantized_bytes, edit), pattern)


def test_stream_checksums_are_checked(quantized_bytes):
    parts = Parts(quantized_bytes)
    streams = bytearray(parts.raw[Section.STREAMS])
    streams[70] ^= 1
    parts.raw[Section.STREAMS] = bytes(streams)
    rejects(parts.build(fix_stream_crcs=False), r"META.segments\[2\].streams\[0\].crc: stream \(0, 0, 0\): CRC32 "
                                                r"mismatch")


# ---------------------------------------------------------------- programs
def cpu_edit(fn):
    return lambda parts: fn(parts.programs[Section.CPU][0])


def step(document, program=0, index=0):
    return document["programs"][program]["steps"][index]


def shaped(document) -> int:
    """The index of an array that is not 0-d."""
    return next(i for i, a in enumerate(document["arrays"]) if a["shape"])


def first_fused(document):
    steps = document["programs"][0]["steps"]
    return next(s for s in steps if s["kernel"] == "FusedElementwise")


PROGRAM_CASES = {
    "kernel": (cpu_edit(lambda d: step(d).__setitem__("kernel", "os.system")),
               r"CPU.programs\[0\].steps\[0\].kernel: no CPU kernel is registered for 'os.system'"),
    "slot range": (cpu_edit(lambda d: step(d)["inputs"].__setitem__(0, 10 ** 4)),
                   r"CPU.programs\[0\].steps\[0\].inputs\[0\]: 10000 is outside \[-1, \d+\]"),
    "read before write": (cpu_edit(lambda d: step(d)["inputs"].__setitem__(0, step(d, 0, 3)["outputs"][0])),
                          r"steps\[0\].inputs\[0\]: slot \d+ is read before anything writes it"),
    "written twice": (cpu_edit(lambda d: step(d, 0, 1)["outputs"].__setitem__(0, step(d)["outputs"][0])),
                      r"steps\[1\].outputs\[0\]: slot \d+ is written twice"),
    "output unwritten": (cpu_edit(lambda d: d["programs"][1]["steps"].pop()),
                         r"CPU.programs\[1\].outputs\[0\]: slot \d+ \('probabilities'\) is never written"),
    "duplicate slot": (cpu_edit(lambda d: d["programs"][1]["slots"].__setitem__(1, d["programs"][1]["slots"][0])),
                       r"CPU.programs\[1\].slots: slot name 'flatten_100' appears twice"),
    "types": (cpu_edit(lambda d: d["programs"][0]["types"].pop()), r"CPU.programs\[0\].types: has \d+ entries for"),
    "type dtype": (cpu_edit(lambda d: d["programs"][0]["types"][0].__setitem__(1, "float128")),
                   r"types\[0\]\[1\]: 'float128' is not one of"),
    "constant dtype": (cpu_edit(lambda d: d["arrays"][0].__setitem__("dtype", "object")),
                       r"CPU.arrays\[0\].dtype: 'object' is not one of"),
    "constant length": (cpu_edit(lambda d: d["arrays"][0].__setitem__("length", d["arrays"][0]["length"] + 1)),
                        r"CPU.arrays\[0\].length: \d+ bytes do not hold a \w+ array of shape"),
    "constant outside blob": (cpu_edit(lambda d: d["arrays"][-1].__setitem__("offset", 1 << 40)),
                              r"CPU.arrays\[\d+\].offset: 1099511627776 is outside"),
    "array claims gigabytes": (cpu_edit(lambda d: d["arrays"][0].update(shape=[1 << 15, 1 << 15], dtype="int8",
                                                                        length=1 << 30)),
                               r"CPU.arrays\[0\].length: 1073741824 is outside"),
    "constant slot": (cpu_edit(lambda d: d["programs"][0]["constants"][0].__setitem__(0, 0)),
                      r"CPU.programs\[0\].constants\[0\]\[0\]: slot 0 is already an input or a constant"),
    "array index": (cpu_edit(lambda d: d["programs"][0]["constants"][0].__setitem__(1, 10 ** 6)),
                    r"constants\[0\]\[1\]: 1000000 is outside \[0, \d+\]"),
    "attribute type": (cpu_edit(lambda d: step(d)["attrs"].__setitem__("axis", {"eval": "1+1"})),
                       r"steps\[0\].attrs.axis: must be null, a boolean, number, string, array, or an object with "
                       r"one key"),
    "attribute int": (cpu_edit(lambda d: step(d)["attrs"].__setitem__("axis", 1 << 70)),
                      r"steps\[0\].attrs.axis: 1180591620717411303424 is outside"),
    "scalar": (cpu_edit(lambda d: step(d)["attrs"].__setitem__("axis", {"scalar": shaped(d)})),
               r"steps\[0\].attrs.axis.scalar: array \d+ has shape \[.*\], not a scalar"),
    "deep tuple": (cpu_edit(lambda d: step(d)["attrs"].__setitem__("axis", json.loads("[" * 20 + "]" * 20))),
                   r"steps\[0\].attrs.axis(\[0\])+: tuples nested more than 16 deep"),
    "step field": (cpu_edit(lambda d: step(d).pop("name")), r"steps\[0\]: object lacks fields \['name'\]"),
    "prefix": (lambda p: (p.programs.pop(Section.CPU),
                          p.raw.__setitem__(Section.CPU, PROGRAM_PREFIX.pack(10 ** 9, 64) + bytes(48))),
               r"CPU: JSON length 1000000000 and blob offset 64 do not fit the 64-byte section"),
    "reference count": (lambda p: p.programs[Section.REFERENCE][0]["programs"].append(
        p.programs[Section.REFERENCE][0]["programs"][0]), r"REFERENCE.programs: holds 2 programs, not one"),
    "fused code": (lambda p: first_fused(p.programs[Section.REFERENCE][0])["attrs"]["code"][0].__setitem__(0, "exec"),
                   r"REFERENCE.programs\[0\].steps\[\d+\].attrs.code: FusedElementwise instruction 0: unknown "
                   r"opcode 'exec'"),
    "fused register": (lambda p: first_fused(p.programs[Section.REFERENCE][0])["attrs"]["code"][0][2].__setitem__(
        0, 31), r"attrs.code: FusedElementwise instruction 0 \(\w+\) reads register 31 before anything writes it"),
}


@pytest.mark.parametrize("case", list(PROGRAM_CASES))
def test_program_errors_name_the_place(quantized_bytes, case):
    edit, pattern = PROGRAM_CASES[case]
    rejects(edited(quantized_bytes, edit), pattern)


def test_sub_programs_are_checked_and_nesting_is_capped():
    data = write_binary(loop_model())

    def body(parts):
        loop = next(s for s in parts.programs[Section.CPU][0]["programs"][0]["steps"] if s["kernel"] == "Loop")
        return loop["attrs"]["body"]["program"]

    rejects(edited(data, lambda p: body(p)["steps"][0].__setitem__("kernel", "Nope")),
            r"CPU.programs\[0\].steps\[0\].attrs.body.program.steps\[0\].kernel: no CPU kernel")

    def nest(parts):
        inner = body(parts)
        for _ in range(13):
            inner = copy.deepcopy({**inner, "steps": [{**inner["steps"][0], "attrs": {"body": {"program": inner}}}]})
        body(parts).update(inner)

    rejects(edited(data, nest), r"(sub-Programs nested more than 12 deep|JSON nested more than 96)")


def test_bool_arrays_hold_only_zero_and_one():
    prog = Program(["x", "y", "m"], [0], [1], [Step("Identity", (0,), (1,), {}, "id")], {2: np.array([True, False])},
                   [], "p")
    model = CompiledModel(HardwareConfig(), [HostTensor("x", (2,))], [HostTensor("y", (2,))],
                          [CpuSegment("s", prog, ["x"], ["y"])], b"", 0)
    data = write_binary(model)
    assert read_binary(data).segments[0].program.constants[2].tolist() == [True, False]

    def poison(parts):
        document, blob = parts.programs[Section.CPU]
        blob[document["arrays"][0]["offset"]] = 2
    rejects(edited(data, poison), r"CPU.arrays\[0\]: a bool array holds bytes other than 0 and 1")


def test_unreadable_path_is_a_format_error(tmp_path):
    rejects(str(tmp_path / "missing.bin"), r"missing.bin: cannot read the binary: No such file")


def test_only_a_regular_file_is_read_and_its_header_first(tmp_path):
    """A FIFO, a device or a directory is refused at once (nothing waits for
    a writer); a large file that is not a binary is refused by its first
    bytes, before the rest is read."""
    fifo = tmp_path / "pipe.bin"
    os.mkfifo(fifo)
    rejects(str(fifo), r"pipe.bin: cannot read the binary: it is a FIFO \(named pipe\), not a regular file")
    rejects("/dev/zero", r"/dev/zero: cannot read the binary: it is a character device")
    rejects(str(tmp_path), r"cannot read the binary: it is a directory")
    sparse = tmp_path / "sparse.bin"
    with open(sparse, "wb") as handle:
        handle.truncate(6 << 30)  # 6 GiB of zeros, none of them on disk
    rejects(str(sparse), r"sparse.bin: header: bad magic")


def test_a_reference_for_another_interface_is_rejected(quantized):
    other = lower_to_program(OPTIMIZE(import_onnx(resnet(10, image=16, width=4, classes=4))))
    other.slots[other.inputs[0]] = "pixels"
    model = CompiledModel(quantized.config, quantized.inputs, quantized.outputs, quantized.segments,
                          quantized.dram_image, quantized.dram_size, other, quantized.metadata)
    with pytest.raises(BinaryFormatError, match=r"REFERENCE.inputs: the float reference reads \['pixels'\], not "):
        read_binary(write_binary(model))
