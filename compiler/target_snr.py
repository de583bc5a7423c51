"""A fidelity target met automatically: the pass :func:`reach_target_snr`
(``quantize_model(..., target_snr=30)``, ``tessera compile --target-snr 30``),
last of the quantization searches; it decides the quantize pass's options
``quant.layer_precision`` and ``quant.host_outputs`` and leaves the graph as
it is.

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
(default 15 %).

A layer with a lookup table (a convolution with its SiLU or HardSwish, a
Sigmoid's producer) moves like any other: a table read by 16-bit codes
interpolates between 513 entries (docs/isa.md) and gives 16-bit codes.

The other way out is a **host epilogue**: an output whose last function is
pointwise (Sigmoid, Softmax over the last axis, Exp, HardSigmoid, Tanh:
passes/affinity.py's ``EPILOGUE_OPS``) gets that function run in float on
the host (``quant.host_outputs``), on the pre-activation codes the
accelerator hands over, and the pre-activation's producer in 16 bits when
the budget allows.
Each round weighs, for the worst output short of the target, the two by
seconds per dB expected (passes/placement_costs.py): the 16-bit layers'
extra device time against the epilogue's host time, the wider hand-over's
transfer and its producer's widening. The layers' gain is the shares'
estimate; the epilogue's is measured by one trial quantization (it changes
the grid the device hands over, which the shares do not see).

The result carries a :class:`TargetReport`: the SNR before
and after, what moved, the 16-bit MAC share, the host epilogues and their
host time, the estimated hwtime before and
after (the default card's cycle model), and, when the budget cannot reach
the target, the layers it would still need, by their shares of the error and
of the MACs."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from compiler.compare import ErrorStats, update_outputs
from compiler.quantized import QuantizationWarning, Trials
from ir.graph import Graph, Node, onnx_name
from passes.affinity import HOST_ONLY, REARRANGING, is_epilogue
from passes.infra import PassContext, graph_pass, register_option
from passes.placement_costs import cpu_time, macs, widened_transfer_time, widening_time
from passes.quant.calibration_data import calibration_batches
from passes.quant.head_grids import output_parts
from passes.quant.metrics import snr_from_sums, snr_line, snr_spread
from passes.quant.report import report_of
from passes.target import VIEW_OPS
from runtime.hardware import HardwareConfig

DEFAULT_BUDGET = 0.15
"""Largest share of the accelerator's MACs that may run in 16 bits."""
MAX_ROUNDS = 8
"""Re-quantizations at most (each measures the SNR again)."""
DIAGNOSIS_SAMPLES = 4
"""Calibration inputs the shares are measured on (the SNR uses all asked for)."""
MIN_FIT = 16
"""Calibration inputs the grids must keep for ``target_samples`` others to be held out to measure the target on."""
MIN_GAIN_DB = 0.1
"""Expected gain (dB) below which a move is not worth its cost."""
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
    host_outputs: list[str] = field(default_factory=list)
    """ONNX names of the outputs' final pointwise functions moved to the host (host epilogues)."""
    host_ms: float = 0.0
    """What the host epilogues cost per inference (ms): their host time and the wider hand-overs' transfers."""
    epilogue_gains: dict[str, float] = field(default_factory=dict)
    """Each host epilogue tried, by ONNX name: the gain (dB, worst output) its trial measured."""
    left: list[tuple[str, float, float]] = field(default_factory=list)
    """When not reached: the layers the shares say the rest of the gap needs in 16 bits (``needed``), by ONNX
    name, with their share of the output error and of the accelerator's MACs, largest share first."""

    def to_metadata(self) -> dict:
        """The record a binary keeps (META.metadata["target_snr"])."""
        return {"target_db": self.target_db, "reached": self.reached, "before_db": self.before_db,
                "after_db": self.after_db, "promoted": self.promoted, "macs_16bit": self.macs_16bit,
                "budget": self.budget, "hwtime_ms": list(self.hwtime_ms) if self.hwtime_ms else None,
                "needed": self.needed, "held_out": self.held_out, "spread_db": self.spread_db,
                "host_outputs": self.host_outputs, "host_ms": self.host_ms,
                "epilogue_gains": self.epilogue_gains, "secure": self.secure,
                "left": [list(entry) for entry in self.left]}

    @classmethod
    def from_metadata(cls, record: Mapping[str, Any]) -> TargetReport:
        """:meth:`to_metadata`'s inverse (a binary written before a field existed gets its default)."""
        fields = {k: v for k, v in record.items() if k in cls.__dataclass_fields__}
        fields["hwtime_ms"] = tuple(fields["hwtime_ms"]) if fields.get("hwtime_ms") else None
        fields["left"] = [tuple(entry) for entry in fields.get("left", ())]
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
        if self.host_outputs:
            lines.append(f"final pointwise functions to the host (host epilogue): {', '.join(self.host_outputs)} "
                         f"({self.host_ms:.4f} ms per inference on the host and the link)")
        if self.hwtime_ms is not None:
            before, after = self.hwtime_ms
            lines.append(f"estimated hwtime {before:.3f} -> {after:.3f} ms ({100 * (after / before - 1):+.1f} %)"
                         if before > 0 else f"estimated hwtime {after:.3f} ms")
        if self.reached and not self.secure and self.needed:
            lines.append("new inputs may fall short; a margin of one standard error would also need in 16 bits: "
                         + ", ".join(self.needed))
        declined = {name: gain for name, gain in self.epilogue_gains.items() if name not in self.host_outputs}
        if declined:
            lines.append("host epilogues tried and not taken: " + ", ".join(
                f"{name} ({gain:+.2f} dB: " + ("the error is upstream of the output's final function)"
                                              if gain < MIN_GAIN_DB else "16-bit layers gave more per second)")
                for name, gain in declined.items()))
        if not self.reached:
            if self.left:
                lines.append("within the budget the target cannot be reached; by their shares of the error it would "
                             "also need in 16 bits: " + ", ".join(
                                 f"{name} ({100 * share:.1f} % of the error, {100 * work:.2f} % of the MACs)"
                                 for name, share, work in self.left)
                             + f": {100 * sum(work for _, _, work in self.left):.1f} % of the accelerator's MACs "
                             f"more (quant.target_budget)")
            else:
                lines.append("within the budget the target cannot be reached; no layer is left to move (the error "
                             "is in what stays 8-bit: the model's inputs, CPU boundaries)")
        return "\n".join(lines)


