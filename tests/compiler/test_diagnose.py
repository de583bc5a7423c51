"""The quantization diagnosis (compiler/diagnose.py): each layer's share of
the output error, and the causes it names, on small graphs built to show
each cause."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.cli import main as tessera
from compiler.quantize import quantize_model

SHAPE = [1, 3, 12, 12]


def _model(nodes, initializers, output_shape):
    graph = helper.make_graph(nodes, "diagnose", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)],
                              [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _spread_and_concat():
    """conv1's channel 0 forty times the others; a Concat of its output with
    x / 100 (two ranges far apart on one grid); conv2 reads the Concat."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.3, (8, 3, 3, 3))
    w1[0] *= 40
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Mul", ["x", "k"], ["xs"], name="shrink"),
             helper.make_node("Concat", ["r1", "xs"], ["cat"], axis=1, name="concat"),
             helper.make_node("Conv", ["cat", "w2"], ["y"], pads=[1, 1, 1, 1], name="conv2")]
    return _model(nodes, {"w1": w1, "w2": rng.normal(0, 0.3, (4, 11, 3, 3)), "k": 0.01}, [1, 4, 12, 12])


def _inputs(count, seed, gain=1.0):
    rng = np.random.default_rng(seed)
    return [rng.random(SHAPE, np.float32) * np.float32(gain) for _ in range(count)]


@pytest.fixture(scope="module")
def spread():
    model = _spread_and_concat()
    return model, quantize_model(model, calibration_data=_inputs(16, 1))


def test_shares_rank_the_layers_and_name_channel_spread_and_mixed_inputs(spread, tmp_path):
    _, q = spread
    diagnosis = q.diagnose(_inputs(4, 2))
    shares = [d.share for d in diagnosis.layers]
    assert shares == sorted(shares, reverse=True) and math.isclose(sum(shares), 1.0)
    by_node = {d.onnx_nodes: d for d in diagnosis.layers}
    conv1, concat = by_node[("conv1", "relu1")], by_node[("concat",)]
    assert conv1.channel_spread > 8 and any(c.startswith("channel spread") for c in conv1.causes)
    assert concat.input_ratio > 100 and any(c.startswith("mixed inputs") for c in concat.causes)
    assert not by_node[("conv2",)].causes
    text = diagnosis.table()
    assert text.splitlines()[1].split()[:3] == ["layer", "op", "share"] and "channel spread" in text
    diagnosis.write(tmp_path / "report.csv")
    diagnosis.write(tmp_path / "report.json")
    rows = list(csv.DictReader(open(tmp_path / "report.csv")))
    assert [r["onnx_nodes"] for r in rows] == [",".join(d.onnx_nodes) for d in diagnosis.layers]
    document = json.loads((tmp_path / "report.json").read_text())
    assert document["samples"] == 4 and len(document["layers"]) == len(rows)
    assert document["layers"][0]["share"] == pytest.approx(diagnosis.layers[0].share)


def test_the_largest_share_is_where_sixteen_bits_buy_the_most():
    """A chain of three convolutions, the middle one's channels spread:
    moving the layer of the largest share to 16 bits raises the output SNR
    more than moving the layer of the smallest share."""
    rng = np.random.default_rng(4)
    w2 = rng.normal(0, 0.3, (8, 8, 3, 3))
    w2[:2] *= 30
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Conv", ["c1", "w2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
             helper.make_node("Conv", ["c2", "w3"], ["y"], pads=[1, 1, 1, 1], name="conv3")]
    model = _model(nodes, {"w1": rng.normal(0, 0.3, (8, 3, 3, 3)), "w2": w2, "w3": rng.normal(0, 0.3, (4, 8, 3, 3))},
                   [1, 4, 12, 12])
    samples = [{"x": x} for x in _inputs(4, 2)]
    ranked = quantize_model(model, calibration_data=_inputs(16, 1)).diagnose(samples).layers
    assert ranked[0].onnx_nodes == ("conv2",), [(d.onnx_nodes, d.share) for d in ranked]
    gains = []
    for layer in (ranked[0], ranked[-1]):
        better = quantize_model(model, calibration_data=_inputs(16, 1),
                                layer_precision={layer.onnx_nodes[0]: "int16"})
        gains.append(better.compare(samples).outputs["y"].snr_db)
    assert gains[0] > gains[1] + 1.0, (ranked[0].onnx_nodes, ranked[-1].onnx_nodes, gains)


def test_saturation_on_inputs_wider_than_calibration(spread):
    _, q = spread
    clipped = []
    for gain in (1.0, 4.0):
        conv1 = next(d for d in q.diagnose(_inputs(2, 3, gain)).layers if d.onnx_nodes == ("conv1", "relu1"))
        clipped.append(conv1.clipped)
    assert clipped[1] > 5 * clipped[0] and clipped[1] > 0.005
    assert any(c.startswith("saturation") for c in conv1.causes)


def test_a_lookup_table_over_too_wide_a_range():
    """Sigmoid(60 x) with x in [0, 1]: nearly every input code gives 1."""
    nodes = [helper.make_node("Mul", ["x", "k"], ["s"], name="steep"),
             helper.make_node("Sigmoid", ["s"], ["y"], name="sigmoid")]
    q = quantize_model(_model(nodes, {"k": 60.0}, SHAPE), calibration_data=_inputs(8, 1))
    lut = next(d for d in q.diagnose(_inputs(2, 2)).layers if d.op == "QLut")
    assert 0 < lut.lut_levels < 48 and any(c.startswith("lookup table") for c in lut.causes)


def test_the_command_line_report(spread, tmp_path, capsys):
    import onnx

    model, _ = spread
    onnx.save(model, tmp_path / "m.onnx")
    folder = tmp_path / "calibration"
    folder.mkdir()
    for i, x in enumerate(_inputs(8, 1)):
        np.save(folder / f"{i}.npy", x)
    assert tessera(["quantize", str(tmp_path / "m.onnx"), "--calibration", str(folder), "--count", "8",
                    "--samples", "2", "--no-layers", "--report", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "outputs (every layer quantized, 2 samples)" in out and "share %" in out and "channel spread" in out
    assert json.loads((tmp_path / "r.json").read_text())["layers"]


def test_a_layout_op_on_codes_is_not_counted_twice():
    """Flatten moves its input's codes unchanged: the diagnosis lists the
    convolution before it, not the Flatten with the same share again."""
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["y"], name="flatten")]
    model = _model(nodes, {"w": rng.normal(0, 0.3, (4, 3, 3, 3))}, [1, 4 * 12 * 12])
    diagnosis = quantize_model(model, calibration_data=_inputs(8, 1)).diagnose(_inputs(2, 2))
    assert [d.onnx_nodes for d in diagnosis.layers] == [("conv", "relu")]
    assert diagnosis.layers[0].share == pytest.approx(1.0)
