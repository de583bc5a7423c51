"""kp's value classes (shared/reference/api-notes.md 3.2-3.5): plain data,
with the 1.x and 3.x field names where they differ. Every one has
``get_member_variable_dict()``."""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from typing import Any

import numpy as np

from runtime.kp.enums import (
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
    ResizeMode,
    UsbSpeed,
)


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, _Value):
        return value.get_member_variable_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float):
        return float(value)
    return value


class _Value:
    def get_member_variable_dict(self) -> dict:
        """The fields as a dict (enums by name, nested values as dicts)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if not f.name.startswith("_")}

    def __str__(self) -> str:
        return f"{type(self).__name__}({self.get_member_variable_dict()})"

    __repr__ = __str__


# ---------------------------------------------------------------- devices
@dataclass(repr=False)
class DeviceDescriptor(_Value):
    usb_port_id: int = 0
    vendor_id: int = 0x3231
    product_id: int = 0
    link_speed: UsbSpeed = UsbSpeed.KP_USB_SPEED_UNKNOWN
    kn_number: int = 0
    is_connectable: bool = True
    usb_port_path: str = ""
    firmware: str = ""


@dataclass(repr=False)
class DeviceDescriptorList(_Value):
    device_descriptor_number: int = 0
    device_descriptor_list: list = field(default_factory=list)

    def __len__(self) -> int:
        return self.device_descriptor_number

    def __getitem__(self, index: int) -> DeviceDescriptor:
        return self.device_descriptor_list[index]


# ---------------------------------------------------------------- model descriptors
class Scale(float):
    """A quantization scale: a float (2.x used plain floats) with 3.x's
    ``dtype`` and ``value``."""

    def __new__(cls, dtype: DataType = DataType.KP_DTYPE_FLOAT32, value: float = 1.0):
        scale = super().__new__(cls, value)
        scale.dtype = DataType(dtype)
        return scale

    @property
    def value(self) -> float:
        return float(self)

    def get_member_variable_dict(self) -> dict:
        return {"dtype": self.dtype.name, "value": float(self)}


@dataclass(repr=False)
class QuantizedFixedPointDescriptor(_Value):
    """float = (fixed) / (scale * 2**radix). ``zero_point`` (Tessera's: kp
    has none) is the device code of 0.0: a device code is fixed + zero_point."""

    scale: Scale = field(default_factory=Scale)
    radix: int = 0
    zero_point: int = 0


@dataclass(repr=False)
class QuantizationParametersV1(_Value):
    quantized_axis: int = 0
    quantized_fixed_point_descriptor_list: list = field(default_factory=lambda: [QuantizedFixedPointDescriptor()])


@dataclass(repr=False)
class QuantizationParameters(_Value):
    version: ModelQuantizationParamsVersion = ModelQuantizationParamsVersion.KP_MODEL_QUANTIZATION_PARAMS_VERSION_1
    data: QuantizationParametersV1 = field(default_factory=QuantizationParametersV1)

    @property
    def v1(self) -> QuantizationParametersV1:
        return self.data

    @property
    def quantized_axis(self) -> int:
        return self.data.quantized_axis

    @property
    def quantized_fixed_point_descriptor_list(self) -> list:
        """2.x's direct access to the descriptors."""
        return self.data.quantized_fixed_point_descriptor_list


@dataclass(repr=False)
class TensorShapeInfoV1(_Value):
    shape_npu: list = field(default_factory=list)
    shape_onnx: list = field(default_factory=list)
    axis_permutation_onnx_to_npu: list = field(default_factory=list)


@dataclass(repr=False)
class TensorShapeInfo(_Value):
    version: ModelTensorShapeInformationVersion = \
        ModelTensorShapeInformationVersion.KP_MODEL_TENSOR_SHAPE_INFO_VERSION_1
    data: TensorShapeInfoV1 = field(default_factory=TensorShapeInfoV1)


@dataclass(repr=False)
class TensorDescriptor(_Value):
    index: int = 0
    name: str = ""
    data_layout: ModelTensorDataLayout = ModelTensorDataLayout.KP_MODEL_TENSOR_DATA_LAYOUT_UNKNOWN
    tensor_shape_info: TensorShapeInfo = field(default_factory=TensorShapeInfo)
    quantization_parameters: QuantizationParameters = field(default_factory=QuantizationParameters)

    @property
    def shape(self) -> list:
        """The ONNX shape (tensor_shape_info.data.shape_onnx)."""
        return list(self.tensor_shape_info.data.shape_onnx)

    @property
    def shape_npu(self) -> list:
        return list(self.tensor_shape_info.data.shape_npu)


