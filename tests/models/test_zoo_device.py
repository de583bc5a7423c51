"""onnx's model-zoo topologies compiled for the accelerator: the simulator
gives bit for bit what the integer kernels (held bit-exact to the integer
reference by tests/passes) give, so the quantized model's accuracy holds
through the binary."""
import warnings

import numpy as np
import pytest

from codegen.binary import write_binary
from compiler.compile import build
from compiler.quantize import quantize_model
from compiler.zoo import LIGHT_MODELS, load_light_model
from compiler.zoo.images import image_crops
from runtime.binary import read_binary
from runtime.engine import Engine
from runtime.hardware import HardwareConfig

pytestmark = pytest.mark.zoo


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_model_runs_exactly_through_the_binary(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = quantize_model(load_light_model(name), calibration_data=image_crops(2, seed=1),
                                   calibration_count=2)
    compiled = build(quantized.graph, HardwareConfig(), quantized.float_graph)
    assert compiled.device_segments, f"{name}: nothing runs on the accelerator"
    engine = Engine(read_binary(write_binary(compiled)))
    feeds = {quantized.input_names[0]: image_crops(1, seed=3)[0]}
    got, want = engine.run(feeds), quantized.run(feeds)
    for output in quantized.output_names:
        np.testing.assert_array_equal(got[output], want[output])
    assert engine.device.hwtime_ms > 0
