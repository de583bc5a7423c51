"""CPU kernels of the accelerator's quantized macro ops (the Q dialect:
QConv, QGemm, QAdd, QMul, QAvgPool, QLut, QConcat), exactly as
docs/quantization.md defines them.

Every result is exact. Convolutions and matrix products run through the
float64 BLAS kernels of the nn family on the shifted input ``x - x_zero``:
padding reads ``x_zero``, which the shifted input turns into the zeros
conv_nd pads with, and the zero point comes back through the bias,
``sum(x * w) + b' = conv(x - x_zero, w) + (b' + x_zero * sum(w[k]))``.
float64 holds every integer below 2**53, and every partial sum BLAS forms is
at most ``max|x - x_zero| * sum|w[k]|`` in magnitude; that bound is checked
per call (for 8-bit data it holds for any reduction shorter than 2**37 taps),
and past it an int64 numpy path takes over.

Requantisation runs in Numba with int64 arithmetic. ``rescale`` is computed
exactly for every int64 value, although ``v * m`` itself can pass 2**63 in
16-bit layers: results are the mathematical ``(v*m + 2^(n-1)) >> n`` clamped
to +-2**62, far outside any storage range, so the clamp that follows gives
what unbounded integers give.

The integer parameters come from the compiled program, so they are checked
like untrusted input (a KernelError naming the attribute) before any Numba
loop runs; the IR type rules (ir/ops/quantized.py) run the same checks.
The bias's type is the accumulator's: int32 (8-bit layers) or int64, and
the worst case ``max|x| * sum|w[k]| + |b[k]|`` must fit it (checked from the
weights), so an int32 device accumulator computes the same values.
Numba loops work on int16 copies of the 8- and 16-bit data and write int16
results, so each compiles one signature.
"""
from __future__ import annotations

import operator
from typing import NamedTuple, Sequence

import numpy as np

from runtime import qscheme
from runtime.errors import KernelError
from runtime.jit import jit
from runtime.kernels import nn
from runtime.kernels.limits import check_output_size
from runtime.kernels.nn_window import MIN_CHUNK, Window, grain, make_window, out_shape, valid_range
from runtime.kernels.registry import kernel
from runtime.parallel import drives, parallel_for, team_enter, team_leave, team_next

INT8, INT16, INT32, INT64 = qscheme.INT8, qscheme.INT16, qscheme.INT32, qscheme.INT64
DATA_TYPES = (INT8, INT16)
"""Storage types of quantized tensors."""
STORAGE_RANGE = qscheme.ACTIVATION_RANGE
ACCUMULATOR_LIMIT = {INT32: 2**31 - 1, INT64: 2**62}
"""Largest |accumulator| of a layer whose bias has this type: int32 is the
8-bit layers' accumulator; int64 stops at 2**62 so that no int64 sum of two
bounded terms can overflow."""
MULTIPLIER_RANGE = (2 ** (qscheme.MULTIPLIER_BITS - 1), 2**qscheme.MULTIPLIER_BITS - 1)
SHIFT_RANGE = (qscheme.MIN_SHIFT, qscheme.MAX_SHIFT)
FLOAT32_EXACT = 1 << 24
"""Below this bound on every partial sum, float32 sums of integer products are exact too."""
FLOAT_EXACT = 2**53
"""Integers float64 holds exactly: the float path's partial sums stay below it."""
TABLE_SIZE = 256

_SMALL = 2**31
"""|v| below this: v * m + 2^(n-1) fits in int64 (m < 2^31, n <= 62)."""
_LIMIT = 2**62
"""rescale's results saturate here."""
_LOW31 = 2**31 - 1


