"""``calibrator="auto"``: each activation's range method chosen by the error
it leaves at the model's outputs.

The pass :func:`choose_ranges` runs when ``quant.calibrator`` is 'auto'.
The model is calibrated with each of :data:`CANDIDATES`; for every tensor
the accelerator stores, each distinct grid they give is tried alone in the
float model (fake-quantized, passes/quant/fake_quant.py) on a few
calibration inputs (held out from the grids' fit when enough others remain,
as compiler/target_snr.py does: a tighter range always scores better on the
inputs it was fit to), and the one whose noise at the outputs (relative to
each output's power, summed) is the least wins, if it leaves clearly less
than the default (:data:`MARGIN`): a per-tensor choice driven by what the
tensor does downstream, not by a histogram's shape. The choice is the
quantize pass's option ``quant.tensor_calibrators`` (the user's own choices
win), the default ``quant.calibrator`` for the rest."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from compiler.diagnose import alone_noise, relative_noise
from compiler.quant_config import AUTO
from compiler.quantized import Trials
from compiler.target_snr import split_held_out
from ir.graph import Graph
from passes.infra import PassContext, graph_pass

CANDIDATES = ("mse", "entropy", "percentile", "minmax")
SAMPLES = 4
"""Calibration inputs each candidate grid is tried on."""
MARGIN = 0.9
"""A candidate replaces the default only when its noise alone is at most this
fraction of the default's. Each tensor is tried alone and the choices are
made one by one, so several small gains need not add up when every tensor
is quantized; on the digit detector with channel grids, candidates within 7 %
of the default's noise were taken on four tensors and the joint result lost
0.4 dB on the heatmap."""


@graph_pass(opt_level=0)
def choose_ranges(graph: Graph, ctx: PassContext) -> Graph:
    """Each stored tensor's range method, by the error it leaves at the
    outputs (``quant.calibrator`` 'auto'); the graph is left as it is."""
    if ctx.option("quant.calibrator") != AUTO:
        return graph
    ctx.options["quant.calibrator"] = CANDIDATES[0]
    chosen = choose_calibrators(graph, ctx.options, ctx.option("quant.trials"))
    ctx.options["quant.tensor_calibrators"] = {**chosen, **ctx.option("quant.tensor_calibrators")}
    return graph


def choose_calibrators(simplified: Graph, settings: Mapping[str, Any], trials: Trials) -> dict[str, str]:
    """tensor name -> calibrator, for every stored tensor whose candidates
    disagree (the others keep the default)."""
    fit, feeds = split_held_out(simplified, settings, SAMPLES)
    if not feeds:
        return {}
    if fit is not None:
        settings = dict(settings, **{"quant.calibration_data": fit, "quant.preprocess": None})
    results = {name: trials.quantize(simplified, dict(settings, **{"quant.calibrator": name})) for name in CANDIDATES}
    grids = {name: result.activation_grids() for name, result in results.items()}
    base = results[CANDIDATES[0]]
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
        best = min(errors, key=errors.get)  # the default's grid is the first option: it is always tried
        if best != CANDIDATES[0] and errors[best] <= MARGIN * errors[CANDIDATES[0]]:
            chosen[tensor] = best
    return chosen


def _key(grid) -> tuple:
    return (tuple(np.asarray(grid.scale, np.float64).round(12)), tuple(np.asarray(grid.zero).tolist()),
            np.dtype(grid.dtype).name)
