"""The layout pass (passes/layout.py): Transposes sink through the ops that do
not care about layout and cancel, on small channels-last graphs written as
ONNX; each graph computes what onnxruntime computes for the model, and the
Transposes left are the ones asserted."""
from __future__ import annotations

import numpy as np
import pytest

from compiler.frontend import import_onnx
from compiler.pipeline import SIMPLIFY
from compiler.zoo.builder import OnnxBuilder
from compiler.zoo.families import nhwc_resnet
from ir.graph import Graph
from passes.layout import layout
from tests.helpers.graphs import apply, ops, run_graph

ort = pytest.importorskip("onnxruntime")

NCHW, NHWC = [0, 3, 1, 2], [0, 2, 3, 1]  # Transpose to channels-first, to channels-last


def to_nhwc(b: OnnxBuilder, x: str) -> str:
    return b.node("Transpose", [x], perm=NHWC)


def to_nchw(b: OnnxBuilder, x: str) -> str:
    return b.node("Transpose", [x], perm=NCHW)


def checked(b: OnnxBuilder, *outputs: str, **shapes: list[int]) -> Graph:
    """The model's graph after the layout pass, its outputs (names, shapes,
    values) those onnxruntime computes for the model."""
    model = b.model(list(outputs))
    rng = np.random.default_rng(0)
    feeds = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = dict(zip(outputs, session.run(list(outputs), feeds)))
    graph = apply(layout, import_onnx(model))
    got = run_graph(graph, feeds)
    assert [v.name for v in graph.outputs] == list(outputs)
    for name in outputs:
        assert got[name].shape == want[name].shape, name
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5, err_msg=name)
    return graph


def transposes(graph: Graph) -> list[list[int]]:
    return [list(n.attrs["perm"]) for n in graph.nodes if n.op == "Transpose"]


def producer_op(graph: Graph, output: str) -> str:
    return next(v for v in graph.outputs if v.name == output).producer.op


def test_transpose_pairs_cancel_and_compose():
    b = OnnxBuilder("pairs")
    x = b.input("x", [2, 3, 4, 5])
    back = b.node("Relu", [to_nchw(b, to_nhwc(b, x))], outputs=["back"])
    composed = b.node("Transpose", [b.node("Transpose", [x], perm=[1, 0, 2, 3])], perm=[0, 1, 3, 2],
                      outputs=["composed"])
    graph = checked(b, back, composed, x=[2, 3, 4, 5])
    assert sorted(ops(graph)) == ["Relu", "Transpose"] and transposes(graph) == [[1, 0, 3, 2]]


def test_elementwise_ops_take_per_channel_constants_on_the_last_axis_and_scalars():
    """A decomposed BatchNorm on NHWC: constants [C], [1, 1, 1, C], a scalar,
    a full-size one and a second activation; all of it runs channels-first."""
    b = OnnxBuilder("elementwise")
    x, y = b.input("x", [1, 4, 5, 6]), b.input("y", [1, 4, 5, 6])
    rng = np.random.default_rng(1)
    t = b.node("Sub", [to_nhwc(b, x), b.const_f32(rng.standard_normal(4))])
    t = b.node("Mul", [t, b.const_f32(rng.standard_normal((1, 1, 1, 4)))])
    t = b.node("Div", [t, b.const_f32(2.0)])
    t = b.node("Add", [b.const_f32(rng.standard_normal((5, 6, 4))), t])
    t = b.node("PRelu", [t, b.const_f32(rng.uniform(0.1, 0.3, 4))])
    t = b.node("Max", [t, to_nhwc(b, y), b.const_f32(rng.standard_normal((1, 6, 1)))])
    graph = checked(b, to_nchw(b, t), x=[1, 4, 5, 6], y=[1, 4, 5, 6])
    assert "Transpose" not in ops(graph)
    mul = next(n for n in graph.nodes if n.op == "Mul")
    assert mul.inputs[1].type.shape == (1, 4, 1, 1)


