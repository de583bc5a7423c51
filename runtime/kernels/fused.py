"""CPU kernel: one fused group of float32 element-wise ops ("FusedElementwise").

The group arrives as an expression description, plain data in the step's
attributes (it is stored in compiled binaries, so it is validated here like
any untrusted input before a Numba loop runs):

* ``code``: a non-empty tuple of instructions ``(opcode, dst, sources,
  params)``: an opcode name from :data:`OPCODES`, a destination register, a
  tuple of source registers and a tuple of float parameters, their counts
  fixed by the opcode. Registers ``0..n-1`` hold the kernel's ``n`` inputs
  (broadcast to the output shape); a source must be an input or a register an
  earlier instruction wrote. The last instruction's destination is the result.
* ``rank``: the output's rank (scalar constants folded into ``const``
  instructions may add leading 1s to the inputs' broadcast shape).
* ``inplace``: the index of an input the result may overwrite, or -1. It is
  honoured only when that input is a writeable float32 C-contiguous array of
  the output's shape sharing no memory with another input; codegen names only
  values private to the group (never a constant or a graph input).

ONE compiled Numba interpreter serves every expression: the output is cut
into blocks of :data:`BLOCK` elements and, block by block, each instruction
runs one tight loop over a ``(registers, BLOCK)`` float32 scratch. Inputs of
the output's full shape are read in place; scalars and broadcast inputs are
first loaded into their registers (an odometer over the coalesced dims). The
last instruction writes the output directly. Large outputs split their
blocks over the thread pool. See docs/fused-kernels.md for each opcode's
float32 semantics.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from runtime.errors import KernelError
from runtime.jit import jit
from runtime.kernels.limits import MAX_RANK
from runtime.kernels.registry import kernel
from runtime.parallel import drives, parallel_for, team_enter, team_leave, team_next

MAX_INPUTS = 8
"""Most tensor inputs one FusedElementwise step takes (FuseOps respects it)."""
MAX_REGISTERS = 32
"""Most registers (inputs included) an expression may use."""
MAX_INSTRUCTIONS = 1024
"""Most instructions in one expression."""
BLOCK = 2048
"""Elements per block: large enough to amortise the per-instruction dispatch,
small enough that a few registers stay in L1/L2."""
PARALLEL_MIN = 1 << 16
"""Outputs with fewer elements run on the calling thread."""
MAX_DIMS = 8
"""Most dims a broadcast input may keep after coalescing (else it is materialised)."""

_FLOAT32 = np.dtype(np.float32)


@dataclass(frozen=True)
class Opcode:
    """One opcode: its number in the interpreter, its source and parameter counts."""

    number: int
    sources: int
    params: int


# Opcode numbers, grouped by arity (the interpreter dispatches on them).
CONST = 0
ADD, SUB, MUL, DIV, MAX, MIN, POW, PRELU = range(10, 18)
(NEG, ABS, SQRT, EXP, LOG, RECIPROCAL, FLOOR, CEIL, ERF, TANH, SIGMOID, RELU, SOFTPLUS, HARD_SWISH,
 GELU, GELU_TANH, SIN, COS, LEAKY_RELU, ELU, CLIP, HARD_SIGMOID, SELU) = range(20, 43)

OPCODES: dict[str, Opcode] = {
    "const": Opcode(CONST, 0, 1),
    **{name: Opcode(number, 2, 0) for name, number in (
        ("add", ADD), ("sub", SUB), ("mul", MUL), ("div", DIV), ("max", MAX), ("min", MIN),
        ("pow", POW), ("prelu", PRELU))},
    **{name: Opcode(number, 1, 0) for name, number in (
        ("neg", NEG), ("abs", ABS), ("sqrt", SQRT), ("exp", EXP), ("log", LOG),
        ("reciprocal", RECIPROCAL), ("floor", FLOOR), ("ceil", CEIL), ("erf", ERF), ("tanh", TANH),
        ("sigmoid", SIGMOID), ("relu", RELU), ("softplus", SOFTPLUS), ("hard_swish", HARD_SWISH),
        ("gelu", GELU), ("gelu_tanh", GELU_TANH), ("sin", SIN), ("cos", COS))},
    "leaky_relu": Opcode(LEAKY_RELU, 1, 1),
    "elu": Opcode(ELU, 1, 1),
    "clip": Opcode(CLIP, 1, 2),
    "hard_sigmoid": Opcode(HARD_SIGMOID, 1, 2),
    "selu": Opcode(SELU, 1, 2),
}
"""The closed opcode set: name -> (number, sources, params)."""

# How an input is loaded into its register for each block.
_FULL, _SCALAR, _STRIDED = 0, 1, 2


# ---------------------------------------------------------------- validation

@dataclass(frozen=True)
class _Program:
    """A validated description: its cache key, instructions as int rows
    ``(opcode, dst, src0, src1)``, float32 params ``(p0, p1)`` per row, the
    register count, and which sources read an input no earlier instruction
    overwrote (those may be read straight from the input array)."""

    key: tuple[str, int]
    code: np.ndarray
    params: np.ndarray
    registers: int
    inputs: int
    reads_input: np.ndarray


def decode(code: Any, num_inputs: int) -> _Program:
    """Validate ``code`` for a kernel with ``num_inputs`` inputs. Results are
    cached by the description's repr, which tells 0.0 from -0.0 and 1 from 1.0."""
    if not isinstance(num_inputs, int) or not 0 <= num_inputs <= MAX_INPUTS:
        raise KernelError(f"FusedElementwise takes at most {MAX_INPUTS} inputs, got {num_inputs}")
    if not isinstance(code, (tuple, list)) or not code:
        raise KernelError(f"FusedElementwise code must be a non-empty tuple of instructions, got {code!r:.80}")
    if len(code) > MAX_INSTRUCTIONS:
        raise KernelError(f"FusedElementwise code has {len(code)} instructions, more than {MAX_INSTRUCTIONS}")
    key = (repr(code), num_inputs)
    return _cached(_DECODED, key, lambda: _decode(key, code, num_inputs))


