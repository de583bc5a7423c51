"""The binary writer: a CompiledModel as one file (docs/binary.md).

Sections in order: CONFIG (the hardware config as JSON), META (interface,
segments, DRAM map, stream tables, provenance, metadata), WEIGHTS (the DRAM
image), STREAMS (every stream's instructions, in table order), CPU (the CPU
segments' Programs) and REFERENCE (the float reference, unless stripped).
The output is deterministic: the same model gives the same bytes.
"""
from __future__ import annotations

import json
import os
from typing import Any

from runtime.binary.container import pack
from runtime.binary.format import FLAG_REFERENCE_STRIPPED, BinaryFormatError, Section, crc32
from runtime.binary.programs import encode_programs
from runtime.compiled import CompiledModel, CpuSegment, DeviceSegment, DramTensor, HostTensor, Instance, Layer
from runtime.files import write_atomic
from runtime.isa import INSTR_BYTES


def write_binary(model: CompiledModel, path: str | os.PathLike | None = None, *,
                 strip_reference: bool = False) -> bytes:
    """The binary of ``model`` (also written to ``path`` when given, whole or
    not at all: runtime.files.write_atomic; a failure is a FileError and
    leaves the previous file as it was); ``strip_reference`` leaves out the
    float reference program (no Run_th)."""
    streams = bytearray()
    meta = {"inputs": [_host(t) for t in model.inputs], "outputs": [_host(t) for t in model.outputs],
            "segments": [_segment(s, streams) for s in model.segments], "dram_size": int(model.dram_size),
            "metadata": model.metadata}
    if model.batch != 1:
        meta["batch"] = int(model.batch)
    cpu = [s.program for s in model.segments if isinstance(s, CpuSegment)]
    sections = [(Section.CONFIG, _json(model.config.to_dict(), "CONFIG")), (Section.META, _json(meta, "META")),
                (Section.WEIGHTS, bytes(model.dram_image)), (Section.STREAMS, bytes(streams)),
                (Section.CPU, encode_programs(cpu, "CPU"))]
    stripped = strip_reference or model.reference is None
    if not stripped:
        sections.append((Section.REFERENCE, encode_programs([model.reference], "REFERENCE")))
    data = pack(sections, FLAG_REFERENCE_STRIPPED if stripped else 0)
    if path is not None:
        write_atomic(path, data)
    return data


def _json(document: Any, section: str) -> bytes:
    try:
        return json.dumps(document, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    except (TypeError, ValueError) as exc:
        raise BinaryFormatError(f"{section}: cannot be written as JSON: {exc}") from None


def _host(tensor: HostTensor) -> dict[str, Any]:
    return {"name": tensor.name, "shape": [int(d) for d in tensor.shape], "dtype": tensor.dtype}


def _dram(tensor: DramTensor) -> dict[str, Any]:
    """A DramTensor's META entry; ``perm`` only when it has one (older files' bytes stay the same)."""
    entry = {"name": tensor.name, "shape": [int(d) for d in tensor.shape], "dtype": tensor.dtype,
             "addr": int(tensor.addr), "scale": float(tensor.scale), "zero": int(tensor.zero)}
    if tensor.perm:
        entry["perm"] = [int(p) for p in tensor.perm]
    return entry


def _layer(layer: Layer) -> dict[str, Any]:
    return {"name": layer.name, "op": layer.op, "onnx_nodes": list(layer.onnx_nodes),
            "stream": [int(k) for k in layer.stream], "start": int(layer.start), "stop": int(layer.stop),
            "macs": int(layer.macs)}


def _segment(segment: DeviceSegment | CpuSegment, streams: bytearray) -> dict[str, Any]:
    """A segment's META entry; a device segment's streams are appended to ``streams``."""
    if isinstance(segment, CpuSegment):
        return {"kind": "cpu", "name": segment.name, "inputs": list(segment.inputs),
                "outputs": list(segment.outputs)}
    table = []
    for key, stream in segment.streams.items():
        data = bytes(stream)
        table.append({"key": [int(k) for k in key] + [0] * (3 - len(key)), "offset": len(streams),
                      "length": len(data), "count": len(data) // INSTR_BYTES, "crc": crc32(data)})
        streams.extend(data)
    entry = {"kind": "device", "name": segment.name, "inputs": [_dram(t) for t in segment.inputs],
             "outputs": [_dram(t) for t in segment.outputs], "streams": table,
             "layers": [_layer(layer) for layer in segment.layers]}
    if segment.instances != [Instance()]:  # the one-image case keeps its bytes
        entry["instances"] = [[int(i.card), int(i.offset)] for i in segment.instances]
    if segment.exchanges:
        entry["exchanges"] = [[int(e.phase), int(e.card), int(e.addr), int(e.size), int(e.count), int(e.stride)]
                              for e in segment.exchanges]
    return entry
