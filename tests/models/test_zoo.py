"""onnx's model-zoo topologies with seeded weights match onnxruntime."""
import pytest

from compiler.zoo import LIGHT_MODELS, load_light_model
from tests.helpers.models import compare_with_onnxruntime

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.zoo


@pytest.mark.parametrize("optimized", [False, True], ids=["imported", "optimized"])
@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_model_matches_onnxruntime(name, optimized):
    errors = compare_with_onnxruntime(load_light_model(name), optimized=optimized)
    assert max(errors.values()) <= 1e-3, errors
