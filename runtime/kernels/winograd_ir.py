"""Winograd's tile transforms (runtime.kernels.nn_winograd) as LLVM IR
compiled for the host with llvmlite (runtime.gemm.microkernel.compile_module),
called per plane from Numba.

A kernel works on ``V`` tiles of one tile row at once, one tile a vector
lane, and keeps a block's whole transform in registers::

    void input(float* x, i64 h, i64 w, i64 top, i64 left, i64 th, i64 tw,
               float* v, i64 es, i64 i0, i64 i1)
    void output(float* p, i64 es, i64 th, i64 tw, float* y, i64 oh, i64 ow,
                float bias, float* res, float lo, float hi, i64 flags)

``input`` writes ``v[(i*n + k)*es + ty*(tw+1) + tx] = (B^T d B)[i, k]`` for
rows ``i`` in ``[i0, i1)`` of each ``n x n`` tile ``d`` of the ``h x w``
plane ``x`` (tile (ty, tx) starts at row ``ty*m - top``, column ``tx*m -
left``; reads outside the plane are zeros), for ``ty < th`` and ``tx <=
tw`` (the extra tile of each row, which the products carry but nothing
reads, gets the transform of what lies there, so it is always finite data).
The ``m + 1`` loads of a tile row's input row are masked to the plane
(masked-off lanes touch no memory) and cut into the ``n`` columns of the
tiles by shuffles. ``output`` writes each ``m x m`` tile ``A^T M A + bias``
of the products ``p[(i*n + j)*es + ty*(tw+1) + tx]`` into the ``oh x ow``
plane ``y``, cropped at the far edges, then adds the residual plane ``res``
(``flags`` bit 0) and clamps to ``[lo, hi]`` (bit 1; numpy's ``maximum``
then ``minimum``: NaN stays NaN), as ``conv_epilogue.finish_run`` does.

Both combine in the order the Numba loops they replace do (input: over the
tile's rows first, then its columns; output: columns first, then rows with
the bias as the start), each sum a chain over the nonzero coefficients in
increasing index (a zero coefficient is skipped: ``0 * inf`` would be NaN);
every coefficient is a short binary fraction, so a coefficient of 1 or -1
is an add or a subtract and the others a fused multiply-add. The Numba
loops ran mostly as scalar code (LLVM vectorised only their one- and
two-term runs): ResNet-50's Winograd transforms took 3.1 ms of its 34.
"""
from __future__ import annotations

import struct
import threading

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from runtime.gemm.family import Isa, host_isa
from runtime.gemm.microkernel import compile_module
from runtime.jit import jit
from runtime.kernels.conv_epilogue import gate_run
from runtime.kernels.winograd_matrices import A_T, B_T
from runtime.parallel import drives
from runtime.pool_protocol import team_enter, team_leave, team_next
from runtime.unlinked import call_unlinked

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
KERNELS = 2 * len(TILES) * len(LANES)
"""Entries of :func:`kernel_addresses`' table."""


# ---------------------------------------------------------------- IR text
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


def _loops(w: _Writer, count_tiles: str) -> None:
    """Open the loops over tile rows ``ty < %th`` and blocks of ``V`` tiles
    ``tx0 < count_tiles``; the block's body follows."""
    w.emit("%rows = icmp sgt i64 %th, 0")
    w.emit(f"%cols = icmp sgt i64 {count_tiles}, 0")
    w.emit("%any = and i1 %rows, %cols")
    w.emit("br i1 %any, label %row, label %done")
    w.label("row")
    w.emit("%ty = phi i64 [0, %entry], [%ty.next, %row.end]")
    w.emit("%tile0 = mul i64 %ty, %pitch")
    w.emit("br label %block")
    w.label("block")
    w.emit("%tx0 = phi i64 [0, %row], [%tx0.next, %block.end]")
    w.emit("%t = add i64 %tile0, %tx0")


def _define(w: _Writer, count_tiles: str, name: str, params: str) -> str:
    """The function ``name``: the body written into ``w`` after
    :func:`_loops`, with the loops closed."""
    _close_loops(w, count_tiles)
    return "\n".join([f"define void @{name}({params}) nounwind {{", *w.lines, "}"])


