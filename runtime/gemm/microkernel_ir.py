"""GEMM microkernels as LLVM IR text, generated from a few parameters (the
kernel family :class:`Isa`); runtime.gemm.microkernel compiles it for the host.

A microkernel computes one ``mr x width`` tile of ``C`` as a rank-``kc``
update from two panels::

    void kernel(i64 kc, T* a, T* b, i64 ldb, T* c, i64 ldc,
                i64 rows, i64 cols, i64 accumulate, T* bias,
                T* residual, i64 ldr, T* clamp)

Every element is 4 bytes. ``a`` holds ``kc`` groups of ``mr`` elements
(step ``k`` of the A tile, as :mod:`runtime.gemm.pack` lays it out); step
``k`` of the B tile is the ``width`` elements at ``b + k * ldb``. The tile
lives in vector registers (a tile row is one to three vectors of 16 or 8
lanes) and is updated once per register and step, in increasing ``k``. Then
the epilogue, in this order: ``bias[i]`` is added to row ``i`` (unless
``bias`` is null); the tile is added to ``C``'s values when ``accumulate``
is non-zero; for ``f32``, the tile of ``residual`` (row stride ``ldr``) is
added unless it is null, and each value is clamped to ``[clamp[0],
clamp[1]]`` unless ``clamp`` is null (numpy's ``maximum`` then ``minimum``:
NaN stays NaN), then put through the gate ``clamp[4]`` names, if any
(HardSigmoid or HardSwish with alpha ``clamp[2]``, beta ``clamp[3]``: a
clamp array, runtime.gemm.operands.CLAMP_SIZE). The result is stored to
``C`` (row stride ``ldc`` elements). So a convolution's bias, residual add,
ReLU / ReLU6 and HardSwish happen while its output tile is still in
registers. Only the top-left ``rows x
cols`` part is read and written (masked loads and stores), so ``C``,
``bias`` and ``residual`` need no padding; the panels are read whole, and
the packers pad them with zeros. The int kernels take no residual; given
a ``clamp``, it holds a requantisation record per row and they write the
tile as int8 bytes at ``residual`` (row stride ``ldr`` bytes) instead of
``C`` (runtime.gemm.microkernel_epilogue's ``_requantize``: a CONV's
epilogue on its 32-bit path, in registers).

Two kinds of kernel share that frame:

* ``f32``: ``T`` is float; a step is one ``k``; the update is ``llvm.fma``,
  so each output element is a sequential chain of fused multiply-adds.
* ``u8s8``: ``T`` is int32; a step is four consecutive ``k``: each B lane
  holds 4 unsigned bytes, each A element 4 signed bytes, and the update adds
  their 4 products to the int32 lane (``vpdpbusd`` with AVX512-VNNI;
  otherwise two ``pmaddwd`` of 16-bit pairs: B's bytes split in the loop,
  A's split by the packers, :attr:`runtime.gemm.family.Isa.a_words`).
  Exact: integer sums wrap modulo 2^32 and nothing saturates.

A kernel family (:class:`Isa`) has one kernel per tile width, every multiple
of ``UNIT`` lanes up to ``nr``, so a narrow last column panel wastes at most
7 lanes. Float kernels have remainder kernels for a last panel of 1 to
``Isa.remainder_cols`` columns (N = 4 leaves four; N = 49, one past 48):
same signature, but they take several row panels at once
(runtime.gemm.family.remainder_group: AVX-512 8, ``rows`` up to 64, or 4
for 4 columns; AVX2 4, up to 16), with A's steps as vectors and B's values
broadcast, and write through masked scatters.

The IR is generated as text, never as Python source: nothing runs but
LLVM's own output. The update loop is written here, the epilogue (and the
writer both use) in :mod:`runtime.gemm.microkernel_epilogue`.
"""
from __future__ import annotations

from dataclasses import dataclass

