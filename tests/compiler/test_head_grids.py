"""Output grids per quantity for heads (passes/quant/head_grids.py,
compiler/apply_encodings.py): the channel groups chosen, the graph a split
leaves, the quiet channels' SNR, the host Concat, the encodings round trip
and the binary bit for bit."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.errors import QuantizationError
from compiler.frontend import import_onnx
from compiler.pipeline import SIMPLIFY
from compiler.quantize import quantize_model
from compiler.quantized import HEAD_GROUPS
from ir.graph import walk
from passes.affinity import HOST_ONLY, REASON
from passes.infra import PassContext
from passes.quant.head_grids import channel_groups, find_heads, split_head
from passes.quant.metrics import snr_db

SHAPE = [1, 4, 8, 8]
LOUD = (1, 2)
"""The head's output channels that carry a quantity ~30x larger (boxes in pixels)."""


def _model(kind: str, seed: int = 3):
    """x -> Conv(16) -> Relu -> head. ``conv``: one Conv of 5 channels whose
    channels LOUD are 30x the others; ``concat``: two Convs (boxes x30,
    scores) joined by a Concat along the channels."""
    rng = np.random.default_rng(seed)
    inits = {"w0": rng.normal(0, 0.4, (16, 4, 3, 3)), "b0": rng.normal(0, 0.1, 16)}
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], pads=[1, 1, 1, 1], name="stem"),
             helper.make_node("Relu", ["c0"], ["r0"], name="relu")]
    if kind == "conv":
        w = rng.normal(0, 0.2, (5, 16, 1, 1))
        w[list(LOUD)] *= 30
        inits.update(wh=w, bh=rng.normal(0, 0.1, 5))
        nodes.append(helper.make_node("Conv", ["r0", "wh", "bh"], ["y"], name="head"))
        channels = 5
    else:
        inits.update(wb=30 * rng.normal(0, 0.2, (2, 16, 1, 1)), ws=rng.normal(0, 0.2, (3, 16, 1, 1)))
        nodes += [helper.make_node("Conv", ["r0", "wb"], ["boxes"], name="boxes"),
                  helper.make_node("Conv", ["r0", "ws"], ["scores"], name="scores")]
        channels = 5
        if kind == "nested":  # YOLO11-seg: Concat(Concat(boxes, scores), coefficients)
            inits.update(wm=3 * rng.normal(0, 0.2, (1, 16, 1, 1)))
            nodes += [helper.make_node("Conv", ["r0", "wm"], ["masks"], name="masks"),
                      helper.make_node("Concat", ["boxes", "scores"], ["det"], axis=1, name="inner"),
                      helper.make_node("Concat", ["det", "masks"], ["y"], axis=1, name="join")]
            channels = 6
        else:
            nodes.append(helper.make_node("Concat", ["boxes", "scores"], ["y"], axis=1, name="join"))
    graph = helper.make_graph(nodes, kind, [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 8, 8])],
                              [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    calibration = [rng.random(SHAPE, np.float32) for _ in range(16)]
    evaluation = [rng.random(SHAPE, np.float32) for _ in range(4)]
    return model, calibration, evaluation


def _quantize(model, calibration, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_model(model, calibration_data=calibration, **kwargs)


def _channel_snr(q, evaluation, channels) -> float:
    reference = np.concatenate([q.run_float({"x": x})["y"][:, channels] for x in evaluation])
    result = np.concatenate([q.run({"x": x})["y"][:, channels] for x in evaluation])
    return snr_db(reference.ravel(), result.ravel())


def test_channels_of_different_ranges_are_grouped_and_alike_ones_are_not():
    high = np.array([1.0, 30.0, 31.0, 1.1, 0.9])
    groups = channel_groups(-0.1 * high, high, high ** 2 / 4)
    assert sorted(map(sorted, (g.tolist() for g in groups))) == [[0, 3, 4], [1, 2]]
    alike = np.array([1.0, 1.3, 0.8, 1.1])
    assert len(channel_groups(-alike, alike, alike ** 2 / 4)) == 1
    # a dead channel (never non-zero) does not claim a grid of its own
    dead = np.array([0.0, 1.0, 1.2, 0.9])
    assert len(channel_groups(np.zeros(4), dead, dead ** 2 / 4)) == 1


def test_a_split_head_keeps_its_output_and_joins_on_the_host():
    model, _, evaluation = _model("conv")
    with PassContext():
        graph = SIMPLIFY(import_onnx(model))
    convs, concats = find_heads(graph)
    assert [c.name for c in convs] == ["head"] and not concats
    from codegen.cpu import lower_to_program
    from runtime.executor import Executor

    before = Executor(lower_to_program(graph)).run({"x": evaluation[0]})["y"]
    split_head(graph, convs[0], [np.array([0, 3, 4]), np.array([1, 2])])
    ops = [(n.op, n.name) for n in graph.nodes]
    assert ops[-4:] == [("Conv", "head::Conv#0"), ("Conv", "head::Conv#1"), ("Concat", "head::Concat"),
                        ("Gather", "head::Gather")]
    assert [v.name for v in graph.outputs] == ["y"]
    assert all(HOST_ONLY in n.annotations for n in graph.nodes[-2:])
    after = Executor(lower_to_program(graph)).run({"x": evaluation[0]})["y"]
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6)


def test_head_grids_lift_the_quiet_channels_of_a_head():
    model, calibration, evaluation = _model("conv")
    plain = _quantize(model, calibration, head_grids=False)
    split = _quantize(model, calibration)
    quiet = [0, 3, 4]
    assert sorted(map(sorted, split.head_grids.split["head"])) == [[0, 3, 4], [1, 2]]
    gain = _channel_snr(split, evaluation, quiet) - _channel_snr(plain, evaluation, quiet)
    assert gain > 15.0, gain  # one grid 30x too coarse costs them ~30 dB
    assert _channel_snr(split, evaluation, list(LOUD)) > _channel_snr(plain, evaluation, list(LOUD)) - 0.5
    host = [n for s in split.graph.nodes if s.attrs.get("device") == "CPU" for _, n in walk(s.attrs["body"])]
    assert {n.op for n in host if n.op != "Fused"} == {"Concat", "Gather"}
    assert {"head::Conv#0", "head::Conv#1"} <= {n.name for n in split.quantized_nodes()}
    assert all("head's parts on their own grids" in n.annotations[REASON] for n in host if n.op != "Fused")


@pytest.mark.parametrize("kind, joins", [("concat", ["join"]), ("nested", ["join", "inner"])])
def test_a_concat_of_boxes_and_scores_at_an_output_runs_on_the_host(kind, joins):
    """Also a Concat of boxes and scores nested in the output's Concat
    (YOLO11-seg): on the device it would put both on one grid first."""
    model, calibration, evaluation = _model(kind)
    plain = _quantize(model, calibration, head_grids=False)
    joined = _quantize(model, calibration)
    assert joined.head_grids.joined == joins and not joined.head_grids.split
    assert set(joins) <= set(joined.float_layers()) and not set(joins) & set(plain.float_layers())
    gain = _channel_snr(joined, evaluation, [2, 3, 4]) - _channel_snr(plain, evaluation, [2, 3, 4])
    assert gain > 15.0, gain


def test_the_groups_survive_an_encodings_round_trip_and_the_binary_runs_them_bit_for_bit(tmp_path):
    from compiler.compile import compile_model
    from runtime import FWDNXT

    model, calibration, evaluation = _model("conv")
    q = _quantize(model, calibration)
    document = q.export_encodings()
    assert document["quantizer_args"][HEAD_GROUPS] == q.head_grids.split
    again = quantize_model(model, encodings=document)
    assert again.head_grids.split == q.head_grids.split
    for x in evaluation[:2]:
        assert np.array_equal(again.run({"x": x})["y"], q.run({"x": x})["y"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compile_model(model, samples=calibration, outfile=tmp_path / "head.bin")
    ie = FWDNXT()
    ie.Init(str(tmp_path / "head.bin"), "")
    result = np.empty(5 * 64, np.float32)
    ie.Run_sw(evaluation[0], result)
    assert np.array_equal(result, q.run({"x": evaluation[0]})["y"].ravel())
    ie.Free()


@pytest.mark.parametrize("groups, message", [
    ({"nothead": [[0, 1, 2, 3, 4]]}, "no head convolution"),
    ({"head": [[0, 1], [1, 2, 3, 4]]}, "each once"),
    ({"head": [[0, 1], ["a"]]}, "channel numbers"),
    ([["head"]], "must map convolution names"),
])
def test_recorded_groups_that_do_not_fit_the_model_are_named(groups, message):
    model, calibration, _ = _model("conv")
    document = _quantize(model, calibration).export_encodings()
    document["quantizer_args"][HEAD_GROUPS] = groups
    with pytest.raises(QuantizationError, match=message) as caught:
        quantize_model(model, encodings=document)
    assert HEAD_GROUPS in str(caught.value)


@pytest.mark.parametrize("kind, parts", [
    ("conv", {f"y[{c}]" for c in range(5)}),  # a split head's groups are cut by range: each channel on its own
    ("concat", {"y[0:2]", "y[2:5]"}),  # a Concat of the model's own tensors joins quantities: each input
])
def test_a_target_snr_measures_each_quantity_of_a_joined_output(kind, parts):
    """The SNR of a tensor of boxes and scores is the boxes': a target
    measures each quantity of a joined output on its own."""
    model, calibration, _ = _model(kind)
    q = _quantize(model, calibration, target_snr=20, target_budget=1.0)
    assert set(q.target.before_db) == parts, q.target.before_db


def test_the_cli_reports_the_groups_and_the_binary_records_them(tmp_path, capsys):
    import onnx

    from compiler.cli import main as tessera
    from runtime.binary import read_binary

    model, calibration, _ = _model("conv")
    onnx.save(model, tmp_path / "head.onnx")
    folder = tmp_path / "calibration"
    folder.mkdir()
    for i, x in enumerate(calibration):
        np.save(folder / f"{i}.npy", x)
    common = [str(tmp_path / "head.onnx"), "--calibration", str(folder), "--count", "16"]
    assert tessera(["compile", *common, "-o", str(tmp_path / "head.bin")]) == 0
    assert "head grids: head in 2 channel groups" in capsys.readouterr().out
    assert read_binary(tmp_path / "head.bin").metadata["head_grids"]["split"]["head"]
    assert tessera(["compile", *common, "--no-head-grids", "-o", str(tmp_path / "one.bin")]) == 0
    assert "head grids" not in capsys.readouterr().out
    assert "head_grids" not in read_binary(tmp_path / "one.bin").metadata


def _graph(nodes, inits, output_shape):
    graph = helper.make_graph(nodes, "parts", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)],
                              [numpy_helper.from_array(np.asarray(v, np.int64 if np.asarray(v).dtype.kind == "i"
                                                                  else np.float32), k) for k, v in inits.items()])
    return import_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def _head(rows: int, name: str, rng) -> tuple[list, dict]:
    """A 1x1 Conv of ``rows`` channels, flattened to [1, rows, 16]."""
    return ([helper.make_node("Conv", ["x", f"w_{name}"], [f"c_{name}"]),
             helper.make_node("Reshape", [f"c_{name}", "flat"], [name])],
            {f"w_{name}": rng.normal(0, 1, (rows, 4, 1, 1))})


@pytest.mark.parametrize("layout", ["channels", "transposed", "nested"])
def test_the_parts_of_an_output_are_found_through_shape_and_pointwise_ops(layout):
    """[1, 4+C(+M), N] = Concat(boxes, Sigmoid(scores)(, coefficients)) is
    measured part by part wherever it runs: along axis 1, along the last
    axis after a Transpose to [1, N, 4+C] (with a Mul by a constant on the
    way), and with a Concat of the same axis among the inputs opened."""
    from passes.quant.head_grids import output_parts, part_label

    rng = np.random.default_rng(0)
    nodes, inits = [], {"flat": np.array([1, -1, 16])}
    for rows, name in ((4, "boxes"), (3, "logits"), (2, "masks")):
        more, weights = _head(rows, name, rng)
        nodes, inits = nodes + more, {**inits, **weights}
    nodes.append(helper.make_node("Sigmoid", ["logits"], ["scores"]))
    if layout == "nested":
        nodes += [helper.make_node("Concat", ["boxes", "scores"], ["det"], axis=1),
                  helper.make_node("Concat", ["det", "masks"], ["y"], axis=1)]
        expected, axis, shape = ["y[0:4]", "y[4:7]", "y[7:9]"], 1, [1, 9, 16]
    else:
        nodes.append(helper.make_node("Concat", ["boxes", "scores"], ["joined" if layout == "transposed" else "y"],
                                      axis=1))
        expected, axis, shape = ["y[0:4]", "y[4:7]"], 1, [1, 7, 16]
    if layout == "transposed":
        inits["half"] = np.array(0.5)
        nodes += [helper.make_node("Transpose", ["joined"], ["t"], perm=[0, 2, 1]),
                  helper.make_node("Mul", ["t", "half"], ["y"])]
        expected, axis, shape = ["y[:,:,0:4]", "y[:,:,4:7]"], 2, [1, 16, 7]
    graph = _graph(nodes, inits, shape)
    parts = output_parts(graph)["y"]
    assert parts.axis == axis and [part_label("y", c, axis) for c in parts] == expected
    assert [v.producer.op for v in parts.sources][:2] == ["Reshape", "Sigmoid"]


def test_positions_a_reshape_merged_are_not_parts():
    """YOLOv5's and SSD's outputs concatenate the anchors of each scale
    ([1, 3HW, 85] pieces made by Reshape): positions, one quantity."""
    from passes.quant.head_grids import output_parts

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"]), helper.make_node("Conv", ["x", "w2"], ["b"]),
             helper.make_node("Transpose", ["a"], ["at"], perm=[0, 2, 3, 1]),
             helper.make_node("Transpose", ["b"], ["bt"], perm=[0, 2, 3, 1]),
             helper.make_node("Reshape", ["at", "rows"], ["ar"]), helper.make_node("Reshape", ["bt", "rows"], ["br"]),
             helper.make_node("Concat", ["ar", "br"], ["y"], axis=1)]
    inits = {"w1": rng.normal(0, 1, (6, 4, 1, 1)), "w2": rng.normal(0, 1, (6, 4, 1, 1)), "rows": np.array([1, -1, 6])}
    assert output_parts(_graph(nodes, inits, [1, 32, 6])) == {}
