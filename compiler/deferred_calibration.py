"""Calibrating on the inputs a model is run with, for an API whose users give
no calibration data (the Inference Engine's FPGA and HETERO devices: the
OpenVINO scripts people have set none, and their FPGA plugin needed none).

The first runs go to the float program (every layer on the CPU's float32
kernels, so their results are the float model's) and their inputs are kept;
once ``wanted`` input images are in (each image of a batched input counts),
the device program is compiled from exactly those inputs on a thread of its
own, and every run that starts after it is ready runs on it. Nothing is ever
calibrated on synthetic data: a model that sees fewer images keeps running
in float. The status (:class:`CalibrationStatus`) says where it stands and
which run was the first on the device program.

    from compiler.deferred_calibration import deferred_program

    program = deferred_program("model.onnx", wanted=32, fallback="FPGA,CPU")
    outputs, engine = program.run_batch([{"data": image}])
"""
from __future__ import annotations

import dataclasses
import threading
import warnings
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import onnx

from compiler.compile import compile_model
from runtime.compiled import CompiledModel
from runtime.engine import Engine
from runtime.errors import TesseraError

WANTED = 32
"""Input images collected before the device program is built by default
(compiler.quantize's default count of calibration inputs)."""
COLLECTING, BUILDING, SWITCHED, FAILED = "COLLECTING", "BUILDING", "SWITCHED", "FAILED"


@dataclasses.dataclass(frozen=True)
class CalibrationStatus:
    """Where a :class:`DeferredCalibration` stands: ``state`` (COLLECTING,
    BUILDING, SWITCHED or FAILED), the input ``images`` collected of the
    ``wanted``, the ``runs`` started so far, the number of the first run on
    the device program (runs count from 1, in the order they started; None
    until one ran there) and, after a failed build, its ``error``."""

    state: str
    images: int
    wanted: int
    runs: int
    first_device_run: int | None = None
    error: str = ""
    calibration_runs: int = 0
    """How many runs' inputs the device program was calibrated on."""


