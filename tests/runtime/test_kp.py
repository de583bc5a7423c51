"""kp over Tessera: simulated devices, sends with hardware pre-processing,
receives in order, fixed/float nodes, frame drop, profiling and error codes
(docs/kp.md). One tiny ResNet compiled three ways, once per module."""
import os
import resource
import threading

import numpy as np
import pytest

from runtime import kp
from runtime import preprocess as pp
from runtime.binary import read_binary
from runtime.engine import Engine
from runtime.errors import TesseraError
from runtime.kp import devices
from tests.helpers.kp import calibration_images, resnet_with_device_outputs, rgb565, yuyv
from tests.helpers.threads import in_thread

E = kp.ApiReturnCode
CHW, HCW, HWC, DEFAULT = (kp.ChannelOrdering.KP_CHANNEL_ORDERING_CHW, kp.ChannelOrdering.KP_CHANNEL_ORDERING_HCW,
                          kp.ChannelOrdering.KP_CHANNEL_ORDERING_HWC, kp.ChannelOrdering.KP_CHANNEL_ORDERING_DEFAULT)


@pytest.fixture(scope="module")
def binaries(tmp_path_factory):
    """int8 ResNet with a CPU output (probabilities) and device outputs
    (logits); radix8 ResNet cut to its first 6 layers (a feature map)."""
    from compiler.compile import compile_model
    from compiler.zoo import resnet

    folder = tmp_path_factory.mktemp("kp")
    paths = {"int8": folder / "int8.bin", "radix8": folder / "radix8.bin"}
    compile_model(resnet_with_device_outputs(), samples=calibration_images(), hwlinear=True, outfile=paths["int8"])
    compile_model(resnet(depth=10, image=32, classes=10, width=8), samples=calibration_images(), nlayers=6,
                  mode="radix8", outfile=paths["radix8"])
    return paths


@pytest.fixture(scope="module")
def photo():
    from compiler.zoo.images import sample_photos

    return sample_photos()[1][100:164, 200:296]  # flower.jpg, 96x64 RGB


@pytest.fixture
def group():
    """Groups connected in a test, disconnected after it; one KL720 by default."""
    made = []

    def connect(ports=(1,), count=1, chip="KL720"):
        kp.core.simulate_devices(count, chip)
        dg = kp.core.connect_devices(list(ports))
        made.append(dg)
        return dg

    yield connect
    for dg in made:
        if dg.connected:
            kp.core.disconnect_devices(dg)
    kp.core.simulate_devices(1, "KL720")


def raises(code, call, *args, **kwargs):
    with pytest.raises(kp.ApiKPException) as info:
        call(*args, **kwargs)
    assert info.value.api_return_code == code, info.value
    return info.value


def send_rgb565(dg, model_id, image, number=0, **header):
    h = kp.GenericRawImageHeader(model_id=model_id, inference_number=number, **header)
    kp.inference.generic_raw_inference_send(dg, h, rgb565(image), kp.ImageFormat.KP_IMAGE_FORMAT_RGB565)
    return h


# ---------------------------------------------------------------- module and enums
def test_enums_have_the_documented_values():
    assert kp.ImageFormat.KP_IMAGE_FORMAT_RGB565 == 0x60 and kp.ImageFormat.KP_IMAGE_FORMAT_YUYV == 0x2F
    assert kp.ImageFormat.KP_IMAGE_FORMAT_RAW8 == 0x20 and kp.ImageFormat.KP_IMAGE_FORMAT_YCBCR422_Y0CBY1CR == 0x37
    assert kp.NormalizeMode.KP_NORMALIZE_DISABLE == 0xFF and kp.NormalizeMode.KP_NORMALIZE_CUSTOMIZED_SUB128_DIV2 == 7
    assert (kp.ResizeMode.KP_RESIZE_ENABLE, kp.PaddingMode.KP_PADDING_SYMMETRIC) == (2, 3)
    assert (HCW, CHW, HWC, DEFAULT) == (0, 1, 2, 3)
    assert kp.DataType.KP_DTYPE_FLOAT32 == 9 and kp.FixedPointDType.KP_FIXED_POINT_DTYPE_INT16 == 2
    assert kp.ModelTensorDataLayout.KP_MODEL_TENSOR_DATA_LAYOUT_HW1C16B_BE == 17
    assert kp.ProductId.KP_DEVICE_KL520 == 0x100 and kp.ProductId.KP_DEVICE_KL830 == 0x832
    assert kp.ModelTargetChip.KP_MODEL_TARGET_CHIP_KL540 == 6 and kp.ResetMode.KP_RESET_REBOOT_SYSTEM == 3
    assert kp.UsbSpeed.KP_USB_SPEED_SUPER == 4
    assert E.KP_ERROR_USB_TIMEOUT_N7 == -7 and E.KP_ERROR_WDI_OTHER_N99 == -299 and E.KP_DBG_CHECKPOINT_END_37 == 37
    for code in E:  # "The number suffix in each name equals its value" (libusb's N7 is -7)
        suffix = code.name.rsplit("_", 1)[-1]
        if suffix.isdigit():
            assert code.value == int(suffix), code
        elif suffix[1:].isdigit() and "WDI" not in code.name:
            assert code.value == -int(suffix[1:]), code