@dataclass(repr=False)
class SingleModelDescriptor(_Value):
    target_chip: ModelTargetChip = ModelTargetChip.KP_MODEL_TARGET_CHIP_UNKNOWN
    version: int = 0
    id: int = 0
    input_nodes: list = field(default_factory=list)
    output_nodes: list = field(default_factory=list)
    setup_schema_version: str = ""
    setup_file_schema_version: str = ""
    max_raw_out_size: int = 0
    width: int = 0
    height: int = 0
    channel: int = 0
    img_format: ImageFormat = ImageFormat.KP_IMAGE_FORMAT_UNKNOWN


@dataclass(repr=False)
class ModelNefMetadata(_Value):
    kn_number: int = 0
    toolchain_version: str = ""
    compiler_version: str = ""
    nef_schema_version: str = ""
    platform: str = ""


@dataclass(repr=False)
class ModelNefDescriptor(_Value):
    magic: int = 0
    metadata: ModelNefMetadata = field(default_factory=ModelNefMetadata)
    target_chip: ModelTargetChip = ModelTargetChip.KP_MODEL_TARGET_CHIP_UNKNOWN
    crc: int = 0
    num_models: int = 0
    models: list = field(default_factory=list)


# ---------------------------------------------------------------- inference input
@dataclass(repr=False)
class InferenceCropBox(_Value):
    crop_box_index: int = 0
    x: int = 0
    y: int = 0
    width: int = 0
    height: int = 0


@dataclass(repr=False)
class GenericRawImageHeader(_Value):
    model_id: int = 0
    resize_mode: ResizeMode = ResizeMode.KP_RESIZE_ENABLE
    padding_mode: PaddingMode = PaddingMode.KP_PADDING_CORNER
    normalize_mode: NormalizeMode = NormalizeMode.KP_NORMALIZE_KNERON
    inference_number: int = 0
    inference_crop_box_list: list = field(default_factory=list)
    width: int = 0
    height: int = 0
    image_format: ImageFormat = ImageFormat.KP_IMAGE_FORMAT_RGB565

    @property
    def crop_count(self) -> int:
        return len(self.inference_crop_box_list)


@dataclass(repr=False)
class GenericRawBypassPreProcImageHeader(_Value):
    model_id: int = 0
    inference_number: int = 0
    image_buffer_size: int = 0


@dataclass(repr=False)
class GenericInputNodeImage(_Value):
    image: Any = None
    width: int = 0
    height: int = 0
    image_format: ImageFormat = ImageFormat.KP_IMAGE_FORMAT_RGB565
    resize_mode: ResizeMode = ResizeMode.KP_RESIZE_ENABLE
    padding_mode: PaddingMode = PaddingMode.KP_PADDING_CORNER
    normalize_mode: NormalizeMode = NormalizeMode.KP_NORMALIZE_KNERON
    inference_crop_box_list: list = field(default_factory=list)

    @property
    def crop_count(self) -> int:
        return len(self.inference_crop_box_list)


@dataclass(repr=False)
class GenericImageInferenceDescriptor(_Value):
    inference_number: int = 0
    model_id: int = 0
    input_node_image_list: list = field(default_factory=list)


@dataclass(repr=False)
class GenericInputNodeData(_Value):
    buffer: bytes = b""


@dataclass(repr=False)
class GenericDataInferenceDescriptor(_Value):
    inference_number: int = 0
    model_id: int = 0
    input_node_data_list: list = field(default_factory=list)


@dataclass(repr=False)
class InferenceConfiguration(_Value):
    enable_frame_drop: bool = False


# ---------------------------------------------------------------- results
@dataclass(repr=False)
class RawNode(_Value):
    """One output node of a result (Tessera's form of Kneron's RAW buffer):
    the float values in the ONNX shape, and, for an output the device
    produced, its integer codes and grid (``codes`` None for an output the
    model computes on the CPU)."""

    name: str = ""
    values: Any = None
    codes: Any = None
    scale: float = 1.0
    zero_point: int = 0


@dataclass(repr=False)
class GenericRawResultNDArray(_Value):
    """The output nodes of one inference; ``_default_ordering`` is what
    ChannelOrdering.DEFAULT means on the device that ran it; ``_on_retrieve``
    is told the host milliseconds each node retrieval took (profiling)."""

    nodes: list = field(default_factory=list)
    device_port: int = 0
    """Tessera's: the USB port id of the simulated device that ran it."""
    _default_ordering: Any = None
    _on_retrieve: Any = None

    @property
    def size(self) -> int:
        """Bytes of the raw data (device codes, or float32 for CPU outputs)."""
        return int(sum(n.values.size * (n.codes.itemsize if n.codes is not None else 4) for n in self.nodes))


