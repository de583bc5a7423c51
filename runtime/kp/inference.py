"""kp.inference over simulated devices: sends with the hardware
pre-processing a header asks for (runtime/preprocess.py), or with data
already on the model's input grid (bypass / data inference); receives in
send order; output nodes as float or fixed point (runtime/kp/nodes.py);
frame drop and profiling. 1.x names and their 2.x/3.x renames
(shared/reference/api-notes.md 3.1) are both here; docs/kp.md maps every
name to the Tessera piece doing the work."""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from runtime import preprocess as pp
from runtime.errors import ExecutionError
from runtime.kp.core import group
from runtime.kp.devices import Frame, QueueClosed, QueueTimeout, QueueTooSmall
from runtime.kp.enums import ApiReturnCode, ChannelOrdering, ImageFormat, NormalizeMode, PaddingMode, ResizeMode
from runtime.kp.exception import fail
from runtime.kp.group import DeviceGroup, LoadedModel
from runtime.kp.model import image_input
from runtime.kp.nodes import fixed_node, float_node
from runtime.kp.value import (
    GenericDataInferenceDescriptor,
    GenericDataInferenceResult,
    GenericDataInferenceResultHeader,
    GenericImageInferenceDescriptor,
    GenericImageInferenceResult,
    GenericImageInferenceResultHeader,
    GenericInputNodeImage,
    GenericRawBypassPreProcImageHeader,
    GenericRawBypassPreProcResult,
    GenericRawBypassPreProcResultHeader,
    GenericRawImageHeader,
    GenericRawResult,
    GenericRawResultHeader,
    GenericRawResultNDArray,
    HwPreProcInfo,
    InferenceConfiguration,
    InferenceCropBox,
    ModelNefDescriptor,
    ProfileData,
    RawNode,
)

__all__ = ["set_inference_configuration", "generic_raw_inference_send", "generic_raw_inference_receive",
           "generic_raw_inference_bypass_pre_proc_send", "generic_raw_inference_bypass_pre_proc_receive",
           "generic_image_inference_send", "generic_image_inference_receive", "generic_data_inference_send",
           "generic_data_inference_receive", "generic_inference_retrieve_float_node",
           "generic_inference_retrieve_fixed_node", "profile_set_enable", "profile_get_statistics"]

E = ApiReturnCode
F = ImageFormat
_FORMATS = {F.KP_IMAGE_FORMAT_RGB565: "rgb565", F.KP_IMAGE_FORMAT_RGBA8888: "rgba8888", F.KP_IMAGE_FORMAT_RAW8: "raw8",
            F.KP_IMAGE_FORMAT_YUV420: "yuv420", F.KP_IMAGE_FORMAT_YUYV: "yuyv",
            F.KP_IMAGE_FORMAT_YCBCR422_Y0CBY1CR: "yuyv", F.KP_IMAGE_FORMAT_YCBCR422_Y0CRY1CB: "yvyu",
            F.KP_IMAGE_FORMAT_YCBCR422_CBY0CRY1: "uyvy", F.KP_IMAGE_FORMAT_YCBCR422_CRY0CBY1: "vyuy",
            F.KP_IMAGE_FORMAT_YCBCR422_CRY1CBY0: "yuyv", F.KP_IMAGE_FORMAT_YCBCR422_CBY1CRY0: "yvyu",
            F.KP_IMAGE_FORMAT_YCBCR422_Y1CRY0CB: "uyvy", F.KP_IMAGE_FORMAT_YCBCR422_Y1CBY0CR: "vyuy"}
"""kp image formats -> runtime.preprocess formats. The YCbCr 4:2:2 names
with Y0 before Y1 list bytes in memory order; those with Y1 first list a
little-endian 32-bit word from its top byte (CRY1CBY0 is YUYV in memory)."""
_NORMALIZE = {NormalizeMode.KP_NORMALIZE_DISABLE: "none", NormalizeMode.KP_NORMALIZE_KNERON: "kneron",
              NormalizeMode.KP_NORMALIZE_TENSOR_FLOW: "tensorflow", NormalizeMode.KP_NORMALIZE_YOLO: "yolo",
              NormalizeMode.KP_NORMALIZE_CUSTOMIZED_DEFAULT: "none",
              NormalizeMode.KP_NORMALIZE_CUSTOMIZED_SUB128: "sub128",
              NormalizeMode.KP_NORMALIZE_CUSTOMIZED_DIV2: "div2",
              NormalizeMode.KP_NORMALIZE_CUSTOMIZED_SUB128_DIV2: "sub128_div2"}
