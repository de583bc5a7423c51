"""Binaries for the reader, writer and fuzz tests: small compiled models
(a loop, a quantized ResNet with device and CPU segments), section surgery
(patching, re-checksumming) and the assertion that a file is rejected."""
from __future__ import annotations

import functools
import json
import struct
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from onnx import TensorProto, helper

from codegen.binary import write_binary
from codegen.cpu import lower_segments, lower_to_program
from compiler.frontend import import_onnx
from compiler.pipeline import OPTIMIZE
from compiler.quantize import quantize_model
from compiler.zoo import resnet
from runtime import isa
from runtime.binary import BinaryFormatError, container, read_binary
from runtime.binary.format import ENTRY, HEADER, PROGRAM_PREFIX, Section, align, crc32
from runtime.compiled import CompiledModel, CpuSegment, DeviceSegment, DramTensor, HostTensor, Layer
from runtime.hardware import HardwareConfig
from runtime.isa import Op, StreamKey, instr
from runtime.program import Program
from tests.helpers.isa_program import DRAM_OUT, program


def fuzz(examples: int):
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def conv_segment(name: str, source: str, target: str) -> DeviceSegment:
    """The double-buffered 3x3 convolution of test_isa as a device segment
    (its input written into DRAM transposed, as an NHWC model's would be)."""
    stream = isa.encode_stream(program())
    key = StreamKey(0, 0, 0)
    return DeviceSegment(name, [DramTensor(source, (1, 16, 32, 32), "int8", 0, 0.05, -3, (0, 3, 1, 2))],
                         [DramTensor(target, (1, 32, 32, 32), "int8", DRAM_OUT, 0.1, -128)], {key: stream},
                         [Layer("conv0", "QConv", ("Conv_0", "Relu_1"), key, 2, 14, 32 * 16 * 9 * 32 * 32)])


def sync_segment(name: str, source: str, target: str) -> DeviceSegment:
    """Three clusters meeting at barriers in phase 0, one stream in phase 1."""
    def sync(barrier, participants):
        return instr(Op.SYNC, barrier=barrier, participants=participants)
    end = instr(Op.END)
    streams = {StreamKey(0, c, 0): isa.encode_stream([sync(1, 3), sync(2, 3), end]) for c in range(3)}
    streams[StreamKey(0, 1, 1)] = isa.encode_stream([sync(1, 1), end])
    return DeviceSegment(name, [DramTensor(source, (1, 32, 32, 32), "int8", DRAM_OUT, 0.1, -128)],
                         [DramTensor(target, (8, 2), "int16", 0x30000, 0.5, 7)], streams,
                         [Layer("sync", "Barrier", (), StreamKey(0, 1, 1), 0, 1)])


def with_device(segments: list, inputs: list[HostTensor], outputs: list[HostTensor]) -> tuple:
    """``segments`` followed by the two device segments on their own tensors."""
    devices = [conv_segment("device0", "features", "conv_out"), sync_segment("device1", "conv_out", "synced")]
    return (segments + devices, inputs + [HostTensor("features", (1, 16, 32, 32))],
            outputs + [HostTensor("synced", (8, 2), "float32")])


def dram_image() -> bytes:
    return np.random.default_rng(5).integers(0, 256, 0x13000, dtype=np.uint8).tobytes()


def calibration() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.standard_normal((1, 3, 32, 32)).astype(np.float32) for _ in range(4)]


def swish_tail(model):
    """``model`` with Softmax(logits) -> Softmax(logits * Sigmoid(logits)):
    an element-wise tail no FusedConv absorbs, so the fused reference has a
    FusedElementwise step."""
    graph = model.graph
    softmax = graph.node[-1]
    logits = softmax.input[0]
    graph.node.insert(len(graph.node) - 1, helper.make_node("Sigmoid", [logits], ["gate"], name="gate"))
    graph.node.insert(len(graph.node) - 1, helper.make_node("Mul", [logits, "gate"], ["swish"], name="swish"))
    softmax.input[0] = "swish"
    return model


def quantized_model() -> CompiledModel:
    """A quantized ResNet-10 (QConv, QAvgPool segment programs and the CPU
    tail), two hand-built device segments, and the fused float reference."""
    onnx_model = swish_tail(resnet(10, image=32, width=8, classes=10))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # hwlinear=False: the classifier stays in the CPU tail (Gemm), as FWDNXT's default placed it
        quantized = quantize_model(onnx_model, calibration_data=calibration(), hwlinear=False)
    lowered = lower_segments(quantized.graph)
    cpu = [CpuSegment(s.name, s.program, s.inputs, s.outputs) for s in lowered.segments]
    segments, inputs, outputs = with_device(cpu, [HostTensor("image", (1, 3, 32, 32))],
                                            [HostTensor("probabilities", (1, 10))])
    reference = lower_to_program(OPTIMIZE(import_onnx(onnx_model)))
    return CompiledModel(HardwareConfig(), inputs, outputs, segments, dram_image(), 0x40000, reference,
                         {"source": "resnet10.onnx", "options": {"numcard": 1, "clusters": [0, 1]}, "nlayers": 13})


