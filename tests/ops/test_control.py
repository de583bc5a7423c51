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
    evaluator (where they run the model); the imported graph must verify."""
    rep = backend.prepare(model, check=True, strict_types=True)
    ours = rep.run(feeds)
    verify(rep.graph)
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


# ------------------------------------------------------------------ bodies with shape-sensitive ops
# The outer inputs have symbolic dims, so each run specialises the model: a
# body must take its value shapes from the outer scope of that signature.
def _weights(rng, *shapes) -> list[np.ndarray]:
    return [rng.standard_normal(shape).astype(np.float32) * 0.5 for shape in shapes]


def _run_signatures(model, feeds_list: list[dict]) -> None:
    """Run one rep on feeds of different shapes, each checked against onnxruntime."""
    rep = backend.prepare(model, check=True, strict_types=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for feeds in feeds_list:
        ours = rep.run(feeds)
        verify(rep.graph)
        for got, want in zip(ours, session.run(None, feeds)):
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert len(rep.signatures) == len({tuple(np.shape(v) for v in f.values()) for f in feeds_list})


def _shape_chain(prefix: str, source: str, out: str) -> list:
    """Reshape ``source`` to [dim 0, -1] through Shape -> Gather -> Concat, as exporters write a flatten."""
    return [helper.make_node("Shape", [source], [f"{prefix}shape"]),
            helper.make_node("Constant", [], [f"{prefix}zero"], value=_const("z", np.array([0]))),
            helper.make_node("Gather", [f"{prefix}shape", f"{prefix}zero"], [f"{prefix}batch"], axis=0),
            helper.make_node("Constant", [], [f"{prefix}rest"], value=_const("r", np.array([-1]))),
            helper.make_node("Concat", [f"{prefix}batch", f"{prefix}rest"], [f"{prefix}target"], axis=0),
            helper.make_node("Reshape", [source, f"{prefix}target"], [out])]


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_if_branches_with_recurrent_layers_on_outer_values(op):
    """then: the layer over x from the initial state h0; else: the layer,
    reversed, over Relu(x) from zeros; Y flattened per step in both."""
    gates, hidden = (4 if op == "LSTM" else 3), 5
    rng = np.random.default_rng(4)
    w, r = _weights(rng, [1, gates * hidden, 3], [1, gates * hidden, hidden])

    def branch(tag: str, x: str, extra: list, attrs: dict, state: str):
        layer = helper.make_node(op, [x, "W", "R", "", "", state], [f"{tag}Y", f"{tag}Yh"], hidden_size=hidden,
                                 **attrs)
        return _body([*extra, layer, *_shape_chain(tag, f"{tag}Y", f"{tag}flat")], [],
                     [_vi(f"{tag}flat", F, None), _vi(f"{tag}Yh", F, None)], tag)

    then_branch = branch("t_", "x", [], {}, "h0")
    else_branch = branch("e_", "e_x", [helper.make_node("Relu", ["x"], ["e_x"])], {"direction": "reverse"}, "")
    node = helper.make_node("If", ["cond"], ["flat", "h_last"], then_branch=then_branch, else_branch=else_branch)
    model = _model([node], [_vi("cond", BOOL, []), _vi("x", F, ["seq", "batch", 3]),
                            _vi("h0", F, [1, "batch", hidden])],
                   [_vi("flat", F, None), _vi("h_last", F, None)], [_const("W", w), _const("R", r)])
    feeds = [{"cond": np.array(cond), "x": rng.standard_normal((seq, batch, 3)).astype(np.float32),
              "h0": rng.standard_normal((1, batch, hidden)).astype(np.float32)}
             for cond, seq, batch in [(True, 4, 2), (False, 4, 2), (True, 2, 3), (False, 2, 3)]]
    _run_signatures(model, feeds)


def test_loop_body_with_a_conv_and_a_reshape_of_outer_shapes():
    """Each iteration: y = Relu(Conv(y)), and its flattening [N, C*H*W] as a
    scan output; N, H and W are symbolic."""
    rng = np.random.default_rng(5)
    (w,) = _weights(rng, [2, 2, 3, 3])
    body = _body([helper.make_node("Conv", ["y", "W"], ["conv"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", ["conv"], ["y_out"]),
                  *_shape_chain("b_", "y_out", "flat"),
                  helper.make_node("Identity", ["c"], ["c_out"])],
                 [_vi("i", I64, []), _vi("c", BOOL, []), _vi("y", F, None)],
                 [_vi("c_out", BOOL, []), _vi("y_out", F, None), _vi("flat", F, None)])
    node = helper.make_node("Loop", ["M", "", "y0"], ["y_final", "flats"], body=body)
    model = _model([node], [_vi("M", I64, []), _vi("y0", F, ["N", 2, "H", "W"])],
                   [_vi("y_final", F, None), _vi("flats", F, None)], [_const("W", w)])
    feeds = [{"M": np.array(3, np.int64), "y0": rng.standard_normal(shape).astype(np.float32)}
             for shape in [(1, 2, 4, 5), (2, 2, 3, 3)]]
    _run_signatures(model, feeds)


def test_scan_body_with_a_gru_step_and_a_reshape():
    """A GRU cell per time step (its state carried), the step's input
    reshaped from [batch, 2, 2] through a Shape chain."""
    hidden = 3
    rng = np.random.default_rng(6)
    w, r = _weights(rng, [1, 3 * hidden, 4], [1, 3 * hidden, hidden])
    body = _body([*_shape_chain("s_", "x_t", "x_flat"),
                  helper.make_node("Unsqueeze", ["x_flat", "axis0"], ["X"]),
                  helper.make_node("Unsqueeze", ["h", "axis0"], ["h_in"]),
                  helper.make_node("GRU", ["X", "W", "R", "", "", "h_in"], ["", "h_next"], hidden_size=hidden),
                  helper.make_node("Squeeze", ["h_next", "axis0"], ["h_out"]),
                  helper.make_node("Identity", ["h_out"], ["y"])],
                 [_vi("h", F, None), _vi("x_t", F, None)], [_vi("h_out", F, None), _vi("y", F, None)],
                 initializers=[_const("axis0", np.array([0]))])
    node = helper.make_node("Scan", ["h0", "xs"], ["h_final", "ys"], body=body, num_scan_inputs=1)
    model = _model([node], [_vi("h0", F, ["batch", hidden]), _vi("xs", F, ["steps", "batch", 2, 2])],
                   [_vi("h_final", F, None), _vi("ys", F, None)], [_const("W", w), _const("R", r)], opset=16)
    feeds = [{"h0": rng.standard_normal((batch, hidden)).astype(np.float32),
              "xs": rng.standard_normal((steps, batch, 2, 2)).astype(np.float32)} for steps, batch in [(3, 1), (5, 2)]]
    _run_signatures(model, feeds)


# ------------------------------------------------------------------ an exported voice-activity model
def _scripted_if(name: str, cond: str, then_node, else_node, out: str):
    """An If of one node per branch, as torch.jit exports a rank or size check."""
    return helper.make_node("If", [cond], [out], name=name,
                            then_branch=_body([then_node], [], [_vi(then_node.output[0], F, None)], f"{name}_then"),
                            else_branch=_body([else_node], [], [_vi(else_node.output[0], F, None)], f"{name}_else"))


def _vad_branch(tag: str, stride: int) -> list:
    """One sample rate's model: a strided Conv encoder to [batch, hidden, T],
    then torch's LSTMCell as scripted: squeeze(-1) only if T is 1, unsqueeze(0)
    for an unbatched input, an LSTM of one step; out: probability and state.
    Names other than the outer ones get the branch's prefix."""
    outer = {"", "x", "state", "W", "R", "B", f"enc_{tag}"}

    def n(op: str, inputs: list, outputs: list, **attrs):
        local = [name if name in outer else f"{tag}/{name}" for name in (*inputs, *outputs)]
        return helper.make_node(op, local[:len(inputs)], local[len(inputs):], **attrs)

    def const(name: str, value):
        return n("Constant", [], [name], value=_const(name, np.array(value)))

    return [
        n("Conv", ["x", f"enc_{tag}"], ["enc"], strides=[stride]), n("Relu", ["enc"], ["feat"]),
        n("Shape", ["feat"], ["feat_shape"]), const("last", -1), const("one", 1), const("axis_last", [-1]),
        n("Gather", ["feat_shape", "last"], ["T"], axis=0), n("Equal", ["T", "one"], ["T_is_1"]),
        _scripted_if(f"{tag}/squeeze", f"{tag}/T_is_1", n("Squeeze", ["feat", "axis_last"], ["squeezed"]),
                     n("Identity", ["feat"], ["kept"]), f"{tag}/inp"),
        n("Shape", ["inp"], ["inp_shape"]), n("Size", ["inp_shape"], ["rank"]), const("two", 2),
        n("Equal", ["rank", "two"], ["batched"]), const("axis0", [0]),
        _scripted_if(f"{tag}/batch", f"{tag}/batched", n("Identity", ["inp"], ["as_is"]),
                     n("Unsqueeze", ["inp", "axis0"], ["unbatched"]), f"{tag}/cell_in"),
        n("Unsqueeze", ["cell_in", "axis0"], ["X"]), const("i0", 0), const("i1", 1),
        n("Gather", ["state", "i0"], ["h"], axis=0), n("Gather", ["state", "i1"], ["c"], axis=0),
        n("Unsqueeze", ["h", "axis0"], ["h0"]), n("Unsqueeze", ["c", "axis0"], ["c0"]),
        n("LSTM", ["X", "W", "R", "B", "", "h0", "c0"], ["Y", "Yh", "Yc"], hidden_size=4, name=f"{tag}/lstm"),
        n("Concat", ["Yh", "Yc"], ["state_out"], axis=0), n("Squeeze", ["Y", "axis0"], ["y"]),
        n("Sigmoid", ["y"], ["prob"]),
    ]


