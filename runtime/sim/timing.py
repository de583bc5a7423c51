"""The cycle model (docs/simulator.md): how long each instruction keeps its
module busy, and the :class:`Timing` report of a program.

Durations depend on the instructions and the hardware config only, never on
data, so the whole schedule is computed once when the simulator is built.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from runtime.hardware import HardwareConfig
from runtime.isa import COL_OPCODE, Op, StreamKey, column

DMA_SETUP_CYCLES = 64
"""Fixed cost of a LOAD or STORE: descriptor set-up and the DRAM round trip
(~256 ns at 250 MHz, a typical DDR4 access latency plus the DMA engine's
address generation)."""
DRAM_BURST_BYTES = 64
"""DRAM moves whole bursts: a DDR4 x64 channel's burst of 8 beats. A
contiguous run of a DMA box costs its bytes rounded up to whole bursts."""
CONV_PIPELINE_CYCLES = 16
"""Fill and drain of the MAC pipeline and the requantisation epilogue."""
CONV_TABLE_CYCLES = 4
"""Fill and drain of a CONV's table stage (lut=1): a lookup per output
after the clamp. The stage takes ``vector_lanes`` outputs a cycle and the
MAC array delivers at most ``units_per_cluster`` (one per unit per pass), so
it adds latency, never throughput."""
CONV_WIDE_TABLE_CYCLES = 2
"""What a table read by int16 codes (lut_wide=1) adds to the table stage:
a second entry read and the interpolation's multiply and shift, two more
pipeline stages. At ``vector_lanes / 2`` outputs a cycle the stage still
outpaces the MAC array (``units_per_cluster`` a cycle), so it adds latency
only."""
VECTOR_PIPELINE_CYCLES = 8
"""Fill and drain of the vector path (POOL, ELTWISE, LUT)."""
SOFTMAX_RECIPROCAL_CYCLES = 32
"""A SOFTMAX row's one division (2^46 / sum): a 32-step radix-2 divider."""
SOFTMAX_PASSES = 3
"""SOFTMAX reads each row three times on the vector path: its maximum, the
table lookups and sum, the scaled outputs."""
WIDE_LUT_READS = 2
"""Table reads per element of a LUT with wide=1: two neighbouring entries
(and a multiply) per int16 code, so the vector path takes half as many
elements a cycle as with int8 codes."""
SIMPLE_CYCLES = 1
"""NOP, END, and a SYNC after its last participant arrives."""
MODULES = ("LOAD", "COMPUTE", "STORE")


def vector_lanes(config: HardwareConfig) -> int:
    """Elements the vector path (POOL, ELTWISE, LUT) takes per cycle: one
    MAC unit's width, macs_per_unit, the elements one ACT read port row
    delivers to it per cycle."""
    return config.macs_per_unit