from runtime.gemm.family import UNIT, Isa, a_words, remainder_group, tall_kernel
from runtime.gemm.microkernel_epilogue import (
    Writer,
    const_vector,
    remainder_epilogue,
    splat_vector,
    tile_epilogue,
)


# ------------------------------------------------------------- IR generation
@dataclass(frozen=True)
class _Tile:
    """Register blocking of one kernel: ``mr`` rows, each made of vectors of
    the given lane counts; ``unroll`` steps per loop trip."""

    kind: str
    mr: int
    vectors: tuple[int, ...]
    vnni: bool = False
    unroll: int = 4
    panels: int = 1
    """Packed A panels the ``mr`` rows come from (float only): a tall tile
    (:func:`_kernels`) takes ``panels`` consecutive row panels of
    ``mr // panels`` rows at once."""

    @property
    def width(self) -> int:
        return sum(self.vectors)

    @property
    def pmr(self) -> int:
        """Rows of one packed A panel: the A elements of a step."""
        return self.mr // self.panels

    @property
    def aw(self) -> int:
        """32-bit words of A per row and step: 2 for int8 without VNNI (the
        packers' even and odd 16-bit pairs, ``Isa.a_words``), else 1."""
        return a_words(self.kind, self.vnni)

    @property
    def elem(self) -> str:
        return "float" if self.kind == "f32" else "i32"

    @property
    def suffix(self) -> str:
        return "f32" if self.kind == "f32" else "i32"

    @property
    def name(self) -> str:
        tall = f"_p{self.panels}" if self.panels > 1 else ""
        return f"tessera_{self.kind}_{self.mr}x{self.width}_" + "_".join(map(str, self.vectors)) + tall

    def vec(self, lanes: int) -> str:
        return f"<{lanes} x {self.elem}>"

    def offset(self, j: int) -> int:
        """Lane of the tile row where vector ``j`` starts."""
        return sum(self.vectors[:j])

    def acc_types(self) -> list[list[str]]:
        return [[self.vec(lanes) for lanes in self.vectors] for _ in range(self.mr)]

    def prologue(self, w: "Writer") -> str:
        """Float kernels: prefetch the output tile (and the residual tile, when given) while
        the loop runs: the tile is stored only after the loop, and a layer's
        output rows, ``mr`` of them interleaved with the other row panels',
        are too many streams for the hardware prefetcher, so each store
        waited on a line from memory (a 1x1 convolution's output at 56x56:
        ``mr`` rows 12.5 KB apart). Returns the label the loop is entered from."""
        _panel_offsets(w, self.pmr, self.panels)
        if self.kind != "f32":  # the simulator's int8 products ran ~8% slower with it (ResNet-50's Run_sw)
            return "entry"
        _prefetch_tile(w, self, "%c", "%ldc", 1)
        w.emit("%pf_res = icmp ne ptr %residual, null")
        w.emit("br i1 %pf_res, label %pf_residual, label %pf_done")
        w.label("pf_residual")
        _prefetch_tile(w, self, "%residual", "%ldr", 0)
        w.emit("br label %pf_done")
        w.label("pf_done")
        return "pf_done"

    def step(self, w: "Writer", acc: list[list[str]], pa: str, pb: str, k: int) -> list[list[str]]:
        return _step(w, self, acc, pa, pb, k)

    def epilogue(self, w: "Writer", acc: list[list[str]]) -> None:
        tile_epilogue(w, self, acc)


