"""CPU kernels: shape and data movement (numpy views and copies).

These ops are one numpy primitive each (reshape, transpose, slicing,
concatenate, pad, tile), which is already the fastest kernel for them. Kernels
never write into their inputs, so returning a view of an input (Reshape,
Transpose, Slice, Squeeze, Split, Identity, Expand's broadcast) is safe; views
of constants stay read-only, as the constants are.

Parameter inputs (shapes, axes, pads, repeats...) may come from a runtime
tensor and are untrusted: they are validated here, and anything that would
index out of bounds or allocate an absurd amount of memory is a KernelError
naming the input, never a crash. The helpers at the top hold the parameter
semantics once; the IR type rules call them too.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from runtime.errors import KernelError
from runtime.kernels.limits import check_output_size
from runtime.kernels.registry import kernel

PAD_MODES = ("constant", "reflect", "edge", "wrap")
SPACE_DEPTH_MODES = ("DCR", "CRD")


# ---------------------------------------------------------------- parameter semantics
def int_list(array, name: str) -> list[int]:
    """A 0-d or 1-D integer parameter tensor as Python ints."""
    array = np.asarray(array)
    if array.dtype.kind not in "iu":
        raise KernelError(f"{name} must be an integer tensor, got {array.dtype}")
    if array.ndim > 1:
        raise KernelError(f"{name} must be 1-D, got shape {list(array.shape)}")
    return [int(v) for v in array.reshape(-1)]


def scalar(array, name: str):
    """The one value of a 0-d or one-element parameter tensor."""
    array = np.asarray(array)
    if array.size != 1:
        raise KernelError(f"{name} must hold one value, got shape {list(array.shape)}")
    return array.reshape(-1)[0]


def normalize_axis(axis: int, rank: int, name: str) -> int:
    if not -rank <= axis < rank:
        raise KernelError(f"{name}: axis {axis} is out of range for rank {rank}")
    return axis % rank


def normalize_axes(axes: Sequence[int], rank: int, name: str) -> list[int]:
    """Axes in [-rank, rank) made non-negative; repeats are an error."""
    out = [normalize_axis(int(a), rank, name) for a in axes]
    if len(set(out)) != len(out):
        raise KernelError(f"{name} {list(axes)} repeats an axis")
    return out


def transpose_perm(perm: Sequence[int] | None, rank: int) -> list[int]:
    """The permutation of a Transpose; the default reverses the dims."""
    if perm is None:
        return list(range(rank))[::-1]
    perm = [int(p) for p in perm]
    if sorted(perm) != list(range(rank)):
        raise KernelError(f"perm {perm} is not a permutation of the {rank} axes")
    return perm


def flatten_axis(axis: int, rank: int) -> int:
    """Flatten's split point, in [0, rank] (negative counts from the end)."""
    if not -rank <= axis <= rank:
        raise KernelError(f"axis {axis} is out of range for Flatten of rank {rank}")
    return axis + rank if axis < 0 else axis


def unsqueeze_shape(shape: Sequence, axes: Sequence[int]) -> list:
    """``shape`` with a 1 inserted at each of ``axes`` (axes of the output)."""
    rank = len(shape) + len(axes)
    positions = set(normalize_axes(axes, rank, "Unsqueeze axes"))
    rest = iter(shape)
    return [1 if i in positions else next(rest) for i in range(rank)]


def slice_params(rank: int, starts: list[int], ends: list[int], axes: list[int] | None,
                 steps: list[int] | None) -> list[tuple[int, int, int, int]]:
    """Validated (axis, start, end, step) per sliced axis."""
    count = len(starts)
    if len(ends) != count:
        raise KernelError(f"Slice starts has {count} values but ends has {len(ends)}")
    axes = list(range(count)) if axes is None else axes
    steps = [1] * count if steps is None else steps
    if len(axes) != count or len(steps) != count:
        raise KernelError(f"Slice starts, ends, axes and steps must have one value per axis: got "
                          f"{count}, {len(ends)}, {len(axes)}, {len(steps)}")
    axes = normalize_axes(axes, rank, "Slice axes")
    if 0 in steps:
        raise KernelError(f"Slice steps {steps} holds a 0")
    return list(zip(axes, starts, ends, steps))


