"""A fidelity target met automatically: the pass :func:`reach_target_snr`
(``quantize_model(..., target_snr=30)``, ``tessera compile --target-snr 30``),
last of the quantization searches; it decides the quantize pass's option
``quant.layer_precision`` and leaves the graph as it is.

The output SNR (every output, the worst one counts) is measured on
calibration inputs held out from the grids' fit (the last ``target_samples``
of them, when at least :data:`MIN_FIT` others remain: grids score higher on
the inputs they were fit to, and the target is a promise about new ones;
the final grids are fit to every calibration input). The target counts as
reached when every output's SNR is at least the target; layers are moved
until each clears it by :data:`MARGIN` standard errors (the spread of its
SNR over those inputs, by the jackknife), budget permitting: 30.1 dB on 8
inputs whose SNR varies by 0.2 dB from one set to the next is a coin toss
on new inputs, not a promise, and the report says so when the budget stops
short of the margin. While an output is short of it, layers move to 16
bits (radix16 in a radix model) in the order of their share of the output
error (compiler/diagnose.py), as many at a time
as the shares say the remaining gap needs, within a budget on the accelerator's MACs that run in 16 bits
(default 15 %). The result carries a :class:`TargetReport`: the SNR before
and after, what moved, the 16-bit MAC share, the estimated hwtime before and
after (the default card's cycle model), and, when the budget cannot reach
the target, the layers it would still need."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from compiler.compare import ErrorStats, update_outputs
from compiler.quantized import QuantizationWarning, Trials
from ir.graph import Graph, onnx_name
from passes.infra import PassContext, graph_pass, register_option
from passes.placement_costs import macs
from passes.quant.calibration_data import calibration_batches
from passes.quant.head_grids import output_parts
from passes.quant.metrics import snr_from_sums, snr_line, snr_spread
from passes.quant.report import report_of

DEFAULT_BUDGET = 0.15
"""Largest share of the accelerator's MACs that may run in 16 bits."""
MAX_ROUNDS = 8
"""Re-quantizations at most (each measures the SNR again)."""
DIAGNOSIS_SAMPLES = 4
"""Calibration inputs the shares are measured on (the SNR uses all asked for)."""
MIN_FIT = 16
"""Calibration inputs the grids must keep for ``target_samples`` others to be held out to measure the target on."""
MARGIN = 1.0
"""Standard errors of its measured SNR by which an output must clear the target (one: on new inputs of the same
kind it then holds about five times in six, where a bare pass holds about one time in two)."""

register_option("quant.target_snr", object, None,
                "the output SNR (dB) layers move to 16 bits to reach, or None (compiler/target_snr.py)")
register_option("quant.target_budget", float, DEFAULT_BUDGET, "largest share of the accelerator's MACs in 16 bits")
register_option("quant.target_samples", int, 8, "calibration inputs the target SNR is measured on")


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
    spread_db: dict[str, float] = field(default_factory=dict)
    """The standard error of each of ``after_db`` over the inputs it was measured on."""

    def to_metadata(self) -> dict:
        """The record a binary keeps (META.metadata["target_snr"])."""
        return {"target_db": self.target_db, "reached": self.reached, "before_db": self.before_db,
                "after_db": self.after_db, "promoted": self.promoted, "macs_16bit": self.macs_16bit,
                "budget": self.budget, "hwtime_ms": list(self.hwtime_ms) if self.hwtime_ms else None,
                "needed": self.needed, "held_out": self.held_out, "spread_db": self.spread_db,
                "secure": self.secure}

    @classmethod
    def from_metadata(cls, record: Mapping[str, Any]) -> TargetReport:
        """:meth:`to_metadata`'s inverse (a binary written before a field existed gets its default)."""
        fields = {k: v for k, v in record.items() if k in cls.__dataclass_fields__}
        fields["hwtime_ms"] = tuple(fields["hwtime_ms"]) if fields.get("hwtime_ms") else None
        return cls(**fields)

    @property
    def secure(self) -> bool:
        """Reached with :data:`MARGIN` standard errors to spare on every output."""
        return _clears(self.after_db, self.spread_db, self.target_db)

    def summary(self) -> str:
        worst = min(self.after_db.values(), default=math.nan)
        where = "calibration inputs held out from the grids' fit" if self.held_out else "the calibration inputs"
        state = "NOT reached" if not self.reached else "reached" if self.secure else \
            "reached, by less than the standard error of its measurement"
        lines = [f"target SNR {self.target_db:g} dB: " + state
                 + f", worst output {min(self.before_db.values(), default=math.nan):.1f} -> {worst:.1f} dB on "
                 + f"{where} (" + snr_line(self.after_db, spreads=self.spread_db) + ")"]
        if self.promoted:
            lines.append(f"moved to 16 bits: {', '.join(self.promoted)} ({100 * self.macs_16bit:.1f} % of the "
                         f"accelerator's MACs; budget {100 * self.budget:.0f} %)")
        if self.hwtime_ms is not None:
            before, after = self.hwtime_ms
            lines.append(f"estimated hwtime {before:.3f} -> {after:.3f} ms ({100 * (after / before - 1):+.1f} %)"
                         if before > 0 else f"estimated hwtime {after:.3f} ms")
        if self.reached and not self.secure and self.needed:
            lines.append("new inputs may fall short; a margin of one standard error would also need in 16 bits: "
                         + ", ".join(self.needed))
        if not self.reached:
            lines.append("within the budget the target cannot be reached"
                         + (f"; it would also need in 16 bits: {', '.join(self.needed)}" if self.needed else
                            "; no layer is left to move (the error is in what stays 8-bit: lookup-table inputs, "
                            "CPU boundaries)"))
        return "\n".join(lines)


