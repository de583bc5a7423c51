"""Cross-layer equalization of a float graph before quantization
(``quantize_model(equalize=True)``): the channel ranges measured on the
calibration inputs and the scales of passes/quant/equalize.py, every pair
found rescaled. Without calibration data the scales come from the weights
(a Clip's pair is then left alone: its bound cannot be kept exactly).

Keeping a pair only when the error it alone causes at the outputs went down
(measured as the diagnosis measures a layer's) was tried and predicted the
joint result badly (bench_quant --equalize: vgg19 -1.24 dB where all pairs
give +1.09); docs/quantization.md has the figures."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codegen.cpu import lower_with_names
from ir.graph import Graph
from passes.quant.calibration_data import calibration_batches
from passes.quant.equalize import Pair, apply_scales, find_pairs, pair_scales, producer_ranges
from runtime.executor import Executor

STATISTICS_SAMPLES = 8
"""Calibration inputs the channel ranges are measured on."""


def equalize(graph: Graph, calibration_data) -> int:
    """Equalize ``graph`` in place; the number of pairs rescaled."""
    pairs = find_pairs(graph)
    if not pairs:
        return 0
    if calibration_data is None:
        chosen = [(p, pair_scales(p, producer_ranges(p))) for p in pairs if p.clip is None]
    else:
        stats = _pair_statistics(graph, pairs, statistics_feeds(graph, calibration_data))
        chosen = [(p, pair_scales(p, stats[p.tensor.name].peak, stats[p.a.outputs[0].name].high)) for p in pairs]
    for pair, scales in chosen:
        apply_scales(graph, pair, scales)
    return len(chosen)


def absorb_biases(graph: Graph, calibration_data) -> int:
    """Bias absorption in place (after equalization when both are asked
    for): the pairs whose A output always stays above 0 in some channel hand
    that floor to B's bias; the number of pairs changed. Needs data."""
    from passes.quant.equalize import absorb_shift, absorbable_shift

    pairs = find_pairs(graph)
    if not pairs or calibration_data is None:
        return 0
    stats = _pair_statistics(graph, pairs, statistics_feeds(graph, calibration_data))
    changed = 0
    for pair in pairs:
        produced = stats[pair.a.outputs[0].name]
        shift = absorbable_shift(pair, produced.low, produced.high)
        if shift.any():
            absorb_shift(graph, pair, shift)
            changed += 1
    return changed


def statistics_feeds(graph: Graph, calibration_data) -> list:
    specs = {v.name: (v.type.shape, v.type.dtype) for v in graph.inputs}
    return list(calibration_batches(calibration_data, specs, count=STATISTICS_SAMPLES))


@dataclass
class ChannelStats:
    """Per channel (axis 1) of a tensor over the calibration inputs: the
    smallest and largest values and the mean square."""

    low: np.ndarray
    high: np.ndarray
    power: np.ndarray

    @property
    def peak(self) -> np.ndarray:
        return np.maximum(-self.low, self.high)


def channel_statistics(graph: Graph, names: set[str], feeds) -> dict[str, ChannelStats]:
    """:class:`ChannelStats` of the named tensors, the float graph run on ``feeds``."""
    program, slots = lower_with_names(graph)
    slot = {v.name: s for v, s in slots.items()}
    run = Executor(program)
    stats: dict[str, ChannelStats] = {}
    for sample in feeds:
        values = run.run(sample, fetch=sorted({slot[name] for name in names}))
        for name in names:
            x = np.asarray(values[slot[name]], np.float64)
            moved = np.moveaxis(x, 1, 0).reshape(x.shape[1], -1)
            seen = ChannelStats(moved.min(axis=1), moved.max(axis=1), (moved ** 2).mean(axis=1) / len(feeds))
            if name in stats:
                old = stats[name]
                seen = ChannelStats(np.minimum(old.low, seen.low), np.maximum(old.high, seen.high),
                                    old.power + seen.power)
            stats[name] = seen
    return stats


def _pair_statistics(graph: Graph, pairs: list[Pair], feeds) -> dict[str, ChannelStats]:
    """The statistics of the tensors the pairs touch."""
    return channel_statistics(graph, {v.name for p in pairs for v in (p.tensor, p.a.outputs[0])}, feeds)
