"""onnx's C++ runs in a worker process (compiler/frontend/onnx_isolated.py):
an abort or a hang there is a ModelImportError naming the function and the
model, and the next call gets a fresh worker."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.errors import ModelImportError
from compiler.frontend import onnx_isolated
from compiler.frontend.onnx_isolated import OnnxOperationError, run_isolated


def _model(nodes, inits=(), opset=17):
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _aborting():
    """AveragePool's kernel is wider than its input; Slice's shape inference
    of the negative dim onnx infers aborts."""
    bounds = [numpy_helper.from_array(np.array([v], np.int64), n) for v, n in ((0, "s"), (2, "e"), (3, "a"))]
    return _model([helper.make_node("AveragePool", ["x"], ["p"], kernel_shape=[1, 100]),
                   helper.make_node("Slice", ["p", "s", "e", "a"], ["y"])], bounds)


def _inferred_dims(model):
    (output,) = model.graph.output
    return [d.dim_value for d in output.type.tensor_type.shape.dim]


def test_an_abort_is_a_named_error_and_the_next_call_gets_a_new_worker():
    relu = _model([helper.make_node("Relu", ["x"], ["y"])])
    assert _inferred_dims(run_isolated("infer_shapes", relu, "relu.onnx")) == [1, 3, 8, 8]
    with pytest.raises(ModelImportError, match=r"^pool\.onnx: onnx\.shape_inference\.infer_shapes crashed on this "
                                               r"model: its worker process was killed by SIGABRT \(.+\)$"):
        run_isolated("infer_shapes", _aborting(), "pool.onnx")
    assert _inferred_dims(run_isolated("infer_shapes", relu, "relu.onnx")) == [1, 3, 8, 8]


def test_an_exception_of_onnx_comes_back_as_itself():
    unknown = _model([helper.make_node("NoSuchOp", ["x"], ["y"])], opset=6)
    with pytest.raises(OnnxOperationError, match="^RuntimeError: .*NoSuchOp"):
        run_isolated("convert_version", unknown, "unknown.onnx", target=7)


def test_a_worker_that_hangs_is_killed_at_the_timeout(tmp_path, monkeypatch):
    sleeper = tmp_path / "sleeper.py"
    sleeper.write_text("import time\ntime.sleep(600)\n")
    monkeypatch.setattr(onnx_isolated, "WORKER_SCRIPT", str(sleeper))
    monkeypatch.setattr(onnx_isolated, "TIMEOUT_S", 0.5)
    monkeypatch.setattr(onnx_isolated, "_current", None)
    relu = _model([helper.make_node("Relu", ["x"], ["y"])])
    with pytest.raises(ModelImportError, match=r"^relu\.onnx: onnx\.inliner\.inline_local_functions did not finish "
                                               r"on this model within 0.5 s \(its worker process was killed\)$"):
        run_isolated("inline_local_functions", relu, "relu.onnx")
    assert onnx_isolated._current is None
