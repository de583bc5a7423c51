"""The LLVM IR text of Winograd's tile transforms: what each kernel
computes, and how it is called, is runtime.kernels.winograd_ir's docstring;
the text is generated from the tile size, the lanes and the kernel family's
store choice (:func:`spills`) alone, never as Python source.
"""
from __future__ import annotations

import struct

import numpy as np

from runtime.gemm.family import Isa
from runtime.kernels.winograd_matrices import A_T, B_T

LANES = (8, 16)
"""Tiles per vector, narrowest first: a plane takes the first at least as
wide as its tile rows (the extra tile included), else the last."""
TILES = (2, 4)
"""The tile sizes m of F(m x m, 3 x 3) that have kernels."""
AHEAD = 2
"""Tile rows ahead of its stores that the input transform asks for V's
lines (``prefetchw``): its n*n stores a block go to as many items of V, a
line each, and waited on the lines coming from L2 or L3 (64 x 56 x 56 at
F(4x4), one thread: 134 -> 101 us; 128 x 28 x 28 at F(2x2): 99 -> 64 us).
Prefetching the products' lines for the output transform gained nothing."""
def _hex(value: float) -> str:
    """``value`` as LLVM writes a float constant exactly (its double's bits)."""
    return f"0x{struct.unpack('<Q', struct.pack('<d', float(value)))[0]:016X}"


def _const(values, kind: str) -> str:
    return "<" + ", ".join(f"{kind} {v}" for v in values) + ">"


class _Writer:
    """Lines of a function body and fresh value names."""

    def __init__(self, v: int):
        self.v, self.lines, self.count = v, [], 0

    def emit(self, line: str) -> None:
        self.lines.append(f"  {line}")

    def label(self, name: str) -> None:
        self.lines.append(f"{name}:")

    def fresh(self, stem: str) -> str:
        self.count += 1
        return f"%{stem}{self.count}"

    def splat(self, scalar: str, lanes: int | None = None, kind: str = "float") -> str:
        lanes = lanes or self.v
        one, out = self.fresh("one"), self.fresh("splat")
        self.emit(f"{one} = insertelement <{lanes} x {kind}> poison, {kind} {scalar}, i64 0")
        self.emit(f"{out} = shufflevector <{lanes} x {kind}> {one}, <{lanes} x {kind}> poison, "
                  f"<{lanes} x i32> zeroinitializer")
        return out

    def combine(self, coefs, values: list[str], start: str | None) -> str:
        """``start + sum_t coefs[t] * values[t]`` over the nonzero coefficients,
        in order (``start`` None: zero, with no addition of it)."""
        vec = f"<{self.v} x float>"
        acc = start
        for c, value in zip(coefs, values):
            c = float(c)
            if c == 0:
                continue
            out = self.fresh("t")
            if acc is None:
                if c == 1:
                    acc = value
                    continue
                if c == -1:
                    self.emit(f"{out} = fneg {vec} {value}")
                else:
                    self.emit(f"{out} = fmul {vec} {value}, {self.splat(_hex(c))}")
            elif c == 1:
                self.emit(f"{out} = fadd {vec} {acc}, {value}")
            elif c == -1:
                self.emit(f"{out} = fsub {vec} {acc}, {value}")
            else:
                self.emit(f"{out} = call {vec} @llvm.fma.v{self.v}f32({vec} {self.splat(_hex(c))}, {vec} {value}, "
                          f"{vec} {acc})")
            acc = out
        return acc if acc is not None else "zeroinitializer"

    def item(self, base: str, e: int) -> str:
        """A pointer to the block's first tile (``%t``) in item ``e`` (items
        ``%es`` elements apart) of the array at ``base``."""
        off, ptr = self.fresh("io"), self.fresh("ip")
        self.emit(f"{off}a = mul i64 %es, {e}")
        self.emit(f"{off} = add i64 {off}a, %t")
        self.emit(f"{ptr} = getelementptr float, ptr {base}, i64 {off}")
        return ptr

    def prefetch_store(self, ptr: str) -> None:
        """Ask for the cache line :data:`AHEAD` tile rows (``%ahead``
        elements) past ``ptr``, to be written."""
        out = self.fresh("pf")
        self.emit(f"{out} = getelementptr float, ptr {ptr}, i64 %ahead")
        self.emit(f"call void @llvm.prefetch.p0(ptr {out}, i32 1, i32 3, i32 1)")

    def concat(self, parts: list[str], lanes: int) -> str:
        """The vectors ``parts`` (``lanes`` each) end to end, padded with zero
        vectors to a power-of-two count."""
        while len(parts) & (len(parts) - 1):
            parts = parts + ["zeroinitializer"]
        while len(parts) > 1:
            joined = []
            for a, b in zip(parts[::2], parts[1::2]):
                out = self.fresh("cat")
                self.emit(f"{out} = shufflevector <{lanes} x float> {a}, <{lanes} x float> {b}, "
                          f"<{2 * lanes} x i32> {_const(range(2 * lanes), 'i32')}")
                joined.append(out)
            parts, lanes = joined, 2 * lanes
        return parts[0]


