"""Quantization ops against onnx's reference evaluator, bit for bit."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from compiler import backend
from compiler.errors import ModelImportError, UnsupportedOpError
from runtime.errors import KernelError
from runtime.kernels import run_kernel
from tests.helpers.node_models import make_node_model, run_both

SETTINGS = settings(max_examples=25, deadline=None)
QUANT_TYPES = [np.uint8, np.int8, np.uint16, np.int16]
INT8_TYPES = [np.uint8, np.int8]


def assert_exact(op: str, inputs, num_outputs: int = 1, opset: int = 23, consts=(), **attrs) -> tuple:
    """Tessera and the reference agree in dtype, shape and every bit."""
    ours, theirs = run_both(op, inputs, num_outputs, opset, consts, **attrs)
    for got, want in zip(ours, theirs):
        want = np.asarray(want)
        assert got.dtype == want.dtype, f"{op}: dtype {got.dtype} != {want.dtype}"
        assert got.shape == want.shape, f"{op}: shape {got.shape} != {want.shape}"
        np.testing.assert_array_equal(got, want)
    return ours


def prepare(model):
    return backend.prepare(model, check=True, strict_types=True)


def random_ints(rng, shape, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


def small_zero_point(rng, shape, dtype) -> np.ndarray:
    """Zero points near the middle of the range, as real models have them."""
    info = np.iinfo(dtype)
    middle = (int(info.min) + int(info.max) + 1) // 2
    return (middle + rng.integers(-20, 20, size=shape)).astype(dtype)


shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


# ---------------------------------------------------------------- QuantizeLinear
@SETTINGS
@given(seed=st.integers(0, 2**31), shape=shapes, dtype=st.sampled_from(QUANT_TYPES + [None]))
def test_quantize_per_tensor(seed, shape, dtype):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 100).astype(np.float32)
    scale = np.array(rng.uniform(0.01, 2.0), np.float32)
    inputs = [x, scale] + ([] if dtype is None else [small_zero_point(rng, (), dtype)])
    assert_exact("QuantizeLinear", inputs)


@SETTINGS
@given(seed=st.integers(0, 2**31), shape=shapes, data=st.data(), dtype=st.sampled_from(QUANT_TYPES))
def test_quantize_per_axis(seed, shape, data, dtype):
    rng = np.random.default_rng(seed)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    x = (rng.standard_normal(shape) * 50).astype(np.float32)
    scale = rng.uniform(0.05, 1.0, size=shape[axis]).astype(np.float32)
    zero_point = small_zero_point(rng, shape[axis], dtype)
    assert_exact("QuantizeLinear", [x, scale, zero_point], consts=(1, 2), axis=axis)


@SETTINGS
@given(seed=st.integers(0, 2**31), shape=shapes, data=st.data(), dtype=st.sampled_from(QUANT_TYPES))
def test_quantize_blocked(seed, shape, data, dtype):
    rng = np.random.default_rng(seed)
    axis = data.draw(st.integers(0, len(shape) - 1), label="axis")
    block = data.draw(st.integers(1, 3), label="block_size")
    scale_shape = list(shape)
    scale_shape[axis] = -(-shape[axis] // block)
    x = (rng.standard_normal(shape) * 50).astype(np.float32)
    scale = rng.uniform(0.05, 1.0, size=scale_shape).astype(np.float32)
    zero_point = small_zero_point(rng, scale_shape, dtype)
    assert_exact("QuantizeLinear", [x, scale, zero_point], opset=21, axis=axis, block_size=block)


def test_quantize_rounds_half_to_even():
    x = np.array([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 4.5], np.float32)
    ours = assert_exact("QuantizeLinear", [x, np.array(1.0, np.float32), np.array(0, np.int8)])
    np.testing.assert_array_equal(ours[0], [-4, -2, -2, 0, 0, 2, 2, 4, 4])
    halves = assert_exact("QuantizeLinear", [x * 0.5, np.array(0.5, np.float32), np.array(10, np.uint8)])
    np.testing.assert_array_equal(halves[0], [6, 8, 8, 10, 10, 12, 12, 14, 14])


@pytest.mark.parametrize("dtype", QUANT_TYPES)
def test_quantize_saturates(dtype):
    info = np.iinfo(dtype)
    x = np.array([-1e9, float(info.min) - 1.5, float(info.min), -0.4, 0.4, float(info.max), float(info.max) + 1.5,
                  1e9], np.float32)
    ours = assert_exact("QuantizeLinear", [x, np.array(1.0, np.float32), np.zeros((), dtype)], opset=21)
    assert ours[0][0] == info.min and ours[0][-1] == info.max
    assert ours[0][1] == info.min and ours[0][-2] == info.max


@pytest.mark.parametrize("to", [TensorProto.INT8, TensorProto.UINT16, TensorProto.INT16])
def test_quantize_output_dtype_without_zero_point(to):
    x = np.linspace(-300, 300, 13, dtype=np.float32)
    assert_exact("QuantizeLinear", [x, np.array(0.75, np.float32)], opset=21, output_dtype=to)


def test_quantize_defaults_to_uint8():
    x = np.linspace(-3, 300, 7, dtype=np.float32)
    ours = assert_exact("QuantizeLinear", [x, np.array(1.0, np.float32)])
    assert ours[0].dtype == np.uint8


@pytest.mark.parametrize("x_dtype, scale_dtype", [(np.int32, np.float32), (np.float16, np.float16),
                                                  (np.float32, np.float16), (np.float32, np.int32),
                                                  (np.int32, np.int32)])
def test_quantize_other_input_types(x_dtype, scale_dtype):
    x = np.clip(np.array([-70000, -129, -3, 0, 5, 100, 254, 70000]), -6e4, 6e4).astype(x_dtype)
    assert_exact("QuantizeLinear", [x, np.array(3, scale_dtype), np.array(1, np.int8)], opset=21)


def test_quantize_precision_attribute():
    x = np.array([1.0, 2.0, 3.0, 1e6], np.float32)
    assert_exact("QuantizeLinear", [x, np.array(0.3, np.float32), np.array(0, np.int16)], opset=23,
                 precision=TensorProto.DOUBLE)


@pytest.mark.parametrize("opset", [10, 13, 19])
def test_quantize_old_opsets(opset):
    rng = np.random.default_rng(opset)
    x = (rng.standard_normal((2, 3, 4)) * 40).astype(np.float32)
    assert_exact("QuantizeLinear", [x, np.array(0.5, np.float32), np.array(3, np.int8)], opset=opset)
    if opset >= 13:
        scale = np.array([0.5, 0.25, 1.0], np.float32)
        zero_point = np.array([120, 128, 140], np.uint8)
        assert_exact("QuantizeLinear", [x, scale, zero_point], opset=opset, consts=(1, 2), axis=1)


# ---------------------------------------------------------------- DequantizeLinear
@SETTINGS
@given(seed=st.integers(0, 2**31), shape=shapes, data=st.data(),
       dtype=st.sampled_from(QUANT_TYPES + [np.int32]), mode=st.sampled_from(["tensor", "axis", "blocked"]),
       with_zero_point=st.booleans())
def test_dequantize(seed, shape, data, dtype, mode, with_zero_point):
    rng = np.random.default_rng(seed)
    axis = data.draw(st.integers(0, len(shape) - 1), label="axis")
    block = data.draw(st.integers(1, 3), label="block_size")
    param_shape = {"tensor": (), "axis": (shape[axis],), "blocked": tuple(
        -(-d // block) if i == axis else d for i, d in enumerate(shape))}[mode]
    x = random_ints(rng, shape, dtype)
    scale = rng.uniform(0.001, 3.0, size=param_shape).astype(np.float32)
    inputs = [x, scale]
    if with_zero_point:
        inputs.append(random_ints(rng, param_shape, dtype) if dtype == np.int32 else small_zero_point(
            rng, param_shape, dtype))
    attrs = {"axis": axis, **({"block_size": block} if mode == "blocked" else {})}
    assert_exact("DequantizeLinear", inputs, opset=21, **attrs)


def test_dequantize_float16_scale_and_output_dtype():
    x = np.array([[0, 3, 128, 255], [1, 2, 250, 7]], np.uint8)
    zero_point = np.array(128, np.uint8)
    assert_exact("DequantizeLinear", [x, np.array(0.02, np.float16), zero_point], opset=21)
    assert_exact("DequantizeLinear", [x, np.array(0.02, np.float32), zero_point], opset=23,
                 output_dtype=TensorProto.FLOAT16)


@pytest.mark.parametrize("opset", [10, 13])
def test_dequantize_old_opsets(opset):
    """Same semantics as opset 19, the oldest the reference evaluator implements."""
    inputs = [np.array([[-128, -1, 0, 1, 127]], np.int8), np.array(0.1, np.float32), np.array(-3, np.int8)]
    (ours,) = prepare(make_node_model("DequantizeLinear", inputs, opset=opset)).run(inputs)
    (theirs,) = ReferenceEvaluator(make_node_model("DequantizeLinear", inputs, opset=19)).run(
        None, {f"in{i}": x for i, x in enumerate(inputs)})
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)


def _roundtrip_model(x_shape, scale, zero_point, axis):
    """x -> QuantizeLinear -> DequantizeLinear, with constant parameters."""
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=axis),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=axis)]
    inits = [helper.make_tensor("s", TensorProto.FLOAT, scale.shape, scale.reshape(-1).tolist()),
             helper.make_tensor("z", helper.np_dtype_to_tensor_dtype(zero_point.dtype), zero_point.shape,
                                zero_point.reshape(-1).tolist())]
    graph = helper.make_graph(nodes, "roundtrip", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_empty_tensor_value_info("y")], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


@SETTINGS
@given(seed=st.integers(0, 2**31), shape=shapes, data=st.data(), dtype=st.sampled_from(QUANT_TYPES),
       per_axis=st.booleans())
def test_quantize_dequantize_roundtrip(seed, shape, data, dtype, per_axis):
    rng = np.random.default_rng(seed)
    axis = data.draw(st.integers(0, len(shape) - 1), label="axis")
    param_shape = (shape[axis],) if per_axis else ()
    scale = rng.uniform(0.01, 0.5, size=param_shape).astype(np.float32)
    zero_point = small_zero_point(rng, param_shape, dtype)
    x = (rng.standard_normal(shape) * 5).astype(np.float32)
    model = _roundtrip_model(shape, scale, zero_point, axis)
    (ours,) = prepare(model).run([x])
    (theirs,) = ReferenceEvaluator(model).run(None, {"x": x})
    np.testing.assert_array_equal(ours, theirs)
    bcast = scale.reshape([-1 if i == axis else 1 for i in range(len(shape))]) if per_axis else scale
    info = np.iinfo(dtype)
    zp = zero_point.reshape(bcast.shape).astype(np.float32)
    inside = (x / bcast + zp >= info.min) & (x / bcast + zp <= info.max)
    error = np.abs(ours - x)
    assert np.all(error[inside] <= (np.broadcast_to(bcast, x.shape)[inside] * 0.5001))


# ---------------------------------------------------------------- DynamicQuantizeLinear
@SETTINGS
@given(seed=st.integers(0, 2**31), shape=shapes, shift=st.sampled_from([0.0, 5.0, -5.0]),
       spread=st.sampled_from([0.0, 1e-3, 1.0, 100.0]))
def test_dynamic_quantize(seed, shape, shift, spread):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * spread + shift).astype(np.float32)
    assert_exact("DynamicQuantizeLinear", [x], num_outputs=3, opset=11)


# ---------------------------------------------------------------- MatMulInteger
def _matmul_shapes(data) -> tuple[tuple, tuple]:
    m, k, n = (data.draw(st.integers(1, 5), label=d) for d in "mkn")
    batch = data.draw(st.lists(st.integers(1, 3), max_size=2), label="batch")
    a_batch = [d if data.draw(st.booleans()) else 1 for d in batch]
    b_batch = batch[data.draw(st.integers(0, len(batch)), label="b_drop"):]
    a_shape = (k,) if data.draw(st.booleans(), label="a_vector") else (*a_batch, m, k)
    b_shape = (k,) if data.draw(st.booleans(), label="b_vector") else (*b_batch, k, n)
    return a_shape, b_shape


@SETTINGS
@given(seed=st.integers(0, 2**31), data=st.data(), a_dtype=st.sampled_from(INT8_TYPES),
       b_dtype=st.sampled_from(INT8_TYPES), zero_points=st.sampled_from(["none", "scalar", "column"]))
def test_matmul_integer(seed, data, a_dtype, b_dtype, zero_points):
    rng = np.random.default_rng(seed)
    a_shape, b_shape = _matmul_shapes(data)
    a, b = random_ints(rng, a_shape, a_dtype), random_ints(rng, b_shape, b_dtype)
    inputs = [a, b]
    if zero_points != "none":
        b_zp_shape = (b_shape[-1],) if zero_points == "column" and len(b_shape) > 1 else ()
        inputs += [random_ints(rng, (), a_dtype), random_ints(rng, b_zp_shape, b_dtype)]
    assert_exact("MatMulInteger", inputs, opset=10)


def test_matmul_integer_per_row_zero_point():
    """Per-row zero points of A (an M-vector): the reference evaluator
    broadcasts them along K, so check against plain integer arithmetic."""
    rng = np.random.default_rng(0)
    a, b = random_ints(rng, (2, 4, 6), np.uint8), random_ints(rng, (6, 3), np.int8)
    a_zp, b_zp = random_ints(rng, (4,), np.uint8), random_ints(rng, (3,), np.int8)
    model = make_node_model("MatMulInteger", [a, b, a_zp, b_zp], opset=10, consts=(2, 3))
    (ours,) = prepare(model).run({"in0": a, "in1": b})
    want = (a.astype(np.int64) - a_zp[:, None]) @ (b.astype(np.int64) - b_zp)
    assert ours.dtype == np.int32
    np.testing.assert_array_equal(ours, want)


@pytest.mark.parametrize("depth", [258, 259, 5000])
@pytest.mark.parametrize("value, dtype", [(255, np.uint8), (-128, np.int8)])
def test_matmul_integer_exact_at_extremes(depth, value, dtype):
    """Extreme operands on both sides of the float32 exactness bound (2**24:
    258 * 255 * 255 is below it, 259 * 255 * 255 above) and far past it."""
    a, b = np.full((2, depth), value, dtype), np.full((depth, 3), value, dtype)
    b[::7, 1] = 1
    (ours,) = prepare(make_node_model("MatMulInteger", [a, b], opset=10)).run({"in0": a, "in1": b})
    np.testing.assert_array_equal(ours, a.astype(np.int64) @ b.astype(np.int64))


def test_conv_integer_exact_with_deep_reduction():
    """A reduction of 64 * 3 * 3 extreme products goes through float64."""
    x, w = np.full((1, 64, 4, 4), 255, np.uint8), np.full((2, 64, 3, 3), 127, np.int8)
    x[0, 0, 1, 1], w[1] = 254, -128
    assert_exact("ConvInteger", [x, w], opset=10, consts=(1,), pads=[1, 1, 1, 1])


# ---------------------------------------------------------------- QLinearMatMul
@SETTINGS
@given(seed=st.integers(0, 2**31), data=st.data(), a_dtype=st.sampled_from(INT8_TYPES),
       b_dtype=st.sampled_from(INT8_TYPES), y_dtype=st.sampled_from(INT8_TYPES),
       scale_dtype=st.sampled_from([np.float32, np.float16]), per_column=st.booleans())
def test_qlinear_matmul(seed, data, a_dtype, b_dtype, y_dtype, scale_dtype, per_column):
    rng = np.random.default_rng(seed)
    a_shape, b_shape = _matmul_shapes(data)
    column_shape = (b_shape[-1],) if per_column and len(b_shape) > 1 else ()
    a_scale = np.array(rng.uniform(0.01, 0.1), scale_dtype)
    b_scale = rng.uniform(0.01, 0.1, size=column_shape).astype(scale_dtype)
    y_scale = np.array(rng.uniform(0.05, 0.5), scale_dtype)
    inputs = [random_ints(rng, a_shape, a_dtype), a_scale, small_zero_point(rng, (), a_dtype),
              random_ints(rng, b_shape, b_dtype), b_scale, small_zero_point(rng, column_shape, b_dtype),
              y_scale, small_zero_point(rng, (), y_dtype)]
    assert_exact("QLinearMatMul", inputs, opset=21)


@pytest.mark.parametrize("b_shape, b_param_shape", [((6, 3), (3,)), ((6,), ()), ((2, 6, 3), (2, 1, 3))])
def test_qlinear_matmul_per_row(b_shape, b_param_shape):
    """Per-row parameters of a (an M-vector): the reference evaluator
    broadcasts them along K, so check against the formula in float64."""
    rng = np.random.default_rng(3)
    a, b = random_ints(rng, (4, 6), np.uint8), random_ints(rng, b_shape, np.int8)
    a_scale, a_zp = rng.uniform(0.01, 0.1, 4).astype(np.float32), small_zero_point(rng, (4,), np.uint8)
    b_scale = rng.uniform(0.01, 0.1, b_param_shape).astype(np.float32)
    b_zp = small_zero_point(rng, b_param_shape, np.int8)
    y_scale, y_zp = np.array(0.05, np.float32), np.array(3, np.int8)
    inputs = [a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp]
    model = make_node_model("QLinearMatMul", inputs, opset=21, consts=(1, 2, 4, 5, 6, 7))
    (ours,) = prepare(model).run({"in0": a, "in3": b})
    b_columns = b_zp if b.ndim > 1 else b_zp.reshape(())
    product = (a.astype(np.int64) - a_zp[:, None]) @ (b.astype(np.int64) - b_columns)
    multiplier = (a_scale[:, None] * (b_scale if b.ndim > 1 else b_scale.reshape(()))) / y_scale
    multiplier = multiplier if b.ndim > 1 else multiplier[:, 0]
    want = np.clip(np.rint(product * multiplier.astype(np.float64) + 3), -128, 127).astype(np.int8)
    np.testing.assert_array_equal(ours, want)


def test_qlinear_matmul_opset10():
    rng = np.random.default_rng(1)
    inputs = [random_ints(rng, (3, 5), np.uint8), np.array(0.05, np.float32), np.array(120, np.uint8),
              random_ints(rng, (5, 2), np.uint8), np.array(0.02, np.float32), np.array(130, np.uint8),
              np.array(0.3, np.float32), np.array(128, np.uint8)]
    assert_exact("QLinearMatMul", inputs, opset=10)


# ---------------------------------------------------------------- ConvInteger / QLinearConv
def _conv_case(data, rng, x_dtype, w_dtype, spatial: int = 2):
    """Random operands and Conv attributes of a small grouped convolution."""
    group = data.draw(st.sampled_from([1, 2, 3]), label="group")
    per_group_in = data.draw(st.integers(1, 2), label="per_group_in")
    out_channels = group * data.draw(st.integers(1, 2), label="per_group_out")
    kernel = [data.draw(st.integers(1, 3)) for _ in range(spatial)]
    strides = [data.draw(st.integers(1, 2)) for _ in range(spatial)]
    dilations = [data.draw(st.integers(1, 2)) for _ in range(spatial)]
    pads = [data.draw(st.integers(0, 2)) for _ in range(2 * spatial)]
    sizes = [data.draw(st.integers((k - 1) * d + 1, 7)) for k, d in zip(kernel, dilations)]
    batch = data.draw(st.integers(1, 2), label="batch")
    x = random_ints(rng, (batch, group * per_group_in, *sizes), x_dtype)
    w = random_ints(rng, (out_channels, per_group_in, *kernel), w_dtype)
    return x, w, dict(group=group, strides=strides, dilations=dilations, pads=pads)


@SETTINGS
@given(seed=st.integers(0, 2**31), data=st.data(), x_dtype=st.sampled_from(INT8_TYPES),
       w_dtype=st.sampled_from(INT8_TYPES), w_zero_point=st.sampled_from(["none", "scalar", "channel"]))
def test_conv_integer(seed, data, x_dtype, w_dtype, w_zero_point):
    rng = np.random.default_rng(seed)
    x, w, attrs = _conv_case(data, rng, x_dtype, w_dtype)
    inputs = [x, w]
    if w_zero_point != "none":
        shape = (w.shape[0],) if w_zero_point == "channel" else ()
        inputs += [small_zero_point(rng, (), x_dtype), small_zero_point(rng, shape, w_dtype)]
    assert_exact("ConvInteger", inputs, opset=10, consts=tuple(range(1, len(inputs))), **attrs)


@SETTINGS
@given(seed=st.integers(0, 2**31), data=st.data(), x_dtype=st.sampled_from(INT8_TYPES))
def test_conv_integer_1d_per_channel(seed, data, x_dtype):
    """1-D convolution with per-channel zero points, checked against the
    reference's 2-D convolution of the same data with a unit height."""
    rng = np.random.default_rng(seed)
    x, w, attrs = _conv_case(data, rng, x_dtype, np.int8, spatial=1)
    x_zp, w_zp = small_zero_point(rng, (), x_dtype), small_zero_point(rng, (w.shape[0],), np.int8)
    model = make_node_model("ConvInteger", [x, w, x_zp, w_zp], opset=10, consts=(1, 2, 3), **attrs)
    (ours,) = prepare(model).run({"in0": x})
    attrs_2d = dict(group=attrs["group"], strides=[1] + attrs["strides"], dilations=[1] + attrs["dilations"],
                    pads=[0, attrs["pads"][0], 0, attrs["pads"][1]])
    model_2d = make_node_model("ConvInteger", [x[:, :, None], w[:, :, None], x_zp, w_zp], opset=10, **attrs_2d)
    (theirs,) = ReferenceEvaluator(model_2d).run(None, {"in0": x[:, :, None], "in1": w[:, :, None], "in2": x_zp,
                                                         "in3": w_zp})
    np.testing.assert_array_equal(ours, theirs[:, :, 0])


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_conv_integer_auto_pad(auto_pad):
    rng = np.random.default_rng(2)
    x, w = random_ints(rng, (1, 2, 6, 5), np.uint8), random_ints(rng, (3, 2, 3, 2), np.uint8)
    inputs = [x, w, np.array(100, np.uint8), np.array(128, np.uint8)]
    assert_exact("ConvInteger", inputs, opset=10, consts=(1, 2, 3), auto_pad=auto_pad, strides=[2, 2],
                 kernel_shape=[3, 2])