@graph_pass(opt_level=0)
def reach_target_snr(graph: Graph, ctx: PassContext) -> Graph:
    """Layers to 16 bits, outputs' final functions to the host, until every
    output's SNR reaches ``quant.target_snr``."""
    target = ctx.option("quant.target_snr")
    if target is None:
        return graph
    report, precision = reach_target(graph, ctx.options, ctx.option("quant.trials"))
    ctx.options["quant.layer_precision"] = precision
    ctx.options["quant.host_outputs"] = tuple(dict.fromkeys((*ctx.option("quant.host_outputs"),
                                                             *report.host_outputs)))
    done = report_of(ctx)
    done.target = report
    done.promoted = list(dict.fromkeys([*done.promoted, *report.promoted]))
    return graph


def reach_target(simplified: Graph, settings: Mapping[str, Any], trials: Trials) -> tuple[TargetReport, dict]:
    """The model quantized under ``settings``, re-quantized with layers in
    16 bits and outputs' final functions on the host until the worst output
    SNR on ``quant.target_samples`` calibration inputs reaches
    ``quant.target_snr`` dB or the budget is spent: what it did, and the
    layer precisions it chose (the host epilogues are the report's)."""
    target, budget = settings["quant.target_snr"], settings["quant.target_budget"]
    full = dict(settings)
    given = first = trials.quantize(simplified, full)
    fit, feeds = split_held_out(simplified, full, settings["quant.target_samples"])
    if fit is not None:  # the grids are fit to the other inputs; the target is measured on these
        settings = dict(full, **{"quant.calibration_data": fit, "quant.preprocess": None})
        first = trials.quantize(simplified, settings)
    search = _Search(simplified, settings, trials, feeds, first)
    before = search.snr
    report = TargetReport(float(target), False, before, before, budget=budget,
                          held_out=fit is not None, spread_db=search.spread)
    for _ in range(MAX_ROUNDS):
        report.after_db, report.spread_db = search.snr, search.spread
        if _clears(search.snr, search.spread, target):
            break
        moves = [move for move in search.moves(target) if move.gain >= MIN_GAIN_DB]
        if not moves:
            break
        search.apply(min(moves, key=lambda move: move.cost / move.gain))
    else:
        report.after_db, report.spread_db = search.snr, search.spread
    if not _clears(search.snr, search.spread, target):
        report.left = search.left(target)
        report.needed = [name for name, _, _ in report.left]
    report.reached = min(report.after_db.values(), default=math.inf) >= target
    report.promoted, report.host_outputs = search.promoted, search.added_host
    report.epilogue_gains = {name: round(gain, 3) for name, (_, gain) in search.tried.items()}
    report.macs_16bit = search.used() / search.total
    report.host_ms = 1e3 * sum(search.host_cost(name) for name in search.added_host)
    precision = {**full["quant.layer_precision"], **{name: search.wide for name in search.promoted}}
    if search.promoted or search.added_host:  # the choices made, the grids fit to every calibration input again
        result = trials.quantize(simplified, dict(full, **{"quant.layer_precision": precision,
                                                           "quant.host_outputs": tuple(search.host)}))
        times = [trials.hwtime_ms(model, full) for model in (given, result)]
        report.hwtime_ms = None if None in times else tuple(times)
    if not report.reached:
        warnings.warn(report.summary(), QuantizationWarning, stacklevel=3)
    return report, precision


