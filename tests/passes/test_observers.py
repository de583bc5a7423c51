"""Calibration observers: exact min/max, streamed histograms and the
percentile, entropy (KL) and mse threshold searches."""
import math
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from passes.quant.observers import (
    OBSERVERS,
    WIDE_HEADROOM,
    CalibrationError,
    EntropyObserver,
    MinMaxObserver,
    MseObserver,
    PercentileObserver,
    StreamingHistogram,
    _count_into,
    _kl_divergences,
    make_observer,
    parse_spec,
    wide_observer,
)
from runtime.qscheme import activation_params, quantize

rng = np.random.default_rng(0)
NORMAL = rng.standard_normal(1_000_000).astype(np.float32)
LAPLACE = rng.laplace(0.0, 1.0, 2_000_000).astype(np.float32)
WITH_OUTLIERS = np.concatenate([NORMAL, np.full(20, 1000.0, np.float32), np.full(5, -400.0, np.float32)])


def observed(spec, *batches, **options):
    observer = make_observer(spec, tensor="t", **options)
    for batch in batches:
        observer.update(batch)
    return observer


def quantization_error(x, low, high):
    """Mean squared error of x on the int8 asymmetric grid of [low, high]."""
    scale, zero = activation_params(low, high)
    q = quantize(x, scale, zero, np.int8).astype(np.float64)
    return float(np.mean((scale * (q - zero) - x) ** 2))


# --- min/max, counts, errors --------------------------------------------------


def test_minmax_is_exact_over_batches():
    observer = observed("minmax", np.array([[1.5, -2.0]]), np.array([0.25, 7.0, 3.0]), np.array([-1.0]))
    assert observer.range() == (-2.0, 7.0)
    assert observer.count == 6


def test_non_finite_values_are_ignored_and_counted():
    batch = np.array([np.nan, 1.0, np.inf, -3.0, -np.inf], np.float32)
    for spec in OBSERVERS:
        observer = observed(spec, batch, np.array([2.0]))
        low, high = observer.range()
        assert (observer.nonfinite, observer.count) == (3, 3)
        assert -3.0 <= low <= high <= 2.0
    assert observed("minmax", batch).range() == (-3.0, 1.0)


@pytest.mark.parametrize("spec", list(OBSERVERS))
def test_no_finite_value_is_an_error_naming_the_tensor(spec):
    observer = make_observer(spec, tensor="conv1_out")
    observer.update(np.array([np.nan, np.inf]))
    observer.update(np.zeros((0, 3)))
    with pytest.raises(CalibrationError, match="'conv1_out'.*no finite value.*2 non-finite"):
        observer.range()


def test_non_numeric_values_are_an_error():
    with pytest.raises(CalibrationError, match="'x'.*dtype <U1"):
        make_observer("minmax", tensor="x").update(np.array(["a"]))


def test_integer_and_half_inputs_are_observed():
    assert observed("minmax", np.array([3, -4], np.int64)).range() == (-4.0, 3.0)
    assert observed("percentile:100", np.array([0.5, -1.5], np.float16)).range() == (-1.5, 0.5)


@pytest.mark.parametrize("spec", list(OBSERVERS))
def test_all_zero_tensor_has_range_zero(spec):
    assert observed(spec, np.zeros(100), np.zeros(7)).range() == (0.0, 0.0)


# --- registry and specs ----------------------------------------------------------


def test_make_observer_reads_names_and_options():
    assert isinstance(make_observer("minmax"), MinMaxObserver)
    assert make_observer("percentile").percentile == 99.99
    assert make_observer(" Percentile:99.9 ").percentile == 99.9
    entropy = make_observer("entropy:bins=4096,quantized_bins=64")
    assert isinstance(entropy, EntropyObserver)
    assert (entropy.histogram.counts.size, entropy.quantized_bins) == (4096, 64)
    assert make_observer("mse", bits=16).bits == 16
    assert make_observer("percentile:99", percentile=99.5).percentile == 99.5
    assert parse_spec("entropy:256") == ("entropy", {"quantized_bins": 256})


