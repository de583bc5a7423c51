"""Tessera's quantization arithmetic, as docs/quantization.md defines it.

Compile-time helpers that turn real scales into integers (the fixed-point
multiplier and shift of a rescale, the quantization of a scale's range), the
storage ranges, and the one definition of the integer rescale, which the CPU
integer kernels (runtime/kernels/qdevice*.py) and the simulator
(runtime/sim/) inline. The quantize pass computes parameters with them.
"""
from __future__ import annotations

import math

import numpy as np

from runtime.errors import KernelError
from runtime.jit import jit
from runtime.wrapping import add32, ashr32, mul32

INT8, INT16, INT32, INT64 = (np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64))

ACTIVATION_RANGE = {t: (int(np.iinfo(t).min), int(np.iinfo(t).max)) for t in (INT8, INT16)}
"""Storage range of quantized activations: the whole int8 / int16 range."""
WEIGHT_RANGE = {t: (-high, high) for t, (_, high) in ACTIVATION_RANGE.items()}
"""Storage range of quantized (symmetric) weights: the most negative code stays unused."""
ACCUMULATOR = {INT8: INT32, INT16: INT64}
"""Accumulator (and bias) type of a layer of each data type."""
MULTIPLIER_BITS = 31
MIN_SHIFT, MAX_SHIFT = 1, 62


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(m, n) with m in [2^30, 2^31) and 1 <= n <= 62 such that m * 2^-n
    approximates ``real`` > 0 to 31 significant bits."""
    if not (real > 0 and math.isfinite(real)):
        raise KernelError(f"a requantisation factor must be positive and finite, got {real!r}")
    fraction, exponent = math.frexp(real)  # real = fraction * 2^exponent, fraction in [0.5, 1)
    m = round_half_even(fraction * 2.0 ** MULTIPLIER_BITS)
    n = MULTIPLIER_BITS - exponent
    if m == 2 ** MULTIPLIER_BITS:
        m, n = m // 2, n - 1
    if not MIN_SHIFT <= n <= MAX_SHIFT:
        raise KernelError(f"requantisation factor {real!r} is out of range (shift {n} not in "
                          f"[{MIN_SHIFT}, {MAX_SHIFT}]): a scale is degenerate")
    return int(m), int(n)


def quantize_multipliers(reals) -> tuple[np.ndarray, np.ndarray]:
    """quantize_multiplier for each element: (m as int64 array, n as int64 array)."""
    pairs = [quantize_multiplier(float(r)) for r in np.asarray(reals, np.float64).reshape(-1)]
    return np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64)


# ---------------------------------------------------------------- the rescale
_SMALL = 2**31
"""|v| below this: v * m + 2^(n-1) fits in int64 (m < 2^31, n <= 62)."""
RESCALE_LIMIT = 2**62
"""rescale's results saturate here, far outside any storage range."""
_LOW31 = 2**31 - 1


@jit(inline="always")
def rescale_small(v, m, n):
    """(v*m + 2^(n-1)) >> n: v * m / 2^n rounded half up, for |v| < 2^31 (so
    that v*m + 2^(n-1) fits in int64), m in [2^30, 2^31), n in [1, 62]. Free
    of branches, so loops of it vectorise."""
    return (v * m + (1 << (n - 1))) >> n


HIGH_SHIFT = 33
"""The least shift for which :func:`rescale_high` holds."""


@jit(inline="always")
def rescale_high(v, m, bias, shift):
    """rescale_small(v, m, n) for an int32 ``v`` and n >= HIGH_SHIFT, in
    32-bit lanes (eight to an AVX2 register where rescale_small's 64-bit
    shifts and clamps take four): ``m`` the multiplier as the int64 of an
    int32 (so that the product is one sign-extending multiply), ``bias``
    int32(2^(n-33)), ``shift`` int32(n - 32). Exact: with p = v*m and
    P = p >> 32, (p + 2^(n-1)) >> n = (P + 2^(n-33)) >> (n-32), as 2^(n-1)
    has no bits in p's low word (a floor of a floor); |P| < 2^30 and
    2^(n-33) <= 2^29, so the sum fits in int32."""
    return ashr32(add32(np.int32((np.int64(v) * m) >> 32), bias), shift)


@jit(inline="always")
def high_params(m, n):
    """:func:`rescale_high`'s (m, bias, shift) for multiplier ``m`` and shift ``n`` >= HIGH_SHIFT."""
    return np.int64(np.int32(m)), np.int32(1 << (n - HIGH_SHIFT)), np.int32(n - 32)


SHORT_SHIFTS = (16, 31)
"""The shifts for which :func:`rescale_short` holds."""
_SIXTEEN = np.int32(16)


