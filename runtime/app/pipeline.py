"""The application's pipeline over one runtime instance (api-notes 6.2):
a pool of pre-processing workers feeding in input order, a device thread
putting batches of up to ``max_bs`` images through FWDNXT's PutInput with
three staging buffers in rotation, a download thread taking them back with
GetResult (in input order, as the API guarantees), and a logger thread
handing each row, in input order, to the caller's sink.

:func:`run_images` runs a list of image files on one FWDNXT instance;
:func:`run_prepared` runs images pre-processed elsewhere (by the Ray
scale-out's tasks, runtime/app/scale.py). Both return the rows in input
order, so that a scale-out can shard an image list over several instances
and put together what they return."""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from runtime.app.images import ImageError, Settings, load_image

STAGES = ("start", "preprocessed", "upload_start", "upload_end", "device_end", "download_end")
"""The per-image timestamps (seconds from the start of the run); each row
also has ``inference_start``: when the simulated device could start its
run (the later of the end of its upload and the end of the run before)."""
STAGING_BUFFERS = 3
"""Batches between upload and download at once (the original's triple buffering)."""


@dataclass
class Row:
    """One image's result: its position in the input list, file name, the
    top classes (best first) with their scores, timestamps (:data:`STAGES`),
    the number and hwtime of the device run (PutInput) that held it, and
    the runtime instance that ran it (0 on one host; the actor under Ray)."""

    index: int
    file: str
    top: tuple[int, ...]
    scores: tuple[float, ...]
    times: dict[str, float] = field(default_factory=dict)
    hwtime_ms: float = 0.0
    run: int = 0
    instance: int = 0


@dataclass
class RunResult:
    """What a run gives back: the rows in input order, the images skipped
    (file name, why), and the wall time of the run."""

    rows: list[Row]
    skipped: list[tuple[str, str]]
    wall_s: float


@dataclass
class Prepared:
    """One image pre-processed: its position in the input list, file name,
    the model input (None when it could not be read; ``error`` says why),
    and its timestamps so far (``start``, ``preprocessed``)."""

    index: int
    name: str
    image: np.ndarray | None
    error: str
    times: dict[str, float]


class Clock:
    """Seconds since ``origin`` (a time.time() value; default: now). The
    scale-out gives every host the driver's origin, so that timestamps taken
    on different machines share one time line (as far as their clocks are
    synchronised)."""

    def __init__(self, origin: float | None = None):
        self.origin = time.time() if origin is None else origin

    def __call__(self) -> float:
        return time.time() - self.origin


def run_images(ie, paths: Sequence[Path], settings: Settings, *, max_bs: int = 1, workers: int = 1, top: int = 5,
               fc: np.ndarray | None = None, sink: Callable[[Row], None] | None = None,
               skipped: Callable[[str, str], None] | None = None) -> RunResult:
    """Run every image of ``paths`` on ``ie`` (an FWDNXT with a binary
    loaded; blocking mode), ``max_bs`` images a batch, ``workers``
    pre-processing threads; ``fc`` ([classes, features]) is applied on the
    host to the binary's first output; ``sink`` gets each row in input
    order as it comes, ``skipped`` each unreadable image (name, why)."""
    clock = Clock()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tessera-infer-pre") as pool:
        try:
            return run_prepared(ie, _preprocessed(pool, paths, settings, clock, workers), max_bs=max_bs, top=top,
                                fc=fc, sink=sink, skipped=skipped, clock=clock)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def run_prepared(ie, items: Iterable[Prepared], *, max_bs: int = 1, top: int = 5, fc: np.ndarray | None = None,
                 sink: Callable[[Row], None] | None = None, skipped: Callable[[str, str], None] | None = None,
                 clock: Clock | None = None, instance: int = 0, first_run: int = 0) -> RunResult:
    """The device side of :func:`run_images`, over images pre-processed
    already, in input order (consumed as the device takes them); ``clock``
    stamps the times (default: from now); ``instance`` is recorded in the
    rows, and their device runs are numbered from ``first_run`` (an
    instance running several shards numbers its runs through them)."""
    clock = clock or Clock()
    rows: queue.Queue = queue.Queue()
    failures: list[BaseException] = []
    device = _Device(ie, max_bs, top, fc, clock, rows, failures, instance, first_run)
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
    try:
        device.upload(iter(items), note_skip)
    except BaseException as exc:  # noqa: BLE001 - re-raised below, after the threads stop
        failures.append(exc)
        device.abort()
    downloader.join()
    rows.put(None)
    logger.join()
    if failures:
        raise failures[0]
    result.wall_s = clock()
    return result


