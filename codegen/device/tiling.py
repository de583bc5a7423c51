"""The capacity planner: tile sizes that fit a cluster's on-chip buffers.

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
import math
from dataclasses import dataclass

from codegen.device.dma import MAX_EXTENT, linear_size
from runtime.errors import TesseraError
from runtime.hardware import HardwareConfig
from runtime.isa import PARAM_CHANNEL_BYTES
from runtime.sim.timing import conv_passes, dram_transfer_bytes

SLOT_ALIGN = 8
TILE_OVERHEAD_BYTES = 2048
"""DRAM-byte equivalent of one tile's fixed cost (instruction fetch, DMA set-up)."""


class CodegenError(TesseraError):
    """A layer cannot be lowered to the accelerator (names the layer and why)."""


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
        """Input channels one tile reads."""
        return ct if self.groups == 1 else (kt // self.kg) * self.cg


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

    def needs(self) -> dict[str, int]:
        """Bytes each buffer must hold: two slots of activations and of
        weights (double buffering), one set of accumulators."""
        return {"activation": 2 * (self.in_bytes + self.res_bytes + self.out_bytes),
                "weight": 2 * (self.wgt_bytes + self.param_bytes), "accumulator": self.acc_bytes}

    def overflows(self, hw: HardwareConfig) -> dict[str, int]:
        """The buffers this plan does not fit (name -> bytes needed)."""
        have = capacities(hw)
        return {name: need for name, need in self.needs().items() if need > have[name]}


def capacities(hw: HardwareConfig) -> dict[str, int]:
    """A cluster's buffer sizes, by the names plans and errors use."""
    return {"activation": hw.activation_buffer_bytes, "weight": hw.weight_buffer_bytes,
            "accumulator": hw.accumulator_buffer_bytes}


def _conv_tile(s: ConvShape, kt: int, rt: int, wt: int, ct: int, chunks: int) -> ConvPlan:
    """The slot sizes of one tile shape (loop order decided later)."""
    per_group = ct if s.groups == 1 else s.cg
    return ConvPlan(kt, rt, wt, ct, True,
                    in_bytes=a8(s.tile_channels(kt, ct) * s.in_rows(rt) * s.in_cols(wt) * s.e_in),
                    res_bytes=a8(kt * rt * wt * s.e_res), out_bytes=a8(kt * rt * wt * s.e_out),
                    wgt_bytes=linear_size(kt * per_group * s.kh * s.kw * s.e_w),
                    param_bytes=linear_size(kt * PARAM_CHANNEL_BYTES),
                    acc_bytes=a8(kt * rt * wt * s.e_acc) if chunks > 1 else 0)


def _box_bytes(s: ConvShape, elem: int, channels: int, rows: int, cols: int, height: int, width: int,
               map_channels: int) -> int:
    """DRAM bytes (whole bursts, as the simulator's cycle model counts them)
    of a channels x rows x cols box of a height x width map of
    ``map_channels`` channels, in the layout ``s`` has."""
    strides = (1, 0, map_channels) if s.channels_last else (height * width, width, 1)
    return int(dram_transfer_bytes(elem, channels, rows, cols, *strides))


def _conv_cost(s: ConvShape, p: ConvPlan, hw: HardwareConfig) -> tuple[float, bool]:
    """The plan's cost in DRAM-byte equivalents, in its cheaper loop order,
    and whether that order has output channels outer: the larger of the
    DRAM bytes it moves (at burst granularity, as the cycle model counts
    them: a tile of short, strided rows costs a burst a row) and its MAC
    cycles (as the cycle model counts them: a tile of ``kt`` output
    channels keeps ``ceil(kt / units)`` passes busy) at the DRAM's bytes per
    cycle (double buffering overlaps the two), plus a fixed cost per tile."""
    n_k, n_r, n_w = -(-s.k // p.kt), -(-s.oh // p.rt), -(-s.ow // p.wt)
    n_c = -(-s.c // p.ct) if s.groups == 1 else 1
    bands = n_r * n_w
    inputs = bands * _box_bytes(s, s.e_in, s.c, s.in_rows(p.rt), s.in_cols(p.wt), s.h, s.w, s.c)
    outputs = bands * _box_bytes(s, s.e_out + s.e_res, s.k, p.rt, p.wt, s.oh, s.ow, s.k)  # written, residual read
    weights = s.k * s.cg * s.kh * s.kw * s.e_w + s.k * PARAM_CHANNEL_BYTES * n_c
    if s.groups > 1:  # each output-channel tile reads only its own groups' channels
        k_outer = weights + inputs
        band_outer = inputs + weights * bands
    else:
        k_outer = (weights if n_c == 1 else weights * bands) + inputs * n_k
        band_outer = (inputs if n_c == 1 else inputs * n_k) + (weights if n_k * n_c == 1 else weights * bands)
    jobs = n_k * bands * n_c
    reduction = (p.ct if s.groups == 1 else s.cg) * s.kh * s.kw
    passes = int(conv_passes(p.kt, reduction, max(s.e_in, s.e_w) > 1, hw))
    compute = s.oh * s.ow * n_k * n_c * passes * hw.dram_bandwidth / hw.clock_hz
    best = min(k_outer, band_outer)
    return max(best + outputs, compute) + jobs * TILE_OVERHEAD_BYTES, k_outer <= band_outer


def plan_conv(s: ConvShape, hw: HardwareConfig, layer: str) -> ConvPlan:
    """The cheapest tiling of a convolution that fits the buffers."""
    if s.groups == 1:
        kts = halvings(s.k)
        cts = halvings(s.c)
    else:
        kts = sorted({s.kg * g for g in halvings(s.groups)}, reverse=True)
        cts = [s.c]
    best, best_cost = None, math.inf
    for ct in cts:
        chunks = -(-s.c // ct) if s.groups == 1 else 1
        for wt in halvings(s.ow):
            for kt in kts:
                rt = _largest(lambda r: not _conv_tile(s, kt, r, wt, ct, chunks).overflows(hw),
                              min(s.oh, MAX_EXTENT))
                if rt == 0:
                    continue
                plan = _conv_tile(s, kt, rt, wt, ct, chunks)
                cost, k_outer = _conv_cost(s, plan, hw)
                if cost < best_cost:
                    best, best_cost = dataclasses.replace(plan, k_outer=k_outer), cost
        if best is not None and chunks == 1:
            break  # splitting the reduction only when a whole one does not fit
    if best is None:
        smallest = _conv_tile(s, kts[-1], 1, 1, cts[-1], 2 if s.groups == 1 and s.c > 1 else 1)
        have = capacities(hw)
        over = [f"the {b} buffer ({need} B needed, {have[b]} B available)"
                for b, need in smallest.overflows(hw).items()]
        raise CodegenError(f"layer {layer!r}: even the smallest tile does not fit {' and '.join(over)}")
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
    raise CodegenError(f"layer {layer!r}: even a 1x1x1 {what} tile needs {act_bytes(1, 1, 1)} B of the activation "
                       f"buffer, which has {budget} B")
