"""A card run's instructions with the thread pool inside Numba: the
interpreter's segments and the planned CONVs' GEMMs as the phases of one
phased job (runtime.parallel.run_phases), with no Python between them.

The interpreter (runtime/sim/interpreter.py) runs a card's instructions in
order on one thread. Before, it stopped at every large CONV and returned to
Python, which packed the CONV's operands, ran its products over the pool and
called the interpreter again: a return to Python and two pool hand-offs per
large CONV (ResNet-50: 210 a run).

Here a run of the card's order is cut, once, into phases (:func:`stretches`):

* ``SEGMENT`` (one chunk): report the previous pooled CONV's output to the
  packed-patch key, interpret the instructions up to the next pooled CONV,
  then check and prepare that CONV (``conv_gemm.prepare_checked``: weights
  packed unless held, row offsets, patches packed here when few);
* ``PACK`` (a chunk per part of the column panels; none when the patches
  are packed already): the CONV's patches, ``patches.pack_patches``;
* ``PRODUCTS`` (a chunk per GEMM task): the products, each task's block of
  sums followed by its epilogue (``conv_gemm.products_and_epilogue``), or
  the sums alone into ACC (``run_planned``);
* ``CHANNELS`` (a chunk per run of output channels): a large 8-bit
  depthwise CONV, ``conv8.depthwise_channels`` on each chunk's channels
  (the segment before it checks the CONV's PARAM records). Until 2026-11
  these went back to Python (runtime.sim.conv.run_large) and over the pool
  from there, ~30 us a CONV: MobileNetV2 and PP-LCNet have 13 to 17.
* ``GROUPS`` (a chunk per group, taken in order): a segment's
  instructions cut into groups that run two at a time, each waiting for
  the groups it depends on (runtime/sim/groups.py; ``FIRST`` and ``END``
  are group numbers), between a segment that reports the previous pooled
  CONV's output and one that prepares the next;
* ``PARTS`` (a chunk per part): a large LOAD, STORE or ELTWISE cut into
  parts (runtime/sim/parts.py: the DMAs between two pooled CONVs), each
  part the same instruction over a run of its planes, rows or elements;
* ``TILES`` (a chunk per run of tiles): a chain of CONV tiles of one
  input (runtime/sim/chains.py; ``FIRST`` and ``END`` are tile numbers),
  after the segment that prepares its first tile and checks every tile's
  records and the PACK phase of their shared patches;
* ``PLANES`` (a chunk per run of channels): a large max POOL, each chunk
  the same POOL over its channels
  (the instruction with its channel count and addresses moved to the
  chunk's planes), through the interpreter's own POOL entry point. Until
  2026-11 they ran inside the segments on one thread: SqueezeNet's 8 took
  ~10 % of its one-thread Run_sw while the other thread waited.

Every thread runs :func:`run_card` and goes through the phases in order
with a barrier after each (runtime.pool_protocol's phased protocol), so a pooled
CONV (the simulator's ``large`` ones planned on the GEMM) costs two
barriers (~1 us each), not a return to Python and back. A segment is one
thread's work while the other waits at the barrier, as before. The results
are those of the one-thread interpreter, bit for bit: the same
instructions in the same order, each CONV's sums the same exact int32 sums
whatever the split.

What still runs in Python (``stretches`` ends a stretch of phases there):
a large CONV the GEMM does not plan and that is not 8-bit depthwise
(runtime.sim.conv.run_large: short or few-pixel dense tiles, 16-bit ones,
over the pool), and an instruction the program's table of entry points has
none for (runtime.sim.handlers.run_here).
"""
from __future__ import annotations

import numpy as np

