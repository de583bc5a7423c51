"""Depthwise convolutions by square kernels with pads of half their size at
strides 1 and 2 (3x3: MobileNets' depthwise layers; 5x5 and 7x7: PP-LCNet's,
MnasNet's, EfficientNet's), as LLVM IR compiled for the host with llvmlite
(runtime.gemm.microkernel.compile_module, one module per kernel size),
called per plane from Numba. What follows describes the 3x3 kernels; the
5x5 and 7x7 ones differ where said at the end.

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

Output rows are computed :data:`ROWS` at a time (they load the input rows
they share once), ``V`` columns at a time, with masked loads (columns
outside the plane read as zeros, never touched) and plain stores, masked
only where a block passes its row's end and its lanes could not spill onto
later rows of the plane (:func:`_store_row`: AMD microcodes masked stores;
14x14 planes, one thread, Zen 3: 62-66 -> 46 us for 256 of them):

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
(depthwise_same_3x3, since removed) on
a copy of it between zero margins, one thread: 1.1x (14x14 to 56x56) to
1.4x (7x7, 112x112) faster; on two threads in MobileNetV2's schedule, where
the input comes from the other core too, its 14x14 and 7x7 layers take
25-30% less time (26-31 -> 19-23 us, 31 -> 21 us). Planes at most 8
outputs wide take a kernel of 8 lanes, wider ones 16 (AVX-512, or two AVX2
vectors).

5x5 and 7x7 kernels (:data:`SIZES`): the same loops with S taps a row and
pads of S // 2, but each output's sum is one chain of fused multiply-adds
from the bias over the taps in (kh, kw) order, the Numba kernels' order
(runtime.kernels.nn_depthwise), so that the layers they took over keep their
bits; at stride 2 each tap is one masked load of ``2V`` columns and its even
lanes. PP-LCNet's 5x5 layers, two threads: 256 x 14 x 14 0.29 -> 0.10 ms,
512 x 7 x 7 0.27 -> 0.08 ms, stride 2 0.33 -> 0.11 ms (the Numba kernels,
which also left the compiled schedule for Python at each such layer).

The IR is generated as text, never as Python source, from ``V``, the
stride and the kernel size alone.
"""
from __future__ import annotations

import threading

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from runtime.gemm.family import Isa, host_isa
from runtime.gemm.microkernel import compile_module
from runtime.jit import flat_view, jit
from runtime.kernels.conv_epilogue import finish_row, gate_run
from runtime.kernels.nn_depthwise_3x3 import pass_clamp
from runtime.parallel import drives
from runtime.pool_protocol import team_enter, team_leave, team_next
from runtime.unlinked import call_unlinked

LANES = (8, 16)
"""Output columns per vector of the kernels, narrowest first: a plane takes
the first one at least as wide as its rows, else the last."""
SIZES = {3: (1, 2), 5: (1, 2), 7: (1, 2)}
"""The square kernel sizes that have plane kernels (pads of ``size // 2``),
and the strides each has."""
STRIDES = SIZES[3]


def _splat(name: str, value: str, lanes: int, kind: str) -> list[str]:
    return [f"  %{name}.i = insertelement <{lanes} x {kind}> poison, {kind} {value}, i64 0",
            f"  %{name} = shufflevector <{lanes} x {kind}> %{name}.i, <{lanes} x {kind}> poison, "
            f"<{lanes} x i32> zeroinitializer"]


def _splats(v: int, taps: int) -> list[str]:
    """The kernel's weights ``%w{t}``, bias and clamp bounds as ``v``-lane vectors."""
    lines = []
    for t in range(taps):
        lines += [f"  %wp{t} = getelementptr float, ptr %wt, i64 {t}", f"  %ws{t} = load float, ptr %wp{t}",
                  *_splat(f"w{t}", f"%ws{t}", v, "float")]
    for name in ("bias", "lo", "hi"):
        lines += _splat(f"{name}v", f"%{name}", v, "float")
    return lines


def _constant(values, kind: str) -> str:
    return "<" + ", ".join(f"{kind} {v}" for v in values) + ">"


