"""The blocked GEMM's plan layout and the Numba loops that follow a plan.

A plan (an int64 array, fields below) is made in Python by
:mod:`runtime.gemm.sgemm`, which checks every size, stride and address;
the loops here only follow it: a task's B panels packed (or read in place,
or prepacked), then the microkernel for each (row panel, column panel)
pair, ``MC_PANELS`` row panels against one B panel at a time.
:func:`run_placed` runs tasks of a plan template on operands it is given
(each call places their addresses into its own copy of the template), so
the caller, on one thread or through ``parallel_for``, makes one Numba
call a product.
"""
from __future__ import annotations

import threading

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from runtime import parallel, pool_protocol
from runtime.gemm.microkernel import call_kernel
from runtime.gemm.microkernel_epilogue import REQUANT_WORDS
from runtime.gemm.pack import LINE, pack_b_block, panel_width
from runtime.jit import cfunc, jit, typed_readonly
from runtime.unlinked import call_unlinked

# How a task gets its B panels.
PACK, PREPACKED, DIRECT = 0, 1, 2

_ALIGN = 16
"""Lanes per 64 bytes: a task's B buffer starts on a cache line."""

# Fields of the int64 plan array the Numba driver reads (_ROW_PANELS and
# _COL_PANELS: the panels task_block cuts into _MT and _NT chunks, a wide last
# column panel counting as one; _TALL: the row panels the tall tile takes, 0
# for none, and _TALL_KERNEL its index in the kernel table; _SPLIT: the most
# columns a remainder kernel takes, 0 for none; _REMAINDER: the row panels the
# remainder kernel of this product's last panel takes at once; _A_WORDS: the
# 4-byte words a row of packed A takes per step, Isa.a_words for int8, else 1;
# _A_ITEM counts words; _REQUANT: 1 where the int kernels requantise the sums
# into int8 outputs, ``residual`` their bytes (_LDR a row) and ``clamp`` a
# record of 8 words a row, runtime.gemm.microkernel_epilogue.REQUANT_WORDS;
# _REST: the ``split`` of panel_width for B's last panel, 0 or _SPLIT,
# runtime.gemm.sgemm.rest_split).
(_M, _N, _DEPTH, _KC, _MR, _NR, _UNIT, _MT, _NT, _ROW_PANELS, _COL_PANELS, _A_ADDR, _A_ITEM, _B_MODE, _B_ADDR, _B_ITEM,
 _B_RS, _B_CS, _C_ADDR, _C_ITEM, _LDC, _ACCUMULATE, _NCP, _MCP, _BIAS_ADDR, _BIAS_ITEM, _REMAINDER,
 _RES_ADDR, _RES_ITEM, _LDR, _CLAMP_ADDR, _TAIL, _TALL, _TALL_KERNEL, _SPLIT, _A_WORDS, _TASKS, _RUN,
 _REQUANT, _REST, _PLAN_SIZE) = range(41)

PLAN_SIZE, TASKS, RUN, A_WORDS, LDR, REQUANT = _PLAN_SIZE, _TASKS, _RUN, _A_WORDS, _LDR, _REQUANT
"""For callers that plan a product once and run it from Numba
(:func:`runtime.gemm.sgemm.product_template`, :func:`run_planned`): a
plan's length, the field holding its number of tasks, and the field holding
the address of :func:`tasks_entry` (which :func:`run_placed` calls), and
the field holding the words a row of packed A takes per step."""


@jit
def _set_addresses(plan, a, b, c, bias, res, clamp, has_bias, has_res, has_clamp):
    """The operands' addresses into ``plan`` (0 for an absent one)."""
    place_addresses(plan, a.ctypes.data, b.ctypes.data, c.ctypes.data, bias.ctypes.data if has_bias else 0,
                    res.ctypes.data if has_res else 0, clamp.ctypes.data if has_clamp else 0)


@jit(inline="always")
def place_addresses(plan, a, b, c, bias, res, clamp):
    """The operands' addresses (ints; 0 for an absent one) into ``plan``."""
    plan[_A_ADDR] = a
    plan[_B_ADDR] = b
    plan[_C_ADDR] = c
    plan[_BIAS_ADDR] = bias
    plan[_RES_ADDR] = res
    plan[_CLAMP_ADDR] = clamp


