"""The shape kernels' lowerings into a schedule (runtime.schedule): views
(Reshape, Flatten, Squeeze, Unsqueeze, Identity, a Split's contiguous
parts, a Transpose that moves only dims of 1), COPY operations (Concat,
Split, a Transpose whose last axes stay) and TRANSPOSE operations (any
other Transpose). A step left to Python ends a run of operations and
starts another (runtime/kernels/shape.py holds the kernels)."""
from __future__ import annotations

import math

import numpy as np

from runtime.errors import KernelError
from runtime.jit import jit
from runtime.kernels.shape import (
    concat,
    flatten,
    identity,
    int_list,
    normalize_axis,
    pad,
    pad_widths,
    reshape,
    scalar,
    split,
    squeeze,
    transpose,
    transpose_perm,
    unsqueeze,
)
from runtime.schedule.records import COPY, COPY_PIECE, PAD, TRANSPOSE, Operand


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
"""Most COPY operations a Transpose whose last axes stay lowers to (one per
index of its outer dims but the longest); more is a TRANSPOSE operation."""
TRANSPOSE_DIMS = 6
"""Dims a TRANSPOSE operation's output has, at most, once dims of 1 are
dropped and axes that stay together merged."""
TRANSPOSE_TILE = 16
"""Rows of the output's second-last dim one item of a TRANSPOSE writes."""
TRANSPOSE_GRAIN = 1 << 14
"""Elements a chunk of a TRANSPOSE operation moves, at least."""


@jit
def transpose_tiles(start, stop, x, y, dims, strides):
    """y, C-contiguous of shape ``dims`` (TRANSPOSE_DIMS of them), = x read
    at ``strides`` (in elements) along them; items [start, stop) are tiles
    of up to TRANSPOSE_TILE rows of y's second-last dim. Within a tile the
    loop runs along whichever of the two last dims x is denser along, so
    that an NHWC-to-NCHW turn reads runs of neighbours while its writes
    stay within the tile's rows."""
    last = TRANSPOSE_DIMS - 1
    height, width = dims[last - 1], dims[last]
    down, across = strides[last - 1], strides[last]
    tiles = (height + TRANSPOSE_TILE - 1) // TRANSPOSE_TILE
    for item in range(start, stop):
        outer = item // tiles
        top = (item - outer * tiles) * TRANSPOSE_TILE
        count = min(TRANSPOSE_TILE, height - top)
        src = top * down
        rest = outer
        for d in range(last - 2, -1, -1):
            q = rest // dims[d]
            src += (rest - q * dims[d]) * strides[d]
            rest = q
        dst = (outer * height + top) * width
        if down < across:
            for c in range(width):
                for j in range(count):
                    y[dst + j * width + c] = x[src + j * down + c * across]
        else:
            for j in range(count):
                for c in range(width):
                    y[dst + j * width + c] = x[src + j * down + c * across]


def transpose_plan(shape: tuple, perm: list[int]) -> list[tuple[int, int]] | None:
    """(dim, stride in elements of the input) of each dim of the output of
    ``perm`` of a C-contiguous ``shape``, dims of 1 dropped and axes that
    stay together merged (the least a TRANSPOSE loops over); None past
    TRANSPOSE_DIMS of them."""
    strides = [math.prod(shape[a + 1:]) for a in range(len(shape))]
    merged: list[tuple[int, int]] = []
    for a in perm:
        dim, stride = shape[a], strides[a]
        if dim == 1:
            continue
        if merged and merged[-1][1] == stride * dim:
            merged[-1] = (merged[-1][0] * dim, stride)
        else:
            merged.append((dim, stride))
    if len(merged) > TRANSPOSE_DIMS:
        return None
    return [(1, 0)] * (TRANSPOSE_DIMS - len(merged)) + merged


def _transpose_copies(ctx, x: Operand, perm: list[int], shape: tuple) -> bool:
    """COPY operations of rows of the last axes, which stay, one per index
    of the outer dims but the longest (which the rows run along); False
    where they do not stay or it would take more than TRANSPOSE_COPIES."""
    item, n = x.dtype.itemsize, len(perm)
    keep = n
    while keep > 0 and perm[keep - 1] == keep - 1:
        keep -= 1
    if keep == n:
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