def test_the_exception_carries_code_and_function():
    exc = kp.ApiKPException(E.KP_ERROR_INVALID_PARAM_12, "kp.core.connect_devices")
    assert exc.api_return_code is E.KP_ERROR_INVALID_PARAM_12 and exc.function_name == "kp.core.connect_devices"
    assert "KP_ERROR_INVALID_PARAM_12" in str(exc)


def test_every_kp_error_is_a_tessera_error_and_keeps_its_kp_form():
    """docs/reliability.md: every error Tessera raises on purpose derives
    from TesseraError; kp's exception keeps its code, function, result and text."""
    exc = kp.ApiKPException(12, "kp.core.set_timeout", result="r", detail="milliseconds must be an int >= 0")
    assert isinstance(exc, TesseraError) and isinstance(exc, Exception)
    assert (exc.api_return_code, exc.function_name, exc.result) == (E.KP_ERROR_INVALID_PARAM_12,
                                                                    "kp.core.set_timeout", "r")
    assert str(exc) == ("Error: kp.core.set_timeout failed, error = KP_ERROR_INVALID_PARAM_12 (12): milliseconds "
                        "must be an int >= 0")
    for internal in (devices.QueueClosed, devices.QueueTimeout, devices.QueueTooSmall, devices.DeviceConfigError):
        assert issubclass(internal, TesseraError), internal
    with pytest.raises(devices.DeviceConfigError, match="TESSERA_KP_DEVICES entry 'KL999'") as info:
        devices.parse_devices("KL999")
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------- devices and models
def test_scan_connect_and_the_chip_are_configurable(group, monkeypatch):
    monkeypatch.setattr(devices, "_configured", None)
    monkeypatch.setenv("TESSERA_KP_DEVICES", "2xKL520,KL720")
    found = kp.core.scan_devices()
    assert found.device_descriptor_number == 3
    assert [d.product_id for d in found.device_descriptor_list] == [0x100, 0x100, 0x720]
    assert [d.usb_port_id for d in found.device_descriptor_list] == [1, 2, 3]
    raises(E.KP_ERROR_DEVICE_GROUP_MIX_PRODUCT_29, kp.core.connect_devices, [2, 3])
    raises(E.KP_ERROR_DEVICE_NOT_EXIST_10, kp.core.connect_devices, [4])
    raises(E.KP_ERROR_INVALID_PARAM_12, kp.core.connect_devices, [])
    dg = kp.core.connect_devices([1, 2])
    try:
        assert not kp.core.scan_devices()[0].is_connectable
        raises(E.KP_ERROR_CONNECT_FAILED_28, kp.core.connect_devices, [1])
    finally:
        kp.core.disconnect_devices(dg)
    assert kp.core.scan_devices()[0].is_connectable
    raises(E.KP_ERROR_DEVICE_NOT_EXIST_10, kp.core.set_timeout, dg, 10)


def test_port_0_connects_the_first_connectable_device(group):
    """api-notes 3.2: usb_port_ids=[0] is the first connectable device (the
    PLUS examples' --port_id default); the ports scan reports still work."""
    first = group(ports=(0,), count=3)
    assert first.usb_port_ids == [1]
    assert [d.is_connectable for d in kp.core.scan_devices().device_descriptor_list] == [False, True, True]
    named = kp.core.connect_devices([0, 3])  # 0 skips the port the list names
    assert named.usb_port_ids == [2, 3]
    raises(E.KP_ERROR_CONNECT_FAILED_28, kp.core.connect_devices, [0])
    kp.core.disconnect_devices(named)
    second = kp.core.connect_devices_without_check([2])
    third = kp.core.connect_devices(0)
    assert second.usb_port_ids == [2] and third.usb_port_ids == [3]
    raises(E.KP_ERROR_INVALID_PARAM_12, kp.core.connect_devices, [-1])
    for dg in (second, third):
        kp.core.disconnect_devices(dg)


