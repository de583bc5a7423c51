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
