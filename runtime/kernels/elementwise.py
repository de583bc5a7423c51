"""CPU kernels: element-wise math, activations, logic, comparisons and casts.

Ops that numpy has with ONNX's exact semantics are one numpy ufunc call (that
is the fastest kernel for them). Activations are Numba ufuncs
(``runtime.jit.vectorize``) of the scalar definitions in
runtime/kernels/activations.py, which the fused element-wise kernel and the
recurrent gates inline too, so all three give the same bits: numpy broadcasts
them, and each is compiled lazily once per float dtype with its result in
that dtype, so float32 stays float32. Every kernel returns arrays of exactly
the IR's output dtype.
"""
from __future__ import annotations

import math
import threading

import numba
import numpy as np

from runtime.errors import KernelError
from runtime.jit import vectorize
from runtime.kernels import activations as act
from runtime.kernels.fused import PARALLEL_MIN, expression, lower_expression
from runtime.kernels.fused_interpreter import MAX_DIMS
from runtime.kernels.nn_window import grain
from runtime.kernels.registry import get_kernel, kernel
from runtime.schedule.records import CHANNEL_SCALE, Operand

_FLOAT16 = np.dtype(np.float16)
_FLOAT32 = np.dtype(np.float32)
_FLOAT64 = np.dtype(np.float64)
_OBJECT = np.dtype(object)
_COMPILE_LOCK = threading.Lock()


def _array(result, dtype: np.dtype | None = None) -> np.ndarray:
    """``result`` as an array (numpy returns scalars for 0-d inputs), of
    ``dtype`` when given (no copy when it already is)."""
    result = np.asarray(result)
    if dtype is not None and result.dtype != dtype:
        result = result.astype(dtype)
    return result


def _strings(x: np.ndarray) -> np.ndarray:
    """A string tensor as an object array (feeds may be numpy unicode arrays)."""
    return x if x.dtype == _OBJECT else x.astype(_OBJECT)


# ---------------------------------------------------------------- numpy ufuncs

_UNARY_UFUNCS = {
    "Abs": np.absolute, "Neg": np.negative, "Sqrt": np.sqrt, "Exp": np.exp, "Log": np.log,
    "Reciprocal": np.reciprocal, "Floor": np.floor, "Ceil": np.ceil, "Round": np.rint,  # half to even
    "Sin": np.sin, "Cos": np.cos, "Tan": np.tan, "Asin": np.arcsin, "Acos": np.arccos, "Atan": np.arctan,
    "Sinh": np.sinh, "Cosh": np.cosh, "Asinh": np.arcsinh, "Acosh": np.arccosh, "Atanh": np.arctanh,
    "Sign": np.sign, "Not": np.logical_not, "BitwiseNot": np.invert, "IsNaN": np.isnan,
}
_BINARY_UFUNCS = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply,
    "And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor,
    "BitwiseAnd": np.bitwise_and, "BitwiseOr": np.bitwise_or, "BitwiseXor": np.bitwise_xor,
    "Less": np.less, "LessOrEqual": np.less_equal, "Greater": np.greater, "GreaterOrEqual": np.greater_equal,
}


def _unary_ufunc_kernel(ufunc):
    """Kernel applying one numpy ufunc (inf/nan results are values, not warnings)."""
    def run(inputs, attrs):
        with np.errstate(all="ignore"):
            return (_array(ufunc(inputs[0])),)
    run.__doc__ = f"numpy.{ufunc.__name__}"
    return run


def _binary_ufunc_kernel(ufunc):
    """Kernel applying one broadcasting numpy ufunc."""
    def run(inputs, attrs):
        a, b = inputs
        with np.errstate(all="ignore"):
            return (_array(ufunc(a, b)),)
    run.__doc__ = f"numpy.{ufunc.__name__} (broadcasting)"
    return run


for _name, _ufunc in _UNARY_UFUNCS.items():
    kernel(_name)(_unary_ufunc_kernel(_ufunc))
_BINARY = {_name: kernel(_name)(_binary_ufunc_kernel(_ufunc)) for _name, _ufunc in _BINARY_UFUNCS.items()}


