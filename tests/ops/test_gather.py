"""Gather, GatherElements, GatherND, ScatterElements, ScatterND, OneHot and
Compress against onnx's reference evaluator, with indices as constants or
runtime inputs; the deprecated Scatter; bad indices give clear errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler import backend
from compiler.errors import ModelImportError
from runtime.errors import ExecutionError, KernelError
from runtime.kernels import run_kernel
from tests.helpers.node_models import assert_matches_reference, make_node_model

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DIMS = st.integers(1, 4)
INDEX_DTYPES = st.sampled_from([np.int64, np.int32])
REDUCTIONS = st.sampled_from(["none", "add", "mul", "max", "min"])


def data(shape, dtype=np.float32) -> np.ndarray:
    return (np.arange(math.prod(shape)) * 0.5 - 3).astype(dtype).reshape(shape)


def index_array(draw, shape, size: int, dtype=np.int64) -> np.ndarray:
    """Indices in [-size, size) of the given shape."""
    count = math.prod(shape)
    values = draw(st.lists(st.integers(-size, size - 1), min_size=count, max_size=count))
    return np.array(values, dtype=dtype).reshape(shape)


def consts_for(draw, *indices: int) -> tuple[int, ...]:
    """Make the parameter inputs initializers, or leave them runtime inputs."""
    return tuple(indices) if draw(st.booleans()) else ()


def prepare(op, inputs, opset=23, consts=(), **attrs):
    return backend.prepare(make_node_model(op, inputs, 1, opset, consts, **attrs), check=True, strict_types=True)


def run(op, inputs, opset=23, consts=(), **attrs):
    feeds = {f"in{i}": x for i, x in enumerate(inputs) if x is not None and i not in consts}
    return prepare(op, inputs, opset, consts, **attrs).run(feeds)


# ---------------------------------------------------------------- gathers
@st.composite
def gather_cases(draw):
    shape = draw(st.lists(DIMS, min_size=1, max_size=3))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    index_shape = draw(st.lists(DIMS, min_size=0, max_size=2))
    indices = index_array(draw, index_shape, shape[axis], draw(INDEX_DTYPES))
    return [data(shape), indices], axis, consts_for(draw, 1)


@given(gather_cases())
@SETTINGS
def test_gather_matches_reference(case):
    inputs, axis, consts = case
    assert_matches_reference("Gather", inputs, consts=consts, axis=axis)


@st.composite
def gather_elements_cases(draw):
    shape = draw(st.lists(DIMS, min_size=1, max_size=3))
    axis = draw(st.integers(0, len(shape) - 1))  # the reference mishandles negative axes
    index_shape = list(shape)
    index_shape[axis] = draw(DIMS)
    indices = index_array(draw, index_shape, shape[axis], draw(INDEX_DTYPES))
    return [data(shape), indices], axis, consts_for(draw, 1)


@given(gather_elements_cases())
@SETTINGS
def test_gather_elements_matches_reference(case):
    inputs, axis, consts = case
    ours = assert_matches_reference("GatherElements", inputs, consts=consts, axis=axis)
    negative = run("GatherElements", inputs, consts=consts, axis=axis - inputs[0].ndim)
    np.testing.assert_array_equal(negative[0], ours[0])


def test_gather_elements_accepts_smaller_indices():
    """Indices smaller than the data on a non-gathered axis (as in torch.gather)."""
    x = data([3, 4])
    (got,) = run_kernel("GatherElements", [x, np.array([[2, 0], [1, 1]])], {"axis": 0})
    np.testing.assert_array_equal(got, [[x[2, 0], x[0, 1]], [x[1, 0], x[1, 1]]])


@st.composite
def gather_nd_cases(draw):
    shape = draw(st.lists(DIMS, min_size=1, max_size=4))
    batch_dims = draw(st.integers(0, len(shape) - 1))
    depth = draw(st.integers(1, len(shape) - batch_dims))
    extra = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))
    index_shape = shape[:batch_dims] + extra + [depth]
    dtype = draw(INDEX_DTYPES)
    indices = np.empty(index_shape, dtype=dtype)
    for j in range(depth):
        indices[..., j] = index_array(draw, index_shape[:-1], shape[batch_dims + j], dtype)
    return [data(shape), indices], batch_dims, consts_for(draw, 1)


@given(gather_nd_cases())
@SETTINGS
def test_gather_nd_matches_reference(case):
    inputs, batch_dims, consts = case
    assert_matches_reference("GatherND", inputs, consts=consts, batch_dims=batch_dims)


# ---------------------------------------------------------------- scatters
def unique_positions(draw, count: int, size: int) -> list[int]:
    return draw(st.permutations(range(size)))[:count]


@st.composite
def scatter_elements_cases(draw):
    shape = draw(st.lists(DIMS, min_size=1, max_size=3))
    rank = len(shape)
    axis = draw(st.integers(-rank, rank - 1))
    reduction = draw(REDUCTIONS)
    index_shape = [draw(st.integers(1, n)) for n in shape]
    size = shape[axis]
    if reduction == "none":  # duplicates would make the result order-dependent
        index_shape[axis] = draw(st.integers(1, size))
        lines = np.moveaxis(np.empty(index_shape, dtype=np.int64), axis, -1)
        for pos in np.ndindex(lines.shape[:-1]):
            lines[pos] = [p - size * draw(st.booleans()) for p in unique_positions(draw, lines.shape[-1], size)]
        indices = np.ascontiguousarray(np.moveaxis(lines, -1, axis))
    else:
        indices = index_array(draw, index_shape, size)
    dtype = draw(st.sampled_from([np.float32, np.int64]))
    updates = (np.arange(math.prod(index_shape)) % 5 - 2).astype(dtype).reshape(index_shape)
    return [data(shape, dtype), indices, updates], axis, reduction, consts_for(draw, 1, 2)


@given(scatter_elements_cases())
@SETTINGS
def test_scatter_elements_matches_reference(case):
    inputs, axis, reduction, consts = case
    assert_matches_reference("ScatterElements", inputs, consts=consts, axis=axis, reduction=reduction)


@st.composite
def scatter_nd_cases(draw):
    shape = draw(st.lists(DIMS, min_size=1, max_size=3))
    depth = draw(st.integers(1, len(shape)))
    reduction = draw(REDUCTIONS)
    cells = math.prod(shape[:depth])
    count = draw(st.integers(1, cells if reduction == "none" else 5))
    flat = unique_positions(draw, count, cells) if reduction == "none" else [
        draw(st.integers(0, cells - 1)) for _ in range(count)]
    tuples = np.array(np.unravel_index(flat, shape[:depth]), dtype=np.int64).T
    tuples -= np.array(shape[:depth]) * np.array([draw(st.booleans()) for _ in range(depth)])
    lead = [count] if draw(st.booleans()) or count % 2 else [2, count // 2]
    indices = tuples.reshape(*lead, depth)
    dtype = draw(st.sampled_from([np.float32, np.int64]))
    update_shape = lead + shape[depth:]
    updates = (np.arange(math.prod(update_shape)) % 7 - 3).astype(dtype).reshape(update_shape)
    return [data(shape, dtype), indices, updates], reduction, consts_for(draw, 1, 2)


@given(scatter_nd_cases())
@SETTINGS
def test_scatter_nd_matches_reference(case):
    inputs, reduction, consts = case
    assert_matches_reference("ScatterND", inputs, consts=consts, reduction=reduction)


def test_deprecated_scatter_is_scatter_elements():
    x = np.zeros((3, 3), np.float32)
    indices = np.array([[1, 0, 2], [0, 2, 1]], np.int64)
    updates = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    (got,) = run("Scatter", [x, indices, updates], opset=10, axis=1)
    want = x.copy()
    for (i, j), k in np.ndenumerate(indices):
        want[i, k] = updates[i, j]
    np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------- one-hot, compress
@st.composite
def one_hot_cases(draw):
    shape = draw(st.lists(DIMS, min_size=0, max_size=3))
    depth = draw(st.integers(1, 5))
    index_dtype = draw(st.sampled_from([np.int64, np.int32, np.float32]))
    indices = index_array(draw, shape, depth + 2, np.int64).astype(index_dtype)
    depth_value = np.array(depth, dtype=draw(st.sampled_from([np.int64, np.float32])))
    values = np.array([draw(st.sampled_from([0, -1, 2])), draw(st.sampled_from([1, 5]))],
                      dtype=draw(st.sampled_from([np.float32, np.int64])))
    axis = draw(st.integers(-len(shape) - 1, len(shape)))
    return [indices, depth_value, values], axis, consts_for(draw, 1, 2)


@given(one_hot_cases())
@SETTINGS
def test_one_hot_matches_reference(case):
    inputs, axis, consts = case
    assert_matches_reference("OneHot", inputs, consts=consts, axis=axis)


@st.composite
def compress_cases(draw):
    shape = draw(st.lists(DIMS, min_size=1, max_size=3))
    axis = draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1)))
    length = math.prod(shape) if axis is None else shape[axis]
    condition = np.array(draw(st.lists(st.booleans(), min_size=0, max_size=length)), dtype=bool)
    attrs = {} if axis is None else {"axis": axis}
    return [data(shape), condition], attrs, consts_for(draw, 1)


@given(compress_cases())
@SETTINGS
def test_compress_matches_reference(case):
    inputs, attrs, consts = case
    assert_matches_reference("Compress", inputs, consts=consts, **attrs)


# ---------------------------------------------------------------- shapes at compile time
def test_one_hot_runtime_depth_gives_unknown_dim():
    rep = prepare("OneHot", [np.array([0, 2]), np.array(3), np.array([0.0, 1.0], np.float32)], consts=(2,), axis=0)
    assert rep.graph.outputs[0].type.shape in ((None, 2), (3, 2))
    (got,) = rep.run({"in0": np.array([0, 2]), "in1": np.array(3)})
    np.testing.assert_array_equal(got, [[1, 0], [0, 0], [0, 1]])


def test_one_hot_depth_may_be_a_one_element_vector():
    (got,) = run("OneHot", [np.array([2, -1]), np.array([3]), np.array([0, 7], np.int64)])
    np.testing.assert_array_equal(got, [[0, 0, 7], [0, 0, 7]])


def test_compress_constant_condition_gives_static_shape():
    rep = prepare("Compress", [data([2, 5]), np.array([1, 0, 1, 1], dtype=bool)], consts=(1,), axis=1)
    assert rep.graph.outputs[0].type.shape == (2, 3)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("op, inputs, attrs, bad", [
    ("Gather", [data([3, 4]), np.array([0, 4])], {"axis": 1}, 4),
    ("Gather", [data([3, 4]), np.array([-4], np.int32)], {"axis": 0}, -4),
    ("GatherElements", [data([2, 2]), np.array([[0, 1], [2, 0]])], {"axis": 0}, 2),
    ("GatherND", [data([2, 3]), np.array([[1, 3]])], {"batch_dims": 0}, 3),
    ("ScatterElements", [data([2, 2]), np.array([[0, -3]]), data([1, 2])], {"axis": 1, "reduction": "add"}, -3),
    ("ScatterND", [data([2, 3]), np.array([[5]]), data([1, 3])], {"reduction": "none"}, 5),
])
def test_out_of_range_index_is_a_clear_error(op, inputs, attrs, bad):
    with pytest.raises(ExecutionError, match=rf"{op}.*indices.*holds {bad}, outside the valid range"):
        run(op, inputs, **attrs)


def test_out_of_range_constant_index_fails_at_compile_time():
    with pytest.raises(ModelImportError, match="holds 7, outside the valid range"):
        prepare("Gather", [data([3]), np.array([7])], consts=(1,))


@pytest.mark.parametrize("op, inputs, attrs, message", [
    ("OneHot", [np.array([1]), np.array(-2), np.array([0, 1], np.float32)], {"axis": -1}, "must not be negative"),
    ("OneHot", [np.arange(4), np.array(1 << 40), np.array([0, 1], np.float32)], {"axis": -1}, "elements"),
    ("Compress", [data([2, 2]), np.ones(3, bool)], {"axis": 0}, "more than the 2"),
    ("GatherND", [data([2, 3]), np.zeros((2, 3), np.int64)], {"batch_dims": 0}, "exceeds the data rank"),
    ("ScatterND", [data([2, 3]), np.zeros((1, 1), np.int64), data([2, 3])], {"reduction": "none"},
     "updates shape"),
    ("ScatterElements", [data([2]), np.zeros(1, np.int64), data([1])], {"axis": 0, "reduction": "xor"},
     "unknown reduction"),
])
def test_bad_runtime_inputs_are_kernel_errors(op, inputs, attrs, message):
    with pytest.raises(KernelError, match=message):
        run_kernel(op, inputs, attrs)
