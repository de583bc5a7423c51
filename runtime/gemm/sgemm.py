"""Blocked GEMM on Tessera's thread pool: its planning, and float32 ``sgemm``.

``C = A @ B`` (+ a bias per row, or ``C +=``) for one product or a batch of
products of the same shape. The output is cut into tasks (batch item x a
range of ``mr``-row panels x a range of ``nr``-column panels);
``parallel_for`` runs them on :mod:`runtime.parallel`'s threads, so no other
thread pool (and no BLAS thread spinning after a call) competes for the
cores. Inside a task (Goto's scheme), for each block of ``NC_PANELS`` column
panels and each ``kc`` block of the reduction, the microkernel runs for every
(row panel, column panel) pair, ``MC_PANELS`` row panels at a time. ``A`` is
always read packed: by :func:`~runtime.gemm.pack.pack_weights` once for a
constant, or by the call (in parallel over panels). ``B`` is read packed in
advance, or packed by the task into a buffer of its own that stays in L2,
or, when its rows are contiguous, read in place (only a ragged last column
panel is packed).

Accumulation order: each ``C`` element is the sum, over the ``kc`` blocks in
increasing order, of a sequential fused multiply-add chain over the block's
products in increasing ``k`` (the bias, if any, joins the first block's
sum); ``kc`` is at most ``KC_MAX`` and the same for every block but the last
(``KC_MAX`` in :mod:`runtime.gemm.pack`). Results match numpy's BLAS to
float32 rounding: the same products, summed in another order.

Every size, stride and address is computed and checked in Python, here and
in :mod:`runtime.gemm.operands`; the Numba loops (:mod:`runtime.gemm.tasks`)
only follow the plan they are given, and the kernels stay inside the panels
and the ``rows x cols`` part of each output tile.
"""
from __future__ import annotations

import functools
import itertools

import numpy as np

from runtime import parallel
from runtime.errors import KernelError
from runtime.gemm.family import UNIT, Isa, a_words, host_isa, remainder_group, tall_kernel
from runtime.gemm.microkernel import kernel_addresses
from runtime.gemm.operands import Epilogue, Target, clamp_array, plan_product, row_bias
from runtime.gemm.pack import (
    PackedMatrix,
    block_depth,
    check_packed,
    flat_view,
    pack_left,
    roundup,
    split_columns,
    tail_columns,
)
from runtime.gemm.tasks import (
    _A_ITEM,
    _A_WORDS,
    _ACCUMULATE,
    _B_CS,
    _B_ITEM,
    _B_MODE,
    _B_RS,
    _BIAS_ITEM,
    _C_ITEM,
    _COL_PANELS,
    _DEPTH,
    _KC,
    _LDC,
    _LDR,
    _M,
    _MCP,
    _MR,
    _MT,
    _N,
    _NCP,
    _NR,
    _NT,
    _PLAN_SIZE,
    _REMAINDER,
    _RES_ITEM,
    _REST,
    _ROW_PANELS,
    _RUN,
    _SPLIT,
    _TAIL,
    _TALL,
    _TALL_KERNEL,
    _TASKS,
    _UNIT,
    DIRECT,
    PACK,
    PREPACKED,
    _run_placed,
    in_place_end,
    tasks_entry,
)
from runtime.jit import readonly
from runtime.schedule.records import GEMM, NONE

__all__ = ["sgemm", "sgemm_batched", "PackedProduct", "strip_template"]