_PADDING = {PaddingMode.KP_PADDING_DISABLE: "none", PaddingMode.KP_PADDING_CORNER: "corner",
            PaddingMode.KP_PADDING_SYMMETRIC: "symmetric"}
_PREPROCESS_CODES = ((pp.ImageTooSmall, E.KP_ERROR_IMAGE_RESOLUTION_TOO_SMALL_22),
                     (pp.OddWidth, E.KP_ERROR_IMAGE_ODD_WIDTH_23), (pp.OddHeight, E.KP_ERROR_IMAGE_INVALID_HEIGHT_45),
                     (pp.CropOutside, E.KP_FW_INVALID_INPUT_CROP_PARAM_112),
                     (pp.SizeMismatch, E.KP_FW_IMAGE_SIZE_NOT_MATCH_MODEL_INPUT_107),
                     (pp.PreprocessError, E.KP_ERROR_INVALID_PARAM_12))
MAX_INPUT_NODES = 5
MAX_IMAGE_SIDE = 8192
MAX_IMAGE_PIXELS = MAX_IMAGE_SIDE * MAX_IMAGE_SIDE
"""Largest image a send takes, in pixels (width x height, any aspect):
decoded to float32 RGB it is 768 MiB."""
MAX_BYTES_PER_PIXEL = 4
"""Bytes a pixel takes in the widest format (RGBA8888)."""


# ---------------------------------------------------------------- configuration and profiling
def set_inference_configuration(device_group, inference_configuration) -> None:
    """Frame drop on or off (InferenceConfiguration's one field)."""
    dg = group(device_group, "inference.set_inference_configuration")
    if not isinstance(inference_configuration, InferenceConfiguration):
        raise fail(E.KP_ERROR_INVALID_PARAM_12, "inference.set_inference_configuration",
                   "expected a kp.InferenceConfiguration")
    dg.configuration = InferenceConfiguration(bool(inference_configuration.enable_frame_drop))


def profile_set_enable(device_group, enable: bool) -> None:
    """Start (from zero) or stop gathering per-model statistics."""
    group(device_group, "inference.profile_set_enable").set_profiling(enable)


def profile_get_statistics(device_group) -> ProfileData:
    """Per model: inferences run, device ms from the cycle model, host pre-
    and post-processing ms and CPU-segment kernels, each an average."""
    return ProfileData(group(device_group, "inference.profile_get_statistics").statistics())


# ---------------------------------------------------------------- sends
def generic_raw_inference_send(device_group, generic_raw_image_header, image, image_format) -> None:
    """Pre-process ``image`` as the header says and queue one inference per crop box (one without any)."""
    name = "inference.generic_raw_inference_send"
    dg = group(device_group, name)
    header = _typed(generic_raw_image_header, GenericRawImageHeader, name)
    node = GenericInputNodeImage(image, header.width, header.height, image_format, header.resize_mode,
                                 header.padding_mode, header.normalize_mode, header.inference_crop_box_list)
    _send_images(dg, header.model_id, header.inference_number, [node], "raw", name)


def generic_image_inference_send(device_group, generic_inference_input_descriptor) -> None:
    """3.x: one image per model input (GenericInputNodeImage), each pre-processed by its own settings."""
    name = "inference.generic_image_inference_send"
    dg = group(device_group, name)
    descriptor = _typed(generic_inference_input_descriptor, GenericImageInferenceDescriptor, name)
    nodes = list(descriptor.input_node_image_list)
    if not all(isinstance(n, GenericInputNodeImage) for n in nodes):
        raise fail(E.KP_ERROR_INVALID_PARAM_12, name, "input_node_image_list must hold kp.GenericInputNodeImage")
    _send_images(dg, descriptor.model_id, descriptor.inference_number, nodes, "image", name)


