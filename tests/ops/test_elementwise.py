"""Element-wise ops against onnx's reference evaluator: random shapes and
broadcasts (hypothesis), per-dtype semantics (integer Div and Mod, mixed-dtype
Pow, half-to-even Round, shifts, casts to and from strings), old-opset Clip,
accepted dtypes against the ONNX schemas, and clear errors for ill-typed nodes."""
from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto

from compiler import backend
from compiler.errors import ModelImportError, UnsupportedOpError
from compiler.frontend import import_onnx
from ir.errors import ShapeError
from ir.graph import Graph
from ir.registry import get_op, with_defaults
from ir.types import TensorType
from runtime.kernels import run_kernel
from runtime.kernels.elementwise import _apply, _erf, _gelu, _gelu_tanh, _sigmoid, _tanh
from runtime.kernels.fused_interpreter import BLOCK
from tests.helpers.node_models import assert_matches_reference, make_node_model

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
F32 = np.float32


def _random(shape, seed=0, dtype=np.float32, scale=2.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def _run(op, inputs, opset=23, consts=(), **attrs):
    model = make_node_model(op, inputs, opset=opset, consts=consts, **attrs)
    feeds = {f"in{i}": x for i, x in enumerate(inputs) if x is not None and i not in consts}
    return backend.prepare(model, check=True, strict_types=True).run(feeds)


@st.composite
def broadcast_shapes(draw, count: int):
    """``count`` shapes that broadcast together: suffixes of one shape with
    some dims set to 1."""
    full = draw(st.lists(st.integers(1, 4), min_size=0, max_size=4))
    shapes = []
    for _ in range(count):
        rank = draw(st.integers(0, len(full)))
        suffix = full[len(full) - rank:]
        shapes.append(tuple(1 if draw(st.booleans()) else d for d in suffix))
    return shapes


def _consts(draw, count: int) -> tuple:
    """A random subset of the inputs made initializers (constants to Tessera)."""
    return tuple(i for i in range(count) if draw(st.booleans()))


# ---------------------------------------------------------------- hypothesis vs the reference
BINARY = ["Add", "Sub", "Mul", "Div", "Pow", "Mod", "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"]


@st.composite
def binary_cases(draw):
    op = draw(st.sampled_from(BINARY))
    shapes = draw(broadcast_shapes(2))
    seed = draw(st.integers(0, 999))
    a, b = (_random(s, seed + i) for i, s in enumerate(shapes))
    attrs = {}
    if op == "Pow":
        a = np.abs(a) + F32(0.5)
    if op == "Mod":
        attrs["fmod"] = 1
    if op in ("Div", "Mod"):
        b = np.where(np.abs(b) < 0.1, F32(1), b).astype(F32)
    return op, [a, b], _consts(draw, 2), attrs


@given(binary_cases())
@SETTINGS
def test_binary_broadcast_matches_reference(case):
    op, inputs, consts, attrs = case
    assert_matches_reference(op, inputs, consts=consts, rtol=1e-5, atol=1e-5, **attrs)


@given(op=st.sampled_from(["Sum", "Mean", "Max", "Min"]), count=st.integers(1, 4), data=st.data())
@SETTINGS
def test_variadic_broadcast_matches_reference(op, count, data):
    """Mean against numpy: the reference accumulates in place into the first
    input, which fails when that input is the smaller one."""
    shapes = data.draw(broadcast_shapes(count))
    inputs = [_random(s, i) for i, s in enumerate(shapes)]
    consts = _consts(data.draw, count)
    if op != "Mean":
        assert_matches_reference(op, inputs, consts=consts)
        return
    (got,) = _run(op, inputs, consts=consts)
    want = (sum(np.broadcast_arrays(*inputs)) / F32(count)).astype(F32)
    assert got.dtype == F32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6)


@given(shapes=broadcast_shapes(3), seed=st.integers(0, 99), dtype=st.sampled_from([np.float32, np.int64]))
@SETTINGS
def test_where_broadcasts_three_inputs(shapes, seed, dtype):
    rng = np.random.default_rng(seed)
    condition = rng.random(shapes[0]) < 0.5
    x, y = (_random(s, seed + i).astype(dtype) for i, s in enumerate(shapes[1:]))
    assert_matches_reference("Where", [condition, x, y])