# ---------------------------------------------------------------- rescale
@jit(inline="always")
def rescale_exact(v, m, n):
    """(v*m + 2^(n-1)) >> n, exactly, clamped to [-2^62, 2^62], for any int64
    v, m in [2^30, 2^31) and n in [1, 62]. Large v is split as
    v = hi * 2^31 + lo (lo in [0, 2^31)), so v*m + 2^(n-1) = a * 2^31 + b with
    a = hi*m and b = lo*m + 2^(n-1), each of which fits in int64."""
    if -_SMALL < v < _SMALL:
        return (v * m + (1 << (n - 1))) >> n
    a = (v >> 31) * m
    b = (v & _LOW31) * m + (1 << (n - 1))
    if n >= 31:
        r = (a + (b >> 31)) >> (n - 31)  # floor(floor(x / 2^31) / 2^(n-31)) = floor(x / 2^n)
    else:
        lift = 31 - n  # the result is a * 2^lift + (b >> n), with 0 <= b >> n < 2^62
        if a > (_LIMIT >> lift):
            return _LIMIT
        if a < -(1 << (63 - lift)):
            return -_LIMIT
        r = a * (1 << lift) + (b >> n)
    return min(max(r, -_LIMIT), _LIMIT)


@jit
def rescale_scalar(v, m, n):
    """rescale_exact callable from Python (for tests)."""
    return rescale_exact(v, m, n)


# ---------------------------------------------------------------- Numba loops
@jit
def _requantize_channels(start, stop, acc, bias, mult, shift, neg_mult, neg_shift, has_neg,
                         res, has_res, res_zero, res_mult, res_shift, out, out_zero, lo, hi):
    """Rows [start, stop) of batch x channel of a QConv / QGemm output.
    acc, res, out: (B, K, S); bias, mult, shift, neg_mult, neg_shift: (K,);
    out = clamp(rescale(acc + bias) [+ rescaled residual] + out_zero)."""
    batch, channels, size = acc.shape
    for row in range(start, min(stop, batch * channels)):
        b, k = row // channels, row % channels
        src, dst, add = acc[b, k], out[b, k], bias[k]
        m, n = mult[k], shift[k]
        neg_m, neg_n = (neg_mult[k], neg_shift[k]) if has_neg else (m, n)
        for s in range(size):
            total = src[s] + add
            v = rescale_exact(total, neg_m, neg_n) if total < 0 else rescale_exact(total, m, n)
            if has_res:
                v += rescale_exact(np.int64(res[b, k, s]) - res_zero, res_mult, res_shift)
            dst[s] = min(max(v + out_zero, lo), hi)


@jit
def _requantize_elements(start, stop, x, out, zero, mult, shift, out_zero, lo, hi):
    """out = clamp(rescale(x - zero) + out_zero) over flat [start, stop)."""
    for i in range(start, min(stop, x.shape[0])):
        v = rescale_exact(np.int64(x[i]) - zero, mult, shift) + out_zero
        out[i] = min(max(v, lo), hi)


@jit
def _add_elements(start, stop, a, b, out, params):
    """QAdd over flat [start, stop); params: a_zero, a_mult, a_shift, b_zero,
    b_mult, b_shift, out_zero, lo, hi."""
    a_zero, a_mult, a_shift, b_zero, b_mult, b_shift = params[0], params[1], params[2], params[3], params[4], params[5]
    out_zero, lo, hi = params[6], params[7], params[8]
    for i in range(start, min(stop, a.shape[0])):
        v = (rescale_exact(np.int64(a[i]) - a_zero, a_mult, a_shift)
             + rescale_exact(np.int64(b[i]) - b_zero, b_mult, b_shift) + out_zero)
        out[i] = min(max(v, lo), hi)


@jit
def _mul_elements(start, stop, a, b, out, params):
    """QMul over flat [start, stop); params: a_zero, b_zero, mult, shift,
    out_zero, lo, hi."""
    a_zero, b_zero, mult, shift, out_zero, lo, hi = (params[0], params[1], params[2], params[3], params[4],
                                                     params[5], params[6])
    for i in range(start, min(stop, a.shape[0])):
        product = (np.int64(a[i]) - a_zero) * (np.int64(b[i]) - b_zero)
        out[i] = min(max(rescale_exact(product, mult, shift) + out_zero, lo), hi)


