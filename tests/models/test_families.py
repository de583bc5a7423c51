"""The family models (compiler/zoo/families.py): valid ONNX, run in
onnxruntime with a free batch too, written with their exporters' idioms, and
Tessera's float CPU path matches onnxruntime on them."""
import numpy as np
import onnx
import pytest

from compiler.zoo import FAMILY_MODELS
from tests.helpers.models import compare_with_onnxruntime

ort = pytest.importorskip("onnxruntime")

IDIOMS = {
    "ppocr_det": {"Constant", "Clip", "Div", "HardSigmoid", "GlobalAveragePool", "Resize", "Concat",
                  "ConvTranspose", "Sigmoid"},
    "ppLCNet": {"HardSwish", "HardSigmoid", "GlobalAveragePool", "Flatten", "MatMul", "Softmax"},
    "yolov8": {"Sigmoid", "Mul", "Split", "MaxPool", "Resize", "Reshape", "Transpose", "Softmax", "Sub", "Div"},
    "shufflenet_v2": {"Split", "Reshape", "Transpose", "Concat", "ReduceMean", "Gemm"},
    "mobilenet_v3": {"HardSwish", "HardSigmoid", "GlobalAveragePool", "Mul", "Add", "Gemm"},
    "centernet": {"ConvTranspose", "BatchNormalization", "Sigmoid"},
    "mtcnn_pnet": {"PRelu", "MaxPool", "Transpose", "Softmax"},
    "mtcnn_rnet": {"PRelu", "MaxPool", "Transpose", "Flatten", "Gemm", "Softmax"},
    "keras_audio": {"Transpose", "BatchNormalization", "Max", "GlobalAveragePool", "Reshape", "MatMul", "Softmax"},
    "nhwc_resnet": {"Pad", "Transpose", "Sub", "Mul", "Add", "Relu", "MaxPool", "ReduceMean", "MatMul", "Softmax"},
    "yolo11_seg": {"Sigmoid", "Mul", "Split", "MaxPool", "Resize", "Reshape", "Transpose", "MatMul", "Softmax",
                   "ConvTranspose", "Sub", "Div"},
    "channels_last_layernorm": {"Transpose", "ReduceMean", "Sub", "Pow", "Sqrt", "Div", "Mul", "Add"},
}
FREE_BATCH = {"ppocr_det": -1, "ppLCNet": -1, "yolov8": "batch", "shufflenet_v2": "batch_size",
              "mobilenet_v3": "batch_size", "centernet": "batch", "mtcnn_pnet": "batch", "mtcnn_rnet": "batch",
              "keras_audio": "unk__38", "nhwc_resnet": "unk__97", "yolo11_seg": "batch",
              "channels_last_layernorm": "unk__12"}


def batch_dim(model: onnx.ModelProto):
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_param if dim.HasField("dim_param") else dim.dim_value


def run_onnxruntime(model: onnx.ModelProto, batch: int) -> list[np.ndarray]:
    """The outputs for seeded random input; one thread, and the session gone
    on return (spinning onnxruntime threads would slow the CPU path's down)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    shape = [batch if not isinstance(d, int) or d < 0 else d for d in spec.shape]
    return session.run(None, {spec.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)})


def test_every_family_has_a_builder_and_idioms():
    assert set(FAMILY_MODELS) == set(IDIOMS) == set(FREE_BATCH)


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_family_model_is_valid_and_written_with_its_exporters_idioms(name):
    static, free = FAMILY_MODELS[name](), FAMILY_MODELS[name](static=False)
    for model in (static, free):
        onnx.checker.check_model(model, full_check=True)
        assert IDIOMS[name] <= {n.op_type for n in model.graph.node}
        assert len({n.name for n in model.graph.node}) == len(model.graph.node), "node names must be unique"
    assert (batch_dim(static), batch_dim(free)) == (1, FREE_BATCH[name])
    single, pair = run_onnxruntime(static, 1), run_onnxruntime(free, 2)
    for one, two in zip(single, pair):
        assert np.isfinite(one).all() and two.shape[0] == 2 and two.shape[1:] == one.shape[1:]
        np.testing.assert_allclose(two[:1], one, rtol=1e-4, atol=1e-5)  # same weights, same first input


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_family_model_matches_onnxruntime_on_the_cpu_path(name):
    errors = compare_with_onnxruntime(FAMILY_MODELS[name](), optimized=True)
    assert max(errors.values()) <= 1e-3, errors
