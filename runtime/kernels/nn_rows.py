"""Convolutions whose reduction is one block (a network's stem: 3 input
channels, 3x3 to 7x7, stride 2; a grouped convolution's groups of a few
channels, each group a task of its own) run as the GEMM of their column
matrix without building it: each tile reads B's row ``k`` from a copy of the
input laid out so that the tile's output positions are consecutive floats.

A convolution by bands (runtime.kernels.nn_im2col.conv_by_bands) builds,
per band of output rows, the column matrix whose row ``k = (c, ky, kx)``
holds the input at (oy s + ky - ph, ox s + kx - pw) for each output (oy,
ox) of the band (zero in the padding), and multiplies the packed weights
by it. Here the band's input rows are copied instead, padded with zeros
and split into the ``s x s`` phases of the stride (:func:`copy_band`:
padded row ``r``, column ``j`` go to phase (r mod s, j mod s) at (r div s,
j div s)); for tap (c, ky, kx) the inputs of output row ``oy``, columns
``ox`` on, are then consecutive floats of phase (ky mod s, kx mod s) of
channel ``c``, row ``oy - top + ky div s``, column ``ox + kx div s``:
B's row ``k`` of a tile lies at the tile's base plus ``offsets[k]``
(:func:`tap_offsets`). The kernels are the GEMM's own float tiles
(runtime.gemm.microkernel_ir: ``mr`` rows of A broadcast times vectors of
output positions, a fused multiply-add chain from zero over the steps in
increasing ``k``, the same epilogue: bias, residual, clamp and gate) with
B's rows read through the offsets (:class:`RowTile`), so with the
reduction one block deep each output is the same products summed in the
same order as the column matrix's GEMM: the same bits
(tests/ops/test_conv_bands.py), on every kernel family. The copy writes
each input float once (a stride-2 row as the two halves of its 8-byte
pairs), where the column matrix wrote it about kh kw / s^2 times.

One thread, Zen 4, the layer alone against the bands' column matrix:
PP-LCNet's 3 -> 16 3x3 stride-2 stem at 224 176 -> 135 us, MobileNetV2's
3 -> 32 298 -> 247, ResNet-50's 3 -> 64 7x7 2.72 -> 2.18 ms. In the
models, two threads (bench/profile_cpu.py):
ResNet-50's stem 1.46 -> 1.17 ms, MobileNetV2's 201 -> 176 us, PP-LCNet's
116 -> 105 (onnxruntime's 101); the image comes from memory there.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numba
import numpy as np

from runtime.gemm.family import Isa
from runtime.gemm.microkernel import call_kernel, compile_module
from runtime.gemm.microkernel_epilogue import Writer
from runtime.gemm.microkernel_ir import _declarations, _Tile, kernel_text, row_step, tile_body
from runtime.gemm.pack import KC_MAX
from runtime.jit import jit
from runtime.parallel import drives
from runtime.pool_protocol import team_enter, team_leave, team_next
from runtime.unlinked import call_unlinked

_u = numba.uint64
_NO_PAIRS = np.zeros(0, np.uint64)

TILES = 3
"""Widths of a module's kernels: 1 to this many of the family's vectors."""


@dataclass(frozen=True)
class RowTile(_Tile):
    """A float GEMM tile whose B row ``k`` is the input at ``%x`` plus
    ``offsets[k]`` (``pb`` walks the offsets, 4 bytes a step)."""

    @property
    def name(self) -> str:
        return f"tessera_rows_{self.mr}x{self.width}"

    def step(self, w: Writer, acc: list[list[str]], pa: str, pb: str, k: int) -> list[list[str]]:
        def b_row(w: Writer) -> str:
            at, off, wide, row = w.fresh("po"), w.fresh("off"), w.fresh("off64"), w.fresh("xrow")
            w.emit(f"{at} = getelementptr inbounds i32, ptr {pb}, i64 {k}")
            w.emit(f"{off} = load i32, ptr {at}, align 4")
            w.emit(f"{wide} = sext i32 {off} to i64")
            w.emit(f"{row} = getelementptr inbounds float, ptr %x, i64 {wide}")
            return row
        return row_step(w, self, acc, pa, k, b_row)


def _function(t: RowTile) -> str:
    """IR of one kernel, with the GEMM kernels' arguments (so that
    runtime.gemm.microkernel.call_kernel calls it) but B's: ``x`` the
    tile's base in the band's copy, ``offsets`` the address of the int32
    offsets (where the GEMM's has B's row stride). The ``kc`` steps of one
    packed A panel times the tile's positions, B's row ``k`` at ``x +
    offsets[k]``, then the GEMM tile's epilogue on ``rows`` rows and
    ``cols`` columns of ``c``."""
    w = Writer()
    w.label("entry")
    w.emit("%offsets = inttoptr i64 %offsets_at to ptr")
    for k in range(1, t.unroll + 1):  # the offsets pointer steps as B's rows did: by ``%ldb{k}`` 4-byte entries
        w.emit(f"%ldb{k} = add i64 0, {k}")
    return kernel_text(t.name, tile_body(w, t, "%offsets"), "%x", "%offsets_at")


def _tiles(isa: Isa) -> list[RowTile]:
    """Kernel ``i``: ``mr`` rows x ``i + 1`` vectors of the family's width."""
    return [RowTile("f32", isa.mr, isa.vectors((i + 1) * isa.vw)) for i in range(TILES)]


