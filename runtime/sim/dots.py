"""The int8 dot products of the simulator's few-pixel CONVs
(runtime.sim.conv8.few_pixel_channels) as kernels compiled for this host.

A few-pixel CONV (a 3x3 CONV of a 2x2 or 1x1 map) is, per output channel,
dot products of the channel's signed weights with one to four signed
patches, thousands of bytes deep. Numba's loop compiled to sign extensions
and ``vpmulld``: 16 products per slow multiply. Here:

* with AVX512-VNNI (and AVX512-BW), ``vpdpbusd`` does 64 products an
  instruction. It multiplies unsigned by signed bytes, so the patches are
  XORed with 0x80 (``x + 128`` as an unsigned byte) and each result is
  ``sum(w * (x + 128)) - 128 * sum(w)``, ``sum(w)`` taken by the same
  instruction against bytes of 1;
* elsewhere (AVX2, AVX-512 without VNNI) the bytes are widened to 16 bits
  and multiplied in pairs by ``vpmaddwd`` (16 products an instruction).

Both are exact: the products and their sums are integers, and the int32
sums wrap modulo 2^32 as the device's accumulators (and the Numba loop's)
do, so the order of the sums does not matter. The last bytes of a product
(its depth modulo the vector's) are read with masked loads (zeros past the
end), which add nothing.

The kernels are LLVM IR text linked by name when this module is imported
(runtime/linked.py), so Numba code calling them (:func:`dot4`,
:func:`dot1`) links to this process's copies whether it was compiled now or
loaded from the kernel cache. The choice
follows runtime.gemm.family.host_isa (``TESSERA_GEMM_ISA=avx2`` takes the
``vpmaddwd`` kernels on a VNNI host: how the tests reach both).
"""
from __future__ import annotations

from numba.extending import intrinsic

from runtime.gemm.family import host_isa
from runtime.linked import link, void_call

DOT4, DOT1 = "tessera_sim_dot4_s8", "tessera_sim_dot1_s8"
"""The kernels' symbols: ``void f(i64 n, i8* w, i8* x0[, x1, x2, x3], i32* out)``
stores the int32 dot product of the ``n`` signed bytes at ``w`` with those
at each ``x`` into ``out[0..]``."""


def _lanes(n: int, value: str, ty: str) -> str:
    return "<" + ", ".join(f"{ty} {value}" for _ in range(n)) + ">"


_FLIP, _ONES = _lanes(64, "-128", "i8"), _lanes(16, "16843009", "i32")


def _update(vnni: bool, acc: str, x: str, w: str, out: str) -> list[str]:
    """IR adding the products of the byte vector ``x`` (64 or 16 bytes)
    with ``w`` (the weights' vector as :func:`_weights` made it) to ``acc``."""
    if vnni:  # the patch as unsigned bytes (x + 128); ``sum(w)`` comes off at the end
        return [f"  {x}u = xor <64 x i8> {x}, {_FLIP}", f"  {x}i = bitcast <64 x i8> {x}u to <16 x i32>",
                f"  {out} = call <16 x i32> @llvm.x86.avx512.vpdpbusd.512(<16 x i32> {acc}, <16 x i32> {x}i, "
                f"<16 x i32> {w})"]
    return [f"  {x}w = sext <16 x i8> {x} to <16 x i16>",
            f"  {out}m = call <8 x i32> @llvm.x86.avx2.pmadd.wd(<16 x i16> {x}w, <16 x i16> {w})",
            f"  {out} = add <8 x i32> {acc}, {out}m"]


def _weights(vnni: bool, w: str, out: str) -> list[str]:
    """IR turning the weights' byte vector ``w`` into the operand :func:`_update` takes."""
    if vnni:
        return [f"  {out} = bitcast <64 x i8> {w} to <16 x i32>"]
    return [f"  {out} = sext <16 x i8> {w} to <16 x i16>"]


