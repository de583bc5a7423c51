"""The shape kernels' lowerings into a schedule (runtime.schedule): views
(Reshape, Flatten, Squeeze, Unsqueeze, Identity, a Split's contiguous
parts, a Transpose that moves only dims of 1) and COPY operations (Concat,
Split, a Transpose whose last axes stay). A step left to Python ends a run
of operations and starts another (runtime/kernels/shape.py holds the
kernels)."""
from __future__ import annotations

import math

import numpy as np

from runtime.errors import KernelError
from runtime.kernels.shape import (
    concat,
    flatten,
    identity,
    normalize_axis,
    reshape,
    split,
    squeeze,
    transpose,
    transpose_perm,
    unsqueeze,
)
from runtime.schedule.records import COPY, COPY_PIECE, Operand


# ---------------------------------------------------------------- views in a schedule (runtime.schedule)
def _lower_view(fn):
    """A lowering for a kernel whose output is a view of its C-contiguous
    input in another shape: the kernel is run on a stand-in of the input's
    shape (it checks the other inputs and attributes as in a run), and the
    output becomes an alias of the input."""
    def lower(ctx, args, attrs) -> bool:
        x = args[0]
        if not isinstance(x, Operand) or any(isinstance(a, Operand) for a in args[1:]):
            return False
        try:
            (y,) = fn([x.stand_in(), *args[1:]], attrs)
        except (KernelError, ValueError, TypeError):
            return False
        if tuple(y.shape) != ctx.out_types[0][0]:
            return False
        ctx.alias(0, x)
        return True
    return lower


for _view in (reshape, flatten, squeeze, unsqueeze, identity):
    _view.lower = _lower_view(_view)


def _lower_concat(ctx, args, attrs) -> bool:
    """Concat as one COPY operation per input into an arena buffer: rows of
    the dims before the axis, each input's rows landing at its offset in
    the output's. In a schedule, a Concat no longer splits the run of
    operations into two Python calls with a fresh array between them."""
    if not args or not all(isinstance(x, Operand) for x in args):
        return False
    try:
        (y,) = concat([x.stand_in() for x in args], attrs)
    except (KernelError, ValueError, TypeError):
        return False
    out = ctx.output(0, y.shape, y.dtype)
    axis = normalize_axis(attrs["axis"], y.ndim, "Concat axis")
    rows, stride = math.prod(y.shape[:axis]), math.prod(y.shape[axis:]) * y.dtype.itemsize
    at = 0
    for x in args:
        length = math.prod(x.shape[axis:]) * y.dtype.itemsize
        if rows and length:
            pieces = -(-length // COPY_PIECE)
            ctx.emit(COPY, [*x.ref(), *out.ref(at), rows, length, length, stride, pieces], rows * pieces)
        at += length
    return True


concat.lower = _lower_concat


def _lower_split(ctx, args, attrs) -> bool:
    """Split in a schedule: each output is a view of its slice of the input
    where the slices are contiguous (no dim before the axis but of 1: a
    batch-1 feature map split along its channels, as in YOLOv8's C2f
    blocks), else one COPY operation of its rows, Concat's copy the other
    way; as a Python step it split the schedule."""
    x = args[0] if args else None
    if not isinstance(x, Operand) or any(isinstance(a, Operand) for a in args[1:]):
        return False
    try:
        pieces = split([x.stand_in(), *args[1:]], attrs)
    except (KernelError, ValueError, TypeError):
        return False
    if len(pieces) != len(ctx.out_types) or any(tuple(p.shape) != t[0] for p, t in zip(pieces, ctx.out_types)):
        return False
    axis = normalize_axis(attrs["axis"], len(x.shape), "Split axis")
    item = x.dtype.itemsize
    rows, stride = math.prod(x.shape[:axis]), math.prod(x.shape[axis:]) * item
    at = 0
    for index, piece in enumerate(pieces):
        length = math.prod(piece.shape[axis:]) * item
        if rows <= 1:
            ctx.alias(index, Operand(x.base, x.offset + at, piece.shape, x.dtype, writable=False))
        else:
            out = ctx.output(index, piece.shape, x.dtype)
            if length:
                count = -(-length // COPY_PIECE)
                ctx.emit(COPY, [*x.ref(at), *out.ref(), rows, length, stride, length, count], rows * count)
        at += length
    return True


split.lower = _lower_split


TRANSPOSE_COPIES = 64
"""Most COPY operations a Transpose lowers to (one per index of its outer
dims but the longest); more stays a Python step."""


def _lower_transpose(ctx, args, attrs) -> bool:
    """A Transpose whose last axes stay in place (ShuffleNet's channel
    shuffle: (N, 2, C/2, H, W) to (N, C/2, 2, H, W)) as COPY operations of
    rows of those axes, one per index of the outer dims but the longest
    (which the rows run along); one that moves only dims of 1 as a view.
    Any other stays a Python step."""
    x = args[0] if args else None
    if not isinstance(x, Operand) or len(args) != 1:
        return False
    try:
        perm = transpose_perm(attrs["perm"], len(x.shape))
    except (KernelError, ValueError, TypeError, KeyError):
        return False
    shape = tuple(x.shape[a] for a in perm)
    if shape != ctx.out_types[0][0]:
        return False
    moved = [a for a in perm if x.shape[a] != 1]
    if moved == sorted(moved):
        ctx.alias(0, x)
        return True
    item, n = x.dtype.itemsize, len(perm)
    keep = n
    while keep > 0 and perm[keep - 1] == keep - 1:
        keep -= 1
    if keep == n:  # the last axis moves: rows of one element
        return False
    length = math.prod(x.shape[keep:]) * item
    src = [math.prod(x.shape[a + 1:]) * item for a in perm[:keep]]
    dst = [math.prod(shape[d + 1:]) * item for d in range(keep)]
    along = max(range(keep), key=lambda d: shape[d])
    others = [d for d in range(keep) if d != along]
    if math.prod(shape[d] for d in others) > TRANSPOSE_COPIES:
        return False
    out = ctx.output(0, shape, x.dtype)
    if not length or not math.prod(shape):
        return True
    pieces = -(-length // COPY_PIECE)
    for index in np.ndindex(*(shape[d] for d in others)):
        at_src = sum(i * src[d] for i, d in zip(index, others))
        at_dst = sum(i * dst[d] for i, d in zip(index, others))
        ctx.emit(COPY, [*x.ref(at_src), *out.ref(at_dst), shape[along], length, src[along], dst[along], pieces],
                 shape[along] * pieces)
    return True


transpose.lower = _lower_transpose
