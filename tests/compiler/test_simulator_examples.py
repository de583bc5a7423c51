"""The Simulator API examples (docs/examples/simulator_*.py) run as a user
runs them, each in a process of its own from the repository root, and
print what the spec's calls should give. The processes start together (a
fixture) and the tests read what each printed."""
from __future__ import annotations

import json
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from compiler.zoo import resnet
from tests.helpers.examples import run_examples
from tests.helpers.simulator_api import EMPTY_ENCODINGS, photo_crops

SAMPLE_ROW = re.compile(r"^sample (\d): output shape \[1, (\d+)\], top class (\d+) \((\d\.\d{6})\)(.*)$", re.MULTILINE)
SESSION_ROW = re.compile(r"^(\S+\.npy): fake-quant (\d+) \((\d\.\d{6})\), integer (\d+) \((\d\.\d{6})\), "
                         r"onnxruntime \(float\) (\d+) \((\d\.\d{6})\)$", re.MULTILINE)


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    """A user's model (7 classes), the empty encodings file and two samples."""
    folder = tmp_path_factory.mktemp("simulator_examples")
    model = resnet(depth=10, image=32, classes=7, width=8, seed=3)
    onnx.save(model, folder / "resnet10_7.onnx")
    (folder / "empty.encodings").write_text(json.dumps(EMPTY_ENCODINGS))
    (folder / "data").mkdir()
    samples = photo_crops(2, seed=9)
    for index, x in enumerate(samples):
        np.save(folder / "data" / f"sample_{index}.npy", x)
    paths = ["--model", str(folder / "resnet10_7.onnx"), "--encodings", str(folder / "empty.encodings"),
             "--data", str(folder / "data")]
    return model, samples, paths


@pytest.fixture(scope="module")
def printed(user_files):
    """Each example run's stdout, by a label; all started at once."""
    runs = {
        "run": ["simulator_run_inference.py", "--layer", "relu_8", "relu_98"],
        "run_float": ["simulator_run_inference.py", *user_files[2]],
        "session": ["simulator_session.py"],
        "compare": ["simulator_compare.py"],
        "compare_rmse": ["simulator_compare.py", "--metric", "rmse", "--threshold", "1e-6"],
        "layers": ["simulator_compare_layers.py"],
    }
    return run_examples(runs, forbidden=("synthetic", "Warning"))


def test_run_inference_prints_each_samples_outputs_and_feature_maps(printed):
    out = printed["run"]
    assert out.startswith("4 samples, fake quantization\n")
    rows = SAMPLE_ROW.findall(out)
    assert [int(r[0]) for r in rows] == [0, 1, 2, 3] and all(r[1] == "10" for r in rows)
    for row in rows:
        assert 0.1 <= float(row[3]) <= 1  # the top probability of 10 classes
        maps = re.fullmatch(r"; relu_8 \[1, 8, 16, 16\] mean (\d\.\d+); relu_98 \[1, 64, 1, 1\] mean (\d\.\d+)", row[4])
        assert maps and float(maps.group(1)) > 0


def test_run_inference_with_the_empty_encodings_prints_onnxruntimes_results(printed, user_files):
    model, samples, _ = user_files
    rows = SAMPLE_ROW.findall(printed["run_float"])
    assert len(rows) == 2 and all(r[1] == "7" for r in rows)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for row, x in zip(rows, samples):
        expected = session.run(None, {"image": x})[0]
        assert int(row[2]) == int(np.argmax(expected))
        assert float(row[3]) == pytest.approx(float(np.max(expected)), abs=2e-6)


def test_the_session_runs_code_written_for_onnxruntime(printed):
    out = printed["session"]
    assert "input: image tensor(float) [1, 3, 32, 32]\n" in out
    assert "output: probabilities tensor(float) [1, 10]\n" in out
    rows = SESSION_ROW.findall(out)
    assert [r[0] for r in rows] == [f"sample_{i}.npy" for i in range(4)]
    for _, fake_class, fake_p, int_class, int_p, float_class, float_p in rows:
        assert abs(float(fake_p) - float(float_p)) < 0.01 and abs(float(int_p) - float(float_p)) < 0.01
        assert float(fake_p) != float(int_p)  # two different computations
    assert sum(r[1] == r[5] for r in rows) >= 3 and sum(r[3] == r[5] for r in rows) >= 3


def test_compare_prints_per_sample_values_and_the_verdict(printed):
    blocks = re.findall(r"^(.+):\n((?:  sample_\d\.npy: .*\n){4})  aggregate (\w+) (\S+), threshold (\S+): (\w+)$",
                        printed["compare"], re.MULTILINE)
    assert [b[0] for b in blocks] == ["float vs fake-quant int8", "float vs integer int8",
                                      "integer vs fake-quant, same encodings"]
    for _, rows, metric, aggregate, threshold, verdict in blocks:
        values = [float(v) for v in re.findall(r"snr (\S+)", rows)]
        assert metric == "snr" and threshold == "30" and verdict == "PASSED"
        assert 30 < float(aggregate) < 80 and min(values) > 30
    assert float(blocks[2][3]) >= 35  # fake-quant and the integer path agree
    rmse = re.findall(r"aggregate rmse (\S+), threshold 1e-06: (\w+)", printed["compare_rmse"])
    assert len(rmse) == 3 and all(v == "FAILED" and 0 < float(a) < 0.01 for a, v in rmse)  # lower is better


def test_compare_layers_prints_snr_per_pair_and_writes_feature_maps(printed):
    out = printed["layers"]
    rows = re.findall(r"^(relu_\d+) vs (relu_\d+): snr per sample ((?:\S+ ){3}\S+); aggregate (\S+) dB (\w+)$",
                      out, re.MULTILINE)
    assert [r[0] for r in rows] == ["relu_8", "relu_50", "relu_98"] and all(r[0] == r[1] for r in rows)
    assert all(float(r[3]) > 25 and r[4] == "PASSED" for r in rows)
    assert float(rows[0][3]) > float(rows[2][3])  # error accumulates through the network
    assert "feature maps written: 8 files (model_0/sample_0.npz, model_0/sample_1.npz, ...)" in out