@pytest.mark.parametrize("op, attrs, extra", [
    ("Relu", {}, []), ("Sigmoid", {}, []), ("LeakyRelu", {"alpha": 0.2}, []), ("HardSwish", {}, []),
    ("Clip", {}, [0.0, 6.0]), ("Cast", {"to": 1}, []),
])
def test_unary_ops_run_in_the_convs_layout(op, attrs, extra):
    b = OnnxBuilder("unary")
    x = b.input("x", [1, 3, 4, 4])
    y = b.node(op, [to_nhwc(b, x), *[b.constant(v) for v in extra]], **attrs)
    graph = checked(b, to_nchw(b, b.node("Neg", [y])), x=[1, 3, 4, 4])
    assert "Transpose" not in ops(graph)


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect"])
def test_pad_moves_with_its_pads_permuted(mode):
    b = OnnxBuilder("pad")
    x = b.input("x", [1, 3, 5, 6])
    y = b.node("Pad", [to_nhwc(b, x), b.const_i64([0, 1, 2, 0, 0, 2, 1, 0])], mode=mode)
    graph = checked(b, to_nchw(b, y), x=[1, 3, 5, 6])
    assert ops(graph) == ["Pad"]
    assert graph.nodes[0].inputs[1].const.tolist() == [0, 0, 1, 2, 0, 0, 2, 1]


def test_concat_axis_follows_the_layout():
    b = OnnxBuilder("concat")
    x, y = b.input("x", [1, 3, 4, 4]), b.input("y", [1, 2, 4, 4])
    z = b.node("Concat", [to_nhwc(b, b.node("Relu", [x])), to_nhwc(b, y)], axis=3)
    graph = checked(b, to_nchw(b, z), x=[1, 3, 4, 4], y=[1, 2, 4, 4])
    assert ops(graph) == ["Relu", "Concat"] and graph.nodes[1].attrs["axis"] == 1


def test_resize_scales_follow_the_layout():
    b = OnnxBuilder("resize")
    x = b.input("x", [1, 3, 4, 5])
    y = b.node("Resize", [to_nhwc(b, x), "", b.const_f32([1.0, 2.0, 3.0, 1.0])], mode="nearest")
    graph = checked(b, to_nchw(b, y), x=[1, 3, 4, 5])
    assert ops(graph) == ["Resize"] and graph.nodes[0].inputs[2].const.tolist() == [1.0, 1.0, 2.0, 3.0]


def test_pooling_takes_a_transpose_that_keeps_batch_and_channels():
    """Swapping H and W: the window's attributes swap; moving C: the pool
    cannot take it, and the Transposes stay."""
    b = OnnxBuilder("pool")
    x = b.input("x", [1, 2, 6, 9])
    swapped = b.node("Transpose", [x], perm=[0, 1, 3, 2])
    pooled = b.node("MaxPool", [swapped], kernel_shape=[3, 2], strides=[3, 1], pads=[0, 1, 0, 0])
    pooled = b.node("Transpose", [b.node("GlobalAveragePool", [pooled])], perm=[0, 1, 3, 2], outputs=["pooled"])
    moved = b.node("AveragePool", [b.node("Transpose", [x], perm=[0, 2, 1, 3])], kernel_shape=[2, 2],
                   outputs=["moved"])
    graph = checked(b, pooled, moved, x=[1, 2, 6, 9])
    pool = next(n for n in graph.nodes if n.op == "MaxPool")
    assert pool.inputs[0] is graph.inputs[0]
    assert (pool.attrs["kernel_shape"], pool.attrs["strides"], pool.attrs["pads"]) == ([2, 3], [1, 3], [1, 0, 0, 0])
    assert transposes(graph) == [[0, 2, 1, 3]]


def test_reductions_remap_axes_and_transpose_what_is_left():
    """tf2onnx's global pooling (ReduceMean over H and W of NHWC) needs no
    Transpose after it; a reduction over H alone leaves one on [N, W, C]."""
    b = OnnxBuilder("reduce", opset=13)
    x = b.input("x", [2, 3, 4, 5])
    mean = b.node("ReduceMean", [to_nhwc(b, x)], axes=[1, 2], keepdims=0, outputs=["mean"])
    rows = b.node("ReduceMax", [to_nhwc(b, b.node("Relu", [x]))], axes=[1], keepdims=0, outputs=["rows"])
    kept = b.node("ReduceSum", [to_nhwc(b, b.node("Neg", [x])), b.const_i64([-1])], keepdims=1)
    graph = checked(b, mean, rows, to_nchw(b, kept), x=[2, 3, 4, 5])
    assert transposes(graph) == [[0, 2, 1]] and producer_op(graph, "rows") == "Transpose"
    assert producer_op(graph, "mean") == "ReduceMean"