_CACHE_LIMIT = 4096
_DECODED: dict[tuple[str, int], _Program] = {}


def _cached(cache: dict, key, make):
    """cache[key], made on a miss; the cache is emptied when it is full."""
    value = cache.get(key)
    if value is None:
        value = make()
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = value
    return value


def _decode(key: tuple[str, int], code: Any, num_inputs: int) -> _Program:
    rows = np.zeros((len(code), 4), np.int64)
    params = np.zeros((len(code), 2), np.float32)
    reads_input = np.zeros((len(code), 2), np.bool_)
    defined = set(range(num_inputs))
    untouched = set(defined)
    for index, instruction in enumerate(code):
        opcode, dst, sources, values = _decode_instruction(index, instruction, defined)
        rows[index, :2 + len(sources)] = (opcode.number, dst, *sources)
        params[index, :len(values)] = values
        reads_input[index, :len(sources)] = [source in untouched for source in sources]
        defined.add(dst)
        untouched.discard(dst)
    return _Program(key, rows, params, max(defined) + 1, num_inputs, reads_input)


def _decode_instruction(index: int, instruction: Any, defined: set[int]):
    """One instruction as (opcode, dst, sources, float32 params); errors name it."""
    where = f"FusedElementwise instruction {index}"
    if not isinstance(instruction, (tuple, list)) or len(instruction) != 4:
        raise KernelError(f"{where} must be (opcode, dst, sources, params), got {instruction!r:.80}")
    name, dst, sources, params = instruction
    opcode = OPCODES.get(name) if isinstance(name, str) else None
    if opcode is None:
        raise KernelError(f"{where}: unknown opcode {name!r:.40}; known: {', '.join(sorted(OPCODES))}")
    where = f"{where} ({name})"
    dst = _register(where, "destination", dst)
    if not isinstance(sources, (tuple, list)) or len(sources) != opcode.sources:
        raise KernelError(f"{where} takes {opcode.sources} source registers, got {sources!r:.80}")
    sources = tuple(_register(where, "source", source) for source in sources)
    for source in sources:
        if source not in defined:
            raise KernelError(f"{where} reads register {source} before anything writes it")
    if not isinstance(params, (tuple, list)) or len(params) != opcode.params:
        raise KernelError(f"{where} takes {opcode.params} parameters, got {params!r:.80}")
    return opcode, dst, sources, _params(where, params)


