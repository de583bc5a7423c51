"""Asynchronous runs on one Engine: requests, a worker thread, two buffers.

The simulated device runs one thing at a time (an Engine's DRAM is shared
state). An :class:`EngineQueue` owns that one-at-a-time rule: requests
submitted to it run in submission order on a worker thread of its own, and
a synchronous :meth:`EngineQueue.run` on the caller's thread takes its
turn between them. Each :class:`Request` carries its caller's tag and, once
done, its outputs or the exception its run raised, never lost.
:class:`InOrderBuffers` adds FWDNXT's PutInput/GetResult discipline on top
(shared/reference/api-notes.md 1.6): at most ``capacity`` (two) inputs
between being put and their results being taken, results taken in input
order, an end marker. Nothing here knows an API's names or error types:
FWDNXT (runtime/fwdnxt.py) maps :class:`Closed` and :class:`Cancelled` to
its own conventions, and kp's devices (runtime/kp/devices.py) run their
frames on an :class:`EngineQueue`.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from runtime.engine import Engine
from runtime.errors import TesseraError
from runtime.trace import HostRecorder

Images = Sequence[Mapping[str, np.ndarray]]
"""The feeds of every image of one run (Engine.run_batch's argument)."""


class Closed(TesseraError):
    """The queue was closed (its engine freed) before or while a call waited."""


class Cancelled(TesseraError):
    """A request was cancelled by closing its queue before it ran."""


class Request:
    """One run: the images, the caller's ``tag``, and once done either
    ``outputs`` (one dict per image) with ``hwtime_ms`` (the modelled device
    time of that run, 0 for a run of the float reference) or ``error``.
    With ``record``, a device run also keeps ``codes`` (per image, the
    DeviceCodes of the outputs the device produced) and ``timings`` (each
    CPU kernel call's step name, kernel and seconds). A ``recorder``
    (runtime.trace.HostRecorder) gets the run's host spans, for a trace."""

    __slots__ = ("images", "tag", "device", "outputs", "hwtime_ms", "error", "codes", "timings", "recorder", "into",
                 "_done")

    def __init__(self, images: Images | None, tag: Any = None, device: bool = True, record: bool = False,
                 recorder: HostRecorder | None = None, into: Images | None = None):
        self.images = images
        self.into = into
        """Per image, the arrays a device run may write its outputs into (Engine.run_batch's ``into``)."""
        self.tag = tag
        self.device = device
        self.outputs: list[dict[str, np.ndarray]] | None = None
        self.hwtime_ms = 0.0
        self.codes: list[dict] | None = [] if record else None
        self.timings: list | None = [] if record else None
        self.recorder = recorder
        self.error: BaseException | None = None
        self._done: threading.Event | None = None
        """Set once done: a new Event when the request is queued
        (EngineQueue.submit), the shared :data:`_FINISHED` when it is done
        at once (a synchronous run, an end marker, a cancellation): a
        synchronous call makes no threading object."""

    @property
    def is_end(self) -> bool:
        """An end marker: no images, nothing run, done from the start."""
        return self.images is None

    @property
    def done(self) -> bool:
        return self._done is not None and self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the request is done (or ``timeout`` seconds); whether it
        is. A request given to no queue would never be: that is an error."""
        if self._done is None:
            raise TesseraError("this request was neither submitted to a queue nor run: nothing will finish it")
        return self._done.wait(timeout)

    def result(self) -> list[dict[str, np.ndarray]]:
        """The outputs, waiting for them; the run's exception if it failed."""
        self.wait()
        if self.error is not None:
            raise self.error
        return self.outputs

    def _execute(self, engine: Engine, after_run: Callable[[Request], None] | None) -> None:
        """Run; keep the outputs or the exception (done is set by the caller)."""
        try:
            if self.device:
                self.outputs = engine.run_batch(self.images, self.timings, self.codes, self.recorder, self.into)
                self.hwtime_ms = engine.device.hwtime_ms
                if after_run is not None:
                    after_run(self)
            else:
                self.outputs = [engine.run_reference(feeds, self.recorder) for feeds in self.images]
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the request's owner
            self.error = exc  # (an interrupt too: EngineQueue.run raises it again on its caller's thread)

    def _finish(self) -> None:
        """Mark the request done, waking whoever waits for it."""
        if self._done is None:
            self._done = _FINISHED
        else:
            self._done.set()

    def _cancel(self) -> None:
        self.error = Cancelled("the engine was freed before this request ran")
        self._finish()


_FINISHED = threading.Event()
_FINISHED.set()
"""The done flag of every request done before anyone could wait for it (never cleared)."""


class EngineQueue:
    """Runs requests on one Engine, one at a time, in submission order, on
    a worker thread started with the first request. ``after_run(request)``
    is called on that thread right after each device run, before the next
    one touches the device (to dump its memory, for instance)."""

    def __init__(self, engine: Engine, after_run: Callable[[Request], None] | None = None):
        self.engine = engine
        self._after_run = after_run
        self._device = threading.Lock()
        self._cond = threading.Condition()
        self._queue: deque[Request] = deque()
        self._unfinished = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> int:
        """Requests submitted and not finished (waiting or running)."""
        return self._unfinished

    def submit(self, request: Request) -> Request:
        """Queue ``request`` to run after those already submitted."""
        with self._cond:
            if self._closed:
                raise Closed("the engine was freed; no request can be submitted")
            request._done = threading.Event()
            self._queue.append(request)
            self._unfinished += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="tessera-engine-queue", daemon=True)
                self._thread.start()
            self._cond.notify()
        return request

    def run(self, request: Request) -> Request:
        """Run ``request`` now, on the caller's thread, as soon as the device
        is free (between two queued requests); done when this returns."""
        with self._device:  # not acquire() then try: see runtime.segments (a KeyboardInterrupt between them)
            if self._closed:
                request._cancel()
            else:
                request._execute(self.engine, self._after_run)
                request._finish()
        if request.error is not None and not isinstance(request.error, Exception):
            raise request.error  # KeyboardInterrupt: the caller's, not the run's failure
        return request

    def close(self, cancel: bool = True) -> None:
        """Stop: requests not started are cancelled (or, with ``cancel``
        false, run first); the one running finishes; the worker is joined."""
        with self._cond:
            self._closed = True
            dropped = list(self._queue) if cancel else []
            if cancel:
                self._queue.clear()
                self._unfinished -= len(dropped)
            self._cond.notify_all()
        for request in dropped:
            request._cancel()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._device:  # a synchronous run in progress on another thread ends first
            pass

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                request = self._queue.popleft()
            with self._device:
                request._execute(self.engine, self._after_run)
            with self._cond:
                self._unfinished -= 1
            request._finish()