def slice_bounds(dim: int, start: int, end: int, step: int) -> tuple[int, int, int]:
    """ONNX's clamping of one axis of a Slice: (start, end, length). Negative
    values count from the end; then start is clamped to [0, dim] ([0, dim-1]
    for negative steps) and end to [0, dim] ([-1, dim-1]), so INT_MAX/INT_MIN
    work as sentinels. Python's slicing differs for negative steps with start
    below -dim (it keeps nothing, ONNX starts at 0)."""
    start += dim if start < 0 else 0
    end += dim if end < 0 else 0
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
        length = (end - start + step - 1) // step
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
        length = (start - end - step - 1) // -step
    return start, end, max(length, 0)


def pad_widths(rank: int, pads: list[int], axes: list[int] | None) -> list[tuple[int, int]]:
    """(begin, end) pad per axis of the data; negative values crop."""
    axes = list(range(rank)) if axes is None else normalize_axes(axes, rank, "Pad axes")
    if len(pads) != 2 * len(axes):
        raise KernelError(f"Pad pads has {len(pads)} values; it needs 2 per padded axis ({2 * len(axes)})")
    widths = [(0, 0)] * rank
    for i, axis in enumerate(axes):
        widths[axis] = (pads[i], pads[i + len(axes)])
    return widths


