"""A Tessera binary as kp sees it: a ModelNefDescriptor whose tensors carry
the grid each one crosses the host interface on.

A model input the device reads, or an output the device writes, is a
DramTensor: integer codes with a scale and zero point, value = scale *
(code - zero). kp writes that as float = fixed / (scale_kp * 2**radix) with
fixed = code - zero: radix and scale_kp are 1/scale split into a power of
two and a factor in [1, 2) (:func:`radix_scale`), so a power-of-two grid
(Tessera's radix8/radix16 modes) has scale_kp exactly 1.0. The zero point,
which kp has no field for, is kept as QuantizedFixedPointDescriptor's
``zero_point``. A tensor the CPU reads or writes (an output computed after
the device) is float32, layout RAW_FLOAT.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from runtime.compiled import CompiledModel, DeviceSegment, DramTensor
from runtime.kp.enums import ImageFormat, ModelTargetChip, ModelTensorDataLayout
from runtime.kp.value import (
    ModelNefDescriptor,
    ModelNefMetadata,
    QuantizationParameters,
    QuantizationParametersV1,
    QuantizedFixedPointDescriptor,
    Scale,
    SingleModelDescriptor,
    TensorDescriptor,
    TensorShapeInfo,
    TensorShapeInfoV1,
)

MODEL_ID = 1
"""The id of the model a Tessera binary holds (one model per binary)."""
NEF_MAGIC = 0x5453520A
"""ModelNefDescriptor.magic of a Tessera binary."""
_LAYOUTS = {"int8": ModelTensorDataLayout.KP_MODEL_TENSOR_DATA_LAYOUT_RAW_8B,
            "int16": ModelTensorDataLayout.KP_MODEL_TENSOR_DATA_LAYOUT_RAW_16B}


def radix_scale(scale: float) -> tuple[int, float]:
    """(radix, scale_kp) with scale_kp * 2**radix = 1 / scale, scale_kp in [1, 2)."""
    mantissa, exponent = math.frexp(1.0 / scale)
    return exponent - 1, mantissa * 2.0


@dataclass(frozen=True)
class Grid:
    """How one model input or output crosses the host interface: ``shape``
    in ONNX order; ``dtype`` 'int8'/'int16' (device codes, ``scale`` and
    ``zero``) or 'float32' (a CPU tensor); ``perm`` takes ONNX axes to the
    device's (npu) order."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float = 1.0
    zero: int = 0
    perm: tuple[int, ...] = ()

    @property
    def on_device(self) -> bool:
        return self.dtype != "float32"

    @property
    def npu_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[a] for a in self.perm) if self.perm else self.shape

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def codes_to_values(self, buffer) -> np.ndarray:
        """A bypass buffer (codes in npu order, or float32) as float32 values in ONNX order."""
        data = np.frombuffer(buffer, self.dtype).reshape(self.npu_shape)
        if self.perm:
            data = data.transpose(np.argsort(self.perm))
        if not self.on_device:
            return np.ascontiguousarray(data)
        return (np.float32(self.scale) * (data.astype(np.float32) - np.float32(self.zero))).astype(np.float32)

    def descriptor(self, index: int) -> TensorDescriptor:
        radix, scale = radix_scale(self.scale) if self.on_device else (0, 1.0)
        fixed = QuantizedFixedPointDescriptor(scale=Scale(value=scale), radix=radix, zero_point=int(self.zero))
        perm = list(self.perm) or list(range(len(self.shape)))
        return TensorDescriptor(
            index=index, name=self.name,
            data_layout=_LAYOUTS.get(self.dtype, ModelTensorDataLayout.KP_MODEL_TENSOR_DATA_LAYOUT_RAW_FLOAT),
            tensor_shape_info=TensorShapeInfo(data=TensorShapeInfoV1(list(self.npu_shape), list(self.shape), perm)),
            quantization_parameters=QuantizationParameters(data=QuantizationParametersV1(
                quantized_axis=0, quantized_fixed_point_descriptor_list=[fixed])))


def _device_grid(name: str, shape, tensor: DramTensor, output: bool) -> Grid:
    perm = tuple(int(a) for a in (np.argsort(tensor.perm) if output else tensor.perm)) if tensor.perm else ()
    return Grid(name, tuple(shape), tensor.dtype, float(tensor.scale), int(tensor.zero), perm)


def interface(model: CompiledModel) -> tuple[list[Grid], list[Grid]]:
    """The grids of the model's inputs (the first device segment reading
    each) and outputs (the device segment writing each; float32 when the
    CPU computes it)."""
    device: list[DeviceSegment] = model.device_segments
    inputs = []
    for host in model.inputs:
        found = next((t for s in device for t in s.inputs if t.name == host.name), None)
        inputs.append(_device_grid(host.name, host.shape, found, False) if found is not None
                      else Grid(host.name, tuple(host.shape), "float32"))
    outputs = []
    for host in model.outputs:
        found = next((t for s in device for t in s.outputs if t.name == host.name), None)
        outputs.append(_device_grid(host.name, host.shape, found, True) if found is not None
                       else Grid(host.name, tuple(host.shape), "float32"))
    return inputs, outputs


def image_input(grid: Grid) -> tuple[int, int, int, bool] | None:
    """(channels, height, width, channels_last) of an image input ([1, C, H,
    W] or [1, H, W, C] with 1 or 3 channels), None for other inputs."""
    shape = grid.shape
    if len(shape) != 4 or shape[0] != 1:
        return None
    if shape[1] in (1, 3):
        return shape[1], shape[2], shape[3], False
    if shape[3] in (1, 3):
        return shape[3], shape[1], shape[2], True
    return None


def nef_descriptor(model: CompiledModel, crc: int, chip: ModelTargetChip) -> ModelNefDescriptor:
    """The kp descriptor of a loaded Tessera binary."""
    inputs, outputs = interface(model)
    first = image_input(inputs[0]) if inputs else None
    channels, height, width = first[:3] if first else (0, 0, 0)
    single = SingleModelDescriptor(
        target_chip=chip, version=1, id=MODEL_ID,
        input_nodes=[g.descriptor(i) for i, g in enumerate(inputs)],
        output_nodes=[g.descriptor(i) for i, g in enumerate(outputs)],
        setup_schema_version="tessera", setup_file_schema_version="tessera",
        max_raw_out_size=sum(g.nbytes if g.on_device else int(np.prod(g.shape)) * 4 for g in outputs),
        width=width, height=height, channel=channels, img_format=ImageFormat.KP_IMAGE_FORMAT_RGBA8888)
    compiler = str(model.metadata.get("compiler", "tessera"))
    metadata = ModelNefMetadata(kn_number=0, toolchain_version=compiler, compiler_version=compiler,
                                nef_schema_version="tessera-binary", platform=chip.name.rsplit("_", 1)[-1])
    return ModelNefDescriptor(magic=NEF_MAGIC, metadata=metadata, target_chip=chip, crc=crc, num_models=1,
                              models=[single])
