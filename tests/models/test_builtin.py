"""Tessera's built-in models match onnxruntime on the CPU path."""
import pytest

from compiler.zoo import mobilenet_v2, resnet, transformer_block
from tests.helpers.models import compare_with_onnxruntime

pytest.importorskip("onnxruntime")

MODELS = {
    "resnet10": lambda: resnet(10, image=64, width=16),
    "mobilenet_v2": lambda: mobilenet_v2(image=96, width=0.5),
    "transformer": transformer_block,
}


@pytest.mark.parametrize("optimized", [False, True], ids=["imported", "optimized"])
@pytest.mark.parametrize("name", MODELS)
def test_builtin_model_matches_onnxruntime(name, optimized):
    errors = compare_with_onnxruntime(MODELS[name](), optimized=optimized)
    assert max(errors.values()) <= 1e-3, errors


@pytest.mark.parametrize("opset", [7, 9, 11, 13, 17, 23])
@pytest.mark.parametrize("name", ["resnet10", "mobilenet_v2"])
def test_cnn_matches_onnxruntime_across_opsets(name, opset):
    build = {"resnet10": lambda: resnet(10, image=32, width=8, opset=opset),
             "mobilenet_v2": lambda: mobilenet_v2(image=32, width=0.35, opset=opset)}[name]
    errors = compare_with_onnxruntime(build(), optimized=True)
    assert max(errors.values()) <= 1e-3, errors
