"""Chains: a layer's CONV tiles of one input as one job for the pool.

The compiler cuts a layer with more output channels than WGT holds into
tiles: CONVs of the same input tile, each with its own weights, writing
its channels into one of two ACT buffers that a STORE then copies to DRAM
(SqueezeNet's last CONV: 125 tiles of 8 channels, a quarter of its MACs).
As GROUPS (runtime/sim/groups.py) they ran two at a time, each through the
interpreter, each set of the GEMM's buffers packing the same patches, each
tile waiting for the one two before it on its set: ~5.5 us a tile where its
products take ~3.2 (Zen 4).

A *chain* is a run of such tiles in a segment: each a CONV the GEMM plans
for the interpreter (not a pooled one) that reads its weights and records
in DRAM (``FROM_DRAM``, runtime/sim/forward.py), FULL, with no residual,
to 8-bit outputs; each followed by a STORE that copies exactly its output
bytes to DRAM in order (``forward.linear``); all of the same input bytes
and patch geometry (and GEMM blocking), no output overlapping the input,
any two outputs the same ACT bytes or disjoint, no two STOREs overlapping;
between them only NOPs and LOADs the run does not copy (``UNREAD``). Its
phases (runtime.sim.phased): the segment before it prepares the first
tile's CONV as for a pooled CONV (its records checked, the patches' key),
then checks every other tile's records; a PACK phase packs the patches
once, over the pool; a ``TILES`` phase runs the tiles, a run of them per
chunk (:func:`run_tiles`), each with its own row offsets, sums and plan.

Nothing a caller can see changes: each tile's epilogue writes its outputs
where its STORE would copy them (DRAM: the same bytes in the same order);
a tile whose ACT bytes no later tile of the chain writes (the last of each
output buffer) writes them in ACT and its STORE copies them, so SRAM ends
as the tiles left it; the tiles' ACT writes are reported to the packed
patches' keys. A bad PARAM record anywhere in the chain runs the chain's
instructions in order on the segment's thread instead, so the run stops at
the first bad one as the interpreter would (the tiles before it stored).
"""
from __future__ import annotations

import numpy as np

from runtime.gemm.tasks import TASKS
from runtime.isa import COL_OPCODE, Op, Space
from runtime.jit import jit
from runtime.sim import conv_gemm
from runtime.sim.dma import dma_store
from runtime.sim.epilogue import (
    C_DH,
    C_DW,
    C_IN,
    C_IN_C,
    C_IN_H,
    C_IN_W,
    C_KH,
    C_KW,
    C_MODE,
    C_OUT,
    C_OUT_BITS,
    C_OUT_C,
    C_PARAM,
    C_RES,
    C_SH,
    C_SW,
    out_size,
)
from runtime.sim.forward import linear
from runtime.sim.interpreter import (
    D_DRAM,
    D_ELEM,
    D_SPACE,
    D_SRAM,
    D_X,
    D_XS,
    D_Y,
    D_YS,
    D_Z,
    D_ZS,
    FROM_DRAM,
    REDIRECT,
    UNREAD,
    act_bytes,
    dram_views,
)
from runtime.sim.params import check_conv_records
from runtime.sim.timing import conv_work, dma_bytes
from runtime.unlinked import call_unlinked

CONV, STORE, KEEP, AT = range(4)
"""Columns of a chain's tile table: the CONV's row, its STORE's row,
whether its output stays in ACT too (no later tile of the chain writes
those bytes), the STORE's position in the order."""

MIN_TILES, MIN_MACS = 4, 1 << 21
"""A chain has at least this many tiles and multiply-adds (~10 us of
products on one thread: two pool hand-offs and the patches packed once
cost ~3 us)."""

_QUIET = (Op.NOP_LOAD, Op.NOP_COMPUTE, Op.NOP_STORE)
_GEOMETRY = (C_IN_C, C_IN_H, C_IN_W, C_KH, C_KW, C_SH, C_SW, C_DH, C_DW)


