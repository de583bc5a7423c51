"""IENetwork, IEPlugin, ExecutableNetwork, InferRequest (module name as the
spec's reprs show: ``inference_engine.ie_api``; the loaded network and its
requests live in executable.py, the constants, status codes and tensor
descriptions in api_types.py, all re-exported here).

Each class is a thin face over a Tessera piece (docs/inference_engine.md):

* IENetwork reads the model's layers through compiler/network.py (onnx is
  imported then, not with this module) or a compiled binary's provenance;
* IEPlugin's devices are FPGA (the accelerator, on the simulator, with
  FWDNXT's CPU fallback for what it cannot run), CPU (the float32 kernels)
  and HETERO:<devices> (the affinity pass's fallback policy, or the user's
  affinities); ``load`` compiles with compiler.compile.compile_model and
  Inits a runtime Engine;
* InferRequests run on that Engine from threads of their own: runs overlap
  segment by segment (runtime.segments.SegmentExecutor);
* perf counts: the device layers' modelled times (the cycle model, per
  fused layer, mapped back to its ONNX layers) and the CPU kernels'
  measured times.
"""
from __future__ import annotations

import importlib.util
import math
import os
import sys
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from runtime.errors import TesseraError
from runtime.files import MAX_TEXT_BYTES, FileError, check_regular, open_regular
from runtime.inference_engine.api_types import (  # noqa: F401 - re-exported: the API's names live in ie_api
    AT_LOAD,
    BINARY,
    CALIBRATION_IMAGES,
    CONFIG_KEYS,
    DEFERRED,
    DEVICES,
    HETERO,
    LAYOUTS,
    NOT_QUANTIZED,
    PRECISIONS,
    VERSION,
    Blob,
    DataPtr,
    InferenceEngineError,
    InputInfo,
    InputInfoPtr,
    OutputInfo,
    Outputs,
    StatusCode,
    TensorDesc,
    WaitMode,
    get_version,
)
from runtime.inference_engine.executable import ExecutableNetwork, InferRequest  # noqa: F401
from runtime.inference_engine.layer_types import compiled_type, ir_type
from runtime.inference_engine.provenance import (
    ACCELERATOR,
    HOST,
    credited,
    placements,
    write_dot,
)
from runtime.kernels.limits import MAX_ELEMENTS
from runtime.nonfinite import POLICIES


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
            raise InferenceEngineError(f"reading an ONNX model needs Tessera's compiler (onnx, networkx): {exc}; "
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


# ---------------------------------------------------------------- the plugin
class IEPlugin:
    """``device``: "FPGA" (the accelerator, simulated; layers it cannot run
    fall back to the CPU, as FWDNXT's), "CPU" (float32 kernels) or
    "HETERO:<devices>" ("HETERO:FPGA,CPU"); "HETERO" alone takes its
    devices from TARGET_FALLBACK."""

    def __init__(self, device: str, plugin_dirs=None):
        if not isinstance(device, str):
            raise InferenceEngineError(f"device must be a string, got {type(device).__name__}")
        self._device = device
        self._config: dict[str, Any] = {"PERF_COUNT": "NO", "HETERO_DUMP_GRAPH_DOT": "NO"}
        self._extensions: list[str] = []
        head, _, rest = device.partition(":")
        if head == HETERO:
            self._kind = HETERO
            if rest:
                self._config["TARGET_FALLBACK"] = _fallback(rest, f"device {device!r}")
        elif device in DEVICES and not rest:
            self._kind = device
        else:
            raise InferenceEngineError(f"device {device!r}: Tessera's devices are FPGA (the accelerator, "
                                       "simulated), CPU and HETERO:<devices> such as 'HETERO:FPGA,CPU'")

    @property
    def device(self) -> str:
        return self._device

    @property
    def version(self) -> str:
        return VERSION

    def set_config(self, config: Mapping[str, Any]) -> None:
        """Set configuration keys (CONFIG_KEYS); an unknown key or value is an error naming it."""
        for key, value in dict(config).items():
            if key not in CONFIG_KEYS:
                raise InferenceEngineError(f"set_config: unknown key {key!r}; the keys are {sorted(CONFIG_KEYS)}")
            if key == "TARGET_FALLBACK":
                if self._kind != HETERO:
                    raise InferenceEngineError(f"set_config: TARGET_FALLBACK applies to a HETERO plugin, not "
                                               f"{self._device!r}")
                value = _fallback(value)
            elif key in ("PERF_COUNT", "HETERO_DUMP_GRAPH_DOT", "TESSERA_HWLINEAR", "TESSERA_DEMOTE_ISLANDS"):
                if value not in ("YES", "NO"):
                    raise InferenceEngineError(f"set_config: {key} takes 'YES' or 'NO', got {value!r}")
            elif key == "TESSERA_CALIBRATION_SAMPLES":
                value = _image_count(value, f"set_config: {key}")
            elif key == "TESSERA_CALIBRATOR" and not isinstance(value, str):
                raise InferenceEngineError(f"set_config: TESSERA_CALIBRATOR takes a method name, got {value!r}")
            elif key == "TESSERA_NONFINITE" and value not in POLICIES:
                raise InferenceEngineError(f"set_config: TESSERA_NONFINITE takes one of {list(POLICIES)}, got "
                                           f"{value!r}")
            self._config[key] = value

    def get_config(self, key: str) -> Any:
        if key not in CONFIG_KEYS:
            raise InferenceEngineError(f"get_config: unknown key {key!r}; the keys are {sorted(CONFIG_KEYS)}")
        return self._config.get(key)

    def _fallback(self) -> str:
        """The device priority: the plugin's device, or HETERO's list."""
        if self._kind == HETERO:
            if "TARGET_FALLBACK" not in self._config:
                raise InferenceEngineError("the HETERO plugin needs its devices: IEPlugin('HETERO:FPGA,CPU') or "
                                           "set_config({'TARGET_FALLBACK': 'FPGA,CPU'})")
            return self._config["TARGET_FALLBACK"]
        return "FPGA,CPU" if self._kind == ACCELERATOR else HOST

    def _query(self, net: IENetwork, fallback: str) -> dict:
        if net._binary is not None:
            return {}
        from compiler.network import query_network

        try:
            return query_network(net._model_proto(), fallback, shapes=net._shapes(),
                                 hwlinear=self._config.get("TESSERA_HWLINEAR") == "YES")
        except TesseraError as exc:
            raise InferenceEngineError(f"network {net.name!r}: {exc}") from exc

    def get_supported_layers(self, net: IENetwork) -> set[str]:
        """The names of the layers this device can run (HETERO: any of its
        devices); input layers and layers the compiler folds away included."""
        if net._binary is not None:
            return set(net.layers)
        devices = self._fallback()
        if self._kind == ACCELERATOR:
            devices = ACCELERATOR
        query = self._query(net, devices)
        supported = {name for name, q in query.items() if any(q.supports.values())}
        return supported | {name for name, layer in net.layers.items() if layer.type == "Input"}

    def get_unsupported_reasons(self, net: IENetwork) -> dict[str, str]:
        """Tessera's addition: layer -> why this device cannot run it (the target's rule)."""
        devices = ACCELERATOR if self._kind == ACCELERATOR else self._fallback()
        return {name: "; ".join(f"{d}: {s.reason}" for d, s in q.supports.items())
                for name, q in self._query(net, devices).items() if not any(q.supports.values())}

    def set_initial_affinity(self, net: IENetwork) -> None:
        """Fill every layer's affinity by the fallback policy (HETERO only)."""
        if self._kind != HETERO:
            raise InferenceEngineError(f"set_initial_affinity applies to a HETERO plugin, not {self._device!r}")
        fallback = self._fallback()
        placed = self._policy(net)
        for name, layer in net.layers.items():
            if name not in placed:
                raise InferenceEngineError(f"layer {name!r} ({layer.type}) can run on none of {fallback}")
            layer.affinity = placed[name]

    def _policy(self, net: IENetwork) -> dict[str, str]:
        """Layer -> the device the fallback policy gives it (input layers
        and layers compilation folds away: the first device); a layer no
        device can run is left out."""
        fallback = self._fallback()
        first = fallback.split(",")[0]
        query = self._query(net, fallback)
        placed = {}
        for name in net.layers:
            q = query.get(name)
            if q is None or q.device is not None or any(q.supports.values()):
                placed[name] = q.device if q is not None and q.device is not None else first
        return placed

    def query_network(self, net: IENetwork) -> dict[str, str]:
        """Layer -> the device that runs it (IECore.query_network): HETERO
        as its fallback policy places them; FPGA the layers the accelerator
        itself runs; CPU every layer. A binary's layers where it runs them."""
        if net._binary is not None:
            return {name: layer.affinity for name, layer in net.layers.items()}
        if self._kind == HETERO:
            return self._policy(net)
        return {name: self._kind for name in self.get_supported_layers(net)}

    def add_cpu_extension(self, extension_path: str) -> None:
        """Load a Python module that registers CPU kernels (and the ops they
        compute) through Tessera's registries (docs/inference_engine.md);
        nothing native is loaded."""
        if self._kind == ACCELERATOR:
            raise InferenceEngineError("add_cpu_extension applies to the CPU and HETERO plugins, not 'FPGA'")
        path = Path(extension_path)
        if path.suffix != ".py":
            raise InferenceEngineError(f"CPU extension {str(path)!r}: Tessera loads no native libraries; an "
                                       "extension is a Python module (.py) that registers kernels with "
                                       "runtime.kernels.registry.kernel")
        try:
            check_regular(path, MAX_TEXT_BYTES, "CPU extension")
        except FileError as exc:
            raise InferenceEngineError(str(exc)) from None
        if str(path.resolve()) in self._extensions:
            return
        from runtime.kernels.registry import kernel_names

        before = set(kernel_names())
        name = f"tessera_cpu_extension_{len(sys.modules)}_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - the user's module: say which and why
            raise InferenceEngineError(f"CPU extension {str(path)!r} failed to load: {type(exc).__name__}: "
                                       f"{exc}") from exc
        added = set(kernel_names()) - before
        if not added:
            raise InferenceEngineError(f"CPU extension {str(path)!r} registered no CPU kernel (use "
                                       "runtime.kernels.registry.kernel('OpName'))")
        sys.modules[name] = module
        self._extensions.append(str(path.resolve()))

    # ------------------------------------------------------------ loading
    def load(self, network: IENetwork, num_requests: int = 1, config: Mapping[str, Any] | None = None
             ) -> ExecutableNetwork:
        """Compile (an ONNX network) and load: an ExecutableNetwork with
        ``num_requests`` InferRequests."""
        if not isinstance(network, IENetwork):
            raise InferenceEngineError(f"load: network must be an IENetwork, got {type(network).__name__}")
        if not isinstance(num_requests, (int, np.integer)) or isinstance(num_requests, bool) or num_requests < 1:
            raise InferenceEngineError(f"load: num_requests must be a positive integer, got {num_requests!r}")
        return self._load(network, int(num_requests), config)

    def _load(self, network: IENetwork, num_requests: int, config: Mapping[str, Any] | None) -> ExecutableNetwork:
        """``load``; ``num_requests`` 0: OPTIMAL_NUMBER_OF_INFER_REQUESTS."""
        if config:
            self.set_config(config)
        from runtime.engine import Engine

        if network._binary is not None:
            model, calibration = network._binary, BINARY
        else:
            model, calibration = self._compile(network)
        if calibration == DEFERRED:
            return ExecutableNetwork(model.engine, network, num_requests, self._device, dict(self._config),
                                     deferred=model)
        try:
            engine = Engine(model, nonfinite=self._config.get("TESSERA_NONFINITE"))
        except TesseraError as exc:
            raise InferenceEngineError(f"load: {exc}") from exc
        return ExecutableNetwork(engine, network, num_requests, self._device, dict(self._config), calibration)

    def _compile(self, net: IENetwork) -> tuple[Any, str]:
        """The compiled model and how it was calibrated (AT_LOAD,
        NOT_QUANTIZED); with no calibration data and layers on the
        accelerator, a compiler.deferred_calibration.DeferredCalibration and
        DEFERRED instead: the IE's devices are never calibrated on synthetic
        data (a compile of a "CPU,FPGA" policy that puts layers on the
        accelerator after all is dropped for it)."""
        try:
            from compiler.compile import compile_model
        except ImportError as exc:
            raise InferenceEngineError(f"load: compiling needs Tessera's compiler (onnx, networkx): {exc}") from exc
        fallback = self._fallback()
        affinities = self._affinities(net, fallback)
        keywords: dict[str, Any] = {"calibrator": self._config.get("TESSERA_CALIBRATOR", "mse"),
                                    "hwlinear": self._config.get("TESSERA_HWLINEAR") == "YES",
                                    "demote_islands": self._config.get("TESSERA_DEMOTE_ISLANDS") != "NO"}
        samples = self._config.get("TESSERA_CALIBRATION_DATA") or os.environ.get("TESSERA_CALIBRATION_DATA") or None
        devices = fallback.split(",")
        on_device = ACCELERATOR in devices and (not affinities or ACCELERATOR in affinities.values())
        if samples is None and on_device and (affinities or devices[0] == ACCELERATOR):
            return self._deferred(net, fallback, affinities, keywords), DEFERRED
        with warnings.catch_warnings():
            if not on_device or samples is None:
                warnings.simplefilter("ignore")  # nothing quantized, or (below) not kept
            try:
                if on_device:
                    samples = _batched(net, samples)
                compiled = compile_model(net._model_proto(), shapes=net._shapes(), samples=samples,
                                         fallback=fallback, affinities=affinities, strip_reference=True,
                                         **keywords)
            except TesseraError as exc:
                raise InferenceEngineError(f"load: network {net.name!r}: {exc}") from exc
        quantized = _has_device_layers(compiled)
        if quantized and samples is None:  # the policy put layers on the accelerator after all ("CPU,FPGA")
            return self._deferred(net, fallback, affinities, keywords), DEFERRED
        if self._config.get("HETERO_DUMP_GRAPH_DOT") == "YES":
            try:
                self._dot_writer(net)(compiled)
            except FileError as exc:
                raise InferenceEngineError(f"load: HETERO_DUMP_GRAPH_DOT: {exc}") from exc
        return compiled, AT_LOAD if quantized else NOT_QUANTIZED

    def _deferred(self, net: IENetwork, fallback: str, affinities: Mapping[str, str], keywords: dict):
        """No calibration data: the network compiled for the CPU alone now and
        for its devices on its requests' first input images, announced on
        stderr now and when the int8 program takes over (docs/inference_engine.md,
        "No calibration data")."""
        from compiler.deferred_calibration import FAILED, deferred_program

        wanted = self._wanted()
        where = f"network {net.name!r} on {self._device}"

        def notify(status) -> None:
            if status.state == FAILED:
                warnings.warn(f"{where}: building the accelerator's int8 program failed ({status.error}); requests "
                              "keep running in float32 on the CPU", RuntimeWarning, stacklevel=2)
            else:
                print(f"inference_engine: note: {where}: from run {status.first_device_run} on, requests run the "
                      f"accelerator's int8 program, calibrated on the {status.images} input images of "
                      f"{status.calibration_runs} earlier run(s)", file=sys.stderr)

        dump = self._dot_writer(net) if self._config.get("HETERO_DUMP_GRAPH_DOT") == "YES" else None

        def built(compiled) -> None:
            if dump is not None:
                try:
                    dump(compiled)
                except FileError as exc:
                    warnings.warn(f"{where}: HETERO_DUMP_GRAPH_DOT: {exc}", RuntimeWarning, stacklevel=2)

        try:
            program = deferred_program(net._model_proto(), wanted=wanted, shapes=net._shapes(),
                                       images_per_feed=net.batch_size, nonfinite=self._config.get("TESSERA_NONFINITE"),
                                       built=built, notify=notify, fallback=fallback, affinities=affinities,
                                       strip_reference=True, **keywords)
        except TesseraError as exc:
            raise InferenceEngineError(f"load: network {net.name!r}: {exc}") from exc
        print(f"inference_engine: note: {where}: no calibration data (TESSERA_CALIBRATION_DATA), so requests run in "
              f"float32 on the CPU until they have fed {wanted} input images, then the accelerator's int8 program, "
              "calibrated on those images, takes over", file=sys.stderr)
        return program

    def _wanted(self) -> int:
        """TESSERA_CALIBRATION_SAMPLES: the key, else the environment variable, else the compiler's default."""
        if "TESSERA_CALIBRATION_SAMPLES" in self._config:
            return self._config["TESSERA_CALIBRATION_SAMPLES"]
        if os.environ.get("TESSERA_CALIBRATION_SAMPLES"):
            return _image_count(os.environ["TESSERA_CALIBRATION_SAMPLES"],
                                "load: the environment variable TESSERA_CALIBRATION_SAMPLES")
        from compiler.deferred_calibration import WANTED

        return WANTED

    def _dot_writer(self, net: IENetwork) -> Callable:
        """HETERO_DUMP_GRAPH_DOT's writer for a compiled model of ``net`` (its layers as they are now)."""
        layers = {n: (layer.type, list(layer.parents)) for n, layer in net.layers.items()}
        folder = Path(self._config.get("TESSERA_DOT_DIR") or ".")
        return lambda compiled: write_dot(net.name, layers, placements(compiled), folder)

    def _affinities(self, net: IENetwork, fallback: str) -> dict[str, str]:
        """The user's affinities (api-notes 2.4): none set, the policy runs;
        some set, every non-Input layer needs one, on a device of this plugin."""
        given = {name: layer.affinity for name, layer in net.layers.items()
                 if layer.affinity and layer.type != "Input"}
        if not given:
            return {}
        if self._kind != HETERO:
            raise InferenceEngineError(f"layer affinities are for a HETERO plugin; {self._device!r} runs every "
                                       f"layer itself (layer {next(iter(given))!r} has affinity "
                                       f"{given[next(iter(given))]!r})")
        devices = fallback.split(",")
        for name, device in given.items():
            if device not in devices:
                raise InferenceEngineError(f"layer {name!r} has affinity {device!r}, which plugin "
                                           f"{self._device!r} does not have (its devices: {devices})")
        missing = [name for name, layer in net.layers.items() if layer.type != "Input" and not layer.affinity]
        if missing:
            shown = ", ".join(repr(n) for n in missing[:10]) + (f" and {len(missing) - 10} more"
                                                                  if len(missing) > 10 else "")
            raise InferenceEngineError(f"some layers have an affinity, so every layer needs one; "
                                       f"{len(missing)} have none: {shown}")
        return given

    def __repr__(self) -> str:
        return f"<inference_engine.ie_api.IEPlugin {self._device!r}>"


def _batched(net: IENetwork, samples):
    """Calibration samples for a network whose batch_size (or reshape) gave
    it another batch than the model fixes: the samples, read by the
    compiler's own reader with the batch dim free (one image each, as a
    folder of images or .npy files holds them), stacked ``batch`` at a time
    (the last group filled from the first samples). Other networks' samples
    are returned as they are."""
    batch = net.batch_size
    changed = [name for name, info in net._inputs.items() if info.shape and net._declared.get(name)
               and isinstance(net._declared[name][0], int) and net._declared[name][0] != info.shape[0]]
    if samples is None or not changed:
        return samples
    from compiler.quantize import calibration_batches  # the compiler's reader (runtime/ imports compiler/ only)

    specs = {name: ([None, *info.shape[1:]], np.dtype(net._dtypes[name])) for name, info in net._inputs.items()}
    feeds = list(calibration_batches(samples, specs, count=CALIBRATION_IMAGES * batch))
    if not feeds or all(len(feed[name]) == batch for feed in feeds for name in feed):
        return feeds
    singles = [{name: value[i:i + 1] for name, value in feed.items()} for feed in feeds
               for i in range(len(next(iter(feed.values()))))]
    groups = -(-len(singles) // batch)
    singles = [singles[i % len(singles)] for i in range(groups * batch)]
    return [{name: np.concatenate([one[name] for one in singles[g * batch:(g + 1) * batch]])
             for name in singles[0]} for g in range(groups)]


def _has_device_layers(compiled) -> bool:
    """Whether a compiled model runs some layer on the accelerator (in int8, so calibrated)."""
    from runtime.compiled import CpuSegment

    return any(not isinstance(segment, CpuSegment) for segment in compiled.segments)


def _image_count(value, what: str) -> int:
    """A positive whole number of images (an int, or its digits as a string)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise InferenceEngineError(f"{what}: takes a positive whole number of input images, got {value!r}")
    return int(value)


def _fallback(text: str, what: str = "") -> str:
    body = text[len("HETERO:"):] if text.startswith("HETERO:") else text
    devices = [d.strip() for d in body.split(",")]
    unknown = [d for d in devices if d not in DEVICES]
    if not devices or unknown or len(set(devices)) != len(devices):
        raise InferenceEngineError(f"{what or f'TARGET_FALLBACK {text!r}'}: list each of Tessera's devices "
                                   f"{list(DEVICES)} at "
                                   f"most once{f' ({unknown} unknown)' if unknown else ''}")
    return ",".join(devices)