@given(x_shape=st.lists(st.integers(1, 4), min_size=1, max_size=4), data=st.data())
@SETTINGS
def test_prelu_slope_broadcasts_to_input(x_shape, data):
    rank = data.draw(st.integers(0, len(x_shape)))
    slope_shape = [1 if data.draw(st.booleans()) else d for d in x_shape[len(x_shape) - rank:]]
    x, slope = _random(x_shape, 1), _random(slope_shape, 2)
    assert_matches_reference("PRelu", [x, slope], consts=(1,) if data.draw(st.booleans()) else ())


UNARY_FLOAT = ["Sqrt", "Exp", "Log", "Neg", "Abs", "Reciprocal", "Floor", "Ceil", "Round", "Erf", "Sin", "Cos",
               "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Tanh", "Sign", "Relu",
               "Sigmoid", "HardSwish", "Softplus", "Softsign", "Mish"]
ACTIVATIONS = [("LeakyRelu", {"alpha": 0.1}), ("Elu", {"alpha": 0.7}), ("Selu", {}), ("Celu", {"alpha": 2.0}),
               ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}), ("ThresholdedRelu", {"alpha": 0.5}),
               ("Shrink", {"bias": 0.25, "lambd": 0.6}), ("Gelu", {}), ("Gelu", {"approximate": "tanh"}),
               ("Clip", {})]


@given(op=st.sampled_from(UNARY_FLOAT + ACTIVATIONS), shape=st.lists(st.integers(0, 5), max_size=3),
       seed=st.integers(0, 99), dtype=st.sampled_from([np.float32, np.float64]))
@SETTINGS
def test_unary_float_matches_reference(op, shape, seed, dtype):
    op, attrs = op if isinstance(op, tuple) else (op, {})
    assume(shape or op != "Softsign")  # the reference's Softsign fails on 0-d inputs
    x = _random(shape, seed, dtype)
    (got,) = assert_matches_reference(op, [x], rtol=1e-5, atol=1e-6, **attrs)
    assert got.dtype == dtype


@pytest.mark.parametrize("op", ["Sigmoid", "Elu", "Gelu", "Softplus", "HardSwish", "Erf", "Tanh"])
def test_float16_stays_float16(op):
    x = _random((3, 5), 4, np.float16)
    (got,) = assert_matches_reference(op, [x], rtol=2e-3, atol=2e-3)
    assert got.dtype == np.float16


@pytest.mark.parametrize("op", ["Relu", "Sigmoid", "Elu", "Exp", "Neg", "Clip", "Sum", "IsNaN"])
def test_scalar_inputs_give_arrays(op):
    (got,) = run_kernel(op, [np.array(-0.5, F32)], with_defaults(op, {}))
    assert isinstance(got, np.ndarray) and got.shape == ()


def test_special_values():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, 88.0, -88.0, 1e4, -1e4], F32)
    for op in ["Sigmoid", "Softplus", "Elu", "Selu", "HardSigmoid", "Softsign", "Erf", "Gelu", "LeakyRelu",
               "Celu", "ThresholdedRelu", "Shrink"]:
        assert_matches_reference(op, [x])


# ---------------------------------------------------------------- per-dtype semantics
@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint32])
def test_integer_div_truncates_toward_zero(dtype):
    a = np.array([7, -7, 7, -7, 6, 0, -1, 100], dtype=np.int64)
    b = np.array([2, 2, -2, -2, 3, 5, 3, -7], dtype=np.int64)
    if np.dtype(dtype).kind == "u":
        a, b = np.abs(a), np.abs(b)
    (got,) = assert_matches_reference("Div", [a.astype(dtype), b.astype(dtype)])
    assert got.dtype == dtype


@pytest.mark.parametrize("fmod", [0, 1])
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.int8, np.uint16, np.float32, np.float64])
def test_mod_sign_rules(fmod, dtype):
    a = np.array([5, -5, 5, -5, 7, 0, 3], dtype=np.float64)
    b = np.array([3, 3, -3, -3, 7, 2, -1], dtype=np.float64)
    if np.dtype(dtype).kind == "u":
        a, b = np.abs(a), np.abs(b)
    if np.dtype(dtype).kind == "f":
        a, b = a * 1.5, b * 1.25
    assert_matches_reference("Mod", [a.astype(dtype), b.astype(dtype)], fmod=fmod)