def _close_loops(w: _Writer, count_tiles: str) -> None:
    w.emit("br label %block.end")
    w.label("block.end")
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
    """The input transform kernel of F(m x m) over ``v`` tiles (see the module docstring)."""
    n = m + 2
    vec = f"<{v} x float>"
    w = _Writer(v)
    w.label("entry")
    w.emit("%pitch = add i64 %tw, 1")
    w.emit(f"%ahead = mul i64 %pitch, {AHEAD}")
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
    for i in range(n):
        go, skip = w.fresh("go")[1:], w.fresh("skip")[1:]
        w.emit(f"%want{i}a = icmp sge i64 {i}, %i0")
        w.emit(f"%want{i}b = icmp slt i64 {i}, %i1")
        w.emit(f"%want{i} = and i1 %want{i}a, %want{i}b")
        w.emit(f"br i1 %want{i}, label %{go}, label %{skip}")
        w.label(go)
        row = [w.combine(b_t[i], [raw[j][q] for j in range(n)], None) for q in range(m + 1)]
        columns = _columns(w, row, m)
        for k in range(n):
            value = w.combine(b_t[k], columns, None)
            ptr = w.item("%v", i * n + k)
            w.prefetch_store(ptr)
            w.emit(f"call void @llvm.masked.store.v{v}f32.p0({vec} {value}, ptr {ptr}, i32 4, <{v} x i1> "
                   f"{store_mask})")
        w.emit(f"br label %{skip}")
        w.label(skip)
    return _define(w, "%pitch", _name("in", m, v), "ptr noalias readonly %x, i64 %h, i64 %w, i64 %top, i64 %left, "
                   "i64 %th, i64 %tw, ptr noalias %v, i64 %es, i64 %i0, i64 %i1")


def output_ir(m: int, v: int, a_t: np.ndarray) -> str:
    """The output transform kernel of F(m x m) over ``v`` tiles (see the module docstring)."""
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
    _loops(w, "%tw")
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
        w.emit(f"call void @llvm.masked.store.v{wide}f32.p0({wvec} %out{a}, ptr %yp{a}, i32 4, <{wide} x i1> "
               f"{col_mask})")
        w.emit(f"br label %{skip}")
        w.label(skip)
    return _define(w, "%tw", _name("out", m, v), "ptr noalias readonly %p, i64 %es, i64 %th, i64 %tw, ptr %y, "
                   "i64 %oh, i64 %ow, float %bias, ptr readonly %res, float %lo, float %hi, i64 %flags")


def module_ir() -> str:
    """Every kernel (both transforms, each tile size, each of :data:`LANES`),
    with the intrinsics they declare."""
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
            parts += [input_ir(m, v, B_T[m].astype(np.float64)), output_ir(m, v, A_T[m].astype(np.float64))]
    return "\n".join(parts)


def symbols() -> list[str]:
    """The kernels' names in the order of :func:`kernel_addresses`."""
    return [_name(kind, m, v) for m in TILES for v in LANES for kind in ("in", "out")]


_compiled: dict[Isa, tuple] = {}
_lock = threading.Lock()


def kernel_addresses(isa: Isa | None = None) -> np.ndarray:
    """The kernels' entry points for ``isa`` (the host's family by default):
    for tile size ``TILES[t]`` and ``LANES[l]``, the input transform at
    ``2 * (t * len(LANES) + l)`` and the output transform after it;
    compiled (or loaded from the kernel cache) on first use, kept for the
    process."""
    isa = host_isa() if isa is None else isa
    with _lock:
        if isa not in _compiled:
            _compiled[isa] = compile_module(f"winograd-{isa.name}", module_ir(), symbols(), isa)
        return _compiled[isa][1]


# ---------------------------------------------------------------- calling from Numba
@intrinsic
def _call_input(typingctx, address, x, h, w, top, left, th, tw, v, es, i0, i1):
    """Call the input kernel at ``address`` (``x`` and ``v`` are addresses)."""
    sig = types.void(*([types.int64] * 12))

    def codegen(context, builder, signature, args):
        i64, ptr = ir.IntType(64), ir.PointerType()
        fnty = ir.FunctionType(ir.VoidType(), [ptr, i64, i64, i64, i64, i64, i64, ptr, i64, i64, i64])
        target = builder.inttoptr(args[0], ir.PointerType(fnty))
        builder.call(target, [builder.inttoptr(args[1], ptr), *args[2:8], builder.inttoptr(args[8], ptr),
                              *args[9:]])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _call_output(typingctx, address, p, es, th, tw, y, oh, ow, bias, res, lo, hi, flags):
    """Call the output kernel at ``address`` (``p``, ``y`` and ``res`` are addresses)."""
    i64, f32 = types.int64, types.float32
    sig = types.void(i64, i64, i64, i64, i64, i64, i64, i64, f32, i64, f32, f32, i64)

    def codegen(context, builder, signature, args):
        i64_t, ptr, f32_t = ir.IntType(64), ir.PointerType(), ir.FloatType()
        fnty = ir.FunctionType(ir.VoidType(), [ptr, i64_t, i64_t, i64_t, ptr, i64_t, i64_t, f32_t, ptr, f32_t,
                                               f32_t, i64_t])
        target = builder.inttoptr(args[0], ir.PointerType(fnty))
        p_ptr, y_ptr, res_ptr = (builder.inttoptr(args[i], ptr) for i in (1, 5, 9))
        builder.call(target, [p_ptr, *args[2:5], y_ptr, args[6], args[7], args[8], res_ptr, *args[10:]])
        return context.get_dummy_value()

    return sig, codegen


