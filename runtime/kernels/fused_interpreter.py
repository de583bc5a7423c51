"""The FusedElementwise interpreter: ONE compiled Numba function serves
every expression (runtime/kernels/fused.py validates the description and
lays out the inputs first).

The output is cut into blocks of :data:`BLOCK` elements and, block by block,
each instruction runs one tight loop over a ``(registers, BLOCK)`` float32
scratch. Inputs of the output's full shape are read in place; scalars and
broadcast inputs are first loaded into their registers (an odometer over the
coalesced dims). The last instruction writes the output directly. The
activation opcodes inline runtime/kernels/activations.py, the definitions
the unfused kernels use, so both give the same bits; docs/fused-kernels.md
gives each opcode's float32 semantics.
"""
from __future__ import annotations

import math

import numpy as np

from runtime.jit import jit
from runtime.kernels import activations as act
from runtime.parallel import drives
from runtime.pool_protocol import team_enter, team_leave, team_next
from runtime.unlinked import call_unlinked

MAX_INPUTS = 8
"""Most tensor inputs one FusedElementwise step takes (FuseOps respects it)."""
BLOCK = 2048
"""Elements per block: large enough to amortise the per-instruction dispatch,
small enough that a few registers stay in L1/L2."""
MAX_DIMS = 8
"""Most dims a broadcast input may keep after coalescing (else it is materialised)."""

# Opcode numbers, grouped by arity (the interpreter dispatches on them).
CONST = 0
ADD, SUB, MUL, DIV, MAX, MIN, POW, PRELU = range(10, 18)
(NEG, ABS, SQRT, EXP, LOG, RECIPROCAL, FLOOR, CEIL, ERF, TANH, SIGMOID, RELU, SOFTPLUS, HARD_SWISH,
 GELU, GELU_TANH, SIN, COS, LEAKY_RELU, ELU, CLIP, HARD_SIGMOID, SELU) = range(20, 43)

# How an input is loaded into its register for each block.
FULL, SCALAR, STRIDED = 0, 1, 2


@jit
def run_blocks(start, stop, code, params, direct, registers, num_inputs, arrays, kinds, dims, strides, ndims,
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
            if kinds[i] != FULL:
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
    if kind == SCALAR:
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
        e = np.float64(y[0])
        same = True
        for k in range(m):
            same &= np.float64(y[k]) == e
        if same and act.special_exponent(e):  # one exponent the block over: loops LLVM vectorises
            for k in range(m):
                d[k] = act.special_power(np.float64(x[k]), e)
        elif same:
            act.float32_power_block(x, e, d, m)
        else:
            for k in range(m):
                d[k] = act.power(np.float64(x[k]), np.float64(y[k]))
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
            d[k] = act.erf(x[k])
    elif op == TANH:
        for k in range(m):
            d[k] = act.tanh(x[k])
    elif op == SIGMOID:
        for k in range(m):
            d[k] = act.sigmoid(x[k])
    elif op == RELU:
        for k in range(m):
            d[k] = act.relu(x[k])
    elif op == SOFTPLUS:
        for k in range(m):
            d[k] = act.softplus(x[k])
    elif op == HARD_SWISH:
        for k in range(m):
            d[k] = act.hard_swish(x[k])
    else:
        _unary_more(op, d, x, m)


@jit
def _unary_more(op, d, x, m):
    """The rest of the unary opcodes (split so each function stays short)."""
    if op == GELU:
        act.gelu_block(d, x, m)
    elif op == GELU_TANH:
        for k in range(m):
            d[k] = act.gelu_tanh(x[k])
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
            d[k] = act.leaky_relu(x[k], p0)
    elif op == ELU:
        for k in range(m):
            d[k] = act.elu(x[k], p0)
    elif op == CLIP:
        for k in range(m):
            d[k] = _clip(x[k], p0, p1)
    elif op == HARD_SIGMOID:
        for k in range(m):
            d[k] = act.hard_sigmoid(x[k], p0, p1)
    else:  # SELU
        for k in range(m):
            d[k] = act.selu(x[k], p0, p1)


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
@drives(run_blocks)
@jit
def _run_blocks_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(run_blocks, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)