def rows_ir(isa: Isa) -> str:
    """LLVM IR of the module of ``isa``'s row kernels."""
    return (f"; Tessera row-read convolution kernels ({isa.name})\n"
            "declare void @llvm.prefetch.p0(ptr, i32, i32, i32)\n"
            + "".join(_declarations("f32", lanes, False) for lanes in sorted({isa.mr, isa.vw})) + "\n"
            + "\n".join(_function(t) for t in _tiles(isa)))


_engines: dict[Isa, tuple[object, np.ndarray]] = {}
_lock = threading.Lock()


def row_kernels(isa: Isa) -> np.ndarray:
    """Entry points of ``isa``'s row kernels (:func:`_tiles`' order), compiled on first use."""
    with _lock:
        if isa not in _engines:
            _engines[isa] = compile_module(f"rows-{isa.name}", rows_ir(isa), [t.name for t in _tiles(isa)], isa)
        return _engines[isa][1]


def rows_fit(chans: int, geo: tuple) -> bool:
    """Whether the row kernels take a 2-D convolution of ``chans`` input
    channels (a group's) with this window (runtime.kernels.nn_window's
    loop parameters): a reduction C kh kw of one block (at most
    ``KC_MAX``, so one block of any packing of it), the strides equal, 1
    or 2, the dilations 1."""
    kh, kw, sh, sw = geo[1], geo[2], geo[4], geo[5]
    return (geo[0] == 1 and geo[3] == 1 and sh == sw and sh in (1, 2) and geo[12] == 1 and geo[13] == 1
            and geo[14] == 1 and chans * kh * kw <= KC_MAX)


def kernels_for(chans: int, geo: tuple, packed) -> np.ndarray | None:
    """The row kernels of a 2-D convolution by bands of ``chans`` input
    channels with this window and these packed float32 weights (G
    matrices: G groups), or None where it keeps the column matrix
    (:func:`rows_fit` a group's channels; the reduction one block of the
    packing too), which groups cannot (:func:`run_row_bands` alone takes
    them)."""
    chans //= packed.batch
    if not (packed.dtype == np.float32 and rows_fit(chans, geo) and chans * geo[1] * geo[2] <= packed.kc):
        if packed.batch > 1:
            raise ValueError("a grouped convolution runs by bands only where the row kernels take its groups")
        return None
    return row_kernels(packed.isa)


@jit(inline="always")
def band_layout(kh, kw, stride, band, out_w, widest):
    """(rows, columns, columns written) of one phase plane of a band's
    copy: the band's output rows plus the taps' reach below them; the
    output columns rounded up to whole tiles of ``widest`` plus the taps'
    reach to the right, so that a tile's vectors never read past the copy
    (the columns past those written are zeroed once: never a stray
    denormal or NaN in a lane that no store keeps)."""
    reach = (kw - 1) // stride
    return band + (kh - 1) // stride, (out_w + widest - 1) // widest * widest + reach, out_w + reach


