"""Products of a few rows by a large matrix (runtime/gemm/gemv.py), and the
Gemm kernel that streams a classifier's weights through them."""
from __future__ import annotations

import numpy as np
import pytest

from runtime.errors import KernelError
from runtime.gemm.gemv import sgemv_rows


@pytest.mark.parametrize("rows,depth,cols", [(1, 1280, 1000), (3, 7, 513), (7, 300, 1), (1, 1, 1), (2, 0, 5),
                                             (1, 64, 0)])
@pytest.mark.parametrize("transposed", [False, True])
def test_sgemv_rows_matches_float64(rows, depth, cols, transposed):
    rng = np.random.default_rng(rows * 1000 + depth + cols)
    a = rng.standard_normal((rows, depth)).astype(np.float32)
    b = rng.standard_normal((cols, depth) if transposed else (depth, cols)).astype(np.float32)
    expected = a.astype(np.float64) @ (b.T if transposed else b).astype(np.float64)
    got = sgemv_rows(a, b, transposed)
    assert got.shape == (rows, cols) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * max(1, depth) ** 0.5)


@pytest.mark.parametrize("rows,depth,cols", [(1, 1280, 1000), (3, 7, 513), (2, 0, 5)])
@pytest.mark.parametrize("transposed", [False, True])
def test_sgemv_rows_adds_a_bias_as_numpy_would_after_the_products(rows, depth, cols, transposed):
    rng = np.random.default_rng(rows + depth + cols)
    a = rng.standard_normal((rows, depth)).astype(np.float32)
    b = rng.standard_normal((cols, depth) if transposed else (depth, cols)).astype(np.float32)
    bias = rng.standard_normal(cols).astype(np.float32)
    expected = sgemv_rows(a, b, transposed)
    expected += bias
    np.testing.assert_array_equal(sgemv_rows(a, b, transposed, bias), expected)
    with pytest.raises(KernelError, match=r"bias must be float32 of shape \[%d\]" % cols):
        sgemv_rows(a, b, transposed, bias[:-1])


@pytest.mark.parametrize("c_shape", [(1000,), (1, 1000), (2, 1000), (1,)])
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.5, 1.0), (1.0, 2.0)])
def test_gemm_kernel_with_a_bias_row_is_bitwise_the_product_plus_the_bias(c_shape, alpha, beta):
    from runtime.kernels import run_kernel

    rng = np.random.default_rng(3)
    a = rng.standard_normal((2, 1280)).astype(np.float32)
    w = rng.standard_normal((1000, 1280)).astype(np.float32)
    c = rng.standard_normal(c_shape).astype(np.float32)
    (got,) = run_kernel("Gemm", [a, w, c], {"alpha": alpha, "beta": beta, "transA": 0, "transB": 1})
    expected = sgemv_rows(a, w, True)
    expected *= np.float32(alpha)
    expected += c if beta == 1.0 else c * np.float32(beta)
    np.testing.assert_array_equal(got, expected)


def test_sgemv_rows_refuses_what_it_cannot_multiply():
    with pytest.raises(KernelError, match="float32 matrices only"):
        sgemv_rows(np.ones((1, 3)), np.ones((3, 2), np.float32), False)
    with pytest.raises(KernelError, match=r"op\(b\) is \[4, 2\]"):
        sgemv_rows(np.ones((1, 3), np.float32), np.ones((4, 2), np.float32), False)
