"""Float sums in one order on every CPU: the CPU kernels' reductions (a
softmax's sum, a classifier's dot products, a normalisation's moments, a
plane's mean, a resize's taps along a row).

A sum Numba compiles with ``fastmath`` is reassociated by LLVM as its model
of the CPU prefers: 16 lanes and four accumulators on a Zen 4, 8 lanes on
a Skylake-SP or any AVX2 host. Each order rounds differently, so the same
model gave different float outputs on different hosts, and different
binaries where calibration read such a sum (VGG-19's 25088-deep
classifier: issue 57's notes). These kernels are LLVM IR without any
fast-math flag, so no target may reorder them; each is written in the
order the ``fastmath`` loop took on the AVX-512 host Tessera was measured
on, so that host's results did not change, and every other host now
computes the same bits (``tests/runtime/test_ordered.py`` runs each kernel
family this host can):

* lanes: an element ``i`` of the main part is added into lane ``i mod W``
  of accumulator ``(i div W) mod 4`` (``W`` = 16 float32 or 8 float64
  lanes, the main part the first ``n - n mod 4W`` elements; the first
  accumulator starts from (s, 0, ..., 0), ``s`` 0 or a start value given);
  the four accumulators are then added pairwise, ``(a0 + a1) + (a2 +
  a3)``, or in turn, ``((a0 + a1) + a2) + a3`` (:data:`KERNELS`'s
  ``combine``), and the lanes halved, lane ``j`` with lane ``j + W/2``,
  down to one;
* the rest, when it holds ``P`` elements or more, in ``P`` lanes (``P``
  = ``W/2``, or 8 for the taps) starting from (that sum, 0, ..., 0),
  halved likewise; then the last elements one at a time. Under ``P``
  elements in all: one at a time from ``s``; under ``4W``: the ``P``-lane
  part from (s, 0, ..., 0).

A dot product's terms are fused multiply-adds (``fma(x, w, acc)``, one
rounding), as the fastmath loop's were; sums of squared deviations and a
resize's taps (``x`` gathered at int64 offsets) too.
Wider or narrower vectors than the CPU's are split or widened by LLVM
lane for lane, which changes no result: AVX2 computes a 16-lane
accumulator as two of 8.
"""
from __future__ import annotations

from dataclasses import dataclass

import llvmlite.binding as llvm
from numba.extending import intrinsic

from runtime.errors import KernelError
from runtime.gemm.family import Isa, host_isa
from runtime.linked import link, value_call, void_call


@dataclass(frozen=True)
class Reduction:
    """One kernel: its symbol, what it reads (``f32``: float32 elements;
    ``f64``: float64; ``f32>f64``: float32 widened to float64), whether it
    is a dot product (a second array; ``fma``), the same of values gathered
    at int64 offsets (``gather``), a sum of squared deviations from a
    float64 ``mean`` (``sqdev``) or a plain sum (``add``), the main lanes
    ``W`` and how the four accumulators combine."""

    symbol: str
    source: str
    term: str
    lanes: int
    combine: str
    part: int = 0
    """Lanes of the part after the main one (0: half the main's)."""
    start: bool = False
    """Whether the sum starts from a value given (``%start``, in lane 0 of
    the first accumulator), not 0."""

    @property
    def scalar(self) -> str:
        return "float" if self.source == "f32" else "double"

    @property
    def part_lanes(self) -> int:
        return self.part or self.lanes // 2

    @property
    def zero(self) -> str:
        """The value the sum starts from."""
        return "%start" if self.start else "0.0"

    def vector(self, width: int) -> str:
        return f"<{width} x {self.scalar}>"


