"""A table of 256 bytes applied to int8 codes (``out[i] = table[x[i] + 128]``),
as a kernel compiled for this host: the simulator's LUT instruction, a
CONV's output table (a HardSwish or sigmoid folded into its epilogue) and a
requantising COPY of 8-bit codes (runtime/sim/vector.py) all come down to it.

Numba's loop is a byte load, a table load and a byte store a code (a gather
LLVM cannot vectorise): ~1 cycle a code, ~20 % of PP-LCNet's simulated run
on one thread. With AVX512-VBMI (Ice Lake and later, Zen 4) the whole table
sits in four 64-byte registers and ``vpermi2b`` looks up 64 codes at once in
each half of it (128 entries, selected by an index's low 7 bits, which are
the code's own: ``x + 128`` only flips bit 7); the code's sign picks the
half (negative codes index the table's first 128 entries). The last codes
of a run are one masked load and store. Elsewhere (AVX2, AVX-512 without
VBMI) the kernel is the plain loop. Either way each output byte is the
table's entry for its code, so the results are the same bits.

The kernel is LLVM IR text compiled by runtime.gemm.microkernel's
``compile_module`` (object code cached like the GEMM's), registered under
its name as an LLVM symbol when this module is imported, as
runtime/sim/dots.py's are; :func:`map_fast` asks the linked code which of
the two it is, so a caller can prefer the table where it is the fast way
(a cached caller compiled on another host stays right). The choice follows
runtime.gemm.family.host_isa (``TESSERA_GEMM_ISA=avx2`` takes the loop on
a VBMI host: how the tests reach both).
"""
from __future__ import annotations

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from runtime.gemm.family import host_isa

MAP8, FAST8 = "tessera_sim_map8", "tessera_sim_map8_fast"
"""The kernels' symbols: ``void map8(i64 n, i8* x, i8* table, i8* out)``
stores ``table[x[i] + 128]`` into ``out[i]`` for ``i < n`` (``out`` may be
``x``: each vector is loaded before it is stored); ``i64 fast()`` is 1
where that is the vector kernel."""


def uses_vbmi() -> bool:
    """Whether this host's table kernel is the ``vpermi2b`` one."""
    isa = host_isa()
    return isa.name == "avx512" and "+avx512vbmi" in isa.features.split(",")


