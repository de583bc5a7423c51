"""Moves as strided copies (passes/moves.py) on hand-built int8 graphs: the
view each op is, its merged axes, which moves are views at an offset, which
Transposes an edge absorbs, the DMA box the planner picks
(passes/tiling.py ``plan_move``), and Split as Slices
(passes/quant/split_slices.py). Every description is checked by copying an
array through it, element by element, against the op's CPU kernel."""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from ir import GraphBuilder
from passes.moves import Axis, describe, edge_transpose, view_offset
from passes.quant.split_slices import split_to_slices
from passes.tiling import TilingError, move_slot, plan_move
from runtime.hardware import PRESETS
from runtime.kernels import run_kernel
from runtime.sim.timing import dram_transfer_bytes

TINY, DEFAULT = PRESETS["tiny"], PRESETS["fwdnxt"]
I8 = np.int8


def i64(*values):
    return np.array(values, np.int64)


def move_node(op, shape, *params, **attrs):
    """One ``op`` node on an int8 input of ``shape`` (constant parameters)."""
    b = GraphBuilder()
    x = b.input("x", shape, I8)
    consts = [None if p is None else b.const(p) for p in params]
    return b.op(op, x, *consts, **attrs).producer


def copy_through(node, x: np.ndarray) -> np.ndarray:
    """The output of ``node`` computed from its description alone: each
    output position reads the input at offset + sum((p - before) * src), or
    is the pad code."""
    move = describe(node)
    src = x.reshape(-1)
    out = np.empty(move.elements, x.dtype)
    for index in itertools.product(*(range(a.size) for a in move.axes)):
        at = sum(p * a.dst for p, a in zip(index, move.axes))
        inside = all(a.before <= p < a.before + a.inner for p, a in zip(index, move.axes))
        out[at] = src[move.offset + sum((p - a.before) * a.src for p, a in zip(index, move.axes))] if inside \
            else move.pad
    return out.reshape(node.outputs[0].type.shape)