@jit
def _avg_pool_planes(start, stop, x, out, rows, cols, row_count, col_count, geo, mults, shifts, params):
    """Planes [start, stop) of a QAvgPool. x: (P, H, W); out: (P, OH, OW);
    rows / cols: (OH, 2) / (OW, 2), the [lo, hi) taps of each window inside
    the input; row_count / col_count: the element count of each window along
    that axis; geo: strides, then begin pads (rows, then columns);
    params: x_zero, out_zero, lo, hi."""
    sh, sw, ph, pw = geo[0], geo[1], geo[2], geo[3]
    x_zero, out_zero, lo, hi = params[0], params[1], params[2], params[3]
    planes = min(x.shape[0], out.shape[0])
    _, out_h, out_w = out.shape
    for p in range(start, min(stop, planes)):
        for oh in range(out_h):
            for ow in range(out_w):
                total = 0
                for ky in range(rows[oh, 0], rows[oh, 1]):
                    iy = oh * sh - ph + ky
                    for kx in range(cols[ow, 0], cols[ow, 1]):
                        total += np.int64(x[p, iy, ow * sw - pw + kx]) - x_zero
                count = row_count[oh] * col_count[ow]
                v = rescale_exact(total, mults[count - 1], shifts[count - 1]) + out_zero
                out[p, oh, ow] = min(max(v, lo), hi)


# ---------------------------------------------------------------- parameter checks
def _int(value, name: str) -> int:
    """An integer parameter as a Python int (floats and strings refused)."""
    try:
        return operator.index(value)
    except TypeError:
        raise KernelError(f"{name} must be an integer, got {value!r}") from None


def _ints(values, name: str, length: int | None = None) -> list[int]:
    """An integer-list parameter, of ``length`` values when given."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise KernelError(f"{name} must be a list of integers, got {values!r}")
    out = [_int(v, f"{name}[{i}]") for i, v in enumerate(np.asarray(values, dtype=object).reshape(-1))]
    if length is not None and len(out) != length:
        raise KernelError(f"{name} has {len(out)} values, expected {length}")
    return out


def data_type(dtype, name: str) -> np.dtype:
    """The dtype of a quantized tensor: int8 or int16."""
    dtype = np.dtype(dtype)
    if dtype not in DATA_TYPES:
        raise KernelError(f"{name} must be int8 or int16, got {dtype}")
    return dtype


def check_zero(value, dtype: np.dtype, name: str) -> int:
    """A zero point: an integer of the storage range of ``dtype``."""
    value = _int(value, name)
    low, high = STORAGE_RANGE[dtype]
    if not low <= value <= high:
        raise KernelError(f"{name}={value} is outside the {dtype} range [{low}, {high}]")
    return value


def check_multiplier(mult, shift, mult_name: str, shift_name: str) -> tuple[int, int]:
    """One fixed-point multiplier m in [2^30, 2^31) and shift n in [1, 62]."""
    m, n = _int(mult, mult_name), _int(shift, shift_name)
    if not MULTIPLIER_RANGE[0] <= m <= MULTIPLIER_RANGE[1]:
        raise KernelError(f"{mult_name}={m} is outside [2^30, 2^31)")
    if not SHIFT_RANGE[0] <= n <= SHIFT_RANGE[1]:
        raise KernelError(f"{shift_name}={n} is outside [{SHIFT_RANGE[0]}, {SHIFT_RANGE[1]}]")
    return m, n


def check_multipliers(mults, shifts, mult_name: str, shift_name: str, length: int | None) -> tuple[np.ndarray, ...]:
    """Lists of multipliers and shifts of one length (``length`` when given),
    as int64 arrays."""
    mults, shifts = _ints(mults, mult_name, length), _ints(shifts, shift_name, length)
    if len(mults) != len(shifts):
        raise KernelError(f"{mult_name} has {len(mults)} values but {shift_name} has {len(shifts)}")
    for i, (m, n) in enumerate(zip(mults, shifts)):
        check_multiplier(m, n, f"{mult_name}[{i}]", f"{shift_name}[{i}]")
    return np.array(mults, np.int64), np.array(shifts, np.int64)


class Output(NamedTuple):
    """A macro op's output: storage type, zero point and clamp bounds."""

    dtype: np.dtype
    zero: int
    lo: int
    hi: int


def out_type(attrs) -> np.dtype:
    """The out_dtype attribute: "int8" or "int16"."""
    name = attrs["out_dtype"]
    if not isinstance(name, (str, np.dtype)) or str(name) not in ("int8", "int16"):
        raise KernelError(f"out_dtype={name!r} must be 'int8' or 'int16'")
    return np.dtype(str(name))