@jit(inline="always")
def _kernel(kernels, n, tw, output):
    """The entry point of :func:`kernel_addresses`' table for F((n-2) x
    (n-2)) over rows of ``tw + 1`` tiles (the input transform's, or the
    output transform's with ``output``)."""
    t = 0 if n - 2 == TILES[0] else 1
    lanes = 0 if tw + 1 <= LANES[0] else 1
    return kernels[2 * (t * len(LANES) + lanes) + output]


@jit
def input_tiles_ir(start, stop, x, v, geo, kernels):
    """:func:`runtime.kernels.nn_winograd.input_tiles` through the input
    kernels (``kernels``: :func:`kernel_addresses`), with the same items and
    results but for rounding, into ``v`` (n*n, item): item ``e``'s (C,
    N*TH*(TW+1)) matrix is the first elements of row ``e`` (the rows may be
    longer: :func:`item_stride`). Every array is float32 and C-contiguous
    (the callers' checks and the schedule's operands)."""
    top, left, th, tw, parts = geo[0], geo[1], geo[2], geo[3], geo[4]
    batch, chans, height, width = x.shape
    span = th * (tw + 1)
    tiles = batch * span
    n = 4 if v.shape[0] == 16 else 6
    if v.shape[0] != n * n or v.shape[1] < chans * tiles or parts < 1 or parts > n or th < 0 or tw < 0:
        return
    address = _kernel(kernels, n, tw, 0)
    planes = batch * chans
    x_at, v_at = x.ctypes.data, v.ctypes.data
    for item in range(start, min(stop, parts * planes)):
        part, p = item // planes, item % planes
        c, image = p % chans, p // chans
        _call_input(address, x_at + p * height * width * 4, height, width, top, left, th, tw,
                    v_at + (c * tiles + image * span) * 4, v.shape[1], part * n // parts, (part + 1) * n // parts)


@jit
def output_tiles_ir(start, stop, prods, y, bias, geo, res, clamp, flags, kernels):
    """:func:`runtime.kernels.nn_winograd.output_tiles` through the output
    kernels (``kernels``: :func:`kernel_addresses`; the tile size follows
    from ``prods``), with the same planes and results but for rounding
    (the clamp array's gate: on each plane the kernel wrote, while it is in cache);
    ``prods`` (n*n, item) as ``v`` of :func:`input_tiles_ir`. Every array is
    float32 and C-contiguous."""
    th, tw = geo[0], geo[1]
    batch, out_c, out_h, out_w = y.shape
    n = 4 if prods.shape[0] == 16 else 6
    span = th * (tw + 1)
    tiles = batch * span
    if prods.shape[0] != n * n or prods.shape[1] < out_c * tiles or th < 0 or tw < 0:
        return
    if bias.shape[0] != out_c or th * (n - 2) < out_h or tw * (n - 2) < out_w or (flags[0] and res.shape != y.shape):
        return
    address = _kernel(kernels, n, tw, 1)
    mode = (1 if flags[0] else 0) + (2 if flags[1] else 0)
    p_at, y_at, r_at = prods.ctypes.data, y.ctypes.data, res.ctypes.data
    ys = y.reshape(-1)
    plane = out_h * out_w
    for q in range(start, min(stop, batch * out_c)):
        k, image = q % out_c, q // out_c
        _call_output(address, p_at + (k * tiles + image * span) * 4, prods.shape[1], th, tw, y_at + q * plane * 4,
                     out_h, out_w, bias[k], r_at + q * plane * 4, clamp[0], clamp[1], mode)
        if flags[1]:
            gate_run(ys, q * plane, plane, clamp)


def item_stride(rows: int, tiles: int) -> int:
    """Elements from one item of V (or of the products) to the next for
    ``rows`` x ``tiles`` items: at least their size, a multiple of 16 (64
    bytes), and an odd number of 64-byte lines, so that the n*n items a
    kernel block touches fall in n*n different sets of the L1 cache. Packed
    end to end, ResNet-50's 256 x 14 x 14 layers had items 56 KiB apart,
    every one in the same set, and the input transform ran slower than the
    scalar loops it replaced (163 against 101 us per layer, one thread)."""
    lines = -(-rows * tiles // 16)
    return 16 * (lines + 1 - lines % 2)


@drives(input_tiles_ir)
@jit
def _input_tiles_ir_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(input_tiles_ir, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)


@drives(output_tiles_ir)
@jit
def _output_tiles_ir_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(output_tiles_ir, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)
