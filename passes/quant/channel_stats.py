"""Per-channel statistics of float tensors over a few calibration inputs:
what the float rewrites before quantization measure (cross-layer
equalization and bias absorption, passes/quant/equalize.py; head grids,
passes/quant/head_grids.py). The graph runs through the PassContext's
lowering on the CPU kernels."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ir.graph import Graph
from passes.infra import PassContext
from passes.quant.calibration_data import context_batches
from runtime.executor import Executor

STATISTICS_SAMPLES = 8
"""Calibration inputs the channel statistics are measured on."""


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


def statistics_feeds(graph: Graph, ctx: PassContext) -> list:
    """The first :data:`STATISTICS_SAMPLES` calibration inputs of ``graph``, as calibration reads them."""
    return list(context_batches(graph, ctx, STATISTICS_SAMPLES))


def channel_statistics(graph: Graph, names: set[str], feeds, ctx: PassContext, why: str) -> dict[str, ChannelStats]:
    """:class:`ChannelStats` of the named tensors, the float graph run on
    ``feeds`` (``why`` names the pass that needs it, for the error when the
    context has no lowering)."""
    program, slots = ctx.lowering(why)(graph)
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
