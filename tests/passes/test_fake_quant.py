"""Simulated quantization (passes/quant/fake_quant.py): the graph it builds
(quantize-dequantize pairs after encoded activations, rounded weights,
corrected biases, names kept) and what that graph computes, against NumPy."""
from __future__ import annotations

import numpy as np
import pytest

from ir.graph import Graph
from ir.types import QuantParams, TensorType
from ir.verifier import verify
from passes.infra import PassError
from passes.quant.fake_quant import fake_quantize, fake_quantize_array, unknown_tensors
from tests.helpers.graphs import ops, run_graph

X = QuantParams(0.05, 3, np.int8)
W = QuantParams([0.01, 0.02], [0, 0], np.int8, axis=0)
Y = QuantParams(0.04, -128, np.int8)


def conv_relu() -> Graph:
    """x[1,2,4,4] -> Conv(w, b) -> Relu: the output %y."""
    rng = np.random.default_rng(0)
    graph = Graph("conv_relu")
    x = graph.add_input("x", TensorType((1, 2, 4, 4), np.float32))
    w = graph.add_constant(rng.uniform(-1, 1, (2, 2, 3, 3)).astype(np.float32), "w")
    b = graph.add_constant(np.array([0.1, -0.2], np.float32), "b")
    conv = graph.add_node("Conv", [x, w, b], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [1, 1],
                                              "dilations": [1, 1], "group": 1}, name="conv", output_names=["c"])
    relu = graph.add_node("Relu", conv.outputs, name="relu", output_names=["y"])
    graph.outputs = [relu.outputs[0]]
    return graph


def rounded(x: np.ndarray, params: QuantParams, low: int = -128, high: int = 127) -> np.ndarray:
    """The grid's real nearest to x (ties to even), saturated: NumPy only."""
    shape = [1] * x.ndim
    if params.axis is not None:
        shape[params.axis] = -1
    scale = np.asarray(params.scale, np.float32).reshape(shape)
    zero = np.asarray(params.zero).reshape(shape)
    return ((np.clip(np.rint(x / scale) + zero, low, high) - zero) * scale).astype(np.float32)


