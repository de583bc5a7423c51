"""Kernels over int8 codes compiled for this host, where AVX512-VBMI's byte
permutes make them one vector operation per 64 codes:

* a table of 256 bytes applied to codes (``out[i] = table[x[i] + 128]``):
  the simulator's LUT instruction, a CONV's output table (a HardSwish or
  sigmoid folded into its epilogue) and a requantising COPY of 8-bit codes
  (runtime/sim/vector.py) all come down to it. Numba's loop is a byte load,
  a table load and a byte store a code (a gather LLVM cannot vectorise):
  ~0.29 ns a code, ~20 % of PP-LCNet's simulated run on one thread. Here
  the whole table sits in four 64-byte registers and ``vpermi2b`` looks up
  64 codes at once in each half of it (128 entries, selected by an index's
  low 7 bits, which are the code's own: ``x + 128`` only flips bit 7); the
  code's sign picks the half (negative codes index the table's first 128
  entries): 0.023 ns a code (Zen 4);
* the 3 x 3, stride-2 max of three rows of codes (a max POOL's output row:
  SqueezeNet's three, ResNet's stem): per 64 outputs the three rows' maxima
  over 129 columns, then their even columns, odd columns and the next even
  column picked by three ``vpermi2b``, two maxima. Numba's row passes ran
  in scalar remainders on these widths (109, 54, 27 columns);
* rows of codes split into their even and odd columns (a stride-2
  depthwise CONV's polyphase input, runtime/sim/conv8.py): two ``vpermi2b``
  per 128 codes, where the loop moved one code at a time.

With VBMI the last codes of a run are masked loads and stores. Without it
the table is two ``vpermi2w`` per 32 codes on AVX-512 (Skylake-SP, Cascade
Lake: the table as 128 16-bit words, a shift picking the byte; 0.06 ns a
code, compiled for Skylake-SP and run on Zen 4) or sixteen ``vpshufb`` of
its 16-byte parts per 32 codes on AVX2 (~2x the scalar loop); the max and
the split read 64 codes as 32 16-bit words, whose low and high bytes are
the even and odd columns (narrowed by ``vpmovwb`` on AVX-512, by packs on
AVX2): per 32 outputs of a max row three loads, two maxima and the
narrowing, the next even column shifted in from the one after. Their last
step overlaps the one before, so only rows shorter than one step go a code
at a time. Run on Zen 4 as AVX2 code: SqueezeNet's first pool (96 x 109 x
109) 127 -> 34 us, a 96 x 113 x 113 split 372 -> 92 us. :func:`fast` says
whether these are the VBMI kernels and :func:`fast_table` whether the
table is a permute, for callers to keep their own loops where those are
the faster (a COPY's arithmetic; a max pool's whole-plane passes where
rows are shorter than a step). Either way each output is the same byte.

The kernels are LLVM IR text linked by name when this module is imported
(runtime/linked.py), as runtime/sim/dots.py's are; :func:`fast` and
:func:`fast_table` ask the linked code which they are (a cached caller
compiled on another host stays right). The choice follows
runtime.gemm.family.host_isa (``TESSERA_GEMM_ISA=avx2`` takes the AVX2
kernels on a VBMI host, ``avx512bw`` those of a Skylake-SP: how the tests
reach all three).
"""
from __future__ import annotations

from numba.extending import intrinsic

from runtime.gemm.family import host_isa
from runtime.linked import int_call, link, void_call

MAP8, MAX3, SPLIT2 = "tessera_sim_map8", "tessera_sim_max3s2", "tessera_sim_split2"
FAST, FAST_TABLE = "tessera_sim_bytes_fast", "tessera_sim_bytes_fast_table"
"""The kernels' symbols: ``void map8(i64 n, i8* x, i8* table, i8* out)``
stores ``table[x[i] + 128]`` into ``out[i]`` for ``i < n`` (``out`` may be
``x``: each vector is loaded before it is stored); ``void max3s2(i64 n,
i64 rows, i64 step, i8* r0, i8* r1, i8* r2, i8* out)`` stores into
``out[k n + j]``, ``j < n``, ``k < rows``, the maximum of columns 2j to
2j + 2 of the three rows ``k step`` bytes past ``r0``, ``r1``, ``r2``
(each at least 2n + 1 codes; a row may be given twice); ``void
split2(i64 ne, i64 no, i64 rows, i64 sstep, i64 dstep, i8* src, i8* even,
i8* odd)`` copies, for ``k < rows``, the ``ne + no`` codes at ``src + k
sstep`` into their ``ne`` even columns at ``even + k dstep`` and ``no`` odd
ones at ``odd + k dstep`` (ne - no is 0 or 1); ``i64 fast()`` is 1 where
these are the VBMI kernels, ``i64 fast_table()`` where the table is a
vector permute (VBMI's bytes or AVX-512's words)."""