@dataclass
class _Move:
    """One way to raise the worst output's SNR: layers to 16 bits and/or
    final functions to the host, its expected gain (dB) and its cost
    (seconds per inference: device, host and link time together)."""

    layers: list[str]
    host: list[str]
    gain: float
    cost: float
    measured: tuple | None = None
    """(model, SNR, spread) when a trial already measured this move."""


class _Search:
    """The state of the search: what moved so far, the current model and
    its SNR, and the costs of each possible move (passes/placement_costs.py)."""

    def __init__(self, simplified: Graph, settings: Mapping[str, Any], trials: Trials, feeds, first):
        self.simplified, self.settings, self.trials, self.feeds = simplified, settings, trials, feeds
        self.references = [first.run_float(sample) for sample in feeds]  # the float model stays the same
        self.hardware = settings.get("target.hardware") or HardwareConfig()
        self.budget = settings["quant.target_budget"]
        self.wide = "radix16" if settings["quant.mode"].startswith("radix") else "int16"
        self.work = _macs(simplified)
        self.total = sum(self.work.get(name, 0) for name in _accelerator_nodes(first)) or 1
        self.nodes: dict[str, list[Node]] = {}
        for node in simplified.nodes:
            self.nodes.setdefault(onnx_name(node.name), []).append(node)
        self.epilogues = _epilogues(simplified)
        self.promoted: list[str] = []
        self.host: list[str] = list(settings.get("quant.host_outputs") or ())
        self.added_host: list[str] = []
        self.tried: dict[str, tuple[list[str], float]] = {}
        self.result = first
        self.snr, self.spread = _output_snr(first, feeds, self.references)

    def left(self, target: float) -> list[tuple[str, float, float]]:
        """The layers still 8-bit that the shares say close the rest of the gap,
        largest share first, with their shares of the error and of the MACs
        (``TargetReport.left``): what the target would need beyond the budget."""
        chosen, _ = self._covering(target, budget=math.inf)
        return [(name, round(share, 4), round(self.work.get(name, 0) / self.total, 5)) for name, share in chosen]

    def _covering(self, target: float, budget: float) -> tuple[list[tuple[str, float]], float]:
        """The layers still 8-bit, largest share of the output error first,
        whose shares cover the part of the noise the target needs removed
        (``1 - 10^((SNR - target) / 10)``), skipping those that would take
        the 16-bit MACs over ``budget``: (name, share) each, and the shares' sum."""
        ranked = _ranked(self.result, self.feeds[:DIAGNOSIS_SAMPLES], self.promoted)
        gap = 1.0 - 10 ** ((_bound(self.snr, self.spread) - target) / 10.0)
        chosen, covered, used = [], 0.0, self.used()
        for name, share in ranked:
            if covered >= gap and chosen:
                break
            if (used + self.work.get(name, 0)) / self.total > budget:
                continue
            chosen.append((name, share))
            used += self.work.get(name, 0)
            covered += share
        return chosen, covered

    def used(self, extra: Sequence[str] = ()) -> float:
        return sum(self.work.get(name, 0) for name in [*self.promoted, *extra])

    def widening(self, name: str) -> float:
        return sum(widening_time(node, self.hardware) for node in self.nodes.get(name, ()))

    def host_cost(self, name: str) -> float:
        """Seconds the host epilogue ``name`` costs per inference: its host
        time, and the wider hand-over when its producer runs in 16 bits."""
        node, producer = self.epilogues[name][0], self.epilogues[name][1]
        wider = producer in self.promoted and producer is not None
        return sum(cpu_time(n) for n in self.nodes[name]) + (
            widened_transfer_time(node.inputs[0].type, self.hardware) if wider else 0.0)

    def quantize(self, layers: Sequence[str], host: Sequence[str]):
        precision = {**self.settings["quant.layer_precision"], **{name: self.wide for name in layers}}
        return self.trials.quantize(self.simplified, dict(self.settings, **{"quant.layer_precision": precision,
                                                                             "quant.host_outputs": tuple(host)}))

    def moves(self, target: float) -> list[_Move]:
        """The layers the shares say close the gap, and each host epilogue
        of an output short of the target."""
        return [*self._layer_moves(target), *self._epilogue_moves(target)]

    def _layer_moves(self, target: float) -> list[_Move]:
        chosen, covered = self._covering(target, self.budget)
        if not chosen:
            return []
        names = [name for name, _ in chosen]
        gain = -10.0 * math.log10(max(1.0 - covered, 0.01))
        return [_Move(names, [], gain, sum(map(self.widening, names)))]

    def _epilogue_moves(self, target: float) -> list[_Move]:
        on_device = _accelerator_nodes(self.result)
        short = [part for part, value in sorted(self.snr.items(), key=lambda item: item[1])
                 if value - MARGIN * self.spread.get(part, 0.0) < target]
        names = dict.fromkeys(name for part in short for name, (_, _, outputs) in self.epilogues.items()
                              if _output_of(part) in outputs and name not in self.host and name in on_device)
        return [self._epilogue_move(name, on_device) for name in names]

    def _epilogue_move(self, name: str, on_device: set[str]) -> _Move:
        """The host epilogue ``name``, with its producer in 16 bits when it
        runs on the accelerator and fits the budget; its gain measured by a
        trial the first time (and when the producer's choice changed)."""
        producer = self.epilogues[name][1]
        layers = [producer] if (producer is not None and producer in on_device and producer not in self.promoted
                                and self.used([producer]) / self.total <= self.budget) else []
        cost = sum(cpu_time(n) for n in self.nodes[name]) + sum(map(self.widening, layers)) + (
            widened_transfer_time(self.epilogues[name][0].inputs[0].type, self.hardware) if layers else 0.0)
        if name in self.tried and self.tried[name][0] == layers:
            return _Move(layers, [name], self.tried[name][1], cost)
        model = self.quantize([*self.promoted, *layers], [*self.host, name])
        snr, spread = _output_snr(model, self.feeds, self.references)
        gain = _bound(snr, spread) - _bound(self.snr, self.spread)
        self.tried[name] = (layers, gain)
        return _Move(layers, [name], gain, cost, (model, snr, spread))

    def apply(self, move: _Move) -> None:
        self.promoted += move.layers
        self.host += move.host
        self.added_host += move.host
        if move.measured is None:
            model = self.quantize(self.promoted, self.host)
            move.measured = (model, *_output_snr(model, self.feeds, self.references))
        self.result, self.snr, self.spread = move.measured


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
    those already wide."""
    ranked, seen = [], set(promoted)
    for layer in model.diagnose(feeds).layers:
        if not layer.onnx_nodes or layer.dtype != "int8" or layer.onnx_nodes[0] in seen:
            continue
        seen.add(layer.onnx_nodes[0])
        ranked.append((layer.onnx_nodes[0], layer.share))
    return ranked


def _epilogues(graph: Graph) -> dict[str, tuple[Node, str | None, set[str]]]:
    """Each output's final pointwise function (passes/affinity.is_epilogue)
    by ONNX name: the node, its input's producer (ONNX name; None for a
    model input) and the outputs it makes."""
    found: dict[str, tuple[Node, str | None, set[str]]] = {}
    for out in graph.outputs:
        for node in _finals(out.producer, graph):
            producer = node.inputs[0].producer
            while producer is not None and producer.op in VIEW_OPS:
                producer = producer.inputs[0].producer
            name = onnx_name(node.name)
            found.setdefault(name, (node, None if producer is None else onnx_name(producer.name),
                                    set()))[2].add(out.name)
    return found


def _finals(node: Node | None, graph: Graph) -> list[Node]:
    """The final pointwise functions behind an output's producer ``node``:
    back through views and Transposes, and into every input of a host join
    of a head's parts (YOLO's Concat of boxes and Sigmoid scores)."""
    if node is None:
        return []
    if is_epilogue(node, graph):
        return [node]
    if node.op in REARRANGING:
        return _finals(node.inputs[0].producer, graph)
    if HOST_ONLY in node.annotations:
        return [final for v in node.inputs if v is not None and not v.is_constant
                for final in _finals(v.producer, graph)]
    return []


def _output_of(part: str) -> str:
    """The output a measured part belongs to (``out[0:4]`` -> ``out``)."""
    return part.split("[", 1)[0] if part.endswith("]") else part


def _macs(graph: Graph) -> dict[str, int]:
    work: dict[str, int] = {}
    for node in graph.nodes:
        work[onnx_name(node.name)] = work.get(onnx_name(node.name), 0) + macs(node)
    return work


def _accelerator_nodes(model) -> set[str]:
    return {name for node in model.quantized_nodes() for name in node.annotations.get("source", ())}
