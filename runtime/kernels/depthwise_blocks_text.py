"""The LLVM IR text of the depthwise kernels that compute a block of
channels at a time, a vector of the block's channels per output pixel
(runtime.kernels.depthwise_blocks runs them).

The plane kernels (runtime.kernels.depthwise_text) put a plane's output
columns in a vector's lanes. On the small planes of the last stages of
mobile networks (7 x 7, 14 x 14) a row fills one vector at most, so a
plane has few vectors in flight; and each output's sum of a 5x5 or 7x7
kernel is one chain of 25 or 49 fused multiply-adds, which the plane
kernels wait on (one thread, Zen 4: 960 channels of 7 x 7 by 5 x 5, 84 us,
onnxruntime's 50). Here a kernel call takes ``V`` consecutive channels
(the family's register width: 16 for AVX-512, 8 for AVX2) and:

1. transposes their input planes into a zeroed scratch plane of pixels,
   ``V`` channels a pixel, with a border of ``S // 2`` pixels (``%pad``):
   ``V`` pixels of the ``V`` planes at a time, by ``log2 V`` rounds of
   interleaving shuffles (the perfect shuffle: :func:`transpose`); where
   each pixel goes is read from the caller's map (``%inmap``: no division
   or row test per pixel);
2. computes the output pixels ``G`` of a row at a time (:data:`GROUPS`),
   a kernel row a trip: the row's ``S`` weight vectors, then the ``s (G -
   1) + S`` input pixels the ``G`` outputs read, each loaded once and
   multiplied into every output it reaches (``G`` independent chains);
3. clamps each output pixel, stores it in a second scratch (``%acc``, rows
   of ``G``-multiples) and transposes those back into the ``V`` output
   planes, whole vectors where they fill one, else masked, the channels
   past the block's ``n`` left alone.

The sums are the plane kernels' chains, term for term, so the bits are
theirs: a 3x3 kernel's three chains a kernel row (the first from the bias,
the others from zero) added in order; a larger kernel's one chain from the
bias over the taps in (kh, kw) order; a tap outside the plane multiplies a
zero of the border. The weights come transposed (tap-major, a row of the
channels a tap: runtime.kernels.depthwise_blocks.blocked_weights), the
bias is read from the channel ``k0`` on, masked to the block.
"""
from __future__ import annotations

from runtime.kernels.depthwise_taps import clamp, constant, splat

GROUPS = (4, 6, 7, 8)
"""Output pixels of a row a trip of the compute loop (the independent
chains in flight); a plane takes the one that wastes the fewest pixels in
its rows (runtime.kernels.depthwise_blocks.group_for): 7 for the 7-, 14-
and 28-wide planes of 224 x 224 models, 6 or 4 for those of 96 x 96 ones,
8 for 8 and 16. Each is ``G`` accumulators, ``S`` weights and an input
pixel in registers (7x7, ``G`` 8: 16, AVX2's count, and no spill). LLVM
unrolls the 3x3 and 5x5 kernels' short kernel-row loop, and AVX2's 5x5
kernels then spill some (22-61 stack accesses a group); with the loop
kept (unrolling disabled) they ran no faster."""
SIZES = {3: (1, 2), 5: (1, 2), 7: (1, 2)}
"""The kernel sizes (pads of ``size // 2``) and the strides each has."""


def transpose(v: int, rows: list[str], prefix: str) -> tuple[list[str], list[str]]:
    """The ``v`` vectors ``rows`` (a ``v`` x ``v`` matrix, a row each)
    transposed: ``log2 v`` rounds, each pairing row ``i`` with row ``i +
    v/2`` into an interleave of their first halves and one of their
    second halves (lines, and the names of the columns in order)."""
    vec = f"<{v} x float>"
    half = v // 2
    low = constant([k for j in range(half) for k in (j, j + v)])
    high = constant([k for j in range(half, v) for k in (j, j + v)])
    lines, now = [], list(rows)
    for r in range(v.bit_length() - 1):
        nxt = [f"%{prefix}t{r}_{i}" for i in range(v)]
        for i in range(half):
            lines += [f"  {nxt[2 * i]} = shufflevector {vec} {now[i]}, {vec} {now[i + half]}, <{v} x i32> {low}",
                      f"  {nxt[2 * i + 1]} = shufflevector {vec} {now[i]}, {vec} {now[i + half]}, "
                      f"<{v} x i32> {high}"]
        now = nxt
    return lines, now


