"""IENetwork and IENetLayer: a model's layers as the Inference-Engine API
shows them (ie_api.py re-exports them, the module name the spec's reprs
show). An ONNX model is read through compiler/network.py (onnx is imported
then, not with this module); a compiled binary through its provenance, its
layers' places fixed."""
from __future__ import annotations

import math
import os
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from runtime.errors import TesseraError
from runtime.files import FileError, open_regular
from runtime.hardware import ACCELERATOR, HOST
from runtime.inference_engine.api_types import (
    LAYOUTS,
    PRECISIONS,
    DataPtr,
    InferenceEngineError,
    InputInfo,
    InputInfoPtr,
    Outputs,
)
from runtime.inference_engine.layer_types import compiled_type, ir_type
from runtime.inference_engine.provenance import credited
from runtime.kernels.limits import MAX_ELEMENTS


class IENetLayer:
    """One layer: ``name`` (the ONNX node's), ``type`` (its IR layer type:
    runtime/inference_engine/layer_types.py), ``precision``, ``affinity``
    (get/set: '' until set), ``weights`` ('weights', 'biases', other
    constant inputs by name), ``params`` (attributes, and ``onnx_type``: the
    ONNX op), ``parents`` and ``children`` (layer names)."""

    def __init__(self, name: str, type: str, precision: str = "FP32", params: dict | None = None,
                 weights: dict | None = None, fixed: str | None = None):
        self.name, self.type, self.precision = name, type, precision
        self.params = dict(params or {})
        self.weights = dict(weights or {})
        self.parents: list[str] = []
        self.children: list[str] = []
        self._affinity = fixed or ""
        self._fixed = fixed

    @property
    def affinity(self) -> str:
        return self._affinity

    @affinity.setter
    def affinity(self, device: str) -> None:
        if not isinstance(device, str):
            raise InferenceEngineError(f"layer {self.name!r}: affinity must be a device name string, got "
                                       f"{type(device).__name__}")
        if self._fixed is not None and device != self._fixed:
            raise InferenceEngineError(f"layer {self.name!r} is compiled into a binary on {self._fixed}; its "
                                       "affinity cannot change (compile the ONNX model instead)")
        self._affinity = device

    def __repr__(self) -> str:
        return f"<IENetLayer {self.name!r} {self.type} affinity={self.affinity!r}>"