def test_a_transpose_of_axes_of_size_one_is_a_view():
    """tf2onnx's ReduceMean with keepdims then Squeeze: after the pooled
    tensor's Transpose moves only axes of size 1, a Reshape."""
    b = OnnxBuilder("squeeze", opset=13)
    x = b.input("x", [2, 3, 4, 5])
    y = b.node("ReduceMean", [to_nhwc(b, b.conv(x, 3, 6, 1))], axes=[1, 2], keepdims=1)
    graph = checked(b, b.node("Squeeze", [y, b.const_i64([1, 2])]), x=[2, 3, 4, 5])
    assert ops(graph) == ["Conv", "ReduceMean", "Reshape", "Squeeze"]
    assert graph.nodes[2].outputs[0].type.shape == (2, 1, 1, 6)


def test_a_transpose_with_several_consumers_moves_below_each_when_all_take_it():
    b = OnnxBuilder("shared")
    x = b.input("x", [1, 3, 4, 4])
    t = to_nhwc(b, x)
    a = to_nchw(b, b.node("Relu", [t]))
    c = to_nchw(b, b.node("Mul", [t, b.const_f32(np.arange(3.0))]))
    graph = checked(b, a, c, x=[1, 3, 4, 4])
    assert "Transpose" not in ops(graph)


def test_a_transpose_is_not_copied_below_consumers_that_lead_to_no_transpose():
    """Both consumers could take it, but their paths end at graph outputs:
    a copy below each would stay, so the one Transpose stays where it is."""
    b = OnnxBuilder("copies")
    x = b.input("x", [1, 3, 4, 4])
    t = to_nhwc(b, b.conv(x, 3, 3, 1))
    graph = checked(b, b.node("Relu", [t], outputs=["a"]), b.node("Sigmoid", [t], outputs=["c"]), x=[1, 3, 4, 4])
    assert transposes(graph) == [NHWC]
    assert producer_op(graph, "a") == "Relu" and producer_op(graph, "c") == "Sigmoid"


def test_a_transpose_is_copied_below_consumers_whose_paths_end_where_it_vanishes():
    """One path meets the next Conv's Transpose, the other a global mean
    (tf2onnx's ReduceMean over H and W) that leaves C in place."""
    b = OnnxBuilder("head", opset=13)
    x = b.input("x", [1, 3, 4, 4])
    t = to_nhwc(b, b.conv(x, 3, 3, 1))
    a = b.conv(to_nchw(b, b.node("Pad", [t, b.const_i64([0, 1, 1, 0, 0, 1, 1, 0])])), 3, 2, 3, pad=0)
    mean = b.node("ReduceMean", [b.node("Relu", [t])], axes=[1, 2], keepdims=0)
    graph = checked(b, a, b.matmul_weight(mean, 3, 2), x=[1, 3, 4, 4])
    assert "Transpose" not in ops(graph)


def test_a_layernorm_over_the_channels_last_axis_runs_between_the_convs_without_transposes():
    """x - mean(x) and its variance: the Sub and the Div read the Transpose
    and a value computed from it, which gets its Transpose a step later."""
    b = OnnxBuilder("layernorm", opset=13)
    x = b.input("x", [1, 4, 3, 5])
    t = to_nhwc(b, b.conv(x, 4, 6, 1))
    centred = b.node("Sub", [t, b.node("ReduceMean", [t], axes=[-1], keepdims=1)])
    variance = b.node("ReduceMean", [b.node("Pow", [centred, b.const_f32(2.0)])], axes=[-1], keepdims=1)
    y = b.node("Div", [centred, b.node("Sqrt", [b.node("Add", [variance, b.const_f32(1e-5)])])])
    y = b.node("Add", [b.node("Mul", [y, b.const_f32(np.linspace(0.5, 1.5, 6))]), b.const_f32(np.zeros(6))])
    graph = checked(b, b.conv(to_nchw(b, y), 6, 2, 1), x=[1, 4, 3, 5])
    assert "Transpose" not in ops(graph)
    assert [n.inputs[1].const.tolist() for n in graph.nodes if n.op == "ReduceMean"] == [[1], [1]]