from runtime.atomics import cpu_relax, fetch_add, load_acquire
from runtime.gemm.tasks import TASKS, plan_shape, run_planned
from runtime.isa import COL_OPCODE, Op, PoolMode
from runtime.jit import jit
from runtime.pool_protocol import (
    ALONE,
    CALLER,
    FINISHED,
    P_FAILED,
    WORKER,
    phase_begin,
    phase_claim,
    phase_count,
    phase_done,
    phase_end,
    phase_set_count,
    phase_wait,
)
from runtime.sim import chains, conv8, conv_gemm, groups, handlers
from runtime.sim.conv import DEPTHWISE8, kernel_kind
from runtime.sim.epilogue import C_IN, C_MODE, C_OUT_C, C_PARAM
from runtime.sim.handlers import call_handler, pool_entry
from runtime.sim.interpreter import FROM_DRAM, REDIRECT, act_bytes, dram_views, interpret
from runtime.sim.params import check_conv_records
from runtime.sim.parts import count as part_count
from runtime.sim.parts import part as run_part
from runtime.sim.parts import splits as split_in_parts
from runtime.sim.patches import pack_patches
from runtime.sim.vector import P_C, P_IN, P_IN_BITS, P_IN_H, P_IN_W, P_KH, P_KW, P_MODE, P_OUT, P_OUT_BITS, P_SH, P_SW
from runtime.unlinked import call_unlinked

SEGMENT, PACK, PRODUCTS, CHANNELS, PLANES, GROUPS, PARTS, TILES = 0, 1, 2, 3, 4, 5, 6, 7
PLANES_MIN = 1 << 16
"""Input elements from which a max POOL is a PLANES phase (a barrier costs
~1 us; 2^16 bytes of max pool ~10-15 us on one thread). ResNet-10 at 32 x
32's pool (16 K) stays in its one interpreter call."""
KIND, FIRST, END, AFTER, ROW = range(5)
"""Columns of a phase table row: its kind, the segment's positions
[FIRST, END) in the order, the pooled CONV whose output a segment reports
first (-1: none), the pooled CONV it prepares last or a PACK / PRODUCTS
phase runs, the CONV or POOL a CHANNELS or PLANES phase runs (-1: none)."""

STATUS, FAILED_AT, SEQ = 0, 1, 2
"""Slots of a run's control array: 0, or what failed (BAD_PARAM: the
interpreter's or a CONV's PARAM records, ``err`` says which; STOPPED: the
interpreter stopped where it should not have); the position in the order
of the failure; the number of the stretch being run (what a group's done
flag holds once it is done in this run)."""
BAD_PARAM, STOPPED = 1, 2


def pooled(prog: np.ndarray, row: int, gemm_index: np.ndarray, large: np.ndarray) -> bool:
    """Whether CONV ``row`` runs as PRODUCTS phases (planned on the GEMM,
    with tasks for every thread)."""
    return int(prog[row, COL_OPCODE]) == Op.CONV and gemm_index[row] >= 0 and bool(large[row])


def split_by_channels(prog: np.ndarray, row: int, gemm_index: np.ndarray, large: np.ndarray) -> bool:
    """Whether CONV ``row`` runs as a CHANNELS phase: a large 8-bit
    depthwise CONV (off the GEMM, which plans dense ones only)."""
    return (int(prog[row, COL_OPCODE]) == Op.CONV and gemm_index[row] < 0 and bool(large[row])
            and kernel_kind(prog[row]) == DEPTHWISE8)


def split_by_planes(prog: np.ndarray, row: int, table: np.ndarray) -> bool:
    """Whether POOL ``row`` runs as a PLANES phase: a max pool (no PARAM
    records to check) the interpreter has an entry point for, of at least
    two channels and :data:`PLANES_MIN` input elements. Each chunk reads
    only its own channels' planes, so chunks run in any order: the
    validator refuses a POOL whose output overlaps its input."""
    ins = prog[row]
    if int(ins[COL_OPCODE]) != Op.POOL or int(ins[P_MODE]) != PoolMode.MAX:
        return False
    if table[pool_entry(ins[P_IN_BITS], ins[P_OUT_BITS])] == 0 or ins[P_C] < 2:
        return False
    return int(ins[P_C]) * int(ins[P_IN_H]) * int(ins[P_IN_W]) >= PLANES_MIN


