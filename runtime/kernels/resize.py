"""CPU kernel: Resize (newest-opset semantics; Upsample is imported as Resize).

Resize is separable: every resized axis maps each output position to a
source coordinate (``coordinate_transformation_mode``) and from there to a few
source taps with weights (``mode``, ``antialias``, ``exclude_outside``).
The maps are computed per axis in float64 with numpy, exactly as the ONNX
reference does; the data is then moved by Numba loops:

* the hot case, nearest or linear over the last two axes of a float32
  tensor (NCHW upsampling), runs as one fused 2-D pass over output rows;
* everything else (cubic, antialias, N-D, exclude_outside, float64 and
  integer data) applies one axis at a time through a generic tap kernel.

:func:`output_size` is the one definition of the output shape; the IR's type
rule calls it too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from runtime.errors import KernelError
from runtime.jit import jit
from runtime.kernels.limits import MAX_ELEMENTS
from runtime.kernels.ordered import taps_f32, taps_f64
from runtime.kernels.registry import kernel
from runtime.parallel import parallel_for
from runtime.schedule.records import RESIZE_LINEAR, RESIZE_NEAREST, Operand

MODES = ("nearest", "linear", "cubic")
COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                    "tf_crop_and_resize")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
ASPECT_POLICIES = ("stretch", "not_larger", "not_smaller")

_ROW_GRAIN = 1 << 15  # output elements per parallel chunk, at least


# ---------------------------------------------------------------- output shape
def check_attrs(attrs) -> None:
    """Reject attribute values the kernel does not know (they may come from a file)."""
    for name, allowed in (("mode", MODES), ("coordinate_transformation_mode", COORDINATE_MODES),
                          ("nearest_mode", NEAREST_MODES), ("keep_aspect_ratio_policy", ASPECT_POLICIES)):
        if attrs[name] not in allowed:
            raise KernelError(f"{name}={attrs[name]!r} is not one of {list(allowed)}")


def resize_axes(axes, rank: int) -> list[int]:
    """The ``axes`` attribute made non-negative (all axes when it is None)."""
    if axes is None:
        return list(range(rank))
    out = []
    for a in axes:
        if not -rank <= a < rank:
            raise KernelError(f"axes={list(axes)} is out of range for rank {rank}")
        out.append(a % rank)
    if len(set(out)) != len(out):
        raise KernelError(f"axes={list(axes)} repeats an axis")
    return out


def given(array: np.ndarray | None) -> bool:
    """An optional input counts as given when it is present and not empty."""
    return array is not None and np.asarray(array).size > 0


def output_size(in_shape: Sequence[int | None], scales: np.ndarray | None, sizes: np.ndarray | None,
                axes: list[int], policy: str) -> tuple[list[int | None], list[float | None]]:
    """Output dims and per-dim coordinate scales, as ONNX defines them:
    ``floor(in * scale)`` for scales, ``sizes`` (or the aspect-kept
    ``round(in * scale)``) for sizes. Unknown input dims give None."""
    if given(scales) == given(sizes):
        raise KernelError("exactly one of scales and sizes must be given (non-empty)")
    out: list[int | None] = list(in_shape)
    factor: list[float | None] = [1.0] * len(in_shape)
    if given(scales):
        values = _per_axis(scales, axes, "scales").astype(np.float64)
        if not np.all((values > 0) & (values <= MAX_ELEMENTS)):
            raise KernelError(f"scales must be positive and at most {MAX_ELEMENTS}, got {values.tolist()}")
        for axis, s in zip(axes, values.tolist()):
            factor[axis] = s
            out[axis] = None if in_shape[axis] is None else math.floor(in_shape[axis] * s)
    else:
        _sizes_to_output(in_shape, _per_axis(sizes, axes, "sizes"), axes, policy, out, factor)
    known = [d for d in out if d is not None]
    if known and math.prod(known) > MAX_ELEMENTS:
        raise KernelError(f"the output shape {out} exceeds {MAX_ELEMENTS} elements")
    return out, factor


def _per_axis(values: np.ndarray, axes: list[int], name: str) -> np.ndarray:
    values = np.asarray(values).reshape(-1)
    if values.size != len(axes):
        raise KernelError(f"{name} has {values.size} values for {len(axes)} resized axes")
    return values


def _sizes_to_output(in_shape, sizes: np.ndarray, axes: list[int], policy: str, out: list, factor: list) -> None:
    if sizes.dtype.kind not in "iu":
        raise KernelError(f"sizes must be int64, got {sizes.dtype}")
    sizes = [int(v) for v in sizes]
    if any(v < 0 for v in sizes):
        raise KernelError(f"sizes must not be negative, got {sizes}")
    for axis, size in zip(axes, sizes):
        if in_shape[axis] == 0 and size != 0:
            raise KernelError(f"axis {axis} is empty and cannot be resized to {size}")
    if policy == "stretch":
        for axis, size in zip(axes, sizes):
            out[axis] = size
            length = in_shape[axis]
            factor[axis] = None if length is None else (size / length if length else 1.0)
        return
    if any(in_shape[a] is None for a in axes):
        for axis in axes:
            out[axis] = factor[axis] = None
        return
    ratios = [size / in_shape[a] for a, size in zip(axes, sizes) if in_shape[a]]
    scale = (min if policy == "not_larger" else max)(ratios, default=1.0)
    for axis in axes:
        factor[axis] = scale
        out[axis] = int(scale * in_shape[axis] + 0.5)


# ---------------------------------------------------------------- per-axis maps
@dataclass
class AxisMap:
    """Where the output positions of one resized axis sample the input."""

    axis: int
    length: int            # input length
    coords: np.ndarray     # float64 source coordinate of each output position
    scale: float
    outside: np.ndarray | None  # tf_crop_and_resize: positions that take extrapolation_value


def _axis_map(axis: int, length: int, out_len: int, scale: float, mode: str, roi) -> AxisMap:
    """The source coordinate of every output position (ONNX's formulas, float64)."""
    y = np.arange(out_len, dtype=np.float64)
    out_width = scale * length
    outside = None
    if mode == "align_corners":
        x = np.zeros(out_len) if out_width == 1 else y * (length - 1) / (out_width - 1)
    elif mode == "asymmetric":
        x = y / scale
    elif mode == "pytorch_half_pixel":
        x = np.full(out_len, -0.5) if out_width == 1 else (y + 0.5) / scale - 0.5
    elif mode == "half_pixel":
        x = (y + 0.5) / scale - 0.5
    elif mode == "half_pixel_symmetric":
        offset = length / 2 * (1 - out_len / out_width)
        x = offset + (y + 0.5) / scale - 0.5
    else:  # tf_crop_and_resize; roi arithmetic in the roi's own precision, as the reference does
        lo, hi = roi
        if out_width == 1:
            x = np.full(out_len, (hi - lo) * (length - 1) / 2, dtype=np.float64)
        else:
            x = y * (hi - lo) * (length - 1) / (out_width - 1)
        x = x + lo * (length - 1)
        outside = (x < 0) | (x > length - 1)
    return AxisMap(axis, length, x, scale, outside)


def _roi_pairs(roi: np.ndarray | None, rank: int, axes: list[int], full_axes: bool) -> dict[int, tuple]:
    """axis -> (start, end) of the region of interest (tf_crop_and_resize)."""
    if not given(roi):
        raise KernelError("coordinate_transformation_mode='tf_crop_and_resize' needs the roi input")
    values = np.asarray(roi).reshape(-1)
    if values.dtype.kind != "f":
        raise KernelError(f"roi must be a float tensor, got {values.dtype}")
    count = rank if full_axes else len(axes)
    if values.size != 2 * count:
        raise KernelError(f"roi has {values.size} values, expected {2 * count}")
    keys = range(rank) if full_axes else axes
    return {axis: (values[i], values[count + i]) for i, axis in enumerate(keys)}


def _is_identity(m_len: int, out_len: int, scale: float, roi_pair) -> bool:
    return (math.isclose(scale, 1.0) and out_len == m_len
            and (roi_pair is None or (math.isclose(float(roi_pair[0]), 0.0) and math.isclose(float(roi_pair[1]), 1.0))))


def _plan(x: np.ndarray, roi, scales, sizes, attrs) -> tuple[list[int], list[AxisMap]]:
    """The output shape and the maps of the axes that really change."""
    check_attrs(attrs)
    axes = resize_axes(attrs["axes"], x.ndim)
    out_shape, factor = output_size(x.shape, scales, sizes, axes, attrs["keep_aspect_ratio_policy"])
    coord_mode = attrs["coordinate_transformation_mode"]
    rois = _roi_pairs(roi, x.ndim, axes, attrs["axes"] is None) if coord_mode == "tf_crop_and_resize" else {}
    maps = []
    for axis in axes:
        pair = rois.get(axis)
        if not _is_identity(x.shape[axis], out_shape[axis], factor[axis], pair):
            maps.append(_axis_map(axis, x.shape[axis], out_shape[axis], factor[axis], coord_mode, pair))
    return out_shape, maps


def _ratio(coords: np.ndarray) -> np.ndarray:
    """Distance of each coordinate past the pixel on its left, in (0, 1]: an
    exact integer counts as 1 from its left neighbour, as in the reference."""
    ratio = coords - np.floor(coords)
    return np.where(ratio == 0, 1.0, ratio)


def _window_start(coords: np.ndarray, n: int) -> np.ndarray:
    """First of the ``n`` (even) taps around each coordinate, ties to the
    left. It is found at ``coords + n/2`` like the reference finds it in its
    edge-padded copy, so coordinates within rounding of an integer pick the
    same taps as the reference."""
    shifted = coords + n // 2
    base = np.floor(shifted)
    return base.astype(np.int64) - n + (shifted != base)


def _nearest_index(m: AxisMap, nearest_mode: str) -> np.ndarray:
    """The chosen source index of every output position (not clamped)."""
    ratio = _ratio(m.coords)
    if nearest_mode == "round_prefer_floor":
        up = ratio > 0.5
    elif nearest_mode == "round_prefer_ceil":
        up = ratio >= 0.5
    elif nearest_mode == "floor":
        up = ratio == 1.0
    else:
        up = np.ones(ratio.shape, dtype=bool)
    return _window_start(m.coords, 2) + up


def _keys(x: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel with parameter ``a``."""
    x = np.abs(x)
    x2 = x * x
    x3 = x * x2
    near = (a + 2) * x3 - (a + 3) * x2 + 1
    far = a * x3 - 5 * a * x2 + 8 * a * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def _filter_taps(m: AxisMap, attrs) -> tuple[np.ndarray, np.ndarray]:
    """(taps, weights), both (out_len, n): the unclamped source indices and
    float64 weights of every output position, for linear and cubic modes.
    Antialiasing stretches the filter by 1/scale when downsampling (and
    normalises its weights)."""
    ratio = _ratio(m.coords)
    support = 1 if attrs["mode"] == "linear" else 2
    stretch = min(m.scale, 1.0) if attrs["antialias"] else 1.0
    start = math.floor(-support / stretch) + 1
    args = (np.arange(start, 2 - start)[None, :] - ratio[:, None]) * stretch
    if support == 1:
        weights = np.clip(1 - np.abs(args), 0, 1)
    else:
        weights = _keys(args, attrs["cubic_coeff_a"])
    if attrs["antialias"]:
        weights = weights / weights.sum(axis=1, keepdims=True)
    n = weights.shape[1]
    return _window_start(m.coords, n)[:, None] + np.arange(n)[None, :], weights


def _taps(m: AxisMap, attrs) -> tuple[np.ndarray, np.ndarray]:
    """(clamped taps int64, weights float64) of one axis for the generic kernel."""
    if attrs["mode"] == "nearest":
        taps = _nearest_index(m, attrs["nearest_mode"])[:, None]
        weights = np.ones(taps.shape)
    else:
        taps, weights = _filter_taps(m, attrs)
    if attrs["exclude_outside"]:
        weights = np.where((taps < 0) | (taps >= m.length), 0.0, weights)
        total = weights.sum(axis=1, keepdims=True)
        weights = weights / np.where(total == 0, 1.0, total)
    return np.clip(taps, 0, m.length - 1), weights


# ---------------------------------------------------------------- Numba loops
# Each loop handles rows [start, stop) of a flattened (outer, row) index space,
# split into whole runs per outer index (no division per row or per element).
@jit
def nearest_rows(start, stop, src, iy, ix, pairs, out):
    """out[p, oy, ox] = src[p, iy[oy], ix[ox]]. A row repeating the previous
    source row is copied from the output row above; with ``pairs`` (ix is
    [0, 0, 1, 1, ...], the common x2 upsampling) each source value is
    written twice, which vectorises where a gather does not."""
    oh = out.shape[1]
    ow = out.shape[2]
    for p in range(start // oh, (stop - 1) // oh + 1):
        first = max(start - p * oh, 0)
        for oy in range(first, min(stop - p * oh, oh)):
            sy = iy[oy]
            if oy > first and iy[oy - 1] == sy:
                for ox in range(ow):
                    out[p, oy, ox] = out[p, oy - 1, ox]
            elif pairs:
                row = src[p, sy]
                dst = out[p, oy]
                for sx in range(ow // 2):
                    value = row[sx]
                    dst[2 * sx] = value
                    dst[2 * sx + 1] = value
            else:
                for ox in range(ow):
                    out[p, oy, ox] = src[p, sy, ix[ox]]


@jit(fastmath=True)
def _blend_row(src, p, sy, x0, x1, wx0, wx1, rows, slot):
    """rows[slot] = source row (p, sy) interpolated along x."""
    for ox in range(rows.shape[1]):
        rows[slot, ox] = wx0[ox] * src[p, sy, x0[ox]] + wx1[ox] * src[p, sy, x1[ox]]


@jit(fastmath=True)
def linear_rows(start, stop, src, y0, y1, wy0, wy1, x0, x1, wx0, wx1, out):
    """Bilinear interpolation: output row oy blends source rows y0[oy] and
    y1[oy] (weights wy0, wy1), each first interpolated along x (columns x0,
    x1, weights wx0, wx1). Rows are monotonic in oy, so the two last
    x-interpolated rows are kept and upsampling computes each only once."""
    oh = out.shape[1]
    ow = out.shape[2]
    rows = np.empty((2, ow), dtype=out.dtype)
    for p in range(start // oh, (stop - 1) // oh + 1):
        held_t = -1  # source rows held in slots st and su
        held_u = -1
        st = np.int64(0)  # int64 slots: literal ones compile _blend_row again
        su = np.int64(1)
        for oy in range(max(start - p * oh, 0), min(stop - p * oh, oh)):
            t = y0[oy]
            u = y1[oy]
            if t != held_t:
                if t == held_u:
                    st, su = su, st
                    held_t, held_u = held_u, held_t
                else:
                    _blend_row(src, p, t, x0, x1, wx0, wx1, rows, st)
                    held_t = t
            slot_u = st
            if u != t:
                if u != held_u:
                    _blend_row(src, p, u, x0, x1, wx0, wx1, rows, su)
                    held_u = u
                slot_u = su
            a = wy0[oy]
            b = wy1[oy]
            for ox in range(ow):
                out[p, oy, ox] = a * rows[st, ox] + b * rows[slot_u, ox]


@jit(fastmath=True)
def _tap_rows(start, stop, src, taps, weights, out):
    """out[o, m, :] = sum_k weights[m, k] * src[o, taps[m, k], :]: one axis
    of a separable resize, float32 or float64 (inner == 1 when it is the
    last axis: the sums over the taps are runtime.kernels.ordered's, the
    same on every CPU; along another axis each sum runs over k in order)."""
    length = out.shape[1]
    inner = out.shape[2]
    n = taps.shape[1]
    for o in range(start // length, (stop - 1) // length + 1):
        lo = max(start - o * length, 0)
        hi = min(stop - o * length, length)
        if inner == 1:  # the sum over the taps (after the first) in one order on every CPU
            row = src.ctypes.data + o * src.strides[0]
            for m in range(lo, hi):
                first = weights[m, 0] * src[o, taps[m, 0], 0]
                at_taps = taps.ctypes.data + m * taps.strides[0] + taps.itemsize
                at_weights = weights.ctypes.data + m * weights.strides[0] + weights.itemsize
                if src.itemsize == 4:
                    out[o, m, 0] = taps_f32(n - 1, row, at_taps, at_weights, first)
                else:
                    out[o, m, 0] = taps_f64(n - 1, row, at_taps, at_weights, first)
            continue
        for m in range(lo, hi):
            for j in range(inner):
                out[o, m, j] = 0
            for k in range(n):
                w = weights[m, k]
                t = taps[m, k]
                for j in range(inner):
                    out[o, m, j] += w * src[o, t, j]


def _grain(row_elems: int) -> int:
    """Rows per parallel chunk, at least, for rows of ``row_elems`` elements."""
    return max(1, _ROW_GRAIN // max(row_elems, 1))


# ---------------------------------------------------------------- drivers
def _last_two(x: np.ndarray, maps: list[AxisMap]) -> bool:
    return x.ndim >= 2 and all(m.axis >= x.ndim - 2 for m in maps)


def _planes(x: np.ndarray, out_shape) -> tuple[np.ndarray, np.ndarray]:
    """``x`` as (planes, H, W) and an empty output of (planes, OH, OW)."""
    h, w = x.shape[-2:]
    src = np.ascontiguousarray(x).reshape(-1, h, w)
    return src, np.empty((src.shape[0], *out_shape[-2:]), dtype=x.dtype)


def _nearest_indices(maps: list[AxisMap], nearest_mode: str) -> dict[int, np.ndarray]:
    """axis -> the clamped source index (int64) of each output position."""
    return {m.axis: np.clip(_nearest_index(m, nearest_mode), 0, m.length - 1).astype(np.int64, copy=False)
            for m in maps}


def _nearest_table(x: np.ndarray, index: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray, bool]:
    """(iy, ix, pairs) of the fused 2-D nearest pass (:func:`nearest_rows`)."""
    h, w = x.shape[-2:]
    iy = index.get(x.ndim - 2, np.arange(h, dtype=np.int64))
    ix = index.get(x.ndim - 1, np.arange(w, dtype=np.int64))
    pairs = ix.size == 2 * w and bool(np.array_equal(ix, np.arange(ix.size) // 2))
    return iy, ix, pairs


def _resize_nearest(x: np.ndarray, maps: list[AxisMap], out_shape, nearest_mode: str) -> np.ndarray:
    index = _nearest_indices(maps, nearest_mode)
    if x.dtype == np.float32 and _last_two(x, maps):
        src, out = _planes(x, out_shape)
        parallel_for(nearest_rows, out.shape[0] * out.shape[1], src, *_nearest_table(x, index), out,
                     grain=_grain(out.shape[2]))
        return out.reshape(out_shape)
    y = x
    for axis, idx in index.items():
        y = np.take(y, idx, axis=axis)
    return y


def _linear_table(m: AxisMap | None, length: int):
    """(i0, i1, w0, w1) of one axis of the bilinear pass (identity when m is None)."""
    if m is None:
        i = np.arange(length, dtype=np.int64)
        one = np.ones(length, dtype=np.float32)
        return i, i, one, np.zeros(length, dtype=np.float32)
    ratio = _ratio(m.coords)
    base = _window_start(m.coords, 2)
    hi = m.length - 1
    return (np.clip(base, 0, hi), np.clip(base + 1, 0, hi), (1 - ratio).astype(np.float32),
            ratio.astype(np.float32))


def _linear_tables(x: np.ndarray, maps: list[AxisMap]) -> tuple:
    """(y0, y1, wy0, wy1, x0, x1, wx0, wx1) of the fused bilinear pass (:func:`linear_rows`)."""
    by_axis = {m.axis: m for m in maps}
    h, w = x.shape[-2:]
    return (*_linear_table(by_axis.get(x.ndim - 2), h), *_linear_table(by_axis.get(x.ndim - 1), w))


def _resize_bilinear(x: np.ndarray, maps: list[AxisMap], out_shape) -> np.ndarray:
    src, out = _planes(x, out_shape)
    parallel_for(linear_rows, out.shape[0] * out.shape[1], src, *_linear_tables(x, maps), out,
                 grain=_grain(out.shape[2]))
    return out.reshape(out_shape)


def _apply_axis(y: np.ndarray, m: AxisMap, taps: np.ndarray, weights: np.ndarray) -> np.ndarray:
    outer = math.prod(y.shape[:m.axis])
    inner = math.prod(y.shape[m.axis + 1:])
    src = np.ascontiguousarray(y).reshape(outer, m.length, inner)
    out = np.empty((outer, taps.shape[0], inner), dtype=y.dtype)
    parallel_for(_tap_rows, outer * taps.shape[0], src, np.ascontiguousarray(taps),
                 np.ascontiguousarray(weights, dtype=y.dtype), out, grain=_grain(inner * taps.shape[1]))
    return out.reshape(y.shape[:m.axis] + (taps.shape[0],) + y.shape[m.axis + 1:])


def _fused_bilinear(x: np.ndarray, maps: list[AxisMap], attrs) -> bool:
    """Whether the fused bilinear pass computes this resize."""
    return (attrs["mode"] == "linear" and not attrs["exclude_outside"] and x.dtype == np.float32
            and _last_two(x, maps) and not (attrs["antialias"] and any(m.scale < 1 for m in maps)))


def _resize_separable(x: np.ndarray, maps: list[AxisMap], attrs) -> np.ndarray:
    """Any mode, one axis at a time, in float32 (float64 for 64-bit or
    integer data, so that large integers stay exact)."""
    work = np.float32 if x.dtype in (np.float32, np.float16) else np.float64
    y = x.astype(work)
    for m in maps:
        y = _apply_axis(y, m, *_taps(m, attrs))
    return y


def _saturate(y: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float results to the data's dtype: integers round half to even and clamp."""
    if y.dtype == dtype:
        return y
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.round(y), info.min, info.max).astype(dtype)
    if dtype.kind == "b":
        return y != 0
    return y.astype(dtype)


def _extrapolate(y: np.ndarray, maps: list[AxisMap], value) -> None:
    """tf_crop_and_resize: positions sampling outside the input take ``value``."""
    for m in maps:
        if m.outside is not None and m.outside.any():
            y[(slice(None),) * m.axis + (m.outside,)] = value


@kernel("Resize")
def resize(inputs, attrs):
    """Resize X (inputs X, roi, scales, sizes): the fused 2-D kernels where
    they apply, the per-axis one otherwise, then extrapolation and the cast
    back to X's dtype."""
    x, roi, scales, sizes = (list(inputs) + [None] * 4)[:4]
    out_shape, maps = _plan(x, roi, scales, sizes, attrs)
    if 0 in out_shape:
        return (np.empty(out_shape, dtype=x.dtype),)
    if not maps:
        return (x.copy(),)
    mode = attrs["mode"]
    if mode == "nearest" and not attrs["exclude_outside"]:
        y = _resize_nearest(x, maps, out_shape, attrs["nearest_mode"])
    elif _fused_bilinear(x, maps, attrs):
        y = _resize_bilinear(x, maps, out_shape)
    else:
        y = _resize_separable(x, maps, attrs)
    value = np.array(attrs["extrapolation_value"], dtype=np.float64)
    if y.dtype != x.dtype:
        _extrapolate(y, maps, value)
        return (_saturate(y, x.dtype),)
    _extrapolate(y, maps, _saturate(value, x.dtype))
    return (y,)


def _lower(ctx, args, attrs) -> bool:
    """The fused 2-D passes (nearest or bilinear over the last two axes of
    float32 data: a detector neck's or a segmentation head's upsampling) as
    a schedule operation (runtime.schedule.ops) over the output's rows, the
    index and weight tables pinned; with scales or sizes given as
    constants. As a Python step a Resize split the schedule (YOLOv8's neck:
    two; PP-OCR's detector head: six). Anything else stays a Python step."""
    x = args[0] if args else None
    if not isinstance(x, Operand) or x.dtype != np.float32 or any(isinstance(a, Operand) for a in args[1:]):
        return False
    roi, scales, sizes = (list(args[1:]) + [None] * 3)[:3]
    stand_in = x.stand_in()
    try:
        out_shape, maps = _plan(stand_in, roi, scales, sizes, attrs)
    except (KernelError, ValueError, TypeError):
        return False
    if (tuple(out_shape) != ctx.out_types[0][0] or not maps or 0 in out_shape or not _last_two(stand_in, maps)
            or any(m.outside is not None and m.outside.any() for m in maps)):
        return False
    planes, (h, w), (oh, ow) = math.prod(x.shape[:-2]), x.shape[-2:], out_shape[-2:]
    if attrs["mode"] == "nearest" and not attrs["exclude_outside"]:
        iy, ix, pairs = _nearest_table(stand_in, _nearest_indices(maps, attrs["nearest_mode"]))
        tables, kind, tail = (iy, ix), RESIZE_NEAREST, [int(pairs)]
    elif _fused_bilinear(stand_in, maps, attrs):
        tables, kind, tail = _linear_tables(stand_in, maps), RESIZE_LINEAR, []
    else:
        return False
    pinned = [field for table in tables for field in ctx.pin(np.ascontiguousarray(table))]
    out = ctx.output(0, tuple(out_shape))
    ctx.emit(kind, [*x.ref(), planes, h, w, *out.ref(), oh, ow, *pinned, *tail], planes * oh, _grain(ow))
    return True


resize.lower = _lower
