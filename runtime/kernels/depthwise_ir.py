"""3x3 depthwise convolutions at stride 2 with pads of 1 (MobileNets'
down-sampling layers), as LLVM IR compiled for the host with llvmlite
(runtime.gemm.microkernel.compile_module), called per plane from Numba.

One kernel call computes one output plane::

    void plane(float* x, i64 h, i64 w, float* y, i64 oh, i64 ow,
               float* wt, float bias, float lo, float hi)

``y[oy, ox] = clamp(bias + sum over (kh, kw) of wt[kh, kw] * x[2 oy + kh - 1,
2 ox + kw - 1], lo, hi)``, where reads outside the ``h x w`` plane count as
zeros and ``clamp`` is numpy's ``minimum(maximum(v, lo), hi)`` (NaN stays
NaN; ±inf bounds clamp nothing). The sum is a chain of fused multiply-adds
in the order of the taps, from the bias.

An output row is computed ``V`` columns at a time: for each kernel row,
``2V`` input columns are read with one masked load (columns past the plane,
and rows outside it, read as zeros) and split by a shuffle into the even
columns (kernel column 1) and the odd ones (kernel column 2); kernel column
0 reads the odd columns one output to the left, which is the previous
block's last odd column followed by this block's odd columns but its last
(a second shuffle; zero at the left edge). So the stride-2 reads cost no
copy of the plane: the Numba kernel they replace split every input row into
its even and odd columns with scalar code first (14-wide planes: 6.3 cycles
per output, against 2.2 here). Planes at most 8 outputs wide take a kernel
of 8 lanes, wider ones 16 (AVX-512 or two AVX2 vectors).

The IR is generated as text, never as Python source, from ``V`` alone.
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
from runtime.kernels.nn_depthwise_3x3 import _pass_clamp
from runtime.parallel import drives, team_enter, team_leave, team_next

LANES = (8, 16)
"""Output columns per vector of the kernels, narrowest first: a plane takes
the first one at least as wide as its rows, else the last."""


def _splat(name: str, value: str, lanes: int, kind: str) -> list[str]:
    return [f"  %{name}.i = insertelement <{lanes} x {kind}> poison, {kind} {value}, i64 0",
            f"  %{name} = shufflevector <{lanes} x {kind}> %{name}.i, <{lanes} x {kind}> poison, "
            f"<{lanes} x i32> zeroinitializer"]


def _constant(values, kind: str) -> str:
    return "<" + ", ".join(f"{kind} {v}" for v in values) + ">"


def plane_ir(v: int) -> str:
    """The plane kernel ``tessera_dw3x3s2_<v>`` (see the module docstring)."""
    wide = 2 * v
    even, odd = _constant(range(0, wide, 2), "i32"), _constant(range(1, wide, 2), "i32")
    left = _constant([v - 1] + [v + i for i in range(v - 1)], "i32")  # previous block's last, then ours but the last
    lines = [f"define void @tessera_dw3x3s2_{v}(ptr noalias readonly %x, i64 %h, i64 %w, ptr noalias %y, i64 %oh,"
             f" i64 %ow, ptr noalias readonly %wt, float %bias, float %lo, float %hi) nounwind {{",
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
              "  %top = shl i64 %oy, 1",
              "  %yrow = mul i64 %oy, %ow"]
    for kh in range(3):  # input row 2 oy + kh - 1: its offset, and whether it is inside the plane
        lines += [f"  %r{kh} = add i64 %top, {kh - 1}", f"  %ge{kh} = icmp sge i64 %r{kh}, 0",
                  f"  %lt{kh} = icmp slt i64 %r{kh}, %h", f"  %in{kh} = and i1 %ge{kh}, %lt{kh}",
                  f"  %off{kh} = mul i64 %r{kh}, %w"]
    lines += ["  br label %block",
              "block:",
              "  %ox = phi i64 [0, %row], [%ox.next, %block]"]
    for kh in range(3):
        lines.append(f"  %prev{kh} = phi <{v} x float> [zeroinitializer, %row], [%xo{kh}, %block]")
    lines += ["  %c = shl i64 %ox, 1",
              "  %wc = sub i64 %w, %c",
              "  %wc32 = trunc i64 %wc to i32"]
    lines += _splat("wcv", "%wc32", wide, "i32")
    lines.append(f"  %inside = icmp slt <{wide} x i32> {_constant(range(wide), 'i32')}, %wcv")
    acc = "%biasv"
    for kh in range(3):
        lines += [f"  %m{kh} = select i1 %in{kh}, <{wide} x i1> %inside, <{wide} x i1> zeroinitializer",
                  f"  %o{kh} = add i64 %off{kh}, %c",
                  f"  %p{kh} = getelementptr float, ptr %x, i64 %o{kh}",
                  f"  %a{kh} = call <{wide} x float> @llvm.masked.load.v{wide}f32.p0(ptr %p{kh}, i32 4, "
                  f"<{wide} x i1> %m{kh}, <{wide} x float> zeroinitializer)",
                  f"  %xe{kh} = shufflevector <{wide} x float> %a{kh}, <{wide} x float> poison, <{v} x i32> {even}",
                  f"  %xo{kh} = shufflevector <{wide} x float> %a{kh}, <{wide} x float> poison, <{v} x i32> {odd}",
                  f"  %xl{kh} = shufflevector <{v} x float> %prev{kh}, <{v} x float> %xo{kh}, <{v} x i32> {left}"]
        for kw, column in enumerate(("xl", "xe", "xo")):
            lines.append(f"  %s{kh}{kw} = call <{v} x float> @llvm.fma.v{v}f32(<{v} x float> %w{kh * 3 + kw}, "
                         f"<{v} x float> %{column}{kh}, <{v} x float> {acc})")
            acc = f"%s{kh}{kw}"
    lines += [f"  %ge = fcmp uge <{v} x float> {acc}, %lov",  # numpy's maximum, then minimum: NaN stays
              f"  %up = select <{v} x i1> %ge, <{v} x float> {acc}, <{v} x float> %lov",
              f"  %le = fcmp ule <{v} x float> %up, %hiv",
              f"  %out = select <{v} x i1> %le, <{v} x float> %up, <{v} x float> %hiv",
              "  %left = sub i64 %ow, %ox",
              "  %left32 = trunc i64 %left to i32"]
    lines += _splat("leftv", "%left32", v, "i32")
    lines += [f"  %keep = icmp slt <{v} x i32> {_constant(range(v), 'i32')}, %leftv",
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
    """Every kernel of :data:`LANES`, with the intrinsics they declare."""
    parts = ["; Tessera stride-2 3x3 depthwise plane kernels"]
    for v in LANES:
        parts += [f"declare <{2 * v} x float> @llvm.masked.load.v{2 * v}f32.p0(ptr, i32, <{2 * v} x i1>, "
                  f"<{2 * v} x float>)",
                  f"declare void @llvm.masked.store.v{v}f32.p0(<{v} x float>, ptr, i32, <{v} x i1>)",
                  f"declare <{v} x float> @llvm.fma.v{v}f32(<{v} x float>, <{v} x float>, <{v} x float>)"]
    return "\n".join(parts + [plane_ir(v) for v in LANES])


_compiled: dict[Isa, tuple] = {}
_lock = threading.Lock()


def kernel_addresses(isa: Isa | None = None) -> np.ndarray:
    """The plane kernels' entry points for ``isa`` (the host's family by
    default), in the order of :data:`LANES`; compiled (or loaded from the
    kernel cache) on first use, kept for the process."""
    isa = host_isa() if isa is None else isa
    with _lock:
        if isa not in _compiled:
            _compiled[isa] = compile_module(f"depthwise-s2-{isa.name}", module_ir(),
                                            [f"tessera_dw3x3s2_{v}" for v in LANES], isa)
        return _compiled[isa][1]


@intrinsic
def _call_plane(typingctx, address, x, h, w, y, oh, ow, wt, bias, lo, hi):
    """Call the plane kernel at ``address`` (x, y and wt are addresses)."""
    i64, f32 = types.int64, types.float32
    sig = types.void(i64, i64, i64, i64, i64, i64, i64, i64, f32, f32, f32)

    def codegen(context, builder, signature, args):
        i64_t, ptr, f32_t = ir.IntType(64), ir.PointerType(), ir.FloatType()
        fnty = ir.FunctionType(ir.VoidType(), [ptr, i64_t, i64_t, ptr, i64_t, i64_t, ptr, f32_t, f32_t, f32_t])
        target = builder.inttoptr(args[0], ir.PointerType(fnty))
        x_ptr, y_ptr, w_ptr = (builder.inttoptr(args[i], ptr) for i in (1, 4, 7))
        builder.call(target, [x_ptr, args[2], args[3], y_ptr, args[5], args[6], w_ptr, *args[8:]])
        return context.get_dummy_value()

    return sig, codegen


@jit
def depthwise_s2_3x3(start, stop, x, w, b, out, res, clamp, flags, kernels):
    """Output planes [start, stop) (index n*K + k) of a 2-D depthwise 3x3
    convolution of float32 planes at strides 2, unit dilations and one
    pixel of padding on every side (out: (N, K, (H + 1) // 2, (W + 1) // 2)),
    then the epilogue as in runtime.kernels.nn_depthwise_3x3's kernels:
    the bias, the residual ``res`` (flags[0]) and the clamp (flags[1]).
    ``kernels``: :func:`kernel_addresses`. Every array is C-contiguous
    (the callers' lift and the schedule's operands are)."""
    batch, chans, height, width = x.shape
    _, out_c, out_h, out_w = out.shape
    if (w.shape[0] != out_c or b.shape[0] != out_c or res.shape != out.shape or chans == 0
            or out_h != (height + 1) // 2 or out_w != (width + 1) // 2 or out_w == 0):
        return
    mult = max(out_c // chans, 1)
    lo, hi = _pass_clamp(clamp, flags)
    address = kernels[0] if out_w <= 8 else kernels[1]
    plane, size = height * width, out_h * out_w
    x_at, y_at, w_at = x.ctypes.data, out.ctypes.data, w.ctypes.data
    dst, extra = out.reshape(-1), res.reshape(-1)
    for p in range(start, min(stop, batch * out_c)):
        k = p % out_c
        c = k // mult
        if c >= chans:
            continue
        _call_plane(address, x_at + ((p // out_c) * chans + c) * plane * 4, height, width, y_at + p * size * 4,
                    out_h, out_w, w_at + k * 36, b[k], lo, hi)
        if flags[0]:
            o = dst[p * size:(p + 1) * size]
            finish_row(o, o, extra[p * size:(p + 1) * size], clamp[0], clamp[1], True, flags[1])


@drives(depthwise_s2_3x3)
@jit
def _depthwise_s2_3x3_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        depthwise_s2_3x3(spans[index, 0], spans[index, 1], *args)
        index = team_next(team, True)
    return team_leave(team, state, role)