def in_python(prog: np.ndarray, row: int, gemm_index: np.ndarray, large: np.ndarray, table: np.ndarray) -> bool:
    """Whether the interpreter hands ``row`` back to Python: a large CONV
    off the GEMM (runtime.sim.conv.run_large), or an instruction whose
    entry point ``table`` (runtime.sim.handlers.handler_table) lacks
    (run_here), as :func:`runtime.sim.interpreter.interpret` decides."""
    op = int(prog[row, COL_OPCODE])
    if op == Op.CONV:
        if split_by_channels(prog, row, gemm_index, large):
            return False
        return gemm_index[row] < 0 and (bool(large[row]) or table[handlers.CONV] == 0)
    if op == Op.POOL:
        return table[handlers.pool_entry(prog[row, P_IN_BITS], prog[row, P_OUT_BITS])] == 0
    return op in handlers.VECTOR_ENTRIES and table[handlers.VECTOR_ENTRIES[op]] == 0


def stretches(prog: np.ndarray, order: np.ndarray, gemm_index: np.ndarray, large: np.ndarray,
              table: np.ndarray, code: np.ndarray | None = None) -> list[tuple[np.ndarray, int]]:
    """``order`` as (phase table, position of a Python step after it or
    -1) pairs: each table a run of phases with no Python between them,
    ending with a segment (which reports the last pooled CONV's output).
    ``code``: the program as the run executes it (runtime/sim/forward.py's
    redirected copy), where it differs from ``prog``. PARTS phases are cut
    only in a stretch that has other phases for the pool: one that is a
    single segment stays one interpreter call (a small model's whole run,
    runtime/sim/whole.py)."""
    plain = _stretches(prog, order, gemm_index, large, table, None)
    if not any(shares_work(phases) for phases, _ in plain):
        return plain
    cut = _stretches(prog, order, gemm_index, large, table, prog if code is None else code)
    return [mine if shares_work(first[0]) else first for first, mine in zip(plain, cut)]


def _stretches(prog, order, gemm_index, large, table, code) -> list[tuple[np.ndarray, int]]:
    """:func:`stretches`, with PARTS phases where ``code`` is given (the
    same Python steps either way: a PARTS instruction is never one)."""
    out: list[tuple[np.ndarray, int]] = []
    rows: list[tuple[int, int, int, int, int]] = []
    start, after = 0, -1
    for pos, row in enumerate(order.tolist()):
        if pooled(prog, row, gemm_index, large):
            rows += [(SEGMENT, start, pos, after, row), (PACK, 0, 0, -1, row), (PRODUCTS, 0, 0, -1, row)]
            start, after = pos + 1, row
        elif split_by_channels(prog, row, gemm_index, large):
            rows += [(SEGMENT, start, pos, after, row), (CHANNELS, 0, 0, -1, row)]
            start, after = pos + 1, row
        elif split_by_planes(prog, row, table):
            rows += [(SEGMENT, start, pos, after, row), (PLANES, 0, 0, -1, row)]
            start, after = pos + 1, row
        elif code is not None and split_in_parts(code, row, table):
            rows += [(SEGMENT, start, pos, after, row), (PARTS, 0, 0, -1, row)]
            start, after = pos + 1, row
        elif in_python(prog, row, gemm_index, large, table):
            rows.append((SEGMENT, start, pos, after, -1))
            out.append((np.array(rows, np.int64).reshape(-1, 5), pos))
            rows, start, after = [], pos + 1, -1
    rows.append((SEGMENT, start, order.shape[0], after, -1))
    out.append((np.array(rows, np.int64).reshape(-1, 5), -1))
    return out


def shares_work(phases: np.ndarray) -> bool:
    """Whether a phase table has phases other threads can help with."""
    return bool(np.any(phases[:, KIND] != SEGMENT))