def _name(v: int, stride: int, ksize: int = 3) -> str:
    return f"tessera_dw{ksize}x{ksize}s{stride}_{v}"


def _fma(v: int, out: str, weight: int, x: str, acc: str) -> str:
    return (f"  {out} = call <{v} x float> @llvm.fma.v{v}f32(<{v} x float> %w{weight}, <{v} x float> {x}, "
            f"<{v} x float> {acc})")


def _column_masks(q: str, lanes: int, first: str, ksize: int) -> list[str]:
    """A block's column masks: ``%{q}mk{kw}`` holds the lanes ``i`` of the
    ``lanes`` input columns from ``first + kw - pad`` (``first``: the
    block's first output column times the stride) that lie inside the row,
    ``[0, w)``."""
    constant = _constant(range(lanes), "i32")
    lines = [f"  %{q}wc = sub i64 %w, {first}", f"  %{q}wc32 = trunc i64 %{q}wc to i32",
             *_splat(f"{q}wcv", f"%{q}wc32", lanes, "i32"),
             f"  %{q}first32 = trunc i64 {first} to i32", *_splat(f"{q}firstv", f"%{q}first32", lanes, "i32")]
    for kw in range(ksize):
        # lane i reads column first + i + shift: below w when i < wc - shift, not left of 0 when i >= -shift - first
        shift = kw - ksize // 2
        below = f"%{q}mk{kw}" if shift >= 0 else f"%{q}up{kw}"  # no left edge to check when shift >= 0
        lines += [f"  %{q}hi{kw} = sub <{lanes} x i32> %{q}wcv, {_constant([shift] * lanes, 'i32')}",
                  f"  {below} = icmp slt <{lanes} x i32> {constant}, %{q}hi{kw}"]
        if shift < 0:
            lines += [f"  %{q}lo{kw} = sub <{lanes} x i32> {_constant([-shift] * lanes, 'i32')}, %{q}firstv",
                      f"  %{q}dn{kw} = icmp sge <{lanes} x i32> {constant}, %{q}lo{kw}",
                      f"  %{q}mk{kw} = and <{lanes} x i1> %{q}up{kw}, %{q}dn{kw}"]
    return lines


def _inputs_stride1(v: int, q: str, j: int, ksize: int) -> tuple[list[str], list[str]]:
    """Input row ``j`` of a block at stride 1: its ``ksize`` taps' vectors."""
    lines, taps = [], []
    for kw in range(ksize):
        t = f"{q}{j}_{kw}"
        lines += [f"  %o{t} = add i64 %{q}ox, {kw - ksize // 2}",
                  f"  %p{t} = getelementptr float, ptr %{q}base{j}, i64 %o{t}",
                  f"  %a{t} = call <{v} x float> @llvm.masked.load.v{v}f32.p0(ptr %p{t}, i32 4, "
                  f"<{v} x i1> %{q}mk{kw}, <{v} x float> zeroinitializer)"]
        taps.append(f"%a{t}")
    return lines, taps


def _inputs_stride2_wide(v: int, q: str, j: int, ksize: int) -> tuple[list[str], list[str]]:
    """Input row ``j`` of a block at stride 2 for kernels other than 3x3:
    per kernel column, one masked load of the ``2V`` columns from ``2 ox +
    kw - pad`` and its even lanes."""
    wide, lines, taps = 2 * v, [], []
    even = _constant(range(0, wide, 2), "i32")
    for kw in range(ksize):
        t = f"{q}{j}_{kw}"
        lines += [f"  %o{t} = add i64 %{q}c, {kw - ksize // 2}",
                  f"  %p{t} = getelementptr float, ptr %{q}base{j}, i64 %o{t}",
                  f"  %a{t} = call <{wide} x float> @llvm.masked.load.v{wide}f32.p0(ptr %p{t}, i32 4, "
                  f"<{wide} x i1> %{q}mk{kw}, <{wide} x float> zeroinitializer)",
                  f"  %e{t} = shufflevector <{wide} x float> %a{t}, <{wide} x float> poison, <{v} x i32> {even}"]
        taps.append(f"%e{t}")
    return lines, taps