NC_PANELS = 8
"""Column panels per B block a task packs (``kc x 8 nr`` floats: 384 KiB at most)."""
MC_PANELS = 16
"""Row panels swept against one B panel while it stays in cache."""
MIN_TASK_MACS = 1 << 18
"""Smallest task, in multiply-adds (about 5 us on a core), unless the whole product is smaller."""
SERIAL_MACS = 1 << 18
"""Products this small run on the calling thread alone."""
NARROW_WORK_COLUMNS = 8
"""A product of fewer columns counts as this many in :func:`work`."""
TASKS_PER_CHUNK = 2
"""Tasks a product is cut into per chunk the pool's threads claim: twice as
many tasks as chunks lets a schedule's tapered chunks (runtime.chunking.
tapered_chunks) end each product with single tasks, half as long. ResNet-50
on 2 threads, paired runs in two processes: 1% faster (37.5 ms against
37.9), and 0.8% in cross-socket episodes, with the tapered chunks."""
RAGGED_TASK_ROWS = 64
"""Fewest rows a task of a product takes where every task packs B's ragged
last columns (read in place otherwise: a panel B's columns do not fill, for
no remainder kernel) and the columns are not cut: each row chunk packs them
again (576 x 40 floats for a 6 x 6 output plane's 1 x 1 convolution, as long
to pack as 15 rows take to multiply), so 96 x 576 by 576 x 36 cut into 7
tasks ran 45.6 us on two threads, into 2 36.8 (AMD EPYC Zen 4; onnxruntime
33)."""
PACK_MIN_ROWS = 64
PACK_MIN_KC = 192
L1_BYTES = 32 << 10
"""A B with contiguous rows is still packed by the tasks when A has at least
``PACK_MIN_ROWS`` rows (and so has each task: a task packs the columns it
covers for its own rows, so a product whose rows are cut into chunks of
fewer packed the same B once per chunk, for too few rows to repay it:
ResNet-10 at 32 x 32 has 5 such products, MobileNetV2 10, ResNet-50 none;
Zen 3, 2 threads, Run_th with and without, alternating in one process,
median of the paired ratios: ResNet-10 0.80 and 0.88, MobileNetV2 at 96
0.96, at 224 0.96; the same engine against itself 1.00), the reduction
blocks are at least ``PACK_MIN_KC`` deep and a packed ``kc x nr`` panel fits in ``L1_BYTES`` (the smallest L1
data cache of the x86 cores we run on): read in place, a panel spans two or
three cache lines per row and no longer stays in L1 while the row panels
sweep it; packed (contiguous) it does, and enough row panels reuse it to
repay the packing. Measured on 2 threads (Zen 3, AVX2, 24-wide panels, 24
KiB packed at kc = 256): (1024, 256, 196) 68 -> 80 GMAC/s, (512, 512, 512)
69 -> 83, (128, 1152, 784) 72 -> 82; shallower or shorter products gain
nothing or lose a little ((32, 288, 3136) 69 -> 64). Where a packed panel
does not fit either (AVX-512's 48-wide panels: 36 KiB at kc = 192),
packing only costs: on Zen 4, 2 threads, reading in place was 3-20 %
faster on every product measured ((160, 49, 960) 102.7 -> 82.7 us, (64,
3136, 256) 574 -> 524 us, (512, 49, 2048) 516 -> 475 us). Same results."""

_NO_SOURCE = np.zeros(1, np.float32)
_NO_SOURCE.flags.writeable = False
_FLAGS = {key: np.array(key, np.bool_) for key in itertools.product((False, True), repeat=3)}
"""(bias, residual, clamp) given, as a plan's operands are flagged."""


# ---------------------------------------------------------------- float32 entry points
def sgemm(a, b, out=None, *, packed_a=None, packed_b=None, bias=None, accumulate=False, residual=None,
          clamp=None) -> np.ndarray:
    """``a @ b`` for float32 matrices ``a`` (M, K) and ``b`` (K, N) of any
    strides, plus ``bias`` (M,) per row if given; into ``out`` (M, N) when
    given, added to it with ``accumulate``. ``packed_a`` / ``packed_b``
    (:func:`~runtime.gemm.pack.pack_weights`) replace ``a`` / ``b``, which
    may then be None. The epilogue a convolution needs comes last, on each
    output tile while it is in registers: ``residual`` (M, N) is added, and
    the result clamped to ``clamp`` = (low, high) (numpy's ``maximum`` then
    ``minimum``; (0, inf) is a ReLU), or ``clamp`` is a clamp array
    (runtime.gemm.operands.clamp_array: the clamp then a HardSwish or
    HardSigmoid gate)."""
    return _float_product(a, b, out, packed_a, packed_b, bias, accumulate, residual, clamp, batched=False)


def sgemm_batched(a, b, out=None, *, packed_a=None, packed_b=None, bias=None, accumulate=False, residual=None,
                  clamp=None) -> np.ndarray:
    """``out[g] = a[g] @ b[g] (+ bias[g][:, None])`` for ``a`` (G, M, K) and
    ``b`` (G, K, N): all products share the thread pool (e.g. Winograd's 16
    or 36 products); ``residual`` (G, M, N) and ``clamp`` as in :func:`sgemm`."""
    return _float_product(a, b, out, packed_a, packed_b, bias, accumulate, residual, clamp, batched=True)


