"""The CONV layers a quantized layer runs as on the accelerator, and each
worker's share of them when a layer is divided over clusters and cards.

A QConv or QGemm is one CONV layer; a QConvTranspose one per output phase;
a global average pool whose window POOL cannot hold, or whose multiplier
table the weight buffer cannot, is a GEMM of the plane against ones. In
split mode (passes/distribute.py) each of those is cut along one axis,
output channels, output rows or (a GEMM's M) columns, into contiguous
shares, one per worker (a cluster of a card): :func:`share` gives the CONV
layer a worker runs. The tile pass plans them, codegen emits them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ir.graph import Node
from passes.tiling import CONV_OPS, ConvShape, conv_shape
from runtime.hardware import HardwareConfig
from runtime.isa import AVG_ENTRY_BYTES, linear_size

SPLIT_AXES = ("k", "rows", "cols")
"""Output channels (a GEMM's features), output rows, output columns (a GEMM's M)."""


@dataclass(frozen=True)
class ConvPart:
    """One CONV layer of a quantized layer on the device: its tile problem,
    the padding of its input (top, left, bottom, right; negative where it
    skips rows or columns), where its outputs lie in the layer's output
    (the first row and column, and the rows and columns between them; the
    first output channel, and for a share of a grouped convolution the first
    input channel), and for a transposed convolution's phase the layer
    kernel's rows and columns it takes, in its own order."""

    shape: ConvShape
    pads: tuple[int, int, int, int]
    origin: tuple[int, int] = (0, 0)
    step: tuple[int, int] = (1, 1)
    taps: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    channel0: int = 0
    in_channel0: int = 0


def conv_parts(node: Node, hw: HardwareConfig) -> list[ConvPart]:
    """The CONV layers a layer runs as: one for a QConv or QGemm, one per
    output phase for a QConvTranspose, a GEMM against ones for a global
    average pool too wide for POOL."""
    if node.op == "QConvTranspose":
        return transpose_phases(node)
    if node.op == "QAvgPool":
        return [ConvPart(pool_gemm_shape(node), (0, 0, 0, 0))]
    pads = (0, 0, 0, 0) if node.op == "QGemm" else tuple(node.attrs["pads"])
    return [ConvPart(conv_shape(node), pads)]


def is_conv_layer(node: Node, hw: HardwareConfig) -> bool:
    """Whether the device runs ``node`` as CONV layers (:func:`conv_parts`)."""
    return node.op in CONV_OPS or (node.op == "QAvgPool" and pool_as_gemm(node, hw))


def pool_as_gemm(node: Node, hw: HardwareConfig) -> bool:
    """A global QAvgPool (no padding, one window per plane) whose window
    POOL cannot hold, or whose multiplier table the weight buffer cannot:
    sum(x) over a plane is x[N*C, H*W] . ones[H*W], one multiplier."""
    x, kernel = node.inputs[0].type.shape, list(node.attrs["kernel_shape"])
    table = linear_size(kernel[0] * kernel[1] * AVG_ENTRY_BYTES)
    return (kernel == list(x[2:]) and not any(node.attrs["pads"])
            and (max(kernel) > hw.max_pool_kernel or table > hw.weight_buffer_bytes))


def pool_gemm_shape(node: Node) -> ConvShape:
    """A global average pool's sums as a GEMM: M = N*C rows of K = H*W codes
    against one output channel of ones."""
    n, c, h, w = node.inputs[0].type.shape
    e_in, e_out = node.inputs[0].type.dtype.itemsize, node.outputs[0].type.dtype.itemsize
    return ConvShape(h * w, 1, n * c, 1, 1, n * c, 1, 1, 1, 1, 1, 1, 1, e_in, 1, e_out, 0, 4, channels_last=True)


