"""Signal-to-noise ratio in dB: the one definition every fidelity report
uses (the quantization metrics, the CLI's agreement line, FWDNXT's
comparesw). It lives in runtime/ so that the API facades can use it with
numpy alone; passes.quant.metrics re-exports it for the compiler's callers."""
from __future__ import annotations

import math

import numpy as np


def snr_db(reference, test) -> float:
    """Signal-to-noise ratio ``10 log10(Σ ref² / Σ (ref − test)²)`` in dB.

    +inf when the tensors are equal (an all-zero reference included), -inf
    when the reference is all zero and the test is not (no signal, some
    noise)."""
    ref, tst = float_pair(reference, test)
    diff = ref - tst
    return snr_from_sums(float(np.sum(ref * ref)), float(np.sum(diff * diff)))


def snr_from_sums(signal: float, noise: float) -> float:
    """:func:`snr_db` from ``Σ ref²`` and ``Σ (ref − test)²`` (streamed sums)."""
    if math.isnan(noise) or math.isnan(signal):
        return math.nan
    if noise == 0:
        return math.inf
    if signal == 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def float_pair(reference, test) -> tuple[np.ndarray, np.ndarray]:
    """Both tensors as float64 arrays of one shape with elements (a metric
    of tensors of different shapes or of no elements is undefined)."""
    ref, tst = np.asarray(reference, np.float64), np.asarray(test, np.float64)
    if ref.shape != tst.shape:
        raise ValueError(f"reference shape {ref.shape} differs from test shape {tst.shape}")
    if ref.size == 0:
        raise ValueError("metrics of empty tensors are undefined")
    return ref, tst