KERNELS = {
    "sum_f32": Reduction("tessera_sum_f32", "f32", "add", 16, "pairwise"),
    "dot_f32": Reduction("tessera_dot_f32", "f32", "fma", 16, "pairwise"),
    "sum_f32_f64": Reduction("tessera_sum_f32_f64", "f32>f64", "add", 8, "in turn"),
    "sqdev_f32_f64": Reduction("tessera_sqdev_f32_f64", "f32>f64", "sqdev", 8, "pairwise"),
    "sum_f64": Reduction("tessera_sum_f64", "f64", "add", 8, "pairwise"),
    "sqdev_f64": Reduction("tessera_sqdev_f64", "f64", "sqdev", 8, "pairwise"),
    "taps_f32": Reduction("tessera_taps_f32", "f32", "gather", 8, "pairwise", part=8, start=True),
    "taps_f64": Reduction("tessera_taps_f64", "f64", "gather", 8, "pairwise", part=8, start=True),
}
"""Every kernel, by the name its intrinsic has here."""
UNROLL = 4
"""Accumulators of the main part."""


def _splat(ty: str, width: int, value: str) -> str:
    return "<" + ", ".join(f"{ty} {value}" for _ in range(width)) + ">"


def _terms(k: Reduction, width: int, index: str, tag: str) -> tuple[list[str], str, str | None]:
    """IR loading ``width`` elements (1: a scalar) from ``index`` on:
    (lines, the value to accumulate, the second factor of a fused term)."""
    memory = "float" if k.source.startswith("f32") else "double"
    ty = memory if width == 1 else f"<{width} x {memory}>"
    align = 4 if memory == "float" else 8
    if k.term == "gather":  # x[taps[i]], the taps int64 element offsets
        index_ty = "i64" if width == 1 else f"<{width} x i64>"
        lines = [f"  %pt{tag} = getelementptr inbounds i64, ptr %taps, i64 {index}",
                 f"  %vt{tag} = load {index_ty}, ptr %pt{tag}, align 8",
                 f"  %px{tag} = getelementptr inbounds {memory}, ptr %x, {index_ty} %vt{tag}"]
        if width == 1:
            lines.append(f"  %vx{tag} = load {memory}, ptr %px{tag}, align {align}")
        else:
            name = f"v{width}{'f32' if memory == 'float' else 'f64'}"
            lines.append(f"  %vx{tag} = call {ty} @llvm.masked.gather.{name}.v{width}p0(<{width} x ptr> "
                         f"%px{tag}, i32 {align}, <{width} x i1> {_splat('i1', width, 'true')}, {ty} poison)")
    else:
        lines = [f"  %px{tag} = getelementptr inbounds {memory}, ptr %x, i64 {index}",
                 f"  %vx{tag} = load {ty}, ptr %px{tag}, align {align}"]
    value = f"%vx{tag}"
    out_ty = k.scalar if width == 1 else k.vector(width)
    if k.source == "f32>f64":
        lines.append(f"  %ex{tag} = fpext {ty} {value} to {out_ty}")
        value = f"%ex{tag}"
    if k.term in ("fma", "gather"):
        lines += [f"  %pw{tag} = getelementptr inbounds {memory}, ptr %w, i64 {index}",
                  f"  %vw{tag} = load {ty}, ptr %pw{tag}, align {align}"]
        return lines, value, f"%vw{tag}"
    if k.term == "sqdev":
        mean = "%mean" if width == 1 else f"%mean{width}"
        lines.append(f"  %d{tag} = fsub {out_ty} {value}, {mean}")
        return lines, f"%d{tag}", f"%d{tag}"
    return lines, value, None


def _accumulate(k: Reduction, width: int, acc: str, index: str, tag: str, out: str) -> list[str]:
    lines, value, factor = _terms(k, width, index, tag)
    ty = k.scalar if width == 1 else k.vector(width)
    if factor is None:
        return lines + [f"  {out} = fadd {ty} {acc}, {value}"]
    name = "f32" if k.scalar == "float" else "f64"
    intrinsic_name = f"llvm.fma.{name}" if width == 1 else f"llvm.fma.v{width}{name}"
    return lines + [f"  {out} = call {ty} @{intrinsic_name}({ty} {value}, {ty} {factor}, {ty} {acc})"]


