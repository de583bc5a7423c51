"""Convolution test data: seeded inputs, a direct float64 convolution to
check kernels against, and a Conv step's attributes."""
from __future__ import annotations

import numpy as np


def random(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def naive_conv(x, w, b, strides, pads, dilations, group):
    """Direct float64 convolution (sum over taps of shifted views)."""
    spatial = x.ndim - 2
    padded = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + [(pads[i], pads[spatial + i]) for i in range(spatial)])
    out_dims = [(padded.shape[2 + i] - (w.shape[2 + i] - 1) * dilations[i] - 1) // strides[i] + 1
                for i in range(spatial)]
    out = np.zeros((x.shape[0], w.shape[0], *out_dims))
    cg, kg = x.shape[1] // group, w.shape[0] // group
    for tap in np.ndindex(*w.shape[2:]):
        view = padded[(slice(None), slice(None)) + tuple(
            slice(tap[i] * dilations[i], tap[i] * dilations[i] + (out_dims[i] - 1) * strides[i] + 1, strides[i])
            for i in range(spatial))]
        for g in range(group):
            wt = w[g * kg:(g + 1) * kg, :, *tap].astype(np.float64)
            out[:, g * kg:(g + 1) * kg] += np.einsum("kc,nc...->nk...", wt, view[:, g * cg:(g + 1) * cg])
    if b is not None:
        out += b.reshape((1, -1) + (1,) * spatial)
    return out


def conv_attrs(kernel: int, group: int = 1, stride: int = 1, clamp=(0.0, 6.0)) -> dict:
    """Conv attributes of a square kernel, pads of kernel // 2 (and a clamp)."""
    pad = kernel // 2
    attrs = dict(kernel_shape=(kernel, kernel), strides=(stride, stride), pads=(pad,) * 4, dilations=(1, 1),
                 group=group)
    if clamp is not None:
        attrs["clamp"] = clamp
    return attrs


def ir_depthwise_in_both_families(x, w, b, stride, clamp, flags):
    """The depthwise IR plane kernels' output planes (N, C, OH, OW) for a
    square kernel ``w`` (C, S, S) with pads of S // 2, compiled for AVX2
    and for this host, as the schedule runs them (read-only weights): a
    list of the two, AVX2's first."""
    from runtime.gemm.family import host_isa
    from runtime.jit import readonly
    from runtime.kernels import depthwise_ir

    chans, ksize = x.shape[1], w.shape[1]
    shape = (x.shape[0], chans, (x.shape[2] - 1) // stride + 1, (x.shape[3] - 1) // stride + 1)
    outs = []
    for isa in (host_isa("avx2"), host_isa()):
        out = np.full(shape, np.nan, np.float32)
        depthwise_ir.depthwise_ir_planes(0, x.shape[0] * chans, x, readonly(w), readonly(b), out, out, clamp, flags,
                                         depthwise_ir.kernel_addresses(stride, isa, ksize), stride)
        outs.append(out)
    return outs