@jit
def plan_shape(plan):
    """(m, n, steps, kc, mr, nr) of a plan."""
    return plan[_M], plan[_N], plan[_DEPTH], plan[_KC], plan[_MR], plan[_NR]


@jit
def run_strip(template, kernels, a, b, c, bias, res, clamp, flags):
    """Run a :func:`strip_template` plan on the calling thread: ``a`` the
    packed A's data, ``b`` the flat B strip, ``c`` / ``res`` views starting
    at the strip's first element of C / the residual, ``bias`` (m,), ``clamp``
    a clamp array (runtime.gemm.operands.CLAMP_SIZE); ``flags`` = (bias
    given, residual given, clamp given)."""
    source = typed_readonly(b)  # what it only reads typed read-only, as sgemm's entry points pass it
    _run_placed(np.int64(0), template[_TASKS], typed_readonly(template), kernels, typed_readonly(a), source, c,
                typed_readonly(bias), typed_readonly(res), typed_readonly(clamp), flags, source)


@jit
def _run_placed(start, stop, template, kernels, a, b, c, bias, res, clamp, flags, source):
    """Tasks ``[start, stop)`` of the plan ``template`` on these operands
    (``flags``: bias, residual, clamp given), each call on a copy of it
    holding their addresses: the operands go to every thread as arguments,
    so placing them costs the caller no call of its own (a Numba call from
    Python, ~3 us a product on a cold cache). ``source`` is what the tasks
    pack B from.

    The operands come in many types (ranks, layouts, read-only or not: one
    Numba signature each), so this is kept to placing addresses: the tasks
    run through the entry point whose address the template holds
    (:func:`tasks_entry`), compiled once. Called directly, the whole task
    tree would be linked, optimised and generated again inside every
    signature (42 of them in the test suite)."""
    plan = template.copy()
    place_addresses(plan, a.ctypes.data, b.ctypes.data, c.ctypes.data, bias.ctypes.data if flags[0] else 0,
                    res.ctypes.data if flags[1] else 0, clamp.ctypes.data if flags[2] else 0)
    if plan[_RUN] == 0:
        raise ValueError("a GEMM plan without its tasks' entry point (runtime.gemm.tasks.tasks_entry)")
    _call_tasks(plan[_RUN], start, stop, plan, kernels, source)


def _tasks_adapter(start, stop, plan_p, kernels_p, nkernels, source_p, nsource):
    """The C entry point of :func:`_run_tasks`: the arrays as pointers and
    lengths, rebuilt as the same typed views."""
    _run_tasks(start, stop, numba.carray(plan_p, _PLAN_SIZE), numba.carray(kernels_p, nkernels),
               numba.carray(source_p, nsource))
    return np.int64(0)


_TASKS_SIGNATURE = types.int64(types.int64, types.int64, types.CPointer(types.int64), types.CPointer(types.int64),
                               types.int64, types.CPointer(types.float32), types.int64)
_entry: list = []
_entry_lock = threading.Lock()


def tasks_entry() -> int:
    """The address of the tasks' C entry point (:func:`_run_tasks` on a plan,
    kernel table and B source), compiled or loaded from the kernel cache on
    first use; every float template holds it (field :data:`RUN`)."""
    with _entry_lock:
        if not _entry:
            _entry.append(cfunc(_TASKS_SIGNATURE, _tasks_adapter))
        return _entry[0].address


@intrinsic
def _call_tasks(typingctx, address, start, stop, plan, kernels, source):
    """Call the entry point at ``address`` (:func:`tasks_entry`) on tasks
    ``[start, stop)`` of ``plan`` with ``kernels`` and ``source``."""
    arrays = (plan, kernels, source)
    if not all(isinstance(x, types.Array) and x.ndim == 1 and x.layout == "C" for x in arrays) or (
            (plan.dtype, kernels.dtype, source.dtype) != (types.int64, types.int64, types.float32)):
        return None  # only these views have the entry point's layout
    sig = types.int64(types.int64, types.int64, types.int64, plan, kernels, source)

    def codegen(context, builder, signature, args):
        i64, f32p = ir.IntType(64), ir.FloatType().as_pointer()
        p_a, k_a, s_a = (context.make_array(signature.args[k])(context, builder, args[k]) for k in (3, 4, 5))
        fnty = ir.FunctionType(i64, [i64, i64, i64.as_pointer(), i64.as_pointer(), i64, f32p, i64])
        target = builder.inttoptr(args[0], fnty.as_pointer())
        return builder.call(target, [args[1], args[2], builder.bitcast(p_a.data, i64.as_pointer()),
                                     builder.bitcast(k_a.data, i64.as_pointer()), k_a.nitems,
                                     builder.bitcast(s_a.data, f32p), s_a.nitems])

    return sig, codegen


