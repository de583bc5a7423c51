"""A fidelity target met automatically (issue 22 item 3):
``quantize_model(..., target_snr=30)`` and ``tessera compile --target-snr 30``.

The output SNR (every output, the worst one counts) is measured on
calibration inputs held out from the grids' fit (the last ``target_samples``
of them, when at least :data:`MIN_FIT` others remain: grids score higher on
the inputs they were fit to, and the target is a promise about new ones;
the final grids are fit to every calibration input). While it is under the
target, layers move to 16 bits (radix16 in a radix model) in the order of
their share of the output error (compiler/diagnose.py), as many at a time
as the shares say the remaining gap needs, within a budget on the accelerator's MACs that run in 16 bits
(default 15 %). The result carries a :class:`TargetReport`: the SNR before
and after, what moved, the 16-bit MAC share, the estimated hwtime before and
after (the default card's cycle model), and, when the budget cannot reach
the target, the layers it would still need."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from compiler.compare import ErrorStats, update_outputs
from compiler.errors import QuantizationError
from ir.graph import Graph, onnx_name
from passes.quant.calibration_data import calibration_batches
from passes.quant.head_grids import output_parts
from passes.quant.metrics import snr_line
from passes.target import macs

DEFAULT_BUDGET = 0.15
"""Largest share of the accelerator's MACs that may run in 16 bits."""
MAX_ROUNDS = 8
"""Re-quantizations at most (each measures the SNR again)."""
DIAGNOSIS_SAMPLES = 4
"""Calibration inputs the shares are measured on (the SNR uses all asked for)."""
MIN_FIT = 16
"""Calibration inputs the grids must keep for ``target_samples`` others to be held out to measure the target on."""


@dataclass
class TargetReport:
    """What reaching the target did."""

    target_db: float
    reached: bool
    before_db: dict[str, float]
    after_db: dict[str, float]
    promoted: list[str] = field(default_factory=list)
    macs_16bit: float = 0.0
    budget: float = DEFAULT_BUDGET
    hwtime_ms: tuple[float, float] | None = None
    needed: list[str] = field(default_factory=list)
    held_out: bool = False

    def to_metadata(self) -> dict:
        """The record a binary keeps (META.metadata["target_snr"])."""
        return {"target_db": self.target_db, "reached": self.reached, "before_db": self.before_db,
                "after_db": self.after_db, "promoted": self.promoted, "macs_16bit": self.macs_16bit,
                "budget": self.budget, "hwtime_ms": list(self.hwtime_ms) if self.hwtime_ms else None,
                "needed": self.needed, "held_out": self.held_out}

    def summary(self) -> str:
        worst = min(self.after_db.values(), default=math.nan)
        where = "calibration inputs held out from the grids' fit" if self.held_out else "the calibration inputs"
        lines = [f"target SNR {self.target_db:g} dB: " + ("reached" if self.reached else "NOT reached")
                 + f", worst output {min(self.before_db.values(), default=math.nan):.1f} -> {worst:.1f} dB on "
                 + f"{where} (" + snr_line(self.after_db) + ")"]
        if self.promoted:
            lines.append(f"moved to 16 bits: {', '.join(self.promoted)} ({100 * self.macs_16bit:.1f} % of the "
                         f"accelerator's MACs; budget {100 * self.budget:.0f} %)")
        if self.hwtime_ms is not None:
            before, after = self.hwtime_ms
            lines.append(f"estimated hwtime {before:.3f} -> {after:.3f} ms ({100 * (after / before - 1):+.1f} %)"
                         if before > 0 else f"estimated hwtime {after:.3f} ms")
        if not self.reached:
            lines.append("within the budget the target cannot be reached"
                         + (f"; it would also need in 16 bits: {', '.join(self.needed)}" if self.needed else
                            "; no layer is left to move (the error is in what stays 8-bit: lookup-table inputs, "
                            "CPU boundaries)"))
        return "\n".join(lines)


