"""PlanMemory: where each accelerator segment's activations lie in DRAM.

A card's DRAM holds the constant region (packed weights, PARAM records,
lookup tables, constant operands: the binary's DRAM image, which codegen
builds) and, after it, the activations. This pass decides the activations'
offsets in that region, per segment (segments run one after another, so
each starts from offset 0). In a segment's body, QuantizeLinear entries,
layers and the DequantizeLinear exits' inputs are tensors in DRAM; layout
ops (Reshape, Flatten, Squeeze, Unsqueeze, Identity) are views of their
input's bytes, since device tensors lie dense and row-major, and so is a
move that copies one contiguous run (at an offset in its input's bytes). A
Transpose at an edge that the host's quantization absorbs
(passes/moves.py) is no layer: the tensor after it (an entry) or before it
(an exit) is the one in DRAM. Two tensors share bytes only when their
lifetimes (first write to last read, in layer order) do not overlap;
placement is greedy, largest first, at the lowest offset free for the
tensor's whole lifetime (the classic offset-assignment heuristic of
TFLite's and TVM's memory planners). Each tensor's offset is
recorded on its producer, ``annotations["dram"]``, and the region's size on
the segment, ``annotations["dram_bytes"]``; codegen adds the region's base
(the end of the constant image, 64-byte aligned, so the placement is the
same at any base).
"""
from __future__ import annotations

from dataclasses import dataclass

from ir.graph import Graph, Node, Value
from passes.infra import PassContext, PassError, graph_pass, register_option
from passes.moves import edge_transpose, view_offset
from passes.partition import accelerator_segments
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


def is_view(node: Node) -> bool:
    """A layout op, or a move that copies one contiguous run (a view at an
    offset, passes/moves.py)."""
    return node.op in VIEWS or view_offset(node) is not None


def is_layer(node: Node, body: Graph) -> bool:
    """A node the device runs: a tiled op that is neither a view nor a
    Transpose the host's quantization absorbs at an edge."""
    return node.op in TILED_OPS and not is_view(node) and edge_transpose(node, body) is None

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
    while value.producer is not None and is_view(value.producer):
        value = value.producer.inputs[0]
    return value


def offset(value: Value) -> int:
    """The byte offset of a value in its root's bytes (views at an offset add up)."""
    total = 0
    while value.producer is not None and is_view(value.producer):
        total += view_offset(value.producer) or 0
        value = value.producer.inputs[0]
    return total


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

    layers = [n for n in body.nodes if is_layer(n, body)]
    edges = {n: edge_transpose(n, body) for n in body.nodes}
    for node in body.nodes:
        if edges[node] == "entry":  # the host writes the permuted codes
            touch(node.outputs[0], -1)
        elif node.op == "QuantizeLinear" and not any(edges[user] == "entry" for user, _ in node.outputs[0].uses):
            touch(node.outputs[0], -1)
    for index, node in enumerate(layers):
        for value in (*node.inputs, *node.outputs):
            touch(value, index)
    for node in body.nodes:
        if node.op == "DequantizeLinear":
            source = node.inputs[0].producer
            exit_read = source.inputs[0] if source is not None and edges.get(source) == "exit" else node.inputs[0]
            touch(exit_read, len(layers))
    if not reuse:  # every tensor keeps its bytes (to read any layer's output after a run)
        spans = {v: [-1, len(layers)] for v in spans}
    return {v: Interval(v, v.type.numel * v.type.dtype.itemsize, first, last) for v, (first, last) in spans.items()}