def _halve(k: Reduction, width: int, value: str, tag: str) -> tuple[list[str], str]:
    """IR adding lane j to lane j + width/2 until one lane is left."""
    lines = []
    while width > 1:
        half = width // 2
        low = ", ".join(f"i32 {j}" for j in range(half))
        high = ", ".join(f"i32 {j + half}" for j in range(half))
        ty, out = k.vector(width), k.vector(half)
        lines += [f"  %lo{tag}{half} = shufflevector {ty} {value}, {ty} poison, <{half} x i32> <{low}>",
                  f"  %hi{tag}{half} = shufflevector {ty} {value}, {ty} poison, <{half} x i32> <{high}>",
                  f"  %h{tag}{half} = fadd {out} %lo{tag}{half}, %hi{tag}{half}"]
        value, width = f"%h{tag}{half}", half
    return lines + [f"  %r{tag} = extractelement {k.vector(1)} {value}, i64 0"], f"%r{tag}"


def _function(k: Reduction) -> str:
    """The kernel's IR: ``T f(i64 n, ptr x[, ptr w][, double mean])``."""
    w, half, step, s, zero = k.lanes, k.part_lanes, k.lanes * UNROLL, k.scalar, k.zero
    vec, hvec = k.vector(w), k.vector(half)
    lines = ["entry:", "  %none = icmp sle i64 %n, 0", "  br i1 %none, label %exit, label %sized", "sized:"]
    if k.term == "sqdev":
        lines += [f"  %mw = insertelement {vec} poison, double %mean, i64 0",
                  f"  %mean{w} = shufflevector {vec} %mw, {vec} poison, <{w} x i32> zeroinitializer",
                  f"  %mh = insertelement {hvec} poison, double %mean, i64 0",
                  f"  %mean{half} = shufflevector {hvec} %mh, {hvec} poison, <{half} x i32> zeroinitializer"]
    lines += [f"  %few = icmp ult i64 %n, {half}", "  br i1 %few, label %scalar, label %sizes", "sizes:",
              f"  %short = icmp ult i64 %n, {step}", "  br i1 %short, label %part, label %wide", "wide:",
              f"  %mend = and i64 %n, -{step}", f"  %a0i = insertelement {vec} zeroinitializer, {s} {zero}, i64 0",
              "  br label %main", "main:", "  %i = phi i64 [ 0, %wide ], [ %inext, %main ]"]
    lines += [f"  %a{u} = phi {vec} [ {'%a0i' if u == 0 else 'zeroinitializer'}, %wide ], [ %a{u}n, %main ]"
              for u in range(UNROLL)]
    for u in range(UNROLL):
        lines.append(f"  %iu{u} = add i64 %i, {u * w}")
        lines += _accumulate(k, w, f"%a{u}", f"%iu{u}", f"m{u}", f"%a{u}n")
    lines += [f"  %inext = add i64 %i, {step}", "  %mdone = icmp eq i64 %inext, %mend",
              "  br i1 %mdone, label %combine, label %main", "combine:"]
    if k.combine == "pairwise":
        lines += [f"  %c01 = fadd {vec} %a0n, %a1n", f"  %c23 = fadd {vec} %a2n, %a3n",
                  f"  %c = fadd {vec} %c01, %c23"]
    else:
        lines += [f"  %c01 = fadd {vec} %a0n, %a1n", f"  %c012 = fadd {vec} %c01, %a2n",
                  f"  %c = fadd {vec} %c012, %a3n"]
    halved, total = _halve(k, w, "%c", "m")
    lines += halved
    lines += ["  %mall = icmp eq i64 %mend, %n", "  br i1 %mall, label %exit, label %rest", "rest:",
              f"  %left = and i64 %n, {step - half}", "  %tiny = icmp eq i64 %left, 0",
              "  br i1 %tiny, label %scalar, label %part", "part:",
              "  %ps = phi i64 [ 0, %sizes ], [ %mend, %rest ]",
              f"  %pt = phi {s} [ {zero}, %sizes ], [ {total}, %rest ]",
              f"  %pend = and i64 %n, -{half}",
              f"  %p0 = insertelement {hvec} zeroinitializer, {s} %pt, i64 0", "  br label %ploop", "ploop:",
              "  %j = phi i64 [ %ps, %part ], [ %jnext, %ploop ]",
              f"  %e = phi {hvec} [ %p0, %part ], [ %en, %ploop ]"]
    lines += _accumulate(k, half, "%e", "%j", "p", "%en")
    lines += [f"  %jnext = add i64 %j, {half}", "  %pdone = icmp eq i64 %jnext, %pend",
              "  br i1 %pdone, label %pfold, label %ploop", "pfold:"]
    halved, part_total = _halve(k, half, "%en", "p")
    lines += halved
    lines += ["  %pall = icmp eq i64 %pend, %n", "  br i1 %pall, label %exit, label %scalar", "scalar:",
              "  %ss = phi i64 [ 0, %sized ], [ %mend, %rest ], [ %pend, %pfold ]",
              f"  %st = phi {s} [ {zero}, %sized ], [ {total}, %rest ], [ {part_total}, %pfold ]",
              "  br label %sloop", "sloop:", "  %k = phi i64 [ %ss, %scalar ], [ %knext, %sloop ]",
              f"  %t = phi {s} [ %st, %scalar ], [ %tn, %sloop ]"]
    lines += _accumulate(k, 1, "%t", "%k", "s", "%tn")
    lines += ["  %knext = add i64 %k, 1", "  %sdone = icmp eq i64 %knext, %n",
              "  br i1 %sdone, label %exit, label %sloop", "exit:",
              f"  %out = phi {s} [ {zero}, %entry ], [ {total}, %combine ], [ {part_total}, %pfold ], "
              "[ %tn, %sloop ]", f"  ret {s} %out"]
    params = ["i64 %n", "ptr noalias readonly %x"]
    params += ["ptr noalias readonly %taps"] if k.term == "gather" else []
    params += ["ptr noalias readonly %w"] if k.term in ("fma", "gather") else []
    params += ["double %mean"] if k.term == "sqdev" else []
    params += [f"{s} %start"] if k.start else []
    return f"define {s} @{k.symbol}({', '.join(params)}) nounwind {{\n" + "\n".join(lines) + "\n}\n"


