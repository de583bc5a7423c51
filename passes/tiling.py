"""The capacity planner: tile sizes that fit a cluster's on-chip buffers
(the decisions passes/tile.py records on each accelerator layer; codegen
follows them, and sizes its slots with the same rules).

Each layer's work is cut into tiles (output channels x output rows x output
columns, and input channels when one tile's reduction does not fit), each
tile's operands double-buffered: two input slots and two output slots in the
activation buffer, two weight slots in the weight buffer, and the split
reduction's accumulators in the accumulator buffer. The planner searches the
tile shapes for any layer and any HardwareConfig and keeps the one that moves
the fewest DRAM bytes (re-reading inputs once per output-channel tile, or
weights once per row band, whichever costs less), counting a fixed overhead
per tile. A layer whose smallest tile does not fit gets an error naming the
layer and the buffer. Nothing here knows particular networks (VTA's lesson:
a table of known workloads breaks on the next model).
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ir.graph import Node, Value
from passes.infra import PassError
from passes.moves import BOX_RANK, MOVE_OPS, Move
from runtime.hardware import HardwareConfig
from runtime.isa import MAX_EXTENT, PARAM_CHANNEL_BYTES, Bcast, linear_size
from runtime.sim.timing import conv_passes, dram_transfer_bytes

SLOT_ALIGN = 8
TILE_OVERHEAD_BYTES = 2048
"""DRAM-byte equivalent of one tile's fixed cost (instruction fetch, DMA set-up)."""


class TilingError(PassError):
    """A layer has no tiling that fits the buffers (names the layer and the buffer)."""


