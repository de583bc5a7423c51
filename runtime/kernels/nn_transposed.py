"""ConvTranspose: a GEMM of the weights by the input, then the column
matrix scattered into the output (col2im).

The product is ``W^T (K x taps, C) @ X (C, H x W)`` per image: for float32
data, Tessera's GEMM on the transposed weights packed once
(:data:`runtime.kernels.conv_weights.transposed_weights`; of G groups, the
G products ``W_g^T @ X_g`` as one batch), the product a 1x1 convolution of
the same shape runs, so that its bits are the same on every host and in a
schedule, where it lowers as that product and a COL2IM operation
(:func:`lower_conv_transpose`: a decoder's or a segmentation head's
upsampling no longer splits the schedule, nor waits on numpy's BLAS and its
own threads). A float32 depthwise one has a product of one term per tap,
which the col2im computes itself. Float64 data takes numpy's matmul.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from runtime import gemm
from runtime.errors import KernelError
from runtime.jit import readonly
from runtime.kernels.conv_weights import transposed_for
from runtime.kernels.limits import check_output_size
from runtime.kernels.nn_conv import _bias, _check_rank, _compute_dtype, _geo, _pointwise_product, window_attrs
from runtime.kernels.nn_im2col import col2im_planes
from runtime.kernels.nn_window import MAX_ATTR, Window, grain, lift, make_window
from runtime.parallel import parallel_for
from runtime.schedule.records import COL2IM, Operand

_OP = "ConvTranspose"


def transposed_geometry(x_shape: tuple, w_shape: tuple, strides: Sequence[int], pads: Sequence[int],
                        dilations: Sequence[int], group, output_padding: Sequence[int] | None
                        ) -> tuple[Window, tuple, int]:
    """The window, output shape and groups of a ConvTranspose of X of
    ``x_shape`` by W of ``w_shape`` (a KernelError naming what does not fit)."""
    spatial = _check_rank(_OP, x_shape, w_shape)
    window = make_window(_OP, spatial, w_shape[2:], strides, pads, dilations, negative_pads=True)
    extra = (0,) * spatial if output_padding is None else tuple(int(v) for v in output_padding)
    if len(extra) != spatial or any(not 0 <= v <= MAX_ATTR for v in extra):
        raise KernelError(f"{_OP}: output_padding={list(extra)} must be {spatial} ints in [0, {MAX_ATTR}]")
    batch, chans = x_shape[:2]
    group = int(group)
    if group < 1 or w_shape[0] != chans or chans % group:
        raise KernelError(f"{_OP}: group={group} does not fit X with {chans} channels and W of shape "
                          f"{list(w_shape)} (need W.shape[0] == C and C % group == 0)")
    dims = []
    for axis, size in enumerate(x_shape[2:]):
        dim = (window.strides[axis] * (size - 1) + extra[axis] + window.spans[axis]
               - window.pads_begin[axis] - window.pads_end[axis])
        if dim < 1 or size < 1:
            raise KernelError(f"{_OP}: spatial axis {axis} (input size {size}) gives output size {dim}")
        dims.append(dim)
    return window, (batch, w_shape[1] * group) + tuple(dims), group


def conv_transpose_nd(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, *, strides: Sequence[int],
                      pads: Sequence[int], dilations: Sequence[int], group: int = 1,
                      output_padding: Sequence[int] | None = None) -> np.ndarray:
    """ONNX ConvTranspose with explicit pads: ``x`` (N, C, *in), ``w``
    (C, K/group, *kernel); output length per axis is
    ``stride * (in - 1) + output_padding + (kernel - 1) * dilation + 1 - pads``.
    Pads may be negative (they then extend the output, as an ``output_shape``
    larger than the natural one does). float32 or float64."""
    x, w = np.asarray(x), np.asarray(w)
    dtype = _compute_dtype(_OP, x, w)
    window, shape, group = transposed_geometry(x.shape, w.shape, strides, pads, dilations, group, output_padding)
    b = _bias(_OP, b, shape[1], dtype)
    out = np.empty(check_output_size(shape, _OP), dtype=dtype)
    if out.size == 0:
        return out
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    _gemm_col2im(x, w, b, out, window, group)
    return out


def _ours(dtype, group: int) -> bool:
    """Whether the product is Tessera's GEMM (float32; of several groups,
    their products as one batch), not numpy's."""
    return dtype == np.float32 and gemm.available()