def _register(where: str, role: str, register: Any) -> int:
    if not isinstance(register, numbers.Integral) or isinstance(register, bool) \
            or not 0 <= register < MAX_REGISTERS:
        raise KernelError(f"{where}: {role} register {register!r:.40} is not an int in [0, {MAX_REGISTERS})")
    return int(register)


def _params(where: str, params: Sequence[Any]) -> np.ndarray:
    """Parameters as float32 (rounded as the unfused kernels round attributes)."""
    if not all(isinstance(p, numbers.Real) and not isinstance(p, bool) for p in params):
        raise KernelError(f"{where} parameters must be numbers, got {params!r:.80}")
    try:
        wide = np.array([float(p) for p in params], np.float64)
    except OverflowError:
        raise KernelError(f"{where} has a parameter too large for a float: {params!r:.80}") from None
    with np.errstate(over="ignore"):
        return wide.astype(np.float32)


def _check_attrs(attrs, num_inputs: int) -> tuple[int, int]:
    """The ``rank`` and ``inplace`` attributes, validated."""
    rank, inplace = attrs.get("rank"), attrs.get("inplace", -1)
    if not isinstance(rank, numbers.Integral) or isinstance(rank, bool) or not 0 <= rank <= MAX_RANK:
        raise KernelError(f"FusedElementwise rank must be an int in [0, {MAX_RANK}], got {rank!r:.40}")
    if not isinstance(inplace, numbers.Integral) or isinstance(inplace, bool) or not -1 <= inplace < num_inputs:
        raise KernelError(f"FusedElementwise inplace must be -1 or an input index below {num_inputs}, "
                          f"got {inplace!r:.40}")
    return int(rank), int(inplace)


def _check_inputs(inputs: Sequence[np.ndarray | None], rank: int) -> None:
    for index, x in enumerate(inputs):
        if not isinstance(x, np.ndarray) or x.dtype != _FLOAT32:
            got = x.dtype if isinstance(x, np.ndarray) else f"{type(x).__name__} (not an array)"
            raise KernelError(f"FusedElementwise input {index} must be a float32 array, got {got}")
        if x.ndim > rank:
            raise KernelError(f"FusedElementwise input {index} has rank {x.ndim}, more than the output's {rank}")


# ---------------------------------------------------------------- input layout

@dataclass(frozen=True)
class _Layout:
    """How inputs of given shapes are read: the output shape, each input's
    load kind, the coalesced dims and element strides of broadcast inputs,
    which inputs are materialised first, and which sources read a full-shape
    input in place (the others read registers)."""

    shape: tuple[int, ...]
    kinds: np.ndarray
    dims: np.ndarray
    strides: np.ndarray
    ndims: np.ndarray
    materialise: tuple[bool, ...]
    direct: np.ndarray


_LAYOUTS: dict[tuple, _Layout] = {}


def _layout(program: _Program, shapes: tuple[tuple[int, ...], ...], rank: int) -> _Layout:
    """The layout for these input shapes (cached: it depends on nothing else)."""
    return _cached(_LAYOUTS, (program.key, shapes, rank), lambda: _make_layout(program, shapes, rank))


def _make_layout(program: _Program, shapes: tuple[tuple[int, ...], ...], rank: int) -> _Layout:
    try:
        shape = np.broadcast_shapes(*shapes)
    except ValueError:
        listed = ", ".join(str(list(s)) for s in shapes)
        raise KernelError(f"FusedElementwise inputs do not broadcast together: {listed}") from None
    shape = (1,) * (rank - len(shape)) + tuple(shape)
    kinds, ndims = np.zeros(MAX_INPUTS, np.int64), np.ones(MAX_INPUTS, np.int64)
    dims, strides = np.ones((MAX_INPUTS, MAX_DIMS), np.int64), np.zeros((MAX_INPUTS, MAX_DIMS), np.int64)
    materialise = []
    for index, own in enumerate(shapes):
        padded = (1,) * (len(shape) - len(own)) + own
        merged = _coalesce(shape, padded)
        many = len(merged[0]) > MAX_DIMS
        materialise.append(many and math.prod(own) != 1)
        if math.prod(own) == 1:
            kinds[index] = _SCALAR
        elif padded == shape or many:
            kinds[index] = _FULL
        else:
            kinds[index], ndims[index] = _STRIDED, len(merged[0])
            dims[index, :ndims[index]], strides[index, :ndims[index]] = merged
    full = np.zeros(MAX_REGISTERS, np.bool_)
    full[:len(shapes)] = kinds[:len(shapes)] == _FULL
    direct = program.reads_input & full[program.code[:, 2:4]]
    return _Layout(shape, kinds, dims, strides, ndims, tuple(materialise), direct)