class InOrderBuffers:
    """FWDNXT's input buffers over an EngineQueue: :meth:`put` copies
    nothing (the caller gives images it will not touch again) and submits a
    run at once; at most ``capacity`` runs are between put and take (a put
    beyond waits, or fails when not blocking); :meth:`take` gives them back
    in put order. An end marker (:meth:`put_end`) takes no buffer and comes
    back, in its turn, as a request whose ``is_end`` is true."""

    def __init__(self, queue: EngineQueue, capacity: int = 2):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.queue = queue
        self.capacity = capacity
        self._cond = threading.Condition()
        self._order: deque[Request] = deque()
        self._held = 0
        self._closed = False

    @property
    def held(self) -> int:
        """Buffers holding an input or a result not yet taken."""
        return self._held

    def put(self, request: Request, block: bool = True) -> bool:
        """Submit ``request`` when a buffer is free; without ``block``,
        False at once when both are held. Closed if closed meanwhile."""
        with self._cond:
            while self._held >= self.capacity and not self._closed:
                if not block:
                    return False
                self._cond.wait()
            if self._closed:
                raise Closed("the engine was freed while this input waited for a buffer")
            self.queue.submit(request)
            self._held += 1
            self._order.append(request)
            self._cond.notify_all()
        return True

    def put_end(self) -> None:
        """Queue an end marker after the inputs already put."""
        marker = Request(None)
        marker._finish()
        with self._cond:
            if self._closed:
                raise Closed("the engine was freed; no end marker can be put")
            self._order.append(marker)
            self._cond.notify_all()

    def take(self, block: bool = True) -> Request | None:
        """The oldest request not taken yet, once done (waiting for it to be
        put and run); without ``block``, None at once when it is not ready.
        Closed when the queue is closed with nothing left to take. It is
        taken only once done, so a take interrupted while it waits (Ctrl-C)
        leaves it for the next, and two takers never get the same one."""
        while True:
            with self._cond:
                while not self._order or (not block and not self._order[0].done):
                    if not block:
                        return None
                    if self._closed:
                        raise Closed("the engine was freed while waiting for a result")
                    self._cond.wait()
                request = self._order[0]
            request.wait()
            with self._cond:
                if self._order and self._order[0] is request:
                    self._order.popleft()
                    if not request.is_end:
                        self._held -= 1
                    self._cond.notify_all()
                    return request

    def close(self) -> None:
        """Wake every waiting put (Closed) and every take waiting for an input
        to be put (Closed); a take already holding a request gets it once done
        (cancelled when the queue cancels it)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
