"""Winograd's tile transforms (runtime.kernels.nn_winograd) as LLVM IR
compiled for the host with llvmlite (runtime.gemm.microkernel.compile_module),
called per plane from Numba.

A kernel works on ``V`` tiles of one tile row at once, one tile a vector
lane, and keeps a block's whole transform in registers::

    void input(float* x, i64 h, i64 w, i64 top, i64 left, i64 th, i64 tw,
               float* v, i64 es, i64 i0, i64 i1)
    void output(float* p, i64 es, i64 th, i64 tw, float* y, i64 oh, i64 ow,
                float bias, float* res, float lo, float hi, i64 flags)

``input`` writes ``v[(i*n + k)*es + ty*(tw+1) + tx] = (B^T d B)[i, k]`` for
rows ``i`` in ``[i0, i1)`` of each ``n x n`` tile ``d`` of the ``h x w``
plane ``x`` (tile (ty, tx) starts at row ``ty*m - top``, column ``tx*m -
left``; reads outside the plane are zeros), for ``ty < th`` and ``tx <=
tw`` (the extra tile of each row, which the products carry but nothing
reads, gets the transform of what lies there, so it is always finite data).
The ``m + 1`` loads of a tile row's input row are masked to the plane
(masked-off lanes touch no memory) and cut into the ``n`` columns of the
tiles by shuffles. ``output`` writes each ``m x m`` tile ``A^T M A + bias``
of the products ``p[(i*n + j)*es + ty*(tw+1) + tx]`` into the ``oh x ow``
plane ``y``, cropped at the far edges, then adds the residual plane ``res``
(``flags`` bit 0) and clamps to ``[lo, hi]`` (bit 1; numpy's ``maximum``
then ``minimum``: NaN stays NaN), as ``conv_epilogue.finish_run`` does.
Where a vector passes its row's end, the kernels may store it whole when
what it passes over is written after it in the same call (the IR text,
runtime.kernels.winograd_text, says where), so each plane ends as said.

Both combine in the order the Numba loops they replace do (input: over the
tile's rows first, then its columns; output: columns first, then rows with
the bias as the start), each sum a chain over the nonzero coefficients in
increasing index (a zero coefficient is skipped: ``0 * inf`` would be NaN);
every coefficient is a short binary fraction, so a coefficient of 1 or -1
is an add or a subtract and the others a fused multiply-add. The Numba
loops ran mostly as scalar code (LLVM vectorised only their one- and
two-term runs): ResNet-50's Winograd transforms took 3.1 ms of its 34.
"""
from __future__ import annotations

import threading

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from runtime.gemm.family import Isa, host_isa
from runtime.gemm.microkernel import compile_module
from runtime.jit import jit
from runtime.kernels.conv_epilogue import gate_run
from runtime.kernels.winograd_text import LANES, TILES, module_ir, spills, symbols
from runtime.parallel import drives
from runtime.pool_protocol import team_enter, team_leave, team_next
from runtime.unlinked import call_unlinked

KERNELS = 2 * len(TILES) * len(LANES)
"""Entries of :func:`kernel_addresses`' table."""


_compiled: dict[Isa, tuple] = {}
_lock = threading.Lock()


def kernel_addresses(isa: Isa | None = None) -> np.ndarray:
    """The kernels' entry points for ``isa`` (the host's family by default):
    for tile size ``TILES[t]`` and ``LANES[l]``, the input transform at
    ``2 * (t * len(LANES) + l)`` and the output transform after it;
    compiled (or loaded from the kernel cache) on first use, kept for the
    process."""
    isa = host_isa() if isa is None else isa
    with _lock:
        if isa not in _compiled:
            _compiled[isa] = compile_module(f"winograd-{isa.name}", module_ir(spills(isa)), symbols(), isa)
        return _compiled[isa][1]


# ---------------------------------------------------------------- calling from Numba
@intrinsic
def _call_input(typingctx, address, x, h, w, top, left, th, tw, v, es, i0, i1):
    """Call the input kernel at ``address`` (``x`` and ``v`` are addresses)."""
    sig = types.void(*([types.int64] * 12))

    def codegen(context, builder, signature, args):
        i64, ptr = ir.IntType(64), ir.PointerType()
        fnty = ir.FunctionType(ir.VoidType(), [ptr, i64, i64, i64, i64, i64, i64, ptr, i64, i64, i64])
        target = builder.inttoptr(args[0], ir.PointerType(fnty))
        builder.call(target, [builder.inttoptr(args[1], ptr), *args[2:8], builder.inttoptr(args[8], ptr),
                              *args[9:]])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _call_output(typingctx, address, p, es, th, tw, y, oh, ow, bias, res, lo, hi, flags):
    """Call the output kernel at ``address`` (``p``, ``y`` and ``res`` are addresses)."""
    i64, f32 = types.int64, types.float32
    sig = types.void(i64, i64, i64, i64, i64, i64, i64, i64, f32, i64, f32, f32, i64)

    def codegen(context, builder, signature, args):
        i64_t, ptr, f32_t = ir.IntType(64), ir.PointerType(), ir.FloatType()
        fnty = ir.FunctionType(ir.VoidType(), [ptr, i64_t, i64_t, i64_t, ptr, i64_t, i64_t, f32_t, ptr, f32_t,
                                               f32_t, i64_t])
        target = builder.inttoptr(args[0], ir.PointerType(fnty))
        p_ptr, y_ptr, res_ptr = (builder.inttoptr(args[i], ptr) for i in (1, 5, 9))
        builder.call(target, [p_ptr, *args[2:5], y_ptr, args[6], args[7], args[8], res_ptr, *args[10:]])
        return context.get_dummy_value()

    return sig, codegen