def _inputs_stride2(v: int, q: str, j: int, ksize: int) -> tuple[list[str], list[str]]:
    """Input row ``j`` of a block at stride 2 (see the module docstring):
    the vectors of kernel columns 0 (the odd columns one output to the
    left), 1 (even) and 2 (odd)."""
    if ksize != 3:
        return _inputs_stride2_wide(v, q, j, ksize)
    wide = 2 * v
    even, odd = _constant(range(0, wide, 2), "i32"), _constant(range(1, wide, 2), "i32")
    left = _constant([v - 1] + [v + i for i in range(v - 1)], "i32")  # previous block's last, then ours but the last
    r = f"{q}{j}"
    lines = [f"  %p{r} = getelementptr float, ptr %{q}base{j}, i64 %{q}c",
             f"  %a{r} = call <{wide} x float> @llvm.masked.load.v{wide}f32.p0(ptr %p{r}, i32 4, "
             f"<{wide} x i1> %{q}inside, <{wide} x float> zeroinitializer)",
             f"  %xe{r} = shufflevector <{wide} x float> %a{r}, <{wide} x float> poison, <{v} x i32> {even}",
             f"  %xo{r} = shufflevector <{wide} x float> %a{r}, <{wide} x float> poison, <{v} x i32> {odd}",
             f"  %xl{r} = shufflevector <{v} x float> %{q}prev{j}, <{v} x float> %xo{r}, <{v} x i32> {left}"]
    return lines, [f"%xl{r}", f"%xe{r}", f"%xo{r}"]


