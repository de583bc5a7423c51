"""The stride-2 plane kernels of the 5x5 and 7x7 depthwise convolutions
(runtime.kernels.depthwise_text) read their input as two phase planes.

At stride 2, output column ``ox`` reads input column ``2 ox + d`` for each
kernel column's offset ``d = kw - pad``: the even input columns for even
``d``, the odd ones for odd ``d``, each ``(d - d % 2) / 2`` outputs to the
side. The kernels read each tap as a block of ``2V`` input columns and
kept its even lanes: a load and a shuffle a tap (on AVX-512, LLVM made the
16 -> 8 lane shuffle three instructions), which made these layers twice
onnxruntime's time (PP-LCNet's 256 x 14 x 14 at stride 2: 55 against 27
us, one thread, Zen 4). Here a kernel first splits each input row of its
plane into its even columns and its odd ones, a vector pair at a time,
into a scratch buffer (:func:`deinterleave`): the even phase plane, then
the odd one, rows :func:`phase_stride` floats apart. Each tap is then one
load from its phase row at ``ox + m``, masked where the block reaches past
the phase row's ends (:func:`phase_masks`), as the stride-1 kernels load
theirs. The values are those the shuffles gave, zero outside the plane,
so the sums (one chain of fused multiply-adds over the taps in (kh, kw)
order) and the outputs are the same, bit for bit. Kernels alone, one
thread, Zen 4, against the shuffles: AVX-512 code 256 x 14 x 14 5x5 42 ->
33 us, 7x7 79 -> 56, 512 x 20 x 20 5x5 223 -> 89, 240 x 56 x 56 540 ->
205, 128 x 28 x 28 7x7 149 -> 54; AVX2 code 44 -> 30, 89 -> 53, 239 ->
114, 469 -> 324, 139 -> 61 (with :data:`PHASED_ROWS`).

The caller gives the scratch, zeros (:func:`scratch_floats` floats, made
once a call of a run of planes: runtime.kernels.depthwise_ir.
depthwise_ir_run): a kernel writes the rows of the plane and reads the
:data:`ROW_PAD` rows above and below it, which stay zero, for the kernel
rows outside the plane.
"""
from __future__ import annotations

from runtime.jit import jit
from runtime.kernels.depthwise_taps import constant, masked_load, splat_i64, tap_loads, tap_mask

PHASE_ALIGN = 16
"""A phase row's floats are a multiple of this (the widest block, 16
lanes): a block's store of ``V`` even or odd columns never reaches the next
row."""
PHASED_ROWS = 4
"""Output rows a trip of a phased kernel's main loop computes (then two,
then one: runtime.kernels.depthwise_text.plane_ir). Each output's sum is
one chain of 25 or 49 fused multiply-adds, so the rows of a trip are the
independent chains in flight; a tap's load no longer costs a shuffle, so
more rows pay where two did before. One thread, kernels alone, against two
rows (Zen 4): AVX-512 code 240 x 56 x 56 (5x5) 283 -> 206 us, 128 x 28 x
28 (7x7) 62 -> 54, 14 x 14 planes and 512 x 20 x 20 as before (31-33, 55-
56, 88-90); AVX2 code 128 x 28 x 28 71 -> 61-64, the others within 3 %.
Eight rows did no better overall and took 1.4 times as long to compile."""
ROW_PAD = 3
"""Rows of zeros a phase plane has above and below the plane's rows, room
for the largest kernel's pad (7x7): a kernel row outside the plane reads
them, so no row needs a test or a select of its own."""


PHASED_STRIDE, PHASED_MIN_SIZE = 2, 5
"""The stride and the smallest kernel size whose plane kernels read phase
planes (the 3x3 kernels at stride 2 load each input row once and take its
three taps by shuffles that carry a column from block to block)."""


def phased(stride: int, ksize: int) -> bool:
    """Whether the plane kernels of ``ksize`` at ``stride`` read phase planes."""
    return stride == PHASED_STRIDE and ksize >= PHASED_MIN_SIZE


