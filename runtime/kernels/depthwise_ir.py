"""Depthwise convolutions by square kernels with pads of half their size at
strides 1 and 2 on the LLVM IR plane kernels of
runtime.kernels.depthwise_text (its docstring says how they compute),
compiled for the host's kernel family with llvmlite
(runtime.gemm.microkernel.compile_module, one module per kernel size) and
called per plane from Numba: which kernel a plane takes
(:func:`kernel_addresses`' tables), the scratch it reads, the epilogue.
"""
from __future__ import annotations

import threading

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from runtime.gemm.family import Isa, host_isa
from runtime.gemm.microkernel import compile_module
from runtime.jit import flat_view, jit
from runtime.kernels.conv_epilogue import finish_row, gate_run
from runtime.kernels.depthwise_phased import scratch_floats
from runtime.kernels.depthwise_text import FLAT, LANES, SIZES, STRIDES, kernel_names, lane_masks, module_ir
from runtime.kernels.nn_depthwise_3x3 import pass_clamp
from runtime.parallel import drives
from runtime.pool_protocol import team_enter, team_leave, team_next
from runtime.unlinked import call_unlinked

__all__ = ["FLAT", "LANES", "SIZES", "STRIDES", "TABLE", "depthwise_ir_planes", "depthwise_ir_run", "flat_masks",
           "kernel_addresses", "kernel_names", "lane_masks", "module_ir", "plane_scratch", "tables"]


@jit
def flat_masks(h, w, ksize, lanes):
    """The lanes of :func:`flat_ir`'s loads for an ``h`` x ``w`` plane of
    at most :data:`FLAT` outputs (stride 1, pads of ``ksize // 2``): per tap
    (kh, kw), the outputs ``q`` that read inside the plane at (oy + kh -
    pad, ox + kw - pad); then the outputs of the plane. With ``lanes``
    (the kernel family's layout: depthwise_text.lane_masks), :data:`FLAT`
    int32 a tap, -1 for such an output and 0 for the others; else one
    int32 a tap, bit ``q`` set for such an output. Made once per call of
    the planes' loop."""
    taps, pad = ksize * ksize, ksize // 2
    masks = np.zeros((taps + 1) * (FLAT if lanes else 1), np.int32)
    for q in range(min(h * w, FLAT)):
        oy, ox = q // w, q % w
        _mark(masks, taps, q, lanes)
        for t in range(taps):
            y, x = oy + t // ksize - pad, ox + t % ksize - pad
            if 0 <= y < h and 0 <= x < w:
                _mark(masks, t, q, lanes)
    return masks


@jit(inline="always")
def _mark(masks, t, q, lanes):
    """Output ``q`` in row ``t`` of :func:`flat_masks`' layout."""
    if lanes:
        masks[t * FLAT + q] = -1
    else:
        masks[t] |= np.int32(1 << q)


def tables(addresses: np.ndarray, ksize: int, isa: Isa) -> dict[int, np.ndarray]:
    """Per stride, the kernel table (:func:`kernel_addresses`) of ``isa``
    from the entry points of :func:`kernel_names` ``(ksize)``, in order."""
    strides, n = SIZES[ksize], len(LANES)
    wide = LANES.index(isa.vw) if isa.vw in LANES else n - 1
    inner = len(strides) * n
    return {s: np.array([*addresses[i * n:(i + 1) * n], addresses[inner + i * n + wide],
                         addresses[-1] if s == 1 else 0, int(lane_masks(isa))], np.int64)
            for i, s in enumerate(strides)}


_compiled: dict[tuple, tuple] = {}
_lock = threading.Lock()


TABLE = len(LANES) + 3
"""Entries of a kernel table (:func:`kernel_addresses`)."""
FLAT_ENTRY = TABLE - 2
"""The flat kernel's entry of a kernel table (0 where there is none)."""
LANES_ENTRY = TABLE - 1
"""The entry of a kernel table saying how its flat kernel reads its masks:
1 one int32 a lane, 0 one a tap (:func:`flat_masks`)."""


