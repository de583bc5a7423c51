"""The IR writer of the GEMM microkernels (runtime.gemm.microkernel_ir) and
the epilogue they end with, from the block ``store`` on: the bias, then
(float kernels) the residual, the clamp and its gate, added to ``C``'s values when
accumulating, and the stores; whole tiles with plain loads and stores, a
part of one (``rows x cols``) with masked ones, remainder panels with
masked gathers and scatters, in the order runtime.gemm.microkernel_ir's
docstring states."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime.gemm.microkernel_ir import _Remainder, _Tile


class Writer:
    """IR lines of one function, with fresh SSA names."""

    def __init__(self, count: int = 0):
        self.lines: list[str] = []
        self.count = count
        self.block = "entry"
        """The label of the block being written."""

    def fresh(self, stem: str) -> str:
        self.count += 1
        return f"%{stem}.{self.count}"

    def emit(self, line: str) -> None:
        self.lines.append("  " + line)

    def label(self, name: str) -> None:
        self.lines.append(f"{name}:")
        self.block = name


def splat_vector(w: Writer, lanes: int, scalar: str, elem: str) -> str:
    vec = f"<{lanes} x {elem}>"
    one, out = w.fresh("ins"), w.fresh("splat")
    w.emit(f"{one} = insertelement {vec} poison, {elem} {scalar}, i64 0")
    w.emit(f"{out} = shufflevector {vec} {one}, {vec} poison, <{lanes} x i32> zeroinitializer")
    return out


def const_vector(lanes: int, value, elem: str = "i32") -> str:
    return "<" + ", ".join([f"{elem} {value}"] * lanes) + ">"


def _add(t: _Tile) -> str:
    return "fadd" if t.kind == "f32" else "add"


def _bias(w: Writer, t: _Tile, acc: list[list[str]]) -> list[list[str]]:
    """Block ``add_bias``: add ``bias[i]`` to row ``i``, reading only the first
    ``rows`` entries (one masked load); falls through to ``dispatch``."""
    rows = ", ".join(f"i32 {i}" for i in range(t.mr))
    w.emit("%rows32 = trunc i64 %rows to i32")
    limit = splat_vector(w, t.mr, "%rows32", "i32")
    w.emit(f"%rowmask = icmp slt <{t.mr} x i32> <{rows}>, {limit}")
    w.emit(f"%biasv = call {t.vec(t.mr)} @llvm.masked.load.v{t.mr}{t.suffix}.p0(ptr %bias, i32 4, "
           f"<{t.mr} x i1> %rowmask, {t.vec(t.mr)} zeroinitializer)")
    out = []
    for i in range(t.mr):
        scalar = w.fresh("bias")
        w.emit(f"{scalar} = extractelement {t.vec(t.mr)} %biasv, i64 {i}")
        splats = {lanes: splat_vector(w, lanes, scalar, t.elem) for lanes in sorted(set(t.vectors))}
        row = []
        for j, lanes in enumerate(t.vectors):
            value = w.fresh("biased")
            w.emit(f"{value} = {_add(t)} {t.vec(lanes)} {acc[i][j]}, {splats[lanes]}")
            row.append(value)
        out.append(row)
    w.emit("br label %dispatch")
    return out


def _optional(w: Writer, pred: str, cond: str, name: str, values: list[list[str]], types: list[list[str]],
              body) -> tuple[str, list[list[str]]]:
    """Blocks running ``body(values)`` (code returning new values, which
    may add blocks of its own) only when ``cond`` holds, entered from block
    ``pred``; returns the join block's label and the values there."""
    w.emit(f"br i1 {cond}, label %{name}, label %{name}_join")
    w.label(name)
    done = body(values)
    last = w.block
    w.emit(f"br label %{name}_join")
    w.label(f"{name}_join")
    out = []
    for i, row in enumerate(types):
        joined = []
        for j, vec in enumerate(row):
            value = w.fresh("v")
            w.emit(f"{value} = phi {vec} [ {values[i][j]}, %{pred} ], [ {done[i][j]}, %{last} ]")
            joined.append(value)
        out.append(joined)
    return f"{name}_join", out


