"""CPU kernels: gather, scatter, one-hot and compress.

These ops only move data, so they are numpy indexing primitives (``take``,
fancy indexing, ``ufunc.at`` for scatter reductions), which is the fastest
kernel for them. Indices come from untrusted inputs: every index is checked
against its axis here, before numpy sees it, and a bad one is a KernelError
that names the input and the value.
"""
from __future__ import annotations

import numpy as np

from runtime.errors import KernelError
from runtime.kernels.limits import check_output_size
from runtime.kernels.registry import kernel

_SCATTER_UFUNCS = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def normalize_indices(indices: np.ndarray, size: int, what: str) -> np.ndarray:
    """``indices`` as int64 in [0, size): negative ones count from the end;
    any value outside [-size, size) is an error naming ``what``."""
    if indices.dtype.kind not in "iu":
        raise KernelError(f"{what} must be an integer tensor, got {indices.dtype}")
    idx = indices.astype(np.int64, copy=False)
    if idx.size == 0:
        return idx
    bad = (idx < -size) | (idx >= size)
    if bad.any():
        value = int(idx[bad].flat[0])
        raise KernelError(f"{what} holds {value}, outside the valid range [{-size}, {size - 1}] "
                          f"for an axis of size {size}")
    return np.where(idx < 0, idx + size, idx)


def _axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise KernelError(f"axis={axis} is out of range for data of rank {rank}")
    return axis % rank


@kernel("Gather")
def gather(inputs, attrs):
    data, indices = inputs
    axis = _axis(attrs["axis"], data.ndim)
    idx = normalize_indices(indices, data.shape[axis], f"indices (axis {axis})")
    return (np.asarray(np.take(data, idx, axis=axis)),)


@kernel("GatherElements")
def gather_elements(inputs, attrs):
    data, indices = inputs
    if data.ndim != indices.ndim:
        raise KernelError(f"data (rank {data.ndim}) and indices (rank {indices.ndim}) "
                          "must have the same rank")
    axis = _axis(attrs["axis"], data.ndim)
    data = _crop_to(data, indices.shape, axis)
    idx = normalize_indices(indices, data.shape[axis], f"indices (axis {axis})")
    return (np.take_along_axis(data, idx, axis=axis),)


def _crop_to(data: np.ndarray, shape, axis: int) -> np.ndarray:
    """``data`` sliced to ``shape`` on every axis but ``axis`` (an index
    tensor may be smaller than the data there, never larger)."""
    for d, (have, want) in enumerate(zip(data.shape, shape)):
        if d != axis and want > have:
            raise KernelError(f"indices shape {list(shape)} exceeds data shape {list(data.shape)} on axis {d}")
    return data[tuple(slice(None) if d == axis else slice(0, s) for d, s in enumerate(shape))]


def _linear_index(idx: np.ndarray, dims, what: str) -> np.ndarray:
    """Row-major linear index over ``dims`` of the index tuples in the last
    axis of ``idx`` (each component checked against its dim)."""
    lin = np.zeros(idx.shape[:-1], dtype=np.int64)
    for j, dim in enumerate(dims):
        lin = lin * dim + normalize_indices(idx[..., j], dim, f"{what} (component {j})")
    return lin


@kernel("GatherND")
def gather_nd(inputs, attrs):
    data, indices = inputs
    b = attrs["batch_dims"]
    k = _nd_depth(data, indices, b)
    batch = data.shape[:b]
    if tuple(indices.shape[:b]) != tuple(batch):
        raise KernelError(f"the first batch_dims={b} dims of indices {list(indices.shape)} and "
                          f"data {list(data.shape)} differ")
    nbatch = int(np.prod(batch, dtype=np.int64))
    rest = data.shape[b + k:]
    flat = data.reshape(nbatch, int(np.prod(data.shape[b:b + k], dtype=np.int64)), *rest)
    groups = int(np.prod(indices.shape[b:-1], dtype=np.int64))
    lin = _linear_index(indices.reshape(nbatch, groups, k), data.shape[b:b + k], "indices")
    out = flat[np.arange(nbatch)[:, None], lin]
    return (out.reshape(indices.shape[:-1] + rest),)


def _nd_depth(data: np.ndarray, indices: np.ndarray, batch_dims: int) -> int:
    """The index depth k (last dim of indices), checked against the ranks."""
    if indices.ndim < 1 or batch_dims < 0 or batch_dims >= min(data.ndim, indices.ndim):
        raise KernelError(f"batch_dims={batch_dims} must be less than the ranks of data "
                          f"({data.ndim}) and indices ({indices.ndim})")
    k = indices.shape[-1]
    if k > data.ndim - batch_dims:
        raise KernelError(f"indices last dim {k} exceeds the data rank {data.ndim} minus "
                          f"batch_dims={batch_dims}")
    return k


