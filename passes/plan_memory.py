"""PlanMemory: where each accelerator segment's activations lie in DRAM.

A card's DRAM holds the constant region (packed weights, PARAM records,
lookup tables, constant operands: the binary's DRAM image, which codegen
builds) and, after it, the activations. This pass decides the activations'
offsets in that region, per segment (segments run one after another, so
each starts from offset 0). In a segment's body, QuantizeLinear entries,
layers and the DequantizeLinear exits' inputs are tensors in DRAM; layout
ops (Reshape, Flatten, Squeeze, Unsqueeze, Identity) are views of their
input's bytes, since device tensors lie dense and row-major. Two tensors
share bytes only when their lifetimes (first write to last read, in layer
order) do not overlap; placement is greedy, largest first, at the lowest
offset free for the tensor's whole lifetime (the classic offset-assignment
heuristic of TFLite's and TVM's memory planners). Each tensor's offset is
recorded on its producer, ``annotations["dram"]``, and the region's size on
the segment, ``annotations["dram_bytes"]``; codegen adds the region's base
(the end of the constant image, 64-byte aligned, so the placement is the
same at any base).
"""
from __future__ import annotations

from dataclasses import dataclass

from ir.graph import Graph, Value
from passes.infra import PassContext, PassError, graph_pass, register_option
from passes.tile import accelerator_segments
from passes.tiling import TILED_OPS

ALIGN = 64
"""Every DRAM block starts on a 64-byte boundary (a DRAM burst)."""


def align(value: int, to: int = ALIGN) -> int:
    return -(-value // to) * to


@dataclass
class Interval:
    """A tensor's bytes and lifetime [first, last] in layer indices."""

    key: object
    size: int
    first: int
    last: int
    addr: int = -1


def assign_addresses(intervals: list[Interval], base: int) -> int:
    """Give each interval an address >= ``base`` so that intervals alive at
    the same time never overlap; returns the end of the highest block."""
    placed: list[Interval] = []
    end = base
    for item in sorted(intervals, key=lambda i: (-i.size, i.first)):
        busy = sorted((p.addr, p.addr + align(p.size)) for p in placed
                      if p.first <= item.last and item.first <= p.last)
        addr = base
        for start, stop in busy:
            if addr + item.size <= start:
                break
            addr = max(addr, stop)
        item.addr = addr
        placed.append(item)
        end = max(end, addr + align(item.size))
    return end


VIEWS = frozenset({"Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity"})
"""Layout ops: views of their input's bytes."""

register_option("memory.reuse", bool, True,
                "let accelerator activations whose lifetimes do not overlap share DRAM bytes; off, every tensor "
                "keeps its own, so each layer's output can be read after a run (debugging)")


@graph_pass(opt_level=0)
def plan_memory(graph: Graph, ctx: PassContext) -> Graph:
    """Record the DRAM offset of every accelerator activation."""
    for segment in accelerator_segments(graph):
        intervals = liveness(segment.attrs["body"], ctx.option("memory.reuse"))
        segment.annotations["dram_bytes"] = assign_addresses(list(intervals.values()), 0)
        for value, interval in intervals.items():
            value.producer.annotations["dram"] = interval.addr
    return graph


def root(value: Value) -> Value:
    """The tensor whose bytes a value is: itself, or the input of the views that made it."""
    while value.producer is not None and value.producer.op in VIEWS:
        value = value.producer.inputs[0]
    return value


def liveness(body: Graph, reuse: bool = True) -> dict[Value, Interval]:
    """Each DRAM tensor's bytes and lifetime in layer indices: entries are
    written before the first layer (-1), exits read after the last."""
    spans: dict[Value, list[int]] = {}

    def touch(value: Value | None, at: int) -> None:
        if value is None or value.is_constant:
            return
        tensor = root(value)
        if tensor.producer is None:
            raise PassError(f"accelerator segment body {body.name!r}: %{tensor.name} is read in DRAM but no "
                            "QuantizeLinear or layer of the segment writes it")
        span = spans.setdefault(tensor, [at, at])
        span[0], span[1] = min(span[0], at), max(span[1], at)

    layers = [n for n in body.nodes if n.op in TILED_OPS]
    for node in body.nodes:
        if node.op == "QuantizeLinear":
            touch(node.outputs[0], -1)
    for index, node in enumerate(layers):
        for value in (*node.inputs, *node.outputs):
            touch(value, index)
    for node in body.nodes:
        if node.op == "DequantizeLinear":
            touch(node.inputs[0], len(layers))
    if not reuse:  # every tensor keeps its bytes (to read any layer's output after a run)
        spans = {v: [-1, len(layers)] for v in spans}
    return {v: Interval(v, v.type.numel * v.type.dtype.itemsize, first, last) for v, (first, last) in spans.items()}