def _vector_ir() -> str:
    lines = [
        "declare <64 x i8> @llvm.x86.avx512.vpermi2var.qi.512(<64 x i8>, <64 x i8>, <64 x i8>)",
        "declare <64 x i8> @llvm.masked.load.v64i8.p0(ptr, i32, <64 x i1>, <64 x i8>)",
        "declare void @llvm.masked.store.v64i8.p0(<64 x i8>, ptr, i32, <64 x i1>)",
        "",
        "define internal <64 x i8> @look(<64 x i8> %v, <64 x i8> %t0, <64 x i8> %t1, <64 x i8> %t2, <64 x i8> %t3)"
        " alwaysinline {",
        "  %low = call <64 x i8> @llvm.x86.avx512.vpermi2var.qi.512(<64 x i8> %t0, <64 x i8> %v, <64 x i8> %t1)",
        "  %high = call <64 x i8> @llvm.x86.avx512.vpermi2var.qi.512(<64 x i8> %t2, <64 x i8> %v, <64 x i8> %t3)",
        "  %neg = icmp slt <64 x i8> %v, zeroinitializer",
        "  %r = select <64 x i1> %neg, <64 x i8> %low, <64 x i8> %high",
        "  ret <64 x i8> %r",
        "}",
        "",
        f"define void @{MAP8}(i64 %n, ptr readonly %x, ptr readonly %t, ptr %out) nounwind {{",
        "entry:",
    ]
    for q in range(4):
        lines += [f"  %tp{q} = getelementptr i8, ptr %t, i64 {64 * q}",
                  f"  %t{q} = load <64 x i8>, ptr %tp{q}, align 1"]
    lines += [
        "  %full = and i64 %n, -64",
        "  br label %loop",
        "loop:",
        "  %i = phi i64 [ 0, %entry ], [ %next, %body ]",
        "  %more = icmp ult i64 %i, %full",
        "  br i1 %more, label %body, label %tail",
        "body:",
        "  %px = getelementptr i8, ptr %x, i64 %i",
        "  %v = load <64 x i8>, ptr %px, align 1",
        "  %r = call <64 x i8> @look(<64 x i8> %v, <64 x i8> %t0, <64 x i8> %t1, <64 x i8> %t2, <64 x i8> %t3)",
        "  %po = getelementptr i8, ptr %out, i64 %i",
        "  store <64 x i8> %r, ptr %po, align 1",
        "  %next = add i64 %i, 64",
        "  br label %loop",
        "tail:",
        "  %rest = sub i64 %n, %full",
        "  %some = icmp ne i64 %rest, 0",
        "  br i1 %some, label %last, label %done",
        "last:",
        "  %bit = shl i64 1, %rest",
        "  %bits = sub i64 %bit, 1",
        "  %mask = bitcast i64 %bits to <64 x i1>",
        "  %pxl = getelementptr i8, ptr %x, i64 %full",
        "  %vl = call <64 x i8> @llvm.masked.load.v64i8.p0(ptr %pxl, i32 1, <64 x i1> %mask, "
        "<64 x i8> zeroinitializer)",
        "  %rl = call <64 x i8> @look(<64 x i8> %vl, <64 x i8> %t0, <64 x i8> %t1, <64 x i8> %t2, <64 x i8> %t3)",
        "  %pol = getelementptr i8, ptr %out, i64 %full",
        "  call void @llvm.masked.store.v64i8.p0(<64 x i8> %rl, ptr %pol, i32 1, <64 x i1> %mask)",
        "  br label %done",
        "done:",
        "  ret void",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _loop_ir() -> str:
    return "\n".join([
        f"define void @{MAP8}(i64 %n, ptr readonly %x, ptr readonly %t, ptr %out) nounwind {{",
        "entry:",
        "  br label %loop",
        "loop:",
        "  %i = phi i64 [ 0, %entry ], [ %next, %body ]",
        "  %more = icmp ult i64 %i, %n",
        "  br i1 %more, label %body, label %done",
        "body:",
        "  %px = getelementptr i8, ptr %x, i64 %i",
        "  %v = load i8, ptr %px, align 1",
        "  %u = xor i8 %v, -128",
        "  %k = zext i8 %u to i64",
        "  %pt = getelementptr i8, ptr %t, i64 %k",
        "  %r = load i8, ptr %pt, align 1",
        "  %po = getelementptr i8, ptr %out, i64 %i",
        "  store i8 %r, ptr %po, align 1",
        "  %next = add i64 %i, 1",
        "  br label %loop",
        "done:",
        "  ret void",
        "}",
    ]) + "\n"


def kernel_ir(vbmi: bool) -> str:
    """LLVM IR text of the module holding :data:`MAP8` and :data:`FAST8`."""
    fast = f"define i64 @{FAST8}() nounwind {{\n  ret i64 {int(vbmi)}\n}}\n"
    return (_vector_ir() if vbmi else _loop_ir()) + fast


_engine: list = []


def register() -> None:
    """Compile (or load) this host's table kernel once per process and make
    its names resolve to it for code linked from now on."""
    if _engine:
        return
    from runtime.gemm.microkernel import compile_module

    vbmi = uses_vbmi()
    engine, addresses = compile_module("sim-bytemap-" + ("vbmi" if vbmi else "loop"), kernel_ir(vbmi),
                                       [MAP8, FAST8], host_isa())
    _engine.append(engine)  # owns the code
    for name, address in zip((MAP8, FAST8), addresses):
        llvm.add_symbol(name, int(address))


register()


@intrinsic
def map8(typingctx, n, x, table, out):
    """``out[i] = table[x[i] + 128]`` for the ``n`` int8 codes at address
    ``x`` (addresses, int64; the table's 256 bytes at ``table``)."""
    if not all(isinstance(a, types.Integer) for a in (n, x, table, out)):
        return None
    sig = types.void(types.int64, types.int64, types.int64, types.int64)

    def codegen(context, builder, signature, values):
        ptr = ir.PointerType(ir.IntType(8))
        fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(64)] + [ptr] * 3)
        fn = cgutils.get_or_insert_function(builder.module, fnty, MAP8)
        cast = [context.cast(builder, v, t, types.int64) for v, t in zip(values, signature.args)]
        builder.call(fn, [cast[0]] + [builder.inttoptr(v, ptr) for v in cast[1:]])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def map_fast(typingctx):
    """Whether the linked :func:`map8` is the vector kernel (int64 1 or 0)."""
    sig = types.int64()

    def codegen(context, builder, signature, values):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []), FAST8)
        return builder.call(fn, [])

    return sig, codegen
