"""Conv and FusedConv steps prepared once with their constant weights and
bias (see :func:`runtime.kernels.registry.prepares`).

A model calls each convolution with the same weights, bias and input shape
on every inference, and the generic kernel's Python (attribute and shape
checks, the packed-weights lookup, the GEMM's plan lookup, the dispatch over
convolution kinds) cost 10-15 us a layer: more than the arithmetic of a
small layer. A prepared step does all of that once per input shape and, on
each call, only checks that it got what it was prepared for (the very
weight and bias arrays, a C-contiguous float32 input of a known shape, a
residual of the output's layout) before running the planned product or the
depthwise kernel. Any other call goes to the generic kernel unchanged.

Weights are still looked up in :data:`packed_weights` on every call, so a
weight array rewritten in place is repacked exactly as in the generic path;
only frozen weights (read-only down to their memory, as a binary's constants
are: :func:`runtime.kernels.weight_cache.frozen`) keep the entry found the
last time, for as long as they stay frozen.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from runtime import gemm
from runtime.kernels.conv_epilogue import check_epilogue
from runtime.kernels.conv_weights import grouped_weights, is_narrow, narrow_weights, packed_weights, product_columns
from runtime.kernels.nn_conv import (
    _conv_gemm,
    _conv_geometry,
    _geo,
    _pointwise_product,
    _winograd_tile,
    conv_one_position,
    gemm_bands,
    lower_conv_gemm,
    lower_conv_one_position,
    lower_plane_kernel,
    one_position,
    plane_kernel,
    run_plane_kernel,
    window_attrs,
)
from runtime.kernels.nn_direct import direct_fits, lower_direct
from runtime.kernels.nn_grouped import _conv_grouped
from runtime.kernels.nn_im2col import conv_by_bands, lower_bands
from runtime.kernels.nn_window import lift
from runtime.kernels.nn_winograd import lower_winograd, packed_winograd_weights, winograd_conv2d
from runtime.kernels.registry import Kernel
from runtime.kernels.weight_cache import frozen
from runtime.schedule.records import Operand

_F32 = np.dtype(np.float32)
RESIDUAL = 3
"""FusedConv's input index of the residual (X, W, B, R)."""
_UNKNOWN = object()


def prepare_conv(generic: Kernel, attrs: Mapping[str, Any], constants: Sequence[np.ndarray | None],
                 fused: bool) -> Kernel | None:
    """A prepared kernel for a Conv (``fused`` False: inputs X, W[, B]) or
    FusedConv (X, W, B, R) step whose W, and B where it is constant, are
    float32 arrays; or None. A B that is not constant (or omitted) is
    prepared as None: a call that then gets an array goes to the generic
    kernel."""
    if not (len(constants) == 4 if fused else 2 <= len(constants) <= 3):
        return None
    w = constants[1]
    b = constants[2] if len(constants) > 2 else None
    if not _float32(w) or w.ndim != 4 or not w.flags.c_contiguous:
        return None
    if b is not None and (not _float32(b) or b.shape != (w.shape[0],) or not b.flags.c_contiguous):
        return None
    return PreparedConv(generic, attrs, w, b, fused)


def _float32(a) -> bool:
    return isinstance(a, np.ndarray) and a.dtype == _F32


