"""PruneConvTaps: the kernel rows and columns of a Conv that meet only zero
padding, at every output position, are dropped with the padding they read.

A 3x3 convolution of a 1x1 map (a ResNet's last stage on 32x32 inputs, a
detector's deepest level) multiplies eight of its nine taps by padding: its
centre tap alone, a 1x1 convolution, computes the same sums with a ninth of
the MACs and of the weights. On a 2x2 map with pads of 1 every tap meets data
somewhere, and nothing changes.

It runs wherever a float convolution runs on the host, so that every API
computes the same bits: compiler.backend's float pipeline
(compiler.pipeline.OPTIMIZE), Run_th's reference program
(compiler.compile.fused_reference), the Simulator API's float runs, and the
device pipeline's CPU layers (compiler.pipeline.PLACE: after the affinity
pass, since a smaller kernel changes a layer's cost and so where the policy
places tiny layers; the accelerator's layers keep their kernels, which the
quantizer, the tiling and the binary see as imported).

Only taps at the ends of a kernel axis go (the kernel stays a box), and only
where the pads left are not negative; the output shape is the same.
"""
from __future__ import annotations

from ir.graph import Graph, Node
from passes.infra import PassContext, graph_pass
from passes.rewrite import const_input, nodes_of
from runtime.hardware import HOST


@graph_pass(opt_level=1)
def prune_conv_taps(graph: Graph, ctx: PassContext) -> Graph:
    """Crop each Conv with a constant weight and a static input, placed on
    the host or not placed yet, to the taps that read its input somewhere."""
    for node in nodes_of(graph, "Conv"):
        if node.affinity not in (None, HOST):
            continue
        crop = _live_taps(node)
        if crop is None:
            continue
        weight = node.inputs[1]
        cropped = graph.add_constant(weight.const[(slice(None), slice(None), *crop)].copy(), f"{node.name}_weight")
        cropped.quant = weight.quant  # per output channel: the same for fewer taps
        rank = len(crop)
        kernel = node.attrs["kernel_shape"]
        begins, ends = list(node.attrs["pads"][:rank]), list(node.attrs["pads"][rank:])
        for axis, taps in enumerate(crop):
            dilation = node.attrs["dilations"][axis]
            begins[axis] -= taps.start * dilation
            ends[axis] -= (kernel[axis] - taps.stop) * dilation
        node.attrs["kernel_shape"] = [taps.stop - taps.start for taps in crop]
        node.attrs["pads"] = begins + ends
        node.set_input(1, cropped)
    return graph


def _live_taps(node: Node) -> tuple[slice, ...] | None:
    """Per spatial axis, the range of kernel taps that read the input for
    some output position; None when every tap does (or the Conv is not one
    this pass may crop: weight not constant, shapes not static)."""
    x, y = node.inputs[0], node.outputs[0]
    if const_input(node, 1) is None or not x.type.is_static or not y.type.is_static or x.type.rank < 3:
        return None
    rank = x.type.rank - 2
    kernel, strides = node.attrs["kernel_shape"], node.attrs["strides"]
    pads, dilations = node.attrs["pads"], node.attrs["dilations"]
    crop, smaller = [], False
    for axis in range(rank):
        size, out = x.type.shape[2 + axis], y.type.shape[2 + axis]
        stride, dilation, begin = strides[axis], dilations[axis], pads[axis]
        live = [t for t in range(kernel[axis])
                if any(0 <= o * stride + t * dilation - begin < size for o in range(out))]
        if not live:
            return None  # the output is the bias alone: not this pass's business
        first, last = live[0], live[-1]
        if begin - first * dilation < 0 or pads[rank + axis] - (kernel[axis] - 1 - last) * dilation < 0:
            first, last = 0, kernel[axis] - 1
        crop.append(slice(first, last + 1))
        smaller |= last - first + 1 < kernel[axis]
    return tuple(crop) if smaller else None