@pytest.mark.parametrize("base,exponent", [
    (np.array([1.5, 2.0, -3.0], F32), np.array([2, 3, 2], np.int64)),
    (np.array([1.5, 2.0, 3.0], F32), np.array([0.5, -1.0, 2.0], np.float64)),
    (np.array([2, 3, -4], np.int32), np.array([2.0, 0.5, 3.0], F32)),
    (np.array([2, 3, -4], np.int64), np.array([3, 2, 5], np.int8)),
    (np.array([2, 3, -4], np.int32), np.array([3, 2, 5], np.int64)),
    (np.array([1.5, 0.25], np.float16), np.array([2.0, 3.0], F32)),
    (np.array([[1.5], [2.0]], np.float64), np.array([1, 2, 3], np.uint8)),
])
def test_pow_mixed_dtypes_keep_base_dtype(base, exponent):
    (got,) = assert_matches_reference("Pow", [base, exponent])
    assert got.dtype == base.dtype


def test_pow_negative_integer_exponent():
    base, exponent = np.array([2, 1, -1, -1, 5], np.int64), np.array([-1, -3, -3, -2, 2], np.int64)
    (got,) = _run("Pow", [base, exponent])
    np.testing.assert_array_equal(got, [0, 1, -1, 1, 25])


def test_round_half_to_even():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, 2.6, -2.6], F32)
    (got,) = assert_matches_reference("Round", [x])
    np.testing.assert_array_equal(got, [0, 2, 2, -0, -2, -2, 2, 3, -3])


@pytest.mark.parametrize("direction", ["LEFT", "RIGHT"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint32, np.uint64, np.int8, np.int64])
def test_bitshift_out_of_range_amounts(direction, dtype):
    bits = np.dtype(dtype).itemsize * 8
    x = np.array([1, 3, 100, 7, 5, 9], dtype=dtype)
    if np.dtype(dtype).kind == "i":
        x[3] = -7
    y = np.array([0, 1, 2, bits - 1, bits, bits + 3], dtype=dtype)
    expected = _bitshift_expected(x, y, direction)
    (got,) = _run("BitShift", [x, y], opset=23 if np.dtype(dtype).kind == "u" else 28, direction=direction)
    np.testing.assert_array_equal(got, expected)


def _bitshift_expected(x, y, direction):
    """Python-int arithmetic reduced to the dtype's width (ONNX BitShift-28)."""
    bits = x.dtype.itemsize * 8
    out = []
    for a, b in zip(x.tolist(), y.tolist()):
        if direction == "LEFT":
            out.append(a << b if 0 <= b < bits else 0)
        else:
            out.append(a >> b if 0 <= b < bits else (-1 if a < 0 else 0))
    return np.array([v % (1 << bits) for v in out], dtype=np.uint64).astype(x.dtype)


@pytest.mark.parametrize("op", ["BitwiseAnd", "BitwiseOr", "BitwiseXor"])
def test_bitwise_binary(op):
    a, b = np.array([[12, -7, 0]], np.int16), np.array([[10], [-1]], np.int16)
    assert_matches_reference(op, [a, b])


@pytest.mark.parametrize("op", ["And", "Or", "Xor"])
def test_logic_broadcast(op):
    a, b = np.array([[True, False, True]]), np.array([[True], [False]])
    assert_matches_reference(op, [a, b])


def test_unary_logic_and_integer_ops():
    assert_matches_reference("Not", [np.array([True, False])])
    assert_matches_reference("BitwiseNot", [np.array([0, 5, -3], np.int32)])
    assert_matches_reference("Abs", [np.array([-128, -3, 4], np.int8)])
    assert_matches_reference("Sign", [np.array([-3, 0, 4], np.int64)])
    assert_matches_reference("Relu", [np.array([-3, 0, 4], np.int32)])
    assert_matches_reference("Shrink", [np.array([-3, 0, 3], np.int8)], bias=1.5, lambd=1.0)


