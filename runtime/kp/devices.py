"""Simulated kp devices: which exist, and a connected group's work queue.

Which devices a scan finds is set by :func:`simulate_devices` or, before
its first call, by the environment variable ``TESSERA_KP_DEVICES``: a comma
list of chips, each optionally with a count, e.g. ``"KL720"`` (the
default), ``"2xKL720"`` or ``"KL520,KL720"``. Device k (from 0) has USB
port id k + 1. Every device runs a loaded model on an Engine of its own
(its own DRAM and simulator); the chip only changes the product id the
device reports and what ChannelOrdering.DEFAULT means for its results.

A :class:`FrameQueue` is a group's device buffer: a frame (one image, or one
crop of one) takes a slot from its send until its result is received.
Each device holds :data:`QUEUE_DEPTH` slots; a send takes a slot for each
of its frames, all at once or none: without room it blocks (up to the
group's timeout, then queues nothing) or, with frame drop on, drops the
oldest frames not being run. One thread per device takes the oldest waiting
frames and runs them on that device's EngineQueue (runtime/requests.py), the
idle device that has waited longest first, so frames go round the devices in
turn; results are received in send order, whichever device ran them.
"""
from __future__ import annotations

import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from runtime.engine import Engine
from runtime.errors import TesseraError
from runtime.kp.enums import ProductId
from runtime.requests import EngineQueue, Request

QUEUE_DEPTH = 4
"""Frames each simulated device holds between send and receive."""
CHIPS = {p.name.removeprefix("KP_DEVICE_"): p for p in ProductId}
_ENTRY = re.compile(r"^\s*(?:(\d+)\s*[xX*]\s*)?(\w+)\s*$")
_configured: list[ProductId] | None = None


class DeviceConfigError(TesseraError, ValueError):
    """TESSERA_KP_DEVICES or simulate_devices names no valid set of devices."""


def parse_devices(text: str) -> list[ProductId]:
    """The chips of a TESSERA_KP_DEVICES value ("2xKL720,KL520")."""
    chips = []
    for entry in text.split(","):
        match = _ENTRY.match(entry)
        if not match or match.group(2).upper() not in CHIPS:
            raise DeviceConfigError(f"TESSERA_KP_DEVICES entry {entry!r} is not [N x]CHIP with CHIP one of "
                                    f"{list(CHIPS)}")
        chips += [CHIPS[match.group(2).upper()]] * int(match.group(1) or 1)
    return chips


def simulate_devices(count: int = 1, chip: str | ProductId = "KL720") -> None:
    """Make scans find ``count`` simulated devices of ``chip`` ("KL720", a ProductId)."""
    global _configured
    product = ProductId(chip) if isinstance(chip, int) else CHIPS.get(str(chip).upper())
    if product is None or count < 1:
        raise DeviceConfigError(f"simulate_devices needs count >= 1 and a chip of {list(CHIPS)}; got {count}, {chip!r}")
    _configured = [product] * count


def simulated_devices() -> list[ProductId]:
    """The simulated devices, in port order."""
    if _configured is not None:
        return list(_configured)
    return parse_devices(os.environ.get("TESSERA_KP_DEVICES", "KL720"))


class QueueClosed(TesseraError):
    """The group was reset or disconnected while a call waited."""


class QueueTimeout(TesseraError):
    """A send or receive waited longer than the group's timeout."""


class QueueTooSmall(TesseraError):
    """A send has more frames than the whole group can hold at once."""


@dataclass(eq=False)
class Frame:
    """One inference of one model: its feeds, what to report with it, and
    once run its outputs, device codes and times (or the error)."""

    model: Any
    inference_number: int
    crop_number: int
    feeds: dict
    pre_ms: float = 0.0
    kind: str = ""
    preproc: list = field(default_factory=list)
    running: bool = False
    done: bool = False
    product_id: int = 0
    port: int = 0
    outputs: dict | None = None
    codes: dict | None = None
    hwtime_ms: float = 0.0
    cpu_ops: list = field(default_factory=list)
    error: BaseException | None = None


class SimDevice:
    """One simulated device: its chip and, per loaded model id, an EngineQueue."""

    def __init__(self, port: int, product: ProductId):
        self.port = port
        self.product = product
        self.queues: dict[int, EngineQueue] = {}

    def load(self, model_id: int, compiled) -> None:
        """Load ``compiled`` as ``model_id``, its kernels compiled now: the
        original device is slow to load a model, never to answer within the
        USB timeout (the examples' 5 s), which a first inference compiling
        kernels on a cold cache would miss."""
        self.unload()
        engine = Engine(compiled)
        try:
            engine.warm("kp")
        except TesseraError:
            pass  # the same error comes back from the first inference, where kp reports it
        self.queues[model_id] = EngineQueue(engine)

    def unload(self) -> None:
        for queue in self.queues.values():
            queue.close()
        self.queues.clear()


