"""Quantizing a model, the user's way: one call from an ONNX model to a
quantized, partitioned graph, with its encodings and its layer-wise report.

    from compiler.quantize import quantize_model
    q = quantize_model("model.onnx", calibration_data="images/", float_layers=["head"])
    q.run({"input": x})                       # accelerator segments in integers, CPU ones in float
    print(q.compare(samples).table())         # layer-wise SNR against the float model
    q.export_encodings("model.encodings")     # AIMET-style JSON, keyed by ONNX tensor names

Re-quantizing with ``encodings="model.encodings"`` skips calibration and
uses those parameters exactly; an empty encodings file runs the model in
float. The options are one compiler.quant_config.QuantConfig (the keywords
build it); the passes run are compiler.pipeline's SIMPLIFY, QUANTIZATION
and QUANTIZE (docs/quantization.md).
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from codegen.cpu import lower_with_names
from compiler.apply_encodings import given_roundings
from compiler.build import build
from compiler.errors import QuantizationError
from compiler.frontend import import_onnx
from compiler.pipeline import QUANTIZATION, QUANTIZE, SIMPLIFY
from compiler.quant_config import QuantConfig
from compiler.quantized import (
    BIAS_CORRECTIONS,
    HEAD_GROUPS,
    WEIGHT_ROUNDINGS,
    QuantizationWarning,
    QuantizedModel,
)
from ir.graph import Graph, clone, onnx_name, walk
from passes.infra import PassContext, PassInstrument
from passes.instruments import timed
from passes.quant.calibration_data import calibration_batches
from passes.quant.report import QuantReport
from passes.tile import untileable
from runtime.engine import Engine
from runtime.errors import TesseraError
from runtime.hardware import HardwareConfig

__all__ = ["quantize_model", "quantize_graph", "QuantConfig", "QuantizedModel", "QuantizationWarning",
           "BIAS_CORRECTIONS", "HEAD_GROUPS", "WEIGHT_ROUNDINGS", "given_roundings", "calibration_batches"]
"""quantize_model and what its users import with it (calibration_batches: the
compiler's reader of calibration inputs, for the IE facade)."""


def quantize_model(model, *, config: QuantConfig | None = None, calibration_data=None,
                   shapes: Mapping[str, Sequence[int]] | None = None, image: str | None = None,
                   options: Mapping[str, Any] | None = None, instruments: Sequence[PassInstrument] = (),
                   **keywords: Any) -> QuantizedModel:
    """Import ``model`` (a path, bytes or ModelProto), partition it and
    quantize its accelerator segments as ``config`` says (a
    compiler.quant_config.QuantConfig; its fields as keywords replace
    its values or the defaults: ``quantize_model(m, calibrator="auto",
    equalize=True)``).

    calibration_data: a list of arrays or feed dicts, a folder of .npy files
    or of images (the config's ``preprocess``), or None for synthetic data
    (with a warning). ``shapes`` and ``image`` fix the input shapes of the
    import; ``options`` are further pass options (``target.hardware``: the
    card a target SNR estimates hwtime on). The result reports what the
    passes did (``equalized``, ``absorbed``, ``head_grids``, ``promoted``,
    ``target``). ``instruments`` see the import and every pass
    (passes.instruments.PassTiming times them)."""
    config = QuantConfig.build(config, keywords, where="quantize_model")
    with timed("import", instruments):
        graph = import_onnx(model, shapes=shapes, image=image)
    _check_names(graph, config)
    settings = {**config.pass_options(), **dict(options or {})}
    with PassContext(options=settings, instruments=instruments):
        graph = SIMPLIFY(graph)
    if calibration_data is not None and not isinstance(calibration_data, (str, os.PathLike)):
        calibration_data = list(calibration_data)  # the searches read it more than once
    settings["quant.calibration_data"] = calibration_data
    return quantize_graph(graph, settings, instruments)


def quantize_graph(simplified: Graph, options: Mapping[str, Any],
                   instruments: Sequence[PassInstrument] = ()) -> QuantizedModel:
    """``simplified`` (rewritten in place) through compiler.pipeline's
    QUANTIZATION, then a copy of it through QUANTIZE, under ``options``
    (PassContext options: QuantConfig.pass_options() and the calibration data)."""
    report, trials = QuantReport(), _Trials(instruments)
    with PassContext(options={**options, "quant.report": report, "quant.trials": trials}, lower=lower_with_names,
                     instruments=instruments) as ctx:
        simplified = QUANTIZATION(simplified)
        result = trials.quantize(simplified, ctx.options)
    result.equalized, result.absorbed, result.head_grids = report.equalized, report.absorbed, report.head_grids
    result.promoted, result.target = list(report.promoted), report.target
    return result


class _Trials:
    """compiler.quantized.Trials: each set of options quantized once (a
    search's last trial is the quantization that follows it), every run
    seen by the instruments."""

    def __init__(self, instruments: Sequence[PassInstrument] = ()):
        self.instruments = instruments
        self.done: dict[tuple, QuantizedModel] = {}

    def quantize(self, graph: Graph, options: Mapping[str, Any]) -> QuantizedModel:
        key = (id(graph), _frozen(options))
        if key not in self.done:
            placed, options = self._place_tileable(graph, dict(options))
            kept = {k: v for k, v in options.items() if k not in ("quant.trials", "quant.report")}
            self.done[key] = QuantizedModel(placed, graph, kept)
        return self.done[key]

    def _place_tileable(self, graph: Graph, options: dict[str, Any]) -> tuple[Graph, dict[str, Any]]:
        """QUANTIZE on a copy of ``graph``; while some accelerator layer has
        no tiling that fits (a gap in the target rules), its ONNX nodes go
        to the CPU with the planner's error as their reason
        (``partition.host_layers``) and the copy is placed and quantized
        again. Layers that stay on the device anyway (no CPU in the
        fallback) fail later, at the tile pass, with that error."""
        hardware = options.get("target.hardware") or HardwareConfig()
        while True:
            with PassContext(options=options, lower=lower_with_names, instruments=self.instruments):
                placed = QUANTIZE(clone(graph))
            moved = dict(options.get("partition.host_layers") or {})
            failures = {name: why for name, why in untileable(placed, hardware).items() if name not in moved}
            if not failures:
                return placed, options
            options = {**options, "partition.host_layers": {**moved, **failures}}

    def hwtime_ms(self, model: QuantizedModel, options: Mapping[str, Any]) -> float | None:
        try:
            return Engine(build(model.graph, options.get("target.hardware") or HardwareConfig())).device.hwtime_ms
        except TesseraError:
            return None


def _frozen(value: Any) -> Any:
    """A hashable stand-in for an option value: mappings and tuples by
    content, numbers and strings as they are, anything else (calibration
    data, grids) by identity (the trials keep each alive)."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, tuple):
        return tuple(_frozen(v) for v in value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return ("object", id(value))


def _check_names(graph: Graph, config: QuantConfig) -> None:
    """Per-layer settings name nodes and tensors of the model: a misspelled
    name would otherwise silently do nothing."""
    nodes = {onnx_name(n.name) for _, n in walk(graph)}
    tensors = {v.name for _, n in walk(graph) for v in n.outputs} | {v.name for v in graph.inputs}
    for what, names, known in (("float_layers", config.float_layers, nodes),
                               ("host_outputs", config.host_outputs, nodes),
                               ("layer_precision", config.layer_precision, nodes),
                               ("tensor_calibrators", config.tensor_calibrators, tensors)):
        unknown = sorted(set(names) - known)
        if unknown:
            kind = "node" if known is nodes else "tensor"
            raise QuantizationError(f"{what}: the model has no {kind} named {unknown[0]!r}"
                                    + (f" (nor {unknown[1:]})" if len(unknown) > 1 else ""))
