"""Models with dynamic input dims, written the way exporters write them
(PyTorch's named dims, PaddlePaddle's -1, tf2onnx's unk__ names on a
channels-last input): the backend compiles them per input signature, the
image string and --input arrays fix their shapes, and a shape that
contradicts a fixed dim is an error naming the input and the dim."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler import ModelImportError, backend, import_onnx
from compiler.cli import main
from compiler.frontend import OnnxModel

F = TensorProto.FLOAT
RNG = np.random.default_rng(0)
CONV_W = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)


def _model(nodes, inputs, initializers=(), name="m"):
    graph = helper.make_graph(nodes, name, inputs, [helper.make_tensor_value_info("y", F, None)],
                              list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _constant(name: str, values) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(values, np.int64), name))


def _conv_flatten(dims) -> onnx.ModelProto:
    """Conv + Relu, then a flatten to [batch, -1] through Shape -> Gather ->
    Concat -> Reshape, as torch.onnx writes ``x.view(x.size(0), -1)``."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["conv"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["conv"], ["act"]),
             helper.make_node("Shape", ["act"], ["shape"]), _constant("zero", [0]),
             helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0), _constant("rest", [-1]),
             helper.make_node("Concat", ["batch", "rest"], ["target"], axis=0),
             helper.make_node("Reshape", ["act", "target"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", F, dims)], [numpy_helper.from_array(CONV_W, "w")])


def _channels_last(dims) -> onnx.ModelProto:
    """A Keras image model as tf2onnx exports it: an NHWC input transposed
    to NCHW for the Conv and back."""
    nodes = [helper.make_node("Transpose", ["x"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["nchw", "w"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Transpose", ["conv"], ["y"], perm=[0, 2, 3, 1])]
    return _model(nodes, [helper.make_tensor_value_info("x", F, dims)], [numpy_helper.from_array(CONV_W, "w")])


def _relu(dims) -> onnx.ModelProto:
    return _model([helper.make_node("Relu", ["x"], ["y"])], [helper.make_tensor_value_info("x", F, dims)])


def _data(*shape) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _assert_matches_onnxruntime(model, rep, x: np.ndarray) -> None:
    (ours,) = rep.run([x])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (want,) = session.run(None, {"x": x})
    assert ours.shape == want.shape
    np.testing.assert_allclose(ours, want, rtol=1e-5, atol=1e-5)


def _count_imports(monkeypatch) -> list:
    imports = []
    original = OnnxModel.to_graph

    def counting(self, shapes, strict_types=False):
        imports.append({name: list(shape) for name, shape in shapes.items()})
        return original(self, shapes, strict_types)

    monkeypatch.setattr(OnnxModel, "to_graph", counting)
    return imports


# ------------------------------------------------------------------ the backend
def test_symbolic_dims_are_compiled_per_input_signature(monkeypatch):
    imports = _count_imports(monkeypatch)
    model = _conv_flatten(["batch", 3, "height", "width"])
    rep = backend.prepare(model)
    assert imports == [] and rep.signatures == []
    for shape in [(1, 3, 8, 6), (2, 3, 5, 5), (1, 3, 8, 6)]:
        _assert_matches_onnxruntime(model, rep, _data(*shape))
    assert imports == [{"x": [1, 3, 8, 6]}, {"x": [2, 3, 5, 5]}]  # the repeated signature compiled nothing
    assert rep.signatures == [((2, 3, 5, 5),), ((1, 3, 8, 6),)]
    assert rep.graph.inputs[0].type.shape == (1, 3, 8, 6)


def test_the_cache_is_bounded_and_least_recently_used_goes_first(monkeypatch):
    imports = _count_imports(monkeypatch)
    rep = backend.prepare(_relu(["n"]), cache_size=2)
    for n in (1, 2, 1, 3, 2):
        (y,) = rep.run([np.full(n, -1, np.float32)])
        assert y.shape == (n,)
    assert [s["x"] for s in imports] == [[1], [2], [3], [2]]  # 2 was evicted by 3, 1 was used more recently
    assert rep.signatures == [((3,),), ((2,),)]
    assert backend.CACHE_SIZE == 8 and backend.prepare(_relu(["n"])).cache_size == backend.CACHE_SIZE


def test_paddle_minus_one_and_names_are_dynamic():
    model = _conv_flatten([-1, 3, "p2o.DynamicDimension.0", "p2o.DynamicDimension.1"])
    with pytest.raises(ModelImportError, match=r"symbolic dims \['\?', 3, 'p2o.DynamicDimension.0', "):
        import_onnx(model)
    assert import_onnx(model, shapes={"x": [2, 3, 4, 4]}).inputs[0].type.shape == (2, 3, 4, 4)
    _assert_matches_onnxruntime(model, backend.prepare(model), _data(2, 3, 4, 5))


def test_a_dim_value_of_zero_stays_fixed_as_in_onnxruntime():
    rep = backend.prepare(_relu([2, 0]))
    assert rep.signatures == [((2, 0),)]
    with pytest.raises(ModelImportError, match="dim 1 is 0, not 5"):
        rep.run([np.ones((2, 5), np.float32)])


def test_an_input_without_a_declared_shape_takes_the_data_rank():
    model = _relu(None)
    with pytest.raises(ModelImportError, match="input 'x' has no shape"):
        import_onnx(model)
    (y,) = backend.prepare(model).run([np.array([[-1, 2]], np.float32)])
    np.testing.assert_array_equal(y, [[0, 2]])


def test_shapes_given_to_prepare_fix_the_signature():
    rep = backend.prepare(_conv_flatten(["batch", 3, "height", "width"]), shapes={"x": [1, 3, 4, 4]})
    assert rep.signatures == [((1, 3, 4, 4),)]  # compiled at once
    with pytest.raises(ModelImportError, match=r"input 'x' is \[1, 3, 4, 4\]; .* dim 2 is 4, not 5"):
        rep.run([_data(1, 3, 5, 4)])


def test_nothing_is_compiled_before_the_first_run_of_a_dynamic_model():
    with pytest.raises(ValueError, match="nothing is compiled yet"):
        backend.prepare(_relu(["n"])).graph


@pytest.mark.parametrize("given, match", [
    ([1, 4, 8, 8], r"input 'x' is \['batch', 3, 'height', 'width'\]; the shape \[1, 4, 8, 8\] contradicts a "
                   r"fixed dim: dim 1 is 3, not 4"),
    ([3, 8, 8], r"input 'x' has rank 4 .* the given shape \[3, 8, 8\] has rank 3"),
])
def test_a_shape_contradicting_a_fixed_dim_names_the_input_and_the_dim(given, match):
    model = _conv_flatten(["batch", 3, "height", "width"])
    with pytest.raises(ModelImportError, match=match):
        backend.prepare(model, shapes={"x": given})
    with pytest.raises(ModelImportError, match=match):
        backend.prepare(model).run([_data(*given)])


# ------------------------------------------------------------------ the image string
@pytest.mark.parametrize("dims, image, shape", [
    (["unk__214", "unk__215", "unk__216", 3], "8x6x3", (1, 6, 8, 3)),
    ([-1, -1, -1, 3], "8x6x3x2", (2, 6, 8, 3)),
    (["N", 3, "H", "W"], "8x6x3", (1, 3, 6, 8)),
    (["N", "C", "H", "W"], "8x6x3", (1, 3, 6, 8)),
])
def test_the_image_string_follows_the_declared_channel_dim(dims, image, shape):
    model = _channels_last(dims) if dims[-1] == 3 else _conv_flatten(dims)
    assert import_onnx(model, image=image).inputs[0].type.shape == shape
    rep = backend.prepare(model, image=image)
    assert rep.signatures == [(shape,)]
    _assert_matches_onnxruntime(model, rep, _data(*shape))


def test_an_image_string_that_contradicts_the_channels_names_the_dim():
    with pytest.raises(ModelImportError, match=r"input 'x' .* dim 1 is 3, not 1"):
        import_onnx(_conv_flatten(["N", 3, "H", "W"]), image="8x6x1")


# ------------------------------------------------------------------ tessera run
@pytest.mark.parametrize("device", [False, True])
def test_tessera_run_takes_the_shapes_from_the_input_arrays(tmp_path, capsys, device):
    path, data = tmp_path / "m.onnx", tmp_path / "x.npy"
    onnx.save(_conv_flatten(["batch", 3, "height", "width"]), path)
    np.save(data, _data(2, 3, 5, 4))
    assert main(["run", str(path), "--input", str(data), *([] if device else ["--cpu"])]) == 0
    out = capsys.readouterr().out
    assert "output y float32[2, 80]" in out
    assert ("SNR" if device else "top-1 matches") in out
    np.save(data, _data(2, 4, 5, 4))
    assert main(["run", str(path), "--cpu", "--input", f"x={data}"]) == 1
    assert "input 'x' is ['batch', 3, 'height', 'width']; the shape [2, 4, 5, 4] contradicts a fixed dim: dim 1 " \
           "is 3, not 4" in capsys.readouterr().err