def generic_raw_inference_bypass_pre_proc_send(device_group, generic_raw_image_header, image_buffer) -> None:
    """Queue ``image_buffer``: the model input's device codes (npu order), no pre-processing."""
    name = "inference.generic_raw_inference_bypass_pre_proc_send"
    dg = group(device_group, name)
    header = _typed(generic_raw_image_header, GenericRawBypassPreProcImageHeader, name)
    size = len(image_buffer) if isinstance(image_buffer, (bytes, bytearray, memoryview)) else None
    if header.image_buffer_size and size is not None and size != header.image_buffer_size:
        raise fail(E.KP_ERROR_INVALID_PARAM_12, name, f"image_buffer holds {size} bytes, the header's "
                   f"image_buffer_size says {header.image_buffer_size}")
    _send_data(dg, header.model_id, header.inference_number, [image_buffer], "bypass", name)


def generic_data_inference_send(device_group, generic_inference_input_descriptor) -> None:
    """3.x: one buffer per model input (GenericInputNodeData), already on its grid."""
    name = "inference.generic_data_inference_send"
    dg = group(device_group, name)
    descriptor = _typed(generic_inference_input_descriptor, GenericDataInferenceDescriptor, name)
    buffers = [getattr(n, "buffer", None) for n in descriptor.input_node_data_list]
    _send_data(dg, descriptor.model_id, descriptor.inference_number, buffers, "data", name)


def _typed(value, kind: type, function: str):
    if not isinstance(value, kind):
        raise fail(E.KP_ERROR_INVALID_PARAM_12, function, f"expected a kp.{kind.__name__}, got "
                   f"{type(value).__name__}")
    return value


def _model(dg: DeviceGroup, model_id, inference_number, count: int, function: str) -> LoadedModel:
    if dg.model is None:
        raise fail(E.KP_ERROR_MODEL_NOT_LOADED_35, function, "no model is loaded on the device group")
    if model_id != dg.model.id:
        raise fail(E.KP_ERROR_MODEL_NOT_LOADED_35, function, f"model id {model_id!r} is not loaded; the loaded "
                   f"model's id is {dg.model.id}")
    if not isinstance(inference_number, int) or inference_number < 0:
        raise fail(E.KP_ERROR_INVALID_PARAM_12, function, f"inference_number must be an int >= 0, got "
                   f"{inference_number!r}")
    if count != len(dg.model.inputs) or count > MAX_INPUT_NODES:
        raise fail(E.KP_ERROR_INVALID_INPUT_NODE_DATA_NUMBER_48, function, f"{count} input(s) given; the model "
                   f"has {len(dg.model.inputs)}: {[g.name for g in dg.model.inputs]}")
    return dg.model


def _send_images(dg: DeviceGroup, model_id, inference_number, nodes: list, kind: str, function: str) -> None:
    model = _model(dg, model_id, inference_number, len(nodes), function)
    start = time.perf_counter()
    counts = {len(n.inference_crop_box_list) for n in nodes}
    if len(counts) != 1:
        raise fail(E.KP_FW_INVALID_INPUT_CROP_PARAM_112, function, "every input image needs as many crop boxes")
    crops = counts.pop()
    per_input = [_prepare(node, grid, crops, function) for node, grid in zip(nodes, model.inputs)]
    pre_ms = (time.perf_counter() - start) * 1e3 / max(crops, 1)
    frames = [Frame(model, inference_number, k, {g.name: feeds[k][0] for g, feeds in zip(model.inputs, per_input)},
                    pre_ms=pre_ms, preproc=[feeds[k][1] for feeds in per_input]) for k in range(max(crops, 1))]
    _queue(dg, frames, kind, function)


