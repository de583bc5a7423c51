"""The Simulator API (compiler/simulator): schemas with the documented
fields and misspellings, run_inference on data folders, the onnxruntime-like
session against onnxruntime itself, the model comparisons, and the two
quantization modes (fake-quant and the bit-exact integer path) against
each other."""
from __future__ import annotations

import json
import shutil
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from pydantic import ValidationError

from compiler.quantize import quantize_model
from compiler.simulator.api import Simulator
from compiler.simulator.errors import SimulatorError
from compiler.simulator.schema.base import (
    GetInferenceSessionParameters,
    InferenceCheckerParameters,
    InferenceRunnerParameters,
    InferenceSessionParameters,
    LayerwiseCheckerParameters,
    SimulatorWarning,
)
from passes.quant.metrics import cosine_similarity, snr_db
from tests.helpers.simulator_api import EMPTY_ENCODINGS, photo_crops, two_input_model, workspace

FLOAT_TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return workspace(tmp_path_factory.mktemp("simulator"))


@pytest.fixture(scope="module")
def reference(ws):
    """onnxruntime's float outputs on the data folder's samples."""
    session = ort.InferenceSession(ws.model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [session.run(None, {"image": x})[0] for x in ws.samples]


def runner(ws, **fields) -> InferenceRunnerParameters:
    return InferenceRunnerParameters(**{"input_model_path": ws.model_path, "input_encodings_path": ws.encodings_path,
                                        "input_data_path": ws.data_path, **fields})


def checker(ws, encodings_0, encodings_1, **fields) -> dict:
    return {"input_model_path_0": ws.model_path, "input_encodings_path_0": encodings_0,
            "input_model_path_1": ws.model_path, "input_encodings_path_1": encodings_1,
            "input_data_path": ws.data_path, "metric": "snr", "threshold": 30, **fields}


# ---------------------------------------------------------------- schemas

def test_documented_misspellings_are_aliases_of_the_example_names(ws):
    spelled = InferenceRunnerParameters(input_model_path=ws.model_path, input_encondings_path=ws.encodings_path,
                                        input_data_path=ws.data_path)
    assert spelled == runner(ws)
    assert spelled.model_dump()["input_encodings_path"] == ws.encodings_path
    assert spelled.quantization_mode == "fake" and spelled.layerwise_check_name == [] and not spelled.use_cuda
    misspelled = InferenceCheckerParameters(input_model_path0=ws.model_path, input_encondings_path_0=ws.empty_path,
                                            input_model_path_1=ws.model_path, input_encondings_path_1=ws.encodings_path,
                                            input_data_path=ws.data_path, meric="SNR", threshold=30)
    assert misspelled == InferenceCheckerParameters(**checker(ws, ws.empty_path, ws.encodings_path))
    assert misspelled.metric == "snr" and misspelled.mode(0) == misspelled.mode(1) == "fake"
    assert GetInferenceSessionParameters is InferenceSessionParameters
    session = GetInferenceSessionParameters(input_model_path=ws.model_path, input_encondings_path=ws.empty_path)
    assert session.input_encodings_path == ws.empty_path
    assert InferenceCheckerParameters(**checker(ws, None, None, metric="max-abs")).metric == "max_abs"


@pytest.mark.parametrize("field, value, message", [
    ("input_model_path", "nowhere.onnx", "input_model_path: no file at 'nowhere.onnx'"),
    ("input_encodings_path", "nowhere.encodings", "input_encodings_path: no file"),
    ("input_data_path", "no_such_folder", "input_data_path: no folder"),
])
def test_a_missing_file_or_folder_is_an_error_naming_the_field(ws, field, value, message):
    with pytest.raises(ValidationError, match=message):
        runner(ws, **{field: value})


def test_wrong_kinds_of_paths_and_unknown_fields_are_errors(ws):
    with pytest.raises(ValidationError, match="input_model_path: .* is a folder"):
        runner(ws, input_model_path=ws.data_path)
    with pytest.raises(ValidationError, match="input_data_path: .* is a file"):
        runner(ws, input_data_path=ws.model_path)
    with pytest.raises(ValidationError, match="input_encodngs_path"):
        runner(ws, input_encodngs_path=ws.encodings_path)  # not a documented misspelling
    with pytest.raises(ValidationError, match="quantization_mode"):
        runner(ws, quantization_mode="int8")
    with pytest.raises(ValidationError, match="metric: 'psnr' is not one of"):
        InferenceCheckerParameters(**checker(ws, None, None, metric="psnr"))
    with pytest.raises(ValidationError, match="threshold"):
        InferenceCheckerParameters(**{k: v for k, v in checker(ws, None, None).items() if k != "threshold"})
    with pytest.raises(ValidationError, match="export_featuremap_path: needed"):
        LayerwiseCheckerParameters(**checker(ws, None, None), layer_match_info=[("relu_8", "relu_8")],
                                   export_featuremap=True)
    with pytest.raises(ValidationError, match="layer_match_info"):
        LayerwiseCheckerParameters(**checker(ws, None, None), layer_match_info=[])


def test_use_cuda_warns_and_runs_on_the_cpu(ws, reference):
    with pytest.warns(SimulatorWarning, match="no GPU path; running on the CPU"):
        params = runner(ws, input_encodings_path=ws.empty_path, use_cuda=True)
    assert params.use_cuda
    outputs = Simulator.run_inference(params)
    np.testing.assert_allclose(outputs[0][0], reference[0], **FLOAT_TOLERANCE)


# ---------------------------------------------------------------- run_inference

@pytest.mark.parametrize("mode", ["fake", "integer"])
def test_an_empty_encodings_file_runs_the_model_like_onnxruntime(ws, reference, mode):
    outputs = Simulator.run_inference(runner(ws, input_encodings_path=ws.empty_path, quantization_mode=mode))
    assert len(outputs) == len(ws.samples)
    for (probabilities,), expected in zip(outputs, reference):
        np.testing.assert_allclose(probabilities, expected, **FLOAT_TOLERANCE)
    no_file = Simulator.run_inference(runner(ws, input_encodings_path=None, quantization_mode=mode))
    np.testing.assert_array_equal(no_file[0][0], outputs[0][0])


def test_results_follow_sorted_file_names_with_layerwise_tensors_appended(ws, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name, x in zip(["b.npy", "c.npy", "a.npy"], ws.samples):
        np.save(data / name, x[0])  # without the batch axis: added
    (data / ".hidden").write_text("skipped")
    (data / "sub").mkdir()
    outputs = Simulator.run_inference(runner(ws, input_data_path=str(data), layerwise_check_name=["relu_8", "conv_2"]))
    assert [[a.shape for a in sample] for sample in outputs] == [[(1, 10), (1, 8, 16, 16), (1, 8, 16, 16)]] * 3
    session = Simulator.get_inference_session(runner(ws))
    for sample, x in zip(outputs, [ws.samples[2], ws.samples[0], ws.samples[1]]):  # a, b, c
        expected = session.run(["probabilities", "relu_8", "conv_2"], {"image": x})
        for got, want in zip(sample, expected):
            np.testing.assert_array_equal(got, want)
    relu, conv = outputs[0][1], outputs[0][2]
    assert relu.min() >= 0 and conv.min() < 0
    scale = 1 / np.min(np.diff(np.unique(relu)))  # fake-quantized: on a grid
    assert np.allclose(relu * scale, np.round(relu * scale), atol=1e-2)


def test_integer_mode_is_the_quantized_models_integer_run(ws):
    outputs = Simulator.run_inference(runner(ws, quantization_mode="integer", layerwise_check_name=["relu_98"]))
    quantized = quantize_model(ws.model, encodings=ws.encodings_path)
    for (probabilities, relu), x in zip(outputs, ws.samples):
        np.testing.assert_array_equal(probabilities, quantized.run({"image": x})["probabilities"])
        assert relu.shape == (1, 64, 1, 1)
    with pytest.raises(SimulatorError, match="no tensor 'conv_2' in integer mode .*fused into a layer"):
        Simulator.run_inference(runner(ws, quantization_mode="integer", layerwise_check_name=["conv_2"]))


def two_input_workspace(folder):
    """The two-input model, the empty encodings file and an empty data folder."""
    model = folder / "two.onnx"
    onnx.save(two_input_model(), model)
    empty = folder / "empty.encodings"
    empty.write_text(json.dumps(EMPTY_ENCODINGS))
    data = folder / "data"
    data.mkdir()
    return {"input_model_path": model, "input_encodings_path": empty, "input_data_path": data}


def test_data_files_hold_one_array_per_input_name(tmp_path):
    params = two_input_workspace(tmp_path)
    data = params["input_data_path"]
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 1, 4)).astype(np.float32)
    np.savez(data / "0.npz", a=a, b=b)
    np.savez(data / "1.npz", a=b[0].astype(np.float64), b=a)  # any float type, batch axis optional
    (y0, z0), (y1, z1) = Simulator.run_inference(params)
    np.testing.assert_allclose(y0, np.maximum(a + b, 0), rtol=1e-6)
    np.testing.assert_allclose(z1, a * b, rtol=1e-6)
    assert y1.dtype == np.float32 and np.array_equal(y0, y1)

    np.save(data / "2.npy", a)
    with pytest.raises(SimulatorError, match=r"2.npy: a .npy file holds one array, but the model has 2 inputs"):
        Simulator.run_inference(params)
    (data / "2.npy").unlink()
    np.savez(data / "2.npz", a=a, c=b)
    with pytest.raises(SimulatorError, match=r"2.npz: the model's inputs are \['a', 'b'\]; the file lacks \['b'\] "
                                             r"and has arrays no input is named: \['c'\]"):
        Simulator.run_inference(params)
    np.savez(data / "2.npz", a=a, b=np.zeros((1, 5), np.float32))
    with pytest.raises(SimulatorError, match=r"2.npz: input 'b' has shape \[1, 5\]; the model takes \[1, 4\]"):
        Simulator.run_inference(params)
    (data / "2.npz").unlink()
    (data / "notes.txt").write_text("x")
    with pytest.raises(SimulatorError, match="notes.txt: not a sample file"):
        Simulator.run_inference(params)