def _function(name: str, pixels: int, vnni: bool) -> str:
    """A dot kernel of ``pixels`` patches: whole vectors (64 bytes on
    ``vpdpbusd``, 16 on ``vpmaddwd``) in a loop, then one masked step, then
    the lanes summed (less 128 times the weights' sum on ``vpdpbusd``)."""
    step, acc = (64, "<16 x i32>") if vnni else (16, "<8 x i32>")
    bytes_, xs = f"<{step} x i8>", [f"%x{i}" for i in range(pixels)]
    sums = [*range(pixels), "w"] if vnni else list(range(pixels))  # accumulators; "w": the weights' sum
    lines = ["entry:", f"  %full = and i64 %n, -{step}", "  br label %head", "head:",
             "  %i = phi i64 [ 0, %entry ], [ %next, %body ]"]
    lines += [f"  %a{p} = phi {acc} [ zeroinitializer, %entry ], [ %a{p}n, %body ]" for p in sums]
    lines += ["  %more = icmp slt i64 %i, %full", "  br i1 %more, label %body, label %last", "body:",
              "  %pw = getelementptr inbounds i8, ptr %w, i64 %i", f"  %wv = load {bytes_}, ptr %pw, align 1"]
    lines += _weights(vnni, "%wv", "%wo")
    for p, x in enumerate(xs):
        lines += [f"  %px{p} = getelementptr inbounds i8, ptr {x}, i64 %i",
                  f"  %xv{p} = load {bytes_}, ptr %px{p}, align 1"]
        lines += _update(vnni, f"%a{p}", f"%xv{p}", "%wo", f"%a{p}n")
    if vnni:
        lines.append(f"  %awn = call <16 x i32> @llvm.x86.avx512.vpdpbusd.512(<16 x i32> %aw, <16 x i32> {_ONES}, "
                     "<16 x i32> %wo)")
    lines += [f"  %next = add i64 %i, {step}", "  br label %head", "last:", "  %rest = sub i64 %n, %full",
              "  %rest8 = trunc i64 %rest to i8", f"  %restv0 = insertelement {bytes_} poison, i8 %rest8, i64 0",
              f"  %restv = shufflevector {bytes_} %restv0, {bytes_} poison, <{step} x i32> zeroinitializer",
              f"  %mask = icmp ult {bytes_} <" + ", ".join(f"i8 {k}" for k in range(step)) + ">, %restv"]
    masked = f"@llvm.masked.load.v{step}i8.p0"
    lines += ["  %lw = getelementptr inbounds i8, ptr %w, i64 %full",
              f"  %lwv = call {bytes_} {masked}(ptr %lw, i32 1, <{step} x i1> %mask, {bytes_} zeroinitializer)"]
    lines += _weights(vnni, "%lwv", "%lwo")
    correction = "0"
    if vnni:
        lines += [f"  %awl = call <16 x i32> @llvm.x86.avx512.vpdpbusd.512(<16 x i32> %aw, <16 x i32> {_ONES}, "
                  "<16 x i32> %lwo)", "  %sw = call i32 @llvm.vector.reduce.add.v16i32(<16 x i32> %awl)",
                  "  %corr = shl i32 %sw, 7"]
        correction = "%corr"
    reduce = "@llvm.vector.reduce.add.v16i32" if vnni else "@llvm.vector.reduce.add.v8i32"
    for p, x in enumerate(xs):
        lines += [f"  %lx{p} = getelementptr inbounds i8, ptr {x}, i64 %full",
                  f"  %lxv{p} = call {bytes_} {masked}(ptr %lx{p}, i32 1, <{step} x i1> %mask, "
                  f"{bytes_} zeroinitializer)"]
        lines += _update(vnni, f"%a{p}", f"%lxv{p}", "%lwo", f"%al{p}")
        lines += [f"  %s{p} = call i32 {reduce}({acc} %al{p})", f"  %r{p} = sub i32 %s{p}, {correction}",
                  f"  %po{p} = getelementptr inbounds i32, ptr %out, i64 {p}",
                  f"  store i32 %r{p}, ptr %po{p}, align 4"]
    lines.append("  ret void")
    params = ", ".join(f"ptr noalias readonly {x}" for x in xs)
    return (f"define void @{name}(i64 %n, ptr noalias readonly %w, {params}, ptr noalias %out) nounwind {{\n"
            + "\n".join(lines) + "\n}\n")


def uses_vnni() -> bool:
    """Whether this host's dot kernels are the ``vpdpbusd`` ones."""
    isa = host_isa()
    return isa.name == "avx512" and isa.vnni


def kernel_ir(vnni: bool) -> str:
    """LLVM IR text of the module holding :data:`DOT4` and :data:`DOT1`."""
    if vnni:
        head = ("declare <16 x i32> @llvm.x86.avx512.vpdpbusd.512(<16 x i32>, <16 x i32>, <16 x i32>)\n"
                "declare <64 x i8> @llvm.masked.load.v64i8.p0(ptr, i32, <64 x i1>, <64 x i8>)\n"
                "declare i32 @llvm.vector.reduce.add.v16i32(<16 x i32>)\n")
        return head + _function(DOT4, 4, True) + _function(DOT1, 1, True)
    head = ("declare <8 x i32> @llvm.x86.avx2.pmadd.wd(<16 x i16>, <16 x i16>)\n"
            "declare <16 x i8> @llvm.masked.load.v16i8.p0(ptr, i32, <16 x i1>, <16 x i8>)\n"
            "declare i32 @llvm.vector.reduce.add.v8i32(<8 x i32>)\n")
    return head + _function(DOT4, 4, False) + _function(DOT1, 1, False)


_VNNI = uses_vnni()
link("sim-dots-" + ("vnni" if _VNNI else "madd"), kernel_ir(_VNNI), [DOT4, DOT1])


@intrinsic
def dot4(typingctx, n, w, x0, x1, x2, x3, out):
    """``out[0..3]`` (int32) = the dot products of the ``n`` signed bytes at
    address ``w`` with those at ``x0`` .. ``x3`` (addresses, int64)."""
    return void_call(DOT4, (n, w, x0, x1, x2, x3, out))


@intrinsic
def dot1(typingctx, n, w, x0, out):
    """``out[0]`` (int32) = the dot product of the ``n`` signed bytes at
    ``w`` with those at ``x0``."""
    return void_call(DOT1, (n, w, x0, out))
