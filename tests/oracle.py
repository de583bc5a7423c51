"""The test oracle of the quantization scheme: the integer reference, a
quantized graph evaluated node by node in plain NumPy, written to be read
against docs/quantization.md.

It is deliberately independent of the production arithmetic (the CPU integer
kernels, runtime/kernels/qdevice.py, and the one ``runtime.qscheme.rescale``
they and the simulator inline): windows come from ``np.pad`` and
``sliding_window_view``, products from ``einsum`` in int64, and
:func:`rescale` is the doc's formula on Python integers, so it is exact at
any size and shares no code with what it checks. It is the tests' one
independent rescale too. Only the storage ranges, which define the format
rather than compute anything, come from runtime.qscheme. Tests hold the
kernels (and the device simulator) to it bit for bit; the product never
runs it.

It covers the quantized accelerator segments: the Q ops, the layout ops
that move int8/int16 codes (MaxPool, Reshape, Flatten, Transpose, Squeeze,
Unsqueeze, Identity, nearest Resize by integer factors, Slice, constant and edge Pad,
DepthToSpace, SpaceToDepth), QuantizeLinear and
DequantizeLinear at the segment edges (ONNX's float32 semantics), and the
structural Segment and Fused nodes, whose bodies it evaluates. Float CPU
segments go to the ``cpu`` callback when one is given (say, the segment's
body lowered and run by the executor), so a whole partitioned model runs
with its accelerator segments in the reference; any other op is an error
naming it.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ir.graph import Graph, Node, Value
from runtime.errors import TesseraError
from runtime.hardware import ACCELERATOR
from runtime.qscheme import ACTIVATION_RANGE

CpuSegment = Callable[[Node, list], Sequence[np.ndarray]]
"""Runs a CPU ``Segment`` node on its input arrays, giving its output arrays."""
Observer = Callable[[str, np.ndarray], None]

RANGES = ACTIVATION_RANGE
ACCUMULATOR_LIMIT = {np.dtype(np.int32): 2**31 - 1, np.dtype(np.int64): 2**62}


class IntegerReferenceError(TesseraError):
    """The reference cannot evaluate a node (unsupported op, bad parameter)."""


def run_reference(graph: Graph, feeds: Mapping[str, np.ndarray], cpu: CpuSegment | None = None,
                  observe: Observer | None = None) -> dict[str, np.ndarray]:
    """The outputs of ``graph`` (by name) on ``feeds`` (input name -> array).

    ``cpu(node, inputs)`` runs the Segment nodes whose device is not the
    accelerator (without it their bodies are evaluated here, which fails on
    float ops); ``observe(name, array)`` sees every value computed, in
    segment and group bodies too (layer-wise comparison)."""
    missing = [v.name for v in graph.inputs if v.name not in feeds]
    if missing:
        raise IntegerReferenceError(f"no feed for graph inputs {missing}")
    env = {v: np.asarray(feeds[v.name]) for v in graph.inputs}
    _run_graph(graph, env, cpu, observe)
    return {v.name: _read(env, v) for v in graph.outputs}


def _run_graph(graph: Graph, env: dict, cpu: CpuSegment | None, observe: Observer | None) -> None:
    for node in graph.nodes:
        inputs = [None if v is None else _read(env, v) for v in node.inputs]
        outputs = _run_node(node, inputs, cpu, observe)
        if len(outputs) != len(node.outputs):
            raise IntegerReferenceError(f"node {node.name!r} ({node.op}) gave {len(outputs)} outputs, "
                                        f"expected {len(node.outputs)}")
        for value, array in zip(node.outputs, outputs):
            env[value] = _checked(node, value, np.asarray(array))
            if observe is not None:
                observe(value.name, env[value])


def _read(env: dict, value: Value) -> np.ndarray:
    if value.is_constant:
        return value.const
    if value not in env:
        raise IntegerReferenceError(f"value {value.name!r} is read before it is computed")
    return env[value]


def _checked(node: Node, value: Value, array: np.ndarray) -> np.ndarray:
    """An output must have its IR type (dtype, and every static dim)."""
    want = value.type
    if array.dtype != want.dtype or array.ndim != want.rank or any(
            d is not None and d != n for d, n in zip(want.shape, array.shape)):
        raise IntegerReferenceError(f"node {node.name!r} ({node.op}): output {value.name!r} is "
                                    f"{array.dtype}{list(array.shape)}, its IR type is {want}")
    return array


def _run_node(node: Node, inputs: list, cpu: CpuSegment | None, observe: Observer | None) -> Sequence[np.ndarray]:
    if node.op == "Segment" and node.attrs["device"] != ACCELERATOR and cpu is not None:
        return cpu(node, inputs)
    if node.op in ("Segment", "Fused"):
        return _run_body(node.attrs["body"], inputs, cpu, observe)
    op = _OPS.get(node.op)
    if op is None:
        raise IntegerReferenceError(
            f"node {node.name!r}: op {node.op} is not part of the integer reference (it covers the quantized "
            f"accelerator ops, the layout ops on their codes and QuantizeLinear/DequantizeLinear; float CPU "
            f"segments run through the cpu callback)")
    try:
        return op(node.attrs, *inputs)
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise IntegerReferenceError(f"node {node.name!r} ({node.op}): {type(exc).__name__}: {exc}") from exc
    except IntegerReferenceError as exc:
        raise IntegerReferenceError(f"node {node.name!r} ({node.op}): {exc}") from None


def _run_body(body: Graph, inputs: list, cpu: CpuSegment | None, observe: Observer | None) -> list[np.ndarray]:
    env = dict(zip(body.inputs, inputs))
    _run_graph(body, env, cpu, observe)
    return [_read(env, v) for v in body.outputs]


# ---------------------------------------------------------------- the scheme's arithmetic
def rescale(v, m, n) -> np.ndarray | int:
    """(v * m + 2^(n-1)) >> n, the doc's formula, in Python integers: the
    oracle of runtime.qscheme.rescale (arrays or scalars, elementwise)."""
    v, m, n = (np.asarray(a, dtype=object) for a in (v, m, n))
    return (v * m + (1 << (n - 1))) >> n


def _multipliers(mults, shifts, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-point multipliers in [2^30, 2^31) and shifts in [1, 62] (object arrays)."""
    m, n = np.array(mults, dtype=object).reshape(-1), np.array(shifts, dtype=object).reshape(-1)
    if m.shape != n.shape or not all(2**30 <= int(a) < 2**31 and 1 <= int(b) <= 62 for a, b in zip(m, n)):
        raise IntegerReferenceError(f"{name}: bad multipliers {m.tolist()} / shifts {n.tolist()}")
    return m, n