def test_the_descriptor_describes_the_binary(group, binaries):
    dg = group()
    descriptor = kp.core.load_model_from_file(dg, str(binaries["int8"]))
    model = read_binary(binaries["int8"])
    assert descriptor.num_models == 1 and descriptor.target_chip == kp.ModelTargetChip.KP_MODEL_TARGET_CHIP_KL720
    single = descriptor.models[0]
    assert single.id == 1 and (single.width, single.height, single.channel) == (32, 32, 3)
    image = single.input_nodes[0]
    grid = model.device_segments[0].inputs[0]
    assert image.name == "image" and image.shape == [1, 3, 32, 32]
    assert image.data_layout == kp.ModelTensorDataLayout.KP_MODEL_TENSOR_DATA_LAYOUT_RAW_8B
    fixed = image.quantization_parameters.quantized_fixed_point_descriptor_list[0]
    assert fixed.scale.value * 2.0 ** fixed.radix == pytest.approx(1 / grid.scale, rel=1e-12)
    assert 1.0 <= fixed.scale < 2.0 and fixed.zero_point == grid.zero
    layouts = {n.name: n.data_layout.name.rsplit("LAYOUT_", 1)[1] for n in single.output_nodes}
    assert layouts == {"probabilities": "RAW_FLOAT", "gemm_103": "RAW_8B"}


def test_loading_compiles_the_kernels_so_an_inference_never_waits_for_them(group, binaries, photo, monkeypatch):
    """A cold kernel cache compiles at load_model, not inside a send/receive
    under the examples' 5 s USB timeout (a held-out Kneron example timed out
    on its first inference): each device's engine has run once when the load
    returns, on zeros, and that run went through the same kernels."""
    from runtime.engine import Engine

    warmed = []
    warm = Engine.warm
    monkeypatch.setattr(Engine, "warm", lambda self, who="tessera": (warmed.append((who, self)), warm(self, who)))
    dg = group(ports=(1, 2), count=2)
    descriptor = kp.core.load_model_from_file(dg, str(binaries["int8"]))
    assert [who for who, _ in warmed] == ["kp", "kp"]
    assert all("the first run" in engine._ran for _, engine in warmed)
    kp.core.set_timeout(dg, 5000)
    header = send_rgb565(dg, 1, photo, number=3)
    result = kp.inference.generic_raw_inference_receive(dg, header, descriptor)
    assert result.header.inference_number == 3


def test_a_corrupt_or_missing_binary_is_refused(group, binaries, tmp_path):
    dg = group()
    data = bytearray(binaries["int8"].read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(data))
    raises(E.KP_ERROR_INVALID_MODEL_21, kp.core.load_model_from_file, dg, str(bad))
    raises(E.KP_ERROR_FILE_OPEN_FAILED_20, kp.core.load_model_from_file, dg, str(tmp_path / "none.bin"))


def test_only_a_regular_file_is_loaded_and_a_fifo_never_waits(group, tmp_path):
    """A FIFO, a directory or a non-path fails at once with FILE_OPEN_FAILED_20 naming it;
    a large file that is not a binary is refused from its header, not read whole."""
    dg = group()
    fifo = tmp_path / "model.fifo"
    os.mkfifo(fifo)
    loader, box = in_thread(kp.core.load_model_from_file, dg, str(fifo))
    loader.join(60)  # a guard against the hang this test is about, not a timing check
    assert not loader.is_alive(), "load_model_from_file waits on a FIFO"
    error = box["error"]
    assert error.api_return_code == E.KP_ERROR_FILE_OPEN_FAILED_20 and "FIFO" in str(error) and str(fifo) in str(error)
    error = raises(E.KP_ERROR_FILE_OPEN_FAILED_20, kp.core.load_model_from_file, dg, str(tmp_path))
    assert "a directory" in str(error)
    raises(E.KP_ERROR_FILE_OPEN_FAILED_20, kp.core.load_model_from_file, dg, None)
    sparse = tmp_path / "sparse.bin"
    with open(sparse, "wb") as handle:
        handle.truncate(1 << 33)  # 8 GiB of holes: read whole, it would take 8 GiB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    error = raises(E.KP_ERROR_INVALID_MODEL_21, kp.core.load_model_from_file, dg, str(sparse))
    assert "sparse.bin" in str(error) and "magic" in str(error)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 1 << 20  # KiB: under 1 GiB more