def _prepare(node: GenericInputNodeImage, grid, crops: int, function: str) -> list[tuple[np.ndarray, HwPreProcInfo]]:
    """One model input's feed and pre-processing record per crop (one without crops)."""
    shape = image_input(grid)
    if shape is None:
        raise fail(E.KP_FW_NOT_SUPPORT_PREPROCESSING_108, function, f"input {grid.name!r} of shape "
                   f"{list(grid.shape)} is not an image ([1, C, H, W] or [1, H, W, C], C 1 or 3): use data inference")
    channels, height, width, channels_last = shape
    settings = _settings(node, function)
    try:
        buffer, image_width, image_height = _pixels(node.image, node.width, node.height, settings[0], function)
        pixels = pp.decode(buffer, image_width, image_height, settings[0])
        boxes = node.inference_crop_box_list or [InferenceCropBox(0, 0, 0, image_width, image_height)]
        out = []
        for box in boxes:
            if not isinstance(box, InferenceCropBox):
                raise fail(E.KP_ERROR_INVALID_PARAM_12, function, "crop boxes must be kp.InferenceCropBox")
            image = pp.to_channels(pp.crop(pixels, box.x, box.y, box.width, box.height), channels)
            planar, geometry = pp.fit(image, height, width, settings[1], settings[2])
            planar = pp.normalize(planar, settings[3])
            feed = (planar.transpose(1, 2, 0) if channels_last else planar)[None]
            info = HwPreProcInfo(image_width, image_height, geometry.resized_width, geometry.resized_height,
                                 geometry.pad_top, geometry.pad_bottom, geometry.pad_left, geometry.pad_right,
                                 width, height, box)
            out.append((np.ascontiguousarray(feed, np.float32), info))
        return out
    except pp.PreprocessError as exc:
        code = next(c for kind, c in _PREPROCESS_CODES if isinstance(exc, kind))
        raise fail(code, function, str(exc)) from None


def _settings(node: GenericInputNodeImage, function: str) -> tuple[str, bool, str, str]:
    """(format, resize, padding, normalisation) of an input image, as runtime.preprocess names them."""
    try:
        fmt = _FORMATS.get(ImageFormat(node.image_format))
        resize = ResizeMode(node.resize_mode) == ResizeMode.KP_RESIZE_ENABLE
        padding = _PADDING[PaddingMode(node.padding_mode)]
        normalize = _NORMALIZE[NormalizeMode(node.normalize_mode)]
    except (ValueError, TypeError) as exc:
        raise fail(E.KP_ERROR_INVALID_PARAM_12, function, f"bad pre-processing setting: {exc}") from None
    if fmt is None:
        raise fail(E.KP_ERROR_INVALID_PARAM_12, function, f"image format {ImageFormat(node.image_format).name} "
                   "is not supported")
    return fmt, resize, padding, normalize