def kernel_name(ksize: int, stride: int, group: int, v: int) -> str:
    return f"tessera_dwblock{ksize}x{ksize}s{stride}_g{group}_{v}"


def _lane_mask(name: str, count: str, v: int) -> list[str]:
    """``%{name}``: lanes ``i < count`` (an i64)."""
    return [f"  %{name}.n = trunc i64 {count} to i32", *splat(f"{name}.v", f"%{name}.n", v, "i32"),
            f"  %{name} = icmp slt <{v} x i32> {constant(range(v))}, %{name}.v"]


def _transpose_in(v: int) -> list[str]:
    """Step 1: the input planes' pixels into ``%pad``, ``V`` at a time."""
    vec = f"<{v} x float>"
    lines = ["  br label %in", "in:",
             "  %q = phi i64 [0, %entry], [%q.next, %in]",
             "  %left = sub i64 %hw, %q", *_lane_mask("lanes", "%left", v)]
    rows = []
    for c in range(v):  # channel c's pixels q..q+V-1 (channels past n read channel n - 1's: never stored)
        lines += [f"  %ip{c} = getelementptr float, ptr %cx{c}, i64 %q",
                  f"  %iv{c} = call {vec} @llvm.masked.load.v{v}f32.p0(ptr %ip{c}, i32 4, <{v} x i1> %lanes, "
                  f"{vec} zeroinitializer)"]
        rows.append(f"%iv{c}")
    more, pixels = transpose(v, rows, "i")
    lines += more
    for i in range(v):  # pixel q + i (past the plane: zeros, to the map's spare slot)
        lines += [f"  %mq{i} = add i64 %q, {i}", f"  %mp{i} = getelementptr i64, ptr %inmap, i64 %mq{i}",
                  f"  %mv{i} = load i64, ptr %mp{i}, align 8", f"  %me{i} = mul i64 %mv{i}, {v}",
                  f"  %pa{i} = getelementptr float, ptr %pad, i64 %me{i}",
                  f"  store {vec} {pixels[i]}, ptr %pa{i}, align 4"]
    return lines + [f"  %q.next = add i64 %q, {v}", "  %in.more = icmp slt i64 %q.next, %hw",
                    "  br i1 %in.more, label %in, label %rows.pre"]


