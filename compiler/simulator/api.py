"""The Simulator backend API (shared/spec/simulator-backend-api.md):

    from compiler.simulator.api import Simulator
    from compiler.simulator.schema.base import InferenceRunnerParameters

    outputs = Simulator.run_inference(InferenceRunnerParameters(
        input_model_path="model.onnx", input_encodings_path="model.encodings", input_data_path="data/"))

Every call builds a :class:`~compiler.simulator.model.SimulatedModel` (the
ONNX model through Tessera's compiler, the encodings applied in the
parameters' quantization mode) and runs it on the CPU executor. A call
takes its schema object, or a dict of the same fields.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, TypeVar

import numpy as np
from pydantic import BaseModel

from compiler.agreement import Agreement, agreements
from compiler.compare import ErrorStats
from compiler.errors import QuantizationError
from compiler.frontend import OnnxModel, import_onnx
from compiler.simulator.data import load_samples
from compiler.simulator.errors import SimulatorError
from compiler.simulator.model import SimulatedModel, model_inputs
from compiler.simulator.results import ComparisonResult, LayerComparison, LayerwiseResult, metric_value, passes
from compiler.simulator.schema.base import (
    InferenceCheckerParameters,
    InferenceRunnerParameters,
    InferenceSessionParameters,
    LayerwiseCheckerParameters,
)
from compiler.simulator.session import InferenceSession, QuantizationSim
from runtime.files import atomic_output

Schema = TypeVar("Schema", bound=BaseModel)


class Simulator:
    """The spec's calls, as static methods."""

    @staticmethod
    def run_inference(params: InferenceRunnerParameters | Mapping[str, Any]) -> list[list[np.ndarray]]:
        """One entry per data file (sorted by name): the model's outputs in
        graph order, then the ``layerwise_check_name`` tensors."""
        params = _parse(params, InferenceRunnerParameters)
        samples, model = _model_on_data(params.input_model_path, params.input_encodings_path,
                                        params.quantization_mode, params.input_data_path, params.nonfinite)
        names = [o.name for o in model.outputs] + list(params.layerwise_check_name)
        return [model.run(feeds, names) for _, feeds in samples]

    @staticmethod
    def get_inference_session(params: InferenceSessionParameters | Mapping[str, Any]) -> InferenceSession:
        """An onnxruntime-like session of the model with its encodings."""
        return Simulator.get_quantization_sim(params).session

    @staticmethod
    def get_quantization_sim(params: InferenceSessionParameters | Mapping[str, Any]) -> QuantizationSim:
        """The quantization simulation of the model; ``.session`` runs it.
        In integer mode, tensors the encodings do not cover are calibrated
        on synthetic data (with a warning): give a complete file."""
        params = _parse(params, InferenceSessionParameters)
        return QuantizationSim(SimulatedModel(params.input_model_path, params.input_encodings_path,
                                              params.quantization_mode, nonfinite=params.nonfinite))

    @staticmethod
    def compare_model_by_inference(params: InferenceCheckerParameters | Mapping[str, Any]) -> ComparisonResult:
        """Model 1's outputs against model 0's on every data file; and, for
        the task heads of model 0 recognised (or of ``task``), model 1's
        detections or classes against model 0's (``agreement``)."""
        params = _parse(params, InferenceCheckerParameters)
        samples, models = _pair_on_data(params)
        names = [[o.name for o in m.outputs] for m in models]
        if len(names[0]) != len(names[1]):
            raise SimulatorError(f"model 0 has {len(names[0])} outputs {names[0]}, model 1 has "
                                 f"{len(names[1])} {names[1]}: outputs are compared in order")
        total, per_output, values = ErrorStats(), {n: ErrorStats() for n in names[0]}, {}
        heads = _agreements(params, samples)
        for sample, feeds in samples:
            stats = ErrorStats()
            outputs = [models[0].run(feeds), models[1].run(feeds)]
            for name, reference, test in zip(names[0], *outputs):
                for target in (stats, total, per_output[name]):
                    _update(target, reference, test, name)
            for head in heads.values():
                head.update(dict(zip(names[0], outputs[0])), dict(zip(names[0], outputs[1])))
            values[sample] = metric_value(stats, params.metric)
        aggregate = metric_value(total, params.metric)
        return ComparisonResult(metric=params.metric, threshold=params.threshold, values=values, aggregate=aggregate,
                                passed=passes(aggregate, params.metric, params.threshold),
                                outputs={n: metric_value(s, params.metric) for n, s in per_output.items()},
                                agreement={n: a.record() for n, a in heads.items()} or None)

    @staticmethod
    def compare_model_by_layer(params: LayerwiseCheckerParameters | Mapping[str, Any]) -> LayerwiseResult:
        """Each ``(tensor of model 0, tensor of model 1)`` pair of
        ``layer_match_info`` compared on every data file; with
        ``export_featuremap``, each sample's feature maps written to
        ``<export_featuremap_path>/model_<i>/<file stem>.npz``, keyed by tensor name."""
        params = _parse(params, LayerwiseCheckerParameters)
        samples, models = _pair_on_data(params)
        pairs = params.layer_match_info
        stats = [(ErrorStats(), {}) for _ in pairs]
        export = Path(params.export_featuremap_path) if params.export_featuremap else None
        for sample, feeds in samples:
            maps = [m.run(feeds, [p[i] for p in pairs]) for i, m in enumerate(models)]
            for (total, values), (a, b), reference, test in zip(stats, pairs, *maps):
                one = ErrorStats()
                for target in (one, total):
                    _update(target, reference, test, f"{a} / {b}")
                values[sample] = metric_value(one, params.metric)
            if export is not None:
                _export(export, sample, pairs, maps)
        layers = []
        for (total, values), (a, b) in zip(stats, pairs):
            aggregate = metric_value(total, params.metric)
            layers.append(LayerComparison(tensor_0=a, tensor_1=b, values=values, aggregate=aggregate,
                                          passed=passes(aggregate, params.metric, params.threshold)))
        return LayerwiseResult(metric=params.metric, threshold=params.threshold, layers=layers,
                               passed=all(layer.passed for layer in layers),
                               export_path=None if export is None else str(export))


