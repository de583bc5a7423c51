"""IENetwork, IEPlugin, ExecutableNetwork, InferRequest (module name as the
spec's reprs show: ``inference_engine.ie_api``; the network and its layers
live in ie_network.py, the loaded network and its requests in
executable.py, the constants, status codes and tensor descriptions in
api_types.py, all re-exported here).

Each class is a thin face over a Tessera piece (docs/inference_engine.md):

* IENetwork reads the model's layers through compiler/network.py (onnx is
  imported then, not with this module) or a compiled binary's provenance;
* IEPlugin's devices are FPGA (the accelerator, on the simulator, with
  FWDNXT's CPU fallback for what it cannot run), CPU (the float32 kernels)
  and HETERO:<devices> (the affinity pass's fallback policy, or the user's
  affinities: passes/affinity.py decides and checks, through
  compiler/network.py before a compile; this module only asks);
  ``load`` compiles with compiler.compile.compile_model and Inits a
  runtime Engine;
* InferRequests run on that Engine from threads of their own: runs overlap
  segment by segment (runtime.segments.SegmentExecutor);
* perf counts: the device layers' modelled times (the cycle model, per
  fused layer, mapped back to its ONNX layers) and the CPU kernels'
  measured times.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from runtime.errors import TesseraError
from runtime.files import MAX_TEXT_BYTES, FileError, check_regular, check_writable
from runtime.hardware import ACCELERATOR, DEVICES, HETERO, HOST, DeviceListError, parse_fallback
from runtime.inference_engine.api_types import (  # noqa: F401 - re-exported: the API's names live in ie_api
    AT_LOAD,
    BINARY,
    CALIBRATION_IMAGES,
    CONFIG_KEYS,
    DEFERRED,
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
from runtime.inference_engine.ie_network import IENetLayer, IENetwork  # noqa: F401 - re-exported
from runtime.inference_engine.provenance import placements, write_dot
from runtime.nonfinite import POLICIES


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
            elif key == "TESSERA_TRACE":
                _check_trace(value)
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
        return f"{ACCELERATOR},{HOST}" if self._kind == ACCELERATOR else HOST

    def _query(self, net: IENetwork, fallback: str) -> dict:
        if net._binary is not None:
            return {}
        try:
            return _network().query_network(net._model_proto(), fallback, shapes=net._shapes(),
                                            hwlinear=_hwlinear(self._config))
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
        """Layer -> the device the fallback policy gives it (compiler.network.placement)."""
        fallback = self._fallback()
        return _network().placement(self._query(net, fallback), fallback, net.layers)

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
            raise InferenceEngineError(f"load: compiling needs Tessera's compiler (onnx): {exc}") from exc
        fallback = self._fallback()
        affinities = self._affinities(net, fallback)
        keywords: dict[str, Any] = {"calibrator": self._config.get("TESSERA_CALIBRATOR", "mse"),
                                    "hwlinear": _hwlinear(self._config),
                                    "demote_islands": self._config.get("TESSERA_DEMOTE_ISLANDS") != "NO"}
        samples = self._config.get("TESSERA_CALIBRATION_DATA") or os.environ.get("TESSERA_CALIBRATION_DATA") or None
        devices = parse_fallback(fallback)
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
        """The user's affinities (api-notes 2.4), for a HETERO plugin only,
        checked by the policy (compiler.network.manual_affinities): none set,
        the policy runs; some set, every non-Input layer needs one, on a
        device of this plugin."""
        given = {name: layer.affinity for name, layer in net.layers.items()
                 if layer.affinity and layer.type != "Input"}
        if not given:
            return {}
        if self._kind != HETERO:
            raise InferenceEngineError(f"layer affinities are for a HETERO plugin; {self._device!r} runs every "
                                       f"layer itself (layer {next(iter(given))!r} has affinity "
                                       f"{given[next(iter(given))]!r})")
        layers = [name for name, layer in net.layers.items() if layer.type != "Input"]
        try:
            return _network().manual_affinities(given, layers, fallback)
        except TesseraError as exc:
            raise InferenceEngineError(f"plugin {self._device!r}: {exc}") from None

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


def _check_trace(value) -> None:
    """TESSERA_TRACE: a path string ('' = none) whose file can be written (request 0's, for a '{request}' path)."""
    if not isinstance(value, str):
        raise InferenceEngineError(f"set_config: TESSERA_TRACE takes a file path or '', got {value!r}")
    if value:
        try:
            check_writable(value.replace("{request}", "0"))
        except FileError as exc:
            raise InferenceEngineError(f"set_config: TESSERA_TRACE {value!r}: {exc.cause}") from None


def _image_count(value, what: str) -> int:
    """A positive whole number of images (an int, or its digits as a string)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise InferenceEngineError(f"{what}: takes a positive whole number of input images, got {value!r}")
    return int(value)


def _fallback(text: str, what: str = "") -> str:
    """A device list (runtime.hardware.parse_fallback) as TARGET_FALLBACK holds it: 'FPGA,CPU'."""
    try:
        return ",".join(parse_fallback(text))
    except DeviceListError as exc:
        raise InferenceEngineError(f"{what or 'TARGET_FALLBACK'}: {exc}") from None


def _network():
    """compiler.network, the placement policy's face for layer-level APIs,
    imported when an ONNX network needs it (runtime/ imports the compiler
    only lazily)."""
    try:
        from compiler import network
    except ImportError as exc:
        raise InferenceEngineError(f"an ONNX network's layer placement needs Tessera's compiler (onnx): "
                                   f"{exc}") from exc
    return network


def _hwlinear(config: dict) -> bool | None:
    """TESSERA_HWLINEAR: YES/NO put linear layers on the accelerator/the CPU;
    unset, the affinity policy places them where they pay."""
    value = config.get("TESSERA_HWLINEAR")
    return None if value is None else value == "YES"