def _lower_channel_scale(ctx, args, attrs) -> bool:
    """A float32 Mul of an (N, C, ...) tensor by an (N or 1, C, 1, ...)
    one (a squeeze-excitation block's gate, in either order) as one
    CHANNEL_SCALE operation (runtime.schedule.ops): as a Python step it
    split the schedule (PP-LCNet's 7x7 gates took 80-100 us each, against
    onnxruntime's 20, on Zen 3). Any other Mul stays a Python step."""
    if len(args) != 2 or not all(isinstance(v, Operand) and v.dtype == np.float32 for v in args):
        return False
    x, s = args if _gates(args[0].shape, args[1].shape) else args[::-1]
    if not _gates(x.shape, s.shape):
        return False
    planes, size = x.shape[0] * x.shape[1], math.prod(x.shape[2:])
    if not planes or not size:
        return False
    out = ctx.output(0, x.shape)
    ctx.emit(CHANNEL_SCALE, [*x.ref(), planes, size, *s.ref(), s.shape[0] * s.shape[1], *out.ref()], planes,
             grain(size))
    return True


def _gates(shape: tuple, gate: tuple) -> bool:
    """Whether ``gate`` scales ``shape``'s channels: the same rank (3 or
    more), its channels, its batch or 1, and 1 everywhere else."""
    return (len(shape) >= 3 and len(gate) == len(shape) and gate[1] == shape[1] and gate[0] in (1, shape[0])
            and all(d == 1 for d in gate[2:]))


def _lower_mul(ctx, args, attrs) -> bool:
    """A channel gate's CHANNEL_SCALE, else any float32 Mul as a FUSED operation."""
    return _lower_channel_scale(ctx, args, attrs) or lower_expression(ctx, args, "mul")


_BINARY["Mul"].lower = _lower_mul
_BINARY["Add"].lower = lambda ctx, args, attrs: lower_expression(ctx, args, "add")
_BINARY["Sub"].lower = lambda ctx, args, attrs: lower_expression(ctx, args, "sub")


@kernel("Relu")
def relu(inputs, attrs):
    (x,) = inputs
    return (_array(np.maximum(x, x.dtype.type(0))),)


relu.lower = lambda ctx, args, attrs: lower_expression(ctx, args, "relu")
"""A float32 Relu no convolution took (after a Concat or an Add: DenseNet's,
ShuffleNet's) as the interpreter's relu: numpy.maximum(x, 0)'s bits, NaN
kept and -0 to +0 as numpy gives them (tests/runtime/test_schedule_heads.py)."""


@kernel("Equal")
def equal(inputs, attrs):
    """Numbers, booleans or strings (compared as Python objects)."""
    a, b = inputs
    if a.dtype.kind in "OUS" or b.dtype.kind in "OUS":
        a, b = _strings(a), _strings(b)
    return (_array(np.equal(a, b), np.dtype(np.bool_)),)


@kernel("IsInf")
def is_inf(inputs, attrs):
    (x,) = inputs
    negative, positive = attrs["detect_negative"], attrs["detect_positive"]
    if negative and positive:
        return (_array(np.isinf(x)),)
    if negative:
        return (_array(np.isneginf(x)),)
    if positive:
        return (_array(np.isposinf(x)),)
    return (np.zeros(x.shape, dtype=np.bool_),)


# ---------------------------------------------------------------- arithmetic with dtype rules

@kernel("Div")
def div(inputs, attrs):
    """Integer division truncates toward zero (C semantics), unlike numpy's floor."""
    a, b = inputs
    with np.errstate(all="ignore"):
        if a.dtype.kind != "i":
            return (_array(np.divide(a, b) if a.dtype.kind == "f" else np.floor_divide(a, b)),)
        quotient = np.floor_divide(a, b)
        inexact = np.remainder(a, b) != 0
        quotient += inexact & ((a < 0) != (b < 0))
        return (_array(quotient),)


div.lower = lambda ctx, args, attrs: lower_expression(ctx, args, "div")


@kernel("Mod")
def mod(inputs, attrs):
    """fmod=0: the remainder has the divisor's sign; fmod=1: the dividend's."""
    a, b = inputs
    with np.errstate(all="ignore"):
        return (_array(np.fmod(a, b) if attrs["fmod"] else np.mod(a, b)),)


@kernel("Pow")
def power(inputs, attrs):
    """The result has the base's dtype whatever the exponent's; a float32
    one is the interpreter's pow (activations.power in float64, rounded
    once), the same on every host; a negative integer exponent of an
    integer base goes through float64 (0 unless |base| is 1)."""
    base, exponent = inputs
    dtype = base.dtype
    with np.errstate(all="ignore"):
        if _squares(base, exponent):
            return (_array(np.multiply(base, base)),)
        if _float32_power(base, exponent):
            if base.ndim == exponent.ndim == 0:  # the interpreter's operands have a rank
                return (expression((base.reshape(1), exponent.reshape(1)), "pow").reshape(()),)
            return (expression((base, exponent), "pow"),)
        if base.dtype == exponent.dtype and dtype.kind == "f":
            return (_array(np.power(base, exponent)),)
        if dtype.kind in "iu" and exponent.dtype.kind in "iu":
            return (_int_power(base, exponent),)
        return (_array(np.power(base, exponent), dtype),)


