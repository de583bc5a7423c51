"""Fidelity metrics: how far a quantized model's outputs are from the float
model's, and a text table to print them in.

Every metric takes the reference (float) tensor first and the tested one
second, computes in float64 over all elements, and rejects tensors of
different shapes or with no elements. In the error metrics (all but
top_k_agreement) NaNs propagate: a NaN in gives NaN out. The SNR and the
shape checks are runtime.snr's (one definition, which the runtime's API
facades share), re-exported here.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from runtime.snr import float_pair as _pair
from runtime.snr import snr_db, snr_from_sums

__all__ = ["snr_db", "snr_from_sums", "rmse", "max_abs_error", "cosine_similarity", "cosine_from_sums",
           "top_k_agreement", "snr_spread", "snr_line", "format_table", "SNR_LINE_MOST"]


def rmse(reference, test) -> float:
    """Root mean squared error."""
    _, diff = _reference_and_error(reference, test)
    return float(np.sqrt(np.mean(diff * diff)))


def max_abs_error(reference, test) -> float:
    """Largest absolute element-wise difference."""
    _, diff = _reference_and_error(reference, test)
    return float(np.max(np.abs(diff)))


def cosine_similarity(reference, test) -> float:
    """``Σ ref·test / (‖ref‖ ‖test‖)`` over the flattened tensors.

    Two all-zero tensors are identical (1.0); an all-zero tensor against a
    non-zero one shares no direction (0.0)."""
    ref, tst = _pair(reference, test)
    return cosine_from_sums(float(ref.ravel() @ ref.ravel()), float(tst.ravel() @ tst.ravel()),
                            float(ref.ravel() @ tst.ravel()))


def cosine_from_sums(signal: float, test: float, dot: float) -> float:
    """:func:`cosine_similarity` from ``Σ ref²``, ``Σ test²`` and ``Σ ref·test``."""
    norms = math.sqrt(signal) * math.sqrt(test)
    if norms == 0:
        return 1.0 if signal == 0 and test == 0 else 0.0
    value = dot / norms
    return value if math.isnan(value) else max(-1.0, min(1.0, value))


def top_k_agreement(reference_logits, test_logits, k: int = 1) -> float:
    """Fraction of samples whose top-1 class under ``test_logits`` is one of
    the top ``k`` classes under ``reference_logits``.

    Classes run along the last axis; every other axis indexes samples (a 1-D
    input is one sample). The test's top-1 is its first largest logit; it is
    in the reference's top k when its reference logit is at least the k-th
    largest one, so ties at the k-th place all count. ``k = 1`` is top-1
    agreement."""
    ref, tst = _pair(reference_logits, test_logits)
    classes = ref.shape[-1] if ref.ndim else 1
    if not 1 <= k <= classes:
        raise ValueError(f"top_k_agreement: k = {k} is not in [1, {classes}] (the number of classes)")
    ref, tst = ref.reshape(-1, classes), tst.reshape(-1, classes)
    predicted = np.argmax(tst, axis=1)
    kth_largest = np.partition(ref, classes - k, axis=1)[:, classes - k]
    agrees = ref[np.arange(len(ref)), predicted] >= kth_largest
    return float(np.mean(agrees))


def _reference_and_error(reference, test) -> tuple[np.ndarray, np.ndarray]:
    ref, tst = _pair(reference, test)
    return ref, ref - tst


# ---------------------------------------------------------------------- table

SNR_LINE_MOST = 8
"""Outputs (or parts of outputs) a one-line SNR summary names; past that, the worst ones."""


def snr_spread(signals: Sequence[float], noises: Sequence[float]) -> float:
    """The standard error (dB) of the SNR of samples whose ``Σ ref²`` and
    ``Σ (ref − test)²`` are ``signals`` and ``noises``, one of each per sample:
    the jackknife's (the SNR recomputed without each sample in turn). 0 for
    fewer than two samples or an SNR without noise."""
    signal, noise = np.asarray(signals, np.float64), np.asarray(noises, np.float64)
    n = signal.size
    if n < 2 or not noise.sum() > 0:
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        left_out = 10.0 * np.log10((signal.sum() - signal) / (noise.sum() - noise))
    if not np.all(np.isfinite(left_out)):  # one sample carries all the noise (or all the signal)
        return math.inf
    return float(math.sqrt((n - 1) / n * np.sum((left_out - left_out.mean()) ** 2)))


def snr_line(snrs: Mapping[str, float], most: int = SNR_LINE_MOST,
             spreads: Mapping[str, float] | None = None) -> str:
    """``hm 34.3 dB, wh 37.0 dB``: every output in order, or, for a head of
    many quantities (channels), the ``most`` worst and how the rest stand;
    with ``spreads`` (standard errors by name), ``reg 30.1 ± 0.2 dB``."""
    def item(name: str, snr: float) -> str:
        spread = (spreads or {}).get(name)
        return f"{name} {snr:.1f} ± {spread:.1f} dB" if spread else f"{name} {snr:.1f} dB"

    if len(snrs) <= most:
        return ", ".join(item(name, snr) for name, snr in snrs.items())
    ranked = sorted(snrs.items(), key=lambda pair: pair[1])
    rest = [snr for _, snr in ranked[most:]]
    return (", ".join(item(name, snr) for name, snr in ranked[:most])
            + f" (the worst {most} of {len(snrs)}; the other {len(rest)} at {min(rest):.1f} dB or more)")


def format_table(rows: Sequence[Mapping[str, Any] | Sequence[Any]], columns: Sequence[str]) -> str:
    """An aligned text table: a header, a rule, one line per row.

    A row is a mapping from column name to value (missing names print empty)
    or a sequence of one value per column. Columns of numbers are right-aligned (floats
    to 6 significant digits, infinities as ``inf``/``-inf``), text is
    left-aligned."""
    values = [_row_values(index, row, columns) for index, row in enumerate(rows)]
    cells = [[_format_cell(value) for value in line] for line in values]
    numeric = [_numeric_column([line[j] for line in values]) for j in range(len(columns))]
    widths = [max([len(name)] + [len(line[j]) for line in cells]) for j, name in enumerate(columns)]
    lines = [[str(name) for name in columns], ["-" * width for width in widths], *cells]
    return "\n".join("  ".join(text.rjust(width) if right else text.ljust(width)
                               for text, width, right in zip(line, widths, numeric)).rstrip()
                     for line in lines)


def _row_values(index: int, row: Mapping[str, Any] | Sequence[Any], columns: Sequence[str]) -> list[Any]:
    if isinstance(row, Mapping):
        return [row.get(name, "") for name in columns]
    values = list(row)
    if len(values) != len(columns):
        raise ValueError(f"format_table: row {index} has {len(values)} values for {len(columns)} columns")
    return values


def _numeric_column(values: list[Any]) -> bool:
    """Numbers, apart from missing (empty) cells: right-aligned."""
    present = [value for value in values if value != ""]
    return bool(present) and all(_is_number(value) for value in present)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _format_cell(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return _format_float(float(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


def _format_float(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.6g}"
