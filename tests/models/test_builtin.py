"""Tessera's built-in models match onnxruntime on the CPU path."""
import pytest

from compiler.zoo import mobilenet_v2, resnet, transformer_block
from tests.models.compare import compare_with_onnxruntime

pytest.importorskip("onnxruntime")

MODELS = {
    "resnet10": lambda: resnet(10, image=64, width=16),
    "mobilenet_v2": lambda: mobilenet_v2(image=96, width=0.5),
    "transformer": transformer_block,
}


@pytest.mark.parametrize("name", MODELS)
def test_builtin_model_matches_onnxruntime(name):
    errors = compare_with_onnxruntime(MODELS[name]())
    assert max(errors.values()) <= 1e-3, errors
