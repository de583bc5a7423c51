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

A model whose inputs have symbolic dims (``['batch', 3, 'height', 'width']``,
PaddlePaddle's -1) is compiled in its mode when it runs, once per input
signature (the shapes of the inputs fed), as compiler.backend does and by
the same cache (compiler/signatures.py); a model whose dims are all fixed is
compiled at once.
"""
from __future__ import annotations

import os
import warnings
from typing import Iterable, Mapping, NamedTuple, Sequence

import numpy as np
import onnx

from codegen.cpu import lower_with_names
from compiler.errors import ModelImportError
from compiler.frontend import OnnxModel
from compiler.frontend.shapes import declared_dims
from compiler.quantize import BIAS_CORRECTIONS, WEIGHT_ROUNDINGS, QuantizationWarning, given_roundings, quantize_model
from compiler.signatures import CACHE_SIZE, Signature, SignatureCache, fixed_signature, input_signature
from compiler.simulator.data import TensorSpec
from compiler.simulator.errors import SimulatorError
from ir.errors import IRError
from ir.graph import Graph, walk
from ir.types import QuantParams, parse_dtype
from passes.infra import PassContext
from passes.prune_conv_taps import prune_conv_taps
from passes.quant.encodings import Encodings, import_encodings
from passes.quant.fake_quant import dequantize, fake_quantize, unknown_tensors
from runtime.errors import ExecutionError
from runtime.executor import Executor
from runtime.nonfinite import NonFiniteInputError, NonFinitePolicyError, check_feeds, nonfinite_policy

MODES = ("fake", "integer")


class Specialisation(NamedTuple):
    """The model compiled in its mode for one input signature."""
    graph: Graph
    executor: Executor
    slots: dict[str, tuple[str, QuantParams | None]]


class SimulatedModel:
    """A model + encodings in ``mode``; :meth:`run` gives any named tensor.
    ``inputs`` and ``outputs`` are the model's, with its symbolic dims (a
    name, or None for an unnamed or -1 dim) where it has them."""

    def __init__(self, model: str | os.PathLike, encodings: str | os.PathLike | None, mode: str = "fake",
                 calibration: Iterable[Mapping[str, np.ndarray]] | None = None, nonfinite: str | None = None,
                 cache_size: int = CACHE_SIZE):
        if mode not in MODES:
            raise SimulatorError(f"quantization_mode {mode!r} is not one of {list(MODES)}")
        self.mode = mode
        try:
            nonfinite = nonfinite_policy(nonfinite)
        except NonFinitePolicyError as exc:
            raise SimulatorError(str(exc)) from None
        self.nonfinite = nonfinite
        """What integer mode does with NaN and ±Inf in an input (runtime/nonfinite.py)."""
        self.encodings = Encodings() if encodings is None else import_encodings(encodings)
        self.source = model
        onnx_model = OnnxModel(model)
        self.label = onnx_model.label
        self.dims = onnx_model.input_dims()
        self.calibration = None if calibration is None else list(calibration)
        """The samples that calibrate, in integer mode, what the encodings do not cover."""
        self._compiled: SignatureCache[Specialisation] = SignatureCache(self._compile, cache_size)
        fixed = fixed_signature(self.dims)
        if fixed is None:
            self.inputs = model_inputs(onnx_model)
            self.outputs = model_outputs(onnx_model)
        else:
            graph = self._compiled.get(fixed).graph
            self.inputs = [tensor_spec(v) for v in graph.inputs]
            self.outputs = [tensor_spec(v) for v in graph.outputs]

    @property
    def signatures(self) -> list[Signature]:
        """The input signatures compiled and cached, least recently used first."""
        return self._compiled.signatures

    @property
    def graph(self) -> Graph:
        """The graph run: the only one, or that of the latest signature run."""
        return self._current().graph

    @property
    def tensor_names(self) -> list[str]:
        """The tensors :meth:`run` can return (for the latest signature run)."""
        return list(self._current().slots)

    def signature(self, feeds: Mapping[str, np.ndarray]) -> Signature:
        """The shapes of ``feeds``, checked against the model's inputs."""
        missing = [name for name in self.dims if name not in feeds]
        if missing:
            raise SimulatorError(f"input {missing[0]!r} is missing; the model's inputs are {list(self.dims)}")
        try:
            return input_signature(self.dims, {name: np.shape(feeds[name]) for name in self.dims}, self.label)
        except ModelImportError as exc:
            raise SimulatorError(str(exc)) from None

    def run(self, feeds: Mapping[str, np.ndarray], names: Sequence[str] | None = None) -> list[np.ndarray]:
        """The tensors ``names`` (default: the graph outputs, in order) for ``feeds``."""
        compiled = self._compiled.get(self.signature(feeds))
        names = [o.name for o in self.outputs] if names is None else list(names)
        missing = [n for n in names if n not in compiled.slots]
        if missing:
            raise SimulatorError(f"the model has no tensor {missing[0]!r} in {self.mode} mode"
                                 + (" (the accelerator does not store it: it is fused into a layer)"
                                    if self.mode == "integer" else "")
                                 + f"; tensors it has: {_some(list(compiled.slots))}")
        if self.mode == "integer":
            try:
                check_feeds(feeds, self.nonfinite)
            except NonFiniteInputError as exc:
                raise SimulatorError(str(exc)) from None
        slots = {n: compiled.slots[n] for n in names}
        try:
            results = compiled.executor.run(feeds, fetch=list(dict.fromkeys(s for s, _ in slots.values())))
        except ExecutionError as exc:  # a NaN reaching a fake-quantized tensor, among others
            raise SimulatorError(f"running the model in {self.mode} mode: {exc}") from None
        return [_dequantize(results[slot], params) for slot, params in slots.values()]

    def _compile(self, signature: Signature) -> Specialisation:
        """The model in its mode for ``signature``: imported with those input
        shapes (when it has dynamic dims), simplified, quantized, lowered. In
        integer mode the calibration samples of that signature calibrate
        what the encodings do not cover (none: synthetic data, with a warning)."""
        dynamic = fixed_signature(self.dims) is None
        shapes = dict(zip(self.dims, signature)) if dynamic else None
        try:
            if self.mode == "integer":
                graph = quantize_model(self.source, encodings=self.encodings, shapes=shapes,
                                       calibration_data=self._calibration_for(signature)).graph
            else:
                graph = _fake_graph(quantize_model(self.source, encodings=Encodings(), shapes=shapes).float_graph,
                                    self.encodings)
        except ModelImportError as exc:
            if not dynamic:
                raise
            raise type(exc)(exc.reason, op=exc.op, node=exc.node, opset=exc.opset,
                            file=f"{exc.file or self.label}, with input shapes {_shapes(shapes)}") from None
        program, names = lower_with_names(graph)
        return Specialisation(graph, Executor(program), _fetchable(graph, names))

    def _calibration_for(self, signature: Signature) -> list[Mapping[str, np.ndarray]] | None:
        """The calibration samples whose inputs have the shapes of ``signature``."""
        if self.calibration is None:
            return None
        matching = [feeds for feeds in self.calibration
                    if all(np.shape(feeds.get(name)) == shape for name, shape in zip(self.dims, signature))]
        return matching or None

    def _current(self) -> Specialisation:
        if self._compiled.latest is None:
            raise SimulatorError(f"{self.label}: nothing is compiled yet: the model has dynamic input dims "
                                 f"{_shapes(self.dims)} and is compiled for the shapes of the inputs it runs")
        return self._compiled.latest