def _clamp_entry(w: Writer, index: int, stem: str) -> str:
    """``clamp[index]``, loaded (runtime.gemm.operands.CLAMP_SIZE's layout)."""
    value = w.fresh(stem)
    if index == 0:
        w.emit(f"{value} = load float, ptr %clamp, align 4")
        return value
    ptr = w.fresh(f"{stem}ptr")
    w.emit(f"{ptr} = getelementptr inbounds float, ptr %clamp, i64 {index}")
    w.emit(f"{value} = load float, ptr {ptr}, align 4")
    return value


def _each_value(w: Writer, lanes_of, values: list[list[str]], scalars: list[str], emit) -> list[list[str]]:
    """``emit(value, lanes, *splats)`` of every value (``lanes_of(i, j)``:
    the lanes of value ``(i, j)``), ``splats`` being ``scalars`` splat to
    that many lanes (once per lane count); the values it returns."""
    splats: dict[int, list[str]] = {}
    out = []
    for i, row in enumerate(values):
        new = []
        for j, value in enumerate(row):
            lanes = lanes_of(i, j)
            if lanes not in splats:
                splats[lanes] = [splat_vector(w, lanes, scalar, "float") for scalar in scalars]
            new.append(emit(value, lanes, *splats[lanes]))
        out.append(new)
    return out


def _clamp_values(w: Writer, lanes_of, values: list[list[str]]) -> list[list[str]]:
    """numpy's ``minimum(maximum(v, clamp[0]), clamp[1])`` on every value:
    a NaN stays NaN, a bound wins ties."""
    def clamp(value: str, lanes: int, floor: str, ceiling: str) -> str:
        vec = f"<{lanes} x float>"
        above, low, below, high = w.fresh("above"), w.fresh("low"), w.fresh("below"), w.fresh("high")
        w.emit(f"{above} = fcmp ugt {vec} {value}, {floor}")
        w.emit(f"{low} = select <{lanes} x i1> {above}, {vec} {value}, {vec} {floor}")
        w.emit(f"{below} = fcmp ult {vec} {low}, {ceiling}")
        w.emit(f"{high} = select <{lanes} x i1> {below}, {vec} {low}, {vec} {ceiling}")
        return high

    return _each_value(w, lanes_of, values, [_clamp_entry(w, 0, "lo"), _clamp_entry(w, 1, "hi")], clamp)


def _clamp_and_gate(w: Writer, lanes_of, values: list[list[str]], types: list[list[str]],
                    name: str) -> list[list[str]]:
    """:func:`_clamp_values`, then the clamp array's gate when it has one
    (``clamp[4]`` non-zero: blocks ``{name}_gate``)."""
    clamped = _clamp_values(w, lanes_of, values)
    kind, gated = _clamp_entry(w, 4, "gate"), w.fresh("gated")
    w.emit(f"{gated} = fcmp une float {kind}, 0.0")
    _, out = _optional(w, w.block, gated, f"{name}_gate", clamped, types,
                       lambda v: _gate_values(w, lanes_of, v, kind))
    return out


def _gate_values(w: Writer, lanes_of, values: list[list[str]], kind: str) -> list[list[str]]:
    """runtime.kernels.activations' ``hard_sigmoid`` (``g = unit_clamp(alpha
    * v + beta)``, alpha and beta at ``clamp[2]`` and ``clamp[3]``) of every
    value, or ``v * g`` where ``kind`` is 2 (HardSwish): each operation
    rounded on its own (no fast-math flag: nothing is contracted into a
    fused multiply-add), NaN kept, as the element-wise kernels compute it."""
    alpha, beta, swish = _clamp_entry(w, 2, "alpha"), _clamp_entry(w, 3, "beta"), w.fresh("swish")
    w.emit(f"{swish} = fcmp oeq float {kind}, 2.0")

    def gate(value: str, lanes: int, alphas: str, betas: str) -> str:
        vec, mask = f"<{lanes} x float>", f"<{lanes} x i1>"
        one = const_vector(lanes, "1.000000e+00", "float")
        scaled, shifted, below, low, above, g, product, gated = (
            w.fresh(n) for n in ("scaled", "shifted", "below", "low", "above", "g", "product", "gated"))
        w.emit(f"{scaled} = fmul {vec} {alphas}, {value}")
        w.emit(f"{shifted} = fadd {vec} {scaled}, {betas}")
        w.emit(f"{below} = fcmp olt {vec} {shifted}, zeroinitializer")
        w.emit(f"{low} = select {mask} {below}, {vec} zeroinitializer, {vec} {shifted}")
        w.emit(f"{above} = fcmp ogt {vec} {low}, {one}")
        w.emit(f"{g} = select {mask} {above}, {vec} {one}, {vec} {low}")
        w.emit(f"{product} = fmul {vec} {value}, {g}")
        w.emit(f"{gated} = select i1 {swish}, {vec} {product}, {vec} {g}")
        return gated

    return _each_value(w, lanes_of, values, [alpha, beta], gate)


