"""IECore, the 2019 R2-2021 entry point (api-notes 2.1): one object that
reads networks and loads them on any device by name, over the same
IEPlugin (its devices, keys and affinity policy) and IENetwork the 2018 API
uses, so a network loads the same through either.

    from runtime.inference_engine import IECore

    ie = IECore()
    net = ie.read_network(model="model.onnx")
    exec_net = ie.load_network(network=net, device_name="HETERO:FPGA,CPU")
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from runtime.hardware import ACCELERATOR, DEVICES, HETERO, HOST, parse_fallback
from runtime.inference_engine.ie_api import (
    CONFIG_KEYS,
    VERSION,
    ExecutableNetwork,
    IENetwork,
    IEPlugin,
    InferenceEngineError,
)

FULL_NAMES = {HOST: "Tessera host CPU (float32 kernels)",
              ACCELERATOR: "Tessera int8 accelerator (simulated), with CPU fallback",
              HETERO: "Tessera HETERO (layers split between the accelerator and the CPU)"}
CAPABILITIES = {HOST: ["FP32"], ACCELERATOR: ["INT8", "FP32"]}
"""OPTIMIZATION_CAPABILITIES: what each device computes in (FPGA: its
layers in int8, the layers it falls back to the CPU with in float32)."""


class Version:
    """A plugin's version (``get_versions``): ``description``, ``major``,
    ``minor``, ``build_number``."""

    def __init__(self, description: str):
        self.description = description
        self.build_number = VERSION
        major, minor = VERSION.split("-")[-1].split(".")[:2]
        self.major, self.minor = int(major), int(minor)

    def __repr__(self) -> str:
        return f"<Version {self.description!r} {self.build_number}>"


def _plugin_name(device_name: str) -> str:
    """The plugin a device string names ("HETERO:FPGA,CPU" -> "HETERO"),
    checked as IEPlugin checks it."""
    IEPlugin(device_name)  # raises, naming the device, for anything Tessera does not have
    return device_name.partition(":")[0]


def _members(device_name: str) -> list[str]:
    """The devices a checked HETERO device string lists ("HETERO:FPGA,CPU" -> FPGA, CPU; others: none)."""
    members = device_name.partition(":")[2]
    return list(parse_fallback(members)) if members else []


class IECore:
    """Devices by name: ``available_devices``, ``get_versions``,
    ``read_network``, ``load_network``, ``query_network``, per-device
    ``set_config``/``get_config``, ``get_metric``, ``add_extension``.
    ``xml_config_file`` (a plugins.xml) is accepted and not read: Tessera's
    devices are built in."""

    def __init__(self, xml_config_file: str = ""):
        self._config: dict[str, dict[str, Any]] = {}
        self._extensions = IEPlugin(HOST)

    @property
    def available_devices(self) -> list[str]:
        """The devices, each loadable by this name; HETERO:<devices> combines them."""
        return sorted(DEVICES)

    def get_versions(self, device_name: str) -> dict[str, Version]:
        """Plugin name -> Version, for the plugin ``device_name`` names and,
        for HETERO:<devices>, each of its devices."""
        head = _plugin_name(device_name)
        names = [head] + _members(device_name)
        return {name: Version(FULL_NAMES[name]) for name in names}

    def read_network(self, model=None, weights=None, init_from_buffer: bool = False) -> IENetwork:
        """An IENetwork (an ONNX model or a Tessera binary; ``weights`` is
        ignored with a note, as for IENetwork)."""
        return IENetwork(model=model, weights=weights, init_from_buffer=init_from_buffer)

    def _plugin(self, device_name: str, config: Mapping[str, Any] | None) -> IEPlugin:
        """An IEPlugin for ``device_name`` with this core's settings: those
        of each device in a HETERO list, then HETERO's, then ``config``."""
        if not isinstance(device_name, str):
            raise InferenceEngineError(f"device_name must be a string such as 'FPGA' or 'HETERO:FPGA,CPU', got "
                                       f"{type(device_name).__name__}")
        plugin = IEPlugin(device_name)
        head, members = device_name.partition(":")[0], _members(device_name)
        for name in members + [head]:
            settings = dict(self._config.get(name, {}))
            if name != HETERO or members:  # "HETERO:FPGA,CPU" names its own devices
                settings.pop("TARGET_FALLBACK", None)
            if settings:
                plugin.set_config(settings)
        if config:
            plugin.set_config(dict(config))
        return plugin

    def load_network(self, network: IENetwork, device_name: str, config: Mapping[str, Any] | None = None,
                     num_requests: int = 1) -> ExecutableNetwork:
        """Compile (an ONNX network) and load it on ``device_name``;
        ``num_requests`` 0: the network's OPTIMAL_NUMBER_OF_INFER_REQUESTS."""
        if not isinstance(network, IENetwork):
            raise InferenceEngineError(f"load_network: network must be an IENetwork (IECore.read_network), got "
                                       f"{type(network).__name__}")
        if not isinstance(num_requests, (int, np.integer)) or isinstance(num_requests, bool) or num_requests < 0:
            raise InferenceEngineError(f"load_network: num_requests must be 0 (the optimal number) or a positive "
                                       f"integer, got {num_requests!r}")
        return self._plugin(device_name, None)._load(network, int(num_requests), config)

    def query_network(self, network: IENetwork, device_name: str, config: Mapping[str, Any] | None = None
                      ) -> dict[str, str]:
        """Layer name -> the device that runs it, for the layers
        ``device_name`` supports (IEPlugin.query_network)."""
        if not isinstance(network, IENetwork):
            raise InferenceEngineError(f"query_network: network must be an IENetwork, got "
                                       f"{type(network).__name__}")
        return self._plugin(device_name, config).query_network(network)

    def set_config(self, config: Mapping[str, Any], device_name: str) -> None:
        """Keys for every later load on that device (or on a HETERO list
        holding it; "HETERO:<devices>" sets HETERO's keys); checked now, an
        unknown key or value is an error."""
        if not isinstance(config, Mapping):
            raise InferenceEngineError(f"set_config: config must be a dict of key -> value, got "
                                       f"{type(config).__name__}")
        head = _plugin_name(device_name)
        settings = dict(config)
        IEPlugin(head).set_config(settings)
        self._config.setdefault(head, {}).update(settings)

    def get_config(self, device_name: str, config_name: str) -> Any:
        """A key's value for that device: what set_config gave it, else the default."""
        head = _plugin_name(device_name)
        if config_name not in CONFIG_KEYS:
            raise InferenceEngineError(f"get_config: unknown key {config_name!r}; the keys are "
                                       f"{sorted(CONFIG_KEYS)}")
        if config_name in self._config.get(head, {}):
            return self._config[head][config_name]
        return self._plugin(device_name, None).get_config(config_name)

    def get_metric(self, device_name: str, metric_name: str) -> Any:
        """SUPPORTED_METRICS, SUPPORTED_CONFIG_KEYS, FULL_DEVICE_NAME and,
        for CPU and FPGA, OPTIMIZATION_CAPABILITIES."""
        head = _plugin_name(device_name)
        metrics: dict[str, Any] = {"FULL_DEVICE_NAME": FULL_NAMES[head],
                                   "SUPPORTED_CONFIG_KEYS": sorted(k for k in CONFIG_KEYS
                                                                   if head == HETERO or k != "TARGET_FALLBACK")}
        if head in CAPABILITIES:
            metrics["OPTIMIZATION_CAPABILITIES"] = list(CAPABILITIES[head])
        metrics["SUPPORTED_METRICS"] = sorted([*metrics, "SUPPORTED_METRICS"])
        if metric_name not in metrics:
            raise InferenceEngineError(f"get_metric: {head} has no metric {metric_name!r}; its metrics are "
                                       f"{metrics['SUPPORTED_METRICS']}")
        return metrics[metric_name]

    def add_extension(self, extension_path: str, device_name: str) -> None:
        """Load a CPU extension (a Python module registering CPU kernels,
        IEPlugin.add_cpu_extension); kernels are per process, so every later
        load on CPU or HETERO has them."""
        if _plugin_name(device_name) != HOST:
            raise InferenceEngineError(f"add_extension: Tessera's extensions are CPU kernels; give device_name "
                                       f"'CPU', not {device_name!r}")
        self._extensions.add_cpu_extension(extension_path)

    def __repr__(self) -> str:
        return f"<inference_engine.ie_api.IECore devices={self.available_devices}>"