def _coalesce(shape: tuple[int, ...], padded: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """The output dims and the input's element strides (0 where it is
    broadcast), with size-1 dims dropped and neighbours merged wherever one
    flat stride walks both."""
    strides, step = [], 1
    for size in reversed(padded):
        strides.append(0 if size == 1 else step)
        step *= size
    strides.reverse()
    dims: list[int] = []
    out: list[int] = []
    for size, stride in zip(shape, strides):
        if size == 1:
            continue
        if dims and out[-1] == stride * size:
            dims[-1] *= size
            out[-1] = stride
        else:
            dims.append(size)
            out.append(stride)
    return dims or [1], out or [0]


def _flat(x: np.ndarray) -> np.ndarray:
    """x as a flat C-contiguous writeable-typed array, so that every input
    has the Numba type of a register row (read-only arrays, such as
    constants, are copied; the kernel never writes an input it was not
    allowed to)."""
    flat = np.ascontiguousarray(x).reshape(-1)
    return flat if flat.flags.writeable else flat.copy()


_UNUSED = np.zeros(1, np.float32)


# ---------------------------------------------------------------- the kernel

@kernel("FusedElementwise")
def fused_elementwise(inputs, attrs):
    """Evaluate the expression ``attrs["code"]`` on the broadcast inputs."""
    program = decode(attrs.get("code"), len(inputs))
    rank, inplace = _check_attrs(attrs, len(inputs))
    _check_inputs(inputs, rank)
    layout = _layout(program, tuple(x.shape for x in inputs), rank)
    out = _output(inputs, inplace, layout.shape)
    if out.size == 0:
        return (out,)
    arrays = [_flat(np.broadcast_to(x, layout.shape) if wide else x) for x, wide in zip(inputs, layout.materialise)]
    arrays += [_UNUSED] * (MAX_INPUTS - len(arrays))
    overwritten = inplace >= 0 and out is inputs[inplace]
    store_direct = not (overwritten and layout.direct[-1][program.code[-1, 2:4] == inplace].any())
    flat = out.reshape(-1)
    blocks = -(-flat.size // BLOCK)
    args = (program.code, program.params, layout.direct, program.registers, program.inputs, tuple(arrays),
            layout.kinds, layout.dims, layout.strides, layout.ndims, store_direct, flat)
    if flat.size < PARALLEL_MIN:
        _run_blocks(0, blocks, *args)
    else:
        parallel_for(_run_blocks, blocks, *args, grain=8)
    return (out,)


def _output(inputs: Sequence[np.ndarray], inplace: int, shape: tuple[int, ...]) -> np.ndarray:
    """The input named by ``inplace`` when it can safely hold the result, else a new array."""
    if inplace >= 0:
        target = inputs[inplace]
        if (target.shape == shape and target.flags.c_contiguous and target.flags.writeable
                and not any(x is not target and np.may_share_memory(x, target) for x in inputs)):
            return target
    return np.empty(shape, np.float32)


@jit
def _run_blocks(start, stop, code, params, direct, registers, num_inputs, arrays, kinds, dims, strides, ndims,
                store_direct, out):
    """Blocks ``[start, stop)`` of the output: load the non-full inputs and
    run the code; full inputs are read in place and the last instruction
    writes the output, except when it reads the input being overwritten
    (then it writes a register, copied out after: loops over overlapping
    rows are correct but not vectorised)."""
    regs = np.empty((registers, BLOCK), np.float32)
    index = np.zeros(MAX_DIMS, np.int64)
    last = code.shape[0] - 1
    for block in range(start, stop):
        lo = block * BLOCK
        m = min(BLOCK, out.size - lo)
        for i in range(num_inputs):
            if kinds[i] != _FULL:
                _load(regs, i, arrays[i], kinds[i], dims, strides, ndims[i], lo, m, index)
        for j in range(last + 1):
            x = arrays[code[j, 2]][lo:lo + m] if direct[j, 0] else regs[code[j, 2]]
            y = arrays[code[j, 3]][lo:lo + m] if direct[j, 1] else regs[code[j, 3]]
            d = out[lo:lo + m] if j == last and store_direct else regs[code[j, 1]]
            _execute(code[j, 0], d, x, y, params[j, 0], params[j, 1], m)
        if not store_direct:
            _copy(out[lo:lo + m], regs[code[last, 1]], m)


@jit
def _load(regs, i, x, kind, dims, strides, nd, lo, m, index):
    """Elements ``[lo, lo + m)`` of non-full input ``i`` broadcast to the
    output, into register ``i``."""
    dst = regs[i]
    if kind == _SCALAR:
        value = x[0]
        for k in range(m):
            dst[k] = value
    else:
        _gather(dst, x, dims[i], strides[i], nd, lo, m, index)


@jit(inline="always")
def _copy(dst, src, m):
    """dst[:m] = src[:m] as a plain unit-stride loop (slicing first keeps
    the indices provably non-negative, so LLVM vectorises it)."""
    for k in range(m):
        dst[k] = src[k]


@jit
def _gather(dst, x, dims, strides, nd, lo, m, index):
    """A broadcast input read run by run along its innermost coalesced dim,
    with an odometer over the outer ones."""
    rest = lo
    offset = 0
    for d in range(nd - 1, -1, -1):
        index[d] = rest % dims[d]
        rest //= dims[d]
        offset += index[d] * strides[d]
    last = nd - 1
    inner, step = dims[last], strides[last]
    k = 0
    while k < m:
        run = min(inner - index[last], m - k)
        part = dst[k:k + run]
        if step == 0:
            value = x[offset]
            for t in range(run):
                part[t] = value
        else:  # a contiguous input's innermost stride is 1
            _copy(part, x[offset:offset + run], run)
        k += run
        index[last] += run
        offset += run * step
        if index[last] == inner and k < m:
            offset -= inner * step
            index[last] = 0
            d = last - 1
            while d >= 0:
                index[d] += 1
                offset += strides[d]
                if index[d] < dims[d]:
                    break
                offset -= dims[d] * strides[d]
                index[d] = 0
                d -= 1


@jit
def _execute(op, d, x, y, p0, p1, m):
    """One instruction over the first ``m`` elements of the block."""
    if op == CONST:
        for k in range(m):
            d[k] = p0
    elif op < NEG:
        _binary(op, d, x, y, m)
    elif op < LEAKY_RELU:
        _unary(op, d, x, m)
    else:
        _unary_params(op, d, x, p0, p1, m)


@jit
def _binary(op, d, x, y, m):
    if op == ADD:
        for k in range(m):
            d[k] = x[k] + y[k]
    elif op == SUB:
        for k in range(m):
            d[k] = x[k] - y[k]
    elif op == MUL:
        for k in range(m):
            d[k] = x[k] * y[k]
    elif op == DIV:
        for k in range(m):
            d[k] = x[k] / y[k]
    elif op == MAX:  # numpy.maximum: NaN wins, ties give y
        for k in range(m):
            d[k] = x[k] if x[k] > y[k] or x[k] != x[k] else y[k]
    elif op == MIN:  # numpy.minimum
        for k in range(m):
            d[k] = x[k] if x[k] < y[k] or x[k] != x[k] else y[k]
    elif op == POW:
        for k in range(m):
            d[k] = np.float64(x[k]) ** np.float64(y[k])
    else:  # PRELU
        for k in range(m):
            d[k] = x[k] if x[k] >= 0 else y[k] * x[k]


@jit
def _unary(op, d, x, m):
    if op == NEG:
        for k in range(m):
            d[k] = -x[k]
    elif op == ABS:
        for k in range(m):
            d[k] = abs(x[k])
    elif op == SQRT:
        for k in range(m):
            d[k] = math.sqrt(x[k])
    elif op == EXP:
        for k in range(m):
            d[k] = math.exp(np.float64(x[k]))
    elif op == LOG:
        for k in range(m):
            d[k] = math.log(np.float64(x[k]))
    elif op == RECIPROCAL:
        for k in range(m):
            d[k] = np.float32(1.0) / x[k]
    elif op == FLOOR:
        for k in range(m):
            d[k] = np.floor(x[k])
    elif op == CEIL:
        for k in range(m):
            d[k] = np.ceil(x[k])
    elif op == ERF:
        for k in range(m):
            d[k] = math.erf(x[k])
    elif op == TANH:
        for k in range(m):
            d[k] = math.tanh(np.float64(x[k]))
    elif op == SIGMOID:
        for k in range(m):
            d[k] = _sigmoid(x[k])
    elif op == RELU:  # numpy.maximum(x, 0)
        for k in range(m):
            d[k] = x[k] if x[k] > 0 or x[k] != x[k] else np.float32(0.0)
    elif op == SOFTPLUS:
        for k in range(m):
            d[k] = _softplus(x[k])
    elif op == HARD_SWISH:
        for k in range(m):
            d[k] = x[k] * _unit_clamp(np.float32(1.0 / 6.0) * x[k] + np.float32(0.5))
    else:
        _unary_more(op, d, x, m)


@jit
def _unary_more(op, d, x, m):
    """The rest of the unary opcodes (split so each function stays short)."""
    if op == GELU:
        for k in range(m):
            v = np.float64(x[k])
            d[k] = 0.5 * v * (1.0 + math.erf(v * 0.7071067811865476))
    elif op == GELU_TANH:
        for k in range(m):
            v = np.float64(x[k])
            d[k] = 0.5 * v * (1.0 + math.tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)))
    elif op == SIN:
        for k in range(m):
            d[k] = math.sin(np.float64(x[k]))
    else:  # COS
        for k in range(m):
            d[k] = math.cos(np.float64(x[k]))