@SETTINGS
@given(seed=st.integers(0, 2**31), data=st.data(), x_dtype=st.sampled_from(INT8_TYPES),
       w_dtype=st.sampled_from(INT8_TYPES), y_dtype=st.sampled_from(INT8_TYPES), per_channel=st.booleans(),
       with_bias=st.booleans())
def test_qlinear_conv(seed, data, x_dtype, w_dtype, y_dtype, per_channel, with_bias):
    rng = np.random.default_rng(seed)
    x, w, attrs = _conv_case(data, rng, x_dtype, w_dtype)
    channels = (w.shape[0],) if per_channel else ()
    x_scale = np.array(rng.uniform(0.01, 0.05), np.float32)
    w_scale = rng.uniform(0.005, 0.02, size=channels).astype(np.float32)
    y_scale = np.array(rng.uniform(0.02, 0.2) * np.sqrt(w[0].size), np.float32)
    inputs = [x, x_scale, small_zero_point(rng, (), x_dtype), w, w_scale, small_zero_point(rng, channels, w_dtype),
              y_scale, small_zero_point(rng, (), y_dtype)]
    if with_bias:
        inputs.append(rng.integers(-5000, 5000, size=w.shape[0]).astype(np.int32))
    assert_exact("QLinearConv", inputs, opset=10, consts=tuple(range(1, len(inputs))), **attrs)


