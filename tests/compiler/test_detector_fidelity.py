"""Int8 on trained detectors (compiler/zoo/digit_detector.py: a
MobileNet-style CenterNet whose heads are trained on canvases of
scikit-learn's digits; compiler/zoo/text_detector.py: a DB text detector
on rendered pages), evaluated on inputs held apart from the calibration
ones: every output's SNR, the detections' agreement with the float
model's (compiler/agreement.py, as the reports, the CLI and the Simulator
give it), target_snr=30 within the default budget, and the binary's
simulator bit for bit against the integer reference."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from compiler.compare import ErrorStats
from compiler.quantize import quantize_model

pytest.importorskip("PIL.Image")
pytest.importorskip("sklearn.datasets")

from compiler.agreement import agreement  # noqa: E402
from compiler.zoo.digit_detector import canvases, detect, digit_detector, head_outputs  # noqa: E402

OUTPUTS = ("hm", "wh", "reg")


@pytest.fixture(scope="module")
def detector():
    calibration, _ = canvases(32, seed=1)
    evaluation, truth = canvases(40, seed=2)
    return digit_detector(seed=0), calibration, evaluation, truth


def _measure(q, evaluation):
    stats = {k: ErrorStats() for k in OUTPUTS}
    matched = total = 0
    for x in evaluation:
        reference, result = head_outputs(q.run_float({"input": x})), head_outputs(q.run({"input": x}))
        for name in OUTPUTS:
            stats[name].update(reference[name], result[name])
        m, n = agreement(detect(reference), detect(result))
        matched, total = matched + m, total + n
    return {k: s.snr_db for k, s in stats.items()}, matched / max(total, 1), total


def test_the_float_detector_finds_digits(detector):
    model, calibration, evaluation, truth = detector
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantize_model(model, calibration_data=calibration)
    found = sum(agreement([b.__class__(0, b.x0, b.y0, b.x1, b.y1) for b in boxes],
                          detect(q.run_float({"input": x})))[0] for x, boxes in zip(evaluation, truth))
    assert found >= 0.4 * sum(map(len, truth))  # a one-class detector trained by least squares: about half


def test_int8_detections_agree_and_target_snr_30_holds_on_held_out_canvases(detector):
    model, calibration, evaluation, _ = detector
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = quantize_model(model, calibration_data=calibration)
        targeted = quantize_model(model, calibration_data=calibration, target_snr=30)
    snr, agreeing, total = _measure(plain, evaluation)
    assert total >= 40 and agreeing >= 0.95, (agreeing, snr)
    # the comparison's agreement, the CenterNet task named (its heatmap has no Sigmoid to be recognised by)
    assert not plain.compare([{"input": x} for x in evaluation[:1]]).agreement
    found = plain.compare([{"input": x} for x in evaluation], task="centernet").agreement["hm"]
    assert found.head.sizes and found.samples == 40 and found.reference >= 40, found.line()
    assert found.f1 >= 0.97 and found.recall >= 0.97 and found.precision >= 0.95, found.line()
    assert targeted.target.reached and targeted.target.macs_16bit <= 0.15, targeted.target.summary()
    snr, agreeing, _ = _measure(targeted, evaluation)
    assert min(snr.values()) >= 30.0 and agreeing >= 0.95, (snr, agreeing)


def test_head_grids_keep_each_quantity_of_a_one_output_head(detector):
    """The same trained heads as one convolution writing hm, wh and reg
    into one output (YOLO/PicoDet-style export): with head grids (the
    default) each quantity keeps the three-output detector's SNR within 1.5 dB; on one
    grid the heatmap and offsets lose 5 dB or more to the box sizes."""
    model, calibration, evaluation, _ = detector
    single = digit_detector(seed=0, layout="single")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        heads = quantize_model(model, calibration_data=calibration)
        grids = quantize_model(single, calibration_data=calibration)
        one = quantize_model(single, calibration_data=calibration, head_grids=False)
    assert grids.head_grids.split and len(grids.head_grids.split["/out/Conv"]) >= 2
    reference, (snr, agreeing, _), (flat, _, _) = _measure(heads, evaluation)[0], _measure(grids, evaluation), \
        _measure(one, evaluation)
    # hm shares reg's grid: 34.3 dB against the three-output detector's 35.5 (reg 29.2 and 29.2, wh 37.4 both)
    assert all(snr[k] >= reference[k] - 1.5 for k in OUTPUTS), (snr, reference)
    assert agreeing >= 0.95
    assert flat["hm"] < snr["hm"] - 5 and flat["reg"] < snr["reg"] - 5, (flat, snr)


def test_target_snr_30_holds_for_each_quantity_of_a_one_output_head(detector):
    """With the heads as one output (hm, wh and reg in its channels, split
    into groups by range), the target is met by every quantity, not by a
    group whose louder channel hides a quieter one (hm shares reg's grid)."""
    _, calibration, evaluation, _ = detector
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantize_model(digit_detector(seed=0, layout="single"), calibration_data=calibration, target_snr=30)
    assert q.target.reached and q.target.macs_16bit <= 0.15, q.target.summary()
    assert set(q.target.after_db) == {f"out[{c}]" for c in range(5)}, q.target.after_db
    snr, agreeing, _ = _measure(q, evaluation)
    assert min(snr.values()) >= 30.0 and agreeing >= 0.95, (snr, agreeing)


def test_the_simulator_runs_the_targeted_detector_bit_for_bit(detector, tmp_path):
    from compiler.compile import compile_model
    from runtime import FWDNXT

    model, calibration, evaluation, _ = detector
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantize_model(model, calibration_data=calibration, target_snr=30)
        compile_model(model, samples=calibration, target_snr=30, outfile=tmp_path / "det.bin")
    ie = FWDNXT()
    ie.Init(str(tmp_path / "det.bin"), "")
    results = tuple(np.empty(c * 144, np.float32) for c in (1, 2, 2))
    for x in evaluation[:2]:
        ie.Run_sw(x, results)
        expected = q.run({"input": x})
        for name, got in zip(OUTPUTS, results):
            assert np.array_equal(got, expected[name].ravel()), name
    ie.Free()


@pytest.mark.parametrize("channel_grids", [True, False])
def test_calibrator_auto_chooses_per_tensor_by_the_output_error(detector, channel_grids):
    """Each stored tensor's range method chosen by the error it leaves at
    the outputs: some tensors leave MSE, and no output loses to the MSE
    default on the held-out canvases; with one grid per tensor (no channel
    grids: room for a better range) every output gains."""
    model, calibration, evaluation, _ = detector
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        default = quantize_model(model, calibration_data=calibration, channel_grids=channel_grids)
        auto = quantize_model(model, calibration_data=calibration, calibrator="auto", channel_grids=channel_grids)
    chosen = auto.options["quant.tensor_calibrators"]
    assert chosen and set(chosen.values()) <= {"entropy", "percentile", "minmax"}
    before, after = _measure(default, evaluation)[0], _measure(auto, evaluation)[0]
    assert all(after[k] >= before[k] - 0.05 for k in OUTPUTS), (before, after)
    if not channel_grids:
        assert all(after[k] > before[k] + 0.1 for k in OUTPUTS), (before, after)


@pytest.fixture(scope="module")
def text():
    from compiler.zoo.text_detector import documents, text_detector

    calibration, _ = documents(32, seed=1)
    evaluation, _ = documents(64, seed=2)
    return text_detector(seed=0), calibration, evaluation


def test_int8_text_regions_agree_as_the_reports_and_the_simulator_say(text, tmp_path, capsys):
    """The DB text detector's map (a Sigmoid's [1, 1, 16, 32]) is recognised
    as DB: its regions at DB's threshold agree at F1 >= 97 % on 64 held-out
    pages; `tessera quantize --report` prints the line and writes it to the
    JSON report; the Simulator's compare gives it beside the SNR."""
    import json

    import onnx

    from compiler.agreement import agreements, decode
    from compiler.cli import main as tessera
    from compiler.simulator.api import Simulator
    from compiler.zoo.text_detector import detect

    model, calibration, evaluation = text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantize_model(model, calibration_data=calibration)
    found = agreements(q.float_graph)["maps"]  # what compare folds in per input, without its layer-wise errors
    for x in evaluation:
        found.update(q.run_float({"x": x}), q.run({"x": x}))
    assert found.head.task == "db" and found.reference >= 100, found.line()
    assert found.f1 >= 0.97 and found.precision >= 0.97 and found.recall >= 0.97, found.line()
    outputs = q.run_float({"x": evaluation[0]})  # one decoder: the zoo's detect is the agreement's
    assert detect(outputs) and detect(outputs) == decode(found.head, outputs)
    onnx.save(model, tmp_path / "text.onnx")
    pages, data = tmp_path / "pages", tmp_path / "data"
    pages.mkdir()
    data.mkdir()
    for i, page in enumerate(calibration[:16]):
        np.save(pages / f"{i:02d}.npy", page)
    for i, page in enumerate(evaluation[:4]):
        np.save(data / f"{i}.npy", page)
    assert tessera(["quantize", str(tmp_path / "text.onnx"), "--calibration", str(pages), "--count", "16",
                    "--samples", "2", "--no-layers", "--report", str(tmp_path / "report.json"),
                    "--export-encodings", str(tmp_path / "text.encodings")]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("maps: text regions agree: F1")]
    assert len(lines) == 2 and "over 2 inputs (db, threshold 0.3, IoU 0.5" in lines[0], out  # compare, diagnosis
    record = json.loads((tmp_path / "report.json").read_text())["agreement"]["maps"]
    assert record["task"] == "db" and record["samples"] == 2 and 0.0 <= record["f1"] <= 1.0
    result = Simulator.compare_model_by_inference({
        "input_model_path_0": str(tmp_path / "text.onnx"), "input_model_path_1": str(tmp_path / "text.onnx"),
        "input_encodings_path_1": str(tmp_path / "text.encodings"), "input_data_path": str(data),
        "quantization_mode": "integer", "threshold": 20})
    assert result.agreement["maps"]["task"] == "db" and result.agreement["maps"]["samples"] == 4, result.agreement
    assert result.agreement["maps"]["float_detections"] >= 4 and 0.0 <= result.agreement["maps"]["f1"] <= 1.0
