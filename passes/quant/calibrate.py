"""Calibration: run the float graph on calibration inputs through the CPU
executor and stream each watched tensor into its range observer, batch by
batch, without keeping any activation."""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from codegen.cpu import lower_with_names
from ir.graph import Graph, Value
from passes.infra import PassError
from passes.quant.observers import make_observer
from passes.quant.progress import progress
from runtime.executor import Executor


def calibrate(graph: Graph, watch: Iterable[Value], batches: Iterable[Mapping[str, np.ndarray]],
              calibrators: Mapping[str, str], default: str) -> dict[Value, tuple]:
    """The (low, high) range of each watched value of ``graph`` over the
    calibration batches, each value's observer named by ``calibrators`` (by
    value name) or ``default``."""
    program, names = lower_with_names(graph)
    watch = list(dict.fromkeys(watch))
    missing = [v.name for v in watch if v not in names]
    if missing:
        raise PassError(f"calibration cannot observe {missing[:5]}: they are not computed by the graph")
    by_slot = {names[v]: v for v in watch}
    observers = {names[v]: make_observer(calibrators.get(v.name, default), tensor=v.name) for v in watch}
    executor = Executor(program)
    count = 0
    for feeds in progress(batches, label="calibrating"):
        executor.run(feeds, fetch=[], observe=lambda name, array: observers[name].update(array), watch=list(observers))
        count += 1
    if count == 0:
        raise PassError("calibration got no input batches")
    return {by_slot[name]: _range(observer, by_slot[name]) for name, observer in observers.items()}


def _range(observer, value: Value) -> tuple[float, float]:
    try:
        return observer.range()
    except Exception as exc:
        raise PassError(f"calibrating %{value.name}: {exc}") from exc