class DeferredCalibration:
    """An Engine-like runner (``run_batch``, ``engine``) over ``float_engine``
    until ``build`` (the collected feed dicts -> an Engine of the calibrated
    device program) has made the device program, then over that.
    ``images_per_feed``: the input images one feed dict holds (its batch);
    ``notify`` is called once with the status when the first run goes to the
    device program, or the first run after a failed build (from that run's
    thread, so that a caller's message is printed where it runs)."""

    def __init__(self, float_engine: Engine, build: Callable[[list[dict[str, np.ndarray]]], Engine], wanted: int,
                 images_per_feed: int = 1, notify: Callable[[CalibrationStatus], None] | None = None):
        if not isinstance(wanted, (int, np.integer)) or isinstance(wanted, bool) or wanted < 1:
            raise TesseraError(f"the number of input images to calibrate on must be a positive integer, got "
                               f"{wanted!r}")
        self.float_engine = float_engine
        self._build, self._wanted, self._per_feed, self._notify = build, int(wanted), int(images_per_feed), notify
        self._engine = float_engine
        self._feeds: list[dict[str, np.ndarray]] = []
        self._images = self._runs = self._calibration_runs = 0
        self._state, self._error, self._first_device_run = COLLECTING, "", None
        self._notified = False
        self._changed = threading.Condition()

    @property
    def engine(self) -> Engine:
        """The Engine a run started now goes to."""
        return self._engine

    def run_batch(self, images: Sequence[Mapping[str, np.ndarray]], timings: list | None = None,
                  recorder=None) -> tuple[list[dict[str, np.ndarray]], Engine]:
        """``Engine.run_batch`` on the program of the moment (``recorder``:
        its host spans, runtime.trace.HostRecorder), and which Engine ran
        it. A successful float run's finite inputs are collected until
        ``wanted`` images are in; the one that completes them starts the
        build."""
        with self._changed:
            self._runs += 1
            engine = self._engine
            if engine is not self.float_engine and self._first_device_run is None:
                self._first_device_run = self._runs
            tell = self._state in (SWITCHED, FAILED) and not self._notified and (
                self._state == FAILED or engine is not self.float_engine)
            self._notified |= tell
        if tell and self._notify is not None:
            self._notify(self.status())
        outputs = engine.run_batch(images, timings, recorder=recorder)
        if engine is self.float_engine:
            self._collect(images)
        return outputs, engine

    def _collect(self, images: Sequence[Mapping[str, np.ndarray]]) -> None:
        kept = [{name: np.array(value) for name, value in feeds.items()} for feeds in images
                if all(np.asarray(v).dtype.kind != "f" or np.isfinite(v).all() for v in feeds.values())]
        if not kept:
            return
        with self._changed:
            if self._state != COLLECTING:
                return
            self._feeds += kept
            self._images += len(kept) * self._per_feed
            self._calibration_runs += 1
            if self._images < self._wanted:
                return
            self._state, feeds, self._feeds = BUILDING, self._feeds, []
        threading.Thread(target=self._make, args=(feeds,), name="tessera-calibration", daemon=True).start()

    def _make(self, feeds: list[dict[str, np.ndarray]]) -> None:
        """The build thread: daemon, so a script that ends while it compiles
        is not held up; it prints nothing (the first run after it reports)."""
        try:
            device = self._build(feeds)
            state, error = SWITCHED, ""
        except Exception as exc:  # noqa: BLE001 - kept for the status; the float program goes on
            device, state, error = None, FAILED, f"{type(exc).__name__}: {exc}"
        with self._changed:
            self._state, self._error = state, error
            if device is not None:
                self._engine = device
            self._changed.notify_all()

    def status(self) -> CalibrationStatus:
        with self._changed:
            return CalibrationStatus(self._state, self._images, self._wanted, self._runs, self._first_device_run,
                                     self._error, self._calibration_runs)

    def wait(self, timeout: float | None = None) -> CalibrationStatus:
        """The status once the device program is built (or its build failed),
        or after ``timeout`` seconds; while collecting it returns at once
        (nothing is being built)."""
        with self._changed:
            self._changed.wait_for(lambda: self._state != BUILDING, timeout)
        return self.status()


def deferred_program(model, *, wanted: int = WANTED, shapes: Mapping[str, Sequence[int]] | None = None,
                     images_per_feed: int = 1, nonfinite: str | None = None,
                     built: Callable[[CompiledModel], None] | None = None,
                     notify: Callable[[CalibrationStatus], None] | None = None,
                     **compile_keywords: Any) -> DeferredCalibration:
    """``model`` (an ONNX path, bytes or ModelProto) compiled now for the CPU
    alone (float32, nothing to calibrate), and later, on the first ``wanted``
    input images its runs see, by ``compile_model(model, shapes=shapes,
    samples=<those inputs>, **compile_keywords)``; Engines made with the
    ``nonfinite`` policy. ``built`` sees the device program once compiled
    (an error it raises fails the build)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nothing is quantized: no calibration to warn about
        float_model = compile_model(_fresh(model), shapes=shapes, fallback="CPU", strip_reference=True)
    keywords = {key: value for key, value in compile_keywords.items() if key not in ("samples", "affinities")}
    affinities = compile_keywords.get("affinities")

    def build(feeds: list[dict[str, np.ndarray]]) -> Engine:
        compiled = compile_model(_fresh(model), shapes=shapes, samples=feeds, calibration_count=len(feeds),
                                 affinities=affinities, **keywords)
        if built is not None:
            built(compiled)
        return Engine(compiled, nonfinite=nonfinite)

    return DeferredCalibration(Engine(float_model, nonfinite=nonfinite), build, wanted, images_per_feed, notify)


def _fresh(model):
    """A ModelProto copied (each compile gets its own, one of them on another
    thread); a path or bytes as it is."""
    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return copy
    return model
