"""If, Loop and Scan: models built with onnx.helper, run through Tessera and
compared with onnxruntime (and onnx's reference evaluator where it runs them
right); the imported graphs must pass the verifier, subgraphs included."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from compiler import backend
from compiler.errors import ModelImportError, UnsupportedOpError
from ir.graph import walk
from ir.types import TensorType
from ir.verifier import verify
from runtime.errors import ExecutionError

F, I64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def _vi(name: str, elem: int, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def _const(name: str, array) -> TensorProto:
    array = np.asarray(array)
    return helper.make_tensor(name, helper.np_dtype_to_tensor_dtype(array.dtype), array.shape,
                              array.reshape(-1).tolist())


def _model(nodes, inputs, outputs, initializers=(), opset: int = 18):
    graph = helper.make_graph(nodes, "control", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def _body(nodes, inputs, outputs, name="body", initializers=()):
    return helper.make_graph(nodes, name, inputs, outputs, list(initializers))


def _run(model, feeds, reference: bool = True, onnxruntime: bool = True) -> tuple:
    """Tessera's outputs, checked against onnxruntime and the reference
    evaluator (where they run the model), after verifying the imported graph."""
    rep = backend.prepare(model, check=True, strict_types=True)
    verify(rep.graph)
    ours = rep.run(feeds)
    references = []
    if onnxruntime:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        references.append(session.run(None, feeds))
    if reference:
        references.append(ReferenceEvaluator(model).run(None, feeds))
    for theirs in references:
        assert len(ours) == len(theirs)
        for got, want in zip(ours, theirs):
            want = np.asarray(want)
            assert got.dtype == want.dtype and got.shape == want.shape, (got.shape, want.shape)
            np.testing.assert_allclose(got, want, rtol=1e-6)
    return ours


def _nodes(graph, op: str) -> list:
    return [node for _, node in walk(graph) if node.op == op]


# ------------------------------------------------------------------ If
def _if_with_different_captures():
    """then: a + b; else: c * a — each branch reads other outer values."""
    then_branch = _body([helper.make_node("Add", ["a", "b"], ["t"])], [], [_vi("t", F, [2, 3])], "then")
    else_branch = _body([helper.make_node("Mul", ["c", "a"], ["e"])], [], [_vi("e", F, [2, 3])], "else")
    node = helper.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch)
    return _model([node], [_vi("cond", BOOL, []), _vi("a", F, [2, 3]), _vi("b", F, [2, 3]), _vi("c", F, [2, 3])],
                  [_vi("y", F, [2, 3])])


@pytest.mark.parametrize("cond", [True, False])
def test_if_branches_with_different_captures(cond):
    rng = np.random.default_rng(0)
    feeds = {k: rng.standard_normal((2, 3)).astype(np.float32) for k in "abc"}
    model = _if_with_different_captures()
    _run(model, {"cond": np.array(cond), **feeds})
    graph = backend.prepare(model).graph
    (node,) = _nodes(graph, "If")
    assert node.attrs["captures"] == 3
    assert [v.name for v in node.inputs] == ["cond", "a", "b", "c"]
    for branch in (node.attrs["then_branch"], node.attrs["else_branch"]):
        assert len(branch.inputs) == 3
    then_inputs = node.attrs["then_branch"].inputs
    else_inputs = node.attrs["else_branch"].inputs
    assert [v.name for v in then_inputs[:2]] == ["a", "b"] and not then_inputs[2].uses
    assert [v.name for v in else_inputs if v.uses] == ["a", "c"] and not else_inputs[1].uses


def test_if_branches_of_different_shapes_give_unknown_dims():
    then_branch = _body([helper.make_node("Identity", ["a"], ["t"])], [], [_vi("t", F, [2, 3])], "then")
    else_branch = _body([helper.make_node("Identity", ["b"], ["e"])], [], [_vi("e", F, [4, 3])], "else")
    node = helper.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch)
    model = _model([node], [_vi("cond", BOOL, []), _vi("a", F, [2, 3]), _vi("b", F, [4, 3])], [_vi("y", F, None)])
    graph = backend.prepare(model).graph
    assert graph.outputs[0].type == TensorType([None, 3])
    feeds = {"a": np.ones((2, 3), np.float32), "b": np.zeros((4, 3), np.float32)}
    for cond in (True, False):
        _run(model, {"cond": np.array(cond), **feeds})


def test_if_returning_constants_and_outer_values():
    """A branch output may be a branch constant or an outer value itself
    (onnxruntime rejects the latter)."""
    then_branch = _body([], [], [_vi("k", F, [3]), _vi("a", F, [3])], "then",
                        [_const("k", np.arange(3.0, dtype=np.float32))])
    else_branch = _body([helper.make_node("Neg", ["a"], ["n"])], [], [_vi("n", F, [3]), _vi("n", F, [3])], "else")
    node = helper.make_node("If", ["cond"], ["y", "z"], then_branch=then_branch, else_branch=else_branch)
    model = _model([node], [_vi("cond", BOOL, []), _vi("a", F, [3])], [_vi("y", F, [3]), _vi("z", F, [3])])
    for cond in (True, False):
        _run(model, {"cond": np.array(cond), "a": np.array([1, 2, 3], np.float32)}, onnxruntime=False)


@pytest.mark.parametrize("cond", [True, False])
def test_if_with_a_constant_condition_is_inlined(cond):
    model = _if_with_different_captures()
    model.graph.initializer.append(_const("cond", np.array(cond)))
    del model.graph.input[0]
    graph = backend.prepare(model, check=True, strict_types=True).graph
    verify(graph)
    assert not _nodes(graph, "If")
    assert [n.op for n in graph.nodes] == ["Add" if cond else "Mul"]
    assert graph.outputs[0].name == "y"
    rng = np.random.default_rng(1)
    feeds = {k: rng.standard_normal((2, 3)).astype(np.float32) for k in "abc"}
    _run(model, feeds)


def test_if_condition_of_two_values_is_an_import_error():
    model = _if_with_different_captures()
    model.graph.input[0].CopyFrom(_vi("cond", BOOL, [2]))
    with pytest.raises(ModelImportError, match=r"cond \(input 0\) must be a single bool value"):
        backend.prepare(model)


def test_if_branches_of_different_dtypes_are_an_import_error():
    then_branch = _body([], [], [_vi("k", F, [1])], "then", [_const("k", np.zeros(1, np.float32))])
    else_branch = _body([], [], [_vi("j", I64, [1])], "else", [_const("j", np.zeros(1, np.int64))])
    node = helper.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch)
    model = _model([node], [_vi("cond", BOOL, [])], [_vi("y", F, [1])])
    with pytest.raises(ModelImportError, match=r"output 0: then_branch gives f32\[1\], else_branch gives i64\[1\]"):
        backend.prepare(model)


# ------------------------------------------------------------------ Loop
def _counting_loop(trip: int | None, limit: int | None, const_trip: bool = False):
    """Carried: sum += i (as float); scan: the running sum; the body's
    condition is ``i + 1 < limit`` (or passed through when limit is None)."""
    nodes = [helper.make_node("Cast", ["i"], ["fi"], to=F), helper.make_node("Add", ["s", "fi"], ["s_out"]),
             helper.make_node("Identity", ["s_out"], ["scan"])]
    inits = []
    if limit is None:
        nodes.append(helper.make_node("Identity", ["c"], ["c_out"]))
    else:
        nodes += [helper.make_node("Add", ["i", "one"], ["next"]),
                  helper.make_node("Less", ["next", "limit"], ["c_out"])]
        inits = [_const("one", np.array(1, np.int64)), _const("limit", np.array(limit, np.int64))]
    body = _body(nodes, [_vi("i", I64, []), _vi("c", BOOL, []), _vi("s", F, [2])],
                 [_vi("c_out", BOOL, []), _vi("s_out", F, [2]), _vi("scan", F, [2])], initializers=inits)
    node = helper.make_node("Loop", ["M", "cond", "s0"], ["s_final", "sums"], body=body)
    inputs = [_vi("cond", BOOL, []), _vi("s0", F, [2])]
    outer_inits = []
    if const_trip:
        outer_inits.append(_const("M", np.array(trip, np.int64)))
    else:
        inputs.insert(0, _vi("M", I64, []))
    model = _model([node], inputs, [_vi("s_final", F, [2]), _vi("sums", F, None)], outer_inits)
    feeds = {"cond": np.array(True), "s0": np.array([1, -1], np.float32)}
    if not const_trip:
        feeds["M"] = np.array(trip, np.int64)
    return model, feeds


@pytest.mark.parametrize("trip,limit", [(10, 4), (3, 8), (0, 4), (6, None)])
def test_loop_with_scan_outputs_and_early_exit(trip, limit):
    model, feeds = _counting_loop(trip, limit)
    final, sums = _run(model, feeds, reference=trip > 0)  # the reference evaluator fails on 0 iterations
    assert sums.shape == (min(trip, limit or trip), 2)


def test_loop_trip_count_of_shape_one():
    model, feeds = _counting_loop(4, None)
    model.graph.input[0].type.tensor_type.shape.dim.add().dim_value = 1
    feeds["M"] = np.array([4], np.int64)
    final, sums = _run(model, feeds, reference=False)
    assert sums.shape == (4, 2)


def test_loop_that_never_starts_gives_empty_scan_outputs():
    model, feeds = _counting_loop(5, None)
    feeds["cond"] = np.array(False)
    final, sums = _run(model, feeds, reference=False)
    assert sums.shape == (0, 2) and np.array_equal(final, feeds["s0"])


def test_loop_trip_count_known_at_compile_time_gives_static_scan_shape():
    model, _ = _counting_loop(6, None, const_trip=True)
    model.graph.initializer.append(_const("cond", np.array(True)))
    del model.graph.input[0]
    graph = backend.prepare(model).graph
    assert graph.outputs[1].type == TensorType([6, 2])
    _run(model, {"s0": np.zeros(2, np.float32)})


def test_loop_with_early_exit_has_unknown_scan_length():
    model, _ = _counting_loop(6, 3, const_trip=True)
    graph = backend.prepare(model).graph
    assert graph.outputs[1].type == TensorType([None, 2])
    _run(model, {"cond": np.array(True), "s0": np.zeros(2, np.float32)})


def test_while_loop_without_trip_count():
    model, feeds = _counting_loop(0, 5)
    model.graph.node[0].input[0] = ""
    del model.graph.input[0]
    del feeds["M"]
    final, sums = _run(model, feeds)
    assert sums.shape == (5, 2)


def test_loop_without_condition_input_reads_the_body_condition():
    """Like onnxruntime; onnx's reference evaluator runs no iteration here."""
    model, feeds = _counting_loop(10, 3)
    model.graph.node[0].input[1] = ""
    model.graph.input.pop(1)
    del feeds["cond"]
    final, sums = _run(model, feeds, reference=False)
    assert sums.shape == (3, 2)


