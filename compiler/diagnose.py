"""Where a quantized model's output error enters, and why: the layers to
look at first when a quantized model's SNR is too low.

For every layer the accelerator stores (a quantized node standing for one
float tensor, as in compiler/compare.py), over input samples:

- **share**: the part of the output error the layer causes. The float model
  is run with only that layer fake-quantized (its output on its grid, its
  weights on theirs: passes/quant/fake_quant.py); the noise it leaves at
  each output, relative to the output's power, summed over the outputs, is
  the layer's error; the shares are these errors over their sum. (Errors of
  different layers add up roughly, not exactly: the shares rank, they do not
  decompose.)
- **output SNR alone**: the outputs' SNR with only that layer quantized.
- the **propagated** and **isolated** SNR of the layer's own tensor
  (compiler/compare.py).
- **why**, from the float tensors and the grids:
  * *saturation*: the fraction of the tensor's float values outside its grid;
  * *channel spread*: the largest channel's range over the median channel's,
    with one grid for the tensor (small channels get few codes; cross-layer
    equalisation is the cure);
  * *weight floor*: output channels whose weight grid was widened beyond the
    channel's own range (the requantisation limits of rewrite.py);
  * *mixed inputs*: an Add or a Concat of tensors whose ranges differ (the
    output grid is coarse for the smaller one);
  * *lookup table*: a table whose 256 input codes give few distinct outputs
    (the input range is wider than the function resolves).

:func:`diagnose` gives a :class:`Diagnosis`: ``table()`` for a terminal
(sorted by share), ``write(path)`` as CSV or JSON.
"""
from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from codegen.cpu import lower_to_program, lower_with_names
from compiler.agreement import Agreement
from compiler.compare import ErrorStats, update_outputs
from compiler.errors import QuantizationError
from ir.graph import Graph, Node
from ir.types import QuantParams
from passes.quant.fake_quant import fake_quantize
from passes.quant.head_grids import output_parts
from passes.quant.metrics import format_table, snr_line
from runtime.executor import Executor
from runtime.files import FileError, atomic_output, write_atomic
from runtime.qscheme import ACTIVATION_RANGE, TABLE_ENTRIES, weight_scales

SATURATION = 0.001
"""Clipped fraction above which saturation is named as a cause."""
CHANNEL_SPREAD = 8.0
"""Largest over median channel range above which the spread is named."""
MIXED_INPUTS = 4.0
"""Ratio of an Add's or a Concat's input ranges above which it is named."""
LUT_LEVELS = 48
"""Distinct outputs of a lookup table below which its resolution is named."""


@dataclass
class LayerDiagnosis:
    """One stored layer: what it costs at the outputs, and why."""

    layer: str
    op: str
    tensor: str
    onnx_nodes: tuple[str, ...]
    dtype: str
    share: float = 0.0
    output_snr_db: float = math.inf
    propagated_snr_db: float = math.nan
    isolated_snr_db: float = math.nan
    clipped: float = 0.0
    channel_spread: float = math.nan
    floored_channels: int = 0
    input_ratio: float = math.nan
    lut_levels: int = 0
    causes: list[str] = field(default_factory=list)


@dataclass
class Diagnosis:
    """The layers sorted by their share of the output error (largest first),
    the outputs' SNR with every layer quantized, and the samples used."""

    layers: list[LayerDiagnosis]
    outputs: dict[str, float]
    samples: int
    agreement: dict[str, Agreement] = field(default_factory=dict)
    """Task-level agreement of each recognised head, by output (compiler/agreement.py)."""

    COLUMNS = ("layer", "op", "share %", "out SNR alone dB", "SNR prop dB", "SNR iso dB", "why")

    def table(self, limit: int | None = None) -> str:
        """The report for a terminal: the outputs' SNR, then one row per layer."""
        head = [f"outputs (every layer quantized, {self.samples} samples): "
                + snr_line(self.outputs)] + [a.line() for a in self.agreement.values()]
        rows = [{"layer": ",".join(d.onnx_nodes) or d.layer, "op": d.op, "share %": round(100.0 * d.share, 2),
                 "out SNR alone dB": round(d.output_snr_db, 1), "SNR prop dB": round(d.propagated_snr_db, 1),
                 "SNR iso dB": round(d.isolated_snr_db, 1), "why": "; ".join(d.causes) or "-"}
                for d in self.layers[:limit]]
        return "\n".join(head + [format_table(rows, self.COLUMNS)])

    def records(self) -> list[dict]:
        """One flat dict per layer (the CSV's rows, the JSON's layers)."""
        out = []
        for d in self.layers:
            record = asdict(d)
            record["onnx_nodes"] = ",".join(d.onnx_nodes)
            record["causes"] = "; ".join(d.causes)
            out.append(record)
        return out

    def write(self, path: str | os.PathLike) -> None:
        """The report as CSV (``.csv``) or JSON (anything else)."""
        path = Path(path)
        records = self.records()
        try:
            if path.suffix.lower() == ".csv":
                with atomic_output(path, "w", newline="", encoding="utf-8") as handle:
                    writer = csv.DictWriter(handle, fieldnames=list(records[0]) if records else ["layer"])
                    writer.writeheader()
                    writer.writerows(records)
            else:
                document = {"samples": self.samples, "outputs_snr_db": _json_numbers(self.outputs),
                            "agreement": {name: a.record() for name, a in self.agreement.items()},
                            "layers": [_json_numbers(r) for r in records]}
                write_atomic(path, json.dumps(document, indent=1))
        except FileError as exc:
            raise QuantizationError(f"cannot write the quantization report {exc}") from None