def reach_target(simplified: Graph, first, settings: dict[str, Any], target: float, budget: float, samples: int,
                 requantize: Callable[[dict[str, Any]], Any]):
    """``first`` (a QuantizedModel) re-quantized with layers in 16 bits
    until the worst output SNR on ``samples`` calibration inputs reaches
    ``target`` dB or the budget is spent; its ``target`` is the report."""
    if not (isinstance(target, (int, float)) and math.isfinite(target)):
        raise QuantizationError(f"target_snr must be a finite number of dB, got {target!r}")
    if not 0 <= budget <= 1:
        raise QuantizationError(f"the 16-bit MAC budget must be a fraction in [0, 1], got {budget!r}")
    given, full = first, settings
    fit, feeds = split_held_out(simplified, settings, samples)
    if fit is not None:  # the grids are fit to the other inputs; the target is measured on these
        settings = dict(settings, **{"quant.calibration_data": fit, "quant.preprocess": None})
        first = requantize(settings)
    references = [first.run_float(sample) for sample in feeds]  # the float model stays the same
    before = snr = _output_snr(first, feeds, references)
    report = TargetReport(float(target), min(before.values()) >= target, before, before, budget=budget,
                          held_out=fit is not None)
    result, wide = first, "radix16" if settings["quant.mode"].startswith("radix") else "int16"
    work = _macs(simplified)
    total = sum(work.get(name, 0) for name in _accelerator_nodes(first)) or 1
    promoted: list[str] = []
    for _ in range(MAX_ROUNDS):
        report.after_db = snr
        if min(snr.values()) >= target:
            report.reached = True
            break
        ranked = _ranked(result, feeds[:DIAGNOSIS_SAMPLES], promoted)
        gap = 1.0 - 10 ** ((min(snr.values()) - target) / 10.0)  # the part of the noise to remove
        chosen, covered, needed = [], 0.0, []
        used = sum(work.get(name, 0) for name in promoted)
        for name, share in ranked:
            if covered >= gap and chosen:
                break
            if (used + work.get(name, 0)) / total > budget:
                needed.append(name)
                continue
            chosen.append(name)
            used += work.get(name, 0)
            covered += share
        if not chosen:
            report.needed = needed
            break
        promoted += chosen
        precision = {**settings["quant.layer_precision"], **{name: wide for name in promoted}}
        result = requantize(dict(settings, **{"quant.layer_precision": precision}))
        snr = _output_snr(result, feeds, references)
    else:
        report.after_db = snr
        report.reached = min(report.after_db.values()) >= target
        if not report.reached:
            report.needed = [name for name, _ in _ranked(result, feeds[:DIAGNOSIS_SAMPLES], promoted)][:5]
    report.promoted = promoted
    report.macs_16bit = sum(work.get(name, 0) for name in promoted) / total
    if fit is not None:  # the layers chosen, the grids fit to every calibration input again
        result = given if not promoted else requantize(dict(full, **{"quant.layer_precision": {
            **full["quant.layer_precision"], **{name: wide for name in promoted}}}))
    if promoted:
        report.hwtime_ms = _hwtimes(given, result, settings)
        result.promoted = list(dict.fromkeys([*result.promoted, *promoted]))
    if not report.reached:
        warnings.warn(report.summary(), _warning_class(), stacklevel=3)
    result.target = report
    return result


def split_held_out(simplified: Graph, settings: Mapping[str, Any], samples: int) -> tuple[list | None, list]:
    """(the calibration inputs the grids are fit to, the ``samples`` inputs the
    target is measured on): the last ``samples`` are held out when at least
    :data:`MIN_FIT` others remain, since grids score higher on the inputs
    they were fit to than on new ones; otherwise (None, the first
    ``samples``), measured on the inputs the grids were fit to."""
    specs = {v.name: (v.type.shape, v.type.dtype) for v in simplified.inputs}
    source, preprocess = settings["quant.calibration_data"], settings["quant.preprocess"]
    if source is None:
        return None, list(calibration_batches(None, specs, count=samples))
    every = list(calibration_batches(source, specs, count=settings["quant.calibration_count"], preprocess=preprocess))
    if len(every) - samples < MIN_FIT:
        return None, every[:samples]
    return every[:-samples], every[-samples:]


def _output_snr(model, feeds: Sequence[Mapping[str, np.ndarray]], references) -> dict[str, float]:
    """Each output's SNR, or each part's of an output a host join assembles."""
    stats: dict[str, ErrorStats] = {}
    parts = output_parts(model.float_graph)
    for sample, reference in zip(feeds, references):
        update_outputs(stats, reference, model.run(sample), parts)
    return {name: s.snr_db for name, s in stats.items()}


def _ranked(model, feeds, promoted: Sequence[str]) -> list[tuple[str, float]]:
    """ONNX node names by share of the output error, largest first; not
    those already wide, nor a lookup table's producer (tables read 8-bit
    codes)."""
    table_inputs = {n.name for n in model.quantized_nodes() if any(u.op == "QLut" for u in n.outputs[0].users)}
    ranked, seen = [], set(promoted)
    for layer in model.diagnose(feeds).layers:
        if not layer.onnx_nodes or layer.layer in table_inputs or layer.dtype != "int8":
            continue
        name = layer.onnx_nodes[0]
        if name not in seen:
            seen.add(name)
            ranked.append((name, layer.share))
    return ranked


def _macs(graph: Graph) -> dict[str, int]:
    work: dict[str, int] = {}
    for node in graph.nodes:
        work[onnx_name(node.name)] = work.get(onnx_name(node.name), 0) + macs(node)
    return work


def _accelerator_nodes(model) -> set[str]:
    return {name for node in model.quantized_nodes() for name in node.annotations.get("source", ())}


def _hwtimes(first, result, settings: Mapping[str, Any]) -> tuple[float, float] | None:
    """Estimated hwtime (ms) of both graphs on the configured card, or None
    when one cannot be planned (the report then leaves it out)."""
    from compiler.compile import build
    from runtime.engine import Engine
    from runtime.errors import TesseraError
    from runtime.hardware import HardwareConfig

    config = settings.get("target.hardware") or HardwareConfig()
    try:
        return tuple(Engine(build(m.graph, config)).device.hwtime_ms for m in (first, result))
    except TesseraError:
        return None


def _warning_class():
    from compiler.quantize import QuantizationWarning

    return QuantizationWarning