def uses_vbmi() -> bool:
    """Whether this host's table kernel is the ``vpermi2b`` one."""
    isa = host_isa()
    return isa.name == "avx512" and isa.vbmi


_DECLARATIONS = ("declare <64 x i8> @llvm.masked.load.v64i8.p0(ptr, i32, <64 x i1>, <64 x i8>)\n"
           "declare void @llvm.masked.store.v64i8.p0(<64 x i8>, ptr, i32, <64 x i1>)\n"
           "declare <64 x i8> @llvm.x86.avx512.vpermi2var.qi.512(<64 x i8>, <64 x i8>, <64 x i8>)\n"
           "declare <64 x i8> @llvm.smax.v64i8(<64 x i8>, <64 x i8>)\n"
           "declare i8 @llvm.smax.i8(i8, i8)\n")

_LANES = """
define internal <64 x i1> @lanes(i64 %m) alwaysinline {
  %none = icmp slt i64 %m, 1
  %all = icmp sgt i64 %m, 63
  %s = and i64 %m, 63
  %bit = shl i64 1, %s
  %some = sub i64 %bit, 1
  %a = select i1 %all, i64 -1, i64 %some
  %b = select i1 %none, i64 0, i64 %a
  %mask = bitcast i64 %b to <64 x i1>
  ret <64 x i1> %mask
}
"""
"""The mask of the first ``m`` of 64 lanes (none for m <= 0, all past 63)."""


def _bytes(values) -> str:
    return "<" + ", ".join(f"i8 {v}" for v in values) + ">"


def _loop(name: str, params: str, body: list[str]) -> str:
    """A function looping ``%j`` over [0, %n) by 64: ``body`` computes the
    step's 64 outputs ``%r`` (``%left`` outputs are left), stored whole
    where all 64 are outputs, else by a masked store (which AMD's cores
    microcode: only the last step's)."""
    return "\n".join([f"define {_LINKAGE.get(name, '')}void @{name}(i64 %n, {params}) nounwind {{", "entry:",
                      *_ENTRY.get(name, []),
                      "  br label %loop", "loop:", "  %j = phi i64 [ 0, %entry ], [ %jn, %next ]",
                      "  %more = icmp slt i64 %j, %n", "  br i1 %more, label %body, label %done", "body:",
                      "  %left = sub i64 %n, %j", *body, "  %po = getelementptr i8, ptr %out, i64 %j",
                      "  %whole = icmp sgt i64 %left, 63", "  br i1 %whole, label %all, label %part", "all:",
                      "  store <64 x i8> %r, ptr %po, align 1", "  br label %next", "part:",
                      "  %om = call <64 x i1> @lanes(i64 %left)",
                      "  call void @llvm.masked.store.v64i8.p0(<64 x i8> %r, ptr %po, i32 1, <64 x i1> %om)",
                      "  br label %next", "next:", "  %jn = add i64 %j, 64", "  br label %loop", "done:",
                      "  ret void", "}", ""])


_ENTRY = {MAP8: [f"  %tp{q} = getelementptr i8, ptr %t, i64 {64 * q}\n  %t{q} = load <64 x i8>, ptr %tp{q}, align 1"
                 for q in range(4)]}