@jit
def _run_tasks(start, stop, plan, kernels, b_src):
    """Tasks ``[start, stop)`` (``parallel_for`` body), sharing one B buffer
    aligned to a cache line."""
    buf, at = task_buffer(plan)
    for task in range(start, stop):
        _task(task, plan, kernels, b_src, buf, at)


@jit
def task_buffer(plan):
    """The B buffer the tasks of a plan share on one thread (``run_task``),
    and where in it a cache line starts (in float32 words)."""
    panels = plan[_NCP] if plan[_B_MODE] == PACK else (1 if plan[_B_MODE] == DIRECT else 0)
    size = plan[_KC] * (plan[_NR] * panels + (LINE if plan[_TAIL] else 0))  # a wide panel's padded rows
    buf = np.empty(size + _ALIGN, np.float32)
    return buf, ((64 - buf.ctypes.data % 64) % 64) // 4


@jit
def task_block(plan, task):
    """(batch item, first row panel, last row panel + 1, first column, last
    column + 1) of a task: the part of C it writes. Chunk ``j`` of ``t``
    over ``p`` panels takes panels ``[j p // t, (j + 1) p // t)``
    (runtime.gemm.sgemm._split); the last column chunk ends at ``n``: it
    takes the columns of a wide last panel (``_TAIL``) too. Where a
    remainder kernel takes the last column panel ``g`` row panels at once
    (``_REMAINDER``), row chunks are cut in whole groups of ``g`` (the last
    takes the panels past the last whole group): cut by panels, a chunk's
    panels past its last whole group ran one at a time on the plain tile
    (a 1 x 1 output plane's 512 -> 1280 convolution, 160 row panels in 16
    chunks of 10, groups of 8: on two threads 70 us against 48 on one,
    Zen 4)."""
    n, nr = plan[_N], plan[_NR]
    row_chunks, col_chunks = plan[_MT], plan[_NT]
    rows, cols = plan[_ROW_PANELS], plan[_COL_PANELS]
    per_item = row_chunks * col_chunks
    item, rest = task // per_item, task % per_item
    row, col = rest // col_chunks, rest % col_chunks
    n0 = col * cols // col_chunks * nr
    n1 = n if col == col_chunks - 1 else (col + 1) * cols // col_chunks * nr
    unit = plan[_REMAINDER] if plan[_REMAINDER] > 1 and rows >= plan[_REMAINDER] else 1
    units = rows // unit
    m1 = rows if row == row_chunks - 1 else (row + 1) * units // row_chunks * unit
    return item, row * units // row_chunks * unit, m1, n0, n1