def _voice_activity_model():
    """Like silero-vad's export: an If on the sample rate picks the 16 kHz
    model (frames of 16 samples) or the 8 kHz one (frames of 8); the inputs
    have symbolic dims. With 16 samples both branches fit; with 24 the 8 kHz
    branch would make 2 frames, keep T, and feed its LSTM a rank-5 X."""
    rng = np.random.default_rng(7)
    branches = {}
    for tag, stride in (("sr16k", 16), ("sr8k", 8)):
        nodes = _vad_branch(tag, stride)
        branches[tag] = _body(nodes, [], [_vi(f"{tag}/prob", F, None), _vi(f"{tag}/state_out", F, None)], tag)
    nodes = [helper.make_node("Equal", ["sr", "rate16k"], ["is16k"]),
             helper.make_node("If", ["is16k"], ["prob", "state_out"], name="rate",
                              then_branch=branches["sr16k"], else_branch=branches["sr8k"])]
    weights = dict(zip(["enc_sr16k", "enc_sr8k", "W", "R", "B"],
                       _weights(rng, [4, 1, 16], [4, 1, 16], [1, 16, 4], [1, 16, 4], [1, 32])))
    inputs = [_vi("x", F, ["batch", 1, "samples"]), _vi("state", F, [2, "batch", 4]), _vi("sr", I64, [])]
    return _model(nodes, inputs, [_vi("prob", F, None), _vi("state_out", F, None)],
                  [_const("rate16k", np.array(16000)), *(_const(k, v) for k, v in weights.items())], opset=17)


