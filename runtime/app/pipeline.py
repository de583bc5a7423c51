"""The application's pipeline over one runtime instance (api-notes 6.2):
a pool of pre-processing workers feeding in input order, a device thread
putting batches of up to ``max_bs`` images through FWDNXT's PutInput with
three staging buffers in rotation, a download thread taking them back with
GetResult (in input order, as the API guarantees), and a logger thread
handing each row, in input order, to the caller's sink.

:func:`run_images` runs one list of images on one FWDNXT instance and
returns its rows in input order, so that a scale-out can shard an image
list over several instances and concatenate what they return."""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from runtime.app.images import ImageError, Settings, load_image

STAGES = ("start", "preprocessed", "upload_start", "upload_end", "device_end", "download_end")
"""The per-image timestamps (seconds from the start of the run)."""
STAGING_BUFFERS = 3
"""Batches between upload and download at once (the original's triple buffering)."""


@dataclass
class Row:
    """One image's result: its position in the input list, file name, the
    top classes (best first) with their scores, timestamps (:data:`STAGES`),
    and the number and hwtime of the device run (PutInput) that held it."""

    index: int
    file: str
    top: tuple[int, ...]
    scores: tuple[float, ...]
    times: dict[str, float] = field(default_factory=dict)
    hwtime_ms: float = 0.0
    run: int = 0


@dataclass
class RunResult:
    """What :func:`run_images` gives back: the rows in input order, the
    images skipped (file name, why), and the wall time of the run."""

    rows: list[Row]
    skipped: list[tuple[str, str]]
    wall_s: float


@dataclass
class _Item:
    index: int
    path: Path
    image: np.ndarray | None
    error: str
    times: dict[str, float]


def run_images(ie, paths: Sequence[Path], settings: Settings, *, max_bs: int = 1, workers: int = 1, top: int = 5,
               fc: np.ndarray | None = None, sink: Callable[[Row], None] | None = None,
               skipped: Callable[[str, str], None] | None = None) -> RunResult:
    """Run every image of ``paths`` on ``ie`` (an FWDNXT with a binary
    loaded; blocking mode), ``max_bs`` images a batch, ``workers``
    pre-processing threads; ``fc`` ([classes, features]) is applied on the
    host to the binary's first output; ``sink`` gets each row in input
    order as it comes, ``skipped`` each unreadable image (name, why)."""
    clock = _Clock()
    rows: queue.Queue = queue.Queue()
    failures: list[BaseException] = []
    device = _Device(ie, settings, max_bs, top, fc, clock, rows, failures)
    result = RunResult([], [], 0.0)

    def log() -> None:
        while (row := rows.get()) is not None:
            result.rows.append(row)
            if sink is not None:
                try:
                    sink(row)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                    failures.append(exc)
                    device.abort()

    def note_skip(name: str, why: str) -> None:
        result.skipped.append((name, why))
        if skipped is not None:
            skipped(name, why)

    logger = threading.Thread(target=log, name="tessera-infer-logger", daemon=True)
    downloader = threading.Thread(target=device.download, name="tessera-infer-download", daemon=True)
    logger.start()
    downloader.start()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tessera-infer-pre") as pool:
        try:
            device.upload(_preprocessed(pool, paths, settings, clock, workers), note_skip)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after the threads stop
            failures.append(exc)
            device.abort()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    downloader.join()
    rows.put(None)
    logger.join()
    if failures:
        raise failures[0]
    result.wall_s = clock()
    return result


class _Clock:
    """Seconds since the run started."""

    def __init__(self):
        self._t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self._t0


def _preprocessed(pool: ThreadPoolExecutor, paths: Sequence[Path], settings: Settings, clock: _Clock,
                  workers: int) -> Iterator[_Item]:
    """Each image pre-processed by the pool, yielded in input order, with
    at most a few images per worker decoded ahead (bounded memory)."""
    window = max(4, 4 * workers)
    pending: list[Future] = []
    for index, path in enumerate(paths):
        pending.append(pool.submit(_prepare, index, path, settings, clock, clock()))
        if len(pending) >= window:
            yield pending.pop(0).result()
    for future in pending:
        yield future.result()