class IENetwork:
    """A model: an ONNX file (path, bytes with ``init_from_buffer``, or a
    ModelProto), or a Tessera binary (compiled already: its layers' places
    are fixed). ``weights`` is accepted as the spec has it and ignored with
    a one-line note on stderr: the model holds its weights (the samples
    pass ``<model>.bin``, which an ONNX model does not have), as OpenVINO's
    reader ignored it for ONNX."""

    def __init__(self, model=None, weights=None, init_from_buffer: bool = False):
        if model is None:
            raise InferenceEngineError("IENetwork needs a model: the path of an ONNX file or a Tessera binary")
        self._binary = None
        self._proto = None
        self._extra: list[tuple[str, str]] = []
        source = bytes(model) if init_from_buffer else model
        if weights is not None:
            print(f"inference_engine: note: weights {_shown(weights)} ignored: the model "
                  f"{_shown(model)} holds its weights", file=sys.stderr)
        if not isinstance(source, (str, os.PathLike, bytes)) and not hasattr(source, "SerializeToString"):
            raise InferenceEngineError(f"IENetwork: model must be a path, the bytes of a model with "
                                       f"init_from_buffer=True, or an onnx ModelProto; got {type(model).__name__}")
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if path.suffix.lower() == ".xml":
                raise InferenceEngineError(f"{str(path)!r} is an OpenVINO IR; Tessera reads ONNX models (export "
                                           "the model to ONNX) and its own binaries")
            from runtime.binary import MAGIC

            with _regular(path, "model file") as f:
                head = f.read(len(MAGIC))
            if head == MAGIC:
                self._load_binary(str(path))
                return
        self._load_onnx(source)

    @classmethod
    def from_ir(cls, model, weights=None) -> IENetwork:
        """The 2018 constructor (deprecated there): as ``IENetwork(model, weights)``."""
        return cls(model=model, weights=weights)

    # ------------------------------------------------------------ reading
    def _load_onnx(self, source) -> None:
        try:
            from compiler.frontend.model import OnnxModel
            from compiler.network import network_layers
        except ImportError as exc:
            raise InferenceEngineError(f"reading an ONNX model needs Tessera's compiler (onnx): {exc}; "
                                       "compile ahead of time and load the binary here") from exc
        try:
            model = OnnxModel(source)
        except TesseraError as exc:
            raise InferenceEngineError(f"cannot read the model: {exc}") from exc
        self._proto = model.proto
        self.name = model.proto.graph.name or Path(str(model.label)).stem
        self._inputs = OrderedDict()
        self._declared = {spec.name: None if spec.dims is None else list(spec.dims) for spec in model.inputs}
        self._dtypes = {spec.name: spec.dtype.name for spec in model.inputs}
        for spec in model.inputs:
            dims = [d if isinstance(d, int) and d >= 0 else None for d in (spec.dims or ())]
            if dims and dims[0] is None:
                dims[0] = 1  # a symbolic batch: the batch size, 1 until set
            self._inputs[spec.name] = InputInfo(spec.name, dims, PRECISIONS.get(spec.dtype.name, "FP32"),
                                                LAYOUTS.get(len(dims), "ANY"))
        self._outputs = [v.name for v in model.proto.graph.output]
        layers = [IENetLayer(name, "Input", info.precision) for name, info in self._inputs.items()]
        producers = {name: name for name in self._inputs}
        for layer in network_layers(model):
            ie = IENetLayer(layer.name, ir_type(layer.type, layer.weights), "FP32",
                            {**_params(layer.params), "onnx_type": layer.type}, layer.weights)
            ie.parents = list(dict.fromkeys(producers[t] for t in layer.inputs if t in producers))
            for tensor in layer.outputs:
                producers[tensor] = layer.name
            layers.append(ie)
        self._layer_outputs = {layer.name: layer.outputs for layer in network_layers(model)}
        self._link(layers)

    def _load_binary(self, path: str) -> None:
        from runtime.binary import read_binary
        from runtime.compiled import CpuSegment

        try:
            self._binary = read_binary(path)
        except TesseraError as exc:
            raise InferenceEngineError(f"cannot load the binary {path!r}: {exc}") from exc
        model = self._binary
        self.name = Path(path).stem
        self._inputs = OrderedDict((t.name, InputInfo(t.name, list(t.shape), PRECISIONS.get(t.dtype, "FP32"),
                                                      LAYOUTS.get(len(t.shape), "ANY"))) for t in model.inputs)
        self._outputs = [t.name for t in model.outputs]
        layers = [IENetLayer(name, "Input", info.precision, fixed=HOST) for name, info in self._inputs.items()]
        for segment in model.segments:
            if isinstance(segment, CpuSegment):
                for step in segment.program.steps:
                    layers.append(IENetLayer(credited(step.name), compiled_type(step.kernel), fixed=HOST))
            else:
                for layer in segment.layers:
                    layers += [IENetLayer(node, compiled_type(layer.op), "I8", fixed=ACCELERATOR)
                               for node in layer.onnx_nodes]
        self._layer_outputs = {}
        unique = OrderedDict()
        for layer in layers:
            unique.setdefault(layer.name, layer)
        self._link(list(unique.values()))

    def _link(self, layers: list[IENetLayer]) -> None:
        self._layers = OrderedDict((layer.name, layer) for layer in layers)
        for layer in layers:
            for parent in layer.parents:
                self._layers[parent].children.append(layer.name)

    # ------------------------------------------------------------ attributes
    @property
    def inputs(self) -> dict[str, InputInfo]:
        """Input name -> its shape list, which also has ``shape``,
        ``precision`` and ``layout`` (InputInfo)."""
        return dict(self._inputs)

    @property
    def input_info(self) -> dict[str, InputInfoPtr]:
        """Input name -> InputInfoPtr (2020.2+: ``input_data.shape``, ``precision``)."""
        return {name: InputInfoPtr(info) for name, info in self._inputs.items()}

    @property
    def outputs(self) -> Outputs:
        """The output names (a list) that also answers ``outputs[name]``
        with a DataPtr (its shape known once a plugin has loaded the network)."""
        shapes = getattr(self, "_output_shapes", {})
        return Outputs(OrderedDict((name, DataPtr(name, shapes.get(name), "FP32",
                                                  LAYOUTS.get(len(shapes[name]), "ANY") if name in shapes else "ANY"))
                                   for name in self._output_keys()))

    def _output_keys(self) -> list[str]:
        return self._outputs + [key for key, _ in self._extra]

    @property
    def layers(self) -> OrderedDict:
        """Layer name -> IENetLayer, inputs first, then in graph (topological) order."""
        return self._layers

    @property
    def batch_size(self) -> int:
        first = next(iter(self._inputs.values()), None)
        return int(first.shape[0]) if first is not None and first.shape and first.shape[0] else 1

    @batch_size.setter
    def batch_size(self, size: int) -> None:
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
            raise InferenceEngineError(f"batch_size must be a positive integer, got {size!r}")
        self._editable("batch_size")
        for info in self._inputs.values():
            if not info.shape:
                raise InferenceEngineError(f"input {info.name!r} is a scalar: it has no batch dimension")
        for info in self._inputs.values():
            info._set_shape([int(size)] + list(info.shape[1:]))

    def reshape(self, input_shapes: Mapping[str, Sequence[int]]) -> None:
        """New input shapes, by input name (each dim a positive integer)."""
        self._editable("reshape")
        for name, shape in dict(input_shapes).items():
            if name not in self._inputs:
                raise InferenceEngineError(f"reshape: the network has no input {name!r}; its inputs are "
                                           f"{list(self._inputs)}")
            dims = list(shape)
            if not all(isinstance(d, (int, np.integer)) and d > 0 for d in dims):
                raise InferenceEngineError(f"reshape: input {name!r}: every dim must be a positive integer, got "
                                           f"{dims}")
            declared = self._declared.get(name)
            if declared is not None and len(dims) != len(declared):
                raise InferenceEngineError(f"reshape: input {name!r} has rank {len(declared)} "
                                           f"({self._inputs[name].shape}); the shape {[int(d) for d in dims]} has "
                                           f"rank {len(dims)}")
            if math.prod(int(d) for d in dims) > MAX_ELEMENTS:
                raise InferenceEngineError(f"reshape: input {name!r}: the shape {[int(d) for d in dims]} has "
                                           f"{math.prod(int(d) for d in dims)} elements, more than the limit of "
                                           f"{MAX_ELEMENTS} (runtime.kernels.limits.MAX_ELEMENTS)")
            self._inputs[name]._set_shape([int(d) for d in dims])

    def add_outputs(self, outputs) -> None:
        """Mark layers as extra outputs: a layer name, a list of names, or
        (name, port) tuples; the result is keyed by the layer name (with
        ``.port`` for a port other than 0)."""
        self._editable("add_outputs")
        for item in [outputs] if isinstance(outputs, (str, tuple)) else list(outputs):
            name, port = (item, 0) if isinstance(item, str) else tuple(item)
            tensors = self._layer_outputs.get(name)
            if tensors is None:
                raise InferenceEngineError(f"add_outputs: the network has no layer {name!r}")
            if not 0 <= port < len(tensors):
                raise InferenceEngineError(f"add_outputs: layer {name!r} has {len(tensors)} output port(s), not "
                                           f"{port}")
            key = name if port == 0 else f"{name}.{port}"
            if key not in self._output_keys() and tensors[port] not in self._outputs:
                self._extra.append((key, tensors[port]))

    def _editable(self, what: str) -> None:
        if self._binary is not None:
            raise InferenceEngineError(f"{what}: this network is a compiled binary; change the ONNX model instead")

    def _model_proto(self):
        """The ONNX model with the extra outputs added, and each input dim
        that ``batch_size`` or ``reshape`` changed from a fixed value made
        symbolic: the compile then takes it from the shapes given
        (:meth:`_shapes`), as it takes a dim the model leaves symbolic (the
        outputs' batch dims and the value_info hints of the old shapes go
        with it)."""
        import onnx

        proto = onnx.ModelProto()
        proto.CopyFrom(self._proto)
        relaxed, old_batches = False, set()
        for value in proto.graph.input:
            declared, info = self._declared.get(value.name), self._inputs.get(value.name)
            if declared is None or info is None:
                continue
            for axis, (want, have) in enumerate(zip(declared, info.shape)):
                if isinstance(want, int) and want >= 0 and want != have:
                    value.type.tensor_type.shape.dim[axis].dim_param = f"{value.name}_{axis}"
                    relaxed = True
                    if axis == 0:
                        old_batches.add(want)
        if relaxed:
            del proto.graph.value_info[:]
        for value in proto.graph.output:
            dims = value.type.tensor_type.shape.dim
            if old_batches and len(dims) and dims[0].HasField("dim_value") and dims[0].dim_value in old_batches:
                dims[0].dim_param = "batch"
        for _, tensor in self._extra:
            proto.graph.output.append(onnx.ValueInfoProto(name=tensor))
        return proto

    def _output_names(self) -> dict[str, str]:
        """Result key -> tensor name in the engine's outputs."""
        return {**{name: name for name in self._outputs}, **dict(self._extra)}

    def _shapes(self) -> dict[str, list[int]]:
        missing = [name for name, info in self._inputs.items() if any(d is None for d in info.shape)]
        if missing:
            raise InferenceEngineError(f"input(s) {missing} have symbolic dims "
                                       f"{[self._inputs[n].shape for n in missing]}: give them with "
                                       "IENetwork.reshape before loading")
        return {name: list(info.shape) for name, info in self._inputs.items()}

    def __repr__(self) -> str:
        return f"<inference_engine.ie_api.IENetwork {self.name!r}>"


def _params(params: Mapping[str, Any]) -> dict[str, str]:
    """Attributes as the IR's string parameters ('3,3' for a list)."""
    out = {}
    for key, value in params.items():
        if isinstance(value, (list, tuple)):
            out[key] = ",".join(str(v) for v in value)
        elif isinstance(value, bytes):
            out[key] = value.decode(errors="replace")
        elif isinstance(value, np.ndarray):
            out[key] = ",".join(str(v) for v in value.reshape(-1)) if value.size <= 64 else f"<array {value.shape}>"
        else:
            out[key] = str(value)
    return out


def _shown(value) -> str:
    """A model or weights argument for a message: a path quoted, else its kind."""
    return repr(os.fspath(value)) if isinstance(value, (str, os.PathLike)) else f"({type(value).__name__})"


def _regular(path, what: str):
    """``path`` opened if it is a regular file (a directory, FIFO or device
    is an InferenceEngineError saying which, at once: runtime.files)."""
    try:
        return open_regular(path, None, what)
    except FileError as exc:
        raise InferenceEngineError(str(exc)) from None
