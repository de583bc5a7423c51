"""The one pre-processing of a model's image input (runtime.preprocess:
PreprocessSpec and image_input): its arithmetic, its record in a binary, and
that calibration and tessera-infer make the same float tensor of an image."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from runtime.preprocess import PreprocessError, PreprocessSpec, image_input

PIL = pytest.importorskip("PIL.Image")


def test_bilinear_resize_by_hand():
    spec = PreprocessSpec(scale=1.0)
    image = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)
    up = image_input(image, spec, 4, 4)[0]
    # half-pixel centres: output x samples input x at 0 (clamped), 0.25, 0.75, 1 (clamped)
    assert np.allclose(up[0], [0, 0.25, 0.75, 1]) and np.allclose(up[:, 0], [0, 0.5, 1.5, 2])
    ramp = np.tile(np.arange(8, dtype=np.float32), (2, 1))
    assert np.allclose(image_input(ramp, spec, 2, 4)[0, 0], [0.5, 2.5, 4.5, 6.5])
    assert np.array_equal(image_input(image, spec)[0], image)
    assert np.all(image_input(np.full((5, 7, 3), 4.0, np.float32), spec, 3, 11) == 4.0)


def test_channel_order_scale_mean_std_and_layout():
    pixels = np.zeros((2, 2, 3), np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 255, 51, 0
    x = image_input(pixels, PreprocessSpec(mean=(0.5, 0.2, 0.0), std=(0.5, 0.1, 2.0)))
    assert x.shape == (3, 2, 2) and x.dtype == np.float32 and np.allclose(x[:, 0, 0], [1.0, 0.0, 0.0], atol=1e-6)
    bgr = image_input(pixels, PreprocessSpec("NHWC", "BGR", scale=1.0))
    assert bgr.shape == (2, 2, 3) and bgr[0, 0].tolist() == [0.0, 51.0, 255.0]
    with pytest.raises(PreprocessError, match=r"mean has 2 values for 3 channel"):
        image_input(pixels, PreprocessSpec(mean=(0, 0)))


def test_the_record_round_trips_and_a_malformed_one_is_refused():
    spec = PreprocessSpec("NHWC", "BGR", 1 / 127.5, (1.0, 2.0, 3.0), (0.5,))
    assert PreprocessSpec.from_metadata({"preprocess": spec.to_metadata()}) == spec
    assert PreprocessSpec.from_metadata({}) is None
    with pytest.raises(PreprocessError, match=r"preprocess\.std must be 1 to 3 finite numbers"):
        PreprocessSpec.from_metadata({"preprocess": {**spec.to_metadata(), "std": [1, float("inf")]}})


def _model(side: int) -> bytes:
    """A 3-channel convolution with a ReLU: the image input [1, 3, side, side]."""
    weights = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                               helper.make_node("Relu", ["c"], ["y"])], "net",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, side, side])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, side, side])],
                              [numpy_helper.from_array(weights, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_calibration_and_tessera_infer_make_the_same_input_of_an_image(tmp_path):
    """An image file compiled with a recorded pre-processing: the tensor
    calibration read from it is, bit for bit, the one tessera-infer makes
    of it from what the binary records (GetInfo('preprocess'), settings_for,
    load_image); the Inference Engine reads the same record back."""
    from compiler.compile import compile_model
    from passes.quant.calibration_data import calibration_batches
    from runtime import FWDNXT
    from runtime.app.images import load_image, settings_for
    from runtime.inference_engine import IENetwork, IEPlugin

    side, folder = 12, tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i, (rows, cols) in enumerate(((21, 17), (9, 30), (12, 12))):
        PIL.fromarray(rng.integers(0, 256, (rows, cols, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    spec = PreprocessSpec("NCHW", "BGR", 1 / 255, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    compile_model(_model(side), samples=str(folder), preprocess=spec, outfile=tmp_path / "net.bin")
    calibrated = [feed["x"] for feed in calibration_batches(folder, {"x": (1, 3, side, side)}, preprocess=spec)]

    ie = FWDNXT()
    ie.Init(str(tmp_path / "net.bin"), "")
    settings = settings_for(ie.GetInfo("inshapes"), None, None, None, ie.GetInfo("preprocess"))
    ie.Free()
    assert settings.spec == spec
    loaded = IEPlugin("FPGA").load(IENetwork(model=str(tmp_path / "net.bin")))
    assert loaded.get_metric("TESSERA_PREPROCESS") == spec.to_metadata()
    for path, calibration_input in zip(sorted(folder.iterdir()), calibrated, strict=True):
        inferred = load_image(path, settings)
        assert inferred.dtype == np.float32 and np.array_equal(inferred[None], calibration_input), path.name