def _store(v: np.ndarray, attrs) -> np.ndarray:
    """clamp(v + out_zero, lo, hi) in the output's storage type; with a
    ``table`` (QConv, QConvTranspose, QGemm) the clamp is on int8 (256
    entries) or int16 (513 entries) and the table maps it (:func:`_lookup`)."""
    table = list(attrs.get("table") or ())
    dtype = np.dtype(attrs["out_dtype"])
    clamp_type = (np.dtype(np.int16) if len(table) == 513 else np.dtype(np.int8)) if table else dtype
    low, high = RANGES[clamp_type]
    lo, hi, zero = int(attrs["lo"]), int(attrs["hi"]), int(attrs["out_zero"])
    if not low <= lo <= hi <= high or not low <= zero <= high:
        raise IntegerReferenceError(f"clamp [{lo}, {hi}] or out_zero {zero} do not fit {clamp_type}")
    codes = np.clip(np.asarray(v, dtype=object) + zero, lo, hi)
    if not table:
        return codes.astype(dtype)
    return _lookup(np.array(table, np.int64), codes.astype(np.int64), dtype, clamp_type == np.int16)


def _lookup(table: np.ndarray, codes: np.ndarray, dtype: np.dtype, wide: bool = False) -> np.ndarray:
    """table[codes + 128] for int8 codes and 256 entries of ``dtype``; for
    int16 codes (``wide``) and 513 entries, entries i = (code + 32768) // 128 and i + 1
    interpolated by f = (code + 32768) % 128: a + floor(((b - a)·f + 64) / 128)."""
    entries = 513 if wide else 256
    if table.shape != (entries,) or not RANGES[dtype][0] <= table.min() <= table.max() <= RANGES[dtype][1]:
        raise IntegerReferenceError(f"a table needs {entries} entries of {dtype}")
    if entries == 256:
        return table[codes + 128].astype(dtype)
    i, f = np.divmod(codes + 32768, 128)
    a, b = table[i], table[np.minimum(i + 1, 512)]
    return (a + ((b - a) * f + 64) // 128).astype(dtype)


def _wide(x: np.ndarray) -> np.ndarray:
    return np.asarray(x).astype(np.int64)


# ---------------------------------------------------------------- windows
def _out_size(size: int, kernel: int, stride: int, begin: int, end: int, dilation: int = 1,
              ceil_mode: bool = False) -> int:
    """ONNX's output length; with ceil_mode the last window must start inside
    the input or its begin padding."""
    span = (kernel - 1) * dilation + 1
    room = size + begin + end - span
    out = (-(-room // stride) if ceil_mode else room // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + begin:
        out -= 1
    return out


def _windows(x: np.ndarray, kernel, strides, pads, dilations, ceil_mode: bool, fill) -> np.ndarray:
    """(N, C, *out, *kernel): every window of x (N, C, *spatial) padded with
    ``fill`` (also past the end pads, where ceil_mode windows overhang)."""
    rank = len(kernel)
    outs = [_out_size(x.shape[2 + d], kernel[d], strides[d], pads[d], pads[rank + d], dilations[d], ceil_mode)
            for d in range(rank)]
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    ends = [max(pads[rank + d], (outs[d] - 1) * strides[d] + spans[d] - x.shape[2 + d] - pads[d])
            for d in range(rank)]
    padded = np.pad(x, [(0, 0), (0, 0)] + [(pads[d], ends[d]) for d in range(rank)], constant_values=fill)
    views = sliding_window_view(padded, spans, axis=tuple(range(2, 2 + rank)))
    pick = tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(outs, strides))
    return views[(slice(None), slice(None)) + pick + tuple(slice(None, None, d) for d in dilations)]


# ---------------------------------------------------------------- QConv, QGemm
def _check_accumulator(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> None:
    """Worst case max|x| * sum|w[k]| + |b[k]| within the bias type's accumulator."""
    peak = max(-RANGES[x.dtype][0], RANGES[x.dtype][1])
    worst = [peak * int(np.abs(_wide(wk)).sum()) + abs(int(bk)) for wk, bk in zip(w, b)]
    if max(worst, default=0) > ACCUMULATOR_LIMIT[b.dtype]:
        raise IntegerReferenceError(f"the accumulator can reach {max(worst)}, beyond {b.dtype}")


def _requantize(acc: np.ndarray, attrs, r: np.ndarray | None, channel_axis: int) -> np.ndarray:
    """v = rescale(acc, m[k], n[k]) (neg_mult/neg_shift where acc < 0 when
    given); v += rescale(r - res_zero, res_mult, res_shift); store."""
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    m, n = _multipliers(attrs["mult"], attrs["shift"], "mult/shift")
    v = rescale(acc, m.reshape(shape), n.reshape(shape))
    if len(attrs["neg_mult"]):
        neg_m, neg_n = _multipliers(attrs["neg_mult"], attrs["neg_shift"], "neg_mult/neg_shift")
        v = np.where(acc < 0, rescale(acc, neg_m.reshape(shape), neg_n.reshape(shape)), v)
    if r is not None:
        res_m, res_n = _multipliers([attrs["res_mult"]], [attrs["res_shift"]], "res_mult/res_shift")
        v = v + rescale(_wide(r) - int(attrs["res_zero"]), res_m[0], res_n[0])
    return _store(v, attrs)


def _qconv(attrs, x, w, b, r=None):
    """acc[k] = sum over channels and taps of x * w[k] + b'[k], x padded with x_zero."""
    _check_accumulator(x, w, b)
    taps = _windows(_wide(x), attrs["kernel_shape"], attrs["strides"], attrs["pads"], attrs["dilations"], False,
                    int(attrs["x_zero"]))
    group = int(attrs["group"])
    per_in, per_out = x.shape[1] // group, w.shape[0] // group
    acc = np.concatenate([np.einsum("ncyxij,kcij->nkyx", taps[:, g * per_in:(g + 1) * per_in],
                                    _wide(w[g * per_out:(g + 1) * per_out])) for g in range(group)], axis=1)
    return [_requantize(acc + _wide(b).reshape(-1, 1, 1), attrs, r, channel_axis=1)]


def _qconv_transpose(attrs, x, w, b, r=None):
    """acc[k][o] = b[k] + sum over c and taps t with o = i*s + t*d - pad of
    (x[c][i] - x_zero) * w[k][c][t] (w [K][C/group][kh][kw], b not folded)."""
    x_zero = int(attrs["x_zero"])
    peak = max(-RANGES[x.dtype][0], RANGES[x.dtype][1]) + abs(x_zero)
    worst = [peak * int(np.abs(_wide(wk)).sum()) + abs(int(bk)) for wk, bk in zip(w, b)]
    if max(worst, default=0) > ACCUMULATOR_LIMIT[b.dtype]:
        raise IntegerReferenceError(f"the accumulator can reach {max(worst)}, beyond {b.dtype}")
    (sh, sw), (dh, dw) = attrs["strides"], attrs["dilations"]
    pads, extra = list(attrs["pads"]), list(attrs["output_padding"])
    n, c, h, wd = x.shape
    k, cg, kh, kw = w.shape
    group = int(attrs["group"])
    kg = k // group
    out_h = sh * (h - 1) + extra[0] + (kh - 1) * dh + 1 - pads[0] - pads[2]
    out_w = sw * (wd - 1) + extra[1] + (kw - 1) * dw + 1 - pads[1] - pads[3]
    # scatter every tap's products onto a canvas wide enough for negative pads, then crop
    lead_h, lead_w = max(0, -pads[0]), max(0, -pads[1])
    canvas = np.zeros((n, k, max(lead_h + (h - 1) * sh + (kh - 1) * dh + 1, lead_h + pads[0] + out_h),
                       max(lead_w + (wd - 1) * sw + (kw - 1) * dw + 1, lead_w + pads[1] + out_w)), np.int64)
    shifted = _wide(x) - x_zero
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = lead_h + ky * dh, lead_w + kx * dw
            rows, cols = slice(y0, y0 + (h - 1) * sh + 1, sh), slice(x0, x0 + (wd - 1) * sw + 1, sw)
            for g in range(group):
                taps, inputs = _wide(w[g * kg:(g + 1) * kg, :, ky, kx]), shifted[:, g * cg:(g + 1) * cg]
                canvas[:, g * kg:(g + 1) * kg, rows, cols] += np.einsum("nchw,kc->nkhw", inputs, taps)
    acc = canvas[:, :, lead_h + pads[0]:lead_h + pads[0] + out_h, lead_w + pads[1]:lead_w + pads[1] + out_w]
    acc = acc + _wide(b).reshape(1, -1, 1, 1)
    return [_requantize(acc, attrs, r, channel_axis=1)]


def _qgemm(attrs, x, w, b, r=None):
    """acc[m, n] = sum_k x[m, k] * w[n, k] + b'[n]."""
    _check_accumulator(x, w, b)
    acc = np.einsum("mk,nk->mn", _wide(x), _wide(w)) + _wide(b)
    return [_requantize(acc, attrs, r, channel_axis=1)]


# ---------------------------------------------------------------- element-wise Q ops
def _rescaled_pair(attrs, a, b):
    """rescale(a - a_zero, a_mult, a_shift), rescale(b - b_zero, b_mult, b_shift)."""
    a_m, a_n = _multipliers([attrs["a_mult"]], [attrs["a_shift"]], "a_mult/a_shift")
    b_m, b_n = _multipliers([attrs["b_mult"]], [attrs["b_shift"]], "b_mult/b_shift")
    return (rescale(_wide(a) - int(attrs["a_zero"]), a_m[0], a_n[0]),
            rescale(_wide(b) - int(attrs["b_zero"]), b_m[0], b_n[0]))


def _qadd(attrs, a, b):
    ra, rb = _rescaled_pair(attrs, a, b)
    return [_store(ra + rb, attrs)]


def _qsub(attrs, a, b):
    ra, rb = _rescaled_pair(attrs, a, b)
    return [_store(ra - rb, attrs)]


def _qmax(attrs, a, b):
    ra, rb = np.broadcast_arrays(*_rescaled_pair(attrs, a, b))
    return [_store(np.where(ra >= rb, ra, rb), attrs)]


def _qmin(attrs, a, b):
    ra, rb = np.broadcast_arrays(*_rescaled_pair(attrs, a, b))
    return [_store(np.where(ra <= rb, ra, rb), attrs)]


def _qmul(attrs, a, b):
    m, n = _multipliers([attrs["mult"]], [attrs["shift"]], "mult/shift")
    product = (_wide(a) - int(attrs["a_zero"])) * (_wide(b) - int(attrs["b_zero"]))
    return [_store(rescale(product, m[0], n[0]), attrs)]


def _qlut(attrs, x):
    """y = table[x + 128]; on int16 data the 513-entry table interpolated."""
    if x.dtype not in (np.int8, np.int16):
        raise IntegerReferenceError("QLut needs int8 or int16 data")
    return [_lookup(np.array(attrs["table"], np.int64), _wide(x), np.dtype(attrs["out_dtype"]), x.dtype == np.int16)]


def _qmatmul(attrs, a, b):
    """y = store(rescale((a - a_zero) @ (b - b_zero))) per batch, in Python integers."""
    if a.ndim < 2 or a.shape[:-2] != b.shape[:-2] or a.shape[-1] != b.shape[-2]:
        raise IntegerReferenceError(f"QMatMul of {a.shape} and {b.shape}")
    m, n = _multipliers([attrs["mult"]], [attrs["shift"]], "mult/shift")
    a_obj = np.asarray(_wide(a) - int(attrs["a_zero"]), dtype=object)
    b_obj = np.asarray(_wide(b) - int(attrs["b_zero"]), dtype=object)
    acc = np.einsum("...ik,...kj->...ij", a_obj, b_obj)
    return [_store(rescale(acc, m[0], n[0]), attrs)]


def _qsoftmax(attrs, x):
    """Softmax over the last axis as docs/isa.md's SOFTMAX defines it:
    e = T[min(rescale(max - x), 255)], r = 2^46 // sum(e),
    p = (e * r + 2^15) >> 16, y = store(rescale(p))."""
    table = np.array(attrs["table"], dtype=object)
    if table.shape != (256,) or table[0] != 1 << 15:
        raise IntegerReferenceError("QSoftmax needs a 256-entry Q15 table starting at 2^15")
    m_in, n_in = _multipliers([attrs["in_mult"]], [attrs["in_shift"]], "in_mult/in_shift")
    m, n = _multipliers([attrs["mult"]], [attrs["shift"]], "mult/shift")
    rows = np.asarray(_wide(x), dtype=object).reshape(-1, x.shape[-1])
    out = []
    for row in rows:
        index = np.minimum(rescale(row.max() - row, m_in[0], n_in[0]), 255)
        e = table[index.astype(np.int64)]
        reciprocal = (1 << 46) // int(e.sum())
        out.append(rescale((e * reciprocal + (1 << 15)) >> 16, m[0], n[0]))
    return [_store(np.array(out, dtype=object).reshape(x.shape), {**attrs, "table": ()})]  # its table is the exp


def _qconcat(attrs, *xs):
    m, n = _multipliers(attrs["mults"], attrs["shifts"], "mults/shifts")
    zeros = list(attrs["zeros"])
    if len(zeros) != len(xs) or len(m) != len(xs):
        raise IntegerReferenceError(f"{len(xs)} inputs need as many zeros, mults and shifts")
    parts = [_store(rescale(_wide(x) - int(z), mi, ni), attrs) for x, z, mi, ni in zip(xs, zeros, m, n)]
    return [np.concatenate(parts, axis=int(attrs["axis"]))]


def _qavg_pool(attrs, x):
    """s = sum over the window's in-bounds elements of (x - x_zero); the
    window's element count c picks the multiplier."""
    kernel, strides, pads, ceil = attrs["kernel_shape"], attrs["strides"], attrs["pads"], bool(attrs["ceil_mode"])
    windows = _windows(_wide(x) - int(attrs["x_zero"]), kernel, strides, pads, (1, 1), ceil, 0)
    sums = windows.sum(axis=(-2, -1))
    rows, cols = (_counts(x.shape[2 + d], kernel[d], strides[d], pads[d], pads[2 + d], windows.shape[2 + d],
                          bool(attrs["count_include_pad"])) for d in range(2))
    counts = np.multiply.outer(rows, cols)
    m, n = _multipliers(attrs["mults"], attrs["shifts"], "mults/shifts")
    if len(m) != kernel[0] * kernel[1] or counts.min(initial=1) < 1:
        raise IntegerReferenceError(f"{len(m)} multipliers for a {list(kernel)} window, or a window with no element")
    return [_store(rescale(sums, m[counts - 1], n[counts - 1]), attrs)]


def _counts(size: int, kernel: int, stride: int, begin: int, end: int, out: int, include_pad: bool) -> np.ndarray:
    """Elements each window along one axis averages: its taps inside the
    input, or inside the padded input when the padding counts."""
    taps = np.arange(out)[:, None] * stride + np.arange(kernel)  # coordinates in the padded input
    low, high = (0, size + begin + end) if include_pad else (begin, begin + size)
    return ((taps >= low) & (taps < high)).sum(axis=1)


# ---------------------------------------------------------------- layout ops on codes
def _max_pool(attrs, x):
    """Max over each window; the padding (below every code) never wins."""
    rank = x.ndim - 2
    taps = _windows(_wide(x), attrs["kernel_shape"], attrs["strides"], attrs["pads"], attrs["dilations"],
                    bool(attrs["ceil_mode"]), np.iinfo(np.int64).min)
    return [taps.max(axis=tuple(range(-rank, 0))).astype(x.dtype)]


def _reshape(attrs, x, shape):
    target = [int(d) for d in shape]
    if not attrs["allowzero"]:
        target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
    return [x.reshape(target)]


def _flatten(attrs, x):
    axis = int(attrs["axis"])
    axis = axis + x.ndim if axis < 0 else axis
    return [x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))]


def _transpose(attrs, x):
    return [np.transpose(x, attrs["perm"])]


def _slice(attrs, x, starts, ends, axes=None, steps=None):
    """ONNX Slice with positive steps, which Python's slicing matches
    (negative starts and ends count from the end, both clamp to the axis)."""
    index = [slice(None)] * x.ndim
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    for axis, start, end, step in zip(axes, starts, ends, steps):
        if step <= 0:
            raise IntegerReferenceError(f"Slice step {step}: the reference slices with positive steps")
        index[int(axis)] = slice(int(start), int(end), int(step))
    return [x[tuple(index)]]


def _pad(attrs, x, pads, value=None, axes=None):
    """Constant Pad: negative pads crop first, the rest is ``value``'s code;
    edge Pad: the border repeats the (cropped) input's first or last element."""
    if attrs["mode"] not in ("constant", "edge"):
        raise IntegerReferenceError(f"Pad mode {attrs['mode']!r}: the reference pads with a constant or the edge")
    axes = range(x.ndim) if axes is None else [int(a) % x.ndim for a in axes]
    widths = [(0, 0)] * x.ndim
    for i, axis in enumerate(axes):
        widths[axis] = (int(pads[i]), int(pads[i + len(axes)]))
    cropped = x[tuple(slice(-min(b, 0), x.shape[k] + min(e, 0)) for k, (b, e) in enumerate(widths))]
    grow = [(max(b, 0), max(e, 0)) for b, e in widths]
    if attrs["mode"] == "edge":
        return [np.pad(cropped, grow, mode="edge")]
    fill = 0 if value is None else np.asarray(value).reshape(-1)[0]
    return [np.pad(cropped, grow, constant_values=fill)]


def _depth_to_space(attrs, x):
    """ONNX's DCR (depth, column, row) or CRD order of the moved channels."""
    n, c, h, w = x.shape
    b = int(attrs["blocksize"])
    if attrs["mode"] == "DCR":
        y = x.reshape(n, b, b, c // b ** 2, h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        y = x.reshape(n, c // b ** 2, b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return [y.reshape(n, c // b ** 2, h * b, w * b)]


def _space_to_depth(attrs, x):
    n, c, h, w = x.shape
    b = int(attrs["blocksize"])
    y = x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
    return [y.reshape(n, c * b * b, h // b, w // b)]


def _squeeze(attrs, x, axes=None):
    if axes is None:
        return [np.squeeze(x)]
    return [np.squeeze(x, axis=tuple(int(a) for a in axes))]


def _unsqueeze(attrs, x, axes):
    return [np.expand_dims(x, tuple(int(a) for a in axes))]


def _identity(attrs, x):
    return [x]


def _nearest_source(mode: str, out: int, factor: int) -> np.ndarray:
    """Source coordinate of each output position along an axis upsampled by
    an integer factor (half_pixel_symmetric is then half_pixel)."""
    i = np.arange(out, dtype=np.float64)
    if mode in ("half_pixel", "half_pixel_symmetric") or (mode == "pytorch_half_pixel" and out > 1):
        return (i + 0.5) / factor - 0.5
    if mode == "asymmetric":
        return i / factor
    if mode == "align_corners" and out > 1:
        return i * (out // factor - 1) / (out - 1)
    if mode in ("pytorch_half_pixel", "align_corners"):
        return np.zeros(out)
    raise IntegerReferenceError(f"Resize: coordinate_transformation_mode={mode!r} is not covered")


_ROUNDING = {
    "round_prefer_floor": lambda c: np.ceil(c - 0.5),
    "round_prefer_ceil": lambda c: np.floor(c + 0.5),
    "floor": np.floor,
    "ceil": np.ceil,
}


def _resize(attrs, x, roi=None, scales=None, sizes=None):
    """Nearest-neighbour upsampling by an integer factor per axis."""
    if attrs["mode"] != "nearest" or attrs["keep_aspect_ratio_policy"] != "stretch":
        raise IntegerReferenceError("Resize: only mode 'nearest' with the 'stretch' policy is covered")
    axes = list(range(x.ndim)) if attrs["axes"] is None else [int(a) % x.ndim for a in attrs["axes"]]
    if scales is not None and scales.size:
        factors = [float(f) for f in scales]
    else:
        factors = [int(n) / x.shape[a] for a, n in zip(axes, sizes)]
    y = x
    for axis, factor in zip(axes, factors):
        if factor != int(factor) or factor < 1:
            raise IntegerReferenceError(f"Resize: axis {axis} is resized by {factor}, not an integer factor")
        source = _nearest_source(attrs["coordinate_transformation_mode"], x.shape[axis] * int(factor), int(factor))
        index = np.clip(_ROUNDING[attrs["nearest_mode"]](source), 0, x.shape[axis] - 1).astype(np.int64)
        y = np.take(y, index, axis=axis)
    return [y]


# ---------------------------------------------------------------- segment edges
def _along(param: np.ndarray, x: np.ndarray, axis: int) -> np.ndarray:
    """A per-tensor or per-axis quantization parameter shaped to broadcast over x."""
    if param.size == 1:
        return param.reshape(())
    shape = [1] * x.ndim
    shape[axis] = -1
    return param.reshape(shape)


def _quantize_linear(attrs, x, scale, zero=None):
    """q = saturate(round_half_even(x / scale) + zero), the division in float32."""
    if attrs["block_size"] or attrs["precision"] not in (None, "float32"):
        raise IntegerReferenceError("QuantizeLinear: only per-tensor and per-axis float32 forms are covered")
    dtype = np.dtype(zero.dtype if zero is not None else attrs["output_dtype"] or np.uint8)
    info = np.iinfo(dtype)
    q = np.rint(np.divide(x.astype(np.float32), _along(scale, x, attrs["axis"]).astype(np.float32)))
    if zero is not None:
        q = q.astype(np.float64) + _along(zero, x, attrs["axis"]).astype(np.float64)
    return [np.clip(q, info.min, info.max).astype(dtype)]


def _dequantize_linear(attrs, x, scale, zero=None):
    """x = float32(scale * float32(q - zero)) for 8- and 16-bit codes."""
    if x.dtype.itemsize > 2 or attrs["block_size"]:
        raise IntegerReferenceError(f"DequantizeLinear: only 8- and 16-bit per-tensor/per-axis codes are covered, "
                                    f"got {x.dtype}")
    centered = _wide(x) - (0 if zero is None else _wide(_along(zero, x, attrs["axis"])))
    out = np.dtype(attrs["output_dtype"] or scale.dtype)
    return [(centered.astype(np.float32) * _along(scale, x, attrs["axis"])).astype(out)]


_OPS: dict[str, Callable] = {
    "QConv": _qconv, "QConvTranspose": _qconv_transpose, "QGemm": _qgemm, "QAdd": _qadd, "QSub": _qsub,
    "QMax": _qmax, "QMin": _qmin, "QMul": _qmul, "QAvgPool": _qavg_pool, "QLut": _qlut,
    "QConcat": _qconcat, "QMatMul": _qmatmul, "QSoftmax": _qsoftmax,
    "MaxPool": _max_pool, "Reshape": _reshape, "Flatten": _flatten, "Transpose": _transpose,
    "Squeeze": _squeeze, "Unsqueeze": _unsqueeze, "Identity": _identity, "Resize": _resize, "Slice": _slice,
    "Pad": _pad, "DepthToSpace": _depth_to_space, "SpaceToDepth": _space_to_depth,
    "QuantizeLinear": _quantize_linear, "DequantizeLinear": _dequantize_linear,
}