def _pixels(image, width: int, height: int, fmt: str, function: str):
    """(buffer, width, height) of an image given as bytes (with width and
    height) or as a uint8 ndarray (sizes from its shape when not given),
    its size checked against MAX_IMAGE_PIXELS before anything is allocated."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise fail(E.KP_ERROR_INVALID_PARAM_12, function, f"image must be a uint8 array, got {image.dtype}")
        if not (width and height):
            if image.ndim < 2:
                raise fail(E.KP_ERROR_INVALID_PARAM_12, function, "a flat image array needs width and height")
            height, width = image.shape[:2]
            height = height * 2 // 3 if fmt == "yuv420" else height
        _check_size(int(width), int(height), image.size, function)
        return image, int(width), int(height)
    if isinstance(image, (bytes, bytearray, memoryview)):
        if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
            raise fail(E.KP_ERROR_INVALID_PARAM_12, function, "an image given as bytes needs the header's width "
                       "and height")
        _check_size(width, height, memoryview(image).nbytes, function)
        return image, width, height
    raise fail(E.KP_ERROR_INVALID_PARAM_12, function, f"image must be bytes or a numpy array, got "
               f"{type(image).__name__}")


def _check_size(width: int, height: int, nbytes: int, function: str) -> None:
    """SEND_DATA_TOO_LARGE_15 for an image of more than MAX_IMAGE_PIXELS
    pixels, or a buffer larger than the largest such image: decoding it
    (to float32 RGB, 12 bytes a pixel) would take gigabytes before anything
    else could fail."""
    if width * height > MAX_IMAGE_PIXELS or nbytes > MAX_IMAGE_PIXELS * MAX_BYTES_PER_PIXEL:
        raise fail(E.KP_ERROR_SEND_DATA_TOO_LARGE_15, function, f"the image of width {width} and height {height} "
                   f"({width * height} pixels, given in {nbytes} bytes) is over the limit of {MAX_IMAGE_PIXELS} "
                   f"pixels ({MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE}) and {MAX_IMAGE_PIXELS * MAX_BYTES_PER_PIXEL} bytes")


def _send_data(dg: DeviceGroup, model_id, inference_number, buffers: Sequence, kind: str, function: str) -> None:
    model = _model(dg, model_id, inference_number, len(buffers), function)
    start = time.perf_counter()
    feeds = {}
    for buffer, grid in zip(buffers, model.inputs):
        if not isinstance(buffer, (bytes, bytearray, memoryview)):
            raise fail(E.KP_ERROR_INVALID_PARAM_12, function, f"the buffer of input {grid.name!r} must be bytes")
        if len(buffer) != grid.nbytes:
            raise fail(E.KP_FW_IMAGE_SIZE_NOT_MATCH_MODEL_INPUT_107, function, f"input {grid.name!r} takes "
                       f"{grid.nbytes} bytes ({grid.dtype}{list(grid.npu_shape)}), the buffer holds {len(buffer)}")
        feeds[grid.name] = grid.codes_to_values(buffer)
    _queue(dg, [Frame(model, inference_number, 0, feeds, pre_ms=(time.perf_counter() - start) * 1e3)], kind, function)


def _queue(dg: DeviceGroup, frames: list[Frame], kind: str, function: str) -> None:
    """Queue one send's frames (one per crop box) all together or, on any failure, none of them."""
    for frame in frames:
        frame.kind = kind
    try:
        dg.queue.put(frames, dg.configuration.enable_frame_drop, dg.timeout_s)
    except QueueTooSmall as exc:
        raise fail(E.KP_ERROR_FIFOQ_INPUT_BUFF_COUNT_NOT_ENOUGH_42, function, f"{exc}: send fewer crop boxes, "
                   "or connect more devices") from None
    except QueueTimeout:
        raise fail(E.KP_ERROR_USB_TIMEOUT_N7, function, f"the device queue had no room for this send's "
                   f"{len(frames)} frame(s) within {dg.timeout_s} s; none was queued (receive results, or enable "
                   "frame drop)") from None
    except QueueClosed:
        raise fail(E.KP_ERROR_DEVICE_NOT_EXIST_10, function, "the devices were reset or disconnected while "
                   "this send waited; none of its frames was queued") from None


# ---------------------------------------------------------------- receives
def generic_raw_inference_receive(device_group, generic_raw_image_header, model_nef_descriptor) -> GenericRawResult:
    """The next result, in send order."""
    name = "inference.generic_raw_inference_receive"
    _typed(generic_raw_image_header, GenericRawImageHeader, name)
    frame, raw = _receive(device_group, model_nef_descriptor, name)
    return GenericRawResult(GenericRawResultHeader(frame.inference_number, frame.crop_number, len(raw.nodes)), raw)


def generic_raw_inference_bypass_pre_proc_receive(device_group, generic_raw_image_header,
                                                  model_nef_descriptor) -> GenericRawBypassPreProcResult:
    name = "inference.generic_raw_inference_bypass_pre_proc_receive"
    _typed(generic_raw_image_header, GenericRawBypassPreProcImageHeader, name)
    frame, raw = _receive(device_group, model_nef_descriptor, name)
    return GenericRawBypassPreProcResult(
        GenericRawBypassPreProcResultHeader(frame.inference_number, frame.crop_number, len(raw.nodes)), raw)


def generic_image_inference_receive(device_group) -> GenericImageInferenceResult:
    frame, raw = _receive(device_group, None, "inference.generic_image_inference_receive")
    header = GenericImageInferenceResultHeader(frame.inference_number, frame.crop_number, len(raw.nodes),
                                               frame.product_id, list(frame.preproc))
    return GenericImageInferenceResult(header, raw)