@dataclass(frozen=True)
class _Remainder:
    """The last ``cols`` (at most ``Isa.remainder_cols``) columns of ``panels``
    row panels at once, float only: a step of an A panel (``mr`` floats) is
    one vector, B's values are broadcast, so a 1-column remainder costs one
    lane in ``mr`` instead of a whole 8-lane tile row. The output is written
    with masked scatters (rows ``< rows`` only)."""

    kind: str
    mr: int
    panels: int
    cols: int
    unroll: int = 4

    elem = "float"
    suffix = "f32"
    aw = 1

    @property
    def name(self) -> str:
        return f"tessera_{self.kind}_rem_{self.panels * self.mr}x{self.cols}"

    def vec(self, lanes: int) -> str:
        return f"<{lanes} x {self.elem}>"

    def acc_types(self) -> list[list[str]]:
        return [[self.vec(self.mr)] * self.cols for _ in range(self.panels)]

    @property
    def pmr(self) -> int:
        return self.mr

    def prologue(self, w: "Writer") -> None:
        _panel_offsets(w, self.mr, self.panels)

    def step(self, w: "Writer", acc: list[list[str]], pa: str, pb: str, k: int) -> list[list[str]]:
        """Each panel's A vector of step ``k`` times each broadcast B value
        (:meth:`splats`), into the accumulators."""
        splats = self.splats(w, pb, k)
        vec, new = self.vec(self.mr), []
        for p in range(self.panels):
            ptr, value = w.fresh("pa"), w.fresh("a")
            w.emit(f"{ptr} = getelementptr inbounds float, ptr {_panel(w, pa, p)}, i64 {k * self.mr}")
            w.emit(f"{value} = load {vec}, ptr {ptr}, align 4")
            outs = []
            for j in range(self.cols):
                out = w.fresh("acc")
                w.emit(f"{out} = call {vec} @llvm.fma.v{self.mr}f32({vec} {value}, {vec} {splats[j]}, "
                       f"{vec} {acc[p][j]})")
                outs.append(out)
            new.append(outs)
        return new

    def splats(self, w: "Writer", pb: str, k: int) -> list[str]:
        """The ``cols`` values of B's row ``k`` (at ``pb``, ``%ldb`` apart), each broadcast to a vector."""
        row = pb
        if k:
            row = w.fresh("brow")
            w.emit(f"{row} = getelementptr inbounds float, ptr {pb}, i64 %ldb{k}")
        return [_splat_load(w, self.mr, row, str(j)) for j in range(self.cols)]

    def epilogue(self, w: "Writer", acc: list[list[str]]) -> None:
        remainder_epilogue(w, self, acc)


def _splat_load(w: Writer, lanes: int, base: str, index: str) -> str:
    """The float at ``base + index`` broadcast to ``lanes`` lanes."""
    ptr, scalar = w.fresh("pb"), w.fresh("b")
    w.emit(f"{ptr} = getelementptr inbounds float, ptr {base}, i64 {index}")
    w.emit(f"{scalar} = load float, ptr {ptr}, align 4")
    return splat_vector(w, lanes, scalar, "float")


