"""One typed configuration of quantization: every option of the rewrites
and searches compiler.pipeline.QUANTIZATION runs and of the quantize pass,
with its default, checked when built (an error names the field).

    from compiler.quant_config import QuantConfig
    config = QuantConfig(calibrator="auto", equalize=True, target_snr=30)
    quantize_model("model.onnx", config=config, calibration_data="images/")
    compile_model("model.onnx", quant_config=config, samples="images/")

``quantize_model``, ``compile_model``, the ``tessera`` command line and the
API facades all build one: the keyword API (``quantize_model(...,
equalize=True)``) is :meth:`QuantConfig.build` over the same fields. The
passes read it as PassContext options (:meth:`QuantConfig.pass_options`,
one option per field).
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from compiler.errors import QuantizationError
from passes.quant.calibration_data import PreprocessSpec
from passes.quant.encodings import Encodings
from passes.quant.observers import parse_spec
from passes.quant.params import PRECISIONS
from runtime.errors import TesseraError
from runtime.hardware import DeviceListError, parse_fallback

AUTO = "auto"
"""``calibrator="auto"``: each tensor's range method chosen by the error it leaves at the outputs."""


@dataclass(frozen=True)
class QuantConfig:
    """How a model is quantized. The fields, in groups:

    - calibration: ``calibration_count`` inputs at most, read with
      ``preprocess`` (a PreprocessSpec) when they are images; ``calibrator``
      the range method ('minmax', 'percentile', 'percentile:99.9',
      'entropy', 'mse', or 'auto': each tensor's chosen by the error it
      leaves at the outputs, compiler/range_choice.py);
      ``tensor_calibrators`` one per tensor name.
    - precision: ``mode`` the model's ('int8', 'int16', 'radix8',
      'radix16'); ``layer_precision`` per ONNX node name; ``float_layers``
      ONNX nodes kept in float on the CPU; ``host_outputs`` outputs' final
      pointwise functions (Sigmoid, Softmax, ...) run in float on the host
      on the pre-activation codes (a host epilogue; ``target_snr`` chooses
      them too); ``encodings`` (an AIMET encodings
      file, document or Encodings) gives the parameters instead of
      calibration, an empty one runs the model in float.
    - placement: ``hwlinear`` True/False runs linear layers on the
      accelerator/the CPU (FWDNXT's flag), None (default) where the
      affinity policy finds they pay;
      ``fallback`` is the device priority of the affinity policy,
      ``affinities`` (ONNX node name -> device) place layers by hand
      (passes/affinity.py); ``demote_islands=False`` keeps accelerator
      segments whose host transfers cost more than they save.
    - float rewrites before calibration: ``equalize`` (cross-layer
      equalization, passes/quant/equalize.py), ``absorb_bias`` (bias
      absorption), ``head_grids`` (a grid per group of a head's channels,
      passes/quant/head_grids.py).
    - the quantize pass: ``channel_grids`` (a grid per channel where it is
      free, passes/quant/channel_grids.py), ``weight_rounding`` (weights
      rounded by the error they leave, passes/quant/weight_rounding.py).
    - precision searches: ``sensitivity=k`` moves the k layers adding the
      most error on ``sensitivity_samples`` calibration inputs to 16 bits
      (compiler/sensitivity.py); ``target_snr`` (dB) moves layers to 16
      bits or their final pointwise functions to the host until every
      output's SNR on ``target_samples`` calibration inputs reaches it, with
      at most ``target_budget`` of the accelerator's MACs in 16 bits
      (compiler/target_snr.py).
    """

    calibration_count: int = 32
    preprocess: PreprocessSpec | None = None
    calibrator: str = "mse"
    tensor_calibrators: Mapping[str, str] = field(default_factory=dict)
    mode: str = "int8"
    layer_precision: Mapping[str, str] = field(default_factory=dict)
    float_layers: tuple[str, ...] = ()
    host_outputs: tuple[str, ...] = ()
    encodings: str | os.PathLike | Mapping | Encodings | None = None
    hwlinear: bool | None = None
    fallback: str = "HETERO:FPGA,CPU"
    affinities: Mapping[str, str] = field(default_factory=dict)
    demote_islands: bool = True
    equalize: bool = False
    absorb_bias: bool = False
    head_grids: bool = True
    channel_grids: bool = True
    weight_rounding: bool = True
    sensitivity: int = 0
    sensitivity_samples: int = 8
    target_snr: float | None = None
    target_budget: float = 0.15
    target_samples: int = 8

    def __post_init__(self):
        for name, check in _CHECKS.items():
            object.__setattr__(self, name, check(self, name, getattr(self, name)))

    @classmethod
    def build(cls, config: QuantConfig | None = None, keywords: Mapping[str, Any] | None = None,
              where: str = "QuantConfig") -> QuantConfig:
        """``config`` (default: the defaults) with the fields ``keywords``
        name replaced: the keyword API of quantize_model and compile_model.
        An unknown keyword is an error naming ``where`` and the fields."""
        if config is not None and not isinstance(config, QuantConfig):
            raise QuantizationError(f"{where}: the quantization config must be a QuantConfig, "
                                    f"got a {type(config).__name__}")
        keywords = dict(keywords or {})
        unknown = sorted(set(keywords) - set(FIELDS))
        if unknown:
            raise TypeError(f"{where}() got an unexpected keyword argument {unknown[0]!r}; the quantization "
                            f"options are {list(FIELDS)}")
        return dataclasses.replace(config or cls(), **keywords)

    def record(self) -> dict[str, Any]:
        """The fields whose values are plain numbers, strings or booleans
        (what a binary's metadata records)."""
        return {name: getattr(self, name) for name in FIELDS
                if isinstance(getattr(self, name), (str, int, float, bool))}

    def pass_options(self) -> dict[str, Any]:
        """The PassContext options the passes read, one per field (the
        encodings as given: compiler/apply_encodings.py reads them)."""
        return {option: _option_value(getattr(self, name)) for name, option in OPTIONS.items()}