def _map8_vector() -> str:
    """:data:`MAP8` with ``vpermi2b``: 64 codes a step, the last step masked."""
    return _loop(MAP8, "ptr readonly %x, ptr readonly %t, ptr %out", [
        "  %mask = call <64 x i1> @lanes(i64 %left)",
        "  %px = getelementptr i8, ptr %x, i64 %j",
        "  %v = call <64 x i8> @llvm.masked.load.v64i8.p0(ptr %px, i32 1, <64 x i1> %mask, <64 x i8> zeroinitializer)",
        "  %low = call <64 x i8> @llvm.x86.avx512.vpermi2var.qi.512(<64 x i8> %t0, <64 x i8> %v, <64 x i8> %t1)",
        "  %high = call <64 x i8> @llvm.x86.avx512.vpermi2var.qi.512(<64 x i8> %t2, <64 x i8> %v, <64 x i8> %t3)",
        "  %neg = icmp slt <64 x i8> %v, zeroinitializer",
        "  %r = select <64 x i1> %neg, <64 x i8> %low, <64 x i8> %high",
    ])


def _max3_vector() -> str:
    """:data:`MAX3` with ``vpermi2b``: 64 outputs a step from columns
    [2j, 2j + 129) of the rows' maxima (three masked loads a row), the last
    step masked."""
    rows = []
    for part, at in (("a", "%base"), ("b", "%base64"), ("c", "%base128")):
        rows.append(f"  %{part}m = call <64 x i1> @lanes(i64 %need{part})")
        for r in range(3):
            rows += [f"  %{part}p{r} = getelementptr i8, ptr %r{r}, i64 {at}",
                     f"  %{part}{r} = call <64 x i8> @llvm.masked.load.v64i8.p0(ptr %{part}p{r}, i32 1, "
                     f"<64 x i1> %{part}m, <64 x i8> zeroinitializer)"]
        rows += [f"  %{part}01 = call <64 x i8> @llvm.smax.v64i8(<64 x i8> %{part}0, <64 x i8> %{part}1)",
                 f"  %{part} = call <64 x i8> @llvm.smax.v64i8(<64 x i8> %{part}01, <64 x i8> %{part}2)"]
    even, odd, after = _bytes(range(0, 128, 2)), _bytes(range(1, 128, 2)), _bytes(range(1, 65))
    return _loop(_ROW, "ptr readonly %r0, ptr readonly %r1, ptr readonly %r2, ptr %out", [
        "  %full = icmp sgt i64 %left, 64",
        "  %cnt = select i1 %full, i64 64, i64 %left",
        "  %base = shl i64 %j, 1",
        "  %base64 = add i64 %base, 64",
        "  %base128 = add i64 %base, 128",
        "  %twice = shl i64 %cnt, 1",
        "  %needa = add i64 %twice, 1",
        "  %needb = sub i64 %needa, 64",
        "  %needc = sub i64 %needa, 128",
        *rows,
        f"  %e = call <64 x i8> @llvm.x86.avx512.vpermi2var.qi.512(<64 x i8> %a, <64 x i8> {even}, <64 x i8> %b)",
        f"  %o = call <64 x i8> @llvm.x86.avx512.vpermi2var.qi.512(<64 x i8> %a, <64 x i8> {odd}, <64 x i8> %b)",
        f"  %e2 = call <64 x i8> @llvm.x86.avx512.vpermi2var.qi.512(<64 x i8> %e, <64 x i8> {after}, <64 x i8> %c)",
        "  %eo = call <64 x i8> @llvm.smax.v64i8(<64 x i8> %e, <64 x i8> %o)",
        "  %r = call <64 x i8> @llvm.smax.v64i8(<64 x i8> %eo, <64 x i8> %e2)",
    ])


def _scalar(name: str, params: str, body: list[str]) -> str:
    """A function doing ``body`` for each ``%j`` in [0, %n), one at a time."""
    return "\n".join([f"define {_LINKAGE.get(name, '')}void @{name}(i64 %n, {params}) nounwind {{", "entry:",
                      "  br label %loop", "loop:",
                      "  %j = phi i64 [ 0, %entry ], [ %jn, %body ]", "  %more = icmp slt i64 %j, %n",
                      "  br i1 %more, label %body, label %done", "body:", *body, "  %jn = add i64 %j, 1",
                      "  br label %loop", "done:", "  ret void", "}", ""])


