"""Tessera's int8 GEMM: exact against int64 products for any shape and
layout, word-packed reductions, the deepest product, packed and batched
operands with bias and accumulation, and wrong types refused before any
compiled code runs."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.errors import KernelError
from runtime.gemm import igemm, igemm_batched, pack_weights
from runtime.gemm.igemm import MAX_INT8_DEPTH
from tests.helpers.gemm import LAYOUTS, SETTINGS, forbid_compiled_code, int_reference, layout, packers


@SETTINGS
@given(m=st.integers(1, 40), k=st.integers(1, 700), n=st.integers(1, 110), unsigned=st.booleans(),
       a_kind=st.sampled_from(LAYOUTS), b_kind=st.sampled_from(LAYOUTS), seed=st.integers(0, 2 ** 16))
def test_igemm_is_exact(m, k, n, unsigned, a_kind, b_kind, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b = rng.integers(0, 256, (k, n), dtype=np.uint8) if unsigned else rng.integers(-128, 128, (k, n), dtype=np.int8)
    got = igemm(layout(a, a_kind), layout(b, b_kind))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, int_reference(a, b))


@pytest.mark.parametrize("m, k, n", [(16, 2304, 49), (70, 4096, 300), (1040, 1028, 5), (3, 4, 1), (64, 8192, 9)])
@pytest.mark.parametrize("b_dtype", [np.int8, np.uint8])
def test_igemm_word_packing_of_contiguous_reductions(m, k, n, b_dtype):
    """Reductions along contiguous whole words (row-major A, column-major B,
    depth a multiple of 4: the im2col patches of a CONV) are packed a word
    at a lane, on this thread or over the pool by size, batched or not,
    across several reduction blocks."""
    rng = np.random.default_rng(k + n)
    info = np.iinfo(b_dtype)
    a = rng.integers(-128, 128, (2, m, k), dtype=np.int8)
    b = rng.integers(info.min, int(info.max) + 1, (2, n, k), dtype=b_dtype).transpose(0, 2, 1)
    flat, (bs, rs, cs) = packers.flat_view(b.view(np.uint8))
    assert packers._words(flat, (bs, cs), rs, k) is not None
    flat, (bs, rs, cs) = packers.flat_view(a)
    assert packers._words(flat, (bs, rs), cs, k) is not None
    expected = np.stack([int_reference(a[g], b[g]) for g in range(2)])
    np.testing.assert_array_equal(igemm_batched(a, b), expected)
    np.testing.assert_array_equal(igemm(a[1], b[1], packed_a=pack_weights(a[1])), expected[1])


@pytest.mark.parametrize("b_dtype", [np.int8, np.uint8])
def test_igemm_extremes_at_the_deepest_product(b_dtype):
    info = np.iinfo(b_dtype)
    a = np.full((3, MAX_INT8_DEPTH), -128, np.int8)
    a[1] = 127
    b = np.full((MAX_INT8_DEPTH, 2), info.max, b_dtype)
    b[:, 1] = info.min
    np.testing.assert_array_equal(igemm(a, b), int_reference(a, b))
    with pytest.raises(KernelError, match="exceeds"):
        igemm(np.ones((1, MAX_INT8_DEPTH + 1), np.int8), np.ones((MAX_INT8_DEPTH + 1, 1), np.int8))


def test_igemm_packed_batched_bias_and_accumulate():
    rng = np.random.default_rng(9)
    a = rng.integers(-128, 128, (5, 19, 77), dtype=np.int8)
    b = rng.integers(-128, 128, (5, 77, 50), dtype=np.int8)
    bias = rng.integers(-1000, 1000, (5, 19), dtype=np.int32)
    packed = pack_weights(a)
    expected = np.stack([int_reference(a[g], b[g]) + bias[g][:, None] for g in range(5)])
    np.testing.assert_array_equal(igemm_batched(None, b, packed_a=packed, bias=bias), expected)
    out = np.full((5, 19, 50), 3, np.int32)
    igemm_batched(a, b.view(np.uint8), out, accumulate=True)
    np.testing.assert_array_equal(out, 3 + np.stack([int_reference(a[g], b[g].view(np.uint8)) for g in range(5)]))
    np.testing.assert_array_equal(igemm(a[0], b[0], packed_a=pack_weights(a[0])), int_reference(a[0], b[0]))


def test_igemm_rejects_wrong_types(monkeypatch):
    forbid_compiled_code(monkeypatch)
    with pytest.raises(KernelError, match="int8"):
        igemm(np.ones((2, 3), np.uint8), np.ones((3, 4), np.int8))
    with pytest.raises(KernelError, match="int8 or uint8"):
        igemm(np.ones((2, 3), np.int8), np.ones((3, 4), np.int16))
    with pytest.raises(KernelError, match="int32"):
        igemm(np.ones((2, 3), np.int8), np.ones((3, 4), np.int8), np.ones((2, 4), np.int64))
    with pytest.raises(KernelError, match="int8"):
        pack_weights(np.ones((2, 3), np.int8), side="right")


def test_split_a_lanes_lays_out_the_even_and_odd_pairs():
    """Without VNNI the kernels read each step of an A panel as ``mr`` words
    of even pairs (bytes k, k + 2) then ``mr`` of odd ones (k + 1, k + 3),
    each byte sign-extended to 16 bits (runtime.gemm.family.Isa.a_words)."""
    mr, steps = 4, 3
    rng = np.random.default_rng(5)
    lanes = rng.integers(-128, 128, (steps, mr, 4), dtype=np.int8)
    lanes[0, 0] = (-128, 127, -1, 0)
    out = np.full(2 * steps * mr, 0xDEADBEEF, np.uint32)
    packers.split_a_lanes(0, steps * mr, lanes.reshape(-1), mr, out)
    halves = out.view(np.int16).reshape(steps, 2, mr, 2)  # step, even / odd, row, low / high half
    np.testing.assert_array_equal(halves[:, 0], lanes[:, :, [0, 2]])
    np.testing.assert_array_equal(halves[:, 1], lanes[:, :, [1, 3]])
    assert tuple(halves[0, 0, 0]) == (-128, -1) and tuple(halves[0, 1, 0]) == (127, 0)
