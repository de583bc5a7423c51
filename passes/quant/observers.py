"""Streaming range observers: one per calibrated tensor, fed batch by batch.

``update(array)`` folds a batch into running statistics and keeps nothing
of the array; ``range()`` gives the calibrated ``(low, high)``. Every
observer tracks the exact finite min and max; non-finite values are skipped
and counted in ``nonfinite``. The histogram observers (percentile, entropy,
mse) share :class:`StreamingHistogram`, whose range grows as batches extend
it, so one pass over the calibration data suffices.

The grid these ranges feed is docs/quantization.md's asymmetric one: the
range is widened to include 0 and mapped onto all 256 int8 codes. The
entropy and mse searches choose a threshold ``T`` on ``|x|`` that clips the
tensor to ``[max(min, -T), min(max, T)]`` and score it on that grid: a
non-negative tensor (ReLU's output) is clipped on one side only and its
grid spends every code on ``[0, T]``.
"""
from __future__ import annotations

import math

import numpy as np

from runtime.errors import TesseraError
from runtime.jit import jit
from runtime.parallel import parallel_for

PARALLEL_GRAIN = 16
"""Least candidate ranges a thread scores at once."""


class CalibrationError(TesseraError):
    """An observer cannot be built or has no range to give."""


class Observer:
    """Exact finite min/max and counts of one tensor; subclasses add the
    statistics their range needs."""

    OPTIONS: dict[str, type] = {}
    """Constructor options a spec string may set, the primary one first."""

    def __init__(self, *, tensor: str = ""):
        self.tensor = tensor
        self.count = 0
        """Finite values seen."""
        self.nonfinite = 0
        """NaN and infinite values seen (and ignored)."""
        self.min = math.inf
        self.max = -math.inf

    def update(self, array) -> None:
        """Fold one batch of the tensor into the statistics."""
        self.update_many([array])

    def update_many(self, arrays) -> None:
        """Fold batches of the tensor into the statistics, in order: the same
        statistics as :meth:`update` of each in turn (a histogram counts
        them all at once, over the threads)."""
        flats = [values for values in (_flat(array, self.tensor) for array in arrays) if values.size]
        extremes: list = [None] * len(flats)
        parallel_for(_extremes_of, len(flats), flats, extremes)
        batches = []
        for values, (low, high, bad) in zip(flats, extremes):
            self.nonfinite += bad
            if bad == values.size:
                continue
            self.count += values.size - bad
            self.min, self.max = min(self.min, low), max(self.max, high)
            batches.append((values, low, high))
        if batches:
            self._fold(batches)

    def range(self) -> tuple[float, float]:
        """The calibrated (low, high) of the tensor."""
        if self.count == 0:
            raise CalibrationError(f"tensor {self.tensor or '(unnamed)'!r}: no finite value was seen in "
                                   f"calibration ({self.nonfinite} non-finite)")
        low, high = self._range()
        return low * self.headroom, high * self.headroom

    headroom = 1.0
    """The calibrated range is widened by this factor (16-bit tensors: :data:`WIDE_HEADROOM`)."""

    def _fold(self, batches: list[tuple[np.ndarray, float, float]]) -> None:
        """Fold batches' values (non-finite ones included), each with its finite min and max."""

    def _range(self) -> tuple[float, float]:
        return self.min, self.max


class MinMaxObserver(Observer):
    """The smallest and largest value seen."""


class PercentileObserver(Observer):
    """The ``100 - p`` and ``p`` percentiles of x (each side clips
    ``(100 - p)`` % of the values), read off a streamed histogram of x with
    linear interpolation inside the bin: exact to a bin width."""

    OPTIONS = {"percentile": float, "bins": int}

    def __init__(self, percentile: float = 99.99, bins: int = 2048, *, tensor: str = ""):
        super().__init__(tensor=tensor)
        if not 50 < percentile <= 100:
            raise CalibrationError(f"percentile must be in (50, 100], got {percentile!r}")
        self.percentile = float(percentile)
        self.histogram = StreamingHistogram(_check_bins(bins, "bins", 2))

    def _fold(self, batches: list[tuple[np.ndarray, float, float]]) -> None:
        self.histogram.add_many([(values, min(low, 0.0), max(high, 0.0)) for values, low, high in batches])

    def _range(self) -> tuple[float, float]:
        q = self.percentile / 100
        low, high = self.histogram.quantile(1 - q), self.histogram.quantile(q)
        return _within(self, low), _within(self, high)