@pytest.mark.parametrize("negative,positive", [(1, 1), (1, 0), (0, 1), (0, 0)])
def test_isinf_detect_flags(negative, positive):
    x = np.array([np.inf, -np.inf, np.nan, 1.0], F32)
    assert_matches_reference("IsInf", [x], detect_negative=negative, detect_positive=positive)
    assert_matches_reference("IsNaN", [x])


def test_equal_on_strings():
    a = np.array(["a", "bc", ""], dtype=object)
    b = np.array(["a", "b", ""], dtype=object)
    (got,) = _run("Equal", [a, b], opset=19)
    np.testing.assert_array_equal(got, [True, False, True])


def test_where_on_strings():
    condition = np.array([True, False])
    (got,) = _run("Where", [condition, np.array(["x", "y"], object), np.array(["p", "q"], object)])
    assert got.dtype == object and got.tolist() == ["x", "q"]


# ---------------------------------------------------------------- Clip: old attributes, optional inputs
@pytest.mark.parametrize("attrs", [{"min": -0.5, "max": 0.5}, {"max": 0.25}, {"min": 0.0}, {}])
def test_clip_before_opset_11_takes_attributes(attrs):
    x = _random((2, 3, 4), 5)
    (got,) = assert_matches_reference("Clip", [x], opset=7, **attrs)
    np.testing.assert_array_equal(got, np.clip(x, attrs.get("min", -np.inf), attrs.get("max", np.inf)))


@pytest.mark.parametrize("dtype", [np.float32, np.int8, np.int64, np.uint8])
@pytest.mark.parametrize("which", ["both", "min", "max"])
def test_clip_optional_inputs(dtype, which):
    x = (_random((3, 4), 2) * 10).astype(dtype)
    low = np.array(2 if np.dtype(dtype).kind == "u" else -3, dtype)
    high = np.array(5, dtype)
    inputs = {"both": [x, low, high], "min": [x, low], "max": [x, None, high]}[which]
    assert_matches_reference("Clip", inputs, opset=13)
    assert_matches_reference("Clip", inputs, opset=13, consts=(1, 2))


def test_clip_min_above_max_gives_max():
    x = np.array([-2.0, 0.0, 2.0], F32)
    assert_matches_reference("Clip", [x, np.array(1.0, F32), np.array(-1.0, F32)], opset=13)


# ---------------------------------------------------------------- Cast and CastLike
NUMERIC_DTYPES = [np.float32, np.float64, np.float16, np.int8, np.int16, np.int32, np.int64, np.uint8,
                  np.uint16, np.uint32, np.uint64, np.bool_]


@pytest.mark.parametrize("source", NUMERIC_DTYPES)
@pytest.mark.parametrize("target", [np.float32, np.float16, np.int32, np.uint8, np.int64, np.bool_, np.float64])
def test_cast_numeric(source, target):
    x = np.array([[0, 1, 3, 7], [2, 0, 5, 100]], dtype=np.float64) * 1.25
    (got,) = assert_matches_reference("Cast", [x.astype(source)], to=onnx.helper.np_dtype_to_tensor_dtype(
        np.dtype(target)))
    assert got.dtype == target


def test_cast_like_takes_the_dtype_of_its_second_input():
    x = _random((2, 3), 1)
    for like in (np.zeros(1, np.int32), np.zeros((), np.float16), np.zeros(2, np.bool_)):
        (got,) = assert_matches_reference("CastLike", [x, like])
        assert got.dtype == like.dtype


def test_cast_from_strings():
    x = np.array(["1.5", "INF", "-inf", "+INF", "NaN", "1e-5", "-3"], dtype=object)
    (got,) = _run("Cast", [x], to=TensorProto.FLOAT)
    np.testing.assert_array_equal(got, np.array([1.5, np.inf, -np.inf, np.inf, np.nan, 1e-5, -3], F32))
    (got,) = _run("Cast", [np.array(["12", "-7", "100.5"], dtype=object)], to=TensorProto.INT64)
    np.testing.assert_array_equal(got, [12, -7, 100])