def output_params(attrs) -> Output:
    """out_dtype, out_zero, lo and hi, checked against the storage range."""
    dtype = out_type(attrs)
    zero = check_zero(attrs["out_zero"], dtype, "out_zero")
    lo, hi = check_zero(attrs["lo"], dtype, "lo"), check_zero(attrs["hi"], dtype, "hi")
    if lo > hi:
        raise KernelError(f"lo={lo} is above hi={hi}")
    return Output(dtype, zero, lo, hi)


class Requant(NamedTuple):
    """A QConv / QGemm's checked requantisation parameters."""

    mult: np.ndarray
    shift: np.ndarray
    neg_mult: np.ndarray
    neg_shift: np.ndarray
    residual: tuple[int, int, int] | None
    out: Output


def linear_params(attrs, x_dtype, w_dtype, channels: int | None, r_dtype) -> Requant:
    """Checked QConv / QGemm parameters for ``channels`` output channels
    (None: not known yet); ``r_dtype`` is None without a residual."""
    x_dtype = data_type(x_dtype, "x")
    data_type(w_dtype, "w")
    check_zero(attrs["x_zero"], x_dtype, "x_zero")
    mult, shift = check_multipliers(attrs["mult"], attrs["shift"], "mult", "shift", channels)
    neg_mult, neg_shift = check_multipliers(attrs["neg_mult"], attrs["neg_shift"], "neg_mult", "neg_shift", None)
    if len(neg_mult) not in (0, len(mult)):
        raise KernelError(f"neg_mult has {len(neg_mult)} values; give none (no LeakyRelu) or one per "
                          f"output channel ({len(mult)})")
    residual = None
    if r_dtype is not None:
        r_dtype = data_type(r_dtype, "r")
        residual = (check_zero(attrs["res_zero"], r_dtype, "res_zero"),
                    *check_multiplier(attrs["res_mult"], attrs["res_shift"], "res_mult", "res_shift"))
    return Requant(mult, shift, neg_mult, neg_shift, residual, output_params(attrs))


def accumulator_type(b_dtype) -> np.dtype:
    """The accumulator of a QConv / QGemm is its bias's type: int32 or int64."""
    b_dtype = np.dtype(b_dtype)
    if b_dtype not in ACCUMULATOR_LIMIT:
        raise KernelError(f"b must be int32 or int64 (the accumulator's type), got {b_dtype}")
    return b_dtype


def window(op: str, attrs, dilations) -> Window:
    """The checked 2-D window of a QConv or QAvgPool (which has no dilations)."""
    kernel_shape = _ints(attrs["kernel_shape"], "kernel_shape", 2)
    return make_window(op, 2, kernel_shape, attrs["strides"], attrs["pads"], dilations)


def _int16(x: np.ndarray) -> np.ndarray:
    """x as a C-contiguous, writable int16 array: the one array type the
    Numba loops compile for (read-only constants would be a second)."""
    return np.require(x, np.int16, ("C", "W"))


def _array(x: np.ndarray, name: str, rank: int, allowed=DATA_TYPES) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype not in allowed:
        raise KernelError(f"{name} must be {' or '.join(str(d) for d in allowed)}, got {x.dtype}")
    if x.ndim != rank:
        raise KernelError(f"{name} must have rank {rank}, got shape {list(x.shape)}")
    return x


# ---------------------------------------------------------------- QConv, QGemm
class _Linear(NamedTuple):
    """What the product of a QConv / QGemm needs, checked."""

    shifted_bound: int
    """max|x - x_zero| * sum|w[k]| over k: the float path is exact below 2^53."""
    bias: np.ndarray
    """b'[k] + x_zero * sum(w[k]), int64: what conv(x - x_zero, w) needs added."""


