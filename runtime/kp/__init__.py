"""Kneron PLUS's Python API ``kp`` over Tessera (shared/spec/kp-inference-api.md,
shared/reference/api-notes.md 3): ``from runtime import kp`` in place of
``import kp``. Devices are simulated (runtime/kp/devices.py says how many
and of which chip); a model is a Tessera binary; every inference runs on the
one Engine (runtime/engine.py). docs/kp.md has the whole story."""
from runtime.kp import core, inference, v1
from runtime.kp.enums import (
    ApiReturnCode,
    ChannelOrdering,
    DataType,
    FixedPointDType,
    ImageFormat,
    ModelQuantizationParamsVersion,
    ModelTargetChip,
    ModelTensorDataLayout,
    ModelTensorShapeInformationVersion,
    NormalizeMode,
    PaddingMode,
    ProductId,
    ResetMode,
    ResizeMode,
    UsbSpeed,
)
from runtime.kp.exception import ApiKPException
from runtime.kp.group import DeviceGroup
from runtime.kp.value import *  # noqa: F403 - kp's value classes live at the package's top, as in kp
from runtime.kp.value import __all__ as _values

__all__ = ["core", "inference", "v1", "ApiKPException", "DeviceGroup", "ApiReturnCode", "ChannelOrdering",
           "DataType", "FixedPointDType", "ImageFormat", "ModelQuantizationParamsVersion", "ModelTargetChip",
           "ModelTensorDataLayout", "ModelTensorShapeInformationVersion", "NormalizeMode", "PaddingMode",
           "ProductId", "ResetMode", "ResizeMode", "UsbSpeed", *_values]