@dataclass(frozen=True)
class _WideTile(_Tile):
    """An ``mr x nr`` float tile with ``tail`` more columns (a last panel of
    ``nr + tail``, N = 49 from 48): the tile as :class:`_Tile` computes it,
    and the tail columns as a :class:`_Remainder` of one row panel does
    (per step, A's ``mr`` values as one vector times each tail value of B's
    row broadcast), in the registers the tile leaves free (AVX-512: 24
    accumulators, 3 B vectors, then 1 to 3 tail accumulators and the A
    vector). Each element is the same fused multiply-add chain, so the
    results equal the tile's and the remainder kernel's bit for bit; but A
    is read once, where a separate remainder pass read it again (a 7 x 7
    plane's products ran 25 to 38 % longer than with 48 columns). The tail
    columns are read at ``b + k * ldb + nr`` (packed or in place alike) and
    written, like a remainder kernel's, by masked scatters of rows ``<
    rows``; ``cols`` is always ``nr + tail``."""

    tail: int = 1

    @property
    def main(self) -> int:
        return sum(self.vectors)

    @property
    def width(self) -> int:
        return self.main + self.tail

    @property
    def name(self) -> str:
        return f"{super().name}_t{self.tail}"

    def acc_types(self) -> list[list[str]]:
        return super().acc_types() + [[self.vec(self.mr)] * self.tail]

    def step(self, w: "Writer", acc: list[list[str]], pa: str, pb: str, k: int) -> list[list[str]]:
        new = _step(w, self, acc[:self.mr], pa, pb, k)
        row = pb
        if k:
            row = w.fresh("brow")
            w.emit(f"{row} = getelementptr inbounds float, ptr {pb}, i64 %ldb{k}")
        vec, ptr, value = self.vec(self.mr), w.fresh("pa"), w.fresh("a")
        w.emit(f"{ptr} = getelementptr inbounds float, ptr {pa}, i64 {k * self.mr}")
        w.emit(f"{value} = load {vec}, ptr {ptr}, align 4")
        tails = []
        for j in range(self.tail):
            at, scalar, out = w.fresh("pb"), w.fresh("b"), w.fresh("acc")
            w.emit(f"{at} = getelementptr inbounds float, ptr {row}, i64 {self.main + j}")
            w.emit(f"{scalar} = load float, ptr {at}, align 4")
            splat = splat_vector(w, self.mr, scalar, "float")
            w.emit(f"{out} = call {vec} @llvm.fma.v{self.mr}f32({vec} {value}, {vec} {splat}, {vec} {acc[self.mr][j]})")
            tails.append(out)
        return new + [tails]

    def epilogue(self, w: "Writer", acc: list[list[str]]) -> None:
        """The tail columns' epilogue and stores first (as a one-panel
        remainder kernel's, from block ``store``), then the tile's."""
        columns = _Remainder(self.kind, self.mr, 1, self.tail)
        remainder_epilogue(w, columns, [acc[self.mr]], prefix="t_", first_col=self.main, then="tile_store")
        w.label("tile_store")
        tile_epilogue(w, self, acc[:self.mr], entry="tile_store")


def _update(w: Writer, t: _Tile, lanes: int, a: list[str], b, acc: str) -> str:
    """``acc`` plus the products of one step: ``a`` the row's A words
    broadcast (one, or the even and odd pairs), ``b`` a B vector (or its
    even and odd halves, :func:`_b_halves`)."""
    vec, out = t.vec(lanes), w.fresh("acc")
    if t.kind == "f32":
        w.emit(f"{out} = call {vec} @llvm.fma.v{lanes}f32({vec} {a[0]}, {vec} {b}, {vec} {acc})")
    elif t.vnni:
        bits = 32 * lanes
        w.emit(f"{out} = call {vec} @llvm.x86.avx512.vpdpbusd.{bits}({vec} {acc}, {vec} {b}, {vec} {a[0]})")
    else:
        out = _madd_update(w, lanes, a, b, acc)
    return out


def _madd_intrinsic(lanes: int) -> str:
    return "llvm.x86.avx2.pmadd.wd" if lanes == 8 else "llvm.x86.avx512.pmaddw.d.512"


def _b_halves(w: Writer, lanes: int, b: str) -> tuple[str, str]:
    """A B vector's unsigned bytes as 16-bit pairs: the even bytes (k and
    k + 2 of each lane, zero-extended) and the odd ones (k + 1, k + 3);
    computed once a step and shared by the tile's rows."""
    half = f"<{2 * lanes} x i16>"
    b16, even, odd = w.fresh("b16"), w.fresh("be"), w.fresh("bo")
    w.emit(f"{b16} = bitcast <{lanes} x i32> {b} to {half}")
    w.emit(f"{even} = and {half} {b16}, {const_vector(2 * lanes, 255, 'i16')}")
    w.emit(f"{odd} = lshr {half} {b16}, {const_vector(2 * lanes, 8, 'i16')}")
    return even, odd


