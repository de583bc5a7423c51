"""The scalar definitions of the float activation functions: the one place
their arithmetic is written.

The element-wise kernels (Numba ufuncs, runtime/kernels/elementwise.py), the
fused element-wise interpreter (runtime/kernels/fused_interpreter.py) and the
recurrent layers' gates (runtime/kernels/rnn.py) all inline these, so the
three cannot disagree. Each follows its arguments' types: float32 arguments
compute in float32 where the formula is plain arithmetic, and in float64,
rounded once, where it needs it (gelu); float64 arguments compute in
float64. ``like(x, v)`` casts to ``x``'s type. Parameters (alpha, beta, ...)
come in the data's type.

tanh and sigmoid, the recurrent gates' functions, and erf (GELU's) have a
float32 form of their own, computed in float64 by what LLVM vectorises (libm
is a call per element: for tanh and sigmoid, exp by a range reduction and a
polynomial; for erf, a polynomial), then rounded once, which is nearly
always the correctly rounded result (the tests check it against float64
libm); float64 arguments use libm.
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from runtime.jit import jit

SQRT_HALF = 0.7071067811865476
GELU_TANH_SCALE = 0.7978845608028654  # sqrt(2 / pi)


def _is_float32(x) -> bool:
    """Whether a Numba type is float32."""
    return isinstance(x, types.Float) and x.bitwidth == 32


def like(x, value):
    """``value`` as ``x``'s float type (in compiled code: float32 or float64)."""
    return type(x)(value)


@overload(like, inline="always")
def _like(x, value):
    if _is_float32(x):
        return lambda x, value: np.float32(value)
    return lambda x, value: np.float64(value)


@jit(inline="always")
def unit_clamp(y):
    """y clamped to [0, 1], NaN kept (Python's min/max would drop it)."""
    if y < 0:
        return like(y, 0.0)
    if y > 1:
        return like(y, 1.0)
    return y


@jit(inline="always")
def relu(x):
    """max(x, 0), NaN kept, as numpy.maximum(x, 0)."""
    return x if x > 0 or x != x else like(x, 0.0)


# ---------------------------------------------------------------- tanh and sigmoid
LOG2E = 1.4426950408889634
LN2_HI, LN2_LO = 0.6931471803691238, 1.9082149292705877e-10
"""ln 2 split so that k * LN2_HI is exact for the k that occur (Cody and Waite)."""
ROUNDER = 6755399441055744.0
"""1.5 * 2^52: adding it rounds a float64 to an integer held in its low mantissa bits."""


@intrinsic
def _bits(typingctx, value):
    """A float64's bits as an int64."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def _from_bits(typingctx, bits):
    """The float64 whose bits an int64 holds."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@jit(inline="always")
def _exp_parts(x):
    """(2^k, e^r - 1) with x = k ln2 + r, |r| <= ln2 / 2, for float64 |x| <= 700:
    a degree-11 Taylor polynomial (relative error below 1e-14), branch-free."""
    t = x * LOG2E + ROUNDER
    k = t - ROUNDER
    r = (x - k * LN2_HI) - k * LN2_LO
    q = r * (1.0 + r * (1 / 2 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r * (1 / 720 + r * (
        1 / 5040 + r * (1 / 40320 + r * (1 / 362880 + r * (1 / 3628800 + r / 39916800))))))))))
    return _from_bits((_bits(t) - _bits(ROUNDER) + 1023) << 52), q


@jit(inline="always")
def _tanh32(x):
    v = min(max(np.float64(x), -20.0), 20.0)  # |tanh| rounds to 1 in float32 from 9.02 on
    scale, q = _exp_parts(2.0 * v)
    m = (scale - 1.0) + scale * q  # expm1(2v), accurate near 0
    return np.float32(m / (m + 2.0)) if x == x and x != 0 else x


@jit(inline="always")
def _sigmoid32(x):
    v = min(max(-np.float64(x), -200.0), 200.0)  # sigmoid rounds to 0 or 1 in float32 beyond
    scale, q = _exp_parts(v)
    return np.float32(1.0 / (1.0 + (scale + scale * q))) if x == x else x


def _float32_form(fn, float32_form, other):
    """Compiled code's ``fn(x)``: ``float32_form(x)`` for a float32 ``x``,
    else ``other(x)`` (libm's, in float64)."""
    @overload(fn, inline="always")
    def choose(x):
        if _is_float32(x):
            return lambda x: float32_form(x)
        return lambda x: other(x)


def tanh(x):
    """tanh in x's type (compiled code; the float32 form above, float64 libm)."""
    return math.tanh(x)


def sigmoid(x):
    """1 / (1 + exp(-x)) in x's type (compiled code; the float32 form above, float64 libm)."""
    return 1.0 / (1.0 + math.exp(-x))


@jit(inline="always")
def _sigmoid64(x):
    return 1.0 / (1.0 + math.exp(-x))


_float32_form(tanh, _tanh32, math.tanh)
_float32_form(sigmoid, _sigmoid32, _sigmoid64)


# ---------------------------------------------------------------- the others
@jit(inline="always")
def softplus(x):
    """log(1 + exp(x)), without overflow for large x."""
    if x > 0:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))


@jit(inline="always")
def softsign(x):
    """x / (1 + |x|)."""
    return x / (1.0 + abs(x))