class PreparedConv:
    """One Conv/FusedConv step with constant ``w`` and ``b`` (None: no bias
    input), and a ``gate`` after its clamp (runtime.kernels.nn_gate: then
    ``generic`` applies it too), prepared per input shape: a planned GEMM for 1x1 convolutions
    (stride 1, no padding, one group), the bands of output rows for the
    convolutions the generic kernel runs that way, the flat or padded-plane
    kernel for the 3x3 depthwise ones that have one, Winograd for the 3x3
    ones it suits and a column matrix for the other 2-D convolutions of one
    group; other shapes go to the generic kernel. Each can also lower itself
    to schedule operations (:meth:`lower`, runtime.schedule)."""

    def __init__(self, generic: Kernel, attrs: Mapping[str, Any], w: np.ndarray, b: np.ndarray | None, fused: bool,
                 gate: tuple | None = None):
        self.generic, self.attrs, self.w, self.b, self.fused = generic, attrs, w, b, fused
        options = window_attrs(attrs, w)  # a mismatch: the generic kernel says so when the step runs, naming it
        self.geometry = tuple(tuple(options[k]) for k in ("strides", "pads", "dilations")) + (options["group"],)
        _, self.clamp = check_epilogue("FusedConv", None, attrs.get("clamp") if fused else None, (), _F32, gate)
        """The clamp array (clamp and gate) of the epilogue, or None."""
        self.layouts: dict[tuple, _Layout | None] = {}
        self._packed: list = [None, None, None]
        """The packings last given: the host's, the narrow one, the groups'."""

    def __call__(self, inputs, attrs):
        x = inputs[0]
        residual = inputs[3] if self.fused and len(inputs) == 4 else None
        if (attrs is not self.attrs or inputs[1] is not self.w or (inputs[2] if len(inputs) > 2 else None) is not self.b
                or type(x) is not np.ndarray or x.dtype != _F32 or not x.flags.c_contiguous):
            return self.generic(inputs, attrs)
        layout = self.layout_for(x.shape)
        if layout is None or (residual is not None and (
                type(residual) is not np.ndarray or residual.dtype != _F32 or residual.shape != layout.out_shape
                or not residual.flags.c_contiguous)):
            return self.generic(inputs, attrs)
        return (layout.run(self, x, residual),)

    def lower(self, ctx, args, attrs, out: Operand | None = None) -> bool:
        """This step as schedule operations (runtime.schedule.builder), for
        what :meth:`__call__` would run prepared, with frozen weights; into
        ``out`` when given (the middle of a pair), else output 0."""
        x = args[0]
        residual = args[3] if self.fused and len(args) == 4 else None
        if (attrs is not self.attrs or args[1] is not self.w or (args[2] if len(args) > 2 else None) is not self.b
                or not isinstance(x, Operand) or x.dtype != _F32 or not ctx.frozen(self.w)
                or (self.b is not None and not ctx.frozen(self.b))):
            return False
        layout = self.layout_for(x.shape)
        if layout is None or (residual is not None and (
                not isinstance(residual, Operand) or residual.dtype != _F32 or residual.shape != layout.out_shape)):
            return False
        layout.lower(self, ctx, x, residual, out)
        return True

    def out_shape(self, x_shape: tuple) -> tuple | None:
        """The output shape of a prepared run on X of ``x_shape``, or None
        where none would run prepared."""
        layout = self.layout_for(x_shape)
        return None if layout is None else layout.out_shape

    def layout_for(self, x_shape: tuple) -> "_Layout | None":
        """How X of ``x_shape`` runs prepared (None: on the generic kernel),
        chosen once per shape."""
        layout = self.layouts.get(x_shape, _UNKNOWN)
        if layout is _UNKNOWN:
            layout = self.layouts[x_shape] = self._layout(x_shape)
        return layout

    def packed(self, columns: int | None = None, narrow: bool | None = None):
        """W packed for the GEMM (for products of ``columns`` columns:
        :func:`packed_for`; None: as the banded and fused kernels read it;
        ``narrow``: for the narrow family, as a direct product reads it):
        from the shared cache, or, while W stays frozen (a binary's
        constants), the entry the cache gave last time (the cache's lookup
        cost ~15 us a layer once the kernels before it had evicted its
        data)."""
        narrow = is_narrow(columns) if narrow is None else narrow
        kept = self._packed[narrow]
        if kept is not None and frozen(self.w):
            return kept
        packed = (narrow_weights if narrow else packed_weights).get(self.w)
        self._packed[narrow] = packed if frozen(self.w) else None
        return packed

    def packed_groups(self, group: int):
        """W of ``group`` groups packed as a batch of left operands
        (conv_weights.grouped_weights), kept as :meth:`packed` keeps its."""
        kept = self._packed[2]
        if kept is not None and frozen(self.w):
            return kept
        packed = grouped_weights.get(self.w, group)
        self._packed[2] = packed if frozen(self.w) else None
        return packed

    def _layout(self, x_shape: tuple) -> "_Layout | None":
        strides, pads, dilations, group = self.geometry
        try:
            window, out_shape = _conv_geometry(x_shape, self.w.shape, strides, pads, dilations, group)
        except Exception:  # noqa: BLE001 - the generic kernel reports it, naming the node
            return None
        if 0 in out_shape or x_shape[1] == 0:
            return None
        if one_position(x_shape, out_shape, window, group):
            return _OnePosition(out_shape, window)
        pointwise = (all(k == 1 for k in window.kernel) and not any(window.pads_begin + window.pads_end)
                     and all(s == 1 for s in window.strides) and (int(group) == 1 or int(group) < x_shape[1]))
        if pointwise and gemm.available():
            return _Pointwise(out_shape, int(group))
        band = gemm_bands(x_shape, self.w.shape, window, group)
        if band:
            return _Banded(out_shape, band, _geo(window), int(group))
        chosen = plane_kernel(x_shape, _F32, window, self.w.shape[0]) if int(group) == x_shape[1] > 1 else None
        if chosen is not None:
            return _Depthwise(out_shape, chosen)
        if len(x_shape) != 4 or not gemm.available():
            return None
        if int(group) != 1:  # neither depthwise nor 1x1 (a strided one: the generic kernel's)
            one_by_one = all(k == 1 for k in window.kernel) and not any(window.pads_begin + window.pads_end)
            return None if int(group) == x_shape[1] or one_by_one else _Grouped(out_shape, window, int(group))
        m = _winograd_tile(_F32, x_shape, self.w.shape, window, group)
        return _Winograd(out_shape, window, m) if m else _Im2col(out_shape, window, pointwise)