def _load_tile(w: Writer, t: _Tile, base: str, offsets: str, masked: bool) -> list[list[str]]:
    """The ``mr x width`` tile at ``base`` (element ``(i, j-th vector)`` at
    offset ``%{offsets}_i_j``), masked loads of ``rows x cols`` or whole."""
    tile = []
    for i in range(t.mr):
        row = []
        for j, lanes in enumerate(t.vectors):
            vec, ptr, value = t.vec(lanes), w.fresh("pt"), w.fresh("ld")
            w.emit(f"{ptr} = getelementptr inbounds {t.elem}, ptr {base}, i64 %{offsets}_{i}_{j}")
            if masked:
                w.emit(f"{value} = call {vec} @llvm.masked.load.v{lanes}{t.suffix}.p0(ptr {ptr}, i32 4, "
                       f"<{lanes} x i1> %rm_{i}_{j}, {vec} zeroinitializer)")
            else:
                w.emit(f"{value} = load {vec}, ptr {ptr}, align 4")
            row.append(value)
        tile.append(row)
    return tile


def _add_tiles(w: Writer, t: _Tile, left: list[list[str]], right: list[list[str]]) -> list[list[str]]:
    out = []
    for i in range(t.mr):
        row = []
        for j, lanes in enumerate(t.vectors):
            value = w.fresh("sum")
            w.emit(f"{value} = {_add(t)} {t.vec(lanes)} {left[i][j]}, {right[i][j]}")
            row.append(value)
        out.append(row)
    return out


def _finish(w: Writer, t: _Tile, values: list[list[str]], masked: bool, tag: str) -> None:
    """From block ``tag``: add ``C``'s values (accumulate), the residual and
    clamp with its gate (float, when given), then store the tile; ``masked`` touches only
    ``rows x cols`` (vector masks ``%rm_i_j``)."""
    types = t.acc_types()[:t.mr]
    label, values = _optional(w, tag, "%add", f"{tag}_old", values, types,
                              lambda v: _add_tiles(w, t, v, _load_tile(w, t, "%c", "off", masked)))
    if t.kind == "f32":
        label, values = _optional(w, label, "%has_res", f"{tag}_res", values, types,
                                  lambda v: _add_tiles(w, t, v, _load_tile(w, t, "%residual", "roff", masked)))
        label, values = _optional(w, label, "%has_clamp", f"{tag}_clamp", values, types,
                                  lambda v: _clamp_and_gate(w, lambda i, j: t.vectors[j], v, types, f"{tag}_clamp"))
    else:
        w.emit(f"br i1 %has_clamp, label %{tag}_requant, label %{tag}_sums")
        w.label(f"{tag}_requant")
        _requantize(w, t, values, masked)
        w.label(f"{tag}_sums")
    for i in range(t.mr):
        for j, lanes in enumerate(t.vectors):
            vec, ptr = t.vec(lanes), w.fresh("pc")
            w.emit(f"{ptr} = getelementptr inbounds {t.elem}, ptr %c, i64 %off_{i}_{j}")
            _store(w, values[i][j], lanes, t.suffix, vec, ptr, 4, f"%rm_{i}_{j}" if masked else None)
    w.emit("ret void")


def _store(w: Writer, value: str, lanes: int, suffix: str, vec: str, ptr: str, align: int, mask: str | None) -> None:
    """Store vector ``value`` (type ``vec``, element ``suffix``) at ``ptr``:
    whole, or the lanes ``mask`` selects."""
    if mask:
        w.emit(f"call void @llvm.masked.store.v{lanes}{suffix}.p0({vec} {value}, ptr {ptr}, i32 {align}, "
               f"<{lanes} x i1> {mask})")
    else:
        w.emit(f"store {vec} {value}, ptr {ptr}, align {align}")