def _row_loop(v: int, stride: int, rows: int, q: str, enter: tuple[str, str], exit_label: str,
              ksize: int = 3) -> list[str]:
    """A loop over output rows ``rows`` at a time, from ``enter`` = (the
    label it is entered from, the first row) while ``rows`` more fit below
    ``%oh``; every value named with the prefix ``q``. Each block of ``V``
    columns loads the ``stride * (rows - 1) + ksize`` input rows its output
    rows read once, and output row ``r`` combines rows ``stride * r + kh``."""
    inputs, pad = stride * (rows - 1) + ksize, ksize // 2
    vec = f"<{v} x float>"
    pred, first = enter
    lines = [f"  %{q}fits = add i64 {first}, {rows}",
             f"  %{q}go = icmp sle i64 %{q}fits, %oh",
             f"  br i1 %{q}go, label %{q}row, label %{exit_label}",
             f"{q}row:",
             f"  %{q}oy = phi i64 [{first}, %{pred}], [%{q}oy.next, %{q}row.end]",
             f"  %{q}top = mul i64 %{q}oy, {stride}"]
    for j in range(inputs):  # input row s oy + j - pad, or the zeros outside the plane
        lines += [f"  %{q}r{j} = add i64 %{q}top, {j - pad}", f"  %{q}ge{j} = icmp sge i64 %{q}r{j}, 0",
                  f"  %{q}lt{j} = icmp slt i64 %{q}r{j}, %h", f"  %{q}in{j} = and i1 %{q}ge{j}, %{q}lt{j}",
                  f"  %{q}off{j} = mul i64 %{q}r{j}, %w",
                  f"  %{q}rowp{j} = getelementptr float, ptr %x, i64 %{q}off{j}",
                  f"  %{q}base{j} = select i1 %{q}in{j}, ptr %{q}rowp{j}, ptr %zeros"]
    lines += [f"  br label %{q}block",
              f"{q}block:",
              f"  %{q}ox = phi i64 [0, %{q}row], [%{q}ox.next, %{q}{rows - 1}.stored]"]
    if stride == 2:
        wide = 2 * v
        if ksize == 3:
            lines += [f"  %{q}prev{j} = phi {vec} [zeroinitializer, %{q}row], [%xo{q}{j}, %{q}{rows - 1}.stored]"
                      for j in range(inputs)]
        lines.append(f"  %{q}c = shl i64 %{q}ox, 1")
        if ksize == 3:
            lines += [f"  %{q}wc = sub i64 %w, %{q}c", f"  %{q}wc32 = trunc i64 %{q}wc to i32",
                      *_splat(f"{q}wcv", f"%{q}wc32", wide, "i32"),
                      f"  %{q}inside = icmp slt <{wide} x i32> {_constant(range(wide), 'i32')}, %{q}wcv"]
        else:
            lines += _column_masks(q, wide, f"%{q}c", ksize)
    else:
        lines += _column_masks(q, v, f"%{q}ox", ksize)
    taps = []
    for j in range(inputs):
        more, row = (_inputs_stride1 if stride == 1 else _inputs_stride2)(v, q, j, ksize)
        lines += more
        taps.append(row)
    lines += [f"  %{q}left = sub i64 %ow, %{q}ox", f"  %{q}left32 = trunc i64 %{q}left to i32",
              *_splat(f"{q}leftv", f"%{q}left32", v, "i32"),
              f"  %{q}keep = icmp slt <{v} x i32> {_constant(range(v), 'i32')}, %{q}leftv"]
    for r in range(rows):
        o = f"{q}{r}"
        lines += _sum_3x3(v, q, r, stride, taps) if ksize == 3 else _sum_in_order(v, q, r, stride, taps, ksize)
        lines += [*_clamp(v, o),
                  f"  %yrow{o} = add i64 %{q}oy, {r}",
                  f"  %yoff{o} = mul i64 %yrow{o}, %ow",
                  f"  %yo{o} = add i64 %yoff{o}, %{q}ox",
                  f"  %py{o} = getelementptr float, ptr %y, i64 %yo{o}"]
    lines += [f"  %{q}ox.next = add i64 %{q}ox, {v}", f"  %{q}whole = icmp sle i64 %{q}ox.next, %ow"]
    for r in range(rows):
        lines += _store_row(v, f"{q}{r}", f"%{q}whole", f"%{q}keep")
    lines += [f"  %{q}more = icmp slt i64 %{q}ox.next, %ow",
              f"  br i1 %{q}more, label %{q}block, label %{q}row.end",
              f"{q}row.end:",
              f"  %{q}oy.next = add i64 %{q}oy, {rows}",
              f"  %{q}next.fits = add i64 %{q}oy.next, {rows}",
              f"  %{q}more.rows = icmp sle i64 %{q}next.fits, %oh",
              f"  br i1 %{q}more.rows, label %{q}row, label %{exit_label}"]
    return lines


def _clamp(v: int, o: str) -> list[str]:
    """``%out{o}``: ``%sum{o}`` clamped to [lo, hi] as numpy's maximum,
    then minimum (NaN stays NaN)."""
    vec = f"<{v} x float>"
    return [f"  %ge{o} = fcmp uge {vec} %sum{o}, %lov",
            f"  %up{o} = select <{v} x i1> %ge{o}, {vec} %sum{o}, {vec} %lov",
            f"  %le{o} = fcmp ule {vec} %up{o}, %hiv",
            f"  %out{o} = select <{v} x i1> %le{o}, {vec} %up{o}, {vec} %hiv"]


def _store_row(v: int, o: str, whole: str, keep: str) -> list[str]:
    """Store output row ``o``'s block ``%out{o}`` at ``%py{o}`` (element
    ``%yo{o}`` of the plane): a plain store where the block lies inside its
    row (``whole``), or where rows are one block (``%narrow``) and the
    vector ends inside the plane: its lanes past the row's end fall on the
    next rows' first outputs, which are stored after it (rows go in order),
    so they end right. Else a masked store (``keep``), which AMD's Zen
    cores microcode: one a ~15 cycles on Zen 3, against two plain stores a
    cycle, and one or two a row made 14-wide planes store-bound there.
    The block ends at label ``{o}.stored``."""
    vec = f"<{v} x float>"
    return [f"  %end{o} = add i64 %yo{o}, {v}",
            f"  %inplane{o} = icmp sle i64 %end{o}, %plane",
            f"  %spill{o} = and i1 %narrow, %inplane{o}",
            f"  %plain{o} = or i1 {whole}, %spill{o}",
            f"  br i1 %plain{o}, label %{o}.plain, label %{o}.masked",
            f"{o}.plain:",
            f"  store {vec} %out{o}, ptr %py{o}, align 4",
            f"  br label %{o}.stored",
            f"{o}.masked:",
            f"  call void @llvm.masked.store.v{v}f32.p0({vec} %out{o}, ptr %py{o}, i32 4, <{v} x i1> {keep})",
            f"  br label %{o}.stored",
            f"{o}.stored:"]