def _name(kind: str, m: int, v: int) -> str:
    return f"tessera_winograd_{kind}_m{m}_{v}"


def _loops(w: _Writer, count_tiles: str, backwards: bool = False) -> None:
    """Open the loops over tile rows ``ty < %th`` and blocks of ``V`` tiles
    ``tx0 < count_tiles`` (from the last block to the first where
    ``backwards``); the block's body follows."""
    w.emit("%rows = icmp sgt i64 %th, 0")
    w.emit(f"%cols = icmp sgt i64 {count_tiles}, 0")
    w.emit("%any = and i1 %rows, %cols")
    if backwards:
        w.emit(f"%last.i = sub i64 {count_tiles}, 1")
        w.emit(f"%last.b = udiv i64 %last.i, {w.v}")
        w.emit(f"%last = mul i64 %last.b, {w.v}")  # the last block's first tile
    w.emit("br i1 %any, label %row, label %done")
    w.label("row")
    w.emit("%ty = phi i64 [0, %entry], [%ty.next, %row.end]")
    w.emit("%tile0 = mul i64 %ty, %pitch")
    w.emit("br label %block")
    w.label("block")
    w.emit(f"%tx0 = phi i64 [{'%last' if backwards else 0}, %row], [%tx0.next, %block.end]")
    w.emit("%t = add i64 %tile0, %tx0")


def _define(w: _Writer, count_tiles: str, name: str, params: str, backwards: bool = False) -> str:
    """The function ``name``: the body written into ``w`` after
    :func:`_loops`, with the loops closed."""
    _close_loops(w, count_tiles, backwards)
    return "\n".join([f"define void @{name}({params}) nounwind {{", *w.lines, "}"])


def _close_loops(w: _Writer, count_tiles: str, backwards: bool) -> None:
    w.emit("br label %block.end")
    w.label("block.end")
    if backwards:
        w.emit(f"%tx0.next = sub i64 %tx0, {w.v}")
        w.emit("%more = icmp sge i64 %tx0.next, 0")
    else:
        w.emit(f"%tx0.next = add i64 %tx0, {w.v}")
        w.emit(f"%more = icmp slt i64 %tx0.next, {count_tiles}")
    w.emit("br i1 %more, label %block, label %row.end")
    w.label("row.end")
    w.emit("%ty.next = add i64 %ty, 1")
    w.emit("%more.rows = icmp slt i64 %ty.next, %th")
    w.emit("br i1 %more.rows, label %row, label %done")
    w.label("done")
    w.emit("ret void")


def _lane_mask(w: _Writer, bound: str, lanes: int) -> str:
    """Lanes ``< bound`` (an i64) of a ``lanes``-wide vector."""
    b32 = w.fresh("b32")
    w.emit(f"{b32} = trunc i64 {bound} to i32")
    out = w.fresh("mask")
    w.emit(f"{out} = icmp slt <{lanes} x i32> {_const(range(lanes), 'i32')}, {w.splat(b32, lanes, 'i32')}")
    return out


