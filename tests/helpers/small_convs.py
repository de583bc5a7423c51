"""Small convolutions in a schedule (tests/runtime/test_own_columns.py,
test_direct_conv.py): the models, their feeds and the operations their
schedules hold."""
import numpy as np

from codegen.cpu import lower_to_program
from compiler.frontend import import_onnx
from compiler.pipeline import optimize
from compiler.zoo.builder import OnnxBuilder


def small_planes():
    """3x3 convolutions of 8 x 8 and 4 x 4 maps, two images: with a bias
    and ReLU, with a residual, strided, and one without a bias whose
    HardSwish is its epilogue."""
    b = OnnxBuilder("small_planes", seed=11)
    x = b.input("x", [2, 24, 8, 8])
    y = b.node("Relu", [b.conv(x, 24, 48, 3)])
    y = b.node("Relu", [b.node("Add", [b.conv(y, 48, 48, 3), y])])
    z = b.node("Relu", [b.conv(y, 48, 64, 3, stride=2)])
    z = b.node("HardSwish", [b.conv(z, 64, 64, 3, bias=False)])
    return b.model([z])


def one_conv():
    """One 3x3 convolution of an 8 x 8 map: every arena buffer lives at its
    one step, so none shares bytes with another."""
    b = OnnxBuilder("one_conv", seed=12)
    x = b.input("x", [1, 32, 8, 8])
    return b.model([b.conv(x, 32, 64, 3)])


def frozen(model):
    return lower_to_program(optimize(import_onnx(model))).frozen()


def feeds(program):
    return {program.slots[s]: np.random.default_rng(2).standard_normal(program.types[s][0]).astype(np.float32)
            for s in program.inputs}


def schedule_ops(executor):
    """The executor's schedule and the rows of its operations, in order."""
    schedule = executor._schedule()
    return schedule, [row for part in schedule.parts if hasattr(part, "ops") for row in part.ops]


def pooled_one_conv(monkeypatch, kind: int):
    """:func:`one_conv`'s schedule on two threads, run once over the pool
    (checked to have taken part): its one operation must be ``kind`` in two
    parts. Returns the executor, the feeds, the outputs, the schedule and
    the operation's record."""
    from runtime import parallel
    from runtime.executor import Executor
    from runtime.schedule.ops import COUNT, KIND, REC
    from tests.helpers.pool import steady_pool

    steady_pool(monkeypatch)
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    program = frozen(one_conv())
    inputs = feeds(program)
    executor = Executor(program)
    run_phases, taken = parallel.run_phases, []
    monkeypatch.setattr(parallel, "run_phases", lambda *a, **k: taken.append(run_phases(*a, **k)) or taken[-1])
    pooled = executor.run(inputs)
    monkeypatch.setattr(parallel, "run_phases", run_phases)
    assert taken == [True], "the pool took no part"
    schedule, rows = schedule_ops(executor)
    assert [int(row[KIND]) for row in rows] == [kind] and rows[0][COUNT] == 2
    return executor, inputs, pooled, schedule, schedule.recs[rows[0][REC]:]


def rerun_alone(monkeypatch, executor, inputs, pooled, schedule) -> None:
    """Run again by the caller alone on an arena of NaN: the same outputs."""
    from runtime import parallel

    schedule.arena[:] = 0xFF
    run_phases = parallel.run_phases
    monkeypatch.setattr(parallel, "run_phases", lambda *a, **k: run_phases(*a, **{**k, "alone": True}))
    alone = executor.run(inputs)
    for name in pooled:
        np.testing.assert_array_equal(alone[name], pooled[name], err_msg=name)
