"""Running a program scheduled and step by step (runtime.schedule), as the
schedule's tests compare them."""
from __future__ import annotations

import numpy as np

from codegen.cpu import lower_to_program
from compiler.frontend import import_onnx
from compiler.pipeline import optimize
from runtime import parallel
from runtime.executor import Executor
from runtime.schedule import builder as schedule_builder
from runtime.schedule.ops import KIND


def frozen_program(model):
    """The float program of ``model`` with its constants frozen, as a
    compiled binary's are (read-only arrays owning their memory)."""
    return lower_to_program(optimize(import_onnx(model))).frozen()


def feeds_for(program, seed=0):
    rng = np.random.default_rng(seed)
    return {program.slots[slot]: rng.standard_normal(program.types[slot][0]).astype(np.float32)
            for slot in program.inputs}


def per_step(program, feeds, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(schedule_builder, "ENABLED", False)
        return Executor(program).run(feeds)


def kinds(executor):
    """The operation kinds of an executor's schedule, in order."""
    schedule = executor._schedule()
    return [int(kind) for part in schedule.parts if hasattr(part, "ops") for kind in part.ops[:, KIND]]


def fully_lowered_with_per_step_bits(monkeypatch, model, threads: int, kind: int, count: int, python: int = 0):
    """``model``'s frozen program run scheduled on ``threads`` threads:
    ``count`` operations of ``kind``, every step of its plan lowered but
    ``python``, and the per-step run's bits. Returns the executor."""
    monkeypatch.setattr(parallel, "NUM_THREADS", threads)
    program = frozen_program(model)
    feeds = feeds_for(program)
    executor = Executor(program)
    got = executor.run(feeds)
    assert kinds(executor).count(kind) == count
    assert executor._schedule().lowered == len(executor._plan(tuple(program.outputs))) - python
    for key, value in per_step(program, feeds, monkeypatch).items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    return executor
