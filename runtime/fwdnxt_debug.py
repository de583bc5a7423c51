"""What the FWDNXT API's debug letters and debugging flags print and write.

Each function reads a loaded Engine (its CompiledModel and simulated
device) and returns lines or writes files; runtime/fwdnxt.py decides when
(the 'debug' letters at Init, 'comparesw', 'breaklayer' and 'dumpdir'
after runs). The tables of letters are in runtime/fwdnxt_flags.py.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from runtime.compiled import CompiledModel, CpuSegment, DeviceSegment
from runtime.engine import Engine
from runtime.files import write_atomic
from runtime.isa.codec import disassemble
from runtime.snr import snr_db

BACKEND = "simulator"


def init_lines(engine: Engine, letters: str, source: str) -> list[str]:
    """The lines Init prints for the debug ``letters`` (in this order:
    b, n, s, p, c, C, S, Q)."""
    model = engine.model
    lines = []
    if "b" in letters:
        lines.append(f"Init {source}: {len(model.device_segments)} accelerator segment(s), "
                     f"{len(model.segments) - len(model.device_segments)} CPU segment(s), DRAM {model.dram_size} "
                     f"bytes, {model.batch} image(s) a run, backend {BACKEND}")
    for letter, describe in (("n", _layer_list), ("s", _partitioning), ("p", _operations), ("c", _dram_map),
                             ("C", _distribution), ("S", _simulator), ("Q", _grids)):
        if letter in letters:
            lines += describe(engine)
    return lines


def _layer_list(engine: Engine) -> list[str]:
    lines = []
    for segment in engine.model.segments:
        if isinstance(segment, DeviceSegment):
            lines += [f"layer {layer.name} ({layer.op}) on the accelerator" for layer in segment.layers]
        else:
            lines += [f"layer {step.name} ({step.kernel}) on the CPU" for step in segment.program.steps]
    return lines


def _partitioning(engine: Engine) -> list[str]:
    model = engine.model
    lines = []
    for segment in model.segments:
        where = "accelerator" if isinstance(segment, DeviceSegment) else "CPU"
        inputs = [t.name for t in segment.inputs] if isinstance(segment, DeviceSegment) else segment.inputs
        outputs = [t.name for t in segment.outputs] if isinstance(segment, DeviceSegment) else segment.outputs
        lines.append(f"segment {segment.name} on the {where}: {', '.join(inputs)} -> {', '.join(outputs)}")
    coverage = model.metadata.get("coverage")
    if isinstance(coverage, dict):
        for row in coverage.get("cpu_nodes") or []:
            if isinstance(row, list) and len(row) >= 3:
                lines.append(f"CPU node {row[0]} ({row[1]}): {row[2]}")
    return lines


def _operations(engine: Engine) -> list[str]:
    return [f"layer {layer.name} ({layer.op}) instructions {layer.start}-{layer.stop} of stream "
            f"{tuple(layer.stream)} from {', '.join(layer.onnx_nodes)}" for layer in engine.model.layers]


def _dram_map(engine: Engine) -> list[str]:
    model = engine.model
    lines = [f"DRAM: {model.dram_size} bytes a card, weights image {len(model.dram_image)} bytes at 0"]
    for segment in model.device_segments:
        for role, tensors in (("input", segment.inputs), ("output", segment.outputs)):
            for t in tensors:
                places = ", ".join(f"card {i.card} @{t.addr + i.offset}" for i in segment.instances)
                lines.append(f"segment {segment.name} {role} {t.name} {t.dtype}{list(t.shape)} {t.nbytes} bytes: "
                             f"{places}")
    return lines


def _distribution(engine: Engine) -> list[str]:
    lines = []
    for segment in engine.model.device_segments:
        images = ", ".join(f"card {i.card} offset {i.offset}" for i in segment.instances)
        lines.append(f"segment {segment.name}: {len(segment.instances)} image(s) a run ({images})")
        for key, stream in sorted(segment.streams.items()):
            card, cluster, phase = tuple(key)
            lines.append(f"segment {segment.name}: card {card} cluster {cluster} phase {phase}: "
                         f"{len(stream) // 64} instructions")
    return lines


def _simulator(engine: Engine) -> list[str]:
    lines = []
    for segment, simulator in zip(engine.model.device_segments, engine.device.simulators):
        t = simulator.timing
        busy = ", ".join(f"{module} {cycles}" for module, cycles in sorted(t.busy.items()))
        lines.append(f"segment {segment.name}: {simulator.instructions} instructions, {t.total_cycles} cycles "
                     f"({t.hwtime_ms:.4f} ms), {t.macs} MACs, DRAM read {t.dram_read_bytes} written "
                     f"{t.dram_written_bytes} bytes, efficiency {t.efficiency:.1%}, busy cycles: {busy}")
    return lines


def _grids(engine: Engine) -> list[str]:
    return [f"segment {segment.name} {role} {t.name}: {t.dtype} scale {t.scale:.6g} zero {t.zero}"
            for segment in engine.model.device_segments
            for role, tensors in (("input", segment.inputs), ("output", segment.outputs)) for t in tensors]


def write_instructions(model: CompiledModel, folder: Path) -> list[Path]:
    """Each stream disassembled (with its layers named) into
    instr<card>_<clus>_<program>.txt, ``program`` counting that cluster's
    streams in execution order (segments, then phases)."""
    paths, counts = [], {}
    for segment in model.device_segments:
        for key in sorted(segment.streams, key=lambda k: (k[2], k[0], k[1])):
            card, cluster, phase = tuple(key)
            program = counts.get((card, cluster), 0)
            counts[(card, cluster)] = program + 1
            names = [(layer.start, layer.stop, layer.name) for layer in segment.layers if tuple(layer.stream) == key]
            path = folder / f"instr{card}_{cluster}_{program}.txt"
            write_atomic(path, f"# segment {segment.name}, card {card}, cluster {cluster}, phase {phase}\n"
                         + disassemble(segment.streams[key], names) + "\n")
            paths.append(path)
    return paths


def write_partition(model: CompiledModel, folder: Path) -> Path:
    """partition.json: the segments in order with their layers (device) or
    kernels (CPU), and the coverage the compiler recorded."""
    segments = []
    for segment in model.segments:
        if isinstance(segment, CpuSegment):
            segments.append({"name": segment.name, "device": "CPU", "inputs": segment.inputs,
                             "outputs": segment.outputs,
                             "kernels": [[s.name, s.kernel] for s in segment.program.steps]})
        else:
            segments.append({"name": segment.name, "device": "FPGA", "inputs": [t.name for t in segment.inputs],
                             "outputs": [t.name for t in segment.outputs], "images": len(segment.instances),
                             "layers": [{"name": layer.name, "op": layer.op, "onnx_nodes": list(layer.onnx_nodes),
                                         "stream": list(layer.stream), "macs": layer.macs}
                                        for layer in segment.layers]})
    path = folder / "partition.json"
    write_atomic(path, json.dumps({"segments": segments, "coverage": model.metadata.get("coverage"),
                                   "placement": model.metadata.get("placement")}, indent=1, default=str))
    return path


def dump_drams(engine: Engine, folder: Path, run: int) -> None:
    """Each card's DRAM as it is after device run number ``run``."""
    folder.mkdir(parents=True, exist_ok=True)
    for card, dram in enumerate(engine.device.drams):
        write_atomic(folder / f"run{run}_card{card}.bin", dram.tobytes())