class EntropyObserver(Observer):
    """TensorRT's calibration: the threshold T on |x| minimising the KL
    divergence between the histogram of |x| clipped at T (the clipped mass
    piled into the last bin) and its quantized version. Exact zeros are left
    out (as pytorch-quantization's skip_zeros does): 0 is exact on the grid,
    and ReLU's spike of zeros would otherwise dominate the divergence and
    clip a ReLU output far harder than the same values without their zeros.
    The candidates start at the grid's level count (128 bins for a signed
    tensor), so a tensor whose outliers stretch the histogram far beyond its
    bulk is clipped to no less than that many bins; ``bins`` refines it.

    ``quantized_bins`` is TensorRT's level count for a tensor symmetric
    about 0 (128: half of int8's codes per side). On the asymmetric grid a
    candidate T gives ``[max(min, -T), min(max, T)]`` 255 steps, so the
    levels over ``[0, T]`` are ``quantized_bins * 2T / (high_T - low_T)``:
    twice as many for a non-negative tensor."""

    OPTIONS = {"quantized_bins": int, "bins": int}

    def __init__(self, quantized_bins: int = 128, bins: int = 2048, *, tensor: str = ""):
        super().__init__(tensor=tensor)
        self.quantized_bins = _check_bins(quantized_bins, "quantized_bins", 1)
        if bins < 2 * quantized_bins:
            raise CalibrationError(f"bins ({bins}) must be at least twice quantized_bins ({quantized_bins})")
        self.histogram = StreamingHistogram(bins)

    def _fold(self, batches: list[tuple[np.ndarray, float, float]]) -> None:
        self.histogram.add_many([(values, 0.0, max(-low, high)) for values, low, high in batches], absolute=True)

    def _range(self) -> tuple[float, float]:
        if self.histogram.width == 0:
            return self.min, self.max
        ends = np.arange(1, self.histogram.occupied() + 1)
        levels = np.rint(self.quantized_bins * 2 * _positive_share(self, ends * self.histogram.width))
        fits = ends >= levels
        if not fits.any():
            return self.min, self.max  # the data fills fewer bins than the grid has levels
        ends, levels = ends[fits], levels[fits].astype(np.int64)
        best = ends[np.argmin(_kl_divergences(self.histogram.counts, ends, levels))]
        return _clipped(self, best * self.histogram.width)


class MseObserver(Observer):
    """The threshold T on |x| minimising the expected squared error of
    quantizing the tensor on the ``bits``-bit asymmetric grid of
    ``[max(min, -T), min(max, T)]`` (rounding and clipping error alike),
    computed exactly for values spread evenly over each bin of a streamed
    histogram of x; exact zeros add nothing (0 is on the grid)."""

    OPTIONS = {"bins": int, "bits": int}

    def __init__(self, bins: int = 2048, bits: int = 8, *, tensor: str = ""):
        super().__init__(tensor=tensor)
        if bits not in (8, 16):
            raise CalibrationError(f"bits must be 8 or 16, got {bits!r}")
        self.bits = bits
        self.histogram = StreamingHistogram(_check_bins(bins, "bins", 2))

    def _fold(self, batches: list[tuple[np.ndarray, float, float]]) -> None:
        self.histogram.add_many([(values, min(low, 0.0), max(high, 0.0)) for values, low, high in batches])

    def _range(self) -> tuple[float, float]:
        hist = self.histogram
        if hist.width == 0:
            return self.min, self.max
        peak = max(-self.min, self.max)
        thresholds = np.arange(1, math.ceil(peak / hist.width) + 1) * hist.width
        low = np.minimum(np.maximum(self.min, -thresholds), 0.0)
        high = np.maximum(np.minimum(self.max, thresholds), 0.0)
        errors = np.empty(low.size)
        parallel_for(_grid_errors, low.size, hist.counts, hist.origin, hist.width, low, high, 2 ** self.bits - 1,
                     -(2 ** (self.bits - 1)), errors, grain=PARALLEL_GRAIN)
        return _clipped(self, thresholds[np.argmin(errors)])


OBSERVERS: dict[str, type[Observer]] = {
    "minmax": MinMaxObserver,
    "percentile": PercentileObserver,
    "entropy": EntropyObserver,
    "mse": MseObserver,
}