# ---------------------------------------------------------------- errors
def _import_error(op: str, inputs, opset: int = 23, error=ModelImportError, **attrs) -> str:
    model = make_node_model(op, inputs, opset=opset, consts=tuple(range(1, len(inputs))), **attrs)
    with pytest.raises(error) as info:
        prepare(model)
    return str(info.value)


X = np.zeros((2, 3, 4), np.float32)


def test_error_zero_point_shape_differs_from_scale():
    message = _import_error("QuantizeLinear", [X, np.array(1.0, np.float32), np.zeros(3, np.uint8)])
    assert "y_zero_point" in message and "y_scale" in message


def test_error_per_axis_length():
    message = _import_error("QuantizeLinear", [X, np.ones(2, np.float32), np.zeros(2, np.uint8)], axis=2)
    assert "y_scale has 2 elements, expected 4" in message


def test_error_blocked_shape():
    message = _import_error("DequantizeLinear", [X.astype(np.int8), np.ones((2, 3, 3), np.float32)], opset=21,
                            axis=2, block_size=3)
    assert "x_scale must have shape [2, 3, 2]" in message


def test_error_two_dimensional_scale_without_blocks():
    message = _import_error("QuantizeLinear", [X, np.ones((2, 3), np.float32)])
    assert "y_scale must be a scalar or a 1-D tensor" in message