def _sum_3x3(v: int, q: str, r: int, stride: int, taps: list) -> list[str]:
    """Output row ``r``'s sum ``%sum{q}{r}`` of a 3x3 kernel: a chain of
    fused multiply-adds per kernel row (the first from the bias), the three
    added in order."""
    lines, sums, o = [], [], f"{q}{r}"
    for kh in range(3):
        acc = "%biasv" if kh == 0 else "zeroinitializer"
        for kw in range(3):
            out = f"%s{q}{r}_{kh}{kw}"
            lines.append(_fma(v, out, kh * 3 + kw, taps[stride * r + kh][kw], acc))
            acc = out
        sums.append(acc)
    return lines + [f"  %sum01{o} = fadd <{v} x float> {sums[0]}, {sums[1]}",
                    f"  %sum{o} = fadd <{v} x float> %sum01{o}, {sums[2]}"]


def _sum_in_order(v: int, q: str, r: int, stride: int, taps: list, ksize: int) -> list[str]:
    """Output row ``r``'s sum ``%sum{q}{r}`` of a ``ksize`` x ``ksize``
    kernel as the Numba kernels compute it (runtime.kernels.nn_depthwise,
    compiled with contraction: one chain of fused multiply-adds from the
    bias over the taps in (kh, kw) order; a tap outside the plane adds its
    weight times zero), so that the layers these kernels took over keep
    their bits."""
    lines, acc = [], "%biasv"
    for kh in range(ksize):
        for kw in range(ksize):
            out = f"%sum{q}{r}" if (kh, kw) == (ksize - 1, ksize - 1) else f"%s{q}{r}_{kh}_{kw}"
            lines.append(_fma(v, out, kh * ksize + kw, taps[stride * r + kh][kw], acc))
            acc = out
    return lines


ROWS = {1: 4, 2: 1}
"""Output rows a trip of a plane kernel's main loop computes, by stride,
loading the input rows they share once (the last rows take a loop of
one). At stride 1, four rows read six input rows, 18 loads where one row at
a time made 36: one thread, 144 x 56 x 56 17.2 -> 11.9 cycles per 16
outputs, 192 x 28 x 28 17.8 -> 11.7, 384 x 14 x 14 18.6 -> 14.5;
MobileNetV2's float run 3.4% faster (in-process A/B on two threads,
Sapphire Rapids), the same bits. At stride 2, two rows a trip gained
nothing measurable."""


def plane_ir(v: int, stride: int, ksize: int = 3) -> str:
    """The plane kernel :func:`_name` ``(v, stride, ksize)`` (see the module docstring)."""
    lines = [f"define void @{_name(v, stride, ksize)}(ptr noalias readonly %x, i64 %h, i64 %w, ptr noalias %y, i64 %oh,"
             f" i64 %ow, ptr noalias readonly %wt, float %bias, float %lo, float %hi, ptr noalias readonly %zeros)"
             f" nounwind {{",
             "entry:"]
    lines += _splats(v, ksize * ksize)
    lines += ["  %plane = mul i64 %oh, %ow",
              f"  %narrow = icmp sle i64 %ow, {v}",
              "  %cols = icmp sgt i64 %ow, 0",
              "  br i1 %cols, label %main, label %done",
              "main:"]
    lines += _row_loop(v, stride, ROWS[stride], "m", ("main", "0"), "rest", ksize)
    lines += ["rest:",
              "  %from = phi i64 [0, %main], [%moy.next, %mrow.end]"]
    lines += _row_loop(v, stride, 1, "t", ("rest", "%from"), "done", ksize)
    lines += ["done:", "  ret void", "}"]
    return "\n".join(lines)


