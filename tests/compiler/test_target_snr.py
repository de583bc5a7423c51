"""quantize_model(target_snr=...) and tessera compile --target-snr
(compiler/target_snr.py): layers move to 16 bits by their share of the
output error until the target holds, within the 16-bit MAC budget."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.cli import main as tessera
from compiler.compare import ErrorStats
from compiler.quantize import QuantizationWarning, quantize_model

SHAPE = [1, 3, 12, 12]


@pytest.fixture(scope="module")
def chain():
    """Three convolutions, the middle one's first two channels 30x the rest."""
    rng = np.random.default_rng(4)
    w2 = rng.normal(0, 0.3, (8, 8, 3, 3))
    w2[:2] *= 30
    weights = {"w1": rng.normal(0, 0.3, (8, 3, 3, 3)), "w2": w2, "w3": rng.normal(0, 0.3, (4, 8, 3, 3))}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Conv", ["c1", "w2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
             helper.make_node("Conv", ["c2", "w3"], ["y"], pads=[1, 1, 1, 1], name="conv3")]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 12, 12])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    calibration = [rng.random(SHAPE, np.float32) for _ in range(12)]
    return model, calibration


def _snr(q, feeds) -> float:
    stats = ErrorStats()
    for x in feeds:
        stats.update(q.run_float({"x": x})["y"], q.run({"x": x})["y"])
    return stats.snr_db


def test_a_target_already_met_changes_nothing(chain):
    model, calibration = chain
    plain = _snr(quantize_model(model, calibration_data=calibration), calibration[:8])
    q = quantize_model(model, calibration_data=calibration, target_snr=plain - 3)
    assert q.target.reached and q.target.promoted == [] and q.promoted == []
    assert q.target.before_db["y"] == pytest.approx(plain)


def test_the_target_is_reached_by_the_largest_shares_first(chain):
    model, calibration = chain
    plain = _snr(quantize_model(model, calibration_data=calibration), calibration[:8])
    q = quantize_model(model, calibration_data=calibration, target_snr=plain + 2, target_budget=1.0)
    report = q.target
    assert report.reached and report.promoted[0] == "conv2", report.summary()
    assert _snr(q, calibration[:8]) >= plain + 2
    assert 0 < report.macs_16bit <= 1 and report.hwtime_ms[1] > report.hwtime_ms[0]
    assert {n.annotations["source"][0] for n in q.quantized_nodes()
            if n.outputs[0].quant.dtype.name == "int16"} >= set(report.promoted)
    assert "reached" in report.summary() and "moved to 16 bits: conv2" in report.summary()


def test_with_enough_inputs_the_target_is_measured_on_held_out_ones(chain):
    """With 24 calibration inputs the last 8 are held out of the grids' fit
    while the target is measured; the result's grids are then fit to all 24
    (the same as a plain quantization with the chosen layers in 16 bits)."""
    model, calibration = chain
    rng = np.random.default_rng(5)
    inputs = calibration + [rng.random(SHAPE, np.float32) for _ in range(12)]
    fit = quantize_model(model, calibration_data=inputs[:16])
    plain = quantize_model(model, calibration_data=inputs)
    target = _snr(fit, inputs[16:]) + 2
    q = quantize_model(model, calibration_data=inputs, target_snr=target, target_budget=1.0)
    report = q.target
    assert report.held_out and "held out" in report.summary() and report.to_metadata()["held_out"]
    assert report.before_db["y"] == pytest.approx(_snr(fit, inputs[16:]))
    assert report.before_db["y"] != pytest.approx(_snr(plain, inputs[16:]))
    assert report.reached and report.promoted, report.summary()
    again = quantize_model(model, calibration_data=inputs, layer_precision={n: "int16" for n in report.promoted})
    assert q.activation_grids() == again.activation_grids()
    few = quantize_model(model, calibration_data=inputs[:20], target_snr=target, target_budget=1.0).target
    assert not few.held_out  # 12 left to fit are too few: measured on the first 8 the grids were fit to
    assert few.before_db["y"] == pytest.approx(_snr(quantize_model(model, calibration_data=inputs[:20]), inputs[:8]))


def test_a_target_met_by_less_than_its_measurement_error_buys_a_margin(chain):
    """An SNR half a standard error over the target is reached, but not
    surely on new inputs: layers move until it clears the target by a
    standard error, and with no budget the report names what a margin needs
    (no warning: the target is reached)."""
    model, calibration = chain
    probe = quantize_model(model, calibration_data=calibration, target_snr=-100).target
    snr, spread = probe.after_db["y"], probe.spread_db["y"]
    assert probe.reached and probe.secure and not probe.promoted and 0 < spread < 1, probe.summary()
    target = snr - spread / 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tight = quantize_model(model, calibration_data=calibration, target_snr=target, target_budget=0.0).target
    assert tight.reached and not tight.secure and not tight.promoted and "conv2" in tight.needed
    assert "by less than the standard error" in tight.summary() and "conv2" in tight.summary()
    assert not any(issubclass(w.category, QuantizationWarning) for w in caught)
    q = quantize_model(model, calibration_data=calibration, target_snr=target, target_budget=1.0)
    report = q.target
    assert report.promoted and report.secure and report.to_metadata()["secure"], report.summary()
    assert report.after_db["y"] - report.spread_db["y"] >= target
    assert f"± {report.spread_db['y']:.1f} dB" in report.summary()


