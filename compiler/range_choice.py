"""``calibrator="auto"``: each activation's range method chosen by the error
it leaves at the model's outputs (issue 22 item 2).

The model is calibrated with each of :data:`CANDIDATES`; for every tensor
the accelerator stores, each distinct grid they give is tried alone in the
float model (fake-quantized, passes/quant/fake_quant.py) on a few
calibration inputs, and the one whose noise at the outputs (relative to
each output's power, summed) is the least wins: a per-tensor choice driven
by what the tensor does downstream, not by a histogram's shape. The choice
is returned as ``tensor_calibrators`` for the final quantization."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from compiler.diagnose import alone_noise, relative_noise
from passes.quant.calibration_data import calibration_batches

CANDIDATES = ("mse", "entropy", "percentile", "minmax")
SAMPLES = 4
"""Calibration inputs each candidate grid is tried on."""


def choose_calibrators(simplified, settings: Mapping[str, Any],
                       quantize: Callable[[dict[str, Any]], Any]) -> dict[str, str]:
    """tensor name -> calibrator, for every stored tensor whose candidates
    disagree (the others keep the default)."""
    results = {name: quantize(dict(settings, **{"quant.calibrator": name})) for name in CANDIDATES}
    grids = {name: result.activation_grids() for name, result in results.items()}
    base = results[CANDIDATES[0]]
    specs = {v.name: (v.type.shape, v.type.dtype) for v in simplified.inputs}
    feeds = list(calibration_batches(settings["quant.calibration_data"], specs, count=SAMPLES))
    if not feeds:
        return {}
    references = [base.run_float(f) for f in feeds]
    chosen: dict[str, str] = {}
    for tensor in grids[CANDIDATES[0]]:
        options: dict[tuple, str] = {}
        for name in CANDIDATES:
            candidate = grids[name].get(tensor)
            if candidate is not None:
                options.setdefault(_key(candidate), name)
        if len(options) < 2:
            continue
        errors = {name: relative_noise(alone_noise(base.float_graph, {tensor: grids[name][tensor]}, feeds,
                                                   references)) for name in options.values()}
        best = min(errors, key=errors.get)
        if best != CANDIDATES[0]:
            chosen[tensor] = best
    return chosen


def _key(grid) -> tuple:
    return (tuple(np.asarray(grid.scale, np.float64).round(12)), tuple(np.asarray(grid.zero).tolist()),
            np.dtype(grid.dtype).name)