def kernel_addresses(stride: int, isa: Isa | None = None, ksize: int = 3) -> np.ndarray:
    """The ``ksize`` x ``ksize`` plane kernels' entry points at ``stride``
    for ``isa`` (the host's family by default), :data:`TABLE` of them: the
    row kernels with masked loads in the order of :data:`LANES` (planes
    whose rows fit one vector), the row kernel of wider planes (plain loads
    inside the rows; vectors of the family's register width, ``isa.vw``),
    then the flat kernel at stride 1 (0 at stride 2) and its masks' layout
    (:data:`LANES_ENTRY`); each size's module
    compiled (or loaded from the kernel cache) on first use, kept for the
    process."""
    if stride not in SIZES.get(ksize, ()):
        raise ValueError(f"no {ksize}x{ksize} depthwise plane kernel for stride {stride} "
                         f"(sizes and their strides: {SIZES})")
    isa = host_isa() if isa is None else isa
    with _lock:
        if (isa, ksize) not in _compiled:
            name = f"depthwise-{isa.name}" if ksize == 3 else f"depthwise{ksize}-{isa.name}"
            engine, addresses = compile_module(name, module_ir(ksize, lane_masks(isa)), kernel_names(ksize), isa)
            _compiled[isa, ksize] = (engine, tables(addresses, ksize, isa))
        return _compiled[isa, ksize][1][stride]


@intrinsic
def _call_plane(typingctx, address, x, h, w, y, oh, ow, wt, bias, lo, hi, zeros, scratch):
    """Call the plane kernel at ``address`` (x, y, wt, zeros and scratch are addresses)."""
    i64, f32 = types.int64, types.float32
    sig = types.void(i64, i64, i64, i64, i64, i64, i64, i64, f32, f32, f32, i64, i64)

    def codegen(context, builder, signature, args):
        i64_t, ptr, f32_t = ir.IntType(64), ir.PointerType(), ir.FloatType()
        fnty = ir.FunctionType(ir.VoidType(), [ptr, i64_t, i64_t, ptr, i64_t, i64_t, ptr, f32_t, f32_t, f32_t, ptr,
                                               ptr])
        target = builder.inttoptr(args[0], ir.PointerType(fnty))
        x_ptr, y_ptr, w_ptr, zeros_ptr, scratch_ptr = (builder.inttoptr(args[i], ptr) for i in (1, 4, 7, 11, 12))
        builder.call(target, [x_ptr, args[2], args[3], y_ptr, args[5], args[6], w_ptr, *args[8:11], zeros_ptr,
                              scratch_ptr])
        return context.get_dummy_value()

    return sig, codegen


_NO_MASKS = np.zeros(0, np.int32)


@jit
def depthwise_ir_planes(start, stop, x, w, b, out, res, clamp, flags, kernels, stride):
    """Output planes [start, stop) (index n*K + k) of a 2-D depthwise
    convolution of float32 planes by a square kernel of size S (w: (K, S,
    S); S one of :data:`SIZES`) at ``stride`` (both axes), unit dilations
    and S // 2 pixels of padding on every side (out: (N, K, (H - 1) //
    stride + 1, (W - 1) // stride + 1)), then the epilogue as in
    runtime.kernels.nn_depthwise_3x3's kernels: the bias, the residual
    ``res`` (flags[0]) and the clamp with its gate (flags[1]). ``kernels``:
    :func:`kernel_addresses` of that size and stride. Every array is
    float32 and C-contiguous (the callers' lift and the schedule's operands
    are)."""
    zeros, masks = plane_scratch(x.shape[2], x.shape[3], w.shape[1], stride, kernels)
    _run_on_scratch(start, stop, x, w, b, out, res, clamp, flags, kernels, stride, zeros, masks)


@jit
def _run_on_scratch(start, stop, x, w, b, out, res, clamp, flags, kernels, stride, zeros, masks):
    """:func:`depthwise_ir_run` with the masks' address taken here, where
    the masks are an argument the caller holds. Taken in the caller, the
    address outlived the array: Numba freed the masks at the ``del`` after
    their last use (the address) before the kernels read them, and the
    flat kernel read whatever the allocator had put there since (a 1 x 1
    plane's output off in one run of ~20 of tests/ops in another order)."""
    depthwise_ir_run(start, stop, x, w, b, out, res, clamp, flags, kernels, stride, zeros,
                     masks.ctypes.data if masks.shape[0] else 0)


