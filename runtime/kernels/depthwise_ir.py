"""3x3 depthwise convolutions with pads of 1 at strides 1 and 2
(MobileNets' depthwise layers), as LLVM IR compiled for the host with
llvmlite (runtime.gemm.microkernel.compile_module), called per plane from
Numba.

One kernel call computes one output plane::

    void plane(float* x, i64 h, i64 w, float* y, i64 oh, i64 ow,
               float* wt, float bias, float lo, float hi, float* zeros)

``y[oy, ox] = clamp(bias + sum over (kh, kw) of wt[kh, kw] * x[s oy + kh - 1,
s ox + kw - 1], lo, hi)`` at stride ``s``, where reads outside the ``h x w``
plane count as zeros and ``clamp`` is numpy's ``minimum(maximum(v, lo),
hi)`` (NaN stays NaN; ±inf bounds clamp nothing). ``zeros`` points one
element into at least ``w + 2`` zeros: a kernel row above or below the
plane reads it instead of a row of ``x``, so no load needs a row test.
Each kernel row's three taps are a chain of fused multiply-adds (the first
row's from the bias), and the three rows' sums are added in order: three
short chains, not one of nine (7x7 planes 1.13x faster, 14x14 1.06x).

An output row is computed ``V`` columns at a time, with masked loads
(columns outside the plane read as zeros, never touched) and a masked store:

* stride 1: each tap is one load at its column offset;
* stride 2: for each kernel row, ``2V`` input columns are read with one
  load and split by a shuffle into the even columns (kernel column 1) and
  the odd ones (kernel column 2); kernel column 0 reads the odd columns one
  output to the left: the previous block's last odd column followed by this
  block's odd columns but its last (a second shuffle; zero at the left
  edge). The Numba kernel this replaced split every input row into its even
  and odd columns with scalar code first (14-wide planes: 6.3 cycles per
  output against 2.2 here).

Against the Numba kernel that computes a stride-1 plane as one flat pass
(runtime.kernels.nn_depthwise_3x3.depthwise_same_3x3, kept for float64) on
a copy of it between zero margins, one thread: 1.1x (14x14 to 56x56) to
1.4x (7x7, 112x112) faster; on two threads in MobileNetV2's schedule, where
the input comes from the other core too, its 14x14 and 7x7 layers take
25-30% less time (26-31 -> 19-23 us, 31 -> 21 us). Planes at most 8
outputs wide take a kernel of 8 lanes, wider ones 16 (AVX-512, or two AVX2
vectors).

The IR is generated as text, never as Python source, from ``V`` and the
stride alone.
"""
from __future__ import annotations

import threading

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from runtime.gemm.family import Isa, host_isa
from runtime.gemm.microkernel import compile_module
from runtime.jit import jit
from runtime.kernels.conv_epilogue import finish_row
from runtime.kernels.nn_depthwise_3x3 import pass_clamp
from runtime.parallel import drives, team_enter, team_leave, team_next

LANES = (8, 16)
"""Output columns per vector of the kernels, narrowest first: a plane takes
the first one at least as wide as its rows, else the last."""
STRIDES = (1, 2)


def _splat(name: str, value: str, lanes: int, kind: str) -> list[str]:
    return [f"  %{name}.i = insertelement <{lanes} x {kind}> poison, {kind} {value}, i64 0",
            f"  %{name} = shufflevector <{lanes} x {kind}> %{name}.i, <{lanes} x {kind}> poison, "
            f"<{lanes} x i32> zeroinitializer"]


def _constant(values, kind: str) -> str:
    return "<" + ", ".join(f"{kind} {v}" for v in values) + ">"


def _name(v: int, stride: int) -> str:
    return f"tessera_dw3x3s{stride}_{v}"


def _fma(v: int, out: str, weight: int, x: str, acc: str) -> str:
    return (f"  {out} = call <{v} x float> @llvm.fma.v{v}f32(<{v} x float> %w{weight}, <{v} x float> {x}, "
            f"<{v} x float> {acc})")