def conv(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A 3x3, pad 1, stride 1 convolution in float64."""
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((1, w.shape[0], 4, 4))
    for i in range(4):
        for j in range(4):
            out[0, :, i, j] = np.tensordot(w, padded[0, :, i:i + 3, j:j + 3], axes=3) + b
    return out


def test_pairs_follow_encoded_activations_and_names_are_kept():
    graph = conv_relu()
    fake = fake_quantize(graph, {"x": X, "w": W, "y": Y}, weights=["w"])
    verify(fake)
    assert ops(fake) == ["QuantizeLinear", "DequantizeLinear", "Conv", "Relu", "QuantizeLinear", "DequantizeLinear"]
    assert [v.name for v in fake.inputs] == ["x"] and [v.name for v in fake.outputs] == ["y"]
    assert fake.node("relu").outputs[0].name == "y_float"
    assert fake.node("conv").inputs[0].name == "x_fake_quant"
    assert fake.outputs[0].producer.op == "DequantizeLinear"
    np.testing.assert_array_equal(fake.values["w"].const, rounded(graph.values["w"].const, W))
    assert ops(graph) == ["Conv", "Relu"] and graph.outputs[0].name == "y"  # the input graph is left alone


def test_the_graph_computes_rounding_around_float_arithmetic():
    graph = conv_relu()
    x = np.random.default_rng(1).uniform(-8, 8, (1, 2, 4, 4)).astype(np.float32)  # some values saturate
    fake = fake_quantize(graph, {"x": X, "w": W, "y": Y})
    expected = rounded(np.maximum(conv(rounded(x, X), rounded(graph.values["w"].const, W),
                                       graph.values["b"].const), 0), Y)
    got = run_graph(fake, {"x": x})["y"]
    assert np.abs(got - expected).max() <= 1e-6  # float32 vs float64 sums: a tie could differ, none does here
    assert len(np.unique(np.round(got / Y.scale[0]))) > 4
    assert not np.allclose(got, run_graph(graph, {"x": x})["y"], atol=1e-4)


def test_bias_corrections_are_converted_from_accumulator_units():
    graph = conv_relu()
    fake = fake_quantize(graph, {"x": X, "w": W, "y": Y}, bias_corrections={"w": [5, -2]})
    bias = fake.node("conv").inputs[2]
    np.testing.assert_allclose(bias.const, [0.1 + 5 * 0.05 * 0.01, -0.2 - 2 * 0.05 * 0.02], rtol=1e-6)
    assert "b" not in fake.values  # the old bias is dropped
    without_input_grid = fake_quantize(graph, {"w": W, "y": Y}, bias_corrections={"w": [5, -2]})
    assert without_input_grid.node("conv").inputs[2].name == "b"


def test_unknown_names_are_ignored_and_listed():
    graph = conv_relu()
    fake = fake_quantize(graph, {"x": X, "not_there": Y})
    assert ops(fake)[:2] == ["QuantizeLinear", "DequantizeLinear"] and len(fake.nodes) == 4
    assert unknown_tensors(graph, ["x", "c", "not_there", "gone"]) == ["gone", "not_there"]


def test_array_rounding_ties_to_even_saturates_and_keeps_weights_symmetric():
    grid = QuantParams(0.5, 0, np.int8)
    x = np.array([0.25, 0.75, -0.25, 100.0, -100.0], np.float32)
    np.testing.assert_array_equal(fake_quantize_array(x, grid), [0.0, 1.0, -0.0, 63.5, -64.0])
    np.testing.assert_array_equal(fake_quantize_array(x, grid, weight=True), [0.0, 1.0, -0.0, 63.5, -63.5])
    wide = QuantParams(0.5, 0, np.int16)
    assert fake_quantize_array(np.float32(1000.0), wide) == 1000.0
    with pytest.raises(PassError, match="3 channels on axis 0"):
        fake_quantize_array(np.zeros((2, 4), np.float32), QuantParams([1, 1, 1], [0, 0, 0], np.int8, axis=0))


def test_a_conv_transpose_weight_is_rounded_per_output_channel():
    graph = Graph("deconv")
    x = graph.add_input("x", TensorType((1, 2, 3, 3), np.float32))
    w = graph.add_constant(np.random.default_rng(2).uniform(-1, 1, (2, 3, 2, 2)).astype(np.float32), "w")
    node = graph.add_node("ConvTranspose", [x, w], {"kernel_shape": [2, 2], "strides": [1, 1], "pads": [0, 0, 0, 0],
                                                    "dilations": [1, 1], "group": 1, "output_padding": [0, 0]})
    graph.outputs = [node.outputs[0]]
    grid = QuantParams([0.01, 0.02, 0.03], [0, 0, 0], np.int8, axis=0)  # as an encodings file gives it
    fake = fake_quantize(graph, {"w": grid}, weights=["w"])
    expected = rounded(w.const, QuantParams(grid.scale, grid.zero, np.int8, axis=1))
    np.testing.assert_array_equal(fake.values["w"].const, expected)


def test_a_grouped_conv_transpose_weight_is_rounded_by_output_channel():
    """A depthwise ConvTranspose (CenterNet's bilinear upsampling): weight
    [C_in, C_out/group, kh, kw], output channel g * C_out/group + j on row
    block g and column j; each rounds on its own channel's scale (diagnose
    and the target measured such models only after this)."""
    group, per_in, per_out = 2, 2, 3
    graph = Graph("deconv")
    x = graph.add_input("x", TensorType((1, group * per_in, 3, 3), np.float32))
    weight = np.random.default_rng(4).uniform(-1, 1, (group * per_in, per_out, 2, 2)).astype(np.float32)
    w = graph.add_constant(weight, "w")
    node = graph.add_node("ConvTranspose", [x, w], {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [0, 0, 0, 0],
                                                    "dilations": [1, 1], "group": group, "output_padding": [0, 0]})
    graph.outputs = [node.outputs[0]]
    scales = np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06])
    fake = fake_quantize(graph, {"w": QuantParams(scales, np.zeros(6, np.int8), np.int8, axis=0)}, weights=["w"])
    for g in range(group):
        for j in range(per_out):
            scale = np.float32(scales[g * per_out + j])
            codes = np.clip(np.round(weight[g * per_in:(g + 1) * per_in, j] / scale), -127, 127)
            np.testing.assert_array_equal(fake.values["w"].const[g * per_in:(g + 1) * per_in, j],
                                          codes.astype(np.float32) * scale)