DOT_ROWS = "tessera_dot_rows_f32"
"""``void f(i64 n, i64 rows, i64 count, i64 a_stride, i64 w_stride, i64
out_stride, float* a, float* w, float* out)``: ``out[i out_stride + j] =
a[i] . w[j]`` (``dot_f32``'s order) for ``j < count`` (outer) and ``i <
rows``, the strides in elements: a product of a few rows by a matrix's
rows, each dot product inlined, not called (a call per product cost ~4 ns,
a fifth of a 512-deep one)."""


def _dot_rows() -> str:
    dot = KERNELS["dot_f32"].symbol
    return "\n".join([
        f"define void @{DOT_ROWS}(i64 %n, i64 %rows, i64 %count, i64 %as, i64 %ws, i64 %os, ptr noalias readonly %a, "
        "ptr noalias readonly %w, ptr noalias %out) nounwind {",
        "entry:", "  %none = icmp sle i64 %count, 0", "  %norows = icmp sle i64 %rows, 0",
        "  %skip = or i1 %none, %norows", "  br i1 %skip, label %done, label %col", "col:",
        "  %j = phi i64 [ 0, %entry ], [ %jn, %colend ]", "  %wo = mul i64 %j, %ws",
        "  %wj = getelementptr inbounds float, ptr %w, i64 %wo", "  br label %row", "row:",
        "  %i = phi i64 [ 0, %col ], [ %in, %row ]", "  %ao = mul i64 %i, %as",
        "  %ai = getelementptr inbounds float, ptr %a, i64 %ao",
        f"  %v = call float @{dot}(i64 %n, ptr %ai, ptr %wj)", "  %oo = mul i64 %i, %os", "  %ooj = add i64 %oo, %j",
        "  %po = getelementptr inbounds float, ptr %out, i64 %ooj", "  store float %v, ptr %po, align 4",
        "  %in = add i64 %i, 1", "  %rdone = icmp eq i64 %in, %rows", "  br i1 %rdone, label %colend, label %row",
        "colend:", "  %jn = add i64 %j, 1", "  %cdone = icmp eq i64 %jn, %count",
        "  br i1 %cdone, label %done, label %col", "done:", "  ret void", "}", ""])


