"""The ONNX frontend: loading, opsets, constants, shapes, and its errors."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from compiler import ModelImportError, UnsupportedOpError, import_onnx
from compiler.frontend.shapes import parse_image_spec
from ir import verify


def model(nodes, inputs, outputs, inits=(), opset=17, extra_opsets=()):
    graph = helper.make_graph(nodes, "m", inputs, outputs, list(inits))
    opsets = [helper.make_opsetid("", opset), *extra_opsets]
    return helper.make_model(graph, opset_imports=opsets, ir_version=9)


def fvi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def relu_model(shape=(1, 3, 4, 4)):
    return model([helper.make_node("Relu", ["x"], ["y"], name="r")], [fvi("x", shape)], [fvi("y", None)])


def test_loads_path_bytes_and_proto(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(relu_model(), path)
    for source in (str(path), path, path.read_bytes(), relu_model()):
        g = import_onnx(source)
        assert [n.op for n in g.nodes] == ["Relu"]


def test_unreadable_file_is_one_clear_error(tmp_path):
    with pytest.raises(ModelImportError, match="missing.onnx: cannot read the model file"):
        import_onnx(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\xffnot a model at all")
    with pytest.raises(ModelImportError, match="bad.onnx: not a valid ONNX model"):
        import_onnx(bad)


def test_unsupported_op_names_op_node_and_opset():
    m = model([helper.make_node("Celu2", ["x"], ["y"], name="weird")], [fvi("x", [2])], [fvi("y", None)])
    with pytest.raises(UnsupportedOpError, match=r"Celu2 node 'weird' \(opset 17\): this op is not supported"):
        import_onnx(m)


def test_unknown_attribute_is_named():
    m = model([helper.make_node("Relu", ["x"], ["y"], name="r", alpha=0.5)], [fvi("x", [2])], [fvi("y", None)])
    with pytest.raises(UnsupportedOpError, match=r"Relu node 'r' \(opset 17\): attribute\(s\) \['alpha'\]"):
        import_onnx(m)


def test_type_errors_name_the_node():
    m = model([helper.make_node("Add", ["x", "z"], ["y"], name="plus")], [fvi("x", [2, 3]), fvi("z", [4, 3])],
              [fvi("y", None)])
    with pytest.raises(ModelImportError, match=r"Add node 'plus' \(opset 17\): shapes .* do not broadcast"):
        import_onnx(m)


def test_symbolic_dims_need_a_shape():
    m = relu_model(("N", 3, "H", "W"))
    with pytest.raises(ModelImportError, match=r"input 'x' has symbolic dims \['N', 3, 'H', 'W'\]"):
        import_onnx(m)
    assert import_onnx(m, shapes={"x": [2, 3, 8, 8]}).inputs[0].type.shape == (2, 3, 8, 8)
    assert import_onnx(m, image="16x8x3").inputs[0].type.shape == (1, 3, 8, 16)


def test_given_shapes_must_agree_with_the_model():
    with pytest.raises(ModelImportError, match="contradicts a fixed dim"):
        import_onnx(relu_model(("N", 3, 4, 4)), shapes={"x": [1, 4, 4, 4]})
    with pytest.raises(ModelImportError, match="unknown input"):
        import_onnx(relu_model(), shapes={"nope": [1]})


def test_image_spec_parsing():
    assert parse_image_spec("224x256x3") == [[1, 3, 256, 224]]
    assert parse_image_spec("32x32x3x8;4x4x1") == [[8, 3, 32, 32], [1, 1, 4, 4]]
    for bad in ("224x224", "axbxc", "0x4x3"):
        with pytest.raises(ModelImportError):
            parse_image_spec(bad)


def test_initializers_and_constant_nodes_are_both_constants():
    const = helper.make_node("Constant", [], ["c"], value=helper.make_tensor("c", TensorProto.FLOAT, [3], [1, 2, 3]))
    nodes = [const, helper.make_node("Add", ["x", "c"], ["t"]), helper.make_node("Add", ["t", "w"], ["y"])]
    init = helper.make_tensor("w", TensorProto.FLOAT, [3], [4, 5, 6])
    g = import_onnx(model(nodes, [fvi("x", [3])], [fvi("y", None)], [init]))
    assert [v.name for v in g.inputs] == ["x"]
    consts = {v.name: v.const.tolist() for v in g.constants()}
    assert consts == {"c": [1, 2, 3], "w": [4, 5, 6]}


def test_constant_subexpressions_fold_at_import():
    nodes = [helper.make_node("Add", ["a", "b"], ["ab"]), helper.make_node("Add", ["x", "ab"], ["y"])]
    inits = [helper.make_tensor(n, TensorProto.FLOAT, [2], [1, 2]) for n in ("a", "b")]
    g = import_onnx(model(nodes, [fvi("x", [2])], [fvi("y", None)], inits))
    assert [n.op for n in g.nodes] == ["Add"]
    assert g.values["ab"].const.tolist() == [2, 4]


def test_shape_of_a_static_value_is_a_constant():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Shape", ["r"], ["s"]),
             helper.make_node("Reshape", ["r", "s"], ["y"])]
    g = import_onnx(model(nodes, [fvi("x", [2, 3])], [fvi("y", None)]))
    assert [n.op for n in g.nodes] == ["Relu", "Reshape"]
    assert g.values["s"].const.tolist() == [2, 3]


def test_unused_opset_imports_are_ignored_but_used_domains_are_not():
    extra = [helper.make_opsetid("com.microsoft", 1)]
    assert import_onnx(model([helper.make_node("Relu", ["x"], ["y"])], [fvi("x", [2])], [fvi("y", None)],
                             extra_opsets=extra))
    m = model([helper.make_node("FusedGemm", ["x"], ["y"], domain="com.microsoft", name="fg")], [fvi("x", [2])],
              [fvi("y", None)], extra_opsets=extra)
    with pytest.raises(UnsupportedOpError, match="com.microsoft.FusedGemm node 'fg' .*domain 'com.microsoft'"):
        import_onnx(m)


def test_old_opsets_are_upgraded():
    m = model([helper.make_node("Relu", ["x"], ["y"])], [fvi("x", [2])], [fvi("y", None)], opset=6)
    g = import_onnx(m)
    verify(g)


def test_opsets_newer_than_onnx_knows_are_refused():
    m = relu_model()
    m.opset_import[0].version = onnx.defs.onnx_opset_version() + 1
    with pytest.raises(ModelImportError, match="newer than the installed onnx"):
        import_onnx(m)


def test_undefined_input_is_named():
    m = model([helper.make_node("Relu", ["ghost"], ["y"], name="r")], [fvi("x", [2])], [fvi("y", None)])
    with pytest.raises(ModelImportError, match=r"Relu node 'r' .*input 'ghost' is not defined"):
        import_onnx(m)


def test_imported_graph_runs_like_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    m = relu_model()
    from compiler import backend
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)
    ours = backend.prepare(m).run([x])[0]
    theirs = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_array_equal(ours, theirs)


def test_function_ops_expand_into_their_onnx_bodies():
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 3)).astype(np.float32)
    scale = helper.make_tensor("scale", TensorProto.FLOAT, [4], [1.0, 0.5, 2.0, 1.5])
    bias = helper.make_tensor("bias", TensorProto.FLOAT, [4], [0.0, 0.1, -0.2, 0.3])
    node = helper.make_node("GroupNormalization", ["x", "scale", "bias"], ["y"], name="gn", num_groups=2)
    m = model([node], [fvi("x", x.shape)], [fvi("y", None)], [scale, bias], opset=21)
    g = import_onnx(m, strict_types=True)
    assert "GroupNormalization" not in {n.op for n in g.nodes}
    assert all(n.name.startswith("gn::") for n in g.nodes)
    from compiler import backend
    groups = x.reshape(2, 2, -1)
    norm = ((groups - groups.mean(-1, keepdims=True)) / np.sqrt(groups.var(-1, keepdims=True) + 1e-5)).reshape(x.shape)
    want = norm * np.array([1, 0.5, 2, 1.5], np.float32)[:, None, None] + np.array([0, 0.1, -0.2, 0.3])[:, None, None]
    np.testing.assert_allclose(backend.prepare(m).run([x])[0], want, rtol=1e-4, atol=1e-5)


def test_local_functions_are_inlined_with_the_weights_unchanged():
    """onnx's inliner runs in its worker process on the model without its
    large weights, which come back as they were: the model computes what
    onnxruntime computes."""
    ort = pytest.importorskip("onnxruntime")
    from onnx import numpy_helper

    from compiler import backend
    rng = np.random.default_rng(0)
    body = [helper.make_node("Conv", ["a", "k"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["b"])]
    block = helper.make_function("local", "block", ["a", "k"], ["b"], body, [helper.make_opsetid("", 17)])
    weight = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    m = model([helper.make_node("block", ["x", "w"], ["y"], domain="local", name="call")], [fvi("x", [1, 3, 8, 8])],
              [fvi("y", None)], [weight], extra_opsets=[helper.make_opsetid("local", 1)])
    m.functions.append(block)
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    theirs = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(backend.prepare(m).run([x])[0], theirs, rtol=1e-5, atol=1e-5)


def test_every_ir_node_names_the_onnx_node_it_came_from():
    """An opset-11 Softmax on axis 1 of a 4-D tensor becomes Reshape ->
    Softmax -> Reshape: the node defining the output keeps the ONNX name,
    helpers get <name>::<op>, and onnx_name maps them all back."""
    from ir.graph import onnx_name

    m = model([helper.make_node("Softmax", ["x"], ["y"], name="probs", axis=1)],
              [fvi("x", [1, 4, 2, 2])], [fvi("y", [1, 4, 2, 2])], opset=11)
    g = import_onnx(m)
    names = [n.name for n in g.nodes]
    assert names[-1] == "probs" and len(names) > 1
    assert all(n.startswith("probs::") for n in names[:-1])
    assert {onnx_name(n) for n in names} == {"probs"}


def test_shape_inference_types_the_model_without_its_weights_values():
    """Large float weights go to onnx shape inference as typed inputs (no
    copy of their values): the types are those inference gives the whole
    model, the small shape tensors still propagate, and the weights do not
    appear among the inferred values."""
    from numpy.random import default_rng
    from onnx import numpy_helper

    from compiler.frontend.loader import infer_onnx_types

    w = numpy_helper.from_array(default_rng(0).standard_normal((16, 3, 3, 3)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "shape")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["c", "shape"], ["flat"], name="reshape"),
             helper.make_node("Relu", ["flat"], ["y"], name="relu")]
    proto = model(nodes, [fvi("x", ["N", 3, 8, 8])], [fvi("y", None)], [w, shape])
    types = infer_onnx_types(proto, {"x": [1, 3, 8, 8]}, "<model>")
    fixed = onnx.ModelProto.FromString(proto.SerializeToString())
    fixed.graph.input[0].CopyFrom(fvi("x", [1, 3, 8, 8]))
    whole = onnx.shape_inference.infer_shapes(fixed, data_prop=True).graph
    expected = {v.name: v.type for v in (*whole.value_info, *whole.output, *whole.input)}
    assert types == expected and "w" not in types
    assert [d.dim_value for d in types["y"].tensor_type.shape.dim] == [1, 16 * 8 * 8]
    assert len(proto.graph.initializer) == 2 and len(proto.graph.input) == 1  # the caller's model is left alone