REQUANT_WORDS = 8
"""int32 words of a row's requantisation record (int kernels, ``clamp``):
the multiplier, the rounding bias, the shift, the output zero point, the
low and high clamp, two unused."""


def _high_products(w: Writer, lanes: int, v: str, m: str, out: str) -> None:
    """``out`` = the high 32 bits of each int32 lane of ``v`` times ``m``
    (``<lanes/2 x i64>``, the multiplier sign-extended), as
    ``trunc((sext(v) * m) >> 32)``, the same bits: the even lanes (read in
    place as the low halves of 64-bit lanes) and the odd ones (shifted
    down) each make one signed 32x32->64 multiply per 64-bit lane
    (``vpmuldq``), and one shuffle takes the high half of every product.
    Sign-extending all lanes to 64 bits first cost two extensions, two
    narrowings and a merge more per vector."""
    pairs, wide = lanes // 2, f"<{lanes // 2} x i64>"
    thirty_two = const_vector(pairs, 32, "i64")
    q, up, even, odd, pe, po, ce, co = (w.fresh(n) for n in ("q", "up", "even", "odd", "pe", "po", "ce", "co"))
    w.emit(f"{q} = bitcast <{lanes} x i32> {v} to {wide}")
    w.emit(f"{up} = shl {wide} {q}, {thirty_two}")
    w.emit(f"{even} = ashr {wide} {up}, {thirty_two}")
    w.emit(f"{odd} = ashr {wide} {q}, {thirty_two}")
    w.emit(f"{pe} = mul {wide} {even}, {m}")
    w.emit(f"{po} = mul {wide} {odd}, {m}")
    w.emit(f"{ce} = bitcast {wide} {pe} to <{lanes} x i32>")
    w.emit(f"{co} = bitcast {wide} {po} to <{lanes} x i32>")
    mask = ", ".join(f"i32 {2 * (lane // 2) + 1 + (lanes if lane % 2 else 0)}" for lane in range(lanes))
    w.emit(f"{out} = shufflevector <{lanes} x i32> {ce}, <{lanes} x i32> {co}, <{lanes} x i32> <{mask}>")


