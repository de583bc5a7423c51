"""Placement costs: heuristics for the partitioner (keep a small device
island or bring it back to the CPU; passes/partition.py) and for the
precision choices of a target SNR (16-bit layers against host epilogues:
compiler/target_snr.py). Device time is a
roofline over the peak MAC rate and the DRAM bandwidth of
:class:`HardwareConfig`, CPU time the same over fixed host rates, and a
transfer is a fixed DMA latency plus the bytes over the host link. A
``Fused`` or ``Segment`` node costs what its members do.
"""
from __future__ import annotations

import math
from typing import Callable

from ir.graph import Graph, Node, Value
from ir.types import TensorType
from runtime.hardware import HardwareConfig

STRUCTURAL = frozenset({"Fused", "Segment"})
"""Ops whose ``body`` attribute is a graph of member nodes."""

DEVICE_EFFICIENCY = 0.5
"""Fraction of the peak MAC rate a layer sustains (tile edges, pipeline fill)."""
CPU_MACS_PER_SECOND = 20e9
"""float32 MACs per second of the CPU path (BLAS-fed convolutions on a few cores)."""
CPU_BYTES_PER_SECOND = 10e9
"""Memory bandwidth the CPU kernels sustain on float32 data."""
CPU_ELEMENT_BYTES = 4
TRANSFER_LATENCY_S = 20e-6
"""Fixed cost of one host-link DMA: setup, doorbell, completion interrupt."""


def macs(node: Node) -> int:
    """Multiply-accumulates of one node; pools count one per window element,
    data movement and elementwise ops none (they are memory-bound)."""
    if node.op in STRUCTURAL:
        return sum(macs(member) for member in node.attrs["body"].nodes)
    count = _MAC_COUNTS.get(node.op)
    return count(node) if count else 0


def _numel(value: Value | None) -> int:
    return (value.type.numel or 0) if value is not None else 0


def _conv_macs(node: Node) -> int:
    return _numel(node.outputs[0]) * math.prod(d or 0 for d in node.inputs[1].type.shape[1:])


def _conv_transpose_macs(node: Node) -> int:
    return _numel(node.inputs[0]) * math.prod(d or 0 for d in node.inputs[1].type.shape[1:])


def _gemm_macs(node: Node) -> int:
    a = node.inputs[0].type.shape
    inner = a[0] if node.attrs["transA"] else a[1]
    return _numel(node.outputs[0]) * (inner or 0)


def _matmul_macs(node: Node) -> int:
    return _numel(node.outputs[0]) * (node.inputs[0].type.shape[-1] or 0)


def _window_macs(node: Node) -> int:
    return _numel(node.outputs[0]) * math.prod(node.attrs["kernel_shape"])


def _global_macs(node: Node) -> int:
    return _numel(node.inputs[0])


_MAC_COUNTS: dict[str, Callable[[Node], int]] = {
    "Conv": _conv_macs, "ConvTranspose": _conv_transpose_macs, "Gemm": _gemm_macs, "MatMul": _matmul_macs,
    "MaxPool": _window_macs, "AveragePool": _window_macs,
    "GlobalAveragePool": _global_macs, "GlobalMaxPool": _global_macs,
}


def moved_elements(node: Node) -> int:
    """Elements a node reads and writes in memory: its inputs (weights too),
    its outputs, and the weights inside a Fused or Segment body."""
    values = [v for v in node.inputs if v is not None] + node.outputs
    return sum(map(_numel, values)) + (_body_constant_elements(node.attrs["body"]) if node.op in STRUCTURAL else 0)


def _body_constant_elements(body: Graph) -> int:
    inner = sum(_body_constant_elements(n.attrs["body"]) for n in body.nodes if n.op in STRUCTURAL)
    return inner + sum(_numel(v) for v in body.values.values() if v.is_constant and v.uses)


def device_time(node: Node, hardware: HardwareConfig) -> float:
    """Seconds the accelerator takes: the slower of computing at
    ``DEVICE_EFFICIENCY`` of peak and moving the bytes through DRAM."""
    compute = macs(node) / (hardware.peak_macs_per_second * DEVICE_EFFICIENCY)
    memory = moved_elements(node) * hardware.element_bytes / hardware.total_dram_bandwidth
    return max(compute, memory)


def device_cycles(node: Node, hardware: HardwareConfig) -> int:
    """:func:`device_time` in accelerator clock cycles."""
    return math.ceil(device_time(node, hardware) * hardware.clock_hz)


def cpu_time(node: Node) -> float:
    """Seconds the CPU path takes: a Fused or Segment body runs member by
    member; one kernel is the slower of its MACs and its float32 traffic."""
    if node.op in STRUCTURAL:
        return sum(cpu_time(member) for member in node.attrs["body"].nodes)
    return max(macs(node) / CPU_MACS_PER_SECOND, moved_elements(node) * CPU_ELEMENT_BYTES / CPU_BYTES_PER_SECOND)


def transfer_time(value_type: TensorType, hardware: HardwareConfig) -> float:
    """Seconds to move one tensor between host and card: a DMA's fixed
    latency plus its bytes (at the device width) over the host link."""
    return TRANSFER_LATENCY_S + (value_type.numel or 0) * hardware.element_bytes / hardware.host_link_bandwidth


def widening_time(node: Node, hardware: HardwareConfig) -> float:
    """Seconds a layer adds when it runs in 16 bits rather than 8: its MAC
    array takes two passes over 16-bit operands (runtime/sim/timing.py's
    conv_passes) and its bytes double, so about its device time again."""
    return device_time(node, hardware)


def widened_transfer_time(value_type: TensorType, hardware: HardwareConfig) -> float:
    """Seconds one tensor's transfer to the host adds when it crosses in 16
    bits rather than at the device width (the same DMA, twice the bytes)."""
    return transfer_time(value_type, hardware) - TRANSFER_LATENCY_S
