"""Dense 8-bit CONVs on Tessera's int8 GEMM, planned once at Init and run
from Numba (no Python per tile inside the interpreter).

The sums of a dense CONV are ``C [out_c][P] = W [out_c][R] @ X [R][P]``:
``W`` is the tile's weights as they lie in WGT (row k: channel k's
``in_c x kh x kw`` bytes, the reduction order r = (c, ky, kx)), ``X`` the
patches. Both go straight into the GEMM's packed layouts
(runtime/gemm/pack.py), with no im2col matrix in between:

* ``W`` is copied a 4-byte word at a time into the A panels
  (``pack_a_words``, which also sums each row);
* ``X`` is gathered from the tile into the B lanes (runtime/sim/patches.py,
  ``pack_patches``):
  lane (step s, pixel p) holds the bytes of reduction rows 4s..4s+3 under
  pixel p, ``+ 128`` (the kernels multiply unsigned B by signed A), read at
  ``origin[p] + offset[r]`` (``geometry``). The packed patches are kept for
  the next planned CONV: when it reads the same ACT bytes in the same
  geometry and nothing has written them since (``same_patches``: every
  instruction that writes ACT reports its bytes, ``act_written``), they are
  used again. The compiler tiles a layer's output channels as consecutive
  CONVs over one input tile kept on chip (ResNet-50: a 29x29x256 tile for
  8 CONVs of 32 channels), and packing the patches cost more than the
  products. (Until 2026-11 the tile's bytes were compared with a copy of
  the packed ones, ~3 ms of ResNet-50's Run_sw; a tile LOADed again, as
  older binaries do, is now packed again.)

The kernels add ``offset[k] = bias[k] - 128 * rowsum(W[k])`` to row k (int32,
wrapping), which takes the +128 back out; from ACC (MIDDLE, LAST) they add
the stored sums instead of the bias. Integer sums are exact in any order,
so the result equals every other CONV kernel's bit for bit (int32 modulo
2^32 like the device's accumulator).

Where every channel of a CONV that finishes takes the epilogue's 32-bit
path (8-bit outputs, no residual or table, one multiplier and a shift of
at least 33 for both signs: most of a calibrated model's CONVs), the
kernels requantise the sums in their registers on the last reduction
block and write the int8 outputs themselves (``_place``; runtime.gemm.
microkernel_epilogue's ``_requantize``, the same arithmetic): the int32
sums never go to memory and back. SqueezeNet's 1x1 expands of 16 and 32
channels spent more on the epilogue than on the products; its Run_sw
took 0.94 of the time (in-process A/B against ``KERNEL_REQUANT`` off,
Zen 4, 2 threads; MobileNetV2 at 96 x 96 0.98, ResNet-10 at 32 x 32 and
PP-LCNet within the A/B's +-2 %, PP-LCNet having no such CONV).

Each planned CONV keeps its packed weights and row sums, with a copy of the
weight bytes they came from: the next run packs them again only if WGT holds
other bytes there (compared in full, ``same_bytes``; a model's weights come
from DRAM unchanged, so every run after the first packs none). This costs
twice the planned weights in host memory and saves re-packing them on every
run (ResNet-50: ~25 MB of weights, ~5 % of the simulator's time).

``plan`` decides at Init which CONVs go this way and builds each one's GEMM
plan (:func:`runtime.gemm.sgemm._plan_template`): a single task for the
interpreter's CONVs (one thread), tasks for every thread for the large
ones, which runtime.sim.phased runs as phases on the pool. The working
buffers are allocated once, for the largest planned CONV.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from runtime import gemm
from runtime.gemm.family import UNIT, host_isa
from runtime.gemm.microkernel import kernel_addresses
from runtime.gemm.microkernel_epilogue import REQUANT_WORDS
from runtime.gemm.pack import MAX_INT8_DEPTH, pack_a_int8, pack_a_words, roundup, split_a_lanes
from runtime.gemm.sgemm import product_template
from runtime.gemm.tasks import (
    A_WORDS,
    LDR,
    PLAN_SIZE,
    REQUANT,
    TASKS,
    plan_shape,
    run_planned,
    run_task,
    set_addresses,
    task_block,
    task_buffer,
)
from runtime.isa import COL_OPCODE, Op
from runtime.jit import jit
from runtime.qscheme import high_params
from runtime.sim.conv import DENSE8, kernel_kind
from runtime.sim.epilogue import (
    C_ACC,
    C_DH,
    C_DW,
    C_HI,
    C_IN,
    C_IN_C,
    C_IN_H,
    C_IN_W,
    C_KH,
    C_KW,
    C_LO,
    C_LUT,
    C_MODE,
    C_OUT,
    C_OUT_BITS,
    C_OUT_C,
    C_OZ,
    C_PARAM,
    C_RES,
    C_SH,
    C_SW,
    C_WGT,
    RECORD_WORDS,
    epilogue_block,
    high_path,
    out_size,
)
from runtime.sim.params import check_conv_records
from runtime.sim.patches import by_words, geometry, pack_patches, pixel_words
from runtime.unlinked import call_unlinked

_u = numba.uint64

MIN_CHANNELS, MIN_PIXELS, MIN_DEPTH, MIN_MACS = 8, UNIT, 8, 1 << 17
"""Dense CONVs with at least this many output channels, pixels, reduction
depth and multiply-adds run on the GEMM (measured on one thread: a 64x64x49
1x1 tile 7.9 us against 15.8 us for the dot products; below ~10^5 MACs the
packing costs more than it saves: 32x8x16, 3.0 against 1.9 us). Short
reductions gain too: MobileNetV2's 1x1 tiles from 16 and 24 channels ran
at ~20 GMAC/s on conv8's row sums, ~30-45 on the GEMM; a first layer's
3-channel reduction (27 or 147 bytes, not whole words) is packed byte by
byte, past its end with zeros. From one tile's ``UNIT`` lanes of pixels:
the 3 x 3 maps of MobileNetV2 at 96 x 96 (its 1x1 tiles of 9 pixels and 160
to 960 channels, 16 until 2026-11, went to the dot products) ran 0.82x as
long on the GEMM (Run_sw, in-process A/B, Zen 3). Fewer pixels stay on
conv8's dot products, which read each weight byte once for four pixels (a
2 x 2 map of ResNet-10 at 32 x 32: no faster on the GEMM, whose A panels
hold the weights as 16-bit pairs, twice the bytes, without VNNI)."""

HELD, CONSTANT, CONSTANT_HELD = 1, 2, 3
"""``held[g]`` (0: nothing packed yet): the packed weights of the bytes
kept beside them, compared with the CONV's on every run; weights in DRAM's
constant bytes (a CONV runtime/sim/forward.py redirects, marked at Init),
not packed yet; packed, and held for good (nothing writes those bytes after
Init, so no compare)."""

SERIAL_PACK_WORDS = 1 << 13
"""B operands of more lanes than this are packed over the pool (a PACK
phase, runtime.sim.phased); the segment that prepares the CONV packs the
others on its one thread. (At 2^16 SqueezeNet's stem tiles, windows of
stride 2 packed pixel by pixel, took ~150 us each there and its
16 x 1815 x 128 tile 160 us, while the other thread waited. Run_sw,
in-process A/B of 2^13 against 2^16, Zen 3, 2 threads: ResNet-50 0.95,
SqueezeNet 0.95-0.96, ResNet-10 0.97, MobileNetV2 0.98, PP-LCNet 0.99,
MobileNetV2 at 96 x 96 1.02.)"""

KERNEL_REQUANT = True
"""Whether the GEMM's kernels requantise a CONV's sums in their registers
where every channel allows (``_place``), or the epilogue does, from the
sums in memory, as before 2026-11-29 (read at Init; the same bits)."""

KEY, HELD_AT, PEER = 8, 10, 14
"""Where the key of the packed patches, the ``held`` states and the other
set's key (``second_set``; an empty key when there is none) lie in
``GemmPlans.work``."""

PATCH_KEY = 14
"""Length of the key of the packed patches (``same_patches``): whether it
holds, the geometry and blocking (11), the tile's ACT byte range (2)."""


