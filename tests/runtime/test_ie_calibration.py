"""The Inference Engine's FPGA and HETERO devices with no calibration data
(issue 53 item 3; docs/inference_engine.md, "No calibration data"): the
first requests run the float program while their inputs are kept, the
accelerator's int8 program calibrated on them takes over once built, and
nothing is ever calibrated on synthetic data. The model takes raw 0-255
pixels, as the OpenVINO samples feed them; its inputs are photo crops."""
from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

from compiler.zoo import resnet
from runtime.inference_engine import IENetwork, IEPlugin, InferenceEngineError
from tests.helpers.ie_samples import photo_pixels, raw_pixel_model

SIZE = 32
INT8_ATOL = 0.01
"""How far an int8 probability may be from the float model's (as tests/runtime/test_ie_samples.py)."""
IMAGES = photo_pixels(12, SIZE, seed=3)
OUT = "probabilities"


@pytest.fixture(scope="module")
def model():
    return raw_pixel_model(resnet(depth=10, image=SIZE, classes=10, width=8, seed=5))


@pytest.fixture(scope="module")
def floats(model):
    """The float model's probabilities for each of IMAGES (the CPU plugin)."""
    cpu = IEPlugin("CPU").load(IENetwork(model=model))
    return [cpu.infer({"image": x})[OUT] for x in IMAGES]


@pytest.fixture(autouse=True)
def no_calibration_environment(monkeypatch):
    monkeypatch.delenv("TESSERA_CALIBRATION_DATA", raising=False)
    monkeypatch.delenv("TESSERA_CALIBRATION_SAMPLES", raising=False)


def calibration(exec_net) -> dict:
    return exec_net.get_metric("TESSERA_CALIBRATION")


def switched(exec_net, timeout: float = 120) -> dict:
    """The metric once the int8 program is built (polled as a user would)."""
    deadline = time.monotonic() + timeout
    while calibration(exec_net)["state"] == "BUILDING" and time.monotonic() < deadline:
        time.sleep(0.05)
    status = calibration(exec_net)
    assert status["state"] == "SWITCHED", status
    return status


def devices(request) -> set[str]:
    """Where the request's last run ran its executed layers ('CPU', 'FPGA')."""
    return {stats["exec_type"].split(":")[0] for stats in request.get_perf_counts().values()
            if stats["status"] == "EXECUTED"}


def notes(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("inference_engine: note:")]


def assert_int8_close(got: np.ndarray, want: np.ndarray) -> None:
    assert int(np.argmax(got)) == int(np.argmax(want))
    assert np.abs(got - want).max() <= INT8_ATOL


def test_fpga_runs_float_then_the_int8_program_calibrated_on_what_it_saw(model, floats, capsys):
    """Sync ``infer``: runs 1-4 are the float model's, bit for bit, on CPU
    kernels; the fourth starts the build; run 5 runs the int8 program, which
    is exactly the one calibration at load on those four images gives, and
    agrees with float; two notes say when and what."""
    net = IENetwork(model=model)
    exec_net = IEPlugin("FPGA").load(net, config={"TESSERA_CALIBRATION_SAMPLES": 4})
    assert calibration(exec_net) == {"state": "COLLECTING", "images": 0, "wanted": 4, "runs": 0,
                                     "first_int8_run": None, "error": ""}
    for k in range(4):
        got = exec_net.infer({"image": IMAGES[k]})[OUT]
        np.testing.assert_array_equal(got, floats[k])
        assert devices(exec_net.requests[0]) == {"CPU"}
    assert calibration(exec_net)["images"] == 4 and calibration(exec_net)["state"] in ("BUILDING", "SWITCHED")
    status = switched(exec_net)
    assert status["first_int8_run"] is None and status["runs"] == 4
    at_load = IEPlugin("FPGA").load(net, config={"TESSERA_CALIBRATION_DATA": IMAGES[:4]})
    assert calibration(at_load)["state"] == "AT_LOAD"
    for k in range(4, 8):
        got = exec_net.infer({"image": IMAGES[k]})[OUT]
        np.testing.assert_array_equal(got, at_load.infer({"image": IMAGES[k]})[OUT])
        assert_int8_close(got, floats[k])
        assert "FPGA" in devices(exec_net.requests[0])
    assert calibration(exec_net)["first_int8_run"] == 5
    assert {where["device"] for where in exec_net.get_exec_graph_info().values()} == {"FPGA", "CPU"}
    assert notes(capsys.readouterr().err) == [
        "inference_engine: note: network 'resnet10' on FPGA: no calibration data (TESSERA_CALIBRATION_DATA), so "
        "requests run in float32 on the CPU until they have fed 4 input images, then the accelerator's int8 program, "
        "calibrated on those images, takes over",
        "inference_engine: note: network 'resnet10' on FPGA: from run 5 on, requests run the accelerator's int8 "
        "program, calibrated on the 4 input images of 4 earlier run(s)"]


