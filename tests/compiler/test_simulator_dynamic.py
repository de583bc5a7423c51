"""The Simulator API on models with symbolic input dims, written the way
exporters write them (a YOLOv8-style ``['batch', 3, 'height', 'width']``
export, PaddlePaddle's -1): each sample's shapes are taken from its data and
the model is compiled once per input signature by compiler.signatures, the
cache compiler.backend uses. Results are held to onnxruntime's, and to the
same model exported with those shapes fixed; shapes that do not fit are
errors naming the input (or, for one the model's layers cannot take, the
shapes and the node)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import compiler.simulator.model as simulated
from compiler.errors import ModelImportError
from compiler.quantize import quantize_model
from compiler.simulator.api import Simulator
from compiler.simulator.errors import SimulatorError
from compiler.simulator.model import SimulatedModel
from tests.helpers.simulator_api import EMPTY_ENCODINGS, paddle_like, photo_crops, yolo_like

ROOT = Path(__file__).resolve().parents[2]
FLOAT_TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
SHAPES = {"a_small.npy": (1, 3, 32, 32), "b_pair.npy": (2, 3, 40, 56), "c_chw.npy": (3, 48, 40)}
"""The data folder: a 32x32 image, a batch of two 40x56 images, and a 48x40 image saved without its batch axis."""


def _images(shape, seed: int) -> np.ndarray:
    """Photo crops of ``shape`` ([N, 3, H, W] or [3, H, W]), values in [0, 1]."""
    *batch, _, height, width = shape
    crops = photo_crops(batch[0] if batch else 1, seed, size=max(height, width))
    return np.concatenate(crops)[:, :, :height, :width].reshape(shape).copy()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The dynamic export, the same model with its dims fixed to 32x32, its
    int8 encodings (calibrated on 32x32 crops), the empty encodings file and
    a data folder of samples of three shapes."""
    folder = tmp_path_factory.mktemp("simulator_dynamic")
    onnx.save(yolo_like(), folder / "yolo.onnx")
    fixed = yolo_like(dims=(1, 3, 32, 32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # calibration progress
        quantize_model(fixed, calibration_data=photo_crops(6, seed=1)).export_encodings(folder / "yolo.encodings")
    (folder / "empty.encodings").write_text(json.dumps(EMPTY_ENCODINGS))
    (folder / "data").mkdir()
    samples = {}
    for index, (name, shape) in enumerate(SHAPES.items()):
        samples[name] = _images(shape, seed=10 + index)
        np.save(folder / "data" / name, samples[name])
    return folder, samples


def _path(folder: Path, name: str) -> str:
    return str(folder / name)


def _onnxruntime(model, feeds: dict) -> list[np.ndarray]:
    model = model if isinstance(model, (str, os.PathLike)) else model.SerializeToString()
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)


def _batched(x: np.ndarray) -> np.ndarray:
    return x if x.ndim == 4 else x[None]


@pytest.mark.parametrize("mode", ["fake", "integer"])
def test_run_inference_takes_each_samples_shapes_and_matches_onnxruntime(files, mode):
    folder, samples = files
    results = Simulator.run_inference({"input_model_path": _path(folder, "yolo.onnx"),
                                       "input_encodings_path": _path(folder, "empty.encodings"),
                                       "input_data_path": _path(folder, "data"), "quantization_mode": mode,
                                       "layerwise_check_name": ["p4"]})
    assert len(results) == len(SHAPES)
    for (name, x), (output, p4) in zip(samples.items(), results):
        x = _batched(x)
        (want,) = _onnxruntime(_path(folder, "yolo.onnx"), {"images": x})
        n, _, h, w = x.shape
        assert output.shape == want.shape == (n, 6, (h // 2) * (w // 2)), name
        np.testing.assert_allclose(output, want, **FLOAT_TOLERANCE)
        assert p4.shape == (n, 8, h // 4, w // 4)


@pytest.mark.parametrize("mode", ["fake", "integer"])
def test_encodings_apply_at_every_shape_as_to_the_model_exported_with_that_shape(files, mode):
    """Each sample's result is, bit for bit, that of the same model exported
    with the sample's shape fixed, with the same encodings. In integer mode
    the tensors the file leaves out (stem_conv and down_conv: Tessera's own
    export of a Conv + SiLU omits them, at any shape) are calibrated on that
    shape's samples: here the one sample, as the fixed export is given."""
    folder, samples = files
    results = Simulator.run_inference({"input_model_path": _path(folder, "yolo.onnx"),
                                       "input_encodings_path": _path(folder, "yolo.encodings"),
                                       "input_data_path": _path(folder, "data"), "quantization_mode": mode})
    float_results = Simulator.run_inference({"input_model_path": _path(folder, "yolo.onnx"),
                                             "input_data_path": _path(folder, "data")})
    for index, ((name, x), (output,)) in enumerate(zip(samples.items(), results)):
        x = _batched(x)
        fixed = folder / f"yolo_{mode}_{index}.onnx"
        onnx.save(yolo_like(dims=x.shape), fixed)
        (want,) = SimulatedModel(fixed, _path(folder, "yolo.encodings"), mode, calibration=[{"images": x}]).run(
            {"images": x})
        np.testing.assert_array_equal(output, want, err_msg=name)
        assert not np.array_equal(output, float_results[index][0])  # the encodings did something


def test_the_session_has_onnxruntimes_symbolic_dims_and_compiles_each_signature_once(files, monkeypatch):
    folder, _ = files
    builds = []
    original = simulated.quantize_model

    def counting(model, **options):
        builds.append(options["shapes"])
        return original(model, **options)

    monkeypatch.setattr(simulated, "quantize_model", counting)
    for model, name in ((_path(folder, "yolo.onnx"), "images"), (paddle_like(), "x")):
        if not isinstance(model, str):
            onnx.save(model, folder / "paddle.onnx")
            model = _path(folder, "paddle.onnx")
        reference = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        session = Simulator.get_inference_session({"input_model_path": model})
        assert [(a.name, a.shape) for a in session.get_inputs()] == [(a.name, a.shape) for a in reference.get_inputs()]
        assert [(a.name, a.shape) for a in session.get_outputs()] == \
            [(a.name, a.shape) for a in reference.get_outputs()]
        builds.clear()
        first, second = _images((1, 3, 32, 24), seed=3), _images((2, 3, 16, 40), seed=4)
        for x in (first, second, first):
            (ours,) = session.run(None, {name: x})
            np.testing.assert_allclose(ours, reference.run(None, {name: x})[0], **FLOAT_TOLERANCE)
        assert builds == [{name: (1, 3, 32, 24)}, {name: (2, 3, 16, 40)}]  # the third run compiled nothing
    assert session.get_inputs()[0].shape == [None, 3, None, None]  # PaddlePaddle's -1, as onnxruntime shows it


def test_shapes_that_do_not_fit_are_errors_naming_the_input(files, tmp_path):
    folder, _ = files
    session = Simulator.get_inference_session({"input_model_path": _path(folder, "yolo.onnx")})
    expected = r"input 'images' has shape \[%s\]; the model takes \['batch', 3, 'height', 'width'\]"
    with pytest.raises(SimulatorError, match=expected % "1, 4, 32, 32"):
        session.run(None, {"images": np.zeros((1, 4, 32, 32), np.float32)})
    with pytest.raises(SimulatorError, match=expected % "3, 32, 32"):
        session.run(None, {"images": np.zeros((3, 32, 32), np.float32)})
    huge = np.broadcast_to(np.float32(0), (1, 3, 1 << 15, 1 << 15))  # 3 * 2^30 elements, none allocated
    with pytest.raises(SimulatorError, match=r"input 'images': the given shape \[1, 3, 32768, 32768\] has "
                                             r"3221225472 elements, more than the limit"):
        session.run(None, {"images": huge})
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "x.npy", np.zeros((1, 1, 32, 32), np.float32))
    params = {"input_model_path": _path(folder, "yolo.onnx"), "input_data_path": str(data)}
    with pytest.raises(SimulatorError, match=r"x.npy: " + expected % "1, 1, 32, 32"):
        Simulator.run_inference(params)
    # 34 rows: 17 after the stem, 9 after the second stride, 18 upsampled: the Concat cannot join them
    odd = np.zeros((1, 3, 34, 32), np.float32)
    np.save(data / "x.npy", odd)
    with pytest.raises(ModelImportError, match=r"yolo.onnx, with input shapes \{'images': \[1, 3, 34, 32\]\}: "
                                               r"Concat node 'concat'"):
        Simulator.run_inference(params)
    with pytest.raises(Exception, match=r"(?i)concat"):  # onnxruntime cannot run it either
        _onnxruntime(_path(folder, "yolo.onnx"), {"images": odd})


def test_comparisons_take_samples_of_several_shapes(files):
    folder, samples = files
    checker = {"input_data_path": _path(folder, "data"), "input_model_path_0": _path(folder, "yolo.onnx"),
               "input_encodings_path_0": _path(folder, "empty.encodings"),
               "input_model_path_1": _path(folder, "yolo.onnx"),
               "input_encodings_path_1": _path(folder, "yolo.encodings"), "metric": "snr", "threshold": 20}
    result = Simulator.compare_model_by_inference(checker)
    assert list(result.values) == list(SHAPES)
    assert result.passed and all(25 < v < 80 for v in result.values.values())
    layers = Simulator.compare_model_by_layer({**checker, "layer_match_info": [("p4", "p4")]})
    assert list(layers.layers[0].values) == list(SHAPES) and layers.passed
    onnx.save(yolo_like(dims=(1, 3, 32, 32)), folder / "yolo_32.onnx")
    fixed = {**checker, "input_model_path_1": _path(folder, "yolo_32.onnx"),
             "input_encodings_path_1": _path(folder, "empty.encodings")}
    with pytest.raises(SimulatorError, match=r"yolo_32.onnx: input 'images' is \[1, 3, 32, 32\]; the shape "
                                             r"\[2, 3, 40, 56\] contradicts a fixed dim: dim 0 is 1, not 2"):
        Simulator.compare_model_by_inference(fixed)  # model 1 takes only 32x32 images


USER_SCRIPT = '''\
import sys

import numpy as np

from {package}.schema.base import InferenceRunnerParameters, InferenceSessionParameters, InferenceCheckerParameters
from {package}.api import Simulator

model, encodings, data, out = sys.argv[1:]
params = InferenceRunnerParameters(
        input_model_path=model,
        input_encodings_path=encodings,
        input_data_path=data,
        )
res = Simulator.run_inference(params)
for index, outputs in enumerate(res):
    print(f"sample {{index}}: {{[list(o.shape) for o in outputs]}}")

params = InferenceSessionParameters(
        input_model_path=model,
        input_encodings_path=encodings,
        use_cuda=False,
        )
session = Simulator.get_inference_session(params)
inp = session.get_inputs()[0]
print("input", inp.name, inp.shape)
x = np.load(data + "/b_pair.npy")
y = session.run(None, {{inp.name: x}})[0]

params = InferenceCheckerParameters(
            input_data_path = data,
            input_model_path_0 = model,
            input_encodings_path_0 = encodings,
            input_model_path_1 = model,
            input_encodings_path_1 = encodings,
            metric = "snr",
            threshold = 30,
            use_cuda = False
        )
res_cmp = Simulator.compare_model_by_inference(params)
print("compare", res_cmp.passed)
np.savez(out, *[o[0] for o in res], session=y)
'''


def test_a_user_script_runs_a_dynamic_export(files, tmp_path):
    """A script in the spec's style, with only its import lines changed from
    ``simulator.`` to ``compiler.simulator.``, on the YOLOv8-style export."""
    folder, samples = files
    script = tmp_path / "user.py"
    script.write_text(USER_SCRIPT.format(package="compiler.simulator"))
    out = tmp_path / "out.npz"
    run = subprocess.run([sys.executable, str(script), _path(folder, "yolo.onnx"), _path(folder, "empty.encodings"),
                          _path(folder, "data"), str(out)], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    assert run.stdout == textwrap.dedent("""\
        sample 0: [[1, 6, 256]]
        sample 1: [[2, 6, 560]]
        sample 2: [[1, 6, 480]]
        input images ['batch', 3, 'height', 'width']
        compare True
        """)
    saved = np.load(out)
    for index, x in enumerate(samples.values()):
        (want,) = _onnxruntime(_path(folder, "yolo.onnx"), {"images": _batched(x)})
        np.testing.assert_allclose(saved[f"arr_{index}"], want, **FLOAT_TOLERANCE)
    np.testing.assert_allclose(saved["session"], saved["arr_1"], **FLOAT_TOLERANCE)