def generic_data_inference_receive(device_group) -> GenericDataInferenceResult:
    frame, raw = _receive(device_group, None, "inference.generic_data_inference_receive")
    header = GenericDataInferenceResultHeader(frame.inference_number, frame.crop_number, len(raw.nodes),
                                              frame.product_id)
    return GenericDataInferenceResult(header, raw)


def _receive(device_group, descriptor, function: str) -> tuple[Frame, GenericRawResultNDArray]:
    dg = group(device_group, function)
    if descriptor is not None and not isinstance(descriptor, ModelNefDescriptor):
        raise fail(E.KP_ERROR_INVALID_PARAM_12, function, "expected the kp.ModelNefDescriptor of the loaded model")
    if dg.model is None:
        raise fail(E.KP_ERROR_MODEL_NOT_LOADED_35, function, "no model is loaded on the device group")
    try:
        frame = dg.queue.take(dg.timeout_s)
    except QueueTimeout:
        raise fail(E.KP_ERROR_USB_TIMEOUT_N7, function, f"no result within {dg.timeout_s} s") from None
    except QueueClosed:
        raise fail(E.KP_ERROR_DEVICE_NOT_EXIST_10, function, "the devices were reset or disconnected while this "
                   "receive waited") from None
    if frame.error is not None:
        raise fail(E.KP_FW_INFERENCE_ERROR_101, function, f"inference {frame.inference_number} failed: "
                   f"{frame.error}")
    codes = frame.codes or {}
    nodes = [RawNode(g.name, frame.outputs[g.name], codes[g.name].codes if g.name in codes else None,
                     codes[g.name].scale if g.name in codes else 1.0, codes[g.name].zero if g.name in codes else 0)
             for g in frame.model.outputs]
    model_id = frame.model.id
    return frame, GenericRawResultNDArray(nodes, frame.port, dg.default_ordering,
                                          lambda ms: dg.post_processed(model_id, ms))


# ---------------------------------------------------------------- output nodes
def generic_inference_retrieve_float_node(node_idx, generic_raw_result, channels_ordering):
    """Output node ``node_idx`` as float values (InferenceFloatNodeOutput)."""
    return _retrieve(node_idx, generic_raw_result, channels_ordering, float_node,
                     "inference.generic_inference_retrieve_float_node")


def generic_inference_retrieve_fixed_node(node_idx, generic_raw_result, channels_ordering):
    """Output node ``node_idx`` as fixed point (InferenceFixedNodeOutput):
    float = data / (scale * 2**radix)."""
    return _retrieve(node_idx, generic_raw_result, channels_ordering, fixed_node,
                     "inference.generic_inference_retrieve_fixed_node")


def _retrieve(node_idx, result, channels_ordering, convert, function: str):
    start = time.perf_counter()
    raw = getattr(result, "raw_result", None)
    if not isinstance(raw, GenericRawResultNDArray):
        raise fail(E.KP_ERROR_INVALID_PARAM_12, function, "generic_raw_result must be a result a receive returned")
    if not isinstance(node_idx, (int, np.integer)) or not 0 <= node_idx < len(raw.nodes):
        raise fail(E.KP_ERROR_INVALID_PARAM_12, function, f"node_idx {node_idx!r} is not in 0..{len(raw.nodes) - 1}")
    try:
        ordering = ChannelOrdering(channels_ordering)
    except ValueError:
        raise fail(E.KP_ERROR_INVALID_PARAM_12, function, f"channels_ordering {channels_ordering!r} is not a "
                   "kp.ChannelOrdering") from None
    if ordering == ChannelOrdering.KP_CHANNEL_ORDERING_DEFAULT:
        default = raw._default_ordering
        ordering = ChannelOrdering.KP_CHANNEL_ORDERING_CHW if default is None else default
    try:
        node = convert(raw.nodes[int(node_idx)], ordering)
    except ExecutionError as exc:
        raise fail(E.KP_FW_INFERENCE_ERROR_101, function, str(exc)) from None
    if raw._on_retrieve is not None:
        raw._on_retrieve((time.perf_counter() - start) * 1e3)
    return node