def _preprocessed(pool: ThreadPoolExecutor, paths: Sequence[Path], settings: Settings, clock: Clock,
                  workers: int) -> Iterator[Prepared]:
    """Each image pre-processed by the pool, yielded in input order, with
    at most a few images per worker decoded ahead (bounded memory)."""
    window = max(4, 4 * workers)
    pending: list[Future] = []
    for index, path in enumerate(paths):
        pending.append(pool.submit(prepare, index, path, settings, clock, clock()))
        if len(pending) >= window:
            yield pending.pop(0).result()
    for future in pending:
        yield future.result()


def prepare(index: int, source: Path | tuple[str, bytes], settings: Settings, clock: Clock, start: float) -> Prepared:
    """One image pre-processed (``source``: a file, or a file's name and
    bytes); an unreadable one comes back with its reason instead."""
    name = source.name if isinstance(source, Path) else source[0]
    try:
        image, error = load_image(source, settings), ""
    except ImageError as exc:
        image, error = None, str(exc)
    return Prepared(index, name, image, error, {"start": start, "preprocessed": clock()})


class _Device:
    """The device side: upload (the device thread, on the caller's thread
    here) and download (a thread), over one FWDNXT instance."""

    def __init__(self, ie, max_bs: int, top: int, fc, clock: Clock, rows: queue.Queue, failures: list,
                 instance: int, first_run: int):
        self.ie, self.max_bs, self.top, self.fc, self.clock, self.rows = ie, max_bs, top, fc, clock, rows
        self.failures, self.instance = failures, instance
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
        self.runs = first_run
        self.device_free = 0.0
        """When the last run handed back ended (runs end in input order)."""

    def upload(self, items: Iterator[Prepared], skip: Callable[[str, str], None]) -> None:
        """Batches of up to max_bs readable images through PutInput, the
        last partial batch at its real size (rounded up to whole runs of
        the binary's batch, padded with zeros); then the end marker."""
        batch: list[Prepared] = []
        number = 0
        try:
            for item in items:
                if self.aborted.is_set():
                    return
                if item.image is None:
                    skip(item.name, item.error)
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

    def _put(self, batch: list[Prepared], number: int) -> None:
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
                uploaded = max(item.times.get("upload_end", item.times.get("upload_start", 0.0)) for item in members)
                started, self.device_free = min(max(uploaded, self.device_free), device_end), device_end
                for item in members:
                    item.times["inference_start"] = started
                scores = results[0].reshape(self.unit, -1)
                for slot, item in enumerate(members):
                    self.rows.put(self._row(item, scores[slot], device_end, hwtime, run))
                if last_of_batch:
                    self.free.release()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self.failures.append(exc)
            self.abort()

    def _row(self, item: Prepared, values: np.ndarray, device_end: float, hwtime: float, run: int) -> Row:
        if self.fc is not None:
            values = self.fc @ values
        k = min(self.top, values.size)
        best = np.argsort(-values, kind="stable")[:k]
        item.times["device_end"] = device_end
        item.times["download_end"] = self.clock()
        return Row(item.index, item.name, tuple(int(i) for i in best), tuple(float(values[i]) for i in best),
                   item.times, hwtime, run, self.instance)

    def abort(self) -> None:
        """Stop both sides: Free wakes a PutInput or GetResult waiting."""
        if not self.aborted.is_set():
            self.aborted.set()
            self.free.release()
            self.ie.Free()
