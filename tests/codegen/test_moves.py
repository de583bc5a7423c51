"""Moves on the device (codegen/device/moves.py): small quantized models,
compiled to a binary and run on the simulator on a default and a tiny
config (tiles of a few rows, border tiles broadcast), give bit for bit what
the quantized model's CPU run gives; and since a move does not change
codes, its dequantized output is the float op applied to its dequantized
input. Split and contiguous Slices are views, an edge Transpose costs no
device pass, and a ShuffleNet-v2 block stays in one device segment."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from codegen.binary import write_binary
from compiler.compile import build
from compiler.quantize import quantize_model
from compiler.zoo.builder import OnnxBuilder
from passes.moves import MOVE_OPS
from runtime.binary import read_binary
from runtime.engine import Engine
from runtime.hardware import PRESETS
from runtime.kernels import run_kernel
from tests.helpers.device_models import assert_device_exact, quantize_seeded

CONFIGS = (PRESETS["fwdnxt"], PRESETS["tiny"])


def compile_and_run(model, shape, hwlinear=False):
    """The quantized model, each config's compiled model, and the device's
    outputs on one input, checked bit for bit against the CPU run."""
    rng = np.random.default_rng(1)
    samples = [rng.standard_normal(shape).astype(np.float32) for _ in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = quantize_model(model, calibration_data=samples, hwlinear=hwlinear)
    feeds = {quantized.input_names[0]: samples[0]}
    want = quantized.run(feeds)
    compiled = []
    for config in CONFIGS:
        model_ = build(quantized.graph, config, quantized.float_graph)
        got = Engine(read_binary(write_binary(model_))).run(feeds)
        for name in quantized.output_names:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{name} on {config}")
        compiled.append(model_)
    return quantized, compiled, want


def around(name, shape, move):
    """x -> 3x3 conv + Relu (a) -> ``move`` -> ys, each also read by a
    lookup table (so a Transpose's output is a device tensor, not an exit
    the host absorbs); the model outputs a, the ys and the tables."""
    b = OnnxBuilder(name, seed=2)
    a = b.node("Relu", [b.conv(b.input("x", shape), shape[1], shape[1], 3)], name="a")
    ys = move(b, a)
    ys = ys if isinstance(ys, list) else [ys]
    return b.model(["a", *ys, *(b.node("Sigmoid", [y]) for y in ys)]), len(ys)


def i64(b, *values):
    return b.const_i64(list(values))


def pad_fill(quantized) -> float:
    """The real value of the quantized Pad's code on its grid."""
    (pad,) = [n for n in quantized.quantized_nodes() if n.op == "Pad"]
    grid = pad.outputs[0].quant
    return float(np.float32(grid.scale[0]) * np.float32(int(pad.inputs[2].const) - grid.zero[0]))