def kernel_ir() -> str:
    """LLVM IR text of the module holding every kernel of :data:`KERNELS`."""
    declarations = "".join(f"declare {t} @llvm.fma.{n}({t}, {t}, {t})\n"
                           for t, n in (("float", "f32"), ("double", "f64"), ("<16 x float>", "v16f32"),
                                        ("<8 x float>", "v8f32"), ("<8 x double>", "v8f64"),
                                        ("<4 x double>", "v4f64")))
    declarations += "".join(f"declare <8 x {t}> @llvm.masked.gather.v8{n}.v8p0(<8 x ptr>, i32, <8 x i1>, <8 x {t}>)\n"
                            for t, n in (("float", "f32"), ("double", "f64")))
    return declarations + "".join(_function(k) for k in KERNELS.values()) + _dot_rows()


def _target() -> Isa:
    """The kernel family's target (an emulated family's CPU: no instruction
    it lacks), or, where there is none (``TESSERA_GEMM_ISA`` names no
    family, or the CPU has no AVX2: an error at the first GEMM, not at
    ``import runtime``), this CPU as LLVM names it: these kernels need no
    particular instructions and give the same bits on every target."""
    try:
        return host_isa()
    except KernelError:
        return Isa("none", vw=0, mr=0, nr=0, vnni=False, cpu=llvm.get_host_cpu_name(),
                   features=llvm.get_host_cpu_features().flatten())


link("kernels-ordered", kernel_ir(), [k.symbol for k in KERNELS.values()] + [DOT_ROWS], _target())


@intrinsic
def sum_f32(typingctx, n, x):
    """The float32 sum of the ``n`` float32 values at address ``x``."""
    return value_call(KERNELS["sum_f32"].symbol, (n, x), "ip", "f")


@intrinsic
def dot_f32(typingctx, n, x, w):
    """The float32 dot product of the ``n`` float32 values at ``x`` and ``w``."""
    return value_call(KERNELS["dot_f32"].symbol, (n, x, w), "ipp", "f")


@intrinsic
def sum_f32_f64(typingctx, n, x):
    """The float64 sum of the ``n`` float32 values at ``x``."""
    return value_call(KERNELS["sum_f32_f64"].symbol, (n, x), "ip", "d")


@intrinsic
def sqdev_f32_f64(typingctx, n, x, mean):
    """The float64 sum of ``(x - mean)**2`` over the ``n`` float32 values at ``x``."""
    return value_call(KERNELS["sqdev_f32_f64"].symbol, (n, x, mean), "ipd", "d")


@intrinsic
def sum_f64(typingctx, n, x):
    """The float64 sum of the ``n`` float64 values at ``x``."""
    return value_call(KERNELS["sum_f64"].symbol, (n, x), "ip", "d")


@intrinsic
def sqdev_f64(typingctx, n, x, mean):
    """The float64 sum of ``(x - mean)**2`` over the ``n`` float64 values at ``x``."""
    return value_call(KERNELS["sqdev_f64"].symbol, (n, x, mean), "ipd", "d")


@intrinsic
def taps_f32(typingctx, n, x, taps, w, start):
    """``start`` plus the fused products ``x[taps[i]] * w[i]`` over ``i <
    n`` (float32 ``x`` and ``w`` at their addresses, int64 element offsets
    ``taps``, each in ``x``): one output of a resize's taps along an axis."""
    return value_call(KERNELS["taps_f32"].symbol, (n, x, taps, w, start), "ipppf", "f")


@intrinsic
def taps_f64(typingctx, n, x, taps, w, start):
    """:func:`taps_f32` of float64 values."""
    return value_call(KERNELS["taps_f64"].symbol, (n, x, taps, w, start), "ipppd", "d")


@intrinsic
def dot_rows_f32(typingctx, n, rows, count, a_stride, w_stride, out_stride, a, w, out):
    """:data:`DOT_ROWS` (the arrays as addresses, int64)."""
    return void_call(DOT_ROWS, (n, rows, count, a_stride, w_stride, out_stride, a, w, out), counts=6)