@pytest.mark.parametrize("spec, message", [
    ("kl", r"unknown calibrator 'kl'; the choices are \['minmax', 'percentile', 'entropy', 'mse'\]"),
    ("minmax:3", r"'3' needs a name.*the options are \[\]"),
    ("percentile:q=3", r"unknown option 'q'; the options are \['percentile', 'bins'\]"),
    ("percentile:high", r"option 'percentile' must be float, got 'high'"),
    ("entropy:bins=1.5", r"option 'bins' must be int"),
    ("percentile:99,2048", r"'2048' needs a name"),
    ("percentile:40", r"percentile must be in \(50, 100\]"),
    ("entropy:bins=100", r"bins \(100\) must be at least twice quantized_bins \(128\)"),
    ("mse:bits=4", r"bits must be 8 or 16"),
    ("mse:bins=1", r"bins must be an integer >= 2"),
])
def test_bad_specs_are_errors(spec, message):
    with pytest.raises(CalibrationError, match=message):
        make_observer(spec)


def test_unknown_keyword_option_is_an_error():
    with pytest.raises(CalibrationError, match=r"'minmax' has no option\(s\) \['bins'\]"):
        make_observer("minmax", bins=10)


# --- the streamed histogram ---------------------------------------------------------


def direct_counts(histogram, values):
    """The counts a one-shot binning of the non-zero ``values`` on the histogram's final grid gives."""
    values = values[values != 0]
    index = np.floor((values - histogram.origin) / histogram.width).astype(np.int64)
    return np.bincount(np.clip(index, 0, histogram.counts.size - 1), minlength=histogram.counts.size)


def add(histogram, values, absolute=False):
    top = np.abs(values).max() if absolute else values.max()
    histogram.add(values, 0.0 if absolute else min(values.min(), 0.0), max(top, 0.0), absolute)


def test_histogram_growth_merges_bins_exactly():
    histogram = StreamingHistogram(64)
    batches = [np.zeros(10), rng.uniform(0, 1, 100), rng.uniform(-3, 0.5, 100), rng.uniform(0, 50, 100),
               rng.normal(0, 100, 100)]
    widths = []
    for batch in batches:
        add(histogram, batch)
        widths.append(histogram.width)
    everything = np.concatenate(batches)
    assert np.array_equal(histogram.counts, direct_counts(histogram, everything))
    assert histogram.zeros == 10 and histogram.counts.sum() == everything.size - 10
    assert widths[0] == 0.0  # only zeros so far
    ratios = [b / a for a, b in zip(widths[1:], widths[2:])]
    assert all(r >= 1 and abs(r - round(r)) < 1e-9 for r in ratios)  # bins widen by whole factors
    assert histogram.origin <= everything.min() and everything.max() <= histogram.origin + 64 * histogram.width


def test_histogram_range_stays_within_a_factor_of_the_data():
    histogram = StreamingHistogram(2048)
    for scale in (1, 1.5, 3, 100, 101, 1e4):
        add(histogram, rng.uniform(-scale, scale, 1000))
    span = 2048 * histogram.width
    assert 2e4 <= span <= 2 * 2e4 * 2048 / 2047


def test_histogram_growth_by_small_steps_merges_once_and_keeps_one_signed_data_at_zero():
    base = rng.standard_normal(10_000)
    signed, one_sided = StreamingHistogram(2048), StreamingHistogram(2048)
    for step in range(16):
        add(signed, base * (1 + 0.03 * step))
        add(one_sided, np.maximum(base, 0) * (1 + 0.03 * step))
        if step == 0:
            first_width = signed.width
    assert signed.width == 2 * first_width  # the spare bins of one merge absorb the rest of the growth
    assert one_sided.origin == 0.0  # no spare bins below 0 where no value comes


def test_histogram_growth_by_astronomic_factors_starts_a_new_grid():
    histogram = StreamingHistogram(16)
    add(histogram, np.array([1e-200, 2e-200]))
    add(histogram, np.array([-1e200, 1e200]))
    assert histogram.counts.sum() == 4
    assert histogram.origin == -1e200 and histogram.width == pytest.approx(2e200 / 16)
    assert histogram.counts[8] == 2  # the old values sit at the new grid's 0