@jit(inline="always")
def rescale_short(d, high, low, bias, shift):
    """rescale_small(d, m, n) for an int32 ``d`` with |d| < 2^9 (an 8-bit
    code minus an 8-bit zero point) and n in SHORT_SHIFTS, all in 32-bit
    lanes: ``high``, ``low`` int32(m >> 16), int32(m & 0xFFFF); ``bias``
    int32(2^(n-1)); ``shift`` int32(n - 16). Exact: d*m + 2^(n-1) =
    2^16·(d·high) + t with t = d·low + 2^(n-1), and the floor of that over
    2^n is (d·high + floor(t / 2^16)) >> (n - 16) (a floor of a floor);
    |d·low| < 2^25 and 2^(n-1) <= 2^30, so t fits in int32, and so does
    d·high + (t >> 16), under 2^24 + 2^15."""
    t = add32(mul32(d, low), bias)
    return ashr32(add32(mul32(d, high), ashr32(t, _SIXTEEN)), shift)


@jit(inline="always")
def short_params(m, n):
    """:func:`rescale_short`'s (high, low, bias, shift) for a multiplier ``m``
    in [0, 2^31) and a shift ``n`` in SHORT_SHIFTS (another ``n`` is clamped
    into range, so that a set made and not used is harmless)."""
    n = min(max(n, SHORT_SHIFTS[0]), SHORT_SHIFTS[1])
    return np.int32((m >> 16) & 0xFFFF), np.int32(m & 0xFFFF), np.int32(1 << (n - 1)), np.int32(n - 16)


@jit(inline="always")
def rescale(v, m, n):
    """rescale_small for any int64 v, exactly, clamped to [-2^62, 2^62]:
    large v is split as v = hi * 2^31 + lo (lo in [0, 2^31)), so
    v*m + 2^(n-1) = a * 2^31 + b with a = hi*m and b = lo*m + 2^(n-1), each
    of which fits in int64."""
    if -_SMALL < v < _SMALL:
        return rescale_small(v, m, n)
    a = (v >> 31) * m
    b = (v & _LOW31) * m + (1 << (n - 1))
    if n >= 31:
        r = (a + (b >> 31)) >> (n - 31)  # floor(floor(x / 2^31) / 2^(n-31)) = floor(x / 2^n)
    else:
        lift = 31 - n  # the result is a * 2^lift + (b >> n), with 0 <= b >> n < 2^62
        if a > (RESCALE_LIMIT >> lift):
            return RESCALE_LIMIT
        if a < -(1 << (63 - lift)):
            return -RESCALE_LIMIT
        r = a * (1 << lift) + (b >> n)
    return min(max(r, -RESCALE_LIMIT), RESCALE_LIMIT)


ADD, SUB, MAX, MIN = 0, 3, 4, 5
"""How a two-operand op combines its rescaled operands (the codes of the
ISA's ELTWISE functions, runtime.isa.EltOp)."""


@jit(inline="always")
def binary(func, a, b):
    """a + b, a - b, max(a, b) or min(a, b) of two rescaled operands: the one
    definition QAdd, QSub, QMax, QMin and the simulator's ELTWISE inline."""
    if func == SUB:
        return a - b
    if func == MAX:
        return max(a, b)
    if func == MIN:
        return min(a, b)
    return a + b


# ---------------------------------------------------------------- tables
TABLE_ENTRIES = 256
"""Entries of a table indexed by int8 codes: entry ``q + 128`` for code q."""
WIDE_TABLE_BITS = 7
"""A table on int16 codes holds one entry every 2^7 codes and interpolates between them."""
WIDE_TABLE_ENTRIES = (1 << (16 - WIDE_TABLE_BITS)) + 1
"""Entries of a table on int16 codes (513): entry ``i`` is the function at code ``-32768 + 128·i``
(the last one, at 32768, one step past the largest code, closes the last interval)."""


def table_entries(dtype) -> int:
    """Entries of a table read by codes of ``dtype`` (int8: 256, int16: 513)."""
    return TABLE_ENTRIES if np.dtype(dtype) == INT8 else WIDE_TABLE_ENTRIES


def table_codes(dtype) -> np.ndarray:
    """The input codes (int64) a table read by ``dtype`` codes holds the function at, entry by entry."""
    if np.dtype(dtype) == INT8:
        return np.arange(-128, 128, dtype=np.int64)
    return np.arange(WIDE_TABLE_ENTRIES, dtype=np.int64) * (1 << WIDE_TABLE_BITS) - (1 << 15)


@jit(inline="always")
def wide_lookup(table, q):
    """The value of a 513-entry table at int16 code ``q``: with
    u = q + 32768, i = u >> 7 and f = u & 127, T[i] + (((T[i+1] - T[i])·f + 64) >> 7),
    a linear interpolation rounded half up (between T[i] and T[i+1], so inside the
    entries' range). The one definition the CPU kernels and the simulator inline."""
    u = np.int64(q) + (1 << 15)
    i = u >> WIDE_TABLE_BITS
    a = np.int64(table[i])
    return a + (((np.int64(table[i + 1]) - a) * (u & ((1 << WIDE_TABLE_BITS) - 1))
                 + (1 << (WIDE_TABLE_BITS - 1))) >> WIDE_TABLE_BITS)


