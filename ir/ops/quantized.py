"""Op definitions: the accelerator's quantized macro ops (the Q dialect).

The quantize pass rewrites each accelerator group into one of QConv,
QConvTranspose, QGemm, QAdd, QSub, QMax, QMin, QMul, QAvgPool, QLut,
QConcat, QMatMul (two tensors) or QSoftmax; docs/quantization.md defines
what they compute. Every integer parameter is an attribute (a plain int or a list
of ints): zero points, fixed-point multipliers and shifts, clamp bounds, the
output's storage type ``out_dtype`` ("int8" or "int16"). The parameter checks
are the kernels' own (runtime/kernels/qdevice.py), run here so that a bad
node fails when it is built, naming the attribute at fault. QConv takes
Conv's 2-D window attributes, QAvgPool AveragePool's (without dilations).
"""
from __future__ import annotations

import contextlib
from functools import partial

from ir.ops.common import ONES_PER_AXIS, ZERO_PADS, broadcast_shapes, require_rank
from ir.ops.nn import transpose_out_shape, window_attrs, window_out_shape
from ir.registry import INFINITE, REQUIRED, Derived, InferContext, Pattern, register_op
from ir.types import TensorType
from runtime.errors import KernelError
from runtime.kernels import qparams as qp
from runtime.qscheme import ADD, MAX, MIN, SUB


@contextlib.contextmanager
def _checked(ctx: InferContext):
    """Report a kernel-side parameter check failure as this node's error."""
    try:
        yield
    except KernelError as exc:
        raise ctx.error(str(exc).removeprefix(f"{ctx.op}: ")) from None


def _typed(ctx: InferContext, index: int, name: str, allowed=qp.DATA_TYPES) -> TensorType:
    t = ctx.type(index)
    if t.dtype not in allowed:
        raise ctx.error(f"{name} must be {' or '.join(str(d) for d in allowed)}, got {t.dtype} (input {index}: {t})")
    return t


def _optional_dtype(ctx: InferContext, index: int):
    return ctx.type(index).dtype if ctx.has(index) else None


def _agree(a, b) -> bool:
    """Two dims agree (a None dim agrees with anything)."""
    return a is None or b is None or a == b


# ---------------------------------------------------------------- QConv, QGemm
def _check_bias(ctx: InferContext, channels) -> None:
    b = _typed(ctx, 2, "b", tuple(qp.ACCUMULATOR_LIMIT))
    if b.rank != 1 or not _agree(b.shape[0], channels):
        raise ctx.error(f"b must be a vector of {channels} values (one per output channel), got {b}")


def _check_accumulator(ctx: InferContext, x: TensorType) -> None:
    """With constant weights and bias, the accumulator's bound is known now."""
    w, b = ctx.const(1), ctx.const(2)
    if w is not None and b is not None:
        with _checked(ctx):
            qp.accumulator_bias(x.dtype, w, b, int(ctx.attrs["x_zero"]))


def _check_residual(ctx: InferContext, shape: tuple) -> None:
    if ctx.has(3):
        r = _typed(ctx, 3, "r")
        if r.rank != len(shape) or not all(_agree(a, b) for a, b in zip(r.shape, shape)):
            raise ctx.error(f"r must have the output's shape {list(shape)}, got {r}")


def _linear_output(ctx: InferContext, x: TensorType, w: TensorType, shape: tuple,
                   check_accumulator=_check_accumulator) -> list[TensorType]:
    """The common checks of QConv, QConvTranspose and QGemm, then the
    output type (the table's, when there is one)."""
    _check_bias(ctx, w.shape[0])
    _check_residual(ctx, shape)
    with _checked(ctx):
        params = qp.linear_params(ctx.attrs, x.dtype, w.dtype, w.shape[0], _optional_dtype(ctx, 3))
    check_accumulator(ctx, x)
    return [TensorType(shape, params.dtype)]


def _conv_operands(ctx: InferContext, negative_pads: bool = False):
    """x, w and the window of a QConv or QConvTranspose (w [K][C/group][kh][kw]), checked."""
    x = _typed(ctx, 0, "x")
    w = _typed(ctx, 1, "w")
    require_rank(ctx, 0, 4)
    require_rank(ctx, 1, 4)
    window = window_attrs(ctx, 2, negative_pads=negative_pads)
    if any(not _agree(d, k) for k, d in zip(window[0], w.shape[2:])):
        raise ctx.error(f"kernel_shape={window[0]} does not match the spatial dims of w {list(w.shape[2:])}")
    group = int(ctx.attrs["group"])
    channels, out_channels, per_group = x.shape[1], w.shape[0], w.shape[1]
    if group < 1 or (out_channels is not None and out_channels % group):
        raise ctx.error(f"group={group} must be >= 1 and divide the {out_channels} output channels of w")
    if None not in (channels, per_group) and channels != per_group * group:
        raise ctx.error(f"x has {channels} channels but w expects {per_group} x group {group}")
    return x, w, window