MOVES = {  # name: (input shape, the move on a, the float op on a's dequantized values)
    "channel shuffle": ([1, 8, 5, 6], lambda b, a: b.node("Reshape", [b.node("Transpose", [b.node(
        "Reshape", [a, i64(b, 1, 2, 4, 5, 6)])], perm=[0, 2, 1, 3, 4]), i64(b, 1, 8, 5, 6)]),
        lambda a, q: [a.reshape(1, 2, 4, 5, 6).transpose(0, 2, 1, 3, 4).reshape(1, 8, 5, 6)]),
    "pixel shuffle": ([1, 8, 5, 6], lambda b, a: b.node("Reshape", [b.node("Transpose", [b.node(
        "Reshape", [a, i64(b, 1, 2, 2, 2, 5, 6)])], perm=[0, 1, 4, 2, 5, 3]), i64(b, 1, 2, 10, 12)]),
        lambda a, q: [a.reshape(1, 2, 2, 2, 5, 6).transpose(0, 1, 4, 2, 5, 3).reshape(1, 2, 10, 12)]),
    "nchw to nhwc": ([2, 5, 4, 6], lambda b, a: b.node("Transpose", [a], perm=[0, 2, 3, 1]),
                     lambda a, q: [a.transpose(0, 2, 3, 1)]),
    "split in 2": ([2, 6, 4, 5], lambda b, a: b.node("Split", [a], num_outputs=2, axis=1),
                   lambda a, q: np.split(a, 2, axis=1)),
    "split in 3 along rows": ([1, 3, 9, 4], lambda b, a: b.node("Split", [a, i64(b, 2, 3, 4)], num_outputs=3,
                                                                 axis=2),
                              lambda a, q: np.split(a, [2, 5], axis=2)),
    "slice rows": ([1, 4, 11, 6], lambda b, a: b.node("Slice", [a, i64(b, 1), i64(b, 10), i64(b, 2), i64(b, 2)]),
                   lambda a, q: [a[:, :, 1:10:2]]),
    "slice cols": ([1, 4, 6, 13], lambda b, a: b.node("Slice", [a, i64(b, 1), i64(b, 99), i64(b, 3), i64(b, 3)]),
                   lambda a, q: [a[:, :, :, 1::3]]),
    "slice channels": ([1, 7, 5, 6], lambda b, a: b.node("Slice", [a, i64(b, 1, -2), i64(b, 7, 6), i64(b, 1, 3),
                                                                    i64(b, 2, 1)]),
                       lambda a, q: [a[:, 1:7:2, :, -2:6]]),
    "pad H and W": ([1, 4, 6, 7], lambda b, a: b.node("Pad", [a, i64(b, 0, 0, 1, 3, 0, 0, 2, 0)]),
                    lambda a, q: [np.pad(a, ((0, 0), (0, 0), (1, 2), (3, 0)), constant_values=pad_fill(q))]),
    "pad C with a value": ([1, 4, 5, 6], lambda b, a: b.node("Pad", [a, i64(b, 0, 2, 0, 0, 0, 1, 0, 0),
                                                                     b.const_f32(0.5)]),
                           lambda a, q: [np.pad(a, ((0, 0), (2, 1), (0, 0), (0, 0)), constant_values=pad_fill(q))]),
    "pad edge H and W": ([1, 4, 6, 7], lambda b, a: b.node("Pad", [a, i64(b, 0, 0, 1, 3, 0, 0, 2, 0)], mode="edge"),
                         lambda a, q: [np.pad(a, ((0, 0), (0, 0), (1, 2), (3, 0)), mode="edge")]),
    "pad edge wide, every axis": ([2, 3, 5, 6], lambda b, a: b.node("Pad", [a, i64(b, 1, 2, 9, 1, 0, 1, 4, 11)],
                                                                    mode="edge"),
                                  lambda a, q: [np.pad(a, ((1, 0), (2, 1), (9, 4), (1, 11)), mode="edge")]),
    "depth to space DCR": ([1, 8, 4, 5], lambda b, a: b.node("DepthToSpace", [a], blocksize=2, mode="DCR"),
                           lambda a, q: run_kernel("DepthToSpace", [a], {"blocksize": 2, "mode": "DCR"})),
    "depth to space CRD": ([1, 8, 4, 5], lambda b, a: b.node("DepthToSpace", [a], blocksize=2, mode="CRD"),
                           lambda a, q: run_kernel("DepthToSpace", [a], {"blocksize": 2, "mode": "CRD"})),
    "space to depth": ([1, 3, 8, 6], lambda b, a: b.node("SpaceToDepth", [a], blocksize=2),
                       lambda a, q: run_kernel("SpaceToDepth", [a], {"blocksize": 2, "mode": "DCR"})),
}


@pytest.mark.parametrize("case", list(MOVES))
def test_moves_are_exact_on_codes(case):
    shape, move, op = MOVES[case]
    model, count = around(case.replace(" ", "_"), shape, move)
    quantized, compiled, out = compile_and_run(model, shape)
    assert [len(c.device_segments) for c in compiled] == [1, 1] and len(compiled[0].segments) == 1
    assert any(layer.op in MOVE_OPS for layer in compiled[0].layers)  # a device pass, not a view
    names = quantized.output_names
    for got, want in zip([out[n] for n in names[1:1 + count]], op(out["a"], quantized)):
        np.testing.assert_array_equal(got, want)


def test_edge_pads_match_the_integer_reference():
    """An edge Pad's border tiles LOAD the edge with zero strides, bit for
    bit the integer reference (tests/oracle.py) on both configs."""
    shape, move, _ = MOVES["pad edge wide, every axis"]
    model, _ = around("edge", shape, move)
    quantized, _ = quantize_seeded(model)
    for config in CONFIGS:
        assert_device_exact(quantized, shape, config, seeds=(0,))