@jit
def run_card(team, state, role, first, phases, ctl, plan, parts, prog, order, slot, large, dram, w8, w16, w32, w64,
             wu8, a8, a16, au8, c32, c64, cu8, strides, err, pad, gemm_index, gemm_plans, gemm_kernels, gemm_work,
             handlers, shapes, grouped):
    """A phased driver (runtime.parallel.run_phases) over ``phases`` (a
    table of :func:`stretches`) from ``first``: returns FINISHED, or the
    phase whose wait ran out (the caller comes back there). ``ctl`` and
    ``plan`` hold what the segment that prepares a CONV hands the phases
    after it (its plan with the addresses; the phases' chunk counts go into
    ``team``); on a failure ``ctl[STATUS]`` says what, and every thread
    stops. ``grouped``: the GROUPS phases' groups (their table, rows, done
    flags, outcomes and positions), the second set of working buffers
    with its ``err`` and ``pad``, then the TILES phases' tile table and
    each chunk's row offsets, sums and plan (runtime/sim/chains.py)."""
    phase_begin(team, state, role)
    for i in range(first, phases.shape[0]):
        kind = phases[i, KIND]
        count = 1 if kind == SEGMENT else phases[i, END] - phases[i, FIRST] if kind == GROUPS else \
            phase_count(team, i)
        claimer = CALLER if kind == GROUPS else role  # groups are taken in order, from the front
        chunk = phase_claim(team, i, count, claimer)
        while chunk >= 0:
            if kind == SEGMENT:
                _segment(team, i, phases[i], ctl, plan, parts, prog, order, slot, large, dram, w8, w16, w32, w64, wu8,
                         a8, a16, au8, c32, c64, cu8, strides, err, pad, gemm_index, gemm_plans, gemm_kernels,
                         gemm_work, handlers, shapes)
                if i + 2 < phases.shape[0] and phases[i + 2, KIND] == TILES and ctl[STATUS] == 0:
                    _chain(team, i, phases, ctl, parts, prog, order, slot, large, dram, w8, w16, w32, w64, wu8, a8,
                           a16, au8, c32, c64, cu8, strides, err, pad, gemm_index, gemm_plans, gemm_kernels,
                           gemm_work, handlers, grouped[8])
            elif kind == TILES:
                call_unlinked(chains.run_tiles, (chunk, count, phases[i, FIRST], phases[i, END], grouped[8],
                                                 grouped[9], grouped[10], grouped[11], prog, slot, dram, a8, a16, au8,
                                                 strides[1], gemm_index, gemm_plans, gemm_kernels, gemm_work))
            elif kind == GROUPS:
                _group(phases[i, FIRST], phases[i, FIRST] + chunk, ctl, prog, slot, large, dram, w8, w16, w32, w64,
                       wu8, a8, a16, au8, c32, c64, cu8, strides, err, pad, gemm_index, gemm_plans, gemm_kernels,
                       gemm_work, handlers, grouped)
            else:
                row = phases[i, ROW]
                g = gemm_index[row]
                s = slot[row]
                ins = prog[row]
                if kind == PARTS:
                    call_unlinked(run_part, (chunk, count, ins, dram, wu8, au8, cu8, s * strides[0],
                                             s * strides[1], s * strides[2], handlers, err))
                elif kind == PACK:
                    _pack(chunk, count, ins, g, au8, s * strides[1], gemm_work, shapes)
                elif kind == PLANES:
                    _planes(chunk, count, ins, handlers, wu8, au8, cu8, s * strides[0], s * strides[1],
                            s * strides[2], err)
                elif kind == CHANNELS:
                    out_c = ins[C_OUT_C]
                    call_unlinked(conv8.depthwise_channels, (chunk * out_c // count, (chunk + 1) * out_c // count, ins,
                                                             a8, a16, s * strides[1], w8, w32, w64, s * strides[0],
                                                             c32, s * strides[2]))
                elif _from_dram(prog, ins):  # its PARAM records in DRAM, from 0
                    _products(chunk, plan, ins, g, gemm_kernels, gemm_work, shapes, a8, a16, s * strides[1],
                              dram_views(dram)[1], np.int64(0), c32, s * strides[2])
                else:
                    _products(chunk, plan, ins, g, gemm_kernels, gemm_work, shapes, a8, a16, s * strides[1], w32,
                              s * strides[0], c32, s * strides[2])
            phase_done(team, i)
            chunk = phase_claim(team, i, count, claimer)
        if role != ALONE and not phase_wait(team, i, count, role):
            return -1 if role == WORKER else i
        if kind == GROUPS:
            _groups_failed(team, ctl, phases[i, FIRST], phases[i, END], err, grouped)
        if ctl[STATUS] != 0:
            return -1 if role == WORKER else FINISHED
    phase_end(team, state, role)
    return FINISHED