def test_absolute_histogram_counts_magnitudes_from_zero():
    histogram = StreamingHistogram(8)
    add(histogram, np.array([-8.0, -1.0, 0.0, 3.0, 7.9]), absolute=True)
    assert histogram.origin == 0.0 and histogram.width == 1.0
    assert histogram.counts.tolist() == [0, 1, 0, 1, 0, 0, 0, 2]
    assert histogram.zeros == 1


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 300), elements=st.floats(-1e6, 1e6)),
       st.lists(st.integers(0, 300), max_size=4), st.sampled_from([False, True]))
def test_streamed_histogram_equals_one_shot_binning(values, cuts, absolute):
    histogram = StreamingHistogram(32)
    for batch in np.split(values, sorted(set(cuts))):
        if batch.size:
            add(histogram, batch, absolute)
    magnitudes = np.abs(values) if absolute else values
    assert histogram.counts.sum() + histogram.zeros == values.size
    if histogram.width:
        # exact in exact arithmetic; rounding may move a value sitting on an edge by one bin
        moved = np.abs(np.cumsum(histogram.counts) - np.cumsum(direct_counts(histogram, magnitudes)))
        assert moved.max() <= np.sum(np.isclose(magnitudes[:, None], histogram.origin + histogram.width *
                                                np.arange(33)[None], rtol=1e-9,
                                                atol=1e-9 * histogram.width).any(axis=1))


def one_at_a_time(histogram, values, low, high, absolute):
    """Counting as a batch arrives: widen the bins, count into them (what
    add_many must equal)."""
    histogram._cover(float(low), float(high))
    inverse = 1.0 / histogram.width if histogram.width else 0.0
    histogram.zeros += _count_into(values, histogram.counts, histogram.origin, inverse, absolute)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e3, 0), st.floats(0, 1e3), st.sampled_from([0.0, 0.5, 1.0])), min_size=1,
                max_size=8), st.sampled_from([False, True]), st.integers(0, 2 ** 31))
def test_histogram_counts_many_batches_at_once_as_one_at_a_time(spans, absolute, seed):
    generator = np.random.default_rng(seed)
    batches = []
    for low, high, zero_share in spans + [(-1e200, 1e200, 0.0)]:  # the last one restarts the grid
        values = generator.uniform(low, high, 200)
        values[generator.random(200) < zero_share] = 0.0
        top = np.abs(values).max() if absolute else values.max()
        batches.append((values, 0.0 if absolute else min(values.min(), 0.0), max(top, 0.0)))
    together, alone = StreamingHistogram(32), StreamingHistogram(32)
    together.add_many(batches[:3], absolute)
    together.add_many(batches[3:], absolute)
    for batch in batches:
        one_at_a_time(alone, *batch, absolute)
    assert (together.origin, together.width, together.zeros) == (alone.origin, alone.width, alone.zeros)
    assert np.array_equal(together.counts, alone.counts)


@pytest.mark.parametrize("spec", ["minmax", "percentile", "entropy", "mse"])
def test_update_many_gives_the_statistics_of_updates_in_turn(spec):
    batches = [np.maximum(rng.standard_normal((1, 8, 40, 40)), 0).astype(np.float32) * (1 + k % 3) for k in range(6)]
    batches[2][0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
    batches.insert(3, np.zeros((0, 8), np.float32))
    many = make_observer(spec, tensor="t")
    many.update_many(batches)
    one = observed(spec, *batches)
    assert (many.count, many.nonfinite, many.min, many.max) == (one.count, one.nonfinite, one.min, one.max)
    assert many.range() == one.range()
    if hasattr(one, "histogram"):
        assert np.array_equal(many.histogram.counts, one.histogram.counts)


# --- percentile ------------------------------------------------------------------------


def test_percentile_matches_the_sample_quantiles_within_a_bin():
    observer = observed("percentile:99.9", *np.array_split(NORMAL, 7))
    low, high = observer.range()
    width = observer.histogram.width
    assert abs(high - np.quantile(NORMAL, 0.999, method="inverted_cdf")) <= width
    assert abs(low - np.quantile(NORMAL, 0.001, method="inverted_cdf")) <= width


def test_percentile_matches_the_analytic_quantiles():
    low, high = observed("percentile:99", NORMAL).range()
    expected = NormalDist().inv_cdf(0.99)  # 2.326; the sample quantile's spread is about 0.004
    assert high == pytest.approx(expected, abs=0.02)
    assert low == pytest.approx(-expected, abs=0.02)


def test_percentile_of_a_uniform_tensor():
    values = np.arange(1, 10_001, dtype=np.float64)  # 1..10000: the 99th percentile is 9900
    low, high = observed("percentile:99", values).range()
    assert high == pytest.approx(9900, abs=10000 / 2048)
    assert low == pytest.approx(100, abs=10000 / 2048)


def test_percentile_100_is_minmax():
    assert observed("percentile:100", WITH_OUTLIERS).range() == (-400.0, 1000.0)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, st.integers(2, 400), elements=st.floats(-1e4, 1e4, width=32)),
       st.integers(1, 399), st.sampled_from([90.0, 99.0, 99.99]))
