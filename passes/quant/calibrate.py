"""Calibration: run the float graph on calibration inputs through the CPU
executor and stream each watched tensor into its range observer, batch by
batch, without keeping any activation."""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from ir.graph import Value
from passes.infra import PassError
from passes.quant.observers import make_observer
from passes.quant.progress import progress
from runtime.executor import Executor
from runtime.program import Program


def calibrate(lowered: tuple[Program, Mapping[Value, str]], watch: Iterable[Value],
              batches: Iterable[Mapping[str, np.ndarray]], calibrators: Mapping[str, str],
              default: str) -> dict[Value, tuple]:
    """The (low, high) range of each watched value over the calibration
    batches, run through ``lowered`` (the float graph's program and each
    value's slot, codegen.cpu.lower_with_names), each value's observer named
    by ``calibrators`` (by value name) or ``default``."""
    program, names = lowered
    watch = list(dict.fromkeys(watch))
    missing = [v.name for v in watch if v not in names]
    if missing:
        raise PassError(f"calibration cannot observe {missing[:5]}: they are not computed by the graph")
    by_slot: dict[str, list[Value]] = {}  # a tensor crossing segments is several Values, one slot
    for value in watch:
        by_slot.setdefault(names[value], []).append(value)
    observers = {slot: make_observer(calibrators.get(values[0].name, default), tensor=values[0].name)
                 for slot, values in by_slot.items()}
    executor = Executor(program)
    count = 0
    for feeds in progress(batches, label="calibrating"):
        executor.run(feeds, fetch=[], observe=lambda name, array: observers[name].update(array), watch=list(observers))
        count += 1
    if count == 0:
        raise PassError("calibration got no input batches")
    ranges = {}
    for slot, observer in observers.items():
        low_high = _range(observer, by_slot[slot][0])
        ranges.update({value: low_high for value in by_slot[slot]})
    return ranges


def _range(observer, value: Value) -> tuple[float, float]:
    try:
        return observer.range()
    except Exception as exc:
        raise PassError(f"calibrating %{value.name}: {exc}") from exc
