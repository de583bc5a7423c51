"""The schedule's operations, and the driver that runs them on every thread.

An operation is one kind of kernel call over chunks of its work (the
``start, stop`` every parallel kernel takes), with its operands in a record:
a run of int64 in the schedule's ``recs``. An operand is a pair (base,
offset): ``bases[base] + offset`` is its address, where ``bases`` holds the
address of each buffer the schedule reads or writes (the arena, a constant,
a program input: :mod:`runtime.schedule.builder`). The adapters here make
arrays of those addresses (``carray``) and call the kernels the per-step
path calls, with the same arguments, so a scheduled run computes the same
bits. Every size and address was checked in Python when the schedule was
built; nothing here checks again. (runtime.schedule.addresses turns
operands into arrays; runtime.schedule.moves holds the adapters of the
operations that only move data.)
"""
from __future__ import annotations

import threading

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic
from numba.np.unsafe.ndarray import to_fixed_tuple

from runtime.gemm.gemv import dot_rows
from runtime.gemm.operands import CLAMP_SIZE
from runtime.gemm.pack import pack_a_panels
from runtime.gemm.tasks import PLAN_SIZE, TASKS, place_addresses, run_planned
from runtime.jit import cfunc, jit, typed_readonly
from runtime.kernels.conv_epilogue import finish_columns
from runtime.kernels.depthwise_blocks import KSIZE as BLOCK_KSIZE
from runtime.kernels.depthwise_blocks import VB as BLOCK_LANES
from runtime.kernels.depthwise_blocks import block_planes
from runtime.kernels.depthwise_ir import TABLE, depthwise_ir_run
from runtime.kernels.fused_interpreter import MAX_DIMS as FUSED_DIMS
from runtime.kernels.fused_interpreter import MAX_INPUTS as FUSED_INPUTS
from runtime.kernels.fused_interpreter import run_blocks as fused_blocks
from runtime.kernels.nn_depthwise_3x3 import depthwise_padded_3x3
from runtime.kernels.nn_direct import direct_units, pad_planes
from runtime.kernels.nn_expand import expand_depthwise
from runtime.kernels.nn_im2col import col2im_planes, im2col_rows, run_bands
from runtime.kernels.nn_rows import run_row_bands
from runtime.kernels.norm import layer_norm_rows, lrn_planes, softmax_rows
from runtime.kernels.pool_loops import avg_pool_planes, max_pool_2d_rows, plane_means
from runtime.kernels.winograd_ir import KERNELS, input_tiles_ir, output_tiles_ir
from runtime.pool_protocol import (
    ALONE,
    FINISHED,
    RESUME,
    WORKER,
    phase_begin,
    phase_claim,
    phase_done,
    phase_end,
    phase_wait,
)
from runtime.schedule import moves
from runtime.schedule.addresses import address, bool_ptr, f32, f32_ptr, f64_ptr, i64, records
from runtime.schedule.records import (
    AVG_POOL,
    BANDS,
    CHANNEL_SCALE,
    COL2IM,
    COPY,
    DEPTHWISE,
    DIRECT,
    DOT_ROWS,
    DW_BLOCKS,
    DW_IR,
    EXPAND_DEPTHWISE,
    FUSED,
    GEMM,
    GEMM_FIELDS,
    GEO,
    IM2COL,
    IM2COL_FIELDS,
    LAYER_NORM,
    LRN,
    MAX_POOL,
    OWN_COLUMNS,
    PACK_LEFT,
    PAD,
    PLANE_MEANS,
    RESIZE_LINEAR,
    RESIZE_NEAREST,
    SOFTMAX,
    TRANSPOSE,
    WINOGRAD_IN,
    WINOGRAD_OUT,
)

ENTRY, REC, FIRST, COUNT, KIND = range(5)
"""Fields of a row of ``ops``: its adapter's entry point
(:func:`op_address`), where its record starts in ``recs``, its first span
in ``spans``, its number of spans (chunks), and its kind."""


@jit(inline="always")
def _flags(a, b, c):
    flags = np.empty(3, np.bool_)
    flags[0], flags[1], flags[2] = a != 0, b != 0, c != 0
    return flags


# ---------------------------------------------------------------- adapters
def _gemm(start, stop, rec, nrec, bases, nbases):
    """Tasks of a planned float32 product (runtime.gemm.tasks): rec =
    template, kernel table (and its length), A, B (and its elements),
    C, bias, residual, clamp (absent ones: base 0)."""
    rec, bases = records(rec, nrec, bases, nbases)
    _planned(start, stop, rec, bases, address(rec, 7, bases))


