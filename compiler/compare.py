"""Layer-wise comparison of a quantized graph against its float graph.

Every quantized node the quantize pass built (a macro op, a layout op on
codes, a segment's entry quantization) stands for one float tensor (its
``annotations["tensor"]``) and for the ONNX nodes it was made from
(``annotations["source"]``). For each, two errors are measured against that
float tensor, over a set of input samples:

- **propagated**: the quantized model run end to end; the node's codes,
  dequantized. The error of every layer before it is in it.
- **isolated**: the node alone, fed the float model's own inputs to it
  quantized on their grids; the error this layer adds by itself. Sensitivity
  analysis ranks layers by it.

Both stream: per layer, sums of squares and products are accumulated sample
by sample, so no activation is kept past its sample. Metrics are those of
:mod:`passes.quant.metrics` (SNR, RMSE, cosine similarity, max-abs error),
computed over all samples at once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from codegen.cpu import lower_attrs, lower_with_names
from compiler.agreement import Agreement, agreements
from compiler.errors import QuantizationError
from ir.graph import Graph, Node, Value, walk
from passes.quant.fake_quant import dequantize, quantize_on
from passes.quant.head_grids import OutputParts, output_parts, part_label
from passes.quant.metrics import cosine_from_sums, format_table, snr_from_sums
from runtime.executor import Executor
from runtime.kernels import run_kernel


@dataclass
class ErrorStats:
    """Streaming sums for the error metrics of one tensor."""

    signal: float = 0.0    # Σ ref²
    noise: float = 0.0     # Σ (ref − test)²
    test: float = 0.0      # Σ test²
    dot: float = 0.0       # Σ ref·test
    max_abs: float = 0.0
    count: int = 0

    def update(self, reference: np.ndarray, test: np.ndarray) -> None:
        ref = np.asarray(reference, np.float64).ravel()
        tst = np.asarray(test, np.float64).ravel()
        if ref.shape != tst.shape:
            raise QuantizationError(f"comparing tensors of {ref.size} and {tst.size} elements")
        diff = ref - tst
        self.signal += float(ref @ ref)
        self.noise += float(diff @ diff)
        self.test += float(tst @ tst)
        self.dot += float(ref @ tst)
        self.max_abs = max(self.max_abs, float(np.max(np.abs(diff)))) if diff.size else self.max_abs
        self.count += ref.size

    @property
    def snr_db(self) -> float:
        """As :func:`passes.quant.metrics.snr_db` over everything seen (NaN if nothing was)."""
        return snr_from_sums(self.signal, self.noise) if self.count else math.nan

    @property
    def rmse(self) -> float:
        return math.sqrt(self.noise / self.count) if self.count else math.nan

    @property
    def cosine(self) -> float:
        return cosine_from_sums(self.signal, self.test, self.dot)


def update_outputs(stats: dict[str, ErrorStats], reference: Mapping[str, np.ndarray],
                   result: Mapping[str, np.ndarray], parts: Mapping[str, OutputParts]) -> None:
    """Fold one sample's outputs into ``stats`` by output name, or by part
    (passes/quant/head_grids.output_parts: the indices of each quantity an
    output holds along its quantity axis, labelled ``out[0:4]``) for the
    outputs in ``parts``."""
    for name, value in reference.items():
        if name not in parts:
            stats.setdefault(name, ErrorStats()).update(value, result[name])
            continue
        axis = parts[name].axis
        for channels in parts[name]:
            stats.setdefault(part_label(name, channels, axis), ErrorStats()).update(
                np.take(value, channels, axis=axis), np.take(result[name], channels, axis=axis))


@dataclass
class LayerError:
    """One quantized node against the float tensor it stands for."""

    layer: str
    op: str
    tensor: str
    onnx_nodes: tuple[str, ...]
    dtype: str
    propagated: ErrorStats = field(default_factory=ErrorStats)
    isolated: ErrorStats = field(default_factory=ErrorStats)


@dataclass
class LayerReport:
    """The layer-wise comparison, in execution order, and of the outputs."""

    layers: list[LayerError]
    outputs: dict[str, ErrorStats]
    samples: int
    agreement: dict[str, Agreement] = field(default_factory=dict)
    """Task-level agreement of each recognised head, by output (compiler/agreement.py)."""

    def worst(self, k: int, by: str = "isolated") -> list[LayerError]:
        """The ``k`` computing layers with the lowest SNR (the most error)."""
        ranked = [e for e in self.layers if e.op not in _PASS_THROUGH and getattr(e, by).count]
        return sorted(ranked, key=lambda e: getattr(e, by).snr_db)[:k]

    def table(self) -> str:
        rows = [{"layer": e.layer, "op": e.op, "onnx nodes": ",".join(e.onnx_nodes) or "-", "dtype": e.dtype,
                 "SNR prop dB": e.propagated.snr_db, "SNR iso dB": e.isolated.snr_db,
                 "cos prop": e.propagated.cosine, "max|err| prop": e.propagated.max_abs} for e in self.layers]
        rows += [{"layer": f"output {name}", "op": "-", "onnx nodes": "-", "dtype": "float32",
                  "SNR prop dB": s.snr_db, "SNR iso dB": "-", "cos prop": s.cosine, "max|err| prop": s.max_abs}
                 for name, s in self.outputs.items()]
        columns = ["layer", "op", "onnx nodes", "dtype", "SNR prop dB", "SNR iso dB", "cos prop", "max|err| prop"]
        return format_table(rows, columns)


_PASS_THROUGH = frozenset({"QuantizeLinear"})
"""Nodes reported but not ranked: a segment's entry only rounds its input."""


