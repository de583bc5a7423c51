"""Moves: the data-movement ops of an accelerator segment as strided copies.

Transpose, Slice, Pad, DepthToSpace and SpaceToDepth move integer codes
without changing them (docs/quantization.md, "Layout ops"); a Split became
Slices when the segment was quantized. Device tensors lie in DRAM dense and
row-major, so each of these is one N-D strided copy over a view of its
output (:class:`Move`): per view axis, its extent and the element strides of
the input and of the output, and for a Pad the interior of each axis (the
positions copied from the input; the rest are the pad code).

- Transpose: the input's strides, permuted.
- Slice: starts give the input offset, steps multiply the input's strides.
- DepthToSpace, SpaceToDepth: a Transpose of the 6-D view of the input
  (ONNX's reshape-transpose-reshape; the last reshape is free).
- Pad: the output's axes, each with its interior; negative pads crop (an
  input offset); an edge Pad's border repeats the interior's first or last
  position (codegen reads it with zero strides).

Size-1 axes are dropped and adjacent axes contiguous in both the input and
the output merge, so a copy has as few axes as its data allows; the tiling
planner (passes/tiling.py) picks three of them as the DMA box and the code
generator (codegen/device/moves.py) loops over the rest. A move whose copy
is one contiguous run is no copy at all: the output is a view of the
input's bytes at an offset (a channel Split of one image). A Transpose that
reads a segment's quantized input, or whose output only leaves the segment,
is absorbed into the host's quantization: the host writes (reads) the codes
permuted, and the device does nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ir.graph import Graph, Node
from runtime.kernels.shape import pad_widths, slice_bounds, slice_params, transpose_perm

MOVE_OPS = frozenset({"Transpose", "Slice", "Pad", "DepthToSpace", "SpaceToDepth"})
"""The moves of a quantized segment (Split is Slices by then)."""
BOX_RANK = 3
"""A DMA box has three axes (docs/isa.md, LOAD)."""


@dataclass(frozen=True)
class Axis:
    """One axis of a move's view: ``size`` positions; the input element
    stride ``src`` and output element stride ``dst``; positions
    ``[before, before + inner)`` come from the input, the others are the pad
    code (only a Pad has others)."""

    size: int
    src: int
    dst: int
    before: int
    inner: int

    @classmethod
    def copy(cls, size: int, src: int, dst: int) -> "Axis":
        """An axis without border: every position comes from the input."""
        return cls(size, src, dst, 0, size)

    @property
    def padded(self) -> bool:
        return self.inner != self.size

    @property
    def cuts(self) -> tuple[int, int, int, int]:
        """The boundaries of the border before, the interior and the border after."""
        return 0, self.before, self.before + self.inner, self.size


@dataclass(frozen=True)
class Move:
    """A move as one strided copy: ``axes`` outermost first (at least
    :data:`BOX_RANK`, leading size-1 axes added), ``offset`` the input element
    at the interior's origin, ``elem`` bytes per element and, for a Pad, the
    ``pad`` code, or ``edge``: the border repeats the interior's first and
    last positions (Pad mode 'edge')."""

    axes: tuple[Axis, ...]
    offset: int
    elem: int
    pad: int | None = None
    edge: bool = False

    @property
    def elements(self) -> int:
        return math.prod(a.size for a in self.axes)


def describe(node: Node) -> Move:
    """The strided copy a move node is, with its axes merged."""
    view = _VIEWS.get(node.op)
    if view is None:
        raise ValueError(f"{node.op} node {node.name!r} is not a move (one of {sorted(MOVE_OPS)})")
    axes, offset = view(node)
    pad, edge = None, node.op == "Pad" and node.attrs["mode"] == "edge"
    if node.op == "Pad" and not edge:  # the quantized Pad carries its code (0 for a float graph's default)
        pad = int(node.inputs[2].const.reshape(-1)[0]) if _given(node, 2) else 0
    merged = merge(axes)
    ones = (BOX_RANK - len(merged)) * (Axis.copy(1, 0, 0),)
    return Move(ones + tuple(merged), offset, node.outputs[0].type.dtype.itemsize, pad, edge)


def merge(axes: list[Axis]) -> list[Axis]:
    """Drop size-1 axes that hold no border and merge each axis into the one
    outside it when both are contiguous in the input and in the output and
    the inner one has no border (the interior stays one range)."""
    out: list[Axis] = []
    for axis in axes:
        if axis.size == 1 and not axis.padded:
            continue
        if out and _contiguous(out[-1], axis):
            outer = out.pop()
            axis = Axis(outer.size * axis.size, axis.src, axis.dst, outer.before * axis.size,
                        outer.inner * axis.size)
        out.append(axis)
    return out


def _contiguous(outer: Axis, inner: Axis) -> bool:
    return not inner.padded and outer.src == inner.size * inner.src and outer.dst == inner.size * inner.dst


def view_offset(node: Node) -> int | None:
    """The byte offset of a move's output in its input's bytes when the move
    copies one contiguous run (the output is then a view); None otherwise."""
    if node.op not in MOVE_OPS:
        return None
    move = describe(node)
    if any(a.padded for a in move.axes) or any(a.size > 1 and (a.src, a.dst) != (1, 1) for a in move.axes):
        return None
    return move.offset * move.elem


def edge_transpose(node: Node, body: Graph) -> str | None:
    """``"entry"`` when ``node`` is a Transpose of a segment input's codes
    that nothing else reads (the host writes them permuted), ``"exit"`` when
    its output only leaves the segment (the host reads them permuted), None
    otherwise (a view or an inner Transpose)."""
    if node.op != "Transpose" or view_offset(node) is not None:
        return None
    x, y = node.inputs[0], node.outputs[0]
    if x.producer is not None and x.producer.op == "QuantizeLinear" and len(x.uses) == 1 \
            and x not in body.outputs:
        return "entry"
    users = [user for user, _ in y.uses]
    if len(users) == 1 and users[0].op == "DequantizeLinear" and y not in body.outputs:
        return "exit"
    return None


def permutation(node: Node) -> tuple[int, ...]:
    """A Transpose's permutation (ONNX's default reverses the axes)."""
    return tuple(transpose_perm(node.attrs["perm"], node.inputs[0].type.rank))


# ---------------------------------------------------------------- views per op
def _dense(shape) -> list[int]:
    """Row-major element strides of ``shape``."""
    strides, step = [], 1
    for dim in reversed(shape):
        strides.append(step)
        step *= int(dim)
    return strides[::-1]


def _permuted(shape, perm) -> tuple[list[Axis], int]:
    """The view of ``x.transpose(perm)`` for a dense ``x`` of ``shape``."""
    src = _dense(shape)
    out = [int(shape[p]) for p in perm]
    return [Axis.copy(size, src[p], dst) for size, p, dst in zip(out, perm, _dense(out))], 0


def _transpose(node: Node) -> tuple[list[Axis], int]:
    return _permuted(node.inputs[0].type.shape, permutation(node))


_SPACE_DEPTH = {  # (to_depth, mode) -> the 6-D input view's shape (from n, c, h, w, b) and permutation
    (False, "DCR"): (lambda n, c, h, w, b: (n, b, b, c // (b * b), h, w), (0, 3, 4, 1, 5, 2)),
    (False, "CRD"): (lambda n, c, h, w, b: (n, c // (b * b), b, b, h, w), (0, 1, 4, 2, 5, 3)),
    (True, "DCR"): (lambda n, c, h, w, b: (n, c, h // b, b, w // b, b), (0, 3, 5, 1, 2, 4)),
    (True, "CRD"): (lambda n, c, h, w, b: (n, c, h // b, b, w // b, b), (0, 1, 3, 5, 2, 4)),
}


def _space_depth(node: Node) -> tuple[list[Axis], int]:
    """DepthToSpace and SpaceToDepth as the kernels define them (runtime/kernels/shape.py)."""
    shape, perm = _SPACE_DEPTH[(node.op == "SpaceToDepth", node.attrs["mode"])]
    return _permuted(shape(*node.inputs[0].type.shape, int(node.attrs["blocksize"])), perm)


def _ints(node: Node, index: int) -> list[int] | None:
    return node.inputs[index].const.reshape(-1).astype(np.int64).tolist() if _given(node, index) else None


def _given(node: Node, index: int) -> bool:
    return len(node.inputs) > index and node.inputs[index] is not None


def _slice(node: Node) -> tuple[list[Axis], int]:
    shape = node.inputs[0].type.shape
    src = _dense(shape)
    steps, offset = [1] * len(shape), 0
    for axis, start, end, step in slice_params(len(shape), _ints(node, 1), _ints(node, 2), _ints(node, 3),
                                               _ints(node, 4)):
        first, _, _ = slice_bounds(shape[axis], start, end, step)
        offset += first * src[axis]
        steps[axis] = step
    out = node.outputs[0].type.shape
    return [Axis.copy(int(size), s * k, d) for size, s, k, d in zip(out, src, steps, _dense(out))], offset


def _pad(node: Node) -> tuple[list[Axis], int]:
    shape, out = node.inputs[0].type.shape, node.outputs[0].type.shape
    src = _dense(shape)
    widths = pad_widths(len(shape), _ints(node, 1), _ints(node, 3))
    axes, offset = [], 0
    for size, stride, dst, dim, (begin, end) in zip(out, src, _dense(out), shape, widths):
        inner = dim + min(begin, 0) + min(end, 0)
        axes.append(Axis(int(size), stride, dst, max(begin, 0), max(inner, 0)))
        offset += max(-begin, 0) * stride
    if any(a.inner == 0 for a in axes):  # an empty interior: the output is all border
        axes = [replace(a, before=0, inner=0) for a in axes]
    return axes, offset


_VIEWS = {"Transpose": _transpose, "Slice": _slice, "Pad": _pad, "DepthToSpace": _space_depth,
          "SpaceToDepth": _space_depth}