def test_cast_to_strings():
    (got,) = _run("Cast", [np.array([1.5, -2.0, 0.1], F32)], to=TensorProto.STRING)
    assert got.dtype == object and got.tolist() == ["1.5", "-2.0", "0.1"]
    (got,) = _run("Cast", [np.array([3, -4], np.int32)], to=TensorProto.STRING)
    assert got.tolist() == ["3", "-4"]


def test_cast_of_a_constant_folds():
    model = make_node_model("Cast", [np.array([1.7, -2.2], F32)], consts=(0,), to=TensorProto.INT32)
    graph = import_onnx(model)
    assert not graph.nodes
    np.testing.assert_array_equal(graph.outputs[0].const, np.array([1, -2], np.int32))


def test_cast_to_a_type_numpy_lacks_is_unsupported():
    model = make_node_model("Cast", [np.zeros(2, F32)], to=TensorProto.BFLOAT16)
    with pytest.raises(UnsupportedOpError, match="BFLOAT16"):
        import_onnx(model)


# ---------------------------------------------------------------- accepted dtypes == ONNX schemas
IR_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
             "tensor(int8)": np.int8, "tensor(int16)": np.int16, "tensor(int32)": np.int32,
             "tensor(int64)": np.int64, "tensor(uint8)": np.uint8, "tensor(uint16)": np.uint16,
             "tensor(uint32)": np.uint32, "tensor(uint64)": np.uint64, "tensor(bool)": np.bool_,
             "tensor(string)": object}
SCHEMA_OPS = ["Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Neg", "Abs", "Reciprocal", "Floor", "Ceil",
              "Round", "Erf", "Sin", "Cos", "Max", "Min", "Sum", "Mean", "Mod", "Relu", "LeakyRelu", "PRelu",
              "Elu", "Selu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Softplus", "Clip", "Gelu", "Not",
              "And", "Or", "Xor", "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Where", "Cast",
              "Sign", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "IsNaN", "IsInf",
              "Softsign", "Celu", "ThresholdedRelu", "Mish", "Shrink", "BitShift", "BitwiseAnd", "BitwiseOr",
              "BitwiseXor", "BitwiseNot", "Swish"]
REQUIRED_ATTRS = {"Cast": {"to": "float32"}, "BitShift": {"direction": "LEFT"}}


def _schema_dtypes(op: str) -> set:
    """The IR dtypes ONNX's newest schema allows for the op's data input."""
    schema = onnx.defs.get_schema(op)
    data = schema.inputs[1 if op == "Where" else 0]
    constraint = next(c for c in schema.type_constraints if c.type_param_str == data.type_str)
    return {np.dtype(IR_DTYPES[t]) for t in constraint.allowed_type_strs if t in IR_DTYPES}


def _accepts(op: str, dtype: np.dtype) -> bool:
    graph = Graph("probe")
    data = graph.add_input("x", TensorType([2], dtype))
    inputs = [data] * get_op(op).inputs[0]
    if op == "Where":
        inputs[0] = graph.add_input("c", TensorType([2], np.bool_))
    if op == "Pow":
        inputs[1] = graph.add_input("e", TensorType([2], np.float32))
    try:
        graph.add_node(op, inputs, with_defaults(op, REQUIRED_ATTRS.get(op, {})))
    except ShapeError:
        return False
    return True


@pytest.mark.parametrize("op", SCHEMA_OPS)
def test_accepted_dtypes_match_onnx_schema(op):
    accepted = {np.dtype(d) for d in IR_DTYPES.values() if _accepts(op, np.dtype(d))}
    assert accepted == _schema_dtypes(op)


# ---------------------------------------------------------------- errors name the node
def _named_model(op, inputs, name="the_node", **attrs):
    model = make_node_model(op, inputs, **attrs)
    model.graph.node[0].name = name
    return model


@pytest.mark.parametrize("op", ["Add", "Mul", "Max", "Equal", "Where", "PRelu", "BitwiseAnd"])
def test_mismatched_dtypes_name_the_node(op):
    a, b = np.zeros(3, F32), np.zeros(3, np.int64)
    if op == "BitwiseAnd":
        a = a.astype(np.int32)
    inputs = [np.zeros(3, bool), a, b] if op == "Where" else [a, b]
    with pytest.raises(ModelImportError, match=rf"{op} node 'the_node'.*dtype"):
        import_onnx(_named_model(op, inputs))