@dataclass(repr=False)
class HwPreProcInfo(_Value):
    img_width: int = 0
    img_height: int = 0
    resized_img_width: int = 0
    resized_img_height: int = 0
    pad_top: int = 0
    pad_bottom: int = 0
    pad_left: int = 0
    pad_right: int = 0
    model_input_width: int = 0
    model_input_height: int = 0
    crop_area: InferenceCropBox = field(default_factory=InferenceCropBox)


@dataclass(repr=False)
class GenericRawResultHeader(_Value):
    inference_number: int = 0
    crop_number: int = 0
    num_output_node: int = 0


@dataclass(repr=False)
class GenericRawBypassPreProcResultHeader(_Value):
    inference_number: int = 0
    crop_number: int = 0
    num_output_node: int = 0


@dataclass(repr=False)
class GenericImageInferenceResultHeader(_Value):
    inference_number: int = 0
    crop_number: int = 0
    num_output_node: int = 0
    product_id: int = 0
    hw_pre_proc_info_list: list = field(default_factory=list)


@dataclass(repr=False)
class GenericDataInferenceResultHeader(_Value):
    inference_number: int = 0
    crop_number: int = 0
    num_output_node: int = 0
    product_id: int = 0


@dataclass(repr=False)
class GenericRawResult(_Value):
    header: GenericRawResultHeader = field(default_factory=GenericRawResultHeader)
    raw_result: GenericRawResultNDArray = field(default_factory=GenericRawResultNDArray)


@dataclass(repr=False)
class GenericRawBypassPreProcResult(_Value):
    header: GenericRawBypassPreProcResultHeader = field(default_factory=GenericRawBypassPreProcResultHeader)
    raw_result: GenericRawResultNDArray = field(default_factory=GenericRawResultNDArray)


@dataclass(repr=False)
class GenericImageInferenceResult(_Value):
    header: GenericImageInferenceResultHeader = field(default_factory=GenericImageInferenceResultHeader)
    raw_result: GenericRawResultNDArray = field(default_factory=GenericRawResultNDArray)


@dataclass(repr=False)
class GenericDataInferenceResult(_Value):
    header: GenericDataInferenceResultHeader = field(default_factory=GenericDataInferenceResultHeader)
    raw_result: GenericRawResultNDArray = field(default_factory=GenericRawResultNDArray)


@dataclass(repr=False)
class InferenceFloatNodeOutput(_Value):
    """A node's float values, ``ndarray`` in ``channels_ordering`` (3.x's
    name/shape and 1.x's width/height/channel both present)."""

    name: str = ""
    shape: list = field(default_factory=list)
    width: int = 0
    height: int = 0
    channel: int = 0
    num_data: int = 0
    data: Any = None
    channels_ordering: ChannelOrdering = ChannelOrdering.KP_CHANNEL_ORDERING_CHW

    @property
    def ndarray(self) -> np.ndarray:
        return self.data


@dataclass(repr=False)
class InferenceFixedNodeOutput(_Value):
    """A node's fixed-point values: float = data / (scale * 2**radix) =
    data * factor."""

    name: str = ""
    shape: list = field(default_factory=list)
    width: int = 0
    height: int = 0
    channel: int = 0
    radix: int = 0
    scale: float = 1.0
    factor: float = 1.0
    quantization_parameters: QuantizationParameters = field(default_factory=QuantizationParameters)
    dtype: FixedPointDType = FixedPointDType.KP_FIXED_POINT_DTYPE_UNKNOWN
    num_data: int = 0
    data: Any = None
    channels_ordering: ChannelOrdering = ChannelOrdering.KP_CHANNEL_ORDERING_CHW

    @property
    def ndarray(self) -> np.ndarray:
        return self.data

    def to_float_node(self) -> np.ndarray:
        """The float values, data * factor."""
        return self.data.astype(np.float64) * self.factor


# ---------------------------------------------------------------- profiling
@dataclass(repr=False)
class ProfileModelStatistics(_Value):
    model_id: int = 0
    inference_count: int = 0
    cpu_op_count: int = 0
    avg_pre_process_ms: float = 0.0
    avg_inference_ms: float = 0.0
    avg_cpu_op_ms: float = 0.0
    avg_cpu_op_per_cpu_node_ms: float = 0.0
    avg_post_process_ms: float = 0.0


@dataclass(repr=False)
class ProfileData(_Value):
    model_statistic_list: list = field(default_factory=list)


__all__ = [name for name, obj in dict(globals()).items()
           if isinstance(obj, type) and (is_dataclass(obj) or obj is Scale) and not name.startswith("_")]