def test_h5_files_hold_one_dataset_per_input_name(tmp_path):
    import h5py  # the test and simulator extras'
    params = two_input_workspace(tmp_path)
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 1, 4)).astype(np.float32)
    with h5py.File(params["input_data_path"] / "0.h5", "w") as file:
        file["a"], file["b"] = a, b[0]
    [(y, z)] = Simulator.run_inference(params)
    np.testing.assert_allclose(y, np.maximum(a + b, 0), rtol=1e-6)
    np.testing.assert_allclose(z, a * b, rtol=1e-6)


def test_h5_data_without_h5py_says_what_to_install(ws, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "0.h5").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py raises ImportError
    with pytest.raises(SimulatorError, match=r"0.h5: reading .h5 data needs h5py.*pip install 'tessera\[simulator\]'"):
        Simulator.run_inference(runner(ws, input_data_path=str(data)))


# ---------------------------------------------------------------- sessions

def top_class(session, image: np.ndarray) -> int:
    """Code written for an onnxruntime session."""
    first, out = session.get_inputs()[0], session.get_outputs()[0]
    assert first.type == "tensor(float)" and first.shape == list(image.shape)
    return int(np.argmax(session.run([out.name], {first.name: image})[0]))


def test_the_session_is_a_drop_in_for_onnxruntimes(ws):
    theirs = ort.InferenceSession(ws.model_path, providers=["CPUExecutionProvider"])
    float_sim = Simulator.get_quantization_sim({"input_model_path": ws.model_path,
                                                "input_encodings_path": ws.empty_path})
    ours = float_sim.session
    for mine, other in zip(ours.get_inputs() + ours.get_outputs(), theirs.get_inputs() + theirs.get_outputs()):
        assert (mine.name, mine.type, mine.shape) == (other.name, other.type, other.shape)
    assert ours.get_providers() == ["CPUExecutionProvider"]
    quantized = Simulator.get_inference_session(InferenceSessionParameters(
        input_model_path=ws.model_path, input_encodings_path=ws.encodings_path, quantization_mode="integer"))
    for x in ws.samples:
        np.testing.assert_allclose(ours.run(None, {"image": x})[0], theirs.run(None, {"image": x})[0],
                                   **FLOAT_TOLERANCE)
        assert top_class(ours, x) == top_class(theirs, x)
    agree = [top_class(quantized, x) == top_class(theirs, x) for x in ws.samples]
    assert sum(agree) >= len(agree) - 1
    with pytest.raises(SimulatorError, match="input_feed: input 'image' is missing"):
        ours.run(None, {})
    with pytest.raises(SimulatorError, match=r"input 'image' is tensor\(double\); the model takes tensor\(float\)"):
        ours.run(None, {"image": ws.samples[0].astype(np.float64)})
    with pytest.raises(SimulatorError, match=r"input 'image' has shape \[1, 3, 16, 16\]"):
        ours.run(None, {"image": np.zeros((1, 3, 16, 16), np.float32)})
    with pytest.raises(SimulatorError, match="no tensor 'logits'"):
        ours.run(["logits"], {"image": ws.samples[0]})


