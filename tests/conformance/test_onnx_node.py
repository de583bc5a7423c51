"""onnx's own backend node tests, run through ``compiler.backend``."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from compiler import backend
from tests.conformance.cases import dtype_gap, supported_cases
from tests.conformance.known_failures import KNOWN_FAILURES

pytestmark = pytest.mark.conformance


def _param(case):
    reason = dtype_gap(case) or KNOWN_FAILURES.get(case.name)
    marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
    return pytest.param(case, id=case.name, marks=marks)


@pytest.mark.parametrize("case", [_param(case) for case in supported_cases()])
def test_node(case):
    rep = backend.prepare(case.model, check=True, strict_types=True)
    for inputs, expected in case.data_sets:
        outputs = rep.run([_array(x) for x in inputs])
        assert len(outputs) == len(expected)
        for got, want in zip(outputs, expected):
            want = _array(want)
            assert got.dtype == want.dtype, f"dtype {got.dtype} != {want.dtype}"
            assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
            if want.dtype == object:
                assert got.tolist() == want.tolist()
            else:
                np.testing.assert_allclose(got, want, rtol=case.rtol, atol=case.atol, equal_nan=True)


def _array(value) -> np.ndarray:
    """Test data comes as arrays, or as TensorProtos where numpy has no dtype of its own."""
    return numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else np.asarray(value)