@jit
def tap_offsets(chans, kh, kw, stride, rows, cols):
    """B's row ``k = (c, ky, kx)`` in a band's copy: where the input of
    output (0, 0) at that tap lies (:func:`band_layout`)."""
    offsets = np.empty(chans * kh * kw, np.int32)
    k = 0
    for c in range(chans):
        for ky in range(kh):
            for kx in range(kw):
                phase = (c * stride + ky % stride) * stride + kx % stride
                offsets[k] = (phase * rows + ky // stride) * cols + kx // stride
                k += 1
    return offsets


@jit
def copy_band(x, copy, top, pad_top, pad_left, stride, rows, cols, written):
    """The band's input as its phase planes (:func:`band_layout`) in
    ``copy``: phase (py, px) of channel ``c``, row ``i``, column ``j`` holds
    the padded input at ((top + i) stride + py, j stride + px), i.e. the
    input there less the pads (zero outside it); columns from ``written``
    on are left as they are (zero)."""
    chans, _, height, width = x.shape
    src, words = x.reshape(-1), copy.view(np.uint32)
    paired = stride == 2 and width % 2 == 0  # rows of whole pairs
    pairs = src.view(np.uint64) if paired else _NO_PAIRS
    spans = np.empty((stride, 2), np.int64)  # per column phase: the columns j whose input lies in the row
    for px in range(stride):
        j0 = min(max(-((px - pad_left) // stride), 0), written)
        spans[px, 0], spans[px, 1] = j0, max(min((width - 1 - px + pad_left) // stride + 1, written), j0)
    for c in range(chans):
        for py in range(stride):
            for i in range(rows):
                y = (top + i) * stride + py - pad_top
                inside = 0 <= y < height
                plane = ((c * stride + py) * stride) * rows + i
                for px in range(stride):
                    at = _u((plane + px * rows) * cols)
                    j0, j1 = (spans[px, 0], spans[px, 1]) if inside else (written, written)
                    for j in range(_u(j0)):
                        copy[at + j] = 0.0
                    for j in range(_u(j1), _u(written)):
                        copy[at + j] = 0.0
                if not inside:
                    continue
                row = (c * height + y) * width
                if paired:  # each 8-byte pair of the row: its low float to one phase, its high one to the other
                    lo, hi = _u((plane + (pad_left % 2) * rows) * cols), _u((plane + (1 - pad_left % 2) * rows) * cols)
                    lo_at, hi_at = lo + _u(pad_left // 2), hi + _u((pad_left + 1) // 2)
                    count = min(width // 2, written - (pad_left + 1) // 2)
                    last = min(width // 2, written - pad_left // 2)
                    first = _u(row // 2)
                    for m in range(_u(count)):
                        pair = pairs[first + m]
                        words[lo_at + m] = numba.uint32(pair & 0xFFFFFFFF)
                        words[hi_at + m] = numba.uint32(pair >> 32)
                    for m in range(_u(count), _u(last)):
                        words[lo_at + m] = numba.uint32(pairs[first + m] & 0xFFFFFFFF)
                    continue
                for px in range(stride):
                    j0, j1 = spans[px, 0], spans[px, 1]
                    if j1 <= j0:
                        continue
                    to = _u((plane + px * rows) * cols + j0)
                    first = _u(row + j0 * stride + px - pad_left)  # input of column j0
                    for j in range(_u(j1 - j0)):
                        copy[to + j] = src[first + j * _u(stride)]


@jit
def run_row_bands(start, stop, x, geo, band, out_h, out_w, kernels, a, mr, vw, bias, out, res, clamp, flags,
                  groups):
    """Tasks [start, stop) of one image, X (C, 1, H, W), of ``groups``
    groups: task ``t`` is band ``t mod B`` of output rows (B bands) of group
    ``t div B``, as runtime.kernels.nn_im2col.run_bands computes a band:
    the band's copy of the group's channels (:func:`copy_band`), then per
    row panel of the group's packed weights (G matrices one after another
    in ``a``, ``mr`` rows a panel), output row and tile of columns (``vw``
    lanes a vector), one row kernel into the group's rows of ``out`` (M,
    OH*OW), with the epilogue (``flags``: bias, residual, clamp given)."""
    chans = x.shape[0] // groups
    kh, kw, stride, pad_top, pad_left = geo[1], geo[2], geo[4], geo[7], geo[8]
    m, depth, size = out.shape[0] // groups, chans * kh * kw, out_h * out_w
    panels, bands = (m + mr - 1) // mr, (out_h + band - 1) // band
    widest = kernels.shape[0] * vw
    rows, cols, written = band_layout(kh, kw, stride, band, out_w, widest)
    copy = np.empty(chans * stride * stride * rows * cols, np.float32)
    for line in range(chans * stride * stride * rows):  # the columns no band writes: zeros a tile may read
        copy[line * cols + written:(line + 1) * cols] = 0.0
    offsets = tap_offsets(chans, kh, kw, stride, rows, cols)
    bias_at = bias.ctypes.data if flags[0] else 0
    res_at = res.ctypes.data if flags[1] else 0
    clamp_at = clamp.ctypes.data if flags[2] else 0
    for t in range(start, min(stop, groups * bands)):
        group, top = t // bands, t % bands * band
        copy_band(x[group * chans:(group + 1) * chans], copy, top, pad_top, pad_left, stride, rows, cols, written)
        weights = a.ctypes.data + 4 * group * panels * mr * depth
        for panel in range(panels):
            first = group * m + panel * mr
            for r in range(min(band, out_h - top)):
                row = (top + r) * out_w + first * size
                for ox in range(0, out_w, widest):
                    n = min(widest, out_w - ox)
                    at = 4 * (row + ox)
                    call_kernel(kernels[(n + vw - 1) // vw - 1], depth, weights + 4 * panel * mr * depth,
                                copy.ctypes.data + 4 * (r * cols + ox), offsets.ctypes.data, out.ctypes.data + at,
                                size, min(mr, (group + 1) * m - first), n, 0, bias_at + 4 * first if flags[0] else 0,
                                res_at + at if flags[1] else 0, size, clamp_at)


@drives(run_row_bands)
@jit
def _row_bands_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(run_row_bands, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)