@pytest.mark.parametrize("op,inputs,attrs,message", [
    ("Sqrt", [np.zeros(2, np.int32)], {}, "input 0 has dtype i32"),
    ("And", [np.zeros(2, F32), np.zeros(2, F32)], {}, "takes bool"),
    ("Where", [np.zeros(2, F32), np.zeros(2, F32), np.zeros(2, F32)], {}, "input 0 has dtype f32"),
    ("Add", [np.zeros((2, 3), F32), np.zeros((4,), F32)], {}, "do not broadcast"),
    ("PRelu", [np.zeros((2, 3), F32), np.zeros((2, 1, 3), F32)], {}, "does not broadcast to input"),
    ("Clip", [np.zeros(3, F32), np.zeros((), np.float64)], {"opset": 13}, "min .* must match"),
    ("Clip", [np.zeros(3, F32), np.zeros(2, F32)], {"opset": 13}, "must be a single value"),
    ("Gelu", [np.zeros(3, F32)], {"approximate": "fast"}, "approximate='fast'"),
    ("BitShift", [np.zeros(3, np.uint8)] * 2, {"direction": "UP"}, "direction='UP'"),
    ("Mod", [np.zeros(3, np.int32)] * 2, {"fmod": 2}, "fmod=2"),
])
def test_ill_typed_nodes_give_clear_errors(op, inputs, attrs, message):
    with pytest.raises(ModelImportError, match=rf"{op} node 'the_node'.*{message}"):
        import_onnx(_named_model(op, inputs, **attrs))


def test_activation_ufuncs_compute_in_the_inputs_dtype_whatever_ran_before():
    """numpy takes the first registered loop its inputs cast to safely: with
    a float64 loop compiled first (an earlier float64 model), float32 data
    was computed in float64 and rounded once, 1 ulp off the float32 kernels
    (the fused element-wise kernel among them)."""
    from numba import vectorize

    @vectorize()
    def scaled_square(x, alpha, beta):
        return x * (alpha * x + beta)

    x = _random(4000, seed=3)
    _apply(scaled_square, x.astype(np.float64), 1.0 / 6.0, 0.5)  # the float64 loop registers first
    assert scaled_square.types[0] == "ddd->d"
    f = F32
    expected = x * (f(1.0 / 6.0) * x + f(0.5))  # float32 throughout
    actual = _apply(scaled_square, x, 1.0 / 6.0, 0.5)
    assert actual.dtype == np.float32
    np.testing.assert_array_equal(actual.view(np.uint32), expected.view(np.uint32))
    in_float64 = (x.astype(np.float64) * (1.0 / 6.0 * x.astype(np.float64) + 0.5)).astype(np.float32)
    assert (in_float64 != expected).any()  # the check above can tell the two apart


_UFUNCS = {"Tanh": _tanh, "Sigmoid": _sigmoid, "Erf": _erf}
"""The activations' Numba ufuncs (a float32 step runs the interpreter instead)."""


@pytest.mark.parametrize("op, exact", [("Tanh", np.tanh), ("Sigmoid", lambda v: 1.0 / (1.0 + np.exp(-v))),
                                       ("Erf", np.frompyfunc(math.erf, 1, 1))])
def test_float32_tanh_sigmoid_and_erf_round_the_float64_result_once(op, exact):
    """Their float32 form (a vectorised exp or polynomial in float64,
    rounded once) gives the float64 libm result correctly rounded, across
    magnitudes and at the special values (signed zeros, infinities, NaN,
    denormals); so does the interpreter's, which a step runs (and a schedule)."""
    rng = np.random.default_rng(11)
    x = (rng.standard_normal(1 << 18) * rng.choice([1e-30, 1e-6, 0.01, 1.0, 8.0, 40.0, 1e4], 1 << 18))
    x = np.concatenate([x, [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-40, 88.7, -88.7, -103.9, 3e38]])
    x = x.astype(np.float32)
    if op == "Erf":  # every tenth float32 between 0.5 and 4, where erf bends to 1
        step = np.arange(np.float32(0.5).view(np.int32), np.float32(4.0).view(np.int32), 10, dtype=np.int32)
        x = np.concatenate([x, step.view(np.float32), -step.view(np.float32)])
    with np.errstate(all="ignore"):
        want = exact(x.astype(np.float64)).astype(np.float64).astype(np.float32)
    for got in (run_kernel(op, [x], {})[0], _apply(_UFUNCS[op], x)):
        assert got.dtype == np.float32
        same = (got == want) & (np.signbit(got) == np.signbit(want)) | (np.isnan(got) & np.isnan(want))
        assert same.all(), f"{op}: {x[~same][:4]} give {got[~same][:4]}, want {want[~same][:4]}"