def _taps_stride1(v: int) -> tuple[list[str], list[str]]:
    """A block's taps at stride 1: (the lines, each kernel row's sum)."""
    lanes = _constant(range(v), "i32")
    lines = ["  %wc = sub i64 %w, %ox", "  %wc32 = trunc i64 %wc to i32", *_splat("wcv", "%wc32", v, "i32"),
             # column ox + lane + kw - 1 inside [0, w): kw = 1 below w - ox; kw = 2 below w - ox - 1; kw = 0 up
             # to w - ox, and not lane 0 of the first block
             f"  %mk1 = icmp slt <{v} x i32> {lanes}, %wcv",
             f"  %wc1 = sub <{v} x i32> %wcv, {_constant([1] * v, 'i32')}",
             f"  %mk2 = icmp slt <{v} x i32> {lanes}, %wc1",
             f"  %mk0a = icmp sle <{v} x i32> {lanes}, %wcv",
             "  %edge = icmp eq i64 %ox, 0",
             f"  %mk0b = select i1 %edge, <{v} x i1> {_constant(['false'] + ['true'] * (v - 1), 'i1')}, "
             f"<{v} x i1> {_constant(['true'] * v, 'i1')}",
             f"  %mk0 = and <{v} x i1> %mk0a, %mk0b"]
    sums = []
    for kh in range(3):
        acc = "%biasv" if kh == 0 else "zeroinitializer"
        for kw in range(3):
            t = f"{kh}{kw}"
            lines += [f"  %o{t} = add i64 %ox, {kw - 1}",
                      f"  %p{t} = getelementptr float, ptr %base{kh}, i64 %o{t}",
                      f"  %a{t} = call <{v} x float> @llvm.masked.load.v{v}f32.p0(ptr %p{t}, i32 4, "
                      f"<{v} x i1> %mk{kw}, <{v} x float> zeroinitializer)",
                      _fma(v, f"%s{t}", kh * 3 + kw, f"%a{t}", acc)]
            acc = f"%s{t}"
        sums.append(acc)
    return lines, sums


def _taps_stride2(v: int) -> tuple[list[str], list[str]]:
    """A block's taps at stride 2 (see the module docstring)."""
    wide = 2 * v
    even, odd = _constant(range(0, wide, 2), "i32"), _constant(range(1, wide, 2), "i32")
    left = _constant([v - 1] + [v + i for i in range(v - 1)], "i32")  # previous block's last, then ours but the last
    lines = ["  %c = shl i64 %ox, 1", "  %wc = sub i64 %w, %c", "  %wc32 = trunc i64 %wc to i32",
             *_splat("wcv", "%wc32", wide, "i32"),
             f"  %inside = icmp slt <{wide} x i32> {_constant(range(wide), 'i32')}, %wcv"]
    sums = []
    for kh in range(3):
        lines += [f"  %p{kh} = getelementptr float, ptr %base{kh}, i64 %c",
                  f"  %a{kh} = call <{wide} x float> @llvm.masked.load.v{wide}f32.p0(ptr %p{kh}, i32 4, "
                  f"<{wide} x i1> %inside, <{wide} x float> zeroinitializer)",
                  f"  %xe{kh} = shufflevector <{wide} x float> %a{kh}, <{wide} x float> poison, <{v} x i32> {even}",
                  f"  %xo{kh} = shufflevector <{wide} x float> %a{kh}, <{wide} x float> poison, <{v} x i32> {odd}",
                  f"  %xl{kh} = shufflevector <{v} x float> %prev{kh}, <{v} x float> %xo{kh}, <{v} x i32> {left}"]
        acc = "%biasv" if kh == 0 else "zeroinitializer"
        for kw, column in enumerate(("xl", "xe", "xo")):
            lines.append(_fma(v, f"%s{kh}{kw}", kh * 3 + kw, f"%{column}{kh}", acc))
            acc = f"%s{kh}{kw}"
        sums.append(acc)
    return lines, sums