def _float_product(a, b, out, packed_a, packed_b, bias, accumulate: bool, residual, clamp,
                   batched: bool) -> np.ndarray:
    """Validate, pack what is not packed, run."""
    op, f32 = ("sgemm_batched" if batched else "sgemm"), (np.dtype(np.float32),)
    (batch, m, n, depth), out, biases, done = plan_product(op, (a, packed_a, f32), (b, packed_b, f32), out, bias,
                                                          accumulate, batched, np.float32)
    epilogue = Epilogue.of(op, residual, clamp, out)
    if done:
        epilogue.apply(out)
        return out
    isa = host_isa() if packed_a is None else packed_a.isa  # a narrow packing runs its own family's kernels
    if packed_b is not None and isa != host_isa():
        raise KernelError(f"{op}: an A packed narrow multiplies an unpacked B only")
    kc = block_depth(depth)
    if packed_a is None:
        flat, strides = flat_view(a if batched else a[None])
        a_data = pack_left(flat, strides, batch, m, depth, kc, isa, batch * work(m, n, depth) <= SERIAL_MACS)
    else:
        a_data = packed_a.data
    if packed_b is None:
        b_src, (b_item, b_rs, b_cs) = flat_view(b if batched else b[None])
        b_mode = b_reading(m, kc, b_cs, isa)
    else:
        b_src, b_item, b_rs, b_cs, b_mode = packed_b.data, depth * roundup(n, UNIT), 0, 0, PREPACKED
    with Target(out, (a, b, bias, epilogue.residual)) as target:
        launch(target, "f32", isa, (batch, m, n, depth, kc), a_data,
               (b_mode, b_src, b_item, b_rs, b_cs), biases, accumulate, epilogue)
    return out


def b_reading(m: int, kc: int, column_stride: int, isa: Isa) -> int:
    """How the tasks read an unpacked B of ``column_stride`` (elements) in a
    product with ``m`` rows and reduction blocks of ``kc`` on ``isa``'s
    panels: PACK or DIRECT (:data:`PACK_MIN_ROWS`)."""
    if column_stride != 1 or (m >= PACK_MIN_ROWS and kc >= PACK_MIN_KC and kc * isa.nr * 4 <= L1_BYTES):
        return PACK
    return DIRECT


class PackedProduct:
    """``sgemm(None, b, out, packed_a=packed, bias=bias, residual=r, clamp=clamp)``
    planned once for one layout: ``b`` (K, ``n``), ``out`` and ``r`` (M,
    ``n``), all float32 and C-contiguous, ``out`` a fresh array (for G packed
    matrices, a grouped convolution's: ``b`` (G, K, ``n``), ``out`` and ``r``
    (G, M, ``n``), ``bias`` (G, M)). Every check and the plan are done here;
    :meth:`run` only places the operands (a layer calls it every inference,
    where the general entry's Python cost as much as a small layer's
    product). Holds ``packed`` and the bias, so their ids can key a cache."""

    def __init__(self, packed, n: int, bias=None, clamp=None, residual: bool = False):
        batched = isinstance(packed, PackedMatrix) and len(packed.shape) == 3
        op, f32 = "sgemm_batched" if batched else "sgemm", (np.dtype(np.float32),)
        check_packed(f"{op}: packed_a", packed, "left", batched, f32[0])
        (m, depth), batch = packed.matrix, packed.batch
        self.packed, self.owners = packed, (packed, bias)  # owners: alive while the product is, so are their ids
        self.shape, self.b_shape = ((batch, m, n), (batch, depth, n)) if batched else ((m, n), (depth, n))
        self.bias = row_bias(op, bias, batch, m, np.float32, batched)
        self.clamp, self.residual = clamp_array(op, clamp), residual
        self.single_block = block_depth(depth) >= depth
        """One reduction block: each output tile is written once, after it read
        its residual, so ``out`` may be the residual itself."""
        self.isa = packed.isa  # the host's family, or its narrow one (runtime.gemm.family.narrow_isa)
        self.kernels = kernel_addresses(self.isa, "f32")
        dims = (batch, m, n, depth, block_depth(depth))
        strides = (m * n * 4, n * 4, 4)
        reading = b_reading(m, dims[-1], 1, self.isa)
        self.template = readonly(_plan_template("f32", self.isa, dims, (reading, None, depth * n, n, 1), strides,
                                                self.bias, strides if residual else None, False))
        self.tasks = int(self.template[_TASKS])
        self.serial = batch * work(m, n, depth) <= SERIAL_MACS or self.tasks == 1
        self.flags = _FLAGS[self.bias is not None, residual, self.clamp is not None]
        self.bias_or_none = _NO_SOURCE if self.bias is None else readonly(self.bias)  # read-only, as in _execute
        self.clamp_or_none = _NO_SOURCE if self.clamp is None else readonly(self.clamp)
        self.a_data = readonly(packed.data)

    def run(self, b: np.ndarray, out: np.ndarray, residual: np.ndarray | None = None) -> np.ndarray:
        """``out`` = the product of ``b``, with the bias, ``residual`` and clamp.
        ``out`` may be ``residual`` itself when the reduction is one block
        (:attr:`single_block`; with several, C holds partial sums before the
        last block adds the residual)."""
        if (b.dtype != np.float32 or b.shape != self.b_shape or not b.flags.c_contiguous
                or out.dtype != np.float32 or out.shape != self.shape or not out.flags.c_contiguous
                or (residual is None) == self.residual
                or (residual is not None and (residual.dtype != np.float32 or residual.shape != self.shape
                                              or not residual.flags.c_contiguous))):
            raise KernelError(f"PackedProduct: operands do not match the planned layout "
                              f"(b {list(self.b_shape)}, out {list(self.shape)}, residual {self.residual})")
        in_place = self.single_block and residual is not None and out.ctypes.data == residual.ctypes.data
        if np.may_share_memory(out, b) or (residual is not None and not in_place
                                           and np.may_share_memory(out, residual)):
            raise KernelError("PackedProduct: out overlaps an input")
        source = readonly(b.reshape(-1))  # C-contiguous (checked): the flat elements, as the tasks read them
        args = (self.template, self.kernels, self.a_data, source, out, self.bias_or_none,
                _NO_SOURCE if residual is None else readonly(residual), self.clamp_or_none, self.flags, source)
        if self.serial:
            _run_placed(0, self.tasks, *args)
        else:
            parallel.parallel_for(_run_placed, self.tasks, *args)
        return out

    def lower(self, ctx, b: tuple, out: tuple, residual: tuple | None) -> None:
        """This product as one schedule operation (runtime.schedule): ``b``,
        ``out`` and ``residual`` are the (base, offset) of C-contiguous
        operands of the planned layout, ``out`` apart from ``b`` and, unless
        the reduction is one block, from ``residual``."""
        record = gemm_record(ctx, self.template, self.kernels, self.packed.data, b, int(np.prod(self.b_shape)),
                             out, self.bias, residual, self.clamp)
        emit_gemm(ctx, record, self.tasks, self.serial, b[0])