FLAT = 16
"""Outputs per vector of the flat kernels (:func:`flat_ir`): a tap's mask
is one uint16 (:func:`flat_masks`)."""


def flat_ir(ksize: int) -> str:
    """The flat kernel of ``ksize`` (stride 1) for a plane of at most
    :data:`FLAT` outputs, whatever its rows' width: the plane's outputs as
    one vector. Tap (kh, kw) is one masked load from element ``(kh - pad) w
    + kw - pad`` of the plane, its lanes those ``%masks`` gives
    (:func:`flat_masks`: outputs whose tap lies inside the plane); the
    sums, clamp and store as the row kernels', so the same bits.
    :func:`depthwise_ir_planes` takes it for such planes in rows of at most
    ``LANES[0]``, where the row kernel loads each tap once per output row
    (a 3 x 3 plane: three loads of 8 lanes, three used, where this makes
    one): MobileNetV2 at 96 x 96, 960 channels of 3 x 3, two threads, Zen
    4: 13.2-14.5 -> 8.7-9.8 us a layer (in-process A/B). Over larger
    planes, a vector at a time, it gained no more than it lost: it loads a
    mask per tap and vector for every plane, where the row kernel's rows
    share their input rows' loads (6 x 6, 384 channels: 10.9-13.4 against
    9.3-12.9 us, in four runs better and worse by turns)."""
    v, taps, pad = FLAT, ksize * ksize, ksize // 2
    vec = f"<{v} x float>"
    lines = [f"define void @{_flat_name(ksize)}(ptr noalias readonly %x, i64 %h, i64 %w, ptr noalias %y, i64 %oh,"
             f" i64 %ow, ptr noalias readonly %wt, float %bias, float %lo, float %hi, ptr noalias readonly %masks)"
             f" nounwind {{",
             "entry:"]
    lines += _splats(v, taps)
    rows = []
    for t in range(taps + 1):  # each tap's lanes, then the outputs inside the plane
        lines += [f"  %mp{t} = getelementptr i{v}, ptr %masks, i64 {t}",
                  f"  %mi{t} = load i{v}, ptr %mp{t}, align {v // 8}",
                  f"  %mk{t} = bitcast i{v} %mi{t} to <{v} x i1>"]
    for t in range(taps):
        kh, kw = divmod(t, ksize)
        if kw == 0:
            rows.append([])
        lines += [f"  %dy{t} = mul i64 %w, {kh - pad}", f"  %xo{t} = add i64 %dy{t}, {kw - pad}",
                  f"  %xp{t} = getelementptr float, ptr %x, i64 %xo{t}",
                  f"  %a{t} = call {vec} @llvm.masked.load.v{v}f32.p0(ptr %xp{t}, i32 4, <{v} x i1> %mk{t}, "
                  f"{vec} zeroinitializer)"]
        rows[-1].append(f"%a{t}")
    lines += _sum_3x3(v, "f", 0, 1, rows) if ksize == 3 else _sum_in_order(v, "f", 0, 1, rows, ksize)
    lines += [*_clamp(v, "f0"),
              "  %plane = mul i64 %oh, %ow",
              f"  %whole = icmp eq i64 %plane, {v}",
              "  br i1 %whole, label %plain, label %masked",
              "plain:",
              f"  store {vec} %outf0, ptr %y, align 4",
              "  ret void",
              "masked:",
              f"  call void @llvm.masked.store.v{v}f32.p0({vec} %outf0, ptr %y, i32 4, <{v} x i1> %mk{taps})",
              "  ret void", "}"]
    return "\n".join(lines)


def _flat_name(ksize: int) -> str:
    return f"tessera_dw{ksize}x{ksize}flat_{FLAT}"