def test_loop_carried_value_that_grows():
    """x = Concat(x, [i]) each iteration: its dim becomes unknown, and the body
    is imported again with the wider type."""
    body = _body([helper.make_node("Cast", ["i"], ["fi"], to=F),
                  helper.make_node("Unsqueeze", ["fi", "axes"], ["item"]),
                  helper.make_node("Concat", ["x", "item"], ["x_out"], axis=0),
                  helper.make_node("Identity", ["c"], ["c_out"])],
                 [_vi("i", I64, []), _vi("c", BOOL, []), _vi("x", F, [1])],
                 [_vi("c_out", BOOL, []), _vi("x_out", F, None)], initializers=[_const("axes", np.array([0]))])
    node = helper.make_node("Loop", ["M", "", "x0"], ["x_final"], body=body)
    model = _model([node], [_vi("M", I64, []), _vi("x0", F, [1])], [_vi("x_final", F, None)])
    graph = backend.prepare(model).graph
    (loop,) = _nodes(graph, "Loop")
    assert loop.attrs["body"].inputs[2].type == TensorType([None])
    assert graph.outputs[0].type == TensorType([None])
    (got,) = _run(model, {"M": np.array(4, np.int64), "x0": np.array([9], np.float32)}, reference=False)
    np.testing.assert_array_equal(got, [9, 0, 1, 2, 3])


