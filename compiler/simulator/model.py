"""One model with its encodings, ready to run in one quantization mode: what
every Simulator call runs.

- ``"fake"``: the model as Tessera simplifies it (compiler/quantize.py with
  no encodings: BatchNorm folded, nothing quantized), then every tensor the
  encodings file names fake-quantized (passes/quant/fake_quant.py), run on
  the float CPU kernels.
- ``"integer"``: compiler/quantize.py's quantized, partitioned graph with
  the file's grids: accelerator layers as the bit-exact integer kernels
  (what the device simulator computes), the rest in float. Tensors the file
  does not cover are calibrated on the calibration samples given. Inputs
  holding NaN or ±Inf follow the runtime's non-finite policy
  (runtime/nonfinite.py), as the device paths do.

Both run through the one CPU executor, which returns any named tensor.
"""
from __future__ import annotations

import os
import warnings
from typing import Iterable, Mapping, Sequence

import numpy as np

from codegen.cpu import lower_with_names
from compiler.quantize import BIAS_CORRECTIONS, WEIGHT_ROUNDINGS, QuantizationWarning, given_roundings, quantize_model
from compiler.simulator.data import TensorSpec
from compiler.simulator.errors import SimulatorError
from ir.graph import Graph, walk
from ir.types import QuantParams
from passes.quant.encodings import Encodings, import_encodings
from passes.quant.fake_quant import dequantize, fake_quantize, unknown_tensors
from runtime.errors import ExecutionError
from runtime.executor import Executor
from runtime.nonfinite import NonFiniteInputError, NonFinitePolicyError, check_feeds, nonfinite_policy

MODES = ("fake", "integer")


class SimulatedModel:
    """A model + encodings in ``mode``; :meth:`run` gives any named tensor."""

    def __init__(self, model: str | os.PathLike, encodings: str | os.PathLike | None, mode: str = "fake",
                 calibration: Iterable[Mapping[str, np.ndarray]] | None = None, nonfinite: str | None = None):
        if mode not in MODES:
            raise SimulatorError(f"quantization_mode {mode!r} is not one of {list(MODES)}")
        self.mode = mode
        try:
            nonfinite = nonfinite_policy(nonfinite)
        except NonFinitePolicyError as exc:
            raise SimulatorError(str(exc)) from None
        self.nonfinite = nonfinite
        """What integer mode does with NaN and ±Inf in an input (runtime/nonfinite.py)."""
        parsed = Encodings() if encodings is None else import_encodings(encodings)
        if mode == "integer":
            quantized = quantize_model(model, encodings=parsed, calibration_data=calibration)
            graph = quantized.graph
        else:
            graph = _fake_graph(quantize_model(model, encodings=Encodings()).float_graph, parsed)
        self.graph = graph
        program, names = lower_with_names(graph)
        self._executor = Executor(program)
        self._slots = _fetchable(graph, names)
        self.inputs = [tensor_spec(v) for v in graph.inputs]
        self.outputs = [tensor_spec(v) for v in graph.outputs]

    @property
    def tensor_names(self) -> list[str]:
        """The tensors :meth:`run` can return."""
        return list(self._slots)

    def run(self, feeds: Mapping[str, np.ndarray], names: Sequence[str] | None = None) -> list[np.ndarray]:
        """The tensors ``names`` (default: the graph outputs, in order) for ``feeds``."""
        names = [o.name for o in self.outputs] if names is None else list(names)
        missing = [n for n in names if n not in self._slots]
        if missing:
            raise SimulatorError(f"the model has no tensor {missing[0]!r} in {self.mode} mode"
                                 + (" (the accelerator does not store it: it is fused into a layer)"
                                    if self.mode == "integer" else "")
                                 + f"; tensors it has: {_some(self.tensor_names)}")
        if self.mode == "integer":
            try:
                check_feeds(feeds, self.nonfinite)
            except NonFiniteInputError as exc:
                raise SimulatorError(str(exc)) from None
        slots = {n: self._slots[n] for n in names}
        try:
            results = self._executor.run(feeds, fetch=list(dict.fromkeys(s for s, _ in slots.values())))
        except ExecutionError as exc:  # a NaN reaching a fake-quantized tensor, among others
            raise SimulatorError(f"running the model in {self.mode} mode: {exc}") from None
        return [_dequantize(results[slot], params) for slot, params in slots.values()]


def _fake_graph(float_graph: Graph, encodings: Encodings) -> Graph:
    """The float graph with the file's tensors fake-quantized."""
    named = set(encodings.params) | set(encodings.float_tensors)
    unknown = unknown_tensors(float_graph, named)
    if unknown:
        warnings.warn(f"{len(unknown)} tensors of the encodings file are not in the model as Tessera compiles it "
                      f"(folded away or misnamed), ignored: {unknown[:8]}", QuantizationWarning, stacklevel=3)
    return fake_quantize(float_graph, encodings.params, weights=encodings.weights,
                         bias_corrections=encodings.quantizer_args.get(BIAS_CORRECTIONS),
                         weight_roundings=given_roundings(encodings.quantizer_args.get(WEIGHT_ROUNDINGS, {})))


def _fetchable(graph: Graph, slot_names: Mapping) -> dict[str, tuple[str, QuantParams | None]]:
    """Tensor name -> (executor slot, grid to dequantize it with, or None):
    float tensors by their names, then the integer tensors of accelerator
    layers by the float tensor each stands for."""
    found: dict[str, tuple[str, QuantParams | None]] = {}
    values = list(graph.inputs) + [v for _, n in walk(graph) for v in n.outputs]
    for value in values:
        if value.type.dtype == np.float32 and value.name not in found and value in slot_names:
            found[value.name] = (slot_names[value], None)
    for _, node in walk(graph):
        tensor, value = node.annotations.get("tensor"), node.outputs[0] if node.outputs else None
        if tensor and tensor not in found and value is not None and value.quant is not None:
            found[tensor] = (slot_names[value], value.quant)
    return found


def _dequantize(array: np.ndarray, params: QuantParams | None) -> np.ndarray:
    """An integer tensor as reals, by the DequantizeLinear kernel; a float one as it is."""
    return array if params is None else dequantize(array, params)


def tensor_spec(value) -> TensorSpec:
    """The TensorSpec of an IR value."""
    return TensorSpec(value.name, tuple(value.type.shape), np.dtype(value.type.dtype))


def _some(names: list[str], count: int = 12) -> str:
    return ", ".join(names[:count]) + (f", ... ({len(names)} in all)" if len(names) > count else "")