def _columns(w: _Writer, row: list[str], m: int) -> list[str]:
    """The ``m + 2`` columns of ``V`` tiles from their input row ``row``
    (``m + 1`` vectors, element ``g`` at lane ``g % V`` of vector ``g // V``):
    column ``l`` holds element ``m*t + l`` at lane ``t``. Columns 0 to m - 1
    come from splitting the first ``m`` vectors into their even and odd
    elements, log2(m) times (``m`` two-source shuffles a level); columns m
    and m + 1 are columns 0 and 1 a lane on, with the last vector's first
    two elements shifted in (a shuffle each)."""
    v = w.v
    vec = f"<{v} x float>"
    picks = {parity: f"<{v} x i32> {_const(range(parity, 2 * v, 2), 'i32')}" for parity in (0, 1)}

    def phases(stream: list[str]) -> list[str]:
        """Vector ``p`` of the result holds elements ``len(stream)*t + p`` of the stream."""
        if len(stream) == 1:
            return stream
        halves = [[], []]
        for a, b in zip(stream[0::2], stream[1::2]):
            for parity in (0, 1):
                out = w.fresh("ph")
                w.emit(f"{out} = shufflevector {vec} {a}, {vec} {b}, {picks[parity]}")
                halves[parity].append(out)
        even, odd = phases(halves[0]), phases(halves[1])
        return [x for pair in zip(even, odd) for x in pair]

    columns = phases(row[:m])
    for first in range(2):
        out = w.fresh("col")
        w.emit(f"{out} = shufflevector {vec} {columns[first]}, {vec} {row[m]}, "
               f"<{v} x i32> {_const([*range(1, v), v + first], 'i32')}")
        columns.append(out)
    return columns