class _Layout:
    def __init__(self, out_shape: tuple):
        self.out_shape = out_shape

    def target(self, ctx, out: Operand | None) -> Operand:
        """Where a lowered step writes: ``out`` when given, else its output."""
        return ctx.output(0, self.out_shape) if out is None else out


class _Pointwise(_Layout):
    """``W (K, C) @ X (C, S)`` per image on a product planned once (and
    again only if the weights are repacked); of G groups, the G products
    ``W_g (K/G, C/G) @ X_g (C/G, S)`` as one batch (ShuffleNet's)."""

    def __init__(self, out_shape: tuple, group: int = 1):
        super().__init__(out_shape)
        self.size = int(np.prod(out_shape[2:]))
        self.group = group
        self.products: dict[tuple, Any] = {}

    def _packed(self, step: PreparedConv):
        return step.packed(self.size) if self.group == 1 else step.packed_groups(self.group)

    def run(self, step: PreparedConv, x: np.ndarray, residual: np.ndarray | None) -> np.ndarray:
        packed = self._packed(step)
        key = (packed, residual is not None)
        product = self.products.get(key)
        if product is None:
            self.products.clear()  # the weights were repacked: the old product is stale
            product = self.products[key] = _pointwise_product(packed, self.size, step.b, step.clamp,
                                                              residual is not None)
        out = _output(step, x, residual if product.single_block else None, self.out_shape)
        ins, outs = x.reshape((x.shape[0], *product.b_shape)), out.reshape((x.shape[0], *product.shape))
        residuals = None if residual is None else residual.reshape(outs.shape)
        for n in range(x.shape[0]):
            product.run(ins[n], outs[n], None if residuals is None else residuals[n])
        return out

    def lower(self, step: PreparedConv, ctx, x: Operand, residual: Operand | None, out: Operand | None) -> None:
        product = _pointwise_product(self._packed(step), self.size, step.b, step.clamp, residual is not None)
        in_place = (residual is not None and product.single_block and step.attrs.get("inplace", -1) == RESIDUAL
                    and residual.writable and residual.base != x.base)
        if out is None:
            out = ctx.output(0, self.out_shape, like=residual if in_place else None)
        batch, chans, out_c = x.shape[0], x.shape[1], self.out_shape[1]
        x_bytes, y_bytes = chans * self.size * 4, out_c * self.size * 4
        for n in range(batch):
            product.lower(ctx, x.ref(n * x_bytes), out.ref(n * y_bytes),
                          None if residual is None else residual.ref(n * y_bytes))