@jit
def _task(task, plan, kernels, b_src, buf, at):
    """One task: its row panels times its column panels of one batch item."""
    m, n, depth, kc, mr, nr, unit = plan[_M], plan[_N], plan[_DEPTH], plan[_KC], plan[_MR], plan[_NR], plan[_UNIT]
    item, first_panel, last_panel, n0, n1 = task_block(plan, task)
    mpad, npad = (m + mr - 1) // mr * mr, (n + unit - 1) // unit * unit
    a_item = plan[_A_ADDR] + 4 * item * plan[_A_ITEM]
    c_item = plan[_C_ADDR] + 4 * item * plan[_C_ITEM]
    bias_item = plan[_BIAS_ADDR] + 4 * item * plan[_BIAS_ITEM] if plan[_BIAS_ADDR] else 0
    res_item = plan[_RES_ADDR] + 4 * item * plan[_RES_ITEM] if plan[_RES_ADDR] else 0
    b_item = item * plan[_B_ITEM]
    buf_addr = buf.ctypes.data + 4 * at
    mode = plan[_B_MODE]
    tail = plan[_TAIL]
    full_end = in_place_end(n, nr, unit, tail, plan[_REST])
    packs_rest = not remainder_only(plan, n - full_end, last_panel - first_panel)
    jc = n0
    while jc < n1:
        jce = min(n1, jc + plan[_NCP] * nr)
        if n1 - jce <= tail:  # a wide last panel stays in one block
            jce = n1
        for k0 in range(0, depth, kc):
            kcp = min(kc, depth - k0)
            direct = 0
            b_block = buf_addr
            if mode == PREPACKED:
                b_block = plan[_B_ADDR] + 4 * (b_item + k0 * npad + jc * kcp)
            elif mode == PACK:
                pack_b_block(b_src, b_item, plan[_B_RS], plan[_B_CS], k0, kcp, jc, jce, nr, unit, tail, buf,
                             at, plan[_REST])
            else:
                direct = b_src.ctypes.data + 4 * (b_item + k0 * plan[_B_RS])
                if jce > full_end and packs_rest:
                    pack_b_block(b_src, b_item, plan[_B_RS], 1, k0, kcp, full_end, jce, nr, unit, tail, buf,
                                 at, plan[_REST])
                    b_block = buf_addr - 4 * (full_end - jc) * kcp
            accumulate = 1 if k0 > 0 or plan[_ACCUMULATE] else 0
            last = k0 + kcp >= depth
            ends = (res_item if last else 0, plan[_CLAMP_ADDR] if last else 0)
            _sweep(kernels, plan, a_item + 4 * plan[_A_WORDS] * k0 * mpad, b_block, direct, full_end if direct else 0,
                   c_item, bias_item if k0 == 0 else 0, kcp, first_panel, last_panel, jc, jce, accumulate, ends)
        jc = jce