def make_observer(spec: str, *, tensor: str = "", **options) -> Observer:
    """The observer a spec names: ``"minmax"``, ``"percentile:99.9"`` (the
    primary option), ``"entropy:bins=4096,quantized_bins=128"``; keyword
    ``options`` override the spec's."""
    name, parsed = parse_spec(spec)
    cls = OBSERVERS[name]
    unknown = set(options) - set(cls.OPTIONS)
    if unknown:
        raise CalibrationError(f"calibrator {name!r} has no option(s) {sorted(unknown)}; "
                               f"its options are {list(cls.OPTIONS)}")
    return cls(**{**parsed, **options}, tensor=tensor)


def wide_observer(spec: str, tensor: str = "") -> Observer:
    """The observer of a tensor stored in 16 bits: ``minmax`` as named, else
    the range with the least squared error on the 16-bit grid (``mse`` with
    bits=16). The clipping calibrators (percentile, entropy, and mse on the
    8-bit grid) trade clipped outliers for finer steps among 256 codes; on
    65536 codes the steps are 256 times finer already, and the clipping
    becomes the tensor's largest error."""
    name, parsed = parse_spec(spec)
    if name == "minmax":
        observer = make_observer(spec, tensor=tensor)
    else:
        observer = MseObserver(**({"bins": parsed["bins"]} if name == "mse" and "bins" in parsed else {}), bits=16,
                               tensor=tensor)
    observer.headroom = WIDE_HEADROOM
    return observer


WIDE_HEADROOM = 2.0
"""A 16-bit tensor's grid covers its calibrated range widened by this factor. The calibration set's
extremes are a sample's: new inputs pass them, and on a 16-bit grid the clipping they meet is the largest
error left (the trained YOLOv8-style detector, every layer in 16 bits, held-out images: class scores
30.0 dB with no headroom, 37.0 with 1.5 or 2, the bound its 8-bit input sets being 36.8), while
doubling the range costs 6 dB of a rounding noise some 90 dB down."""


def parse_spec(spec: str) -> tuple[str, dict]:
    """(calibrator name, options) of a spec string; errors name the spec."""
    name, _, text = str(spec).strip().partition(":")
    name = name.strip().lower()
    if name not in OBSERVERS:
        raise CalibrationError(f"unknown calibrator {spec!r}; the choices are {list(OBSERVERS)}")
    cls = OBSERVERS[name]
    options = {}
    for index, item in enumerate(filter(None, (t.strip() for t in text.split(",")))):
        key, value = _option_item(item, index, cls, spec)
        options[key] = _option_value(cls.OPTIONS[key], value, key, spec)
    return name, options


def _option_item(item: str, index: int, cls: type[Observer], spec: str) -> tuple[str, str]:
    """(option, text) of one ``key=value`` item, or of a bare value (the primary option)."""
    key, equals, value = item.partition("=")
    if not equals:
        if index != 0 or not cls.OPTIONS:
            raise CalibrationError(f"calibrator spec {spec!r}: {item!r} needs a name (name=value); "
                                   f"the options are {list(cls.OPTIONS)}")
        return next(iter(cls.OPTIONS)), item
    if key.strip() not in cls.OPTIONS:
        raise CalibrationError(f"calibrator spec {spec!r}: unknown option {key.strip()!r}; "
                               f"the options are {list(cls.OPTIONS)}")
    return key.strip(), value.strip()


def _option_value(kind: type, text: str, key: str, spec: str):
    try:
        return kind(text)
    except ValueError:
        raise CalibrationError(f"calibrator spec {spec!r}: option {key!r} must be {kind.__name__}, "
                               f"got {text!r}") from None