@jit
def _unary_params(op, d, x, p0, p1, m):
    if op == LEAKY_RELU:
        for k in range(m):
            d[k] = x[k] if x[k] >= 0 else p0 * x[k]
    elif op == ELU:
        for k in range(m):
            d[k] = x[k] if x[k] > 0 else p0 * math.expm1(x[k])
    elif op == CLIP:
        for k in range(m):
            d[k] = _clip(x[k], p0, p1)
    elif op == HARD_SIGMOID:
        for k in range(m):
            d[k] = _unit_clamp(p0 * x[k] + p1)
    else:  # SELU
        for k in range(m):
            d[k] = p1 * (x[k] if x[k] > 0 else p0 * math.expm1(x[k]))


@jit(inline="always")
def _sigmoid(v):
    """numpy's sequence (negate, exp, add 1, reciprocal) in float32, with
    exp computed in float64 and rounded once."""
    e = np.float32(math.exp(-np.float64(v)))
    return np.float32(1.0) / (np.float32(1.0) + e)


@jit(inline="always")
def _softplus(v):
    if v > 0:
        return v + math.log1p(math.exp(-v))
    return math.log1p(math.exp(v))


@jit(inline="always")
def _unit_clamp(y):
    """y clamped to [0, 1], NaN kept."""
    if y < 0:
        return np.float32(0.0)
    if y > 1:
        return np.float32(1.0)
    return y


@jit(inline="always")
def _clip(v, lo, hi):
    """numpy.clip with both bounds: NaN in v or a bound gives NaN; ties keep v."""
    if v != v:
        return v
    if lo != lo:
        return lo
    if hi != hi:
        return hi
    if v < lo:
        v = lo
    if v > hi:
        v = hi
    return v


# ---------------------------------------------------------------- team drivers (runtime.parallel)
@drives(_run_blocks)
@jit
def _run_blocks_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        _run_blocks(spans[index, 0], spans[index, 1], *args)
        index = team_next(team, True)
    return team_leave(team, state, role)