def _depthwise(dtype, group: int, w_shape: tuple) -> bool:
    """Whether it is a float32 depthwise one (one input channel an output
    channel: CenterNet's upsampling), whose product of one term per tap the
    col2im computes itself."""
    return dtype == np.float32 and group == w_shape[0] > 1 and w_shape[1] == 1


def _gemm_col2im(x, w, b, out, window: Window, group: int) -> None:
    batch, chans = x.shape[:2]
    out_c = out.shape[1]
    taps = math.prod(window.lifted().kernel)
    in3 = lift(x).shape[2:]
    size = math.prod(in3)
    bias = readonly(b if b is not None else np.zeros(out_c, dtype=x.dtype))
    out3 = lift(out)
    geo = _geo(window)
    if _depthwise(x.dtype, group, w.shape):
        x5, scale = lift(x).reshape((batch, chans, 1) + in3), readonly(w.reshape(chans, taps))
        for n in range(batch):
            parallel_for(col2im_planes, out_c, x5[n], scale, bias, out3[n], geo, grain=grain(taps * size))
        return
    rows = (out_c // group) * taps
    cols = np.empty(check_output_size((group, rows, size), "ConvTranspose column matrix"), dtype=x.dtype)
    col_view = cols.reshape((out_c, taps) + in3)
    product = (_pointwise_product(transposed_for(w, size, group), size, None, None, False)
               if _ours(x.dtype, group) else None)
    no_scale = readonly(np.empty((0, 0), x.dtype))
    for n in range(batch):
        if product is not None:
            product.run(x[n].reshape(product.b_shape), cols.reshape(product.shape))
        else:
            np.matmul(w.reshape(group, chans // group, rows).transpose(0, 2, 1),
                      x[n].reshape(group, chans // group, size), out=cols)
        parallel_for(col2im_planes, out_c, col_view, no_scale, bias, out3[n], geo, grain=grain(taps * size))


def lower_conv_transpose(ctx, args, attrs) -> bool:
    """A float32 2-D ConvTranspose (grouped or depthwise too) with frozen
    constant weights (and bias) as schedule operations: per image, the
    product into a scratch column matrix, then a COL2IM operation over the
    output channels (runtime.schedule.ops); a depthwise one's COL2IM reads
    the input and the weights itself, as :func:`_gemm_col2im` runs them."""
    x, w = args[0], args[1] if len(args) > 1 else None
    b = args[2] if len(args) > 2 else None
    if (not isinstance(x, Operand) or x.dtype != np.float32 or len(x.shape) != 4
            or not isinstance(w, np.ndarray) or w.dtype != np.float32 or not ctx.frozen(w)
            or (b is not None and (not isinstance(b, np.ndarray) or b.dtype != np.float32 or not ctx.frozen(b)))):
        return False
    try:
        options = window_attrs(attrs, w)
        window, shape, group = transposed_geometry(x.shape, w.shape, **options,
                                                   output_padding=attrs["output_padding"])
        b = _bias(_OP, b, shape[1], np.dtype(np.float32))
    except (KernelError, KeyError, TypeError, ValueError):
        return False
    depthwise = _depthwise(x.dtype, group, w.shape)
    if shape != ctx.out_types[0][0] or not (depthwise or _ours(x.dtype, group)) or 0 in x.shape:
        return False
    batch, chans, h, w_in = x.shape
    out_c, oh, ow = shape[1:]
    taps = w.shape[2] * w.shape[3]
    size = h * w_in
    bias = ctx.pin(np.ascontiguousarray(b if b is not None else np.zeros(out_c, np.float32)))
    if depthwise:
        scale, rows, cols = ctx.pin(np.ascontiguousarray(w)), out_c, None
    else:
        product = _pointwise_product(transposed_for(w, size, group), size, None, None, False)
        cols = ctx.scratch((out_c * taps, size), np.float32)
        scale, rows = (0, 0), 0
    out = ctx.output(0, shape)
    geo = _geo(window)
    for n in range(batch):
        src = x.ref(n * chans * size * 4)
        if not depthwise:
            product.lower(ctx, src, cols.ref(), None)
            src = cols.ref()
        ctx.emit(COL2IM, [*src, out_c, 1 if depthwise else taps, h, w_in, *bias, *out.ref(n * out_c * oh * ow * 4),
                          oh, ow, *scale, rows, taps, *geo], out_c, grain(taps * size))
    return True