def _quiet(code: np.ndarray, row: int) -> bool:
    """A row that does nothing in this run: a NOP, or a LOAD not copied."""
    op = int(code[row, COL_OPCODE])
    return op in _QUIET or (op == Op.LOAD and int(code[row, REDIRECT]) == UNREAD)


def _tile_conv(code: np.ndarray, row: int, gemm: conv_gemm.GemmPlans, large: np.ndarray) -> bool:
    ins = code[row]
    return (int(ins[COL_OPCODE]) == Op.CONV and int(ins[REDIRECT]) == FROM_DRAM and gemm.index[row] >= 0
            and not large[row] and int(ins[C_MODE]) == 0 and int(ins[C_RES]) == 0 and int(ins[C_OUT_BITS]) == 8)


def _output(ins: np.ndarray) -> tuple[int, int]:
    out_h, out_w = out_size(ins)
    return int(ins[C_OUT]), int(ins[C_OUT]) + int(ins[C_OUT_C]) * int(out_h) * int(out_w)


def _stored(code: np.ndarray, row: int) -> tuple[int, int]:
    """The DRAM bytes [first, end) STORE ``row`` writes (in order, where ``linear``)."""
    first = int(code[row, D_DRAM])
    return first, first + int(dma_bytes(code, np.array([row]), Op.STORE)[0])


def _stores_output(code: np.ndarray, row: int, conv: int, slot: np.ndarray) -> bool:
    """Whether ``row`` is a STORE of exactly CONV ``conv``'s output bytes, in order."""
    ins = code[row]
    if int(ins[COL_OPCODE]) != Op.STORE or int(ins[D_SPACE]) != Space.ACT or slot[row] != slot[conv]:
        return False
    first, end = _stored(code, row)
    return linear(ins) and (int(ins[D_SRAM]), int(ins[D_SRAM]) + end - first) == _output(code[conv])


def _identity(code: np.ndarray, row: int, slot: np.ndarray, gemm: conv_gemm.GemmPlans) -> tuple:
    """What tiles of one chain share: the input's cluster and address, the
    patch geometry, the GEMM's pixels, steps, kc and nr."""
    ins = code[row]
    return (int(slot[row]), int(ins[C_IN]), *(int(ins[c]) for c in _GEOMETRY),
            *(int(v) for v in gemm.shapes[gemm.index[row], :4]))


def _tile(code, order, pos, end, slot, gemm, large):
    """(CONV row, STORE row, the STORE's position) of the tile whose CONV
    is at ``pos``, or None."""
    conv = int(order[pos])
    if not _tile_conv(code, conv, gemm, large):
        return None
    at = pos + 1
    while at < end and _quiet(code, int(order[at])):
        at += 1
    if at == end or not _stores_output(code, int(order[at]), conv, slot):
        return None
    return conv, int(order[at]), at