# ---------------------------------------------------------------- pre-processing
def test_formats_decode_to_the_same_pixels(photo):
    h, w = photo.shape[:2]
    assert np.abs(pp.decode(rgb565(photo), w, h, "rgb565") - (photo & np.array([248, 252, 248], np.uint8))).max() == 0
    rgba = np.concatenate([photo, np.full((h, w, 1), 7, np.uint8)], axis=-1)
    assert np.array_equal(pp.decode(rgba, w, h, "rgba8888"), photo.astype(np.float32))
    assert np.abs(pp.decode(yuyv(photo), w, h, "yuyv") - photo).mean() < 4
    grey = pp.decode(photo[..., 1].copy(), w, h, "raw8")
    assert grey.shape == (h, w, 1) and np.array_equal(pp.to_channels(grey, 3)[..., 2], photo[..., 1])
    flat = np.full((4, 8, 2), 128, np.uint8)
    flat[..., 0] = 90
    assert np.array_equal(pp.decode(flat, 8, 4, "yuyv"), np.full((4, 8, 3), 90, np.float32))


def test_padding_and_normalisation():
    image = np.full((32, 64, 3), 255, np.float32)
    corner, geometry = pp.fit(image, 32, 32, True, "corner")
    assert (geometry.resized_width, geometry.resized_height, geometry.pad_bottom, geometry.pad_top) == (32, 16, 16, 0)
    symmetric, geometry = pp.fit(image, 32, 32, True, "symmetric")
    assert (geometry.pad_top, geometry.pad_bottom) == (8, 8)
    out = pp.normalize(symmetric, "kneron")
    assert out[0, 0, 0] == 0.0 and out[0, 16, 0] == pytest.approx(255 / 256 - 0.5)
    assert pp.normalize(corner, "tensorflow")[0, 0, 0] == 1.0 and pp.normalize(corner, "yolo")[0, 0, 0] == 1.0
    assert pp.normalize(corner, "sub128_div2")[0, 0, 0] == 63.5
    stretched, geometry = pp.fit(image, 32, 32, True, "none")
    assert (geometry.resized_width, geometry.resized_height) == (32, 32) and not np.isnan(stretched).any()
    with pytest.raises(pp.SizeMismatch):
        pp.fit(image, 32, 32, False, "corner")


# ---------------------------------------------------------------- inference
def test_a_send_runs_the_preprocessed_photo_on_the_engine(group, binaries, photo):
    dg = group()
    descriptor = kp.core.load_model_from_file(dg, str(binaries["int8"]))
    header = send_rgb565(dg, 1, photo, number=7, padding_mode=kp.PaddingMode.KP_PADDING_SYMMETRIC)
    result = kp.inference.generic_raw_inference_receive(dg, header, descriptor)
    assert (result.header.inference_number, result.header.crop_number, result.header.num_output_node) == (7, 0, 2)

    pixels = pp.decode(rgb565(photo), photo.shape[1], photo.shape[0], "rgb565")
    planar, _ = pp.fit(pixels, 32, 32, True, "symmetric")
    want = Engine(read_binary(binaries["int8"])).run({"image": pp.normalize(planar, "kneron")[None]})
    for index, name in enumerate(("probabilities", "gemm_103")):
        node = kp.inference.generic_inference_retrieve_float_node(index, result, CHW)
        assert node.name == name and np.array_equal(node.ndarray, want[name])


def test_fixed_nodes_reproduce_the_float_nodes(group, binaries, photo):
    dg = group()
    descriptor = kp.core.load_model_from_file(dg, str(binaries["int8"]))
    header = send_rgb565(dg, 1, photo)
    result = kp.inference.generic_raw_inference_receive(dg, header, descriptor)
    logits_f = kp.inference.generic_inference_retrieve_float_node(1, result, DEFAULT).ndarray
    logits = kp.inference.generic_inference_retrieve_fixed_node(1, result, DEFAULT)
    zero = descriptor.models[0].output_nodes[1].quantization_parameters.quantized_fixed_point_descriptor_list[0]
    assert zero.zero_point != 0 and logits.dtype == kp.FixedPointDType.KP_FIXED_POINT_DTYPE_INT16
    assert logits.ndarray.dtype == np.int16 and np.abs(logits.ndarray).max() > 10
    np.testing.assert_allclose(logits.ndarray / (logits.scale * 2.0 ** logits.radix), logits_f, rtol=1e-6, atol=1e-7)
    assert logits.factor == pytest.approx(1 / (logits.scale * 2 ** logits.radix))

    probs_f = kp.inference.generic_inference_retrieve_float_node(0, result, DEFAULT).ndarray
    probs = kp.inference.generic_inference_retrieve_fixed_node(0, result, DEFAULT)
    assert probs.dtype == kp.FixedPointDType.KP_FIXED_POINT_DTYPE_INT16 and probs.scale == 1.0
    assert 16383 < np.abs(probs.ndarray).max() <= 32767
    assert np.abs(probs.ndarray * probs.factor - probs_f).max() <= 2.0 ** -(probs.radix + 1)