class FrameQueue:
    """A group's device buffer over its devices (see the module doc)."""

    def __init__(self, devices: list[SimDevice], on_done=None):
        self.devices = devices
        self.capacity = QUEUE_DEPTH * len(devices)
        self.dropped = 0
        self._on_done = on_done
        self._cond = threading.Condition()
        self._waiting: deque[Frame] = deque()
        self._order: deque[Frame] = deque()
        self._closed = False
        self._generation = 0
        self._idle: deque[int] = deque()
        """The ports of the devices waiting for work, longest waiting first:
        the first takes the next frame, so frames that come one at a time
        (a sender slower than the devices) go round the devices in turn, as
        a group spreads them, not to whichever thread the lock favours (12
        frames could all run on one device of two)."""
        self._threads = [threading.Thread(target=self._work, args=(d,), name=f"kp-device-{d.port}", daemon=True)
                         for d in devices]
        for thread in self._threads:
            thread.start()

    def put(self, frames: list[Frame], drop: bool, timeout: float | None) -> None:
        """Queue all of ``frames`` (one send's crops) or none: wait for
        room for every one (QueueTimeout after ``timeout`` s, nothing
        queued), or with ``drop`` make it by dropping the oldest frames not
        running, only once that makes enough; so a send that fails leaves no
        orphan crops behind to be received later or duplicated by a retry."""
        if len(frames) > self.capacity:
            raise QueueTooSmall(f"a send of {len(frames)} frames (one per crop box) needs room for all of them; "
                                f"the group holds {self.capacity} ({QUEUE_DEPTH} per device)")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while (excess := len(self._order) + len(frames) - self.capacity) > 0:
                if drop and sum(not f.running for f in self._order) >= excess:
                    for _ in range(excess):
                        self._drop_oldest()
                    break
                self._wait(deadline)
            self._order.extend(frames)
            self._waiting.extend(frames)
            self._cond.notify_all()

    def take(self, timeout: float | None) -> Frame:
        """The oldest frame sent and not received, once run (QueueTimeout
        after ``timeout`` s, nothing sent or not)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not (self._order and self._order[0].done):
                self._wait(deadline)
            frame = self._order.popleft()
            self._cond.notify_all()
        return frame

    def clear(self) -> None:
        """Forget every frame not received (a reset): waiting calls get QueueClosed."""
        with self._cond:
            self._generation += 1
            self._waiting.clear()
            self._order.clear()
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._generation += 1
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()

    def _wait(self, deadline: float | None) -> None:
        generation = self._generation
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise QueueTimeout()
        self._cond.wait(remaining)
        if self._closed or self._generation != generation:
            raise QueueClosed()

    def _drop_oldest(self) -> None:
        """Drop the oldest frame not running (the caller made sure there is one)."""
        victim = next(f for f in self._order if not f.running)
        self._order.remove(victim)
        if victim in self._waiting:
            self._waiting.remove(victim)
        self.dropped += 1

    def _work(self, device: SimDevice) -> None:
        """One device: run the oldest waiting frames, a batch at a time."""
        while True:
            with self._cond:
                self._idle.append(device.port)
                while not self._closed and not (self._waiting and self._idle[0] == device.port):
                    self._cond.wait()
                self._idle.remove(device.port)
                if self._closed:
                    return
                queue = device.queues.get(self._waiting[0].model.id)
                batch = queue.engine.model.batch if queue is not None else 1
                frames = [self._waiting.popleft() for _ in range(min(batch, len(self._waiting)))]
                for frame in frames:
                    frame.running = True
                if self._waiting:
                    self._cond.notify_all()  # the next device in line takes the frames left
            self._run(device, queue, frames)
            with self._cond:
                for frame in frames:
                    frame.running, frame.done = False, True
                self._cond.notify_all()

    def _run(self, device: SimDevice, queue: EngineQueue | None, frames: list[Frame]) -> None:
        if queue is None:
            for frame in frames:
                frame.error = RuntimeError(f"the model {frames[0].model.id} is not loaded on device {device.port}")
            return
        images = [f.feeds for f in frames]
        images += [images[-1]] * (queue.engine.model.batch - len(images))
        request = queue.run(Request(images, tag=frames, record=True))
        for k, frame in enumerate(frames):
            frame.product_id, frame.port = int(device.product), device.port
            frame.error = request.error
            if request.error is None:
                frame.outputs, frame.codes = request.outputs[k], request.codes[k]
                frame.hwtime_ms, frame.cpu_ops = request.hwtime_ms, request.timings
            if self._on_done is not None:
                self._on_done(frame)