def diagnose(model, samples: Iterable[Mapping[str, np.ndarray]], task: str | None = None) -> Diagnosis:
    """The diagnosis of ``model`` (a compiler.quantize.QuantizedModel) over
    ``samples`` (feed dicts, or arrays for a one-input model; real inputs,
    not the calibration ones, say the most), with the agreement of the task
    heads recognised, or of ``task`` (compiler/agreement.py)."""
    names = model.input_names
    samples = [sample if isinstance(sample, Mapping) else dict(zip(names, [sample])) for sample in samples]
    if not samples:
        raise QuantizationError("the quantization diagnosis got no input samples")
    report = model.compare(samples, task)
    by_layer = {e.layer: e for e in report.layers}
    layers = [n for n in model.quantized_nodes() if "tensor" in n.annotations and n.op != "QuantizeLinear"
              and n.annotations["tensor"] in _tensors(model.float_graph) and not _moves_codes(n)]
    found = [_layer(n, by_layer.get(n.name)) for n in layers]
    _float_statistics(model.float_graph, layers, found, samples)
    _contributions(model, layers, found, samples)
    for node, diagnosis in zip(layers, found):
        diagnosis.causes = _causes(node, diagnosis)
    found.sort(key=lambda d: -d.share)
    return Diagnosis(found, {name: s.snr_db for name, s in report.outputs.items()}, len(samples), report.agreement)


def _moves_codes(node: Node) -> bool:
    """A layout op on codes (Flatten, Reshape, Transpose, ...): its output
    is its input's codes on its input's grid, so it adds no error of its own
    (counting it would count its producer's share twice)."""
    if node.op.startswith("Q") or not node.inputs or node.inputs[0] is None or node.inputs[0].quant is None:
        return False
    a, b = node.inputs[0].quant, node.outputs[0].quant
    return a is b or (np.array_equal(a.scale, b.scale) and np.array_equal(a.zero, b.zero) and a.dtype == b.dtype)


def _tensors(graph: Graph) -> set[str]:
    return {v.name for n in graph.nodes for v in n.outputs} | {v.name for v in graph.inputs}


def _layer(node: Node, error) -> LayerDiagnosis:
    d = LayerDiagnosis(node.name, node.op, node.annotations["tensor"], tuple(node.annotations.get("source", ())),
                       node.outputs[0].quant.dtype.name)
    if error is not None:
        d.propagated_snr_db, d.isolated_snr_db = error.propagated.snr_db, error.isolated.snr_db
    if node.op == "QLut" and len(node.attrs["table"]) == TABLE_ENTRIES:  # a 513-entry table interpolates
        d.lut_levels = len(set(node.attrs["table"]))
    return d


def _float_statistics(graph: Graph, layers: list[Node], found: list[LayerDiagnosis], samples) -> None:
    """Clipped fraction, channel spread, weight floors and Add/Concat input
    ratios, from the float model's tensors on ``samples``."""
    program, names = lower_with_names(graph)
    slot = {v.name: s for v, s in names.items()}
    producer = {v.name: n for n in graph.nodes for v in n.outputs}
    mixed = {d.tensor: [v.name for v in producer[d.tensor].inputs if v.name in slot and v.const is None]
             for d in found if d.tensor in producer and producer[d.tensor].op in ("Add", "Sum", "Concat")}
    fetch = sorted({slot[d.tensor] for d in found} | {slot[t] for names_ in mixed.values() for t in names_})
    run = Executor(program)
    peaks: dict[str, np.ndarray] = {}
    clipped = dict.fromkeys((d.tensor for d in found), 0)
    counts = dict.fromkeys((d.tensor for d in found), 0)
    grids = {d.tensor: n.outputs[0].quant for n, d in zip(layers, found)}
    for feeds in samples:
        values = run.run(feeds, fetch=fetch)
        for name in {*clipped, *(t for ts in mixed.values() for t in ts)}:
            x = np.asarray(values[slot[name]], np.float32)
            peak = _channel_peaks(x)
            peaks[name] = peak if name not in peaks else np.maximum(peaks[name], peak)
            if name in grids:
                low, high = _grid_range(grids[name])
                clipped[name] += int(np.count_nonzero((x < low) | (x > high)))
                counts[name] += x.size
    constants = {v.name: v.const for v in graph.constants()}
    for node, d in zip(layers, found):
        d.clipped = clipped[d.tensor] / max(counts[d.tensor], 1)
        peak = peaks.get(d.tensor)
        if peak is not None and peak.size > 1 and np.median(peak) > 0:
            d.channel_spread = float(peak.max() / np.median(peak))
        if d.tensor in mixed and len(mixed[d.tensor]) > 1:
            ranges = [float(peaks[t].max()) for t in mixed[d.tensor]]
            if min(ranges) > 0:
                d.input_ratio = max(ranges) / min(ranges)
        d.floored_channels = _floored(constants, node)