@jit(inline="always")
def _planned(start, stop, rec, bases, b):
    """Tasks ``[start, stop)`` of the product of a GEMM record, its B at
    address ``b``."""
    plan = i64(rec, 0, bases, PLAN_SIZE).copy()
    place_addresses(plan, address(rec, 5, bases), b, address(rec, 10, bases), address(rec, 12, bases),
                    address(rec, 14, bases), address(rec, 16, bases))
    run_planned(start, stop, plan, i64(rec, 2, bases, rec[4]), numba.carray(f32_ptr(b), rec[9]))


def _pack_left(start, stop, rec, nrec, bases, nbases):
    """Row panels of a computed left operand packed for a GEMM operation
    (runtime.gemm.computed), by the per-step path's packing: rec = source
    (and its elements), row, column and item strides, rows, depth, kc,
    panel rows, destination (and its elements)."""
    rec, bases = records(rec, nrec, bases, nbases)
    pack_a_panels(start, stop, numba.carray(f32_ptr(address(rec, 0, bases)), rec[2]), rec[3], rec[4], rec[5], rec[6],
                  rec[7], rec[8], rec[9], numba.carray(f32_ptr(address(rec, 10, bases)), rec[12]))


def _own_columns(start, stop, rec, nrec, bases, nbases):
    """Parts ``[start, stop)`` of a small convolution's product, each
    building the whole column matrix in a buffer of its own first
    (runtime.kernels.nn_im2col.lower_own_columns): rec = the product's GEMM
    record (GEMM_FIELDS), then the IM2COL record of part 0's matrix
    (IM2COL_FIELDS; the GEMM's B is that matrix too), the number of parts
    and the bytes between two parts' buffers. Part ``p`` runs tasks ``[p T
    // parts, (p + 1) T // parts)`` of the product's T; a call of several
    parts builds one matrix."""
    rec, bases = records(rec, nrec, bases, nbases)
    im = rec[GEMM_FIELDS:]
    parts, tasks = im[IM2COL_FIELDS], i64(rec, 0, bases, PLAN_SIZE)[TASKS]
    b = address(im, 6, bases) + start * im[IM2COL_FIELDS + 1]
    _columns(np.int64(0), im[8], im, bases, b)  # an int64 start: a literal 0 compiles im2col_rows again
    _planned(start * tasks // parts, stop * tasks // parts, rec, bases, b)


def _direct(start, stop, rec, nrec, bases, nbases):
    """Parts ``[start, stop)`` of a direct convolution of one image
    (runtime.kernels.nn_direct.lower_direct): rec = X (C, H, W) [0-4], the parts'
    padded buffers, the bytes between two, (Hp, Wp), the top and left pads
    [5-11], the kernel table and its length [12-14], the packed weights
    [15, 16], the offsets and positions tables [17-20], Y (M, N), the bias,
    the residual, the clamp (absent ones: base 0) [21-28], (M, N, depth,
    kc, mr, panels, cols) [29-35], the units and the parts [36, 37]. A call
    pads the image into part ``start``'s buffer, then runs units ``[start U
    // parts, stop U // parts)`` of the U."""
    rec, bases = records(rec, nrec, bases, nbases)
    c, h, w, hp, wp = rec[2], rec[3], rec[4], rec[8], rec[9]
    padded = address(rec, 5, bases) + start * rec[7]
    pad_planes(f32(rec, 0, bases, (c, h, w)),
               numba.carray(f32_ptr(padded), (c, hp, wp)), rec[10], rec[11])
    total, parts = rec[36], rec[37]
    direct_units(start * total // parts, stop * total // parts, i64(rec, 12, bases, rec[14]), rec[29:36],
                 address(rec, 15, bases), padded, address(rec, 17, bases), address(rec, 19, bases),
                 address(rec, 21, bases), address(rec, 23, bases), address(rec, 25, bases), address(rec, 27, bases))


def _depthwise(start, stop, rec, nrec, bases, nbases):
    """Planes of a depthwise convolution: rec = kernel (DW_*), X and its
    (N, C, H, W), W, B, Y and its (K, OH, OW), residual (Y itself when
    none), clamp, the two epilogue flags, then the window (3x3 padded
    planes); or the plane kernels' entry points, the stride, the kernel
    size, the zeros and the flat masks (each with its length: made once,
    runtime.kernels.depthwise_ir.plane_scratch) (LLVM IR plane kernels); or
    the plan and its length (block kernels, whose W is laid out as
    runtime.kernels.depthwise_blocks.blocked_weights lays it out)."""
    rec, bases = records(rec, nrec, bases, nbases)
    n, c, h, w, k, oh, ow = rec[3], rec[4], rec[5], rec[6], rec[13], rec[14], rec[15]
    x = f32(rec, 1, bases, (n, c, h, w))
    b = typed_readonly(f32(rec, 9, bases, k))
    out = f32(rec, 11, bases, (n, k, oh, ow))
    res = f32(rec, 16, bases, (n, k, oh, ow))
    clamp = f32(rec, 18, bases, CLAMP_SIZE)
    flags = _flags(rec[20], rec[21], 0)[:2]
    if rec[0] == DW_BLOCKS:
        plan = typed_readonly(i64(rec, 22, bases, rec[24]))
        size = plan[BLOCK_KSIZE]
        wt = typed_readonly(f32(rec, 7, bases, (size * size, k + plan[BLOCK_LANES])))
        block_planes(start, stop, x, wt, b, out, res, clamp, flags, plan)
        return
    size = rec[25] if rec[0] == DW_IR else 3
    wt = typed_readonly(f32(rec, 7, bases, (k, size, size)))  # constants: read-only
    if rec[0] == DW_IR:
        depthwise_ir_run(start, stop, x, wt, b, out, res, clamp, flags, i64(rec, 22, bases, TABLE), rec[24],
                         f32(rec, 26, bases, rec[28]), address(rec, 29, bases) if rec[31] else 0)
    else:
        depthwise_padded_3x3(start, stop, x, wt, b, out, res, clamp, flags, to_fixed_tuple(rec[22:22 + GEO], GEO))


def _expand_depthwise(start, stop, rec, nrec, bases, nbases):
    """Blocks of a fused 1x1 expansion and 3x3 depthwise convolution
    (runtime.kernels.nn_expand): rec = X (N, C, H, W), the packed weight
    blocks (blocks, length), B1 (and its length), clamp 1 and its flag, the
    strip template, the kernel table (and its length), W2, B2, Y (K, OH,
    OW), clamp 2 and its flag, block, stride, the depthwise plane kernels'
    entry points at that stride."""
    rec, bases = records(rec, nrec, bases, nbases)
    n, c, h, w = rec[2], rec[3], rec[4], rec[5]
    blocks, length, wide, oh, ow = rec[8], rec[9], rec[27], rec[28], rec[29]
    x = f32(rec, 0, bases, (n, c, h, w))
    packs = f32(rec, 6, bases, (blocks, length))
    b1 = f32(rec, 10, bases, rec[12])
    clamp1 = f32(rec, 13, bases, CLAMP_SIZE)
    template = typed_readonly(i64(rec, 16, bases, PLAN_SIZE))
    kernels = i64(rec, 18, bases, rec[20])
    w2 = typed_readonly(f32(rec, 21, bases, (wide, 3, 3)))
    b2 = typed_readonly(f32(rec, 23, bases, wide))
    out = f32(rec, 25, bases, (n, wide, oh, ow))
    clamp2 = f32(rec, 30, bases, CLAMP_SIZE)
    flags1, flags2 = _flags(1, 0, rec[15]), _flags(0, 0, rec[32])[1:]
    expand_depthwise(start, stop, x, packs, b1, clamp1, flags1, template, kernels, w2, b2, out, clamp2, flags2,
                     rec[33], rec[34], i64(rec, 35, bases, TABLE))


def _bands(start, stop, rec, nrec, bases, nbases):
    """Bands of output rows of a convolution by bands (runtime.kernels.
    nn_im2col.run_bands): rec = one image's X (C, D, H, W) [0-5], the
    window [6-20], band, OH, OW [21-23], the full and last strip templates
    [24-27], the kernel table and its length [28-30], the packed weights
    and their length [31-33], B and its length [34-36], Y (M, OH * OW)
    [37, 38], the residual (Y itself when none) [39, 40], M [41], the clamp
    [42, 43], the three epilogue flags [44-46]; whether the band reads its
    input rows (runtime.kernels.nn_rows: the kernel table is then the row
    kernels'), the packing's rows a panel and the lanes a vector [47-49],
    the groups [50] (row kernels only past one: a task per group and band)."""
    rec, bases = records(rec, nrec, bases, nbases)
    c, d, h, w = rec[2], rec[3], rec[4], rec[5]
    band, oh, ow, m = rec[21], rec[22], rec[23], rec[41]
    x = f32(rec, 0, bases, (c, d, h, w))
    full, last = typed_readonly(i64(rec, 24, bases, PLAN_SIZE)), typed_readonly(i64(rec, 26, bases, PLAN_SIZE))
    kernels = i64(rec, 28, bases, rec[30])
    a = typed_readonly(f32(rec, 31, bases, rec[33]))  # frozen weights and bias: read-only, as on the per-step path
    b = typed_readonly(f32(rec, 34, bases, rec[36]))
    out = f32(rec, 37, bases, (m, oh * ow))
    res = f32(rec, 39, bases, (m, oh * ow))
    clamp = f32(rec, 42, bases, CLAMP_SIZE)
    flags = _flags(rec[44], rec[45], rec[46])
    geo = to_fixed_tuple(rec[6:6 + GEO], GEO)
    if rec[47]:
        run_row_bands(start, stop, x, geo, band, oh, ow, kernels, a, rec[48], rec[49], b, out, res, clamp, flags,
                      rec[50])
    else:
        run_bands(start, stop, x, geo, band, oh, ow, full, last, kernels, a, b, out, res, clamp, flags)


def _dot_rows(start, stop, rec, nrec, bases, nbases):
    """Columns of a product by the rows of B (runtime.gemm.gemv): rec = A
    (M, K), B (N, K), Y (M, N), bias (and its length: 0 for none); then a
    convolution's epilogue on those columns: the residual (M, N), the clamp
    array, whether each is there [16, 17]."""
    rec, bases = records(rec, nrec, bases, nbases)
    m, depth, n = rec[2], rec[3], rec[6]
    a = f32(rec, 0, bases, (m, depth))
    b = typed_readonly(f32(rec, 4, bases, (n, depth)))
    out = f32(rec, 7, bases, (m, n))
    dot_rows(start, stop, a, b, out, typed_readonly(f32(rec, 9, bases, rec[11])))
    has_res, has_clamp = rec[16] != 0, rec[17] != 0
    if has_res or has_clamp:
        res = f32(rec, 12, bases, (m, n)) if has_res else out
        finish_columns(start, stop, out, res, f32(rec, 14, bases, CLAMP_SIZE if has_clamp else 0), has_res,
                       has_clamp)


def _plane_means(start, stop, rec, nrec, bases, nbases):
    """Plane means (runtime.kernels.pool): rec = X (planes, size), Y
    (planes,); chunks of planes."""
    rec, bases = records(rec, nrec, bases, nbases)
    planes, size = rec[2], rec[3]
    x = f32(rec, 0, bases, (planes, size))
    y = f32(rec, 4, bases, planes)
    stop = min(stop, planes)
    if start < stop:
        plane_means(x[start:stop], y[start:stop])


def _winograd_in(start, stop, rec, nrec, bases, nbases):
    """Items of Winograd's input transform (runtime.kernels.winograd_ir):
    rec = X (N, C, H, W), V (n*n, item), (pad top, pad left, TH, TW,
    parts), the kernels' table."""
    rec, bases = records(rec, nrec, bases, nbases)
    n, c, h, w = rec[2], rec[3], rec[4], rec[5]
    rows, item = rec[8], rec[9]
    x = f32(rec, 0, bases, (n, c, h, w))
    v = f32(rec, 6, bases, (rows, item))
    input_tiles_ir(start, stop, x, v, rec[10:15], i64(rec, 15, bases, KERNELS))


def _winograd_out(start, stop, rec, nrec, bases, nbases):
    """Planes of Winograd's output transform (runtime.kernels.winograd_ir):
    rec = the products (n*n, item), Y (N, K, OH, OW), B, (TH, TW), residual
    (Y itself when none), clamp, the two epilogue flags, the kernels' table."""
    rec, bases = records(rec, nrec, bases, nbases)
    rows, item = rec[2], rec[3]
    n, k, oh, ow = rec[6], rec[7], rec[8], rec[9]
    prods = f32(rec, 0, bases, (rows, item))
    y = f32(rec, 4, bases, (n, k, oh, ow))
    b = typed_readonly(f32(rec, 10, bases, k))
    res = f32(rec, 14, bases, (n, k, oh, ow))
    clamp = f32(rec, 16, bases, CLAMP_SIZE)
    output_tiles_ir(start, stop, prods, y, b, rec[12:14], res, clamp, _flags(rec[18], rec[19], 0)[:2],
                    i64(rec, 20, bases, KERNELS))


def _im2col(start, stop, rec, nrec, bases, nbases):
    """Rows of one image's column matrix: rec = X (C, D, H, W), the column
    matrix (rows, OD, OH, OW), the window."""
    rec, bases = records(rec, nrec, bases, nbases)
    _columns(start, stop, rec, bases, address(rec, 6, bases))


@jit(inline="always")
def _columns(start, stop, rec, bases, col):
    """Rows ``[start, stop)`` of the column matrix of the IM2COL record
    ``rec``, into the matrix at address ``col``."""
    c, d, h, w = rec[2], rec[3], rec[4], rec[5]
    rows, od, oh, ow = rec[8], rec[9], rec[10], rec[11]
    x = f32(rec, 0, bases, (c, d, h, w))
    matrix = numba.carray(f32_ptr(col), (rows, od, oh, ow))
    im2col_rows(start, stop, x, matrix, to_fixed_tuple(rec[12:12 + GEO], GEO))


def _max_pool(start, stop, rec, nrec, bases, nbases):
    """Output rows of a 2-D max pool (runtime.kernels.pool): rec = X
    (planes, H, W), Y (planes, OH, OW), kh, kw, sh, sw, ph, pw, buffer length."""
    rec, bases = records(rec, nrec, bases, nbases)
    planes, h, w, oh, ow = rec[2], rec[3], rec[4], rec[7], rec[8]
    x = f32(rec, 0, bases, (planes, h, w))
    y = f32(rec, 5, bases, (planes, oh, ow))
    max_pool_2d_rows(start, stop, x, y, rec[9], rec[10], rec[11], rec[12], rec[13], rec[14], rec[15])


def _avg_pool(start, stop, rec, nrec, bases, nbases):
    """Planes of an average pool (runtime.kernels.pool): rec = X (P, D, H,
    W), P, D, H, W, Y (P, OD, OH, OW), OD, OH, OW, the mode, the window (GEO
    ints)."""
    rec, bases = records(rec, nrec, bases, nbases)
    p = rec[2]
    avg_pool_planes(start, min(stop, p), f32(rec, 0, bases, (p, rec[3], rec[4], rec[5])),
                    f32(rec, 6, bases, (p, rec[8], rec[9], rec[10])), to_fixed_tuple(rec[12:12 + GEO], GEO), rec[11])


def _softmax(start, stop, rec, nrec, bases, nbases):
    """Softmax or log-softmax of rows along an axis (runtime.kernels.norm):
    rec = X (outer, n, inner), rows (outer x inner), n, Y (as X), log, inner."""
    rec, bases = records(rec, nrec, bases, nbases)
    rows, n = rec[2], rec[3]
    softmax_rows(start, min(stop, rows), f32(rec, 0, bases, rows * n), f32(rec, 4, bases, rows * n), n, rec[7],
                 rec[6] != 0)


def _layer_norm(start, stop, rec, nrec, bases, nbases):
    """Rows of a LayerNormalization (runtime.kernels.norm): rec = X (rows,
    n), rows, n, the scale and the bias (n), Y, the means and the inverse
    deviations (rows), epsilon (float64)."""
    rec, bases = records(rec, nrec, bases, nbases)
    rows, n = rec[2], rec[3]
    layer_norm_rows(start, stop, f32(rec, 0, bases, rows * n), f32(rec, 4, bases, n), f32(rec, 6, bases, n),
                    f32(rec, 8, bases, rows * n), f32(rec, 10, bases, rows), f32(rec, 12, bases, rows), n,
                    f64_ptr(address(rec, 14, bases))[0])


def _lrn(start, stop, rec, nrec, bases, nbases):
    """Planes of an LRN (runtime.kernels.norm): rec = X, Y (planes, S),
    planes, S, C, the channels before and after in the window, alpha /
    size, bias and beta (float64)."""
    rec, bases = records(rec, nrec, bases, nbases)
    planes, size = rec[4], rec[5]
    params = f64_ptr(address(rec, 9, bases))
    lrn_planes(start, stop, f32(rec, 0, bases, (planes, size)), f32(rec, 2, bases, (planes, size)), rec[6], rec[7],
               rec[8], params[0], params[1], params[2])


def _col2im(start, stop, rec, nrec, bases, nbases):
    """Output channels of one image of a ConvTranspose (runtime.kernels.
    nn_transposed): rec = the column matrix (K, T, H, W), K, T, H, W, the
    bias (K,), Y (K, OH, OW), OH, OW, the weights (R, taps) (R = K for a
    depthwise one, whose column matrix is the input: T = 1; else 0 rows),
    R, taps, the window (GEO ints)."""
    rec, bases = records(rec, nrec, bases, nbases)
    k, t, h, w, oh, ow, r, taps = rec[2], rec[3], rec[4], rec[5], rec[10], rec[11], rec[14], rec[15]
    col2im_planes(start, stop, f32(rec, 0, bases, (k, t, 1, h, w)), typed_readonly(f32(rec, 12, bases, (r, taps))),
                  typed_readonly(f32(rec, 6, bases, k)), f32(rec, 8, bases, (k, 1, oh, ow)),
                  to_fixed_tuple(rec[16:16 + GEO], GEO))


def _channel_scale(start, stop, rec, nrec, bases, nbases):
    """Planes each times one value (a Mul of an (N, C, ...) tensor by its
    (1 or N, C, 1, ...) gate: runtime.kernels.elementwise): rec = X
    (planes, size), planes, size, S (scales,), scales, Y (planes, size);
    plane ``p`` times ``S[p % scales]``, a float32 product each, as
    numpy's broadcasting multiply computes it; chunks of planes."""
    rec, bases = records(rec, nrec, bases, nbases)
    planes, size, scales = rec[2], rec[3], rec[6]
    x = f32(rec, 0, bases, planes * size)
    s = f32(rec, 4, bases, scales)
    y = f32(rec, 7, bases, planes * size)
    for p in range(start, min(stop, planes)):
        v = s[p % scales]
        plane, into = x[p * size:(p + 1) * size], y[p * size:(p + 1) * size]
        for j in range(size):  # views indexed from 0: no wraparound checks, so the loop is vectorised
            into[j] = plane[j] * v


def _fused(start, stop, rec, nrec, bases, nbases):
    """Blocks of a fused element-wise expression (runtime.kernels.fused,
    as its per-step kernel runs them): rec = the code and its rows [0-2],
    the params [3, 4], the sources read in place (bools) [5, 6], the
    inputs' load kinds, dims, strides and dim counts [7-14], the registers
    and inputs [15, 16], Y and its elements [17-19], whether the last
    instruction writes Y [20], then each of the interpreter's MAX_INPUTS
    inputs and its elements (an absent one: one unused float)."""
    rec, bases = records(rec, nrec, bases, nbases)
    rows = rec[2]
    direct = numba.carray(bool_ptr(address(rec, 5, bases)), (rows, 2))
    arrays = (f32(rec, 21, bases, rec[23]), f32(rec, 24, bases, rec[26]), f32(rec, 27, bases, rec[29]),
              f32(rec, 30, bases, rec[32]), f32(rec, 33, bases, rec[35]), f32(rec, 36, bases, rec[38]),
              f32(rec, 39, bases, rec[41]), f32(rec, 42, bases, rec[44]))
    fused_blocks(start, stop, i64(rec, 0, bases, (rows, 4)), f32(rec, 3, bases, (rows, 2)), direct, rec[15],
                 rec[16], arrays, i64(rec, 7, bases, FUSED_INPUTS), i64(rec, 9, bases, (FUSED_INPUTS, FUSED_DIMS)),
                 i64(rec, 11, bases, (FUSED_INPUTS, FUSED_DIMS)), i64(rec, 13, bases, FUSED_INPUTS), rec[20] != 0,
                 f32(rec, 17, bases, rec[19]))


ADAPTERS = {GEMM: _gemm, DEPTHWISE: _depthwise, EXPAND_DEPTHWISE: _expand_depthwise, BANDS: _bands,
            DOT_ROWS: _dot_rows, PLANE_MEANS: _plane_means, WINOGRAD_IN: _winograd_in, WINOGRAD_OUT: _winograd_out,
            IM2COL: _im2col, MAX_POOL: _max_pool, SOFTMAX: _softmax, COPY: moves.copy, CHANNEL_SCALE: _channel_scale,
            OWN_COLUMNS: _own_columns, DIRECT: _direct, FUSED: _fused, RESIZE_NEAREST: moves.resize_nearest,
            RESIZE_LINEAR: moves.resize_linear, TRANSPOSE: moves.transpose, COL2IM: _col2im,
            AVG_POOL: _avg_pool, PAD: moves.pad, PACK_LEFT: _pack_left,
            LAYER_NORM: _layer_norm, LRN: _lrn}
_SIGNATURE = types.void(types.int64, types.int64, types.CPointer(types.int64), types.int64,
                        types.CPointer(types.int64), types.int64)
_compiled: dict[int, object] = {}
_lock = threading.Lock()


def op_address(kind: int) -> int:
    """The entry point of ``kind``'s adapter, compiled (or loaded from the
    cache) the first time a schedule uses that kind: a model compiles the
    adapters of the kinds it has, not all of them."""
    with _lock:
        entry = _compiled.get(kind)
        if entry is None:
            entry = _compiled[kind] = cfunc(_SIGNATURE, ADAPTERS[kind])
        return entry.address


@intrinsic
def _call_op(typingctx, entry, start, stop, recs, at, bases):
    """Call the adapter at address ``entry`` on chunk [start, stop) with the
    record at ``recs[at:]`` and ``bases`` (int64 arrays)."""
    sig = types.void(types.int64, types.int64, types.int64, recs, types.int64, bases)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        ptr = ir.PointerType(i64)
        rec_array = context.make_array(signature.args[3])(context, builder, args[3])
        base_array = context.make_array(signature.args[5])(context, builder, args[5])
        rec = builder.gep(builder.bitcast(rec_array.data, ptr), [args[4]])
        count = builder.sub(rec_array.nitems, args[4])
        fnty = ir.FunctionType(ir.VoidType(), [i64, i64, ptr, i64, ptr, i64])
        target = builder.inttoptr(args[0], ir.PointerType(fnty))
        builder.call(target, [args[1], args[2], rec, count, builder.bitcast(base_array.data, ptr),
                              base_array.nitems])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _read_cycle_counter(typingctx):
    """The CPU's cycle counter: x86 ``rdtsc``. Only x86 may call it
    (runtime.schedule.builder checks): AArch64's lowering reads a register
    Linux keeps from user code, which would kill the process."""
    def codegen(context, builder, signature, args):
        fn = builder.module.declare_intrinsic("llvm.readcyclecounter", fnty=ir.FunctionType(ir.IntType(64), []))
        return builder.call(fn, [])

    return types.int64(), codegen


# ---------------------------------------------------------------- the driver
@jit
def run_schedule(team, state, role, first, ops, spans, recs, bases, stamps):
    """A phased driver (runtime.parallel.run_phases): operations ``first``
    on, in order, each a phase: claim its chunks, run them, wait for the
    others'. A caller running alone (ALONE) calls each operation once, on
    the run of all its chunks (a chunk is a run of items, and an
    operation's chunks are its items in order), so that an operation whose
    chunks each repeat some work (OWN_COLUMNS) does it once. Returns
    FINISHED, or the operation whose wait ran out (a pool thread then
    leaves; the caller comes back there). Where ``stamps`` has
    a row per operation and one more, the caller stamps its start (row 0)
    and each operation once every chunk of it is done (row ``i + 1``) with
    the cycle counter: the per-step timings of a timed run."""
    stamped = stamps.shape[0] > 0 and role != WORKER
    if stamped and role != RESUME:
        stamps[0] = _read_cycle_counter()
    phase_begin(team, state, role)
    for i in range(first, ops.shape[0]):
        count = ops[i, COUNT]
        if role == ALONE:
            if count > 0:
                at = ops[i, FIRST]
                _call_op(ops[i, ENTRY], spans[at, 0], spans[at + count - 1, 1], recs, ops[i, REC], bases)
        else:
            chunk = phase_claim(team, i, count, role)
            while chunk >= 0:
                span = ops[i, FIRST] + chunk
                _call_op(ops[i, ENTRY], spans[span, 0], spans[span, 1], recs, ops[i, REC], bases)
                phase_done(team, i)
                chunk = phase_claim(team, i, count, role)
            if not phase_wait(team, i, count, role):
                return -1 if role == WORKER else i
        if stamped:
            stamps[i + 1] = _read_cycle_counter()
    phase_end(team, state, role)
    return FINISHED