def test_each_image_of_a_batch_is_a_calibration_sample(model, floats):
    """batch_size 2 on a model fixed at batch 1: two runs give the four
    images wanted, and the int8 program is the one calibration at load on
    the same four single images gives (stacked two at a time)."""
    net = IENetwork(model=model)
    net.batch_size = 2
    exec_net = IEPlugin("FPGA").load(net, config={"TESSERA_CALIBRATION_SAMPLES": 4})
    pairs = [np.concatenate(IMAGES[k:k + 2]) for k in range(0, 8, 2)]
    for k in range(2):
        got = exec_net.infer({"image": pairs[k]})[OUT]
        np.testing.assert_array_equal(got, np.concatenate(floats[2 * k:2 * k + 2]))
    assert switched(exec_net)["images"] == 4
    at_load = IEPlugin("FPGA").load(net, config={"TESSERA_CALIBRATION_DATA": IMAGES[:4]})
    for k in range(2, 4):
        got = exec_net.infer({"image": pairs[k]})[OUT]
        np.testing.assert_array_equal(got, at_load.infer({"image": pairs[k]})[OUT])
        for row in range(2):
            assert_int8_close(got[row], floats[2 * k + row][0])


def test_async_requests_in_flight_each_report_the_program_that_ran_them(model, floats):
    """Three requests started at once, round after round: every result is
    the float model's (bit for bit) where the request's perf counts show CPU
    kernels only, and int8 close to float where they show FPGA layers; the
    switch comes after the third image."""
    exec_net = IEPlugin("FPGA").load(IENetwork(model=model), num_requests=3,
                                     config={"TESSERA_CALIBRATION_SAMPLES": 3})
    ran = []
    for round_start in (0, 3, 6, 9):
        if round_start == 9:
            switched(exec_net)
        handles = [exec_net.start_async(i, {"image": IMAGES[round_start + i]}) for i in range(3)]
        for i, request in enumerate(handles):
            assert request.wait() == 0
            got, want = request.outputs[OUT], floats[round_start + i]
            where = devices(request)
            if where == {"CPU"}:
                np.testing.assert_array_equal(got, want)
            else:
                assert "FPGA" in where
                assert_int8_close(got, want)
            ran.append(where)
    assert ran[:3] == [{"CPU"}] * 3 and all("FPGA" in where for where in ran[9:])
    status = calibration(exec_net)
    assert status["images"] == 3 and status["runs"] == 12 and 4 <= status["first_int8_run"] <= 10