def _map8_steps(entry: list[str], body: list[str], declarations: str) -> str:
    """:data:`MAP8` as 32 codes a step: ``entry`` loads the table, ``body``
    maps the 32 codes ``%v`` at ``%j`` to ``%r``; the last codes (fewer than
    32) by the scalar loop."""
    lines = [f"define void @{MAP8}(i64 %n, ptr readonly %x, ptr readonly %t, ptr %out) nounwind {{", "entry:", *entry,
             "  %full = and i64 %n, -32", "  br label %loop", "loop:", "  %j = phi i64 [ 0, %entry ], [ %jn, %body ]",
             "  %more = icmp ult i64 %j, %full", "  br i1 %more, label %body, label %tail", "body:",
             "  %px = getelementptr i8, ptr %x, i64 %j", f"  %v = load {_BYTES}, ptr %px, align 1", *body,
             "  %po = getelementptr i8, ptr %out, i64 %j", f"  store {_BYTES} %r, ptr %po, align 1",
             "  %jn = add i64 %j, 32", "  br label %loop", "tail:", "  %rest = sub i64 %n, %full",
             "  %pxt = getelementptr i8, ptr %x, i64 %full", "  %pot = getelementptr i8, ptr %out, i64 %full",
             f"  call void @{_TAIL}(i64 %rest, ptr %pxt, ptr %t, ptr %pot)", "  ret void", "}", ""]
    return declarations + "\n".join(lines) + _map8_loop()


def _map8_shuffles() -> str:
    """:data:`MAP8` without VBMI: 32 codes a step by sixteen ``vpshufb`` of
    the table's 16-byte parts (AVX2; 2 operations a code against the scalar
    loop's byte load, table load and byte store): part j looks up the low
    nibble of ``u = x + 128`` where ``u - 16 j`` is in [0, 16), which adding
    0x70 with unsigned saturation leaves with bit 7 clear, and gives 0
    elsewhere (every other ``u - 16 j`` reaches bit 7 or saturates); the
    parts' results are ORed."""
    entry = []
    for q in range(16):
        entry += [f"  %tp{q} = getelementptr i8, ptr %t, i64 {16 * q}",
                  f"  %th{q} = load <16 x i8>, ptr %tp{q}, align 1",
                  f"  %t{q} = shufflevector <16 x i8> %th{q}, <16 x i8> poison, <32 x i32> "
                  + "<" + ", ".join(f"i32 {i % 16}" for i in range(32)) + ">"]
    body, acc = [f"  %u = xor {_BYTES} %v, {_splat(-128)}"], ""
    for q in range(16):
        body += [f"  %c{q} = sub {_BYTES} %u, {_splat(16 * q - 256 if 16 * q > 127 else 16 * q)}",
                 f"  %s{q} = call {_BYTES} @llvm.uadd.sat.v32i8({_BYTES} %c{q}, {_BYTES} {_splat(0x70)})",
                 f"  %l{q} = call {_BYTES} @llvm.x86.avx2.pshuf.b({_BYTES} %t{q}, {_BYTES} %s{q})"]
        if acc:
            body.append(f"  %{'r' if q == 15 else f'o{q}'} = or {_BYTES} {acc}, %l{q}")
        acc = f"%o{q}" if acc else f"%l{q}"
    return _map8_steps(entry, body, f"declare {_BYTES} @llvm.x86.avx2.pshuf.b({_BYTES}, {_BYTES})\n"
                       f"declare {_BYTES} @llvm.uadd.sat.v32i8({_BYTES}, {_BYTES})\n")


def _map8_words() -> str:
    """:data:`MAP8` on AVX-512 without VBMI (Skylake-SP, Cascade Lake): 32
    codes a step by two ``vpermi2w`` of the table read as 128 16-bit words,
    ~11 operations where the byte shuffles take 64. Code ``x`` (sign-extended
    to 16 bits) is entry ``u = x + 128``, byte ``u & 1`` of word ``u >> 1``:
    each ``vpermi2w`` looks up 64 words by the index's low 6 bits (the
    table's first or last 128 bytes, picked by the code's sign), and a
    variable shift by ``8 (u & 1)`` brings the byte down before the words
    are narrowed to bytes."""
    w = _WORDS
    entry = [line for q in range(4) for line in (f"  %tp{q} = getelementptr i8, ptr %t, i64 {64 * q}",
                                                 f"  %t{q} = load {w}, ptr %tp{q}, align 1")]
    body = [f"  %xs = sext {_BYTES} %v to {w}", f"  %u = add {w} %xs, {_splat(128, 'i16')}",
            f"  %idx = lshr {w} %u, {_splat(1, 'i16')}",
            f"  %low = call {w} @llvm.x86.avx512.vpermi2var.hi.512({w} %t0, {w} %idx, {w} %t1)",
            f"  %high = call {w} @llvm.x86.avx512.vpermi2var.hi.512({w} %t2, {w} %idx, {w} %t3)",
            f"  %neg = icmp slt {w} %xs, zeroinitializer", f"  %word = select <32 x i1> %neg, {w} %low, {w} %high",
            f"  %odd = and {w} %u, {_splat(1, 'i16')}", f"  %shift = shl {w} %odd, {_splat(3, 'i16')}",
            f"  %byte = lshr {w} %word, %shift", f"  %r = trunc {w} %byte to {_BYTES}"]
    return _map8_steps(entry, body, f"declare {w} @llvm.x86.avx512.vpermi2var.hi.512({w}, {w}, {w})\n")