def test_error_zero_point_type():
    message = _import_error("DequantizeLinear", [X.astype(np.int8), np.array(1.0, np.float32),
                                                 np.array(0, np.uint8)])
    assert "x_zero_point" in message


def test_error_output_dtype_disagrees_with_zero_point():
    message = _import_error("QuantizeLinear", [X, np.array(1.0, np.float32), np.array(0, np.uint8)], opset=21,
                            output_dtype=TensorProto.INT8)
    assert "output_dtype=int8" in message and "y_zero_point" in message


def test_error_float8_output_is_unsupported():
    message = _import_error("QuantizeLinear", [X, np.array(1.0, np.float32)], opset=21,
                            error=UnsupportedOpError, output_dtype=TensorProto.FLOAT8E4M3FN)
    assert "FLOAT8E4M3FN" in message


def test_error_conv_weight_zero_point_length():
    x, w = np.zeros((1, 2, 5, 5), np.uint8), np.zeros((4, 2, 3, 3), np.int8)
    message = _import_error("ConvInteger", [x, w, np.array(0, np.uint8), np.zeros(3, np.int8)], opset=10)
    assert "w_zero_point" in message and "4 elements" in message


def test_error_qlinear_conv_weight_scale_length():
    x, w = np.zeros((1, 2, 5, 5), np.uint8), np.zeros((4, 2, 3, 3), np.int8)
    f = np.array(0.1, np.float32)
    message = _import_error("QLinearConv", [x, f, np.array(0, np.uint8), w, np.ones(3, np.float32),
                                            np.zeros(4, np.int8), f, np.array(0, np.uint8)], opset=10)
    assert "w_scale" in message


