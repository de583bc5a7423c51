"""Per-channel statistics of float tensors over a few calibration inputs:
what the float rewrites before quantization measure (cross-layer
equalization and bias absorption, passes/quant/equalize.py; head grids,
passes/quant/head_grids.py). The graph runs through the PassContext's
lowering on the CPU kernels."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ir.graph import Graph
from passes.infra import PassContext
from passes.quant.calibration_data import calibration_batches
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


def statistics_feeds(graph: Graph, calibration_data, ctx: PassContext) -> list:
    """The first :data:`STATISTICS_SAMPLES` calibration inputs of ``graph``,
    an image folder read with the pre-processing calibration uses
    (``quant.preprocess``)."""
    specs = {v.name: (v.type.shape, v.type.dtype) for v in graph.inputs}
    preprocess = ctx.option("quant.preprocess") if isinstance(calibration_data, (str, os.PathLike)) else None
    return list(calibration_batches(calibration_data, specs, count=STATISTICS_SAMPLES, preprocess=preprocess))


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