@jit
def _segment(team, i, phase, ctl, plan, parts, prog, order, slot, large, dram, w8, w16, w32, w64, wu8, a8, a16, au8,
             c32, c64, cu8, strides, err, pad, gemm_index, gemm_plans, gemm_kernels, gemm_work, handlers, shapes):
    """SEGMENT phase ``i`` (see the module's docstring); it sets the chunk
    counts of the PACK and PRODUCTS (or CHANNELS) phases after it (in the run's team
    array: each phase's count is fixed before any thread reads it, where a
    shared slot let a thread late to one phase read the next CONV's count
    and claim a chunk of products twice)."""
    after = phase[AFTER]
    if after >= 0:
        first, end = act_bytes(prog[after])
        if end > first:
            base = slot[after] * strides[1]
            conv_gemm.report_written(gemm_work, base + first, base + end)
    start, stop = phase[FIRST], phase[END]
    if stop > start:
        done = call_unlinked(interpret, (prog, order[start:stop], np.int64(0), slot, large, dram, w8, w16, w32, w64,
                                         wu8, a8, a16, au8, c32, c64, cu8, strides, err, pad, gemm_index, gemm_plans,
                                         gemm_kernels, gemm_work, handlers))
        if done != stop - start:
            _stop(team, ctl, BAD_PARAM if done < 0 else STOPPED, start + (-done - 1 if done < 0 else done))
            return
    row = phase[ROW]
    if row < 0:
        return
    op = prog[row, COL_OPCODE]
    if op == Op.LOAD or op == Op.STORE or op == Op.ELTWISE:  # a PARTS phase's instruction: cut in parts
        phase_set_count(team, i + 1, part_count(prog[row], parts))
        return
    if op == Op.POOL:  # a PLANES phase's POOL: its channels cut in chunks
        phase_set_count(team, i + 1, min(prog[row, P_C], parts))
        return
    g = gemm_index[row]
    if g < 0:  # a CHANNELS phase's CONV: its records checked here, its channels cut in chunks
        ins = prog[row]
        if ins[C_MODE] & 2 == 0 and not check_conv_records(w32, slot[row] * strides[0] + ins[C_PARAM], ins[C_OUT_C],
                                                          err):
            err[3] = row
            _stop(team, ctl, BAD_PARAM, stop)
            return
        phase_set_count(team, i + 1, min(ins[C_OUT_C], parts))
        return
    ins = prog[row]
    s = slot[row]
    size, nr = shapes[g, 0], shapes[g, 3]
    wgt, wgt8, wgt32, wgt64, wgt_base = wu8, w8, w32, w64, s * strides[0]
    if _from_dram(prog, ins):  # its weights and records in DRAM, from 0
        wgt8, wgt32, wgt64 = dram_views(dram)
        wgt, wgt_base = dram, np.int64(0)
    ok, prepared, _, packed = call_unlinked(conv_gemm.prepare_checked, (
        ins, g, gemm_plans[g], au8, s * strides[1], wgt, wgt8, wgt32, wgt64, wgt_base, c32, s * strides[2],
        gemm_work, shapes[g, 6] != 0, err))
    if not ok:
        err[3] = row
        _stop(team, ctl, BAD_PARAM, stop)
        return
    plan[:] = prepared
    panels = (size + nr - 1) // nr
    phase_set_count(team, i + 1, 0 if packed else min(panels, parts))
    phase_set_count(team, i + 2, prepared[TASKS])