@dataclass
class GemmPlans:
    """The GEMM plans of one card run's CONVs: ``index[row]`` is the row of
    ``templates`` planned for that instruction row, or -1; ``work`` the
    buffers every planned CONV shares (a placeholder for the plan's unused
    operands, row offsets then the rows' requantisation records
    (``_place``), packed B, sums), the stores of every planned CONV's patch
    geometry computed at Init (reduction offsets, pixel
    origins, runs: ``plan_geometry``), then more shared buffers (the
    woven tile's words, the key of the patches packed in B:
    ``same_patches``), sized for the largest; then each
    planned CONV's packed weights: its offsets (rows of ``at``; its columns
    3 and 4 place the geometry) into the stores of A lanes, of the weight
    bytes they were packed from and of row sums, whether they are filled
    yet (``held``), and the three stores; ``kernels`` the u8s8
    microkernels' addresses."""

    index: np.ndarray
    templates: np.ndarray
    kernels: np.ndarray
    work: tuple
    shapes: np.ndarray
    """A row per plan (int64, for Numba): pixels, reduction steps, kc, nr,
    B's lanes, whether the sums go to ACC, whether a pooled CONV's segment
    packs its patches itself (at most ``SERIAL_PACK_WORDS`` lanes)."""


def eligible(ins: np.ndarray) -> bool:
    """Whether a CONV row runs on the GEMM: dense, 8-bit data and weights,
    a reduction no deeper than the GEMM's, accumulators at word addresses,
    big enough to gain (``MIN_*``), and a CPU with the kernels. (Weights
    that are not whole words at word addresses are packed byte by byte.)"""
    if int(ins[COL_OPCODE]) != Op.CONV or kernel_kind(ins) != DENSE8:
        return False
    m, size, depth, _ = _dims(ins)
    return (MIN_DEPTH <= depth <= MAX_INT8_DEPTH and m >= MIN_CHANNELS and size >= MIN_PIXELS
            and m * size * depth >= MIN_MACS and int(ins[C_ACC]) % 4 == 0 and gemm.available())