def _qconv(ctx: InferContext) -> list[TensorType]:
    x, w, (kernel, strides, pads, dilations) = _conv_operands(ctx)
    out = window_out_shape(ctx, x.shape[2:], kernel, strides, pads, dilations)
    return _linear_output(ctx, x, w, (x.shape[0], w.shape[0], *out))


def _check_transpose_accumulator(ctx: InferContext, x: TensorType) -> None:
    w, b = ctx.const(1), ctx.const(2)
    if w is not None and b is not None:
        with _checked(ctx):
            qp.transpose_accumulator(x.dtype, w, b, int(ctx.attrs["x_zero"]))


def _qconv_transpose(ctx: InferContext) -> list[TensorType]:
    x, w, (kernel, strides, pads, dilations) = _conv_operands(ctx, negative_pads=True)
    output_padding = [int(v) for v in ctx.attrs["output_padding"]]
    if len(output_padding) != 2 or min(output_padding) < 0:
        raise ctx.error(f"output_padding={output_padding} must be 2 non-negative ints")
    out = transpose_out_shape(ctx, x.shape[2:], kernel, strides, pads, dilations, output_padding)
    return _linear_output(ctx, x, w, (x.shape[0], w.shape[0], *out), _check_transpose_accumulator)


def _qgemm(ctx: InferContext) -> list[TensorType]:
    x = _typed(ctx, 0, "x")
    w = _typed(ctx, 1, "w")
    require_rank(ctx, 0, 2)
    require_rank(ctx, 1, 2)
    if not _agree(x.shape[1], w.shape[1]):
        raise ctx.error(f"x {x} and w {w} differ in the reduced dim (x is [M, K], w is [N, K])")
    return _linear_output(ctx, x, w, (x.shape[0], w.shape[0]))


# ---------------------------------------------------------------- element-wise ops
def _binary(check):
    """Type rule of a broadcasting binary op whose parameters ``check``
    validates from the operand dtypes."""
    def rule(ctx: InferContext) -> list[TensorType]:
        a, b = _typed(ctx, 0, "a"), _typed(ctx, 1, "b")
        with _checked(ctx):
            _, out = check(ctx.attrs, a.dtype, b.dtype)
        return [TensorType(broadcast_shapes(ctx, a.shape, b.shape), out.dtype)]
    return rule


def _qlut(ctx: InferContext) -> list[TensorType]:
    x = _typed(ctx, 0, "x")
    with _checked(ctx):
        table = qp.lut_table(ctx.attrs, x.dtype)
    return [x.with_dtype(table.dtype)]


def _qmatmul(ctx: InferContext) -> list[TensorType]:
    a, b = _typed(ctx, 0, "a"), _typed(ctx, 1, "b")
    with _checked(ctx):
        _, out = qp.mul_params(ctx.attrs, a.dtype, b.dtype)
    if a.rank < 2 or a.rank != b.rank or not all(_agree(x, y) for x, y in zip(a.shape[:-2], b.shape[:-2])) \
            or not _agree(a.shape[-1], b.shape[-2]):
        raise ctx.error(f"a {a} and b {b} are not batches of [M, K] and [K, N] matrices with the same leading dims")
    return [TensorType(tuple(a.shape[:-1]) + (b.shape[-1],), out.dtype)]


def _qsoftmax(ctx: InferContext) -> list[TensorType]:
    x = _typed(ctx, 0, "x")
    with _checked(ctx):
        _, _, out = qp.softmax_params(ctx.attrs, x.dtype)
    return [x.with_dtype(out.dtype)]


def _qconcat(ctx: InferContext) -> list[TensorType]:
    types = [_typed(ctx, i, f"x_{i}") for i in range(len(ctx))]
    with _checked(ctx):
        _, _, _, out = qp.concat_params(ctx.attrs, [t.dtype for t in types])
        axis = qp.concat_axis(ctx.attrs["axis"], [t.shape for t in types])
    shape = []
    for d, dims in enumerate(zip(*(t.shape for t in types))):
        if d == axis:
            shape.append(None if None in dims else sum(dims))
        else:
            shape.append(next((v for v in dims if v is not None), None))
    return [TensorType(shape, out.dtype)]


# ---------------------------------------------------------------- QAvgPool
def _qavg_pool(ctx: InferContext) -> list[TensorType]:
    x = _typed(ctx, 0, "x")
    require_rank(ctx, 0, 4)
    with _checked(ctx):
        win, _, _, out = qp.avg_pool_params(ctx.attrs, x.dtype)
    dims = window_out_shape(ctx, x.shape[2:], win.kernel, win.strides, win.pads_begin + win.pads_end, win.dilations,
                            bool(ctx.attrs["ceil_mode"]))
    if None not in x.shape[2:]:
        with _checked(ctx):
            qp.pool_taps(win, x.shape[2:], dims, bool(ctx.attrs["count_include_pad"]))
    return [TensorType([*x.shape[:2], *dims], out.dtype)]