OPTIONS = {
    "calibration_count": "quant.calibration_count", "preprocess": "quant.preprocess",
    "calibrator": "quant.calibrator", "tensor_calibrators": "quant.tensor_calibrators", "mode": "quant.mode",
    "layer_precision": "quant.layer_precision", "float_layers": "quant.float_layers",
    "host_outputs": "quant.host_outputs", "encodings": "quant.encodings", "hwlinear": "target.hwlinear",
    "fallback": "partition.fallback",
    "affinities": "partition.affinities", "demote_islands": "partition.demote_islands",
    "equalize": "quant.equalize", "absorb_bias": "quant.absorb_bias", "head_grids": "quant.head_grids",
    "channel_grids": "quant.channel_grids", "weight_rounding": "quant.weight_rounding",
    "sensitivity": "quant.sensitivity", "sensitivity_samples": "quant.sensitivity_samples",
    "target_snr": "quant.target_snr", "target_budget": "quant.target_budget", "target_samples": "quant.target_samples",
}
"""The PassContext option each field sets."""
FIELDS = tuple(f.name for f in dataclasses.fields(QuantConfig))


def _option_value(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) and not isinstance(value, Encodings) else value


def _fail(name: str, message: str, value: Any) -> QuantizationError:
    return QuantizationError(f"QuantConfig.{name}: {message}, got {value!r}")


def _optional_flag(config, name: str, value: Any) -> bool | None:
    return None if value is None else _flag(config, name, value)


def _flag(config, name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise _fail(name, "must be True or False", value)
    return bool(value)


def _count(least: int):
    def check(config, name: str, value: Any) -> int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < least:
            raise _fail(name, f"must be a whole number of at least {least}", value)
        return int(value)
    return check


def _calibrator_spec(name: str, value: Any, allow_auto: bool) -> str:
    if not isinstance(value, str):
        raise _fail(name, "must be a calibrator name such as 'mse' or 'percentile:99.9'", value)
    if allow_auto and value == AUTO:
        return value
    try:
        parse_spec(value)
    except TesseraError as exc:
        raise QuantizationError(f"QuantConfig.{name}: {exc}") from None
    return value


def _calibrator(config, name: str, value: Any) -> str:
    return _calibrator_spec(name, value, allow_auto=True)


def _names_to(check_value):
    def check(config, name: str, value: Any) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise _fail(name, "must map names to settings", value)
        for key, setting in value.items():
            if not isinstance(key, str):
                raise _fail(name, "must map names (strings) to settings", value)
            check_value(f"{name}[{key!r}]", setting)
        return MappingProxyType(dict(value))
    return check


def _precision(name: str, value: Any) -> str:
    if value not in PRECISIONS:
        raise _fail(name, f"must be one of {list(PRECISIONS)}", value)
    return value


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(name, "must be a non-empty string", value)
    return value


def _mode(config, name: str, value: Any) -> str:
    return _precision(name, value)


def _float_layers(config, name: str, value: Any) -> tuple[str, ...]:
    try:
        names = None if isinstance(value, str) else tuple(value)
    except TypeError:
        names = None
    if names is None or not all(isinstance(v, str) for v in names):
        raise _fail(name, "must be a list of ONNX node names", value)
    return names


def _encodings(config, name: str, value: Any):
    if value is not None and not isinstance(value, (str, os.PathLike, Mapping, Encodings)):
        raise _fail(name, "must be an encodings file's path, an encodings document or an Encodings", value)
    return value


def _preprocess(config, name: str, value: Any):
    if value is not None and not isinstance(value, PreprocessSpec):
        raise _fail(name, "must be a PreprocessSpec or None", value)
    return value


def _fallback(config, name: str, value: Any) -> str:
    """A device list the affinity policy reads ('HETERO:FPGA,CPU'), checked by its one parser."""
    try:
        parse_fallback(_text(name, value))
    except DeviceListError as exc:
        raise QuantizationError(f"QuantConfig.{name}: {exc}") from None
    return value


def _target_snr(config, name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)) \
            or not math.isfinite(value):
        raise _fail(name, "must be a finite number of dB or None", value)
    return float(value)


def _budget(config, name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)) or not 0 <= value <= 1:
        raise _fail(name, "the 16-bit MAC budget must be a fraction in [0, 1]", value)
    return float(value)


_CHECKS = {
    "calibration_count": _count(1), "preprocess": _preprocess, "calibrator": _calibrator,
    "tensor_calibrators": _names_to(lambda where, v: _calibrator_spec(where, v, allow_auto=False)),
    "mode": _mode, "layer_precision": _names_to(_precision), "float_layers": _float_layers,
    "host_outputs": _float_layers, "encodings": _encodings, "hwlinear": _optional_flag, "fallback": _fallback,
    "affinities": _names_to(_text),
    "demote_islands": _flag, "equalize": _flag, "absorb_bias": _flag, "head_grids": _flag,
    "channel_grids": _flag, "weight_rounding": _flag, "sensitivity": _count(0), "sensitivity_samples": _count(1),
    "target_snr": _target_snr, "target_budget": _budget, "target_samples": _count(1),
}
"""Each field's check: the value kept (a read-only copy of a mapping, a
tuple of a list), or a QuantizationError naming the field."""
