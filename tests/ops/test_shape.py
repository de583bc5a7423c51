"""Shape and data-movement ops against onnx's reference evaluator (and
onnxruntime where the reference cannot run, negative pads, or departs from
the spec, Slice), in their newest and old-opset forms, with constant and
runtime parameter inputs, and their errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from compiler import backend
from compiler.errors import ModelImportError, UnsupportedOpError
from compiler.frontend import import_onnx
from runtime.errors import ExecutionError, KernelError, TesseraError
from runtime.kernels import run_kernel
from runtime.kernels.limits import MAX_ELEMENTS
from tests.helpers.node_models import assert_matches_reference, make_node_model, node_feeds, run_onnxruntime

INT_MAX, INT_MIN = 2**63 - 1, -2**63
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SHAPES = st.lists(st.integers(0, 4), min_size=1, max_size=3)


def data(shape, dtype=np.float32) -> np.ndarray:
    return np.arange(math.prod(shape)).astype(dtype).reshape(shape)


def ints(values) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def params(draw, count: int) -> tuple[int, ...]:
    """Parameter inputs 1..count as constants, or all left as runtime inputs."""
    return tuple(range(1, count + 1)) if draw(st.booleans()) else ()


def prepare(op, inputs, num_outputs=1, opset=23, consts=(), **attrs):
    return backend.prepare(make_node_model(op, inputs, num_outputs, opset, consts, **attrs), check=True,
                           strict_types=True)


def run(op, inputs, num_outputs=1, opset=23, consts=(), **attrs):
    feeds = {f"in{i}": x for i, x in enumerate(inputs) if x is not None and i not in consts}
    return prepare(op, inputs, num_outputs, opset, consts, **attrs).run(feeds)


# ---------------------------------------------------------------- hypothesis vs the reference
@st.composite
def slice_cases(draw):
    shape = draw(SHAPES)
    rank = len(shape)
    axes = draw(st.permutations(range(rank)))[:draw(st.integers(1, rank))]
    axes = [a - rank if draw(st.booleans()) else a for a in axes]
    bound = st.one_of(st.integers(-7, 7), st.sampled_from([INT_MAX, INT_MIN]))
    starts = [draw(bound) for _ in axes]
    ends = [draw(bound) for _ in axes]
    steps = [draw(st.sampled_from([-3, -2, -1, 1, 2, 3])) for _ in axes]
    ends = [INT_MIN if e == INT_MAX and step < 0 else e for e, step in zip(ends, steps)]  # onnxruntime quirk, below
    inputs = [data(shape), ints(starts), ints(ends), ints(axes), ints(steps)]
    if draw(st.booleans()) and all(s == 1 for s in steps) and axes == list(range(len(axes))):
        inputs = inputs[:3]
    return inputs, params(draw, len(inputs) - 1)


@given(slice_cases())
@SETTINGS
def test_slice_matches_onnxruntime(case):
    """onnxruntime, not the reference evaluator: the reference slices the
    Python way, which keeps nothing for a negative step from below -dim."""
    inputs, consts = case
    (got,) = run("Slice", inputs, consts=consts)
    want = _onnxruntime("Slice", inputs, consts=consts)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_slice_negative_step_from_below_minus_dim_starts_at_zero():
    x = data([5])
    for consts in ((), (1, 2, 3, 4)):
        (got,) = run("Slice", [x, ints([-100]), ints([INT_MIN]), ints([0]), ints([-2])], consts=consts)
        np.testing.assert_array_equal(got, [0.0])


def test_slice_negative_step_to_int_max_is_empty():
    """The spec clamps the end to dim-1 (onnx shape inference and the reference
    agree); onnxruntime alone reads INT_MAX as "to the beginning" here."""
    inputs = [data([5]), ints([4]), ints([INT_MAX]), ints([0]), ints([-1])]
    for consts in ((), (1, 2, 3, 4)):
        (got,) = assert_matches_reference("Slice", inputs, consts=consts)
        assert got.shape == (0,)


@st.composite
def pad_cases(draw):
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    mode = draw(st.sampled_from(["constant", "reflect", "edge", "wrap"]))
    rank = len(shape)
    axes = sorted(draw(st.permutations(range(rank)))[:draw(st.integers(1, rank))])
    if draw(st.booleans()):
        axes = list(range(rank))
    pads = [draw(st.integers(0, 7)) for _ in range(2 * len(axes))]
    value = np.array(draw(st.sampled_from([0.0, 1.5, -2.0])), np.float32) if mode == "constant" else None
    inputs = [data(shape), ints(pads), value]
    if len(axes) < rank:
        inputs.append(ints([a - rank if draw(st.booleans()) else a for a in axes]))
    while inputs[-1] is None:
        inputs.pop()
    return inputs, mode, params(draw, len(inputs) - 1)


@given(pad_cases())
@SETTINGS
def test_pad_matches_reference(case):
    inputs, mode, consts = case
    assert_matches_reference("Pad", inputs, consts=consts, mode=mode)


@given(st.lists(st.integers(1, 3), min_size=0, max_size=4), st.data())
@SETTINGS
def test_transpose_matches_reference(shape, draw):
    perm = draw.draw(st.one_of(st.none(), st.permutations(range(len(shape)))))
    attrs = {} if perm is None or not shape else {"perm": list(perm)}
    assert_matches_reference("Transpose", [data(shape)], **attrs)


@given(SHAPES, st.data())
@SETTINGS
def test_concat_matches_reference(shape, draw):
    axis = draw.draw(st.integers(-len(shape), len(shape) - 1))
    dtype = draw.draw(st.sampled_from([np.float32, np.int64]))
    inputs = []
    for _ in range(draw.draw(st.integers(1, 3))):
        part = list(shape)
        part[axis] = draw.draw(st.integers(0, 3))
        inputs.append(data(part, dtype))
    assert_matches_reference("Concat", inputs, axis=axis)


@st.composite
def split_cases(draw):
    shape = draw(SHAPES)
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    dim = shape[axis]
    if draw(st.booleans()):
        cuts = sorted(draw(st.lists(st.integers(0, dim), min_size=0, max_size=3)))
        sizes = [b - a for a, b in zip([0] + cuts, cuts + [dim])]
        return [data(shape), ints(sizes)], len(sizes), {"axis": axis}, params(draw, 1)
    count = draw(st.integers(1, 4).filter(lambda n: dim - -(-dim // n) * (n - 1) >= 0))
    return [data(shape)], count, {"axis": axis, "split_into": count}, ()


@given(split_cases())
@SETTINGS
def test_split_matches_reference(case):
    inputs, count, attrs, consts = case
    split_into = attrs.pop("split_into", None)
    if split_into is None:
        assert_matches_reference("Split", inputs, num_outputs=count, consts=consts, **attrs)
        return
    model = make_node_model("Split", inputs, count, 18, **attrs)
    model.graph.node[0].attribute.append(helper.make_attribute("num_outputs", split_into))
    ours = backend.prepare(model, check=True, strict_types=True).run({"in0": inputs[0]})
    for got, want in zip(ours, ReferenceEvaluator(model).run(None, {"in0": inputs[0]})):
        np.testing.assert_array_equal(got, want)
        assert got.shape == want.shape


@given(st.lists(st.integers(1, 3), min_size=0, max_size=4), st.data())
@SETTINGS
def test_squeeze_matches_reference(shape, draw):
    x = data(shape)
    ones = [i for i, d in enumerate(shape) if d == 1]
    if not ones or draw.draw(st.booleans()):
        assert_matches_reference("Squeeze", [x])
        return
    axes = draw.draw(st.permutations(ones))[:draw.draw(st.integers(1, len(ones)))]
    axes = [a - len(shape) if draw.draw(st.booleans()) else a for a in axes]
    assert_matches_reference("Squeeze", [x, ints(axes)], consts=params(draw.draw, 1))


@given(st.lists(st.integers(0, 3), min_size=0, max_size=3), st.data())
@SETTINGS
def test_unsqueeze_matches_reference(shape, draw):
    rank = len(shape) + draw.draw(st.integers(1, 3))
    axes = draw.draw(st.permutations(range(rank)))[:rank - len(shape)]
    axes = [a - rank if draw.draw(st.booleans()) else a for a in axes]
    assert_matches_reference("Unsqueeze", [data(shape), ints(axes)], consts=params(draw.draw, 1))


@given(st.lists(st.integers(1, 3), min_size=0, max_size=3), st.data())
@SETTINGS
def test_expand_matches_reference(shape, draw):
    shape = [d if draw.draw(st.booleans()) else 1 for d in shape]
    lead = draw.draw(st.lists(st.integers(1, 3), max_size=2))
    target = lead + [draw.draw(st.sampled_from([1, d, 3])) if d == 1 else draw.draw(st.sampled_from([1, d]))
                     for d in shape]
    assert_matches_reference("Expand", [data(shape), ints(target)], consts=params(draw.draw, 1))


@given(st.lists(st.integers(0, 3), min_size=1, max_size=3), st.data())
@SETTINGS
def test_tile_matches_reference(shape, draw):
    repeats = [draw.draw(st.integers(0, 3)) for _ in shape]
    assert_matches_reference("Tile", [data(shape, np.int64), ints(repeats)], consts=params(draw.draw, 1))


# ---------------------------------------------------------------- fixed cases of the other ops
@pytest.mark.parametrize("axis", [-3, -1, 0, 1, 3])
def test_flatten(axis):
    assert_matches_reference("Flatten", [data([2, 3, 4])], axis=axis)


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space_and_back(mode):
    x = data([2, 8, 3, 2])
    assert_matches_reference("DepthToSpace", [x], blocksize=2, mode=mode)
    (y,) = run("DepthToSpace", [x], blocksize=2, mode=mode)
    (back,) = run("SpaceToDepth", [y], opset=28, blocksize=2, mode=mode)
    np.testing.assert_array_equal(back, x)
    assert_matches_reference("SpaceToDepth", [y], opset=28, blocksize=2, mode=mode)


def test_space_to_depth_before_opset_28_is_dcr():
    assert_matches_reference("SpaceToDepth", [data([1, 2, 4, 6])], opset=13, blocksize=2)


@pytest.mark.parametrize("upper", [0, 1])
@pytest.mark.parametrize("k", [None, -5, -1, 0, 2, 9, INT_MAX])
def test_trilu(upper, k):
    inputs = [data([2, 3, 4])] if k is None else [data([2, 3, 4]), np.array(k, np.int64)]
    assert_matches_reference("Trilu", inputs, upper=upper)


@pytest.mark.parametrize("upper", [0, 1])
def test_trilu_clamps_extreme_k(upper):
    x = data([3, 4])
    (low,) = run_kernel("Trilu", [x, np.array(INT_MIN, np.int64)], {"upper": upper})
    (same,) = run_kernel("Trilu", [x, np.array(-3, np.int64)], {"upper": upper})
    np.testing.assert_array_equal(low, same)


@pytest.mark.parametrize("shape", [[], [0], [5], [2, 3], [2, 0, 3]])
def test_nonzero(shape):
    x = (data(shape) % 3 == 1) if shape else np.array(2.0, np.float32)
    assert_matches_reference("NonZero", [x])


@pytest.mark.parametrize("dtype, start, limit, delta", [
    (np.float32, 1.0, 5.5, 0.5), (np.float64, 3.0, -1.0, -0.7), (np.int32, 10, 4, -2), (np.int64, 0, 0, 3),
    (np.int16, -3, 7, 4), (np.float32, 0.0, 1.0, -1.0),
])
@pytest.mark.parametrize("const", [True, False])
def test_range(dtype, start, limit, delta, const):
    inputs = [np.array(v, dtype) for v in (start, limit, delta)]
    assert_matches_reference("Range", inputs, consts=(0, 1, 2) if const else ())


def test_range_float16_uses_the_stash_type():
    inputs = [np.array(v, np.float16) for v in (1000.0, 1010.0, 0.3)]
    assert_matches_reference("Range", inputs, opset=27)
    assert_matches_reference("Range", inputs, opset=27, stash_type=TensorProto.DOUBLE)


@pytest.mark.parametrize("value", [None, np.array([7], np.int32), np.array([1.5], np.float64)])
@pytest.mark.parametrize("shape", [[], [0], [2, 3]])
def test_constant_of_shape(value, shape):
    attrs = {} if value is None else {"value": helper.make_tensor("v", helper.np_dtype_to_tensor_dtype(value.dtype),
                                                                  [1], value.tolist())}
    assert_matches_reference("ConstantOfShape", [ints(shape)], **attrs)
    assert_matches_reference("ConstantOfShape", [ints(shape)], consts=(0,), **attrs)


@pytest.mark.parametrize("shape", [[], [0], [2, 3]])
def test_size_shape_identity(shape):
    x = data(shape, np.int64)
    assert_matches_reference("Size", [x])
    assert_matches_reference("Identity", [x])
    assert_matches_reference("Shape", [x], start=-1)
    assert_matches_reference("Shape", [x], start=1, end=INT_MAX)


@pytest.mark.parametrize("target", [[4, 6], [0, -1], [-1], [2, 0, 4], [0, 0, 2, 2]])
def test_reshape(target):
    assert_matches_reference("Reshape", [data([2, 3, 4]), ints(target)], consts=(1,))
    assert_matches_reference("Reshape", [data([2, 3, 4]), ints(target)])


def test_reshape_allowzero_keeps_zero_dims():
    assert_matches_reference("Reshape", [data([0, 3]), ints([3, 0])], allowzero=1)


# ---------------------------------------------------------------- old opset forms
def test_slice_opset9_attributes():
    x = data([3, 4, 5])
    assert_matches_reference("Slice", [x], opset=9, starts=[1, -3], ends=[INT_MAX, -1], axes=[0, 2])
    assert_matches_reference("Slice", [x], opset=9, starts=[0, 1], ends=[2, 3])


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad_opset10_attributes(mode):
    attrs = {"value": 2.5} if mode == "constant" else {}
    assert_matches_reference("Pad", [data([2, 3])], opset=10, pads=[1, 2, 0, 1], mode=mode, **attrs)


def test_pad_opset10_value_takes_the_data_type():
    assert_matches_reference("Pad", [data([2, 3], np.int32)], opset=10, pads=[1, 0, 0, 1], value=3.0)


def test_squeeze_and_unsqueeze_opset11_attributes():
    assert_matches_reference("Unsqueeze", [data([2, 3])], opset=11, axes=[-1, 0])
    assert_matches_reference("Squeeze", [data([1, 3, 1])], opset=11, axes=[-1])
    assert_matches_reference("Squeeze", [data([1, 3, 1])], opset=11)


def test_split_opset11_attributes():
    assert_matches_reference("Split", [data([2, 6])], num_outputs=3, opset=11, axis=1, split=[1, 2, 3])
    assert_matches_reference("Split", [data([2, 6])], num_outputs=3, opset=11, axis=-1)
    assert_matches_reference("Split", [data([6, 2])], num_outputs=2, opset=13)


@pytest.mark.parametrize("opset, mask_dtype", [(7, np.float32), (10, np.bool_), (12, np.bool_), (22, np.bool_)])
def test_dropout_is_identity_with_an_all_ones_mask(opset, mask_dtype):
    x = data([2, 3])
    attrs = {"ratio": 0.3} if opset < 12 else {"seed": 1}
    y, mask = run("Dropout", [x], num_outputs=2, opset=opset, **attrs)
    np.testing.assert_array_equal(y, x)
    assert mask.dtype == mask_dtype and mask.shape == x.shape and mask.all()


def test_dropout_training_mode():
    x = data([2, 3])
    off = [x, np.array(0.5, np.float32), np.array(False)]
    assert_matches_reference("Dropout", off, num_outputs=2, consts=(1, 2))
    assert_matches_reference("Dropout", off, num_outputs=2)
    zero = [x, np.array(0.0, np.float32), np.array(True)]
    assert_matches_reference("Dropout", zero, num_outputs=2, consts=(1, 2))
    with pytest.raises(UnsupportedOpError, match="training_mode"):
        prepare("Dropout", [x, np.array(0.5, np.float32), np.array(True)], consts=(1, 2))
    with pytest.raises(ExecutionError, match="training-mode Dropout"):
        run("Dropout", [x, np.array(0.5, np.float32), np.array(True)])


# ---------------------------------------------------------------- runtime parameters and folding
def test_runtime_parameters_give_unknown_dims_with_known_rank():
    x = data([3, 4])
    rep = prepare("Slice", [x, ints([1]), ints([3]), ints([1])], consts=(3,))
    assert rep.graph.outputs[0].type.shape == (3, None)
    rep = prepare("Slice", [x, ints([1]), ints([3]), ints([1])])
    assert rep.graph.outputs[0].type.shape == (None, None)
    rep = prepare("Pad", [x, ints([0, 1, 0, 2])])
    assert rep.graph.outputs[0].type.shape == (None, None)
    rep = prepare("Unsqueeze", [x, ints([0, 3])])
    assert rep.graph.outputs[0].type.rank == 4
    rep = prepare("Expand", [data([3, 1]), ints([2, 1, 1])])
    assert rep.graph.outputs[0].type.shape == (None, 3, None)
    rep = prepare("Range", [np.array(0, np.int64), np.array(5, np.int64), np.array(1, np.int64)])
    assert rep.graph.outputs[0].type.shape == (None,)
    rep = prepare("NonZero", [x], consts=())
    assert rep.graph.outputs[0].type.shape == (2, None)


def test_shape_subgraph_folds_to_constants():
    """Shape -> Slice -> Concat -> Reshape becomes one Reshape by a constant."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Slice", ["s", "zero", "two"], ["head"]),
        helper.make_node("Concat", ["head", "minus_one"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
        helper.make_node("Size", ["y"], ["n"]),
        helper.make_node("Unsqueeze", ["n", "zero"], ["n1"]),
        helper.make_node("ConstantOfShape", ["n1"], ["z"]),
    ]
    inits = [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in
             (("zero", 0), ("two", 2), ("minus_one", -1))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    ir = import_onnx(model, strict_types=True)
    assert [n.op for n in ir.nodes] == ["Reshape"]
    assert ir.outputs[0].type.shape == (2, 3, 20)
    assert ir.outputs[1].is_constant and ir.outputs[1].const.shape == (120,)


def test_kernels_return_views_and_never_write_their_inputs():
    x = data([2, 3, 4])
    x.flags.writeable = False
    (r,) = run_kernel("Reshape", [x, ints([6, 4])], {"allowzero": 0})
    (t,) = run_kernel("Transpose", [x], {"perm": None})
    (s,) = run_kernel("Slice", [x, ints([INT_MAX]), ints([0]), ints([-1]), ints([-1])], {})
    (e,) = run_kernel("Expand", [x[:, :1], ints([5, 2, 3, 4])], {})
    for view in (r, t, s, e):
        assert np.shares_memory(view, x) and not view.flags.writeable
    assert t.shape == (4, 3, 2) and s.shape == (2, 3, 3)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("op, inputs, attrs, match", [
    ("Transpose", [data([2, 3])], {"perm": [0, 0]}, "not a permutation"),
    ("Concat", [data([2, 3]), data([2, 4])], {"axis": 0}, "does not match"),
    ("Concat", [data([2, 3])], {"axis": 2}, "axis=2 is out of range"),
    ("Squeeze", [data([2, 3]), ints([0])], {}, "do not have size 1"),
    ("Unsqueeze", [data([2, 3]), ints([0, 0])], {}, "repeats an axis"),
    ("Unsqueeze", [data([2, 3]), ints([3])], {}, "out of range"),
    ("Slice", [data([2, 3]), ints([0]), ints([1]), ints([0]), ints([0])], {}, "holds a 0"),
    ("Slice", [data([2, 3]), ints([0]), ints([1]), ints([2])], {}, "out of range"),
    ("Split", [data([2, 3]), ints([1, 1])], {"axis": 1}, "add up to"),
    ("Pad", [data([2, 3]), ints([0, -2, 0, -2])], {}, "crop more"),
    ("Pad", [data([2, 3]), ints([0, 1])], {}, "2 per padded axis"),
    ("Pad", [data([2, 0]), ints([0, 1, 0, 0])], {"mode": "edge"}, "empty"),
    ("Reshape", [data([2, 3]), ints([4, -1])], {}, "cannot reshape"),
    ("Expand", [data([2, 3]), ints([4, 3])], {}, "do not broadcast"),
    ("Tile", [data([2, 3]), ints([2])], {}, "one non-negative value per axis"),
    ("DepthToSpace", [data([1, 6, 2, 2])], {"blocksize": 2}, "multiple of blocksize"),
    ("Range", [np.array(0, np.int64), np.array(4, np.int64), np.array(0, np.int64)], {}, "delta is 0"),
    ("ConstantOfShape", [ints([2, -1])], {}, "negative"),
    ("Trilu", [data([2, 2]), ints([1, 2])], {}, "must be a scalar"),
])
def test_bad_constant_parameters_fail_at_import(op, inputs, attrs, match):
    consts = tuple(range(len(inputs))) if op in ("Range", "ConstantOfShape") else tuple(range(1, len(inputs)))
    with pytest.raises(ModelImportError, match=match):
        prepare(op, inputs, consts=consts, **attrs)


HUGE = 1 << 40


@pytest.mark.parametrize("op, inputs, match", [
    ("Expand", [data([1]), ints([HUGE])], "Expand shape"),
    ("Expand", [data([2]), ints([-1])], "Expand shape .* negative"),
    ("Tile", [data([2, 2]), ints([HUGE, HUGE])], "Tile repeats"),
    ("Tile", [data([2]), ints([-3])], "Tile repeats .* negative"),
    ("ConstantOfShape", [ints([HUGE, HUGE])], "ConstantOfShape shape"),
    ("ConstantOfShape", [ints([MAX_ELEMENTS + 1])], "more than the limit"),
    ("ConstantOfShape", [ints([3, -2])], "ConstantOfShape shape"),
    ("Range", [np.array(0.0, np.float32), np.array(np.inf, np.float32), np.array(1.0, np.float32)], "Range"),
    ("Range", [np.array(0, np.int64), np.array(HUGE, np.int64), np.array(1, np.int64)], "Range"),
    ("Slice", [data([3]), ints([0]), ints([2]), ints([0]), ints([0])], "Slice steps"),
    ("Slice", [data([3]), ints([0]), ints([2]), ints([4])], "Slice axes"),
    ("Pad", [data([3]), ints([-2, -2])], "Pad pads"),
    ("Pad", [data([3]), ints([HUGE, 0])], "Pad pads"),
    ("Reshape", [data([2, 3]), ints([7, -1])], "cannot reshape"),
    ("Reshape", [data([2, 3]), ints([2, 0, 0])], "copies"),
    ("Reshape", [data([2, 3]), ints([-2, -3])], "negative"),
    ("Squeeze", [data([2, 3]), ints([1])], "do not have size 1"),
    ("Unsqueeze", [data([2, 3]), ints([5])], "Unsqueeze axes"),
    ("Unsqueeze", [data([2]), ints(list(range(70)))], "rank 71"),
    ("Reshape", [data([1]), ints([1] * 70)], "cannot reshape"),
    ("Split", [data([4]), ints([3, 3])], "Split split"),
])
def test_bad_runtime_parameters_are_clear_kernel_errors(op, inputs, match):
    with pytest.raises(ExecutionError, match=match):
        run(op, inputs, **({"num_outputs": 2} if op == "Split" else {}))


def test_negative_pads_crop_like_onnxruntime():
    x = data([3, 6])
    for mode in ("constant", "reflect", "edge", "wrap"):
        for pads in ([0, 2, -1, -1], [-1, -2, 1, 3], [-3, 0, 0, -6], [2, -3, 0, 0]):
            if mode != "constant" and pads[0] + pads[2] <= -3:
                continue  # onnxruntime refuses an empty axis in these modes even when it pads nothing
            want = _onnxruntime("Pad", [x, ints(pads)], mode=mode)
            for consts in ((), (1,)):
                (got,) = run("Pad", [x, ints(pads)], consts=consts, mode=mode)
                np.testing.assert_array_equal(got, want, err_msg=f"{mode} {pads}")


def test_edge_pad_of_an_empty_axis_is_an_error():
    with pytest.raises(KernelError, match="empty"):
        run_kernel("Pad", [data([0, 2]), ints([1, 0, 0, 0])], {"mode": "edge"})


@pytest.mark.parametrize("mode", ["reflect", "wrap", "edge"])
def test_wide_pads_cost_their_output_not_a_loop(mode):
    (out,) = run_kernel("Pad", [data([2]), ints([10**6, 10**6])], {"mode": mode})
    assert out.shape == (2 * 10**6 + 2,)
    np.testing.assert_array_equal(out[10**6:10**6 + 2], [0.0, 1.0])


def test_split_count_must_match_the_outputs():
    with pytest.raises(ModelImportError, match="makes 3 outputs"):
        prepare("Split", [data([6]), ints([2, 2, 2])], num_outputs=2, consts=(1,))


def test_errors_are_tessera_errors():
    with pytest.raises(TesseraError):
        run_kernel("Concat", [np.zeros(()), np.zeros(())], {"axis": 0})


def _onnxruntime(op, inputs, consts=(), **attrs):
    return run_onnxruntime(make_node_model(op, inputs, consts=consts, **attrs), node_feeds(inputs, consts))[0]
