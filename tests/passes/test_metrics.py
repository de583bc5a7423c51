"""Fidelity metrics on hand-computed cases and their edge cases, and the CLI table."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from passes.quant.metrics import (
    cosine_similarity,
    format_table,
    max_abs_error,
    rmse,
    snr_db,
    snr_line,
    snr_spread,
    top_k_agreement,
)

ERROR_METRICS = [snr_db, rmse, max_abs_error, cosine_similarity]


# --------------------------------------------------------------------- snr

def test_snr_by_hand():
    # signal 1 + 4 + 9 = 14, noise 1
    assert snr_db([1, 2, 3], [1, 2, 4]) == pytest.approx(10 * math.log10(14))
    # signal 4 * 100 = 400, noise 4 * 1 = 4: 20 dB
    assert snr_db(np.full((2, 2), 10.0), np.full((2, 2), 9.0)) == pytest.approx(20.0)


def test_snr_of_equal_tensors_is_inf():
    assert snr_db([1.5, -2.0], [1.5, -2.0]) == math.inf
    assert snr_db(np.zeros(4), np.zeros(4)) == math.inf


def test_snr_of_all_zero_reference_against_anything_else_is_minus_inf():
    assert snr_db(np.zeros(3), [0.0, 1e-6, 0.0]) == -math.inf


@given(arrays(np.float64, 8, elements=st.floats(-100, 100).filter(lambda v: v == 0 or abs(v) > 1e-30)),
       st.floats(0.01, 100))
def test_snr_is_scale_invariant(x, factor):
    noisy = x + 0.125
    assert snr_db(x * factor, noisy * factor) == pytest.approx(snr_db(x, noisy), abs=1e-9)


def test_snr_computes_in_float64():
    """float32 squares of large values would overflow to inf."""
    big = np.full(4, 3e30, np.float32)
    assert snr_db(big, big * np.float32(0.5)) == pytest.approx(10 * math.log10(4))


# ------------------------------------------------------ rmse, max abs error

def test_rmse_by_hand():
    assert rmse(np.zeros(4), np.ones(4)) == 1.0
    assert rmse([3, 4], [0, 0]) == pytest.approx(math.sqrt(12.5))
    assert rmse([1, 2], [1, 2]) == 0.0


def test_max_abs_error_by_hand():
    assert max_abs_error([1, -5, 2], [0, 0, 0]) == 5.0
    assert max_abs_error([[1.0, 2.0]], [[1.25, 1.0]]) == 1.0
    assert max_abs_error([7], [7]) == 0.0


# ------------------------------------------------------- cosine similarity

@pytest.mark.parametrize("ref, test, expected", [
    ([1, 0], [0, 1], 0.0),
    ([1, 2], [2, 4], 1.0),
    ([1, 1], [-1, -1], -1.0),
    ([3, 4], [4, 3], 24 / 25),
    ([[1, 0], [0, 1]], [[1, 0], [0, 0]], 1 / math.sqrt(2)),
    ([0, 0], [0, 0], 1.0),
    ([0, 0], [1, 0], 0.0),
    ([1, 0], [0, 0], 0.0),
])
def test_cosine_similarity_by_hand(ref, test, expected):
    assert cosine_similarity(ref, test) == pytest.approx(expected)


@given(arrays(np.float64, 6, elements=st.floats(-1e3, 1e3)), arrays(np.float64, 6, elements=st.floats(-1e3, 1e3)))
def test_cosine_similarity_is_within_minus_one_and_one(a, b):
    assert -1.0 <= cosine_similarity(a, b) <= 1.0


# ---------------------------------------------------------- shared edge cases

@pytest.mark.parametrize("metric", ERROR_METRICS)
def test_shape_mismatch_is_rejected(metric):
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        metric([1, 2], [1, 2, 3])


@pytest.mark.parametrize("metric", ERROR_METRICS + [top_k_agreement])
def test_empty_tensors_are_rejected(metric):
    with pytest.raises(ValueError, match="empty"):
        metric(np.zeros((0, 3)), np.zeros((0, 3)))


@pytest.mark.parametrize("metric", ERROR_METRICS)
def test_nan_propagates(metric):
    assert math.isnan(metric([1.0, 2.0], [1.0, math.nan]))
    assert math.isnan(metric([0.0, 0.0], [0.0, math.nan]))


# ---------------------------------------------------------- top-k agreement

REFERENCE = np.array([[0.1, 0.7, 0.2, 0.0],    # ranking 1, 2, 0, 3
                      [0.5, 0.1, 0.3, 0.4]])   # ranking 0, 3, 2, 1


def test_top_1_agreement_by_hand():
    test = np.array([[0.0, 0.9, 0.1, 0.0],     # top-1 class 1: agrees
                     [0.1, 0.2, 0.3, 0.6]])    # top-1 class 3: reference's second
    assert top_k_agreement(REFERENCE, REFERENCE) == 1.0
    assert top_k_agreement(REFERENCE, test) == 0.5
    assert top_k_agreement(REFERENCE, test, k=2) == 1.0


def test_top_k_agreement_counts_classes_beyond_k_as_misses():
    test = np.array([[1.0, 0.0, 0.0, 0.0],     # class 0: reference's third
                     [0.0, 1.0, 0.0, 0.0]])    # class 1: reference's fourth
    assert [top_k_agreement(REFERENCE, test, k) for k in (1, 2, 3, 4)] == [0.0, 0.0, 0.5, 1.0]


def test_top_k_agreement_ties():
    # reference ties classes 0 and 1 for first place: both are in its top 1
    assert top_k_agreement([2.0, 2.0, 1.0], [0.0, 5.0, 0.0]) == 1.0
    # the test's top-1 is its first largest logit (class 0 here)
    assert top_k_agreement([1.0, 3.0, 2.0], [4.0, 4.0, 0.0]) == 0.0


def test_top_k_agreement_samples_are_all_axes_but_the_last():
    reference = np.stack([REFERENCE, REFERENCE[::-1]])  # (2, 2, 4): four samples
    test = np.zeros_like(reference)
    test[..., 1] = 1.0  # every sample predicts class 1: right for the two first-row samples
    assert top_k_agreement(reference, test) == 0.5
    assert top_k_agreement([0.0, 1.0], [0.0, 1.0]) == 1.0  # 1-D: one sample


@pytest.mark.parametrize("k", [0, 5, -1])
def test_top_k_agreement_rejects_k_out_of_range(k):
    with pytest.raises(ValueError, match=f"k = {k}"):
        top_k_agreement(REFERENCE, REFERENCE, k)


def test_top_k_agreement_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        top_k_agreement(REFERENCE, REFERENCE[:, :3])


# ------------------------------------------------------------------ table

def test_format_table_aligns_text_left_and_numbers_right():
    rows = [{"output": "prob", "snr_db": 35.213456, "cosine": 0.99998123, "top1": 1.0, "n": 3},
            {"output": "logits_long", "snr_db": math.inf, "cosine": np.float32(0.5), "top1": np.float64(0.25),
             "n": np.int64(12)}]
    assert format_table(rows, ["output", "snr_db", "cosine", "top1", "n"]) == "\n".join([
        "output        snr_db    cosine  top1   n",
        "-----------  -------  --------  ----  --",
        "prob         35.2135  0.999981     1   3",
        "logits_long      inf       0.5  0.25  12",
    ])


def test_format_table_special_and_tiny_values():
    table = format_table([[-math.inf], [math.nan], [1.5e-7], [0.0], [123456789.0]], ["x"])
    assert table.splitlines()[2:] == ["       -inf", "        nan", "    1.5e-07", "          0", "1.23457e+08"]


def test_format_table_sequence_rows_and_missing_cells():
    assert format_table([("a", 1), ("bb", 22)], ["name", "v"]) == "name   v\n----  --\na      1\nbb    22"
    assert format_table([{"name": "a"}, {"v": 2}], ["name", "v"]) == "name  v\n----  -\na\n      2"


def test_format_table_without_rows_prints_the_header():
    assert format_table([], ["output", "snr_db"]) == "output  snr_db\n------  ------"


def test_format_table_rejects_rows_of_the_wrong_length():
    with pytest.raises(ValueError, match="row 1 has 1 values for 2 columns"):
        format_table([("a", 1), ("b",)], ["name", "v"])


def test_snr_spread_is_the_jackknife_standard_error_of_the_pooled_snr():
    rng = np.random.default_rng(0)
    signals, noises = rng.uniform(1, 2, 8), rng.uniform(0.001, 0.003, 8)
    pooled = [10 * math.log10((signals.sum() - s) / (noises.sum() - n)) for s, n in zip(signals, noises)]
    expected = math.sqrt(7 / 8 * sum((p - np.mean(pooled)) ** 2 for p in pooled))
    assert snr_spread(signals, noises) == pytest.approx(expected)
    assert 0 < expected < 1
    assert snr_spread(np.full(8, 2.0), np.full(8, 0.002)) == pytest.approx(0, abs=1e-9)  # every sample alike
    wider = snr_spread(signals, noises * rng.uniform(0.2, 5, 8))  # samples that disagree more: a wider spread
    assert wider > expected
    assert snr_spread([1.0], [0.1]) == 0 and snr_spread([1.0, 2.0], [0.0, 0.0]) == 0
    assert snr_spread([1.0, 2.0], [0.0, 0.1]) == math.inf  # one sample carries all the noise


def test_snr_line_shows_the_spread_where_given():
    assert snr_line({"hm": 35.04, "reg": 30.12}, spreads={"reg": 0.21}) == "hm 35.0 dB, reg 30.1 ± 0.2 dB"