def _parse(params: Any, schema: type[Schema]) -> Schema:
    """The call's parameters as ``schema`` (a dict is validated into one)."""
    if isinstance(params, schema):
        return params
    if isinstance(params, Mapping):
        return schema.model_validate(dict(params))
    raise TypeError(f"expected {schema.__name__} (or a dict of its fields), got {type(params).__name__}")


def _agreements(params: InferenceCheckerParameters, samples) -> dict[str, Agreement]:
    """An Agreement per task head of model 0 (compiler/agreement.py),
    recognised on its float graph as imported for the first sample's shapes."""
    if params.task == "none" or not samples:
        return {}
    shapes = {name: np.shape(value) for name, value in samples[0][1].items()}
    try:
        return agreements(import_onnx(params.input_model_path_0, shapes=shapes), params.task)
    except QuantizationError as exc:
        raise SimulatorError(str(exc)) from None


def _model_on_data(model: str, encodings: str | None, mode: str, data: str, nonfinite: str | None):
    """(samples, model): the data folder read for the model's inputs; in
    integer mode its samples calibrate what the encodings do not cover."""
    samples = load_samples(data, model_inputs(OnnxModel(model)))
    return samples, SimulatedModel(model, encodings, mode, calibration=[feeds for _, feeds in samples],
                                   nonfinite=nonfinite)


def _pair_on_data(params: InferenceCheckerParameters):
    """(samples, [model 0, model 1]) for a comparison."""
    samples, first = _model_on_data(params.input_model_path_0, params.input_encodings_path_0, params.mode(0),
                                    params.input_data_path, params.nonfinite)
    second = SimulatedModel(params.input_model_path_1, params.input_encodings_path_1, params.mode(1),
                            calibration=[feeds for _, feeds in samples], nonfinite=params.nonfinite)
    if len(first.inputs) != len(second.inputs) or not all(_agree(a, b) for a, b in zip(first.inputs, second.inputs)):
        raise SimulatorError(f"the models take different inputs: {first.inputs} and {second.inputs}")
    return samples, [first, second]


def _agree(a, b) -> bool:
    """Whether two models' inputs can take the same arrays: the same shape,
    or, where either has symbolic dims, the same rank and no two fixed dims
    that differ (each sample is then checked against both)."""
    if a.shape is None or b.shape is None:
        return True
    return len(a.shape) == len(b.shape) and all(not isinstance(x, int) or not isinstance(y, int) or x == y
                                                for x, y in zip(a.shape, b.shape))


def _update(stats: ErrorStats, reference: np.ndarray, test: np.ndarray, what: str) -> None:
    if np.shape(reference) != np.shape(test):
        raise SimulatorError(f"{what}: model 0 gives shape {list(np.shape(reference))}, model 1 "
                             f"{list(np.shape(test))}")
    stats.update(reference, test)


def _export(folder: Path, sample: str, pairs: list[tuple[str, str]], maps: list[list[np.ndarray]]) -> None:
    for index, arrays in enumerate(maps):
        target = folder / f"model_{index}"
        target.mkdir(parents=True, exist_ok=True)
        with atomic_output(target / f"{Path(sample).stem}.npz") as handle:
            np.savez(handle, **{p[index]: a for p, a in zip(pairs, arrays)})
