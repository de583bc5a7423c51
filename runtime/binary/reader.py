"""Reading a compiled binary: every byte checked before a CompiledModel exists.

The order: the container (header, table, layout, checksums), CONFIG, the
programs (CPU, REFERENCE), META field by field (interface, DRAM map, device
segments and their stream tables), every device segment's streams through
:func:`runtime.isa.validate_streams`, and the tensor flow between segments.
Anything wrong raises :class:`BinaryFormatError` naming the place; nothing in
the file is imported, evaluated or executed.
"""
from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from runtime.binary import container
from runtime.binary.fields import array, fail, integer, number, parse_json, record, shape, text, texts
from runtime.binary.format import BinaryFormatError, Section, crc32
from runtime.binary.programs import decode_programs
from runtime.compiled import (
    FORMAT_DTYPES,
    CompiledModel,
    CpuSegment,
    DeviceSegment,
    DramTensor,
    Exchange,
    HostTensor,
    Instance,
    Layer,
)
from runtime.files import MAX_BINARY_BYTES, FileError, open_regular
from runtime.hardware import HardwareConfig, HardwareConfigError, dram_shortfall
from runtime.isa import INSTR_BYTES, IsaError, StreamKey, validate_streams

META_KEYS = ("inputs", "outputs", "segments", "dram_size", "metadata")
HOST_KEYS = ("name", "shape", "dtype")
DRAM_KEYS = ("name", "shape", "dtype", "addr", "scale", "zero")
DEVICE_KEYS = ("kind", "name", "inputs", "outputs", "streams", "layers")
CPU_KEYS = ("kind", "name", "inputs", "outputs")
STREAM_KEYS = ("key", "offset", "length", "count", "crc")
LAYER_KEYS = ("name", "op", "onnx_nodes", "stream", "start", "stop", "macs")
MAX_KEY = (1 << 31) - 1
"""Largest card, cluster or phase number in a stream key."""
MAX_BATCH = 1 << 16
"""Largest number of images one run takes (numcard x numclus x imgs_per_cluster)."""