@jit
def lookup_wide(out, x, table):
    """out[i] = wide_lookup(table, x[i]) for the int16 codes x (1-D; in place works)."""
    for i in range(x.shape[0]):
        out[i] = wide_lookup(table, x[i])


def apply_table(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``table`` (256 or 513 entries, its dtype the result's) applied to ``codes`` of any shape: the
    CPU kernels' lookup (int8 codes index it; int16 codes interpolate it, :func:`wide_lookup`)."""
    if len(table) == TABLE_ENTRIES:
        return table[codes.astype(np.intp) + 128]
    out = np.empty(codes.size, table.dtype)
    lookup_wide(out, np.ascontiguousarray(codes, np.int16).reshape(-1), np.ascontiguousarray(table))
    return out.reshape(codes.shape)


@jit
def rescale_scalar(v, m, n):
    """:func:`rescale` callable from Python (tests, one value at a time)."""
    return rescale(v, m, n)


def round_half_even(x: float) -> int:
    return int(np.rint(x))


def activation_params(low: float, high: float, dtype=INT8) -> tuple[float, int]:
    """(scale, zero point) of an asymmetric activation grid covering
    [low, high] widened to include 0."""
    qmin, qmax = ACTIVATION_RANGE[np.dtype(dtype)]
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise KernelError(f"activation range [{low}, {high}] is not finite")
    if high == low:
        return 1.0, 0  # an all-zero tensor: any scale represents it
    scale = (high - low) / (qmax - qmin)
    zero = int(np.clip(round_half_even(qmin - low / scale), qmin, qmax))
    return float(np.float32(scale)), zero


def radix_params(bound: float, dtype=INT8) -> tuple[float, int]:
    """(scale = 2^-radix, zero point 0) of the power-of-two grid holding
    [-bound, bound]: the largest radix with bound * 2^radix <= qmax."""
    qmax = ACTIVATION_RANGE[np.dtype(dtype)][1]
    bound = float(bound)
    if not (bound > 0 and math.isfinite(bound)):
        return 1.0, 0
    radix = math.floor(math.log2(qmax / bound))
    return 2.0 ** -radix, 0


def weight_scales(w: np.ndarray, dtype=INT8, axis: int = 0) -> np.ndarray:
    """Symmetric per-channel scales: max |w| of each slice along ``axis`` / qmax."""
    qmax = WEIGHT_RANGE[np.dtype(dtype)][1]
    w = np.asarray(w)
    if not np.issubdtype(w.dtype, np.floating):
        w = w.astype(np.float64)
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    # |w| and its maximum are exact in w's own type: no float64 copy of every weight
    peak = np.abs(moved).max(axis=1).astype(np.float64) if moved.size else np.zeros(w.shape[axis])
    return np.where(peak > 0, peak / qmax, 1.0).astype(np.float32)


def quantize(x: np.ndarray, scale, zero, dtype, axis: int | None = None) -> np.ndarray:
    """clamp(round_half_even(x / scale) + zero) in ``dtype`` (per-axis when
    ``axis`` is given), computed by :func:`saturated_codes` in float32 as
    QuantizeLinear on float32 data does; a NaN becomes code 0."""
    dtype = np.dtype(dtype)
    scale = np.asarray(scale, np.float32)
    zero = np.asarray(zero, np.int64)
    if axis is not None and scale.size > 1:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    info = np.iinfo(dtype)
    with np.errstate(invalid="ignore", over="ignore"):  # adding zero points of 0 (weights) changes no code
        q = saturated_codes(np.asarray(x, np.float32), scale, zero if zero.any() else None, info.min, info.max,
                            np.dtype(np.float32))
    if np.ndim(q):  # the codes are clipped: NaN is the only non-finite left (nan_to_num looked for ±inf too)
        np.copyto(q, 0, where=np.isnan(q))
        return q.astype(dtype)
    return np.nan_to_num(q).astype(dtype)


def saturated_codes(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, low: int, high: int,
                    work: np.dtype) -> np.ndarray:
    """QuantizeLinear's arithmetic, defined once for the compiler
    (:func:`quantize`) and the CPU kernel (runtime.kernels.quant):
    ``clip(round_half_even(x / scale) + zero_point, low, high)`` as floats,
    the division in ``work`` and the zero point (None: none) added in
    float64, which holds every rounded value plus a 16-bit zero point
    exactly. ``scale`` and ``zero_point`` broadcast against ``x``; a NaN
    stays NaN for the caller to refuse or map. Each step after the
    division works in place (a large model's weights: no copy per step)."""
    y = np.asarray(np.divide(x, scale, dtype=work))
    np.rint(y, out=y)
    if zero_point is not None:
        y = np.asarray(np.add(y, zero_point, dtype=np.float64))
    np.clip(y, low, high, out=y)
    return y if y.ndim else y[()]


# ---------------------------------------------------------------- MatMul of two tensors, Softmax over rows
@jit
def matmul_block(a, b, y, m, k, n, a_zero, b_zero, mult, shift, out_zero, lo, hi):
    """y[i, j] = clamp(rescale(sum_t (a[i, t] - a_zero) * (b[t, j] - b_zero)) + out_zero)
    on flat int64 arrays a [m*k], b [k*n], y [m*n]: the one definition of
    QMatMul that the CPU kernel and the simulator's MATMUL run. The sum is
    exact in int64 (8-bit operands: |term| < 2^16; 16-bit: < 2^32)."""
    for i in range(m):
        for j in range(n):
            acc = 0
            for t in range(k):
                acc += (a[i * k + t] - a_zero) * (b[t * n + j] - b_zero)
            y[i * n + j] = min(max(rescale(acc, mult, shift) + out_zero, lo), hi)


SOFTMAX_ENTRIES = 256
"""Entries of SOFTMAX's exponential table: exp(-step * d) for d = 0..255."""
SOFTMAX_EXP_BITS = 15
"""The table's entries are exp(-step * d) in Q15: T[0] = 2^15."""
SOFTMAX_RECIPROCAL_BITS = 46
"""A row's reciprocal is floor(2^46 / sum): sum in [2^15, 2^31) gives it 16 to 31 bits."""
SOFTMAX_PROB_BITS = 30
"""Each probability is (e * reciprocal) rounded to Q30 before the output rescale."""
SOFTMAX_SPAN = 16.0
"""The table covers exponents down to -16 (exp(-16) * 2^15 < 0.5: the rest rounds to 0)."""


def softmax_table(step: float) -> np.ndarray:
    """SOFTMAX's int32 table: round(2^15 * exp(-step * d)), d = 0..255."""
    d = np.arange(SOFTMAX_ENTRIES, dtype=np.float64)
    return np.rint(np.exp(-float(step) * d) * (1 << SOFTMAX_EXP_BITS)).astype(np.int32)


def softmax_step(scale: float, dtype=INT8) -> tuple[float, int, int]:
    """(table step, in_mult, in_shift) for input codes of ``scale`` and
    ``dtype``: the difference d = max - x indexes the table after
    rescale(d, in_mult, in_shift). 8-bit codes differ by at most 255, so
    the step is the scale (k = 0, exact); 16-bit codes take the step
    scale * 2^k with the smallest k whose 255 steps reach SOFTMAX_SPAN."""
    k = 0
    while np.dtype(dtype) != INT8 and scale * (2 ** k) * (SOFTMAX_ENTRIES - 1) < SOFTMAX_SPAN and k < MAX_SHIFT - 30:
        k += 1
    return float(scale) * 2.0 ** k, 1 << 30, 30 + k


def softmax_multiplier(out_scale: float) -> tuple[int, int]:
    """(mult, shift) taking a Q30 probability to output codes of ``out_scale``."""
    return quantize_multiplier(2.0 ** -SOFTMAX_PROB_BITS / float(out_scale))


@jit
def softmax_row(x, table, in_mult, in_shift, mult, shift, out_zero, lo, hi, y):
    """One row of SOFTMAX on int64 arrays x, y (the one definition the CPU
    kernel QSoftmax and the simulator share): e_i = T[min(rescale(max - x_i,
    in_mult, in_shift), 255)], s = sum e_i (int32: e_i <= 2^15, fewer than
    2^16 columns), r = floor(2^46 / s), p_i = (e_i * r + 2^15) >> 16 (Q30),
    y_i = clamp(rescale(p_i, mult, shift) + out_zero, lo, hi)."""
    cols = x.shape[0]
    top = x[0]
    for i in range(1, cols):
        top = max(top, x[i])
    total = 0
    for i in range(cols):
        y[i] = table[min(rescale(top - x[i], in_mult, in_shift), SOFTMAX_ENTRIES - 1)]
        total += y[i]
    reciprocal = (1 << SOFTMAX_RECIPROCAL_BITS) // total
    half = 1 << (SOFTMAX_RECIPROCAL_BITS - SOFTMAX_PROB_BITS - 1)
    for i in range(cols):
        p = (y[i] * reciprocal + half) >> (SOFTMAX_RECIPROCAL_BITS - SOFTMAX_PROB_BITS)
        y[i] = min(max(rescale(p, mult, shift) + out_zero, lo), hi)