def test_radix_models_have_power_of_two_scales_and_every_ordering(group, binaries, photo):
    dg = group(chip="KL520")
    descriptor = kp.core.load_model_from_file(dg, str(binaries["radix8"]))
    header = send_rgb565(dg, 1, photo)
    result = kp.inference.generic_raw_inference_receive(dg, header, descriptor)
    chw = kp.inference.generic_inference_retrieve_float_node(0, result, CHW).ndarray
    assert chw.shape == (1, 8, 8, 8)
    fixed = kp.inference.generic_inference_retrieve_fixed_node(0, result, CHW)
    assert fixed.scale == 1.0 and fixed.dtype == kp.FixedPointDType.KP_FIXED_POINT_DTYPE_INT8
    assert np.array_equal(fixed.ndarray / 2.0 ** fixed.radix, chw)
    for ordering, axes in ((HCW, (0, 2, 1, 3)), (HWC, (0, 2, 3, 1)), (DEFAULT, (0, 2, 1, 3))):  # KL520: HCW
        node = kp.inference.generic_inference_retrieve_float_node(0, result, ordering)
        assert np.array_equal(node.ndarray, chw.transpose(axes))
        assert np.array_equal(kp.inference.generic_inference_retrieve_fixed_node(0, result, ordering).ndarray,
                              fixed.ndarray.transpose(axes))
    assert (node.width, node.height, node.channel) == (8, 8, 8)


def test_crop_boxes_give_one_result_each(group, binaries, photo):
    dg = group()
    descriptor = kp.core.load_model_from_file(dg, str(binaries["int8"]))
    boxes = [kp.InferenceCropBox(0, 0, 0, 48, 48), kp.InferenceCropBox(1, 40, 10, 40, 50)]
    header = send_rgb565(dg, 1, photo, number=3, inference_crop_box_list=boxes)
    assert header.crop_count == 2
    crops = [kp.inference.generic_raw_inference_receive(dg, header, descriptor) for _ in boxes]
    assert [(r.header.inference_number, r.header.crop_number) for r in crops] == [(3, 0), (3, 1)]
    for box, result in zip(boxes, crops):
        alone = send_rgb565(dg, 1, np.ascontiguousarray(photo[box.y:box.y + box.height, box.x:box.x + box.width]))
        single = kp.inference.generic_raw_inference_receive(dg, alone, descriptor)
        assert np.array_equal(kp.inference.generic_inference_retrieve_float_node(1, result, CHW).ndarray,
                              kp.inference.generic_inference_retrieve_float_node(1, single, CHW).ndarray)


def test_a_multi_crop_send_that_times_out_queues_none_of_its_crops(group, binaries, photo):
    """All or nothing: with room for two frames, a three-crop send times out
    and queues nothing (no orphan results); its retry gives its three results
    once each, in box order, and nothing else."""
    dg = group()
    descriptor = kp.core.load_model_from_file(dg, str(binaries["int8"]))
    kp.core.set_timeout(dg, 200)
    for number in range(devices.QUEUE_DEPTH - 2):
        header = send_rgb565(dg, 1, photo, number)
    boxes = [kp.InferenceCropBox(i, 8 * i, 0, 48, 48) for i in range(3)]
    error = raises(E.KP_ERROR_USB_TIMEOUT_N7, send_rgb565, dg, 1, photo, 7, inference_crop_box_list=boxes)
    assert "none was queued" in str(error)

    def numbers(count):
        return [(r.header.inference_number, r.header.crop_number) for r in
                (kp.inference.generic_raw_inference_receive(dg, header, descriptor) for _ in range(count))]

    assert numbers(devices.QUEUE_DEPTH - 2) == [(n, 0) for n in range(devices.QUEUE_DEPTH - 2)]
    raises(E.KP_ERROR_USB_TIMEOUT_N7, kp.inference.generic_raw_inference_receive, dg, header, descriptor)
    send_rgb565(dg, 1, photo, 7, inference_crop_box_list=boxes)
    assert numbers(3) == [(7, 0), (7, 1), (7, 2)]
    raises(E.KP_ERROR_USB_TIMEOUT_N7, kp.inference.generic_raw_inference_receive, dg, header, descriptor)