def _gelu_reference(x: np.ndarray, approximate: str) -> np.ndarray:
    """float32 GELU from float64 references accurate in both tails: 0.5 x
    erfc(-x / sqrt 2) (scipy's erfc keeps its relative accuracy where
    1 + erf cancels), or x * sigmoid(2u) for the tanh form, rounded once."""
    special = pytest.importorskip("scipy.special")
    v = x.astype(np.float64)
    with np.errstate(all="ignore"):
        if approximate == "tanh":
            return (v * special.expit(2.0 * np.sqrt(2.0 / np.pi) * (v + 0.044715 * v ** 3))).astype(np.float32)
        return (0.5 * v * special.erfc(-v / np.sqrt(2.0))).astype(np.float32)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_float32_gelu_is_correctly_rounded_in_both_tails(approximate):
    """Both forms compute in float64 with a relative error near 1e-14 and
    round once: the reference's float32 at every value checked (71 M of
    them, every 31st float32 in [-16, 16], in the session that wrote
    them), the lower tail included (libm's erf in float64 lost it: GELU(-7)
    was 1 ulp or more off, GELU(-9) 0; the tanh form's 1 + tanh likewise).
    GELU(-inf) is NaN, as onnxruntime's. The per-step kernel (the ufunc on small
    arrays, the interpreter on large ones: blocks with no element in the
    tail, a few, and many) and the ufunc agree bit for bit."""
    rng = np.random.default_rng(12)
    unit = rng.standard_normal(2 * BLOCK)  # a few elements in the tail a block
    scaled = rng.standard_normal(1 << 14) * rng.choice([1e-30, 1e-6, 0.01, 1.0, 8.0, 40.0, 1e4], 1 << 14)
    tail = np.arange(np.float32(2.0).view(np.int32), np.float32(15.0).view(np.int32), 211, dtype=np.int32)
    specials = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-40, 3e38, -3e38, -8.3, -14.9, -20.0]
    x = np.concatenate([unit, np.abs(unit), -tail.view(np.float32), scaled, specials]).astype(np.float32)
    x[-200::7] = np.array([0x7FC00001, 0xFFC12345], np.uint32).view(np.float32)[np.arange(29) % 2]  # NaNs, payloads
    want = _gelu_reference(x, approximate)
    ufunc = _gelu_tanh if approximate == "tanh" else _gelu
    with np.errstate(all="ignore"):
        results = {"step": run_kernel("Gelu", [x], {"approximate": approximate})[0], "ufunc": _apply(ufunc, x),
                   "small step": np.concatenate([run_kernel("Gelu", [part], {"approximate": approximate})[0]
                                                 for part in np.array_split(x, x.size // 500)])}
    for name, got in results.items():
        assert got.dtype == np.float32
        same = (got.view(np.int32) == want.view(np.int32)) | (np.isnan(got) & np.isnan(want))
        assert same.all(), f"{name}: {x[~same][:4]} give {got[~same][:4]}, want {want[~same][:4]}"
        np.testing.assert_array_equal(got.view(np.int32), results["ufunc"].view(np.int32))  # NaNs' bits too
    got = results["step"]
    nan = np.isnan(x)
    np.testing.assert_array_equal(got[nan].view(np.int32), x[nan].view(np.int32))  # a NaN passes through
    assert np.isnan(got[x == -np.inf]).all() and got[x == np.inf][0] == np.inf
    assert (got[(x < -5) & (x > -9)] < 0).all()  # the tail is kept: tiny, not zero
