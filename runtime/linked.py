"""LLVM IR kernels linked into Numba code by name: the simulator's
(runtime/sim/dots.py, runtime/sim/bytevec.py) and the CPU kernels' sums in
one order on every CPU (runtime/kernels/ordered.py).

A module's IR text is compiled for this host by runtime.gemm.microkernel's
``compile_module`` (object code cached like the GEMM's) once per process,
and each of its functions registered under its name as an LLVM symbol, so
Numba code calling it (through :func:`value_call` intrinsics) links to
this process's copy whether that code was compiled now or loaded from the
kernel cache.
"""
from __future__ import annotations

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils

from runtime.gemm.family import Isa, host_isa

_engines: dict[str, object] = {}
"""The execution engines, which own the code, by module name."""


def link(name: str, text: str, symbols: list[str], isa: Isa | None = None) -> None:
    """Compile (or load) the module ``name`` of IR ``text`` for this host
    (``isa``'s target; default: the kernel family's, :func:`host_isa`),
    once per process, and make ``symbols`` resolve to its functions for
    code linked from now on."""
    if name in _engines:
        return
    from runtime.gemm.microkernel import compile_module

    engine, addresses = compile_module(name, text, symbols, host_isa() if isa is None else isa)
    _engines[name] = engine
    for symbol, address in zip(symbols, addresses):
        llvm.add_symbol(symbol, int(address))


_IR_TYPES = {"i": ir.IntType(64), "p": ir.PointerType(ir.IntType(8)), "d": ir.DoubleType(), "f": ir.FloatType(),
             "v": ir.VoidType()}
_NUMBA_TYPES = {"i": types.int64, "p": types.int64, "d": types.float64, "f": types.float32, "v": types.void}
_KINDS = {"i": types.Integer, "p": types.Integer, "d": types.Float, "f": types.Float}


def value_call(symbol: str, args, kinds: str, result: str):
    """An intrinsic's signature and code calling ``symbol`` with one
    argument per letter of ``kinds`` (``i``: an int64, ``p``: an int64
    address passed as a pointer, ``d``: a float64, ``f``: a float32)
    returning ``result`` (``f``, ``d``, ``i``, or ``v``: nothing); None (no
    match) where an argument is not of its letter's kind."""
    if len(args) != len(kinds) or not all(isinstance(a, _KINDS[k]) for a, k in zip(args, kinds)):
        return None
    sig = _NUMBA_TYPES[result](*(_NUMBA_TYPES[k] for k in kinds))

    def codegen(context, builder, signature, values):
        fnty = ir.FunctionType(_IR_TYPES[result], [_IR_TYPES[k] for k in kinds])
        fn = cgutils.get_or_insert_function(builder.module, fnty, symbol)
        cast = [context.cast(builder, v, t, s) for v, t, s in zip(values, signature.args, sig.args)]
        out = builder.call(fn, [builder.inttoptr(v, _IR_TYPES["p"]) if k == "p" else v
                                for v, k in zip(cast, kinds)])
        return context.get_dummy_value() if result == "v" else out

    return sig, codegen


def void_call(symbol: str, args, counts: int = 1):
    """:func:`value_call` of ``counts`` int64 numbers, then int64 addresses
    (as pointers), returning nothing."""
    return value_call(symbol, args, "i" * counts + "p" * (len(args) - counts), "v")


def int_call(symbol: str):
    """:func:`value_call` of nothing, returning an int64."""
    return value_call(symbol, (), "", "i")
