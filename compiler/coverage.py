"""How much of a model runs on the accelerator, and why the rest does not
(so that a user whose model falls back to the CPU sees which op, which rule
and what would have to change): the report ``tessera compile``, ``tessera
show --partition`` and ``tessera info`` print.

    from compiler.coverage import coverage
    report = coverage(partitioned_graph)            # a float graph after partition_graph
    report = coverage(quantized.graph, quantized.float_graph)   # a quantized one: MACs from its float graph
    print(report.summary_line())  # accelerator: 99.1 % of MACs, 412 of 431 ONNX nodes, 1 device segment; CPU: ...
    print(report.table())         # one row per CPU node: node, op, reason, rule

Counts are of ONNX nodes (IR nodes mapped back with ``ir.graph.onnx_name``,
a quantized layer's through its ``source`` annotation) that the compiled
graph still computes: nodes folded away at compile time (BatchNorms into
convolutions, constant subgraphs, Constant nodes) are not counted. An ONNX
node runs on the accelerator when every IR node made from it does, and its
MACs (``passes.placement_costs.macs``) count there. Each CPU node's reason is the
affinity pass's ``cpu_reason``; its rule, when the target recorded one
(``cpu_rule``), names the accelerator rule that refused it.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from ir.graph import Graph, Node, onnx_name
from passes.affinity import REASON, RULE
from passes.partition import segments
from passes.placement_costs import STRUCTURAL, macs
from runtime.errors import TesseraError
from runtime.hardware import ACCELERATOR

NO_REASON = "placed on the CPU (no reason recorded)"
METADATA_KEY = "coverage"
"""The CompiledModel metadata entry holding :meth:`Coverage.to_metadata`."""
SHOWN_GROUPS = 5
"""Reason groups the summary line spells out; the table lists every node."""
_INTERFACE = {"QuantizeLinear", "DequantizeLinear"}
_NUMBER = re.compile(r"\d+(\.\d+)?")


class CoverageError(TesseraError):
    """The graph is not placed, or recorded coverage is malformed."""


@dataclass(frozen=True)
class CpuNode:
    """One IR node on the CPU: its name (an ONNX node's, or ``<onnx>::<helper>``),
    op, why it is not on the accelerator and, when recorded, the rule that said so."""

    name: str
    op: str
    reason: str
    rule: str | None = None

    @property
    def onnx_node(self) -> str:
        return onnx_name(self.name)


@dataclass(frozen=True)
class Coverage:
    """The accelerator's share of a placed model."""

    device_macs: int
    total_macs: int
    device_nodes: int
    total_nodes: int
    device_segments: int
    cpu_segments: int
    cpu_nodes: tuple[CpuNode, ...]

    @property
    def mac_share(self) -> float | None:
        """Fraction of the MACs on the accelerator; None for a model without MACs."""
        return self.device_macs / self.total_macs if self.total_macs else None

    @property
    def cpu_onnx_nodes(self) -> int:
        return self.total_nodes - self.device_nodes

    def mac_percent(self) -> str:
        """The MAC share as "93.5 %" ("-" without MACs), never rounded up to
        100 % while some MACs run on the CPU."""
        if self.mac_share is None:
            return "-"
        percent = 100 * self.mac_share
        return f"{min(percent, 99.9) if self.device_macs < self.total_macs else percent:.1f} %"

    def reason_groups(self) -> list[tuple[tuple[str, ...], str, int]]:
        """(ops, reason, ONNX nodes) for each kind of reason on the CPU, most
        nodes first. Reasons differing only in numbers are one kind (each
        demoted island states its own timings), shown with N for the numbers."""
        ops: dict[str, dict[str, None]] = {}
        nodes: dict[str, set[str]] = {}
        texts: dict[str, set[str]] = {}
        for node in self.cpu_nodes:
            kind = _NUMBER.sub("N", node.reason)
            ops.setdefault(kind, {})[node.op] = None
            nodes.setdefault(kind, set()).add(node.onnx_node)
            texts.setdefault(kind, set()).add(node.reason)
        counts = Counter({kind: len(names) for kind, names in nodes.items()})
        return [(tuple(ops[kind]), next(iter(texts[kind])) if len(texts[kind]) == 1 else kind, count)
                for kind, count in counts.most_common()]

    def summary_line(self) -> str:
        """The one line ``tessera compile`` ends with."""
        share = "no MACs" if self.mac_share is None else f"{self.mac_percent()} of MACs"
        line = (f"accelerator: {share}, {self.device_nodes} of {self.total_nodes} ONNX nodes, "
                f"{_count(self.device_segments, 'device segment')}; CPU: {_count(self.cpu_onnx_nodes, 'node')}")
        groups = self.reason_groups()
        if not groups:
            return line
        shown = "; ".join(f"{', '.join(ops)} ×{count}: {reason}" for ops, reason, count in groups[:SHOWN_GROUPS])
        more = f"; {len(groups) - SHOWN_GROUPS} more reasons" if len(groups) > SHOWN_GROUPS else ""
        return f"{line} ({shown}{more})"

    def table(self) -> str:
        """Every CPU node with its op, reason and (when any is recorded) the rule to change."""
        if not self.cpu_nodes:
            return "every node runs on the accelerator"
        with_rule = any(node.rule for node in self.cpu_nodes)
        header = ["CPU node", "op", "reason"] + (["rule"] if with_rule else [])
        rows = [[n.name, n.op, n.reason] + ([n.rule or "-"] if with_rule else []) for n in self.cpu_nodes]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
        return "\n".join("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[-1]]).rstrip()
                         for row in [header, *rows])

    def to_metadata(self) -> dict[str, Any]:
        """A JSON-ready form, for a binary's metadata (``tessera info`` reads it back)."""
        counts = {name: getattr(self, name) for name in _COUNTS}
        return {**counts, "cpu_nodes": [[n.name, n.op, n.reason, n.rule] for n in self.cpu_nodes]}

    @classmethod
    def from_metadata(cls, document: Mapping[str, Any]) -> Coverage:
        """The report :meth:`to_metadata` wrote; a malformed one (a binary is
        untrusted input) is a CoverageError naming the field at fault."""
        if not isinstance(document, Mapping):
            raise CoverageError(f"metadata {METADATA_KEY!r} is not an object")
        counts = {name: _count_field(document, name) for name in _COUNTS}
        rows = document.get("cpu_nodes")
        if not isinstance(rows, list):
            raise CoverageError(f"metadata {METADATA_KEY!r}: 'cpu_nodes' is not a list")
        return cls(**counts, cpu_nodes=tuple(_cpu_node(row, i) for i, row in enumerate(rows)))


def recorded_coverage(metadata: Mapping[str, Any]) -> Coverage | None:
    """The coverage a compiled model's metadata records (None when it was
    compiled without one)."""
    document = metadata.get(METADATA_KEY)
    return None if document is None else Coverage.from_metadata(document)


_COUNTS = ("device_macs", "total_macs", "device_nodes", "total_nodes", "device_segments", "cpu_segments")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _count_field(document: Mapping[str, Any], name: str) -> int:
    value = document.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CoverageError(f"metadata {METADATA_KEY!r}: {name!r} is {value!r}, not a count")
    return value


def _cpu_node(row: Any, index: int) -> CpuNode:
    texts = isinstance(row, list) and len(row) == 4 and all(isinstance(c, str) for c in row[:3])
    if not texts or not (row[3] is None or isinstance(row[3], str)):
        raise CoverageError(f"metadata {METADATA_KEY!r}: cpu_nodes[{index}] is not [name, op, reason, rule]")
    return CpuNode(*row)


# ---------------------------------------------------------------- measuring a graph

def coverage(graph: Graph, float_graph: Graph | None = None) -> Coverage:
    """The coverage of a placed graph (partitioned into Segment nodes, or
    with an affinity on every node). MACs are counted on ``float_graph``
    when given: a quantized graph's integer layers have no MAC rule, so
    pass the float graph it was quantized from (``QuantizedModel.float_graph``)."""
    devices: dict[str, set[str]] = {}
    cpu_nodes = []
    for device, node, notes in _leaves(graph):
        for name in _sources(device, node):
            devices.setdefault(name, set()).add(device)
        if device != ACCELERATOR:
            cpu_nodes.append(CpuNode(node.name, node.op, notes.get(REASON) or NO_REASON, notes.get(RULE)))
    on_device = {name for name, where in devices.items() if where == {ACCELERATOR}}
    work = _macs_by_onnx_node(float_graph if float_graph is not None else graph)
    placed = segments(graph)
    device_segments = sum(s.device == ACCELERATOR for s in placed)
    return Coverage(sum(work.get(n, 0) for n in on_device), sum(work.get(n, 0) for n in devices), len(on_device),
                    len(devices), device_segments, len(placed) - device_segments, tuple(cpu_nodes))


def _leaves(graph: Graph) -> Iterator[tuple[str, Node, Mapping[str, Any]]]:
    """(device, node, its reason and rule) for every computing node, inside
    Segment and Fused bodies."""
    for top in graph.nodes:
        device = top.attrs["device"] if top.op == "Segment" else top.affinity
        if not device:
            raise CoverageError(f"{top.op} node {top.name!r} of graph {graph.name!r} has no device: coverage needs "
                                "a placed graph (compiler.pipeline.partition_graph)")
        yield from ((device, node, notes) for node, notes in _members(top, {}))


def _members(node: Node, outer: Mapping[str, Any]) -> Iterator[tuple[Node, Mapping[str, Any]]]:
    """The computing nodes in ``node`` with their reason and rule: their own,
    else those of the group around them (a Fused group moved to the CPU
    as a whole carries the reason for its members)."""
    notes = {**outer, **{key: node.annotations[key] for key in (REASON, RULE) if node.annotations.get(key)}}
    if node.op in STRUCTURAL:
        for member in node.attrs["body"].nodes:
            yield from _members(member, notes)
    else:
        yield node, notes


def _sources(device: str, node: Node) -> list[str]:
    """The ONNX nodes an IR node computes; none for the DRAM interface of a
    quantized accelerator segment (Quantize/DequantizeLinear the quantizer added)."""
    if "source" in node.annotations:
        return list(node.annotations["source"])
    if device == ACCELERATOR and node.op in _INTERFACE:
        return []
    return [onnx_name(node.name)]


def _macs_by_onnx_node(graph: Graph) -> dict[str, int]:
    work: Counter[str] = Counter()
    for top in graph.nodes:
        for node, _ in _members(top, {}):
            work[onnx_name(node.name)] += macs(node)
    return dict(work)
