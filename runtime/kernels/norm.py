"""CPU kernels: normalisation and softmax-like ops.

The hot ones (BatchNormalization after every convolution, Softmax and
LayerNormalization in transformer blocks) are Numba loops over the tensor
viewed as (outer, axis, inner), with the sizes passed as runtime ints so one
compiled signature per dtype serves every shape; rows or planes are split
over threads with :func:`runtime.parallel.parallel_for`. Mean and variance
accumulate in float64; float32 softmax uses a vectorisable exp.
"""
from __future__ import annotations

import math

import numpy as np
from numba import types
from numba.extending import intrinsic

from runtime.errors import KernelError
from runtime.jit import jit, readonly
from runtime.kernels import activations as act
from runtime.kernels.ordered import sqdev_f32_f64, sqdev_f64, sum_f32, sum_f32_f64, sum_f64
from runtime.kernels.registry import kernel
from runtime.parallel import parallel_for
from runtime.schedule.records import LAYER_NORM, LRN, SOFTMAX, Operand

MIN_TASK_ELEMENTS = 1 << 16
"""Elements one thread should get at least, so small tensors stay on one thread."""

MIN_STREAM_TASK_ELEMENTS = 1 << 20
"""The same for BatchNormalization, one multiply-add per element: it is bound
by memory bandwidth, so below about a megaelement per thread the handoff to
the pool costs more than a second thread gains (all batch-1 ResNet-50 layers)."""


def _compute_dtype(x: np.ndarray) -> np.dtype:
    """float64 stays float64; every other float computes in float32."""
    return np.dtype(np.float64) if x.dtype == np.float64 else np.dtype(np.float32)