def test_a_transpose_stays_where_one_consumer_cannot_take_it():
    """One consumer is a Softmax over the channels-last axis: the shared
    Transpose stays, and the Relu beside it does not move (that would add a
    Transpose without removing one)."""
    b = OnnxBuilder("blocked")
    x = b.input("x", [1, 3, 4, 4])
    t = to_nhwc(b, x)
    a = to_nchw(b, b.node("Relu", [t]))
    s = b.node("Softmax", [t], axis=-1, outputs=["s"])
    graph = checked(b, a, s, x=[1, 3, 4, 4])
    assert transposes(graph) == [NHWC, NCHW]
    relu = next(n for n in graph.nodes if n.op == "Relu")
    assert relu.inputs[0].producer.op == "Transpose"


def test_residual_branches_meet_in_the_convs_layout():
    """Two branches of Transposes reach an Add at different depths; the
    Add waits for both, then the Transpose after it cancels."""
    b = OnnxBuilder("residual")
    x = b.input("x", [1, 4, 6, 6])
    shortcut = b.node("Relu", [to_nhwc(b, b.conv(x, 4, 4, 3))])
    branch = to_nhwc(b, b.conv(to_nchw(b, shortcut), 4, 4, 3))
    branch = b.node("Add", [b.node("Mul", [branch, b.const_f32(np.full(4, 0.5))]), b.const_f32(np.ones(4))])
    y = b.node("Relu", [b.node("Add", [shortcut, branch])])
    graph = checked(b, b.conv(to_nchw(b, y), 4, 2, 1), x=[1, 4, 6, 6])
    assert "Transpose" not in ops(graph)


def test_graph_outputs_keep_their_declared_layout():
    """The Relu runs channels-first and a Transpose makes the output "y"
    channels-last again; a Transpose that is itself an output stays."""
    b = OnnxBuilder("outputs")
    x = b.input("x", [1, 3, 4, 5])
    y = b.node("Relu", [to_nhwc(b, b.conv(x, 3, 3, 1))], outputs=["y"])
    t = b.node("Transpose", [x], perm=NHWC, outputs=["t"])
    z = b.node("Sigmoid", [t], outputs=["z"])
    graph = checked(b, y, t, z, x=[1, 3, 4, 5])
    assert producer_op(graph, "y") == "Transpose" and graph.outputs[0].type.shape == (1, 4, 5, 3)
    assert next(n for n in graph.nodes if n.op == "Relu").inputs[0].type.shape == (1, 3, 4, 5)
    assert producer_op(graph, "t") == "Transpose" and producer_op(graph, "z") == "Sigmoid"


def test_a_channels_last_inputs_preprocessing_runs_in_the_convs_layout():
    """Edge Pad and mean subtraction between an NHWC input and the
    Transpose before the stem Conv: the Transpose moves onto the input."""
    b = OnnxBuilder("stem")
    x = b.input("x", [1, 8, 8, 3])
    y = b.node("Pad", [x, b.const_i64([0, 1, 1, 0, 0, 1, 1, 0])], mode="edge")
    y = b.node("Sub", [y, b.const_f32([0.5, 0.4, 0.3])])
    graph = checked(b, b.conv(to_nchw(b, y), 3, 4, 3, pad=0), x=[1, 8, 8, 3])
    assert ops(graph) == ["Transpose", "Pad", "Sub", "Conv"]
    assert graph.nodes[1].inputs[1].const.tolist() == [0, 0, 1, 1, 0, 0, 1, 1]
    assert graph.nodes[2].inputs[1].type.shape == (1, 3, 1, 1)


def test_the_nhwc_resnet_simplifies_to_its_nchw_twin():
    """After SIMPLIFY the family model is Convs (BatchNorms folded in), pools
    and residual Adds in N,C,H,W: one Transpose left, on the input."""
    graph = apply(SIMPLIFY, import_onnx(nhwc_resnet()))
    assert transposes(graph) == [NCHW] and graph.nodes[0].inputs[0] is graph.inputs[0]
    assert not {"Mul", "Sub"} & set(ops(graph)) and ops(graph).count("Add") == 3