def accumulator_bias(x_dtype, w: np.ndarray, b: np.ndarray, x_zero: int) -> _Linear:
    """Check the bias and the worst-case accumulator against its type's
    limit; the bias with the zero point's share folded back in."""
    channels = w.shape[0]
    acc = accumulator_type(b.dtype)
    if b.shape != (channels,):
        raise KernelError(f"b must have shape [{channels}] (one per output channel), got {list(b.shape)}")
    low, high = STORAGE_RANGE[np.dtype(x_dtype)]
    flat = w.reshape(channels, -1).astype(np.int64)
    sums, abs_sums = flat.sum(axis=1).tolist(), np.abs(flat).sum(axis=1).tolist()
    biases = b.tolist()
    peak = max((max(-low, high) * s + abs(v) for s, v in zip(abs_sums, biases)), default=0)
    if peak > ACCUMULATOR_LIMIT[acc]:
        raise KernelError(f"the accumulator can reach {peak} (max|x| * sum|w[k]| + |b[k]|), beyond the {acc} "
                          f"accumulator's {ACCUMULATOR_LIMIT[acc]}: give an int64 bias or smaller weights")
    shifted = max(high - x_zero, x_zero - low) * max(abs_sums, default=0)
    return _Linear(shifted, np.array([v + x_zero * s for v, s in zip(biases, sums)], np.int64))


def _requantize(acc: np.ndarray, bias: np.ndarray, params: Requant, r: np.ndarray | None) -> np.ndarray:
    """The QConv / QGemm epilogue on acc (B, K, S) int64: out_dtype (B, K, S)."""
    out = np.empty(acc.shape, np.int16)
    res = np.zeros((1, 1, 1), np.int16) if r is None else _int16(r).reshape(acc.shape)
    res_zero, res_mult, res_shift = params.residual or (0, MULTIPLIER_RANGE[0], 1)
    o = params.out
    parallel_for(_requantize_channels, acc.shape[0] * acc.shape[1], acc, bias, params.mult, params.shift,
                 params.neg_mult, params.neg_shift, len(params.neg_mult) > 0, res, r is not None,
                 res_zero, res_mult, res_shift, out, o.zero, o.lo, o.hi, grain=grain(acc.shape[2]))
    return out.astype(o.dtype, copy=False)


def _check_residual(r: np.ndarray | None, shape: tuple[int, ...]) -> None:
    if r is not None and r.shape != shape:
        raise KernelError(f"r must have the output's shape {list(shape)}, got {list(r.shape)}")


@kernel("QConv")
def qconv(inputs, attrs):
    """Quantized convolution + bias + optional residual + activation clamp."""
    x, w, b, r = (list(inputs) + [None])[:4]
    x, w = _array(x, "x", 4), _array(w, "w", 4)
    b = _array(b, "b", 1, tuple(ACCUMULATOR_LIMIT))
    params = linear_params(attrs, x.dtype, w.dtype, w.shape[0], None if r is None else r.dtype)
    win = window("QConv", attrs, attrs["dilations"])
    if win.kernel != w.shape[2:]:
        raise KernelError(f"kernel_shape={list(win.kernel)} does not match w of shape {list(w.shape)}")
    group = _int(attrs["group"], "group")
    if group < 1 or x.shape[1] != w.shape[1] * group or w.shape[0] % group:
        raise KernelError(f"group={group} does not fit x with {x.shape[1]} channels and w of shape "
                          f"{list(w.shape)} (need C == w.shape[1] * group and K % group == 0)")
    shape = check_output_size(x.shape[:1] + w.shape[:1] + out_shape("QConv", x.shape[2:], win), "QConv")
    _check_residual(r, shape)
    linear = accumulator_bias(x.dtype, w, b, int(attrs["x_zero"]))
    acc = _conv(x, w, int(attrs["x_zero"]), win, group, linear.shifted_bound)
    return (_requantize(acc.reshape(shape[0], shape[1], -1), linear.bias, params, r).reshape(shape),)


def _conv(x, w, x_zero: int, win: Window, group: int, bound: int) -> np.ndarray:
    """conv(x - x_zero, w) with zero padding, exactly, as int64."""
    pads = win.pads_begin + win.pads_end
    if bound < FLOAT_EXACT:
        dtype = np.float32 if bound < FLOAT32_EXACT else np.float64
        shifted = np.subtract(x, x_zero, dtype=dtype)
        y = nn.conv_nd(shifted, w.astype(dtype), None, strides=win.strides, pads=pads,
                       dilations=win.dilations, group=group, exact=True)
        return y.astype(np.int64)
    return _conv_int64(np.subtract(x, x_zero, dtype=np.int64), w.astype(np.int64), win, group)