def test_a_send_with_more_crops_than_the_group_holds_is_refused_at_once(group, binaries, photo):
    dg = group()
    kp.core.load_model_from_file(dg, str(binaries["int8"]))
    boxes = [kp.InferenceCropBox(i, 0, 0, 32, 32) for i in range(devices.QUEUE_DEPTH + 1)]
    error = raises(E.KP_ERROR_FIFOQ_INPUT_BUFF_COUNT_NOT_ENOUGH_42, send_rgb565, dg, 1, photo,
                   inference_crop_box_list=boxes)
    assert f"{devices.QUEUE_DEPTH + 1} frames" in str(error) and f"holds {devices.QUEUE_DEPTH}" in str(error)
    assert not dg.queue._order


def test_a_huge_image_is_refused_before_anything_is_allocated(group, binaries):
    """A 60 000 x 60 000 image (given as a zero-stride array, so the test
    allocates nothing either; or as bytes with the header's width and height)
    gives SEND_DATA_TOO_LARGE_15 naming width, height and the limit."""
    dg = group()
    kp.core.load_model_from_file(dg, str(binaries["int8"]))
    side = 60_000
    huge = np.broadcast_to(np.zeros((1, 1, 2), np.uint8), (side, side, 2))
    header = kp.GenericRawImageHeader(model_id=1)
    rgb = kp.ImageFormat.KP_IMAGE_FORMAT_RGB565
    error = raises(E.KP_ERROR_SEND_DATA_TOO_LARGE_15, kp.inference.generic_raw_inference_send, dg, header, huge, rgb)
    limit = kp.inference.MAX_IMAGE_PIXELS
    assert f"width {side} and height {side}" in str(error) and f"limit of {limit} pixels" in str(error)
    header = kp.GenericRawImageHeader(model_id=1, width=side, height=side)
    error = raises(E.KP_ERROR_SEND_DATA_TOO_LARGE_15, kp.inference.generic_raw_inference_send, dg, header,
                   b"\0" * 64, rgb)
    assert f"width {side} and height {side}" in str(error)
    node = kp.GenericInputNodeImage(huge, image_format=rgb)
    raises(E.KP_ERROR_SEND_DATA_TOO_LARGE_15, kp.inference.generic_image_inference_send, dg,
           kp.GenericImageInferenceDescriptor(0, 1, [node]))
    assert not dg.queue._order


def test_bypass_and_data_sends_take_the_device_codes(group, binaries, photo):
    dg = group()
    descriptor = kp.core.load_model_from_file(dg, str(binaries["int8"]))
    image = descriptor.models[0].input_nodes[0]
    q = image.quantization_parameters.quantized_fixed_point_descriptor_list[0]
    rgba = np.concatenate([photo[:32, :32], np.zeros((32, 32, 1), np.uint8)], axis=-1)
    node = kp.GenericInputNodeImage(rgba, image_format=kp.ImageFormat.KP_IMAGE_FORMAT_RGBA8888,
                                    normalize_mode=kp.NormalizeMode.KP_NORMALIZE_YOLO)
    kp.inference.generic_image_inference_send(dg, kp.GenericImageInferenceDescriptor(5, 1, [node]))
    by_image = kp.inference.generic_image_inference_receive(dg)
    info = by_image.header.hw_pre_proc_info_list[0]
    assert by_image.header.product_id == 0x720
    assert (info.img_width, info.resized_img_width, info.pad_right) == (32, 32, 0)

    x = photo[:32, :32].transpose(2, 0, 1)[None].astype(np.float64) / 255
    codes = np.clip(np.rint(x * float(q.scale) * 2 ** q.radix) + q.zero_point, -128, 127).astype(np.int8)
    header = kp.GenericRawBypassPreProcImageHeader(model_id=1, inference_number=6, image_buffer_size=codes.nbytes)
    kp.inference.generic_raw_inference_bypass_pre_proc_send(dg, header, codes.tobytes())
    bypass = kp.inference.generic_raw_inference_bypass_pre_proc_receive(dg, header, descriptor)
    kp.inference.generic_data_inference_send(dg, kp.GenericDataInferenceDescriptor(
        8, 1, [kp.GenericInputNodeData(codes.tobytes())]))
    data = kp.inference.generic_data_inference_receive(dg)
    assert (bypass.header.inference_number, data.header.inference_number) == (6, 8)
    want = kp.inference.generic_inference_retrieve_fixed_node(1, by_image, CHW).ndarray
    for result in (bypass, data):
        assert np.array_equal(kp.inference.generic_inference_retrieve_fixed_node(1, result, CHW).ndarray, want)
    raises(E.KP_FW_IMAGE_SIZE_NOT_MATCH_MODEL_INPUT_107, kp.inference.generic_data_inference_send, dg,
           kp.GenericDataInferenceDescriptor(9, 1, [kp.GenericInputNodeData(codes.tobytes()[1:])]))
    raises(E.KP_ERROR_INVALID_INPUT_NODE_DATA_NUMBER_48, kp.inference.generic_data_inference_send, dg,
           kp.GenericDataInferenceDescriptor(9, 1, [kp.GenericInputNodeData(codes.tobytes())] * 2))