def layer_time_lines(engine: Engine) -> list[str]:
    """Each accelerator layer's modelled time (breaklayer=2)."""
    clock = engine.model.config.clock_hz
    return [f"layer {t.name} ({t.op}): {t.cycles} cycles, {t.cycles / clock * 1e3:.4f} ms, {t.macs} MACs"
            for t in engine.device.layer_times()]


def compare_lines(model: CompiledModel, got: Sequence[dict[str, np.ndarray]],
                  want: Sequence[dict[str, np.ndarray]], every_value: bool) -> list[str]:
    """comparesw: per image and output, the largest difference from the
    reference and the SNR in dB; with ``every_value``, the values too."""
    lines = []
    for i, (ours, theirs) in enumerate(zip(got, want)):
        for spec in model.outputs:
            a = np.asarray(ours[spec.name], np.float64).reshape(-1)
            b = np.asarray(theirs[spec.name], np.float64).reshape(-1)
            snr = snr_db(b, a)
            lines.append(f"comparesw image {i} output {spec.name}: max |diff| {np.abs(a - b).max():.6g}, "
                         f"SNR {snr:.2f} dB")
            if every_value:
                lines += [f"  [{j}] {x:.6g} reference {y:.6g}" for j, (x, y) in enumerate(zip(a, b))]
    return lines


def outshape(model: CompiledModel) -> tuple[Any, ...]:
    """The first output as FWDNXT's (W, H, planes, batch): planes the
    dimension after the batch, W the last, H the product of those between."""
    shape = model.outputs[0].shape
    if len(shape) < 2:
        return (1, 1, int(np.prod(shape, dtype=np.int64)), model.batch)
    batch = int(shape[0]) * model.batch
    if len(shape) == 2:
        return (1, 1, int(shape[1]), batch)
    return (int(shape[-1]), int(np.prod(shape[2:-1], dtype=np.int64)), int(shape[1]), batch)
