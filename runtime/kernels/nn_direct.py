"""Direct convolution: a 2-D convolution's product read straight from its
zero-padded input, with no column matrix.

The product is the one :func:`runtime.gemm.sgemm` runs on the column
matrix: ``C (M, N) = A (M, K) @ B (K, N)``, A the weights packed for the
host's narrow kernel family (runtime.gemm.family.narrow_isa: panels of one
vector of rows), ``B[k, n]`` the input value that output position ``n``
reads at tap ``k = (c, kh, kw)``. In the padded input (C, Hp, Wp) that
value lies at ``offsets[k] + positions[n]``: ``offsets[k] = c Hp Wp + kh dh
Wp + kw dw``, ``positions[n] = oh sh Wp + ow sw`` (:func:`tables`). So a
kernel (:class:`DirectTile`) takes, per step ``k``, one vector of A per row
panel and broadcasts the ``cols`` values of B it needs from the input
itself, as the GEMM's remainder kernels broadcast them from B's rows.

Each output is the GEMM's sum bit for bit: per reduction block of ``kc``
steps (runtime.gemm.pack.block_depth, the same blocks) a fused
multiply-add chain from zero in increasing ``k``, then that block's sum
plus the running total, which starts at the bias (or at -0.0, which adds
nothing to any value); the GEMM adds the same block sums to the same totals
(bias first, then ``C``). Here the totals stay in registers across the
blocks, so the tile is written once, after the residual and the clamp. The
input is padded with zeros as the column matrix is: each padded tap
multiplies a zero as there.

Where the column matrix was built per call (ResNet-10's layers at 32 x 32:
im2col 5-8 us a layer before a product of 20-50 us on one thread), this
reads the input in place of it; and its vectors run along the output
channels, so products of 4 or 16 columns (2 x 2 and 4 x 4 output planes)
fill every lane (one thread, Zen 4, against im2col + GEMM: 3x3 64 -> 64 at
8 x 8 0.90, 128 -> 128 at 4 x 4 0.90, 256 -> 256 at 2 x 2 0.56-0.73,
128 -> 256 stride 2 0.57-0.67, ResNet-10's 7x7 stride-2 stem 0.85).
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from runtime import parallel
from runtime.errors import KernelError
from runtime.gemm.family import UNIT, Isa, host_isa, narrow_isa
from runtime.gemm.microkernel import compile_module
from runtime.gemm.microkernel_epilogue import Writer, const_vector, splat_vector, tile_epilogue
from runtime.gemm.microkernel_ir import _declarations, _loop, _panel_offsets, _Remainder, _splat_load, _Tile
from runtime.jit import jit
from runtime.kernels.nn_window import out_shape
from runtime.schedule.records import DIRECT, NONE

_u = numba.uint64

MIN_DEPTH = 64
"""Reductions shorter than this keep the column matrix: a tile's epilogue
(masked scatters, a vector of rows per column) weighs against too few
steps (MobileNetV2's stem, 27 steps: 1.02 of im2col + GEMM)."""
MAX_INPUT = 1 << 16
"""The most elements of a padded input (256 KiB) each thread copies for
itself, so that the copy stays in its L2: ResNet-50's stride-2 3x3 layer
from 56 x 56 (128 channels, 1.7 MB padded) ran 1.7x as long as im2col +
GEMM, each thread copying the whole input."""
SMALL_INPUT = 1 << 14
"""A padded input this small (64 KiB) is copied even where the column matrix
is smaller (a strided 1x1 convolution's, its input subsampled): ResNet-10's
downsampling 1x1 layers (1-4 Ki elements) 2.8-5.4 us direct against 7-11
as IM2COL + GEMM. Larger, each thread copying the whole input lost:
ResNet-18's 1x1 stride-2 layer at 14 x 14 (50 Ki elements) 108 against 87
us as OWN_COLUMNS."""
MAX_WEIGHTS = 1 << 20
"""The most weights (4 MiB) of a direct product: each unit reads its rows'
weights once per tile of ``cols`` positions, from L2 while a group of rows
fits there. ResNet-50's 3x3 layers at 7 x 7 (512 x 4608 weights, 7 tiles)
ran 1.2x as long as im2col + GEMM, whose tiles read them once."""


def direct_tile(isa: Isa) -> tuple[int, int]:
    """(row panels, columns) of the largest kernel of ``isa``'s direct
    family: AVX-512 2 panels of 16 rows x 8 columns (16 accumulators; 1 x
    16, 4 x 6 and 2 x 6 measured the same on Zen 4), AVX2 2 panels of 8
    rows x 5 columns (10 of its 16 registers)."""
    return (2, 8) if isa.vw == 16 else (2, 5)


@dataclass(frozen=True)
class DirectTile(_Remainder):
    """``panels`` row panels x ``cols`` output positions: per step, A's
    vectors times the ``cols`` input values at ``offsets[k] +
    positions[j]`` broadcast."""

    @property
    def name(self) -> str:
        return f"tessera_direct_{self.panels * self.mr}x{self.cols}"

    def splats(self, w: Writer, pb: str, k: int) -> list[str]:
        """The input values of step ``k``'s tap (its offset at ``pb + k``)
        at the tile's ``cols`` positions, each broadcast to a vector."""
        at, off, wide, base = w.fresh("po"), w.fresh("off"), w.fresh("off64"), w.fresh("xk")
        w.emit(f"{at} = getelementptr inbounds i32, ptr {pb}, i64 {k}")
        w.emit(f"{off} = load i32, ptr {at}, align 4")
        w.emit(f"{wide} = sext i32 {off} to i64")
        w.emit(f"{base} = getelementptr inbounds float, ptr %x, i64 {wide}")
        return [_splat_load(w, self.mr, base, f"%pos{j}") for j in range(self.cols)]

    def epilogue(self, w: Writer, acc: list[list[str]]) -> None:
        """The tile transposed in registers into rows of ``UNIT`` positions
        (:func:`_rows`), then a GEMM tile's epilogue on them: plain (or
        masked) row loads and stores, where the remainder kernels' gathers
        and scatters took a vector per column (ResNet-10 0.98 of the time)."""
        rows = _rows(w, self, acc)
        tile_epilogue(w, _Tile(self.kind, self.panels * self.mr, (UNIT,)), [[row] for row in rows])


def _rows(w: Writer, t: DirectTile, acc: list[list[str]]) -> list[str]:
    """The ``panels * mr`` rows of ``UNIT`` lanes (positions; past ``cols``
    zeros) of a tile held as ``cols`` vectors of ``mr`` rows per panel:
    three rounds of two-vector shuffles, each pairing blocks of columns
    (1, 2, then 4 wide) and halving the rows each vector holds."""
    lanes, out = t.mr, []
    for p in range(t.panels):
        groups = [[acc[p][j] if j < t.cols else "zeroinitializer"] for j in range(UNIT)]
        width = 1
        while len(groups) > 1:
            merged = []
            for first, second in zip(groups[0::2], groups[1::2]):
                block = []
                for a, b in zip(first, second):
                    held = lanes // width  # rows each vector holds, ``width`` lanes a row
                    for half in range(2):
                        picks = []
                        for i in range(held // 2):
                            row = half * (held // 2) + i
                            picks += [row * width + k for k in range(width)]
                            picks += [lanes + row * width + k for k in range(width)]
                        name = w.fresh("tr")
                        mask = ", ".join(f"i32 {v}" for v in picks)
                        w.emit(f"{name} = shufflevector <{lanes} x float> {a}, <{lanes} x float> {b}, "
                               f"<{lanes} x i32> <{mask}>")
                        block.append(name)
                merged.append(block)
            groups, width = merged, width * 2
        for vector in groups[0]:
            for k in range(lanes // UNIT):
                if lanes == UNIT:
                    out.append(vector)
                    continue
                name = w.fresh("row")
                mask = ", ".join(f"i32 {k * UNIT + v}" for v in range(UNIT))
                w.emit(f"{name} = shufflevector <{lanes} x float> {vector}, <{lanes} x float> poison, "
                       f"<{UNIT} x i32> <{mask}>")
                out.append(name)
    return out


def _function(t: DirectTile) -> str:
    """IR of one direct kernel::

        void kernel(i64 depth, i64 kc, i64 mpad, i64 row, float* a, float* x,
                    i32* offsets, i64* positions, float* c, i64 ldc, i64 rows,
                    float* bias, float* residual, i64 ldr, float* clamp)

    rows ``row ..`` (``rows`` of them written) of the packed A at ``a``
    (``mpad`` rows, blocks of ``kc`` steps) times the ``cols`` positions
    at ``positions``, over all ``depth`` steps; then :meth:`DirectTile.epilogue`
    (``%bias`` null there: the bias started the totals)."""
    mr, vec = t.mr, t.vec(t.mr)
    w = Writer()
    w.label("entry")
    for k in range(1, t.unroll + 1):  # the offsets pointer steps as B's rows did: by ``%ldb{k}`` 4-byte entries
        w.emit(f"%ldb{k} = add i64 0, {k}")
    for j in range(t.cols):
        ptr = w.fresh("ppos")
        w.emit(f"{ptr} = getelementptr inbounds i64, ptr %positions, i64 {j}")
        w.emit(f"%pos{j} = load i64, ptr {ptr}, align 8")
    w.emit(f"%cols = add i64 0, {t.cols}")
    w.emit("%bias = inttoptr i64 0 to ptr")
    w.emit("%accumulate = add i64 0, 0")
    negative_zero = const_vector(mr, "-0.0", "float")
    lanes = ", ".join(f"i64 {lane}" for lane in range(mr))
    w.emit("%has_bias_in = icmp ne ptr %bias_in, null")
    w.emit("br i1 %has_bias_in, label %load_bias, label %blocks_pre")
    w.label("load_bias")
    rows = splat_vector(w, mr, "%rows", "i64")
    biases = []
    for p in range(t.panels):
        ids, mask, ptr, value = w.fresh("ids"), w.fresh("bmask"), w.fresh("pbias"), w.fresh("bias")
        w.emit(f"{ids} = add <{mr} x i64> <{lanes}>, " + const_vector(mr, p * mr, "i64"))
        w.emit(f"{mask} = icmp slt <{mr} x i64> {ids}, {rows}")
        w.emit(f"{ptr} = getelementptr inbounds float, ptr %bias_in, i64 {p * mr}")
        w.emit(f"{value} = call {vec} @llvm.masked.load.v{mr}f32.p0(ptr {ptr}, i32 4, <{mr} x i1> {mask}, "
               f"{vec} {negative_zero})")
        biases.append(value)
    w.emit("br label %blocks_pre")
    w.label("blocks_pre")
    for p in range(t.panels):
        w.emit(f"%start{p} = phi {vec} [ {biases[p]}, %load_bias ], [ {negative_zero}, %entry ]")
    w.emit("br label %block_head")
    w.label("block_head")
    totals = [[f"%total_{p}_{j}" for j in range(t.cols)] for p in range(t.panels)]
    sums = [[f"%sum_{p}_{j}" for j in range(t.cols)] for p in range(t.panels)]
    for p in range(t.panels):
        for j in range(t.cols):
            w.emit(f"{totals[p][j]} = phi {vec} [ %start{p}, %blocks_pre ], [ {sums[p][j]}, %block_end ]")
    w.emit("%k0 = phi i64 [ 0, %blocks_pre ], [ %k0_next, %block_end ]")
    w.emit("%left = sub i64 %depth, %k0")
    w.emit("%kc = call i64 @llvm.smin.i64(i64 %kc_full, i64 %left)")
    w.emit("%a_k0 = mul i64 %k0, %mpad")
    w.emit("%a_row = mul i64 %row, %kc")
    w.emit("%a_at = add i64 %a_k0, %a_row")
    w.emit("%a_block = getelementptr inbounds float, ptr %a, i64 %a_at")
    w.emit("%offsets_block = getelementptr inbounds i32, ptr %offsets, i64 %k0")
    _panel_offsets(w, mr, t.panels)
    w.emit("br label %block_body")
    w.label("block_body")
    zeros = [["zeroinitializer"] * t.cols for _ in range(t.panels)]
    main = _loop(w, t, "main", t.unroll, ("block_body", zeros, "%a_block", "%offsets_block", "0"), "tail_pre")
    w.label("tail_pre")
    tail = _loop(w, t, "tail", 1, ("tail_pre", main, "%main_pa", "%main_pb", "%main_k"), "block_end")
    w.label("block_end")
    for p in range(t.panels):
        for j in range(t.cols):
            w.emit(f"{sums[p][j]} = fadd {vec} {tail[p][j]}, {totals[p][j]}")
    w.emit("%k0_next = add i64 %k0, %kc")
    w.emit("%more = icmp slt i64 %k0_next, %depth")
    w.emit("br i1 %more, label %block_head, label %store")
    w.label("store")
    t.epilogue(w, sums)
    body = "\n".join(w.lines)
    return f"""define void @{t.name}(i64 %depth, i64 %kc_full, i64 %mpad, i64 %row, ptr noalias readonly %a,
                      ptr noalias readonly %x, ptr noalias readonly %offsets, ptr noalias readonly %positions,
                      ptr noalias %c, i64 %ldc, i64 %rows, ptr noalias readonly %bias_in,
                      ptr noalias %residual, i64 %ldr, ptr noalias readonly %clamp) nounwind {{
{body}
}}
"""


def _tiles(isa: Isa) -> list[DirectTile]:
    """Kernel ``(p - 1) * cols + c - 1``: ``p`` row panels x ``c`` columns."""
    panels, cols = direct_tile(isa)
    return [DirectTile("f32", isa.mr, p, c) for p in range(1, panels + 1) for c in range(1, cols + 1)]


def direct_ir(isa: Isa) -> str:
    """LLVM IR of the module of ``isa``'s direct kernels (``isa``: a narrow family)."""
    return (f"; Tessera direct convolution kernels ({isa.name})\n"
            "declare void @llvm.prefetch.p0(ptr, i32, i32, i32)\ndeclare i64 @llvm.smin.i64(i64, i64)\n"
            + "".join(_declarations("f32", lanes, False) for lanes in sorted({isa.mr, UNIT})) + "\n"
            + "\n".join(_function(t) for t in _tiles(isa)))


_engines: dict[Isa, tuple[object, np.ndarray]] = {}
_lock = threading.Lock()


def direct_family() -> Isa | None:
    """The kernel family direct convolutions run on here (the host's narrow
    one, whose packing they read), or None where there is none."""
    try:
        return narrow_isa(host_isa())
    except KernelError:  # no AVX2: no Tessera GEMM at all
        return None


def direct_kernels(isa: Isa) -> np.ndarray:
    """Entry points of ``isa``'s direct kernels (:func:`_tiles`' order), compiled on first use."""
    with _lock:
        if isa not in _engines:
            _engines[isa] = compile_module(f"direct-{isa.name}", direct_ir(isa), [t.name for t in _tiles(isa)], isa)
        return _engines[isa][1]


# ------------------------------------------------------------ calling from Numba
_KINDS = "iiiippppiiippip"
"""Argument kinds of a direct kernel: i64 or pointer (:func:`_function`)."""


@intrinsic
def call_direct(typingctx, address, depth, kc, mpad, row, a, x, offsets, positions, c, ldc, rows, bias, residual,
                ldr, clamp):
    """Call the direct kernel at ``address``; every argument an int64 (pointers as addresses, 0 for none)."""
    sig = types.void(*([types.int64] * 16))

    def codegen(context, builder, signature, args):
        i64, ptr = ir.IntType(64), ir.PointerType()
        fnty = ir.FunctionType(ir.VoidType(), [ptr if kind == "p" else i64 for kind in _KINDS])
        target = builder.inttoptr(args[0], ir.PointerType(fnty))
        builder.call(target, [builder.inttoptr(v, ptr) if kind == "p" else v for kind, v in zip(_KINDS, args[1:])])
        return context.get_dummy_value()

    return sig, codegen


@jit
def pad_planes(x, padded, top, left):
    """``x`` (C, H, W) into ``padded`` (C, Hp, Wp) at (``top``, ``left``),
    zeros around it: the whole buffer zeroed (one vectorised loop), then
    each input row copied in, rows of 2 and 4 as copies of that many
    elements (straight-line vector moves). One thread, Zen 4, ResNet-10's
    inputs: 64 x 8 x 8 1.05 us, 128 x 4 x 4 0.75, 256 x 2 x 2 0.55, where
    writing each element once, its zero or its value, took 1.8-2.7 us and
    a shifted vector run per padded row (as im2col builds rows) 2.0-2.8."""
    chans, height, width = x.shape
    hp, wp = padded.shape[1], padded.shape[2]
    src, dst = x.reshape(-1), padded.reshape(-1)
    for i in range(_u(dst.size)):
        dst[i] = 0.0
    for c in range(chans):
        for i in range(height):
            at, read = _u((c * hp + i + top) * wp + left), _u((c * height + i) * width)
            if width == 4:
                _copy(dst, at, src, read, 4)
            elif width == 2:
                _copy(dst, at, src, read, 2)
            else:
                _copy(dst, at, src, read, width)


@jit(inline="always")
def _copy(dst, at, src, read, count):
    for j in range(_u(count)):
        dst[at + j] = src[read + j]


@jit
def direct_units(start, stop, kernels, shape, a, x, offsets, positions, c, bias, residual, clamp):
    """Units ``[start, stop)`` of a direct product: unit ``u`` is row group
    ``u // tiles`` (``panels`` row panels) x column tile ``u % tiles``
    (``cols`` positions), so consecutive units share their rows of A.
    ``shape`` = (M, N, depth, kc, mr, panels, cols); the rest are addresses
    (``bias``, ``residual``, ``clamp``: 0 for none; ``c`` and ``residual``
    (M, N))."""
    m, n, depth, kc, mr, panels, cols = shape[0], shape[1], shape[2], shape[3], shape[4], shape[5], shape[6]
    all_panels = (m + mr - 1) // mr
    tiles = (n + cols - 1) // cols
    for unit in range(start, stop):
        group, tile = unit // tiles, unit % tiles
        panel, j = group * panels, tile * cols
        here, width = min(panels, all_panels - panel), min(cols, n - j)
        row = panel * mr
        at = 4 * (row * n + j)
        call_direct(kernels[(here - 1) * cols + width - 1], depth, kc, all_panels * mr, row, a, x, offsets,
                    positions + 8 * j, c + at, n, min(here * mr, m - row), bias + 4 * row if bias else 0,
                    residual + at if residual else 0, n, clamp)


def units(m: int, n: int, isa: Isa) -> int:
    """How many units (:func:`direct_units`) a direct product of M x N has."""
    panels, cols = direct_tile(isa)
    return -(-(-(-m // isa.mr)) // panels) * -(-n // cols)


def tables(chans: int, padded: tuple, kernel: tuple, strides: tuple, dilations: tuple,
           out_hw: tuple) -> tuple[np.ndarray, np.ndarray]:
    """The offsets (int32, one per ``k`` = (c, kh, kw)) and positions
    (int64, one per output position) of a direct product over a padded
    input of ``chans`` planes of ``padded`` = (Hp, Wp)."""
    hp, wp = padded
    kh, kw = kernel
    taps = (np.arange(kh)[:, None] * dilations[0] * wp + np.arange(kw)[None, :] * dilations[1]).reshape(-1)
    offsets = (np.arange(chans)[:, None] * hp * wp + taps[None, :]).reshape(-1).astype(np.int32)
    oh, ow = out_hw
    positions = (np.arange(oh)[:, None] * strides[0] * wp + np.arange(ow)[None, :] * strides[1]).reshape(-1)
    return offsets, positions.astype(np.int64)


# ---------------------------------------------------------------- lowering
def _padded(x_shape: tuple, window) -> tuple[int, int]:
    """(Hp, Wp): an (N, C, H, W) input with the window's pads."""
    return (x_shape[2] + window.pads_begin[0] + window.pads_end[0],
            x_shape[3] + window.pads_begin[1] + window.pads_end[1])


def direct_fits(x_shape: tuple, w_shape: tuple, window) -> bool:
    """Whether a float32 2-D convolution of one group (X (N, C, H, W), W
    (K, C, KH, KW)) runs as a direct product in a schedule: a reduction of
    at least :data:`MIN_DEPTH` steps, a padded input of at most
    :data:`MAX_INPUT` elements and no larger than the column matrix (or
    at most :data:`SMALL_INPUT`), at most :data:`MAX_WEIGHTS` weights, and
    a narrow kernel family here."""
    if len(x_shape) != 4 or len(w_shape) != 4 or direct_family() is None:
        return False
    hp, wp = _padded(x_shape, window)
    depth = int(np.prod(w_shape[1:]))
    positions = math.prod(out_shape("Conv", x_shape[2:], window))
    padded = x_shape[1] * hp * wp
    return (depth >= MIN_DEPTH and padded <= MAX_INPUT and w_shape[0] * depth <= MAX_WEIGHTS
            and (padded <= depth * positions or padded <= SMALL_INPUT))


def lower_direct(ctx, x, packed, bias, out, window, residual, clamp) -> None:
    """A DIRECT operation per image of the (N, C, H, W) operand ``x``
    into ``out`` (N, M, OH, OW) (and ``residual``, its shape, or None):
    ``packed`` the weights packed for a narrow family (:func:`direct_family`),
    ``bias`` (M,) or None, ``clamp`` a clamp array or None. One part per
    thread (at most one per unit): each pads the image into a buffer of its
    own (cache lines of its own), then runs its share of the units
    (runtime.schedule.ops._direct)."""
    isa = packed.isa
    batch, chans, height, width = x.shape
    m, depth = packed.matrix
    out_h, out_w = out.shape[2:]
    top, left = window.pads_begin
    hp, wp = _padded(x.shape, window)
    offsets, positions = tables(chans, (hp, wp), window.kernel, window.strides, window.dilations, (out_h, out_w))
    if int(offsets[-1]) + int(positions[-1]) >= chans * hp * wp:
        raise ValueError("a direct product would read past its padded input")
    n = out_h * out_w
    total = units(m, n, isa)
    parts = max(1, min(parallel.NUM_THREADS, total))
    padded, stride = ctx.part_scratch(chans * hp * wp * 4, parts)
    kernels = direct_kernels(isa)
    panels, cols = direct_tile(isa)
    bias_ref = NONE if bias is None else ctx.pin(np.ascontiguousarray(bias, np.float32).reshape(-1))
    clamp_ref = NONE if clamp is None else ctx.pin(np.ascontiguousarray(clamp, np.float32))
    head = [*ctx.pin(kernels), kernels.size, *ctx.pin(packed.data), *ctx.pin(offsets), *ctx.pin(positions)]
    for image in range(batch):
        x_at, y_at = image * chans * height * width * 4, image * m * n * 4
        ctx.emit(DIRECT, [*x.ref(x_at), chans, height, width, *padded.ref(), stride, hp, wp, top, left, *head,
                          *out.ref(y_at), *bias_ref, *(NONE if residual is None else residual.ref(y_at)), *clamp_ref,
                          m, n, depth, packed.kc, isa.mr, panels, cols, total, parts],
                 parts, spans=[(p, p + 1) for p in range(parts)])