def test_the_queue_blocks_when_full_or_drops_the_oldest(group, binaries, photo):
    dg = group()
    descriptor = kp.core.load_model_from_file(dg, str(binaries["int8"]))
    kp.core.set_timeout(dg, 300)
    depth = devices.QUEUE_DEPTH
    for number in range(depth):  # fills the queue without a receive
        header = send_rgb565(dg, 1, photo, number)
    raises(E.KP_ERROR_USB_TIMEOUT_N7, send_rgb565, dg, 1, photo, depth)
    assert [kp.inference.generic_raw_inference_receive(dg, header, descriptor).header.inference_number
            for _ in range(depth)] == list(range(depth))

    kp.inference.set_inference_configuration(dg, kp.InferenceConfiguration(enable_frame_drop=True))
    for number in range(depth + 3):
        send_rgb565(dg, 1, photo, number)
    numbers = [kp.inference.generic_raw_inference_receive(dg, header, descriptor).header.inference_number
               for _ in range(depth)]
    assert dg.queue.dropped == 3 and numbers == sorted(numbers) and numbers[-1] == depth + 2
    raises(E.KP_ERROR_USB_TIMEOUT_N7, kp.inference.generic_raw_inference_receive, dg, header, descriptor)


def test_two_devices_share_the_work_and_results_keep_send_order(group, binaries, photo):
    """While one device runs a frame, the other takes the next waiting one.
    Each device holds its first frame until the other has started one (else,
    on a loaded host, one device's thread could run every frame before the
    other's was scheduled at all: a flake of the suite, not a fault of the
    queue)."""
    dg = group(ports=(1, 2), count=2)
    descriptor = kp.core.load_model_from_file(dg, str(binaries["int8"]))
    count = 2 * devices.QUEUE_DEPTH
    got = []
    started = {1: threading.Event(), 2: threading.Event()}
    run = dg.queue._run

    def busy_until_the_other_starts(device, queue, frames):
        started[device.port].set()
        started[3 - device.port].wait(30)
        run(device, queue, frames)

    dg.queue._run = busy_until_the_other_starts

    def receive():
        for _ in range(count):
            got.append(kp.inference.generic_raw_inference_receive(dg, kp.GenericRawImageHeader(), descriptor))

    receiver = threading.Thread(target=receive)
    receiver.start()
    for number in range(count):
        send_rgb565(dg, 1, photo[:, number:number + 64], number)
    receiver.join(30)
    assert [r.header.inference_number for r in got] == list(range(count))
    assert {r.raw_result.device_port for r in got} == {1, 2}


def test_profile_statistics_come_from_the_cycle_model_and_the_host(group, binaries, photo):
    dg = group()
    descriptor = kp.core.load_model_from_file(dg, str(binaries["int8"]))
    kp.inference.profile_set_enable(dg, True)
    for number in range(2):
        header = send_rgb565(dg, 1, photo, number)
        result = kp.inference.generic_raw_inference_receive(dg, header, descriptor)
        kp.inference.generic_inference_retrieve_float_node(0, result, CHW)
    stats = kp.inference.profile_get_statistics(dg).model_statistic_list
    hwtime = Engine(read_binary(binaries["int8"])).device.hwtime_ms
    assert len(stats) == 1 and stats[0].model_id == 1 and stats[0].inference_count == 2
    assert stats[0].avg_inference_ms == pytest.approx(hwtime) and hwtime > 0
    assert stats[0].avg_pre_process_ms > 0 and stats[0].avg_post_process_ms > 0
    assert stats[0].cpu_op_count >= 1 and stats[0].avg_cpu_op_ms > 0