def plane_ir(v: int, stride: int) -> str:
    """The plane kernel :func:`_name` ``(v, stride)`` (see the module docstring)."""
    lines = [f"define void @{_name(v, stride)}(ptr noalias readonly %x, i64 %h, i64 %w, ptr noalias %y, i64 %oh,"
             f" i64 %ow, ptr noalias readonly %wt, float %bias, float %lo, float %hi, ptr noalias readonly %zeros)"
             f" nounwind {{",
             "entry:"]
    for t in range(9):
        lines += [f"  %wp{t} = getelementptr float, ptr %wt, i64 {t}", f"  %ws{t} = load float, ptr %wp{t}"]
        lines += _splat(f"w{t}", f"%ws{t}", v, "float")
    for name in ("bias", "lo", "hi"):
        lines += _splat(f"{name}v", f"%{name}", v, "float")
    lines += ["  %rows = icmp sgt i64 %oh, 0", "  %cols = icmp sgt i64 %ow, 0", "  %any = and i1 %rows, %cols",
              "  br i1 %any, label %row, label %done",
              "row:",
              "  %oy = phi i64 [0, %entry], [%oy.next, %row.end]",
              f"  %top = mul i64 %oy, {stride}",
              "  %yrow = mul i64 %oy, %ow"]
    for kh in range(3):  # input row s oy + kh - 1, or the zeros outside the plane
        lines += [f"  %r{kh} = add i64 %top, {kh - 1}", f"  %ge{kh} = icmp sge i64 %r{kh}, 0",
                  f"  %lt{kh} = icmp slt i64 %r{kh}, %h", f"  %in{kh} = and i1 %ge{kh}, %lt{kh}",
                  f"  %off{kh} = mul i64 %r{kh}, %w", f"  %row{kh} = getelementptr float, ptr %x, i64 %off{kh}",
                  f"  %base{kh} = select i1 %in{kh}, ptr %row{kh}, ptr %zeros"]
    lines += ["  br label %block",
              "block:",
              "  %ox = phi i64 [0, %row], [%ox.next, %block]"]
    if stride == 2:
        lines += [f"  %prev{kh} = phi <{v} x float> [zeroinitializer, %row], [%xo{kh}, %block]" for kh in range(3)]
    taps, sums = (_taps_stride1 if stride == 1 else _taps_stride2)(v)
    lines += taps
    lines += [f"  %sum01 = fadd <{v} x float> {sums[0]}, {sums[1]}",
              f"  %sum = fadd <{v} x float> %sum01, {sums[2]}",
              f"  %ge = fcmp uge <{v} x float> %sum, %lov",  # numpy's maximum, then minimum: NaN stays
              f"  %up = select <{v} x i1> %ge, <{v} x float> %sum, <{v} x float> %lov",
              f"  %le = fcmp ule <{v} x float> %up, %hiv",
              f"  %out = select <{v} x i1> %le, <{v} x float> %up, <{v} x float> %hiv",
              "  %left = sub i64 %ow, %ox",
              "  %left32 = trunc i64 %left to i32",
              *_splat("leftv", "%left32", v, "i32"),
              f"  %keep = icmp slt <{v} x i32> {_constant(range(v), 'i32')}, %leftv",
              "  %yo = add i64 %yrow, %ox",
              "  %py = getelementptr float, ptr %y, i64 %yo",
              f"  call void @llvm.masked.store.v{v}f32.p0(<{v} x float> %out, ptr %py, i32 4, <{v} x i1> %keep)",
              f"  %ox.next = add i64 %ox, {v}",
              "  %more = icmp slt i64 %ox.next, %ow",
              "  br i1 %more, label %block, label %row.end",
              "row.end:",
              "  %oy.next = add i64 %oy, 1",
              "  %more.rows = icmp slt i64 %oy.next, %oh",
              "  br i1 %more.rows, label %row, label %done",
              "done:",
              "  ret void",
              "}"]
    return "\n".join(lines)


def module_ir() -> str:
    """Every kernel (each stride, each of :data:`LANES`), with the intrinsics they declare."""
    parts = ["; Tessera 3x3 depthwise plane kernels"]
    for n in sorted({*LANES, *(2 * v for v in LANES)}):
        parts += [f"declare <{n} x float> @llvm.masked.load.v{n}f32.p0(ptr, i32, <{n} x i1>, <{n} x float>)",
                  f"declare void @llvm.masked.store.v{n}f32.p0(<{n} x float>, ptr, i32, <{n} x i1>)",
                  f"declare <{n} x float> @llvm.fma.v{n}f32(<{n} x float>, <{n} x float>, <{n} x float>)"]
    return "\n".join(parts + [plane_ir(v, stride) for stride in STRIDES for v in LANES])


_compiled: dict[Isa, tuple] = {}
_lock = threading.Lock()