def input_ir(m: int, v: int, b_t: np.ndarray) -> str:
    """The input transform kernel of F(m x m) over ``v`` tiles
    (runtime.kernels.winograd_ir's docstring). A block stores whole vectors
    where they end inside the plane's tiles (``%span``): lanes past a tile
    row's end fall on the next tile rows' first tiles, written after them
    by the same call (the tile rows go in order); the plane's last block
    stores masked. AVX2's masked stores are microcoded on AMD's Zen cores
    (64 x 56 x 56 at F(4x4), one thread, Zen 4 running AVX2 code: 326 ->
    170 us)."""
    n = m + 2
    vec = f"<{v} x float>"
    w = _Writer(v)
    w.label("entry")
    w.emit("%pitch = add i64 %tw, 1")
    w.emit(f"%ahead = mul i64 %pitch, {AHEAD}")
    w.emit("%span = mul i64 %th, %pitch")
    _loops(w, "%pitch")
    w.emit("%keep = sub i64 %pitch, %tx0")
    store_mask = _lane_mask(w, "%keep", v)
    w.emit(f"%c0 = mul i64 %tx0, {m}")
    w.emit("%col0 = sub i64 %c0, %left")  # the block's first input column
    masks = []
    for q in range(m + 1):  # load q reads columns col0 + q*V + lane
        col, lo, hi = w.fresh("col"), w.fresh("lo"), w.fresh("hi")
        w.emit(f"{col} = add i64 %col0, {q * v}")
        w.emit(f"{lo} = sub i64 0, {col}")  # lanes >= -col are >= 0
        w.emit(f"{hi} = sub i64 %w, {col}")  # lanes < w - col are < w
        below = w.fresh("below")
        w.emit(f"{below} = sub i64 {lo}, 1")
        b32, ok_lo = w.fresh("b32"), w.fresh("oklo")
        w.emit(f"{b32} = trunc i64 {below} to i32")
        w.emit(f"{ok_lo} = icmp sgt <{v} x i32> {_const(range(v), 'i32')}, {w.splat(b32, v, 'i32')}")
        ok_hi, both = _lane_mask(w, hi, v), w.fresh("colok")
        w.emit(f"{both} = and <{v} x i1> {ok_lo}, {ok_hi}")
        masks.append((col, both))
    raw = []  # raw[j][q]: load q of the tiles' row j
    for j in range(n):
        y, ge, lt, inside = w.fresh("y"), w.fresh("ge"), w.fresh("lt"), w.fresh("in")
        w.emit(f"{y}r = mul i64 %ty, {m}")
        w.emit(f"{y}s = add i64 {y}r, {j}")
        w.emit(f"{y}t = sub i64 {y}s, %top")
        w.emit(f"{ge} = icmp sge i64 {y}t, 0")
        w.emit(f"{lt} = icmp slt i64 {y}t, %h")
        w.emit(f"{inside} = and i1 {ge}, {lt}")
        w.emit(f"{y}o = mul i64 {y}t, %w")
        loads = []
        for col, colok in masks:
            off, ptr, mask, val = w.fresh("off"), w.fresh("p"), w.fresh("m"), w.fresh("x")
            w.emit(f"{off} = add i64 {y}o, {col}")
            w.emit(f"{ptr} = getelementptr float, ptr %x, i64 {off}")
            w.emit(f"{mask} = select i1 {inside}, <{v} x i1> {colok}, <{v} x i1> zeroinitializer")
            w.emit(f"{val} = call {vec} @llvm.masked.load.v{v}f32.p0(ptr {ptr}, i32 4, <{v} x i1> {mask}, "
                   f"{vec} zeroinitializer)")
            loads.append(val)
        raw.append(loads)
    w.emit(f"%tend = add i64 %t, {v}")
    w.emit("%plain = icmp sle i64 %tend, %span")
    w.emit("br i1 %plain, label %stores.plain, label %stores.masked")
    for masked in (False, True):  # the same transform; its stores plain (see below) or masked
        w.label("stores.masked" if masked else "stores.plain")
        for i in range(n):
            go, skip, want = w.fresh("go")[1:], w.fresh("skip")[1:], w.fresh("want")
            w.emit(f"{want}a = icmp sge i64 {i}, %i0")
            w.emit(f"{want}b = icmp slt i64 {i}, %i1")
            w.emit(f"{want} = and i1 {want}a, {want}b")
            w.emit(f"br i1 {want}, label %{go}, label %{skip}")
            w.label(go)
            row = [w.combine(b_t[i], [raw[j][q] for j in range(n)], None) for q in range(m + 1)]
            columns = _columns(w, row, m)
            for k in range(n):
                value = w.combine(b_t[k], columns, None)
                ptr = w.item("%v", i * n + k)
                w.prefetch_store(ptr)
                if masked:
                    w.emit(f"call void @llvm.masked.store.v{v}f32.p0({vec} {value}, ptr {ptr}, i32 4, <{v} x i1> "
                           f"{store_mask})")
                else:
                    w.emit(f"store {vec} {value}, ptr {ptr}, align 4")
            w.emit(f"br label %{skip}")
            w.label(skip)
        if not masked:
            w.emit("br label %block.end")
    return _define(w, "%pitch", _name("in", m, v), "ptr noalias readonly %x, i64 %h, i64 %w, i64 %top, i64 %left, "
                   "i64 %th, i64 %tw, ptr noalias %v, i64 %es, i64 %i0, i64 %i1")