def test_hetero_affinities_hold_after_the_switch_and_the_dot_files_come_with_it(model, floats, tmp_path):
    """HETERO with every Convolution put on the CPU: before the switch every
    layer runs in float on the CPU; after it the convolutions still run on
    the CPU and other layers on the FPGA; HETERO_DUMP_GRAPH_DOT writes the
    int8 program's split when it is built."""
    net = IENetwork(model=model)
    plugin = IEPlugin("HETERO:FPGA,CPU")
    plugin.set_config({"TESSERA_CALIBRATION_SAMPLES": 2, "HETERO_DUMP_GRAPH_DOT": "YES",
                       "TESSERA_DOT_DIR": str(tmp_path)})
    plugin.set_initial_affinity(net)
    convs = [layer.name for layer in net.layers.values() if layer.type == "Convolution"]
    for name in convs:
        net.layers[name].affinity = "CPU"
    exec_net = plugin.load(net)
    for k in range(2):
        np.testing.assert_array_equal(exec_net.infer({"image": IMAGES[k]})[OUT], floats[k])
        assert devices(exec_net.requests[0]) == {"CPU"}
    assert not list(tmp_path.iterdir())
    switched(exec_net)
    assert_int8_close(exec_net.infer({"image": IMAGES[2]})[OUT], floats[2])
    perf = exec_net.requests[0].get_perf_counts()
    assert all(perf[name]["exec_type"].startswith("CPU:") for name in convs if perf[name]["status"] == "EXECUTED")
    assert any(stats["exec_type"].startswith("FPGA:") and stats["status"] == "EXECUTED" for stats in perf.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hetero_affinity_resnet10.dot",
                                                          "hetero_subgraphs_resnet10.dot"]


def test_fewer_images_than_wanted_stay_on_the_float_program_and_nothing_is_calibrated(model, floats, monkeypatch):
    """The default of 32 images (or the environment variable's count): three
    runs stay float, with no warning, no build and no synthetic data."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec_net = IEPlugin("FPGA").load(IENetwork(model=model))
        for k in range(3):
            np.testing.assert_array_equal(exec_net.infer({"image": IMAGES[k]})[OUT], floats[k])
    assert not caught, [str(w.message) for w in caught]
    assert calibration(exec_net) == {"state": "COLLECTING", "images": 3, "wanted": 32, "runs": 3,
                                     "first_int8_run": None, "error": ""}
    monkeypatch.setenv("TESSERA_CALIBRATION_SAMPLES", "5")
    assert calibration(IEPlugin("HETERO:FPGA,CPU").load(IENetwork(model=model)))["wanted"] == 5


def test_configured_data_calibrates_at_load_and_networks_without_int8_layers_need_none(model, capsys):
    """As before: TESSERA_CALIBRATION_DATA calibrates at load, the first run
    is on the FPGA; CPU and HETERO:CPU,FPGA (the CPU takes every layer)
    quantize nothing, so there is nothing to calibrate and no note."""
    net = IENetwork(model=model)
    at_load = IEPlugin("FPGA").load(net, config={"TESSERA_CALIBRATION_DATA": IMAGES[:2]})
    at_load.infer({"image": IMAGES[0]})
    assert calibration(at_load)["state"] == "AT_LOAD" and "FPGA" in devices(at_load.requests[0])
    for device in ("CPU", "HETERO:CPU,FPGA"):
        exec_net = IEPlugin(device).load(net)
        exec_net.infer({"image": IMAGES[0]})
        assert calibration(exec_net)["state"] == "NOT_QUANTIZED" and devices(exec_net.requests[0]) == {"CPU"}
    assert not notes(capsys.readouterr().err)


@pytest.mark.parametrize("value", [0, -1, True, 2.5, "many", ""])
def test_a_bad_image_count_is_refused_naming_the_key(value):
    with pytest.raises(InferenceEngineError, match=r"set_config: TESSERA_CALIBRATION_SAMPLES: takes a positive "
                                                   r"whole number of input images, got"):
        IEPlugin("FPGA").set_config({"TESSERA_CALIBRATION_SAMPLES": value})
    assert IEPlugin("FPGA").set_config({"TESSERA_CALIBRATION_SAMPLES": "16"}) is None


def test_a_bad_image_count_in_the_environment_is_refused_at_load(model, monkeypatch):
    monkeypatch.setenv("TESSERA_CALIBRATION_SAMPLES", "lots")
    with pytest.raises(InferenceEngineError, match=r"load: the environment variable TESSERA_CALIBRATION_SAMPLES: "
                                                   r"takes a positive whole number of input images, got 'lots'"):
        IEPlugin("FPGA").load(IENetwork(model=model))