# ---------------------------------------------------------------- comparisons

def test_compare_by_inference_passes_and_fails_in_the_metrics_sense(ws):
    int8 = Simulator.compare_model_by_inference(checker(ws, ws.empty_path, ws.encodings_path,
                                                        quantization_mode="integer"))
    assert list(int8.values) == [f"s{i}.npy" for i in range(len(ws.samples))]
    assert int8.passed and 30 <= int8.aggregate < 80
    reference = [f for f, in Simulator.run_inference(runner(ws, input_encodings_path=ws.empty_path))]
    quantized = Simulator.run_inference(runner(ws, quantization_mode="integer"))
    assert int8.aggregate == pytest.approx(snr_db(np.concatenate(reference), np.concatenate([q for q, in quantized])))
    assert int8.values["s1.npy"] == pytest.approx(snr_db(reference[1], quantized[1][0]))
    assert int8.outputs == {"probabilities": pytest.approx(int8.aggregate)}

    strict = Simulator.compare_model_by_inference(checker(ws, ws.empty_path, ws.encodings_path, threshold=80,
                                                          quantization_mode="integer"))
    assert not strict.passed and strict.aggregate == int8.aggregate
    for metric, loose, tight in [("rmse", 0.01, 1e-6), ("max-abs", 0.05, 1e-6), ("cosine", 0.999, 1.0 + 1e-9)]:
        results = [Simulator.compare_model_by_inference(checker(ws, ws.empty_path, ws.encodings_path, metric=metric,
                                                                threshold=t)) for t in (loose, tight)]
        assert [r.passed for r in results] == [True, False], (metric, results[0].aggregate)
    cosine = results[0]
    assert cosine.metric == "cosine" and cosine.values["s0.npy"] == pytest.approx(
        cosine_similarity(reference[0], Simulator.run_inference(runner(ws))[0][0]))
    same = Simulator.compare_model_by_inference(checker(ws, ws.encodings_path, ws.encodings_path))
    assert same.aggregate == np.inf and same.passed
    assert '"aggregate":Infinity' in same.model_dump_json()  # kept, not turned into null