def test_misuse_raises_the_documented_codes(group, binaries, photo):
    dg = group()
    header = kp.GenericRawImageHeader(model_id=1)
    raises(E.KP_ERROR_MODEL_NOT_LOADED_35, send_rgb565, dg, 1, photo)
    descriptor = kp.core.load_model_from_file(dg, str(binaries["int8"]))
    raises(E.KP_ERROR_MODEL_NOT_LOADED_35, send_rgb565, dg, 19, photo)
    raises(E.KP_ERROR_INVALID_PARAM_12, kp.inference.generic_raw_inference_send, dg, "header", rgb565(photo),
           kp.ImageFormat.KP_IMAGE_FORMAT_RGB565)
    raises(E.KP_ERROR_INVALID_PARAM_12, kp.inference.generic_raw_inference_send, dg, header, b"\0" * 8,
           kp.ImageFormat.KP_IMAGE_FORMAT_RGB565)  # bytes without width and height
    raises(E.KP_ERROR_IMAGE_RESOLUTION_TOO_SMALL_22, send_rgb565, dg, 1, photo[:2, :2])
    odd = np.zeros((8, 33, 2), np.uint8)
    for fmt in (kp.ImageFormat.KP_IMAGE_FORMAT_YUYV, kp.ImageFormat.KP_IMAGE_FORMAT_RGB565):
        raises(E.KP_ERROR_IMAGE_ODD_WIDTH_23, kp.inference.generic_raw_inference_send, dg, header, odd, fmt)
    raises(E.KP_FW_INVALID_INPUT_CROP_PARAM_112, send_rgb565, dg, 1, photo,
           inference_crop_box_list=[kp.InferenceCropBox(0, 90, 0, 20, 20)])
    raises(E.KP_FW_IMAGE_SIZE_NOT_MATCH_MODEL_INPUT_107, send_rgb565, dg, 1, photo,
           resize_mode=kp.ResizeMode.KP_RESIZE_DISABLE)
    kp.core.set_timeout(dg, 50)
    raises(E.KP_ERROR_USB_TIMEOUT_N7, kp.inference.generic_raw_inference_receive, dg, header, descriptor)
    send_rgb565(dg, 1, photo)
    result = kp.inference.generic_raw_inference_receive(dg, header, descriptor)
    raises(E.KP_ERROR_INVALID_PARAM_12, kp.inference.generic_inference_retrieve_float_node, 2, result, CHW)
    raises(E.KP_ERROR_INVALID_PARAM_12, kp.inference.generic_inference_retrieve_fixed_node, 0, result, 9)
    raises(E.KP_ERROR_INVALID_PARAM_12, kp.core.set_timeout, dg, -1)
    kp.core.reset_device(dg, kp.ResetMode.KP_RESET_REBOOT)
    raises(E.KP_ERROR_MODEL_NOT_LOADED_35, send_rgb565, dg, 1, photo)


def test_frames_sent_one_at_a_time_go_round_the_devices_in_turn(group, binaries, photo):
    """A sender slower than the devices (one frame in the queue at a time):
    the device waiting longest takes each frame, so two devices alternate,
    whichever thread the scheduler would have woken first (all 12 frames of
    the multithread example once ran on one device)."""
    dg = group(ports=(1, 2), count=2)
    descriptor = kp.core.load_model_from_file(dg, str(binaries["int8"]))
    ports = []
    for number in range(8):
        header = send_rgb565(dg, 1, photo[:, number:number + 64], number)
        ports.append(kp.inference.generic_raw_inference_receive(dg, header, descriptor).raw_result.device_port)
    assert sorted(set(ports)) == [1, 2] and all(a != b for a, b in zip(ports, ports[1:])), ports


def test_the_engine_hands_out_the_device_codes_of_its_outputs(binaries):
    """Engine.run's codes: the integer codes the device wrote for each
    output it produced, which dequantize to the float output exactly."""
    engine = Engine(read_binary(binaries["int8"]))
    codes = {}
    outputs = engine.run({"image": calibration_images(1, seed=5)[0]}, codes=codes)
    assert set(codes) == {"gemm_103"}  # probabilities is computed on the CPU
    found = codes["gemm_103"]
    assert found.codes.dtype == np.int8 and found.zero != 0
    again = np.float32(found.scale) * (found.codes.astype(np.float32) - np.float32(found.zero))
    assert np.array_equal(again, outputs["gemm_103"])
