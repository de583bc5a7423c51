"""Reductions, ArgMax/ArgMin, TopK and CumSum against onnx's reference evaluator."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler import backend
from compiler.errors import ModelImportError
from ir.ops.reduce import REDUCE_OPS
from runtime.errors import ExecutionError
from tests.helpers.node_models import assert_matches_reference, make_node_model

SETTINGS = settings(max_examples=40, deadline=None)


def _data(op: str, shape, seed: int, dtype=np.float32) -> np.ndarray:
    """Values the op is well defined and well conditioned on."""
    rng = np.random.default_rng(seed)
    if op == "ReduceLogSum":
        return rng.uniform(0.5, 2.0, shape).astype(dtype)
    if op == "ReduceProd":
        return rng.uniform(0.5, 1.5, shape).astype(dtype)
    return (rng.standard_normal(shape) * 2).astype(dtype)


@st.composite
def _reduce_case(draw):
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    rank = len(shape)
    chosen = draw(st.lists(st.integers(0, rank - 1), unique=True, max_size=rank))
    axes = [a - rank if draw(st.booleans()) else a for a in chosen]
    return shape, axes, draw(st.integers(0, 1)), draw(st.booleans()), draw(st.integers(0, 99))


@SETTINGS
@given(op=st.sampled_from(REDUCE_OPS), case=_reduce_case())
def test_reduce_matches_reference(op, case):
    shape, axes, keepdims, const_axes, seed = case
    x = _data(op, shape, seed)
    axes_input = np.array(axes, np.int64) if axes else None
    assert_matches_reference(op, [x, axes_input], opset=18, consts=(1,) if const_axes else (), keepdims=keepdims,
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", REDUCE_OPS)
@pytest.mark.parametrize("const_axes", [True, False])
def test_reduce_noop_with_empty_axes(op, const_axes):
    """Empty axes and noop_with_empty_axes=1: only the element-wise part."""
    x = _data(op, (2, 3), 1)
    assert_matches_reference(op, [x, np.zeros(0, np.int64)], opset=18, consts=(1,) if const_axes else (),
                             noop_with_empty_axes=1)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # raised inside the reference evaluator
@pytest.mark.parametrize("op", REDUCE_OPS)
def test_reduce_over_an_empty_set_gives_the_identity(op):
    x = np.zeros((2, 0, 3), np.float32)
    got = assert_matches_reference(op, [x, np.array([1], np.int64)], opset=18, consts=(1,), keepdims=1)
    assert got[0].shape == (2, 1, 3)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSumSquare",
                                "ReduceL1", "ReduceMean"])
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float64])
def test_reduce_other_dtypes(op, dtype):
    x = np.random.default_rng(2).integers(-5, 6, (3, 4)).astype(dtype)
    if op == "ReduceSumSquare" and dtype == np.int32:
        # The reference widens to int64 here; ONNX keeps the input type.
        model = make_node_model(op, [x, np.array([1], np.int64)], opset=18, consts=(1,), keepdims=0)
        (got,) = backend.prepare(model, check=True, strict_types=True).run({"in0": x})
        np.testing.assert_array_equal(got, np.sum(np.square(x), axis=1, dtype=np.int32))
        return
    assert_matches_reference(op, [x, np.array([1], np.int64)], opset=18, consts=(1,), keepdims=0)


def test_reduce_max_min_on_bool():
    x = np.array([[True, False], [False, False]])
    for op in ("ReduceMax", "ReduceMin"):
        assert_matches_reference(op, [x, np.array([1], np.int64)], opset=20, consts=(1,))


def test_reduce_log_sum_exp_is_stable():
    x = np.array([[1000.0, 999.0], [-1000.0, -1001.0], [-np.inf, 0.0]], np.float32)
    (got,) = assert_matches_reference("ReduceLogSumExp", [x, np.array([1], np.int64)], opset=18, consts=(1,))
    assert np.isfinite(got).all()


@pytest.mark.parametrize("op,opset", [("ReduceSum", 11), ("ReduceSum", 1), ("ReduceMean", 13), ("ReduceMax", 13),
                                      ("ReduceL2", 11), ("ReduceLogSumExp", 13), ("ReduceProd", 13)])
@pytest.mark.parametrize("axes", [None, [1], [0, -1]])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_old_opsets_take_axes_as_attribute(op, opset, axes, keepdims):
    x = _data(op, (2, 3, 4), 5)
    attrs = {} if axes is None else {"axes": axes}
    assert_matches_reference(op, [x], opset=max(opset, 7), keepdims=keepdims, **attrs)


def test_reduce_bad_axes_are_errors():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ModelImportError, match="out of range"):
        backend.prepare(make_node_model("ReduceSum", [x, np.array([2], np.int64)], opset=18, consts=(1,)))
    with pytest.raises(ModelImportError, match="repeats an axis"):
        backend.prepare(make_node_model("ReduceMax", [x], opset=11, axes=[0, -2]))
    rep = backend.prepare(make_node_model("ReduceSum", [x, np.array([0], np.int64)], opset=18))
    with pytest.raises(ExecutionError, match="out of range"):
        rep.run({"in0": x, "in1": np.array([5], np.int64)})


# ---------------------------------------------------------------- ArgMax, ArgMin
@st.composite
def _arg_case(draw):
    shape = draw(st.lists(st.integers(1, 5), min_size=1, max_size=4))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    return shape, axis, draw(st.integers(0, 1)), draw(st.integers(0, 1)), draw(st.integers(0, 99))


@SETTINGS
@given(op=st.sampled_from(["ArgMax", "ArgMin"]), case=_arg_case(), ties=st.booleans())
def test_arg_reduce_matches_reference(op, case, ties):
    shape, axis, keepdims, last, seed = case
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, shape).astype(np.float32) if ties else rng.standard_normal(shape).astype(np.float32)
    assert_matches_reference(op, [x], opset=13, axis=axis, keepdims=keepdims, select_last_index=last)


def test_arg_max_old_opset_and_ints():
    x = np.array([[3, 1, 3], [0, 7, 7]], np.int32)
    assert_matches_reference("ArgMax", [x], opset=11, axis=1)
    assert_matches_reference("ArgMin", [x], opset=12, axis=0, keepdims=0, select_last_index=1)


# ---------------------------------------------------------------- TopK
@st.composite
def _topk_case(draw):
    shape = draw(st.lists(st.integers(1, 6), min_size=1, max_size=3))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    k = draw(st.integers(0, shape[axis]))
    return shape, axis, k, draw(st.integers(0, 1)), draw(st.booleans()), draw(st.integers(0, 99))


@SETTINGS
@given(case=_topk_case(), ties=st.booleans(), dtype=st.sampled_from([np.float32, np.int64]))
def test_topk_matches_reference(case, ties, dtype):
    shape, axis, k, largest, const_k, seed = case
    rng = np.random.default_rng(seed)
    x = (rng.integers(0, 3, shape) if ties else rng.standard_normal(shape) * 10).astype(dtype)
    assert_matches_reference("TopK", [x, np.array([k], np.int64)], num_outputs=2, opset=11,
                             consts=(1,) if const_k else (), axis=axis, largest=largest)


def test_topk_unsigned_and_opset1_attribute():
    x = np.array([[5, 1, 5, 0], [2, 2, 9, 2]], np.uint64)
    assert_matches_reference("TopK", [x, np.array([3], np.int64)], num_outputs=2, opset=11, largest=1)
    y = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    assert_matches_reference("TopK", [y], num_outputs=2, opset=7, k=2, axis=0)
    assert_matches_reference("TopK", [y, np.array([4], np.int64)], num_outputs=2, opset=10)
    assert_matches_reference("TopK", [y, np.array([3], np.int64)], num_outputs=2, opset=11, largest=0, sorted=0)


def test_topk_bad_k_is_an_error():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ModelImportError, match="K=4"):
        backend.prepare(make_node_model("TopK", [x, np.array([4], np.int64)], 2, opset=11, consts=(1,)))
    rep = backend.prepare(make_node_model("TopK", [x, np.array([1], np.int64)], 2, opset=11))
    with pytest.raises(ExecutionError, match="K=-1"):
        rep.run({"in0": x, "in1": np.array([-1], np.int64)})


# ---------------------------------------------------------------- CumSum
@st.composite
def _cumsum_case(draw):
    shape = draw(st.lists(st.integers(0, 5), min_size=1, max_size=3))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    return shape, axis, draw(st.integers(0, 1)), draw(st.integers(0, 1)), draw(st.booleans())


@SETTINGS
@given(case=_cumsum_case(), dtype=st.sampled_from([np.float32, np.int32, np.int64, np.float64]))
def test_cumsum_matches_reference(case, dtype):
    shape, axis, exclusive, reverse, const_axis = case
    x = (np.random.default_rng(len(shape)).standard_normal(shape) * 5).astype(dtype)
    assert_matches_reference("CumSum", [x, np.array(axis, np.int64)], opset=14, consts=(1,) if const_axis else (),
                             exclusive=exclusive, reverse=reverse)


def test_cumsum_int32_axis_and_bad_axis():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert_matches_reference("CumSum", [x, np.array(1, np.int32)], opset=11, consts=(1,))
    with pytest.raises(ModelImportError, match="axis=2"):
        backend.prepare(make_node_model("CumSum", [x, np.array(2, np.int64)], opset=14, consts=(1,)))