def _madd_update(w: Writer, lanes: int, a: list[str], b: tuple[str, str], acc: str) -> str:
    """``acc`` plus the 4 products of each lane's bytes, exactly, without
    VNNI: ``pmaddwd`` multiplies 16-bit pairs into one int32 sum, B's even
    bytes by A's even pair (bytes k and k + 2, sign-extended by the
    packers), B's odd bytes by A's odd pair. |255 * 128 * 2| is far inside
    int32, and nothing saturates (``pmaddubsw`` would: 255 * 127 * 2
    exceeds int16). Two multiplies and two adds a row and vector; where the
    kernel split A's bytes itself (three shifts a row and step, and the
    4 x 24 tile's live halves spilled) the AVX2 int8 tile multiplied at
    1.1x the float tile's rate, now at ~1.5x (Zen 3)."""
    vec, half = f"<{lanes} x i32>", f"<{2 * lanes} x i16>"
    total = acc
    for pair, bytes_ in zip(a, b):
        a16, prod, nxt = w.fresh("a16"), w.fresh("prod"), w.fresh("acc")
        w.emit(f"{a16} = bitcast {vec} {pair} to {half}")
        w.emit(f"{prod} = call {vec} @{_madd_intrinsic(lanes)}({half} {bytes_}, {half} {a16})")
        w.emit(f"{nxt} = add {vec} {total}, {prod}")
        total = nxt
    return total


def _panel_offsets(w: "Writer", pmr: int, panels: int) -> None:
    """``%poff{p}``: where row panel ``p`` of a kernel taking ``panels``
    (more than one) starts, in elements past the first: ``kc * pmr`` apart."""
    if panels < 2:
        return
    w.emit(f"%pstride = mul i64 %kc, {pmr}")
    for p in range(panels):
        w.emit(f"%poff{p} = mul i64 %pstride, {p}")


def _panel(w: "Writer", pa: str, p: int) -> str:
    """The address of step 0 of row panel ``p`` at ``pa`` (panel 0's)."""
    if p == 0:
        return pa
    panel = w.fresh("panel")
    w.emit(f"{panel} = getelementptr inbounds float, ptr {pa}, i64 %poff{p}")
    return panel


def _prefetch_tile(w: "Writer", t: "_Tile", base: str, stride: str, write: int) -> None:
    """``llvm.prefetch`` of every cache line of the ``mr x width`` tile at
    ``base`` (row stride ``stride`` elements); a prefetch never faults, so
    rows past the operand's edge are harmless."""
    per_line = 64 // 4
    offsets = sorted({*range(0, t.width, per_line), t.width - 1})
    for i in range(t.mr):
        row = w.fresh("pfrow")
        w.emit(f"{row} = mul i64 {stride}, {i}")
        for offset in offsets:
            index, ptr = w.fresh("pfi"), w.fresh("pf")
            w.emit(f"{index} = add i64 {row}, {offset}")
            w.emit(f"{ptr} = getelementptr {t.elem}, ptr {base}, i64 {index}")
            w.emit(f"call void @llvm.prefetch.p0(ptr {ptr}, i32 {write}, i32 3, i32 1)")


def _step(w: Writer, t: _Tile, acc: list[list[str]], pa: str, pb: str, k: int) -> list[list[str]]:
    """Step ``k`` of the update: (float) ask for the B row
    :data:`B_PREFETCH` steps on; then :func:`row_step` on B's row ``k``."""
    if t.kind == "f32" and B_PREFETCH:
        ahead = w.fresh("bnext")
        w.emit(f"{ahead} = getelementptr {t.elem}, ptr {pb}, i64 %ldb{k + B_PREFETCH}")
        for line in range(0, t.width, 16):
            ptr = w.fresh("bline")
            w.emit(f"{ptr} = getelementptr {t.elem}, ptr {ahead}, i64 {line}")
            w.emit(f"call void @llvm.prefetch.p0(ptr {ptr}, i32 0, i32 3, i32 1)")

    def b_row(w: Writer) -> str:
        if not k:
            return pb
        row = w.fresh("brow")
        w.emit(f"{row} = getelementptr inbounds {t.elem}, ptr {pb}, i64 %ldb{k}")
        return row
    return row_step(w, t, acc, pa, k, b_row)


