"""Calibration: run the float graph on calibration inputs through the CPU
executor and stream each watched tensor into its range observer, without
keeping any activation beyond the current step.

When the inputs' values fit in :data:`LOCKSTEP_BYTES`, the inputs run in
lockstep (Executor.run_each): each tensor's range is fixed, from all its
values, before any later step runs, so a follower (bias correction) can
measure a tensor on its grid in the same pass instead of a second run of
the float model over the inputs. Otherwise they run one after the other.
Each observer sees the inputs in the same order either way, so the ranges
are the same.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable, Mapping

import numpy as np

from ir.graph import Value
from passes.infra import PassContext, PassError
from passes.quant.observers import make_observer, wide_observer
from passes.quant.progress import Progress, progress
from runtime.executor import Executor
from runtime.program import Program

LOCKSTEP_BYTES = 1 << 30
"""Most bytes the calibration inputs' live values may hold at once for the
inputs to run in lockstep (32 inputs at 224x224: ResNet-50 0.23 GB, VGG-19 0.82 GB)."""

Follower = Callable[[list], None]
"""Gets every calibration input's value of one slot at once (lockstep only)."""


class Calibration:
    """The (low, high) range of each watched value over the calibration
    batches, run through ``lowered`` (the float graph's program and each
    value's slot, codegen.cpu.lower_with_names), each value's observer named
    by ``calibrators`` (by value name) or ``default``. ``ranges`` fills in
    as the values are calibrated; ``channel_ranges`` too, with the finite
    (lows, highs) of each channel (axis 1) of the values in ``channels``.
    The values in ``wide`` are stored in 16 bits (:func:`wide_observer`)."""

    def __init__(self, lowered: tuple[Program, Mapping[Value, str]], watch: Iterable[Value],
                 calibrators: Mapping[str, str], default: str, channels: Iterable[Value] = (),
                 wide: Iterable[Value] = ()):
        self.program, self.names = lowered
        watch = list(dict.fromkeys(watch))
        missing = [v.name for v in watch if v not in self.names]
        if missing:
            raise PassError(f"calibration cannot observe {missing[:5]}: they are not computed by the graph")
        self.by_slot: dict[str, list[Value]] = {}  # a tensor crossing segments is several Values, one slot
        for value in watch:
            self.by_slot.setdefault(self.names[value], []).append(value)
        wide = set(wide)
        self.observers = {slot: wide_observer(calibrators.get(values[0].name, default), values[0].name)
                          if any(v in wide for v in values) else
                          make_observer(calibrators.get(values[0].name, default), tensor=values[0].name)
                          for slot, values in self.by_slot.items()}
        self.executor = Executor(self.program)
        self.ranges: dict[Value, tuple[float, float]] = {}
        self.extremes = {self.names[v]: None for v in channels if self.names.get(v) in self.observers}
        """Per-channel (mins, maxs) so far, by slot."""
        self.channel_ranges: dict[Value, tuple[np.ndarray, np.ndarray]] = {}
        self.observing = 0.0
        """Seconds spent in the observers and followers (the rest of a run is the float model's)."""

    def lockstep(self, count: int, follow: Iterable[str] = ()) -> bool:
        """Whether ``count`` inputs, watched at the observed slots and ``follow``, fit in LOCKSTEP_BYTES."""
        per_input = self.executor.peak_bytes([*self.observers, *follow])
        return per_input is not None and per_input * count <= LOCKSTEP_BYTES

    def run(self, batches: Iterable[Mapping[str, np.ndarray]], follow: Mapping[str, Follower] | None = None) -> None:
        """Calibrate on ``batches``; with ``follow`` (slot -> Follower), in
        lockstep (``batches`` a list the caller checked with :meth:`lockstep`):
        a follower runs after the ranges of its own slot (when observed) and
        of every slot computed before it are in :attr:`ranges`."""
        start = time.perf_counter()
        if follow is None:
            count = self._one_by_one(batches)
        else:
            count = self._in_lockstep(list(batches), follow)
        if count == 0:
            raise PassError("calibration got no input batches")
        fixing = time.perf_counter()
        for slot in self.observers:
            self._fix(slot)
        self.observing += time.perf_counter() - fixing
        context = PassContext.current()
        context.record_time("calibration: float runs", time.perf_counter() - start - self.observing)
        context.record_time("calibration: statistics", self.observing)

    def _one_by_one(self, batches) -> int:
        count = 0
        watch = list(self.observers)
        for feeds in progress(batches, label="calibrating"):
            self.executor.run(feeds, fetch=[], observe=self._observe, watch=watch)
            count += 1
        return count

    def _observe(self, slot: str, array: np.ndarray) -> None:
        start = time.perf_counter()
        self.observers[slot].update(array)
        if slot in self.extremes:
            self._extend(slot, [array])
        self.observing += time.perf_counter() - start

    def _in_lockstep(self, batches: list, follow: Mapping[str, Follower]) -> int:
        if not batches:
            return 0
        watch = list(dict.fromkeys([*self.observers, *follow]))
        with Progress(len(watch), label=f"calibrating {len(batches)} inputs, tensors") as bar:
            def observe(slot: str, arrays: list) -> None:
                start = time.perf_counter()
                if slot in self.observers:
                    self.observers[slot].update_many(arrays)
                    if slot in self.extremes:
                        self._extend(slot, arrays)
                    self._fix(slot)
                if slot in follow:
                    follow[slot](arrays)
                self.observing += time.perf_counter() - start
                bar.advance()

            self.executor.run_each(batches, observe, watch)
        return len(batches)

    def _fix(self, slot: str) -> None:
        """The slot's range, once all its values are seen, for each of its Values."""
        values = self.by_slot[slot]
        if values[0] in self.ranges:
            return
        try:
            low_high = self.observers[slot].range()
        except Exception as exc:
            raise PassError(f"calibrating %{values[0].name}: {exc}") from exc
        self.ranges.update({value: low_high for value in values})
        if self.extremes.get(slot) is not None:
            self.channel_ranges.update({value: self.extremes[slot] for value in values})

    def _extend(self, slot: str, arrays: list) -> None:
        """Fold the arrays' finite per-channel extremes into the slot's."""
        lows, highs = [], []
        for array in arrays:
            x = np.moveaxis(np.asarray(array), 1, 0).reshape(np.shape(array)[1], -1)
            low, high = x.min(axis=1, initial=np.inf), x.max(axis=1, initial=-np.inf)
            if not (np.isfinite(low).all() and np.isfinite(high).all()):  # NaN or inf somewhere: leave them out
                finite = np.isfinite(x)
                low = np.where(finite, x, np.inf).min(axis=1, initial=np.inf)
                high = np.where(finite, x, -np.inf).max(axis=1, initial=-np.inf)
            lows.append(low)
            highs.append(high)
        low, high = np.min(lows, axis=0), np.max(highs, axis=0)
        known = self.extremes[slot]
        self.extremes[slot] = (low, high) if known is None else (np.minimum(known[0], low),
                                                                 np.maximum(known[1], high))