def _scatter_into(flat_out: np.ndarray, lin: np.ndarray, updates: np.ndarray, reduction: str) -> None:
    """``flat_out[lin] (reduction)= updates`` in index order (the last of
    duplicate indices wins when there is no reduction)."""
    if reduction == "none":
        flat_out[lin] = updates
        return
    ufunc = _SCATTER_UFUNCS.get(reduction)
    if ufunc is None:
        raise KernelError(f"unknown reduction {reduction!r}; expected none, add, mul, max or min")
    ufunc.at(flat_out, lin, updates)


@kernel("ScatterElements")
def scatter_elements(inputs, attrs):
    data, indices, updates = inputs
    if not data.ndim == indices.ndim or indices.shape != updates.shape:
        raise KernelError(f"indices {list(indices.shape)} and updates {list(updates.shape)} "
                          f"must have one shape, of the rank of data {list(data.shape)}")
    axis = _axis(attrs["axis"], data.ndim)
    _crop_to(data, indices.shape, axis)
    idx = normalize_indices(indices, data.shape[axis], f"indices (axis {axis})")
    lin = np.zeros(indices.shape, dtype=np.int64)
    for d, grid in enumerate(np.indices(indices.shape, sparse=True)):
        lin = lin * data.shape[d] + (idx if d == axis else grid)
    out = data.copy()
    _scatter_into(out.reshape(-1), lin.reshape(-1), updates.reshape(-1).astype(data.dtype, copy=False),
                  attrs["reduction"])
    return (out,)


@kernel("ScatterND")
def scatter_nd(inputs, attrs):
    data, indices, updates = inputs
    k = _nd_depth(data, indices, 0)
    want = (*indices.shape[:-1], *data.shape[k:])
    if updates.shape != want:
        raise KernelError(f"updates shape {list(updates.shape)} must be {list(want)} "
                          f"(indices {list(indices.shape)}, data {list(data.shape)})")
    lin = _linear_index(indices, data.shape[:k], "indices").reshape(-1)
    out = data.copy()
    rows = out.reshape(int(np.prod(data.shape[:k], dtype=np.int64)), -1)
    _scatter_into(rows, lin, updates.reshape(lin.size, rows.shape[1]).astype(data.dtype, copy=False),
                  attrs["reduction"])
    return (out,)


def onehot_depth(depth: np.ndarray) -> int:
    """The scalar ``depth`` input of OneHot as an int (truncated, like a cast)."""
    depth = np.asarray(depth)
    if depth.size != 1:
        raise KernelError(f"depth must hold one value, got shape {list(depth.shape)}")
    value = depth.reshape(-1)[0]
    if depth.dtype.kind == "f" and not np.isfinite(value):
        raise KernelError(f"depth is {value}")
    value = int(value)
    if value < 0:
        raise KernelError(f"depth must not be negative, got {value}")
    return value


@kernel("OneHot")
def one_hot(inputs, attrs):
    indices, depth, values = inputs
    depth = onehot_depth(depth)
    if values.size != 2:
        raise KernelError(f"values must hold [off_value, on_value], got shape {list(values.shape)}")
    check_output_size([*indices.shape, depth], "OneHot depth")
    rank = indices.ndim
    axis = attrs["axis"]
    if not -rank - 1 <= axis <= rank:
        raise KernelError(f"axis={axis} is out of range for an output of rank {rank + 1}")
    axis %= rank + 1
    idx = indices.astype(np.int64) if indices.dtype.kind == "f" else indices.astype(np.int64, copy=False)
    idx = np.where(idx < 0, idx + depth, idx)
    positions = np.arange(depth, dtype=np.int64).reshape((depth,) + (1,) * (rank - axis))
    hot = np.expand_dims(idx, axis) == positions
    off, on = values.reshape(-1)
    return (np.where(hot, on, off).astype(values.dtype, copy=False),)


@kernel("Compress")
def compress(inputs, attrs):
    data, condition = inputs
    axis = attrs["axis"]
    if axis is None:
        data, axis = data.reshape(-1), 0
    axis = _axis(axis, data.ndim)
    cond = np.asarray(condition).reshape(-1).astype(bool)
    if cond.size > data.shape[axis]:
        raise KernelError(f"condition has {cond.size} entries, more than the {data.shape[axis]} "
                          f"of axis {axis}")
    return (np.compress(cond, data, axis=axis),)