def test_nested_if_in_loop_body_capturing_a_grand_outer_value():
    """The If in the body reads ``g`` from the main graph: the Loop captures
    it, and the If captures the body's copy of it."""
    then_branch = _body([helper.make_node("Add", ["x", "g"], ["t"])], [], [_vi("t", F, [2])], "then")
    else_branch = _body([helper.make_node("Sub", ["x", "g"], ["e"])], [], [_vi("e", F, [2])], "else")
    body = _body([helper.make_node("Mod", ["i", "two"], ["parity"]),
                  helper.make_node("Equal", ["parity", "zero"], ["even"]),
                  helper.make_node("If", ["even"], ["x_out"], then_branch=then_branch, else_branch=else_branch),
                  helper.make_node("Mul", ["x_out", "x_out"], ["sq"]),
                  helper.make_node("Identity", ["c"], ["c_out"])],
                 [_vi("i", I64, []), _vi("c", BOOL, []), _vi("x", F, [2])],
                 [_vi("c_out", BOOL, []), _vi("x_out", F, [2]), _vi("sq", F, [2])],
                 initializers=[_const("two", np.array(2, np.int64)), _const("zero", np.array(0, np.int64))])
    node = helper.make_node("Loop", ["M", "", "x0"], ["x_final", "squares"], body=body)
    model = _model([node], [_vi("M", I64, []), _vi("x0", F, [2]), _vi("g", F, [2])],
                   [_vi("x_final", F, [2]), _vi("squares", F, None)])
    graph = backend.prepare(model).graph
    (loop,) = _nodes(graph, "Loop")
    assert loop.attrs["captures"] == 1 and loop.inputs[-1].name == "g"
    (inner,) = _nodes(loop.attrs["body"], "If")
    assert inner.attrs["captures"] == 2
    assert inner.inputs[-1] is loop.attrs["body"].inputs[-1]
    feeds = {"M": np.array(5, np.int64), "x0": np.array([1, 2], np.float32), "g": np.array([0.5, -1], np.float32)}
    _run(model, feeds, reference=False)