def emit_gemm(ctx, record: list, tasks: int, serial: bool, b_base: int) -> None:
    """A GEMM operation (runtime.schedule.ops) of ``record``'s ``tasks``; each reads lines of all of B."""
    ctx.emit(GEMM, record, tasks, spans=[(0, tasks)] if serial else None, spread=(b_base,))


def gemm_record(ctx, template: np.ndarray, kernels: np.ndarray, a_data: np.ndarray | tuple, b: tuple, b_size: int,
                out: tuple, bias: np.ndarray | None, residual: tuple | None, clamp: np.ndarray | None) -> list:
    """A planned product's GEMM schedule record: ``b``, ``out``, ``residual`` (and ``a_data`` where
    the schedule packs A: runtime.gemm.computed) are (base, offset) pairs, the arrays pinned."""
    return [*ctx.pin(template), *ctx.pin(kernels), kernels.size,
            *(ctx.pin(a_data) if isinstance(a_data, np.ndarray) else a_data), *b, b_size, *out,
            *(NONE if bias is None else ctx.pin(bias)), *(NONE if residual is None else residual),
            *(NONE if clamp is None else ctx.pin(clamp))]


# ---------------------------------------------------------------- strips, run from Numba
@functools.lru_cache(maxsize=1024)
def strip_template(m: int, n: int, depth: int, ldc: int, has_bias: bool, has_residual: bool) -> np.ndarray:
    """The plan of one float32 product ``C (m x n, row stride ldc) = A (m x
    depth, packed) @ B (depth x n, C-contiguous, read in place)``, with a bias
    per row and a residual of C's layout when flagged, as a single task for
    :func:`~runtime.gemm.tasks.run_strip`: for callers that cut their own
    work into column strips and run them from Numba (each thread producing
    its B strip in a buffer of its own, as an im2col by bands of output rows
    does). Cached (callers only read it)."""
    if min(m, n, depth) < 1 or ldc < n:
        raise KernelError(f"strip_template: no product of {m} x {depth} by {depth} x {n} with row stride {ldc}")
    isa = host_isa()
    strides = (m * ldc * 4, ldc * 4, 4)
    bias = np.zeros((1, m), np.float32) if has_bias else None
    kc = block_depth(depth)
    template = _plan_template("f32", isa, (1, m, n, depth, kc), (b_reading(m, kc, 1, isa), None, depth * n, n, 1),
                              strides, bias, strides if has_residual else None, False, split=False)
    template.flags.writeable = False
    return template