def row_step(w: Writer, t: _Tile, acc: list[list[str]], pa: str, k: int, b_row) -> list[list[str]]:
    """Step ``k`` of the update: (float) ask for the A line
    :data:`A_PREFETCH` elements on where the step starts one; load B's row
    (at what ``b_row(w)`` emits), broadcast each A element, update every
    accumulator."""
    if t.kind == "f32" and A_PREFETCH and (k * t.pmr * 4) % 64 == 0:
        for p in range(t.panels):
            ptr = w.fresh("anext")
            w.emit(f"{ptr} = getelementptr {t.elem}, ptr {_panel(w, pa, p)}, i64 {k * t.pmr + A_PREFETCH}")
            w.emit(f"call void @llvm.prefetch.p0(ptr {ptr}, i32 0, i32 3, i32 1)")
    row = b_row(w)
    bvals = []
    for j, lanes in enumerate(t.vectors):
        ptr, val = w.fresh("pb"), w.fresh("b")
        w.emit(f"{ptr} = getelementptr inbounds {t.elem}, ptr {row}, i64 {t.offset(j)}")
        w.emit(f"{val} = load {t.vec(lanes)}, ptr {ptr}, align 4")
        bvals.append(val)
    new = []
    panels = [_panel(w, pa, p) for p in range(t.panels)]
    halves = [_b_halves(w, lanes, b) for lanes, b in zip(t.vectors, bvals)] if t.aw == 2 else bvals
    for i in range(t.mr):
        words = []
        for h in range(t.aw):  # the row's A element, or its even and odd pairs
            ptr, scalar = w.fresh("pa"), w.fresh("a")
            at = (k * t.aw + h) * t.pmr + i % t.pmr
            w.emit(f"{ptr} = getelementptr inbounds {t.elem}, ptr {panels[i // t.pmr]}, i64 {at}")
            w.emit(f"{scalar} = load {t.elem}, ptr {ptr}, align 4")
            words.append({lanes: splat_vector(w, lanes, scalar, t.elem) for lanes in sorted(set(t.vectors))})
        new.append([_update(w, t, lanes, [x[lanes] for x in words], halves[j], acc[i][j])
                    for j, lanes in enumerate(t.vectors)])
    return new


def _loop(w: Writer, t, name: str, steps: int, entry: tuple, exit_label: str) -> list[list[str]]:
    """A loop doing ``steps`` steps per trip while ``k + steps <= kc``.

    ``entry`` is (predecessor label, accumulators, pa, pb, k) flowing in;
    returns the header's accumulators, the values seen at ``exit_label``."""
    head, body = f"{name}_head", f"{name}_body"
    pred, start_acc, start_pa, start_pb, start_k = entry
    types = t.acc_types()
    acc = [[f"%{name}_acc_{i}_{j}" for j in range(len(row))] for i, row in enumerate(types)]
    inner = Writer(w.count)
    cur = acc
    for k in range(steps):
        cur = t.step(inner, cur, f"%{name}_pa", f"%{name}_pb", k)
    w.count = inner.count
    w.emit(f"br label %{head}")
    w.label(head)
    for i, row in enumerate(types):
        for j, vec in enumerate(row):
            w.emit(f"{acc[i][j]} = phi {vec} [ {start_acc[i][j]}, %{pred} ], [ {cur[i][j]}, %{body} ]")
    for var, start, kind in (("pa", start_pa, "ptr"), ("pb", start_pb, "ptr"), ("k", start_k, "i64")):
        w.emit(f"%{name}_{var} = phi {kind} [ {start}, %{pred} ], [ %{name}_n{var}, %{body} ]")
    w.emit(f"%{name}_end = add i64 %{name}_k, {steps}")
    w.emit(f"%{name}_go = icmp sle i64 %{name}_end, %kc")
    w.emit(f"br i1 %{name}_go, label %{body}, label %{exit_label}")
    w.label(body)
    w.lines.extend(inner.lines)
    w.emit(f"%{name}_npa = getelementptr inbounds {t.elem}, ptr %{name}_pa, i64 {steps * t.pmr * t.aw}")
    w.emit(f"%{name}_npb = getelementptr inbounds {t.elem}, ptr %{name}_pb, i64 %ldb{steps}")
    w.emit(f"%{name}_nk = add i64 %{name}_k, {steps}")
    w.emit(f"br label %{head}")
    return acc