def test_loop_body_changing_a_carried_dtype_is_an_import_error():
    body = _body([helper.make_node("Cast", ["x"], ["x_out"], to=I64), helper.make_node("Identity", ["c"], ["c_out"])],
                 [_vi("i", I64, []), _vi("c", BOOL, []), _vi("x", F, [2])],
                 [_vi("c_out", BOOL, []), _vi("x_out", I64, [2])])
    node = helper.make_node("Loop", ["M", "", "x0"], ["x_final"], body=body)
    model = _model([node], [_vi("M", I64, []), _vi("x0", F, [2])], [_vi("x_final", F, [2])])
    with pytest.raises(ModelImportError, match=r"value 0 starts as f32\[2\] but the body makes it i64\[2\]"):
        backend.prepare(model)


def test_loop_without_trip_count_or_condition_is_an_import_error():
    model, _ = _counting_loop(3, None)
    model.graph.node[0].input[0] = ""
    model.graph.node[0].input[1] = ""
    with pytest.raises(ModelImportError, match="neither a trip count M nor a condition never ends"):
        backend.prepare(model)


def test_scan_output_changing_shape_is_a_runtime_error():
    body = _body([helper.make_node("Cast", ["i"], ["fi"], to=F),
                  helper.make_node("Unsqueeze", ["fi", "axes"], ["item"]),
                  helper.make_node("Concat", ["x", "item"], ["x_out"], axis=0),
                  helper.make_node("Identity", ["c"], ["c_out"])],
                 [_vi("i", I64, []), _vi("c", BOOL, []), _vi("x", F, [1])],
                 [_vi("c_out", BOOL, []), _vi("x_out", F, None), _vi("x_out", F, None)],
                 initializers=[_const("axes", np.array([0]))])
    node = helper.make_node("Loop", ["M", "", "x0"], ["x_final", "history"], body=body)
    model = _model([node], [_vi("M", I64, []), _vi("x0", F, [1])], [_vi("x_final", F, None), _vi("h", F, None)])
    model.graph.output[1].name = "history"
    rep = backend.prepare(model)
    with pytest.raises(ExecutionError, match="changes shape between iterations"):
        rep.run({"M": np.array(3, np.int64), "x0": np.zeros(1, np.float32)})