CASES = {
    "nchw to nhwc": ("Transpose", [1, 3, 4, 5], (), {"perm": [0, 2, 3, 1]}),
    "channel shuffle": ("Transpose", [1, 2, 3, 4, 5], (), {"perm": [0, 2, 1, 3, 4]}),
    "pixel shuffle": ("Transpose", [1, 2, 2, 2, 3, 3], (), {"perm": [0, 1, 4, 2, 5, 3]}),
    "reversed": ("Transpose", [2, 3, 4], (), {}),
    "slice rows with a step": ("Slice", [2, 3, 9, 5], (i64(1), i64(8), i64(2), i64(3)), {}),
    "slice cols and channels": ("Slice", [1, 6, 4, 9], (i64(1, 2), i64(6, 9), i64(1, 3), i64(2, 2)), {}),
    "slice with sentinels": ("Slice", [1, 4, 6, 6], (i64(-3), i64(1 << 62), i64(-1)), {}),
    "pad H and W": ("Pad", [1, 2, 3, 4], (i64(0, 0, 1, 2, 0, 0, 2, 0), np.int8(-7)), {}),
    "pad C": ("Pad", [2, 3, 2, 2], (i64(0, 1, 0, 0, 0, 2, 0, 0), np.int8(5)), {}),
    "pad and crop": ("Pad", [1, 2, 4, 5], (i64(0, 0, -1, 2, 0, 0, 1, -2), np.int8(3)), {}),
    "pad by axes": ("Pad", [1, 2, 4, 5], (i64(1, 2), np.int8(1), i64(3)), {}),
    "depth to space DCR": ("DepthToSpace", [1, 8, 2, 3], (), {"blocksize": 2, "mode": "DCR"}),
    "depth to space CRD": ("DepthToSpace", [2, 8, 2, 3], (), {"blocksize": 2, "mode": "CRD"}),
    "space to depth": ("SpaceToDepth", [1, 3, 4, 6], (), {"blocksize": 2}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_copy_through_the_description_is_the_kernel(case):
    op, shape, params, attrs = CASES[case]
    node = move_node(op, shape, *params, **attrs)
    x = np.random.default_rng(0).integers(-128, 128, shape).astype(I8)
    want = run_kernel(op, [x, *params], node.attrs)[0]
    np.testing.assert_array_equal(copy_through(node, x), want)


def test_axes_contiguous_on_both_sides_merge():
    nhwc = describe(move_node("Transpose", [1, 3, 4, 5], perm=[0, 2, 3, 1]))
    assert nhwc.axes == (Axis.copy(1, 0, 0), Axis.copy(20, 1, 3), Axis.copy(3, 20, 1))  # H and W are one axis
    shuffle = describe(move_node("Transpose", [1, 2, 3, 4, 5], perm=[0, 2, 1, 3, 4]))
    assert shuffle.axes == (Axis.copy(3, 20, 40), Axis.copy(2, 60, 20), Axis.copy(20, 1, 1))
    rows = describe(move_node("Slice", [1, 3, 9, 5], i64(1), i64(8), i64(2), i64(3)))
    assert rows.offset == 5  # C and the rows kept merge: every third row, plane after plane
    assert rows.axes == (Axis.copy(1, 0, 0), Axis.copy(9, 15, 5), Axis.copy(5, 1, 1))


def test_a_padded_axis_merges_only_outside_an_unpadded_one():
    channels = describe(move_node("Pad", [1, 3, 2, 2], i64(0, 1, 0, 0, 0, 2, 0, 0), np.int8(0)))
    assert channels.axes[-1] == Axis(24, 1, 1, 4, 12)  # C and H, W: one range of 3 interior planes
    spatial = describe(move_node("Pad", [1, 3, 2, 2], i64(0, 0, 1, 0, 0, 0, 0, 1), np.int8(0)))
    assert spatial.axes == (Axis.copy(3, 4, 9), Axis(3, 2, 3, 1, 2), Axis(3, 1, 1, 0, 2))


def test_contiguous_runs_are_views_at_an_offset():
    assert view_offset(move_node("Slice", [1, 8, 4, 4], i64(4), i64(8), i64(1))) == 4 * 16
    assert view_offset(move_node("Transpose", [1, 5, 1, 3], perm=[0, 2, 1, 3])) == 0
    assert view_offset(move_node("Slice", [2, 8, 4, 4], i64(4), i64(8), i64(1))) is None  # two images
    assert view_offset(move_node("Slice", [1, 8, 4, 4], i64(1), i64(3), i64(2))) is None  # rows of each plane
    assert view_offset(move_node("Pad", [1, 8, 4, 4], i64(0, 1, 0, 0, 0, 0, 0, 0), np.int8(0))) is None


def test_edge_transposes_are_those_the_host_absorbs():
    b = GraphBuilder()
    scale, zero = b.const(np.float32(0.1)), b.const(np.int8(0))
    x = b.QuantizeLinear(b.input("x", [1, 4, 5, 3]), scale, zero)
    entry = b.Transpose(x, perm=[0, 3, 1, 2])
    inner = b.Transpose(entry, perm=[0, 2, 3, 1])
    shared = b.Transpose(entry, perm=[0, 1, 3, 2])
    exit_ = b.Transpose(inner, perm=[0, 3, 1, 2])
    graph = b.build(b.DequantizeLinear(exit_, scale, zero), b.DequantizeLinear(shared, scale, zero),
                    b.DequantizeLinear(b.Relu(shared), scale, zero))
    assert [edge_transpose(v.producer, graph) for v in (entry, inner, exit_, shared)] == ["entry", None, "exit", None]


def test_the_box_keeps_both_sides_dense_and_fits_two_slots():
    move = describe(move_node("Transpose", [1, 64, 32, 32], perm=[0, 2, 3, 1]))  # [1024 pixels, 64 channels]
    for config in (DEFAULT, TINY):
        assert 2 * move_slot(move, plan_move(move, config, "t").tile) <= config.activation_buffer_bytes
    plan = plan_move(move, DEFAULT, "t")
    assert plan.tile == (1, 1024, 64)  # one box: each side reads or writes one dense span
    axes = [move.axes[i] for i in plan.box]
    assert [int(dram_transfer_bytes(1, *plan.tile, *(getattr(a, side) for a in axes))) for side in ("src", "dst")] \
        == [64 * 1024] * 2


def test_a_move_that_cannot_fit_names_the_layer():
    move = describe(move_node("Transpose", [1, 4, 4, 4]))
    with pytest.raises(TilingError, match="layer 't'.*activation buffer"):
        plan_move(move, dataclasses.replace(TINY, activation_buffer_bytes=8), "t")


def test_split_becomes_slices_that_keep_the_output_names():
    b = GraphBuilder()
    x = b.input("x", [1, 6, 4, 4])
    first, second, unused = b.Split(x, b.const(i64(1, 2, 3)), axis=1, num_outputs=3, name="split")
    graph = b.build(b.Relu(first), second)
    names = (first.name, second.name)
    split_to_slices(graph)
    slices = [n for n in graph.nodes if n.op == "Slice"]
    assert [n.name for n in slices] == ["split::Slice#0", "split::Slice#1"]  # the unused third output: nothing
    assert tuple(n.outputs[0].name for n in slices) == names and graph.outputs[1] is slices[1].outputs[0]
    assert [(int(n.inputs[1].const[0]), int(n.inputs[2].const[0]), int(n.inputs[3].const[0])) for n in slices] == \
        [(0, 1, 1), (1, 3, 1)]
    assert "Split" not in [n.op for n in graph.nodes]
