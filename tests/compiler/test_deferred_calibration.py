"""compiler/deferred_calibration.py's mechanism on stand-in engines: which
runs go where, what is collected and counted, when the build starts, what a
failed build leaves, and who is told. (The Inference Engine's use of it, on
real programs, is tests/runtime/test_ie_calibration.py.)"""
from __future__ import annotations

import threading

import numpy as np
import pytest

from compiler.deferred_calibration import BUILDING, COLLECTING, FAILED, SWITCHED, DeferredCalibration
from runtime.errors import TesseraError


class Stand:
    """An Engine's run_batch: each image's output names this engine."""

    def __init__(self, name: str):
        self.name = name
        self.runs = 0

    def run_batch(self, images, timings=None, recorder=None):
        self.runs += 1
        return [{"y": np.full(1, len(self.name))} for _ in images]


def image(value: float, batch: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.full((batch, 2), value, np.float32)}


class Builder:
    """Records the feeds it is given; returns ``device`` once ``release`` is set (or raises ``error``)."""

    def __init__(self, device=None, error: Exception | None = None):
        self.device, self.error = device, error
        self.release = threading.Event()
        self.given: list = []

    def __call__(self, feeds):
        self.given.append(feeds)
        self.release.wait(10)
        if self.error is not None:
            raise self.error
        return self.device


def test_runs_go_to_the_float_engine_until_the_device_program_is_built_from_their_inputs():
    float_engine, device = Stand("float"), Stand("device")
    build = Builder(device)
    told = []
    deferred = DeferredCalibration(float_engine, build, wanted=3, notify=told.append)
    feeds = [image(v) for v in (1, 2, 3)]
    for k, feed in enumerate(feeds[:2]):
        _, engine = deferred.run_batch([feed])
        assert engine is float_engine and deferred.status().state == COLLECTING and deferred.status().images == k + 1
    assert deferred.wait(0).state == COLLECTING  # nothing building: no waiting
    _, engine = deferred.run_batch([feeds[2]])
    feeds[0]["x"][...] = 99  # the caller reuses its buffer: what was collected is a copy
    assert engine is float_engine and deferred.status().state == BUILDING
    _, engine = deferred.run_batch([image(4)])  # while building: float, not collected
    assert engine is float_engine and deferred.status().images == 3
    build.release.set()
    assert deferred.wait(10).state == SWITCHED
    assert not told
    _, engine = deferred.run_batch([image(5)])
    assert engine is device and deferred.engine is device
    status = deferred.status()
    assert (status.runs, status.first_device_run, status.calibration_runs) == (5, 5, 3)
    assert told == [status]
    deferred.run_batch([image(6)])
    assert len(told) == 1 and float_engine.runs == 4 and device.runs == 2
    (given,) = build.given
    assert [float(f["x"][0, 0]) for f in given] == [1, 2, 3]


def test_each_image_of_a_batched_feed_counts_and_non_finite_inputs_are_not_collected():
    build = Builder(Stand("device"))
    build.release.set()
    deferred = DeferredCalibration(Stand("float"), build, wanted=5, images_per_feed=2)
    deferred.run_batch([image(1, batch=2)])
    deferred.run_batch([image(np.inf, batch=2)])  # runs (the engine's own policy decides), not calibrated on
    assert deferred.status().images == 2
    deferred.run_batch([image(2, batch=2)])
    assert deferred.status().state == COLLECTING
    deferred.run_batch([image(3, batch=2)])  # 6 images >= 5: built from the three finite feeds
    assert deferred.wait(10).state == SWITCHED and deferred.status().images == 6
    assert [float(f["x"][0, 0]) for f in build.given[0]] == [1, 2, 3]


def test_a_failed_build_leaves_the_float_engine_running_and_is_told_once():
    float_engine = Stand("float")
    build = Builder(error=TesseraError("no room for layer 'conv'"))
    build.release.set()
    told = []
    deferred = DeferredCalibration(float_engine, build, wanted=1, notify=told.append)
    deferred.run_batch([image(1)])
    status = deferred.wait(10)
    assert status.state == FAILED and status.error == "TesseraError: no room for layer 'conv'"
    for value in (2, 3):
        assert deferred.run_batch([image(value)])[1] is float_engine
    assert [s.state for s in told] == [FAILED] and deferred.status().first_device_run is None
    assert len(build.given) == 1  # no second build


def test_a_failed_run_is_not_collected():
    class Failing(Stand):
        def run_batch(self, images, timings=None, recorder=None):
            raise TesseraError("input 'x' must be float32[1, 2]")

    deferred = DeferredCalibration(Failing("float"), Builder(), wanted=1)
    with pytest.raises(TesseraError, match="must be float32"):
        deferred.run_batch([image(1)])
    assert deferred.status().images == 0 and deferred.status().state == COLLECTING


@pytest.mark.parametrize("wanted", [0, -3, True, 2.5, "8"])
def test_the_count_wanted_is_a_positive_integer(wanted):
    with pytest.raises(TesseraError, match="positive integer"):
        DeferredCalibration(Stand("float"), Builder(), wanted=wanted)
