"""The report's layers in program order: each accelerator layer (a fused
group of ONNX nodes) with its estimated cycles, MAC use, DRAM traffic and
precision, and each CPU kernel step with why it runs on the host.

A layer split over clusters (split mode) or run by every cluster on its own
images (batch mode) appears once per instruction stream in the binary; here
it is one layer with one *part* per stream: its cycles are the slowest
part's (the parts run side by side), its MACs and bytes the parts' sums.
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping

import numpy as np

from compiler.coverage import Coverage
from ir.graph import onnx_name
from runtime.compiled import CpuSegment, DeviceSegment
from runtime.device import LayerTime
from runtime.hardware import HardwareConfig
from runtime.isa import COL_OPCODE, Op, column
from runtime.sim import Simulator
from runtime.sim.timing import dma_bytes

WIDTHS = {Op.CONV: ("in_bits", "wgt_bits"), Op.MATMUL: ("a_bits", "b_bits"), Op.ELTWISE: ("a_bits", "b_bits"),
          Op.POOL: ("in_bits",), Op.SOFTMAX: ("in_bits",)}
"""The operand widths of each compute instruction: a layer is 16-bit when
any of its instructions reads a 16-bit operand (the cycle model's ``wide``)."""
PART_FIELDS = ("card", "cluster", "phase", "cycles", "macs", "read", "written")
"""The columns of a device layer's ``parts`` rows."""


def device_layers(segment: DeviceSegment, simulator: Simulator, times: Iterator[LayerTime],
                  config: HardwareConfig) -> list[dict[str, Any]]:
    """The segment's layers, one entry per layer name, in the order the
    binary lists them; ``times`` yields the segment's LayerTimes in step with
    ``segment.layers`` (runtime.device.SimulatedDevice.layer_times)."""
    layers: dict[str, dict[str, Any]] = {}
    for layer, time in zip(segment.layers, times):
        rows = simulator.streams[layer.stream]
        read, written, bits = _traffic(rows, layer.start, layer.stop)
        key = layer.stream
        entry = layers.setdefault(layer.name, {"where": "device", "segment": segment.name, "name": layer.name,
                                               "op": layer.op, "onnx": list(layer.onnx_nodes), "bits": 8,
                                               "parts": []})
        entry["parts"].append([key.card, key.cluster, key.phase, time.cycles, time.macs, read, written])
        entry["bits"] = max(entry["bits"], bits)
    peak = config.units_per_cluster * config.macs_per_unit
    return [_totals(entry, peak) for entry in layers.values()]


def _traffic(rows: np.ndarray, start: int, stop: int) -> tuple[int, int, int]:
    """DRAM bytes the LOAD rows of ``rows[start:stop]`` read and its STORE
    rows write, and the widest operand (bits) of its compute rows."""
    ops = rows[start:stop, COL_OPCODE]
    read = int(dma_bytes(rows, np.flatnonzero(ops == Op.LOAD) + start, Op.LOAD).sum())
    written = int(dma_bytes(rows, np.flatnonzero(ops == Op.STORE) + start, Op.STORE).sum())
    bits = 8
    for op, fields in WIDTHS.items():
        mine = np.flatnonzero(ops == op) + start
        if mine.size:
            bits = max(bits, *(int(rows[mine, column(op, name)].max()) for name in fields))
    return read, written, bits


def _totals(entry: dict[str, Any], peak: int) -> dict[str, Any]:
    """A layer's figures over its parts: the slowest part's cycles, the sums
    of MACs and bytes, MAC use of the clusters it ran on (None without MACs)."""
    parts = entry["parts"]
    cycles = max(part[3] for part in parts)
    macs = sum(part[4] for part in parts)
    entry.update(cycles=cycles, macs=macs, read=sum(part[5] for part in parts),
                 written=sum(part[6] for part in parts), precision="16-bit" if entry.pop("bits") > 8 else "int8",
                 use=round(macs / (cycles * peak * len(parts)), 4) if macs and cycles else None)
    return entry


def cpu_layers(segment: CpuSegment, reasons: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The segment's kernel steps, each with the reason and rule recorded
    for its node (by IR name, else by ONNX name; none for a fused step whose
    members the CPU node table lists)."""
    layers = []
    for step in segment.program.steps:
        node = reasons.get(step.name) or reasons.get(onnx_name(step.name))
        layers.append({"where": "cpu", "segment": segment.name, "name": step.name, "op": step.kernel,
                       "onnx": [onnx_name(step.name)], "reason": node.reason if node else None,
                       "rule": node.rule if node else None})
    return layers


def reasons_by_name(coverage: Coverage | None) -> dict[str, Any]:
    """The coverage's CPU nodes by IR name and by ONNX name (the first node of each)."""
    found: dict[str, Any] = {}
    for node in coverage.cpu_nodes if coverage else ():
        found.setdefault(node.name, node)
        found.setdefault(node.onnx_node, node)
    return found


def cpu_nodes(coverage: Coverage | None) -> list[list[Any]] | None:
    """Every CPU node as [name, op, reason, rule] (None: coverage not recorded)."""
    return None if coverage is None else [[n.name, n.op, n.reason, n.rule] for n in coverage.cpu_nodes]


__all__ = ["PART_FIELDS", "cpu_layers", "cpu_nodes", "device_layers", "reasons_by_name"]