def _squares(base, exponent) -> bool:
    """Whether a Pow is a float32 square (an exponent of one value, 2: the
    decomposed LayerNorm's variance, as TF and older PyTorch export it):
    ``base * base``, correctly rounded as numpy's power by 2 is on every host,
    and the interpreter's multiply, so it lowers to a FUSED operation."""
    return (base.dtype == _FLOAT32 and isinstance(exponent, np.ndarray) and exponent.size == 1
            and exponent.dtype == _FLOAT32 and exponent.ndim <= base.ndim and float(exponent.reshape(-1)[0]) == 2.0)


def _float32_power(base, exponent) -> bool:
    """Whether a Pow runs as the interpreter's pow: float32 operands, of
    ranks it takes."""
    return base.dtype == _FLOAT32 and exponent.dtype == _FLOAT32 and max(base.ndim, exponent.ndim) <= MAX_DIMS


def _lower_power(ctx, args, attrs) -> bool:
    """A float32 square (:func:`_squares`, the exponent a constant) as a
    FUSED multiply of the base by itself, any other float32 power as a
    FUSED pow: the per-step bits."""
    base, exponent = args
    stand_ins = [a.stand_in() if isinstance(a, Operand) else a for a in args]
    if isinstance(base, Operand) and _squares(stand_ins[0], exponent):
        return lower_expression(ctx, [base, base], "mul")
    if (not all(isinstance(a, np.ndarray) for a in stand_ins) or not _float32_power(*stand_ins)
            or not ctx.out_types[0][0]):
        return False
    return lower_expression(ctx, args, "pow")


power.lower = _lower_power


