"""The checked parameters of the accelerator's quantized macro ops (the Q
dialect of runtime/kernels/qdevice.py), as docs/quantization.md defines them.

Parameters come from a compiled program, so they are checked like untrusted
input (a KernelError naming the attribute) before any Numba loop runs; the
IR type rules (ir/ops/quantized.py) run the same checks. The bias's type is
the accumulator's: int32 (8-bit layers) or int64, and the worst case
``max|x| * sum|w[k]| + |b[k]|`` must fit it (checked from the weights), so
an int32 device accumulator computes the same values.
"""
from __future__ import annotations

import operator
from typing import NamedTuple, Sequence

import numpy as np

from runtime.errors import KernelError
from runtime.kernels.nn_window import Window, make_window, valid_range
from runtime.qscheme import (
    ACTIVATION_RANGE,
    ADD,
    INT8,
    INT16,
    INT32,
    INT64,
    MAX_SHIFT,
    MIN_SHIFT,
    MULTIPLIER_BITS,
    SOFTMAX_ENTRIES,
    SOFTMAX_EXP_BITS,
    WIDE_TABLE_ENTRIES,
    table_entries,
)

DATA_TYPES = (INT8, INT16)
"""Storage types of quantized tensors."""
ACCUMULATOR_LIMIT = {INT32: 2**31 - 1, INT64: 2**62}
"""Largest |accumulator| of a layer whose bias has this type: int32 is the
8-bit layers' accumulator; int64 stops at 2**62 so that no int64 sum of two
bounded terms can overflow."""
MULTIPLIER_RANGE = (2 ** (MULTIPLIER_BITS - 1), 2**MULTIPLIER_BITS - 1)
SHIFT_RANGE = (MIN_SHIFT, MAX_SHIFT)


def integer(value, name: str) -> int:
    """An integer parameter as a Python int (floats and strings refused)."""
    try:
        return operator.index(value)
    except TypeError:
        raise KernelError(f"{name} must be an integer, got {value!r}") from None


def integers(values, name: str, length: int | None = None) -> list[int]:
    """An integer-list parameter, of ``length`` values when given."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise KernelError(f"{name} must be a list of integers, got {values!r}")
    out = [integer(v, f"{name}[{i}]") for i, v in enumerate(np.asarray(values, dtype=object).reshape(-1))]
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
    value = integer(value, name)
    low, high = ACTIVATION_RANGE[dtype]
    if not low <= value <= high:
        raise KernelError(f"{name}={value} is outside the {dtype} range [{low}, {high}]")
    return value


def check_multiplier(mult, shift, mult_name: str, shift_name: str) -> tuple[int, int]:
    """One fixed-point multiplier m in [2^30, 2^31) and shift n in [1, 62]."""
    m, n = integer(mult, mult_name), integer(shift, shift_name)
    if not MULTIPLIER_RANGE[0] <= m <= MULTIPLIER_RANGE[1]:
        raise KernelError(f"{mult_name}={m} is outside [2^30, 2^31)")
    if not SHIFT_RANGE[0] <= n <= SHIFT_RANGE[1]:
        raise KernelError(f"{shift_name}={n} is outside [{SHIFT_RANGE[0]}, {SHIFT_RANGE[1]}]")
    return m, n


def check_multipliers(mults, shifts, mult_name: str, shift_name: str, length: int | None) -> tuple[np.ndarray, ...]:
    """Lists of multipliers and shifts of one length (``length`` when given),
    as int64 arrays."""
    mults, shifts = integers(mults, mult_name, length), integers(shifts, shift_name, length)
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


def table_output(attrs) -> tuple[Output, np.ndarray | None]:
    """A QConv's / QGemm's clamp and optional table (attribute ``table``):
    without one the clamp gives the output's codes; with one it gives the
    table's input codes (out_zero, lo and hi on the grid of the value before
    the function): int8 codes for a 256-entry table, int16 codes for a
    513-entry one (interpolated: qscheme.wide_lookup), whose entries are the
    out_dtype codes."""
    if not len(attrs.get("table") or ()):
        return output_params(attrs), None
    index = INT16 if len(attrs["table"]) == WIDE_TABLE_ENTRIES else INT8
    table = lut_table(attrs, index)
    if index == INT16 and table.dtype != INT16:
        raise KernelError(f"out_dtype={table.dtype} with a 513-entry table: a table read by int16 codes maps "
                          "them in place (docs/isa.md, CONV's lut_wide), so its entries are int16")
    zero = check_zero(attrs["out_zero"], index, "out_zero (the table's input grid)")
    lo, hi = check_zero(attrs["lo"], index, "lo (a table input)"), check_zero(attrs["hi"], index, "hi (a table input)")
    if lo > hi:
        raise KernelError(f"lo={lo} is above hi={hi}")
    return Output(index, zero, lo, hi), table


class Requant(NamedTuple):
    """A QConv / QGemm / QConvTranspose's checked requantisation parameters:
    ``out`` is the clamp, ``table`` the optional function after it."""

    mult: np.ndarray
    shift: np.ndarray
    neg_mult: np.ndarray
    neg_shift: np.ndarray
    residual: tuple[int, int, int] | None
    out: Output
    table: np.ndarray | None = None

    @property
    def dtype(self) -> np.dtype:
        """The output's storage type: the table's when there is one."""
        return self.out.dtype if self.table is None else self.table.dtype


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
    return Requant(mult, shift, neg_mult, neg_shift, residual, *table_output(attrs))


def accumulator_type(b_dtype) -> np.dtype:
    """The accumulator of a QConv / QGemm is its bias's type: int32 or int64."""
    b_dtype = np.dtype(b_dtype)
    if b_dtype not in ACCUMULATOR_LIMIT:
        raise KernelError(f"b must be int32 or int64 (the accumulator's type), got {b_dtype}")
    return b_dtype