def test_error_matmul_column_zero_point():
    a, b = np.zeros((3, 4), np.uint8), np.zeros((4, 5), np.int8)
    message = _import_error("MatMulInteger", [a, b, np.array(0, np.uint8), np.zeros(4, np.int8)], opset=10)
    assert "b_zero_point" in message and "5 elements" in message


def test_kernel_errors_name_the_input():
    """A hostile program reaches the kernels unchecked by type rules."""
    attrs = {"axis": 1, "block_size": 0, "output_dtype": None, "precision": None}
    with pytest.raises(KernelError, match="y_zero_point"):
        run_kernel("QuantizeLinear", [X, np.ones(3, np.float32), np.zeros(2, np.uint8)], attrs)
    with pytest.raises(KernelError, match="b_zero_point"):
        run_kernel("MatMulInteger", [np.zeros((2, 3), np.uint8), np.zeros((3, 4), np.uint8), None,
                                     np.zeros(3, np.uint8)], {})
    with pytest.raises(KernelError, match="y_zero_point must be int8 or uint8"):
        f = np.array(1.0, np.float32)
        run_kernel("QLinearMatMul", [np.zeros((2, 3), np.uint8), f, np.array(0, np.uint8), np.zeros((3, 4), np.uint8),
                                     f, np.array(0, np.uint8), f, np.array(0, np.int32)], {})


def test_conv_integer_on_a_winograd_shaped_layer_is_exact():
    """A 3x3 stride-1 layer with many channels is where the float conv uses
    Winograd; the integer ops must not (its transforms are not exact)."""
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, (1, 16, 48, 48)).astype(np.uint8)
    w = rng.integers(0, 256, (16, 16, 3, 3)).astype(np.uint8)
    (ours,) = assert_exact("ConvInteger", [x, w, np.array(7, np.uint8), np.array(3, np.uint8)], opset=10,
                           pads=[1, 1, 1, 1])
    assert ours.dtype == np.int32