def _splat(value: int, kind: str = "i8") -> str:
    """A 32-lane constant vector of ``kind``."""
    return "<" + ", ".join([f"{kind} {value}"] * 32) + ">"


def _map8_loop() -> str:
    """The table looked up one code at a time (the shuffle kernel's last codes)."""
    return _scalar(_TAIL, "ptr readonly %x, ptr readonly %t, ptr %out", [
        "  %px = getelementptr i8, ptr %x, i64 %j", "  %v = load i8, ptr %px, align 1",
        "  %u = xor i8 %v, -128", "  %k = zext i8 %u to i64", "  %pt = getelementptr i8, ptr %t, i64 %k",
        "  %r = load i8, ptr %pt, align 1", "  %po = getelementptr i8, ptr %out, i64 %j",
        "  store i8 %r, ptr %po, align 1"])


def _max3_loop(name: str = "max3_row") -> str:
    body, acc = ["  %c = shl i64 %j, 1"], ""
    for r in range(3):
        for k in range(3):
            body += [f"  %i{r}{k} = add i64 %c, {k}", f"  %p{r}{k} = getelementptr i8, ptr %r{r}, i64 %i{r}{k}",
                     f"  %v{r}{k} = load i8, ptr %p{r}{k}, align 1"]
            if acc:
                body.append(f"  %x{r}{k} = call i8 @llvm.smax.i8(i8 {acc}, i8 %v{r}{k})")
            acc = f"%x{r}{k}" if acc else f"%v{r}{k}"
    body += ["  %po = getelementptr i8, ptr %out, i64 %j", f"  store i8 {acc}, ptr %po, align 1"]
    return _scalar(name, "ptr readonly %r0, ptr readonly %r1, ptr readonly %r2, ptr %out", body)


_WORDS, _BYTES = "<32 x i16>", "<32 x i8>"


def _halves(word: str, name: str) -> list[str]:
    """``%{name}e`` and ``%{name}o``: the even and odd bytes of the 64 bytes
    ``word`` (32 little-endian 16-bit words), each word's low byte and its
    high byte narrowed (``vpmovwb`` on AVX-512, packs on AVX2)."""
    return [f"  %{name}e = trunc {_WORDS} {word} to {_BYTES}",
            f"  %{name}h = lshr {_WORDS} {word}, {_splat(8, 'i16')}",
            f"  %{name}o = trunc {_WORDS} %{name}h to {_BYTES}"]