def a8(n: int) -> int:
    return -(-n // SLOT_ALIGN) * SLOT_ALIGN


def halvings(n: int) -> list[int]:
    """n, ceil(n/2), ceil(n/4), ..., 1 without repeats, none above the
    largest extent an instruction field holds."""
    out, v = [], n
    while True:
        if (not out or out[-1] != v) and v <= MAX_EXTENT:
            out.append(v)
        if v == 1:
            return out
        v = -(-v // 2)


@dataclass(frozen=True)
class ConvShape:
    """One image's convolution (a GEMM is a 1x1 convolution of a 1-row map)."""

    c: int
    h: int
    w: int
    k: int
    oh: int
    ow: int
    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    groups: int
    e_in: int
    e_w: int
    e_out: int
    e_res: int
    e_acc: int
    channels_last: bool = False
    """A GEMM's rows: each column's channels contiguous in DRAM (strides
    (1, 0, channels)); a convolution's maps are channel-major."""
    lut_bytes: int = 0
    """The epilogue's table (256 output elements, 513 when read by int16
    codes) when the layer has one; loaded once per layer into the weight
    buffer, after the two slots."""

    @property
    def cg(self) -> int:
        return self.c // self.groups

    @property
    def kg(self) -> int:
        return self.k // self.groups

    def in_rows(self, rt: int) -> int:
        return (rt - 1) * self.sh + self.dh * (self.kh - 1) + 1

    def in_cols(self, wt: int) -> int:
        return (wt - 1) * self.sw + self.dw * (self.kw - 1) + 1

    def tile_channels(self, kt: int, ct: int) -> int:
        """Input channels one tile reads: a grouped tile covers whole groups,
        or part of one group's output channels (then its input channels)."""
        return ct if self.groups == 1 else max(1, kt // self.kg) * self.cg

    def k_ranges(self, kt: int) -> list[tuple[int, int]]:
        """The output-channel tiles of ``kt`` channels: a grouped layer's
        never straddle a group (tiles of less than a group cut each group)."""
        if self.groups == 1 or kt >= self.kg:
            return [(k0, min(k0 + kt, self.k)) for k0 in range(0, self.k, kt)]
        return [(g * self.kg + j, min(g * self.kg + j + kt, (g + 1) * self.kg))
                for g in range(self.groups) for j in range(0, self.kg, kt)]


@dataclass(frozen=True)
class ConvPlan:
    kt: int
    rt: int
    wt: int
    ct: int
    k_outer: bool
    in_bytes: int
    res_bytes: int
    out_bytes: int
    wgt_bytes: int
    param_bytes: int
    acc_bytes: int

    lut_bytes: int = 0

    def needs(self) -> dict[str, int]:
        """Bytes each buffer must hold: two slots of activations and of
        weights (double buffering), the table, one set of accumulators."""
        return {"activation": 2 * (self.in_bytes + self.res_bytes + self.out_bytes),
                "weight": 2 * (self.wgt_bytes + self.param_bytes) + self.lut_bytes, "accumulator": self.acc_bytes}

    def overflows(self, hw: HardwareConfig) -> dict[str, int]:
        """The buffers this plan does not fit (name -> bytes needed)."""
        have = capacities(hw)
        return {name: need for name, need in self.needs().items() if need > have[name]}


def capacities(hw: HardwareConfig) -> dict[str, int]:
    """A cluster's buffer sizes, by the names plans and errors use."""
    return {"activation": hw.activation_buffer_bytes, "weight": hw.weight_buffer_bytes,
            "accumulator": hw.accumulator_buffer_bytes}


def conv_tile(s: ConvShape, kt: int, rt: int, wt: int, ct: int, chunks: int) -> ConvPlan:
    """The slot sizes of one tile shape (loop order decided later)."""
    per_group = ct if s.groups == 1 else s.cg
    return ConvPlan(kt, rt, wt, ct, True,
                    in_bytes=a8(s.tile_channels(kt, ct) * s.in_rows(rt) * s.in_cols(wt) * s.e_in),
                    res_bytes=a8(kt * rt * wt * s.e_res), out_bytes=a8(kt * rt * wt * s.e_out),
                    wgt_bytes=linear_size(kt * per_group * s.kh * s.kw * s.e_w),
                    param_bytes=linear_size(kt * PARAM_CHANNEL_BYTES),
                    acc_bytes=a8(kt * rt * wt * s.e_acc) if chunks > 1 else 0,
                    lut_bytes=linear_size(s.lut_bytes) if s.lut_bytes else 0)


def _box_bytes(s: ConvShape, elem: int, channels: int, rows, cols, height: int, width: int,
               map_channels: int):
    """DRAM bytes (whole bursts, as the simulator's cycle model counts them)
    of a channels x rows x cols box of a height x width map of
    ``map_channels`` channels, in the layout ``s`` has (``rows`` and ``cols``
    scalars or arrays alike)."""
    strides = (1, 0, map_channels) if s.channels_last else (height * width, width, 1)
    return dram_transfer_bytes(elem, channels, rows, cols, *strides)


def conv_cost(s: ConvShape, p: ConvPlan, hw: HardwareConfig) -> tuple[float, bool]:
    """The plan's cost in DRAM-byte equivalents, in its cheaper loop order,
    and whether that order has output channels outer (:func:`_conv_costs`)."""
    cost, k_outer = _conv_costs(s, hw, np.array([p.kt]), np.array([p.rt]), np.array([p.wt]), p.ct)
    return float(cost[0]), bool(k_outer[0])


def _conv_costs(s: ConvShape, hw: HardwareConfig, kt: np.ndarray, rt: np.ndarray, wt: np.ndarray,
                ct: int) -> tuple[np.ndarray, np.ndarray]:
    """Costs of the tilings (kt[i], rt[i], wt[i], ct), in DRAM-byte
    equivalents, in each one's cheaper loop order, and whether that order
    has output channels outer: the larger of the DRAM bytes it moves (at
    burst granularity, as the cycle model counts them: a tile of short,
    strided rows costs a burst a row) and its MAC cycles (as the cycle model
    counts them: a tile of ``kt`` output channels keeps ``ceil(kt / units)``
    passes busy) at the DRAM's bytes per cycle (double buffering overlaps
    the two), plus a fixed cost per tile. One array expression for all of a
    layer's candidates (the planner's search), exact integer arithmetic up
    to the MAC cycles' float."""
    kt, rt, wt = (np.asarray(v, np.int64) for v in (kt, rt, wt))
    if s.groups == 1:
        n_k = -(-s.k // kt)  # len(s.k_ranges(kt))
    else:
        n_k = np.where(kt >= s.kg, -(-s.k // kt), s.groups * -(-s.kg // kt))
    n_r, n_w = -(-s.oh // rt), -(-s.ow // wt)
    n_c = -(-s.c // ct) if s.groups == 1 else 1
    bands = n_r * n_w
    inputs = bands * _box_bytes(s, s.e_in, s.c, (rt - 1) * s.sh + s.dh * (s.kh - 1) + 1,
                                (wt - 1) * s.sw + s.dw * (s.kw - 1) + 1, s.h, s.w, s.c)
    outputs = bands * _box_bytes(s, s.e_out + s.e_res, s.k, rt, wt, s.oh, s.ow, s.k)  # written, residual read
    weights = s.k * s.cg * s.kh * s.kw * s.e_w + s.k * PARAM_CHANNEL_BYTES * n_c
    if s.groups > 1:  # each output-channel tile reads only its own groups' channels (once per tile of a group)
        reread = inputs * np.maximum(1, -(-s.kg // kt))
        k_outer = weights + reread
        band_outer = reread + weights * bands
    else:
        k_outer = (weights if n_c == 1 else weights * bands) + inputs * n_k
        band_outer = (inputs if n_c == 1 else inputs * n_k) + np.where(n_k * n_c == 1, weights, weights * bands)
    jobs = n_k * bands * n_c
    reduction = (ct if s.groups == 1 else s.cg) * s.kh * s.kw
    passes = conv_passes(kt, reduction, max(s.e_in, s.e_w) > 1, hw)
    compute = s.oh * s.ow * n_k * n_c * passes * hw.dram_bandwidth / hw.clock_hz
    best = np.minimum(k_outer, band_outer)
    return np.maximum(best + outputs, compute) + jobs * TILE_OVERHEAD_BYTES, k_outer <= band_outer


def plan_conv(s: ConvShape, hw: HardwareConfig, layer: str) -> ConvPlan:
    """The cheapest tiling of a convolution that fits the buffers."""
    best = _cheapest_conv_plan(s, hw)
    if best is None:
        kts, cts = _candidate_extents(s)
        smallest = conv_tile(s, kts[-1], 1, 1, cts[-1], 2 if s.groups == 1 and s.c > 1 else 1)
        have = capacities(hw)
        over = [f"the {b} buffer ({need} B needed, {have[b]} B available)"
                for b, need in smallest.overflows(hw).items()]
        raise TilingError(f"layer {layer!r}: even the smallest tile does not fit {' and '.join(over)}")
    return best


def _candidate_extents(s: ConvShape) -> tuple[list[int], list[int]]:
    """The output-channel and input-channel tile extents the search tries."""
    if s.groups == 1:
        return halvings(s.k), halvings(s.c)
    return sorted({s.kg * g for g in halvings(s.groups)} | set(halvings(s.kg)), reverse=True), [s.c]


@functools.lru_cache(maxsize=4096)
def _cheapest_conv_plan(s: ConvShape, hw: HardwareConfig) -> ConvPlan | None:
    """:func:`plan_conv`'s search, or None when nothing fits; remembered per
    (shape, hardware), both immutable: models repeat their layers' shapes,
    and the distribution pass plans each layer again for every split it
    weighs. The first cheapest candidate in the search's order wins, as the
    scalar search's strict ``<`` kept it."""
    kts, cts = _candidate_extents(s)
    best, best_cost = None, math.inf
    for ct in cts:
        chunks = reduction_chunks(s, ct)
        candidates = []
        for wt in halvings(s.ow):
            for kt in kts:
                rt = _largest(lambda r: not conv_tile(s, kt, r, wt, ct, chunks).overflows(hw),
                              min(s.oh, MAX_EXTENT))
                if rt:
                    candidates.append((kt, rt, wt))
        if candidates:
            kt, rt, wt = np.array(candidates, np.int64).T
            costs, k_outer = _conv_costs(s, hw, kt, rt, wt, ct)
            i = int(np.argmin(costs))
            if costs[i] < best_cost:
                plan = conv_tile(s, int(kt[i]), int(rt[i]), int(wt[i]), ct, chunks)
                best, best_cost = dataclasses.replace(plan, k_outer=bool(k_outer[i])), costs[i]
        if best is not None and chunks == 1:
            break  # splitting the reduction only when a whole one does not fit
    return best


def _largest(fits, limit: int) -> int:
    """The largest r in [1, limit] with fits(r) (fits is monotone), or 0."""
    if not fits(1):
        return 0
    low, high = 1, limit
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return low


@dataclass(frozen=True)
class MapPlan:
    """Tiles of an element-wise or pooling layer: channels x rows x columns."""

    ct: int
    rt: int
    wt: int


def plan_map(channels: int, rows: int, cols: int, act_bytes, budget: int, layer: str, what: str) -> MapPlan:
    """The largest tile (channels, then rows, then columns) whose double-
    buffered operands ``act_bytes(ct, rt, wt)`` fit ``budget`` bytes."""
    for wt in halvings(cols):
        for ct in halvings(channels):
            rt = _largest(lambda r: act_bytes(ct, r, wt) <= budget, min(rows, MAX_EXTENT))
            if rt:
                return MapPlan(ct, rt, wt)
    raise TilingError(f"layer {layer!r}: even a 1x1x1 {what} tile needs {act_bytes(1, 1, 1)} B of the activation "
                       f"buffer, which has {budget} B")


# ---------------------------------------------------------------- the layers' tile problems
CONV_OPS = frozenset({"QConv", "QGemm", "QConvTranspose"})
TWO_GRID_OPS = frozenset({"QAdd", "QSub", "QMax", "QMin"})
ELTWISE_OPS = TWO_GRID_OPS | {"QMul"}
MAP_OPS = frozenset({"MaxPool", "QAvgPool", "QConcat", "QLut", "Resize", "QMatMul", "QSoftmax"}) | ELTWISE_OPS
TILED_OPS = CONV_OPS | MAP_OPS | MOVE_OPS
"""The accelerator's layer ops: each is cut into tiles."""


def conv_shape(node: Node) -> ConvShape:
    """A QConv's (one image's) or a QGemm's tile problem (a GEMM is a 1x1
    convolution of a one-row map whose columns are the rows of x)."""
    x, w = node.inputs[0].type, node.inputs[1].type
    residual = node.inputs[3] if len(node.inputs) > 3 else None
    e_in, e_w, e_out = x.dtype.itemsize, w.dtype.itemsize, node.outputs[0].type.dtype.itemsize
    e_res = residual.type.dtype.itemsize if residual is not None else 0
    e_acc = 4 if e_w == 1 else 8
    lut = len(node.attrs.get("table") or ()) * e_out  # 256 entries, or 513 read by int16 codes
    if node.op == "QGemm":
        m, reduction = x.shape
        return ConvShape(reduction, 1, m, w.shape[0], 1, m, 1, 1, 1, 1, 1, 1, 1, e_in, e_w, e_out, e_res, e_acc,
                         channels_last=True, lut_bytes=lut)
    a = node.attrs
    (sh, sw), (dh, dw) = a["strides"], a["dilations"]
    return ConvShape(x.shape[1], x.shape[2], x.shape[3], w.shape[0], *node.outputs[0].type.shape[2:],
                     w.shape[2], w.shape[3], sh, sw, dh, dw, int(a["group"]), e_in, e_w, e_out, e_res, e_acc,
                     lut_bytes=lut)


def reduction_chunks(s: ConvShape, ct: int) -> int:
    """Input-channel chunks a tile of ``ct`` channels splits the reduction into."""
    return -(-s.c // ct) if s.groups == 1 else 1


def chw(shape: tuple[int, ...]) -> tuple[int, tuple[int, int, int]]:
    """(batch, (channels, rows, cols)) of a tensor laid out N, C, H, W (rank
    2 and 3 tensors are [N][C] and [N][C][L]: one row of L columns)."""
    if len(shape) == 4:
        return shape[0], tuple(shape[1:])
    if len(shape) == 3:
        return shape[0], (shape[1], 1, shape[2])
    if len(shape) == 2:
        return shape[0], (shape[1], 1, 1)
    return 1, (math.prod(shape), 1, 1)


@dataclass(frozen=True)
class Operand:
    """One operand a map layer's tile keeps in a slot: ``elem``-byte
    elements, one per tile element (FULL), per channel or one in all; an
    input window of ``(stride_h, kernel_h, stride_w, kernel_w)`` spans
    ``(rt - 1) * stride + kernel`` rows (and columns) for ``rt`` output rows."""

    elem: int
    bcast: Bcast = Bcast.FULL
    window: tuple[int, int, int, int] = (1, 1, 1, 1)

    def nbytes(self, ct: int, rt: int, wt: int) -> int:
        if self.bcast == Bcast.SCALAR:
            return a8(self.elem)
        if self.bcast == Bcast.CHANNEL:
            return a8(ct * self.elem)
        sh, kh, sw, kw = self.window
        return a8(ct * ((rt - 1) * sh + kh) * ((wt - 1) * sw + kw) * self.elem)


@dataclass(frozen=True)
class MapTiles:
    """A map layer's tile problem: the [channels][rows][cols] it cuts and the
    operands each slot holds (the one rule for the planner's budget and for
    codegen's slot addresses)."""

    dims: tuple[int, int, int]
    operands: tuple[Operand, ...]
    what: str

    def slot_sizes(self, ct: int, rt: int, wt: int) -> tuple[int, ...]:
        return tuple(o.nbytes(ct, rt, wt) for o in self.operands)


def operand_dims(node: Node, value: Value) -> tuple[int, tuple[int, int, int]]:
    """(batch, (channels, rows, cols)) of an element-wise layer's operand,
    its shape aligned to the output's rank as ONNX broadcasts it; each axis
    must be the output's or 1 (repeated along it)."""
    shape, out = tuple(value.type.shape), tuple(node.outputs[0].type.shape)
    padded = (1,) * (len(out) - len(shape)) + shape
    if len(shape) > len(out) or len(out) > 4 or any(d not in (1, o) for d, o in zip(padded, out)):
        raise TilingError(f"layer {node.name!r}: operand %{value.name} {list(shape)} does not broadcast to "
                          f"{list(out)} axis by axis within N, C, H, W")
    return chw(padded)


def bcast_mode(node: Node, value: Value) -> Bcast:
    """How ELTWISE reads an operand as its b: one value per channel
    (CHANNEL) or one in all (SCALAR) of each image, else a tile-sized box
    (FULL), which a LOAD with zero strides along the axes the operand
    repeats fills when it broadcasts (:func:`operand_strides`)."""
    _, dims = operand_dims(node, value)
    _, out = chw(node.outputs[0].type.shape)
    if dims != out and dims == (1, 1, 1):
        return Bcast.SCALAR
    if dims != out and dims == (out[0], 1, 1):
        return Bcast.CHANNEL
    return Bcast.FULL


def operand_strides(node: Node, value: Value) -> tuple[int, tuple[int, int, int]]:
    """(image stride, (channel, row, column) strides) in elements of an
    operand read as a full [c][h][w] box of the output's shape: its dense
    strides, 0 along every axis it repeats (a DMA broadcast: docs/isa.md,
    LOAD) or the output has extent 1, and between images when one image
    serves the batch."""
    n, (c, h, w) = operand_dims(node, value)
    batch, out = chw(node.outputs[0].type.shape)
    dense = (h * w, w, 1)
    strides = tuple(s if d == o > 1 else 0 for s, d, o in zip(dense, (c, h, w), out))
    return (c * h * w if n == batch else 0), strides


def eltwise_operands(node: Node) -> tuple[Value, Value, bool]:
    """(a, b, swapped): a QAdd's / QMul's operands, one that ELTWISE reads
    per channel or as a scalar put in b where the op commutes (QSub keeps
    its order). a is always read as a full box, broadcast by the DMA where
    it repeats."""
    a, b = node.inputs
    swap = node.op != "QSub" and bcast_mode(node, a) != Bcast.FULL and bcast_mode(node, b) == Bcast.FULL
    if swap:
        a, b = b, a
    return a, b, swap


def map_tiles(node: Node) -> MapTiles:
    """The tile problem of a pool, element-wise, concat, lookup or upsampling layer."""
    out = node.outputs[0].type
    e_out = out.dtype.itemsize
    if node.op in ("MaxPool", "QAvgPool"):
        (kh, kw), (sh, sw) = node.attrs["kernel_shape"], node.attrs["strides"]
        window = Operand(node.inputs[0].type.dtype.itemsize, window=(sh, kh, sw, kw))
        return MapTiles(tuple(out.shape[1:]), (window, Operand(e_out)), "pool")
    if node.op in ELTWISE_OPS:
        a, b, _ = eltwise_operands(node)
        operands = (Operand(a.type.dtype.itemsize), Operand(b.type.dtype.itemsize, bcast_mode(node, b)),
                    Operand(e_out))
        return MapTiles(chw(out.shape)[1], operands, node.op)
    if node.op == "QConcat":
        axis = int(node.attrs["axis"]) % out.rank
        if axis == 0:
            raise TilingError(f"layer {node.name!r}: concatenation along the batch axis")
        widest = max(math.prod(v.type.shape[axis:]) for v in node.inputs)
        e_in = max(v.type.dtype.itemsize for v in node.inputs)
        # one tile shape (so one slot layout) for every input: slots alternate across the inputs' jobs
        return MapTiles((1, math.prod(out.shape[1:axis]), widest), (Operand(e_in), Operand(e_out)), "concat")
    if node.op == "QLut":
        x = node.inputs[0].type  # int8 codes, or int16 ones (a 513-entry table)
        return MapTiles((1, 1, math.prod(out.shape)), (Operand(x.dtype.itemsize), Operand(e_out)), "LUT")
    if node.op == "QMatMul":  # batch x rows of a x columns of b: a [ct][rt][k], b [ct][k][wt], out [ct][rt][wt]
        a, b = (v.type for v in node.inputs)
        k = a.shape[-1]
        operands = (Operand(a.dtype.itemsize, window=(1, 1, 0, k)), Operand(b.dtype.itemsize, window=(0, k, 1, 1)),
                    Operand(e_out))
        return MapTiles(matmul_dims(out.shape), operands, "MATMUL")
    if node.op == "QSoftmax":  # whole rows: the planner keeps wt = cols where one row fits (target.py checks it)
        x = node.inputs[0].type
        return MapTiles((1, math.prod(out.shape[:-1]), out.shape[-1]), (Operand(x.dtype.itemsize), Operand(e_out)),
                        "SOFTMAX")
    x = node.inputs[0].type  # Resize: nearest, integer factors
    if x.rank != 4 or x.shape[:2] != out.shape[:2] or out.shape[2] % x.shape[2] or out.shape[3] % x.shape[3]:
        raise TilingError(f"layer {node.name!r}: Resize {list(x.shape)} -> {list(out.shape)} is not an integer "
                          "spatial upsampling")
    return MapTiles(tuple(x.shape[1:]), (Operand(x.dtype.itemsize), Operand(e_out)), "upsample")


def matmul_dims(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(batch, rows, columns) of a batched product's output: the leading dims are the batch."""
    return math.prod(shape[:-2]), shape[-2], shape[-1]


def conv_plan(s: ConvShape, decision: dict[str, Any]) -> ConvPlan:
    """The ConvPlan (slot sizes included) of a recorded decision."""
    tile = conv_tile(s, decision["kt"], decision["rt"], decision["wt"], decision["ct"],
                     reduction_chunks(s, decision["ct"]))
    return dataclasses.replace(tile, k_outer=bool(decision["k_outer"]))


# ---------------------------------------------------------------- moves
@dataclass(frozen=True)
class MovePlan:
    """A move's DMA box: the view axes that form its z, y and x (the other
    axes are loops) and the tile extents along them."""

    box: tuple[int, int, int]
    tile: tuple[int, int, int]


def move_slot(move: Move, tile: tuple[int, ...]) -> int:
    """Bytes of one slot: a tile is loaded and stored from the same slot."""
    return a8(math.prod(tile) * move.elem)


def plan_move(move: Move, hw: HardwareConfig, layer: str) -> MovePlan:
    """The cheapest box of a move whose tiles fit two slots of the
    activation buffer: every ordered choice of three view axes, every
    halving of the tile along each, priced as the cycle model prices the
    LOADs (input strides) and STOREs (output strides) at burst granularity,
    plus a fixed cost per tile. So the box takes the axes that keep both
    sides' runs long, and a transposing side is priced by its span."""
    budget = hw.activation_buffer_bytes
    if 2 * move_slot(move, (1,)) > budget:
        raise TilingError(f"layer {layer!r}: even one element ({move.elem} B) in two slots exceeds the "
                          f"activation buffer ({budget} B)")
    best, best_cost = None, math.inf
    for box in itertools.permutations(range(len(move.axes)), BOX_RANK):
        axes = [move.axes[i] for i in box]
        grids = np.meshgrid(*(np.array(halvings(a.size), np.int64) for a in axes), indexing="ij")
        z, y, x = (g.reshape(-1) for g in grids)
        fits = 2 * (-(-(z * y * x * move.elem) // SLOT_ALIGN) * SLOT_ALIGN) <= budget
        if not fits.any():
            continue
        z, y, x = z[fits], y[fits], x[fits]
        loops = math.prod(a.size for i, a in enumerate(move.axes) if i not in box)
        count = loops * np.prod([-(-a.size // t) for a, t in zip(axes, (z, y, x))], axis=0)
        per_tile = (dram_transfer_bytes(move.elem, z, y, x, *(a.src for a in axes))
                    + dram_transfer_bytes(move.elem, z, y, x, *(a.dst for a in axes)) + TILE_OVERHEAD_BYTES)
        cost = count * per_tile
        i = int(np.argmin(cost))
        if cost[i] < best_cost:
            best, best_cost = MovePlan(box, (int(z[i]), int(y[i]), int(x[i]))), cost[i]
    return best