def _fake_graph(float_graph: Graph, encodings: Encodings) -> Graph:
    """The float graph with the file's tensors fake-quantized (weights
    before their padding-only taps are pruned: a weight's grid is its whole
    kernel's)."""
    named = set(encodings.params) | set(encodings.float_tensors)
    unknown = unknown_tensors(float_graph, named)
    if unknown:
        warnings.warn(f"{len(unknown)} tensors of the encodings file are not in the model as Tessera compiles it "
                      f"(folded away or misnamed), ignored: {unknown[:8]}", QuantizationWarning, stacklevel=3)
    graph = fake_quantize(float_graph, encodings.params, weights=encodings.weights,
                          bias_corrections=encodings.quantizer_args.get(BIAS_CORRECTIONS),
                          weight_roundings=given_roundings(encodings.quantizer_args.get(WEIGHT_ROUNDINGS, {})))
    with PassContext():  # the padding-only taps go, as in every float program (passes/prune_conv_taps.py)
        return prune_conv_taps(graph)


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


def model_inputs(model: OnnxModel) -> list[TensorSpec]:
    """The inputs an ONNX model declares, symbolic dims and all."""
    return [TensorSpec(v.name, v.dims, np.dtype(v.dtype)) for v in model.inputs]


def model_outputs(model: OnnxModel) -> list[TensorSpec]:
    """The outputs an ONNX model declares (shape None where it declares none)."""
    specs = []
    for value in model.proto.graph.output:
        dims = declared_dims(value)
        try:
            dtype = np.dtype(parse_dtype(onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)))
        except (KeyError, ValueError, TypeError, IRError):
            dtype = np.dtype(np.float32)  # an output the import will refuse, or type by its producer
        specs.append(TensorSpec(value.name, None if dims is None else tuple(dims), dtype))
    return specs


def _shapes(shapes: Mapping) -> str:
    return "{" + ", ".join(f"{name!r}: {'?' if s is None else ['?' if d is None else d for d in s]}"
                           for name, s in shapes.items()) + "}"


def _some(names: list[str], count: int = 12) -> str:
    return ", ".join(names[:count]) + (f", ... ({len(names)} in all)" if len(names) > count else "")
