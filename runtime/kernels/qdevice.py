"""CPU kernels of the accelerator's quantized macro ops (the Q dialect:
QConv, QConvTranspose, QGemm, QAdd, QSub, QMax, QMin, QMul, QAvgPool, QLut,
QConcat, QMatMul, QSoftmax), exactly as docs/quantization.md defines them.

Every result is exact. Convolutions and matrix products run through the
float64 BLAS kernels of the nn family on the shifted input ``x - x_zero``:
padding reads ``x_zero``, which the shifted input turns into the zeros
conv_nd pads with, and the zero point comes back through the bias,
``sum(x * w) + b' = conv(x - x_zero, w) + (b' + x_zero * sum(w[k]))``.
float64 holds every integer below 2**53, and every partial sum BLAS forms is
at most ``max|x - x_zero| * sum|w[k]|`` in magnitude; that bound is checked
per call (for 8-bit data it holds for any reduction shorter than 2**37 taps),
and past it an int64 numpy path takes over.

Requantisation runs in Numba with int64 arithmetic, through the one
``runtime.qscheme.rescale``: exact for every int64 value, although ``v * m``
itself can pass 2**63 in 16-bit layers (results are the mathematical
``(v*m + 2^(n-1)) >> n`` clamped to +-2**62, far outside any storage range,
so the clamp that follows gives what unbounded integers give).

The integer parameters are checked (runtime/kernels/qparams.py) before any
Numba loop runs. Numba loops work on int16 copies of the 8- and 16-bit data and write int16
results, so each compiles one signature.
"""
from __future__ import annotations

from functools import partial

import numpy as np

from runtime.errors import KernelError
from runtime.jit import jit
from runtime.kernels import nn
from runtime.kernels.limits import check_output_size
from runtime.kernels.nn_window import MIN_CHUNK, Window, grain, out_shape
from runtime.kernels.qparams import (
    ACCUMULATOR_LIMIT,
    DATA_TYPES,
    MULTIPLIER_RANGE,
    Output,
    Requant,
    accumulator_bias,
    add_params,
    avg_pool_params,
    concat_axis,
    concat_params,
    integer,
    linear_params,
    lut_table,
    mul_params,
    pool_taps,
    softmax_params,
    transpose_accumulator,
    window,
)
from runtime.kernels.registry import kernel
from runtime.parallel import drives, parallel_for
from runtime.pool_protocol import team_enter, team_leave, team_next
from runtime.qscheme import ADD, MAX, MIN, SUB, apply_table, binary, matmul_block, rescale, softmax_row
from runtime.unlinked import call_unlinked

FLOAT32_EXACT = 1 << 24
"""Below this bound on every partial sum, float32 sums of integer products are exact too."""
FLOAT_EXACT = 2**53
"""Integers float64 holds exactly: the float path's partial sums stay below it."""


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
            v = rescale(total, neg_m, neg_n) if total < 0 else rescale(total, m, n)
            if has_res:
                v += rescale(np.int64(res[b, k, s]) - res_zero, res_mult, res_shift)
            dst[s] = min(max(v + out_zero, lo), hi)


@jit
def _requantize_elements(start, stop, x, out, zero, mult, shift, out_zero, lo, hi):
    """out = clamp(rescale(x - zero) + out_zero) over flat [start, stop)."""
    for i in range(start, min(stop, x.shape[0])):
        v = rescale(np.int64(x[i]) - zero, mult, shift) + out_zero
        out[i] = min(max(v, lo), hi)


@jit
def _add_elements(start, stop, a, b, out, params):
    """QAdd, QSub, QMax or QMin over flat [start, stop); params: a_zero,
    a_mult, a_shift, b_zero, b_mult, b_shift, out_zero, lo, hi and the
    qscheme.binary code that combines the rescaled operands."""
    a_zero, a_mult, a_shift, b_zero, b_mult, b_shift = params[0], params[1], params[2], params[3], params[4], params[5]
    out_zero, lo, hi, func = params[6], params[7], params[8], params[9]
    for i in range(start, min(stop, a.shape[0])):
        v = binary(func, rescale(np.int64(a[i]) - a_zero, a_mult, a_shift),
                   rescale(np.int64(b[i]) - b_zero, b_mult, b_shift)) + out_zero
        out[i] = min(max(v, lo), hi)