def _channel_peaks(x: np.ndarray) -> np.ndarray:
    """max |x| of each channel (axis 1; the whole tensor when rank < 2)."""
    if x.ndim < 2:
        return np.array([float(np.max(np.abs(x))) if x.size else 0.0])
    moved = np.moveaxis(np.abs(x), 1, 0).reshape(x.shape[1], -1)
    return moved.max(axis=1) if moved.size else np.zeros(x.shape[1])


def _grid_range(grid: QuantParams) -> tuple[float, float]:
    low, high = ACTIVATION_RANGE[np.dtype(grid.dtype)]
    scale, zero = float(np.max(grid.scale)), float(np.asarray(grid.zero).ravel()[0])
    return scale * (low - zero) - 0.5 * scale, scale * (high - zero) + 0.5 * scale


def _floored(constants: Mapping[str, np.ndarray], node: Node) -> int:
    """Output channels whose weight grid is wider than the channel needs
    (``constants``: the float graph's, by name)."""
    name = node.annotations.get("weight")
    if name is None or len(node.inputs) < 2 or node.inputs[1].quant is None:
        return 0
    weight = constants.get(name)
    grid = node.inputs[1].quant
    if weight is None or not grid.per_channel or weight.shape[grid.axis] != len(grid.scale):
        return 0
    natural = weight_scales(np.asarray(weight), grid.dtype, grid.axis)
    return int(np.count_nonzero(np.asarray(grid.scale, np.float64) > natural * 1.01))


def _contributions(model, layers: list[Node], found: list[LayerDiagnosis], samples) -> None:
    """Each layer alone fake-quantized in the float model: its noise at the outputs."""
    references = [model.run_float(feeds) for feeds in samples]
    corrections, roundings = model.bias_corrections(), model.weight_roundings()
    errors = []
    for node, d in zip(layers, found):
        params = {d.tensor: node.outputs[0].quant}
        weight = node.annotations.get("weight")
        if weight is not None and len(node.inputs) > 1 and node.inputs[1].quant is not None:
            params[weight] = node.inputs[1].quant
        stats = alone_noise(model.float_graph, params, samples, references, weights=[weight] if weight in params
                            else [], bias_corrections={weight: corrections[weight]} if weight in corrections else None,
                            weight_roundings={weight: roundings[weight]} if weight in roundings else None)
        d.output_snr_db = min((s.snr_db for s in stats.values()), default=math.inf)
        errors.append(relative_noise(stats))
    total = sum(errors)
    for d, error in zip(found, errors):
        d.share = error / total if total > 0 else 0.0


def alone_noise(float_graph: Graph, params: Mapping[str, QuantParams], samples, references, *,
                weights=(), bias_corrections=None, weight_roundings=None) -> dict[str, ErrorStats]:
    """The float model with only the tensors of ``params`` fake-quantized,
    against its own outputs ``references`` (one dict per sample): the error
    statistics of each output (of each part of an output a host join
    assembles: compiler.compare.update_outputs)."""
    run = Executor(lower_to_program(fake_quantize(float_graph, params, weights=weights,
                                                  bias_corrections=bias_corrections,
                                                  weight_roundings=weight_roundings)))
    stats: dict[str, ErrorStats] = {}
    parts = output_parts(float_graph)
    for feeds, reference in zip(samples, references):
        update_outputs(stats, reference, run.run(feeds), parts)
    return stats


def relative_noise(stats: Mapping[str, ErrorStats]) -> float:
    """The outputs' noise, each relative to its power, summed: one number to rank by."""
    return sum(s.noise / s.signal for s in stats.values() if s.signal > 0)


def _causes(node: Node, d: LayerDiagnosis) -> list[str]:
    causes = []
    if d.clipped > SATURATION:
        causes.append(f"saturation: {100 * d.clipped:.2f}% of values outside the grid")
    per_tensor = not node.outputs[0].quant.per_channel
    if per_tensor and d.channel_spread > CHANNEL_SPREAD:
        causes.append(f"channel spread: the largest channel's range is {d.channel_spread:.0f}x the median's on "
                      "one grid")
    if d.floored_channels:
        causes.append(f"weight floor: {d.floored_channels} output channel(s) on a wider weight grid than they need")
    if d.input_ratio > MIXED_INPUTS:
        causes.append(f"mixed inputs: ranges {d.input_ratio:.0f}x apart on one output grid")
    if d.lut_levels and d.lut_levels < LUT_LEVELS:
        causes.append(f"lookup table: {d.lut_levels} distinct outputs over 256 input codes (input range too wide)")
    return causes


def _json_numbers(record: Mapping) -> dict:
    """NaN and infinities as null and strings (JSON has neither)."""
    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return value
    return {k: clean(v) for k, v in record.items()}
