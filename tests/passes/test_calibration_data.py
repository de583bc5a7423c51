"""Calibration data sources (arrays, dicts, .npy/.npz folders, image folders,
synthetic data), image preprocessing and the progress line."""
import io
import operator
import sys

import numpy as np
import pytest

from passes.quant.calibration_data import (
    SYNTHETIC_COUNT,
    CalibrationDataError,
    CalibrationWarning,
    PreprocessSpec,
    calibration_batches,
    preprocess_image,
)
from passes.quant.progress import Progress, progress
from runtime.preprocess import PreprocessError

IMAGE = {"x": (1, 3, 8, 8)}
rng = np.random.default_rng(0)


def sample(shape=(1, 3, 8, 8)):
    return rng.standard_normal(shape).astype(np.float32)


# --- in-memory sources ---------------------------------------------------------------


def test_a_list_of_arrays_feeds_the_single_input():
    arrays = [sample(), sample((3, 8, 8)).astype(np.float64), np.ones((1, 3, 8, 8), np.int32)]
    feeds = list(calibration_batches(arrays, IMAGE))
    assert [list(f) for f in feeds] == [["x"]] * 3
    assert all(f["x"].shape == (1, 3, 8, 8) and f["x"].dtype == np.float32 for f in feeds)
    assert np.array_equal(feeds[1]["x"][0], arrays[1].astype(np.float32))  # batch dimension added


def test_a_list_of_dicts_feeds_several_inputs():
    specs = {"a": ((None, 4), np.float32), "b": ((2,), np.int64)}
    samples = [{"a": np.ones((3, 4)), "b": np.array([1, 2])}, {"b": np.array([3, 4]), "a": np.zeros((1, 4))}]
    feeds = list(calibration_batches(samples, specs))
    assert feeds[0]["a"].shape == (3, 4) and feeds[0]["b"].dtype == np.int64
    assert feeds[1]["b"].tolist() == [3, 4]


def test_count_limits_and_length_hint():
    batches = calibration_batches([sample() for _ in range(5)], IMAGE, count=3)
    assert operator.length_hint(batches) == 3 and len(list(batches)) == 3
    assert len(list(batches)) == 3  # a list can be read again
    generated = calibration_batches((sample() for _ in range(4)), IMAGE)
    assert operator.length_hint(generated) == 0 and len(list(generated)) == 4


@pytest.mark.parametrize("source, message", [
    ([sample(), sample((1, 3, 8, 9))], r"calibration sample 1: input 'x' has shape \[1,3,8,8\], got an array of "
                                       r"shape \[1, 3, 8, 9\]"),
    ([{"y": sample()}], r"calibration sample 0: missing input\(s\) \['x'\], unknown input\(s\) \['y'\]"),
    ([np.array(["a"])], r"calibration sample 0: input 'x' takes float32, got an array of <U1"),
    (sample(), r"got a ndarray \(wrap a single sample in a list\)"),
    ({"x": sample()}, r"got a dict"),
    (3, r"got a int"),
])
def test_bad_samples_are_errors_naming_the_sample(source, message):
    with pytest.raises(CalibrationDataError, match=message):
        list(calibration_batches(source, IMAGE))


def test_arrays_for_a_multi_input_model_are_an_error():
    with pytest.raises(CalibrationDataError, match=r"sample 0 is an array, but the model has inputs \['a', 'b'\]"):
        list(calibration_batches([sample()], {"a": (1,), "b": (1,)}))


def test_float_data_for_an_integer_input_is_an_error():
    with pytest.raises(CalibrationDataError, match="input 'ids' takes int64, got an array of float64"):
        list(calibration_batches([np.ones(3)], {"ids": ((3,), np.int64)}))


@pytest.mark.parametrize("specs, count, message", [
    ({}, None, "non-empty mapping"),
    (IMAGE, 0, "positive integer, got 0"),
])
def test_bad_arguments_are_errors(specs, count, message):
    with pytest.raises(CalibrationDataError, match=message):
        calibration_batches([sample()], specs, count=count)


def test_preprocess_must_be_a_spec():
    with pytest.raises(CalibrationDataError, match="preprocess must be a PreprocessSpec, got a dict"):
        calibration_batches([sample()], IMAGE, preprocess={"scale": 1})


def test_preprocess_is_only_for_image_folders(tmp_path):
    np.save(tmp_path / "a.npy", sample())
    for source in ([sample()], tmp_path):
        with pytest.raises(CalibrationDataError, match="preprocess applies to image folders only"):
            calibration_batches(source, IMAGE, preprocess=PreprocessSpec())


# --- synthetic data ---------------------------------------------------------------------


def test_synthetic_data_warns_loudly_and_is_seeded():
    with pytest.warns(CalibrationWarning, match="will not reflect real data"):
        batches = calibration_batches(None, {"x": ((None, 3, 4, 4), np.float32)}, count=3, seed=7)
    first, again = list(batches), list(batches)
    assert len(first) == 3 and first[0]["x"].shape == (1, 3, 4, 4) and first[0]["x"].dtype == np.float32
    assert all(np.array_equal(a["x"], b["x"]) for a, b in zip(first, again))
    assert not np.array_equal(first[0]["x"], first[1]["x"])
    with pytest.warns(CalibrationWarning):
        other = list(calibration_batches(None, {"x": (1, 3, 4, 4)}, count=1, seed=8))
    assert not np.array_equal(first[0]["x"], other[0]["x"])
    assert abs(float(np.concatenate([f["x"].ravel() for f in first]).std()) - 1) < 0.3