def test_a_budget_too_small_says_so_and_names_the_layers(chain):
    model, calibration = chain
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        q = quantize_model(model, calibration_data=calibration, target_snr=60, target_budget=0.1)
    assert not q.target.reached and "conv2" in q.target.needed
    assert any(issubclass(w.category, QuantizationWarning) and "cannot be reached" in str(w.message)
               and "conv2" in str(w.message) for w in caught)
    with pytest.raises(Exception, match="budget"):
        quantize_model(model, calibration_data=calibration, target_snr=30, target_budget=2)


def test_tessera_compile_target_snr(chain, tmp_path, capsys):
    from runtime import FWDNXT
    from runtime.binary import read_binary

    model, calibration = chain
    onnx.save(model, tmp_path / "chain.onnx")
    folder = tmp_path / "calibration"
    folder.mkdir()
    for i, x in enumerate(calibration):
        np.save(folder / f"{i}.npy", x)
    assert tessera(["compile", str(tmp_path / "chain.onnx"), "--calibration", str(folder), "--count", "12",
                    "--target-snr", "45", "--target-budget", "1", "-o", str(tmp_path / "chain.bin")]) == 0
    out = capsys.readouterr().out
    assert "target SNR 45 dB:" in out and "moved to 16 bits:" in out and "estimated hwtime" in out
    record = read_binary(tmp_path / "chain.bin").metadata["target_snr"]
    assert record["target_db"] == 45 and record["promoted"]
    ie = FWDNXT()
    ie.Init(str(tmp_path / "chain.bin"), "")
    result = np.empty(4 * 12 * 12, np.float32)
    ie.Run_sw(calibration[0], result)
    assert np.isfinite(result).all()
    ie.Free()


def test_the_decisions_survive_the_encodings_round_trip_and_the_simulator_agrees(chain, tmp_path):
    """The 16-bit layers a target chose come back from the exported
    encodings (bit-exact outputs), and the compiled binary's simulator gives
    the integer reference's outputs bit for bit."""
    from compiler.compile import compile_model
    from runtime import FWDNXT

    model, calibration = chain
    q = quantize_model(model, calibration_data=calibration, target_snr=40, target_budget=1.0)
    assert q.target.promoted
    again = quantize_model(model, encodings=q.export_encodings())
    wide = [n.annotations.get("source") for n in again.quantized_nodes() if n.outputs[0].quant.dtype.name == "int16"]
    assert sorted(name for names in wide for name in names) == sorted(q.target.promoted)
    compile_model(model, samples=calibration, target_snr=40, target_budget=1.0, outfile=tmp_path / "t.bin")
    ie = FWDNXT()
    ie.Init(str(tmp_path / "t.bin"), "")
    result = np.empty(4 * 12 * 12, np.float32)
    for x in calibration[:3]:
        assert np.array_equal(q.run({"x": x})["y"], again.run({"x": x})["y"])
        ie.Run_sw(x, result)
        assert np.array_equal(result, q.run({"x": x})["y"].ravel())
    ie.Free()


def _tanh_chain():
    """Each convolution feeds a Tanh table, the last one's Tanh an inner
    function, not the output's (so no host epilogue frees it)."""
    rng = np.random.default_rng(6)
    weights = {"w1": rng.normal(0, 1.0, (8, 3, 3, 3)), "w2": rng.normal(0, 0.4, (8, 8, 3, 3)),
               "w3": rng.normal(0, 0.3, (4, 8, 1, 1))}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Tanh", ["c1"], ["t1"], name="tanh1"),
             helper.make_node("Conv", ["t1", "w2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
             helper.make_node("Tanh", ["c2"], ["t2"], name="tanh2"),
             helper.make_node("Conv", ["t2", "w3"], ["y"], name="conv3")]
    graph = helper.make_graph(nodes, "tables", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 12, 12])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model, [rng.random(SHAPE, np.float32) for _ in range(8)]


def test_layers_with_tables_move_to_16_bits_and_their_tables_read_16_bit_codes():
    """A convolution whose output a table reads is no longer held at 8 bits:
    the target moves it, its table then has 513 entries read by 16-bit codes
    (interpolated) and gives 16-bit codes, and the SNR rises."""
    model, calibration = _tanh_chain()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantize_model(model, calibration_data=calibration, target_snr=80, target_budget=1.0)
    report = q.target
    assert {"conv1", "conv2"} & set(report.promoted), report.summary()
    widened = [n for n in q.quantized_nodes() if len(n.attrs.get("table") or ()) == 513]
    assert widened and all(n.outputs[0].type.dtype == np.int16 for n in widened)
    assert min(report.after_db.values()) > min(report.before_db.values()) + 6, report.summary()


def test_a_target_stopped_by_the_budget_names_the_layers_and_macs_it_would_need():
    """With the default budget, the two large convolutions (26 % and 70 % of
    the MACs) cannot move: the report names the layers the rest of the gap
    needs, with their shares of the error and of the MACs, in the binary's
    record too."""
    from compiler.target_snr import TargetReport

    model, calibration = _tanh_chain()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantize_model(model, calibration_data=calibration, target_snr=80)
    report = q.target
    assert not report.reached and report.left, report.summary()
    assert {name for name, _, _ in report.left} <= {"conv1", "conv2", "conv3"}
    assert report.needed == [name for name, _, _ in report.left]
    assert all(0 < share <= 1 and 0 < work < 1 for _, share, work in report.left)
    assert any(work > report.budget for _, _, work in report.left)
    assert "of the accelerator's MACs more" in report.summary() and report.left[0][0] in report.summary()
    assert TargetReport.from_metadata(report.to_metadata()).left == report.left