def transpose_phases(node: Node) -> list[ConvPart]:
    """A QConvTranspose as stride-1 convolutions, one per output phase
    (docs/codegen.md): output o = i*s + t - p reads the kernel taps
    t = r + s*u with r = (o + p) mod s, so phase r's outputs o = r - p + s*q
    are a convolution of x by those taps in reverse order, its q-th output
    reading input rows q - (T - 1) .. q, T = ceil((K - r) / s) taps."""
    x, w, out = node.inputs[0].type, node.inputs[1].type, node.outputs[0].type
    base = conv_shape(node)
    axes = [_phases(x.shape[2 + a], w.shape[2 + a], node.attrs["strides"][a], node.attrs["pads"][a],
                    out.shape[2 + a]) for a in range(2)]
    parts = []
    for (ry, oy, ny, ty, py) in axes[0]:
        for (rx, ox, nx, tx, px) in axes[1]:
            shape = dataclasses.replace(base, oh=ny, ow=nx, kh=len(ty), kw=len(tx), sh=1, sw=1, dh=1, dw=1)
            parts.append(ConvPart(shape, (py[0], px[0], py[1], px[1]), (oy, ox), tuple(node.attrs["strides"]),
                                  (ty, tx)))
    return parts


def _phases(size: int, kernel: int, stride: int, pad: int, out: int) -> list[tuple]:
    """Per phase along one axis: (phase r, first output, outputs, kernel
    taps in the phase's order, (begin, end) input padding)."""
    phases = []
    for r in range(stride):
        first = (r - pad) % stride
        count = -(-(out - first) // stride) if first < out else 0
        if count == 0:
            continue
        taps = tuple(range(r, kernel, stride))[::-1]
        q0 = (first + pad - r) // stride
        begin = len(taps) - 1 - q0
        end = q0 + count - 1 - (size - 1)
        phases.append((r, first, count, taps, (begin, end)))
    return phases


def even_ranges(extent: int, workers: int, align: int = 1) -> list[tuple[int, int]]:
    """``[0, extent)`` cut into ``workers`` contiguous ranges, each a multiple
    of ``align`` long but the last, as even as they can be (the first ones
    the longer; some empty when there are fewer units than workers)."""
    units = -(-extent // align)
    ranges, start = [], 0
    for w in range(workers):
        count = units // workers + (1 if w < units % workers else 0)
        stop = min(start + count * align, extent)
        ranges.append((start, stop))
        start = stop
    return ranges


def split_extent(part: ConvPart, axis: str) -> tuple[int, int]:
    """The extent ``axis`` cuts a part along, and the unit its ranges align to."""
    s = part.shape
    if axis == "k":
        return s.k, s.kg if s.groups > 1 else 1
    return (s.oh, 1) if axis == "rows" else (s.ow, 1)


def share(part: ConvPart, axis: str, start: int, stop: int) -> ConvPart:
    """The CONV layer that computes ``[start, stop)`` of ``part``'s output
    along ``axis``: output channels (with their groups' input channels),
    output rows or output columns (the input window moves with them: the
    padding before becomes negative where rows are skipped)."""
    s = part.shape
    if axis == "k":
        groups = (stop - start) // s.kg if s.groups > 1 else 1
        c = groups * s.cg if s.groups > 1 else s.c
        in0 = part.in_channel0 + (start // s.kg) * s.cg if s.groups > 1 else part.in_channel0
        return dataclasses.replace(part, shape=dataclasses.replace(s, k=stop - start, c=c, groups=groups),
                                   channel0=part.channel0 + start, in_channel0=in0)
    top, left, bottom, right = part.pads
    if axis == "rows":
        return dataclasses.replace(part, shape=dataclasses.replace(s, oh=stop - start),
                                   pads=(top - start * s.sh, left, bottom, right),
                                   origin=(part.origin[0] + start * part.step[0], part.origin[1]))
    return dataclasses.replace(part, shape=dataclasses.replace(s, ow=stop - start),
                               pads=(top, left - start * s.sw, bottom, right),
                               origin=(part.origin[0], part.origin[1] + start * part.step[1]))