def _requantize(w: Writer, t: _Tile, values: list[list[str]], masked: bool) -> None:
    """Int kernels with a ``clamp`` (the rows' records, ``REQUANT_WORDS``
    words a row from the tile's first): each int32 sum ``v`` of row ``i``
    becomes ``clamp(((sext(v) * m) >> 32) + bias >> shift) + zero, lo,
    hi)`` as int8, stored at ``residual`` + ``i * ldr`` + its column (bytes;
    ``C`` is not written): runtime.qscheme's ``rescale_high`` then the
    output zero point and clamp, the CONV epilogue's 32-bit path
    (runtime.sim.epilogue) in the tile's registers, the same bits."""
    for i in range(t.mr):
        words = []
        for k in range(6):
            ptr, word = w.fresh("rqp"), w.fresh("rq")
            w.emit(f"{ptr} = getelementptr inbounds i32, ptr %clamp, i64 {REQUANT_WORDS * i + k}")
            w.emit(f"{word} = load i32, ptr {ptr}, align 4")
            words.append(word)
        mult = w.fresh("mult")
        w.emit(f"{mult} = sext i32 {words[0]} to i64")
        splats: dict[int, list[str]] = {}
        for j, lanes in enumerate(t.vectors):
            if lanes not in splats:
                splats[lanes] = [splat_vector(w, lanes // 2, mult, "i64")] + [splat_vector(w, lanes, word, "i32")
                                                                               for word in words[1:]]
            m, bias, shift, zero, lo, hi = splats[lanes]
            half = f"<{lanes} x i32>"
            h32, s, q, o, low, high, b, ptr = (w.fresh(n) for n in (
                "h32", "s", "q", "o", "low", "high", "b", "pq"))
            _high_products(w, lanes, values[i][j], m, h32)
            w.emit(f"{s} = add {half} {h32}, {bias}")
            w.emit(f"{q} = ashr {half} {s}, {shift}")
            w.emit(f"{o} = add {half} {q}, {zero}")
            w.emit(f"{low} = call {half} @llvm.smax.v{lanes}i32({half} {o}, {half} {lo})")
            w.emit(f"{high} = call {half} @llvm.smin.v{lanes}i32({half} {low}, {half} {hi})")
            w.emit(f"{b} = trunc {half} {high} to <{lanes} x i8>")
            w.emit(f"{ptr} = getelementptr inbounds i8, ptr %residual, i64 %roff_{i}_{j}")
            _store(w, b, lanes, "i8", f"<{lanes} x i8>", ptr, 1, f"%rm_{i}_{j}" if masked else None)
    w.emit("ret void")


def tile_epilogue(w: Writer, t: _Tile, acc: list[list[str]], entry: str = "store") -> None:
    """From block ``entry``: add the bias if any; then, for a whole tile or
    a masked part of one, the rest of the epilogue and the store
    (:func:`_finish`)."""
    w.emit("%has_bias = icmp ne ptr %bias, null")
    w.emit("br i1 %has_bias, label %add_bias, label %dispatch")
    w.label("add_bias")
    biased = _bias(w, t, acc)
    w.label("dispatch")
    final = [[f"%final_{i}_{j}" for j in range(len(t.vectors))] for i in range(t.mr)]
    for i in range(t.mr):
        for j, lanes in enumerate(t.vectors):
            w.emit(f"{final[i][j]} = phi {t.vec(lanes)} [ {acc[i][j]}, %{entry} ], [ {biased[i][j]}, %add_bias ]")
    for i in range(t.mr):
        w.emit(f"%row_{i} = mul i64 %ldc, {i}")
        w.emit(f"%rrow_{i} = mul i64 %ldr, {i}")
        for j in range(len(t.vectors)):
            w.emit(f"%off_{i}_{j} = add i64 %row_{i}, {t.offset(j)}")
            w.emit(f"%roff_{i}_{j} = add i64 %rrow_{i}, {t.offset(j)}")
    w.emit("%add = icmp ne i64 %accumulate, 0")
    w.emit("%has_res = icmp ne ptr %residual, null")
    w.emit("%has_clamp = icmp ne ptr %clamp, null")
    w.emit(f"%full_rows = icmp eq i64 %rows, {t.mr}")
    w.emit(f"%full_cols = icmp eq i64 %cols, {t.width}")
    w.emit("%full = and i1 %full_rows, %full_cols")
    w.emit("br i1 %full, label %full_tile, label %part_tile")
    w.label("full_tile")
    _finish(w, t, final, False, "full_tile")
    w.label("part_tile")
    w.emit("%cols32 = trunc i64 %cols to i32")
    limits = {lanes: splat_vector(w, lanes, "%cols32", "i32") for lanes in sorted(set(t.vectors))}
    for j, lanes in enumerate(t.vectors):
        columns = ", ".join(f"i32 {t.offset(j) + lane}" for lane in range(lanes))
        w.emit(f"%mask{j} = icmp slt <{lanes} x i32> <{columns}>, {limits[lanes]}")
    for i in range(t.mr):
        w.emit(f"%in_{i} = icmp slt i64 {i}, %rows")
        for j, lanes in enumerate(t.vectors):
            w.emit(f"%rm_{i}_{j} = select i1 %in_{i}, <{lanes} x i1> %mask{j}, <{lanes} x i1> zeroinitializer")
    _finish(w, t, final, True, "part_tile")


def remainder_epilogue(w: Writer, t: _Remainder, acc: list[list[str]], prefix: str = "", first_col: int = 0,
                        then: str = "") -> None:
    """From block ``store``: bias (masked vector loads: a panel's rows are
    its lanes), then masked gathers of ``C`` (accumulating) and of the
    residual, the clamp and its gate, and masked scatters of rows ``< rows``, the
    columns counted from ``first_col``. Then return, or branch to block
    ``then``; ``prefix`` keeps the names apart from a tile's epilogue."""
    mr, vec, mask_ty, x = t.mr, t.vec(t.mr), f"<{t.mr} x i1>", prefix
    lanes = ", ".join(f"i64 {lane}" for lane in range(mr))
    rows, ldc, ldr = (splat_vector(w, mr, name, "i64") for name in ("%rows", "%ldc", "%ldr"))
    for p in range(t.panels):
        w.emit(f"%{x}rowid{p} = add <{mr} x i64> <{lanes}>, " + const_vector(mr, p * mr, "i64"))
        w.emit(f"%{x}rmask{p} = icmp slt <{mr} x i64> %{x}rowid{p}, {rows}")
        w.emit(f"%{x}rowoff{p} = mul <{mr} x i64> %{x}rowid{p}, {ldc}")
        w.emit(f"%{x}resoff{p} = mul <{mr} x i64> %{x}rowid{p}, {ldr}")
    w.emit(f"%{x}has_bias = icmp ne ptr %bias, null")
    w.emit(f"br i1 %{x}has_bias, label %{x}add_bias, label %{x}dispatch")
    w.label(f"{x}add_bias")
    biased = []
    for p in range(t.panels):
        ptr, bias = w.fresh("pbias"), w.fresh("bias")
        w.emit(f"{ptr} = getelementptr inbounds float, ptr %bias, i64 {p * mr}")
        w.emit(f"{bias} = call {vec} @llvm.masked.load.v{mr}f32.p0(ptr {ptr}, i32 4, {mask_ty} %{x}rmask{p}, "
               f"{vec} zeroinitializer)")
        row = []
        for j in range(t.cols):
            value = w.fresh("biased")
            w.emit(f"{value} = fadd {vec} {acc[p][j]}, {bias}")
            row.append(value)
        biased.append(row)
    w.emit(f"br label %{x}dispatch")
    w.label(f"{x}dispatch")
    values = [[f"%{x}final_{p}_{j}" for j in range(t.cols)] for p in range(t.panels)]
    for p in range(t.panels):
        for j in range(t.cols):
            w.emit(f"%{x}final_{p}_{j} = phi {vec} [ {acc[p][j]}, %store ], [ {biased[p][j]}, %{x}add_bias ]")
    for p in range(t.panels):
        for j in range(t.cols):
            for name, base, offsets in (("ptrs", "%c", "rowoff"), ("rptrs", "%residual", "resoff")):
                w.emit(f"%{x}{name}_idx_{p}_{j} = add <{mr} x i64> %{x}{offsets}{p}, "
                       + const_vector(mr, first_col + j, "i64"))
                w.emit(f"%{x}{name}_{p}_{j} = getelementptr inbounds float, ptr {base}, "
                       f"<{mr} x i64> %{x}{name}_idx_{p}_{j}")
    w.emit(f"%{x}add = icmp ne i64 %accumulate, 0")
    w.emit(f"%{x}has_res = icmp ne ptr %residual, null")
    w.emit(f"%{x}has_clamp = icmp ne ptr %clamp, null")

    def gathered(name: str):
        def body(current):
            out = []
            for p in range(t.panels):
                row = []
                for j in range(t.cols):
                    old, total = w.fresh("old"), w.fresh("sum")
                    w.emit(f"{old} = call {vec} @llvm.masked.gather.v{mr}f32.v{mr}p0(<{mr} x ptr> %{x}{name}_{p}_{j}, "
                           f"i32 4, {mask_ty} %{x}rmask{p}, {vec} zeroinitializer)")
                    w.emit(f"{total} = fadd {vec} {current[p][j]}, {old}")
                    row.append(total)
                out.append(row)
            return out
        return body

    types = t.acc_types()
    label, values = _optional(w, f"{x}dispatch", f"%{x}add", f"{x}add_old", values, types, gathered("ptrs"))
    label, values = _optional(w, label, f"%{x}has_res", f"{x}add_residual", values, types, gathered("rptrs"))
    label, values = _optional(w, label, f"%{x}has_clamp", f"{x}clamp_values", values, types,
                              lambda v: _clamp_and_gate(w, lambda i, j: mr, v, types, f"{x}clamp_values"))
    for p in range(t.panels):
        for j in range(t.cols):
            w.emit(f"call void @llvm.masked.scatter.v{mr}f32.v{mr}p0({vec} {values[p][j]}, "
                   f"<{mr} x ptr> %{x}ptrs_{p}_{j}, i32 4, {mask_ty} %{x}rmask{p})")
    w.emit(f"br label %{then}" if then else "ret void")
