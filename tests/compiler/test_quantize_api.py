"""compiler.quantize (the user's quantize call), the layer-wise comparison,
encodings round trips through a model, sensitivity analysis, and
``tessera quantize``."""
import json
import warnings

import numpy as np
import onnx
import pytest

from compiler.cli import main
from compiler.compare import ErrorStats
from compiler.quantize import QuantizationWarning, quantize_model
from compiler.zoo import resnet
from passes.quant.calibration_data import CalibrationWarning
from passes.quant.encodings import import_encodings
from passes.quant.metrics import cosine_similarity, snr_db

IMAGE = 64


@pytest.fixture(scope="module")
def model():
    return resnet(10, image=IMAGE, width=16, classes=10)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    # smooth images (a low-resolution pattern upsampled), like photos rather than white noise
    small = rng.standard_normal((24, 1, 3, IMAGE // 8, IMAGE // 8)).astype(np.float32)
    images = small.repeat(8, axis=3).repeat(8, axis=4)
    return [x for x in images[:16]], [x for x in images[16:]]


@pytest.fixture(scope="module")
def quantized(model, data):
    return quantize_model(model, calibration_data=data[0])


def outputs(run, images, name="probabilities"):
    return np.concatenate([run({"image": x})[name] for x in images])


def test_the_quantized_model_is_close_to_float_and_really_integer(quantized, data):
    ops = {n.op for n in quantized.quantized_nodes()}
    assert {"QConv", "QAvgPool", "QuantizeLinear"} <= ops
    convs = [n for n in quantized.quantized_nodes() if n.op == "QConv"]
    assert len(convs) == 12 and all(n.outputs[0].quant.dtype == np.int8 for n in convs)
    assert quantized.float_layers() == ["gemm_103", "probabilities"]  # Gemm without hwlinear, Softmax
    ref, got = outputs(quantized.run_float, data[1]), outputs(quantized.run, data[1])
    assert snr_db(ref, got) > 25
    assert not np.array_equal(ref, got)


def test_layer_report_maps_every_integer_node_to_onnx_nodes(quantized, model, data):
    report = quantized.compare([{"image": x} for x in data[1]])
    onnx_names = {n.name for n in model.graph.node}
    computing = [e for e in report.layers if e.op != "QuantizeLinear"]
    assert len(report.layers) == len(quantized.activation_grids()) == 16
    for error in computing:
        assert error.onnx_nodes and set(error.onnx_nodes) <= onnx_names
    residual = next(e for e in report.layers if any(n.startswith("add_") for n in e.onnx_nodes))
    assert residual.op == "QConv" and len(residual.onnx_nodes) == 3  # conv + residual add + relu
    first = report.layers[1]
    # the first conv reads the quantized image both ways: isolated = propagated
    assert first.isolated.snr_db == pytest.approx(first.propagated.snr_db, abs=1e-9)
    # error accumulates: the last conv's propagated error is larger than its own
    last = [e for e in report.layers if e.op == "QConv"][-1]
    assert last.propagated.snr_db < last.isolated.snr_db
    assert report.samples == len(data[1])
    (out,) = report.outputs.values()
    assert out.snr_db == pytest.approx(snr_db(outputs(quantized.run_float, data[1]),
                                              outputs(quantized.run, data[1])), abs=1e-6)
    table = report.table()
    assert "SNR prop dB" in table and "conv_2,relu_8" in table and "output probabilities" in table


def test_error_stats_stream_like_the_whole_tensor_metrics():
    rng = np.random.default_rng(0)
    ref, test = rng.standard_normal((3, 50)), rng.standard_normal((3, 50))
    stats = ErrorStats()
    for r, t in zip(ref, test):
        stats.update(r, t)
    assert stats.snr_db == pytest.approx(snr_db(ref, test))
    assert stats.cosine == pytest.approx(cosine_similarity(ref, test))
    assert stats.max_abs == pytest.approx(np.abs(ref - test).max())
    assert stats.rmse == pytest.approx(np.sqrt(np.mean((ref - test) ** 2)))


@pytest.mark.parametrize("version", ["0.6.1", "1.0.0"])
def test_exported_encodings_reimport_to_the_same_model(quantized, model, data, tmp_path, version, monkeypatch):
    path = tmp_path / "model.encodings"
    quantized.export_encodings(path, version=version)
    encodings = import_encodings(path)
    assert set(encodings.params) == set(quantized.activation_grids()) | set(quantized.weight_grids())
    assert {"gemm_103", "probabilities"} <= set(encodings.float_tensors)

    def no_calibration(*args, **kwargs):
        raise AssertionError("calibration ran although every tensor was given")

    monkeypatch.setattr("passes.quant.quantize._calibrate", no_calibration)
    again = quantize_model(model, encodings=path)
    for name, grid in quantized.activation_grids().items():
        theirs = again.activation_grids()[name]
        assert theirs.dtype == grid.dtype and np.array_equal(theirs.zero, grid.zero)
        assert np.array_equal(np.float32(theirs.scale), np.float32(grid.scale))
    for name, grid in quantized.weight_grids().items():
        assert np.array_equal(np.float32(again.weight_grids()[name].scale), np.float32(grid.scale))
    assert np.array_equal(outputs(quantized.run, data[1]), outputs(again.run, data[1]))


def test_an_empty_encodings_file_runs_in_float(model, data, tmp_path):
    path = tmp_path / "empty.json"
    path.write_text(json.dumps({"version": "0.6.1", "activation_encodings": {}, "param_encodings": {}}))
    q = quantize_model(model, encodings=path)
    assert q.quantized_nodes() == []
    np.testing.assert_allclose(outputs(q.run, data[1]), outputs(q.run_float, data[1]), rtol=1e-5, atol=1e-6)


def test_float_tensors_of_an_encodings_file_keep_their_layers_in_float(quantized, model, data, tmp_path):
    document = quantized.export_encodings()
    document["activation_encodings"]["relu_8"] = [{"bitwidth": 16, "dtype": "float"}]
    path = tmp_path / "partly_float.json"
    path.write_text(json.dumps(document))
    # relu_8 runs in float; conv_2 (before it) stays on the accelerator: its output, now stored, and
    # relu_8's output, now entering the next accelerator segment, have no encoding: they are calibrated,
    # and the user is told
    with pytest.warns(CalibrationWarning, match=r"calibrated: \['conv_2', 'relu_8'\]"):
        q = quantize_model(model, encodings=path, calibration_data=data[0])
    assert "relu_8" in q.float_layers() and "conv_2" not in q.float_layers()
    assert "conv_2" in q.activation_grids()
    assert q.activation_grids()["relu_17"] == quantized.activation_grids()["relu_17"]


def test_unknown_encodings_tensors_are_reported(quantized, model, tmp_path):
    document = quantized.export_encodings()
    document["activation_encodings"]["not_a_tensor"] = document["activation_encodings"]["relu_8"]
    path = tmp_path / "extra.json"
    path.write_text(json.dumps(document))
    with pytest.warns(QuantizationWarning, match="not_a_tensor"):
        quantize_model(model, encodings=path)


def test_sensitivity_moves_the_worst_layers_to_16_bits(model, data):
    with warnings.catch_warnings():
        warnings.simplefilter("error", QuantizationWarning)
        q = quantize_model(model, calibration_data=data[0], sensitivity=2, sensitivity_samples=4)
    assert len(q.promoted) == 2
    first = quantize_model(model, calibration_data=data[0])
    report = first.compare([{"image": x} for x in data[0][:4]])
    worst = {e.onnx_nodes[0] for e in report.worst(2)}
    assert set(q.promoted) == worst
    wide = [n for n in q.quantized_nodes() if n.outputs[0].quant.dtype == np.int16]
    assert {n.annotations["source"][0] for n in wide} == worst
    assert snr_db(outputs(q.run_float, data[1]), outputs(q.run, data[1])) >= \
        snr_db(outputs(first.run_float, data[1]), outputs(first.run, data[1])) - 0.5


def test_cli_quantize_prints_the_report_and_writes_encodings(model, tmp_path, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    folder = tmp_path / "calibration"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        np.save(folder / f"{i}.npy", rng.standard_normal((1, 3, IMAGE, IMAGE)).astype(np.float32))
    encodings = tmp_path / "out.encodings"
    assert main(["quantize", str(path), "--calibration", str(folder), "--precision", "conv_11=int16",
                 "--float-layer", "conv_36", "--export-encodings", str(encodings), "--samples", "2"]) == 0
    out = capsys.readouterr().out
    assert "integer nodes on the accelerator" in out and "SNR iso dB" in out
    line = next(row for row in out.splitlines() if "conv_11,relu_17" in row)
    assert " int16 " in line
    assert "conv_36" not in "".join(row for row in out.splitlines() if " QConv " in row)
    assert "output probabilities: SNR" in out
    assert "relu_17" in import_encodings(encodings).params
    with pytest.warns(CalibrationWarning, match="synthetic"):  # no --calibration: the comparison says so
        assert main(["quantize", str(path), "--encodings", str(encodings), "--samples", "1", "--no-layers"]) == 0
    assert "SNR iso dB" not in capsys.readouterr().out


def test_cli_quantize_errors_name_the_problem(model, tmp_path, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    assert main(["quantize", str(path), "--precision", "conv_11"]) == 1
    assert "NAME=VALUE" in capsys.readouterr().err
    assert main(["quantize", str(path), "--precision", "conv_11=int4", "--samples", "1"]) == 1
    err = capsys.readouterr().err
    assert "conv_11" in err and "int4" in err
    assert main(["quantize", str(path), "--calibration", str(tmp_path / "missing")]) == 1
    assert "missing" in capsys.readouterr().err


def test_given_weight_grids_are_used_exactly(quantized, model, tmp_path):
    document = quantized.export_encodings()
    name = "conv_11_weight"  # the conv's weights with its BatchNorm folded in
    for entry in document["param_encodings"][name]:
        for key in ("scale", "min", "max"):
            entry[key] *= 2  # coarser than Tessera would choose: codes only reach about ±64
    path = tmp_path / "coarse.json"
    path.write_text(json.dumps(document))
    again = quantize_model(model, encodings=path)
    given = import_encodings(path).params[name]
    assert np.array_equal(np.float32(again.weight_grids()[name].scale), np.float32(given.scale))
    codes = next(n for n in again.quantized_nodes() if n.annotations.get("weight") == name).inputs[1].const
    assert np.abs(codes).max() <= 64


def test_cli_rejects_layer_names_the_model_does_not_have(model, tmp_path, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    assert main(["quantize", str(path), "--float-layer", "conv_1", "--samples", "1"]) == 1
    err = capsys.readouterr().err
    assert "conv_1" in err and "no node" in err