def _compute(v: int, ksize: int, stride: int, group: int) -> list[str]:
    """Step 2: output rows, ``group`` pixels a trip, a kernel row an
    iteration of the innermost loop; each group's pixels clamped into
    ``%acc`` (row ``oy`` at ``oy * owp``)."""
    vec = f"<{v} x float>"
    lines = ["rows.pre:",
             f"  %groups = add i64 %ow, {group - 1}", f"  %gcount = udiv i64 %groups, {group}",
             f"  %owp = mul i64 %gcount, {group}",
             "  br label %row", "row:",
             "  %oy = phi i64 [0, %rows.pre], [%oy.next, %row.end]",
             f"  %iy = mul i64 %oy, {stride}", "  %iyw = mul i64 %iy, %wp", "  %arow = mul i64 %oy, %owp",
             "  br label %grp", "grp:",
             "  %ox = phi i64 [0, %row], [%ox.next, %grp.end]",
             f"  %ix = mul i64 %ox, {stride}", "  %at = add i64 %iyw, %ix", f"  %ate = mul i64 %at, {v}",
             "  %gbase = getelementptr float, ptr %pad, i64 %ate",
             "  br label %kr", "kr:",
             "  %kh = phi i64 [0, %grp], [%kh.next, %kr]",
             *(f"  %acc{j} = phi {vec} [%biasv, %grp], [%accn{j}, %kr]" for j in range(group)),
             "  %first = icmp eq i64 %kh, 0", "  %khw = mul i64 %kh, %wp", f"  %khe = mul i64 %khw, {v}",
             "  %rbase = getelementptr float, ptr %gbase, i64 %khe",
             f"  %wrow = mul i64 %kh, {ksize}"]
    for kw in range(ksize):  # the kernel row's weights (a row of wstride floats a tap)
        lines += [f"  %wt{kw} = add i64 %wrow, {kw}", f"  %wo{kw} = mul i64 %wt{kw}, %wstride",
                  f"  %wa{kw} = getelementptr float, ptr %wt, i64 %wo{kw}",
                  f"  %wv{kw} = load {vec}, ptr %wa{kw}, align 4"]
    if ksize == 3:  # a 3x3 row's chain starts from the bias (row 0) or zero
        lines += [f"  %from = select i1 %first, {vec} %biasv, {vec} zeroinitializer"]
    chain = {}
    for ix in range(stride * (group - 1) + ksize):  # each input pixel once, into every output it reaches
        lines += [f"  %xa{ix} = getelementptr float, ptr %rbase, i64 {ix * v}",
                  f"  %xv{ix} = load {vec}, ptr %xa{ix}, align 4"]
        for j in range(group):
            kw = ix - stride * j
            if 0 <= kw < ksize:
                acc = chain[j] if kw else "%from" if ksize == 3 else f"%acc{j}"
                last = kw == ksize - 1 and ksize > 3  # a larger kernel's chain goes on in the next row
                chain[j] = f"%accn{j}" if last else f"%s{kw}_{j}"
                lines.append(f"  {chain[j]} = call {vec} @llvm.fma.v{v}f32({vec} %wv{kw}, {vec} %xv{ix}, {vec} {acc})")
    if ksize == 3:  # the row's chain added to the rows before (the first row's from the bias is the sum)
        for j in range(group):
            lines += [f"  %sum{j} = fadd {vec} %acc{j}, {chain[j]}",
                      f"  %accn{j} = select i1 %first, {vec} {chain[j]}, {vec} %sum{j}"]
    lines += ["  %kh.next = add i64 %kh, 1", f"  %kh.more = icmp slt i64 %kh.next, {ksize}",
              "  br i1 %kh.more, label %kr, label %grp.end", "grp.end:"]
    lines.append("  %ai = add i64 %arow, %ox")
    for j in range(group):
        lines += [*clamp(v, f"c{j}", f"%accn{j}"),
                  f"  %aj{j} = add i64 %ai, {j}", f"  %ae{j} = mul i64 %aj{j}, {v}",
                  f"  %aa{j} = getelementptr float, ptr %acc, i64 %ae{j}",
                  f"  store {vec} %outc{j}, ptr %aa{j}, align 4"]
    return lines + [f"  %ox.next = add i64 %ox, {group}", "  %grp.more = icmp slt i64 %ox.next, %ow",
                    "  br i1 %grp.more, label %grp, label %row.end", "row.end:",
                    "  %oy.next = add i64 %oy, 1", "  %row.more = icmp slt i64 %oy.next, %oh",
                    "  br i1 %row.more, label %row, label %out.pre"]


def _transpose_out(v: int) -> list[str]:
    """Step 3: ``%acc``'s pixels back into the output planes, ``V`` at a time."""
    vec = f"<{v} x float>"
    lines = ["out.pre:", "  br label %out", "out:",
             f"  %r = phi i64 [0, %out.pre], [%r.next, %ch{v}]",
             "  %rleft = sub i64 %ohw, %r", f"  %rfull = icmp sge i64 %rleft, {v}", *_lane_mask("keep", "%rleft", v)]
    rows = []
    for i in range(v):  # output pixel r + i (past the plane: the map's pixel 0, never stored)
        lines += [f"  %nq{i} = add i64 %r, {i}", f"  %np{i} = getelementptr i64, ptr %outmap, i64 %nq{i}",
                  f"  %nv{i} = load i64, ptr %np{i}, align 8", f"  %ne{i} = mul i64 %nv{i}, {v}",
                  f"  %ra{i} = getelementptr float, ptr %acc, i64 %ne{i}",
                  f"  %rv{i} = load {vec}, ptr %ra{i}, align 4"]
        rows.append(f"%rv{i}")
    more, planes = transpose(v, rows, "o")
    lines += [*more, "  br label %ch0"]
    for c in range(v):
        lines += [f"ch{c}:",
                  f"  br i1 %cin{c}, label %cs{c}, label %ch{c + 1}",
                  f"cs{c}:",
                  f"  %sp{c} = getelementptr float, ptr %cy{c}, i64 %r",
                  f"  br i1 %rfull, label %cf{c}, label %cm{c}",
                  f"cf{c}:",
                  f"  store {vec} {planes[c]}, ptr %sp{c}, align 4",
                  f"  br label %ch{c + 1}",
                  f"cm{c}:",
                  f"  call void @llvm.masked.store.v{v}f32.p0({vec} {planes[c]}, ptr %sp{c}, i32 4, <{v} x i1> %keep)",
                  f"  br label %ch{c + 1}"]
    return lines + [f"ch{v}:", f"  %r.next = add i64 %r, {v}", "  %out.more = icmp slt i64 %r.next, %ohw",
                    "  br i1 %out.more, label %out, label %done", "done:", "  ret void"]