def product_template(kind: str, dims: tuple, out_strides: tuple, bias_len: int, accumulate: bool,
                     split: bool) -> np.ndarray:
    """The plan (addresses left to
    :func:`~runtime.gemm.tasks.set_addresses`) of ``C (m x n, ``out_strides``
    in bytes) [+]= A @ B + bias`` with ``kind`` kernels, for callers that
    pack both operands themselves (B prepacked, laid out as
    ``pack_right_int8`` lays it) and run the plan from Numba
    (:func:`~runtime.gemm.tasks.run_planned`, on one thread or over the
    pool): ``dims`` = (m, n, steps), ``bias_len`` the bias array's length
    (rounded-up rows); tasks for every thread if ``split``, else one."""
    isa = host_isa()
    m, n, steps = dims
    return _plan_template(kind, isa, (1, m, n, steps, block_depth(steps)), (PREPACKED, None, steps * roundup(n, UNIT),
                                                                          0, 0),
                          out_strides, np.zeros((1, bias_len), np.float32), None, accumulate, split=split)


# ---------------------------------------------------------------- planning
def launch(out: np.ndarray, kind: str, isa: Isa, dims: tuple, a_data: np.ndarray, b: tuple,
           bias: np.ndarray | None, accumulate: bool, epilogue: Epilogue | None = None) -> None:
    """Run the blocked product into ``out`` ((batch,) M x N, 4-byte
    elements, unit column stride) with ``isa``'s ``kind`` kernels.
    ``dims`` = (batch, M, N, steps, kc); ``a_data`` is the packed A; ``b`` =
    (mode, source, item stride, row stride, column stride), the strides in
    elements of the source (for a prepacked source, its lanes per item);
    ``bias`` (batch, mpad or M) is added to the rows, or None; ``epilogue``
    (float only) adds a residual and clamps, on the last reduction block."""
    batch, m, n, steps, kc = dims
    b_mode, b_src = b[:2]
    out3 = out if out.ndim == 3 else out[None]
    residual = None if epilogue is None else epilogue.residual
    res3 = None if residual is None else (residual if residual.ndim == 3 else residual[None])
    clamp = None if epilogue is None else epilogue.clamp
    template = planned(kind, isa, dims, b, out3.strides, bias, None if res3 is None else res3.strides, accumulate)
    _execute(template, kernel_addresses(isa, kind), batch * work(m, n, steps) <= SERIAL_MACS,
             (a_data, b_src, out3, bias, res3, clamp),
             b_src if b_mode != PREPACKED else _NO_SOURCE)


def planned(kind: str, isa: Isa, dims: tuple, b: tuple, out_strides: tuple, bias: np.ndarray | None,
            res_strides: tuple | None, accumulate: bool) -> np.ndarray:
    """The plan template of a product (:func:`launch`'s arguments, the
    strides those of the 3-D output and residual), kept by layout."""
    b_mode, _, b_item, b_rs, b_cs = b
    key = (kind, isa, dims, b_mode, b_item, b_rs, b_cs, out_strides, None if bias is None else int(bias.shape[-1]),
           res_strides, bool(accumulate), parallel.NUM_THREADS)  # no bias: not True, which equals a 1-row bias
    template = _plans.get(key)
    if template is None:
        if len(_plans) >= _MAX_PLANS:
            _plans.clear()
        template = _plans[key] = _plan_template(kind, isa, dims, b, out_strides, bias, res_strides, accumulate)
    return template


def lower_sgemm(ctx, packed_a: PackedMatrix, b, out: tuple, out_strides: tuple, bias: np.ndarray | None = None,
                residual: tuple | None = None, clamp: np.ndarray | None = None, matrix: tuple | None = None) -> None:
    """``sgemm_batched(None, b, out, packed_a=packed_a, bias=bias,
    residual=residual, clamp=clamp)`` as one schedule operation
    (runtime.schedule): ``b`` a C-contiguous (G, K, N) operand, or with
    ``matrix`` = (K, N) a C-contiguous (G, item) one whose rows begin with
    the (K, N) matrices; ``out`` the (base, offset) of the (G, M, N) output
    with byte ``out_strides``, and ``residual`` the (base, offset) of one of
    the same strides, both apart from ``b``; ``bias`` (G, M) and ``clamp``
    (runtime.gemm.operands.clamp_array) float32 arrays."""
    emit_gemm(ctx, *sgemm_record(ctx, packed_a, b, out, out_strides, bias, residual, clamp, matrix), b.base)


