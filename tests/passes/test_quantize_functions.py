"""The quantize pass on the layers real exporters write: unary functions
however they are spelt (one table, alone or in a convolution's epilogue),
PRelu, transposed convolutions, differences, maxima and minima of two
tensors, divisions by constants. Each model runs whole on the accelerator
and is checked for the Q ops it becomes, bit for bit against the integer
reference, and against float."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from passes.quant.metrics import snr_db
from tests.helpers.quant import (
    SHAPE,
    conv,
    from_source,
    inputs,
    make_model,
    node,
    q_ops,
    quantized,
    run,
    run_float,
    seeded,
)
from tests.oracle import run_reference

CALIBRATION = inputs(8, seed=3)
EVALUATION = inputs(3, seed=4)
OUT = [1, 8, 8, 8]


def device_ops(graph) -> list[str]:
    """The Q ops of a graph that must run whole on the accelerator."""
    assert [s.attrs["device"] for s in graph.nodes] == ["FPGA"], [s.attrs["device"] for s in graph.nodes]
    return [n.op for n in q_ops(graph)][1:-1]


def assert_exact_and_close(model, graph, floor_db: float) -> None:
    """The CPU integer kernels are the integer reference bit for bit, and
    the output stays within ``floor_db`` of float."""
    for x in EVALUATION:
        got, want = run(graph, {"x": x}), run_reference(graph, {"x": x})
        name = graph.outputs[0].name
        np.testing.assert_array_equal(got[name], want[name])
        assert snr_db(run_float(model, {"x": x})[0], got[name]) > floor_db


def conv_then(tail, constants=None, out=OUT):
    """conv (8 channels, bias) -> ``tail`` nodes reading "c" -> "y"."""
    w = {**seeded(5, w=(8, 3, 3, 3), b=(8,)), **(constants or {})}
    return make_model([conv("x", "c", "w", "b", name="conv"), *tail], {"x": SHAPE}, {"y": out}, w)


SILU = [node("Sigmoid", ["c"], "s", name="sig"), node("Mul", ["c", "s"], "y", name="silu")]
HARDSWISH_PADDLE = [node("Add", ["c", "three"], "a", name="add3"), node("Clip", ["a", "zero", "six"], "r", name="clip"),
                    node("Div", ["r", "six"], "h", name="div6"), node("Mul", ["c", "h"], "y", name="hswish")]
SCALARS = {"three": np.float32(3), "zero": np.float32(0), "six": np.float32(6)}


@pytest.mark.parametrize("tail,weights,sources", [
    (SILU, None, ["conv", "sig", "silu"]),
    (HARDSWISH_PADDLE, SCALARS, ["conv", "add3", "clip", "div6", "hswish"]),
    ([node("HardSwish", ["c"], "y", name="hs")], None, ["conv", "hs"]),
    ([node("Relu", ["c"], "r", name="relu"), node("Tanh", ["r"], "y", name="tanh")], None, ["conv", "relu", "tanh"]),
], ids=["silu", "paddle-hardswish", "hardswish", "relu-tanh"])
def test_a_function_after_a_convolution_is_its_table(tail, weights, sources):
    model = conv_then(tail, weights)
    graph = quantized(model, CALIBRATION)
    assert device_ops(graph) == ["QConv"]
    qconv = from_source(graph, "conv")
    assert qconv.annotations["source"] == sources and len(qconv.attrs["table"]) == 256
    assert_exact_and_close(model, graph, 30)


def test_a_function_of_a_shared_value_is_one_table_and_the_value_stays():
    """x * sigmoid(x) where x also feeds a second convolution: QLut of x."""
    w = seeded(6, w=(8, 3, 3, 3), w2=(8, 8, 1, 1))
    nodes = [conv("x", "c", "w", name="conv"), *SILU[:1], node("Mul", ["c", "s"], "m", name="silu"),
             conv("c", "d", "w2", k=1, name="conv2"), node("Add", ["m", "d"], "y", name="add")]
    model = make_model(nodes, {"x": SHAPE}, {"y": OUT}, w)
    graph = quantized(model, CALIBRATION)
    assert device_ops(graph) == ["QConv", "QLut", "QConv"]  # the add is conv2's residual
    assert from_source(graph, "silu").annotations["source"] == ["sig", "silu"]
    assert_exact_and_close(model, graph, 20)  # measured 21.5 dB: three 8-bit grids on random weights


def test_prelu_per_channel_is_the_negative_multiplier():
    slopes = {"slope": np.linspace(0.0, 0.5, 8, dtype=np.float32).reshape(8, 1, 1)}
    model = conv_then([node("PRelu", ["c", "slope"], "y", name="prelu")], slopes)
    graph = quantized(model, CALIBRATION)
    assert device_ops(graph) == ["QConv"]
    qconv = from_source(graph, "prelu")
    assert len(qconv.attrs["neg_mult"]) == 8 and qconv.attrs["neg_shift"][0] == 62  # slope 0: rounds to 0
    assert_exact_and_close(model, graph, 30)


def test_standalone_prelu_and_division_by_channel_constants_are_affines():
    """After a Concat nothing folds them: depthwise 1x1 QConvs."""
    weights = {**seeded(7, w=(4, 3, 3, 3), v=(4, 3, 3, 3)), "slope": np.full((8, 1, 1), 0.2, np.float32),
               "d": np.linspace(1.0, 4.0, 8, dtype=np.float32).reshape(1, 8, 1, 1)}
    nodes = [conv("x", "a", "w", name="conv_a"), conv("x", "b", "v", name="conv_b"),
             helper.make_node("Concat", ["a", "b"], ["c"], name="cat", axis=1),
             node("PRelu", ["c", "slope"], "p", name="prelu"), node("Div", ["p", "d"], "y", name="div")]
    model = make_model(nodes, {"x": SHAPE}, {"y": OUT}, weights)
    graph = quantized(model, CALIBRATION)
    assert device_ops(graph) == ["QConv", "QConv", "QConcat", "QConv", "QConv"]
    assert from_source(graph, "prelu").attrs["group"] == 8 and from_source(graph, "div").attrs["group"] == 8
    assert_exact_and_close(model, graph, 25)  # measured 27.4 dB


@pytest.mark.parametrize("op,quantized_op", [("Sub", "QSub"), ("Max", "QMax"), ("Min", "QMin")])
def test_sub_max_min_of_two_tensors(op, quantized_op):
    w = seeded(8, w=(8, 3, 3, 3), v=(8, 3, 3, 3))
    nodes = [conv("x", "a", "w", name="conv_a"), conv("x", "b", "v", name="conv_b"),
             node(op, ["a", "b"], "y", name="op")]
    model = make_model(nodes, {"x": SHAPE}, {"y": OUT}, w)
    graph = quantized(model, CALIBRATION)
    assert device_ops(graph) == ["QConv", "QConv", quantized_op]
    assert_exact_and_close(model, graph, 30)


def test_element_wise_op_with_a_full_size_constant_operand():
    w = seeded(9, w=(8, 3, 3, 3), k=(1, 8, 8, 8))
    model = make_model([conv("x", "c", "w", name="conv"), node("Max", ["c", "k"], "y", name="max")],
                       {"x": SHAPE}, {"y": OUT}, w)
    graph = quantized(model, CALIBRATION)
    assert device_ops(graph) == ["QConv", "QMax"]
    assert from_source(graph, "max").inputs[1].is_constant
    assert_exact_and_close(model, graph, 30)


@pytest.mark.parametrize("kernel,stride,pads,group", [(2, 2, 0, 1), (4, 2, 1, 1), (3, 2, 1, 8), (4, 4, 0, 2)],
                         ids=["k2s2", "k4s2p1", "k3s2p1-depthwise", "k4s4-grouped"])
def test_conv_transpose_with_bn_and_relu(kernel, stride, pads, group):
    w = seeded(10, w=(8, 3, 3, 3))
    w["t"] = seeded(11, t=(8, 8 // group, kernel, kernel))["t"]
    out = (8 - 1) * stride - 2 * pads + kernel
    nodes = [conv("x", "c", "w", name="conv"),
             helper.make_node("ConvTranspose", ["c", "t"], ["u"], name="deconv", kernel_shape=[kernel, kernel],
                              strides=[stride, stride], pads=[pads] * 4, group=group),
             node("Relu", ["u"], "y", name="relu")]
    model = make_model(nodes, {"x": SHAPE}, {"y": [1, 8, out, out]}, w)
    graph = quantized(model, CALIBRATION)
    assert device_ops(graph) == ["QConv", "QConvTranspose"]
    deconv = from_source(graph, "deconv")
    assert deconv.attrs["lo"] == deconv.attrs["out_zero"] and deconv.inputs[1].const.shape == (8, 8 // group,
                                                                                              kernel, kernel)
    assert_exact_and_close(model, graph, 30)
