"""Op definitions: element-wise math, activations, logic, comparisons and casts.

Type rules follow the newest ONNX opset of each op: the accepted dtypes are
the op's ONNX type constraint restricted to the dtypes the IR has; binary and
variadic ops use multidirectional (numpy) broadcasting and need one shared
dtype, except where ONNX says otherwise (Pow's exponent, Where's condition).
"""
from __future__ import annotations

import numpy as np

from ir.errors import IRError
from ir.ops.common import broadcast_shapes
from ir.registry import INFINITE, REQUIRED, InferContext, Pattern, register_op
from ir.types import TensorType, dtype_name, parse_dtype

FLOATS = frozenset(np.dtype(t) for t in (np.float16, np.float32, np.float64))
SIGNED_INTS = frozenset(np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64))
UNSIGNED_INTS = frozenset(np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.uint64))
INTS = SIGNED_INTS | UNSIGNED_INTS
NUMERIC = FLOATS | INTS
SIGNED = FLOATS | SIGNED_INTS
BOOL = frozenset({np.dtype(np.bool_)})
STRING = frozenset({np.dtype(object)})
ANY = NUMERIC | BOOL | STRING
POW_BASE = FLOATS | frozenset(np.dtype(t) for t in (np.int32, np.int64))
PRELU_TYPES = FLOATS | frozenset(np.dtype(t) for t in (np.int32, np.int64, np.uint32, np.uint64))

_BOOL = np.dtype(np.bool_)


def _names(dtypes) -> str:
    return ", ".join(sorted(dtype_name(d) for d in dtypes))


def _check_dtype(ctx: InferContext, index: int, allowed) -> np.dtype:
    """The dtype of input ``index``, which must be one of ``allowed``."""
    dtype = ctx.type(index).dtype
    if dtype not in allowed:
        raise ctx.error(f"input {index} has dtype {dtype_name(dtype)}; {ctx.op} takes {_names(allowed)}")
    return dtype


def _shared_dtype(ctx: InferContext, indices, allowed) -> np.dtype:
    """The one dtype of the given inputs, which must agree and be allowed."""
    dtypes = [ctx.type(i).dtype for i in indices]
    if len(set(dtypes)) != 1:
        listed = ", ".join(f"input {i}: {ctx.type(i)}" for i in indices)
        raise ctx.error(f"inputs must share one dtype, got {listed}")
    return _check_dtype(ctx, indices[0], allowed)


def unary(allowed, out: np.dtype | None = None):
    """Type rule: one input of an ``allowed`` dtype; the output has its shape
    and its dtype (or ``out``)."""
    def rule(ctx: InferContext) -> list[TensorType]:
        dtype = _check_dtype(ctx, 0, allowed)
        return [TensorType(ctx.shape(0), out or dtype)]
    return rule


def broadcast(allowed, out: np.dtype | None = None):
    """Type rule: every input has the same ``allowed`` dtype; the output has
    their broadcast shape and that dtype (or ``out``)."""
    def rule(ctx: InferContext) -> list[TensorType]:
        indices = range(len(ctx))
        dtype = _shared_dtype(ctx, indices, allowed)
        return [TensorType(broadcast_shapes(ctx, *(ctx.shape(i) for i in indices)), out or dtype)]
    return rule


def _pow(ctx: InferContext) -> list[TensorType]:
    """Base and exponent may have different dtypes; the output has the base's."""
    dtype = _check_dtype(ctx, 0, POW_BASE)
    _check_dtype(ctx, 1, NUMERIC)
    return [TensorType(broadcast_shapes(ctx, ctx.shape(0), ctx.shape(1)), dtype)]


def _prelu(ctx: InferContext) -> list[TensorType]:
    """The slope broadcasts to the input (unidirectionally): output = input's type."""
    dtype = _shared_dtype(ctx, (0, 1), PRELU_TYPES)
    x, slope = ctx.shape(0), ctx.shape(1)
    if len(slope) > len(x) or any(
            s is not None and d is not None and s not in (1, d) for s, d in zip(slope[::-1], x[::-1])):
        raise ctx.error(f"slope shape {list(slope)} does not broadcast to input shape {list(x)}")
    return [TensorType(x, dtype)]


def _where(ctx: InferContext) -> list[TensorType]:
    _check_dtype(ctx, 0, BOOL)
    dtype = _shared_dtype(ctx, (1, 2), ANY)
    return [TensorType(broadcast_shapes(ctx, ctx.shape(0), ctx.shape(1), ctx.shape(2)), dtype)]


def _clip(ctx: InferContext) -> list[TensorType]:
    """Optional min (input 1) and max (input 2): single values of the input's dtype."""
    dtype = _check_dtype(ctx, 0, NUMERIC)
    for index, name in ((1, "min"), (2, "max")):
        if not ctx.has(index):
            continue
        bound = ctx.type(index)
        if bound.dtype != dtype:
            raise ctx.error(f"{name} (input {index}) has dtype {dtype_name(bound.dtype)}, the input "
                            f"{dtype_name(dtype)}; they must match")
        if bound.numel not in (1, None):
            raise ctx.error(f"{name} (input {index}) must be a single value, got {bound}")
    return [TensorType(ctx.shape(0), dtype)]


