"""The LLVM IR text of the depthwise convolutions by square kernels with pads of half their size at
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
they share once, and add each one's terms as it is loaded), ``V`` columns
at a time. A block whose columns all lie inside the row takes plain loads
and stores; the others (a plane's first and last blocks) masked loads
(columns outside the plane read as zeros, never touched) and plain stores,
masked only where a block passes its row's end and its lanes could not
spill onto later rows of the plane (:func:`_plain_store`: AMD microcodes
masked stores; 14x14 planes, one thread, Zen 3: 62-66 -> 46 us for 256 of
them):

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
outputs wide take a kernel of 8 lanes, at most 16 one of 16, wider ones
the family's register width (:data:`LANES`).

5x5 and 7x7 kernels (:data:`SIZES`): the same loops with S taps a row and
pads of S // 2, but each output's sum is one chain of fused multiply-adds
from the bias over the taps in (kh, kw) order, the Numba kernels' order
(runtime.kernels.nn_depthwise), so that the layers they took over keep their
bits; at stride 2 they read the plane's even and odd columns from a scratch
buffer the kernel splits them into first (runtime.kernels.depthwise_phased),
each tap one load as at stride 1. PP-LCNet's 5x5 layers, two threads: 256 x 14 x 14 0.29 -> 0.10 ms,
512 x 7 x 7 0.27 -> 0.08 ms, stride 2 0.33 -> 0.11 ms (the Numba kernels,
which also left the compiled schedule for Python at each such layer).

The IR is generated as text, never as Python source, from ``V``, the
stride, the kernel size and whether blocks inside the rows load plainly
alone. runtime.kernels.depthwise_ir compiles it and runs it.
"""
from __future__ import annotations

from runtime.gemm.family import Isa
from runtime.kernels.depthwise_phased import (
    PHASED_ROWS,
    deinterleave,
    phase_inner,
    phase_inputs,
    phase_masks,
    phase_rows,
    phased,
)
from runtime.kernels.depthwise_taps import clamp, constant, masked_load, splat, tap_loads, tap_mask

LANES = (8, 16)
"""Output columns per vector of the kernels, narrowest first. A plane whose
rows fit in one vector takes the narrowest kernel that holds them, every
block masked; wider planes take the kernel whose blocks inside the rows
load plainly (``inner``), of vectors of one register of the kernel family
(runtime.kernels.depthwise_ir.kernel_addresses): 16 lanes for AVX-512, 8
for AVX2, whose 16 registers the 16-lane blocks of four output rows
spilled. MobileNetV2's depthwise layers at 224, one thread, Zen 4,
in-process A/B against the masked 16-lane kernels: AVX2 code 1754 -> 1306
us (56 x 56 planes 294 -> 163), AVX-512 837 -> 789 us; PP-LCNet's 1344 ->
1038 and 610 -> 584 us. Planes of one block a row keep masked-only
kernels: the inner test and the second body cost their 14 x 14 and 7 x 7
planes 3-6 %."""
SIZES = {3: (1, 2), 5: (1, 2), 7: (1, 2)}
"""The square kernel sizes that have plane kernels (pads of ``size // 2``),
and the strides each has."""
STRIDES = SIZES[3]


def _splats(v: int, taps: int) -> list[str]:
    """The kernel's weights ``%w{t}``, bias and clamp bounds as ``v``-lane vectors."""
    lines = []
    for t in range(taps):
        lines += [f"  %wp{t} = getelementptr float, ptr %wt, i64 {t}", f"  %ws{t} = load float, ptr %wp{t}",
                  *splat(f"w{t}", f"%ws{t}", v, "float")]
    for name in ("bias", "lo", "hi"):
        lines += splat(f"{name}v", f"%{name}", v, "float")
    return lines


def _name(v: int, stride: int, ksize: int = 3, inner: bool = False) -> str:
    return f"tessera_dw{ksize}x{ksize}s{stride}_{v}" + ("_inner" if inner else "")


