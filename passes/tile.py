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

from typing import Any

from ir.graph import Graph, Node, onnx_name
from passes.conv_parts import conv_parts, is_conv_layer
from passes.distribute import map_share_dims, shared_dram, worker_parts
from passes.infra import PassContext, graph_pass
from passes.moves import MOVE_OPS, describe
from passes.partition import accelerator_segments
from passes.tiling import TILED_OPS, TilingError, map_tiles, plan_conv, plan_map, plan_move
from runtime.hardware import HardwareConfig


@graph_pass(opt_level=0)
def tile(graph: Graph, ctx: PassContext) -> Graph:
    """Record the tiles of every accelerator layer, for ctx's hardware config."""
    hw: HardwareConfig = ctx.option("target.hardware")
    for segment in accelerator_segments(graph):
        planned = segment.annotations.get("hardware") == hw.digest()  # by untileable, for this config
        for node in segment.attrs["body"].nodes:
            split = node.annotations.get("split")
            if node.op in TILED_OPS and not (planned and split is None and "tile" in node.annotations):
                node.annotations["tile"] = plan_layer(node, hw, split)
        segment.annotations["hardware"] = hw.digest()
    return graph


def untileable(graph: Graph, hw: HardwareConfig) -> dict[str, str]:
    """The layers of ``graph``'s accelerator segments that no tiling fits
    (unsplit, for ``hw``): each ONNX node they come from -> the planner's
    error. The compiler moves them to the CPU and places again (the last
    line of defence behind the target rules, which should refuse them).
    When every layer fits, their decisions are recorded, so the tile pass
    for the same config keeps those of the layers the distribute pass did
    not split."""
    failures = {}
    for segment in accelerator_segments(graph):
        for node in segment.attrs["body"].nodes:
            if node.op not in TILED_OPS:
                continue
            try:
                node.annotations["tile"] = plan_layer(node, hw)
            except TilingError as exc:
                for source in node.annotations.get("source") or [onnx_name(node.name)]:
                    failures[source] = f"no tiling of it fits the accelerator: {exc}"
        segment.annotations["hardware"] = hw.digest()
    return failures


def plan_layer(node: Node, hw: HardwareConfig, split: dict | None = None) -> dict[str, Any]:
    """A layer's tiling decision as plain data: ``kt, rt, wt, ct, k_outer``
    for a QConv / QGemm, ``{"parts": [...]}`` of those for a layer of
    several CONV layers (a QConvTranspose's phases), ``box, tile`` for a
    move, ``ct, rt, wt`` for a map layer. A layer the distribute pass split
    (``split``) is priced at the DRAM bandwidth each cluster gets; a split
    CONV layer's decision is ``{"workers": [decision or None, ...]}``, one
    per worker's share; a split map layer's tiles are at most a worker's
    share of its first axis long."""
    workers = split["workers"] if split else 1
    hw_priced = shared_dram(hw, split["sharers"] if split else 1)
    if is_conv_layer(node, hw):
        if split:
            return {"workers": [_conv_decision(parts, hw_priced, node.name) if parts else None
                                for parts in worker_parts(node, hw, split)]}
        return _conv_decision(conv_parts(node, hw), hw, node.name)
    if node.op in MOVE_OPS:
        plan = plan_move(describe(node), hw, node.name)
        return {"box": list(plan.box), "tile": list(plan.tile)}
    tiles = map_tiles(node)
    dims = map_share_dims(tiles.dims, workers) if split and split["axis"] == "tiles" else tiles.dims
    plan = plan_map(*dims, lambda c, r, w: 2 * sum(tiles.slot_sizes(c, r, w)), hw.activation_buffer_bytes,
                    node.name, tiles.what)
    return {"ct": plan.ct, "rt": plan.rt, "wt": plan.wt}


def _conv_decision(parts: list, hw: HardwareConfig, layer: str) -> dict[str, Any]:
    plans = [plan_conv(part.shape, hw, layer) for part in parts]
    decisions = [{"kt": p.kt, "rt": p.rt, "wt": p.wt, "ct": p.ct, "k_outer": p.k_outer} for p in plans]
    return decisions[0] if len(decisions) == 1 else {"parts": decisions}


def part_decisions(decision: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-CONV decisions of a conv layer's recorded decision."""
    return list(decision["parts"]) if "parts" in decision else [decision]