def find(code: np.ndarray, order: np.ndarray, first: int, end: int, slot: np.ndarray, gemm: conv_gemm.GemmPlans,
         large: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """The chains in positions [first, end) of ``order``: (position of the
    first tile's CONV, position after the last tile's STORE, the tile
    table: ``CONV``, ``STORE``, ``KEEP``, ``AT``). ``code``: the rows as the
    run executes them (a redirected program; none without its column)."""
    if code.shape[1] <= REDIRECT:
        return []
    found = []
    pos = first
    while pos < end:
        tile = _tile(code, order, pos, end, slot, gemm, large)
        if tile is None:
            pos += 1
            continue
        start, tiles = pos, [tile]
        identity = _identity(code, tile[0], slot, gemm)
        ins = code[tile[0]]
        input_ = (int(ins[C_IN]), int(ins[C_IN]) + int(ins[C_IN_C]) * int(ins[C_IN_H]) * int(ins[C_IN_W]))
        outputs, stored = [_output(ins)], [_stored(code, tile[1])]
        pos = _after(code, order, tile[2] + 1, end)
        if _overlap(outputs[0], input_):
            continue
        while pos < end:
            nxt = _tile(code, order, pos, end, slot, gemm, large)
            if nxt is None or _identity(code, nxt[0], slot, gemm) != identity:
                break
            out, dram = _output(code[nxt[0]]), _stored(code, nxt[1])
            if _overlap(out, input_) or any(_overlap(out, o) and out != o for o in outputs) \
                    or any(_overlap(dram, d) for d in stored):
                break
            tiles.append(nxt)
            outputs.append(out)
            stored.append(dram)
            pos = _after(code, order, nxt[2] + 1, end)
        pixels, channels, depth = conv_work(code, np.array([c for c, _, _ in tiles], np.int64))
        if len(tiles) < MIN_TILES or int(np.sum(pixels * channels * depth)) < MIN_MACS:
            continue
        keep = [outputs[i] not in outputs[i + 1:] for i in range(len(tiles))]
        table = np.array([(c, s, k, at) for (c, s, at), k in zip(tiles, keep)], np.int64).reshape(-1, 4)
        found.append((start, tiles[-1][2] + 1, table))
    return found


def _after(code, order, pos, end) -> int:
    """The next position from ``pos`` that is not a quiet row (or ``end``)."""
    while pos < end and _quiet(code, int(order[pos])):
        pos += 1
    return pos


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


# ---------------------------------------------------------------- Numba
@jit
def records_pass(lo, hi, tiles, prog, dram, err):
    """Whether every PARAM record of tiles [lo, hi) is in range (``err``
    filled for the first that is not)."""
    d32 = dram_views(dram)[1]
    for t in range(lo, hi):
        ins = prog[tiles[t, CONV]]
        if not check_conv_records(d32, ins[C_PARAM], ins[C_OUT_C], err):
            return False
    return True


@jit
def report_outputs(lo, hi, tiles, prog, slot, act_stride, work):
    """Each tile's ACT output bytes, to the packed patches' keys (as the
    interpreter reports every write; none overlaps the chain's input)."""
    for t in range(lo, hi):
        r = tiles[t, CONV]
        first, end = act_bytes(prog[r])
        conv_gemm.report_written(work, slot[r] * act_stride + first, slot[r] * act_stride + end)


@jit
def run_tiles(chunk, count, lo, hi, tiles, offsets, sums, plans, prog, slot, dram, a8, a16, au8, act_stride,
              gemm_index, gemm_plans, kernels, work):
    """Chunk ``chunk`` of ``count`` of tiles [lo, hi): each tile's weights
    (packed once, then held), row offsets and plan in this chunk's row of
    ``offsets``, ``sums`` and ``plans``, its products on the patches B
    holds, its epilogue into DRAM where its STORE puts the bytes, or (a
    ``KEEP`` tile) into ACT and then its STORE."""
    d8, d32, d64 = dram_views(dram)
    total = hi - lo
    for t in range(lo + chunk * total // count, lo + (chunk + 1) * total // count):
        r, store = tiles[t, CONV], prog[tiles[t, STORE]]
        ins = prog[r]
        g = gemm_index[r]
        plan = plans[chunk]
        out_h, out_w = out_size(ins)
        m, size = ins[C_OUT_C], out_h * out_w
        abase = slot[r] * act_stride
        keep = tiles[t, KEEP] == 1
        # a kept tile's outputs go to ACT (its STORE copies them after), the others' straight to the DRAM bytes
        # their STORE would write (the output's bytes, in order)
        at = abase + ins[C_OUT] if keep else store[D_DRAM]
        out8, out_u8 = (a8, au8) if keep else (d8, dram)
        call_unlinked(conv_gemm.prepare_tile, (ins, g, gemm_plans[g], dram, d8, d32, d64, np.int64(0), work,
                                               offsets[chunk], sums[chunk], plan, out_u8[at:at + m * size]))
        call_unlinked(conv_gemm.products_and_epilogue, (np.int64(0), plan[TASKS], plan, kernels, work[0],
                                                        sums[chunk][:m * size].reshape(m, size), ins, out8, a16,
                                                        at - ins[C_OUT], d32, np.int64(0)))
        if keep:
            dma_store(dram, au8, abase + store[D_SRAM], store[D_DRAM], store[D_ELEM], store[D_Z], store[D_Y],
                      store[D_X], store[D_ZS], store[D_YS], store[D_XS])
