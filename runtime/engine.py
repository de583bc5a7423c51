"""Running a compiled model end to end (FWDNXT's Init, then Run and Run_th).

An Engine is a compiled model's segments on the one segment mechanism
(runtime/segments.py): CPU segments on the CPU executor, accelerator
segments on the device backend (runtime/device.py: the simulator, as there
is no card here), which also gives the device time. Everything is prepared
once at construction (Init): DRAM holds the weights image, streams are
validated and decoded, kernel programs resolved. It adds what a binary
carries beyond its segments: the interface's input checks and the float
reference program of Run_th. Any run can record its host spans for a
trace (runtime/trace.py); :meth:`Engine.write_trace` writes one.
"""
from __future__ import annotations

import os
import time
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import cached_property, partial
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from runtime.compiled import CompiledModel
from runtime.device import SimulatedDevice
from runtime.errors import ExecutionError
from runtime.executor import Executor
from runtime.interrupts import deferred_interrupt
from runtime.nonfinite import check_feeds, check_input, nonfinite_policy
from runtime.segments import FINITE, SegmentedProgram, SegmentExecutor, record_segment
from runtime.timeline import DeviceTimeline
from runtime.trace import HostRecorder, write_trace

_FIRST_RUN = "the first run"
_FIRST_REFERENCE = "the first run of the float reference"
_LATER = nullcontext()
"""What :meth:`Engine._first` gives once a kind of run has run (reusable)."""


