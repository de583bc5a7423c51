"""onnx's C++ operations (shape inference, the function inliner, the version
converter) run on a model in a worker process (compiler/frontend/onnx_worker.py),
so that an abort, a segfault or a hang of onnx's C++ on a malformed model
becomes a ModelImportError naming the operation, the signal and the file
instead of taking the caller's process down.

The worker is spawned once per process, on first use (0.6 to 0.8 s: Python
and onnx start), and reused: a call costs the model's serialization and two
pipe transfers (shape inference measured at 0.1 ms for a one-node model, 2
ms for ResNet-50's graph without its weights), where forking the caller for
each call cost 11 to 54 ms (page tables of a 120 to 430 MB process) and
would risk the locks of the caller's other threads (Numba's). A worker that
died or hung is replaced at the next call.
"""
from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time

from onnx import ModelProto

from compiler.errors import ModelImportError

WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "onnx_worker.py")

TIMEOUT_S = 60.0
"""Longest one operation may take before the worker is killed (ResNet-50's
shape inference takes milliseconds)."""

FUNCTIONS = {"infer_shapes": "onnx.shape_inference.infer_shapes",
             "inline_local_functions": "onnx.inliner.inline_local_functions",
             "convert_version": "onnx.version_converter.convert_version"}
"""The operations onnx_worker.py runs, by the onnx function each calls."""


class OnnxOperationError(Exception):
    """onnx raised an exception of its own on the model (its type and message);
    the caller words the ModelImportError."""


def run_isolated(operation: str, model: ModelProto, label: str, **args) -> ModelProto:
    """The model ``operation`` (a key of FUNCTIONS) makes of ``model``, run in
    the worker; ``label`` names the model in errors."""
    payload = model.SerializeToString()
    with _LOCK:
        worker = _worker()
        try:
            reply, data = _Call(worker, operation, label).run(args, payload)
        except BaseException:  # a crash, a timeout, or a Ctrl-C that leaves a reply in the pipe
            _retire(worker)
            raise
    if "error" in reply:
        raise OnnxOperationError(reply["error"])
    result = ModelProto()
    result.ParseFromString(data)
    return result


class _Worker:
    """The worker process, its pipes, and a file collecting its stderr (onnx
    prints a failed assertion's text there before aborting)."""

    def __init__(self):
        self.errors = tempfile.TemporaryFile()
        try:
            self.process = subprocess.Popen([sys.executable, "-P", WORKER_SCRIPT], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=self.errors)
        except OSError as exc:  # out of processes or file descriptors
            self.errors.close()
            raise ModelImportError(f"the worker process for onnx's C++ cannot start: {exc.strerror or exc}") \
                from None
        self.pending = bytearray()

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """End the worker (killed if it does not leave once its stdin closes)."""
        try:
            self.process.stdin.close()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self.errors.close()

    def last_error_line(self) -> str:
        """The last line the worker wrote to stderr, shortened."""
        self.errors.seek(0)
        lines = self.errors.read().decode(errors="replace").strip().splitlines()
        return lines[-1][-300:] if lines else "no message"


class _Call:
    """One request to the worker and its reply; a death or a timeout is a
    ModelImportError."""

    def __init__(self, worker: _Worker, operation: str, label: str):
        self.worker, self.operation, self.label = worker, operation, label
        self.deadline = time.monotonic() + TIMEOUT_S

    def run(self, args: dict, payload: bytes) -> tuple[dict, bytes]:
        """Send the request, return the reply header and bytes."""
        self.worker.errors.seek(0)
        self.worker.errors.truncate()
        header = json.dumps({"operation": self.operation, "args": args, "size": len(payload)})
        try:
            self.worker.process.stdin.write(header.encode() + b"\n")
            self.worker.process.stdin.write(payload)
            self.worker.process.stdin.flush()
        except BrokenPipeError:
            raise self._died() from None
        reply = json.loads(self._read(None))
        return reply, self._read(reply.get("size", 0))

    def _read(self, count: int | None) -> bytes:
        """``count`` bytes from the worker (None: one line)."""
        pending = self.worker.pending
        while (end := _end(pending, count)) is None:
            pending += self._receive()
        data = bytes(pending[:end])
        del pending[:end]
        return data

    def _receive(self) -> bytes:
        """What the worker writes next, waited for until the deadline."""
        fd = self.worker.process.stdout.fileno()
        left = self.deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise self._timed_out()
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            raise self._died()
        return chunk

    def _died(self) -> ModelImportError:
        detail = self.worker.last_error_line()
        self.worker.stop()
        code = self.worker.process.returncode
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        return ModelImportError(f"{FUNCTIONS[self.operation]} crashed on this model: its worker process {how} "
                                f"({detail})", file=self.label)

    def _timed_out(self) -> ModelImportError:
        self.worker.process.kill()
        return ModelImportError(f"{FUNCTIONS[self.operation]} did not finish on this model within {TIMEOUT_S:g} s "
                                "(its worker process was killed)", file=self.label)


def _end(pending: bytearray, count: int | None) -> int | None:
    """Where the first ``count`` bytes (None: the first line) of ``pending``
    end; None while it does not hold them yet."""
    if count is None:
        return pending.find(b"\n") + 1 or None
    return count if len(pending) >= count else None


_LOCK = threading.Lock()
_current: _Worker | None = None


def _worker() -> _Worker:
    """The running worker, started (again) when there is none."""
    global _current
    if _current is not None and not _current.alive():
        _retire(_current)
    if _current is None:
        _current = _Worker()
    return _current


def _retire(worker: _Worker) -> None:
    """Stop ``worker`` and start a new one at the next call."""
    worker.stop()
    _forget()


def _forget() -> None:
    """Drop the worker object (stopped, or a forked child's copy of its parent's)."""
    global _current
    _current = None


def _after_fork_in_child() -> None:
    """A forked child starts its own worker: it must not share its parent's
    pipes, nor wait on a lock a parent's thread held."""
    global _LOCK
    _LOCK = threading.Lock()
    _forget()


def _stop_at_exit() -> None:
    if _current is not None:
        _current.stop()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_stop_at_exit)