def split_sizes(dim: int, num_outputs: int) -> list[int]:
    """Chunk sizes of a Split into ``num_outputs`` parts: equal when it divides,
    else chunks of ceil(dim / n) with a smaller last one."""
    if num_outputs < 1:
        raise KernelError(f"Split num_outputs must be positive, got {num_outputs}")
    chunk = -(-dim // num_outputs)
    last = dim - chunk * (num_outputs - 1)
    if last < 0:
        raise KernelError(f"cannot split a dim of {dim} into {num_outputs} chunks of {chunk}")
    return [chunk] * (num_outputs - 1) + [last]


def check_split(sizes: list[int], dim: int) -> None:
    if any(s < 0 for s in sizes) or sum(sizes) != dim:
        raise KernelError(f"Split split {sizes} must be non-negative and add up to the dim {dim}")


def range_length(start, limit, delta) -> int:
    """Number of elements of Range: max(ceil((limit - start) / delta), 0)."""
    if delta == 0:
        raise KernelError("Range delta is 0")
    if all(isinstance(v, (int, np.integer)) for v in (start, limit, delta)):
        count = -((int(start) - int(limit)) // int(delta))
    else:
        quotient = (float(limit) - float(start)) / float(delta)
        if not math.isfinite(quotient):
            raise KernelError(f"Range({start}, {limit}, {delta}) has no finite length")
        count = math.ceil(quotient)
    count = max(count, 0)
    check_output_size([count], "Range")
    return count


def space_depth_shape(shape: Sequence, blocksize: int, to_depth: bool, mode: str) -> list:
    """Output shape of SpaceToDepth (``to_depth``) or DepthToSpace; None dims stay None."""
    if len(shape) != 4:
        raise KernelError(f"the input must have rank 4 (N, C, H, W), got shape {list(shape)}")
    if blocksize < 1:
        raise KernelError(f"blocksize must be positive, got {blocksize}")
    if mode not in SPACE_DEPTH_MODES:
        raise KernelError(f"mode {mode!r} must be one of {SPACE_DEPTH_MODES}")
    n, c, h, w = shape
    square = blocksize * blocksize
    if to_depth:
        for name, dim in (("height", h), ("width", w)):
            if dim is not None and dim % blocksize:
                raise KernelError(f"the {name} {dim} is not a multiple of blocksize {blocksize}")
        return [n, None if c is None else c * square, None if h is None else h // blocksize,
                None if w is None else w // blocksize]
    if c is not None and c % square:
        raise KernelError(f"the channels {c} are not a multiple of blocksize^2 = {square}")
    return [n, None if c is None else c // square, None if h is None else h * blocksize,
            None if w is None else w * blocksize]


# ---------------------------------------------------------------- shape queries
@kernel("Shape")
def shape(inputs, attrs):
    dims = np.array(inputs[0].shape, dtype=np.int64)
    return (dims[attrs["start"]:attrs["end"]].copy(),)


@kernel("Size")
def size(inputs, attrs):
    return (np.array(inputs[0].size, dtype=np.int64),)


# ---------------------------------------------------------------- views
@kernel("Reshape")
def reshape(inputs, attrs):
    data, target = inputs
    target = int_list(target, "Reshape shape")
    if any(d < -1 for d in target) or target.count(-1) > 1:
        raise KernelError(f"Reshape shape {target} may hold one -1 and no other negative value")
    if attrs["allowzero"]:
        if 0 in target and -1 in target:
            raise KernelError(f"Reshape shape {target} with allowzero holds both 0 and -1")
    else:
        if any(d == 0 and i >= data.ndim for i, d in enumerate(target)):
            raise KernelError(f"Reshape shape {target} copies (0) a dim the input {list(data.shape)} lacks")
        target = [data.shape[i] if d == 0 else d for i, d in enumerate(target)]
    try:
        return (data.reshape(target),)
    except ValueError:
        raise KernelError(f"cannot reshape {list(data.shape)} to {target}") from None


@kernel("Flatten")
def flatten(inputs, attrs):
    (data,) = inputs
    axis = flatten_axis(attrs["axis"], data.ndim)
    return (data.reshape(math.prod(data.shape[:axis]), math.prod(data.shape[axis:])),)


@kernel("Transpose")
def transpose(inputs, attrs):
    (data,) = inputs
    return (data.transpose(transpose_perm(attrs["perm"], data.ndim)),)


@kernel("Squeeze")
def squeeze(inputs, attrs):
    data = inputs[0]
    axes = inputs[1] if len(inputs) > 1 else None
    if axes is None:
        return (data.reshape([d for d in data.shape if d != 1]),)
    axes = normalize_axes(int_list(axes, "Squeeze axes"), data.ndim, "Squeeze axes")
    wide = [a for a in axes if data.shape[a] != 1]
    if wide:
        raise KernelError(f"Squeeze axes {wide} of input {list(data.shape)} do not have size 1")
    return (data.reshape([d for i, d in enumerate(data.shape) if i not in axes]),)


@kernel("Unsqueeze")
def unsqueeze(inputs, attrs):
    data, axes = inputs
    out_shape = unsqueeze_shape(data.shape, int_list(axes, "Unsqueeze axes"))
    check_output_size(out_shape, "Unsqueeze axes")
    return (data.reshape(out_shape),)


@kernel("Identity")
def identity(inputs, attrs):
    return (inputs[0],)


@kernel("Dropout")
def dropout(inputs, attrs):
    """Inference Dropout: the identity. Training mode is random; it runs only
    when it changes nothing (ratio 0)."""
    data = inputs[0]
    ratio = inputs[1] if len(inputs) > 1 else None
    training = inputs[2] if len(inputs) > 2 else None
    if training is not None and bool(scalar(training, "Dropout training_mode")):
        value = 0.5 if ratio is None else float(scalar(ratio, "Dropout ratio"))
        if value != 0.0:
            raise KernelError(f"training-mode Dropout with ratio {value} is random; Tessera runs inference only")
    return (data,)


# ---------------------------------------------------------------- slicing and joining
@kernel("Slice")
def slice_(inputs, attrs):
    data, starts, ends = inputs[:3]
    axes = inputs[3] if len(inputs) > 3 else None
    steps = inputs[4] if len(inputs) > 4 else None
    params = slice_params(data.ndim, int_list(starts, "Slice starts"), int_list(ends, "Slice ends"),
                          None if axes is None else int_list(axes, "Slice axes"),
                          None if steps is None else int_list(steps, "Slice steps"))
    index = [slice(None)] * data.ndim
    for axis, start, end, step in params:
        start, end, length = slice_bounds(data.shape[axis], start, end, step)
        index[axis] = slice(start, end if end >= 0 else None, step) if length else slice(0, 0)
    return (data[tuple(index)],)


@kernel("Concat")
def concat(inputs, attrs):
    first = inputs[0]
    if first.ndim == 0:
        raise KernelError("Concat inputs must have rank 1 or more, got a scalar")
    axis = normalize_axis(attrs["axis"], first.ndim, "Concat axis")
    for i, x in enumerate(inputs):
        if x.dtype != first.dtype or x.ndim != first.ndim or any(
                a != b for k, (a, b) in enumerate(zip(x.shape, first.shape)) if k != axis):
            raise KernelError(f"Concat input {i} ({x.dtype}{list(x.shape)}) does not match input 0 "
                              f"({first.dtype}{list(first.shape)}) off axis {axis}")
    return (np.concatenate(inputs, axis=axis),)


@kernel("Split")
def split(inputs, attrs):
    data = inputs[0]
    sizes = inputs[1] if len(inputs) > 1 else None
    axis = normalize_axis(attrs["axis"], data.ndim, "Split axis")
    dim = data.shape[axis]
    count = attrs["num_outputs"]
    if sizes is None:
        if count is None:
            raise KernelError("Split needs either the split input or num_outputs")
        sizes = split_sizes(dim, count)
    else:
        sizes = int_list(sizes, "Split split")
        check_split(sizes, dim)
        if count is not None and len(sizes) != count:
            raise KernelError(f"Split split {sizes} has {len(sizes)} values for {count} outputs")
    index = [slice(None)] * data.ndim
    outputs, pos = [], 0
    for size_ in sizes:
        index[axis] = slice(pos, pos + size_)
        outputs.append(data[tuple(index)])
        pos += size_
    return tuple(outputs)


@kernel("Pad")
def pad(inputs, attrs):
    data, pads = inputs[:2]
    value = inputs[2] if len(inputs) > 2 else None
    axes = inputs[3] if len(inputs) > 3 else None
    mode = attrs["mode"]
    if mode not in PAD_MODES:
        raise KernelError(f"Pad mode {mode!r} must be one of {PAD_MODES}")
    widths = pad_widths(data.ndim, int_list(pads, "Pad pads"), None if axes is None else int_list(axes, "Pad axes"))
    out_shape = [d + b + e for d, (b, e) in zip(data.shape, widths)]
    check_output_size(out_shape, "Pad pads")
    cropped = _crop(data, widths)
    grow = [(max(b, 0), max(e, 0)) for b, e in widths]
    if not any(b or e for b, e in grow):
        return (cropped,)
    if mode == "constant":
        fill = 0 if value is None else scalar(value, "Pad constant_value")
        out = np.full(out_shape, np.array(fill).astype(data.dtype), dtype=data.dtype)
        out[tuple(slice(b, b + d) for d, (b, _) in zip(cropped.shape, grow))] = cropped
        return (out,)
    out = cropped
    for axis, (begin, end) in enumerate(grow):
        if begin or end:
            out = np.take(out, pad_source_index(cropped.shape[axis], begin, end, mode, axis), axis=axis)
    return (out,)


def _crop(data: np.ndarray, widths: list[tuple[int, int]]) -> np.ndarray:
    """Apply the negative pads (cropping) first, as ONNX runtimes do."""
    index = tuple(slice(-min(b, 0), d + min(e, 0)) for d, (b, e) in zip(data.shape, widths))
    return data[index]


def pad_source_index(dim: int, begin: int, end: int, mode: str, axis: int) -> np.ndarray:
    """For each position of a padded axis, the input index it copies: edge
    clamps, wrap is periodic in dim, reflect is periodic in 2 * (dim - 1)
    without repeating the border (numpy's reflect, however wide the pad).
    One gather per axis, so a wide pad costs its output size, never a loop
    over the pad width."""
    if dim == 0:
        raise KernelError(f"Pad mode {mode!r} cannot pad axis {axis}: it is empty")
    positions = np.arange(-begin, dim + end, dtype=np.int64)
    if mode == "edge":
        return np.clip(positions, 0, dim - 1)
    if mode == "wrap":
        return positions % dim
    if dim == 1:
        return np.zeros_like(positions)
    period = 2 * (dim - 1)
    folded = positions % period
    return np.where(folded < dim, folded, period - folded)


@kernel("Expand")
def expand(inputs, attrs):
    """A read-only broadcast view: no copy until a consumer needs one."""
    data, target = inputs
    target = int_list(target, "Expand shape")
    check_output_size(target, "Expand shape")
    try:
        out_shape = np.broadcast_shapes(data.shape, tuple(target))
    except ValueError:
        raise KernelError(f"Expand shape {target} does not broadcast with the input {list(data.shape)}") from None
    check_output_size(out_shape, "Expand shape")
    return (np.broadcast_to(data, out_shape),)


@kernel("Tile")
def tile(inputs, attrs):
    data, repeats = inputs
    repeats = int_list(repeats, "Tile repeats")
    if len(repeats) != data.ndim:
        raise KernelError(f"Tile repeats {repeats} needs one value per input axis ({data.ndim})")
    if any(r < 0 for r in repeats):
        raise KernelError(f"Tile repeats {repeats} holds a negative value")
    check_output_size([d * r for d, r in zip(data.shape, repeats)], "Tile repeats")
    return (np.tile(data, repeats),)


@kernel("DepthToSpace")
def depth_to_space(inputs, attrs):
    (data,) = inputs
    b, mode = attrs["blocksize"], attrs["mode"]
    out_shape = space_depth_shape(data.shape, b, False, mode)
    n, c, h, w = data.shape
    if mode == "DCR":
        blocks = data.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        blocks = data.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return (blocks.reshape(out_shape),)


@kernel("SpaceToDepth")
def space_to_depth(inputs, attrs):
    (data,) = inputs
    b, mode = attrs["blocksize"], attrs["mode"]
    out_shape = space_depth_shape(data.shape, b, True, mode)
    n, c, h, w = data.shape
    blocks = data.reshape(n, c, h // b, b, w // b, b)
    order = (0, 3, 5, 1, 2, 4) if mode == "DCR" else (0, 1, 3, 5, 2, 4)
    return (blocks.transpose(order).reshape(out_shape),)


# ---------------------------------------------------------------- generators
@kernel("ConstantOfShape")
def constant_of_shape(inputs, attrs):
    dims = int_list(inputs[0], "ConstantOfShape shape")
    check_output_size(dims, "ConstantOfShape shape")
    value = constant_value(attrs["value"])
    return (np.full(dims, value[0], dtype=value.dtype),)


def constant_value(value) -> np.ndarray:
    """ConstantOfShape's fill as a one-element array (default: float32 0)."""
    if value is None:
        return np.zeros(1, np.float32)
    value = np.asarray(value).reshape(-1)
    if value.size != 1:
        raise KernelError(f"ConstantOfShape value must hold one element, got {value.size}")
    return value


@kernel("Range")
def range_(inputs, attrs):
    start, limit, delta = (scalar(x, f"Range {n}") for x, n in zip(inputs, ("start", "limit", "delta")))
    dtype = np.asarray(inputs[0]).dtype
    if any(np.asarray(x).dtype != dtype for x in inputs):
        raise KernelError(f"Range inputs must share one dtype, got {[np.asarray(x).dtype.name for x in inputs]}")
    count = range_length(start.item(), limit.item(), delta.item())
    work = range_work_dtype(dtype, attrs["stash_type"])
    if work.kind == "i":
        values = int(start) + np.arange(count, dtype=np.int64) * int(delta)
    else:
        values = np.arange(float(start), float(limit), float(delta), dtype=work)
    return (values.astype(dtype),)


def range_work_dtype(dtype: np.dtype, stash_type: int) -> np.dtype:
    """The precision Range computes in: float64 for float32/64 and ints
    (int64 exactly), float32 or float64 for float16 as ``stash_type`` says."""
    if dtype.kind in "iu":
        return np.dtype(np.int64)
    if dtype == np.float16:
        return np.dtype(np.float64 if stash_type == 11 else np.float32)
    return np.dtype(np.float64)


@kernel("Trilu")
def trilu(inputs, attrs):
    data = inputs[0]
    k = inputs[1] if len(inputs) > 1 else None
    if data.ndim < 2:
        raise KernelError(f"Trilu input must have rank 2 or more, got shape {list(data.shape)}")
    rows, cols = data.shape[-2:]
    k = 0 if k is None else min(max(int(scalar(k, "Trilu k")), -rows), cols)
    keep = np.tri(rows, cols, k - 1 if attrs["upper"] else k, dtype=bool)
    if attrs["upper"]:
        keep = ~keep
    return (np.where(keep, data, np.zeros((), data.dtype)),)


@kernel("NonZero")
def nonzero(inputs, attrs):
    (data,) = inputs
    if data.ndim == 0:
        return (np.zeros((0, int(np.count_nonzero(data))), np.int64),)
    return (np.array(np.nonzero(data), dtype=np.int64).reshape(data.ndim, -1),)