# ---------------------------------------------------------------- registry
_OUTPUT = {"out_zero": REQUIRED, "lo": REQUIRED, "hi": REQUIRED, "out_dtype": "int8"}
_REQUANT = {"x_zero": REQUIRED, "mult": REQUIRED, "shift": REQUIRED, "neg_mult": (), "neg_shift": (),
            "res_zero": 0, "res_mult": 0, "res_shift": 0, **_OUTPUT, "table": ()}
_STRIDES_PADS = {"strides": ONES_PER_AXIS, "pads": ZERO_PADS}

register_op("QConv", _qconv, Pattern.OPAQUE, inputs=(3, 4),
            attrs={"kernel_shape": Derived(lambda types: list(types[1].shape[2:]), "the weight's spatial dims"),
                   **_STRIDES_PADS, "dilations": ONES_PER_AXIS, "group": 1, **_REQUANT},
            doc="Quantized Conv (x, w, folded bias b, optional residual r) with requantisation and clamp.")
register_op("QConvTranspose", _qconv_transpose, Pattern.OPAQUE, inputs=(3, 4),
            attrs={"kernel_shape": Derived(lambda types: list(types[1].shape[2:]), "the weight's spatial dims"),
                   **_STRIDES_PADS, "dilations": ONES_PER_AXIS, "output_padding": [0, 0], "group": 1, **_REQUANT},
            doc="Quantized ConvTranspose (x, w as [K, C/group, kh, kw], bias b with the zero point not folded, "
                "optional residual r) with QConv's epilogue.")
register_op("QGemm", _qgemm, Pattern.OPAQUE, inputs=(3, 4), attrs=dict(_REQUANT),
            doc="Quantized x[M, K] . w[N, K]^T (folded bias b, optional residual r) with requantisation.")
_TWO_GRIDS = {"a_zero": REQUIRED, "a_mult": REQUIRED, "a_shift": REQUIRED,
              "b_zero": REQUIRED, "b_mult": REQUIRED, "b_shift": REQUIRED, **_OUTPUT}
for _op, _func, _what in (("QAdd", ADD, "add"), ("QSub", SUB, "subtract (a - b)"), ("QMax", MAX, "maximum"),
                          ("QMin", MIN, "minimum")):
    register_op(_op, _binary(partial(qp.add_params, func=_func)), Pattern.OPAQUE, inputs=2, attrs=dict(_TWO_GRIDS),
                doc=f"Quantized broadcasting {_what} of the operands, each rescaled to the output's scale.")
register_op("QMul", _binary(qp.mul_params), Pattern.OPAQUE, inputs=2,
            attrs={"a_zero": REQUIRED, "b_zero": REQUIRED, "mult": REQUIRED, "shift": REQUIRED, **_OUTPUT},
            doc="Quantized broadcasting multiply.")
register_op("QAvgPool", _qavg_pool, Pattern.OPAQUE,
            attrs={"kernel_shape": REQUIRED, **_STRIDES_PADS, "ceil_mode": 0, "count_include_pad": 0,
                   "x_zero": REQUIRED, "mults": REQUIRED, "shifts": REQUIRED, **_OUTPUT},
            doc="Quantized average pool; mults/shifts are indexed by the window's element count - 1.")
register_op("QLut", _qlut, Pattern.OPAQUE, attrs={"table": REQUIRED, "out_dtype": "int8"},
            doc="Table lookup: y = table[x + 128] on int8 data; on int16 data a 513-entry table, "
                "interpolated (runtime.qscheme.wide_lookup).")
register_op("QMatMul", _qmatmul, Pattern.OPAQUE, inputs=2,
            attrs={"a_zero": REQUIRED, "b_zero": REQUIRED, "mult": REQUIRED, "shift": REQUIRED, **_OUTPUT},
            doc="Quantized batched product of two tensors a[..., M, K] . b[..., K, N] with zero points, requantised.")
register_op("QSoftmax", _qsoftmax, Pattern.OPAQUE,
            attrs={"table": REQUIRED, "in_mult": REQUIRED, "in_shift": REQUIRED, "mult": REQUIRED, "shift": REQUIRED,
                   **_OUTPUT},
            doc="Integer softmax over the last axis: exp table (Q15) of (max - x), 32-bit sum, reciprocal, "
                "requantised.")
register_op("QConcat", _qconcat, Pattern.OPAQUE, inputs=(1, INFINITE),
            attrs={"axis": REQUIRED, "zeros": REQUIRED, "mults": REQUIRED, "shifts": REQUIRED, **_OUTPUT},
            doc="Concat of quantized tensors, each rescaled to the output's parameters.")