def _prepare(index: int, path: Path, settings: Settings, clock: _Clock, start: float) -> _Item:
    try:
        image, error = load_image(path, settings), ""
    except ImageError as exc:
        image, error = None, str(exc)
    return _Item(index, path, image, error, {"start": start, "preprocessed": clock()})


class _Device:
    """The device side: upload (the device thread, on the caller's thread
    here) and download (a thread), over one FWDNXT instance."""

    def __init__(self, ie, settings: Settings, max_bs: int, top: int, fc, clock: _Clock, rows: queue.Queue,
                 failures: list):
        self.ie, self.max_bs, self.top, self.fc, self.clock, self.rows = ie, max_bs, top, fc, clock, rows
        self.failures = failures
        dims = [int(d) for d in ie.GetInfo("inshapes").split(";")[0].split("x")]
        self.unit = int(ie.GetInfo("numbatch"))
        """Images per PutInput: the binary's batch (cards x clusters x images per cluster)."""
        self.shape = tuple(dims[1:])
        counts = ie.GetInfo("outshapes").split(";")
        self.counts = [int(np.prod([int(d) for d in s.split("x")])) for s in counts]
        units = -(-max_bs // self.unit)
        self.staging = [np.zeros((units * self.unit, *self.shape), np.float32) for _ in range(STAGING_BUFFERS)]
        self.free = threading.Semaphore(STAGING_BUFFERS)
        self.aborted = threading.Event()
        self.runs = 0

    def upload(self, items: Iterator[_Item], skip: Callable[[str, str], None]) -> None:
        """Batches of up to max_bs readable images through PutInput, the
        last partial batch at its real size (rounded up to whole runs of
        the binary's batch, padded with zeros); then the end marker."""
        batch: list[_Item] = []
        number = 0
        try:
            for item in items:
                if self.aborted.is_set():
                    return
                if item.image is None:
                    skip(item.path.name, item.error)
                    continue
                batch.append(item)
                if len(batch) == self.max_bs:
                    self._put(batch, number)
                    batch, number = [], number + 1
            if batch:
                self._put(batch, number)
        finally:
            if not self.aborted.is_set():
                self.ie.PutInput(None, None)

    def _put(self, batch: list[_Item], number: int) -> None:
        self.free.acquire()
        if self.aborted.is_set():
            return
        buffer = self.staging[number % STAGING_BUFFERS]
        size = -(-len(batch) // self.unit) * self.unit
        for slot, item in enumerate(batch):
            buffer[slot] = item.image
            item.image = None
        buffer[len(batch):size] = 0
        for first in range(0, size, self.unit):
            members = batch[first:first + self.unit]
            start = self.clock()
            for item in members:
                item.times["upload_start"] = start
            self.ie.PutInput(buffer[first:first + self.unit], (members, first + self.unit >= size, self.runs))
            self.runs += 1
            end = self.clock()
            for item in members:
                item.times["upload_end"] = end

    def download(self) -> None:
        """GetResult until the end marker: each image's top classes, as rows
        in input order to the logger."""
        results = [np.empty(c * self.unit, np.float32) for c in self.counts]
        try:
            while (tag := self.ie.GetResult(results if len(results) > 1 else results[0])) is not None:
                device_end = self.clock()
                members, last_of_batch, run = tag
                hwtime = float(self.ie.GetInfo("hwtime"))
                scores = results[0].reshape(self.unit, -1)
                for slot, item in enumerate(members):
                    self.rows.put(self._row(item, scores[slot], device_end, hwtime, run))
                if last_of_batch:
                    self.free.release()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self.failures.append(exc)
            self.abort()

    def _row(self, item: _Item, values: np.ndarray, device_end: float, hwtime: float, run: int) -> Row:
        if self.fc is not None:
            values = self.fc @ values
        k = min(self.top, values.size)
        best = np.argsort(-values, kind="stable")[:k]
        item.times["device_end"] = device_end
        item.times["download_end"] = self.clock()
        return Row(item.index, item.path.name, tuple(int(i) for i in best), tuple(float(values[i]) for i in best),
                   item.times, hwtime, run)

    def abort(self) -> None:
        """Stop both sides: Free wakes a PutInput or GetResult waiting."""
        if not self.aborted.is_set():
            self.aborted.set()
            self.free.release()
            self.ie.Free()