def test_streamed_percentile_equals_one_shot_within_a_bin(values, cut, percentile):
    whole = observed("percentile", values, percentile=percentile, bins=256)
    parts = observed("percentile", values[:cut], values[cut:], percentile=percentile, bins=256)
    tolerance = whole.histogram.width + parts.histogram.width + 1e-9 * np.abs(values).max()
    assert np.allclose(whole.range(), parts.range(), rtol=0, atol=tolerance)


# --- entropy -----------------------------------------------------------------------------


def test_kl_divergence_by_hand():
    counts = np.array([2, 2, 4, 0, 1])
    # end 4, 2 levels: P = [2, 2, 4, 0 + 1 outlier] / 9; Q merges {0, 1} and {2, 3}: [2, 2, 4, 0] / 8
    p, q = np.array([2, 2, 4, 1]) / 9, np.array([2, 2, 4, 0]) / 8
    expected = sum(pi * math.log(pi / max(qi, 1e-12)) for pi, qi in zip(p, q))
    # end 4, 2 levels on [4, 0, 2, 2]: each group's count sits on its non-empty bins, Q = P
    got = _kl_divergences(counts, np.array([4]), np.array([2]))
    assert got[0] == pytest.approx(expected, rel=1e-12)
    assert _kl_divergences(np.array([4, 0, 2, 2]), np.array([4]), np.array([2]))[0] == pytest.approx(0, abs=1e-12)


def test_entropy_clips_outliers():
    values = np.concatenate([NORMAL, np.full(20, 40.0, np.float32), np.full(5, -25.0, np.float32)])
    low, high = observed("entropy", *np.array_split(values, 4)).range()
    assert 3.0 < high < 8.0 and -8.0 < low < -3.0


def test_entropy_clips_far_outliers_to_its_least_candidate():
    # the histogram spans [0, 1000] in 2048 bins; the search starts at the grid's 128 levels
    observer = observed("entropy", WITH_OUTLIERS)
    assert observer.range() == pytest.approx((-128 * observer.histogram.width, 128 * observer.histogram.width))


def test_entropy_keeps_the_whole_range_of_a_uniform_tensor():
    values = rng.uniform(-1, 1, 200_000)
    low, high = observed("entropy", values).range()
    assert high > 0.97 and low < -0.97


def test_entropy_of_a_non_negative_tensor_is_one_sided():
    relu = np.maximum(NORMAL, 0)
    low, high = observed("entropy", relu).range()
    assert low == 0.0
    assert np.quantile(relu, 0.999) < high <= relu.max()
    # the zeros do not pull the threshold in: it matches the one of |x| without its zeros
    magnitude_low, magnitude_high = observed("entropy", relu[relu > 0]).range()
    assert high == pytest.approx(magnitude_high, rel=0.1)


# --- mse ---------------------------------------------------------------------------------


def test_mse_finds_the_analytic_laplace_clipping():
    low, high = observed("mse", *np.array_split(LAPLACE, 8)).range()
    # Banner et al. (ACIQ): for Laplace(b=1) and 8 bits the error 2 e^-a + a^2 / (3 * 4^8) is least at
    # a e^a = 3 * 4^8, a = 9.89
    optimum = 9.89
    assert high == pytest.approx(optimum, rel=0.08) and low == pytest.approx(-optimum, rel=0.08)