def compare_layers(float_graph: Graph, quantized: Graph, samples: Iterable[Mapping[str, np.ndarray]],
                   task: str | None = None) -> LayerReport:
    """Compare every quantized node of ``quantized`` with the float tensor
    of the same name computed by ``float_graph`` (the same model before
    quantization: simplified, unfused is best, so every tensor is visible)
    over ``samples`` (feed dicts); and the detections (or classes) of the
    task heads compiler.agreement recognises, or of ``task`` ("yolo", "db",
    "centernet", "classify"; "none": no agreement)."""
    float_program, float_names = lower_with_names(float_graph)
    by_name = {v.name: slot for v, slot in float_names.items()}
    q_program, q_names = lower_with_names(quantized)
    nodes = [n for _, n in walk(quantized) if "tensor" in n.annotations and n.outputs[0].quant is not None]
    layers, tensors = [], {}
    for node in nodes:
        tensor = node.annotations["tensor"]
        if tensor not in by_name:
            continue  # a tensor the float graph does not compute by that name
        tensors[id(node.outputs[0])] = tensor
        layers.append((node, LayerError(node.name, node.op, tensor, tuple(node.annotations.get("source", ())),
                                        node.outputs[0].quant.dtype.name)))
    alone = {id(node) for node, _ in layers if _has_float_inputs(node, by_name, tensors)}
    float_run, q_run = Executor(float_program), Executor(q_program)
    float_fetch = sorted({by_name[t] for t in tensors.values()} | {by_name[v.name] for v in quantized.outputs
                                                                  if v.name in by_name})
    names = [v.name for v in quantized.outputs if v.name in by_name]
    parts = output_parts(float_graph)  # an output of several quantities: each on its own
    agreement = agreements(float_graph, task)
    outputs: dict[str, ErrorStats] = {}
    count = 0
    for feeds in samples:
        reference = float_run.run(feeds, fetch=float_fetch)
        result = q_run.run(feeds, fetch=[q_names[n.outputs[0]] for n, _ in layers] + list(q_program.output_names))
        for node, error in layers:
            value = node.outputs[0]
            truth = reference[by_name[error.tensor]]
            error.propagated.update(truth, dequantize(result[q_names[value]], value.quant))
            if id(node) in alone:
                error.isolated.update(truth, _isolated(node, reference, by_name, tensors))
        truth = {name: reference[by_name[name]] for name in names}
        found = {name: result[q_names[_output(quantized, name)]] for name in names}
        update_outputs(outputs, truth, found, parts)
        for head in agreement.values():
            head.update(truth, found)
        count += 1
    if count == 0:
        raise QuantizationError("the layer-wise comparison got no input samples")
    return LayerReport([e for _, e in layers], outputs, count, agreement)


def _output(graph: Graph, name: str) -> Value:
    return next(v for v in graph.outputs if v.name == name)


def _has_float_inputs(node: Node, by_name: Mapping[str, str], tensors: Mapping[int, str]) -> bool:
    """Whether the float graph computes every input of ``node``: not so for
    tensors the quantizer made (concat_affine's per-piece affines), whose
    reader is measured propagated only."""
    return node.op == "QuantizeLinear" or all(
        _float_tensor(v, tensors) in by_name for v in node.inputs if v is not None and not v.is_constant)


def _float_tensor(value: Value, tensors: Mapping[int, str]) -> str | None:
    return tensors.get(id(value)) or (value.producer.annotations.get("tensor") if value.producer is not None
                                      else None)


def _isolated(node: Node, reference: Mapping[str, np.ndarray], by_name: Mapping[str, str],
              tensors: Mapping[int, str]) -> np.ndarray:
    """``node`` run alone on its float inputs, quantized on their grids, dequantized."""
    if node.op == "QuantizeLinear":
        return dequantize(quantize_on(reference[by_name[node.annotations["tensor"]]], node.outputs[0].quant),
                          node.outputs[0].quant)
    inputs = []
    for value in node.inputs:
        if value is None or value.is_constant:
            inputs.append(None if value is None else value.const)
            continue
        producer_tensor = _float_tensor(value, tensors)
        if producer_tensor is None or producer_tensor not in by_name or value.quant is None:
            raise QuantizationError(f"layer-wise comparison: input %{value.name} of {node.op} node {node.name!r} "
                            "has no float counterpart")
        inputs.append(quantize_on(reference[by_name[producer_tensor]], value.quant))
    (codes,) = run_kernel(node.op, inputs, lower_attrs(node))[:1]
    return dequantize(codes, node.outputs[0].quant)
