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
    else ``other(x)`` (libm's, in float64: ``fn``'s own body compiled, or
    the libm function itself)."""
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


_float32_form(tanh, _tanh32, math.tanh)
_float32_form(sigmoid, _sigmoid32, jit(inline="always")(sigmoid))


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


@intrinsic
def _divide(typingctx, a, b):
    """float64 ``a / b`` as IEEE divides (a zero divisor gives an infinity or
    NaN): Numba's division checks for zero to raise ZeroDivisionError in a
    ufunc, and that branch keeps LLVM from vectorising the loop."""
    def codegen(context, builder, signature, args):
        return builder.fdiv(*args)
    return types.float64(types.float64, types.float64), codegen


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


# ---------------------------------------------------------------- GELU
_ERFCX = np.array([
    5.479524134652544e-11, -1.0309365501203442e-10, -1.1860509132914908e-10, 2.1317839246119893e-10,
    4.024625971180548e-10, -7.82956311946495e-10, 4.305795818104421e-10, -1.0362122055977737e-09,
    3.518289523726425e-09, -8.073221629867174e-09, 1.8516911608008254e-08, -4.5672866555423576e-08,
    1.1716070458757476e-07, -3.1291355038941114e-07, 8.784708485467118e-07, -2.616336937817466e-06,
    8.367101517547084e-06, -2.9226240655375938e-05, 0.00011434366312943003, -0.0005215207766308765,
    0.0029782066428828105, -0.024883065636009435, 0.533126214136451,
])
"""t * erfcx(t) = t * exp(t^2) * erfc(t) for t in [2, 10.5], as a polynomial
in w = 1 / t^2 (in u = (2w - a - b) / (b - a) over w's interval [a, b]): the
monomial form of the degree-22 Chebyshev interpolant (relative error below
2e-16; computed with mpmath at 60 digits), highest power first."""
_ERFCX_A, _ERFCX_B = 1.0 / 10.5 ** 2, 0.25


GELU_SPLIT = -2.0
"""Where the distribution function changes form, in x / sqrt 2."""


@jit(inline="always")
def _phi_near(v):
    """Phi(v) = 0.5 + 0.5 erf(v / sqrt 2) by the erf polynomial, for
    v / sqrt 2 >= GELU_SPLIT (relative error near 1e-14 there)."""
    c = min(max(v * SQRT_HALF, -4.0), 4.0)
    return 0.5 + 0.5 * (c * _poly(c * c * 0.125 - 1.0, _ERF))


@jit(inline="always")
def _phi_tail(v):
    """Phi(v) = 0.5 erfc(t) = 0.5 exp(-t^2) erfcx(t), t = -v / sqrt 2, for
    v / sqrt 2 < GELU_SPLIT, where 1 + erf cancels (libm's erf in float64
    left GELU's float32 result wrong for most x in [-7, -6] and 0 from
    x = -8.3 on); relative error near 1e-14, and 0 below t = 10.5, where
    Phi < 7e-50 (so GELU(-inf) is NaN, as -inf * Phi(-inf) is)."""
    t = min(max(-v * SQRT_HALF, 2.0), 10.5)
    square = t * t
    scale, q = _exp_parts(-square)
    u = _divide(2.0 / (_ERFCX_B - _ERFCX_A), square) - (_ERFCX_A + _ERFCX_B) / (_ERFCX_B - _ERFCX_A)
    tail = _divide(0.5 * (scale + scale * q) * _poly(u, _ERFCX), t)
    return tail if v * SQRT_HALF >= -10.5 else 0.0


@jit(inline="always")
def _gelu32(x):
    """float32 GELU: x * Phi(x) in float64, rounded once: the correctly
    rounded result for every float32 checked but one (71 M, every 31st in
    [-16, 16], and all 20.7 M in the lower tail [-14.9, -2.8]; that one,
    x = -11.807917, lies 1.2e-15 from a tie; tests/ops/test_elementwise.py
    checks a sample). Both forms of Phi are computed, then one chosen:
    branch-free, so LLVM vectorises it."""
    v = np.float64(x)
    phi = _phi_near(v) if v * SQRT_HALF >= GELU_SPLIT else _phi_tail(v)
    return np.float32(v * phi) if x == x else x


@jit(inline="never")
def _gelu32_call(x):
    """:func:`_gelu32` as a function of its own: a call in a loop that takes
    it for few elements leaves the loop a load and a compare an element."""
    return _gelu32(x)


@jit
def gelu_block(d, x, m):
    """``d[:m] = gelu(x[:m])`` for float32 ``x``, with :func:`_gelu32`'s
    bits: the near form for every element first (vectorised), then those
    below GELU_SPLIT (or NaN) again: one by one where they are few (a load
    and a compare an element, and :func:`_gelu32`'s call for those), else
    the tail form in a vectorised loop over all (stored where it applies).
    Activations rarely reach the tail (below x = -2.83: 0.2 % of a unit
    normal), so this takes about half the time of computing both forms
    everywhere (on Zen 4, for unit normals, 2.4 against 4.6 ns an element),
    and as long where many do. The interpreter's GELU, in place too (``d``
    the same register as ``x``): the first pass leaves a tail element's
    input where it was, for the second to read (it had stored the near
    form there, which the second pass then read as the input: GELU(-88)
    in place came out -6.8e-07, not -0; found by Hypothesis)."""
    low = 0
    for k in range(m):
        v = np.float64(x[k])
        near = v * SQRT_HALF >= GELU_SPLIT
        d[k] = np.float32(v * _phi_near(v) if near else v)
        low += not near
    if low > m >> 5:
        for k in range(m):
            v = np.float64(x[k])
            if not v * SQRT_HALF >= GELU_SPLIT:
                d[k] = np.float32(v * _phi_tail(v)) if x[k] == x[k] else x[k]
    elif low:
        for k in range(m):
            if not np.float64(x[k]) * SQRT_HALF >= GELU_SPLIT:
                d[k] = _gelu32_call(x[k])


def gelu(x):
    """x * Phi(x) in x's type (compiled code). float32: :func:`_gelu32`;
    float64: with libm's erf."""
    return 0.5 * x * (1.0 + math.erf(x * SQRT_HALF))


@jit(inline="always")
def _gelu_tanh32(x):
    v = np.float64(x)
    # 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)): no cancellation as tanh(u) nears -1
    w = min(max(-2.0 * GELU_TANH_SCALE * (v + 0.044715 * v * v * v), -700.0), 700.0)
    scale, q = _exp_parts(w)
    y = _divide(v, 1.0 + (scale + scale * q))
    # from w = 700 on, |y| < 1e-300: 0 (so GELU(-inf) is NaN, as -inf * 0 is)
    return np.float32(y if w < 700.0 else v * 0.0) if x == x else x


def gelu_tanh(x):
    """GELU's tanh approximation in x's type (compiled code). float32: in
    float64 as x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3),
    rounded once; float64: 0.5 x (1 + tanh(u)) with libm's tanh."""
    return 0.5 * x * (1.0 + math.tanh(GELU_TANH_SCALE * (x + 0.044715 * x * x * x)))


_float32_form(gelu, _gelu32, jit(inline="always")(gelu))
_float32_form(gelu_tanh, _gelu_tanh32, jit(inline="always")(gelu_tanh))


@jit(inline="always")
def special_exponent(y):
    """Whether :func:`power` raises to ``y`` by :func:`special_power`."""
    return y == 2.0 or y == 3.0 or y == -1.0 or y == 0.5 or y == -0.5 or y == 0.75 or y == -0.75


@jit(inline="always")
def special_power(x, y):
    """x ** y for a :func:`special_exponent` ``y`` (float64): by multiplies,
    divides and square roots, which LLVM vectorises (no call) and every host
    rounds alike. Through a square root, -inf is read as +inf and -0 as +0,
    which is what pow gives there."""
    if y == 2.0:
        return x * x
    if y == 3.0:
        return x * x * x
    if y == -1.0:
        return 1.0 / x
    root = math.sqrt(-x if x == -math.inf else x) + 0.0
    if y == 0.75 or y == -0.75:
        root *= math.sqrt(root)
    return root if y > 0.0 else 1.0 / root


_LOG_ODD = np.array([2.0 / (2 * i + 1) for i in reversed(range(12))])
"""ln m = 2 atanh(f) = sum 2 f^(2i+1) / (2i+1), f = (m - 1) / (m + 1),
|f| <= 0.1716 for m in [sqrt 1/2, sqrt 2): 12 terms leave under 1e-19
(highest power first, as :func:`_poly` takes them)."""
SQRT2 = 1.4142135623730951
_MANTISSA = (1 << 52) - 1


@jit(inline="always")
def _log(a):
    """ln a for a finite float64 a > 0 (a float32's: never subnormal), to
    about 1e-16: a = 2^k m, m in [sqrt 1/2, sqrt 2), k ln 2 + 2 atanh(f)."""
    bits = _bits(a)
    k = np.float64((bits >> 52) - 1023)
    m = _from_bits((bits & _MANTISSA) | (1023 << 52))
    if m > SQRT2:
        m *= 0.5
        k += 1.0
    f = (m - 1.0) / (m + 1.0)
    return k * LN2_HI + (k * LN2_LO + f * _poly(f * f, _LOG_ODD))


@jit(inline="always")
def float32_power(x, y):
    """x ** y, for float32 arguments widened to float64, to about 1e-14
    (to be rounded to float32: nearly always the correctly rounded result),
    as exp(y ln |x|) by branch-free polynomials that LLVM vectorises (libm's
    pow is a call an element: 12 ns), with C's special cases: 1 for y = 0 or
    x = 1, NaN for a finite negative x and a finite y not an integer, the sign of x
    for an odd integer y, zeros, infinities and |x| = 1 against y = +-inf."""
    ax = abs(x)
    finite = ax > 0.0 and ax < math.inf
    w = y * _log(ax if finite else 1.0)
    scale, q = _exp_parts(min(max(w, -120.0), 120.0))  # beyond, float32 has 0 or inf
    big = (ax > 1.0) == (y > 0.0)  # |x|^y grows without bound as y or |x| do
    magnitude = scale + scale * q if finite else (math.inf if (ax == 0.0) == (y < 0.0) else 0.0)
    if abs(y) == math.inf:
        magnitude = 1.0 if ax == 1.0 else (math.inf if big else 0.0)
    whole = math.floor(y) == y
    odd = whole and abs(y) < 9007199254740992.0 and math.floor(y * 0.5) * 2.0 != y
    negative = x < 0.0 or (x == 0.0 and 1.0 / x < 0.0)
    result = -magnitude if negative and odd else magnitude
    if -math.inf < x < 0.0 and not whole and abs(y) < math.inf:
        result = math.nan
    if x != x or y != y:
        result = x + y
    return 1.0 if y == 0.0 or x == 1.0 else result


@jit(inline="always")
def power(x, y):
    """x ** y for float32 arguments widened to float64, with C's special
    cases, to be rounded to float32 once (a float32 Pow, per step and in
    the interpreter): the exponents models raise to (2 and 3: a variance,
    GELU's cube; 0.5, 0.75 and their negatives: LRN's beta; -1) by
    :func:`special_power`, the rest by :func:`float32_power`. numpy's float32
    power took AVX-512 hosts' own SIMD routine: another CPU, other bits."""
    return special_power(x, y) if special_exponent(y) else float32_power(x, y)


@jit
def float32_power_block(x, e, d, m):
    """``d[k] = x[k] ** e`` (:func:`float32_power`) for k < m: a function
    of its own, so that its loop and the interpreter's vectorise apart."""
    for k in range(m):
        d[k] = float32_power(np.float64(x[k]), e)