def _max3_words() -> str:
    """The max row without VBMI: per 32 outputs the three rows' maxima over
    columns [2j, 2j + 64), read as 32 words, whose even and odd bytes are
    columns 2j and 2j + 1 of every window; its column 2j + 2 is the next
    even byte (column 2j + 64, the last window's, read alone). Nothing past
    column 2n is read. The last step overlaps the one before (its outputs
    computed again: the rows are not the output), so a row of 32 or more
    outputs has no scalar remainder; a shorter row is the scalar loop's."""
    body = []
    for r in range(3):
        body += [f"  %q{r} = getelementptr i8, ptr %r{r}, i64 %c", f"  %a{r} = load <64 x i8>, ptr %q{r}, align 1",
                 f"  %l{r} = getelementptr i8, ptr %r{r}, i64 %c64", f"  %z{r} = load i8, ptr %l{r}, align 1"]
    body += ["  %a01 = call <64 x i8> @llvm.smax.v64i8(<64 x i8> %a0, <64 x i8> %a1)",
             "  %am = call <64 x i8> @llvm.smax.v64i8(<64 x i8> %a01, <64 x i8> %a2)",
             f"  %aw = bitcast <64 x i8> %am to {_WORDS}", *_halves("%aw", "a"),
             "  %z01 = call i8 @llvm.smax.i8(i8 %z0, i8 %z1)", "  %zm = call i8 @llvm.smax.i8(i8 %z01, i8 %z2)",
             f"  %zv = insertelement {_BYTES} poison, i8 %zm, i64 0",
             f"  %be = shufflevector {_BYTES} %ae, {_BYTES} %zv, <32 x i32> "
             + "<" + ", ".join(f"i32 {i}" for i in range(1, 33)) + ">"]
    lines = [f"define internal void @{_ROW}(i64 %n, ptr readonly %r0, ptr readonly %r1, ptr readonly %r2, "
             "ptr %out) nounwind {", "entry:", "  %last = sub i64 %n, 32", "  %big = icmp sge i64 %last, 0",
             "  br i1 %big, label %loop, label %small", "loop:", "  %i = phi i64 [ 0, %entry ], [ %in, %body ]",
             "  %more = icmp slt i64 %i, %n", "  br i1 %more, label %body, label %done", "body:",
             "  %over = icmp sgt i64 %i, %last", "  %j = select i1 %over, i64 %last, i64 %i",
             "  %c = shl i64 %j, 1", "  %c64 = add i64 %c, 64",
             *body, f"  %ab = call {_BYTES} @llvm.smax.v32i8({_BYTES} %ae, {_BYTES} %ao)",
             f"  %r = call {_BYTES} @llvm.smax.v32i8({_BYTES} %ab, {_BYTES} %be)",
             "  %po = getelementptr i8, ptr %out, i64 %j", f"  store {_BYTES} %r, ptr %po, align 1",
             "  %in = add i64 %i, 32", "  br label %loop", "small:",
             f"  call void @{_ROW_TAIL}(i64 %n, ptr %r0, ptr %r1, ptr %r2, ptr %out)", "  br label %done",
             "done:", "  ret void", "}", ""]
    return (f"declare {_BYTES} @llvm.smax.v32i8({_BYTES}, {_BYTES})\n" + "\n".join(lines)
            + _max3_loop(_ROW_TAIL))


_ROW, _ROW_TAIL, _TAIL = "max3_row", "max3_tail", "map8_tail"
_LINKAGE = {_ROW: "internal ", _ROW_TAIL: "internal ", _TAIL: "internal "}
_ROWS = f"""
define void @{MAX3}(i64 %n, i64 %rows, i64 %step, ptr readonly %r0, ptr readonly %r1, ptr readonly %r2, ptr %out)
    nounwind {{
entry:
  br label %loop
loop:
  %k = phi i64 [ 0, %entry ], [ %kn, %body ]
  %more = icmp slt i64 %k, %rows
  br i1 %more, label %body, label %done
body:
  %in = mul i64 %k, %step
  %at = mul i64 %k, %n
  %p0 = getelementptr i8, ptr %r0, i64 %in
  %p1 = getelementptr i8, ptr %r1, i64 %in
  %p2 = getelementptr i8, ptr %r2, i64 %in
  %po = getelementptr i8, ptr %out, i64 %at
  call void @{_ROW}(i64 %n, ptr %p0, ptr %p1, ptr %p2, ptr %po)
  %kn = add i64 %k, 1
  br label %loop
done:
  ret void
}}
"""
""":data:`MAX3`: ``rows`` output rows of ``n`` outputs, row k from the rows
``step`` bytes on from the previous row's (and ``n`` bytes on for its
output)."""


