"""Bias correction: remove the mean error each quantized linear layer adds.

Rounding a layer's weights and its input to their grids shifts the mean of
its output channels a little, the clipping of a calibrated range more; such
a shift is systematic, so it adds up through the network instead of
averaging out. As in AIMET's empirical bias correction, each QConv / QGemm
gets the mean error of its own output over the calibration data added to
its bias:

    delta[k] = mean( W[k] * x  -  W_q[k] * fq(x) )        (over samples and positions)

with ``x`` the float model's input to the layer, ``fq(x)`` that input
quantized on the layer's input grid and dequantized, and ``W_q`` the
dequantized integer weights. Convolution is linear, so the means of ``x``
and ``fq(x)`` over the samples (kept per position) give ``delta`` exactly,
padding included. The correction is in accumulator units,
``round(delta[k] / (s_x s_w[k]))``; the integer ops do not change.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from ir.graph import Node, Value
from ir.registry import with_defaults
from passes.infra import PassError
from passes.quant.channel_grids import per_output_scales
from passes.quant.progress import progress
from runtime.executor import Executor
from runtime.jit import jit
from runtime.kernels import run_kernel
from runtime.parallel import parallel_for
from runtime.program import Program

PARALLEL_GRAIN = 1 << 14
"""Least positions a thread sums at once."""
BLOCK = 1 << 15
"""Positions summed over every array at once (their sums, 512 KiB, stay in cache)."""


@dataclass(frozen=True)
class LinearLayer:
    """A QConv or QGemm the rewrite built, with what its correction needs."""

    node: Node
    """The integer node (inputs: codes, integer weights with their grid, bias)."""
    x: Value
    """Its float input, a value of the graph before the rewrite."""
    weight: np.ndarray
    """The float weights (Conv: [K, C/g, kh, kw]; Gemm: [N, K])."""
    conv: dict | None
    """The convolution's attributes; None for a Gemm."""