@jit
def flat_masks(h, w, ksize):
    """The lanes of :func:`flat_ir`'s loads for an ``h`` x ``w`` plane of
    at most :data:`FLAT` outputs (stride 1, pads of ``ksize // 2``): per tap
    (kh, kw), bit ``q`` set where output ``q`` reads inside the plane at
    (oy + kh - pad, ox + kw - pad); then the outputs of the plane. Made once
    per call of the planes' loop."""
    taps, pad = ksize * ksize, ksize // 2
    masks = np.zeros(taps + 1, np.uint16)
    for q in range(min(h * w, FLAT)):
        oy, ox = q // w, q % w
        bit = np.uint16(1 << q)
        masks[taps] |= bit
        for t in range(taps):
            y, x = oy + t // ksize - pad, ox + t % ksize - pad
            if 0 <= y < h and 0 <= x < w:
                masks[t] |= bit
    return masks


def module_ir(ksize: int = 3) -> str:
    """Every kernel of ``ksize`` (each of its strides, each of :data:`LANES`),
    with the intrinsics they declare."""
    parts = [f"; Tessera {ksize}x{ksize} depthwise plane kernels"]
    for n in sorted({*LANES, *(2 * v for v in LANES)}):
        parts += [f"declare <{n} x float> @llvm.masked.load.v{n}f32.p0(ptr, i32, <{n} x i1>, <{n} x float>)",
                  f"declare void @llvm.masked.store.v{n}f32.p0(<{n} x float>, ptr, i32, <{n} x i1>)",
                  f"declare <{n} x float> @llvm.fma.v{n}f32(<{n} x float>, <{n} x float>, <{n} x float>)"]
    return "\n".join(parts + [plane_ir(v, stride, ksize) for stride in SIZES[ksize] for v in LANES]
                     + [flat_ir(ksize)])


_compiled: dict[tuple, tuple] = {}
_lock = threading.Lock()


TABLE = len(LANES) + 1
"""Entries of a kernel table (:func:`kernel_addresses`)."""


def kernel_addresses(stride: int, isa: Isa | None = None, ksize: int = 3) -> np.ndarray:
    """The ``ksize`` x ``ksize`` plane kernels' entry points at ``stride``
    for ``isa`` (the host's family by default), :data:`TABLE` of them: the
    row kernels in the order of :data:`LANES`, then the flat kernel at
    stride 1 (0 at stride 2); each size's module compiled (or loaded from
    the kernel cache) on first use, kept for the process."""
    if stride not in SIZES.get(ksize, ()):
        raise ValueError(f"no {ksize}x{ksize} depthwise plane kernel for stride {stride} "
                         f"(sizes and their strides: {SIZES})")
    isa = host_isa() if isa is None else isa
    strides = SIZES[ksize]
    with _lock:
        if (isa, ksize) not in _compiled:
            name = f"depthwise-{isa.name}" if ksize == 3 else f"depthwise{ksize}-{isa.name}"
            engine, addresses = compile_module(name, module_ir(ksize), [_name(v, s, ksize) for s in strides
                                                                        for v in LANES] + [_flat_name(ksize)], isa)
            tables = {s: np.append(addresses[i * len(LANES):(i + 1) * len(LANES)], addresses[-1] if s == 1 else 0)
                      for i, s in enumerate(strides)}
            _compiled[isa, ksize] = (engine, tables)
        return _compiled[isa, ksize][1][stride]


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


_NO_MASKS = np.zeros(0, np.uint16)


@jit
def depthwise_ir_planes(start, stop, x, w, b, out, res, clamp, flags, kernels, stride):
    """Output planes [start, stop) (index n*K + k) of a 2-D depthwise
    convolution of float32 planes by a square kernel of size S (w: (K, S,
    S); S one of :data:`SIZES`) at ``stride`` (both axes), unit dilations
    and S // 2 pixels of padding on every side (out: (N, K, (H - 1) //
    stride + 1, (W - 1) // stride + 1)), then the epilogue as in
    runtime.kernels.nn_depthwise_3x3's kernels: the bias, the residual
    ``res`` (flags[0]) and the clamp with its gate (flags[1]). ``kernels``:
    :func:`kernel_addresses` of that size and stride. Every array is
    float32 and C-contiguous (the callers' lift and the schedule's operands
    are)."""
    zeros, masks = plane_scratch(x.shape[2], x.shape[3], w.shape[1], stride, kernels)
    depthwise_ir_run(start, stop, x, w, b, out, res, clamp, flags, kernels, stride, zeros,
                     masks.ctypes.data if masks.shape[0] else 0)