def _function(t) -> str:
    """IR text of the microkernel with blocking ``t`` (a :class:`_Tile` or
    :class:`_Remainder`; no declarations)."""
    w = Writer()
    w.label("entry")
    for k in range(1, t.unroll + B_PREFETCH + 1):
        w.emit(f"%ldb{k} = mul i64 %ldb, {k}")
    return kernel_text(t.name, tile_body(w, t, "%b"))


def kernel_text(name: str, body: str, b: str = "%b", ldb: str = "%ldb") -> str:
    """A kernel's definition with the arguments every tile kernel takes
    (runtime.gemm.microkernel.call_kernel calls them), B's pointer and its
    i64 beside it named ``b`` and ``ldb``."""
    return f"""define void @{name}(i64 %kc, ptr noalias readonly %a, ptr noalias readonly {b}, i64 {ldb},
                      ptr noalias %c, i64 %ldc, i64 %rows, i64 %cols, i64 %accumulate,
                      ptr noalias readonly %bias, ptr noalias %residual, i64 %ldr,
                      ptr noalias readonly %clamp) nounwind {{
{body}
}}
"""


def tile_body(w: Writer, t, pb: str) -> str:
    """The rest of a kernel's body after its entry block's own lines: the
    prologue, the loops over the ``%kc`` steps (A from ``%a``, B's rows
    from ``pb``) and the epilogue; its text."""
    zeros = [["zeroinitializer"] * len(row) for row in t.acc_types()]
    entry = t.prologue(w) or "entry"
    main = _loop(w, t, "main", t.unroll, (entry, zeros, "%a", pb, "0"), "tail_pre")
    w.label("tail_pre")
    tail = _loop(w, t, "tail", 1, ("tail_pre", main, "%main_pa", "%main_pb", "%main_k"), "store")
    w.label("store")
    t.epilogue(w, tail)
    return "\n".join(w.lines)


def _declarations(kind: str, lanes: int, vnni: bool) -> str:
    elem, suffix = ("float", "f32") if kind == "f32" else ("i32", "i32")
    vec, mask, ptrs = f"<{lanes} x {elem}>", f"<{lanes} x i1>", f"<{lanes} x ptr>"
    lines = [f"declare {vec} @llvm.masked.load.v{lanes}{suffix}.p0(ptr, i32, {mask}, {vec})",
             f"declare void @llvm.masked.store.v{lanes}{suffix}.p0({vec}, ptr, i32, {mask})"]
    if kind == "f32":
        lines += [f"declare {vec} @llvm.fma.v{lanes}f32({vec}, {vec}, {vec})",
                  f"declare {vec} @llvm.masked.gather.v{lanes}f32.v{lanes}p0({ptrs}, i32, {mask}, {vec})",
                  f"declare void @llvm.masked.scatter.v{lanes}f32.v{lanes}p0({vec}, {ptrs}, i32, {mask})"]
    else:
        lines += [f"declare {vec} @llvm.smax.v{lanes}i32({vec}, {vec})",
                  f"declare {vec} @llvm.smin.v{lanes}i32({vec}, {vec})",
                  f"declare void @llvm.masked.store.v{lanes}i8.p0(<{lanes} x i8>, ptr, i32, {mask})"]
        if vnni:
            lines.append(f"declare {vec} @llvm.x86.avx512.vpdpbusd.{32 * lanes}({vec}, {vec}, {vec})")
        else:
            half = f"<{2 * lanes} x i16>"
            lines.append(f"declare {vec} @{_madd_intrinsic(lanes)}({half}, {half})")
    return "\n".join(lines) + "\n"


