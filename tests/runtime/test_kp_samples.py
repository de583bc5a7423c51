"""A user script written as Kneron PLUS's Python examples are
(KL720DemoGenericImageInference with utils/ExampleHelper's USB-speed check;
api-notes 3.2, 3.3), with the import line (``from runtime import kp``) and
the model path changed, and the image read from a file of RGB565 bytes
(cv2 is not a Tessera dependency): run as a subprocess with the examples'
default ``--port_id 0``, which means the first connectable device (issue 53
items 6 and 8)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from compiler.zoo.builder import OnnxBuilder
from tests.helpers.kp import rgb565

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import os
import sys
import argparse

from runtime import kp
import numpy as np

MODEL_FILE_PATH = sys.argv.pop(1)
IMAGE_FILE_PATH = sys.argv.pop(1)
LOOP_TIME = 3


def get_device_usb_speed_by_port_id(usb_port_id: int) -> kp.UsbSpeed:
    device_list = kp.core.scan_devices()

    for device_descriptor in device_list.device_descriptor_list:
        if 0 == usb_port_id:
            return device_descriptor.link_speed
        elif usb_port_id == device_descriptor.usb_port_id:
            return device_descriptor.link_speed

    raise IOError('Specified USB port ID {} not exist.'.format(usb_port_id))


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description='KL720 Demo Generic Image Inference Example.')
    parser.add_argument('-p', '--port_id', help='Using specified port ID for connecting device (Default: port ID of '
                        'first scanned Kneron device)', default=0, type=int)
    args = parser.parse_args()
    usb_port_id = args.port_id

    try:
        if kp.UsbSpeed.KP_USB_SPEED_SUPER != get_device_usb_speed_by_port_id(usb_port_id=usb_port_id):
            print('[Warning] Device is not run at super speed.')
    except Exception as exception:
        print('Error: check device USB speed fail, port ID = \\'{}\\', error msg: [{}]'.format(usb_port_id,
                                                                                            str(exception)))
        exit(0)

    try:
        print('[Connect Device]')
        device_group = kp.core.connect_devices(usb_port_ids=[usb_port_id])
        print(' - Success')
    except kp.ApiKPException as exception:
        print('Error: connect device fail, port ID = \\'{}\\', error msg: [{}]'.format(usb_port_id, str(exception)))
        exit(0)

    print('[Set Device Timeout]')
    kp.core.set_timeout(device_group=device_group, milliseconds=5000)
    print(' - Success')

    try:
        print('[Upload Model]')
        model_nef_descriptor = kp.core.load_model_from_file(device_group=device_group, file_path=MODEL_FILE_PATH)
        print(' - Success')
    except kp.ApiKPException as exception:
        print('Error: upload model failed, error = \\'{}\\''.format(str(exception)))
        exit(0)

    print('[Read Image]')
    img_bgr565 = np.load(IMAGE_FILE_PATH)
    print(' - Success')

    generic_inference_input_descriptor = kp.GenericImageInferenceDescriptor(
        model_id=model_nef_descriptor.models[0].id,
        inference_number=0,
        input_node_image_list=[
            kp.GenericInputNodeImage(
                image=img_bgr565,
                image_format=kp.ImageFormat.KP_IMAGE_FORMAT_RGB565,
                resize_mode=kp.ResizeMode.KP_RESIZE_ENABLE,
                padding_mode=kp.PaddingMode.KP_PADDING_CORNER,
                normalize_mode=kp.NormalizeMode.KP_NORMALIZE_KNERON
            )
        ]
    )

    print('[Starting Inference Work]')
    print(' - Starting inference loop {} times'.format(LOOP_TIME))
    for i in range(LOOP_TIME):
        try:
            kp.inference.generic_image_inference_send(
                device_group=device_group, generic_inference_input_descriptor=generic_inference_input_descriptor)
            generic_raw_result = kp.inference.generic_image_inference_receive(device_group=device_group)
        except kp.ApiKPException as exception:
            print(' - Error: inference failed, error = {}'.format(exception))
            exit(0)
        node = kp.inference.generic_inference_retrieve_float_node(
            node_idx=0, generic_raw_result=generic_raw_result,
            channels_ordering=kp.ChannelOrdering.KP_CHANNEL_ORDERING_CHW)
        print('inference {} on port {}: {} node(s), top {}'.format(
            generic_raw_result.header.inference_number, generic_raw_result.raw_result.device_port,
            generic_raw_result.header.num_output_node, int(np.argmax(node.ndarray))))

    print('[Connect Second Device]')
    second = kp.core.connect_devices(usb_port_ids=[0])
    print(' - Success: ports {}'.format(second.usb_port_ids))
    kp.core.disconnect_devices(device_group=second)
    kp.core.disconnect_devices(device_group=device_group)
"""


def test_a_plus_example_with_the_default_port_0_runs_on_the_first_device(tmp_path):
    from compiler.compile import compile_model

    b = OnnxBuilder("kp-sample", seed=2)
    x = b.input("image", [1, 3, 16, 16])
    h = b.node("Flatten", [b.node("GlobalAveragePool", [b.node("Relu", [b.conv(x, 3, 8, 3, stride=2)])])], axis=1)
    model = b.model([b.linear(h, 8, 10)])
    rng = np.random.default_rng(0)
    compile_model(model, samples=[rng.random((1, 3, 16, 16), np.float32) - 0.5 for _ in range(4)],
                  outfile=tmp_path / "model.bin")
    np.save(tmp_path / "image.npy", rgb565(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)))
    (tmp_path / "demo.py").write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TESSERA_KP_DEVICES": "2xKL720"}
    run = subprocess.run([sys.executable, "demo.py", str(tmp_path / "model.bin"), str(tmp_path / "image.npy")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "[Connect Device]\n - Success" in out and "Error" not in out and "Warning" not in out, out
    runs = re.findall(r"^inference (\d+) on port (\d+): 1 node\(s\), top (\d)$", out, re.MULTILINE)
    assert [r[:2] for r in runs] == [("0", "1")] * 3 and len({r[2] for r in runs}) == 1, out
    assert " - Success: ports [2]" in out  # port 0 again: the first device still connectable
