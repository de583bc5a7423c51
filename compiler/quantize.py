"""Quantizing a model, the user's way: one call from an ONNX model to a
quantized, partitioned graph, with its encodings and its layer-wise report.

    from compiler.quantize import quantize_model
    q = quantize_model("model.onnx", calibration_data="images/", float_layers=["head"])
    q.run({"input": x})                       # accelerator segments in integers, CPU ones in float
    print(q.compare(samples).table())         # layer-wise SNR against the float model
    q.export_encodings("model.encodings")     # AIMET-style JSON, keyed by ONNX tensor names

Re-quantizing with ``encodings="model.encodings"`` skips calibration and
uses those parameters exactly; an empty encodings file runs the model in
float. The passes behind it (docs/quantization.md) are in passes/quant/.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from codegen.cpu import lower_segments, lower_to_program, lower_with_names
from compiler.compare import LayerReport, compare_layers
from compiler.coverage import Coverage, coverage
from compiler.errors import QuantizationError
from compiler.frontend import import_onnx
from compiler.head_grids import HEAD_GROUPS, apply_head_grids
from compiler.pipeline import PLACE, SIMPLIFY
from ir.graph import Graph, Node, clone, onnx_name, walk
from ir.types import QuantParams
from passes.infra import PassContext, PassError, PassInstrument
from passes.instruments import timed
from passes.quant.calibration_data import PreprocessSpec, calibration_batches
from passes.quant.encodings import Encodings, export_encodings, import_encodings
from passes.quant.quantize import quantize
from passes.quant.weight_rounding import ROUNDING, decode_rounding, encode_rounding
from runtime.executor import Executor
from runtime.hardware import ACCELERATOR
from runtime.segments import SegmentExecutor

BIAS_CORRECTIONS = "tessera_bias_corrections"
"""The quantizer_args entry of an encodings export holding the bias
corrections (docs/quantization.md), by weight name."""
WEIGHT_ROUNDINGS = "tessera_weight_rounding"
"""The quantizer_args entry of an encodings export holding, by weight name,
how the codes weight rounding chose differ from the nearest ones
(passes/quant/weight_rounding.py's encode_rounding text)."""


class QuantizationWarning(UserWarning):
    """Something about the quantization the user should know (tensors an
    encodings file does not cover, layers sensitivity could not promote)."""


@dataclass
class QuantizedModel:
    """A model after quantization: ``graph`` is partitioned into device
    segments, the accelerator's in integer Q ops; ``float_graph`` is the same
    model simplified but not quantized (the reference of comparisons)."""

    graph: Graph
    float_graph: Graph
    options: dict[str, Any] = field(default_factory=dict)
    promoted: list[str] = field(default_factory=list)
    """ONNX node names sensitivity analysis or a target SNR moved to 16 bits."""
    target: Any = None
    """With ``target_snr``: what reaching it did (compiler.target_snr.TargetReport)."""
    equalized: int | None = None
    """With ``equalize``: the layer pairs cross-layer equalization rescaled."""
    absorbed: int | None = None
    """With ``absorb_bias``: the layer pairs bias absorption changed."""
    head_grids: Any = None
    """What compiler.head_grids did (a HeadGrids), or None when it did not run."""
    _executor: SegmentExecutor | None = field(default=None, repr=False)
    _float_executor: Executor | None = field(default=None, repr=False)

    @property
    def input_names(self) -> list[str]:
        return [v.name for v in self.graph.inputs]

    @property
    def output_names(self) -> list[str]:
        return [v.name for v in self.graph.outputs]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The quantized model's outputs (float32) for ``feeds``."""
        if self._executor is None:
            self._executor = SegmentExecutor(lower_segments(self.graph))
        return self._executor.run(feeds)

    def run_float(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The float model's outputs for ``feeds``."""
        if self._float_executor is None:
            self._float_executor = Executor(lower_to_program(self.float_graph))
        return self._float_executor.run(feeds)

    def quantized_nodes(self) -> list[Node]:
        """The integer nodes of the accelerator segments, in order."""
        return [n for s in self.graph.nodes if s.attrs.get("device") == ACCELERATOR
                for _, n in walk(s.attrs["body"]) if n.outputs and n.outputs[0].quant is not None]

    def _cpu_nodes(self) -> list[Node]:
        return [n for s in self.graph.nodes if s.attrs.get("device") != ACCELERATOR
                for _, n in walk(s.attrs["body"]) if n.op != "Fused"]

    def coverage(self) -> Coverage:
        """How much of the model runs on the accelerator, and why the rest
        does not (compiler/coverage.py); MACs counted on the float graph."""
        return coverage(self.graph, self.float_graph)

    def float_layers(self) -> list[str]:
        """ONNX node names that run in float on the CPU."""
        return list(dict.fromkeys(onnx_name(n.name) for n in self._cpu_nodes()))

    def activation_grids(self) -> dict[str, QuantParams]:
        """The grid of every tensor the accelerator stores, by tensor name."""
        return {n.annotations["tensor"]: n.outputs[0].quant for n in self.quantized_nodes()
                if "tensor" in n.annotations}

    def weight_grids(self) -> dict[str, QuantParams]:
        """The grid of every quantized weight, by the name of the float
        weight it came from (an ONNX initializer, or a constant Tessera
        folded, such as ``<conv>_weight`` after a BatchNorm)."""
        grids = {}
        for node in self.quantized_nodes():
            if "weight" in node.annotations:
                grids[node.annotations["weight"]] = node.inputs[1].quant
        return grids

    def bias_corrections(self) -> dict[str, list[int]]:
        """The bias correction of each corrected layer (accumulator units per
        output channel), by the name of its float weight."""
        return {n.annotations["weight"]: n.annotations["bias_correction"] for n in self.quantized_nodes()
                if "bias_correction" in n.annotations and "weight" in n.annotations}

    def weight_roundings(self) -> dict[str, np.ndarray]:
        """How each rounded layer's weight codes differ from the nearest ones
        (passes/quant/weight_rounding.py), by the name of its float weight."""
        return {n.annotations["weight"]: n.annotations[ROUNDING] for n in self.quantized_nodes()
                if ROUNDING in n.annotations and "weight" in n.annotations}

    def float_tensors(self) -> list[str]:
        """Outputs of the layers that run in float on the CPU."""
        return [v.name for n in self._cpu_nodes() for v in n.outputs]

    def export_encodings(self, path: str | os.PathLike | None = None, version: str = "0.6.1") -> dict:
        """The quantization parameters as an AIMET-style encodings document
        (written to ``path`` when given): activations and weights by tensor
        name, and the CPU layers' outputs as float tensors."""
        weights = self.weight_grids()
        params = {**self.activation_grids(), **weights}
        floats = [t for t in self.float_tensors() if t not in params]
        return export_encodings(params, path, weights=weights, float_tensors=floats, version=version,
                                quantizer_args={"activation_bitwidth": 8, "param_bitwidth": 8,
                                                "per_channel_quantization": True,
                                                "quant_scheme": "tessera:" + self.options.get("quant.mode",
                                                                                              "int8"),
                                                BIAS_CORRECTIONS: self.bias_corrections(),
                                                **({WEIGHT_ROUNDINGS: {name: encode_rounding(delta) for name, delta
                                                                       in self.weight_roundings().items()}}
                                                   if self.weight_roundings() else {}),
                                                **({HEAD_GROUPS: self.head_grids.split}
                                                   if self.head_grids and self.head_grids.split else {})})

    def compare(self, samples: Iterable[Mapping[str, np.ndarray]]) -> LayerReport:
        """Layer-wise comparison with the float model over ``samples``."""
        return compare_layers(self.float_graph, self.graph, samples)

    def diagnose(self, samples: Iterable[Mapping[str, np.ndarray]]):
        """Where the output error enters and why (compiler/diagnose.py): a
        Diagnosis, its layers sorted by their share of the output error."""
        from compiler.diagnose import diagnose

        return diagnose(self, samples)


def quantize_model(model, *, calibration_data=None, calibration_count: int = 32,
                   preprocess: PreprocessSpec | None = None, calibrator: str = "mse",
                   tensor_calibrators: Mapping[str, str] | None = None, mode: str = "int8",
                   layer_precision: Mapping[str, str] | None = None, float_layers: Sequence[str] = (),
                   encodings: str | os.PathLike | Mapping | Encodings | None = None, sensitivity: int = 0,
                   sensitivity_samples: int = 8, hwlinear: bool = False, fallback: str = "HETERO:FPGA,CPU",
                   affinities: Mapping[str, str] | None = None, demote_islands: bool = True,
                   shapes: Mapping[str, Sequence[int]] | None = None, image: str | None = None,
                   target_snr: float | None = None, target_budget: float = 0.15, target_samples: int = 8,
                   equalize: bool = False, absorb_bias: bool = False, head_grids: bool = True,
                   channel_grids: bool = True, weight_rounding: bool = True, options: Mapping[str, Any] | None = None,
                   instruments: Sequence[PassInstrument] = ()) -> QuantizedModel:
    """Import ``model`` (a path, bytes or ModelProto), partition it and
    quantize its accelerator segments.

    calibration_data: a list of arrays or feed dicts, a folder of .npy files
    or of images (``preprocess``), or None for synthetic data (with a
    warning); ``calibrator`` names the range method ('minmax', 'percentile',
    'percentile:99.9', 'entropy', 'mse', or 'auto': each tensor's chosen by
    the error it leaves at the outputs, compiler/range_choice.py),
    ``tensor_calibrators`` one per
    tensor. ``mode`` is the model's precision ('int8', 'int16', 'radix8',
    'radix16'); ``layer_precision`` overrides it per ONNX node name;
    ``float_layers`` keeps ONNX nodes in float on the CPU. ``encodings``
    (an AIMET encodings file or document) gives the parameters instead of
    calibration; an empty one runs the model in float. ``sensitivity=k``
    measures each layer's own error on ``sensitivity_samples`` calibration
    inputs and re-quantizes the k worst in 16 bits. ``fallback`` is the
    device priority of the affinity policy; ``affinities`` (ONNX node name
    -> device) place every layer by hand instead (passes/affinity.py);
    ``demote_islands=False`` keeps accelerator segments whose host
    transfers cost more than they save (passes/partition.py).
    ``target_snr`` (dB) moves layers to 16 bits, in the order of their share
    of the output error, until every output's SNR on ``target_samples``
    calibration inputs reaches it, with at most ``target_budget`` of the
    accelerator's MACs in 16 bits (compiler/target_snr.py); the result's
    ``target`` reports what it did (and warns when it could not).
    ``equalize`` runs cross-layer equalization on the float model first
    (passes/quant/equalize.py; the scales from the calibration inputs'
    activation ranges, or data-free from the weights without them);
    ``absorb_bias`` then moves each such pair's always-positive channel
    floors into the next layer's bias (compiler/equalization.py).
    ``head_grids`` gives a model output whose channels carry different
    quantities (a detector head's boxes, offsets and scores) a grid per
    group of channels, measured on the calibration inputs
    (compiler/head_grids.py; an encodings file's recorded groups instead;
    not in the radix modes, whose outputs are the device's fixed-point
    codes that kp and FWDNXT users read as such). ``channel_grids``
    gives a tensor a convolution writes and only depthwise convolutions read
    a grid per channel, free on the device (passes/quant/channel_grids.py).
    ``weight_rounding`` rounds each convolution's weights (those whose
    reduction is at most ``quant.weight_rounding_depth``) by the error they
    leave in its output on the calibration inputs, not each to its nearest
    code (passes/quant/weight_rounding.py).
    ``instruments`` see the
    import and every pass (passes.instruments.PassTiming times them)."""
    settings = {"quant.calibrator": calibrator, "quant.tensor_calibrators": dict(tensor_calibrators or {}),
                "quant.mode": mode, "quant.layer_precision": dict(layer_precision or {}),
                "quant.calibration_count": calibration_count, "quant.preprocess": preprocess,
                "target.hwlinear": hwlinear, "partition.fallback": fallback,
                "partition.affinities": dict(affinities or {}), "partition.demote_islands": demote_islands,
                "quant.channel_grids": channel_grids, "quant.weight_rounding": weight_rounding,
                **dict(options or {})}
    floats = list(float_layers)
    with timed("import", instruments):
        graph = import_onnx(model, shapes=shapes, image=image)
    _check_names(graph, floats, layer_precision or {}, tensor_calibrators or {})
    with PassContext(options=settings, instruments=instruments):
        graph = SIMPLIFY(graph)
    heads = None
    if encodings is not None:
        encodings = encodings if isinstance(encodings, Encodings) else import_encodings(encodings)
        if encodings.quantizer_args.get(HEAD_GROUPS):
            heads = apply_head_grids(graph, None, given=encodings.quantizer_args[HEAD_GROUPS])
        if encodings.is_empty:
            settings["partition.fallback"] = "HETERO:CPU"
        else:
            floats += _apply_encodings(graph, encodings, settings)
    settings["quant.float_layers"] = tuple(floats)
    if calibration_data is not None and not isinstance(calibration_data, (str, os.PathLike)):
        calibration_data = list(calibration_data)  # read twice with sensitivity analysis
    settings["quant.calibration_data"] = calibration_data
    equalized = absorbed = None
    if equalize:
        from compiler.equalization import equalize as equalize_graph

        equalized = equalize_graph(graph, calibration_data)
    if absorb_bias:
        from compiler.equalization import absorb_biases

        absorbed = absorb_biases(graph, calibration_data)
    if head_grids and encodings is None and calibration_data is not None and not mode.startswith("radix"):
        heads = apply_head_grids(graph, calibration_data)
    if calibrator == "auto":
        from compiler.range_choice import CANDIDATES, choose_calibrators

        settings["quant.calibrator"] = CANDIDATES[0]
        chosen = choose_calibrators(graph, settings, lambda changed: _place_and_quantize(graph, changed))
        settings["quant.tensor_calibrators"] = {**chosen, **settings["quant.tensor_calibrators"]}
    result = _place_and_quantize(graph, settings, instruments)
    if sensitivity > 0:
        result = _promote_sensitive(graph, result, settings, sensitivity, sensitivity_samples)
    if target_snr is not None:
        from compiler.target_snr import reach_target

        result = reach_target(graph, result, settings, target_snr, target_budget, target_samples,
                              lambda changed: _place_and_quantize(graph, changed))
    if equalized is not None:
        result.equalized = equalized
    if absorbed is not None:
        result.absorbed = absorbed
    result.head_grids = heads
    return result


def _check_names(graph: Graph, float_layers: Sequence[str], precision: Mapping[str, str],
                 calibrators: Mapping[str, str]) -> None:
    """Per-layer settings name nodes and tensors of the model: a misspelled
    name would otherwise silently do nothing."""
    nodes = {onnx_name(n.name) for _, n in walk(graph)}
    tensors = {v.name for _, n in walk(graph) for v in n.outputs} | {v.name for v in graph.inputs}
    for what, names, known in (("float_layers", float_layers, nodes), ("layer_precision", precision, nodes),
                               ("tensor_calibrators", calibrators, tensors)):
        unknown = sorted(set(names) - known)
        if unknown:
            kind = "node" if known is nodes else "tensor"
            raise QuantizationError(f"{what}: the model has no {kind} named {unknown[0]!r}"
                                    + (f" (nor {unknown[1:]})" if len(unknown) > 1 else ""))


def _place_and_quantize(simplified: Graph, settings: dict[str, Any],
                        instruments: Sequence[PassInstrument] = ()) -> QuantizedModel:
    with PassContext(options=settings, lower=lower_with_names, instruments=instruments):
        placed = quantize(PLACE(clone(simplified)))
    return QuantizedModel(placed, simplified, dict(settings))


def _apply_encodings(graph: Graph, encodings: Encodings, settings: dict[str, Any]) -> list[str]:
    """Given grids into the options and onto the weights; returns the nodes
    whose outputs the file keeps in float."""
    constants = {v.name: v for v in graph.constants()}
    producers = {v.name: n for n in graph.nodes for v in n.outputs}
    given, unknown = {}, []
    for name, params in encodings.params.items():
        if name in encodings.weights:
            if name in constants:
                constants[name].quant = params
            else:
                unknown.append(name)
        elif name in producers or name in {v.name for v in graph.inputs}:
            given[name] = params
        else:
            unknown.append(name)
    if unknown:
        warnings.warn(f"{len(unknown)} tensors of the encodings file are not in the model as Tessera compiles "
                      f"it (folded away or misnamed), ignored: {sorted(unknown)[:8]}", QuantizationWarning,
                      stacklevel=3)
    settings["quant.given"] = {**settings.get("quant.given", {}), **given}
    settings["quant.bias_corrections"] = dict(encodings.quantizer_args.get(BIAS_CORRECTIONS, {}))
    settings["quant.weight_roundings"] = given_roundings(encodings.quantizer_args.get(WEIGHT_ROUNDINGS, {}))
    settings["quant.layer_precision"] = {**_wide_layers(graph, encodings, settings["quant.mode"]),
                                         **settings["quant.layer_precision"]}
    return sorted({producers[t].name for t in encodings.float_tensors if t in producers})


def given_roundings(entries) -> dict[str, np.ndarray]:
    """An encodings file's weight roundings, decoded (by weight name)."""
    if not isinstance(entries, Mapping):
        raise QuantizationError(f"encodings quantizer_args {WEIGHT_ROUNDINGS!r} must map weight names to "
                                f"code differences, got a {type(entries).__name__}")
    try:
        return {name: decode_rounding(text, f"encodings quantizer_args {WEIGHT_ROUNDINGS!r}, entry {name!r}")
                for name, text in entries.items()}
    except PassError as exc:
        raise QuantizationError(str(exc)) from None


def _wide_layers(graph: Graph, encodings: Encodings, mode: str) -> dict[str, str]:
    """The layers a file gives 16-bit grids (their output or their weight):
    16-bit layers, as when the file was written (a target SNR's or a
    sensitivity analysis' decisions survive the round trip; the user's own
    layer_precision still wins)."""
    wide = "radix16" if mode.startswith("radix") else "int16"
    names = {name for name, params in encodings.params.items() if np.dtype(params.dtype).itemsize == 2}
    layers = {}
    for _, node in walk(graph):
        if any(v.name in names for v in node.outputs) or any(v is not None and v.name in names and v.const is not None
                                                            for v in node.inputs):  # None: an omitted optional input
            layers[onnx_name(node.name)] = wide
    return layers


def _promote_sensitive(simplified: Graph, first: QuantizedModel, settings: dict[str, Any], k: int,
                       samples: int) -> QuantizedModel:
    """Re-quantize with the k layers that add the most error in 16 bits."""
    specs = {v.name: (v.type.shape, v.type.dtype) for v in simplified.inputs}
    feeds = list(calibration_batches(settings["quant.calibration_data"], specs, count=samples))
    report = first.compare(feeds)
    # a lookup table reads 8-bit codes: its producer stays 8-bit
    table_inputs = {n.name for n in first.quantized_nodes() if any(u.op == "QLut" for u in n.outputs[0].users)}
    candidates = [e for e in report.worst(len(report.layers)) if e.onnx_nodes and e.layer not in table_inputs]
    chosen = [e.onnx_nodes[0] for e in candidates[:k]]
    if len(chosen) < k:
        warnings.warn(f"sensitivity analysis could promote {len(chosen)} of the {k} layers asked for",
                      QuantizationWarning, stacklevel=3)
    wide = "radix16" if settings["quant.mode"].startswith("radix") else "int16"
    settings = dict(settings, **{"quant.layer_precision": {**settings["quant.layer_precision"],
                                                           **{name: wide for name in chosen}}})
    result = _place_and_quantize(simplified, settings)
    result.promoted = chosen
    return result