@jit
def _mul_elements(start, stop, a, b, out, params):
    """QMul over flat [start, stop); params: a_zero, b_zero, mult, shift,
    out_zero, lo, hi."""
    a_zero, b_zero, mult, shift, out_zero, lo, hi = (params[0], params[1], params[2], params[3], params[4],
                                                     params[5], params[6])
    for i in range(start, min(stop, a.shape[0])):
        product = (np.int64(a[i]) - a_zero) * (np.int64(b[i]) - b_zero)
        out[i] = min(max(rescale(product, mult, shift) + out_zero, lo), hi)


@jit
def _qavg_pool_planes(start, stop, x, out, rows, cols, row_count, col_count, geo, mults, shifts, params):
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
                v = rescale(total, mults[count - 1], shifts[count - 1]) + out_zero
                out[p, oh, ow] = min(max(v, lo), hi)


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
def _requantize(acc: np.ndarray, bias: np.ndarray, params: Requant, r: np.ndarray | None) -> np.ndarray:
    """The QConv / QGemm epilogue on acc (B, K, S) int64: out_dtype (B, K, S)."""
    out = np.empty(acc.shape, np.int16)
    res = np.zeros((1, 1, 1), np.int16) if r is None else _int16(r).reshape(acc.shape)
    res_zero, res_mult, res_shift = params.residual or (0, MULTIPLIER_RANGE[0], 1)
    o = params.out
    parallel_for(_requantize_channels, acc.shape[0] * acc.shape[1], acc, bias, params.mult, params.shift,
                 params.neg_mult, params.neg_shift, len(params.neg_mult) > 0, res, r is not None,
                 res_zero, res_mult, res_shift, out, o.zero, o.lo, o.hi, grain=grain(acc.shape[2]))
    if params.table is not None:  # the clamp gave the table's input codes
        return apply_table(params.table, out)
    return out.astype(o.dtype, copy=False)


def _check_residual(r: np.ndarray | None, shape: tuple[int, ...]) -> None:
    if r is not None and r.shape != shape:
        raise KernelError(f"r must have the output's shape {list(shape)}, got {list(r.shape)}")


def _conv_operands(op: str, inputs, attrs):
    """A QConv's or QConvTranspose's operands and window, checked: x, w
    ([K][C/group][kh][kw]), b, the optional residual r, the requantisation,
    the window (a transposed convolution's pads may be negative), the group."""
    x, w, b, r = (list(inputs) + [None])[:4]
    x, w = _array(x, "x", 4), _array(w, "w", 4)
    b = _array(b, "b", 1, tuple(ACCUMULATOR_LIMIT))
    params = linear_params(attrs, x.dtype, w.dtype, w.shape[0], None if r is None else r.dtype)
    win = window(op, attrs, attrs["dilations"], negative_pads=op == "QConvTranspose")
    if win.kernel != w.shape[2:]:
        raise KernelError(f"kernel_shape={list(win.kernel)} does not match w of shape {list(w.shape)}")
    group = integer(attrs["group"], "group")
    if group < 1 or x.shape[1] != w.shape[1] * group or w.shape[0] % group:
        raise KernelError(f"group={group} does not fit x with {x.shape[1]} channels and w of shape "
                          f"{list(w.shape)} (need C == w.shape[1] * group and K % group == 0)")
    return x, w, b, r, params, win, group


@kernel("QConv")
def qconv(inputs, attrs):
    """Quantized convolution + bias + optional residual + activation clamp."""
    x, w, b, r, params, win, group = _conv_operands("QConv", inputs, attrs)
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