def _conv_int64(x, w, win: Window, group: int) -> np.ndarray:
    """Integer convolution in numpy int64 (slow; for reductions too long for
    the float path): windows of the zero-padded input against each group."""
    (ph, pw), (eh, ew) = win.pads_begin, win.pads_end
    padded = np.pad(x, ((0, 0), (0, 0), (ph, eh), (pw, ew)))
    spans = win.spans
    taps = np.lib.stride_tricks.sliding_window_view(padded, spans, axis=(2, 3))
    taps = taps[:, :, ::win.strides[0], ::win.strides[1], ::win.dilations[0], ::win.dilations[1]]
    per_in, per_out = x.shape[1] // group, w.shape[0] // group
    parts = [np.tensordot(taps[:, g * per_in:(g + 1) * per_in], w[g * per_out:(g + 1) * per_out],
                          axes=([1, 4, 5], [1, 2, 3])) for g in range(group)]
    return np.ascontiguousarray(np.moveaxis(np.concatenate(parts, axis=-1), -1, 1))


@kernel("QGemm")
def qgemm(inputs, attrs):
    """Quantized matrix product x[M, K] . w[N, K]^T + bias + optional
    residual + activation clamp."""
    x, w, b, r = (list(inputs) + [None])[:4]
    x, w = _array(x, "x", 2), _array(w, "w", 2)
    b = _array(b, "b", 1, tuple(ACCUMULATOR_LIMIT))
    if x.shape[1] != w.shape[1]:
        raise KernelError(f"x of shape {list(x.shape)} and w of shape {list(w.shape)} differ in the reduced dim")
    params = linear_params(attrs, x.dtype, w.dtype, w.shape[0], None if r is None else r.dtype)
    shape = (x.shape[0], w.shape[0])
    _check_residual(r, shape)
    linear = accumulator_bias(x.dtype, w, b, int(attrs["x_zero"]))
    x_zero = int(attrs["x_zero"])
    if linear.shifted_bound < FLOAT_EXACT:
        acc = nn.matmul(np.subtract(x, x_zero, dtype=np.float64), w.astype(np.float64).T).astype(np.int64)
    else:
        acc = np.matmul(np.subtract(x, x_zero, dtype=np.int64), w.astype(np.int64).T)
    return (_requantize(acc.reshape(shape + (1,)), linear.bias, params, r).reshape(shape),)