def test_fake_quant_and_the_integer_path_agree_to_35_db(ws, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for index, x in enumerate(photo_crops(12, seed=5)):
        np.save(data / f"{index:02d}.npy", x)
    result = Simulator.compare_model_by_inference(checker(ws, ws.encodings_path, ws.encodings_path,
                                                          input_data_path=data, threshold=35,
                                                          quantization_mode_0="integer", quantization_mode_1="fake"))
    assert result.passed and 35 <= result.aggregate < 70  # they agree, yet are not the same computation
    versus_float = Simulator.compare_model_by_inference(checker(ws, ws.empty_path, ws.encodings_path,
                                                                input_data_path=data, quantization_mode="integer"))
    assert result.aggregate > versus_float.aggregate - 3  # as close to each other as int8 is to float


def test_compare_by_layer_gives_snr_per_matched_pair_and_exports_feature_maps(ws, tmp_path):
    pairs = [("relu_8", "relu_8"), ("relu_50", "relu_50"), ("relu_98", "relu_98")]
    export = tmp_path / "maps"
    result = Simulator.compare_model_by_layer(LayerwiseCheckerParameters(
        **checker(ws, ws.empty_path, ws.encodings_path, threshold=25, quantization_mode="integer"),
        layer_match_info=pairs, export_featuremap=True, export_featuremap_path=str(export)))
    assert [(layer.tensor_0, layer.tensor_1) for layer in result.layers] == pairs
    assert result.passed and all(layer.passed for layer in result.layers)
    first, last = result.layers[0], result.layers[-1]
    assert first.aggregate > last.aggregate > 25  # error accumulates through the network
    float_maps = Simulator.run_inference(runner(ws, input_encodings_path=ws.empty_path,
                                                layerwise_check_name=["relu_8", "relu_50", "relu_98"]))
    int_maps = Simulator.run_inference(runner(ws, quantization_mode="integer",
                                              layerwise_check_name=["relu_8", "relu_50", "relu_98"]))
    assert first.values["s2.npy"] == pytest.approx(snr_db(float_maps[2][1], int_maps[2][1]))
    assert result.by_sample()["s3.npy"] == {name: layer.values["s3.npy"]
                                           for (_, name), layer in zip(pairs, result.layers)}
    with np.load(export / "model_1" / "s2.npz") as saved:
        assert sorted(saved.files) == ["relu_50", "relu_8", "relu_98"]
        np.testing.assert_array_equal(saved["relu_50"], int_maps[2][2])
    with np.load(export / "model_0" / "s0.npz") as saved:
        np.testing.assert_array_equal(saved["relu_98"], float_maps[0][3])
    shutil.rmtree(export)
    with pytest.raises(SimulatorError, match="no tensor 'relu_999'"):
        Simulator.compare_model_by_layer(LayerwiseCheckerParameters(**checker(ws, None, None),
                                                                    layer_match_info=[("relu_8", "relu_999")]))


def test_calls_take_dicts_and_reject_other_things(ws):
    assert len(Simulator.run_inference({"input_model_path": ws.model_path, "input_data_path": ws.data_path})) == 4
    with pytest.raises(TypeError, match="expected InferenceRunnerParameters"):
        Simulator.run_inference([ws.model_path])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete encodings file: nothing calibrated, nothing ignored
        Simulator.get_inference_session(InferenceSessionParameters(input_model_path=ws.model_path,
                                                                   input_encodings_path=ws.encodings_path,
                                                                   quantization_mode="integer"))