def sgemm_record(ctx, packed_a: PackedMatrix, b, out: tuple, out_strides: tuple, bias: np.ndarray | None = None,
                 residual: tuple | None = None, clamp: np.ndarray | None = None,
                 matrix: tuple | None = None) -> tuple[list, int, bool]:
    """:func:`lower_sgemm`'s operation, not emitted (for one that runs the tasks among other work): its
    GEMM record, its number of tasks, and whether they are few enough for one thread."""
    if matrix is None:
        batch, depth, n = b.shape
        item = depth * n
    else:
        (batch, item), (depth, n) = b.shape, matrix
        if depth * n > item:
            raise ValueError("the matrices do not fit B's rows")
    m = packed_a.matrix[0]
    if (packed_a.side, packed_a.batch, *packed_a.matrix) != ("left", batch, m, depth) or packed_a.dtype != np.float32:
        raise ValueError("the packed A does not fit B")
    isa, kc = packed_a.isa, block_depth(depth)
    b_mode = b_reading(m, kc, 1, isa)
    template = planned("f32", isa, (batch, m, n, depth, kc), (b_mode, None, item, n, 1), out_strides, bias,
                       None if residual is None else out_strides, False)
    tasks = int(template[_TASKS])
    serial = tasks == 1 or batch * work(m, n, depth) <= SERIAL_MACS
    return (gemm_record(ctx, template, kernel_addresses(isa, "f32"), packed_a.data, b.ref(), batch * item, out, bias,
                         residual, clamp), tasks, serial)


def _execute(template: np.ndarray, kernels: np.ndarray, serial: bool, operands: tuple, source: np.ndarray) -> None:
    """Run a plan ``template`` with ``kernels`` (:func:`kernel_addresses`)
    on ``operands`` = (packed A, B, C, bias, residual, clamp; the last three
    may be None): their addresses go into a copy of the template, and its
    tasks run on the calling thread (``serial`` or a single task) or the
    pool. ``source`` is what the tasks pack B from. Everything but C goes
    read-only (the tasks only read it), however the caller's arrays are
    flagged: one compiled :func:`_run_placed` per operand layout."""
    a, b, c, bias, res, clamp = operands
    args = (readonly(template), kernels, readonly(a), readonly(b), c,
            *(_NO_SOURCE if x is None else readonly(x) for x in (bias, res, clamp)),
            _FLAGS[bias is not None, res is not None, clamp is not None], readonly(source))
    tasks = int(template[_TASKS])
    if tasks == 1 or serial:
        _run_placed(0, tasks, *args)
    else:
        parallel.parallel_for(_run_placed, tasks, *args)


_MAX_PLANS = 4096
_plans: dict[tuple, np.ndarray] = {}
"""Plan templates (every field but the addresses) by operand layout: a
model's layers call the same shapes on every run, and building a plan in
Python cost as much as a small layer's product."""