def _output(step: PreparedConv, x: np.ndarray, residual: np.ndarray | None, shape: tuple) -> np.ndarray:
    """The residual itself where the step may write there (``inplace``:
    the residual dies with it; its product, one reduction block deep, reads
    each residual tile before it writes there) and it is writeable and
    apart from X; else a new array."""
    if (residual is not None and step.attrs.get("inplace", -1) == RESIDUAL and residual.flags.writeable
            and not np.may_share_memory(residual, x)):
        return residual
    return np.empty(shape, np.float32)


class _Banded(_Layout):
    """A 2-D convolution that the generic kernel would run by bands of
    output rows (:func:`gemm_bands`: MobileNetV2's and ResNet-50's stems,
    ResNeXt's grouped 3x3s), run that way directly: the generic kernel's
    Python before it cost ~30 us a call once the layers before had evicted
    it."""

    def __init__(self, out_shape: tuple, band: int, geo: tuple, group: int = 1):
        super().__init__(out_shape)
        self.band, self.geo, self.group = band, geo, group

    def _packed(self, step: PreparedConv):
        return step.packed() if self.group == 1 else step.packed_groups(self.group)

    def run(self, step: PreparedConv, x: np.ndarray, residual: np.ndarray | None) -> np.ndarray:
        out = np.empty(self.out_shape, np.float32)
        batch, out_c, out_h, out_w = self.out_shape
        outs = out.reshape(batch, out_c, out_h * out_w)
        conv_by_bands(lift(x), self._packed(step), step.b, outs,
                      None if residual is None else residual.reshape(outs.shape), step.clamp, self.geo, self.band,
                      out_h, out_w)
        return out

    def lower(self, step: PreparedConv, ctx, x: Operand, residual: Operand | None, out: Operand | None) -> None:
        if len(x.shape) != 4:
            raise ValueError("bands of a 2-D convolution only")
        lower_bands(ctx, x, self._packed(step), step.b, self.target(ctx, out), residual, step.clamp,
                    self.geo, self.band, *self.out_shape[2:])


class _Winograd(_Layout):
    """A 3x3 convolution on Winograd's F(m x m) with the packed transformed
    weights (as the generic kernel runs it: on im2col where the weights hold
    NaN or Inf), without the generic kernel's dispatch on every call."""

    def __init__(self, out_shape: tuple, window, m: int):
        super().__init__(out_shape)
        self.window, self.m = window, m
        self.pads = window.pads_begin + window.pads_end

    def run(self, step: PreparedConv, x: np.ndarray, residual: np.ndarray | None) -> np.ndarray:
        out = np.empty(self.out_shape, np.float32)
        u = packed_winograd_weights.get(step.w, self.m)
        if u is None:
            _conv_gemm(x, step.w, step.b, out, self.window, False, residual, step.clamp)
        else:
            winograd_conv2d(x, u, step.b, out, self.pads, self.m, residual, step.clamp)
        return out

    def lower(self, step: PreparedConv, ctx, x: Operand, residual: Operand | None, out: Operand | None) -> None:
        u = packed_winograd_weights.get(step.w, self.m)
        if u is None:
            raise ValueError("weights holding NaN or Inf run on im2col")
        lower_winograd(ctx, x, u, step.b, self.target(ctx, out), self.pads, self.m, residual,
                       step.clamp)