class InputMeans:
    """Streaming per-position sums of one float tensor and of the same
    tensor on its grid (quantized, then dequantized), over the batch axis."""

    def __init__(self, grid):
        self.grid = grid
        """The grid (QuantParams) the rounded sums are taken on."""
        self.count = 0
        self.exact = self.rounded = np.zeros(0)

    def update(self, array: np.ndarray) -> None:
        self.update_many([array])

    def update_many(self, arrays) -> None:
        """:meth:`update` of each array in turn, with the same sums: the
        positions split over the threads, each block of them summed over
        every array while it stays in cache."""
        xs = [np.asarray(array, np.float32) for array in arrays]
        if not xs:
            return
        if self.count == 0:
            self.exact, self.rounded = np.zeros(xs[0].shape[1:]), np.zeros(xs[0].shape[1:])
        info = np.iinfo(self.grid.dtype)
        rows = [row for x in xs for row in x.reshape(x.shape[0], -1)]
        scales = np.repeat(np.asarray(self.grid.scale, np.float32),  # one per position: a grid may be per channel
                           self.exact.size // len(self.grid.scale))
        parallel_for(_accumulate_columns, self.exact.size, rows, self.exact.reshape(-1), self.rounded.reshape(-1),
                     scales, int(self.grid.zero[0]), info.min, info.max, grain=PARALLEL_GRAIN)
        self.count += sum(x.shape[0] for x in xs)


def correct_biases(lowered: tuple[Program, Mapping[Value, str]], layers: list[LinearLayer],
                   batches: Iterable[Mapping[str, np.ndarray]],
                   measured: Mapping[str, InputMeans] | None = None) -> None:
    """Add each layer's mean output error over ``batches`` to its bias (in
    place). ``lowered`` is the float graph the layers' ``x`` belong to, as
    codegen.cpu.lower_with_names gives it. ``measured``: sums calibration
    already took over the same batches, by slot, on the grid it expected
    (passes/quant/calibrate.py); only the slots whose layers have another
    grid, or none measured, run the float model on ``batches`` again."""
    if not layers:
        return
    program, names = lowered
    means: dict[str, InputMeans] = {}
    for layer in layers:
        if layer.x not in names:
            raise PassError(f"bias correction of {layer.node.op} node {layer.node.name!r}: its input "
                            f"%{layer.x.name} is not computed by the float graph")
        slot, grid = names[layer.x], layer.node.inputs[0].quant
        if slot not in means:
            known = (measured or {}).get(slot)
            means[slot] = known if known is not None and known.count and same_grid(known.grid, grid) else \
                InputMeans(grid)
    again = [slot for slot, stats in means.items() if not stats.count]
    if again:
        executor = Executor(program)
        for feeds in progress(batches, label="bias correction"):
            executor.run(feeds, fetch=[], observe=lambda name, array: means[name].update(array), watch=again)
    for layer in layers:
        stats = means[names[layer.x]]
        if stats.count:
            delta = _mean_error(layer, stats.exact / stats.count, stats.rounded / stats.count)
            add_to_bias(layer.node, np.rint(delta / _accumulator_scale(layer.node)).astype(np.int64))


def same_grid(a, b) -> bool:
    """Whether InputMeans takes the same rounded sums on grids ``a`` and ``b``."""
    return (np.array_equal(np.float32(a.scale), np.float32(b.scale)) and int(a.zero[0]) == int(b.zero[0])
            and np.dtype(a.dtype) == np.dtype(b.dtype))


def add_to_bias(node: Node, correction) -> None:
    """Add ``correction`` (accumulator units, per output channel) to the
    integer bias of ``node`` and record it in ``annotations["bias_correction"]``
    (an encodings export carries it, so that an import rebuilds the same biases)."""
    bias = node.inputs[2]
    correction = np.broadcast_to(np.asarray(correction, np.int64), bias.const.shape)
    info = np.iinfo(bias.const.dtype)
    array = np.clip(bias.const.astype(np.int64) + correction, info.min, info.max).astype(bias.const.dtype)
    array.flags.writeable = False
    bias.const = array
    node.annotations["bias_correction"] = correction.tolist()


def _mean_error(layer: LinearLayer, exact: np.ndarray, rounded: np.ndarray) -> np.ndarray:
    """mean(W x) - mean(W_q fq(x)) per output channel."""
    q_weight = layer.node.inputs[1]
    scales = np.asarray(q_weight.quant.scale, np.float64).reshape((-1,) + (1,) * (q_weight.const.ndim - 1))
    dequantized = q_weight.const.astype(np.float64) * scales
    return _linear(layer, layer.weight, exact) - _linear(layer, dequantized, rounded)


def _linear(layer: LinearLayer, weight: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The layer's float op on one mean input, averaged per output channel."""
    if layer.conv is None:
        return np.asarray(weight, np.float64) @ np.asarray(x, np.float64).reshape(-1)
    attrs = {k: tuple(v) if isinstance(v, list) else v for k, v in with_defaults("Conv", layer.conv).items()}
    (y,) = run_kernel("Conv", [x[None].astype(np.float32), np.asarray(weight, np.float32)], attrs)
    return y.reshape(y.shape[1], -1).mean(axis=1, dtype=np.float64)


def _accumulator_scale(node: Node) -> np.ndarray:
    weight_scales = np.asarray(node.inputs[1].quant.scale, np.float64)
    return per_output_scales(node.inputs[0].quant, weight_scales.size) * weight_scales


def _accumulate_columns(start, stop, rows, exact, rounded, scales, zero, qmin, qmax):
    """:func:`_accumulate` of columns start..stop of each row in turn, a
    block of columns at a time (sliced here, so that the kernel sees
    contiguous arrays and vectorises)."""
    for low in range(start, stop, BLOCK):
        high = min(low + BLOCK, stop)
        for row in rows:
            _accumulate(row[low:high], exact[low:high], rounded[low:high], scales[low:high], zero, qmin, qmax)


@jit
def _accumulate(x, exact, rounded, scales, zero, qmin, qmax):
    """Add ``x`` to ``exact`` and, quantized on the grid (QuantizeLinear's
    clamp(round_half_even(x / s) + z), ``s`` the position's scale) and
    dequantized (s (q - z)), to ``rounded``; all in one pass."""
    for j in range(x.size):
        v = x[j]
        scale = scales[j]
        q = min(max(np.rint(v / scale) + zero, qmin), qmax)
        exact[j] += v
        rounded[j] += scale * np.float32(q - zero)