@kernel("QConvTranspose")
def qconv_transpose(inputs, attrs):
    """Quantized transposed convolution: acc = b + the transposed
    convolution of (x - x_zero) by w (w in QConv's layout [K][C/group][kh][kw],
    b not folded), then QConv's epilogue."""
    x, w, b, r, params, win, group = _conv_operands("QConvTranspose", inputs, attrs)
    x_zero = integer(attrs["x_zero"], "x_zero")
    bound = transpose_accumulator(x.dtype, w, b, x_zero)
    acc = _conv_transpose(x, w, x_zero, win, group, attrs["output_padding"], bound)
    _check_residual(r, acc.shape)
    shape = acc.shape
    return (_requantize(acc.reshape(shape[0], shape[1], -1), b.astype(np.int64), params, r).reshape(shape),)


def _conv_transpose(x, w, x_zero: int, win: Window, group: int, output_padding, bound: int) -> np.ndarray:
    """The transposed convolution of (x - x_zero) by w, exactly, as int64:
    the float64 kernel (exact below 2^53: every partial sum is bounded by
    ``bound``) or, past it, numpy int64 sums tap by tap."""
    kg, cg = w.shape[0] // group, w.shape[1]
    onnx_w = w.reshape(group, kg, cg, *w.shape[2:]).transpose(0, 2, 1, 3, 4).reshape(group * cg, kg, *w.shape[2:])
    pads = win.pads_begin + win.pads_end
    if bound < FLOAT_EXACT:
        y = nn.conv_transpose_nd(np.subtract(x, x_zero, dtype=np.float64), onnx_w.astype(np.float64), None,
                                 strides=win.strides, pads=pads, dilations=win.dilations, group=group,
                                 output_padding=output_padding)
        return y.astype(np.int64)
    dims = tuple(win.strides[a] * (x.shape[2 + a] - 1) + int(output_padding[a]) + win.spans[a]
                 - win.pads_begin[a] - win.pads_end[a] for a in range(2))
    return _conv_transpose_int64(np.subtract(x, x_zero, dtype=np.int64), w.astype(np.int64), win, group, dims)


def _conv_transpose_int64(x, w, win: Window, group: int, dims) -> np.ndarray:
    """y[n, k, i*s + t*d - p] += x[n, c, i] * w[k, c, t] in numpy int64, tap
    by tap, on a canvas with room for negative pads on either side."""
    kg, cg = w.shape[0] // group, w.shape[1]
    (sh, sw), (dh, dw), (ph, pw) = win.strides, win.dilations, win.pads_begin
    (h, wd), (kh, kw) = x.shape[2:], w.shape[2:]
    lead_h, lead_w = max(0, -ph), max(0, -pw)
    size_h = max(lead_h + (h - 1) * sh + (kh - 1) * dh + 1, lead_h + ph + dims[0])
    size_w = max(lead_w + (wd - 1) * sw + (kw - 1) * dw + 1, lead_w + pw + dims[1])
    y = np.zeros((x.shape[0], w.shape[0], size_h, size_w), np.int64)
    for g in range(group):
        xs, ws = x[:, g * cg:(g + 1) * cg], w[g * kg:(g + 1) * kg]
        for ty in range(kh):
            for tx in range(kw):
                y0, x0 = lead_h + ty * dh, lead_w + tx * dw
                y[:, g * kg:(g + 1) * kg, y0:y0 + (h - 1) * sh + 1:sh, x0:x0 + (wd - 1) * sw + 1:sw] += \
                    np.einsum("nchw,kc->nkhw", xs, ws[:, :, ty, tx])
    return np.ascontiguousarray(y[:, :, lead_h + ph:lead_h + ph + dims[0], lead_w + pw:lead_w + pw + dims[1]])


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


TWO_GRIDS = {"QAdd": (ADD, "a + b"), "QSub": (SUB, "a - b"), "QMax": (MAX, "max(a, b)"), "QMin": (MIN, "min(a, b)")}
"""The two-grid ops: the qscheme.binary code that combines the rescaled operands."""


