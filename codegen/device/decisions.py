"""What device code generation reads from the planning passes, checked:
each layer's tiles (passes/tile.py) and each segment's DRAM placement
(passes/plan_memory.py), made for the hardware config codegen targets."""
from __future__ import annotations

from typing import Any

from ir.graph import Node
from runtime.errors import TesseraError
from runtime.hardware import HardwareConfig

PLAN_PASSES = "compiler.pipeline.PLAN (passes tile, plan_memory)"


class CodegenError(TesseraError):
    """A layer cannot be lowered to the accelerator (names the layer and why)."""


def check_planned(segment: Node, config: HardwareConfig) -> None:
    """The segment was tiled for ``config`` and its memory planned."""
    planned = segment.annotations.get("hardware")
    if planned is None or "dram_bytes" not in segment.annotations:
        raise CodegenError(f"accelerator segment {segment.name!r} has no tiling or DRAM plan: run {PLAN_PASSES} "
                           "before code generation")
    if planned != config.digest():
        raise CodegenError(f"accelerator segment {segment.name!r} was tiled for another hardware config "
                           f"({planned}, this one is {config.digest()}): run {PLAN_PASSES} with this config")


def tile_decision(node: Node) -> dict[str, Any]:
    """A layer's recorded tiles."""
    decision = node.annotations.get("tile")
    if decision is None:
        raise CodegenError(f"layer {node.name!r} ({node.op}) has no tiling decision: run {PLAN_PASSES}")
    return decision


def dram_offset(node: Node) -> int:
    """The offset of a node's output in its segment's activation region."""
    offset = node.annotations.get("dram")
    if offset is None:
        raise CodegenError(f"node {node.name!r} ({node.op}) has no DRAM offset: run {PLAN_PASSES}")
    return offset