def window(op: str, attrs, dilations, negative_pads: bool = False) -> Window:
    """The checked 2-D window of a QConv, QConvTranspose (whose pads may be
    negative) or QAvgPool (which has no dilations)."""
    kernel_shape = integers(attrs["kernel_shape"], "kernel_shape", 2)
    return make_window(op, 2, kernel_shape, attrs["strides"], attrs["pads"], dilations, negative_pads=negative_pads)


class Linear(NamedTuple):
    """What the product of a QConv / QGemm needs, checked."""

    shifted_bound: int
    """max|x - x_zero| * sum|w[k]| over k: the float path is exact below 2^53."""
    bias: np.ndarray
    """b'[k] + x_zero * sum(w[k]), int64: what conv(x - x_zero, w) needs added."""


def _weight_sums(w: np.ndarray) -> tuple[list[int], list[int]]:
    """sum(w[k]) and sum|w[k]| of each output channel k, exactly, as ints.
    Summed in int64 from the codes themselves, with |w| in the next wider
    type only (|-128| needs 16 bits): VGG-19's first linear layer's 103
    million codes made an 800 MB int64 copy twice per compile."""
    flat = w.reshape(w.shape[0], -1)
    wide = np.int64 if flat.dtype.itemsize >= 4 or not np.issubdtype(flat.dtype, np.integer) else (
        np.int16 if flat.dtype.itemsize == 1 else np.int32)
    sums = flat.sum(axis=1, dtype=np.int64)
    abs_sums = np.abs(flat, dtype=wide).sum(axis=1, dtype=np.int64)
    return sums.tolist(), abs_sums.tolist()


def accumulator_bias(x_dtype, w: np.ndarray, b: np.ndarray, x_zero: int) -> Linear:
    """Check the bias and the worst-case accumulator against its type's
    limit; the bias with the zero point's share folded back in."""
    channels = w.shape[0]
    acc = accumulator_type(b.dtype)
    if b.shape != (channels,):
        raise KernelError(f"b must have shape [{channels}] (one per output channel), got {list(b.shape)}")
    low, high = ACTIVATION_RANGE[np.dtype(x_dtype)]
    sums, abs_sums = _weight_sums(w)
    biases = b.tolist()
    peak = max((max(-low, high) * s + abs(v) for s, v in zip(abs_sums, biases)), default=0)
    if peak > ACCUMULATOR_LIMIT[acc]:
        raise KernelError(f"the accumulator can reach {peak} (max|x| * sum|w[k]| + |b[k]|), beyond the {acc} "
                          f"accumulator's {ACCUMULATOR_LIMIT[acc]}: give an int64 bias or smaller weights")
    shifted = max(high - x_zero, x_zero - low) * max(abs_sums, default=0)
    return Linear(shifted, np.array([v + x_zero * s for v, s in zip(biases, sums)], np.int64))


def transpose_accumulator(x_dtype, w: np.ndarray, b: np.ndarray, x_zero: int) -> int:
    """Check a QConvTranspose's bias (b, the zero point not folded in) and
    its worst-case accumulator; returns max|x - x_zero| * sum|w[k]|. The
    device folds ``x_zero`` into each output phase's bias, so its sums reach
    ``max|x| * sum|w[k]| + |b[k]| + |x_zero| * sum|w[k]|``."""
    channels = w.shape[0]
    acc = accumulator_type(b.dtype)
    if b.shape != (channels,):
        raise KernelError(f"b must have shape [{channels}] (one per output channel), got {list(b.shape)}")
    low, high = ACTIVATION_RANGE[np.dtype(x_dtype)]
    abs_sums = _weight_sums(w)[1]
    peak = max(((max(-low, high) + abs(x_zero)) * s + abs(v) for s, v in zip(abs_sums, b.tolist())), default=0)
    if peak > ACCUMULATOR_LIMIT[acc]:
        raise KernelError(f"the accumulator can reach {peak} ((max|x| + |x_zero|) * sum|w[k]| + |b[k]|), beyond "
                          f"the {acc} accumulator's {ACCUMULATOR_LIMIT[acc]}: give an int64 bias or smaller weights")
    return max(high - x_zero, x_zero - low) * max(abs_sums, default=0)