def _lower_transpose(ctx, args, attrs) -> bool:
    """A Transpose in a schedule: one that moves only dims of 1 as a view;
    one whose last axes stay (ShuffleNet's channel shuffle: (N, 2, C/2, H,
    W) to (N, C/2, 2, H, W)) as COPY operations of rows of those axes; any
    other (an NHWC model's turns to NCHW and back, MTCNN's (0, 3, 2, 1), a
    transformer's last two axes) as one TRANSPOSE operation of tiles, of
    elements of 1, 2, 4 or 8 bytes."""
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
    if _transpose_copies(ctx, x, perm, shape):
        return True
    plan = transpose_plan(x.shape, perm)
    if plan is None or x.dtype.itemsize not in (1, 2, 4, 8):
        return False
    dims, strides = [d for d, _ in plan], [s for _, s in plan]
    out = ctx.output(0, shape, x.dtype)
    if not math.prod(shape):
        return True
    tiles = math.prod(dims[:-1]) // dims[-2] * -(-dims[-2] // TRANSPOSE_TILE)
    ctx.emit(TRANSPOSE, [*x.ref(), *out.ref(), x.dtype.itemsize, math.prod(shape), *dims, *strides], tiles,
             max(1, TRANSPOSE_GRAIN // (TRANSPOSE_TILE * dims[-1])))
    return True


transpose.lower = _lower_transpose


# ---------------------------------------------------------------- Pad
PAD_DIMS = 6
"""Dims a PAD operation handles (a smaller rank is lifted with leading 1s)."""


@jit
def pad_rows(start, stop, x, y, dims, strides, maps, starts, fill):
    """Rows [start, stop) of the last dim of y (C-contiguous, of ``dims``,
    PAD_DIMS of them): element ``(i0, ..., i5)`` is x's at source index
    ``maps[starts[d] + i_d]`` along each dim d (``strides`` in elements),
    or ``fill`` where one of them is -1 (a constant pad)."""
    last = PAD_DIMS - 1
    width = dims[last]
    across = strides[last]
    first = starts[last]
    for row in range(start, stop):
        src = 0
        inside = True
        rest = row
        for d in range(last - 1, -1, -1):
            q = rest // dims[d]
            m = maps[starts[d] + rest - q * dims[d]]
            rest = q
            inside = inside and m >= 0
            src += m * strides[d]
        at = row * width
        if inside:
            for c in range(width):
                m = maps[first + c]
                y[at + c] = x[src + m * across] if m >= 0 else fill
        else:
            for c in range(width):
                y[at + c] = fill


PAD_GRAIN = 1 << 14
"""Elements a chunk of a PAD operation writes, at least."""


def _lower_pad(ctx, args, attrs) -> bool:
    """A Pad with constant pads (any mode; negative pads crop) as one PAD
    operation gathering rows: each dim's source index of every output
    position is the per-step kernel's own Pad of that dim's indices (-1
    where a constant pad fills; no padded stand-in of the whole output is
    made), so the two agree by construction. An NHWC
    model's edge pad, a GAN's reflection pad no longer split the schedule."""
    x = args[0] if args else None
    if (not isinstance(x, Operand) or not 1 <= len(x.shape) <= PAD_DIMS or x.dtype.itemsize not in (1, 2, 4, 8)
            or any(isinstance(a, Operand) for a in args[1:])):
        return False
    try:
        widths = pad_widths(len(x.shape), int_list(args[1], "Pad pads"),
                            None if len(args) < 4 or args[3] is None else int_list(args[3], "Pad axes"))
        fill = scalar(args[2], "Pad constant_value") if len(args) > 2 and args[2] is not None else 0
        maps = [pad([np.arange(d, dtype=np.int64), np.array(w, np.int64), np.array(-1, np.int64)],
                    {"mode": attrs["mode"]})[0] for d, w in zip(x.shape, widths)]
    except (KernelError, ValueError, TypeError, KeyError, OverflowError):
        return False
    shape = tuple(len(m) for m in maps)  # each dim's map has an entry per output position
    if shape != ctx.out_types[0][0]:
        return False
    out = ctx.output(0, shape, x.dtype)
    if not math.prod(shape):
        return True
    lift = PAD_DIMS - len(x.shape)
    dims = [1] * lift + list(shape)
    strides = [0] * lift + [math.prod(x.shape[a + 1:]) for a in range(len(x.shape))]
    table = np.concatenate([np.zeros(lift, np.int64)] + [m.astype(np.int64) for m in maps])
    starts = list(range(lift)) + [lift + sum(len(m) for m in maps[:a]) for a in range(len(maps))]
    bits = int(np.array(fill).astype(x.dtype).reshape(1).view(f"u{x.dtype.itemsize}")[0])
    ctx.emit(PAD, [*x.ref(), *out.ref(), x.dtype.itemsize, math.prod(x.shape), math.prod(shape), *dims, *strides,
                   *ctx.pin(table), len(table), *starts, bits - (1 << 64 if bits >> 63 else 0)],
             math.prod(dims[:-1]), max(1, PAD_GRAIN // dims[-1]))
    return True


pad.lower = _lower_pad