class _Im2col(_Layout):
    """A convolution of one group the generic kernel runs on a column
    matrix of the input and one product (a strided 1x1 convolution on its
    subsampled input), without the generic kernel's dispatch."""

    def __init__(self, out_shape: tuple, window, pointwise: bool):
        super().__init__(out_shape)
        self.window, self.pointwise = window, pointwise

    def run(self, step: PreparedConv, x: np.ndarray, residual: np.ndarray | None) -> np.ndarray:
        out = np.empty(self.out_shape, np.float32)
        _conv_gemm(x, step.w, step.b, out, self.window, self.pointwise, residual, step.clamp)
        return out

    def lower(self, step: PreparedConv, ctx, x: Operand, residual: Operand | None, out: Operand | None) -> None:
        if direct_fits(x.shape, step.w.shape, self.window):
            lower_direct(ctx, x, step.packed(narrow=True), step.b, self.target(ctx, out), self.window, residual,
                         step.clamp)
            return
        columns = product_columns(self.out_shape, step.w[0].size, self.pointwise)
        lower_conv_gemm(ctx, x, step.packed(columns), step.b, self.target(ctx, out), self.window,
                        self.pointwise, residual, step.clamp)


class _Grouped(_Layout):
    """A convolution of G groups of several channels, not 1x1: per image
    and block of output rows, the column matrix and the groups' products
    as one batch (runtime.kernels.nn_grouped)."""

    def __init__(self, out_shape: tuple, window, group: int):
        super().__init__(out_shape)
        self.window, self.group = window, group

    def run(self, step: PreparedConv, x: np.ndarray, residual: np.ndarray | None) -> np.ndarray:
        out = np.empty(self.out_shape, np.float32)
        _conv_grouped(x, step.w, step.b, out, self.window, False, residual, step.clamp, self.group)
        return out

    def lower(self, step: PreparedConv, ctx, x: Operand, residual: Operand | None, out: Operand | None) -> None:
        lower_conv_gemm(ctx, x, step.packed_groups(self.group), step.b, self.target(ctx, out), self.window, False,
                        residual, step.clamp)


class _OnePosition(_Layout):
    """A convolution of one output position per image, as dot products
    (:func:`conv_one_position`), without the generic kernel's dispatch."""

    def __init__(self, out_shape: tuple, window):
        super().__init__(out_shape)
        self.window = window

    def run(self, step: PreparedConv, x: np.ndarray, residual: np.ndarray | None) -> np.ndarray:
        out = np.empty(self.out_shape, np.float32)
        conv_one_position(x, step.w, step.b, out, self.window, residual, step.clamp)
        return out

    def lower(self, step: PreparedConv, ctx, x: Operand, residual: Operand | None, out: Operand | None) -> None:
        lower_conv_one_position(ctx, x, step.w, step.b, self.target(ctx, out), self.window, residual, step.clamp)


class _Depthwise(_Layout):
    """A depthwise convolution on the kernel chosen for its geometry once
    (:func:`plane_kernel`: the block, plane or padded-plane kernels)."""

    def __init__(self, out_shape: tuple, chosen: tuple):
        super().__init__(out_shape)
        self.chosen = chosen

    def run(self, step: PreparedConv, x: np.ndarray, residual: np.ndarray | None) -> np.ndarray:
        out = np.empty(self.out_shape, np.float32)
        run_plane_kernel(self.chosen, x, step.w, step.b, out, residual, step.clamp)
        return out

    def lower(self, step: PreparedConv, ctx, x: Operand, residual: Operand | None, out: Operand | None) -> None:
        lower_plane_kernel(ctx, self.chosen, x, step.w, step.b, self.target(ctx, out), residual,
                           step.clamp)