@jit(inline="always")
def hard_sigmoid(x, alpha, beta):
    """max(0, min(1, alpha * x + beta))."""
    return unit_clamp(alpha * x + beta)


@jit(inline="always")
def hard_swish(x):
    """x * HardSigmoid(x) with alpha = 1/6, beta = 0.5 (ONNX's definition)."""
    return x * hard_sigmoid(x, like(x, 1.0 / 6.0), like(x, 0.5))


@jit(inline="always")
def leaky_relu(x, alpha):
    """x for x >= 0, alpha * x below."""
    return x if x >= 0 else alpha * x


@jit(inline="always")
def thresholded_relu(x, alpha):
    """x for x > alpha, 0 elsewhere."""
    return x if x > alpha else like(x, 0.0)


@jit(inline="always")
def elu(x, alpha):
    """x for x > 0, alpha * (exp(x) - 1) elsewhere."""
    return x if x > 0 else alpha * math.expm1(x)


@jit(inline="always")
def selu(x, alpha, gamma):
    """gamma * elu(x, alpha)."""
    return gamma * elu(x, alpha)


@jit(inline="always")
def celu(x, alpha):
    """x for x > 0, alpha * (exp(x / alpha) - 1) elsewhere."""
    return x if x > 0 else alpha * math.expm1(x / alpha)


@jit(inline="always")
def mish(x):
    """x * tanh(softplus(x)), in x's type."""
    return x * math.tanh(softplus(x))


@jit(inline="always")
def swish(x, alpha):
    """x * sigmoid(alpha * x), without overflow for large |alpha * x|."""
    z = alpha * x
    if z >= 0:
        return x / (1.0 + math.exp(-z))
    e = math.exp(z)
    return x * e / (1.0 + e)


@jit(inline="always")
def gelu(x):
    """x * Phi(x) with erf, in float64."""
    v = np.float64(x)
    return 0.5 * v * (1.0 + math.erf(v * SQRT_HALF))


@jit(inline="always")
def gelu_tanh(x):
    """GELU's tanh approximation, in float64."""
    v = np.float64(x)
    return 0.5 * v * (1.0 + math.tanh(GELU_TANH_SCALE * (v + 0.044715 * v * v * v)))


@jit(inline="always")
def shrink(x, bias, lambd):
    """x + bias below -lambd, x - bias above lambd, 0 between."""
    if x < -lambd:
        return x + bias
    if x > lambd:
        return x - bias
    return 0.0


# ---------------------------------------------------------------- erf
_ERF = np.array([
    -3.4817519333126177e-09, 1.278596083505781e-08, -2.1114792309904276e-08, 6.714830552414758e-08,
    -2.7958176158411323e-07, 8.63273377394705e-07, -2.426600779042305e-06, 6.829782703349186e-06,
    -1.8556058128359642e-05, 4.7869336876957806e-05, -0.00011766400184687006, 0.000275528347647821,
    -0.0006129795692641468, 0.0012926183609715688, -0.0025782108854470374, 0.004853548862047193,
    -0.008606224309434427, 0.01434959947391328, -0.022473567805506797, 0.03306063261315334,
    -0.045765110495860364, 0.059886904985510615, -0.07472786574026334, 0.09020899411202439,
    -0.10771044252870698, 0.13167511689470182, -0.17657623330137032, 0.35353099564340495,
])
"""erf(x) / x as a polynomial in x^2 for |x| <= 4 (erf rounds to 1 in
float32 from 3.92 on), in u = x^2 / 8 - 1: the monomial form of the
degree-27 Chebyshev interpolant of erf(sqrt t) / sqrt t on t in [0, 16]
(error below 1e-16; computed with mpmath at 80 digits; no coefficient
above 0.36, so Horner's sum stays accurate), highest power first."""


@intrinsic
def _fma(typingctx, a, b, c):
    """float64 ``a * b + c`` rounded once: LLVM's fma, the instruction (or
    libm's fma on a CPU without it: the same bits on every host)."""
    def codegen(context, builder, signature, args):
        double = ir.DoubleType()
        fn = builder.module.declare_intrinsic("llvm.fma", [double], ir.FunctionType(double, [double] * 3))
        return builder.call(fn, args)
    return types.float64(types.float64, types.float64, types.float64), codegen


@jit(inline="always")
def _poly(u, coeffs):
    """Horner's sum of ``coeffs`` (highest power first) at ``u``, a fused
    multiply-add a step (two thirds of the time of a multiply and an add);
    a global array's fixed length lets LLVM unroll it and vectorise the
    caller's loop."""
    r = coeffs[0]
    for k in range(1, coeffs.size):
        r = _fma(r, u, coeffs[k])
    return r


@jit(inline="always")
def _erf32(x):
    v = min(max(np.float64(x), -4.0), 4.0)
    return np.float32(v * _poly(v * v * 0.125 - 1.0, _ERF)) if x == x else x


def erf(x):
    """The error function in x's type (compiled code). float32: computed in
    float64 by the polynomial above (branch-free, so LLVM vectorises it;
    libm's erff is a call per element, 15-16 ns on Zen 4 against 1.9) and
    rounded once: the correctly rounded result for every float32 checked
    (72 M of them, every third from 0.001 to 4.5; tests/ops/test_elementwise.py
    checks a sample; libm's erff missed it for 1 value in 200); float64: libm."""
    return math.erf(x)


_float32_form(erf, _erf32, math.erf)