def block_ir(v: int, ksize: int, stride: int, group: int) -> str:
    """The kernel :func:`kernel_name` ``(ksize, stride, group, v)``::

        void k(float* x, i64 n, i64 h, i64 w, float* y, i64 oh, i64 ow,
               float* wt, i64 wstride, float* bias, float lo, float hi,
               float* pad, float* acc, i64* inmap, i64* outmap)

    ``n`` (1 to ``V``) planes of ``h`` x ``w`` from ``x``, into as many of
    ``oh`` x ``ow`` at ``y``; tap ``t``'s weights of the block's channels
    at ``wt + t * wstride``; the scratch and maps as
    runtime.kernels.depthwise_blocks.block_plan makes them."""
    vec = f"<{v} x float>"
    pad = ksize // 2
    lines = [f"define void @{kernel_name(ksize, stride, group, v)}(ptr noalias readonly %x, i64 %n, i64 %h, i64 %w,"
             f" ptr noalias %y, i64 %oh, i64 %ow, ptr noalias readonly %wt, i64 %wstride, ptr noalias readonly %bias,"
             f" float %lo, float %hi, ptr noalias %pad, ptr noalias %acc, ptr noalias readonly %inmap,"
             f" ptr noalias readonly %outmap) nounwind {{",
             "entry:",
             "  %hw = mul i64 %h, %w", "  %ohw = mul i64 %oh, %ow", f"  %wp = add i64 %w, {2 * pad}",
             "  %last = sub i64 %n, 1"]
    for c in range(v):
        lines += [f"  %cc{c} = call i64 @llvm.smin.i64(i64 {c}, i64 %last)", f"  %co{c} = mul i64 %cc{c}, %hw",
                  f"  %cx{c} = getelementptr float, ptr %x, i64 %co{c}",
                  f"  %oo{c} = mul i64 {c}, %ohw", f"  %cy{c} = getelementptr float, ptr %y, i64 %oo{c}",
                  f"  %cin{c} = icmp slt i64 {c}, %n"]
    lines += [*splat("lov", "%lo", v, "float"), *splat("hiv", "%hi", v, "float"), *_lane_mask("chans", "%n", v),
              f"  %biasv = call {vec} @llvm.masked.load.v{v}f32.p0(ptr %bias, i32 4, <{v} x i1> %chans, "
              f"{vec} zeroinitializer)"]
    return "\n".join([*lines, *_transpose_in(v), *_compute(v, ksize, stride, group), *_transpose_out(v), "}"])


def kernel_names(ksize: int, v: int) -> list[str]:
    """The functions of :func:`module_ir` ``(ksize, v)``, in its order:
    by stride, then by group."""
    return [kernel_name(ksize, stride, group, v) for stride in SIZES[ksize] for group in GROUPS]


def module_ir(ksize: int, v: int) -> str:
    """Every block kernel of ``ksize`` for vectors of ``v`` lanes."""
    parts = [f"; Tessera {ksize}x{ksize} depthwise block kernels, {v} channels a vector",
             "declare i64 @llvm.smin.i64(i64, i64)",
             f"declare <{v} x float> @llvm.masked.load.v{v}f32.p0(ptr, i32, <{v} x i1>, <{v} x float>)",
             f"declare void @llvm.masked.store.v{v}f32.p0(<{v} x float>, ptr, i32, <{v} x i1>)",
             f"declare <{v} x float> @llvm.fma.v{v}f32(<{v} x float>, <{v} x float>, <{v} x float>)"]
    return "\n".join(parts + [block_ir(v, ksize, stride, group) for stride in SIZES[ksize] for group in GROUPS])
