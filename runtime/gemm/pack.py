"""Packing GEMM operands into the panel layouts the microkernels read.

Layouts are counted in 4-byte elements ("lanes"): a float, or for int8 four
consecutive ``k`` of one row (A) or one column (B), so both kinds share the
driver. A reduction step is one ``k`` for float, four for int8; a product of
depth ``K`` has ``steps = K`` or ``ceil(K / 4)`` of them, split into blocks of
``kc`` steps (the last block may be shorter, ``kcp`` steps).

* Left operand ``A`` (``m x K``): a block is a run of panels of ``mr`` rows,
  panel ``i`` holding ``kcp`` groups of ``mr`` lanes (one step of the panel
  each). Block ``p`` starts at ``p * kc * mpad`` lanes, ``mpad = roundup(m,
  mr)``; a batch item spans ``steps * mpad`` lanes.
* Right operand ``B`` (``K x n``): a block is a run of panels of ``nr``
  columns, but for the last one (:func:`panel_width`: a last ``nr`` and up
  to ``Isa.wide_tail`` columns in one panel, or a rest under ``nr``
  rounded up to a multiple of ``unit`` (8)); the panel at
  column ``j0`` starts ``j0 * kcp`` lanes into its block and holds ``kcp``
  rows of its width. Block ``p`` starts at ``p * kc * npad``,
  ``npad = roundup(n, unit)``.

Padding (rows past ``m``, columns past ``n``, ``k`` past ``K``) is zero, so
it adds nothing to the products the kernels store. Int8 B is stored as
unsigned bytes ``b + shift`` (shift 128 for int8 input, 0 for uint8), the
form ``vpdpbusd`` multiplies; :func:`pack_weights` keeps the row sums of an
int8 A so the caller can take ``shift * rowsum`` back out.

Sources are read through a flat 1-D view and element strides (``rs`` between
rows, ``cs`` between columns, ``bs`` between batch items), so one compiled
signature serves C-ordered, transposed and sliced arrays alike. Every size
is validated in Python (:mod:`runtime.gemm.sgemm`) before a packer runs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from runtime import parallel
from runtime.errors import KernelError
from runtime.gemm.family import UNIT, Isa, host_isa, narrow_isa
from runtime.jit import jit
from runtime.parallel import drives
from runtime.pool_protocol import team_enter, team_leave, team_next
from runtime.unlinked import call_unlinked

LINE = 16
"""Lanes per 64-byte cache line: the row stride of a wide B panel is a multiple."""

KC_MAX = 256
"""Largest reduction block, in steps: a ``kc x nr`` B panel and an
``mr x kc`` A panel stay in L1/L2 while the microkernel streams them."""

MAX_INT8_DEPTH = 1 << 16
"""Deepest int8 product: every u8 x s8 sum must fit in int32."""

_u = numba.uint64

SERIAL_PACK_BYTES = 1 << 21
"""int8 operands smaller than this are packed on the calling thread: the
copy is bound by memory, and below this size the pool's hand-off (~30 us)
costs more than a second thread gains (measured: a 0.9 MB B operand packs
in 89 us on one thread, 147 us on two)."""
"""Indices into the flat views are unsigned (every one is non-negative by
construction): with signed ones Numba checks each for wraparound, which
blocks vectorising the copies."""


def split_columns(isa: Isa, kind: str) -> int:
    """How many columns a last panel may hold (1 to this) and go to a
    remainder kernel, for ``isa``'s ``kind`` kernels (a plan's ``split``):
    ``isa.remainder_cols`` where remainder kernels exist, else 0."""
    return isa.remainder_cols if kind == "f32" and isa.remainder_panels else 0


def tail_columns(isa: Isa, kind: str) -> int:
    """The ``tail`` of :func:`panel_width` for ``isa``'s ``kind`` kernels:
    how many columns past ``nr`` a wide last panel may carry. (B packed in
    advance, by :func:`pack_weights`, has none: its layout keeps ``npad``
    lanes per row of a block.)"""
    return isa.wide_tail if split_columns(isa, kind) else 0


def roundup(value: int, step: int) -> int:
    return -(-value // step) * step


def block_depth(steps: int) -> int:
    """The ``kc`` for a reduction of ``steps``: blocks of at most ``KC_MAX``,
    near-equal (a multiple of 8), so no block is a sliver."""
    blocks = -(-steps // KC_MAX)
    return roundup(-(-steps // blocks), 8)


def reduction_steps(depth: int, dtype: np.dtype) -> int:
    """Steps of a product of depth ``depth``: one per ``k`` for float32,
    one per four ``k`` for int8."""
    return depth if dtype == np.float32 else -(-depth // 4)


def flat_view(x: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """A read-only 1-D view of ``x``'s elements and their strides in
    elements, so one compiled signature reads any layout; arrays with
    negative or odd strides are copied first."""
    size = x.itemsize
    if x.flags.c_contiguous:
        flat = x.reshape(-1).view()
    else:
        if any(s < 0 or s % size for s in x.strides):
            x = np.ascontiguousarray(x)
        span = 1 + sum((d - 1) * s // size for d, s in zip(x.shape, x.strides))
        flat = np.lib.stride_tricks.as_strided(x, shape=(span,), strides=(size,))
    flat.flags.writeable = False
    return flat, tuple(s // size for s in x.strides)


# ---------------------------------------------------------------- float32
@jit
def pack_a_block(src, base, rs, cs, rows, panel0, panel1, k0, kcp, mr, dst, out):
    """Pack panels ``[panel0, panel1)`` of ``A[:, k0:k0+kcp]`` (element
    ``(r, k)`` at ``src[base + r*rs + k*cs]``, ``rows`` rows) into
    ``dst[out:]`` as laid out for a block; rows past ``rows`` are zeros."""
    for panel in range(panel0, panel1):
        first = panel * mr
        valid = min(mr, rows - first)
        head = out + panel * kcp * mr
        for k in range(kcp):
            at = _u(base + first * rs + (k0 + k) * cs)
            dk = _u(head + k * mr)
            for r in range(_u(valid)):
                dst[dk + r] = src[at + r * _u(rs)]
            for r in range(_u(valid), _u(mr)):
                dst[dk + r] = 0.0


@jit
def pack_a_panels(start, stop, src, rs, cs, bs, rows, depth, kc, mr, dst):
    """Pack row panels ``[start, stop)`` of the left operand, counted across
    the batch (panel ``p`` is panel ``p % panels`` of item ``p // panels``),
    through every ``kc`` block (``parallel_for`` body)."""
    panels = (rows + mr - 1) // mr
    mpad = panels * mr
    for index in range(start, stop):
        item, panel = index // panels, index % panels
        for k0 in range(0, depth, kc):
            kcp = min(kc, depth - k0)
            pack_a_block(src, item * bs, rs, cs, rows, panel, panel + 1, k0, kcp, mr, dst,
                         item * depth * mpad + k0 * mpad)


@jit(inline="always")
def panel_width(col, cols, nr, unit, tail, split=0):
    """Width of the B panel starting at ``col`` of ``cols``: ``nr``; but
    when the rest is ``nr`` and 1 to ``tail`` columns, one panel for a wide
    kernel, its rows padded to whole cache lines (:data:`LINE`; 49 columns
    take 64, so that no vector load of a row straddles two lines); for a
    rest under ``nr``, the next multiple of ``unit`` up: one panel, so that
    the kernels stream A once for it (a rest of 1 to ``Isa.remainder_cols``
    columns is a ``unit``-wide panel, which the remainder kernels take);
    with ``split`` (:func:`runtime.gemm.sgemm.rest_split`), a rest of
    more than ``unit`` and at most ``split`` past a multiple of it is that
    multiple, its last columns a panel for the remainder kernels. Until
    2026-11 a rest of 9 to 11 or 17 to 19 columns was always split into a
    multiple of ``unit`` and a panel of the last 1 to 3 columns for the
    remainder kernels: two passes over A, where one padded panel is one.
    On Zen 3 (2 threads, best of alternating processes) that made N = 9 (a
    3 x 3 plane) slower by 5-25 %: (320, 960, 9) 217 against 246 us,
    (2048, 512, 9) 409 -> 471 us; MobileNetV2 at 96 x 96, Run_th, paired in
    one process: 0.91 of the split's time."""
    rest = cols - col
    if rest >= nr:
        return nr if rest == nr or rest - nr > tail else (rest + LINE - 1) // LINE * LINE
    if split and rest > unit and rest % unit <= split:
        return rest // unit * unit
    return (rest + unit - 1) // unit * unit


@jit
def pack_b_block(src, base, rs, cs, k0, kcp, n0, n1, nr, unit, tail, dst, out, split=0):
    """Pack ``B[k0:k0+kcp, n0:n1]`` (element ``(k, j)`` at
    ``src[base + k*rs + j*cs]``) into panels (:func:`panel_width`) at
    ``dst[out:]``; ``n0`` is the first column of a panel (a multiple of nr)
    and ``n1`` the end of the matrix or a multiple of nr. Columns past ``n1``
    are zeros up to the panel's width."""
    j0 = n0
    while j0 < n1:
        width = panel_width(j0, n1, nr, unit, tail, split)
        valid = min(width, n1 - j0)
        head = out + (j0 - n0) * kcp
        for k in range(kcp):
            at = _u(base + (k0 + k) * rs + j0 * cs)
            dk = _u(head + k * width)
            if cs == 1:
                for j in range(_u(valid)):
                    dst[dk + j] = src[at + j]
            else:
                for j in range(_u(valid)):
                    dst[dk + j] = src[at + j * _u(cs)]
            for j in range(_u(valid), _u(width)):
                dst[dk + j] = 0.0
        j0 += width


@jit
def pack_b_items(start, stop, src, rs, cs, bs, depth, cols, kc, nr, unit, tail, dst):
    """Pack batch items ``[start, stop)`` of the right operand, whole
    (``parallel_for`` body)."""
    npad = (cols + unit - 1) // unit * unit
    for item in range(start, stop):
        for k0 in range(0, depth, kc):
            kcp = min(kc, depth - k0)
            pack_b_block(src, item * bs, rs, cs, k0, kcp, 0, cols, nr, unit, tail, dst,
                         item * depth * npad + k0 * npad)


# ---------------------------------------------------------------- int8
@jit
def pack_a_int8(start, stop, src, rs, cs, bs, rows, depth, kc, mr, dst, sums):
    """Pack row panels ``[start, stop)`` (counted across the batch) of an
    int8 left operand into ``dst`` (bytes, four ``k`` per lane) and store
    each row's sum in ``sums[item * mpad + row]`` (``parallel_for`` body)."""
    steps = (depth + 3) // 4
    panels = (rows + mr - 1) // mr
    mpad = panels * mr
    for index in range(start, stop):
        item, panel = index // panels, index % panels
        for r in range(mr):
            row = panel * mr + r
            total = 0
            for g0 in range(0, steps, kc):
                kcp = min(kc, steps - g0)
                lane0 = item * steps * mpad + g0 * mpad + panel * kcp * mr + r
                for g in range(kcp):
                    at = _u(4 * (lane0 + g * mr))
                    for t in range(4):
                        k = 4 * (g0 + g) + t
                        value = 0
                        if row < rows and k < depth:
                            value = src[_u(item * bs + row * rs + k * cs)]
                        dst[at + t] = value
                        total += value
            sums[item * mpad + row] = total


@jit
def split_a_lanes(start, stop, src, mr, dst):
    """Packed int8 A lanes ``start .. stop`` of ``src`` (their bytes: four
    signed bytes of ``k`` .. ``k + 3`` a lane, ``mr`` lanes a step) as the
    kernels without VNNI read them (:attr:`runtime.gemm.family.Isa.a_words`):
    each step's ``mr`` lanes become ``2 mr``, first the even pairs (bytes k
    and k + 2 as two sign-extended 16-bit halves), then the odd ones (k + 1,
    k + 3); lane ``L`` of row ``r = L % mr`` goes to ``2 L - r`` and
    ``2 L - r + mr`` of ``dst`` (``parallel_for`` body)."""
    for lane in range(start, stop):
        at, q = _u(2 * lane - lane % mr), _u(4 * lane)
        dst[at] = _pair(src[q], src[q + _u(2)])
        dst[at + _u(mr)] = _pair(src[q + _u(1)], src[q + _u(3)])


@jit(inline="always")
def _pair(low, high):
    """Two int8 values as the 16-bit halves of one word."""
    return np.uint32(np.uint16(np.int16(low))) | (np.uint32(np.uint16(np.int16(high))) << np.uint32(16))


@jit
def pack_b_int8(start, stop, src, rs, cs, bs, depth, cols, kc, nr, unit, flip, dst):
    """Pack column panels ``[start, stop)`` (counted across the batch) of a
    right operand given as bytes ``src`` into ``dst`` (bytes ``b ^ flip``,
    four ``k`` per lane; zeros in the padding) through every ``kc`` block
    (``parallel_for`` body). ``flip`` 128 turns int8 bit patterns into
    ``b + 128``."""
    steps = (depth + 3) // 4
    panels = (cols + nr - 1) // nr
    npad = (cols + unit - 1) // unit * unit
    for index in range(start, stop):
        item, j0 = index // panels, index % panels * nr
        width = panel_width(j0, cols, nr, unit, 0)
        valid = min(width, cols - j0)
        for g0 in range(0, steps, kc):
            kcp = min(kc, steps - g0)
            lane0 = item * steps * npad + g0 * npad + j0 * kcp
            for g in range(kcp):
                k = 4 * (g0 + g)
                at = _u(4 * (lane0 + g * width))
                first = _u(item * bs + k * rs + j0 * cs)
                if k + 4 <= depth:
                    _interleave4(src, first, _u(rs), _u(cs), valid, flip, dst, at)
                else:
                    for c in range(valid):
                        for t in range(4):
                            value = 0
                            if k + t < depth:
                                value = src[first + _u(t * rs + c * cs)] ^ flip
                            dst[at + _u(4 * c + t)] = value
                for c in range(_u(4 * valid), _u(4 * width)):
                    dst[at + c] = 0


@jit
def pack_a_words(start, stop, src, src8, rs, bs, rows, steps, kc, mr, dst, sums):
    """``pack_a_int8`` for an operand whose rows are contiguous and whole
    4-byte words (``src``: its uint32 words, ``src8`` its bytes; ``rs``,
    ``bs`` in words): a lane is a word, so each is copied whole; the row
    sums are separate loops over the bytes (they vectorise)."""
    panels = (rows + mr - 1) // mr
    mpad = panels * mr
    for index in range(start, stop):
        item, panel = index // panels, index % panels
        for r in range(mr):
            row = panel * mr + r
            first = item * bs + row * rs
            total = np.int32(0)
            if row < rows:
                line = src8[_u(4 * first):_u(4 * (first + steps))]
                for t in range(_u(4 * steps)):
                    total += np.int32(line[t])
            sums[item * mpad + row] = total
            for g0 in range(0, steps, kc):
                kcp = min(kc, steps - g0)
                lane0 = _u(item * steps * mpad + g0 * mpad + panel * kcp * mr + r)
                if row < rows:
                    words = src[_u(first + g0):_u(first + g0 + kcp)]
                    for g in range(_u(kcp)):
                        dst[lane0 + g * _u(mr)] = words[g]
                else:
                    for g in range(_u(kcp)):
                        dst[lane0 + g * _u(mr)] = 0


@jit
def pack_b_words(start, stop, src, cs, bs, steps, cols, kc, nr, unit, flip, dst):
    """``pack_b_int8`` for an operand whose columns are contiguous and whole
    4-byte words (``src``: its uint32 words; ``cs``, ``bs`` in words; the
    transpose of a row-major [N][K], such as im2col patches): a lane is
    one word of a column, ``^ flip`` (0x80808080 turns four int8 bit
    patterns into ``b + 128``)."""
    panels = (cols + nr - 1) // nr
    npad = (cols + unit - 1) // unit * unit
    for index in range(start, stop):
        item, j0 = index // panels, index % panels * nr
        width = panel_width(j0, cols, nr, unit, 0)
        valid = min(width, cols - j0)
        for g0 in range(0, steps, kc):
            kcp = min(kc, steps - g0)
            lane0 = _u(item * steps * npad + g0 * npad + j0 * kcp)
            for c in range(_u(valid)):
                first = _u(item * bs + (j0 + c) * cs + g0)
                words = src[first:first + _u(kcp)]
                for g in range(_u(kcp)):
                    dst[lane0 + g * _u(width) + c] = words[g] ^ flip
            for g in range(_u(kcp)):
                for c in range(_u(valid), _u(width)):
                    dst[lane0 + g * _u(width) + c] = 0


@jit(inline="always")
def _interleave4(src, first, rs, cs, count, flip, dst, at):
    """``dst[at + 4c + t] = src[first + t*rs + c*cs] ^ flip`` for
    ``c < count``, ``t < 4``: four B rows woven into lanes."""
    if cs == 1:
        for c in range(_u(count)):
            d = at + _u(4) * c
            dst[d] = src[first + c] ^ flip
            dst[d + _u(1)] = src[first + rs + c] ^ flip
            dst[d + _u(2)] = src[first + _u(2) * rs + c] ^ flip
            dst[d + _u(3)] = src[first + _u(3) * rs + c] ^ flip
    else:
        for c in range(_u(count)):
            d, s = at + _u(4) * c, first + c * cs
            dst[d] = src[s] ^ flip
            dst[d + _u(1)] = src[s + rs] ^ flip
            dst[d + _u(2)] = src[s + _u(2) * rs] ^ flip
            dst[d + _u(3)] = src[s + _u(3) * rs] ^ flip


# ---------------------------------------------------------------- packed weights
@dataclass(frozen=True, eq=False)
class PackedMatrix:
    """A constant GEMM operand packed once for many products.

    ``side`` is "left" (``A`` of ``A @ B``) or "right"; ``shape`` and
    ``dtype`` are the original array's ((rows, cols) or (batch, rows, cols));
    ``data`` (read-only) is laid out for ``isa`` with reduction blocks of
    ``kc`` steps. An int8 left operand also keeps its row sums (int64,
    ``(batch, mpad)``)."""

    side: str
    shape: tuple
    dtype: np.dtype
    kc: int
    isa: Isa
    data: np.ndarray
    row_sums: np.ndarray | None = None

    @property
    def batch(self) -> int:
        return self.shape[0] if len(self.shape) == 3 else 1

    @property
    def matrix(self) -> tuple[int, int]:
        return self.shape[-2], self.shape[-1]

    @property
    def nbytes(self) -> int:
        return self.data.nbytes

    def expected_lanes(self) -> int:
        """Lanes a packing of this shape and ISA holds."""
        rows, cols = self.matrix
        if self.side == "left":
            words = self.isa.a_words if self.dtype == np.int8 else 1
            return self.batch * reduction_steps(cols, self.dtype) * roundup(rows, self.isa.mr) * words
        return self.batch * reduction_steps(rows, self.dtype) * roundup(cols, UNIT)


def pack_weights(w: np.ndarray, side: str = "left", narrow: bool = False) -> PackedMatrix:
    """Pack a constant operand (2-D, or 3-D for a batch of matrices) for
    :func:`~runtime.gemm.sgemm.sgemm` (float32, either side) or
    :func:`~runtime.gemm.igemm.igemm` (int8, left side). The packed form is
    a copy: later changes to ``w`` do not reach it. Caching packed forms per
    weight array is the caller's job (a conv kernel keeps one per weight).
    ``narrow``: a float32 left operand for products of at most
    ``NARROW_COLUMNS`` columns, packed for this CPU's
    :func:`~runtime.gemm.family.narrow_isa` where it has one (the products
    then run its kernels, with the same results)."""
    if not isinstance(w, np.ndarray) or w.dtype not in (np.float32, np.int8):
        raise KernelError(f"pack_weights: weights must be a float32 or int8 array, got "
                          f"{getattr(w, 'dtype', type(w).__name__)}")
    if w.ndim not in (2, 3) or 0 in w.shape:
        raise KernelError(f"pack_weights: weights must be a non-empty 2-D or 3-D array, got shape {list(w.shape)}")
    if side not in ("left", "right") or (w.dtype == np.int8 and side != "left"):
        raise KernelError(f"pack_weights: side must be 'left' or 'right' (int8: 'left'), got {side!r}")
    if w.dtype == np.int8 and w.shape[-1] > MAX_INT8_DEPTH:
        raise KernelError(f"pack_weights: int8 depth {w.shape[-1]} exceeds {MAX_INT8_DEPTH}")
    isa = host_isa()
    if narrow and side == "left" and w.dtype == np.float32:
        isa = narrow_isa(isa) or isa
    stack = w if w.ndim == 3 else w[None]
    batch, rows, cols = stack.shape
    flat, strides = flat_view(stack)
    sums = None
    if side == "right":
        kc = block_depth(rows)
        data = np.empty(batch * rows * roundup(cols, UNIT), np.float32)
        parallel.parallel_for(pack_b_items, batch, flat, strides[1], strides[2], strides[0], rows, cols, kc,
                              isa.nr, UNIT, 0, data)
    elif w.dtype == np.float32:
        kc = block_depth(cols)
        data = pack_left(flat, strides, batch, rows, cols, kc, isa)
    else:
        kc = block_depth(reduction_steps(cols, w.dtype))
        data, sums = pack_left_int8(flat, strides, batch, rows, cols, kc, isa)
        sums.flags.writeable = False
    data.flags.writeable = False
    return PackedMatrix(side, tuple(w.shape), w.dtype, kc, isa, data, sums)


def pack_left(flat, strides, batch: int, rows: int, depth: int, kc: int, isa: Isa, serial: bool = False) -> np.ndarray:
    """Pack a float32 left operand (``batch`` matrices ``rows x depth``), in
    parallel over its row panels, or on the caller where ``serial`` (a
    product too small for the pool: handing a 32 x 32 packing to it cost
    more than packing)."""
    bs, rs, cs = strides
    panels = -(-rows // isa.mr)
    data = np.empty(batch * depth * panels * isa.mr, np.float32)
    args = (flat, rs, cs, bs, rows, depth, kc, isa.mr, data)
    if serial:
        pack_a_panels(0, batch * panels, *args)
    else:
        parallel.parallel_for(pack_a_panels, batch * panels, *args)
    return data


def pack_left_int8(flat, strides, batch: int, rows: int, depth: int, kc: int, isa: Isa):
    """Pack an int8 left operand; returns the packed lanes (as float32, only
    ever read by the kernels; split into 16-bit pairs where the kernels
    want them, ``Isa.a_words``) and the row sums."""
    bs, rs, cs = strides
    panels = -(-rows // isa.mr)
    steps = reduction_steps(depth, np.dtype(np.int8))
    data = np.empty(batch * steps * panels * isa.mr, np.float32)
    sums = np.empty((batch, panels * isa.mr), np.int64)
    words = _words(flat, (bs, rs), cs, depth)
    if words is not None:
        _pack_int8(pack_a_words, batch * panels, data.nbytes, words, flat.view(np.int8), rs // 4, bs // 4,
                   rows, steps, kc, isa.mr, data.view(np.uint32), sums.reshape(-1))
    else:
        _pack_int8(pack_a_int8, batch * panels, data.nbytes, flat, rs, cs, bs, rows, depth, kc, isa.mr,
                   data.view(np.int8), sums.reshape(-1))
    if isa.a_words == 2:
        words = data.view(np.uint32)
        data = np.empty(2 * words.size, np.float32)
        _pack_int8(split_a_lanes, words.size, data.nbytes, words.view(np.int8), isa.mr, data.view(np.uint32))
    return data, sums


def pack_right_int8(b: np.ndarray, kc: int, isa: Isa) -> np.ndarray:
    """Pack an int8 or uint8 right operand ((batch,) K x N) whole, in
    parallel over its column panels; returns the lanes as float32 (only
    ever read by the kernels)."""
    stack = b if b.ndim == 3 else b[None]
    batch, depth, cols = stack.shape
    flat, (bs, rs, cs) = flat_view(stack.view(np.uint8))
    steps = reduction_steps(depth, np.dtype(np.int8))
    data = np.empty(batch * steps * roundup(cols, UNIT), np.float32)
    words = _words(flat, (bs, cs), rs, depth)
    tasks = batch * -(-cols // isa.nr)
    if words is not None:
        flip = np.uint32(0x80808080 if b.dtype == np.int8 else 0)
        _pack_int8(pack_b_words, tasks, data.nbytes, words, cs // 4, bs // 4, steps, cols, kc, isa.nr, UNIT,
                   flip, data.view(np.uint32))
    else:
        flip = np.uint8(128 if b.dtype == np.int8 else 0)
        _pack_int8(pack_b_int8, tasks, data.nbytes, flat, rs, cs, bs, depth, cols, kc, isa.nr, UNIT, flip,
                   data.view(np.uint8))
    return data


def _pack_int8(fn, tasks: int, nbytes: int, *args) -> None:
    """``fn(0, tasks, *args)`` on this thread for a small operand
    (``SERIAL_PACK_BYTES``), over the pool otherwise."""
    if nbytes < SERIAL_PACK_BYTES:
        fn(0, tasks, *args)
    else:
        parallel.parallel_for(fn, tasks, *args)


def _words(flat: np.ndarray, outer: tuple, inner: int, depth: int) -> np.ndarray | None:
    """``flat`` (bytes) as uint32 words when the reduction runs along
    contiguous bytes (``inner`` 1) in whole words (``depth`` and the
    ``outer`` strides multiples of 4, ``flat`` 4-byte aligned), so packing
    moves a lane as one word; None otherwise."""
    if inner != 1 or depth % 4 or any(s % 4 for s in outer) or flat.ctypes.data % 4 or flat.size % 4:
        return None
    return flat.view(np.uint32)


def check_packed(name: str, packed, side: str, batched: bool, dtype) -> PackedMatrix:
    """``packed`` if it is a sound packing of the expected side, dtype and
    rank for this process's kernels; KernelError otherwise."""
    if not isinstance(packed, PackedMatrix) or packed.side != side or packed.dtype != dtype:
        raise KernelError(f"{name} must be a PackedMatrix of {np.dtype(dtype).name} packed with side={side!r}")
    if packed.isa != host_isa() and (packed.isa != narrow_isa(host_isa()) or side != "left"
                                     or packed.dtype != np.float32):
        raise KernelError(f"{name} was packed for {packed.isa.name}, this process uses {host_isa().name}")
    if len(packed.shape) != (3 if batched else 2):
        raise KernelError(f"{name} holds shape {list(packed.shape)}, "
                          f"expected {'a batch of matrices' if batched else 'a single matrix'}")
    data = packed.data
    depth = packed.matrix[1] if side == "left" else packed.matrix[0]
    sound = (isinstance(data, np.ndarray) and data.dtype == np.float32 and data.ndim == 1
             and data.flags.c_contiguous and data.size == packed.expected_lanes()
             and packed.kc == block_depth(reduction_steps(depth, packed.dtype)))
    if sound and packed.dtype == np.int8:
        sums = packed.row_sums
        sound = (isinstance(sums, np.ndarray) and sums.dtype == np.int64
                 and sums.shape == (packed.batch, roundup(packed.matrix[0], packed.isa.mr)))
    if not sound:
        raise KernelError(f"{name} is corrupt: its data does not match its shape {list(packed.shape)}")
    return packed


# ---------------------------------------------------------------- team drivers (runtime.parallel)
@drives(pack_a_panels)
@jit
def pack_a_panels_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(pack_a_panels, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)


@drives(pack_b_items)
@jit
def pack_b_items_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(pack_b_items, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)
