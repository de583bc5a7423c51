"""Lowering of the moves (Transpose, Slice, Pad, DepthToSpace, SpaceToDepth):
strided DMA, no compute.

Each move is one strided copy (passes/moves.py describes it); the tile pass
chose which three of its axes form the DMA box and the tile extents along
them (passes/tiling.py ``plan_move``). A job per tile: a LOAD of the box
from the input (its strides), a NOP_COMPUTE that passes the tokens (the
bytes do not change) and a STORE of the same slot to the output (its
strides). The other axes loop over boxes.

A Pad's interior tiles take their border rows and columns from the LOAD's
padding (the box's y and x axes, up to 255 a side); tiles that lie in the
border on any other axis are LOADed from one pad code in the DRAM image with
zero strides (a broadcast). Tiles never straddle the interior's boundaries
on the axes LOAD cannot pad, so every output element is stored exactly once.
An edge Pad's tiles never straddle them on any axis: a tile in the border
before (after) an axis's interior LOADs the interior's first (last) row,
column or plane with a zero stride along that axis.
"""
from __future__ import annotations

import itertools

import numpy as np

from codegen.device.decisions import tile_decision
from codegen.device.dma import load, store
from codegen.device.image import ConstantImage
from codegen.device.stream import Job
from ir.graph import Node
from passes.moves import Axis, Move, describe
from passes.tiling import MovePlan, move_slot
from runtime.hardware import HardwareConfig
from runtime.isa import Op, Space, instr

MAX_LOAD_PAD = 255
"""LOAD's pad fields hold 8 bits (docs/isa.md)."""

Range = tuple[int, int]


class MoveLayer:
    """One move: its copy described and planned at construction (a Pad's
    code packed into the image), jobs once addresses are known."""

    macs = 0
    in_place = True

    def __init__(self, node: Node, config: HardwareConfig, image: ConstantImage):
        self.node = node
        self.move: Move = describe(node)
        decision = tile_decision(node)
        self.plan = MovePlan(tuple(decision["box"]), tuple(decision["tile"]))
        self.slot = move_slot(self.move, self.plan.tile)
        dtype = node.outputs[0].type.dtype.newbyteorder("<")
        self.fill = None if self.move.pad is None else image.add(np.array([self.move.pad], dtype).tobytes())

    @staticmethod
    def table_loads() -> list:
        """A move reads no table (the map layers' interface)."""
        return []

    def jobs(self, addr) -> list[Job]:
        src = addr(self.node.inputs[0]) + self.move.offset * self.move.elem
        dst = addr(self.node.outputs[0])
        ranges = [self._ranges(i, axis) for i, axis in enumerate(self.move.axes)]
        return [self._job(tile, src, dst, self.slot * (k % 2)) for k, tile in enumerate(itertools.product(*ranges))]

    def _ranges(self, index: int, axis: Axis) -> list[Range]:
        """The tiles along one axis: a loop axis one position at a time, a box
        axis by its tile extent; cut at the interior's boundaries unless LOAD
        pads this axis (the box's y and x, borders of at most 255)."""
        if index not in self.plan.box:
            return [(p, p + 1) for p in range(axis.size)]
        extent = self.plan.tile[self.plan.box.index(index)]
        cuts = (0, axis.size) if self._load_pads(index, axis) else axis.cuts
        return [(p, min(p + extent, stop)) for start, stop in zip(cuts, cuts[1:]) for p in range(start, stop, extent)]

    def _load_pads(self, index: int, axis: Axis) -> bool:
        return (not self.move.edge and index in self.plan.box[1:] and axis.inner > 0
                and max(axis.before, axis.size - axis.before - axis.inner) <= MAX_LOAD_PAD)

    def _job(self, tile: tuple[Range, ...], src: int, dst: int, slot: int) -> Job:
        axes, box = self.move.axes, self.plan.box
        extents = tuple(tile[i][1] - tile[i][0] for i in box)
        e = self.move.elem
        out = dst + sum(start * axis.dst for (start, _), axis in zip(tile, axes)) * e
        job = Job()
        job.loads.append(self._load(tile, src, slot, extents))
        job.computes.append(instr(Op.NOP_COMPUTE))
        job.stores.append(store(slot, out, e, extents, tuple(axes[i].dst for i in box)))
        return job

    def _load(self, tile: tuple[Range, ...], src: int, slot: int, extents: tuple[int, int, int]):
        """The interior part of a tile with its y/x border as LOAD padding,
        or, for a tile in the border, the pad code broadcast."""
        axes, box, e = self.move.axes, self.plan.box, self.move.elem
        if self.move.edge:
            return self._edge_load(tile, src, slot, extents)
        inside = [(max(lo, a.before), min(hi, a.before + a.inner)) for (lo, hi), a in zip(tile, axes)]
        if any(lo >= hi for lo, hi in inside):
            return load(Space.ACT, slot, self.fill, e, extents, (0, 0, 0))
        at = src + sum((lo - a.before) * a.src for (lo, _), a in zip(inside, axes)) * e
        (_, _), (y0, y1), (x0, x1) = (inside[i] for i in box)
        (_, _), (ty0, ty1), (tx0, tx1) = (tile[i] for i in box)
        pads = (y0 - ty0, ty1 - y1, x0 - tx0, tx1 - x1)
        sizes = (extents[0], y1 - y0, x1 - x0)
        return load(Space.ACT, slot, at, e, sizes, tuple(axes[i].src for i in box), pads,
                    self.move.pad if any(pads) else 0)

    def _edge_load(self, tile: tuple[Range, ...], src: int, slot: int, extents: tuple[int, int, int]):
        """An edge Pad's tile (inside one of an axis's border before, interior
        or border after, on every axis): the input from the clamped position,
        with a zero stride along each axis where the tile is in a border."""
        starts, strides = [], []
        for (lo, hi), a in zip(tile, self.move.axes):
            if hi <= a.before or lo >= a.before + a.inner:
                starts.append(0 if hi <= a.before else a.inner - 1)
                strides.append(0)
            else:
                starts.append(lo - a.before)
                strides.append(a.src)
        at = src + sum(p * a.src for p, a in zip(starts, self.move.axes)) * self.move.elem
        return load(Space.ACT, slot, at, self.move.elem, extents, tuple(strides[i] for i in self.plan.box))