def test_synthetic_count_defaults():
    with pytest.warns(CalibrationWarning, match=f"on {SYNTHETIC_COUNT} synthetic"):
        batches = calibration_batches(None, {"x": (1, 2)})
    assert operator.length_hint(batches) == SYNTHETIC_COUNT == len(list(batches))


@pytest.mark.parametrize("specs, message", [
    ({"x": (1, None, 4)}, r"input 'x' has free dimension\(s\) \[1\] in shape \[1,\?,4\]"),
    ({"ids": ((1, 4), np.int64)}, "input 'ids' has dtype int64: synthetic data is only made for float inputs"),
])
def test_synthetic_data_needs_static_float_inputs(specs, message):
    with pytest.raises(CalibrationDataError, match=message):
        calibration_batches(None, specs)


# --- folders of arrays ------------------------------------------------------------------------


def test_npy_folder_is_read_in_name_order(tmp_path):
    for name, value in [("b.npy", 2), ("a.npy", 1), ("c.npy", 3)]:
        np.save(tmp_path / name, np.full((3, 8, 8), value, np.float64))
    (tmp_path / "labels.txt").write_text("cat\n")
    np.save(tmp_path / ".hidden.npy", np.zeros(1))
    batches = calibration_batches(str(tmp_path), IMAGE)
    assert operator.length_hint(batches) == 3
    assert [float(f["x"].mean()) for f in batches] == [1.0, 2.0, 3.0]
    assert [float(f["x"].mean()) for f in calibration_batches(tmp_path, IMAGE, count=2)] == [1.0, 2.0]


def test_npz_folder_feeds_several_inputs(tmp_path):
    np.savez(tmp_path / "0.npz", a=np.ones(2), b=np.zeros((1, 3)))
    (feeds,) = list(calibration_batches(tmp_path, {"a": (2,), "b": (1, 3)}))
    assert feeds["a"].tolist() == [1, 1] and feeds["b"].shape == (1, 3)


@pytest.mark.parametrize("name, write, message", [
    ("b.npy", lambda path: np.save(path, sample((1, 3, 4, 4))), r"file .*b\.npy: input 'x' has shape \[1,3,8,8\]"),
    ("b.npy", lambda path: path.write_bytes(b"not an array"), r"cannot read calibration file .*b\.npy"),
    ("b.npz", lambda path: np.savez(path, x=np.array(["text"])), r"file .*b\.npz: input 'x' takes float32"),
])
def test_bad_array_files_are_errors_naming_the_file(tmp_path, name, write, message):
    np.save(tmp_path / "a.npy", sample())
    write(tmp_path / name)
    batches = iter(calibration_batches(tmp_path, IMAGE))
    next(batches)
    with pytest.raises(CalibrationDataError, match=message):
        next(batches)


def test_npy_folder_for_a_multi_input_model_is_an_error(tmp_path):
    np.save(tmp_path / "a.npy", np.ones(2))
    with pytest.raises(CalibrationDataError, match=r"a\.npy is a single array, but the model has inputs"):
        list(calibration_batches(tmp_path, {"a": (2,), "b": (2,)}))


def test_bad_folders_are_errors(tmp_path):
    with pytest.raises(CalibrationDataError, match="does not exist"):
        calibration_batches(tmp_path / "missing", IMAGE)
    (tmp_path / "file.npy").write_bytes(b"")
    with pytest.raises(CalibrationDataError, match="is not a folder"):
        calibration_batches(tmp_path / "file.npy", IMAGE)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationDataError, match=r"has no \.npy/\.npz files or images"):
        calibration_batches(tmp_path / "empty", IMAGE)
    (tmp_path / "photo.png").write_bytes(b"")
    with pytest.raises(CalibrationDataError, match=r"mixes array files \(file\.npy, \.\.\.\) and images"):
        calibration_batches(tmp_path, IMAGE)


# --- images ---------------------------------------------------------------------------------


def test_image_folder_without_pillow_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL fails
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(CalibrationDataError, match="folder of images needs Pillow"):
        calibration_batches(tmp_path, IMAGE)