A_PREFETCH = 512
"""Elements ahead (2 KB: 64 steps of an 8-row tile) that a float tile asks
for A's lines, one a cache line of A it starts: where a product has few
columns (ResNet-50's 14 x 14 and 7 x 7 layers, N = 196 and 49) each A
element is used once a column panel, so the packed weights stream through
the kernel from L3 (9.4 MB for a 512 x 4608 layer) and the hardware
prefetcher, crossing from one row panel's block to the next, kept the
kernel waiting. ResNet-50's float program, 2 threads, Emerald Rapids:
31.1 -> 28.4 ms (its 7 x 7 layers 1.16 -> 0.94 ms, 14 x 14 3 x 3 0.63 ->
0.53), MobileNetV2 unchanged (its products have many columns); 1024 no
better than 512. The int8 tiles do not ask: on the simulator the same
change moved ResNet-50 -3 % and MobileNetV2 +3 %, inside the noise."""
B_PREFETCH = 4
"""Steps ahead of its use that a float tile asks for a B row (its lines):
read in place, B's rows are a row of the activations apart (12.5 KB at 56 x
56), each in a page of its own, and the hardware prefetchers follow none of
them; the first row panel to sweep a column panel waited on every line.
One thread, B in L2: (24, 144, 3136) 47.7 -> 56.5 GMAC/s, (64, 256, 3136)
57.3 -> 63.8; products that reuse B longer are unchanged."""

WIDE_UNROLL = {1: 2, 2: 2, 3: 1}
"""Steps per loop trip of the wide kernels by tail columns: at the tile's 4,
LLVM's register allocator copied and spilled accumulators in the loop
(AVX-512, LLVM 22); at these it keeps all of them in registers."""


def _kernels(isa: Isa, kind: str) -> list:
    """One tile per width ``UNIT, 2 UNIT, ..., nr``, then (float, where the
    family has them) one remainder kernel per width ``1 .. isa.remainder_cols``,
    one ``nr + t``-wide tile per ``t`` in ``1 .. isa.wide_tail`` and the
    tall tile (``UNIT`` wide, ``isa.tall_panels`` row panels): the order of
    :func:`kernel_addresses`."""
    tiles = [_Tile(kind, isa.mr, isa.vectors(width), isa.vnni)
             for width in range(UNIT, isa.nr + 1, UNIT)]
    if kind != "f32" or not isa.remainder_panels:
        return tiles
    tall = [_Tile(kind, isa.mr * isa.tall_panels, (UNIT,), panels=isa.tall_panels)] if tall_kernel(isa, kind) else []
    return (tiles + [_Remainder(kind, isa.mr, remainder_group(isa, cols), cols)
                     for cols in range(1, isa.remainder_cols + 1)]
            + [_WideTile(kind, isa.mr, isa.vectors(isa.nr), tail=t, unroll=WIDE_UNROLL[t])
               for t in range(1, isa.wide_tail + 1)] + tall)


def kernel_ir(isa: Isa, kind: str = "f32") -> str:
    """LLVM IR text of one module holding all of ``isa``'s ``kind`` kernels."""
    tiles = _kernels(isa, kind)
    lanes = sorted({v for t in tiles if isinstance(t, _Tile) for v in t.vectors} | {isa.mr})
    declarations = "declare void @llvm.prefetch.p0(ptr, i32, i32, i32)\n" + "".join(
        _declarations(kind, n, isa.vnni) for n in lanes)
    return (f"; Tessera GEMM microkernels ({kind}, {isa.name})\n{declarations}\n"
            + "\n".join(_function(t) for t in tiles))


def kernel_names(isa: Isa, kind: str) -> list[str]:
    """The functions of :func:`kernel_ir`'s module, in the order of runtime.gemm.microkernel.kernel_addresses."""
    return [t.name for t in _kernels(isa, kind)]
