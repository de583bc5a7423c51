"""Tile: each accelerator layer's tiles, decided from the hardware config.

For every layer of every accelerator segment (QConv, QGemm, pools,
element-wise ops, concatenation, lookup tables, upsampling, moves) the capacity
planner (passes/tiling.py) picks the tiles that fit one cluster's on-chip
buffers at the least modelled cost. The decision is recorded on the node as
plain data, ``annotations["tile"]`` (``{kt, rt, wt, ct, k_outer}`` for a
convolution or matrix product, ``{ct, rt, wt}`` for a map layer, ``{box,
tile}`` for a move: its DMA box's view axes and extents), so the
printer shows it, and the segment records the digest of the config it was
made for (``annotations["hardware"]``). Code generation follows the
decisions, sizing its slots by the planner's own rules, and refuses a graph
planned for another config.
"""
from __future__ import annotations

from ir.graph import Graph, Node
from passes.infra import PassContext, graph_pass
from passes.tiling import TILED_OPS, plan_layer
from runtime.hardware import ACCELERATOR, HardwareConfig


@graph_pass(opt_level=0)
def tile(graph: Graph, ctx: PassContext) -> Graph:
    """Record the tiles of every accelerator layer, for ctx's hardware config."""
    hw: HardwareConfig = ctx.option("target.hardware")
    for segment in accelerator_segments(graph):
        for node in segment.attrs["body"].nodes:
            if node.op in TILED_OPS:
                node.annotations["tile"] = plan_layer(node, hw)
        segment.annotations["hardware"] = hw.digest()
    return graph


def accelerator_segments(graph: Graph) -> list[Node]:
    """The graph's accelerator Segment nodes, in order."""
    return [n for n in graph.nodes if n.op == "Segment" and n.attrs["device"] == ACCELERATOR]