# ------------------------------------------------------------------ Scan
def _cumulative_scan(**attrs):
    """state += row (times an outer scale); scan output: the state."""
    body = _body([helper.make_node("Mul", ["row", "scale"], ["scaled"]),
                  helper.make_node("Add", ["state", "scaled"], ["state_out"]),
                  helper.make_node("Identity", ["state_out"], ["out"])],
                 [_vi("state", F, [3]), _vi("row", F, [3])], [_vi("state_out", F, [3]), _vi("out", F, [3])])
    node = helper.make_node("Scan", ["s0", "xs"], ["s_final", "ys"], body=body, num_scan_inputs=1, **attrs)
    shape = [4, 3] if attrs.get("scan_input_axes", [0])[0] in (0, -2) else [3, 4]
    return _model([node], [_vi("s0", F, [3]), _vi("xs", F, shape), _vi("scale", F, [3])],
                  [_vi("s_final", F, [3]), _vi("ys", F, None)], opset=16), shape


@pytest.mark.parametrize("attrs", [
    {}, dict(scan_input_directions=[1]), dict(scan_input_axes=[1], scan_output_axes=[1]),
    dict(scan_input_axes=[-1], scan_output_directions=[1], scan_output_axes=[-1]),
])
def test_scan_with_axes_directions_and_a_capture(attrs):
    model, shape = _cumulative_scan(**attrs)
    rng = np.random.default_rng(2)
    feeds = {"s0": np.zeros(3, np.float32), "xs": rng.standard_normal(shape).astype(np.float32),
             "scale": np.array([1, 2, 3], np.float32)}
    _run(model, feeds, reference=not attrs)  # the reference evaluator runs default axes only
    (scan,) = _nodes(backend.prepare(model).graph, "Scan")
    assert scan.attrs["captures"] == 1 and scan.inputs[-1].name == "scale"


def _scan_8(lens=None, **attrs):
    body = _body([helper.make_node("Add", ["s", "x"], ["s_out"]), helper.make_node("Mul", ["s_out", "scale"], ["y"])],
                 [_vi("s", F, [2]), _vi("x", F, [2])], [_vi("s_out", F, [2]), _vi("y", F, [2])])
    node = helper.make_node("Scan", ["" if lens is None else "lens", "s0", "xs"], ["s_final", "ys"], body=body,
                            num_scan_inputs=1, **attrs)
    inits = [] if lens is None else [_const("lens", np.array(lens, np.int64))]
    return _model([node], [_vi("s0", F, [3, 2]), _vi("xs", F, [3, 4, 2]), _vi("scale", F, [2])],
                  [_vi("s_final", F, [3, 2]), _vi("ys", F, [3, 4, 2])], inits, opset=8)


@pytest.mark.parametrize("attrs", [{}, dict(directions=[1])])
@pytest.mark.parametrize("lens", [None, [4, 4, 4]])
def test_scan_8_runs_one_scan_per_batch_entry(attrs, lens):
    rng = np.random.default_rng(3)
    feeds = {"s0": rng.standard_normal((3, 2)).astype(np.float32),
             "xs": rng.standard_normal((3, 4, 2)).astype(np.float32), "scale": np.array([2, -1], np.float32)}
    _run(_scan_8(lens, **attrs), feeds, reference=False)


def test_scan_8_with_short_sequence_lens_is_unsupported():
    with pytest.raises(UnsupportedOpError, match="sequence_lens shorter than the sequences"):
        backend.prepare(_scan_8([4, 2, 4]))


def test_subprogram_executor_is_built_once():
    model, feeds = _counting_loop(4, None)
    rep = backend.prepare(model)
    rep.run(feeds)
    (step,) = [s for s in rep.program.steps if s.kernel == "Loop"]
    executor = vars(step.attrs["body"])["_executor"]
    rep.run(feeds)
    assert vars(step.attrs["body"])["_executor"] is executor