def _dims(ins: np.ndarray) -> tuple[int, int, int, int]:
    """(out_c, pixels, depth, steps) of a dense CONV."""
    out_h, out_w = out_size(ins)
    depth = int(ins[C_IN_C]) * int(ins[C_KH]) * int(ins[C_KW])
    return int(ins[C_OUT_C]), int(out_h * out_w), depth, -(-depth // 4)


def plan(prog: np.ndarray, large: np.ndarray) -> GemmPlans:
    """Plans for the eligible CONV rows of ``prog`` (``large``: the rows
    that run over the pool, whose products are split into tasks)."""
    isa = host_isa() if gemm.available() else None
    index = np.full(prog.shape[0], -1, np.int64)
    rows = [r for r in range(prog.shape[0]) if eligible(prog[r])]
    templates = np.zeros((len(rows), PLAN_SIZE), np.int64)
    need = dict(rows=8, b=1, c=1, xt=1)
    # offsets into the stores of A lanes, weight bytes, row sums, reduction offsets, pixel origins (and runs)
    at = np.zeros((len(rows) + 1, 5), np.int64)
    for j, r in enumerate(rows):
        m, size, depth, steps = _dims(prog[r])
        index[r] = j
        mpad, npad = roundup(m, isa.mr), roundup(size, UNIT)
        at[j + 1] = at[j] + (steps * mpad * isa.a_words, m * depth, mpad, 4 * steps, size)
        templates[j] = product_template("u8s8", (m, size, steps), (m * size * 4, size * 4, 4), mpad,
                                        int(prog[r, C_MODE]) & 1 == 1, split=bool(large[r]))
        templates[j, REQUANT] = 0 if KERNEL_REQUANT else -1  # -1: the epilogue requantises (``_place``)
        tile = int(prog[r, C_IN_C]) * int(prog[r, C_IN_H]) * int(prog[r, C_IN_W])
        for name, value in dict(rows=mpad * (1 + REQUANT_WORDS), b=steps * npad, c=m * size, xt=-(-tile // 4)).items():
            need[name] = max(need[name], value)
    work = (np.zeros(1, np.float32), np.zeros(need["rows"], np.int32),
            np.zeros(need["b"], np.float32), np.zeros(need["c"], np.int32), np.zeros(max(int(at[-1, 3]), 1), np.int64),
            np.zeros(max(int(at[-1, 4]), 1), np.int64), np.zeros(max(int(at[-1, 4]), 1), np.int64),
            np.zeros(need["xt"], np.uint32), np.zeros(PATCH_KEY, np.int64), at,
            np.zeros(len(rows), np.uint8), np.zeros(max(int(at[-1, 0]), 1), np.uint32),
            np.zeros(max(int(at[-1, 1]), 1), np.uint8), np.zeros(max(int(at[-1, 2]), 1), np.int64),
            np.zeros(PATCH_KEY, np.int64))
    assert work[KEY].shape == work[PEER].shape == (PATCH_KEY,) and work[HELD_AT].dtype == np.uint8, \
        "KEY, HELD_AT and PEER name their buffers"
    for j, r in enumerate(rows):
        geometry(prog[r], *plan_geometry(work, j))
    kernels = kernel_addresses(isa, "u8s8") if rows else np.zeros(1, np.int64)
    shapes = np.zeros((len(rows), 7), np.int64)
    for j, r in enumerate(rows):
        _, size, _, steps = _dims(prog[r])
        _, _, _, kc, _, nr = (int(v) for v in plan_shape(templates[j]))
        lanes = steps * roundup(size, UNIT)
        shapes[j] = (size, steps, kc, nr, lanes, int(prog[r, C_MODE]) & 2 == 2, lanes <= SERIAL_PACK_WORDS)
    return GemmPlans(index, templates, kernels, work, shapes)


def second_set(work: tuple) -> tuple[tuple, tuple]:
    """Two sets of the working buffers for planned CONVs that run at once
    on two threads (runtime/sim/groups.py): each its own packed B, sums,
    row offsets, woven tile and key of the packed patches, both the
    plans' geometry and packed weights (a plan runs on one set at a time).
    Each set's ``PEER`` is the other's key: a write to ACT is reported to
    both (``report_written``). Returns (the first set, the second)."""
    mine = np.zeros(PATCH_KEY, np.int64)
    first = work[:PEER] + (mine,)
    second = (work[0], np.zeros_like(work[1]), np.zeros_like(work[2]), np.zeros_like(work[3]), work[4], work[5],
              work[6], np.zeros_like(work[7]), mine, work[9], work[10], work[11], work[12], work[13], work[KEY])
    return first, second


# ---------------------------------------------------------------- Numba
@jit
def plan_geometry(work, g):
    """Planned CONV ``g``'s reduction offsets, pixel origins and runs
    (``geometry``, computed once at Init) in the plan's stores."""
    offs, origins, runs, at = work[4], work[5], work[6], work[9]
    return (offs[at[g, 3]:at[g + 1, 3]], origins[at[g, 4]:at[g + 1, 4]], runs[at[g, 4]:at[g + 1, 4]])


@jit(inline="always")
def _patch_key(ins, kc, nr):
    """What decides the packed patches' layout: the tile's and window's
    geometry and the GEMM's blocking."""
    return (np.int64(ins[C_IN_C]), np.int64(ins[C_IN_H]), np.int64(ins[C_IN_W]), np.int64(ins[C_KH]),
            np.int64(ins[C_KW]), np.int64(ins[C_SH]), np.int64(ins[C_SW]), np.int64(ins[C_DH]), np.int64(ins[C_DW]),
            np.int64(kc), np.int64(nr))


@jit
def same_patches(ins, kc, nr, lo, hi, key):
    """Whether the packed B already holds this CONV's patches: the last
    packed ones had the same geometry and blocking and were read from the
    same ACT bytes [lo, hi), and nothing has written there since (every
    writer of ACT reports its bytes to ``act_written``, and a run starts
    with the key cleared, as it starts with SRAM zeroed)."""
    if key[0] != 1 or key[12] != lo or key[13] != hi:
        return False
    for i, value in enumerate(_patch_key(ins, kc, nr)):
        if key[i + 1] != value:
            return False
    return True


@jit
def act_written(key, lo, hi):
    """ACT bytes [lo, hi) were written: the packed patches no longer stand
    for their tile if it lies there."""
    if key[0] == 1 and lo < key[13] and key[12] < hi:
        key[0] = 0


@jit
def report_written(work, lo, hi):
    """ACT bytes [lo, hi) were written: to the key of each set of working
    buffers. (The other set's thread may be packing at the time; only
    patches of bytes this write does not touch can be, as every reader of
    written bytes waits for the writer, so at worst a key is cleared that
    need not be.)"""
    act_written(work[KEY], lo, hi)
    act_written(work[PEER], lo, hi)


@jit
def same_bytes(data, seen):
    """Whether ``data`` equals the first bytes of ``seen`` (both contiguous
    uint8), compared in full: as 8-byte words, 512 bytes per early exit, so
    that the comparison vectorises (byte by byte it ran at 2-8 GB/s, ~3 ms
    of ResNet-50's Run_sw; by words at the memory's speed), the last bytes
    one by one."""
    n = data.shape[0]
    words = n >> 3
    a = data[:words << 3].view(np.uint64)
    b = seen[:words << 3].view(np.uint64)
    i = 0
    while i + 64 <= words:
        diff = np.uint64(0)
        for j in range(i, i + 64):
            diff |= a[j] ^ b[j]
        if diff != 0:
            return False
        i += 64
    for j in range(i, words):
        if a[j] != b[j]:
            return False
    for j in range(words << 3, n):
        if data[j] != seen[j]:
            return False
    return True


@jit
def remember_patches(ins, kc, nr, lo, hi, key):
    """Record the geometry and ACT byte range of the tile about to be packed into B."""
    key[0] = 1
    for i, value in enumerate(_patch_key(ins, kc, nr)):
        key[i + 1] = value
    key[12], key[13] = lo, hi


@jit
def pack_weights_by_tap(wu8, w8, at, in_c, taps, rows, steps, kc, mr, dst, sums):
    """A lanes (as ``pack_a_words`` lays them out) of the weights [rows][in_c]
    [taps] at byte ``at``, in tap-major reduction order: lane (k, s) holds
    W[k][c0..c0+3][t] for (t, c0) = divmod(4s, in_c); ``sums`` each row's
    byte sum (zero rows pad the last panel)."""
    depth = in_c * taps
    panels = (rows + mr - 1) // mr
    mpad = panels * mr
    for panel in range(panels):
        for r in range(mr):
            k = panel * mr + r
            total = np.int32(0)
            if k < rows:
                line = w8[at + k * depth:at + (k + 1) * depth]
                for i in range(depth):
                    total += np.int32(line[i])
            sums[k] = total
            base = _u(at + k * depth)
            t, c0 = 0, 0
            for g0 in range(0, steps, kc):
                kcp = min(kc, steps - g0)
                lane0 = _u(g0 * mpad + panel * kcp * mr + r)
                for g in range(_u(kcp)):
                    word = np.uint32(0)
                    if k < rows:
                        b = base + _u(c0 * taps + t)
                        word = (np.uint32(wu8[b]) | (np.uint32(wu8[b + _u(taps)]) << 8)
                                | (np.uint32(wu8[b + _u(2 * taps)]) << 16) | (np.uint32(wu8[b + _u(3 * taps)]) << 24))
                    dst[lane0 + g * _u(mr)] = word
                    c0 += 4
                    if c0 == in_c:
                        t, c0 = t + 1, 0


@jit
def _pack_weights(ins, wu8, w8, w32, w_at, steps, kc, mr, lanes, rowsums):
    """A lanes (four bytes a lane) and row sums of a planned CONV's weights
    at byte ``w_at``, by the packer its layout wants."""
    m, in_c, taps = ins[C_OUT_C], ins[C_IN_C], ins[C_KH] * ins[C_KW]
    depth = in_c * taps
    mpad = (m + mr - 1) // mr * mr
    if by_words(ins):
        pack_weights_by_tap(wu8, w8, w_at, in_c, taps, m, steps, kc, mr, lanes, rowsums)
    elif depth % 4 != 0 or w_at % 4 != 0:
        pack_a_int8(0, mpad // mr, w8[w_at:w_at + m * depth], depth, 1, 0, m, depth, kc, mr, lanes.view(np.int8),
                    rowsums)
    else:
        q = w_at >> 2
        pack_a_words(0, mpad // mr, w32[q:q + m * (depth >> 2)], w8[w_at:w_at + m * depth], depth >> 2, 0, m,
                     steps, kc, mr, lanes, rowsums)


@jit(inline="always")
def _weights(ins, g, tmpl, wu8, w8, w32, wbase, work):
    """Planned CONV ``g``'s packed weights (A lanes) and row sums, packed
    into its stores unless they hold them already (``held``)."""
    at, held, a_store, w_store, sum_store = work[9], work[10], work[11], work[12], work[13]
    m, _, steps, kc, mr, _ = plan_shape(tmpl)
    depth = ins[C_IN_C] * ins[C_KH] * ins[C_KW]
    mpad = (m + mr - 1) // mr * mr
    w_at = wbase + ins[C_WGT]
    lanes = a_store[at[g, 0]:at[g + 1, 0]]
    rowsums = sum_store[at[g, 2]:at[g + 1, 2]]
    weights, packed_from = wu8[w_at:w_at + m * depth], w_store[at[g, 1]:at[g + 1, 1]]
    state = held[g]
    if not (state == CONSTANT_HELD or (state == HELD and same_bytes(weights, packed_from))):
        if tmpl[A_WORDS] == 1:
            _pack_weights(ins, wu8, w8, w32, w_at, steps, kc, mr, lanes, rowsums)
        else:  # the kernels read A's bytes as 16-bit pairs (Isa.a_words)
            whole = np.empty(steps * mpad, np.uint32)
            _pack_weights(ins, wu8, w8, w32, w_at, steps, kc, mr, whole, rowsums)
            split_a_lanes(np.int64(0), whole.size, whole.view(np.int8), mr, lanes)
        if state < CONSTANT:
            packed_from[:] = weights
        held[g] = CONSTANT_HELD if state >= CONSTANT else HELD
    return lanes, rowsums


@jit(inline="always")
def _row_offsets(ins, tmpl, rowsums, wgt64, wbase, offsets):
    """The kernels' row offsets: the bias (none from ACC) less 128 times the row's weight sum."""
    m, _, _, _, mr, _ = plan_shape(tmpl)
    mode = ins[C_MODE]
    bias_at = (wbase + ins[C_PARAM]) >> 3
    for k in range((m + mr - 1) // mr * mr):
        start = np.int64(0)
        if k < m and mode & 1 == 0:
            start = wgt64[bias_at + 3 * k]
        offsets[k] = np.int32(start - 128 * rowsums[k])


@jit(inline="always")
def _requant_records(ins, wgt32, wbase, rq):
    """Whether the GEMM's kernels requantise this CONV's sums themselves
    (runtime.gemm.microkernel_epilogue, ``REQUANT_WORDS`` a row): one that
    finishes (FULL, LAST) to 8 bits with no residual or table, every
    channel on the epilogue's 32-bit path (``epilogue._channel_rows``: one
    multiplier and shift for both signs, the shift at least HIGH_SHIFT:
    ``epilogue.high_path``);
    then each row's record in ``rq``."""
    if ins[C_OUT_BITS] != 8 or ins[C_RES] == 1 or ins[C_LUT] == 1 or ins[C_MODE] & 2 == 2:
        return False
    records = (wbase + ins[C_PARAM]) >> 2
    for k in range(ins[C_OUT_C]):
        rec = records + RECORD_WORDS * k
        m, n = np.int64(wgt32[rec + 2]), np.int64(wgt32[rec + 3])
        if not high_path(m, n, np.int64(wgt32[rec + 4]), np.int64(wgt32[rec + 5])):
            return False
        m32, bias, shift = high_params(m, n)
        at = REQUANT_WORDS * k
        rq[at], rq[at + 1], rq[at + 2] = np.int32(m32), bias, shift
        rq[at + 3], rq[at + 4], rq[at + 5] = np.int32(ins[C_OZ]), np.int32(ins[C_LO]), np.int32(ins[C_HI])
    return True


@jit(inline="always")
def _place(plan, tmpl, lanes, b_lanes, sums, offsets, placeholder, ins, w32, wbase, out):
    """``tmpl`` with the operands' addresses into ``plan``: the sums to
    ``out`` (int8, a row of pixels a channel) through the kernels'
    requantisation where ``_requant_records`` allows, else into ``sums``
    for the epilogue."""
    m, size, _, _, mr, _ = plan_shape(tmpl)
    mpad = (m + mr - 1) // mr * mr
    rq = offsets[mpad:mpad * (1 + REQUANT_WORDS)]
    plan[:] = tmpl
    if tmpl[REQUANT] == 0 and _requant_records(ins, w32, wbase, rq):
        set_addresses(plan, lanes, b_lanes, sums, offsets, out, rq, True, True, True)
        plan[LDR] = size
        plan[REQUANT] = 1
    else:
        set_addresses(plan, lanes, b_lanes, sums, offsets, placeholder, placeholder, True, False, False)
        plan[REQUANT] = 0


@jit
def prepare(ins, g, tmpl, au8, abase, wu8, w8, w32, wgt64, wbase, c32, cbase, work, pack_b):
    """Pack the weights of planned CONV ``g`` unless its store holds them
    already, compute the row offsets (and the woven copy of the tile
    for the word path; the patch geometry was computed at Init), pack the
    patches unless the previous planned CONV packed the same ones
    (``same_patches``) or ``pack_b`` is False (the caller packs them over the
    pool), and fill a copy of the plan ``tmpl`` with the addresses. Returns
    (plan, sums [out_c * P], whether B holds the patches): the GEMM writes
    ``sums``, which is ACC itself for FIRST and MIDDLE (in place) and holds
    ACC's values for LAST."""
    a, offsets, b, c, _, _, _, xt, key = work[:9]
    offs, origins, runs = plan_geometry(work, g)
    m, size, steps, kc, mr, nr = plan_shape(tmpl)
    lanes, rowsums = _weights(ins, g, tmpl, wu8, w8, w32, wbase, work)
    _row_offsets(ins, tmpl, rowsums, wgt64, wbase, offsets)
    npad = (size + UNIT - 1) // UNIT * UNIT
    b_lanes = b[:steps * npad]
    in_at = abase + ins[C_IN]
    in_end = in_at + ins[C_IN_C] * ins[C_IN_H] * ins[C_IN_W]
    packed = same_patches(ins, kc, nr, in_at, in_end, key)
    if not packed:
        remember_patches(ins, kc, nr, in_at, in_end, key)
        if by_words(ins):
            pixel_words(ins, au8, in_at, xt)
        if pack_b:
            pack_patches(np.int64(0), (size + nr - 1) // nr, ins, au8, in_at, xt, offs, origins, runs, steps, size,
                         kc, nr, b_lanes.view(np.uint32))  # int64 start (not literal 0): the pool's signature
            packed = True
    sums = conv_sums(ins, m, size, c32, cbase, c)
    if ins[C_MODE] & 3 == 1:  # LAST: the sums go on from ACC's values, in the shared buffer
        acc_at = (cbase + ins[C_ACC]) >> 2
        sums[:] = c32[acc_at:acc_at + m * size]
    plan = np.empty_like(tmpl)
    out = abase + ins[C_OUT]
    _place(plan, tmpl, lanes, b_lanes, sums, offsets, a, ins, w32, wbase, au8[out:out + m * size])
    return plan, sums.reshape(m, size), packed


@jit
def prepare_tile(ins, g, tmpl, wu8, w8, w32, wgt64, wbase, work, offsets, sums, plan, out):
    """``prepare`` for one tile of a chain (runtime/sim/chains.py) whose
    patches B holds already: its weights packed unless held, its row
    offsets into ``offsets`` and the plan into ``plan``, with ``sums`` for
    C (the caller's own buffers, so that tiles run at once on several
    threads) and ``out`` its outputs' bytes."""
    m, size, steps, _, _, _ = plan_shape(tmpl)
    lanes, rowsums = _weights(ins, g, tmpl, wu8, w8, w32, wbase, work)
    _row_offsets(ins, tmpl, rowsums, wgt64, wbase, offsets)
    npad = (size + UNIT - 1) // UNIT * UNIT
    _place(plan, tmpl, lanes, work[2][:steps * npad], sums[:m * size], offsets, work[0], ins, w32, wbase, out)


@jit(inline="always")
def conv_sums(ins, m, size, c32, cbase, c):
    """Where a planned CONV's GEMM writes its ``m x size`` sums: ACC itself
    for FIRST and MIDDLE (mode bit 2), else the shared buffer ``c``."""
    if ins[C_MODE] & 2 == 2:
        acc_at = (cbase + ins[C_ACC]) >> 2
        return c32[acc_at:acc_at + m * size]
    return c[:m * size]


@jit
def conv_serial(ins, g, tmpl, kernels, au8, a8, a16, abase, wu8, w8, w32, wgt64, wbase, c32, cbase, work, err):
    """Planned CONV ``g`` on this thread (the interpreter's); False (err
    filled) on a bad PARAM record."""
    if ins[C_MODE] & 2 == 0 and not check_conv_records(w32, wbase + ins[C_PARAM], ins[C_OUT_C], err):
        return False
    plan, sums, _ = call_unlinked(prepare, (ins, g, tmpl, au8, abase, wu8, w8, w32, wgt64, wbase, c32, cbase, work,
                                            np.bool_(True)))
    if ins[C_MODE] & 2 == 0:
        call_unlinked(products_and_epilogue, (np.int64(0), plan[TASKS], plan, kernels, work[0], sums, ins, a8, a16,
                                              abase, w32, wbase))
    else:
        run_planned(np.int64(0), plan[TASKS], plan, kernels, work[0])
    return True


@jit
def products_and_epilogue(start, stop, plan, kernels, b_src, sums, ins, a8, a16, abase, w32, wbase):
    """GEMM tasks [start, stop), each followed by the epilogue of the block
    of sums it wrote, while that block is still in cache (``parallel_for``
    body); none where the kernels requantised the sums themselves (the
    plan's ``REQUANT``: ``prepare``'s ``_place``)."""
    m, _, _, _, mr, _ = plan_shape(plan)
    buf, at = task_buffer(plan)  # once per chunk of tasks, not per task
    for task in range(start, stop):
        run_task(task, plan, kernels, b_src, buf, at)
        if plan[REQUANT] == 1:  # the kernels wrote the outputs
            continue
        _, first_panel, last_panel, col0, col1 = task_block(plan, task)
        epilogue_block(first_panel * mr, min(last_panel * mr, m), sums, ins, a8, a16, abase, w32, wbase, col0,
                       col1, np.int64(0))  # typed int64 (not the literal 0): one compiled epilogue for every caller


@jit
def prepare_checked(ins, g, tmpl, au8, abase, wu8, w8, w32, wgt64, wbase, c32, cbase, work, pack_b, err):
    """``prepare`` after the PARAM records' check (a pooled CONV's, from
    runtime.sim.phased): (whether they passed, then prepare's results)."""
    if ins[C_MODE] & 2 == 0 and not check_conv_records(w32, wbase + ins[C_PARAM], ins[C_OUT_C], err):
        return False, tmpl, c32[:0].reshape(0, 0), False
    plan, sums, packed = call_unlinked(prepare, (ins, g, tmpl, au8, abase, wu8, w8, w32, wgt64, wbase, c32, cbase,
                                                 work, pack_b))
    return True, plan, sums, packed
