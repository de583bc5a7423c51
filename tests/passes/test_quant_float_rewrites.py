"""The float rewrites before quantization as passes (passes/quant/equalize.py:
equalize and absorb_bias; passes/quant/head_grids.py: head_grids), each run
alone under a PassContext on a small hand-built graph: the graph each
produces, what it records in the QuantReport, and the float outputs it keeps."""
from __future__ import annotations

import numpy as np
import pytest

from codegen.cpu import lower_to_program, lower_with_names
from compiler.frontend import import_onnx
from ir.graph import Graph
from passes.affinity import HOST_ONLY
from passes.infra import PassContext, PassError
from passes.quant.equalize import absorb_bias, equalize
from passes.quant.head_grids import SPLIT_JOIN, head_grids
from passes.quant.report import QuantReport
from passes.rewrite import const_input
from runtime.executor import Executor
from tests.helpers.quant import SHAPE, conv, inputs, make_model, node


def _pair_model(bias: float = 0.0):
    """conv a (4 channels, 3x3; channel 0's weights 20x the others') -> Relu
    -> conv b (1x1, 2 channels, no padding) -> y."""
    rng = np.random.default_rng(3)
    wa = rng.uniform(0.05, 0.2, (4, 3, 3, 3)).astype(np.float32)
    wa[0] *= 20
    weights = {"wa": wa, "ba": np.full(4, bias, np.float32),
               "wb": rng.normal(0, 0.5, (2, 4, 1, 1)).astype(np.float32), "bb": np.zeros(2, np.float32)}
    nodes = [conv("x", "a", "wa", "ba", name="conv_a"), node("Relu", ["a"], "r", name="relu"),
             conv("r", "y", "wb", "bb", k=1, name="conv_b")]
    return import_onnx(make_model(nodes, {"x": SHAPE}, {"y": [1, 2, 8, 8]}, weights))


def _head_model():
    """conv head (5 output channels: 0 and 3 carry values 200x the others') -> y, a model output."""
    rng = np.random.default_rng(4)
    w = rng.normal(0, 0.1, (5, 3, 3, 3)).astype(np.float32)
    w[[0, 3]] *= 200
    nodes = [conv("x", "y", "w", name="head")]
    return import_onnx(make_model(nodes, {"x": SHAPE}, {"y": [1, 5, 8, 8]}, {"w": w}))


def _run(graph: Graph, x: np.ndarray) -> np.ndarray:
    return Executor(lower_to_program(graph)).run({"x": x})["y"]


def _weights(graph: Graph, name: str) -> tuple[np.ndarray, np.ndarray]:
    conv_node = next(n for n in graph.nodes if n.name == name)
    return const_input(conv_node, 1), const_input(conv_node, 2)


def _apply(rewrite, graph: Graph, **options) -> QuantReport:
    report = QuantReport()
    with PassContext(options={**options, "quant.report": report}, lower=lower_with_names):
        assert rewrite(graph) is graph
    return report


def test_equalize_rescales_the_pair_to_one_relative_range_and_keeps_the_outputs():
    graph = _pair_model()
    x = inputs(1, 0)[0]
    before, (wa, _), (wb, _) = _run(graph, x), _weights(graph, "conv_a"), _weights(graph, "conv_b")
    report = _apply(equalize, graph, **{"quant.equalize": True})  # no data: scales from the weights
    (wa2, _), (wb2, _) = _weights(graph, "conv_a"), _weights(graph, "conv_b")
    a = np.abs(wa2).reshape(4, -1).max(axis=1)
    b = np.abs(wb2).max(axis=(0, 2, 3))
    assert report.equalized == 1
    assert np.allclose(a / b, (a / b)[0], rtol=1e-5)  # every channel now has the same relative range
    assert np.allclose(a * b, np.abs(wa).reshape(4, -1).max(axis=1) * np.abs(wb).max(axis=(0, 2, 3)), rtol=1e-5)
    assert np.allclose(_run(graph, x), before, rtol=1e-4, atol=1e-5)


def test_the_rewrites_leave_the_graph_alone_when_off():
    graph = _pair_model(bias=3.0)
    constants = {n.name: tuple(id(v) for v in n.inputs) for n in graph.nodes}
    report = _apply(equalize, graph, **{"quant.calibration_data": inputs(4, 1)})
    report2 = _apply(absorb_bias, graph, **{"quant.calibration_data": inputs(4, 1)})
    assert {n.name: tuple(id(v) for v in n.inputs) for n in graph.nodes} == constants
    assert report.equalized is None and report2.absorbed is None


