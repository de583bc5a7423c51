"""Pooling ops against onnxruntime (the reference evaluator shifts windows
in ceil mode) and onnx's reference evaluator, plus errors."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from compiler.errors import ModelImportError, UnsupportedOpError
from compiler.frontend import import_onnx
from runtime.errors import KernelError
from runtime.kernels import run_kernel
from tests.helpers.conv import random
from tests.helpers.node_models import assert_matches_onnxruntime, assert_matches_reference, make_node_model, run_tessera

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def pool_cases(draw, dilations=True):
    """Input and window attributes onnxruntime accepts (pads < kernel)."""
    spatial = draw(st.integers(1, 3))
    kernel = [draw(st.integers(1, 3)) for _ in range(spatial)]
    strides = [draw(st.integers(1, 3)) for _ in range(spatial)]
    dil = [draw(st.integers(1, 2)) if dilations else 1 for _ in range(spatial)]
    pads = [draw(st.integers(0, k - 1)) for k in kernel] + [draw(st.integers(0, k - 1)) for k in kernel]
    size = 7 if spatial < 3 else 4
    dims = [draw(st.integers((k - 1) * d + 1, (k - 1) * d + size)) for k, d in zip(kernel, dil)]
    x = random((draw(st.integers(1, 2)), draw(st.integers(1, 3)), *dims), draw(st.integers(0, 999)))
    attrs = dict(kernel_shape=kernel, strides=strides, pads=pads, ceil_mode=int(draw(st.booleans())))
    if dilations:
        attrs["dilations"] = dil
    return x, attrs


# ---------------------------------------------------------------- MaxPool
@SETTINGS
@given(case=pool_cases(), indices=st.booleans(), storage_order=st.integers(0, 1))
def test_max_pool_matches_onnxruntime(case, indices, storage_order):
    x, attrs = case
    if indices:
        attrs["storage_order"] = storage_order
    assert_matches_onnxruntime("MaxPool", [x], num_outputs=2 if indices else 1, **attrs)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_max_pool_auto_pad(auto_pad):
    x = random((1, 2, 7, 6))
    assert_matches_onnxruntime("MaxPool", [x], kernel_shape=[3, 2], strides=[2, 2], auto_pad=auto_pad)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.float64, np.float16])
def test_max_pool_other_types(dtype):
    x = (np.random.default_rng(0).integers(0, 100, (1, 2, 6, 6)) - 40).astype(dtype)
    assert_matches_reference("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])


@pytest.mark.parametrize("opset", [7, 8, 10, 11])
def test_max_pool_old_opsets(opset):
    x = random((1, 3, 5, 5))
    outputs = 2 if opset >= 8 else 1
    assert_matches_onnxruntime("MaxPool", [x], num_outputs=outputs, opset=opset, kernel_shape=[2, 2], pads=[1, 0, 1, 0])


def test_max_pool_skips_nan():
    """NaNs never win; a window of NaNs only gives -inf at its first tap."""
    x = np.array([[[np.nan, 1.0, np.nan, np.nan, -np.inf, -np.inf, 2.0, np.nan]]], dtype=np.float32)
    attrs = dict(kernel_shape=(2,), strides=(2,), pads=(0, 0), dilations=(1,), ceil_mode=0, storage_order=0)
    y, idx = run_kernel("MaxPoolWithIndices", [x], attrs)
    np.testing.assert_array_equal(y, [[[1.0, -np.inf, -np.inf, 2.0]]])
    np.testing.assert_array_equal(idx, [[[1, 2, 4, 6]]])
    np.testing.assert_array_equal(run_kernel("MaxPool", [x], attrs)[0], y)


def test_max_pool_indices_count_batch_and_channel():
    x = random((2, 3, 4, 5))
    attrs = dict(kernel_shape=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0), dilations=(1, 1), ceil_mode=0,
                 storage_order=0)
    y, idx = run_kernel("MaxPoolWithIndices", [x], attrs)
    np.testing.assert_array_equal(x.reshape(-1)[idx], y)


# ---------------------------------------------------------------- AveragePool, LpPool
@SETTINGS
@given(case=pool_cases(), count_include_pad=st.integers(0, 1))
def test_average_pool_matches_onnxruntime(case, count_include_pad):
    x, attrs = case
    assert_matches_onnxruntime("AveragePool", [x], count_include_pad=count_include_pad, **attrs)


@pytest.mark.parametrize("opset", [7, 10, 11, 19])
def test_average_pool_old_opsets(opset):
    x = random((1, 2, 6, 5))
    attrs = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)
    if opset >= 10:
        attrs["ceil_mode"] = 1
    assert_matches_onnxruntime("AveragePool", [x], opset=opset, **attrs)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_average_pool_auto_pad(auto_pad):
    x = random((1, 2, 7, 6))
    assert_matches_reference("AveragePool", [x], kernel_shape=[3, 2], strides=[2, 1], auto_pad=auto_pad)


@SETTINGS
@given(case=pool_cases(dilations=False), p=st.integers(1, 3))
def test_lp_pool_matches_onnxruntime(case, p):
    x, attrs = case
    attrs.pop("ceil_mode")
    assert_matches_onnxruntime("LpPool", [x], opset=11, p=p, **attrs)


# ---------------------------------------------------------------- global pools
@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"])
@pytest.mark.parametrize("shape", [(2, 3, 5), (1, 4, 3, 5), (1, 2, 2, 3, 4)])
def test_global_pools_match_onnxruntime(op, shape):
    assert_matches_onnxruntime(op, [random(shape)], opset=11)


@pytest.mark.parametrize("p", [1, 3])
def test_global_lp_pool_p(p):
    assert_matches_onnxruntime("GlobalLpPool", [random((2, 3, 4, 4))], opset=11, p=p)


def test_global_average_pool_float16_accumulates_in_float32():
    x = np.full((1, 1, 64, 64), 0.1, dtype=np.float16)
    (y,) = run_kernel("GlobalAveragePool", [x], {})
    assert y.dtype == np.float16 and abs(y.item() - 0.1) < 1e-3


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("op,attrs,match", [
    ("MaxPool", dict(), "kernel_shape"),
    ("MaxPool", dict(kernel_shape=[2]), "kernel_shape"),
    ("MaxPool", dict(kernel_shape=[2, 2], strides=[0, 1]), "strides"),
    ("MaxPool", dict(kernel_shape=[2, 2], pads=[1, 1]), "pads"),
    ("MaxPool", dict(kernel_shape=[2, 2], storage_order=2, dilations=[1, 1]), "storage_order"),
    ("AveragePool", dict(kernel_shape=[9, 2]), "does not fit"),
    ("AveragePool", dict(kernel_shape=[2, 2], ceil_mode=3), "ceil_mode"),
    ("LpPool", dict(kernel_shape=[2, 2], p=0), "p=0"),
])
def test_pool_attribute_errors(op, attrs, match):
    x = random((1, 2, 5, 5))
    outputs = 2 if "storage_order" in attrs else 1
    with pytest.raises(ModelImportError, match=match):
        run_tessera(make_node_model(op, [x], num_outputs=outputs, opset=22, **attrs), {"in0": x})


def test_pool_auto_pad_needs_static_spatial_dims():
    """SAME padding needs the input size: after a Reshape to a run-time shape
    the spatial dims are unknown, so the import says it is unsupported."""
    x = random((1, 1, 4, 4))
    reshape = helper.make_node("Reshape", ["x", "shape"], ["r"])
    pool = helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[2, 2], auto_pad="SAME_UPPER")
    graph = helper.make_graph([reshape, pool], "g", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape),
        helper.make_tensor_value_info("shape", TensorProto.INT64, [4])], [helper.make_empty_tensor_value_info("y")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    with pytest.raises(UnsupportedOpError, match="auto_pad"):
        import_onnx(model)


@pytest.mark.parametrize("attrs,match", [
    (dict(strides=(0, 1)), "strides"),
    (dict(pads=(0, 0, 0)), "pads"),
    (dict(kernel_shape=(9, 1)), "does not fit"),
    (dict(dilations=(0, 1)), "dilations"),
    (dict(strides=(2**33, 1)), "beyond"),
    (dict(pads=(2**15, 2**15, 2**15, 2**15)), "elements"),
])
def test_pool_kernels_validate_before_running(attrs, match):
    full = dict(kernel_shape=(2, 2), strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), ceil_mode=0,
                count_include_pad=0)
    full.update(attrs)
    with pytest.raises(KernelError, match=match):
        run_kernel("AveragePool", [random((1, 1, 4, 4))], full)


def test_pool_kernel_rejects_bad_dtype_and_rank():
    attrs = dict(kernel_shape=(2,), strides=(1,), pads=(0, 0), dilations=(1,), ceil_mode=0)
    with pytest.raises(KernelError, match="dtype"):
        run_kernel("MaxPool", [np.zeros((1, 1, 4), np.int32)], attrs)
    with pytest.raises(KernelError, match="rank"):
        run_kernel("MaxPool", [np.zeros((4, 4), np.float32)], attrs)