def _split2_ir(vbmi: bool) -> str:
    """:data:`SPLIT2`: rows of codes split into their even and odd columns,
    per 128 codes two ``vpermi2b`` (the last step's loads and stores masked);
    without VBMI per 64 codes the low and high bytes of 32 words (the last
    step overlapping the one before; rows of fewer than 32 pairs, and an odd
    row's last code, one code at a time)."""
    if vbmi:  # the column loop from the row's first pair
        words, first = "  br label %cl\ncl:\n", "[ 0, %row ]"
    else:  # 32 column pairs a step as words (the last overlapping) where 32 exist; then one pair a step
        words, first = "\n".join([
            "  %last = sub i64 %no, 32", "  %big = icmp sge i64 %last, 0", "  %from = select i1 %big, i64 %no, i64 0",
            "  br i1 %big, label %vl, label %cl", "vl:", "  %iv = phi i64 [ 0, %row ], [ %ivn, %vbody ]",
            "  %vmore = icmp slt i64 %iv, %no", "  br i1 %vmore, label %vbody, label %cl", "vbody:",
            "  %over = icmp sgt i64 %iv, %last", "  %jv = select i1 %over, i64 %last, i64 %iv",
            "  %xv = shl i64 %jv, 1", "  %pv = getelementptr i8, ptr %s, i64 %xv",
            f"  %w = load {_WORDS}, ptr %pv, align 1", *_halves("%w", "w"),
            "  %qev = getelementptr i8, ptr %e, i64 %jv", f"  store {_BYTES} %we, ptr %qev, align 1",
            "  %qov = getelementptr i8, ptr %o, i64 %jv", f"  store {_BYTES} %wo, ptr %qov, align 1",
            "  %ivn = add i64 %iv, 32", "  br label %vl", "cl:", ""]), "[ %from, %row ], [ %from, %vl ]"
    head = (f"define void @{SPLIT2}(i64 %ne, i64 %no, i64 %rows, i64 %sstep, i64 %dstep, ptr readonly %src, "
            "ptr %ev, ptr %od) nounwind {\nentry:\n  br label %rl\nrl:\n"
            "  %k = phi i64 [ 0, %entry ], [ %kn, %rowdone ]\n  %rmore = icmp slt i64 %k, %rows\n"
            "  br i1 %rmore, label %row, label %done\nrow:\n  %so = mul i64 %k, %sstep\n  %do = mul i64 %k, %dstep\n"
            "  %s = getelementptr i8, ptr %src, i64 %so\n  %e = getelementptr i8, ptr %ev, i64 %do\n"
            f"  %o = getelementptr i8, ptr %od, i64 %do\n{words}"
            f"  %j = phi i64 {first}, [ %jn, %cnext ]\n  %cmore = icmp slt i64 %j, %ne\n"
            "  br i1 %cmore, label %col, label %rowdone\ncol:\n")
    tail = ("rowdone:\n  %kn = add i64 %k, 1\n  br label %rl\ndone:\n  ret void\n}\n")
    if not vbmi:
        body = ("  %x2 = shl i64 %j, 1\n  %pe = getelementptr i8, ptr %s, i64 %x2\n  %ve = load i8, ptr %pe, align 1\n"
                "  %qe = getelementptr i8, ptr %e, i64 %j\n  store i8 %ve, ptr %qe, align 1\n"
                "  %odd = icmp slt i64 %j, %no\n  br i1 %odd, label %oddcol, label %cnext\noddcol:\n"
                "  %x21 = add i64 %x2, 1\n  %po = getelementptr i8, ptr %s, i64 %x21\n"
                "  %vo = load i8, ptr %po, align 1\n"
                "  %qo = getelementptr i8, ptr %o, i64 %j\n  store i8 %vo, ptr %qo, align 1\n  br label %cnext\n"
                "cnext:\n  %jn = add i64 %j, 1\n  br label %cl\n")
        return head + body + tail
    even, odd = _bytes(range(0, 128, 2)), _bytes(range(1, 128, 2))
    body = "\n".join([
        "  %base = shl i64 %j, 1", "  %all = add i64 %ne, %no", "  %left = sub i64 %all, %base",
        "  %left64 = sub i64 %left, 64", "  %ma = call <64 x i1> @lanes(i64 %left)",
        "  %mb = call <64 x i1> @lanes(i64 %left64)", "  %pa = getelementptr i8, ptr %s, i64 %base",
        "  %pb = getelementptr i8, ptr %pa, i64 64",
        "  %a = call <64 x i8> @llvm.masked.load.v64i8.p0(ptr %pa, i32 1, <64 x i1> %ma, <64 x i8> zeroinitializer)",
        "  %b = call <64 x i8> @llvm.masked.load.v64i8.p0(ptr %pb, i32 1, <64 x i1> %mb, <64 x i8> zeroinitializer)",
        f"  %ve = call <64 x i8> @llvm.x86.avx512.vpermi2var.qi.512(<64 x i8> %a, <64 x i8> {even}, <64 x i8> %b)",
        f"  %vo = call <64 x i8> @llvm.x86.avx512.vpermi2var.qi.512(<64 x i8> %a, <64 x i8> {odd}, <64 x i8> %b)",
        "  %le = sub i64 %ne, %j", "  %lo = sub i64 %no, %j", "  %qe = getelementptr i8, ptr %e, i64 %j",
        "  %qo = getelementptr i8, ptr %o, i64 %j", "  %whole = icmp sgt i64 %lo, 63",
        "  br i1 %whole, label %wide, label %part", "wide:", "  store <64 x i8> %ve, ptr %qe, align 1",
        "  store <64 x i8> %vo, ptr %qo, align 1", "  br label %cnext", "part:",
        "  %me = call <64 x i1> @lanes(i64 %le)", "  %mo = call <64 x i1> @lanes(i64 %lo)",
        "  call void @llvm.masked.store.v64i8.p0(<64 x i8> %ve, ptr %qe, i32 1, <64 x i1> %me)",
        "  call void @llvm.masked.store.v64i8.p0(<64 x i8> %vo, ptr %qo, i32 1, <64 x i1> %mo)",
        "  br label %cnext", "cnext:", "  %jn = add i64 %j, 64", "  br label %cl", ""])
    return head + body + tail