def add_params(attrs, a_dtype, b_dtype, func: int = ADD) -> tuple[np.ndarray, Output]:
    """QAdd's (QSub's, QMax's, QMin's: ``func``, a qscheme.binary code)
    checked parameters: the loop's params array and the output."""
    a_zero = check_zero(attrs["a_zero"], data_type(a_dtype, "a"), "a_zero")
    b_zero = check_zero(attrs["b_zero"], data_type(b_dtype, "b"), "b_zero")
    a_m = check_multiplier(attrs["a_mult"], attrs["a_shift"], "a_mult", "a_shift")
    b_m = check_multiplier(attrs["b_mult"], attrs["b_shift"], "b_mult", "b_shift")
    o = output_params(attrs)
    return np.array([a_zero, *a_m, b_zero, *b_m, o.zero, o.lo, o.hi, func], np.int64), o


def mul_params(attrs, a_dtype, b_dtype) -> tuple[np.ndarray, Output]:
    """QMul's checked parameters: the loop's params array and the output."""
    a_zero = check_zero(attrs["a_zero"], data_type(a_dtype, "a"), "a_zero")
    b_zero = check_zero(attrs["b_zero"], data_type(b_dtype, "b"), "b_zero")
    m = check_multiplier(attrs["mult"], attrs["shift"], "mult", "shift")
    o = output_params(attrs)
    return np.array([a_zero, b_zero, *m, o.zero, o.lo, o.hi], np.int64), o


def concat_params(attrs, dtypes) -> tuple[list[int], np.ndarray, np.ndarray, Output]:
    """QConcat's checked zero points, multipliers and shifts (one per input)
    and output."""
    count = len(dtypes)
    zeros = integers(attrs["zeros"], "zeros", count)
    for i, dtype in enumerate(dtypes):
        check_zero(zeros[i], data_type(dtype, f"x_{i}"), f"zeros[{i}]")
    mults, shifts = check_multipliers(attrs["mults"], attrs["shifts"], "mults", "shifts", count)
    return zeros, mults, shifts, output_params(attrs)


def concat_axis(axis, shapes: Sequence[Sequence[int | None]]) -> int:
    """QConcat's axis made non-negative; the shapes must agree elsewhere
    (None dims, unknown yet, agree with anything)."""
    axis = integer(axis, "axis")
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


def lut_table(attrs, x_dtype=INT8) -> np.ndarray:
    """A table read by ``x_dtype`` codes (QLut's, or a QConv's epilogue
    table): 256 values for int8 codes, 513 for int16 codes (interpolated),
    each in the out_dtype's range, as that dtype."""
    dtype = out_type(attrs)
    table = integers(attrs["table"], "table", table_entries(x_dtype))
    low, high = ACTIVATION_RANGE[dtype]
    bad = [i for i, v in enumerate(table) if not low <= v <= high]
    if bad:
        raise KernelError(f"table[{bad[0]}]={table[bad[0]]} is outside the {dtype} range [{low}, {high}]")
    return np.array(table, dtype)


def avg_pool_params(attrs, x_dtype) -> tuple[Window, np.ndarray, np.ndarray, Output]:
    """QAvgPool's window, multipliers (one per window element count) and output."""
    x_dtype = data_type(x_dtype, "x")
    win = window("QAvgPool", attrs, (1, 1))
    for name in ("ceil_mode", "count_include_pad"):
        if integer(attrs[name], name) not in (0, 1):
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


def softmax_params(attrs, x_dtype) -> tuple[np.ndarray, np.ndarray, Output]:
    """QSoftmax's checked parameters: the loop's params array (in_mult,
    in_shift, mult, shift, out_zero, lo, hi), the int32 exp table and the output."""
    data_type(x_dtype, "x")
    table = integers(attrs["table"], "table", SOFTMAX_ENTRIES)
    if table[0] != 1 << SOFTMAX_EXP_BITS or any(not 0 <= v <= table[0] for v in table):
        raise KernelError(f"table must start at 2^{SOFTMAX_EXP_BITS} and hold values in [0, 2^{SOFTMAX_EXP_BITS}]")
    m_in = check_multiplier(attrs["in_mult"], attrs["in_shift"], "in_mult", "in_shift")
    m = check_multiplier(attrs["mult"], attrs["shift"], "mult", "shift")
    o = output_params(attrs)
    return np.array([*m_in, *m, o.zero, o.lo, o.hi], np.int64), np.array(table, np.int32), o