def _int_power(base: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """Integer ** integer, wrapping like C on overflow."""
    negative = exponent < 0
    result = np.power(base, np.where(negative, 0, exponent))
    if negative.any():
        result = np.where(negative, np.power(base.astype(_FLOAT64), exponent), result)
    return _array(result, base.dtype)


def _variadic(ufunc, arrays) -> np.ndarray:
    """Fold ``ufunc`` over arrays with broadcasting, reusing the first result buffer."""
    if len(arrays) == 1:
        return arrays[0]
    out = _array(ufunc(arrays[0], arrays[1]))
    for x in arrays[2:]:
        if np.broadcast_shapes(out.shape, x.shape) == out.shape:
            ufunc(out, x, out=out)
        else:
            out = ufunc(out, x)
    return _array(out)


@kernel("Sum")
def sum_(inputs, attrs):
    return (_variadic(np.add, inputs),)


@kernel("Max")
def max_(inputs, attrs):
    return (_variadic(np.maximum, inputs),)


@kernel("Min")
def min_(inputs, attrs):
    return (_variadic(np.minimum, inputs),)


@kernel("Mean")
def mean(inputs, attrs):
    if len(inputs) == 1:
        return (inputs[0],)
    total = _variadic(np.add, inputs)
    return (np.divide(total, total.dtype.type(len(inputs)), out=total),)


@kernel("BitShift")
def bit_shift(inputs, attrs):
    """numpy's shifts already give ONNX's results for amounts outside [0, bits)."""
    a, b = inputs
    shift = np.left_shift if attrs["direction"] == "LEFT" else np.right_shift
    return (_array(shift(a, b)),)


@kernel("Clip")
def clip(inputs, attrs):
    x = inputs[0]
    low, high = (_bound(inputs, 1, "min"), _bound(inputs, 2, "max"))
    if low is None and high is None:
        return (x,)
    return (_array(np.clip(x, low, high)),)


def _bound(inputs, index: int, name: str):
    """Clip's optional min/max as a 0-d array, or None."""
    value = inputs[index] if index < len(inputs) else None
    if value is None:
        return None
    if value.size != 1:
        raise KernelError(f"Clip {name} (input {index}) must hold one value, got shape {list(value.shape)}")
    return value.reshape(())


@kernel("Where")
def where(inputs, attrs):
    condition, x, y = inputs
    if x.dtype.kind in "OUS":
        x, y = _strings(x), _strings(y)
    return (_array(np.where(condition, x, y)),)


# ---------------------------------------------------------------- cast

@kernel("Cast")
def cast(inputs, attrs):
    """Numeric casts follow numpy (C conversions); strings parse and print as
    ONNX describes ("INF", "-inf", "NaN" are accepted case-insensitively)."""
    (x,) = inputs
    to = np.dtype(attrs["to"])
    if to == _OBJECT:
        return (_strings(x.astype(np.str_)),)
    if x.dtype.kind in "OUS":
        return (_parse_strings(x, to),)
    with np.errstate(all="ignore"):
        return (_array(x.astype(to, copy=False)),)


def _parse_strings(x: np.ndarray, to: np.dtype) -> np.ndarray:
    """Strings -> numbers: integers directly when they are integer literals,
    anything else through float64 (so "100.5" -> 100)."""
    try:
        if to.kind in "iu":
            try:
                return _array(_strings(x).astype(to))
            except (ValueError, OverflowError):
                pass
        values = _strings(x).astype(_FLOAT64)
    except (ValueError, TypeError) as exc:
        raise KernelError(f"Cast: cannot parse a string as a number ({exc})") from None
    with np.errstate(all="ignore"):
        return _array(values.astype(to))


# ---------------------------------------------------------------- Numba activations
# Each ufunc is one scalar definition of runtime/kernels/activations.py, which
# the fused interpreter and the recurrent gates inline too.

def _work_dtype(dtype: np.dtype) -> np.dtype:
    """The float dtype an activation computes in: float16 in float32 (Numba's
    float16 math is limited), integers in float64."""
    if dtype == _FLOAT32 or dtype == _FLOAT64:
        return dtype
    return _FLOAT32 if dtype == _FLOAT16 else _FLOAT64


def _apply(ufunc, x: np.ndarray, *params: float) -> np.ndarray:
    """``ufunc(x, *params)`` computed in x's work dtype, returned in x's dtype.
    The params become scalars of the work dtype, so one loop per dtype serves.
    The loop is named, not left to numpy's search: that takes the first
    registered loop the inputs cast to safely, so float32 data would be
    computed in float64 whenever a float64 call had come first (results
    then depended on what the process had run before)."""
    work = _work_dtype(x.dtype)
    _ensure_loop(ufunc, work, 1 + len(params))
    scalar = work.type
    result = ufunc(x.astype(work, copy=False), *(scalar(p) for p in params), signature=_loop_key(work, 1 + len(params)))
    return _array(result, x.dtype)


def _loop_key(dtype: np.dtype, nargs: int) -> str:
    """The type signature of a ufunc's all-``dtype`` loop of ``nargs`` inputs."""
    return dtype.char * nargs + "->" + dtype.char


def _ensure_loop(ufunc, dtype: np.dtype, nargs: int) -> None:
    """Compile (or load from the cache) the all-``dtype`` loop of a lazy Numba
    ufunc, once even when several threads run kernels."""
    key = _loop_key(dtype, nargs)
    if key in ufunc.types:
        return
    with _COMPILE_LOCK:
        if key not in ufunc.types:
            numba_type = numba.from_dtype(dtype)
            ufunc.add(numba_type(*([numba_type] * nargs)))


@vectorize()
def _hard_sigmoid(x, alpha, beta):
    return act.hard_sigmoid(x, alpha, beta)


@vectorize()
def _hard_swish(x):
    return act.hard_swish(x)


@vectorize()
def _leaky_relu(x, alpha):
    return act.leaky_relu(x, alpha)


@vectorize()
def _elu(x, alpha):
    return act.elu(x, alpha)


@vectorize()
def _selu(x, alpha, gamma):
    return act.selu(x, alpha, gamma)


@vectorize()
def _celu(x, alpha):
    return act.celu(x, alpha)


@vectorize()
def _thresholded_relu(x, alpha):
    return act.thresholded_relu(x, alpha)


@vectorize()
def _softplus(x):
    return act.softplus(x)


@vectorize()
def _softsign(x):
    return act.softsign(x)


@vectorize()
def _mish(x):
    return act.mish(x)


@vectorize()
def _swish(x, alpha):
    return act.swish(x, alpha)


@vectorize()
def _erf(x):
    return act.erf(x)


@vectorize()
def _gelu(x):
    return act.gelu(x)


@vectorize()
def _gelu_tanh(x):
    return act.gelu_tanh(x)


@vectorize()
def _shrink(x, bias, lambd):
    return act.shrink(x, bias, lambd)


@vectorize()
def _sigmoid(x):
    return act.sigmoid(x)


@vectorize()
def _tanh(x):
    return act.tanh(x)


def _activation_kernel(ufunc, *param_names: str, opcode: str | None = None, smallest: int = PARALLEL_MIN):
    """Kernel applying a Numba activation ufunc with attributes as its scalar
    params; a float32 array of ``smallest`` elements or more through the
    interpreter's ``opcode`` where it has one (the same scalar function:
    runtime.kernels.fused.expression). By default from where it splits over
    the pool's threads: under PARALLEL_MIN elements the ufunc's loop costs
    less (3.5 against 9-10 us for 1 k), unless the scalar function is too
    large for LLVM to inline into numpy's loop (GELU's: 14 ns an element
    there, 2.4 in the interpreter's vectorised one)."""
    def run(inputs, attrs):
        x = inputs[0]
        if (opcode is not None and isinstance(x, np.ndarray) and x.dtype == _FLOAT32 and x.ndim
                and x.size >= smallest):
            return (expression((x,), opcode),)
        with np.errstate(all="ignore"):
            return (_apply(ufunc, x, *(attrs[name] for name in param_names)),)
    run.__doc__ = f"{ufunc.__name__}({', '.join(('x',) + param_names)})"
    return run


_ACTIVATIONS = {
    "HardSigmoid": (_hard_sigmoid, "alpha", "beta"),
    "LeakyRelu": (_leaky_relu, "alpha"), "Elu": (_elu, "alpha"), "Selu": (_selu, "alpha", "gamma"),
    "Celu": (_celu, "alpha"), "ThresholdedRelu": (_thresholded_relu, "alpha"), "Softplus": (_softplus,),
    "Softsign": (_softsign,), "Mish": (_mish,), "Swish": (_swish, "alpha"), "Erf": (_erf,),
    "Shrink": (_shrink, "bias", "lambd"), "Sigmoid": (_sigmoid,), "Tanh": (_tanh,),
}
_EXPRESSIONS = {"Erf": "erf", "Sigmoid": "sigmoid", "Tanh": "tanh"}
"""Activations the fused interpreter computes alike, by opcode: per step
(float32) and as a schedule's FUSED operation."""
for _name, (_ufunc, *_params) in _ACTIVATIONS.items():
    kernel(_name)(_activation_kernel(_ufunc, *_params, opcode=_EXPRESSIONS.get(_name)))
for _name, _opcode in _EXPRESSIONS.items():
    get_kernel(_name).lower = lambda ctx, args, attrs, opcode=_opcode: lower_expression(ctx, args, opcode)


@kernel("PRelu")
def prelu(inputs, attrs):
    """LeakyRelu with a slope tensor that broadcasts to x (so the output has
    x's shape); float inputs take the one-pass Numba ufunc."""
    x, slope = inputs
    if x.dtype == _FLOAT32 or x.dtype == _FLOAT64:
        _ensure_loop(_leaky_relu, x.dtype, 2)
        return (_array(_leaky_relu(x, slope, signature=_loop_key(x.dtype, 2))),)
    with np.errstate(all="ignore"):
        return (_array(np.where(x < 0, x * slope, x), x.dtype),)


@kernel("HardSwish")
def hard_swish(inputs, attrs):
    """x * HardSigmoid(x) with alpha = 1/6, beta = 0.5 (ONNX's definition)."""
    with np.errstate(all="ignore"):
        return (_apply(_hard_swish, inputs[0]),)


_GELU = {"none": (_activation_kernel(_gelu, opcode="gelu", smallest=1024), "gelu"),
         "tanh": (_activation_kernel(_gelu_tanh, opcode="gelu_tanh"), "gelu_tanh")}
"""Gelu's approximate -> (kernel, interpreter opcode)."""


def _gelu_form(attrs) -> tuple:
    form = _GELU.get(attrs["approximate"])
    if form is None:
        raise KernelError(f"Gelu: approximate={attrs['approximate']!r} is not 'none' or 'tanh'")
    return form


@kernel("Gelu")
def gelu(inputs, attrs):
    """approximate='none': x * Phi(x) with erf; 'tanh': the tanh approximation."""
    return _gelu_form(attrs)[0](inputs, attrs)


gelu.lower = lambda ctx, args, attrs: lower_expression(ctx, args, _gelu_form(attrs)[1])
