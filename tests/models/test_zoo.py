"""onnx's model-zoo topologies with seeded weights: the float path matches
onnxruntime, imported and optimized, and the quantized model runs through
the binary on the simulator bit for bit as the integer kernels (held
bit-exact to the integer reference by tests/passes) run it, so its accuracy
holds through the binary; each runs in one device segment with 99 % of its
MACs there or more (its LRNs and inner linear layers too; the classifier
writing the result stays in float). Each model is built once for its tests (the
largest, VGG-19, has 144 million weights)."""
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
from tests.helpers.models import compare_variants_with_onnxruntime

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.zoo


@pytest.fixture(scope="module", params=LIGHT_MODELS)
def zoo_model(request):
    """(name, model): pytest runs every test of one model before it builds the next."""
    return request.param, load_light_model(request.param)


def test_light_model_matches_onnxruntime(zoo_model):
    name, model = zoo_model
    for variant, errors in compare_variants_with_onnxruntime(model).items():
        assert max(errors.values()) <= 1e-3, (name, variant, errors)


def test_light_model_runs_exactly_through_the_binary(zoo_model):
    name, model = zoo_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = quantize_model(model, calibration_data=image_crops(2, seed=1), calibration_count=2)
    report = quantized.coverage()  # LRNs and inner linear layers on the accelerator: one segment each
    assert report.device_segments == 1 and report.mac_share >= 0.99, (name, report.summary_line())
    compiled = build(quantized.graph, HardwareConfig(), quantized.float_graph)
    engine = Engine(read_binary(write_binary(compiled)))
    feeds = {quantized.input_names[0]: image_crops(1, seed=3)[0]}
    got, want = engine.run(feeds), quantized.run(feeds)
    for output in quantized.output_names:
        np.testing.assert_array_equal(got[output], want[output])
    assert engine.device.hwtime_ms > 0
