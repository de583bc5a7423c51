"""ONNX external data is read from beside the model file, never from the
working directory, and a side file that would leave the model's folder is
refused with the tensor and the location named."""
from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.backend import TesseraBackend
from compiler.errors import ModelImportError
from compiler.frontend import import_onnx


def conv_model() -> onnx.ModelProto:
    rng = np.random.default_rng(5)
    weight = numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), "weight")
    bias = numpy_helper.from_array(rng.normal(size=8).astype(np.float32), "bias")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "weight", "bias"], ["y"], pads=[1, 1, 1, 1])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight, bias])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def save_with_side_file(model: onnx.ModelProto, folder) -> str:
    """``model`` saved as exporters save large models: weights in weights.bin."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "model.onnx")
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
              size_threshold=0)
    return path


def test_side_file_weights_are_read_beside_the_model_not_from_the_working_directory(tmp_path, monkeypatch):
    path = save_with_side_file(conv_model(), tmp_path / "model")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    decoy = (tmp_path / "model" / "weights.bin").read_bytes()
    (elsewhere / "weights.bin").write_bytes(np.random.default_rng(1).bytes(len(decoy)))
    monkeypatch.chdir(elsewhere)
    x = np.random.default_rng(2).normal(size=(1, 3, 8, 8)).astype(np.float32)
    expected = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = TesseraBackend.prepare(path, shapes={"x": [1, 3, 8, 8]}).run({"x": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("location, cause", [
    ("/etc/passwd", "the location is absolute"), ("../weights.bin", r"holds '\.\.'"),
    ("missing.bin", "No such file"), ("link.bin", "leaves the model's folder through a symbolic link"),
    ("short.bin", r"bytes \[0, \+864\) lie outside it"), ("fifo.bin", "it is a FIFO")])
def test_a_side_file_outside_the_folder_or_unfit_is_named(tmp_path, location, cause):
    path = save_with_side_file(conv_model(), tmp_path / "model")
    (tmp_path / "weights.bin").write_bytes(bytes(4096))
    (tmp_path / "model" / "link.bin").symlink_to(tmp_path / "weights.bin")
    (tmp_path / "model" / "short.bin").write_bytes(bytes(10))
    os.mkfifo(tmp_path / "model" / "fifo.bin")
    model = onnx.load(path, load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    onnx.save(model, path)
    with pytest.raises(ModelImportError, match=rf"model.onnx: tensor 'weight' keeps its data in the side file "
                                               rf"'{location}'.*{cause}"):
        import_onnx(path, shapes={"x": [1, 3, 8, 8]})


def test_an_external_tensor_without_a_folder_says_to_pass_the_path(tmp_path):
    path = save_with_side_file(conv_model(), tmp_path)
    model = onnx.load(path, load_external_data=False)
    with pytest.raises(ModelImportError, match="can only be read from beside the model file: pass the model's path"):
        import_onnx(model.SerializeToString(), shapes={"x": [1, 3, 8, 8]})


def test_a_file_that_is_not_a_protobuf_message_is_refused_unread(tmp_path):
    zeros = tmp_path / "zeros.onnx"
    with open(zeros, "wb") as handle:
        handle.truncate(1 << 30)
    with pytest.raises(ModelImportError, match="the bytes at offset 0 are not a protobuf field"):
        import_onnx(zeros)
    valid = tmp_path / "model.onnx"
    onnx.save(conv_model(), valid)
    size = valid.stat().st_size
    with open(valid, "ab") as handle:
        handle.truncate(1 << 30)  # a valid model, then a sparse gigabyte of zeros
    with pytest.raises(ModelImportError, match=f"the bytes at offset {size} are not a protobuf field"):
        import_onnx(valid)
    valid.write_bytes(conv_model().SerializeToString()[:-10])
    with pytest.raises(ModelImportError, match=r"beyond the \d+-byte file \(truncated\)"):
        import_onnx(valid)
    with pytest.raises(ModelImportError, match="it is a character device"):
        import_onnx("/dev/zero")