def output_ir(m: int, v: int, a_t: np.ndarray, spill: bool = False) -> str:
    """The output transform kernel of F(m x m) over ``v`` tiles (see the
    module docstring). Its rows are stored with masked stores; with
    ``spill`` (:func:`spills`), a row whose vector passes its row's end but
    ends inside the plane with a plain store, the blocks going from a tile
    row's last to its first, so that what it passes over (the next rows'
    first columns) is written after it; where a residual is read from the
    output's own memory (written in place), such rows stay masked."""
    n = m + 2
    wide = m * v
    vec, wvec = f"<{v} x float>", f"<{wide} x float>"
    w = _Writer(v)
    w.label("entry")
    w.emit("%pitch = add i64 %tw, 1")
    w.emit("%has.res.i = and i64 %flags, 1")
    w.emit("%has.res = icmp ne i64 %has.res.i, 0")
    w.emit("%has.clamp.i = and i64 %flags, 2")
    w.emit("%has.clamp = icmp ne i64 %has.clamp.i, 0")
    biasv = w.splat("%bias")
    lov, hiv = w.splat("%lo", wide), w.splat("%hi", wide)
    if spill:  # past a row's end onto later rows (written after it), unless their residual is still to be read there
        w.emit("%plane = mul i64 %oh, %ow")
        w.emit("%y.at = ptrtoint ptr %y to i64")
        w.emit("%res.at = ptrtoint ptr %res to i64")
        w.emit("%bytes = shl i64 %plane, 2")
        w.emit("%y.end = add i64 %y.at, %bytes")
        w.emit("%res.end = add i64 %res.at, %bytes")
        w.emit("%res.before = icmp ule i64 %res.end, %y.at")
        w.emit("%res.after = icmp ule i64 %y.end, %res.at")
        w.emit("%res.apart = or i1 %res.before, %res.after")
        w.emit("%no.res = xor i1 %has.res, true")
        w.emit("%may.spill = or i1 %no.res, %res.apart")
    _loops(w, "%tw", backwards=spill)
    w.emit("%keep = sub i64 %pitch, %tx0")
    load_mask = _lane_mask(w, "%keep", v)
    prods = []
    for e in range(n * n):
        ptr, val = w.item("%p", e), w.fresh("M")
        w.emit(f"{val} = call {vec} @llvm.masked.load.v{v}f32.p0(ptr {ptr}, i32 4, <{v} x i1> {load_mask}, "
               f"{vec} zeroinitializer)")
        prods.append(val)
    half = [[w.combine(a_t[b], prods[i * n:(i + 1) * n], None) for b in range(m)] for i in range(n)]
    w.emit(f"%x0 = mul i64 %tx0, {m}")
    w.emit("%cols.left = sub i64 %ow, %x0")
    if spill:
        w.emit(f"%inrow = icmp sle i64 {wide}, %cols.left")  # the block's columns end inside the rows
    col_mask = _lane_mask(w, "%cols.left", wide)
    order = [(g % m) * v + g // m for g in range(wide)]  # output column g: tile g // m, column g % m
    for a in range(m):
        done = [w.combine(a_t[a], [half[i][b] for i in range(n)], biasv) for b in range(m)]
        cat = w.concat(done, v)
        value = w.fresh("row")
        w.emit(f"{value} = shufflevector {wvec} {cat}, {wvec} poison, <{wide} x i32> {_const(order, 'i32')}")
        go, skip, res, clamp, store = (f"r{a}.go", f"r{a}.skip", f"r{a}.res", f"r{a}.clamp", f"r{a}.store")
        w.emit(f"%oy{a}a = mul i64 %ty, {m}")
        w.emit(f"%oy{a} = add i64 %oy{a}a, {a}")
        w.emit(f"%in{a} = icmp slt i64 %oy{a}, %oh")
        w.emit(f"br i1 %in{a}, label %{go}, label %{skip}")
        w.label(go)
        w.emit(f"%yo{a}a = mul i64 %oy{a}, %ow")
        w.emit(f"%yo{a} = add i64 %yo{a}a, %x0")
        w.emit(f"br i1 %has.res, label %{res}, label %{clamp}")
        w.label(res)
        w.emit(f"%rp{a} = getelementptr float, ptr %res, i64 %yo{a}")
        w.emit(f"%rv{a} = call {wvec} @llvm.masked.load.v{wide}f32.p0(ptr %rp{a}, i32 4, <{wide} x i1> {col_mask}, "
               f"{wvec} zeroinitializer)")
        w.emit(f"%sr{a} = fadd {wvec} {value}, %rv{a}")
        w.emit(f"br label %{clamp}")
        w.label(clamp)
        w.emit(f"%s{a} = phi {wvec} [{value}, %{go}], [%sr{a}, %{res}]")
        w.emit(f"%ge{a} = fcmp uge {wvec} %s{a}, {lov}")  # numpy's maximum, then minimum: NaN stays
        w.emit(f"%up{a} = select <{wide} x i1> %ge{a}, {wvec} %s{a}, {wvec} {lov}")
        w.emit(f"%le{a} = fcmp ule {wvec} %up{a}, {hiv}")
        w.emit(f"%cl{a} = select <{wide} x i1> %le{a}, {wvec} %up{a}, {wvec} {hiv}")
        w.emit(f"%out{a} = select i1 %has.clamp, {wvec} %cl{a}, {wvec} %s{a}")
        w.emit(f"br label %{store}")
        w.label(store)
        w.emit(f"%yp{a} = getelementptr float, ptr %y, i64 %yo{a}")
        if spill:
            w.emit(f"%yend{a} = add i64 %yo{a}, {wide}")
            w.emit(f"%inplane{a} = icmp sle i64 %yend{a}, %plane")
            w.emit(f"%spills{a} = and i1 %inplane{a}, %may.spill")
            w.emit(f"%plain{a} = or i1 %inrow, %spills{a}")
            w.emit(f"br i1 %plain{a}, label %{store}.plain, label %{store}.masked")
            w.label(f"{store}.plain")
            w.emit(f"store {wvec} %out{a}, ptr %yp{a}, align 4")
            w.emit(f"br label %{skip}")
            w.label(f"{store}.masked")
        w.emit(f"call void @llvm.masked.store.v{wide}f32.p0({wvec} %out{a}, ptr %yp{a}, i32 4, <{wide} x i1> "
               f"{col_mask})")
        w.emit(f"br label %{skip}")
        w.label(skip)
    return _define(w, "%tw", _name("out", m, v), "ptr noalias readonly %p, i64 %es, i64 %th, i64 %tw, ptr %y, "
                   "i64 %oh, i64 %ow, float %bias, ptr readonly %res, float %lo, float %hi, i64 %flags",
                   backwards=spill)


def spills(isa: Isa) -> bool:
    """Whether ``isa``'s output kernels store past a row's end (see
    :func:`output_ir`): for AVX2, whose masked stores (``vmaskmovps``) AMD's
    Zen cores microcode. Zen 4 running AVX2 code, one thread: 64 x 56 x 56
    at F(4x4) 190 -> 101 us, 128 x 28 x 28 at F(2x2) 87 -> 46 us. AVX-512
    masks its stores with mask registers at a plain store's cost, and there
    the backwards blocks and tests cost 3-15 % (Zen 4)."""
    return isa.name == "avx2"


def module_ir(spill: bool = False) -> str:
    """Every kernel (both transforms, each tile size, each of :data:`LANES`;
    the output kernels storing past row ends with ``spill``), with the
    intrinsics they declare."""
    parts = ["; Tessera Winograd tile transforms"]
    widths = sorted({*LANES, *(m * v for m in TILES for v in LANES)})
    for n in widths:
        parts += [f"declare <{n} x float> @llvm.masked.load.v{n}f32.p0(ptr, i32, <{n} x i1>, <{n} x float>)",
                  f"declare void @llvm.masked.store.v{n}f32.p0(<{n} x float>, ptr, i32, <{n} x i1>)"]
    parts += [f"declare <{v} x float> @llvm.fma.v{v}f32(<{v} x float>, <{v} x float>, <{v} x float>)"
              for v in LANES]
    parts.append("declare void @llvm.prefetch.p0(ptr, i32, i32, i32)")
    for m in TILES:
        for v in LANES:
            parts += [input_ir(m, v, B_T[m].astype(np.float64)),
                      output_ir(m, v, A_T[m].astype(np.float64), spill)]
    return "\n".join(parts)


def symbols() -> list[str]:
    """The kernels' names in the order of
    runtime.kernels.winograd_ir.kernel_addresses."""
    return [_name(kind, m, v) for m in TILES for v in LANES for kind in ("in", "out")]
