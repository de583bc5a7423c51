"""Canonicalisation and folding passes: the graph each produces, and unchanged numerics."""
import numpy as np
import pytest

from ir import GraphBuilder
from passes.canonicalize_linear import canonicalize_linear
from passes.canonicalize_mean import canonicalize_mean
from passes.dce import eliminate_dead_code
from passes.fold_affine import fold_affine
from passes.fold_batchnorm import fold_batchnorm
from passes.fold_constants import fold_constants
from passes.fold_pad import fold_pad
from passes.prune_conv_taps import prune_conv_taps
from passes.remove_noops import remove_noops
from passes.simplify_inference import simplify_inference
from tests.helpers.graphs import apply, assert_same_numerics, ops

RNG = np.random.default_rng(0)


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def bn_params(b, channels):
    return [b.const(a) for a in (RNG.uniform(0.5, 1.5, channels), randn(channels), randn(channels),
                                 RNG.uniform(0.5, 1.5, channels))]


# ---------------------------------------------------------------- fold_constants / dce
def test_fold_constants_folds_shape_subgraphs():
    b = GraphBuilder()
    x = b.input("x", [2, 3, 4])
    shape = b.Shape(b.Relu(x))
    dims = b.Gather(shape, b.const(np.array([0, 2], np.int64)), axis=0)
    target = b.Concat(dims, b.const(np.array([3], np.int64)), axis=0)
    g = b.build(b.Reshape(x, target, name="reshape"))
    g = assert_same_numerics(fold_constants, g)
    g = apply(eliminate_dead_code, g)
    assert ops(g) == ["Reshape"]
    assert g.node("reshape").inputs[1].const.tolist() == [2, 4, 3]


def test_dead_code_goes_and_outputs_stay():
    b = GraphBuilder()
    x = b.input("x", [4])
    b.Exp(b.Relu(x))
    g = b.build(b.Neg(x, name="kept"))
    g = apply(eliminate_dead_code, g)
    assert ops(g) == ["Neg"]


# ---------------------------------------------------------------- remove_noops
def test_noops_are_removed_and_output_names_kept():
    b = GraphBuilder()
    x = b.input("x", [2, 3])
    y = b.Identity(b.Relu(x, name="relu"))
    y = b.Reshape(y, b.const(np.array([2, 3], np.int64)))
    y = b.Transpose(y, perm=[0, 1])
    y = b.Cast(y, to="float32")
    y = b.Pad(y, b.const(np.zeros(4, np.int64)))
    y = b.Dropout(y, name="last")
    g = assert_same_numerics(remove_noops, b.build(y))
    assert ops(g) == ["Relu"]
    assert [v.name for v in g.outputs] == ["last"]


def test_an_identity_from_input_to_output_stays():
    b = GraphBuilder()
    x = b.input("x", [2])
    g = apply(remove_noops, b.build(b.Identity(x, name="y")))
    assert ops(g) == ["Identity"] and g.outputs[0].name == "y"


def test_real_reshapes_and_transposes_stay():
    b = GraphBuilder()
    x = b.input("x", [2, 3])
    y = b.Transpose(b.Reshape(x, b.const(np.array([3, 2], np.int64))), perm=[1, 0])
    g = apply(remove_noops, b.build(y))
    assert ops(g) == ["Reshape", "Transpose"]