@graph_pass(opt_level=0)
def reach_target_snr(graph: Graph, ctx: PassContext) -> Graph:
    """Layers to 16 bits until every output's SNR reaches ``quant.target_snr``."""
    target = ctx.option("quant.target_snr")
    if target is None:
        return graph
    report, precision = reach_target(graph, ctx.options, ctx.option("quant.trials"))
    ctx.options["quant.layer_precision"] = precision
    done = report_of(ctx)
    done.target = report
    done.promoted = list(dict.fromkeys([*done.promoted, *report.promoted]))
    return graph


def reach_target(simplified: Graph, settings: Mapping[str, Any], trials: Trials) -> tuple[TargetReport, dict]:
    """The model quantized under ``settings``, re-quantized with layers in
    16 bits until the worst output SNR on ``quant.target_samples``
    calibration inputs reaches ``quant.target_snr`` dB or the budget is
    spent: what it did, and the layer precisions it chose."""
    target, budget = settings["quant.target_snr"], settings["quant.target_budget"]
    full = dict(settings)
    given = first = trials.quantize(simplified, full)
    fit, feeds = split_held_out(simplified, full, settings["quant.target_samples"])
    if fit is not None:  # the grids are fit to the other inputs; the target is measured on these
        settings = dict(full, **{"quant.calibration_data": fit, "quant.preprocess": None})
        first = trials.quantize(simplified, settings)
    references = [first.run_float(sample) for sample in feeds]  # the float model stays the same
    snr, spread = _output_snr(first, feeds, references)
    before = snr
    report = TargetReport(float(target), False, before, before, budget=budget,
                          held_out=fit is not None, spread_db=spread)
    result, wide = first, "radix16" if settings["quant.mode"].startswith("radix") else "int16"
    work = _macs(simplified)
    total = sum(work.get(name, 0) for name in _accelerator_nodes(first)) or 1
    promoted: list[str] = []
    for _ in range(MAX_ROUNDS):
        report.after_db, report.spread_db = snr, spread
        if _clears(snr, spread, target):
            break
        ranked = _ranked(result, feeds[:DIAGNOSIS_SAMPLES], promoted)
        gap = 1.0 - 10 ** ((_bound(snr, spread) - target) / 10.0)  # the part of the noise to remove
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
        result = trials.quantize(simplified, dict(settings, **{"quant.layer_precision": precision}))
        snr, spread = _output_snr(result, feeds, references)
    else:
        report.after_db, report.spread_db = snr, spread
        if not _clears(snr, spread, target):
            report.needed = [name for name, _ in _ranked(result, feeds[:DIAGNOSIS_SAMPLES], promoted)][:5]
    report.reached = min(report.after_db.values(), default=math.inf) >= target
    report.promoted = promoted
    report.macs_16bit = sum(work.get(name, 0) for name in promoted) / total
    precision = {**full["quant.layer_precision"], **{name: wide for name in promoted}}
    if promoted:  # the layers chosen, the grids fit to every calibration input again
        result = trials.quantize(simplified, dict(full, **{"quant.layer_precision": precision}))
        times = [trials.hwtime_ms(model, full) for model in (given, result)]
        report.hwtime_ms = None if None in times else tuple(times)
    if not report.reached:
        warnings.warn(report.summary(), QuantizationWarning, stacklevel=3)
    return report, precision


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


def _output_snr(model, feeds: Sequence[Mapping[str, np.ndarray]],
                references) -> tuple[dict[str, float], dict[str, float]]:
    """Each output's SNR, or each part's of an output a host join assembles,
    and its standard error over ``feeds`` (metrics.snr_spread)."""
    samples: list[dict[str, ErrorStats]] = []
    parts = output_parts(model.float_graph)
    for sample, reference in zip(feeds, references):
        samples.append({})
        update_outputs(samples[-1], reference, model.run(sample), parts)
    names = list(samples[0]) if samples else []
    snr = {name: snr_from_sums(sum(s[name].signal for s in samples), sum(s[name].noise for s in samples))
           for name in names}
    return snr, {name: snr_spread([s[name].signal for s in samples], [s[name].noise for s in samples])
                 for name in names}


def _bound(snr: Mapping[str, float], spread: Mapping[str, float]) -> float:
    """The worst output's SNR less :data:`MARGIN` of its standard errors."""
    return min((value - MARGIN * spread.get(name, 0.0) for name, value in snr.items()), default=math.inf)


def _clears(snr: Mapping[str, float], spread: Mapping[str, float], target: float) -> bool:
    return _bound(snr, spread) >= target


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