def kernel_addresses(stride: int, isa: Isa | None = None) -> np.ndarray:
    """The plane kernels' entry points at ``stride`` for ``isa`` (the host's
    family by default), in the order of :data:`LANES`; compiled (or loaded
    from the kernel cache) on first use, kept for the process."""
    if stride not in STRIDES:
        raise ValueError(f"no depthwise plane kernel for stride {stride} (strides: {STRIDES})")
    isa = host_isa() if isa is None else isa
    with _lock:
        if isa not in _compiled:
            engine, addresses = compile_module(f"depthwise-{isa.name}", module_ir(),
                                               [_name(v, s) for s in STRIDES for v in LANES], isa)
            tables = {s: addresses[i * len(LANES):(i + 1) * len(LANES)].copy() for i, s in enumerate(STRIDES)}
            _compiled[isa] = (engine, tables)
        return _compiled[isa][1][stride]


@intrinsic
def _call_plane(typingctx, address, x, h, w, y, oh, ow, wt, bias, lo, hi, zeros):
    """Call the plane kernel at ``address`` (x, y, wt and zeros are addresses)."""
    i64, f32 = types.int64, types.float32
    sig = types.void(i64, i64, i64, i64, i64, i64, i64, i64, f32, f32, f32, i64)

    def codegen(context, builder, signature, args):
        i64_t, ptr, f32_t = ir.IntType(64), ir.PointerType(), ir.FloatType()
        fnty = ir.FunctionType(ir.VoidType(), [ptr, i64_t, i64_t, ptr, i64_t, i64_t, ptr, f32_t, f32_t, f32_t, ptr])
        target = builder.inttoptr(args[0], ir.PointerType(fnty))
        x_ptr, y_ptr, w_ptr, zeros_ptr = (builder.inttoptr(args[i], ptr) for i in (1, 4, 7, 11))
        builder.call(target, [x_ptr, args[2], args[3], y_ptr, args[5], args[6], w_ptr, *args[8:11], zeros_ptr])
        return context.get_dummy_value()

    return sig, codegen


@jit
def depthwise_3x3_ir(start, stop, x, w, b, out, res, clamp, flags, kernels, stride):
    """Output planes [start, stop) (index n*K + k) of a 2-D depthwise 3x3
    convolution of float32 planes at ``stride`` (1 or 2, both axes), unit
    dilations and one pixel of padding on every side (out: (N, K, (H - 1) //
    stride + 1, (W - 1) // stride + 1)), then the epilogue as in
    runtime.kernels.nn_depthwise_3x3's kernels: the bias, the residual
    ``res`` (flags[0]) and the clamp (flags[1]). ``kernels``:
    :func:`kernel_addresses` of that stride. Every array is float32 and
    C-contiguous (the callers' lift and the schedule's operands are)."""
    batch, chans, height, width = x.shape
    _, out_c, out_h, out_w = out.shape
    if (w.shape[0] != out_c or b.shape[0] != out_c or res.shape != out.shape or chans == 0 or height == 0
            or width == 0 or out_h != (height - 1) // stride + 1 or out_w != (width - 1) // stride + 1):
        return
    mult = max(out_c // chans, 1)
    lo, hi = pass_clamp(clamp, flags)
    address = kernels[0] if out_w <= LANES[0] else kernels[1]
    plane, size = height * width, out_h * out_w
    zeros = np.zeros(width + 2, np.float32)
    src, dst, extra = x.reshape(-1), out.reshape(-1), res.reshape(-1)  # reshape raises unless contiguous
    x_at, y_at, w_at, zeros_at = src.ctypes.data, dst.ctypes.data, w.reshape(-1).ctypes.data, zeros.ctypes.data + 4
    for p in range(start, min(stop, batch * out_c)):
        k = p % out_c
        c = k // mult
        if c >= chans:
            continue
        _call_plane(address, x_at + ((p // out_c) * chans + c) * plane * 4, height, width, y_at + p * size * 4,
                    out_h, out_w, w_at + k * 36, b[k], lo, hi, zeros_at)
        if flags[0]:
            o = dst[p * size:(p + 1) * size]
            finish_row(o, o, extra[p * size:(p + 1) * size], clamp[0], clamp[1], True, flags[1])


@drives(depthwise_3x3_ir)
@jit
def _depthwise_3x3_ir_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        depthwise_3x3_ir(spans[index, 0], spans[index, 1], *args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)