class StreamingHistogram:
    """Counts of the non-zero finite values over ``len(counts)`` equal bins
    from ``origin``; the bins always span 0 and every value added. Exact
    zeros are counted apart, in ``zeros``: 0 is exact on every grid, so the
    entropy and mse searches leave them out.

    The first grid fits the first batch. When a batch reaches past the
    range, the bins widen by an integer factor k (2 for modest growth) and
    shift by whole new bins, so each old bin falls inside exactly one new
    bin: re-binning merges counts exactly (onnxruntime's collector grows the
    bin count instead; this keeps it fixed). The final histogram equals a
    one-shot histogram of all the data on the final grid, whose bins are
    about twice as wide as one fitted to the final range at worst. Until
    some value differs from 0 the width is 0."""

    def __init__(self, bins: int):
        self.counts = np.zeros(bins, np.int64)
        self.origin = 0.0
        self.width = 0.0
        self.zeros = 0

    def add(self, values: np.ndarray, low: float, high: float, absolute: bool = False) -> None:
        """Count ``values`` (of ``|values|`` when ``absolute``), whose finite
        ones lie in [low, high] with low <= 0 <= high; non-finite are skipped."""
        self.add_many([(values, low, high)], absolute)

    def add_many(self, batches: list[tuple[np.ndarray, float, float]], absolute: bool = False) -> None:
        """:meth:`add` of each (values, low, high) in turn, with the same
        counts: the bins each batch is counted on depend only on the
        ranges before it, so the batches are counted at once, each on its
        own bins and over the threads, then added in order as the bins grow."""
        grids = self._grids([(float(low), float(high)) for _, low, high in batches])
        partial = np.zeros((len(batches), self.counts.size), np.int64)
        zeros = np.zeros(len(batches), np.int64)
        parallel_for(_count_batches, len(batches), [values for values, _, _ in batches], partial, zeros, grids,
                     absolute)
        for (_, low, high), counts, zero in zip(batches, partial, zeros):
            self._cover(float(low), float(high))
            self.counts += counts
            self.zeros += int(zero)

    def _grids(self, ranges: list[tuple[float, float]]) -> list[tuple[float, float]]:
        """(origin, 1 / width, or 0 while the width is 0) of the bins each
        range is counted on, from a copy of the bins without their counts."""
        shadow = StreamingHistogram(self.counts.size)
        shadow.origin, shadow.width = self.origin, self.width
        grids = []
        for low, high in ranges:
            shadow._cover(low, high)
            grids.append((shadow.origin, 1.0 / shadow.width if shadow.width else 0.0))
        return grids

    def occupied(self) -> int:
        """One past the last non-empty bin."""
        nonzero = np.flatnonzero(self.counts)
        return int(nonzero[-1]) + 1 if nonzero.size else 0

    def quantile(self, q: float) -> float:
        """The value below which a fraction ``q`` of the values (zeros
        included) lie, interpolated linearly inside its bin."""
        if self.width == 0:
            return 0.0
        counts = self.counts.copy()
        counts[min(int(-self.origin / self.width), counts.size - 1)] += self.zeros
        cumulative = np.cumsum(counts)
        target = q * cumulative[-1]
        b = min(int(np.searchsorted(cumulative, target)), counts.size - 1)
        inside = (target - (cumulative[b] - counts[b])) / counts[b] if counts[b] else 0.0
        return self.origin + (b + min(max(inside, 0.0), 1.0)) * self.width

    def _cover(self, low: float, high: float) -> None:
        if self.width == 0:
            if high > low:  # the first values other than 0: lay the first grid
                self.origin, self.width = low, (high - low) / self.counts.size
            return
        bins = self.counts.size
        top = self.origin + bins * self.width
        if low >= self.origin and high <= top:
            return
        low, high = min(low, self.origin), max(high, top)
        growth = (high - low) / ((bins - 1) * self.width)
        if not growth < 2.0 ** 52:  # the old bins would all merge into one, and k * width lose exactness
            self._restart(low, high)
            return
        k = max(1, math.ceil(growth))
        while (shift := self._shift(k, low, high)) is None:
            k += 1
        self._merge(k, shift)

    def _shift(self, k: int, low: float, high: float) -> int | None:
        """How many of the k times wider bins the origin moves down so that
        they span [low, high] (None if they cannot), sharing the spare bins
        between the sides as |low| : high do, so that growth (which scales
        each side) rarely needs another merge and a side that has no values
        (the negative side of ReLU's output, of |x|) gets none."""
        width = k * self.width
        bins = self.counts.size
        fewest = math.ceil((self.origin - low) / width)
        most = min(math.floor((self.origin + bins * width - high) / width), bins - -(-bins // k))
        if fewest > most:
            return None
        spare = bins * width - (high - low)
        wanted = round((self.origin - low + spare * -low / (high - low)) / width)
        return min(max(wanted, fewest), most)

    def _restart(self, low: float, high: float) -> None:
        """Fit a new grid to [low, high], so much wider than the old that
        the old counts all go to the bin holding the old grid's centre."""
        centre = self.origin + self.counts.size * self.width / 2
        total = self.counts.sum()
        self.origin, self.width = low, (high - low) / self.counts.size
        self.counts[:] = 0
        self.counts[min(int((centre - low) / self.width), self.counts.size - 1)] = total

    def _merge(self, k: int, shift: int) -> None:
        """Widen the bins k times; old bin i goes to new bin shift + i // k."""
        merged = np.add.reduceat(self.counts, np.arange(0, self.counts.size, min(k, self.counts.size)))
        self.counts[:] = 0
        self.counts[shift:shift + merged.size] = merged
        self.origin -= shift * k * self.width
        self.width *= k


def _flat(array, tensor: str) -> np.ndarray:
    """The values of ``array`` as a 1-D float32 or float64 array (no copy when possible)."""
    values = np.asarray(array)
    if values.dtype.kind not in "biuf":
        raise CalibrationError(f"tensor {tensor or '(unnamed)'!r}: cannot observe values of dtype {values.dtype}")
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float32 if values.dtype == np.float16 else np.float64)
    return values.reshape(-1)


def _finite_extremes(values: np.ndarray) -> tuple[float, float, int]:
    """(min, max) of the finite values and the count of the others. min and
    max alone reveal any NaN or infinity, so the common case is two passes."""
    low, high = values.min(), values.max()
    if np.isfinite(low) and np.isfinite(high):
        return float(low), float(high), 0
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan, math.nan, values.size
    return float(finite.min()), float(finite.max()), values.size - finite.size


def _extremes_of(start, stop, flats, out) -> None:
    """:func:`_finite_extremes` of flats[start:stop] into out[start:stop]."""
    for k in range(start, stop):
        out[k] = _finite_extremes(flats[k])


def _check_bins(value, what: str, least: int) -> int:
    if not isinstance(value, (int, np.integer)) or value < least:
        raise CalibrationError(f"{what} must be an integer >= {least}, got {value!r}")
    return int(value)


def _within(observer: Observer, value: float) -> float:
    """``value`` moved into [min, max] (a histogram is exact to a bin only)."""
    return min(max(float(value), observer.min), observer.max)


def _clipped(observer: Observer, threshold: float) -> tuple[float, float]:
    """The range a threshold T on |x| leaves: [max(min, -T), min(max, T)].
    On one-signed data T never cuts past the value nearest 0 (a lone value
    of 35726.56 under the mse search's T of 35709.11 made low > high)."""
    t = max(float(threshold), observer.min, -observer.max)
    return max(observer.min, -t), min(observer.max, t)


def _positive_share(observer: Observer, thresholds: np.ndarray) -> np.ndarray:
    """T / (high_T - low_T): the fraction of the asymmetric grid of each
    clipped range [low_T, high_T] (0 included) that [0, T] takes."""
    low = np.minimum(np.maximum(observer.min, -thresholds), 0.0)
    high = np.maximum(np.minimum(observer.max, thresholds), 0.0)
    return thresholds / (high - low)


def _count_batches(start, stop, batches, partial, zeros, grids, absolute):
    """Batches start..stop, each into its row of ``partial`` on its grid
    (origin, inverse), its zeros into ``zeros``."""
    for k in range(start, stop):
        origin, inverse = grids[k]
        zeros[k] = _count_into(batches[k], partial[k], origin, inverse, absolute)


@jit
def _count_into(values, counts, origin, inverse, absolute):
    """Add each finite non-zero value (its magnitude when ``absolute``) to
    bin floor((v - origin) * inverse), clamped to the bins; return the
    count of zeros."""
    last = counts.size - 1
    zeros = 0
    for v in values:
        if not np.isfinite(v):
            continue
        zeros += v == 0  # counted, not branched on: ReLU's zeros come in no predictable order
        x = abs(v) if absolute else v
        counts[min(max(int((x - origin) * inverse), 0), last)] += 1
    counts[min(max(int((0.0 - origin) * inverse), 0), last)] -= zeros
    return zeros


_KL_FLOOR = 1e-12
"""Probability given to a quantized bin that is empty where the reference is not."""


@jit
def _kl_divergences(counts, ends, levels):
    """KL(P || Q) for each candidate: P is counts[:end] with the counts past
    it added to its last bin, Q merges counts[:end] into ``levels`` groups
    and spreads each group's count evenly over its non-empty bins.

    Q is constant over a group's non-empty bins, so the sum of p log q
    takes one logarithm per group, and the sum of p log p comes from a
    prefix sum: each candidate costs O(end) additions and O(levels) logs."""
    total = counts.sum()
    prefix = np.zeros(counts.size + 1)
    entropy_prefix = np.zeros(counts.size + 1)
    for b in range(counts.size):
        prefix[b + 1] = prefix[b] + counts[b]
        entropy_prefix[b + 1] = entropy_prefix[b] + (counts[b] * np.log(counts[b]) if counts[b] else 0.0)
    sums = np.zeros(levels.max())
    filled = np.zeros(levels.max())
    out = np.empty(ends.size)
    for c in range(ends.size):
        end, m = ends[c], levels[c]
        kept = prefix[end]
        if kept == 0:
            out[c] = np.inf
            continue
        sums[:m] = 0.0
        filled[:m] = 0.0
        for b in range(end):
            g = b * m // end
            sums[g] += counts[b]
            filled[g] += counts[b] > 0
        outliers = total - kept
        last = counts[end - 1] + outliers
        p_log_p = entropy_prefix[end - 1] + (last * np.log(last) if last else 0.0)
        p_log_q = 0.0
        for g in range(m):
            if sums[g]:
                p_log_q += sums[g] * np.log(sums[g] / filled[g] / kept)
        if outliers:
            g = (end - 1) * m // end
            q = sums[g] / filled[g] / kept if counts[end - 1] else _KL_FLOOR
            p_log_q += outliers * np.log(q)
        out[c] = (p_log_p - p_log_q) / total - np.log(total)
    return out


@jit
def _grid_errors(start, stop, counts, origin, width, lows, highs, steps, qmin, out):
    """Into ``out[c]``, for each range [lows[c], highs[c]] (0 included) of
    c in start..stop: the summed squared error of quantizing, on its
    asymmetric grid of ``steps`` steps (zero point as
    runtime.qscheme.activation_params rounds it), ``counts[b]`` values
    spread evenly over bin b of the histogram. The integral at an edge
    shared by two non-empty bins is computed once.

    Bins outer, ranges inner: each range still sums its bins in their
    order, with the same operations (so the same bits as a range at a
    time), but the inner loop over independent ranges runs in SIMD lanes."""
    n = stop - start
    scales, firsts, lasts = np.empty(n), np.empty(n), np.empty(n)
    totals, at_previous = np.zeros(n), np.zeros(n)
    for i in range(n):
        c = start + i
        scale = (highs[c] - lows[c]) / steps
        zero = min(max(np.rint(qmin - lows[c] / scale), qmin), qmin + steps)
        scales[i], firsts[i], lasts[i] = scale, qmin - zero, qmin + steps - zero  # the grid: scale * [first..last]
    previous = -2
    for b in np.flatnonzero(counts):
        left, right, count = origin + b * width, origin + (b + 1) * width, counts[b]
        if b == previous + 1:
            for i in range(n):
                edge = _error_integral(right / scales[i], firsts[i], lasts[i])
                totals[i] += count * (edge - at_previous[i])
                at_previous[i] = edge
        else:
            for i in range(n):
                below = _error_integral(left / scales[i], firsts[i], lasts[i])
                edge = _error_integral(right / scales[i], firsts[i], lasts[i])
                totals[i] += count * (edge - below)
                at_previous[i] = edge
        previous = b
    for i in range(n):
        out[start + i] = totals[i] * scales[i] * scales[i] * scales[i] / width


@jit(inline="always")
def _error_integral(u, first, last):
    """The integral from 0 to u of (t - clamp(round(t), first, last))^2,
    first <= 0 <= last: rounding error inside, clipping error outside."""
    if u > last + 0.5:
        return _rounding_integral(last + 0.5) + ((u - last) ** 3 - 0.125) / 3
    if u < first - 0.5:
        return _rounding_integral(first - 0.5) - ((first - u) ** 3 - 0.125) / 3
    return _rounding_integral(u)


@jit(inline="always")
def _rounding_integral(u):
    """The integral from 0 to u of (t - round(t))^2: 1/12 per whole unit."""
    nearest = np.floor(u + 0.5)
    r = u - nearest
    return nearest / 12 + (r ** 3 + 0.125) / 3 - 1 / 24