@jit
def _sweep(kernels, plan, a_block, b_block, direct, full_end, c_item, bias, kcp, first_panel, last_panel, jc, jce,
           accumulate, ends):
    """Microkernel calls for row panels [first_panel, last_panel) x the
    column panels of [jc, jce), ``MC_PANELS`` row panels at a time. A column
    panel is read packed (at ``b_block``, laid out from ``jc``) or, when
    ``direct`` is the address of B's row ``k0`` and the panel lies before
    ``full_end`` (:func:`in_place_end`; 0 when nothing is read in place),
    in place with B's row stride. ``bias`` is the bias row address,
    or 0; ``ends`` the residual item's and the clamp's addresses (0: none),
    given on the last reduction block only. A remainder kernel reads its
    few columns of B in place where B's rows are (it reads only them). A column panel one ``unit``
    wide goes to the tall tile (``_TALL`` row panels at once) where the
    family has one, the rows a whole tall tile does not cover to the plain
    tile."""
    n, nr, unit, group, tail = plan[_N], plan[_NR], plan[_UNIT], plan[_REMAINDER], plan[_TAIL]
    split = plan[_SPLIT]
    tall = plan[_TALL]
    for ic in range(first_panel, last_panel, plan[_MCP]):
        ice = min(last_panel, ic + plan[_MCP])
        j = jc
        while j < jce:
            width = panel_width(j, n, nr, unit, tail, plan[_REST])
            cols = min(width, n - j)
            if j < full_end:
                b_panel, ldb = direct + 4 * j, plan[_B_RS]
            else:
                b_panel, ldb = b_block + 4 * (j - jc) * kcp, width
            first = ic
            if group and cols <= split:
                remainder = kernels[nr // unit + cols]
                rem_panel, rem_ldb = (direct + 4 * j, plan[_B_RS]) if direct else (b_panel, ldb)
                while first + group <= ice:
                    _call(remainder, plan, a_block, rem_panel, rem_ldb, c_item, bias, kcp, first, group, j, cols,
                          accumulate, ends)
                    first += group
            if tall and width == unit:
                while first + tall <= ice:
                    _call(kernels[plan[_TALL_KERNEL]], plan, a_block, b_panel, ldb, c_item, bias, kcp, first, tall, j,
                          cols, accumulate, ends)
                    first += tall
            kernel = kernels[width // unit] if width <= nr else kernels[nr // unit + split + cols - nr]
            for i in range(first, ice):
                _call(kernel, plan, a_block, b_panel, ldb, c_item, bias, kcp, i, 1, j, cols, accumulate, ends)
            j += width


@jit(inline="always")
def in_place_end(n, nr, unit, tail, split=0):
    """Where the column panels a task reads in place (B's rows contiguous)
    end: every panel B's columns fill, ``nr`` wide, a wide last one
    (``nr`` and up to ``tail`` more) or a narrower one exactly as wide as
    the columns left (N = 16: a 4 x 4 output plane), which the kernels
    read with B's row stride as they read a whole one; the rest, a ragged
    last panel or a remainder kernel's columns, is packed, padded."""
    j = n // nr * nr  # whole panels up to here
    if j == n or (j > 0 and n - j <= tail):  # no rest, or a wide last panel
        return n
    while j < n:
        width = panel_width(j, n, nr, unit, tail, split)
        if width > n - j:  # a panel past B's last column (N = 17: one 24-wide panel) is packed, padded
            return j
        j += width
    return n


@jit(inline="always")
def remainder_only(plan, rest, panels):
    """Whether the last ``rest`` columns, past the panels read in place,
    go to remainder kernels alone for a task of ``panels`` row panels
    (whole groups of them in every ``_MCP`` block): then nothing reads them
    packed and the task need not pack them."""
    group, mcp = plan[_REMAINDER], plan[_MCP]
    if group == 0 or rest <= 0 or rest > plan[_SPLIT]:
        return False
    return mcp % group == 0 and panels % mcp % group == 0


@jit(inline="always")
def _call(kernel, plan, a_block, b_panel, ldb, c_item, bias, kcp, panel, panels, col, cols, accumulate, ends):
    """One kernel call for ``panels`` row panels from ``panel`` and the
    columns from ``col``."""
    mr, ldc, ldr = plan[_MR], plan[_LDC], plan[_LDR]
    row = panel * mr
    rows = min(panels * mr, plan[_M] - row)
    if plan[_REQUANT] == 1:  # int8 outputs (bytes, ``ldr`` a row) and a requantisation record a row
        residual = ends[0] + row * ldr + col if ends[0] else 0
        clamp = ends[1] + 4 * REQUANT_WORDS * row if ends[1] else 0
    else:
        residual, clamp = ends[0] + 4 * (row * ldr + col) if ends[0] else 0, ends[1]
    call_kernel(kernel, kcp, a_block + 4 * plan[_A_WORDS] * row * kcp, b_panel, ldb, c_item + 4 * (row * ldc + col),
                ldc, rows, cols, accumulate, bias + 4 * row if bias else 0, residual, ldr, clamp)


@parallel.drives(_run_placed)
@jit
def _run_placed_team(team, state, role, spans, *args):
    index = pool_protocol.team_enter(team, state, role)
    while index >= 0:
        call_unlinked(_run_placed, (spans[index, 0], spans[index, 1]) + args)
        index = pool_protocol.team_next(team, True, role)
    return pool_protocol.team_leave(team, state, role)


@parallel.drives(_run_tasks)
@jit
def _run_tasks_team(team, state, role, spans, *args):
    index = pool_protocol.team_enter(team, state, role)
    while index >= 0:
        call_unlinked(_run_tasks, (spans[index, 0], spans[index, 1]) + args)
        index = pool_protocol.team_next(team, True, role)
    return pool_protocol.team_leave(team, state, role)


run_placed, run_planned, set_addresses, run_task = _run_placed, _run_tasks, _set_addresses, _task
"""``run_placed(start, stop, template, kernels, a, b, c, bias, res, clamp,
flags, source)`` runs tasks [start, stop) of a template on operands;
``run_planned(start, stop, plan, kernels, b_src)`` those of a plan whose
addresses ``set_addresses(plan, a, b, c, bias, res, clamp, has_bias,
has_res, has_clamp)`` filled in (both ``parallel_for`` bodies);
``run_task(task, plan, kernels, b_src, buf, at)`` one task with a buffer of
``task_buffer(plan)``, for a caller that does more after each task."""