# ---------------------------------------------------------------- element-wise ops
def _broadcast(op: str, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """a and b broadcast to their common shape, as flat contiguous int16."""
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise KernelError(f"{op}: shapes {list(a.shape)} and {list(b.shape)} do not broadcast") from None
    check_output_size(shape, op)
    flat = [_int16(np.broadcast_to(v, shape)).reshape(-1) for v in (a, b)]
    return flat[0], flat[1], shape


def add_params(attrs, a_dtype, b_dtype) -> tuple[np.ndarray, Output]:
    """QAdd's checked parameters: the loop's params array and the output."""
    a_zero = check_zero(attrs["a_zero"], data_type(a_dtype, "a"), "a_zero")
    b_zero = check_zero(attrs["b_zero"], data_type(b_dtype, "b"), "b_zero")
    a_m = check_multiplier(attrs["a_mult"], attrs["a_shift"], "a_mult", "a_shift")
    b_m = check_multiplier(attrs["b_mult"], attrs["b_shift"], "b_mult", "b_shift")
    o = output_params(attrs)
    return np.array([a_zero, *a_m, b_zero, *b_m, o.zero, o.lo, o.hi], np.int64), o


def mul_params(attrs, a_dtype, b_dtype) -> tuple[np.ndarray, Output]:
    """QMul's checked parameters: the loop's params array and the output."""
    a_zero = check_zero(attrs["a_zero"], data_type(a_dtype, "a"), "a_zero")
    b_zero = check_zero(attrs["b_zero"], data_type(b_dtype, "b"), "b_zero")
    m = check_multiplier(attrs["mult"], attrs["shift"], "mult", "shift")
    o = output_params(attrs)
    return np.array([a_zero, b_zero, *m, o.zero, o.lo, o.hi], np.int64), o


@kernel("QAdd")
def qadd(inputs, attrs):
    """y = clamp(rescale(a - a_zero) + rescale(b - b_zero) + out_zero)."""
    return _binary("QAdd", inputs, attrs, add_params, _add_elements)


@kernel("QMul")
def qmul(inputs, attrs):
    """y = clamp(rescale((a - a_zero) * (b - b_zero)) + out_zero)."""
    return _binary("QMul", inputs, attrs, mul_params, _mul_elements)


def _binary(op: str, inputs, attrs, make_params, elements) -> tuple[np.ndarray]:
    """An element-wise Q op: checked parameters, broadcast operands, the
    jitted ``elements`` loop over the flattened rows."""
    a, b = np.asarray(inputs[0]), np.asarray(inputs[1])
    params, o = make_params(attrs, a.dtype, b.dtype)
    a, b, shape = _broadcast(op, a, b)
    out = np.empty(a.shape, np.int16)
    parallel_for(elements, a.shape[0], a, b, out, params, grain=MIN_CHUNK)
    return (out.reshape(shape).astype(o.dtype, copy=False),)


def _requantize_flat(x: np.ndarray, zero: int, mult: int, shift: int, o: Output) -> np.ndarray:
    """clamp(rescale(x - zero) + out_zero) of any array, as int16."""
    flat = _int16(x).reshape(-1)
    out = np.empty(flat.shape, np.int16)
    parallel_for(_requantize_elements, flat.shape[0], flat, out, zero, mult, shift, o.zero, o.lo, o.hi,
                 grain=MIN_CHUNK)
    return out.reshape(x.shape)


@kernel("QConcat")
def qconcat(inputs, attrs):
    """Each input rescaled to the output's parameters, then concatenated."""
    xs = [np.asarray(x) for x in inputs]
    zeros, mults, shifts, o = concat_params(attrs, [x.dtype for x in xs])
    axis = concat_axis(attrs["axis"], [x.shape for x in xs])
    parts = [_requantize_flat(x, zeros[i], int(mults[i]), int(shifts[i]), o) for i, x in enumerate(xs)]
    return (np.concatenate(parts, axis=axis).astype(o.dtype, copy=False),)


def concat_params(attrs, dtypes) -> tuple[list[int], np.ndarray, np.ndarray, Output]:
    """QConcat's checked zero points, multipliers and shifts (one per input)
    and output."""
    count = len(dtypes)
    zeros = _ints(attrs["zeros"], "zeros", count)
    for i, dtype in enumerate(dtypes):
        check_zero(zeros[i], data_type(dtype, f"x_{i}"), f"zeros[{i}]")
    mults, shifts = check_multipliers(attrs["mults"], attrs["shifts"], "mults", "shifts", count)
    return zeros, mults, shifts, output_params(attrs)


def concat_axis(axis, shapes: Sequence[Sequence[int | None]]) -> int:
    """QConcat's axis made non-negative; the shapes must agree elsewhere
    (None dims, unknown yet, agree with anything)."""
    axis = _int(axis, "axis")
    if not shapes:
        raise KernelError("QConcat needs at least one input")
    rank = len(shapes[0])
    if not -rank <= axis < rank:
        raise KernelError(f"axis={axis} is out of range for inputs of rank {rank}")
    axis %= rank
    for i, shape in enumerate(shapes):
        if len(shape) != rank or any(a is not None and b is not None and a != b
                                     for d, (a, b) in enumerate(zip(shape, shapes[0])) if d != axis):
            raise KernelError(f"x_{i} of shape {list(shape)} does not match x_0 of shape {list(shapes[0])} "
                              f"outside axis {axis}")
    return axis


@kernel("QLut")
def qlut(inputs, attrs):
    """y = table[x + 128]."""
    x = _array(inputs[0], "x", np.ndim(inputs[0]), (INT8,))
    table = lut_table(attrs)
    return (np.asarray(table[x.astype(np.intp) + 128], table.dtype),)


def lut_table(attrs) -> np.ndarray:
    """QLut's table: 256 values of the out_dtype's range, as that dtype."""
    dtype = out_type(attrs)
    table = _ints(attrs["table"], "table", TABLE_SIZE)
    low, high = STORAGE_RANGE[dtype]
    bad = [i for i, v in enumerate(table) if not low <= v <= high]
    if bad:
        raise KernelError(f"table[{bad[0]}]={table[bad[0]]} is outside the {dtype} range [{low}, {high}]")
    return np.array(table, dtype)


# ---------------------------------------------------------------- QAvgPool
def avg_pool_params(attrs, x_dtype) -> tuple[Window, np.ndarray, np.ndarray, Output]:
    """QAvgPool's window, multipliers (one per window element count) and output."""
    x_dtype = data_type(x_dtype, "x")
    win = window("QAvgPool", attrs, (1, 1))
    for name in ("ceil_mode", "count_include_pad"):
        if _int(attrs[name], name) not in (0, 1):
            raise KernelError(f"{name}={attrs[name]} must be 0 or 1")
    check_zero(attrs["x_zero"], x_dtype, "x_zero")
    mults, shifts = check_multipliers(attrs["mults"], attrs["shifts"], "mults", "shifts",
                                      win.kernel[0] * win.kernel[1])
    return win, mults, shifts, output_params(attrs)


def _taps(out_n: int, size: int, kernel_n: int, stride: int, pad: int, pad_end: int,
          include_pad: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per output position along one axis: the [lo, hi) taps inside the
    input, and the window's element count (inside the padded input when the
    padding counts)."""
    taps = np.array([valid_range(o * stride - pad, 1, size, kernel_n) for o in range(out_n)], np.int64)
    if include_pad:
        padded = [valid_range(o * stride, 1, size + pad + pad_end, kernel_n) for o in range(out_n)]
        counts = np.array([hi - lo for lo, hi in padded], np.int64)
    else:
        counts = taps[:, 1] - taps[:, 0]
    if out_n and counts.min() < 1:
        raise KernelError(f"QAvgPool: a window along a spatial axis of size {size} covers no element "
                          f"(kernel {kernel_n}, pads {pad}+{pad_end})")
    return taps, counts


def pool_taps(win: Window, in_dims, out_dims, include_pad: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """_taps of each spatial axis; a window covering no element is an error."""
    return [_taps(out_dims[d], in_dims[d], win.kernel[d], win.strides[d], win.pads_begin[d], win.pads_end[d],
                  include_pad) for d in range(len(in_dims))]


@kernel("QAvgPool")
def qavg_pool(inputs, attrs):
    """y = clamp(rescale(sum over the window of (x - x_zero), mults[c-1],
    shifts[c-1]) + out_zero), c the window's element count."""
    x = _array(inputs[0], "x", 4)
    win, mults, shifts, o = avg_pool_params(attrs, x.dtype)
    dims = out_shape("QAvgPool", x.shape[2:], win, bool(attrs["ceil_mode"]))
    shape = check_output_size(x.shape[:2] + dims, "QAvgPool")
    (rows, row_count), (cols, col_count) = pool_taps(win, x.shape[2:], dims, bool(attrs["count_include_pad"]))
    planes = _int16(x).reshape((-1,) + x.shape[2:])
    out = np.empty((planes.shape[0],) + dims, np.int16)
    geo = win.strides + win.pads_begin
    params = np.array([int(attrs["x_zero"]), o.zero, o.lo, o.hi], np.int64)
    parallel_for(_avg_pool_planes, planes.shape[0], planes, out, rows, cols, row_count, col_count, geo,
                 mults, shifts, params, grain=grain(out[0].size * win.kernel[0] * win.kernel[1]))
    return (out.reshape(shape).astype(o.dtype, copy=False),)


# ---------------------------------------------------------------- team drivers (runtime.parallel)
@drives(_requantize_channels)
@jit
def _requantize_channels_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        _requantize_channels(spans[index, 0], spans[index, 1], *args)
        index = team_next(team, True)
    return team_leave(team, state, role)


@drives(_requantize_elements)
@jit
def _requantize_elements_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        _requantize_elements(spans[index, 0], spans[index, 1], *args)
        index = team_next(team, True)
    return team_leave(team, state, role)


@drives(_avg_pool_planes)
@jit
def _avg_pool_planes_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        _avg_pool_planes(spans[index, 0], spans[index, 1], *args)
        index = team_next(team, True)
    return team_leave(team, state, role)