@jit
def plane_scratch(height, width, ks, stride, kernels):
    """What :func:`depthwise_ir_run` reads besides the operands, for planes
    of ``height`` x ``width`` by a ``ks`` x ``ks`` kernel: a row of zeros
    (the rows above and below a plane), and for a plane that is one flat
    vector (stride 1, at most :data:`FLAT` outputs, where ``kernels`` has
    that kernel) its :func:`flat_masks`, else none. The schedule makes them
    once, when it lowers the step (a chunk of planes making them took 240-
    690 ns of a 1.6-3 us chunk, Zen 4), the per-step path on each call."""
    zeros = np.zeros(width + 2 * (ks // 2), np.float32)
    if _takes_flat(kernels, stride, (height - 1) // stride + 1, (width - 1) // stride + 1):
        return zeros, flat_masks(height, width, ks)
    return zeros, _NO_MASKS


@jit(inline="always")
def _takes_flat(kernels, stride, out_h, out_w):
    """Whether output planes of ``out_h`` x ``out_w`` take the flat kernel
    (stride 1, rows of at most ``LANES[0]``, at most :data:`FLAT` outputs,
    where ``kernels`` has one)."""
    return (kernels.shape[0] > len(LANES) and kernels[len(LANES)] != 0 and stride == 1 and out_w <= LANES[0]
            and out_h * out_w <= FLAT)


@jit
def depthwise_ir_run(start, stop, x, w, b, out, res, clamp, flags, kernels, stride, zeros, masks_at):
    """:func:`depthwise_ir_planes` on the scratch :func:`plane_scratch`
    made for these planes: ``zeros`` (at least W + S - 1 zeros) and the
    address of their flat masks (0: none; those of this plane size, which
    decide what the flat kernel reads)."""
    batch, chans, height, width = x.shape
    _, out_c, out_h, out_w = out.shape
    ks = w.shape[1]
    pad = ks // 2
    if (w.shape[0] != out_c or w.shape[2] != ks or b.shape[0] != out_c or res.shape != out.shape or chans == 0
            or height == 0 or width == 0 or out_h != (height - 1) // stride + 1 or out_w != (width - 1) // stride + 1
            or zeros.shape[0] < width + 2 * pad):
        return
    mult = max(out_c // chans, 1)
    lo, hi = pass_clamp(clamp, flags)
    address = kernels[0] if out_w <= LANES[0] else kernels[1]
    plane, size = height * width, out_h * out_w
    dst, extra = flat_view(out), flat_view(res)  # C-contiguous arrays only (flat_view types no other)
    x_at, y_at, w_at = flat_view(x).ctypes.data, dst.ctypes.data, flat_view(w).ctypes.data
    zeros_at = zeros.ctypes.data + 4 * pad
    if masks_at != 0 and _takes_flat(kernels, stride, out_h, out_w):
        address, zeros_at = kernels[len(LANES)], masks_at  # a plane of one flat vector
    for p in range(start, min(stop, batch * out_c)):
        k = p % out_c
        c = k // mult
        if c >= chans:
            continue
        _call_plane(address, x_at + ((p // out_c) * chans + c) * plane * 4, height, width, y_at + p * size * 4,
                    out_h, out_w, w_at + k * ks * ks * 4, b[k], lo, hi, zeros_at)
        if flags[0]:
            o = dst[p * size:(p + 1) * size]
            finish_row(o, o, extra[p * size:(p + 1) * size], clamp[0], clamp[1], True, flags[1])
        if flags[1]:
            gate_run(dst, p * size, size, clamp)


@drives(depthwise_ir_planes)
@jit
def _depthwise_ir_planes_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(depthwise_ir_planes, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)