def test_absorb_bias_moves_the_positive_floor_into_the_next_bias():
    graph = _pair_model(bias=3.0)
    data = [np.abs(x) for x in inputs(8, 1)]  # positive inputs and weights: a's outputs stay above its bias
    before = [_run(graph, x) for x in data]
    (_, ba), (_, bb) = _weights(graph, "conv_a"), _weights(graph, "conv_b")
    report = _apply(absorb_bias, graph, **{"quant.absorb_bias": True, "quant.calibration_data": data})
    (_, ba2), (_, bb2) = _weights(graph, "conv_a"), _weights(graph, "conv_b")
    assert report.absorbed == 1
    assert np.all(ba2 <= ba) and np.sum(ba2 < ba) == 3  # channel 0's spread is too wide to take a floor from
    assert not np.allclose(bb2, bb)
    for x, y in zip(data, before):
        assert np.allclose(_run(graph, x), y, rtol=1e-4, atol=1e-4)


def test_absorb_bias_needs_data():
    graph = _pair_model(bias=3.0)
    report = _apply(absorb_bias, graph, **{"quant.absorb_bias": True})
    assert report.absorbed == 0


def test_head_grids_split_a_head_into_channel_groups_joined_on_the_host():
    graph = _head_model()
    data = inputs(8, 2)
    before = [_run(graph, x) for x in data]
    report = _apply(head_grids, graph, **{"quant.calibration_data": data})
    names = [n.name for n in graph.nodes]
    assert names[:2] == ["head::Conv#0", "head::Conv#1"] and "head" not in names
    join = next(n for n in graph.nodes if n.op == "Concat")
    assert join.annotations[SPLIT_JOIN] and HOST_ONLY in join.annotations
    assert graph.outputs[0].name == "y"
    assert sorted(map(sorted, report.head_grids.split["head"])) == [[0, 3], [1, 2, 4]]
    assert report.head_grids.joined == []
    assert HOST_ONLY in graph.outputs[0].producer.annotations  # the Gather putting the channels back in order
    for x, y in zip(data, before):
        assert np.allclose(_run(graph, x), y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("options", [{"quant.head_grids": False}, {"quant.mode": "radix8"}, {"no data": None}])
def test_head_grids_stay_off_without_data_in_radix_modes_or_when_asked(options):
    graph = _head_model()
    data = None if "no data" in options else inputs(8, 2)
    report = _apply(head_grids, graph, **{k: v for k, v in options.items() if k != "no data"},
                    **{"quant.calibration_data": data})
    assert [n.name for n in graph.nodes] == ["head"] and report.head_grids is None


def test_a_rewrite_that_must_run_the_graph_says_it_needs_a_lowering():
    graph = _head_model()
    with PassContext(options={"quant.calibration_data": inputs(8, 2)}):
        with pytest.raises(PassError, match="head grids runs the graph"):
            head_grids(graph)


def test_channel_statistics_read_an_image_folder_as_calibration_does(tmp_path):
    """Equalization and head grids measure on the inputs calibration sees:
    an image folder read with the context's pre-processing record."""
    from PIL import Image

    from passes.quant.calibration_data import calibration_batches
    from passes.quant.channel_stats import statistics_feeds
    from runtime.preprocess import PreprocessSpec

    rng = np.random.default_rng(5)
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, (11, 13, 3), np.uint8)).save(tmp_path / f"{index}.png")
    graph = _pair_model()
    spec = PreprocessSpec(channel_order="BGR", mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    specs = {v.name: (v.type.shape, v.type.dtype) for v in graph.inputs}
    with PassContext(options={"quant.preprocess": spec, "quant.calibration_data": str(tmp_path)}) as ctx:
        measured = statistics_feeds(graph, ctx)
    calibrated = list(calibration_batches(str(tmp_path), specs, preprocess=spec))
    plain = list(calibration_batches(str(tmp_path), specs))
    assert len(measured) == len(calibrated) == 3
    for got, want, other in zip(measured, calibrated, plain):
        np.testing.assert_array_equal(got["x"], want["x"])
        assert not np.array_equal(got["x"], other["x"])