def test_split_and_contiguous_slices_are_views():
    model, _ = around("split", [1, 6, 4, 5], lambda b, a: b.node("Split", [a, i64(b, 1, 2, 3)], num_outputs=3,
                                                                 axis=1))
    _, compiled, _ = compile_and_run(model, [1, 6, 4, 5])
    assert "Slice" not in [layer.op for layer in compiled[0].layers]  # one image: each channel range is one run


@pytest.mark.parametrize("axis", [2, 3])
def test_concat_along_rows_and_columns(axis):
    b = OnnxBuilder("concat", seed=3)
    x = b.input("x", [1, 4, 5, 6])
    a = b.node("Relu", [b.conv(x, 4, 4, 3)])
    model = b.model([b.node("Concat", [a, b.conv(a, 4, 4, 1), a], axis=axis)])
    _, compiled, _ = compile_and_run(model, [1, 4, 5, 6])
    assert [layer.op for layer in compiled[0].layers] == ["QConv", "QConv", "QConcat"]


def test_edge_transposes_are_absorbed_by_the_host():
    """A Keras-style NHWC model: its input Transpose and its output
    Transpose become the DRAM tensors' permutations, not device passes."""
    b = OnnxBuilder("nhwc", seed=4)
    x = b.node("Transpose", [b.input("x", [2, 6, 7, 3])], perm=[0, 3, 1, 2])
    a = b.node("Relu", [b.conv(x, 3, 8, 3)])
    model = b.model([b.node("Transpose", [b.conv(a, 8, 4, 1)], perm=[0, 2, 3, 1])])
    _, compiled, _ = compile_and_run(model, [2, 6, 7, 3])
    for model_ in compiled:
        (segment,) = model_.segments
        assert [layer.op for layer in segment.layers] == ["QConv", "QConv"]
        (entry,), (exit_,) = segment.inputs, segment.outputs
        assert (entry.shape, entry.perm) == ((2, 3, 6, 7), (0, 3, 1, 2))
        assert (exit_.shape, exit_.perm) == ((2, 4, 6, 7), (0, 2, 3, 1))


def shufflenet_v2():
    """Two ShuffleNet-v2 units: a stride-1 unit (channel split, 1x1 -> 3x3
    depthwise -> 1x1 on one half, concat, channel shuffle) and a stride-2
    one (both branches downsample), then a pooled linear head."""
    b = OnnxBuilder("shufflenet_v2", seed=5)
    x = b.node("Relu", [b.conv(b.input("x", [1, 3, 16, 16]), 3, 16, 3, stride=2)])

    def branch(t, channels, stride):
        t = b.node("Relu", [b.conv(t, channels, channels, 1)])
        t = b.conv(t, channels, channels, 3, stride=stride, groups=channels)
        return b.node("Relu", [b.conv(t, channels, channels, 1)])

    def shuffle(t, channels, size):
        t = b.node("Reshape", [t, i64(b, 1, 2, channels // 2, size, size)])
        t = b.node("Transpose", [t], perm=[0, 2, 1, 3, 4])
        return b.node("Reshape", [t, i64(b, 1, channels, size, size)])

    left, right = b.node("Split", [x], num_outputs=2, axis=1)
    x = shuffle(b.node("Concat", [left, branch(right, 8, 1)], axis=1), 16, 8)
    down = b.node("Relu", [b.conv(b.conv(x, 16, 16, 3, stride=2, groups=16), 16, 16, 1)])
    x = shuffle(b.node("Concat", [down, branch(x, 16, 2)], axis=1), 32, 4)
    pooled = b.node("Flatten", [b.node("GlobalAveragePool", [x])])
    return b.model([b.linear(pooled, 32, 10)])


def test_a_shufflenet_v2_runs_in_one_device_segment():
    _, compiled, _ = compile_and_run(shufflenet_v2(), [1, 3, 16, 16], hwlinear=True)
    for model_ in compiled:
        assert len(model_.segments) == 1 and len(model_.device_segments) == 1
        ops = [layer.op for layer in model_.layers]
        assert ops.count("Transpose") == 2 and "Slice" not in ops  # the split halves are views