@jit
def plane_scratch(height, width, ks, stride, kernels):
    """What :func:`depthwise_ir_run` reads besides the operands, for planes
    of ``height`` x ``width`` by a ``ks`` x ``ks`` kernel: a row of zeros
    (the rows above and below a plane), and for a plane that is one flat
    vector (stride 1, at most :data:`FLAT` outputs, where ``kernels`` has
    that kernel) its :func:`flat_masks`, else none. The schedule makes them
    once, when it lowers the step (a chunk of planes making them took 240-
    690 ns of a 1.6-3 us chunk, Zen 4), the per-step path on each call."""
    zeros = np.zeros(width + 2 * (ks // 2), np.float32)
    if _takes_flat(kernels, stride, (height - 1) // stride + 1, (width - 1) // stride + 1):
        return zeros, flat_masks(height, width, ks, kernels[LANES_ENTRY] != 0)
    return zeros, _NO_MASKS


@jit(inline="always")
def _takes_flat(kernels, stride, out_h, out_w):
    """Whether output planes of ``out_h`` x ``out_w`` take the flat kernel
    (stride 1, rows of at most ``LANES[0]``, at most :data:`FLAT` outputs,
    where ``kernels`` has one)."""
    return (kernels.shape[0] > LANES_ENTRY and kernels[FLAT_ENTRY] != 0 and stride == 1 and out_w <= LANES[0]
            and out_h * out_w <= FLAT)


@jit
def depthwise_ir_run(start, stop, x, w, b, out, res, clamp, flags, kernels, stride, zeros, masks_at):
    """:func:`depthwise_ir_planes` on the scratch :func:`plane_scratch`
    made for these planes: ``zeros`` (at least W + S - 1 zeros) and the
    address of their flat masks (0: none; those of this plane size, which
    decide what the flat kernel reads). The stride-2 5x5 and 7x7 kernels
    also get a buffer of zeros for their phase planes, one a call
    (runtime.kernels.depthwise_phased)."""
    batch, chans, height, width = x.shape
    _, out_c, out_h, out_w = out.shape
    ks = w.shape[1]
    pad = ks // 2
    if (w.shape[0] != out_c or w.shape[2] != ks or b.shape[0] != out_c or res.shape != out.shape or chans == 0
            or height == 0 or width == 0 or out_h != (height - 1) // stride + 1 or out_w != (width - 1) // stride + 1
            or zeros.shape[0] < width + 2 * pad):
        return
    mult = max(out_c // chans, 1)
    lo, hi = pass_clamp(clamp, flags)
    address = kernels[0] if out_w <= LANES[0] else kernels[1] if out_w <= LANES[1] else kernels[2]
    plane, size = height * width, out_h * out_w
    dst, extra = flat_view(out), flat_view(res)  # C-contiguous arrays only (flat_view types no other)
    x_at, y_at, w_at = flat_view(x).ctypes.data, dst.ctypes.data, flat_view(w).ctypes.data
    zeros_at = zeros.ctypes.data + 4 * pad
    if masks_at != 0 and _takes_flat(kernels, stride, out_h, out_w):
        address, zeros_at = kernels[FLAT_ENTRY], masks_at  # a plane of one flat vector
    scratch = np.zeros(scratch_floats(height, width, stride, ks), np.float32)
    for p in range(start, min(stop, batch * out_c)):
        k = p % out_c
        c = k // mult
        if c >= chans:
            continue
        _call_plane(address, x_at + ((p // out_c) * chans + c) * plane * 4, height, width, y_at + p * size * 4,
                    out_h, out_w, w_at + k * ks * ks * 4, b[k], lo, hi, zeros_at, scratch.ctypes.data)
        if flags[0]:
            o = dst[p * size:(p + 1) * size]
            finish_row(o, o, extra[p * size:(p + 1) * size], clamp[0], clamp[1], True, flags[1])
        if flags[1]:
            gate_run(dst, p * size, size, clamp)


@drives(depthwise_ir_planes)
@jit
def _depthwise_ir_planes_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(depthwise_ir_planes, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)