def loop_model() -> CompiledModel:
    """A float model with a Loop (a sub-Program attribute), its program both
    the one CPU segment and the reference."""
    body = helper.make_graph(
        [helper.make_node("Add", ["x_in", "step"], ["x_out"]), helper.make_node("Identity", ["cond_in"], ["cond"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("x_in", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_out", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor("step", TensorProto.FLOAT, [3], [0.5, -1.0, 2.0])])
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trips", "", "x"], ["y"], body=body), helper.make_node("Relu", ["y"], ["out"])],
        "loop", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor("trips", TensorProto.INT64, [], [3])])
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    prog = lower_to_program(import_onnx(onnx_model))
    return CompiledModel(HardwareConfig(cards=2), [HostTensor("x", (2, 3))], [HostTensor("out", (2, 3))],
                         [CpuSegment("all", prog, ["x"], ["out"])], b"", 0, prog)


@functools.cache
def compiled_binary() -> bytes:
    """What `tessera compile` writes for a small ResNet: real streams from the
    code generator, packed weights, a CPU segment, the float reference."""
    from compiler.compile import build

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        samples = [np.random.default_rng(i).standard_normal((1, 3, 32, 32)).astype(np.float32) for i in range(2)]
        q = quantize_model(resnet(10, image=32, width=8, classes=4), calibration_data=samples)
    compiled = build(q.graph, HardwareConfig(), q.float_graph)
    assert compiled.device_segments, "the small ResNet should have a device segment"
    return write_binary(compiled)


def assert_same(a, b, where="model"):
    """Deep equality of models, programs and attribute values: arrays by
    dtype, shape and bits; floats by repr (NaN and -0.0 included)."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, where
        assert a.tobytes() == b.tobytes(), where
    elif isinstance(a, np.generic):
        assert type(a) is type(b) and a.tobytes() == b.tobytes(), where
    elif isinstance(a, float):
        assert type(b) is float and repr(a) == repr(b), where
    elif isinstance(a, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, Program):
        assert isinstance(b, Program), where
        for name in ("name", "slots", "inputs", "outputs", "types", "constants"):
            assert_same(getattr(a, name), getattr(b, name), f"{where}.{name}")
        assert len(a.steps) == len(b.steps), where
        for i, (x, y) in enumerate(zip(a.steps, b.steps)):
            assert (x.kernel, x.name, x.inputs, x.outputs) == (y.kernel, y.name, y.inputs, y.outputs), where
            assert_same(dict(x.attrs), dict(y.attrs), f"{where}.steps[{i}].attrs")
    elif isinstance(a, CpuSegment):
        assert isinstance(b, CpuSegment) and (a.name, a.inputs, a.outputs) == (b.name, b.inputs, b.outputs), where
        assert_same(a.program, b.program, f"{where}.program")
    elif isinstance(a, CompiledModel):
        assert (a.config, a.inputs, a.outputs, a.dram_image, a.dram_size, a.metadata) == \
            (b.config, b.inputs, b.outputs, b.dram_image, b.dram_size, b.metadata)
        assert len(a.segments) == len(b.segments)
        for i, (x, y) in enumerate(zip(a.segments, b.segments)):
            assert_same(x, y, f"{where}.segments[{i}]")
        assert_same(a.reference, b.reference, f"{where}.reference")
    else:
        assert type(a) is type(b) and a == b, where


class Parts:
    """A binary split into editable sections: CONFIG and META as JSON, program
    sections as (JSON, blob); :meth:`build` re-packs with fresh checksums."""

    def __init__(self, data: bytes):
        self.flags, sections = container.parse(memoryview(data))
        self.raw = {sid: bytes(payload) for sid, payload in sections.items()}
        self.config = json.loads(self.raw[Section.CONFIG])
        self.meta = json.loads(self.raw[Section.META])
        self.programs = {sid: self.split(self.raw[sid]) for sid in (Section.CPU, Section.REFERENCE)
                         if sid in self.raw}

    @staticmethod
    def split(payload: bytes) -> list:
        length, offset = PROGRAM_PREFIX.unpack_from(payload)
        return [json.loads(payload[PROGRAM_PREFIX.size:PROGRAM_PREFIX.size + length]), bytearray(payload[offset:])]

    @staticmethod
    def join(document, blob) -> bytes:
        text = encode(document)
        offset = align(PROGRAM_PREFIX.size + len(text))
        head = PROGRAM_PREFIX.pack(len(text), offset) + text
        return head + bytes(offset - len(head)) + bytes(blob)

    def build(self, fix_stream_crcs: bool = True) -> bytes:
        raw = dict(self.raw)
        if fix_stream_crcs:
            fix_crcs(self.meta, raw[Section.STREAMS])
        if self.config is not None:
            raw[Section.CONFIG] = encode(self.config)
        if self.meta is not None:
            raw[Section.META] = encode(self.meta)
        for sid, (document, blob) in self.programs.items():
            raw[sid] = self.join(document, blob)
        return container.pack(sorted(raw.items()), self.flags)


def fix_crcs(meta, streams: bytes) -> None:
    """Recompute the stream CRCs of whatever stream entries an edited META
    still has, so that edits reach the checks behind them."""
    def entries():
        for segment in meta["segments"]:
            if isinstance(segment, dict) and isinstance(segment.get("streams"), list):
                yield from segment["streams"]
    try:
        for entry in entries():
            try:
                entry["crc"] = crc32(streams[entry["offset"]:entry["offset"] + entry["length"]])
            except (TypeError, KeyError, IndexError):
                pass
    except (TypeError, KeyError, IndexError):
        pass


def encode(document) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def rejects(data: bytes, pattern: str) -> None:
    with pytest.raises(BinaryFormatError, match=pattern):
        read_binary(data)


def header_patched(data: bytes, offset: int, fmt: str, value) -> bytes:
    """``data`` with one header/table field replaced and the header CRC fixed."""
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    count = HEADER.unpack_from(out)[3]
    table_end = HEADER.size + ENTRY.size * count
    out[HEADER.size - 4:HEADER.size] = crc32(bytes(out[:HEADER.size - 4]) + bytes(out[HEADER.size:table_end])) \
        .to_bytes(4, "little")
    return bytes(out)