@jit
def _chain(team, i, phases, ctl, parts, prog, order, slot, large, dram, w8, w16, w32, w64, wu8, a8, a16, au8, c32,
           c64, cu8, strides, err, pad, gemm_index, gemm_plans, gemm_kernels, gemm_work, handlers, tiles):
    """After SEGMENT ``i`` prepared the first tile of the chain that TILES
    phase ``i + 2`` runs: every tile's records checked, their outputs
    reported to the patches' keys and the TILES phase's chunk count set;
    or, on a bad record, the chain's instructions interpreted in order
    here, which stop where the interpreter stops (the phases after find
    nothing to do, or the run stopped)."""
    lo, hi = phases[i + 2, FIRST], phases[i + 2, END]
    if chains.records_pass(lo, hi, tiles, prog, dram, err):
        chains.report_outputs(lo, hi, tiles, prog, slot, strides[1], gemm_work)
        phase_set_count(team, i + 2, min(hi - lo, parts))
        return
    start, stop = phases[i, END], tiles[hi - 1, chains.AT] + 1
    done = call_unlinked(interpret, (prog, order[start:stop], np.int64(0), slot, large, dram, w8, w16, w32, w64, wu8,
                                     a8, a16, au8, c32, c64, cu8, strides, err, pad, gemm_index, gemm_plans,
                                     gemm_kernels, gemm_work, handlers))
    if done != stop - start:
        _stop(team, ctl, BAD_PARAM if done < 0 else STOPPED, start + (-done - 1 if done < 0 else done))
        return
    phase_set_count(team, i + 1, 0)
    phase_set_count(team, i + 2, 0)


@jit
def _group(low, g, ctl, prog, slot, large, dram, w8, w16, w32, w64, wu8, a8, a16, au8, c32, c64, cu8, strides, err,
           pad, gemm_index, gemm_plans, gemm_kernels, gemm_work, handlers, grouped):
    """Group ``g`` of a GROUPS phase whose first group is ``low``
    (runtime/sim/groups.py): wait until the group before it on its set of
    working buffers (``g - 2``) and the group of the other set it needs are
    done in this run, interpret its rows with its set (``g % 2``), record
    the outcome, then flag it done. It does not run if the group before it
    on its set did not finish (that one's failure stands, and its set's
    ``err`` with it)."""
    table, rows, done, outcome, where, work1, err1, pad1 = grouped[:8]
    seq = ctl[SEQ]
    before, need = g - 2, table[g, groups.NEED]
    for d in (before, need):
        if d >= low:
            while load_acquire(done, d) != seq:
                cpu_relax()
    result = groups.OK
    if before >= low and outcome[before] != groups.OK:
        result = groups.SKIPPED
    else:
        start, stop = table[g, groups.START], table[g, groups.END]
        first = g % 2 == 0
        ran = call_unlinked(interpret, (prog, rows[start:stop], np.int64(0), slot, large, dram, w8, w16, w32, w64, wu8,
                                        a8, a16, au8, c32, c64, cu8, strides, err if first else err1,
                                        pad if first else pad1, gemm_index, gemm_plans, gemm_kernels,
                                        gemm_work if first else work1, handlers))
        if ran != stop - start:
            result = groups.FAILED if ran < 0 else groups.STOPPED
            where[g] = start + (-ran - 1 if ran < 0 else ran)
    outcome[g] = result
    fetch_add(done, g, seq - done[g])  # publishes the outcome and every byte the group wrote