def _vad_feeds(batch: int, samples: int, rate: int) -> dict:
    rng = np.random.default_rng(batch * samples + rate)
    return {"x": rng.standard_normal((batch, 1, samples)).astype(np.float32),
            "state": rng.standard_normal((2, batch, 4)).astype(np.float32), "sr": np.array(rate, np.int64)}


def test_voice_activity_model_with_an_lstm_cell_in_each_branch():
    feeds = [_vad_feeds(batch, 16, rate) for batch in (1, 2) for rate in (16000, 8000)]
    _run_signatures(_voice_activity_model(), feeds)


def test_an_if_branch_that_does_not_fit_the_input_shapes_fails_only_when_taken():
    """Frames of 24 samples: the 16 kHz branch runs, as in onnxruntime; the
    8 kHz branch (which would feed its LSTM a rank-5 X) is a Fail node whose
    message is the import error, raised only if the condition chooses it."""
    _run_signatures(_voice_activity_model(), [_vad_feeds(1, 24, 16000)])
    rep = backend.prepare(_voice_activity_model())
    fails = [n for _, n in walk(rep.model.to_graph({"x": [1, 1, 24], "state": [2, 1, 4], "sr": []}))
             if n.op == "Fail"]
    assert [n.name for n in fails] == ["else_branch_fails"]
    with pytest.raises(ExecutionError, match=r"If node .rate. .*: else_branch does not fit the input shapes it was "
                       r"compiled for: LSTM node 'sr8k/lstm': X \(input 0\) must have rank 3, got f32\[1,1,1,4,2\]"):
        rep.run(_vad_feeds(1, 24, 8000))


def test_an_if_neither_of_whose_branches_fits_is_an_import_error():
    rep = backend.prepare(_voice_activity_model())
    with pytest.raises(ModelImportError, match=r"If node 'rate' .*: neither branch fits these input shapes: "
                       r"then_branch does not fit"):
        rep.run(_vad_feeds(1, 13, 16000))