@jit(inline="always")
def phase_stride(width):
    """Floats between two rows of a phase plane of ``width``-wide input rows."""
    return ((width + 1) // 2 + PHASE_ALIGN - 1) // PHASE_ALIGN * PHASE_ALIGN


@jit(inline="always")
def scratch_floats(height, width, stride, ksize):
    """The floats of the scratch the plane kernel of ``ksize`` at ``stride``
    needs for an input plane: none unless it is :func:`phased`; else two
    phase planes, each with :data:`ROW_PAD` rows above and below it that
    the kernels read and never write, so that a scratch made of zeros
    serves every plane of a call."""
    if stride != PHASED_STRIDE or ksize < PHASED_MIN_SIZE:
        return 0
    return 2 * (height + 2 * ROW_PAD) * phase_stride(width)


def tap_phase(kw: int, ksize: int) -> tuple[int, int]:
    """(parity, lane shift) of kernel column ``kw``: the phase plane it
    reads (0 even, 1 odd) and how many outputs to the side."""
    d = kw - ksize // 2
    return d % 2, (d - d % 2) // 2


def deinterleave(v: int, after: str, narrow: bool) -> list[str]:
    """IR (from the entry block on) splitting each of the ``%h`` rows of
    ``%x`` (``%w`` floats) into its even columns, at row ``ROW_PAD`` on of
    ``%scratch`` (``%we`` of them a row), and its odd ones, at ``%obuf``
    (``%wo``), rows ``%ps`` floats apart, ``2V`` columns a step (a masked
    load, zeros past the row); then a branch to ``after``. The rows above
    and below the plane are left as they are: zeros (:func:`scratch_floats`).

    ``narrow``: the kernel serves planes whose rows are one block (output
    rows of at most 16: runtime.kernels.depthwise_ir.depthwise_ir_run picks
    it for no other), whose phase rows are then :data:`PHASE_ALIGN` floats
    apart: a constant, so that the input rows of a trip are one pointer and
    fixed offsets, not a pointer each (the 8-lane 5x5 kernel spilled them:
    156 stack accesses, 51 with the constant; kernels alone, one thread,
    Zen 4, two runs: 256 x 14 x 14 5x5 36 -> 33-35 us, 7x7 62-64 -> 56-58,
    512 x 20 x 20 105-110 -> 90-106). It does nothing for a wider plane."""
    wide = 2 * v
    even, odd = constant(range(0, wide, 2)), constant(range(1, wide, 2))
    vec, pair = f"<{v} x float>", f"<{wide} x float>"
    lines = ["  %we1 = add i64 %w, 1", "  %we = lshr i64 %we1, 1", "  %wo = lshr i64 %w, 1"]
    if narrow:
        lines += [f"  %ps = add i64 0, {PHASE_ALIGN}", f"  %one.block = icmp sle i64 %we, {PHASE_ALIGN}",
                  "  br i1 %one.block, label %di.start, label %done", "di.start:"]
    else:
        lines += [f"  %ps1 = add i64 %we, {PHASE_ALIGN - 1}", f"  %ps = and i64 %ps1, {-PHASE_ALIGN}"]
    first = "di.start" if narrow else "entry"
    lines += [f"  %hrows = add i64 %h, {2 * ROW_PAD}", "  %hps = mul i64 %hrows, %ps",
             "  %obuf = getelementptr float, ptr %scratch, i64 %hps",
             "  %anyrow = icmp sgt i64 %h, 0", "  br i1 %anyrow, label %di.row, label %" + after,
             "di.row:",
             f"  %dr = phi i64 [0, %{first}], [%dr.next, %di.row.end]",
             f"  %drp = add i64 %dr, {ROW_PAD}",
             "  %drx = mul i64 %dr, %w", "  %drs = mul i64 %drp, %ps",
             "  %dsrc = getelementptr float, ptr %x, i64 %drx",
             "  %de = getelementptr float, ptr %scratch, i64 %drs",
             "  %do = getelementptr float, ptr %obuf, i64 %drs",
             "  br label %di.blk",
             "di.blk:",
             "  %dc = phi i64 [0, %di.row], [%dc.next, %di.blk]",
             "  %dleft = sub i64 %w, %dc", *splat_i64("dleftv", "%dleft", wide),
             f"  %dmask = icmp slt <{wide} x i32> {constant(range(wide))}, %dleftv",
             "  %dp = getelementptr float, ptr %dsrc, i64 %dc",
             masked_load(wide, "%dp", "%dv", "%dmask"),
             f"  %dve = shufflevector {pair} %dv, {pair} poison, <{v} x i32> {even}",
             f"  %dvo = shufflevector {pair} %dv, {pair} poison, <{v} x i32> {odd}",
             "  %dh = lshr i64 %dc, 1",
             "  %dpe = getelementptr float, ptr %de, i64 %dh", f"  store {vec} %dve, ptr %dpe, align 4",
             "  %dpo = getelementptr float, ptr %do, i64 %dh", f"  store {vec} %dvo, ptr %dpo, align 4",
             f"  %dc.next = add i64 %dc, {wide}",
             "  %dmore = icmp slt i64 %dc.next, %w",
             "  br i1 %dmore, label %di.blk, label %di.row.end",
             "di.row.end:",
             "  %dr.next = add i64 %dr, 1",
             "  %drmore = icmp slt i64 %dr.next, %h",
             f"  br i1 %drmore, label %di.row, label %{after}"]
    return lines


def phase_rows(q: str, j: int, pad: int) -> list[str]:
    """Input row ``%{q}top + j - pad``'s even and odd phase rows,
    ``%{q}base{j}`` and ``%{q}baseo{j}`` (rows of zeros outside the plane)."""
    return [f"  %{q}idx{j} = add i64 %{q}top, {j - pad + ROW_PAD}",
            f"  %{q}offs{j} = mul i64 %{q}idx{j}, %ps",
            f"  %{q}base{j} = getelementptr float, ptr %scratch, i64 %{q}offs{j}",
            f"  %{q}baseo{j} = getelementptr float, ptr %obuf, i64 %{q}offs{j}"]


def phase_masks(v: int, q: str, b: str, ksize: int) -> list[str]:
    """A block's tap masks ``%{b}mk{kw}``: lane ``i`` where ``0 <= ox + m +
    i`` and ``ox + m + i`` is below its phase row's width (``%we`` or
    ``%wo``), ``(parity, m)`` :func:`tap_phase`."""
    lines = [f"  %{b}wce = sub i64 %we, %{q}ox", *splat_i64(f"{b}wcev", f"%{b}wce", v),
             f"  %{b}wco = sub i64 %wo, %{q}ox", *splat_i64(f"{b}wcov", f"%{b}wco", v),
             *splat_i64(f"{b}oxv", f"%{q}ox", v)]
    for kw in range(ksize):
        parity, m = tap_phase(kw, ksize)
        lines += tap_mask(b, kw, v, f"%{b}wc{'o' if parity else 'e'}v", f"%{b}oxv", m)
    return lines


def phase_inputs(v: int, q: str, b: str, j: int, ksize: int, masked: bool) -> tuple[list[str], list[str]]:
    """Input row ``j`` of a block: one load a tap from its phase row at
    ``ox + m`` (:func:`tap_phase`)."""
    def where(kw: int) -> tuple[str, int]:
        parity, m = tap_phase(kw, ksize)
        return "o" if parity else "", m
    return tap_loads(v, q, b, j, ksize, masked, where)


def phase_inner(v: int, q: str, ksize: int) -> list[str]:
    """``%{q}inner``: whether every tap of the block at ``%{q}ox`` lies
    inside its phase row (then so do its outputs inside their row: the
    output row is ``%we`` wide, and an even tap reaches one past the block)."""
    shifts = [tap_phase(kw, ksize) for kw in range(ksize)]
    low = min(m for _, m in shifts)
    reach = {parity: max(m for p, m in shifts if p == parity) + v for parity in (0, 1)}
    return [f"  %{q}first = add i64 %{q}ox, {low}", f"  %{q}left.ok = icmp sge i64 %{q}first, 0",
            f"  %{q}reache = add i64 %{q}ox, {reach[0]}", f"  %{q}fite = icmp sle i64 %{q}reache, %we",
            f"  %{q}reacho = add i64 %{q}ox, {reach[1]}", f"  %{q}fito = icmp sle i64 %{q}reacho, %wo",
            f"  %{q}right.ok = and i1 %{q}fite, %{q}fito", f"  %{q}inner = and i1 %{q}left.ok, %{q}right.ok"]