def test_mse_range_is_as_good_as_a_brute_force_search():
    values = WITH_OUTLIERS[::4]
    low, high = observed("mse", values).range()
    best = min(quantization_error(values, max(-t, values.min()), min(t, values.max()))
               for t in np.geomspace(1, 1000, 200))
    assert quantization_error(values, low, high) <= 1.02 * best


def test_mse_clipping_beats_minmax_on_a_long_tailed_tensor():
    low, high = observed("mse", LAPLACE).range()
    assert quantization_error(LAPLACE, low, high) < 0.6 * quantization_error(LAPLACE, LAPLACE.min(), LAPLACE.max())


def test_mse_keeps_a_uniform_tensor_and_16_bits_clip_less():
    values = rng.uniform(-1, 1, 200_000)
    assert observed("mse", values).range()[1] > 0.98
    assert observed("mse", LAPLACE, bits=16).range()[1] > observed("mse", LAPLACE).range()[1]


# --- properties of every observer --------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["percentile", "entropy", "mse"])
def test_scaling_by_a_power_of_two_scales_the_range_exactly(spec):
    values = WITH_OUTLIERS[::8]
    low, high = observed(spec, values[:1000], values[1000:]).range()
    low4, high4 = observed(spec, 4 * values[:1000], 4 * values[1000:]).range()
    assert (low4, high4) == pytest.approx((4 * low, 4 * high), rel=1e-12)


@pytest.mark.parametrize("spec", ["percentile", "entropy", "mse"])
def test_histogram_observers_clip_at_least_as_hard_as_minmax(spec):
    for values in (NORMAL[:100_000], np.maximum(NORMAL[:100_000], 0), WITH_OUTLIERS[::10], -LAPLACE[:100_000]):
        low, high = observed(spec, values).range()
        assert values.min() <= low <= high <= values.max()


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 500), elements=st.floats(-1e5, 1e5, width=32)),
       st.integers(0, 500), st.sampled_from(list(OBSERVERS)))
def test_every_range_lies_within_min_and_max(values, cut, spec):
    observer = observed(spec, values[:cut], values[cut:])
    low, high = observer.range()
    assert isinstance(low, float) and isinstance(high, float)
    assert float(values.min()) <= low <= high <= float(values.max())


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 300), elements=st.floats(-1e9, 1e9)), st.integers(0, 300))
def test_minmax_streaming_equals_one_batch_exactly(values, cut):
    streamed = observed("minmax", values[:cut], values[cut:]).range()
    assert streamed == (values.min(), values.max())


def test_observers_keep_no_arrays():
    observer = observed("mse", NORMAL)
    held = [v for v in vars(observer).values() if isinstance(v, np.ndarray)]
    held += [v for v in vars(observer.histogram).values() if isinstance(v, np.ndarray)]
    assert sum(a.size for a in held) <= 2048
    assert isinstance(observer, MseObserver) and isinstance(observed("percentile"), PercentileObserver)


# --- tensors stored in 16 bits -------------------------------------------------


@pytest.mark.parametrize("spec", ["mse", "percentile:99.9", "entropy"])
def test_a_16_bit_tensor_is_not_clipped_like_an_8_bit_one(spec):
    """The clipping calibrators pick ranges for 256 codes; a 16-bit tensor's
    range is the least squared error on its own grid (about the extremes,
    here), widened by WIDE_HEADROOM for inputs beyond the calibration's."""
    eight = observed(spec, WITH_OUTLIERS).range()
    observer = wide_observer(spec, tensor="t")
    observer.update(WITH_OUTLIERS)
    assert isinstance(observer, MseObserver) and observer.bits == 16
    low, high = observer.range()
    assert (eight[1] < 100 or spec == "mse") and high >= WIDE_HEADROOM * 900 and low <= -WIDE_HEADROOM * 300


def test_a_16_bit_minmax_tensor_keeps_its_extremes_with_headroom():
    observer = wide_observer("minmax", tensor="t")
    observer.update(np.array([-2.0, 0.5, 7.0]))
    assert isinstance(observer, MinMaxObserver)
    assert observer.range() == (-2.0 * WIDE_HEADROOM, 7.0 * WIDE_HEADROOM)