def test_image_folder_with_pillow(tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    photos = pytest.importorskip("sklearn.datasets").load_sample_images().images
    for index, photo in enumerate(photos):
        image_module.fromarray(photo).save(tmp_path / f"photo{index}.png")
    (tmp_path / "zz_broken.jpg").write_bytes(b"not a jpeg")
    spec = PreprocessSpec.imagenet()
    batches = iter(calibration_batches(tmp_path, {"x": (1, 3, 224, 224)}, preprocess=spec))
    for photo in photos:
        x = next(batches)["x"]
        assert x.shape == (1, 3, 224, 224) and x.dtype == np.float32
        assert np.allclose(x, preprocess_image(photo, (1, 3, 224, 224), spec), atol=1e-6)
    with pytest.raises(CalibrationDataError, match=r"cannot read image .*zz_broken\.jpg"):
        next(batches)


def test_image_folder_checks_the_input_eagerly(tmp_path):
    pytest.importorskip("PIL.Image")
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(CalibrationDataError, match=r"layout NCHW the input \[1,224,224,3\] has 224 channels.*NHWC"):
        calibration_batches(tmp_path, {"x": (1, 224, 224, 3)})


def test_preprocess_scales_normalises_and_lays_out():
    pixels = np.zeros((2, 2, 3), np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 255, 51, 0
    spec = PreprocessSpec(scale=1 / 255, mean=(0.5, 0.2, 0.0), std=(0.5, 0.1, 2.0))
    x = preprocess_image(pixels, (1, 3, 2, 2), spec)
    assert x.shape == (1, 3, 2, 2) and np.allclose(x[0, :, 0, 0], [1.0, 0.0, 0.0], atol=1e-6)
    bgr = preprocess_image(pixels, (None, 2, 2, 3), PreprocessSpec("NHWC", "BGR", scale=1.0))
    assert bgr.shape == (1, 2, 2, 3) and bgr[0, 0, 0].tolist() == [0.0, 51.0, 255.0]
    grey = preprocess_image(np.full((4, 4), 10, np.uint8), (1, 1, 2, 2), PreprocessSpec(scale=1.0))
    assert grey.shape == (1, 1, 2, 2) and np.all(grey == 10)


@pytest.mark.parametrize("shape, spec, message", [
    ((1, 3, 2), PreprocessSpec(), r"rank 4"),
    ((4, 3, 2, 2), PreprocessSpec(), r"fills a batch of 1"),
    ((1, 2, 2, 3), PreprocessSpec("NHWC", mean=(0, 0)), r"mean has 2 values for 3 channel"),
    ((1, 1, 2, 2), PreprocessSpec(), r"the image has 3 channel\(s\), the input takes 1"),
])
def test_preprocess_errors(shape, spec, message):
    with pytest.raises(CalibrationDataError, match=message):
        preprocess_image(np.zeros((2, 2, 3), np.uint8), shape, spec)


@pytest.mark.parametrize("fields, message", [
    (dict(layout="CHW"), "layout must be 'NCHW' or 'NHWC'"),
    (dict(channel_order="RGBA"), "channel_order must be 'RGB' or 'BGR'"),
    (dict(std=(1.0, 0.0, 1.0)), "std must be finite and non-zero"),
    (dict(scale=float("nan")), "scale must be finite"),
])
def test_bad_preprocess_specs(fields, message):
    with pytest.raises(PreprocessError, match=message):
        PreprocessSpec(**fields)


def test_imagenet_preset():
    spec = PreprocessSpec.imagenet("NHWC")
    assert (spec.layout, spec.channel_order, spec.mean, spec.std) == (
        "NHWC", "RGB", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


# --- progress ----------------------------------------------------------------------------------


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


class FakeClock:
    def __init__(self, step):
        self.now, self.step = 0.0, step

    def __call__(self):
        self.now += self.step
        return self.now


def test_progress_redraws_one_terminal_line():
    terminal = FakeTerminal()
    items = list(progress(range(4), total=4, label="calibrating", stream=terminal, clock=FakeClock(0.5)))
    assert items == [0, 1, 2, 3]
    text = terminal.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    frames = text.rstrip("\n").split("\r")[1:]
    assert frames[0].startswith("calibrating 1/4 2.0/s ETA 0:02")  # one step after 0.5 s
    assert frames[-1].startswith("calibrating: 4 in 0:02 (1.6/s)")


def test_progress_writes_one_summary_line_elsewhere():
    log = io.StringIO()
    with Progress(label="calibrating", stream=log, clock=FakeClock(1.0)) as bar:
        for _ in range(3):
            bar.advance()
        assert log.getvalue() == ""
    assert log.getvalue() == "calibrating: 3 in 0:04 (1.3 s/it)\n"


def test_progress_takes_the_length_hint_and_throttles():
    terminal = FakeTerminal()
    for _ in progress(calibration_batches([sample()] * 50, IMAGE), stream=terminal, clock=FakeClock(0.01)):
        pass
    frames = terminal.getvalue().split("\r")[1:]
    assert "50/50" in frames[-2] and len(frames) < 10


def test_progress_shows_slow_rates_and_long_times():
    terminal = FakeTerminal()
    with Progress(2, stream=terminal, clock=FakeClock(3000.0)) as bar:
        bar.advance()
    assert "progress 1/2 3000.0 s/it ETA 50:00" in terminal.getvalue()
    assert terminal.getvalue().rstrip("\n").split("\r")[-1].startswith("progress: 1 in 1:40:00 (6000.0 s/it)")


def test_progress_ends_its_line_on_an_error():
    terminal = FakeTerminal()
    with pytest.raises(KeyError), Progress(3, stream=terminal, clock=FakeClock(1.0)) as bar:
        bar.advance()
        raise KeyError("boom")
    assert terminal.getvalue().endswith("\n")