def kernel_ir(vbmi: bool, avx512: bool = False) -> str:
    """LLVM IR text of the module holding :data:`MAP8`, :data:`MAX3`,
    :data:`SPLIT2` and :data:`FAST`: the VBMI kernels, else the table by
    word permutes (``avx512``) or byte shuffles, the max and split loops."""
    table = _map8_words() if avx512 else _map8_shuffles()
    kernels = [_LANES, _map8_vector(), _max3_vector()] if vbmi else [table, _max3_words()]
    kernels += [_ROWS, _split2_ir(vbmi)]
    flags = "".join(f"define i64 @{name}() nounwind {{\n  ret i64 {int(value)}\n}}\n"
                    for name, value in ((FAST, vbmi), (FAST_TABLE, vbmi or avx512)))
    return _DECLARATIONS + "".join(kernels) + flags


_VBMI, _AVX512 = uses_vbmi(), host_isa().name == "avx512"
TABLE = "vbmi" if _VBMI else "words" if _AVX512 else "shuffles"
"""Which table kernel this process linked: VBMI's byte permutes, AVX-512's
word permutes or the byte shuffles."""
link("sim-bytevec-" + TABLE, kernel_ir(_VBMI, _AVX512), [MAP8, MAX3, SPLIT2, FAST, FAST_TABLE])


@intrinsic
def map8(typingctx, n, x, table, out):
    """``out[i] = table[x[i] + 128]`` for the ``n`` int8 codes at address
    ``x`` (addresses, int64; the table's 256 bytes at ``table``)."""
    return void_call(MAP8, (n, x, table, out))


@intrinsic
def max3s2(typingctx, n, rows, step, r0, r1, r2, out):
    """``out[k n + j]`` (int8, ``j < n``, ``k < rows``) = the maximum of
    columns 2j to 2j + 2 of the int8 rows at addresses ``r0``, ``r1``,
    ``r2``, each plus ``k step``."""
    return void_call(MAX3, (n, rows, step, r0, r1, r2, out), counts=3)


@intrinsic
def split2(typingctx, ne, no, rows, sstep, dstep, src, even, odd):
    """Rows of int8 codes split into even and odd columns (:data:`SPLIT2`)."""
    return void_call(SPLIT2, (ne, no, rows, sstep, dstep, src, even, odd), counts=5)


@intrinsic
def fast(typingctx):
    """Whether the linked kernels are the VBMI ones (int64 1 or 0)."""
    return int_call(FAST)


@intrinsic
def fast_table(typingctx):
    """Whether the linked table kernel is a vector permute, VBMI's or
    AVX-512's (int64 1 or 0): a table applied faster than most arithmetic."""
    return int_call(FAST_TABLE)
