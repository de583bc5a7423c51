"""The family models (compiler/zoo/families.py and the modules it gathers, written as Paddle2ONNX,
Ultralytics, PyTorch and tf2onnx write them) on the accelerator: the
backbone and neck in one device segment, the share of the MACs there, the
simulator bit for bit the integer reference (tests/oracle.py), and the
output close to float. BatchNorm statistics are estimated from data
(compiler.zoo.statistics), so the seeded weights behave like trained ones.

What stays on the CPU is each model's head where the accelerator has no
form for it (docs/partitioning.md): a Softmax over classes, a linear
classifier whose result goes to the host (kept in float unless hwlinear is
set; linear layers feeding the accelerator run there where they pay),
YOLOv8's distribution-focal-loss decode (a Softmax over 16 bins on axis 1,
then the box arithmetic after it). Attention blocks (YOLO11's C2PSA) run on
the device: MATMUL and SOFTMAX."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from codegen.cpu import lower_to_program
from compiler.compile import build
from compiler.quantize import quantize_model
from compiler.zoo import FAMILY_MODELS
from compiler.zoo.statistics import with_data_statistics
from passes.quant.metrics import snr_db
from runtime.engine import Engine
from runtime.executor import Executor
from runtime.hardware import HardwareConfig
from tests.oracle import run_reference

pytestmark = pytest.mark.zoo

EXPECT = {  # device segments, CPU ONNX nodes, MAC share on the device at least, SNR (dB) against float at least
    # yolov8: its output Concat of boxes (pixels) and class scores joins on the host (head grids)
    # shufflenet_v2: 7.66 dB on this test's input with channel grids (9.95 without); one random input's
    # SNR swings 7.7-11.3 dB across inputs, and over 8 inputs it is 10.62 dB with and without them
    "ppocr_det": (1, 0, 1.0, 11), "ppLCNet": (1, 2, 0.45, 50), "yolov8": (1, 12, 0.99, 30),
    "shufflenet_v2": (1, 1, 0.75, 7), "mobilenet_v3": (1, 1, 0.84, 8), "centernet": (1, 0, 1.0, 9),
    "mtcnn_pnet": (1, 2, 1.0, 30), "mtcnn_rnet": (1, 3, 0.99, 20), "keras_audio": (1, 2, 0.99, 45),
    "nhwc_resnet": (1, 4, 0.999, 14),
    # yolo11_seg: C2PSA's attention (MatMul of two activations, Softmax over rows) on the device (3 device
    # segments and 16 CPU nodes before MATMUL and SOFTMAX, per-position constants and the layout pass); its DFL
    # Softmax over axis 1 on the CPU; its output0 = Concat(Concat(boxes, scores), coefficients) joins on the
    # host at both Concats (head grids), so the box decoding after the DFL Softmax (10 pointwise nodes and a
    # Split) runs on the host in float too: one device segment, where the decoding was a second one
    "yolo11_seg": (1, 13, 0.99, 18),
    # channels_last_layernorm: 25.5 dB measured; its LayerNorms' means are pools of views and 1x1 convs
    # (passes/canonicalize_mean.py), rsqrt(var) x gamma an outer product the DMA broadcasts
    "channels_last_layernorm": (1, 0, 1.0, 22),
}
"""Measured (4 calibration inputs, seeded weights): the linear classifiers whose result goes to the host
stay on the CPU in float (ppLCNet's, MobileNetV3's last, ShuffleNet-v2's, MTCNN-R's heads); MobileNetV3's
first and MTCNN-R's shared fully-connected layer feed the accelerator and run there; YOLOv8's second
device segment is the final Concat of the class scores with the boxes decoded on the CPU. The NHWC
ResNet's Convs, pools and residual Adds run channels-first after the layout pass (passes/layout.py).
The SNR floors are a few dB under the measured figures (docs/partitioning.md): deep random networks
amplify each layer's rounding."""


def samples(shape, count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(count)]


def cpu_segment(node, inputs):
    program = lower_to_program(node.attrs["body"])
    out = Executor(program).run(dict(zip(program.input_names, inputs)))
    return [out[n] for n in program.output_names]


@pytest.mark.parametrize("name", sorted(FAMILY_MODELS))
def test_family_model_runs_whole_on_the_device_exactly_and_close_to_float(name):
    model = FAMILY_MODELS[name]()
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    model = with_data_statistics(model, samples(shape, 4, seed=10))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = quantize_model(model, calibration_data=samples(shape, 4, seed=1), calibration_count=4)
    report = quantized.coverage()
    segments, cpu_nodes, share, floor = EXPECT[name]
    assert report.device_segments == segments and report.cpu_onnx_nodes <= cpu_nodes, report.summary_line()
    assert report.mac_share >= share, report.summary_line()
    engine = Engine(build(quantized.graph, HardwareConfig(), quantized.float_graph))
    (x,) = samples(shape, 1, seed=2)
    feeds = {quantized.input_names[0]: x}
    got, want = engine.run(feeds), run_reference(quantized.graph, feeds, cpu=cpu_segment)
    reference = engine.run_reference(feeds)
    for output in quantized.output_names:
        np.testing.assert_array_equal(got[output], want[output], err_msg=output)
        assert snr_db(reference[output], got[output]) >= floor, output