@jit
def _groups_failed(team, ctl, low, high, err, grouped):
    """After every group of a GROUPS phase [low, high) is done: the
    earliest that failed (every one before it ran), as a segment's failure
    (its set's ``err``; ``FAILED_AT`` its position among the groups' rows).
    Every thread finds the same."""
    outcome, where, err1 = grouped[3], grouped[4], grouped[6]
    for g in range(low, high):
        if outcome[g] == groups.FAILED or outcome[g] == groups.STOPPED:
            if g % 2 == 1:
                err[:] = err1
            _stop(team, ctl, BAD_PARAM if outcome[g] == groups.FAILED else STOPPED, where[g])
            return


@jit(inline="always")
def _from_dram(prog, ins):
    """Whether a CONV row of a redirected program reads WGT from DRAM (runtime/sim/forward.py)."""
    return prog.shape[1] > REDIRECT and ins[REDIRECT] == FROM_DRAM


@jit(inline="always")
def _stop(team, ctl, status, at):
    """A segment's failure: what (``status``) and where in the order, for
    the caller; every thread stops at its next phase."""
    ctl[STATUS] = status
    ctl[FAILED_AT] = at
    fetch_add(team, P_FAILED, 1)


@jit(inline="always")
def _planes(chunk, count, ins, handlers, wu8, au8, cu8, wbase, abase, cbase, err):
    """Chunk ``chunk`` of ``count`` of a PLANES phase's max POOL: the same
    POOL over its channels, through the interpreter's entry point for its
    widths (a max pool checks no PARAM records, so it cannot fail)."""
    channels, in_h, in_w = ins[P_C], ins[P_IN_H], ins[P_IN_W]
    out_h, out_w = (in_h - ins[P_KH]) // ins[P_SH] + 1, (in_w - ins[P_KW]) // ins[P_SW] + 1
    first, stop = chunk * channels // count, (chunk + 1) * channels // count
    part = ins.copy()
    part[P_C] = stop - first
    part[P_IN] += first * in_h * in_w * (ins[P_IN_BITS] >> 3)
    part[P_OUT] += first * out_h * out_w * (ins[P_OUT_BITS] >> 3)
    entry = handlers[pool_entry(ins[P_IN_BITS], ins[P_OUT_BITS])]
    call_handler(entry, part, wu8, au8, cu8, wbase, abase, cbase, err)


@jit(inline="always")
def _pack(chunk, count, ins, g, au8, abase, work, shapes):
    """Chunk ``chunk`` of ``count`` of a CONV's patches (its column panels)."""
    size, steps, kc, nr, lanes = shapes[g, 0], shapes[g, 1], shapes[g, 2], shapes[g, 3], shapes[g, 4]
    panels = (size + nr - 1) // nr
    offs, origins, runs = conv_gemm.plan_geometry(work, g)
    call_unlinked(pack_patches, (chunk * panels // count, (chunk + 1) * panels // count, ins, au8,
                                           abase + ins[C_IN], work[7], offs, origins, runs, steps, size, kc, nr,
                                           work[2][:lanes].view(np.uint32)))


@jit(inline="always")
def _products(task, plan, ins, g, kernels, work, shapes, a8, a16, abase, w32, wbase, c32, cbase):
    """GEMM task ``task`` of a CONV: its sums and their epilogue, or its
    sums alone into ACC (FIRST, MIDDLE)."""
    if shapes[g, 5]:
        call_unlinked(run_planned, (task, task + 1, plan, kernels, work[0]))
        return
    m, size = plan_shape(plan)[0], shapes[g, 0]
    sums = conv_gemm.conv_sums(ins, m, size, c32, cbase, work[3]).reshape(m, size)
    call_unlinked(conv_gemm.products_and_epilogue, (task, task + 1, plan, kernels, work[0], sums, ins, a8, a16, abase,
                                                    w32, wbase))
