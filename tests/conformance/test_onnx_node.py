"""onnx's own backend node tests, run through ``compiler.backend``."""
from __future__ import annotations

import numpy as np
import pytest

from compiler import backend
from tests.conformance.cases import supported_cases
from tests.conformance.known_failures import KNOWN_FAILURES

pytestmark = pytest.mark.conformance


def _params():
    for case in supported_cases():
        marks = []
        if case.name in KNOWN_FAILURES:
            marks.append(pytest.mark.xfail(reason=KNOWN_FAILURES[case.name], strict=True))
        yield pytest.param(case, id=case.name, marks=marks)


@pytest.mark.parametrize("case", _params())
def test_node(case):
    rep = backend.prepare(case.model, check=True, strict_types=True)
    for inputs, expected in case.data_sets:
        outputs = rep.run(list(inputs))
        assert len(outputs) == len(expected)
        for got, want in zip(outputs, expected):
            want = np.asarray(want)
            assert got.dtype == want.dtype, f"dtype {got.dtype} != {want.dtype}"
            assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
            if want.dtype == object:
                assert got.tolist() == want.tolist()
            else:
                np.testing.assert_allclose(got, want, rtol=case.rtol, atol=case.atol, equal_nan=True)
