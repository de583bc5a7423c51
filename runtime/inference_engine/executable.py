"""ExecutableNetwork and InferRequest: a loaded network and its requests,
running on the Engine from threads of their own (runs overlap segment by
segment: runtime.segments.SegmentExecutor); perf counts from the cycle
model and the CPU kernels' measured times (provenance.py); with PERF_COUNT
YES and TESSERA_TRACE, each request's last run as a trace (docs/trace.md)."""
from __future__ import annotations

import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from runtime.errors import TesseraError
from runtime.files import FileError
from runtime.inference_engine.api_types import (
    DEFERRED,
    NOT_QUANTIZED,
    PRECISIONS,
    Blob,
    InferenceEngineError,
    StatusCode,
    WaitMode,
)
from runtime.inference_engine.provenance import (
    device_layer_times,
    perf_counts,
    placements,
)
from runtime.preprocess import PreprocessError, PreprocessSpec
from runtime.trace import HostRecorder

if TYPE_CHECKING:
    from runtime.inference_engine.ie_api import IENetwork


# ---------------------------------------------------------------- running
class ExecutableNetwork:
    """A loaded network: ``requests`` (a tuple of InferRequests), ``infer``
    (synchronous, on request 0) and ``start_async``. ``deferred`` (a
    compiler.deferred_calibration.DeferredCalibration, whose float Engine is
    ``engine``) runs the requests until its int8 program takes over;
    ``calibration`` says how a network without one was calibrated."""

    def __init__(self, engine, network: IENetwork, num_requests: int, device: str = "", config=None,
                 calibration: str = NOT_QUANTIZED, deferred=None):
        self._fixed = engine
        self._deferred = deferred
        self._calibration = DEFERRED if deferred is not None else calibration
        self._network = network
        self._device = device
        self._config = dict(config or {})
        self._outputs = network._output_names()
        self._trace = self._config.get("TESSERA_TRACE") or ""
        """Where each request writes its last run's trace ('' = nowhere): TESSERA_TRACE, with PERF_COUNT YES."""
        if self._trace and self._config.get("PERF_COUNT") != "YES":
            warnings.warn(f"load: TESSERA_TRACE {self._trace!r} is written only with PERF_COUNT 'YES' (the trace "
                          "is a performance counter); no trace will be written", RuntimeWarning, stacklevel=3)
            self._trace = ""
        shapes = {t.name: list(t.shape) for t in engine.model.outputs}
        network._output_shapes = {key: shapes[tensor] for key, tensor in self._outputs.items() if tensor in shapes}
        self._views: dict[Any, tuple[dict, dict]] = {}
        num_requests = num_requests or self.get_metric("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
        self._pool = ThreadPoolExecutor(max_workers=num_requests, thread_name_prefix="tessera-ie")
        self.requests = tuple(InferRequest(self, i) for i in range(num_requests))

    def infer(self, inputs: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Run request 0 synchronously; its outputs (copies)."""
        request = self.requests[0]
        request.infer(inputs)
        return {name: np.array(value) for name, value in request.outputs.items()}

    def start_async(self, request_id: int, inputs: Mapping[str, np.ndarray] | None = None) -> InferRequest:
        if not isinstance(request_id, (int, np.integer)) or not 0 <= request_id < len(self.requests):
            raise InferenceEngineError(f"start_async: request_id {request_id!r} is outside [0, "
                                       f"{len(self.requests) - 1}]")
        request = self.requests[int(request_id)]
        request.async_infer(inputs)
        return request

    @property
    def _engine(self):
        """The Engine a request started now runs on."""
        return self._deferred.engine if self._deferred is not None else self._fixed

    def _view(self, engine) -> tuple[dict, dict]:
        """(placements, device layer times) of one of this network's Engines."""
        if engine not in self._views:
            self._views[engine] = (placements(engine.model), device_layer_times(engine))
        return self._views[engine]

    def get_exec_graph_info(self) -> dict[str, dict]:
        """Layer -> where it runs (device, segment index, kernel or op): in
        the program a request started now runs."""
        return {name: dict(where) for name, where in self._view(self._engine)[0].items()}

    def get_metric(self, metric_name: str) -> Any:
        """NETWORK_NAME; OPTIMAL_NUMBER_OF_INFER_REQUESTS (how many requests
        can run at once: one per CPU segment, one for all accelerator
        segments, as the segments' locks allow); SUPPORTED_METRICS;
        SUPPORTED_CONFIG_KEYS; TESSERA_CALIBRATION; TESSERA_PREPROCESS."""
        from runtime.compiled import CpuSegment

        segments = self._engine.model.segments
        cpu = sum(isinstance(segment, CpuSegment) for segment in segments)
        metrics = {"NETWORK_NAME": self._network.name,
                   "OPTIMAL_NUMBER_OF_INFER_REQUESTS": max(1, cpu + (cpu < len(segments))),
                   "SUPPORTED_CONFIG_KEYS": sorted(self._config),
                   "TESSERA_CALIBRATION": self._calibration_metric(), "TESSERA_PREPROCESS": self._preprocess_metric}
        metrics["SUPPORTED_METRICS"] = sorted([*metrics, "SUPPORTED_METRICS"])
        if metric_name not in metrics:
            raise InferenceEngineError(f"get_metric: unknown metric {metric_name!r} of a loaded network; the "
                                       f"metrics are {metrics['SUPPORTED_METRICS']}")
        value = metrics[metric_name]
        return value() if callable(value) else value

    def _preprocess_metric(self) -> dict[str, Any] | None:
        """TESSERA_PREPROCESS: how the binary's images are pre-processed, as
        the compiler recorded it (runtime.preprocess.PreprocessSpec's record,
        FWDNXT's GetInfo('preprocess')), or None; read when asked for."""
        try:
            spec = PreprocessSpec.from_metadata(self._engine.model.metadata)
        except PreprocessError as exc:
            raise InferenceEngineError(f"get_metric: TESSERA_PREPROCESS: {exc}") from None
        return None if spec is None else spec.to_metadata()

    def _calibration_metric(self) -> dict[str, Any]:
        """TESSERA_CALIBRATION: ``state`` (AT_LOAD, NOT_QUANTIZED, BINARY, or
        with no calibration data COLLECTING, BUILDING, SWITCHED, FAILED),
        ``images`` collected of ``wanted``, ``runs`` started,
        ``first_int8_run`` (the first run on the int8 program, runs numbered
        from 1 as they start; None before), ``error`` (a failed build's)."""
        if self._deferred is None:
            return {"state": self._calibration, "images": 0, "wanted": 0, "runs": 0, "first_int8_run": None,
                    "error": ""}
        status = self._deferred.status()
        return {"state": status.state, "images": status.images, "wanted": status.wanted, "runs": status.runs,
                "first_int8_run": status.first_device_run, "error": status.error}

    def get_config(self, config_name: str) -> Any:
        """A configuration key's value as the network was loaded with it."""
        if config_name not in self._config:
            raise InferenceEngineError(f"get_config: unknown key {config_name!r}; this network's keys are "
                                       f"{sorted(self._config)}")
        return self._config[config_name]

    def _run(self, feeds: dict[str, np.ndarray], timings: list, recorder: HostRecorder | None = None
             ) -> tuple[dict[str, np.ndarray], Any]:
        """The outputs of one run, and the Engine that ran it (``recorder``: its host spans)."""
        batch = self._engine.model.batch
        if batch != 1:
            raise InferenceEngineError(f"this binary runs {batch} images at once (batch mode); the "
                                       "Inference-Engine API runs one input set per request")
        if self._deferred is not None:
            (outputs,), engine = self._deferred.run_batch([feeds], timings, recorder)
        else:
            engine = self._fixed
            (outputs,) = engine.run_batch([feeds], timings, recorder=recorder)
        return {key: outputs[tensor] for key, tensor in self._outputs.items()}, engine

    def _recorder(self) -> HostRecorder | None:
        """A recorder of one run's host spans while requests write traces."""
        return HostRecorder() if self._trace else None

    def _write_trace(self, index: int, engine, recorder: HostRecorder) -> None:
        """Request ``index``'s last run (on ``engine``) as a trace in its
        file; an InferenceEngineError naming the file when it cannot be."""
        path = self._trace.replace("{request}", str(index))
        try:
            engine.write_trace(path, recorder, metadata={"api": "Inference Engine", "network": self._network.name,
                                                         "request": index})
        except FileError as exc:
            raise InferenceEngineError(f"request {index}: TESSERA_TRACE {exc.path!r} could not be written: "
                                       f"{exc.cause}; the request's outputs are kept") from exc

    def __del__(self):
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)

    def __repr__(self) -> str:
        return f"<inference_engine.ie_api.ExecutableNetwork {self._network.name!r}>"


class InferRequest:
    """One request: ``inputs`` (buffers to fill, or pass arrays to
    ``infer``/``async_infer``), ``outputs`` (the last result), ``wait``,
    ``set_completion_callback``, ``get_perf_counts``."""

    def __init__(self, network: ExecutableNetwork, index: int):
        self._net = network
        self.index = index
        self.inputs = {t.name: np.zeros(t.shape, np.dtype(t.dtype)) for t in network._engine.model.inputs}
        self.outputs: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._busy = False
        """Started and not done (guarded by ``_lock``)."""
        self._finished = threading.Condition(self._lock)
        """Wakes the threads in :meth:`wait` (``_waiting`` of them) when a run
        is done. A threading.Event cleared and set on every run cost a
        small model's call 1-2 µs; the flag and the lock cost a tenth."""
        self._waiting = 0
        self._status = StatusCode.INFER_NOT_STARTED
        self._error: BaseException | None = None
        self._callback: tuple[Callable, Any] | None = None
        self._timings: list = []
        self._wall = 0.0
        self._ran_on = None
        """The Engine of the last run (float or int8 while a network calibrates on its inputs)."""

    @property
    def input_blobs(self) -> dict[str, Blob]:
        """Input name -> Blob whose ``buffer`` is this request's input array (2020.2+)."""
        return {name: Blob(buffer) for name, buffer in self.inputs.items()}

    @property
    def output_blobs(self) -> dict[str, Blob]:
        """Output name -> Blob of the last run's result (2020.2+)."""
        return {name: Blob(value) for name, value in self.outputs.items()}

    @property
    def latency(self) -> float:
        """The last run's wall time in milliseconds (2019 R2+)."""
        return self._wall * 1000.0

    # ------------------------------------------------------------ running
    def infer(self, inputs: Mapping[str, np.ndarray] | None = None) -> None:
        """Run synchronously; fills ``outputs``. Errors are raised."""
        self._start(inputs)
        self._execute()
        if self._error is not None:
            raise self._error

    def async_infer(self, inputs: Mapping[str, np.ndarray] | None = None) -> None:
        """Start running; ``wait`` for the result."""
        self._start(inputs)
        self._net._pool.submit(self._execute)

    def _start(self, inputs: Mapping[str, np.ndarray] | None) -> None:
        with self._lock:
            if self._busy:
                raise InferenceEngineError(f"request {self.index} is busy (REQUEST_BUSY): wait for it before "
                                           "starting it again")
            if inputs is not None:
                self._copy_inputs(inputs)
            self._busy = True
            self._status, self._error = StatusCode.RESULT_NOT_READY, None

    def _copy_inputs(self, inputs: Mapping[str, np.ndarray]) -> None:
        if not (type(inputs) is dict or isinstance(inputs, Mapping)):  # (an ABC's check costs a microsecond)
            raise InferenceEngineError(f"inputs must be a dict of input name -> array, got {type(inputs).__name__}")
        for name, value in inputs.items():
            if name not in self.inputs:
                raise InferenceEngineError(f"request {self.index}: the network has no input {name!r}; its inputs "
                                           f"are {list(self.inputs)}")
            buffer = self.inputs[name]
            array = value if type(value) is np.ndarray else np.asarray(value)
            if array.dtype is not buffer.dtype and not np.can_cast(array.dtype, buffer.dtype, casting="same_kind"):
                precision = PRECISIONS.get(buffer.dtype.name, buffer.dtype.name)
                raise InferenceEngineError(f"request {self.index}: input {name!r} must be a number array that "
                                           f"converts to its precision {precision}, got {array.dtype}")
            if array.shape != buffer.shape:
                if array.size == buffer.size and array.ndim != buffer.ndim:
                    array = array.reshape(buffer.shape)
                else:
                    raise InferenceEngineError(f"request {self.index}: input {name!r} must have shape "
                                               f"{list(buffer.shape)}, got {list(array.shape)}")
            buffer[...] = array

    def _execute(self) -> None:
        timings: list = []
        recorder = self._net._recorder()
        start = time.perf_counter()
        try:
            feeds = {name: buf.copy() for name, buf in self.inputs.items()}
            self.outputs, self._ran_on = self._net._run(feeds, timings, recorder)
            status, error = StatusCode.OK, None
        except TesseraError as exc:
            status, error = StatusCode.GENERAL_ERROR, InferenceEngineError(f"request {self.index}: {exc}")
        except Exception as exc:  # noqa: BLE001 - kept for wait() and re-raised by infer()
            status, error = StatusCode.GENERAL_ERROR, exc
        self._timings, self._wall = timings, time.perf_counter() - start
        if recorder is not None and error is None:
            try:
                self._net._write_trace(self.index, self._ran_on, recorder)
            except InferenceEngineError as exc:
                status, error = StatusCode.GENERAL_ERROR, exc
        callback = self._callback
        with self._lock:
            self._status, self._error = status, error
            self._busy = False
            if self._waiting:
                self._finished.notify_all()
        if callback is not None:
            try:
                callback[0](int(status), callback[1])
            except Exception as exc:  # noqa: BLE001 - a callback's error is reported, never lost
                warnings.warn(f"request {self.index}: completion callback raised {type(exc).__name__}: {exc}",
                              RuntimeWarning, stacklevel=1)

    def wait(self, timeout: int | None = None) -> int:
        """The request's StatusCode once done (timeout -1 or None: block; 0:
        the status now; > 0: at most that many ms, then the status: -9
        RESULT_NOT_READY, or -8 REQUEST_BUSY when a completion callback is set,
        as the 2019 Python API)."""
        if timeout is None:
            timeout = WaitMode.RESULT_READY
        if not isinstance(timeout, (int, np.integer)) or timeout < -1:
            raise InferenceEngineError(f"wait: timeout must be -1, 0 or a positive number of ms, got {timeout!r}")
        if self._status == StatusCode.INFER_NOT_STARTED:
            return int(StatusCode.INFER_NOT_STARTED)
        with self._lock:
            if self._busy and timeout != 0:
                self._waiting += 1
                try:
                    self._finished.wait_for(lambda: not self._busy, None if timeout == -1 else timeout / 1000)
                finally:
                    self._waiting -= 1
            done = not self._busy
        if not done:
            return int(StatusCode.REQUEST_BUSY if self._callback is not None and timeout > 0
                       else StatusCode.RESULT_NOT_READY)
        return int(self._status)

    def set_completion_callback(self, py_callback: Callable[[int, Any], None], py_data: Any = None) -> None:
        """``py_callback(status, py_data)`` after each run, on the thread that ran it."""
        if not callable(py_callback):
            raise InferenceEngineError(f"set_completion_callback: {py_callback!r} is not callable")
        self._callback = (py_callback, py_data)

    # ------------------------------------------------------------ counters
    def get_perf_counts(self) -> dict[str, dict[str, Any]]:
        """Per layer of the network: status (EXECUTED, OPTIMIZED_OUT,
        NOT_RUN), exec_type, layer_type, real_time and cpu_time (µs: device
        layers their modelled time, CPU layers their measured time of the
        last run), execution_index; of the program the last run ran on."""
        net = self._net
        placed, layer_times = net._view(self._ran_on if self._ran_on is not None else net._engine)
        return perf_counts({name: layer.type for name, layer in net._network.layers.items()}, placed,
                           layer_times, self._timings, ran=self._status in (StatusCode.OK, StatusCode.GENERAL_ERROR))

    def __repr__(self) -> str:
        return f"<inference_engine.ie_api.InferRequest {self.index} status={self._status.name}>"