@jit(inline="always")
def _kernel(kernels, n, tw, output):
    """The entry point of :func:`kernel_addresses`' table for F((n-2) x
    (n-2)) over rows of ``tw + 1`` tiles (the input transform's, or the
    output transform's with ``output``)."""
    t = 0 if n - 2 == TILES[0] else 1
    lanes = 0 if tw + 1 <= LANES[0] else 1
    return kernels[2 * (t * len(LANES) + lanes) + output]


@jit
def input_tiles_ir(start, stop, x, v, geo, kernels):
    """:func:`runtime.kernels.nn_winograd.input_tiles` through the input
    kernels (``kernels``: :func:`kernel_addresses`), with the same items and
    results but for rounding, into ``v`` (n*n, item): item ``e``'s (C,
    N*TH*(TW+1)) matrix is the first elements of row ``e`` (the rows may be
    longer: :func:`item_stride`). Every array is float32 and C-contiguous
    (the callers' checks and the schedule's operands)."""
    top, left, th, tw, parts = geo[0], geo[1], geo[2], geo[3], geo[4]
    batch, chans, height, width = x.shape
    span = th * (tw + 1)
    tiles = batch * span
    n = 4 if v.shape[0] == 16 else 6
    if v.shape[0] != n * n or v.shape[1] < chans * tiles or parts < 1 or parts > n or th < 0 or tw < 0:
        return
    address = _kernel(kernels, n, tw, 0)
    planes = batch * chans
    x_at, v_at = x.ctypes.data, v.ctypes.data
    for item in range(start, min(stop, parts * planes)):
        part, p = item // planes, item % planes
        c, image = p % chans, p // chans
        _call_input(address, x_at + p * height * width * 4, height, width, top, left, th, tw,
                    v_at + (c * tiles + image * span) * 4, v.shape[1], part * n // parts, (part + 1) * n // parts)


@jit
def output_tiles_ir(start, stop, prods, y, bias, geo, res, clamp, flags, kernels):
    """:func:`runtime.kernels.nn_winograd.output_tiles` through the output
    kernels (``kernels``: :func:`kernel_addresses`; the tile size follows
    from ``prods``), with the same planes and results but for rounding
    (the clamp array's gate: on each plane the kernel wrote, while it is in cache);
    ``prods`` (n*n, item) as ``v`` of :func:`input_tiles_ir`. Every array is
    float32 and C-contiguous."""
    th, tw = geo[0], geo[1]
    batch, out_c, out_h, out_w = y.shape
    n = 4 if prods.shape[0] == 16 else 6
    span = th * (tw + 1)
    tiles = batch * span
    if prods.shape[0] != n * n or prods.shape[1] < out_c * tiles or th < 0 or tw < 0:
        return
    if bias.shape[0] != out_c or th * (n - 2) < out_h or tw * (n - 2) < out_w or (flags[0] and res.shape != y.shape):
        return
    address = _kernel(kernels, n, tw, 1)
    mode = (1 if flags[0] else 0) + (2 if flags[1] else 0)
    p_at, y_at, r_at = prods.ctypes.data, y.ctypes.data, res.ctypes.data
    ys = y.reshape(-1)
    plane = out_h * out_w
    for q in range(start, min(stop, batch * out_c)):
        k, image = q % out_c, q // out_c
        _call_output(address, p_at + (k * tiles + image * span) * 4, prods.shape[1], th, tw, y_at + q * plane * 4,
                     out_h, out_w, bias[k], r_at + q * plane * 4, clamp[0], clamp[1], mode)
        if flags[1]:
            gate_run(ys, q * plane, plane, clamp)


def item_stride(rows: int, tiles: int) -> int:
    """Elements from one item of V (or of the products) to the next for
    ``rows`` x ``tiles`` items: at least their size, a multiple of 16 (64
    bytes), and an odd number of 64-byte lines, so that the n*n items a
    kernel block touches fall in n*n different sets of the L1 cache. Packed
    end to end, ResNet-50's 256 x 14 x 14 layers had items 56 KiB apart,
    every one in the same set, and the input transform ran slower than the
    scalar loops it replaced (163 against 101 us per layer, one thread)."""
    lines = -(-rows * tiles // 16)
    return 16 * (lines + 1 - lines % 2)


@drives(input_tiles_ir)
@jit
def _input_tiles_ir_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(input_tiles_ir, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)


@drives(output_tiles_ir)
@jit
def _output_tiles_ir_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(output_tiles_ir, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)