def _two_grids(op: str, func: int, formula: str):
    def run(inputs, attrs):
        return _binary(op, inputs, attrs, partial(add_params, func=func), _add_elements)
    run.__name__ = op.lower()
    run.__doc__ = f"y = clamp(({formula}) of rescale(a - a_zero), rescale(b - b_zero), plus out_zero)."
    return run


for _op, (_func, _formula) in TWO_GRIDS.items():
    kernel(_op)(_two_grids(_op, _func, _formula))


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


@kernel("QLut")
def qlut(inputs, attrs):
    """y = table[x + 128] on int8 codes; on int16 codes the 513-entry table interpolated (qscheme.wide_lookup)."""
    x = _array(inputs[0], "x", np.ndim(inputs[0]))
    table = lut_table(attrs, x.dtype)
    return (apply_table(table, x),)


# ---------------------------------------------------------------- QMatMul, QSoftmax
@kernel("QMatMul")
def qmatmul(inputs, attrs):
    """y = clamp(rescale((a - a_zero) @ (b - b_zero)) + out_zero) over the
    leading (batch) dims, which must agree: ``qscheme.matmul_block``."""
    a, b = np.asarray(inputs[0]), np.asarray(inputs[1])
    params, o = mul_params(attrs, a.dtype, b.dtype)
    if a.ndim < 2 or a.shape[:-2] != b.shape[:-2] or a.shape[-1] != b.shape[-2] or b.ndim != a.ndim:
        raise KernelError(f"QMatMul: a of shape {list(a.shape)} and b of shape {list(b.shape)} are not batches "
                          "of [M, K] and [K, N] matrices with the same leading dims")
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    shape = check_output_size(a.shape[:-1] + (n,), "QMatMul")
    a64 = a.astype(np.int64).reshape(-1, m * k)
    b64 = b.astype(np.int64).reshape(-1, k * n)
    out = np.empty((a64.shape[0], m * n), np.int64)
    _qmatmul_batches(a64, b64, out, m, k, n, params)
    return (out.reshape(shape).astype(o.dtype),)


@jit
def _qmatmul_batches(a, b, out, m, k, n, params):
    for p in range(a.shape[0]):
        matmul_block(a[p], b[p], out[p], m, k, n, params[0], params[1], params[2], params[3], params[4], params[5],
                     params[6])


@kernel("QSoftmax")
def qsoftmax(inputs, attrs):
    """Softmax over the last axis in integers (``qscheme.softmax_row``):
    table exponentials, a 32-bit sum, one reciprocal per row, requantised."""
    x = np.asarray(inputs[0])
    params, table, o = softmax_params(attrs, x.dtype)
    if x.ndim < 1 or x.size == 0:
        raise KernelError(f"QSoftmax: x of shape {list(x.shape)} has no rows")
    rows = x.astype(np.int64).reshape(-1, x.shape[-1])
    out = np.empty(rows.shape, np.int64)
    _qsoftmax_rows(rows, table, params, out)
    return (out.reshape(x.shape).astype(o.dtype),)


@jit
def _qsoftmax_rows(rows, table, params, out):
    for r in range(rows.shape[0]):
        softmax_row(rows[r], table, params[0], params[1], params[2], params[3], params[4], params[5], params[6],
                    out[r])


# ---------------------------------------------------------------- QAvgPool
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
    parallel_for(_qavg_pool_planes, planes.shape[0], planes, out, rows, cols, row_count, col_count, geo,
                 mults, shifts, params, grain=grain(out[0].size * win.kernel[0] * win.kernel[1]))
    return (out.reshape(shape).astype(o.dtype, copy=False),)


# ---------------------------------------------------------------- team drivers (runtime.parallel)
@drives(_requantize_channels)
@jit
def _requantize_channels_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(_requantize_channels, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)


@drives(_requantize_elements)
@jit
def _requantize_elements_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(_requantize_elements, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)


@drives(_qavg_pool_planes)
@jit
def _qavg_pool_planes_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(_qavg_pool_planes, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)