def _ceil(a: np.ndarray, b) -> np.ndarray:
    return -(-a // b)


def _get(arr: np.ndarray, rows: np.ndarray, op: Op, name: str) -> np.ndarray:
    return arr[rows, column(op, name)]


def conv_work(arr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(output pixels, output channels, reduction length R) of CONV rows."""
    g = {name: _get(arr, rows, Op.CONV, name) for name in (
        "in_c", "in_h", "in_w", "groups", "kernel_h", "kernel_w", "stride_h", "stride_w", "dilation_h",
        "dilation_w", "out_c")}
    out_h = (g["in_h"] - g["dilation_h"] * (g["kernel_h"] - 1) - 1) // g["stride_h"] + 1
    out_w = (g["in_w"] - g["dilation_w"] * (g["kernel_w"] - 1) - 1) // g["stride_w"] + 1
    return out_h * out_w, g["out_c"], g["in_c"] // g["groups"] * g["kernel_h"] * g["kernel_w"]


def dma_bytes(arr: np.ndarray, rows: np.ndarray, op: Op) -> np.ndarray:
    """DRAM bytes a LOAD reads or a STORE writes (padding is not read)."""
    return (_get(arr, rows, op, "z_size") * _get(arr, rows, op, "y_size") * _get(arr, rows, op, "x_size")
            * _get(arr, rows, op, "elem_bytes"))


def conv_passes(channels, depth, wide, config: HardwareConfig):
    """Cycles a CONV spends on each output pixel (scalars or arrays alike):
    each MAC unit takes one of the ``channels`` output channels at a time,
    its lanes ``depth`` (the reduction) a pass at a time; 16-bit operands
    (``wide``) take two passes."""
    return (_ceil(np.asarray(channels, np.int64), config.units_per_cluster)
            * _ceil(np.asarray(depth, np.int64), config.macs_per_unit) * np.where(wide, 2, 1))


def dram_transfer_bytes(elem, z_size, y_size, x_size, z_stride, y_stride, x_stride):
    """DRAM bytes a [z][y][x] box of ``elem``-byte elements (strides in
    elements) costs at burst granularity (scalars or arrays alike): axes
    that continue the run inside them (unit stride, or an extent of 1)
    merge into one contiguous run; each run costs its bytes rounded up to
    whole bursts of :data:`DRAM_BURST_BYTES`, and the box never more than
    the bursts of its whole span (a box of runs closer together than a
    burst is read as the span)."""
    elem, z, y, x = (np.asarray(v, np.int64) for v in (elem, z_size, y_size, x_size))
    zs, ys, xs = (np.asarray(v, np.int64) for v in (z_stride, y_stride, x_stride))
    run = np.where((x == 1) | (xs == 1), x, 1)
    merged_y = (run == x) & ((y == 1) | (ys == run))
    run = np.where(merged_y, run * y, run)
    run = np.where(merged_y & ((z == 1) | (zs == run)), run * z, run)
    total = z * y * x
    runs = total // np.maximum(run, 1)
    burst = DRAM_BURST_BYTES
    per_run = -(-(run * elem) // burst) * burst
    span = ((z - 1) * np.abs(zs) + (y - 1) * np.abs(ys) + (x - 1) * np.abs(xs) + 1) * elem
    return np.where(total == 0, 0, np.minimum(runs * per_run, -(-span // burst) * burst))


def _dma_transfer_bytes(arr: np.ndarray, rows: np.ndarray, op: Op) -> np.ndarray:
    return dram_transfer_bytes(*(_get(arr, rows, op, name) for name in (
        "elem_bytes", "z_size", "y_size", "x_size", "z_stride", "y_stride", "x_stride")))


def durations(arr: np.ndarray, config: HardwareConfig, dram_sharers: int) -> np.ndarray:
    """Cycles each instruction of a decoded stream keeps its module busy;
    ``dram_sharers``: the clusters of this card running in the phase, which
    share its DRAM bandwidth evenly."""
    ops = arr[:, COL_OPCODE]
    out = np.full(ops.shape, SIMPLE_CYCLES, np.int64)
    bytes_per_cycle = config.dram_bandwidth / config.clock_hz / max(dram_sharers, 1)
    for op in (Op.LOAD, Op.STORE):
        rows = np.flatnonzero(ops == op)
        out[rows] = DMA_SETUP_CYCLES + np.ceil(_dma_transfer_bytes(arr, rows, op) / bytes_per_cycle).astype(np.int64)
    rows = np.flatnonzero(ops == Op.CONV)
    pixels, channels, depth = conv_work(arr, rows)
    wide = (_get(arr, rows, Op.CONV, "in_bits") == 16) | (_get(arr, rows, Op.CONV, "wgt_bits") == 16)
    table = _get(arr, rows, Op.CONV, "lut") * (CONV_TABLE_CYCLES
                                               + _get(arr, rows, Op.CONV, "lut_wide") * CONV_WIDE_TABLE_CYCLES)
    out[rows] = pixels * conv_passes(channels, depth, wide, config) + CONV_PIPELINE_CYCLES + table
    lanes = vector_lanes(config)
    rows = np.flatnonzero(ops == Op.POOL)
    g = {name: _get(arr, rows, Op.POOL, name) for name in (
        "c", "in_h", "in_w", "kernel_h", "kernel_w", "stride_h", "stride_w")}
    windows = g["c"] * ((g["in_h"] - g["kernel_h"]) // g["stride_h"] + 1) * \
        ((g["in_w"] - g["kernel_w"]) // g["stride_w"] + 1)
    out[rows] = _ceil(windows * g["kernel_h"] * g["kernel_w"], lanes) + VECTOR_PIPELINE_CYCLES
    rows = np.flatnonzero(ops == Op.ELTWISE)
    elements = _get(arr, rows, Op.ELTWISE, "c") * _get(arr, rows, Op.ELTWISE, "h") * _get(arr, rows, Op.ELTWISE, "w")
    out[rows] = _ceil(elements, lanes) + VECTOR_PIPELINE_CYCLES
    rows = np.flatnonzero(ops == Op.LUT)
    reads = np.where(_get(arr, rows, Op.LUT, "wide") == 1, WIDE_LUT_READS, 1)
    out[rows] = _ceil(_get(arr, rows, Op.LUT, "count") * reads, lanes) + VECTOR_PIPELINE_CYCLES
    rows = np.flatnonzero(ops == Op.MATMUL)
    g = {name: _get(arr, rows, Op.MATMUL, name) for name in ("batch", "m", "k", "n", "a_bits", "b_bits")}
    wide = (g["a_bits"] == 16) | (g["b_bits"] == 16)
    out[rows] = g["batch"] * g["m"] * conv_passes(g["n"], g["k"], wide, config) + CONV_PIPELINE_CYCLES
    rows = np.flatnonzero(ops == Op.SOFTMAX)
    lines, cols = _get(arr, rows, Op.SOFTMAX, "rows"), _get(arr, rows, Op.SOFTMAX, "cols")
    out[rows] = (lines * (SOFTMAX_PASSES * _ceil(cols, lanes) + SOFTMAX_RECIPROCAL_CYCLES)
                 + VECTOR_PIPELINE_CYCLES)
    return out


EXCHANGE_LATENCY_S = 20e-6
"""Fixed cost of one host-mediated copy between cards: a DMA set-up,
doorbell and completion each way (passes.target's TRANSFER_LATENCY_S)."""


def exchange_seconds(sizes, config: HardwareConfig) -> float:
    """Seconds the host's copies between cards take (split mode across
    cards), one copy per entry of ``sizes`` (bytes): each goes up the source
    card's host link and down every other card's, the cards' links working
    in parallel, so a copy costs its bytes twice over one link plus a
    latency."""
    if config.cards < 2:
        return 0.0
    return float(sum(2 * size / config.host_link_bandwidth + EXCHANGE_LATENCY_S for size in sizes))


def exchange_cycles(exchanges, config: HardwareConfig) -> int:
    """Cycles the :class:`runtime.compiled.Exchange` copies take (:func:`exchange_seconds`)."""
    return int(np.ceil(exchange_seconds([e.nbytes for e in exchanges], config) * config.clock_hz))


ACTIVITY = ("MAC", "vector", "DMA", "barrier wait")


def stream_activity(arr: np.ndarray, start: np.ndarray, end: np.ndarray, durs: np.ndarray) -> dict[str, int]:
    """Cycles one stream's cluster spends on each kind of work: its MAC
    array (CONV, MATMUL), its vector path (POOL, ELTWISE, LUT, SOFTMAX), its DMA (LOAD and
    STORE; they overlap compute where double buffering hides them) and
    waiting at SYNC barriers for the other clusters."""
    ops = arr[:, COL_OPCODE]
    sync = ops == Op.SYNC
    vector = (ops == Op.POOL) | (ops == Op.ELTWISE) | (ops == Op.LUT) | (ops == Op.SOFTMAX)
    return {"MAC": int(durs[(ops == Op.CONV) | (ops == Op.MATMUL)].sum()),
            "vector": int(durs[vector].sum()),
            "DMA": int(durs[(ops == Op.LOAD) | (ops == Op.STORE)].sum()),
            "barrier wait": int((end[sync] - start[sync] - durs[sync]).sum())}


def conv_macs(arr: np.ndarray) -> int:
    """Multiply-accumulates of every CONV and MATMUL of a decoded stream."""
    rows = np.flatnonzero(arr[:, COL_OPCODE] == Op.CONV)
    pixels, channels, depth = conv_work(arr, rows)
    rows = np.flatnonzero(arr[:, COL_OPCODE] == Op.MATMUL)
    products = np.prod([_get(arr, rows, Op.MATMUL, name) for name in ("batch", "m", "k", "n")], axis=0)
    return int((pixels * channels * depth).sum()) + int(np.sum(products))


@dataclass
class Timing:
    """The static timing of a program (the same for every run).

    ``starts[key][i]`` / ``ends[key][i]``: the cycles instruction i of stream
    ``key`` starts and ends, counted from the start of the program (a phase
    starts when the previous one has ended); ``durations[key][i]`` the
    cycles it keeps its module busy. ``phase_cycles[p]``: cycles of phase p
    (until its last stream ends). ``busy``: busy cycles per module over all
    streams. ``efficiency``: MACs / (cycles x peak MACs per cycle of the
    clusters each phase uses)."""

    clock_hz: int
    starts: dict[StreamKey, np.ndarray] = field(repr=False)
    ends: dict[StreamKey, np.ndarray] = field(repr=False)
    durations: dict[StreamKey, np.ndarray] = field(repr=False)
    phase_cycles: dict[int, int]
    total_cycles: int
    busy: dict[str, int]
    macs: int
    dram_read_bytes: int
    dram_written_bytes: int
    efficiency: float
    activity: dict[StreamKey, dict[str, int]] = field(default_factory=dict)
    """Per stream, where its cluster's time goes (:func:`stream_activity`)."""

    @property
    def hwtime_ms(self) -> float:
        """Total cycles at the config's clock, in milliseconds."""
        return self.total_cycles / self.clock_hz * 1e3

    def range_cycles(self, key, start: int, stop: int) -> int:
        """Cycles from the first start to the last end of instructions
        [start, stop) of stream ``key`` (0 for an empty range). Ranges of
        different layers overlap where the modules overlap them."""
        key = StreamKey(*key)
        if key not in self.starts:
            raise KeyError(f"no stream {tuple(key)} in this program")
        if not 0 <= start <= stop <= self.starts[key].shape[0]:
            raise IndexError(f"range [{start}, {stop}) outside stream {tuple(key)} "
                             f"of {self.starts[key].shape[0]} instructions")
        if start == stop:
            return 0
        return int(self.ends[key][start:stop].max() - self.starts[key][start:stop].min())