def _fma(v: int, out: str, weight: int, x: str, acc: str) -> str:
    return (f"  {out} = call <{v} x float> @llvm.fma.v{v}f32(<{v} x float> %w{weight}, <{v} x float> {x}, "
            f"<{v} x float> {acc})")


def _column_masks(q: str, lanes: int, first: str, ksize: int) -> list[str]:
    """A stride-1 block's column masks: ``%{q}mk{kw}`` holds the lanes ``i``
    of the ``lanes`` input columns from ``first + kw - pad`` (``first``: the
    block's first output column) that lie inside the row, ``[0, w)``."""
    lines = [f"  %{q}wc = sub i64 %w, {first}", f"  %{q}wc32 = trunc i64 %{q}wc to i32",
             *splat(f"{q}wcv", f"%{q}wc32", lanes, "i32"),
             f"  %{q}first32 = trunc i64 {first} to i32", *splat(f"{q}firstv", f"%{q}first32", lanes, "i32")]
    for kw in range(ksize):  # lane i reads column first + i + kw - pad
        lines += tap_mask(q, kw, lanes, f"%{q}wcv", f"%{q}firstv", kw - ksize // 2)
    return lines


def _inputs_stride1(v: int, q: str, b: str, j: int, ksize: int, masked: bool) -> tuple[list[str], list[str]]:
    """Input row ``j`` of a block at stride 1: its ``ksize`` taps' vectors,
    each one load at its column offset (named with the body's prefix ``b``;
    the block's with ``q``)."""
    return tap_loads(v, q, b, j, ksize, masked, lambda kw: ("", kw - ksize // 2))


def _inputs_stride2(v: int, q: str, b: str, j: int, ksize: int, masked: bool) -> tuple[list[str], list[str]]:
    """Input row ``j`` of a block at stride 2 (see the module docstring):
    the vectors of kernel columns 0 (the odd columns one output to the
    left), 1 (even) and 2 (odd)."""
    if phased(2, ksize):
        return phase_inputs(v, q, b, j, ksize, masked)
    wide = 2 * v
    even, odd = constant(range(0, wide, 2), "i32"), constant(range(1, wide, 2), "i32")
    left = constant([v - 1] + [v + i for i in range(v - 1)], "i32")  # previous block's last, then ours but the last
    r = f"{b}{j}"
    lines = [f"  %p{r} = getelementptr float, ptr %{q}base{j}, i64 %{q}c",
             masked_load(wide, f"%p{r}", f"%a{r}", f"%{b}inside" if masked else None),
             f"  %xe{r} = shufflevector <{wide} x float> %a{r}, <{wide} x float> poison, <{v} x i32> {even}",
             f"  %xo{r} = shufflevector <{wide} x float> %a{r}, <{wide} x float> poison, <{v} x i32> {odd}",
             f"  %xl{r} = shufflevector <{v} x float> %{q}prev{j}, <{v} x float> %xo{r}, <{v} x i32> {left}"]
    return lines, [f"%xl{r}", f"%xe{r}", f"%xo{r}"]


def _inner(v: int, stride: int, q: str, ksize: int) -> list[str]:
    """``%{q}inner``: whether every column the block at ``%{q}ox`` reads
    lies inside the row, ``[0, w)``, so that plain loads read it (and its
    outputs, then, lie inside their row)."""
    pad = ksize // 2
    if stride == 1:  # columns ox - pad .. ox + V - 1 + pad
        first, reach = f"%{q}ox", f"{v + pad}"
    elif ksize == 3:  # 2V columns from c = 2 ox (the left tap comes from the block before)
        return [f"  %{q}reach = add i64 %{q}c, {2 * v}", f"  %{q}inner = icmp sle i64 %{q}reach, %w"]
    else:  # each tap inside its phase row
        return phase_inner(v, q, ksize)
    return [f"  %{q}left.ok = icmp sge i64 {first}, {pad}", f"  %{q}reach = add i64 {first}, {reach}",
            f"  %{q}right.ok = icmp sle i64 %{q}reach, %w", f"  %{q}inner = and i1 %{q}left.ok, %{q}right.ok"]


def _block(v: int, stride: int, rows: int, q: str, b: str, masked: bool, ksize: int) -> tuple[list[str], str]:
    """One block of ``V`` columns of ``rows`` output rows, its values named
    with the prefix ``b``: loads of the input rows it reads (masked, or
    plain where ``masked`` is False: a block inside its rows), each row's
    terms as it is loaded, the clamp and the stores. Returns its lines and
    the label it ends in."""
    inputs = stride * (rows - 1) + ksize
    lines = []
    if masked and stride == 2 and ksize == 3:
        wide = 2 * v
        lines += [f"  %{b}wc = sub i64 %w, %{q}c", f"  %{b}wc32 = trunc i64 %{b}wc to i32",
                  *splat(f"{b}wcv", f"%{b}wc32", wide, "i32"),
                  f"  %{b}inside = icmp slt <{wide} x i32> {constant(range(wide), 'i32')}, %{b}wcv"]
    elif masked and phased(stride, ksize):
        lines += phase_masks(v, q, b, ksize)
    elif masked:
        lines += _column_masks(b, v, f"%{q}ox", ksize)
    for j in range(inputs):  # each input row's loads, then the terms of the output rows that read it
        more, row = (_inputs_stride1 if stride == 1 else _inputs_stride2)(v, q, b, j, ksize, masked)
        lines += more
        for r in range(rows):
            if 0 <= j - stride * r < ksize:
                lines += _row_terms(v, b, r, j - stride * r, row, ksize)
    if masked:
        lines += [f"  %{b}left = sub i64 %ow, %{q}ox", f"  %{b}left32 = trunc i64 %{b}left to i32",
                  *splat(f"{b}leftv", f"%{b}left32", v, "i32"),
                  f"  %{b}keep = icmp slt <{v} x i32> {constant(range(v), 'i32')}, %{b}leftv"]
    for r in range(rows):
        o = f"{b}{r}"
        lines += [*clamp(v, o),
                  f"  %yrow{o} = add i64 %{q}oy, {r}",
                  f"  %yoff{o} = mul i64 %yrow{o}, %ow",
                  f"  %yo{o} = add i64 %yoff{o}, %{q}ox",
                  f"  %py{o} = getelementptr float, ptr %y, i64 %yo{o}"]
    if not masked:  # a block inside its input rows ends inside its output rows
        return lines + [f"  store <{v} x float> %out{b}{r}, ptr %py{b}{r}, align 4" for r in range(rows)], f"{b}.body"
    return lines + _stores(v, b, rows, f"%{q}whole", f"%{b}keep", ksize > 3), f"{b}.stored"


def _row_loop(v: int, stride: int, rows: int, q: str, enter: tuple[str, str], exit_label: str,
              ksize: int = 3, inner: bool = False) -> list[str]:
    """A loop over output rows ``rows`` at a time, from ``enter`` = (the
    label it is entered from, the first row) while ``rows`` more fit below
    ``%oh``; every value named with the prefix ``q``. Each block of ``V``
    columns loads the ``stride * (rows - 1) + ksize`` input rows its output
    rows read once, and output row ``r`` combines rows ``stride * r + kh``.
    With ``inner``, a block whose reads lie inside its rows (:func:`_inner`)
    takes plain loads and stores, the others masked ones (:func:`_block`);
    without, every block masked ones."""
    inputs, pad = stride * (rows - 1) + ksize, ksize // 2
    vec = f"<{v} x float>"
    pred, first = enter
    carried = stride == 2 and ksize == 3  # the odd columns pass from block to block
    lines = [f"  %{q}fits = add i64 {first}, {rows}",
             f"  %{q}go = icmp sle i64 %{q}fits, %oh",
             f"  br i1 %{q}go, label %{q}row, label %{exit_label}",
             f"{q}row:",
             f"  %{q}oy = phi i64 [{first}, %{pred}], [%{q}oy.next, %{q}row.end]",
             f"  %{q}top = mul i64 %{q}oy, {stride}"]
    for j in range(inputs):  # input row s oy + j - pad, or the zeros outside the plane
        if phased(stride, ksize):
            lines += phase_rows(q, j, pad)
            continue
        lines += [f"  %{q}r{j} = add i64 %{q}top, {j - pad}", f"  %{q}ge{j} = icmp sge i64 %{q}r{j}, 0",
                  f"  %{q}lt{j} = icmp slt i64 %{q}r{j}, %h", f"  %{q}in{j} = and i1 %{q}ge{j}, %{q}lt{j}",
                  f"  %{q}off{j} = mul i64 %{q}r{j}, %w",
                  f"  %{q}rowp{j} = getelementptr float, ptr %x, i64 %{q}off{j}",
                  f"  %{q}base{j} = select i1 %{q}in{j}, ptr %{q}rowp{j}, ptr %zeros"]
    lines += [f"  br label %{q}block",
              f"{q}block:",
              f"  %{q}ox = phi i64 [0, %{q}row], [%{q}ox.next, %{q}next]"]
    if carried:
        lines += [f"  %{q}prev{j} = phi {vec} [zeroinitializer, %{q}row], [%{q}odd{j}, %{q}next]"
                  for j in range(inputs)]
    lines += [f"  %{q}ox.next = add i64 %{q}ox, {v}", f"  %{q}whole = icmp sle i64 %{q}ox.next, %ow"]
    if stride == 2:
        lines.append(f"  %{q}c = shl i64 %{q}ox, 1")
    if inner:
        lines += [*_inner(v, stride, q, ksize), f"  br i1 %{q}inner, label %{q}p.body, label %{q}m.body"]
    else:
        lines.append(f"  br label %{q}m.body")
    ends = []
    bodies = [(f"{q}p", False), (f"{q}m", True)] if inner else [(f"{q}m", True)]
    for b, masked in bodies:
        body, end = _block(v, stride, rows, q, b, masked, ksize)
        lines += [f"{b}.body:", *body, f"  br label %{q}next"]
        ends.append((b, end))
    lines.append(f"{q}next:")
    if carried:
        lines += [f"  %{q}odd{j} = phi {vec} " + ", ".join(f"[%xo{b}{j}, %{end}]" for b, end in ends)
                  for j in range(inputs)]
    lines += [f"  %{q}more = icmp slt i64 %{q}ox.next, %ow",
              f"  br i1 %{q}more, label %{q}block, label %{q}row.end",
              f"{q}row.end:",
              f"  %{q}oy.next = add i64 %{q}oy, {rows}",
              f"  %{q}next.fits = add i64 %{q}oy.next, {rows}",
              f"  %{q}more.rows = icmp sle i64 %{q}next.fits, %oh",
              f"  br i1 %{q}more.rows, label %{q}row, label %{exit_label}"]
    return lines


def _plain_store(v: int, o: str, whole: str) -> list[str]:
    """``%plain{o}``: whether output row ``o``'s block ``%out{o}`` at
    ``%py{o}`` (element ``%yo{o}`` of the plane) may be stored whole: where
    the block lies inside its row (``whole``), or where rows are one block
    (``%narrow``) and the vector ends inside the plane: its lanes past the
    row's end fall on the next rows' first outputs, which are stored after
    it (rows go in order), so they end right. Else it takes a masked store,
    which AMD's Zen cores microcode: one a ~15 cycles on Zen 3, against two
    plain stores a cycle, and one or two a row made 14-wide planes
    store-bound there."""
    return [f"  %end{o} = add i64 %yo{o}, {v}",
            f"  %inplane{o} = icmp sle i64 %end{o}, %plane",
            f"  %spill{o} = and i1 %narrow, %inplane{o}",
            f"  %plain{o} = or i1 {whole}, %spill{o}"]


def _stores(v: int, b: str, rows: int, whole: str, keep: str, together: bool) -> list[str]:
    """Store the ``rows`` output rows' blocks of a masked block ``b``
    (:func:`_plain_store`, masked with ``keep`` where not whole), ending at
    label ``{b}.stored``: each row by a branch of its own, or, ``together``,
    one branch first for the blocks whose rows all store whole (all but a
    plane's last rows). With a branch a row, LLVM sinks each row's sum below
    the branches before it (its only use is past them), so the rows' sums
    are computed one after another: for 3x3 kernels (three chains of three
    a row) that keeps few values live (together, 3-23 % more time on Zen 4
    for MobileNetV2's layers); for larger ones (one chain of 25 or 49
    multiply-adds a row) it serialised independent chains. Together,
    in-process A/B, one thread, Zen 4: 5x5 256 x 14 x 14 (PP-LCNet's) AVX-512
    code 55-58 -> 47 us, AVX2 code 105 -> 73; 64 x 28 x 28 46 -> 37.5 and 77
    -> 69; at stride 2 128 x 28 x 28 57 -> 54 and 103 -> 77; 7x7 256 x 14 x
    14 130 -> 89 and 186 -> 130."""
    vec = f"<{v} x float>"
    lines = []
    if together:
        lines += [line for r in range(rows) for line in _plain_store(v, f"{b}{r}", whole)]
        whole_rows = f"%plain{b}0"
        for r in range(1, rows):
            lines.append(f"  %{b}all{r} = and i1 {whole_rows}, %plain{b}{r}")
            whole_rows = f"%{b}all{r}"
        lines += [f"  br i1 {whole_rows}, label %{b}.whole, label %{b}.rows",
                  f"{b}.whole:",
                  *(f"  store {vec} %out{b}{r}, ptr %py{b}{r}, align 4" for r in range(rows)),
                  f"  br label %{b}.stored",
                  f"{b}.rows:"]
    for r in range(rows):
        o, after = f"{b}{r}", f"{b}{r}.stored" if r + 1 < rows else f"{b}.stored"
        lines += [*([] if together else _plain_store(v, o, whole)),
                  f"  br i1 %plain{o}, label %{o}.plain, label %{o}.masked",
                  f"{o}.plain:",
                  f"  store {vec} %out{o}, ptr %py{o}, align 4",
                  f"  br label %{after}",
                  f"{o}.masked:",
                  f"  call void @llvm.masked.store.v{v}f32.p0({vec} %out{o}, ptr %py{o}, i32 4, <{v} x i1> {keep})",
                  f"  br label %{after}",
                  f"{after}:"]
    return lines


def _row_terms(v: int, q: str, r: int, kh: int, row: list, ksize: int) -> list[str]:
    """Kernel row ``kh``'s terms of output row ``r``'s sum ``%sum{q}{r}``
    (``row``: the vectors of its input row, one per kernel column). A 3x3
    kernel's sum is a chain of fused multiply-adds per kernel row (the
    first row's from the bias), the three added in order; a larger kernel's
    is one chain from the bias over the taps in (kh, kw) order, as the
    Numba kernels compute it (runtime.kernels.nn_depthwise, compiled with
    contraction; a tap outside the plane adds its weight times zero), so
    that the layers these kernels took over keep their bits. A block emits
    them input row by input row, after each row's loads (:func:`_block`),
    so that only partial sums stay live between rows (AVX2's 8-lane 3x3
    kernel: 169 -> 152 stack accesses against all loads first)."""
    lines, o = [], f"{q}{r}"
    if ksize == 3:
        acc = "%biasv" if kh == 0 else "zeroinitializer"
        for kw in range(3):
            out = f"%s{o}_{kh}{kw}"
            lines.append(_fma(v, out, kh * 3 + kw, row[kw], acc))
            acc = out
        if kh == 1:
            lines.append(f"  %sum01{o} = fadd <{v} x float> %s{o}_02, %s{o}_12")
        elif kh == 2:
            lines.append(f"  %sum{o} = fadd <{v} x float> %sum01{o}, %s{o}_22")
        return lines
    acc = "%biasv" if kh == 0 else f"%s{o}_{kh - 1}_{ksize - 1}"
    for kw in range(ksize):
        out = f"%sum{o}" if (kh, kw) == (ksize - 1, ksize - 1) else f"%s{o}_{kh}_{kw}"
        lines.append(_fma(v, out, kh * ksize + kw, row[kw], acc))
        acc = out
    return lines


def _sums(v: int, q: str, r: int, stride: int, taps: list, ksize: int) -> list[str]:
    """Output row ``r``'s sum ``%sum{q}{r}`` (:func:`_row_terms`) from
    ``taps``, every input row's vectors."""
    return [line for kh in range(ksize) for line in _row_terms(v, q, r, kh, taps[stride * r + kh], ksize)]


ROWS = {1: 4, 2: 2}
"""Output rows a trip of a plane kernel's main loop computes, by stride,
loading the input rows they share once (the last rows take a loop of
one). At stride 1, four rows read six input rows, 18 loads where one row at
a time made 36: one thread, 144 x 56 x 56 17.2 -> 11.9 cycles per 16
outputs, 192 x 28 x 28 17.8 -> 11.7, 384 x 14 x 14 18.6 -> 14.5;
MobileNetV2's float run 3.4% faster (in-process A/B on two threads,
Sapphire Rapids), the same bits. At stride 2, two rows share one input row
of three (3x3) or three of seven (5x5), and two rows are twice the
independent chains: a 5x5 output's sum is one chain of 25 fused
multiply-adds, so one row a trip waited on their latency. In-process A/B
of one row against two, one thread, Zen 4 (s2rows2 in issue 57's notes):
AVX-512 code, PP-LCNet's 5x5 layers 256 x 14 x 14 45-49 -> 37-42 us, 128
x 28 x 28 72-86 -> 58-69, MobileNetV2's 3x3 ones 7-8 % less; AVX2 code
5x5 6-8 % less, 3x3 as before (491 us both). Four rows gained 7x7 more
and cost 3x3 on 112 x 112 planes 10 %."""


def plane_ir(v: int, stride: int, ksize: int = 3, inner: bool = False) -> str:
    """The plane kernel :func:`_name` ``(v, stride, ksize, inner)`` (see the
    module docstring): with ``inner``, the blocks inside their rows take
    plain loads (:func:`_row_loop`). Output rows go :data:`ROWS` at a time,
    the last ones one at a time; a phased kernel's (stride 2, 5x5 and 7x7:
    runtime.kernels.depthwise_phased) :data:`PHASED_ROWS`, then two, then
    one."""
    lines = [f"define void @{_name(v, stride, ksize, inner)}(ptr noalias readonly %x, i64 %h, i64 %w, ptr noalias %y,"
             f" i64 %oh, i64 %ow, ptr noalias readonly %wt, float %bias, float %lo, float %hi,"
             f" ptr noalias readonly %zeros, ptr noalias %scratch) nounwind {{",
             "entry:"]
    lines += _splats(v, ksize * ksize)
    if phased(stride, ksize):
        lines += [*deinterleave(v, "go", narrow=not inner), "go:"]
    lines += ["  %plane = mul i64 %oh, %ow",
              f"  %narrow = icmp sle i64 %ow, {v}",
              "  %cols = icmp sgt i64 %ow, 0",
              "  br i1 %cols, label %main, label %done",
              "main:"]
    if phased(stride, ksize):
        sizes = sorted({PHASED_ROWS, PHASED_ROWS // 2, 1} - {0}, reverse=True)
    else:
        sizes = [ROWS[stride], 1]
    pred, first = "main", "0"
    for i, rows in enumerate(sizes):  # loops m (rest), [h (rest2),] t (done)
        last = i == len(sizes) - 1
        q = "m" if i == 0 else "t" if last else "h"
        after = "done" if last else "rest" if i == 0 else "rest2"
        lines += _row_loop(v, stride, rows, q, (pred, first), after, ksize, inner)
        if not last:
            start = "%from" if i == 0 else "%from2"
            lines += [f"{after}:", f"  {start} = phi i64 [{first}, %{pred}], [%{q}oy.next, %{q}row.end]"]
            pred, first = after, start
    lines += ["done:", "  ret void", "}"]
    return "\n".join(lines)


FLAT = 16
"""Outputs per vector of the flat kernels (:func:`flat_ir`)."""


def lane_masks(isa: Isa) -> bool:
    """Whether ``isa``'s flat kernels read their masks as one int32 a lane
    (a vector compared with zero), not as one int32 a tap holding a bit per
    lane (runtime.kernels.depthwise_ir.flat_masks): for AVX2, which has no
    mask registers, where LLVM turned each 16-bit mask into a vector lane
    by lane (16 shifts, ands and byte inserts a tap: 760 instructions in
    the 3 x 3 kernel, 150 with vectors). AVX-512 moves the bits into a mask
    register in one instruction, and there vectors took 4-10 % more time
    (in-process A/B, one thread, Zen 4: AVX2 code, 960 planes of 3 x 3,
    67 -> 18.5 us, 16 with the first half stored plainly; AVX-512 13.1 ->
    14.3 with vectors)."""
    return isa.name == "avx2"


def flat_ir(ksize: int, lanes: bool = False) -> str:
    """The flat kernel of ``ksize`` (stride 1) for a plane of at most
    :data:`FLAT` outputs, whatever its rows' width: the plane's outputs as
    one vector. Tap (kh, kw) is one masked load from element ``(kh - pad) w
    + kw - pad`` of the plane, its lanes those ``%masks`` gives
    (runtime.kernels.depthwise_ir.flat_masks: outputs whose tap lies
    inside the plane; one int32 a lane with ``lanes``, else one a tap, its
    low :data:`FLAT` bits the lanes: :func:`lane_masks`); the sums and
    clamp as the row kernels', so the same bits; the store plain where the
    plane fills the vector, else masked (with ``lanes``, its first half
    plain where the plane fills that).
    runtime.kernels.depthwise_ir.depthwise_ir_planes takes it for such
    planes in rows of at most ``LANES[0]``, where the row kernel loads each
    tap once per output row (a 3 x 3 plane: three loads of 8 lanes, three
    used, where this makes one): MobileNetV2 at 96 x 96, 960 channels of 3
    x 3, two threads, Zen 4: 13.2-14.5 -> 8.7-9.8 us a layer (in-process
    A/B). Over larger
    planes, a vector at a time, it gained no more than it lost: it loads a
    mask per tap and vector for every plane, where the row kernel's rows
    share their input rows' loads (6 x 6, 384 channels: 10.9-13.4 against
    9.3-12.9 us, in four runs better and worse by turns)."""
    v, taps, pad = FLAT, ksize * ksize, ksize // 2
    vec = f"<{v} x float>"
    lines = [f"define void @{_flat_name(ksize)}(ptr noalias readonly %x, i64 %h, i64 %w, ptr noalias %y, i64 %oh,"
             f" i64 %ow, ptr noalias readonly %wt, float %bias, float %lo, float %hi, ptr noalias readonly %masks,"
             f" ptr noalias %scratch)"
             f" nounwind {{",
             "entry:"]
    lines += _splats(v, taps)
    rows = []
    for t in range(taps + 1):  # each tap's lanes, then the outputs inside the plane
        if lanes:
            lines += [f"  %mp{t} = getelementptr <{v} x i32>, ptr %masks, i64 {t}",
                      f"  %mi{t} = load <{v} x i32>, ptr %mp{t}, align 4",
                      f"  %mk{t} = icmp slt <{v} x i32> %mi{t}, zeroinitializer"]
        else:
            lines += [f"  %mp{t} = getelementptr i32, ptr %masks, i64 {t}",
                      f"  %mw{t} = load i32, ptr %mp{t}, align 4",
                      f"  %mi{t} = trunc i32 %mw{t} to i{v}",
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
    lines += _sums(v, "f", 0, 1, rows, ksize)
    lines += [*clamp(v, "f0"),
              "  %plane = mul i64 %oh, %ow",
              f"  %whole = icmp eq i64 %plane, {v}",
              "  br i1 %whole, label %plain, label %masked",
              "plain:",
              f"  store {vec} %outf0, ptr %y, align 4",
              "  ret void",
              "masked:"]
    if lanes:  # a plain store of the first half where the plane fills it (AMD microcodes vmaskmovps stores)
        h = v // 2
        first, second = (", ".join(f"i32 {i}" for i in range(a, a + h)) for a in (0, h))
        lines += [f"  %half = icmp sge i64 %plane, {h}",
                  "  br i1 %half, label %halves, label %whole.masked",
                  "halves:",
                  f"  %out.lo = shufflevector {vec} %outf0, {vec} poison, <{h} x i32> <{first}>",
                  f"  %out.hi = shufflevector {vec} %outf0, {vec} poison, <{h} x i32> <{second}>",
                  f"  %mk.hi = shufflevector <{v} x i1> %mk{taps}, <{v} x i1> poison, <{h} x i32> <{second}>",
                  f"  store <{h} x float> %out.lo, ptr %y, align 4",
                  f"  %y.hi = getelementptr float, ptr %y, i64 {h}",
                  f"  call void @llvm.masked.store.v{h}f32.p0(<{h} x float> %out.hi, ptr %y.hi, i32 4, "
                  f"<{h} x i1> %mk.hi)",
                  "  ret void",
                  "whole.masked:"]
    lines += [f"  call void @llvm.masked.store.v{v}f32.p0({vec} %outf0, ptr %y, i32 4, <{v} x i1> %mk{taps})",
              "  ret void", "}"]
    return "\n".join(lines)


def _flat_name(ksize: int) -> str:
    return f"tessera_dw{ksize}x{ksize}flat_{FLAT}"


def module_ir(ksize: int = 3, lanes: bool = False) -> str:
    """Every kernel of ``ksize`` (:func:`kernel_names`), with the intrinsics
    they declare; the flat kernel reading masks of a lane each with
    ``lanes`` (:func:`lane_masks`)."""
    parts = [f"; Tessera {ksize}x{ksize} depthwise plane kernels"]
    for n in sorted({*LANES, *(2 * v for v in LANES)}):
        parts += [f"declare <{n} x float> @llvm.masked.load.v{n}f32.p0(ptr, i32, <{n} x i1>, <{n} x float>)",
                  f"declare void @llvm.masked.store.v{n}f32.p0(<{n} x float>, ptr, i32, <{n} x i1>)",
                  f"declare <{n} x float> @llvm.fma.v{n}f32(<{n} x float>, <{n} x float>, <{n} x float>)"]
    return "\n".join(parts + [plane_ir(v, stride, ksize, inner) for inner in (False, True)
                              for stride in SIZES[ksize] for v in LANES] + [flat_ir(ksize, lanes)])


def kernel_names(ksize: int = 3) -> list[str]:
    """The functions of :func:`module_ir`'s module, in its order: the row
    kernels of each stride and each of :data:`LANES` with masked loads
    only, the same with plain loads inside the rows, the flat kernel."""
    return ([_name(v, stride, ksize, inner) for inner in (False, True) for stride in SIZES[ksize] for v in LANES]
            + [_flat_name(ksize)])