def _plan_template(kind: str, isa: Isa, dims: tuple, b: tuple, out_strides: tuple, bias, res_strides,
                   accumulate, split: bool = True) -> np.ndarray:
    """Every field of a plan but the addresses (``out_strides`` and
    ``res_strides``: of the (batch, M, N) output and residual, in bytes);
    one task per batch item unless ``split``."""
    batch, m, n, steps, kc = dims
    b_mode, _, b_item, b_rs, b_cs = b
    tail = 0 if b_mode == PREPACKED else tail_columns(isa, kind)
    rest = 0 if b_mode == PREPACKED else rest_split(n, isa, kind)
    group = remainder_rows(n, isa, kind, tail, rest)
    if split:
        mt, nt, row_panels, col_panels = _split(batch, m, n, steps, isa, tail, group)
    else:
        mt, nt, (row_panels, col_panels) = 1, 1, _panels(m, n, isa, tail)
    if b_mode == PACK and b_cs == 1 and -(-row_panels // mt) * isa.mr < PACK_MIN_ROWS:
        b_mode = DIRECT  # each task packs its own columns: too few rows of its own reuse them (PACK_MIN_ROWS)
    if b_mode == DIRECT and nt == 1 and not group and n > in_place_end(n, isa.nr, UNIT, tail, rest):
        mt = min(mt, -(-m // RAGGED_TASK_ROWS))  # every task packs the ragged columns (no remainder kernel takes them)
    fields = {
        _M: m, _N: n, _DEPTH: steps, _KC: kc, _MR: isa.mr, _NR: isa.nr, _UNIT: UNIT,
        _MT: mt, _NT: nt, _ROW_PANELS: row_panels, _COL_PANELS: col_panels,
        _A_ITEM: steps * roundup(m, isa.mr) * a_words(kind, isa.vnni),
        _B_MODE: b_mode, _B_ITEM: b_item, _B_RS: b_rs, _B_CS: b_cs,
        _C_ITEM: out_strides[0] // 4, _LDC: out_strides[1] // 4,
        _ACCUMULATE: int(bool(accumulate)), _NCP: NC_PANELS, _MCP: MC_PANELS,
        _BIAS_ITEM: 0 if bias is None else bias.shape[-1], _REMAINDER: group,
        _TAIL: tail, _TALL: isa.tall_panels if tall_kernel(isa, kind) else 0, _TALL_KERNEL: tall_kernel(isa, kind),
        _SPLIT: split_columns(isa, kind), _REST: rest, _A_WORDS: a_words(kind, isa.vnni),
        _RES_ITEM: 0 if res_strides is None else res_strides[0] // 4,
        _LDR: 0 if res_strides is None else res_strides[1] // 4,
        _TASKS: batch * mt * nt,
        _RUN: tasks_entry(),
    }
    plan = np.zeros(_PLAN_SIZE, np.int64)
    for index, value in fields.items():
        plan[index] = value
    return plan


def rest_split(n: int, isa: Isa, kind: str) -> int:
    """The ``split`` of :func:`~runtime.gemm.pack.panel_width` for the B of an ``n``-column
    product that its tasks read in place or pack (a plan's ``_REST``):
    :func:`split_columns` where the last panel's ``r`` columns (under
    ``nr``, more than ``UNIT``, ``r % UNIT`` of them at most the remainder
    kernels' width) are better read as a panel of the whole ``UNIT`` columns in
    place and the rest by a remainder kernel than as one panel padded up:
    where the padded panel's rows take one vector more (AVX-512: 17 to 20
    columns take 16 in place and a remainder, not 24; 33 to 36, 32, not
    40; AVX2: 9 to 11, 17 to 19); else 0, the padded panel. Packing that
    panel cost each task as much as its ragged columns' products, and a
    product whose rows were cut into tasks packed it in every one (so its
    rows were cut little: 64 x 384 by 384 x 36, a 6 x 6 plane's 1 x 1
    convolution, ran as one task). AMD EPYC Zen 4, the two layouts
    alternating in one process, median time ratio: 64 x 384 by 384 x N on
    one thread N = 17-20 0.58-0.61, 33-36 0.76-0.78; on two (one task ->
    two for 36) 0.58-0.62 and 0.75-0.76; (160, 960, 36) 0.82 and 0.74;
    (512, 2048, 36) on two 0.78; AVX2 kernels on the same host: (320, 960,
    9) 0.79 and 0.72, (2048, 512, 9) 0.77 and 0.84, (256, 2304, 17) 0.83
    and 0.78. Where both take as many vectors the padded panel stays: for
    25 to 28 columns (24 or 32) the two ran even (0.99-1.02) or the
    remainder pass over A cost more than the packing saved ((200, 576, 25)
    1.11, its 25 row panels not whole groups of the remainder kernel's 8:
    one task packs the rest anyway; (48, 256, 169) 1.05); for 41 to 44 (40
    or 48) the split ran 0.87-0.89, but no model measured has such a rest
    and the rule keeps to the vectors. Before 2026-11 every rest of 1 to 3
    past ``UNIT`` columns was split so on AVX2, and on Zen 3 N = 9 was
    measured 5-25 % slower for it, with the remainder kernels of that time
    (see :func:`~runtime.gemm.pack.panel_width`); narrow products now take
    :func:`~runtime.gemm.family.narrow_isa`'s packing."""
    split = split_columns(isa, kind)
    rest = n % isa.nr if n > isa.nr else n
    if not split or rest <= UNIT or n > isa.nr and rest <= tail_columns(isa, kind) or not 0 < rest % UNIT <= split:
        return 0
    return split if len(isa.vectors(rest // UNIT * UNIT)) < len(isa.vectors(roundup(rest, UNIT))) else 0


def remainder_rows(n: int, isa: Isa, kind: str, tail: int, rest: int = 0) -> int:
    """The row panels the remainder kernel of the last column panel of an
    ``n``-column product takes at once (runtime.gemm.family.remainder_group),
    or 0 where no remainder kernel runs it."""
    split = split_columns(isa, kind)
    cols = n - in_place_end(n, isa.nr, UNIT, tail, rest)  # past the panels B's columns fill: the last one's
    return remainder_group(isa, cols) if split and 0 < cols <= split else 0


def _split(batch: int, m: int, n: int, depth: int, isa: Isa, tail: int = 0,
           group: int = 0) -> tuple[int, int, int, int]:
    """Cut each product into tasks of (row panels x column panels), enough
    for every thread to claim several, none under ``MIN_TASK_MACS``
    multiply-adds unless the product is. Columns are split first: a task
    packs the B columns it covers, so splitting rows packs the same B twice.
    A wide last panel (``nr`` and up to ``tail`` columns) counts as one.
    Chunk ``j`` of ``t`` over ``p`` panels takes panels ``[j p // t, (j + 1)
    p // t)`` (:func:`~runtime.gemm.tasks.task_block`): chunks differ by one
    panel at most and there are as many as wanted, but no more row chunks
    than whole ``group``s of row panels where the last column panel runs
    on a remainder kernel taking ``group`` at once (a 256-row product with
    4 columns: 4 chunks of 8 panels, not 9 of 3 or 4, which the remainder
    kernel would never see). Few tasks (fewer than the threads claim
    chunks, each task then a chunk of its own) are a multiple of the
    threads where tasks of at least half ``MIN_TASK_MACS`` allow it: 3
    tasks on 2 threads left one thread a third of the product to run
    while the other waited at the schedule's barrier (a 12 x 12 plane's
    1 x 1 convolutions, 32 x 192 by 192 x 144: 3 column panels, now 6
    tasks); a product of one task is cut in two. Float programs on 2
    threads, Zen 4, in-process A/B against the plain count: MobileNetV2 at
    96 0.945 and 0.964 of the time (A/A 0.994), PP-LCNet 0.983, MobileNetV2
    at 224 0.985, SqueezeNet 0.998 and ResNet-10 at 32 1.004 (noise);
    Run_sw (the int8 products are cut alike) SqueezeNet 0.977, MobileNetV2
    at 96 0.964, PP-LCNet 0.972, ResNet-10 0.997 (A/A 1.005).
    Returns (row chunks, column chunks, row panels, column panels)."""
    row_panels, col_panels = _panels(m, n, isa, tail)
    threads = parallel.NUM_THREADS
    wanted = 1
    if threads > 1:
        wanted = -(-threads * parallel.CHUNKS_PER_THREAD * TASKS_PER_CHUNK // batch)
        wanted = max(1, min(wanted, work(m, n, depth) // MIN_TASK_MACS))
    mt, nt = _cut(wanted, row_panels, col_panels, group)
    tasks = batch * mt * nt
    if threads > 1 and tasks % threads and tasks < threads * parallel.CHUNKS_PER_THREAD:
        even = -(-tasks // threads) * threads
        if batch * work(m, n, depth) // even >= MIN_TASK_MACS // 2:
            mt_even, nt_even = _cut(-(-even // batch), row_panels, col_panels, group)
            if batch * mt_even * nt_even % threads == 0:
                mt, nt = mt_even, nt_even
    return mt, nt, row_panels, col_panels


def _cut(wanted: int, row_panels: int, col_panels: int, group: int) -> tuple[int, int]:
    """Row and column chunks for ``wanted`` tasks of a product: columns
    first, then rows, no more row chunks than whole groups of ``group`` row
    panels (:func:`_split`)."""
    nt = max(1, min(wanted, col_panels))
    mt = max(1, min(-(-wanted // nt), row_panels))
    if group > 1:
        mt = max(1, min(mt, row_panels // group))
    return mt, nt


def work(m: int, n: int, depth: int) -> int:
    """A product's work in multiply-adds, for how many tasks it is cut
    into (:data:`MIN_TASK_MACS`, :data:`SERIAL_MACS`): a product of fewer
    than :data:`NARROW_WORK_COLUMNS` columns counts as that many. Such a
    product is bound by reading A, not by its arithmetic (512 x 256 by
    256 x 1, a 1 x 1 output plane's convolution: 21 us on one Zen 4 core,
    6 G multiply-adds a second where a wide product does 54), so counted
    by its multiply-adds it ran as one task on one core, the other core
    waiting at the operation's barrier."""
    return m * max(n, NARROW_WORK_COLUMNS) * depth


def _panels(m: int, n: int, isa: Isa, tail: int) -> tuple[int, int]:
    """Row and column panels of an m x n product, a wide last column panel
    (``nr`` and up to ``tail`` columns) counting as one."""
    col_panels = -(-n // isa.nr)
    if n > isa.nr and 0 < n % isa.nr <= tail:
        col_panels -= 1
    return -(-m // isa.mr), col_panels