def _cast(ctx: InferContext) -> list[TensorType]:
    try:
        to = parse_dtype(ctx.attrs["to"])
    except IRError as exc:
        raise ctx.error(f"to={ctx.attrs['to']!r}: {exc}") from None
    _check_dtype(ctx, 0, ANY)
    return [TensorType(ctx.shape(0), to)]


def _choice(name: str, *choices):
    """Wrap a type rule so that it first checks that attribute ``name`` is one of ``choices``."""
    def wrap(rule):
        def checked(ctx: InferContext) -> list[TensorType]:
            if ctx.attrs[name] not in choices:
                raise ctx.error(f"{name}={ctx.attrs[name]!r} is not one of {list(choices)}")
            return rule(ctx)
        return checked
    return wrap


_bitshift = _choice("direction", "LEFT", "RIGHT")(broadcast(INTS))
_mod = _choice("fmod", 0, 1)(broadcast(NUMERIC))
_gelu = _choice("approximate", "none", "tanh")(unary(FLOATS))


_UNARY = {
    FLOATS: ("Sqrt", "Exp", "Log", "Reciprocal", "Floor", "Ceil", "Round", "Erf", "Sin", "Cos", "Tan",
             "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Tanh", "Sigmoid",
             "HardSwish", "Softplus", "Softsign", "Mish"),
    SIGNED: ("Neg", "Relu"),
    NUMERIC: ("Abs", "Sign"),
    BOOL: ("Not",),
    INTS: ("BitwiseNot",),
}
_BINARY = {
    NUMERIC: ("Add", "Sub", "Mul", "Div"),
    BOOL: ("And", "Or", "Xor"),
    INTS: ("BitwiseAnd", "BitwiseOr", "BitwiseXor"),
}
_COMPARISONS = {
    ANY: ("Equal",),
    NUMERIC: ("Less", "LessOrEqual", "Greater", "GreaterOrEqual"),
}
_VARIADIC = {
    NUMERIC: ("Max", "Min"),
    FLOATS: ("Sum", "Mean"),
}
_ACTIVATIONS = {  # float-only unary ops with attributes (ONNX defaults, as float32 values)
    "LeakyRelu": {"alpha": 0.009999999776482582},
    "Elu": {"alpha": 1.0},
    "Celu": {"alpha": 1.0},
    "Selu": {"alpha": 1.6732631921768188, "gamma": 1.0507010221481323},
    "HardSigmoid": {"alpha": 0.20000000298023224, "beta": 0.5},
    "ThresholdedRelu": {"alpha": 1.0},
    "Swish": {"alpha": 1.0},
}

for _dtypes, _ops in _UNARY.items():
    for _op in _ops:
        register_op(_op, unary(_dtypes), Pattern.ELEMWISE)
for _dtypes, _ops in _BINARY.items():
    for _op in _ops:
        register_op(_op, broadcast(_dtypes), Pattern.BROADCAST, inputs=2)
for _dtypes, _ops in _COMPARISONS.items():
    for _op in _ops:
        register_op(_op, broadcast(_dtypes, _BOOL), Pattern.BROADCAST, inputs=2)
for _dtypes, _ops in _VARIADIC.items():
    for _op in _ops:
        register_op(_op, broadcast(_dtypes), Pattern.BROADCAST, inputs=(1, INFINITE))
for _op, _attrs in _ACTIVATIONS.items():
    register_op(_op, unary(FLOATS), Pattern.ELEMWISE, attrs=_attrs)

register_op("IsNaN", unary(FLOATS, _BOOL), Pattern.ELEMWISE)
register_op("IsInf", unary(FLOATS, _BOOL), Pattern.ELEMWISE, attrs={"detect_negative": 1, "detect_positive": 1})
register_op("Shrink", unary(NUMERIC), Pattern.ELEMWISE, attrs={"bias": 0.0, "lambd": 0.5})
register_op("Gelu", _gelu, Pattern.ELEMWISE, attrs={"approximate": "none"})
register_op("Clip", _clip, Pattern.ELEMWISE, inputs=(1, 3))
register_op("Cast", _cast, Pattern.ELEMWISE, attrs={"to": REQUIRED},
            doc="``to`` is a numpy dtype name ('float32', 'object' for strings).")
register_op("Pow", _pow, Pattern.BROADCAST, inputs=2)
register_op("Mod", _mod, Pattern.BROADCAST, inputs=2, attrs={"fmod": 0})
register_op("PRelu", _prelu, Pattern.BROADCAST, inputs=2)
register_op("Where", _where, Pattern.BROADCAST, inputs=3)
register_op("BitShift", _bitshift, Pattern.BROADCAST, inputs=2, attrs={"direction": REQUIRED})
