"""GEMM microkernels compiled for the host CPU with llvmlite, cached per
process, and called from Numba.

runtime.gemm.microkernel_ir generates the kernels' LLVM IR (its docstring
says what a kernel computes); here it is compiled for the host's
kernel family (runtime.gemm.family.host_isa) by :func:`kernel_addresses`,
and a kernel called from a Numba driver through :func:`call_kernel`.
"""
from __future__ import annotations

import threading

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from runtime.errors import KernelError
from runtime.gemm.family import KINDS, Isa
from runtime.gemm.microkernel_ir import kernel_ir, kernel_names
from runtime.jit import load_object_code, store_object_code

# ------------------------------------------------------------------ compiling
_engines: dict[tuple[Isa, str], tuple[object, np.ndarray]] = {}
_lock = threading.Lock()


def _compile(isa: Isa, kind: str) -> tuple[object, np.ndarray]:
    """Compile ``isa``'s ``kind`` kernels into one execution engine; return
    the engine (it owns the code) and the kernels' addresses (entry 0 unused)."""
    engine, addresses = compile_module(f"gemm-{isa.name}-{kind}", kernel_ir(isa, kind), kernel_names(isa, kind), isa)
    return engine, np.concatenate([np.zeros(1, np.int64), addresses])


COMPILED: dict[int, str] = {}
"""Every kernel :func:`compile_module` compiled or loaded in this process,
by address: its module's name and its symbol (``gemm-avx512-f32:
tessera_f32_8x48_16_16_16``; families share symbol names), which
bench/perf_map.py puts in a profile."""


def compile_module(name: str, text: str, symbols: list[str], isa: Isa) -> tuple[object, np.ndarray]:
    """Compile the LLVM IR ``text`` for ``isa``'s target into one execution
    engine, or load the object code an earlier process compiled from the
    same IR for the same target (runtime.jit's object cache: about a second
    saved per process); return the engine (it owns the code) and the
    addresses of ``symbols``, in order."""
    machine = _machine(isa)
    inputs = "\n".join([text, machine.triple, isa.cpu, isa.features, ".".join(map(str, llvm.llvm_version_info))])
    cached = load_object_code(name, inputs)
    if cached is not None:
        engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), machine)
        engine.add_object_file(llvm.ObjectFileRef.from_data(cached))
        engine.finalize_object()
        addresses = _addresses(engine, symbols)
        if addresses.all():
            COMPILED.update((address, f"{name}:{symbol}") for symbol, address in zip(symbols, addresses.tolist()))
            return engine, addresses
    engine = llvm.create_mcjit_compiler(_optimized(text, machine), machine)
    compiled = []
    engine.set_object_cache(lambda _module, data: compiled.append(bytes(data)))
    engine.finalize_object()
    addresses = _addresses(engine, symbols)
    if not addresses.all():
        raise KernelError(f"LLVM gave no address for a kernel of {name}")
    if compiled:
        store_object_code(name, inputs, compiled[0])
    COMPILED.update((address, f"{name}:{symbol}") for symbol, address in zip(symbols, addresses.tolist()))
    return engine, addresses


def _machine(isa: Isa):
    """LLVM's target machine for ``isa``'s CPU and features."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return llvm.Target.from_default_triple().create_target_machine(cpu=isa.cpu, features=isa.features, opt=3,
                                                                   codemodel="jitdefault")


def _optimized(text: str, machine):
    """The module of the IR ``text``, verified and optimised for ``machine``."""
    module = llvm.parse_assembly(text)
    module.verify()
    builder = llvm.create_pass_builder(machine, llvm.PipelineTuningOptions(speed_level=3))
    builder.getModulePassManager().run(module, builder)
    return module


def assembly(text: str, isa: Isa) -> str:
    """The assembly :func:`compile_module` makes of the IR ``text`` for
    ``isa`` (compiled only: any x86 host can), to read what a kernel family
    gets (the tests check some of it)."""
    machine = _machine(isa)
    return machine.emit_assembly(_optimized(text, machine))


def _addresses(engine, symbols: list[str]) -> np.ndarray:
    return np.array([engine.get_function_address(name) for name in symbols], dtype=np.int64)


def kernel_addresses(isa: Isa, kind: str = "f32") -> np.ndarray:
    """Entry points of ``isa``'s ``kind`` kernels: the tile ``w`` lanes wide
    at ``w // UNIT``, the remainder kernel for ``c`` columns (if any) at
    ``nr // UNIT + c``, the wide tiles after them and the tall tile
    (runtime.gemm.family.tall_kernel) last (entry 0 unused); compiled on
    first use, kept for the process."""
    if kind not in KINDS:
        raise ValueError(f"unknown GEMM kernel kind {kind!r} (known: {KINDS})")
    key = (isa, kind)
    with _lock:
        if key not in _engines:
            _engines[key] = _compile(isa, kind)
        return _engines[key][1]


# ------------------------------------------------------------ calling from Numba
@intrinsic
def call_kernel(typingctx, address, kc, a, b, ldb, c, ldc, rows, cols, accumulate, bias, residual, ldr, clamp):
    """Call the kernel at ``address``; every argument is an int64 (``a``,
    ``b``, ``c``, ``bias``, ``residual`` and ``clamp`` are addresses, the
    last three 0 for none). The address is a runtime value, so the Numba
    callers stay cacheable on disk."""
    sig = types.void(*([types.int64] * 14))

    def codegen(context, builder, signature, args):
        i64, ptr = ir.IntType(64), ir.PointerType()
        fnty = ir.FunctionType(ir.VoidType(), [i64, ptr, ptr, i64, ptr, i64, i64, i64, i64, ptr, ptr, i64, ptr])
        target = builder.inttoptr(args[0], ir.PointerType(fnty))
        a_ptr, b_ptr, c_ptr, bias_ptr, res_ptr, clamp_ptr = (builder.inttoptr(args[i], ptr)
                                                             for i in (2, 3, 5, 10, 11, 13))
        builder.call(target, [args[1], a_ptr, b_ptr, args[4], c_ptr, *args[6:10], bias_ptr, res_ptr, args[12],
                              clamp_ptr])
        return context.get_dummy_value()

    return sig, codegen