# ---------------------------------------------------------------- fold_batchnorm
@pytest.mark.parametrize("group, bias", [(1, True), (1, False), (2, True)])
def test_batchnorm_folds_into_conv(group, bias):
    b = GraphBuilder()
    x = b.input("x", [2, 4, 6, 6])
    args = [b.const(randn(6, 4 // group, 3, 3))] + ([b.const(randn(6))] if bias else [])
    y = b.Conv(x, *args, pads=[1, 1, 1, 1], group=group, name="conv")
    g = assert_same_numerics(fold_batchnorm, b.build(b.BatchNormalization(y, *bn_params(b, 6), name="bn")))
    assert ops(g) == ["Conv"]
    assert g.outputs[0].name == "bn" and len(g.node("conv").inputs) == 3


@pytest.mark.parametrize("group", [1, 2])
def test_batchnorm_folds_into_conv_transpose(group):
    b = GraphBuilder()
    x = b.input("x", [1, 4, 5, 5])
    y = b.ConvTranspose(x, b.const(randn(4, 6 // group, 3, 3)), b.const(randn(6)), strides=[2, 2], group=group)
    g = assert_same_numerics(fold_batchnorm, b.build(b.BatchNormalization(y, *bn_params(b, 6))))
    assert ops(g) == ["ConvTranspose"]


@pytest.mark.parametrize("trans_b, c_shape", [(0, None), (1, (5,)), (1, (3, 5)), (0, ())])
def test_batchnorm_folds_into_gemm(trans_b, c_shape):
    b = GraphBuilder()
    x = b.input("x", [3, 4])
    w = b.const(randn(5, 4) if trans_b else randn(4, 5))
    args = [] if c_shape is None else [b.const(randn(*c_shape))]
    y = b.Gemm(x, w, *args, transB=trans_b, alpha=0.5, beta=2.0)
    g = assert_same_numerics(fold_batchnorm, b.build(b.BatchNormalization(y, *bn_params(b, 5))))
    assert ops(g) == ["Gemm"]


def test_batchnorm_stays_when_the_conv_output_has_other_users():
    b = GraphBuilder()
    x = b.input("x", [1, 2, 4, 4])
    y = b.Conv(x, b.const(randn(2, 2, 1, 1)))
    g = b.build(b.Add(b.BatchNormalization(y, *bn_params(b, 2)), y))
    assert ops(apply(fold_batchnorm, g)) == ["Conv", "BatchNormalization", "Add"]


# ---------------------------------------------------------------- fold_affine
def test_per_channel_mul_and_add_fold_into_conv():
    b = GraphBuilder()
    x = b.input("x", [1, 3, 5, 5])
    y = b.Conv(x, b.const(randn(4, 3, 3, 3)))
    y = b.Mul(b.const(randn(4, 1, 1)), y)
    y = b.Sub(b.Add(y, b.const(randn(1, 4, 1, 1))), b.const(randn(4, 1, 1)), name="out")
    g = assert_same_numerics(fold_affine, b.build(y))
    assert ops(g) == ["Conv"] and g.outputs[0].name == "out"


def test_per_channel_mul_folds_into_batchnorm():
    b = GraphBuilder()
    x = b.input("x", [1, 3, 4, 4])
    y = b.Add(b.Mul(b.BatchNormalization(x, *bn_params(b, 3)), b.const(randn(3, 1, 1))), b.const(randn(3, 1, 1)))
    g = assert_same_numerics(fold_affine, b.build(y))
    assert ops(g) == ["BatchNormalization"]


@pytest.mark.parametrize("const_shape", [(5, 5), (1, 1, 5, 1), (2, 1, 1, 1)])
def test_non_channel_constants_do_not_fold(const_shape):
    b = GraphBuilder()
    x = b.input("x", [2, 4, 5, 5])
    y = b.Mul(b.Conv(x, b.const(randn(4, 4, 1, 1))), b.const(randn(*const_shape)))
    assert ops(apply(fold_affine, b.build(y))) == ["Conv", "Mul"]


def test_division_by_channel_constants_folds_into_conv_but_not_by_zero():
    b = GraphBuilder()
    x = b.input("x", [1, 3, 5, 5])
    y = b.Div(b.Conv(x, b.const(randn(4, 3, 3, 3))), b.const(np.float32([1, 2, 4, 8]).reshape(1, 4, 1, 1)))
    assert ops(assert_same_numerics(fold_affine, b.build(y))) == ["Conv"]
    b = GraphBuilder()
    y = b.Div(b.Conv(b.input("x", [1, 3, 5, 5]), b.const(randn(4, 3, 3, 3))), b.const(np.float32([1, 0, 4, 8])
                                                                                        .reshape(1, 4, 1, 1)))
    assert ops(apply(fold_affine, b.build(y))) == ["Conv", "Div"]


def test_constant_minus_conv_does_not_fold():
    b = GraphBuilder()
    x = b.input("x", [1, 2, 3, 3])
    y = b.Sub(b.const(randn(2, 1, 1)), b.Conv(x, b.const(randn(2, 2, 1, 1))))
    assert ops(apply(fold_affine, b.build(y))) == ["Conv", "Sub"]


# ---------------------------------------------------------------- fold_pad
def test_zero_pad_folds_into_conv():
    b = GraphBuilder()
    x = b.input("x", [1, 2, 5, 5])
    p = b.Pad(x, b.const(np.array([0, 0, 1, 2, 0, 0, 3, 0], np.int64)))
    y = b.Conv(p, b.const(randn(3, 2, 3, 3)), pads=[1, 1, 1, 1], name="conv")
    g = assert_same_numerics(fold_pad, b.build(y))
    assert ops(g) == ["Conv"] and g.node("conv").attrs["pads"] == [2, 3, 4, 1]


@pytest.mark.parametrize("pads, mode, value", [
    ([0, 1, 0, 0, 0, 1, 0, 0], "constant", 0.0),   # pads channels
    ([0, 0, 1, 1, 0, 0, 1, 1], "reflect", 0.0),
    ([0, 0, 1, 1, 0, 0, 1, 1], "constant", 1.0),
])
def test_other_pads_stay(pads, mode, value):
    b = GraphBuilder()
    x = b.input("x", [1, 2, 5, 5])
    p = b.Pad(x, b.const(np.array(pads, np.int64)), b.const(np.array(value, np.float32)), mode=mode)
    g = apply(fold_pad, b.build(b.Conv(p, b.const(randn(3, p.type.shape[1], 3, 3)))))
    assert ops(g) == ["Pad", "Conv"]


# ---------------------------------------------------------------- prune_conv_taps
@pytest.mark.parametrize("shape, kernel, attrs, kept, pads", [
    ([1, 8, 1, 1], 3, dict(pads=[1, 1, 1, 1]), [1, 1], [0, 0, 0, 0]),  # ResNet's last stage at 32x32: the centre
    ([1, 4, 2, 2], 3, dict(pads=[1, 1, 1, 1], strides=[2, 2]), [2, 2], [0, 0, 1, 1]),  # one output: rows 0-1 live
    ([1, 4, 2, 2], 5, dict(pads=[2, 2, 2, 2]), [3, 3], [1, 1, 1, 1]),
    ([1, 4, 1, 6], 3, dict(pads=[1, 1, 1, 1]), [1, 3], [0, 1, 0, 1]),  # one axis only
    ([1, 4, 1, 1], 3, dict(pads=[2, 2, 2, 2], dilations=[2, 2]), [1, 1], [0, 0, 0, 0]),
    ([1, 4, 1, 1], 3, dict(pads=[3, 3, 3, 3], dilations=[2, 2]), [1, 1], [1, 1, 1, 1]),  # 3 outputs, one live
    ([1, 4, 1], 3, dict(pads=[1, 1]), [1], [0, 0]),  # 1-D
])
def test_taps_that_read_only_padding_are_cropped(shape, kernel, attrs, kept, pads):
    b = GraphBuilder()
    x = b.input("x", shape)
    w = randn(6, shape[1], *[kernel] * (len(shape) - 2))
    y = b.Relu(b.Conv(x, b.const(w), b.const(randn(6)), name="conv", **attrs))
    g = assert_same_numerics(prune_conv_taps, b.build(y))
    conv = g.node("conv")
    assert conv.attrs["kernel_shape"] == kept and conv.attrs["pads"] == pads
    assert list(conv.inputs[1].const.shape[2:]) == kept


@pytest.mark.parametrize("shape, attrs", [
    ([1, 4, 2, 2], dict(pads=[1, 1, 1, 1])),  # every tap meets data at some output
    ([1, 4, 7, 7], dict(pads=[1, 1, 1, 1])),
    ([1, 4, 3, 3], dict(pads=[1, 1, 1, 1], dilations=[2, 2])),  # the centre alone would need pads of -1
])
def test_convs_whose_taps_all_read_data_stay(shape, attrs):
    b = GraphBuilder()
    x = b.input("x", shape)
    b_conv = b.Conv(x, b.const(randn(3, shape[1], 3, 3)), name="conv", **attrs)
    g = assert_same_numerics(prune_conv_taps, b.build(b_conv))
    assert g.node("conv").attrs["kernel_shape"] == [3, 3]


def test_taps_are_pruned_wherever_a_float_convolution_runs_on_the_host():
    """OPTIMIZE (backend), Run_th's reference and the device pipeline's host
    layers crop the 3x3 kernel of a 1x1 map; the accelerator's layers keep
    it as imported (the quantizer, the tiling and the binary see those)."""
    from compiler.compile import fused_reference
    from compiler.pipeline import optimize, partition_graph
    from ir import walk

    def graph():
        b = GraphBuilder()
        y = b.Conv(b.input("x", [1, 8, 1, 1]), b.const(randn(8, 8, 3, 3)), b.const(randn(8)), pads=[1, 1, 1, 1],
                   name="conv")
        return b.build(b.Relu(y))

    def kernels(g):
        return [n.attrs["kernel_shape"] for _, n in walk(g) if n.op == "Conv"]

    assert kernels(optimize(graph())) == [[1, 1]]
    assert kernels(fused_reference(graph())) == [[1, 1]]
    assert kernels(partition_graph(graph())) == [[3, 3]]
    assert kernels(partition_graph(graph(), options={"partition.fallback": "CPU"})) == [[1, 1]]


def test_every_api_gives_the_same_bits_where_taps_are_pruned(tmp_path):
    """A ResNet's last stage at 32x32 (a stride-2 3x3 of a 2x2 map, then a
    3x3 of the 1x1 map): compiler.backend, FWDNXT Run_th and the Simulator
    API's float run and IE's CPU plugin agree bit for bit."""
    import onnx

    from compiler import backend
    from compiler.simulator.model import SimulatedModel
    from compiler.zoo.builder import OnnxBuilder
    from runtime import FWDNXT
    from runtime.inference_engine import IENetwork, IEPlugin

    b = OnnxBuilder("last_stage", seed=2)
    y = b.node("Relu", [b.conv(b.input("x", [1, 64, 2, 2]), 64, 96, 3, stride=2)])
    model = b.model([b.node("Relu", [b.conv(y, 96, 96, 3)])])
    path = str(tmp_path / "m.onnx")
    onnx.save(model, path)
    x = randn(1, 64, 2, 2)
    fw = FWDNXT()
    count = fw.Compile("2x2x64", path, str(tmp_path / "m.bin"), samples=[randn(1, 64, 2, 2) for _ in range(2)])
    fw.Init(str(tmp_path / "m.bin"), "")
    run_th = np.zeros(count, np.float32)
    fw.Run_th(x, run_th)
    (ours,) = backend.prepare(model).run({"x": x})
    np.testing.assert_array_equal(ours.reshape(-1), run_th)
    np.testing.assert_array_equal(SimulatedModel(path, None, mode="fake").run({"x": x})[0].reshape(-1), run_th)
    net = IENetwork(model=path)
    (ie,) = IEPlugin(device="CPU").load(net).infer({"x": x}).values()
    np.testing.assert_array_equal(ie.reshape(-1), run_th)


# ---------------------------------------------------------------- canonicalize_linear
def test_matmul_with_constant_weights_and_bias_becomes_gemm():
    b = GraphBuilder()
    x = b.input("x", [3, 4])
    y = b.Add(b.MatMul(x, b.const(randn(4, 6))), b.const(randn(6)), name="y")
    g = assert_same_numerics(canonicalize_linear, b.build(y))
    (gemm,) = g.nodes
    assert gemm.op == "Gemm" and gemm.attrs["transB"] == 1 and gemm.inputs[1].const.shape == (6, 4)
    assert gemm.inputs[2].const.shape == (6,) and g.outputs[0].name == "y"


def test_batched_matmul_is_reshaped_around_one_gemm():
    b = GraphBuilder()
    x = b.input("x", [2, 5, 4])
    g = assert_same_numerics(canonicalize_linear, b.build(b.MatMul(x, b.const(randn(4, 3)), name="y")))
    assert ops(g) == ["Reshape", "Gemm", "Reshape"] and g.outputs[0].type.shape == (2, 5, 3)


@pytest.mark.parametrize("trans_b, c_shape", [(0, (6,)), (1, ()), (0, (1, 6)), (0, None)])
def test_gemm_is_normalised(trans_b, c_shape):
    b = GraphBuilder()
    x = b.input("x", [3, 4])
    args = [] if c_shape is None else [b.const(randn(*c_shape))]
    w = randn(6, 4) if trans_b else randn(4, 6)
    g = assert_same_numerics(canonicalize_linear, b.build(b.Gemm(x, b.const(w), *args, transB=trans_b, alpha=2.0,
                                                                 beta=0.5)))
    (gemm,) = g.nodes
    assert (gemm.attrs["transB"], gemm.attrs["alpha"], gemm.attrs["beta"]) == (1, 1.0, 1.0)


def test_matmul_with_runtime_weights_stays():
    b = GraphBuilder()
    g = apply(canonicalize_linear, b.build(b.MatMul(b.input("a", [2, 3]), b.input("b", [3, 4]))))
    assert ops(g) == ["MatMul"]


# ---------------------------------------------------------------- simplify_inference
def test_unfoldable_batchnorm_becomes_mul_and_add():
    b = GraphBuilder()
    x = b.input("x", [2, 3, 4, 4])
    y = b.BatchNormalization(b.Relu(x), *bn_params(b, 3), name="bn")
    g = assert_same_numerics(simplify_inference, b.build(y))
    assert ops(g) == ["Relu", "Mul", "Add"] and g.outputs[0].name == "bn"
    assert g.nodes[1].inputs[1].const.shape == (3, 1, 1)


# ---------------------------------------------------------------- canonicalize_sum
def test_sum_becomes_a_chain_of_adds():
    from passes.canonicalize_sum import canonicalize_sum

    b = GraphBuilder()
    x, y, z = b.input("x", [1, 4, 3, 3]), b.input("y", [1, 4, 3, 3]), b.input("z", [1, 4, 1, 1])
    two = b.Sum(x, y, name="two")
    three = b.Sum(two, y, z, name="three")
    one = b.Sum(three, name="one")
    g = assert_same_numerics(canonicalize_sum, b.build(one))
    assert ops(g) == ["Add", "Add", "Add", "Identity"]
    assert [v.name for v in g.outputs] == ["one"] and g.nodes[2].name == "three"


# ---------------------------------------------------------------- canonicalize_mean
@pytest.mark.parametrize("axes,keepdims,expect", [([2, 3], 1, ["GlobalAveragePool"]),
                                                  ([-1, -2], 0, ["GlobalAveragePool", "Reshape"]),
                                                  ([1, 2, 3], 1, ["Reshape", "GlobalAveragePool", "Reshape"]),
                                                  ([3], 0, ["Reshape", "GlobalAveragePool", "Reshape"]),
                                                  ([1], 1, ["Conv"]), ([1], 0, ["Conv", "Reshape"]),
                                                  ([0, 1], 1, ["ReduceMean"]), ([1, 3], 1, ["ReduceMean"])])
def test_means_become_global_average_pools_or_a_channel_sum(axes, keepdims, expect):
    """Spatial means are global pools; other trailing axes the pool of a
    [N, rows, 1, cols] view (a LayerNorm's over NHWC channels); a mean over
    the channels of N,C,H,W a 1x1 conv to one channel; the rest stay."""
    b = GraphBuilder()
    x = b.input("x", [2, 3, 5, 6])
    y = b.ReduceMean(x, b.const(np.array(axes, np.int64)), keepdims=keepdims, name="mean")
    g = assert_same_numerics(canonicalize_mean, b.build(y), rtol=1e-6, atol=1e-6)
    assert ops(g) == expect and g.outputs[0].name == "mean"
