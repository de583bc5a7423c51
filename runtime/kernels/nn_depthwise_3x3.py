"""The whole-plane 3x3 depthwise kernel ``depthwise_padded_3x3`` (strides
1 or 2, any pads, small planes): each input plane is copied into a zeroed,
padded plane cut into its row stride phases, so that the whole output plane
is one fused 9-tap pass with no border cases, the epilogue (bias, residual,
clamp) after it; the fixed cost per plane is small (MobileNets' 7x7 and
14x14 planes).

Pads of 1 at strides 1 or 2 on float32 planes have kernels in LLVM IR
(runtime.kernels.depthwise_ir). The flat SAME-plane Numba kernel that served
float64 is gone: float64 depthwise convolutions take the column-matrix GEMM
(runtime.kernels.nn_conv.COMPUTE_DTYPES).
"""
from __future__ import annotations

import numba
import numpy as np

from runtime.jit import jit
from runtime.kernels.conv_epilogue import finish_row, gate_run
from runtime.parallel import drives
from runtime.pool_protocol import team_enter, team_leave, team_next
from runtime.unlinked import call_unlinked

_u = numba.uint64


@jit(inline="always")
def _pad_plane(src, dst, height, width, sh, rows, cols, top, left):
    """The zero-padded plane's element (r, c) goes to dst[((r % sh) * rows
    + r // sh) * cols + c], for the input plane ``src`` (flat, height x
    width) whose element (r - top, c - left) it is: the plane cut into its
    row stride phases. The padding's places are never written (the caller
    zeroes ``dst`` once)."""
    phase, index = top % sh, top // sh  # of the row r = iy + top, kept without divisions
    for iy in range(height):
        _copy(dst, (phase * rows + index) * cols + left, src, iy * width, width)
        phase += 1
        if phase == sh:
            phase, index = 0, index + 1


@jit(inline="always")
def _copy(dst, first, src, start, count):
    """dst[first:first + count] = src[start:start + count], with unsigned
    indices (signed ones are tested for wraparound, which blocks
    vectorisation); the caller keeps both ranges inside their arrays."""
    d, s = _u(first), _u(start)
    for i in range(_u(count)):
        dst[d + i] = src[s + i]


@jit(inline="always")
def _clamped_3x3(run, bias, w_flat, tap0, src, s, lo, hi):
    """run[j] = the bias plus the 9 taps, tap t reading src[s[t] + j],
    clamped to [lo, hi] (NaN kept)."""
    n = run.shape[0]
    a0, a1, a2 = src[s[0]:s[0] + n], src[s[1]:s[1] + n], src[s[2]:s[2] + n]
    b0, b1, b2 = src[s[3]:s[3] + n], src[s[4]:s[4] + n], src[s[5]:s[5] + n]
    c0, c1, c2 = src[s[6]:s[6] + n], src[s[7]:s[7] + n], src[s[8]:s[8] + n]
    w0, w1, w2, w3, w4 = w_flat[tap0], w_flat[tap0 + 1], w_flat[tap0 + 2], w_flat[tap0 + 3], w_flat[tap0 + 4]
    w5, w6, w7, w8 = w_flat[tap0 + 5], w_flat[tap0 + 6], w_flat[tap0 + 7], w_flat[tap0 + 8]
    for j in range(n):
        v = (bias + w0 * a0[j] + w1 * a1[j] + w2 * a2[j] + w3 * b0[j] + w4 * b1[j] + w5 * b2[j]
             + w6 * c0[j] + w7 * c1[j] + w8 * c2[j])
        v = lo if v < lo else v
        run[j] = hi if v > hi else v


@jit(inline="always")
def pass_clamp(clamp, flags):
    """The bounds a kernel's pass clamps its sums to: the clamp's when there
    is one and no residual (flags = (residual, clamp)), else ±inf (a
    residual is added, and the clamp applied, by the epilogue after)."""
    if flags[1] and not flags[0]:
        return clamp[0], clamp[1]
    hi = clamp.dtype.type(np.inf)
    return -hi, hi


@jit(fastmath=True)
def depthwise_padded_3x3(start, stop, x, w, b, out, res, clamp, flags, geo):
    """Output planes [start, stop) (index n*K + k) of a 2-D depthwise 3x3
    convolution with unit dilations and strides of 1 or 2; the bias, the
    residual ``res`` (flags[0]) and the clamp to [clamp[0], clamp[1]]
    (flags[1]) are applied in the same pass, the clamp array's gate
    (conv_epilogue.gate_run) on each plane after it.

    x: (N, C, H, W); w: (K, 3, 3); b: (K,); out, res: (N, K, OH, OW). Each
    input plane is copied, a row at a time, into the interior of a zeroed,
    padded plane cut into its row stride phases, where every tap of every
    output row reads one unit-stride run: the whole plane is one fused 9-tap
    pass over rows as wide as the padded plane, and the output columns
    (every ``sw``-th, the few extra ones dropped) are taken when the rows are
    copied out. No border cases are left, so the fixed cost per plane is
    small; a column stride of 2 computes twice the columns it keeps, which
    costs less than splitting every row into its column phases."""
    sh, sw, ph, pw = geo[4], geo[5], geo[7], geo[8]
    batch, chans, height, width = x.shape
    _, out_c, out_h, out_w = out.shape
    if w.shape[0] != out_c or b.shape[0] != out_c or res.shape != out.shape or out_w < 1:
        return
    mult = max(out_c // max(chans, 1), 1)
    rows = -(-(height + ph + geo[10]) // sh)
    cols = width + pw + geo[11]
    phases = np.zeros(sh * rows * cols, dtype=x.dtype)
    s = np.empty(9, dtype=np.int64)
    for kh in range(3):
        for kw in range(3):
            s[kh * 3 + kw] = ((kh % sh) * rows + kh // sh) * cols + kw
    n = (out_h - 1) * cols + (out_w - 1) * sw + 1
    run = np.empty(n, dtype=out.dtype)
    w_flat, src, dst, extra = w.reshape(-1), x.reshape(-1), out.reshape(-1), res.reshape(-1)
    lo, hi = pass_clamp(clamp, flags)
    plane, size = height * width, out_h * out_w
    for p in range(start, min(stop, batch * out_c)):
        k = p % out_c
        c = k // mult
        if c >= chans:
            continue
        _pad_plane(src[((p // out_c) * chans + c) * plane:], phases, height, width, sh, rows, cols, ph, pw)
        _clamped_3x3(run, b[k], w_flat, k * 9, phases, s, lo, hi)
        base = p * size
        if flags[0]:
            for oh in range(out_h):
                first = oh * cols
                finish_row(dst[base + oh * out_w:base + (oh + 1) * out_w], run[first:first + out_w * sw:sw],
                           extra[base + oh * out_w:], clamp[0], clamp[1], True, flags[1])
        elif sw == 1:
            for oh in range(out_h):
                _copy(dst, base + oh * out_w, run, oh * cols, out_w)
        else:
            for oh in range(out_h):
                at, first = _u(base + oh * out_w), _u(oh * cols)
                for ow in range(_u(out_w)):
                    dst[at + ow] = run[first + ow * 2]
        if flags[1]:
            gate_run(dst, base, size, clamp)


# ---------------------------------------------------------------- team drivers (runtime.parallel)
@drives(depthwise_padded_3x3)
@jit
def _depthwise_padded_3x3_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(depthwise_padded_3x3, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)