def load_bytes(source: bytes | bytearray | memoryview | str | os.PathLike) -> memoryview:
    """The file's bytes: ``source`` itself, or the regular file at that path
    (runtime.files.open_regular: no FIFO, device or directory, at most
    MAX_BINARY_BYTES), read whole only once its header is a Tessera binary's
    and declares the file's own size."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return memoryview(source).cast("B")
    name = os.fspath(source)
    try:
        with open_regular(name, MAX_BINARY_BYTES, "binary") as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(container.HEADER.size)
            try:
                container.check_start(head, size)
            except BinaryFormatError as exc:
                raise BinaryFormatError(f"{name}: {exc}") from None
            data = bytearray(size)
            data[:len(head)] = head
            if handle.readinto(memoryview(data)[len(head):]) != size - len(head):
                raise BinaryFormatError("the file changed size while it was read")
    except FileError as exc:
        raise BinaryFormatError(str(exc)) from None
    except OSError as exc:
        raise BinaryFormatError(f"{name}: cannot read the binary: {exc.strerror or exc}") from None
    return memoryview(data)


def read_binary(source: bytes | str | os.PathLike) -> CompiledModel:
    """The CompiledModel a binary holds (bytes or a path), validated in full;
    an error in a file names the file."""
    data = load_bytes(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _read(data)
    try:
        return _read(data)
    except BinaryFormatError as exc:
        raise BinaryFormatError(f"{os.fspath(source)}: {exc}") from None


def _read(data: memoryview) -> CompiledModel:
    _, sections = container.parse(data)
    try:
        config = HardwareConfig.from_dict(parse_json(sections[Section.CONFIG], "CONFIG"))
    except HardwareConfigError as exc:
        raise BinaryFormatError(f"CONFIG: {exc}") from None
    cpu_programs = decode_programs(sections[Section.CPU], "CPU")
    reference = None
    if Section.REFERENCE in sections:
        programs = decode_programs(sections[Section.REFERENCE], "REFERENCE")
        if len(programs) != 1:
            raise fail("REFERENCE.programs", f"holds {len(programs)} programs, not one")
        reference = programs[0]
    meta = record(parse_json(sections[Section.META], "META"), "META", META_KEYS, optional=("batch",))
    dram_size = integer(meta["dram_size"], "META.dram_size", 0)
    image = sections[Section.WEIGHTS]
    shortfall = dram_shortfall(config, dram_size, len(image))
    if shortfall:
        raise fail("META.dram_size", shortfall)
    if len(image) > dram_size:
        raise fail("WEIGHTS", f"the DRAM image ({len(image)} bytes) is longer than META.dram_size={dram_size}")
    if not isinstance(meta["metadata"], dict):
        raise fail("META.metadata", "must be an object")
    batch = integer(meta.get("batch", 1), "META.batch", 1, MAX_BATCH)
    model = CompiledModel(config, _hosts(meta["inputs"], "META.inputs"), _hosts(meta["outputs"], "META.outputs"),
                          [], bytes(image), dram_size, reference, meta["metadata"], batch)
    model.segments = _Segments(model, sections[Section.STREAMS], cpu_programs).read(meta["segments"])
    _check_flow(model)
    return model


def describe(source: bytes | str | os.PathLike) -> dict:
    """The header and the section table (id, name, offset, length, crc_ok) of
    a binary, for ``tessera info``; the contents are not validated."""
    return container.describe(load_bytes(source))


def _hosts(value: Any, path: str) -> list[HostTensor]:
    tensors = []
    for i, item in enumerate(array(value, path)):
        where = f"{path}[{i}]"
        obj = record(item, where, HOST_KEYS)
        tensors.append(HostTensor(text(obj["name"], f"{where}.name"), shape(obj["shape"], f"{where}.shape"),
                                  text(obj["dtype"], f"{where}.dtype", FORMAT_DTYPES)))
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise fail(path, f"names a tensor twice: {names}")
    return tensors


class _Segments:
    """Reads META.segments: device segments with their streams (taken from
    STREAMS in order, so the table tiles it exactly), CPU segments with
    their programs in order."""

    def __init__(self, model: CompiledModel, streams, programs: list):
        self.model, self.streams, self.programs = model, streams, programs
        self.position = 0
        self.cpu_count = 0

    def read(self, value: Any) -> list:
        segments = []
        for i, item in enumerate(array(value, "META.segments")):
            where = f"META.segments[{i}]"
            if not isinstance(item, dict):
                raise fail(where, "must be an object")
            kind = text(item.get("kind"), f"{where}.kind", ("device", "cpu"))
            segments.append(self.device(item, where) if kind == "device" else self.cpu(item, where))
        if self.position != len(self.streams):
            raise fail("STREAMS", f"the stream tables cover {self.position} of its {len(self.streams)} bytes")
        if self.cpu_count != len(self.programs):
            raise fail("CPU.programs", f"holds {len(self.programs)} programs for {self.cpu_count} CPU segments")
        return segments

    def cpu(self, item: Any, where: str) -> CpuSegment:
        obj = record(item, where, CPU_KEYS)
        if self.cpu_count >= len(self.programs):
            raise fail(where, f"CPU segment {self.cpu_count} has no program in the CPU section")
        program = self.programs[self.cpu_count]
        self.cpu_count += 1
        inputs, outputs = texts(obj["inputs"], f"{where}.inputs"), texts(obj["outputs"], f"{where}.outputs")
        if len(inputs) != len(program.inputs) or len(outputs) != len(program.outputs):
            raise fail(where, f"names {len(inputs)} inputs and {len(outputs)} outputs; its program has "
                              f"{len(program.inputs)} and {len(program.outputs)}")
        return CpuSegment(text(obj["name"], f"{where}.name"), program, inputs, outputs)

    def device(self, item: Any, where: str) -> DeviceSegment:
        obj = record(item, where, DEVICE_KEYS, optional=("instances", "exchanges"))
        name = text(obj["name"], f"{where}.name")
        inputs = [self.dram(v, f"{where}.inputs[{i}]") for i, v in enumerate(array(obj["inputs"], f"{where}.inputs"))]
        outputs = [self.dram(v, f"{where}.outputs[{i}]")
                   for i, v in enumerate(array(obj["outputs"], f"{where}.outputs"))]
        streams: dict[StreamKey, bytes] = {}
        for i, entry in enumerate(array(obj["streams"], f"{where}.streams")):
            key, data = self.stream(entry, f"{where}.streams[{i}]")
            if key in streams:
                raise fail(f"{where}.streams[{i}].key", f"stream {tuple(key)} appears twice")
            streams[key] = data
        layers = [self.layer(v, f"{where}.layers[{i}]", streams)
                  for i, v in enumerate(array(obj["layers"], f"{where}.layers"))]
        try:
            validate_streams(streams, self.model.config, self.model.dram_size)
        except IsaError as exc:
            raise fail(f"{where} ({name!r:.60})", str(exc)) from None
        instances = self.instances(obj.get("instances"), f"{where}.instances", inputs + outputs)
        exchanges = [self.exchange(v, f"{where}.exchanges[{i}]", streams)
                     for i, v in enumerate(array(obj.get("exchanges", []), f"{where}.exchanges"))]
        return DeviceSegment(name, inputs, outputs, streams, layers, instances, exchanges)

    def instances(self, value: Any, where: str, tensors: list[DramTensor]) -> list[Instance]:
        """One [card, offset] per image of a run (``META.batch`` of them);
        every interface tensor moved by an offset stays inside DRAM."""
        items = [[0, 0]] if value is None else array(value, where, self.model.batch)
        if len(items) != self.model.batch:
            raise fail(where, f"has {len(items)} instances; META.batch is {self.model.batch}")
        size = self.model.dram_size
        ends = max((t.addr + t.nbytes for t in tensors), default=0)
        out = []
        for i, item in enumerate(items):
            card, offset = _ints(item, f"{where}[{i}]", (self.model.config.cards - 1, size))
            if offset % 8 or ends + offset > size:
                raise fail(f"{where}[{i}]", f"offset {offset} moves the interface tensors (ending at {ends}) past "
                                            f"dram_size={size}, or is not 8-aligned")
            out.append(Instance(card, offset))
        return out

    def exchange(self, value: Any, where: str, streams: dict[StreamKey, bytes]) -> Exchange:
        """[phase, card, addr, size, count, stride]: boxes inside DRAM, copied
        after a phase the segment has (-1: before the first, the inputs)."""
        size = self.model.dram_size
        items = array(value, where, 6)
        phase = integer(items[0], f"{where}[0]", -1, MAX_KEY) if items else None
        card, addr, box, count, stride = _ints(items[1:], where, (self.model.config.cards - 1, size, size, size,
                                                                  size), first=1)
        phases = {key.phase for key in streams}
        if phase != -1 and phase not in phases:
            raise fail(f"{where}[0]", f"phase {phase} is not -1 or a phase of this segment's streams {sorted(phases)}")
        if count < 1 or addr + (count - 1) * stride + box > size:
            raise fail(where, f"{count} boxes of {box} bytes every {stride} from {addr} leave dram_size={size}")
        return Exchange(phase, card, addr, box, count, stride)

    def dram(self, value: Any, where: str) -> DramTensor:
        obj = record(value, where, DRAM_KEYS, optional=("perm",))
        dtype = text(obj["dtype"], f"{where}.dtype", FORMAT_DTYPES)
        dims = shape(obj["shape"], f"{where}.shape")
        item = np.dtype(dtype).itemsize
        size = self.model.dram_size
        addr = integer(obj["addr"], f"{where}.addr", 0, size)
        nbytes = math.prod(dims) * item
        if addr % item or nbytes > size - addr:
            raise fail(f"{where}.addr", f"{addr} (+ {nbytes} bytes) is not an {item}-aligned range inside "
                                        f"[0, dram_size={size})")
        zero = integer(obj["zero"], f"{where}.zero")
        if np.dtype(dtype).kind in "iu":
            info = np.iinfo(dtype)
            integer(zero, f"{where}.zero", int(info.min), int(info.max))
        perm = _permutation(obj["perm"], f"{where}.perm", len(dims)) if "perm" in obj else ()
        return DramTensor(text(obj["name"], f"{where}.name"), dims, dtype, addr,
                          number(obj["scale"], f"{where}.scale", positive=True), zero, perm)

    def stream(self, value: Any, where: str) -> tuple[StreamKey, bytes]:
        obj = record(value, where, STREAM_KEYS)
        key = self.key(obj["key"], f"{where}.key")
        offset = integer(obj["offset"], f"{where}.offset", self.position, self.position)
        count = integer(obj["count"], f"{where}.count", 1, (len(self.streams) - offset) // INSTR_BYTES)
        integer(obj["length"], f"{where}.length", count * INSTR_BYTES, count * INSTR_BYTES)
        data = bytes(self.streams[offset:offset + count * INSTR_BYTES])
        stored = integer(obj["crc"], f"{where}.crc", 0, 0xFFFFFFFF)
        if crc32(data) != stored:
            raise fail(f"{where}.crc", f"stream {tuple(key)}: CRC32 mismatch (stored {stored:#010x}, "
                                       f"computed {crc32(data):#010x})")
        self.position = offset + len(data)
        return key, data

    @staticmethod
    def key(value: Any, where: str) -> StreamKey:
        parts = array(value, where)
        if len(parts) != 3:
            raise fail(where, "must be [card, cluster, phase]")
        return StreamKey(*(integer(v, f"{where}[{i}]", 0, MAX_KEY) for i, v in enumerate(parts)))

    def layer(self, value: Any, where: str, streams: dict[StreamKey, bytes]) -> Layer:
        obj = record(value, where, LAYER_KEYS)
        key = self.key(obj["stream"], f"{where}.stream")
        if key not in streams:
            raise fail(f"{where}.stream", f"stream {tuple(key)} is not one of this segment's streams")
        count = len(streams[key]) // INSTR_BYTES
        start = integer(obj["start"], f"{where}.start", 0, count)
        stop = integer(obj["stop"], f"{where}.stop", start, count)
        return Layer(text(obj["name"], f"{where}.name"), text(obj["op"], f"{where}.op"),
                     tuple(texts(obj["onnx_nodes"], f"{where}.onnx_nodes")), key, start, stop,
                     integer(obj["macs"], f"{where}.macs", 0))


def _ints(value: Any, where: str, highs: tuple[int, ...], first: int = 0) -> list[int]:
    """An array of exactly len(highs) integers, each in [0, its high]
    (``first``: the index of its first item in the array ``where`` names)."""
    items = array(value, where, len(highs))
    if len(items) != len(highs):
        raise fail(where, f"must be an array of {len(highs) + first} integers, got {len(items) + first}")
    return [integer(v, f"{where}[{first + j}]", 0, high) for j, (v, high) in enumerate(zip(items, highs))]


def _permutation(value: Any, where: str, rank: int) -> tuple[int, ...]:
    """A permutation of range(rank), as a DramTensor's ``perm`` must be."""
    perm = tuple(integer(v, f"{where}[{i}]", 0, max(rank - 1, 0)) for i, v in enumerate(array(value, where, rank)))
    if sorted(perm) != list(range(rank)):
        raise fail(where, f"{list(perm)} is not a permutation of the tensor's {rank} axes")
    return perm


