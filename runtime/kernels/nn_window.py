"""Sliding-window geometry shared by the convolution and pooling kernels.

The attributes are checked here, in Python, before any Numba loop runs, so a
hostile program can never make a loop index out of bounds. 1-D and 2-D
problems are lifted to 3-D (unit leading dims), so every window loop has one
compiled signature per dtype whatever the spatial rank.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from runtime.errors import KernelError
from runtime.jit import jit
from runtime.kernels.limits import check_output_size

MAX_SPATIAL = 3

MAX_ATTR = (1 << 31) - 1
"""Largest magnitude of a window attribute: index products in the loops then
stay far from int64 overflow."""


MIN_CHUNK = 16384
"""Fewest elements worth handing to another thread (waking one costs tens of
microseconds)."""


class Window(NamedTuple):
    """Per-spatial-axis window parameters (all tuples of the same length)."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    dilations: tuple[int, ...]

    @property
    def spans(self) -> tuple[int, ...]:
        """Extent of the dilated kernel along each axis."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel, self.dilations))

    def lifted(self) -> Window:
        """The same window on 3 spatial axes (unit kernel on the new ones)."""
        extra = MAX_SPATIAL - len(self.kernel)
        ones, zeros = (1,) * extra, (0,) * extra
        return Window(ones + self.kernel, ones + self.strides, zeros + self.pads_begin,
                      zeros + self.pads_end, ones + self.dilations)

    def loop_params(self) -> tuple[int, ...]:
        """kernel, strides, begin pads, end pads, dilations of the lifted
        window as one flat tuple of ints: the Numba loops' ``geo`` argument."""
        w = self.lifted()
        return tuple(int(v) for v in w.kernel + w.strides + w.pads_begin + w.pads_end + w.dilations)


def _ints(op: str, name: str, values, length: int, low: int | None) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise KernelError(f"{op}: {name} must be a list of ints, got {values!r}") from None
    if len(out) != length:
        raise KernelError(f"{op}: {name}={list(out)} must have {length} values")
    if low is not None and any(v < low for v in out):
        raise KernelError(f"{op}: {name}={list(out)} must all be >= {low}")
    if any(abs(v) > MAX_ATTR for v in out):
        raise KernelError(f"{op}: {name}={list(out)} has a value beyond {MAX_ATTR}")
    return out


def make_window(op: str, spatial: int, kernel: Sequence[int], strides: Sequence[int], pads: Sequence[int],
                dilations: Sequence[int], *, negative_pads: bool = False) -> Window:
    """Validated window attributes for ``spatial`` axes (pads as ONNX gives
    them: all begins, then all ends)."""
    if not 1 <= spatial <= MAX_SPATIAL:
        raise KernelError(f"{op}: {spatial} spatial dims are not supported (1 to {MAX_SPATIAL})")
    kernel = _ints(op, "kernel_shape", kernel, spatial, 1)
    strides = _ints(op, "strides", strides, spatial, 1)
    dilations = _ints(op, "dilations", dilations, spatial, 1)
    pads = _ints(op, "pads", pads, 2 * spatial, None if negative_pads else 0)
    return Window(kernel, strides, pads[:spatial], pads[spatial:], dilations)


def out_size(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int,
             ceil_mode: bool = False) -> int:
    """Output length of a sliding window (conv, pooling). With ceil_mode the
    last window must still start inside the input or its left padding."""
    span = (kernel - 1) * dilation + 1
    numer = size + pad_begin + pad_end - span
    if not ceil_mode:
        return max(numer // stride + 1, 0)
    out = -(-numer // stride) + 1
    if (out - 1) * stride >= size + pad_begin:
        out -= 1
    return max(out, 0)


def out_shape(op: str, spatial_shape: Sequence[int], window: Window, ceil_mode: bool = False) -> tuple[int, ...]:
    """Output spatial shape; an empty output is an error naming the axis."""
    dims = []
    for axis, size in enumerate(spatial_shape):
        dim = out_size(size, window.kernel[axis], window.strides[axis], window.pads_begin[axis],
                       window.pads_end[axis], window.dilations[axis], ceil_mode)
        if dim < 1:
            raise KernelError(f"{op}: the window (kernel_shape {window.kernel[axis]}, dilation "
                              f"{window.dilations[axis]}) does not fit spatial axis {axis} of size {size} "
                              f"with pads {window.pads_begin[axis]}+{window.pads_end[axis]}")
        dims.append(dim)
    return check_output_size(dims, op)


def lift(array: np.ndarray, leading: int = 2) -> np.ndarray:
    """A view of ``array`` with unit spatial dims inserted after its first
    ``leading`` dims so that it has exactly 3 spatial dims."""
    extra = MAX_SPATIAL - (array.ndim - leading)
    return array.reshape(array.shape[:leading] + (1,) * extra + array.shape[leading:])


def grain(item_size: int) -> int:
    """parallel_for grain for items of ``item_size`` elements each."""
    return max(1, -(-MIN_CHUNK // max(int(item_size), 1)))


@jit(inline="always")
def valid_range(offset, step, size, count):
    """[lo, hi) of the i in [0, count) with 0 <= i * step + offset < size
    (step >= 1): the output positions a kernel tap reads inside the input,
    or the taps of one output window that fall inside it."""
    lo = 0 if offset >= 0 else (step - 1 - offset) // step
    last = size - 1 - offset
    hi = last // step + 1 if last >= 0 else 0
    lo = min(lo, count)
    return lo, max(lo, min(hi, count))