class Engine:
    """A loaded CompiledModel, ready to run many times. Runs from several
    threads overlap where the hardware allows: each segment takes one run
    at a time, the device's segments one at a time between them."""

    def __init__(self, model: CompiledModel, check: bool = False, nonfinite: str | None = None):
        self.model = model
        self.nonfinite = nonfinite_policy(nonfinite)
        """What a device run does with NaN and ±Inf in a float input: 'error' or
        'saturate' (runtime/nonfinite.py); default $TESSERA_NONFINITE, else 'error'."""
        with deferred_interrupt("Init"):
            self.device = SimulatedDevice(model)
            """The device backend: its DRAM, simulators and timing (hwtime, layer_times)."""
            program = SegmentedProgram(str(model.metadata.get("source", "model")), [t.name for t in model.inputs],
                                       [t.name for t in model.outputs], model.segments)
            self._segments = SegmentExecutor(program, self.device, check)
            self._reference = Executor(model.reference, check=check) if model.reference is not None else None
        reference = model.reference
        self._reference_inputs = [] if reference is None else reference.input_names
        self._reference_missing = [] if reference is None else [
            t.name for t in model.outputs if t.name not in reference.output_names]
        """Model outputs the float reference program lacks (Run_th's error, at the call)."""
        self._reference_takes_all = reference is not None and set(reference.input_names) == {
            t.name for t in model.inputs}
        """Whether the float reference program reads every model input (and no
        other name): a run's checked inputs are then its feeds as they are."""
        self._input_dtypes = [(spec, np.dtype(spec.dtype)) for spec in model.inputs]
        inspected = self._segments.inspected
        scanned = [spec.name for spec in model.inputs if spec.name not in inspected]
        self._scanned = scanned if model.device_segments else []
        """The inputs a device run scans for NaN and ±Inf before it starts; the
        others the first segment inspects as it quantizes them (FINITE). None
        at all where the program has no device segment (the Inference Engine's CPU
        plugin, a model compiled all to the CPU): it makes no codes, and its
        float kernels follow IEEE arithmetic, as Run_th's and
        compiler.backend's do."""
        names = frozenset(spec.name for spec in model.inputs)
        self._finite = [partial(self._refuse_nonfinite, names, self._image_label(k)) for k in range(model.batch)]
        """Per image of a run, its tables' FINITE check (runtime.segments.FINITE)."""
        self._ran: set[str] = set()
        """The kinds of run done once: their kernels are compiled (runtime/interrupts.py)."""

    # ------------------------------------------------------------ running
    def run(self, feeds: Mapping[str, np.ndarray], codes: dict | None = None,
            recorder: HostRecorder | None = None) -> dict[str, np.ndarray]:
        """The model's outputs for ``feeds`` (input name -> float32 array), of
        a binary that runs one image at a time; ``codes``, when given, gets
        the DeviceCodes of every output the device produced (by name);
        ``recorder`` the run's host spans (as run_batch)."""
        if self.model.batch != 1:
            raise ExecutionError(f"this binary runs {self.model.batch} images at once (batch mode over its "
                                 "clusters and cards): use run_batch")
        found = [] if codes is not None else None
        outputs = self.run_batch([feeds], codes=found, recorder=recorder)[0]
        if codes is not None:
            codes.update(found[0])
        return outputs

    def run_batch(self, images: Sequence[Mapping[str, np.ndarray]], timings: list | None = None,
                  codes: list | None = None, recorder: HostRecorder | None = None,
                  into: Sequence[Mapping[str, np.ndarray]] | None = None) -> list[dict[str, np.ndarray]]:
        """The outputs of every image of one run: exactly ``model.batch``
        images, each a feed dict, run together (one image per cluster and
        card in batch mode). ``timings`` gets each CPU kernel call's (step
        name, kernel, seconds) appended; ``codes`` gets, per image, the
        runtime.device.DeviceCodes of each output the device produced: the
        integer codes behind the float output, for fixed-point APIs;
        ``recorder`` (thread-safe, so concurrent runs may share one) each
        segment and CPU kernel as host spans (segments.record_segment).
        Runs from several threads overlap, pipelined segment by segment
        (runtime.segments.SegmentExecutor). ``into``, per image, may map
        outputs to the caller's result buffers (writable C-contiguous
        float32 arrays of the outputs' sizes, in their shapes or flat): an
        output is then written there and returned as that array where the
        device writes it last (runtime.segments.INTO), so that it is not
        copied a second time."""
        if len(images) != self.model.batch:
            raise ExecutionError(f"this binary runs {self.model.batch} image(s) at once; got {len(images)}")
        tables = [self._device_inputs(feeds, k) for k, feeds in enumerate(images)] if len(images) > 1 else \
            [self._device_inputs(images[0], 0)]  # (a comprehension is a call of its own: a tenth of a small run)
        if _FIRST_RUN in self._ran:  # (no context entered: a call's fixed cost)
            return self._segments.run_tables(tables, timings, codes, recorder, into)
        with self._first_run(_FIRST_RUN):
            return self._segments.run_tables(tables, timings, codes, recorder, into)

    def warm(self, who: str = "tessera") -> None:
        """Run the device program once on zero inputs and discard the results,
        so that the kernels its runs need are compiled (or loaded from the
        kernel cache) now, not inside a later call that has a deadline (kp's
        USB timeout counts from the send); on a cold cache, ``who`` says on
        stderr that kernels are compiling (runtime.jit.CompileReport)."""
        from runtime.jit import CompileReport

        zeros = {spec.name: np.zeros(spec.shape, np.dtype(spec.dtype)) for spec in self.model.inputs}
        with CompileReport(who):
            self.run_batch([zeros] * self.model.batch)

    def run_reference(self, feeds: Mapping[str, np.ndarray],
                      recorder: HostRecorder | None = None) -> dict[str, np.ndarray]:
        """The float reference program's outputs (FWDNXT's Run_th): no device
        codes, so no non-finite policy; NaN and ±Inf follow IEEE arithmetic.
        ``recorder`` gets the run and its kernels as host spans."""
        if self._reference is None:
            raise ExecutionError("this binary was compiled without the float reference program "
                                 "(strip_reference); Run_th needs it")
        if self._reference_missing:
            raise ExecutionError("the float reference program does not compute the model outputs "
                                 f"{self._reference_missing}")
        table = self._inputs(feeds)
        if not self._reference_takes_all:
            table = {n: table[n] for n in self._reference_inputs}
        if recorder is None and _FIRST_REFERENCE in self._ran:  # (no context, no clock: a call's fixed cost)
            return self._reference.run(table)
        steps: list | None = [] if recorder is not None else None
        start = time.perf_counter()
        with self._first(_FIRST_REFERENCE):
            outputs = self._reference.run(table, timings=steps)
        if recorder is not None:
            record_segment(recorder, "float reference", "CPU (float reference)", start, time.perf_counter(), steps, 1)
        return outputs

    # ------------------------------------------------------------ tracing
    @cached_property
    def timeline(self) -> DeviceTimeline | None:
        """The modelled timeline of one device run (the cycle model's
        schedule is static, so every run's is this one); None for a binary
        with no device segment."""
        return self.device.timeline() if self.model.device_segments else None

    def write_trace(self, path: str | os.PathLike, recorder: HostRecorder | None = None, device: bool = True,
                    metadata: Mapping[str, Any] | None = None) -> None:
        """Write the trace of one run to ``path`` (runtime/trace.py; atomic,
        a FileError naming the path if it cannot be): the device's timeline
        when the run used the device (``device``), and the ``recorder``'s
        host spans."""
        about = {"model": str(self.model.metadata.get("source", "model")), "images": self.model.batch,
                 **(metadata or {})}
        write_trace(path, self.timeline if device else None, recorder.snapshot() if recorder is not None else (), about)

    def _first(self, what: str) -> AbstractContextManager:
        """Ctrl-C deferred during the first run of ``what`` (it compiles
        kernels); nothing at all on later runs (a call's fixed cost)."""
        return _LATER if what in self._ran else self._first_run(what)

    @contextmanager
    def _first_run(self, what: str) -> Iterator[None]:
        with deferred_interrupt(what):
            yield
        self._ran.add(what)

    def check_finite(self, images: Sequence[Mapping[str, np.ndarray]]) -> None:
        """The non-finite policy on a run's images now, for an API that queues
        them (PutInput) and owes the error at the call, not at its result."""
        for image, feeds in enumerate(images):
            check_feeds(feeds, self.nonfinite, self._image_label(image))

    def _device_inputs(self, feeds: Mapping[str, np.ndarray], image: int) -> dict[str, np.ndarray]:
        """Image ``image``'s inputs, checked as every run becoming device codes
        checks them: the interface, then the non-finite policy, before the
        run starts (one pass over an input that is all finite:
        nonfinite.check_input), or, for an input the first segment quantizes
        on the device, in that quantization's pass (its table's FINITE
        check), which comes before anything runs too."""
        table = self._inputs(feeds)
        if self._scanned:
            where = self._image_label(image)
            for name in self._scanned:
                check_input(name, table[name], self.nonfinite, where)
        table[FINITE] = self._finite[image]
        return table

    def _refuse_nonfinite(self, names: frozenset[str], where: str, name: str, array: np.ndarray) -> None:
        """A table's FINITE check: the policy's error for a model input."""
        if name in names:
            check_input(name, array, self.nonfinite, where)

    def _image_label(self, image: int) -> str:
        return f" (image {image} of the run)" if self.model.batch > 1 else ""

    def _inputs(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        table = {}
        for spec, dtype in self._input_dtypes:
            if spec.name not in feeds:
                raise ExecutionError(f"missing input {spec.name!r}; the inputs are "
                                     f"{[t.name for t in self.model.inputs]}")
            array = feeds[spec.name]
            if type(array) is not np.ndarray:
                array = np.asarray(array)
            if array.shape != spec.shape or (array.dtype is not dtype and array.dtype != dtype):
                raise ExecutionError(f"input {spec.name!r} must be {spec.dtype}{list(spec.shape)}, got "
                                     f"{array.dtype}{list(array.shape)}")
            table[spec.name] = array
        return table
