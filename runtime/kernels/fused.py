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

Here the description is validated and decoded, and the inputs' layout
(which are read in place, broadcast or materialised) worked out, each cached;
ONE compiled Numba interpreter (runtime/kernels/fused_interpreter.py) then
runs every expression, block by block. Large outputs split their blocks over
the thread pool. See docs/fused-kernels.md for each opcode's float32
semantics.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from runtime.errors import KernelError
from runtime.kernels.fused_interpreter import (
    ABS,
    ADD,
    BLOCK,
    CEIL,
    CLIP,
    CONST,
    COS,
    DIV,
    ELU,
    ERF,
    EXP,
    FLOOR,
    FULL,
    GELU,
    GELU_TANH,
    HARD_SIGMOID,
    HARD_SWISH,
    LEAKY_RELU,
    LOG,
    MAX,
    MAX_DIMS,
    MAX_INPUTS,
    MIN,
    MUL,
    NEG,
    POW,
    PRELU,
    RECIPROCAL,
    RELU,
    SCALAR,
    SELU,
    SIGMOID,
    SIN,
    SOFTPLUS,
    SQRT,
    STRIDED,
    SUB,
    TANH,
    run_blocks,
)
from runtime.kernels.limits import MAX_RANK
from runtime.kernels.registry import kernel
from runtime.parallel import parallel_for
from runtime.schedule.records import FUSED, Operand

MAX_REGISTERS = 32
"""Most registers (inputs included) an expression may use."""
MAX_INSTRUCTIONS = 1024
"""Most instructions in one expression."""
PARALLEL_MIN = 1 << 16
"""Outputs with fewer elements run on the calling thread."""

_FLOAT32 = np.dtype(np.float32)


@dataclass(frozen=True)
class Opcode:
    """One opcode: its number in the interpreter, its source and parameter counts."""

    number: int
    sources: int
    params: int



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
            kinds[index] = SCALAR
        elif padded == shape or many:
            kinds[index] = FULL
        else:
            kinds[index], ndims[index] = STRIDED, len(merged[0])
            dims[index, :ndims[index]], strides[index, :ndims[index]] = merged
    full = np.zeros(MAX_REGISTERS, np.bool_)
    full[:len(shapes)] = kinds[:len(shapes)] == FULL
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
        run_blocks(0, blocks, *args)
    else:
        parallel_for(run_blocks, blocks, *args, grain=8)
    return (out,)


def _output(inputs: Sequence[np.ndarray], inplace: int, shape: tuple[int, ...]) -> np.ndarray:
    """The input named by ``inplace`` when it can safely hold the result, else a new array."""
    if inplace >= 0:
        target = inputs[inplace]
        if (target.shape == shape and target.flags.c_contiguous and target.flags.writeable
                and not any(x is not target and np.may_share_memory(x, target) for x in inputs)):
            return target
    return np.empty(shape, np.float32)


# ---------------------------------------------------------------- as a schedule operation

def _lower_fused(ctx, args, attrs) -> bool:
    """The step as one FUSED operation of the schedule (runtime.schedule.ops:
    :func:`run_blocks` over the output's blocks, the per-step kernel's
    code, layout and arrays): a Python step in a schedule ends its run of
    operations and starts another (YOLOv8's SiLUs, MobileNetV3's classifier
    HardSwish). Float32 operands and constants of any broadcast shape but
    those the per-step kernel materialises first; a new output, never an
    input overwritten."""
    try:
        program = decode(attrs.get("code"), len(args))
        rank, _ = _check_attrs(attrs, len(args))
    except KernelError:
        return False
    arrays = []
    for arg in args:
        if isinstance(arg, np.ndarray) and arg.dtype == _FLOAT32 and arg.ndim <= rank:
            arrays.append((ctx.pin(np.ascontiguousarray(arg).reshape(-1)), arg.size, arg.shape))
        elif isinstance(arg, Operand) and arg.dtype == _FLOAT32 and len(arg.shape) <= rank:
            arrays.append((arg.ref(), math.prod(arg.shape), arg.shape))
        else:
            return False
    layout = _layout(program, tuple(shape for _, _, shape in arrays), rank)
    size = math.prod(layout.shape)
    if any(layout.materialise) or size == 0:
        return False
    out = ctx.output(0, layout.shape)
    absent = [*ctx.pin(_UNUSED), 1]  # what an absent input's fields point at (never read)
    fields = [field for ref, count, _ in arrays for field in (*ref, count)] + absent * (MAX_INPUTS - len(args))
    blocks = -(-size // BLOCK)
    ctx.emit(FUSED, [*ctx.pin(program.code), program.code.shape[0], *ctx.pin(program.params),
                     *ctx.pin(layout.direct), *ctx.pin(layout.kinds), *ctx.pin(layout.dims),
                     *ctx.pin(layout.strides), *ctx.pin(layout.ndims), program.registers, program.inputs,
                     *out.ref(), size, 1, *fields],
             blocks, 8, spans=[(0, blocks)] if size < PARALLEL_MIN else None)
    return True


fused_elementwise.lower = _lower_fused


def expression(inputs: Sequence[np.ndarray], opcode: str) -> np.ndarray:
    """One opcode of the interpreter over float32 ``inputs`` as a step runs
    it (the FusedElementwise kernel: vectorised over blocks, the blocks over
    the pool; a Numba ufunc's loop calls its scalar function an element at a
    time), with the bits :func:`lower_expression`'s operation computes."""
    code = ((opcode, len(inputs), tuple(range(len(inputs))), ()),)
    return fused_elementwise(inputs, {"code": code, "rank": max(x.ndim for x in inputs)})[0]


def lower_expression(ctx, args, opcode: str) -> bool:
    """A float32 step that is one opcode of the interpreter over its
    inputs (an Add, Sub, Mul or Div broadcasting, a Sigmoid: the same
    float32 operation each, so the same bits) as a FUSED operation: YOLOv8's
    box decoding is a string of them, each a Python step that split the
    schedule."""
    if ctx.out_types[0][1] != _FLOAT32 or len(args) != OPCODES[opcode].sources:
        return False
    code = ((opcode, len(args), tuple(range(len(args))), ()),)
    return _lower_fused(ctx, args, {"code": code, "rank": len(ctx.out_types[0][0])})
