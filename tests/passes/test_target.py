"""Targets: the accelerator's support table, the CPU target, options and placement costs."""
import numpy as np
import pytest

from ir import Graph, GraphBuilder, Node
from ir.registry import Pattern
from passes.infra import PassContext, registered_options
from passes.placement_costs import (
    CPU_BYTES_PER_SECOND,
    CPU_ELEMENT_BYTES,
    CPU_MACS_PER_SECOND,
    DEVICE_EFFICIENCY,
    TRANSFER_LATENCY_S,
    cpu_time,
    device_cycles,
    device_time,
    macs,
    moved_elements,
    transfer_time,
)
from passes.target import (
    ACCELERATOR,
    HOST,
    TargetError,
    accelerator,
    accelerator_ops,
    cpu,
    make_target,
)
from runtime.hardware import HardwareConfig
from runtime.kernels import run_kernel
from runtime.kernels.resize import COORDINATE_MODES, NEAREST_MODES

X = [1, 4, 8, 8]
rng = np.random.default_rng(0)


def weights(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def last(graph_or_value):
    """The node that made a value (the builder returns values)."""
    return graph_or_value.producer


def reason(node, target=None):
    support = (target or accelerator()).supports(node)
    assert not support and support.reason
    return support.reason


def ok(node, target=None):
    support = (target or accelerator()).supports(node)
    assert support, support.reason
    return True


def conv(shape=X, k=3, **attrs):
    b = GraphBuilder()
    x = b.input("x", shape)
    w = b.const(weights(attrs.pop("out", 4), shape[1] // attrs.get("group", 1), *[k] * (len(shape) - 2)), "w")
    return last(b.Conv(x, w, **attrs))


# ---------------------------------------------------------------- Conv

def test_conv_2d_up_to_kernel_11_any_stride():
    assert ok(conv(k=3, pads=[1, 1, 1, 1]))
    assert ok(conv(shape=[1, 4, 32, 32], k=11, strides=[4, 4]))
    assert reason(conv(shape=[1, 4, 32, 32], k=13)) == "Conv kernel 13x13 > 11"


def test_conv_any_group_count():
    assert ok(conv(group=4, out=4)) and ok(conv(group=2, out=4)) and ok(conv(group=2, out=6))


def test_conv_rejections_name_the_cause():
    assert "Conv is 1-D" in reason(conv(shape=[1, 4, 8]))
    assert ok(conv(dilations=[2, 2]))
    assert "dilations [64, 1] > 63" in reason(conv(shape=[1, 4, 140, 8], dilations=[64, 1]))
    b = GraphBuilder()
    node = last(b.Conv(b.input("x", X), b.input("w", [4, 4, 3, 3])))
    assert reason(node) == "Conv weights %w is computed at run time, not a constant"
    small = accelerator(HardwareConfig(weight_buffer_bytes=128))
    assert reason(conv(), small) == "one Conv filter (36 bytes) exceeds a MAC unit's weight-buffer share (32 bytes)"


def test_static_shapes_rank_and_dtype_are_checked_first():
    b = GraphBuilder()
    assert reason(last(b.Relu(b.input("d", [None, 4])))) == "dynamic shape: %d is f32[?,4]"
    assert "has rank 5; device tensors are N,C,H,W" in reason(last(b.Relu(b.input("r5", [1, 2, 2, 2, 2]))))
    assert "%i has dtype i64; the accelerator holds int8/int16 data" in reason(
        last(b.Add(b.input("i", [4], np.int64), b.input("j", [4], np.int64))))
    assert ok(last(b.Relu(b.input("q", [1, 4], np.int8))))
    narrow = accelerator(HardwareConfig(data_widths=(8,)))
    assert "int8 data" in reason(last(b.Relu(b.input("h", [1, 4], np.int16))), narrow)


# ---------------------------------------------------------------- pools

def pool(op, shape=X, **attrs):
    b = GraphBuilder()
    return last(b.op(op, b.input("x", shape), **attrs))


def test_pools():
    assert ok(pool("MaxPool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1))
    assert reason(pool("MaxPool", shape=[1, 4, 20, 20], kernel_shape=[17, 17])) == "MaxPool kernel 17x17 > 16"
    assert "MaxPool is 1-D" in reason(pool("MaxPool", shape=[1, 4, 8], kernel_shape=[2]))
    assert ok(pool("AveragePool", kernel_shape=[2, 2], strides=[2, 2]))
    assert ok(pool("AveragePool", kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1))
    assert ok(pool("AveragePool", kernel_shape=[3, 3], pads=[1, 1, 1, 1]))  # border windows count what they cover
    assert ok(pool("AveragePool", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1))  # partial windows too
    assert ok(pool("GlobalAveragePool")) and ok(pool("GlobalMaxPool"))
    assert "rank-3" in reason(pool("GlobalAveragePool", shape=[1, 4, 8]))
    assert ok(pool("GlobalAveragePool", shape=[1, 4, 20, 17]))  # a GEMM against ones past POOL's window
    assert "over 20x17: one window > max_pool_kernel=16" in reason(pool("GlobalMaxPool", shape=[1, 4, 20, 17]))
    assert "pool unit has no dilated windows" in reason(pool("MaxPool", kernel_shape=[2, 2], dilations=[2, 2]))
    small = accelerator(HardwareConfig(weight_buffer_bytes=512))
    assert ok(pool("GlobalAveragePool", shape=[1, 4, 9, 8]), small)  # its table does not fit: the GEMM
    assert "9-entry multiplier table (72 bytes) exceeds the weight buffer" in reason(
        pool("AveragePool", kernel_shape=[3, 3]), accelerator(HardwareConfig(weight_buffer_bytes=64)))


# ---------------------------------------------------------------- elementwise, concat, activations

@pytest.mark.parametrize("shape", [X, [1, 4, 1, 1], [4, 1, 1], [1], []])
def test_add_mul_same_shape_or_per_channel(shape):
    b = GraphBuilder()
    x = b.input("x", X)
    assert ok(last(b.Add(x, b.const(np.ones(shape, np.float32)))))
    assert ok(last(b.Mul(b.input("y", shape), x)))


def test_add_mul_broadcasts_along_any_axes_are_accepted():
    """Per-row, per-column, per-position and outer-product operands are
    ELTWISE's (LOADed with zero strides where they repeat)."""
    b = GraphBuilder()
    x = b.input("x", X)
    assert ok(last(b.Add(x, b.input("row", [1, 1, 8, 1]))))
    assert ok(last(b.Mul(b.input("a", [1, 4, 1, 8]), b.input("c", [1, 1, 8, 1]))))
    assert ok(last(b.Mul(b.input("var", [1, 1, 8, 8]), b.const(np.ones([1, 4, 1, 1], np.float32)))))
    assert ok(last(b.Mul(x, b.const(np.ones([8], np.float32)))))
    assert ok(last(b.Mul(b.input("box", [1, 4, 40]), b.const(np.ones([1, 40], np.float32)))))
    assert ok(last(b.Sub(b.input("u", [1, 4, 1, 1]), x)))  # a broadcast first operand, read with zero strides
    assert ok(last(b.Sub(b.const(np.ones([1, 4, 1, 1], np.float32)), x)))


def test_div_by_constants_per_channel_or_scalar_only():
    b = GraphBuilder()
    x = b.input("x", X)
    assert "per-channel ones on N,C,H,W maps" in reason(last(b.Div(x, b.const(np.ones([1, 1, 8, 1], np.float32)))))
    assert "per-channel ones on N,C,H,W maps" in reason(last(b.Div(b.input("l", [1, 4, 40]),
                                                                   b.const(np.ones([1, 4, 1], np.float32)))))
    assert "c / x only for a scalar c" in reason(last(b.Div(b.const(np.ones([1, 4, 1, 1], np.float32)), x)))


def test_concat_along_any_axis_but_the_batch():
    b = GraphBuilder()
    x, y = b.input("x", X), b.input("y", X)
    for axis in (1, -3, 2, 3, -1):
        assert ok(last(b.Concat(x, y, axis=axis)))
    assert reason(last(b.Concat(x, y, axis=0))) == ("Concat along axis 0 of a rank-4 tensor: the accelerator "
                                                    "concatenates along any axis but the batch axis (0)")


# ---------------------------------------------------------------- moves

def i64(*values):
    return np.array(values, np.int64)


def test_moves_and_views_take_tensors_up_to_rank_6():
    b = GraphBuilder()
    x5 = b.Reshape(b.input("x", [1, 8, 4, 4]), b.const(i64(1, 2, 4, 4, 4)))
    assert ok(last(x5)) and ok(last(b.Transpose(x5, perm=[0, 2, 1, 3, 4])))
    x6 = b.input("x6", [1, 2, 2, 2, 3, 3])
    assert ok(last(b.Transpose(x6, perm=[0, 1, 4, 2, 5, 3])))
    x7 = b.input("x7", [1, 2, 2, 2, 3, 3, 2])
    assert reason(last(b.Transpose(x7))) == ("Transpose of a rank-7 tensor %x7: the accelerator moves tensors of "
                                             "rank <= 6")
    assert "has rank 5; device tensors are N,C,H,W" in reason(last(b.Relu(x5)))  # compute layers: N,C,H,W


def test_slice_split_pad_and_space_depth_rules():
    b = GraphBuilder()
    x = b.input("x", X)
    starts, ends, axes = b.const(i64(1)), b.const(i64(7)), b.const(i64(2))
    assert ok(last(b.Slice(x, starts, ends, axes, b.const(i64(2)))))
    assert reason(last(b.Slice(x, b.const(i64(6)), b.const(i64(1)), axes, b.const(i64(-1))))) == (
        "Slice with step -1 on axis 2: DMA strides are non-negative")
    assert "dynamic shape" in reason(last(b.Slice(x, b.input("s", [1], np.int64), ends)))  # runtime starts
    assert "gives an empty tensor" in reason(last(b.Slice(x, starts, starts, axes)))
    assert ok(b.Split(x, b.const(i64(1, 3)), axis=1, num_outputs=2)[0].producer)
    pads = b.const(i64(0, 1, 2, 0, 0, 0, 1, 3))
    assert ok(last(b.Pad(x, pads))) and ok(last(b.Pad(x, pads, b.const(np.float32(0.5)))))
    assert ok(last(b.Pad(x, pads, mode="edge")))
    assert reason(last(b.Pad(x, pads, mode="reflect"))) == ("Pad mode 'reflect': a mirrored border needs negative "
                                                            "DMA strides, which the DMA does not have")
    assert "constant or by repeating the edge" in reason(last(b.Pad(x, pads, mode="wrap")))
    assert "negative pads (a crop)" in reason(last(b.Pad(x, b.const(np.array([0, 0, -1, 1, 0, 0, 0, 0])), mode="edge")))
    assert "Pad constant_value %v is computed at run time" in reason(last(b.Pad(x, pads, b.input("v", []))))
    for mode in ("DCR", "CRD"):
        assert ok(last(b.DepthToSpace(x, blocksize=2, mode=mode)))
    assert ok(last(b.SpaceToDepth(x, blocksize=2)))
    assert macs(last(b.Transpose(x, perm=[0, 2, 3, 1]))) == 0


def test_activations():
    b = GraphBuilder()
    x = b.input("x", X)
    for op in ("Relu", "LeakyRelu", "Sigmoid", "Tanh", "Identity"):
        assert ok(last(b.op(op, x)))
    assert ok(last(b.Clip(x, b.const(np.float32(0)), b.const(np.float32(6)))))
    assert "Clip max %m is computed at run time" in reason(last(b.Clip(x, None, b.input("m", []))))
    assert ok(last(b.Softmax(x)))  # the last axis: SOFTMAX
    assert "the accelerator normalises the last axis (rows)" in reason(last(b.Softmax(x, axis=1)))
    assert reason(last(b.LogSoftmax(x))) == "op LogSoftmax has no accelerator implementation"


def test_conv_transpose_runs_by_phases_and_says_what_it_cannot():
    b = GraphBuilder()
    x = b.input("x", X)
    for kernel, stride in (([2, 2], [2, 2]), ([4, 4], [2, 2]), ([3, 3], [2, 2]), ([8, 8], [4, 4])):
        assert ok(last(b.ConvTranspose(x, b.const(weights(4, 4, *kernel)), strides=stride, pads=[1, 1, 1, 1])))
    assert ok(last(b.ConvTranspose(x, b.const(weights(4, 1, 4, 4)), strides=[2, 2], group=4)))  # depthwise
    assert "kernel 1x1 smaller than its stride [2, 2]" in reason(
        last(b.ConvTranspose(x, b.const(weights(4, 4, 1, 1)), strides=[2, 2])))
    assert "dilations [2, 2]" in reason(last(b.ConvTranspose(x, b.const(weights(4, 4, 2, 2)), dilations=[2, 2])))
    assert "phase kernel 12x12 > max_conv_kernel=11" in reason(
        last(b.ConvTranspose(x, b.const(weights(4, 4, 12, 12)))))
    computed = last(b.ConvTranspose(x, b.input("w", [4, 4, 2, 2]), strides=[2, 2]))
    assert reason(computed) == "ConvTranspose weights %w is computed at run time, not a constant"
    assert "ConvTranspose" in accelerator_ops()


def test_unary_functions_prelu_and_constants():
    b = GraphBuilder()
    x = b.input("x", X)
    for op in ("HardSwish", "Gelu", "Erf", "Exp", "Softplus", "Reciprocal"):
        assert ok(last(getattr(b, op)(x))), op
    assert ok(last(b.Pow(x, b.const(np.float32(3.0))))) and ok(last(b.Div(b.const(np.float32(6)), x)))
    assert ok(last(b.Div(x, b.const(np.full([1, 4, 1, 1], 6, np.float32)))))  # an affine
    assert ok(last(b.PRelu(x, b.const(np.full([4, 1, 1], 0.25, np.float32)))))
    assert "negative values (channel 2)" in reason(last(b.PRelu(x, b.const(np.array([.1, .2, -.3, .4], np.float32)
                                                                         .reshape(4, 1, 1)))))
    assert "Div of two tensors" in reason(last(b.Div(x, b.input("y", X))))
    assert ok(last(b.Max(x, b.input("z", X)))) and ok(last(b.Min(x, b.input("v", [1, 4, 1, 1]))))


# ---------------------------------------------------------------- Resize

def resize(scales, mode="nearest", ctm="asymmetric", nearest="floor", shape=X):
    b = GraphBuilder()
    scales = b.const(np.array(scales, np.float32))
    return last(b.Resize(b.input("x", shape), None, scales, mode=mode, coordinate_transformation_mode=ctm,
                         nearest_mode=nearest))


def test_resize_nearest_integer_upsampling():
    assert ok(resize([1, 1, 2, 2]))
    assert ok(resize([1, 1, 3, 2], ctm="half_pixel", nearest="round_prefer_floor"))
    assert ok(resize([1, 1, 2, 2], ctm="half_pixel_symmetric", nearest="round_prefer_ceil"))
    assert "mode='linear'" in reason(resize([1, 1, 2, 2], mode="linear"))
    assert "does not replicate pixels" in reason(resize([1, 1, 2, 2], ctm="half_pixel", nearest="floor"))
    assert "does not replicate pixels" in reason(resize([1, 1, 2, 2], ctm="align_corners"))
    assert "[1.5, 2.0] are not integer" in reason(resize([1, 1, 1.5, 2]))
    assert "not integer" in reason(resize([1, 1, 0.5, 0.5]))
    assert "batch or channel axis" in reason(resize([1, 2, 2, 2]))


@pytest.mark.parametrize("ctm", [m for m in COORDINATE_MODES if m != "tf_crop_and_resize"])
@pytest.mark.parametrize("nearest", NEAREST_MODES)
def test_resize_is_supported_exactly_when_the_kernel_replicates_pixels(ctm, nearest):
    x = np.arange(2 * 3 * 5 * 4, dtype=np.float32).reshape(2, 3, 5, 4)
    node = resize([1, 1, 3, 2], ctm=ctm, nearest=nearest, shape=x.shape)
    out = run_kernel("Resize", [x, None, node.inputs[2].const, None], node.attrs)[0]
    assert bool(accelerator().supports(node)) == np.array_equal(out, x.repeat(3, 2).repeat(2, 3))


def test_resize_by_sizes_and_runtime_scales():
    b = GraphBuilder()
    x = b.input("x", X)
    assert ok(last(b.Resize(x, None, None, b.const(np.array([1, 4, 24, 16], np.int64)),
                            coordinate_transformation_mode="asymmetric", nearest_mode="floor")))
    node = last(b.Resize(x, None, b.input("s", [4]), coordinate_transformation_mode="asymmetric",
                         nearest_mode="floor"))
    assert "dynamic shape" in reason(node)


# ---------------------------------------------------------------- linear layers, BN, layout ops

def test_linear_layers_run_on_the_accelerator_unless_hwlinear_is_off():
    """Unset (the affinity policy decides where they pay) and True accept them; False refuses."""
    b = GraphBuilder()
    x = b.input("x", [2, 16])
    gemm = last(b.Gemm(x, b.const(weights(16, 8)), b.const(weights(8))))
    matmul = last(b.MatMul(x, b.const(weights(16, 8))))
    assert ok(gemm) and ok(matmul)
    assert reason(gemm, accelerator(hwlinear=False)) == \
        "Gemm (a linear layer) is kept on the CPU by the hwlinear option (target.hwlinear=False)"
    on = accelerator(hwlinear=True)
    assert ok(gemm, on) and ok(matmul, on)
    assert "MatMul weights %x is computed at run time" in reason(last(b.MatMul(b.const(weights(3, 2)), x)), on)
    assert "transA=1" in reason(last(b.Gemm(b.input("t", [16, 2]), b.const(weights(16, 8)), transA=1)), on)
    assert "are not a matrix" in reason(last(b.MatMul(b.input("a", [3, 2, 16]), b.const(weights(3, 16, 8)))), on)


def test_matmul_of_two_activations_and_softmax_over_rows_run_without_hwlinear():
    """Attention's products (MATMUL) and its Softmax over the last axis
    (SOFTMAX); the refusals name what MATMUL and SOFTMAX lack, not hwlinear."""
    b = GraphBuilder()
    q, k = b.input("q", [1, 2, 32, 4]), b.input("k", [1, 2, 32, 4])
    scores = last(b.MatMul(b.Transpose(q, perm=[0, 1, 3, 2]), k))
    assert ok(scores) and ok(last(b.Softmax(scores.outputs[0], axis=-1)))
    broadcast = last(b.MatMul(b.input("a", [1, 2, 4, 32]), b.input("c", [1, 1, 32, 4])))
    assert "batch by batch, with the same leading dims" in reason(broadcast)
    assert "hwlinear" not in reason(broadcast)
    assert "normalises the last axis" in reason(last(b.Softmax(b.input("s", [1, 16, 4, 8]), axis=1)))
    small = accelerator(HardwareConfig(activation_buffer_bytes=4096))
    assert "exceed the activation buffer" in reason(last(b.MatMul(b.input("wide", [1, 1, 2048]),
                                                                   b.input("tall", [1, 2048, 1]))), small)
    assert "exceed the activation buffer" in reason(last(b.Softmax(b.input("row", [1, 2048]), axis=-1)), small)


def test_batch_norm_with_constant_parameters():
    b = GraphBuilder()
    x = b.input("x", X)
    params = [b.const(np.ones(4, np.float32)) for _ in range(4)]
    assert ok(last(b.BatchNormalization(x, *params)))
    assert "BatchNormalization mean %m is computed at run time" in reason(
        last(b.BatchNormalization(x, params[0], params[1], b.input("m", [4]), params[3])))


def test_layout_ops_are_free_views_with_constant_shapes():
    b = GraphBuilder()
    x = b.input("x", [2, 4, 1, 1])
    assert ok(last(b.Flatten(x, axis=1))) and ok(last(b.Flatten(x, axis=0)))
    assert ok(last(b.Reshape(x, b.const(np.array([8, 1], np.int64)))))
    assert ok(last(b.Squeeze(x, b.const(np.array([2, 3], np.int64)))))
    assert ok(last(b.Unsqueeze(b.input("v", [2, 4]), b.const(np.array([2], np.int64)))))
    assert reason(last(b.Reshape(x, b.input("s", [2], np.int64)))).startswith("dynamic shape")


# ---------------------------------------------------------------- Fused, CPU, options

def fused(*ops):
    """A Fused node whose body applies ``ops`` in a chain."""
    body = GraphBuilder("body")
    value = body.input("x", X)
    for op in ops:
        value = body.op(op, value, name=f"m_{op.lower()}")
    body.build(value)
    g = Graph()
    x = g.add_input("x", value.type)
    return g.add_node("Fused", [x], {"body": body.graph, "pattern": int(Pattern.ELEMWISE), "anchor": ""}, name="f")


def test_fused_is_supported_when_every_member_is():
    assert ok(fused("Relu", "Sigmoid"))
    assert reason(fused("Relu", "LogSoftmax", "Softsign")) == \
        "Fused member 'm_logsoftmax' (LogSoftmax): op LogSoftmax has no accelerator implementation"
    assert ok(fused("Relu", "LogSoftmax"), cpu())


def test_cpu_target_runs_every_op_with_a_kernel():
    b = GraphBuilder()
    x = b.input("x", X)
    assert ok(last(b.Softmax(x)), cpu()) and ok(last(b.ConvTranspose(x, b.const(weights(4, 4, 2, 2)))), cpu())
    assert reason(Node("NoSuchOp", "n"), cpu()) == "op NoSuchOp has no CPU kernel"


def test_make_target_reads_the_context_options():
    b = GraphBuilder()
    gemm = last(b.Gemm(b.input("x", [2, 16]), b.const(weights(16, 8))))
    with PassContext(options={"target.hwlinear": False}) as ctx:
        assert not make_target(ACCELERATOR, ctx).supports(gemm)
    assert make_target(ACCELERATOR, PassContext()).supports(gemm)
    with PassContext(options={"target.hwlinear": "yes"}) as ctx, \
            pytest.raises(TargetError, match="'target.hwlinear' must be None \\(unset\\), True or False, got 'yes'"):
        make_target(ACCELERATOR, ctx)
    assert make_target(HOST, PassContext()).name == "CPU"
    with pytest.raises(TargetError, match=r"unknown device 'GPU'; the devices are \['FPGA', 'CPU'\]"):
        make_target("GPU", PassContext())


def test_options_are_registered_with_types_and_docs():
    options = registered_options()
    expected = {"target.hwlinear": (object, None), "target.hardware": (HardwareConfig, HardwareConfig()),
                "partition.fallback": (str, "HETERO:FPGA,CPU"), "partition.demote_islands": (bool, True)}
    for name, (kind, default) in expected.items():
        assert (options[name].type, options[name].default) == (kind, default) and options[name].doc


# ---------------------------------------------------------------- costs

def test_macs_per_op():
    assert macs(conv(pads=[1, 1, 1, 1])) == (4 * 8 * 8) * (4 * 3 * 3)
    assert macs(conv(group=4, out=4, pads=[1, 1, 1, 1])) == (4 * 8 * 8) * 9
    b = GraphBuilder()
    assert macs(last(b.Gemm(b.input("a", [2, 16]), b.const(weights(16, 8))))) == 2 * 8 * 16
    assert macs(last(b.MatMul(b.input("m", [3, 2, 16]), b.const(weights(16, 8))))) == 3 * 2 * 8 * 16
    assert macs(pool("MaxPool", kernel_shape=[2, 2], strides=[2, 2])) == (4 * 4 * 4) * 4
    assert macs(last(b.Relu(b.input("x", X)))) == 0
    assert macs(fused("Relu", "Sigmoid")) == 0


def test_device_and_cpu_times_are_rooflines():
    hw = HardwareConfig()
    big = conv(shape=[1, 64, 56, 56], k=3, out=64, pads=[1, 1, 1, 1])
    work = 64 * 56 * 56 * 64 * 9
    assert device_time(big, hw) == pytest.approx(work / (hw.peak_macs_per_second * DEVICE_EFFICIENCY))
    assert device_cycles(big, hw) == pytest.approx(device_time(big, hw) * hw.clock_hz, abs=1)
    assert cpu_time(big) == pytest.approx(work / CPU_MACS_PER_SECOND)
    b = GraphBuilder()
    relu = last(b.Relu(b.input("x", X)))
    assert moved_elements(relu) == 2 * 256
    assert device_time(relu, hw) == pytest.approx(512 / hw.total_dram_bandwidth)
    assert cpu_time(relu) == pytest.approx(512 * CPU_ELEMENT_BYTES / CPU_BYTES_PER_SECOND)


def test_fused_costs_count_the_boundary_once_on_the_device():
    hw = HardwareConfig()
    node = fused("Relu", "Sigmoid")
    assert moved_elements(node) == 2 * 256
    assert cpu_time(node) == pytest.approx(sum(cpu_time(m) for m in node.attrs["body"].nodes))
    assert device_time(node, hw) < cpu_time(node)


def test_transfer_time_is_latency_plus_bytes_over_the_host_link():
    hw = HardwareConfig(host_link_bandwidth=1e9)
    out = conv(pads=[1, 1, 1, 1]).outputs[0].type
    assert transfer_time(out, hw) == pytest.approx(TRANSFER_LATENCY_S + 256 / 1e9)
    wide = HardwareConfig(host_link_bandwidth=1e9, data_widths=(16,))
    assert transfer_time(out, wide) == pytest.approx(TRANSFER_LATENCY_S + 512 / 1e9)