def _check_flow(model: CompiledModel) -> None:
    """Each segment reads model inputs or earlier segments' outputs, writes
    new names, and the model outputs are produced."""
    available = {t.name: math.prod(t.shape) for t in model.inputs}  # name -> values per image (None: data-dependent)
    for i, segment in enumerate(model.segments):
        where = f"META.segments[{i}] ({segment.name!r:.60})"
        for j, (name, size) in enumerate(_sizes(segment, "inputs")):
            if name not in available:
                raise fail(f"{where}.inputs[{j}]", f"tensor {name!r:.60} is neither a model input nor an output "
                                                   "of an earlier segment")
            _same_size(f"{where}.inputs[{j}]", name, available[name], size)
        for j, (name, size) in enumerate(_sizes(segment, "outputs")):
            if name in available:
                raise fail(f"{where}.outputs[{j}]", f"tensor {name!r:.60} is already defined")
            available[name] = size
    for j, tensor in enumerate(model.outputs):
        if tensor.name not in available:
            raise fail(f"META.outputs[{j}]", f"model output {tensor.name!r:.60} is produced by no segment")
        _same_size(f"META.outputs[{j}]", tensor.name, available[tensor.name], math.prod(tensor.shape))
    if model.reference is not None:  # Run_th feeds it the model's inputs
        given = {t.name for t in model.inputs}
        extra = [n for n in model.reference.input_names if n not in given]
        if extra:
            raise fail("REFERENCE.inputs", f"the float reference reads {extra[:8]!r:.120}, not model inputs")


def _sizes(segment: DeviceSegment | CpuSegment, side: str) -> list[tuple[str, int | None]]:
    """(name, values per image) of a segment's inputs or outputs: a device
    tensor's from its DRAM shape, a CPU program's from its recorded types
    (None where a dim is data-dependent or no type is recorded)."""
    if isinstance(segment, DeviceSegment):
        return [(t.name, math.prod(t.shape)) for t in getattr(segment, side)]
    program = segment.program
    slots = getattr(program, side)
    sizes = []
    for name, slot in zip(getattr(segment, side), slots):
        dims = program.types[slot][0] if slot < len(program.types) else (None,)
        sizes.append((name, None if None in dims else math.prod(dims)))
    return sizes


def _same_size(where: str, name: str, produced: int | None, expected: int | None) -> None:
    """A tensor read (or declared) with as many values as its producer writes."""
    if produced is not None and expected is not None and produced != expected:
        raise fail(where, f"tensor {name!r:.60} holds {expected} values per image here, but {produced} where it "
                          "is produced")