def _flat(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A C-contiguous 1-D array of ``x`` in ``dtype`` (a view when it already is one)."""
    return np.ascontiguousarray(x, dtype=dtype).reshape(-1)


def _param(p: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """:func:`_flat` of a parameter the kernels only read, read-only whether
    it came frozen (a program's constant) or not: one compiled signature."""
    return readonly(_flat(p, dtype))


def _grain(task_size: int, min_elements: int = MIN_TASK_ELEMENTS) -> int:
    """Tasks of ``task_size`` elements one thread should get at least."""
    return max(1, min_elements // max(task_size, 1))


def _axis(op: str, axis: int, rank: int) -> int:
    """``axis`` made non-negative; out of range is an error (the binary is untrusted)."""
    if not -rank <= axis < rank:
        raise KernelError(f"{op}: axis={axis} is out of range for rank {rank}")
    return axis % rank


# ---------------------------------------------------------------- BatchNormalization
@jit
def _affine_planes(start, stop, x, center, scale, shift, out, channels, inner):
    """out = (x - center[c]) * scale[c] + shift[c] over planes [start, stop) of (N*C, inner)."""
    for p in range(start, stop):
        c = p % channels
        m = center[c]
        a = scale[c]
        b = shift[c]
        xs = x[p * inner:(p + 1) * inner]
        ys = out[p * inner:(p + 1) * inner]
        for i in range(inner):
            ys[i] = (xs[i] - m) * a + b


@kernel("BatchNormalization")
def batch_normalization(inputs, attrs):
    x, scale, bias, mean, var = inputs
    dtype = _compute_dtype(x)
    channels = 1 if x.ndim == 1 else x.shape[1]
    for name, p in zip(("scale", "B", "input_mean", "input_var"), inputs[1:]):
        if p.size != channels:
            raise KernelError(f"BatchNormalization: {name} has {p.size} entries, the input has {channels} channels")
    factor = (scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + attrs["epsilon"])).astype(dtype)
    inner = math.prod(x.shape[2:])
    planes = x.size // inner if inner else 0
    out = np.empty(x.size, dtype)
    parallel_for(_affine_planes, planes, _flat(x, dtype), _param(mean, dtype), _param(factor, dtype),
                 _param(bias, dtype), out, channels, inner, grain=_grain(inner, MIN_STREAM_TASK_ELEMENTS))
    return (out.reshape(x.shape).astype(x.dtype, copy=False),)


# ---------------------------------------------------------------- instance / layer normalization
@jit
def _moments(xs):
    """Mean and (biased) variance of the contiguous 1-D float32 or float64
    ``xs``, two-pass, float64 sums in one order on every CPU
    (runtime.kernels.ordered)."""
    n = xs.size
    if xs.itemsize == 4:
        mean = sum_f32_f64(n, xs.ctypes.data) / n
        return mean, sqdev_f32_f64(n, xs.ctypes.data, mean) / n
    mean = sum_f64(n, xs.ctypes.data) / n
    return mean, sqdev_f64(n, xs.ctypes.data, mean) / n


@jit
def _instance_norm_planes(start, stop, x, scale, shift, out, channels, inner, eps):
    """Normalise each (n, c) plane of ``inner`` elements over itself."""
    for p in range(start, stop):
        c = p % channels
        xs = x[p * inner:(p + 1) * inner]
        ys = out[p * inner:(p + 1) * inner]
        mean, var = _moments(xs)
        a = scale[c] / np.sqrt(var + eps)
        m = xs.dtype.type(mean)
        a = xs.dtype.type(a)
        b = shift[c]
        for i in range(inner):
            ys[i] = (xs[i] - m) * a + b


@kernel("InstanceNormalization")
def instance_normalization(inputs, attrs):
    x, scale, bias = inputs
    dtype = _compute_dtype(x)
    channels = x.shape[1]
    for name, p in (("scale", scale), ("B", bias)):
        if p.size != channels:
            raise KernelError(f"InstanceNormalization: {name} has {p.size} entries, the input has {channels} "
                              "channels")
    inner = math.prod(x.shape[2:])
    planes = x.size // inner if inner else 0
    out = np.empty(x.size, dtype)
    parallel_for(_instance_norm_planes, planes, _flat(x, dtype), _param(scale, dtype), _param(bias, dtype), out,
                 channels, inner, float(attrs["epsilon"]), grain=_grain(inner))
    return (out.reshape(x.shape).astype(x.dtype, copy=False),)


@jit
def layer_norm_rows(start, stop, x, weight, bias, out, means, inv_stds, n, eps):
    """Normalise rows [start, stop) of the (rows, n) matrix, then y * weight + bias."""
    for r in range(start, stop):
        xs = x[r * n:(r + 1) * n]
        ys = out[r * n:(r + 1) * n]
        mean, var = _moments(xs)
        inv = 1.0 / np.sqrt(var + eps)
        m = xs.dtype.type(mean)
        a = xs.dtype.type(inv)
        for i in range(n):
            ys[i] = (xs[i] - m) * a * weight[i] + bias[i]
        means[r] = mean
        inv_stds[r] = inv


def _normalized_param(p: np.ndarray | None, shape: tuple, dtype: np.dtype, name: str, fill: float) -> np.ndarray:
    """Scale or bias broadcast to the normalized shape, flattened (read-only)."""
    if p is None:
        return readonly(np.full(math.prod(shape), fill, dtype))
    if p.shape == shape:
        return _param(p, dtype)
    try:
        return _param(np.broadcast_to(p, shape), dtype)
    except ValueError:
        raise KernelError(f"LayerNormalization: {name} of shape {list(p.shape)} does not broadcast to the "
                          f"normalized shape {list(shape)}") from None


@kernel("LayerNormalization")
def layer_normalization(inputs, attrs):
    x, scale = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    dtype = _compute_dtype(x)
    axis = _axis("LayerNormalization", attrs["axis"], x.ndim)
    normalized = x.shape[axis:]
    n = math.prod(normalized)
    rows = math.prod(x.shape[:axis])
    weight = _normalized_param(scale, normalized, dtype, "Scale", 1.0)
    shift = _normalized_param(bias, normalized, dtype, "B", 0.0)
    out = np.empty(x.size, dtype)
    means = np.empty(rows, np.float32)
    inv_stds = np.empty(rows, np.float32)
    parallel_for(layer_norm_rows, rows, _flat(x, dtype), weight, shift, out, means, inv_stds, n,
                 float(attrs["epsilon"]), grain=_grain(n))
    stats_shape = x.shape[:axis] + (1,) * len(normalized)
    return out.reshape(x.shape).astype(x.dtype, copy=False), means.reshape(stats_shape), inv_stds.reshape(stats_shape)


def _lower_layer_norm(ctx, args, attrs) -> bool:
    """A float32 LayerNormalization with frozen constant Scale and B as one
    LAYER_NORM operation over its rows (runtime.schedule.ops): the
    per-step loop on the same parameter arrays, so the same bits (a
    transformer block's two LayerNorms split its schedule in three)."""
    x, scale = args[0], args[1]
    bias = args[2] if len(args) > 2 else None
    if (not isinstance(x, Operand) or x.dtype != np.float32 or not x.shape or not math.prod(x.shape)
            or not all(isinstance(p, np.ndarray) and ctx.frozen(p) for p in (scale, bias) if p is not None)
            or len(ctx.out_types) > 3):
        return False
    try:
        axis = _axis("LayerNormalization", attrs["axis"], len(x.shape))
        normalized = x.shape[axis:]
        weight = _normalized_param(scale, normalized, np.dtype(np.float32), "Scale", 1.0)
        shift = _normalized_param(bias, normalized, np.dtype(np.float32), "B", 0.0)
    except KernelError:  # the per-step kernel reports it
        return False
    n, rows = math.prod(normalized), math.prod(x.shape[:axis])
    stats = x.shape[:axis] + (1,) * len(normalized)
    outs = [ctx.output(0, x.shape)] + [ctx.output(i, stats) for i in range(1, len(ctx.out_types))]
    outs += [ctx.scratch((rows,), np.float32) for _ in range(3 - len(outs))]
    params = [field for p in (weight, shift) for field in ctx.pin(p)]  # flat, C-contiguous (_param)
    ctx.emit(LAYER_NORM, [*x.ref(), rows, n, *params, *(field for out in outs for field in out.ref()),
                          *ctx.pin(np.array([float(attrs["epsilon"])]))], rows, _grain(n))
    return True


layer_normalization.lower = _lower_layer_norm


# ---------------------------------------------------------------- softmax family
@intrinsic
def _float32_from_bits(typingctx, bits):
    """Reinterpret an int32 as the float32 with the same bits."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))
    return types.float32(types.int32), codegen


_F32 = np.float32
_LOG2E = _F32(1 / math.log(2))
_LN2_HI = _F32(0.693359375)  # few mantissa bits: n * _LN2_HI is exact for |n| < 2**15
_LN2_LO = _F32(math.log(2) - 0.693359375)
_EXP_FLOOR = _F32(-87.0)  # below this exp underflows past the normal float32 range: 0
_C2, _C3, _C4, _C5, _C6, _C7 = (_F32(1 / math.factorial(k)) for k in range(2, 8))
_ONE, _HALF, _ZERO = _F32(1), _F32(0.5), _F32(0)


@jit(inline="always")
def _exp_nonpositive(x):
    """exp(x) for float32 x <= 0 in plain arithmetic, so loops calling it
    vectorise (Numba has no vector exp without SVML): x = n ln2 + r with
    |r| <= ln2/2, exp(r) by its degree-7 Taylor polynomial, 2**n built from
    its exponent bits. Error <= 1.2 ulp; x < -87 (and NaN) gives 0."""
    xc = x if x > _EXP_FLOOR else _EXP_FLOOR
    n = np.floor(xc * _LOG2E + _HALF)
    r = xc - n * _LN2_HI - n * _LN2_LO
    p = ((((((_C7 * r + _C6) * r + _C5) * r + _C4) * r + _C3) * r + _C2) * r + _ONE) * r + _ONE
    scale = _float32_from_bits(np.int32((np.int32(n) + np.int32(127)) << np.int32(23)))
    return p * scale if x >= _EXP_FLOOR else _ZERO


@jit(inline="always")
def _row_peak(xs):
    """The maximum of a float32 row, NaN when the row holds NaN. Four running
    maxima let the compare-select chains overlap (a single one is latency-bound)."""
    n = xs.size
    a = b = c = d = xs[0]
    full = n - n % 4
    for i in range(0, full, 4):
        a = xs[i] if xs[i] > a else a
        b = xs[i + 1] if xs[i + 1] > b else b
        c = xs[i + 2] if xs[i + 2] > c else c
        d = xs[i + 3] if xs[i + 3] > d else d
    for i in range(full, n):
        a = xs[i] if xs[i] > a else a
    a = b if b > a else a
    c = d if d > c else c
    nans = 0
    for i in range(n):
        nans += xs[i] != xs[i]
    return np.float32(np.nan) if nans else (c if c > a else a)


@jit(inline="always")
def _exp_shifted(xs, ys, peak):
    """ys = exp(xs - peak), exactly as written (no fastmath: the range
    reduction in the exp must not be re-associated)."""
    for i in range(xs.size):
        ys[i] = _exp_nonpositive(xs[i] - peak)


@jit(inline="always")
def _sum(ys):
    """The sum of a contiguous float32 row, vectorised in one order on every
    CPU (runtime.kernels.ordered)."""
    return sum_f32(ys.size, ys.ctypes.data)


@jit(inline="always")
def _softmax_row(xs, ys, peak):
    _exp_shifted(xs, ys, peak)
    inv = _ONE / _sum(ys)
    for i in range(ys.size):
        ys[i] *= inv


@jit(inline="always")
def _log_softmax_row(xs, ys, peak):
    _exp_shifted(xs, ys, peak)
    log_total = _F32(np.log(_sum(ys)))
    for i in range(xs.size):
        ys[i] = (xs[i] - peak) - log_total


@jit(inline="always")
def _softmax_one(xs, ys, log):
    """ys = the softmax (or log-softmax) of the contiguous float32 row xs. A
    row holding NaN, or whose maximum is infinite, gives NaN (as the formula
    exp(x - max) / sum does)."""
    peak = _row_peak(xs)
    if not np.isfinite(peak):
        ys[:] = np.nan
    elif log:
        _log_softmax_row(xs, ys, peak)
    else:
        _softmax_row(xs, ys, peak)


SOFTMAX_TILE = 16
"""Rows of a softmax along an inner axis gathered at a time."""


@jit
def softmax_rows(start, stop, x, out, n, inner, log):
    """Softmax (or log-softmax) of float32 rows [start, stop) of x seen as
    (outer, n, inner), along n: row ``r`` is ``(r // inner, r % inner)``.
    Along the last axis (inner 1) the rows are contiguous; along another
    (YOLOv8's DFL head: 16 bins on axis 1), up to SOFTMAX_TILE rows of one
    outer index are gathered into contiguous rows (n runs of neighbours,
    each read once), computed as those, and scattered back: each row's
    arithmetic, and so its bits, is a last-axis row's."""
    if inner == 1:
        for r in range(start, stop):
            _softmax_one(x[r * n:(r + 1) * n], out[r * n:(r + 1) * n], log)
        return
    xs = np.empty((SOFTMAX_TILE, n), np.float32)
    ys = np.empty((SOFTMAX_TILE, n), np.float32)
    r = start
    while r < stop:
        o = r // inner
        i = r - o * inner
        count = min(SOFTMAX_TILE, inner - i, stop - r)
        base = o * n * inner + i
        for k in range(n):
            at = base + k * inner
            for t in range(count):
                xs[t, k] = x[at + t]
        for t in range(count):
            _softmax_one(xs[t], ys[t], log)
        for k in range(n):
            at = base + k * inner
            for t in range(count):
                out[at + t] = ys[t, k]
        r += count


def _softmax_numpy(x: np.ndarray, axis: int, log: bool) -> np.ndarray:
    """Other float dtypes: numpy, the same stable formula in the input's own
    dtype (float16 node tests expect float16 rounding at every step)."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        shifted = x - np.max(x, axis=axis, keepdims=True)
        total = np.sum(np.exp(shifted), axis=axis, keepdims=True)
        return shifted - np.log(total) if log else np.exp(shifted) / total


def _rows_along(shape: tuple, axis: int) -> tuple[int, int, int]:
    """(outer, n, inner) of a shape seen along ``axis``."""
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


def _softmax(x: np.ndarray, axis: int, log: bool) -> np.ndarray:
    """Softmax along ``axis``. float32 goes to the Numba kernel (rows along
    any axis: :func:`softmax_rows`), other dtypes to numpy."""
    if x.ndim == 0:
        return _softmax(x.reshape(1), axis, log).reshape(())
    axis = _axis("LogSoftmax" if log else "Softmax", axis, x.ndim)
    if x.dtype != np.float32:
        return _softmax_numpy(x, axis, log)
    outer, n, inner = _rows_along(x.shape, axis)
    out = np.empty(x.shape, np.float32)
    if x.size:
        parallel_for(softmax_rows, outer * inner, _flat(x, np.float32), out.reshape(-1), n, inner, log,
                     grain=_grain(n))
    return out


@kernel("Softmax")
def softmax(inputs, attrs):
    (x,) = inputs
    return (_softmax(x, attrs["axis"], False),)


@kernel("LogSoftmax")
def log_softmax(inputs, attrs):
    (x,) = inputs
    return (_softmax(x, attrs["axis"], True),)


def _lowering(log: bool):
    def lower(ctx, args, attrs) -> bool:
        """float32 rows along any axis as a schedule operation
        (runtime.schedule.ops): a classifier's head no longer ends the
        schedule with a Python step (ResNet-50's 1000 classes took 0.1 ms
        there, the kernel 4 us), nor a detector's DFL head (16 bins along
        axis 1) splits it."""
        x = args[0]
        if not isinstance(x, Operand) or x.dtype != np.float32 or not x.shape or not math.prod(x.shape):
            return False
        try:
            axis = _axis("LogSoftmax" if log else "Softmax", attrs["axis"], len(x.shape))
        except KernelError:  # the per-step kernel reports it
            return False
        outer, n, inner = _rows_along(x.shape, axis)
        rows = outer * inner
        ctx.emit(SOFTMAX, [*x.ref(), rows, n, *ctx.output(0, x.shape).ref(), int(log), inner], rows, _grain(n))
        return True

    return lower


softmax.lower = _lowering(False)
log_softmax.lower = _lowering(True)


@kernel("Hardmax")
def hardmax(inputs, attrs):
    """1 at the first maximum along ``axis``, 0 elsewhere."""
    (x,) = inputs
    out = np.zeros_like(x)
    if x.size == 0 or x.ndim == 0:
        return (np.ones_like(x) if x.ndim == 0 else out,)
    axis = _axis("Hardmax", attrs["axis"], x.ndim)
    first = np.expand_dims(np.argmax(x, axis=axis), axis)
    np.put_along_axis(out, first, 1, axis=axis)
    return (out,)


# ---------------------------------------------------------------- LRN, MVN
@jit
def lrn_planes(start, stop, x, y, channels, before, after, scale, bias, beta):
    """Planes [start, stop) of an LRN of X (N*C, S) into Y: plane p, channel
    c = p mod C, is x / (bias + scale * s) ** beta, s the sum of the
    squares of channels c - before .. c + after of its image, all in
    float64 (each square exact, the sum in channel order; a beta of
    activations.special_exponent by its multiplies and square roots, any
    other by libm's pow), rounded once."""
    size = x.shape[1]
    sums = np.empty(size, np.float64)
    for p in range(start, stop):
        c = p % channels
        sums[:] = 0.0
        for j in range(p - c + max(c - before, 0), p - c + min(c + after + 1, channels)):
            for s in range(size):
                v = np.float64(x[j, s])
                sums[s] += v * v
        if act.special_exponent(beta):  # a loop with no call in it, which LLVM vectorises
            for s in range(size):
                y[p, s] = np.float64(x[p, s]) / act.special_power(bias + scale * sums[s], beta)
        else:
            for s in range(size):
                y[p, s] = np.float64(x[p, s]) / (bias + scale * sums[s]) ** beta


def _lrn_params(attrs, rank: int) -> tuple[int, int, float, float, float]:
    """(before, after, alpha / size, bias, beta) of an LRN, checked: the
    window around c spans floor((size-1)/2) channels before, ceil after."""
    size = attrs["size"]
    if rank < 3 or not isinstance(size, int) or size < 1:
        raise KernelError(f"LRN: needs an input of rank >= 3 and size >= 1, got rank {rank} and size={size}")
    return (size - 1) // 2, size // 2, float(attrs["alpha"]) / size, float(attrs["bias"]), float(attrs["beta"])


@kernel("LRN")
def lrn(inputs, attrs):
    """x / (bias + alpha / size * sum of x^2 over the channel window) ** beta
    (:func:`lrn_planes`: computed alike on every host, where numpy's
    float32 power took AVX-512 hosts' own SIMD routine)."""
    (x,) = inputs
    before, after, scale, bias, beta = _lrn_params(attrs, x.ndim)
    dtype = _compute_dtype(x)
    planes, size = math.prod(x.shape[:2]), math.prod(x.shape[2:])
    out = np.empty((planes, size), dtype)
    if out.size:
        parallel_for(lrn_planes, planes, np.ascontiguousarray(x, dtype).reshape(planes, size), out, x.shape[1],
                     before, after, scale, bias, beta, grain=_grain(size))
    return (out.reshape(x.shape).astype(x.dtype, copy=False),)


def _lower_lrn(ctx, args, attrs) -> bool:
    """A float32 LRN as one LRN operation over its planes: the per-step
    loop, so the same bits (AlexNet's and GoogLeNet's LRNs split their
    schedules)."""
    (x,) = args
    if not isinstance(x, Operand) or x.dtype != np.float32 or len(x.shape) < 3 or not math.prod(x.shape):
        return False
    try:
        before, after, scale, bias, beta = _lrn_params(attrs, len(x.shape))
    except KernelError:  # the per-step kernel reports it
        return False
    planes, size = math.prod(x.shape[:2]), math.prod(x.shape[2:])
    out = ctx.output(0, x.shape)
    ctx.emit(LRN, [*x.ref(), *out.ref(), planes, size, x.shape[1], before, after,
                   *ctx.pin(np.array([scale, bias, beta]))], planes, _grain(size))
    return True


lrn.lower = _lower_lrn


MVN_EPSILON = 1e-9
"""Added to the standard deviation, as in ONNX's function body of the op."""


@kernel("MeanVarianceNormalization")
def mean_variance_normalization(inputs, attrs):
    """(x - E[x]) / (sqrt(E[x^2] - E[x]^2) + 1e-9) over ``axes``."""
    (x,) = inputs
    axes = tuple(_axis("MeanVarianceNormalization", a, x.ndim) for a in attrs["axes"])
    mean = np.mean(x, axis=axes, keepdims=True)
    variance = np.mean(np.square(x), axis=axes, keepdims=True) - np.square(mean)
    std = np.sqrt(np.maximum(variance, 0))
    return (((x - mean) / (std + x.dtype.type(MVN_EPSILON))).astype(x.dtype, copy=False),)
