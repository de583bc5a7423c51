"""Scheduled runs (runtime.schedule): the same bits as the per-step path,
outputs the next run does not touch, timed runs timed as they run, and the
per-step path wherever a schedule cannot serve (fetch, watch, check, a
thawed weight, a second thread while the first runs, timings without a
cycle counter)."""
import gc
import threading
import time

import numpy as np
import pytest
from numba.core import types

from codegen.cpu import lower_to_program
from compiler.frontend import import_onnx
from compiler.pipeline import optimize
from compiler.zoo import mobilenet_v2, resnet
from compiler.zoo.builder import OnnxBuilder
from compiler.zoo.families import FAMILY_MODELS
from runtime import parallel
from runtime.executor import Executor
from runtime.gemm import family
from runtime.gemm import pack as gemm_pack
from runtime.gemm.family import host_isa
from runtime.kernels import conv_weights, nn_prepared
from runtime.kernels.depthwise_blocks import block_planes
from runtime.kernels.depthwise_ir import FLAT, depthwise_ir_planes, lane_masks
from runtime.kernels.nn_conv import conv_nd
from runtime.kernels.nn_depthwise_3x3 import depthwise_padded_3x3
from runtime.schedule import builder as schedule_builder
from runtime.schedule.ops import COUNT, KIND, REC
from runtime.schedule.records import (
    BANDS,
    DEPTHWISE,
    DIRECT,
    DOT_ROWS,
    DW_BLOCKS,
    DW_IR,
    EXPAND_DEPTHWISE,
    GEMM,
    IM2COL,
    MAX_POOL,
    PLANE_MEANS,
    SOFTMAX,
    WINOGRAD_IN,
    WINOGRAD_OUT,
)
from tests.helpers.gemm import NEEDS_NARROW
from tests.helpers.schedule import feeds_for, frozen_program, kinds, per_step


def expand_block(batch=1, stride=1, chans=16, wide=128, size=64):
    """x -> 1x1 expansion to ``wide`` channels (ReLU6) -> 3x3 depthwise
    (ReLU6) -> 1x1 projection, + x where the shapes allow: the fused
    expansion needs ``wide * size * size * 4`` >= 2 MiB."""
    b = OnnxBuilder("expand", seed=3)
    x = b.input("x", [batch, chans, size, size])
    y = b.conv_bn(x, chans, wide, 1, act="ReLU6")
    y = b.conv_bn(y, wide, wide, 3, stride=stride, groups=wide, act="ReLU6")
    y = b.batchnorm(b.conv(y, wide, chans, 1, bias=False), chans)
    return b.model([b.node("Add", [x, y]) if stride == 1 else y])


def depthwise_odd():
    """A stride-2 depthwise convolution of an odd-width plane (the padded-
    plane kernel) with a residual-free epilogue, then a 1x1 projection."""
    b = OnnxBuilder("odd", seed=4)
    x = b.input("x", [1, 8, 15, 15])
    y = b.conv_bn(x, 8, 8, 3, stride=2, groups=8, act="ReLU6")
    return b.model([b.conv(y, 8, 4, 1)])


def small_depthwise():
    """5x5 depthwise convolutions of 7x7 planes (the block kernels), one
    with a residual, then a 1x1 projection."""
    b = OnnxBuilder("small_depthwise", seed=6)
    x = b.input("x", [1, 24, 7, 7])
    y = b.conv_bn(x, 24, 24, 5, groups=24, act="ReLU6")
    y = b.node("Add", [b.conv(y, 24, 24, 5, groups=24), x])
    return b.model([b.conv(y, 24, 4, 1)])


def one_position(batch=2):
    """Convolutions of one output position as dot products, the epilogue in
    their operation: stride-2 3x3s of a 2x2 map (their kernels pruned to
    2x2, still padded) with ReLU, with another's output added and ReLU, and
    with HardSwish; then a classifier Gemm (dot products without one)."""
    b = OnnxBuilder("one_position", seed=5)
    x = b.input("x", [batch, 24, 2, 2])
    y = b.node("Relu", [b.conv(x, 24, 32, 3, stride=2)])
    z = b.node("Relu", [b.node("Add", [b.conv(x, 24, 32, 3, stride=2), y])])
    g = b.node("HardSwish", [b.conv(x, 24, 16, 3, stride=2)])
    return b.model([z, b.linear(b.node("Flatten", [g]), 16, 10)])


def few_columns(batch=1):
    """Products of at most NARROW_COLUMNS columns (runtime.gemm.family):
    a 3x3 of a 3x3 plane (9 columns), a stride-2 3x3 onto a 2x2 plane (4),
    a 1x1 of it with a residual, a stride-2 1x1 onto a 1x1 plane (1)."""
    b = OnnxBuilder("few_columns", seed=6)
    x = b.input("x", [batch, 24, 3, 3])
    x = b.node("Relu", [b.conv(x, 24, 32, 3)])
    y = b.node("Relu", [b.conv(x, 32, 48, 3, stride=2)])
    y = b.node("Relu", [b.node("Add", [b.conv(y, 48, 48, 1), y])])
    return b.model([b.conv(y, 48, 64, 1, stride=2)])


MODELS = {
    "few_columns": (few_columns, {DIRECT, IM2COL, GEMM}),
    "resnet10": (lambda: resnet(depth=10, image=160, width=16, classes=10),
                 {BANDS, MAX_POOL, WINOGRAD_IN, GEMM, WINOGRAD_OUT, IM2COL, PLANE_MEANS, DOT_ROWS, SOFTMAX}),
    "mobilenet_v2": (lambda: mobilenet_v2(image=96, width=0.5, classes=10),
                     {IM2COL, DEPTHWISE, GEMM, PLANE_MEANS, DOT_ROWS}),
    "depthwise_odd": (depthwise_odd, {DEPTHWISE, GEMM}),
    "one_position": (one_position, {IM2COL, DOT_ROWS}),
    "expand": (expand_block, {EXPAND_DEPTHWISE, GEMM}),
    "expand_stride2_batch2": (lambda: expand_block(batch=2, stride=2), {EXPAND_DEPTHWISE, GEMM}),
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("threads", [1, 2])
def test_a_scheduled_run_gives_the_per_step_bits(monkeypatch, name, threads):
    monkeypatch.setattr(parallel, "NUM_THREADS", threads)
    build, expected_kinds = MODELS[name]
    program = frozen_program(build())
    feeds = feeds_for(program)
    executor = Executor(program)
    got = executor.run(feeds)
    assert expected_kinds <= set(kinds(executor))
    for key, value in per_step(program, feeds, monkeypatch).items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)


@pytest.mark.parametrize("name", ["expand", "expand_stride2_batch2", "mobilenet_v2", "resnet10"])
def test_a_caller_alone_calls_each_operation_once_with_the_per_step_bits(monkeypatch, name):
    """Built for two threads and run by the caller alone (the SplitWatch's
    choice, a pool standing aside), the driver calls each operation once
    over all its chunks (runtime.schedule.ops.run_schedule): every kind's
    adapter then takes a run of several chunks' items, with the same bits
    (the models whose operations have several chunks: the others' run
    alone anyway)."""
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    program = frozen_program(MODELS[name][0]())
    feeds = feeds_for(program)
    executor = Executor(program)
    executor.run(feeds)
    schedule = executor._schedule()
    run_phases, calls = parallel.run_phases, []

    def alone(*args, **kwargs):
        calls.append(kwargs)
        return run_phases(*args, **{**kwargs, "alone": True})

    monkeypatch.setattr(parallel, "run_phases", alone)
    schedule.arena[:] = 0xFF  # NaN: nothing left from the pooled run
    got = executor.run(feeds)
    assert calls and executor._schedule() is schedule
    assert any(count > 1 for part in schedule.parts if hasattr(part, "ops") for count in part.ops[:, COUNT])
    for key, value in per_step(program, feeds, monkeypatch).items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)


@NEEDS_NARROW
@pytest.mark.parametrize("threads", [1, 2])
def test_few_column_products_run_on_the_narrow_packing_with_the_hosts_bits(monkeypatch, threads):
    """The GEMM's products on the narrow packing: the direct products that
    would take the 3x3 layers (tests/runtime/test_direct_conv.py) are off."""
    monkeypatch.setattr(nn_prepared, "direct_fits", lambda *args: False)
    monkeypatch.setattr(parallel, "NUM_THREADS", threads)
    program = frozen_program(few_columns(batch=2))
    feeds = feeds_for(program)
    gc.collect()  # entries of earlier tests' arrays waiting in reference cycles would leave the count below
    before = len(conv_weights.narrow_weights)
    executor = Executor(program)  # held: its arrays' entries stay while the count is read
    got = executor.run(feeds)
    narrow = [columns in family.narrow_columns(host_isa()) for columns in (9, 4, 4, 1)]
    assert any(narrow) and len(conv_weights.narrow_weights) == before + sum(narrow)  # those this CPU packs narrow
    monkeypatch.setattr(gemm_pack, "narrow_isa", lambda isa: None)  # every packing the host's from here
    host = frozen_program(few_columns(batch=2))
    for key, value in Executor(host).run(feeds).items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)


@pytest.mark.parametrize("name", sorted(FAMILY_MODELS))
def test_every_family_model_gives_the_per_step_bits(monkeypatch, name):
    """Models as their exporters write them, with Python steps between the
    operations: Keras' audio model reads a GlobalAveragePool's output through
    a Transpose (a view of the arena) and a Flatten (an alias of that view)."""
    program = frozen_program(FAMILY_MODELS[name]())
    feeds = feeds_for(program)
    got = Executor(program).run(feeds)
    for key, value in per_step(program, feeds, monkeypatch).items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_every_step_of_the_zoo_models_lowers():
    """ResNet's Softmax head included: no step of the two zoo families is left to Python."""
    for model in (resnet(depth=10, image=160, width=16, classes=10), mobilenet_v2(image=96, width=0.5, classes=10)):
        executor = Executor(frozen_program(model))
        plan = executor._plan(tuple(executor.program.outputs))
        assert executor._schedule().lowered == len(plan)


def test_outputs_are_the_callers_after_the_next_run():
    program = frozen_program(expand_block())
    executor = Executor(program)
    first = executor.run(feeds_for(program, 0))
    kept = {k: v.copy() for k, v in first.items()}
    executor.run(feeds_for(program, 1))
    for key in first:
        np.testing.assert_array_equal(first[key], kept[key])


def test_fetch_watch_and_check_run_step_by_step(monkeypatch):
    program = frozen_program(expand_block())
    feeds = feeds_for(program)
    expected = per_step(program, feeds, monkeypatch)
    executor = Executor(program)
    calls = []
    monkeypatch.setattr(schedule_builder.Schedule, "run", lambda *a: calls.append(1))
    name = program.output_names[0]
    middle = program.slots[program.steps[0].outputs[0]]
    assert set(executor.run(feeds, fetch=[name, middle])) == {name, middle}
    executor.run(feeds, observe=lambda n, a: None, watch=[middle])
    np.testing.assert_array_equal(Executor(program, check=True).run(feeds)[name], expected[name])
    assert not calls


def heads(softmax_axis=-1):
    """A convolution, a Transpose to channels last, then Softmax over
    ``softmax_axis`` and LogSoftmax over the last axis."""
    b = OnnxBuilder("heads", seed=5)
    x = b.input("x", [2, 3, 6, 10])
    y = b.node("Transpose", [b.conv(x, 3, 4, 3)], perm=[0, 2, 3, 1])
    return b.model([b.node("Softmax", [y], axis=softmax_axis), b.node("LogSoftmax", [y], axis=-1)])


@pytest.mark.parametrize("axis", [-1, 3, 1])
@pytest.mark.parametrize("threads", [1, 2])
def test_softmax_heads_lower_over_any_axis(monkeypatch, axis, threads):
    """Softmax and LogSoftmax of float32 rows of the last axis, or of
    another (tests/runtime/test_schedule_heads.py), are operations, with
    the per-step bits."""
    monkeypatch.setattr(parallel, "NUM_THREADS", threads)
    program = frozen_program(heads(axis))
    feeds = feeds_for(program)
    executor = Executor(program)
    got = executor.run(feeds)
    assert kinds(executor).count(SOFTMAX) == 2
    for key, value in per_step(program, feeds, monkeypatch).items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def timed(executor, feeds):
    timings: list = []
    start = time.perf_counter()
    outputs = executor.run(feeds, timings=timings)
    return outputs, timings, time.perf_counter() - start


@pytest.mark.parametrize("threads", [1, 2])
def test_a_timed_run_is_scheduled_and_times_each_step_once(monkeypatch, threads):
    """Timings come from the schedule (what an untimed run runs, not the
    slower per-step path): one entry per step of the plan, in its order,
    named as the per-step path names them, Python steps (the Transpose)
    included, with the same bits; the entries' seconds add up to no more
    than the call took."""
    monkeypatch.setattr(parallel, "NUM_THREADS", threads)
    program = frozen_program(heads())
    feeds = feeds_for(program)
    executor = Executor(program)
    executor.run(feeds)
    runs = []
    original = schedule_builder.Schedule.run
    monkeypatch.setattr(schedule_builder.Schedule, "run", lambda self, *a: runs.append(a[-1]) or original(self, *a))
    got, timings, wall = timed(executor, feeds)
    assert runs == [timings]
    with monkeypatch.context() as patch:
        patch.setattr(schedule_builder, "ENABLED", False)
        expected, step_timings, _ = timed(Executor(program), feeds)
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    assert [(name, kernel) for name, kernel, _ in timings] == [(name, kernel) for name, kernel, _ in step_timings]
    assert {"Transpose", "Softmax"} <= {kernel for _, kernel, _ in timings}
    assert all(seconds >= 0 for _, _, seconds in timings)
    assert 0 < sum(seconds for _, _, seconds in timings) <= wall


def test_timings_without_a_cycle_counter_run_step_by_step(monkeypatch):
    program = frozen_program(expand_block())
    feeds = feeds_for(program)
    executor = Executor(program)
    executor.run(feeds)
    monkeypatch.setattr(schedule_builder, "CYCLE_COUNTER", False)
    calls = []
    monkeypatch.setattr(schedule_builder.Schedule, "_timed", lambda *a: calls.append(1))
    got, timings, _ = timed(executor, feeds)
    assert not calls and len(timings) == len(executor._plan(tuple(program.outputs)))
    np.testing.assert_array_equal(got[program.output_names[0]],
                                  per_step(program, feeds, monkeypatch)[program.output_names[0]])


def test_a_weight_made_writeable_again_runs_step_by_step(monkeypatch):
    """Packed forms of a weight are pinned only while it is frozen: thawed
    and rewritten, the run repacks it as the per-step path does."""
    program = frozen_program(expand_block())
    feeds = feeds_for(program)
    executor = Executor(program)
    executor.run(feeds)
    weight = max((a for a in program.constants.values() if a.ndim == 4), key=lambda a: a.size)
    weight.flags.writeable = True
    weight *= 0.5
    np.testing.assert_array_equal(executor.run(feeds)[program.output_names[0]],
                                  per_step(program, feeds, monkeypatch)[program.output_names[0]])


def test_a_weight_whose_memory_is_thawed_behind_a_view_runs_step_by_step(monkeypatch):
    """A constant that is a read-only view stays read-only when the array it
    views is made writeable; rewritten through that array, the run must see
    it thawed all the same (each run checks every array of the chain)."""
    program = frozen_program(expand_block())
    feeds = feeds_for(program)
    slot = max((s for s, a in program.constants.items() if a.ndim == 4), key=lambda s: program.constants[s].size)
    owner = program.constants[slot].reshape(-1).copy()
    view = owner.reshape(program.constants[slot].shape)
    view.flags.writeable = False
    owner.flags.writeable = False
    program.constants[slot] = view
    executor = Executor(program)
    executor.run(feeds)
    assert any(constant is view for constant in executor._schedule().constants)  # its packed form is pinned
    owner.flags.writeable = True
    owner *= 0.5
    assert not view.flags.writeable
    np.testing.assert_array_equal(executor.run(feeds)[program.output_names[0]],
                                  per_step(program, feeds, monkeypatch)[program.output_names[0]])


def test_one_executor_run_from_several_threads(monkeypatch):
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    program = frozen_program(mobilenet_v2(image=96, width=0.5, classes=10))
    name = program.output_names[0]
    inputs = [feeds_for(program, seed) for seed in range(4)]
    expected = [per_step(program, feeds, monkeypatch)[name] for feeds in inputs]
    executor = Executor(program)
    failures = []

    def worker(index):
        for _ in range(5):
            got = executor.run(inputs[index])[name]
            if not np.array_equal(got, expected[index]):
                failures.append(index)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


def test_a_run_finding_the_schedule_busy_runs_on_a_spare_of_its_own(monkeypatch):
    """Another thread running the schedule (its lock held here) does not
    send this run step by step: a second schedule with its own arena serves
    it, and stays for the next; with MAX_SCHEDULES all busy, the per-step
    path does. Same bits every way."""
    from runtime import executor as executor_module
    program = frozen_program(expand_block())
    feeds = feeds_for(program)
    expected = per_step(program, feeds, monkeypatch)
    executor = Executor(program)
    executor.run(feeds)
    first = executor._schedule()
    with first._lock:
        got = executor.run(feeds)
        assert len(executor._spares) == 1 and executor._spares[0].arena is not first.arena
        assert not executor._spares[0].busy
        again = executor.run(feeds)
        assert len(executor._spares) == 1
        monkeypatch.setattr(executor_module, "MAX_SCHEDULES", 2)
        with executor._spares[0]._lock:
            stepped = executor.run(feeds)
            assert len(executor._spares) == 1
    for outputs in (got, again, stepped):
        for key, value in expected.items():
            np.testing.assert_array_equal(outputs[key], value, err_msg=key)


def test_steps_that_do_not_lower_run_between_operations(monkeypatch):
    """A MeanVarianceNormalization (no lowering) between two convolutions
    reads the first's arena value and binds its own output for the second."""
    b = OnnxBuilder("between", seed=5)
    x = b.input("x", [1, 8, 12, 12])
    y = b.node("MeanVarianceNormalization", [b.conv(x, 8, 8, 1)])
    y = b.node("Relu", [b.conv(y, 8, 16, 3)])
    program = frozen_program(b.model([b.conv(y, 16, 4, 1)]))
    feeds = feeds_for(program)
    executor = Executor(program)
    got = executor.run(feeds)
    schedule = executor._schedule()
    assert 0 < schedule.lowered < len(executor._plan(tuple(program.outputs)))
    for key, value in per_step(program, feeds, monkeypatch).items():
        np.testing.assert_array_equal(got[key], value)


@pytest.mark.parametrize("timed", [False, True])
def test_operations_with_nothing_to_share_run_on_the_caller_alone(monkeypatch, timed):
    """A small convolution (one chunk an operation) runs without the pool,
    whose thread's wake-up each barrier would wait for; a large one still
    shares its chunks; both give the per-step bits."""
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    pooled = []
    submit = parallel._submit
    monkeypatch.setattr(parallel, "_submit", lambda *args: (pooled.append(1), submit(*args))[1])
    for size, alone in ((8, True), (64, False)):
        b = OnnxBuilder("small", seed=6)
        program = frozen_program(b.model([b.node("Relu", [b.conv(b.input("x", [1, 3, size, size]), 3, 8, 3)])]))
        feeds = feeds_for(program)
        executor = Executor(program)
        executor.run(feeds)
        (part,) = [p for p in executor._schedule().parts if hasattr(p, "ops")]
        assert part.alone == alone
        pooled.clear()
        got = executor.run(feeds, timings=[] if timed else None)
        assert bool(pooled) != alone
        for key, value in per_step(program, feeds, monkeypatch).items():
            np.testing.assert_array_equal(got[key], value)


@pytest.mark.parametrize("wrong", ["smaller", "larger", "dtype"])
def test_a_program_whose_types_lie_gets_a_clear_error_not_a_read_past_a_buffer(wrong):
    """A binary is untrusted: the types it declares never size what an
    operation reads or writes unchecked. A Transpose (run through Python)
    declared with the wrong type feeds a GlobalAveragePool (an operation
    whose output would not show it): the run stops at the Transpose's
    output, naming it, before the operation reads a byte."""
    from runtime import ExecutionError

    b = OnnxBuilder("liar", seed=6)
    x = b.input("x", [1, 12, 8, 12])
    y = b.node("Transpose", [b.conv(x, 12, 12, 1)], perm=[0, 2, 1, 3])  # moves C: the pool cannot take it
    program = frozen_program(b.model([b.node("GlobalAveragePool", [y])]))
    slot = next(step.outputs[0] for step in program.steps if step.kernel == "Transpose")
    shape, dtype = program.types[slot]
    program.types[slot] = ((1, 8, {"smaller": 8, "larger": 16}.get(wrong, 12), 12),
                           "float64" if wrong == "dtype" else dtype)
    executor = Executor(program)
    with pytest.raises(ExecutionError, match="the program says"):
        executor.run(feeds_for(program))
    # the conv and (but for float64 values) the pool are operations: the check is the schedule's
    assert executor._schedule().lowered == (1 if wrong == "dtype" else 2)


def test_a_frozen_program_has_read_only_constants_of_its_own():
    program = lower_to_program(optimize(import_onnx(expand_block())))
    frozen = program.frozen()
    assert frozen.steps is program.steps and frozen.types is program.types
    for slot, array in program.constants.items():
        copy = frozen.constants[slot]
        assert not copy.flags.writeable and copy.base is None and not np.shares_memory(copy, array)
        np.testing.assert_array_equal(copy, array)
    executor = Executor(frozen)
    assert executor._schedule().lowered == len(executor._plan(tuple(frozen.outputs)))
    slot = next(s for s, a in frozen.constants.items() if a.ndim == 4)
    frozen.constants[slot] = frozen.constants[slot].copy()  # writeable: its step stays a Python step
    executor = Executor(frozen)
    assert executor._schedule().lowered == len(executor._plan(tuple(frozen.outputs))) - 1


def _read_only_twins(kernel) -> int:
    """How many of ``kernel``'s signatures differ from another only in
    arrays' read-only flags."""
    plain = {tuple(t.copy(readonly=False) if isinstance(t, types.Array) else t for t in sig)
             for sig in kernel.signatures}
    return len(kernel.signatures) - len(plain)


def test_scheduled_per_step_and_direct_calls_share_one_compiled_kernel(monkeypatch):
    """The weights reach a depthwise kernel read-only on every path (a
    frozen program's constants per step, the schedule's records, fresh
    arrays in a direct call), so it compiles once (docs/runtime.md,
    "Kernel compilation")."""
    program = frozen_program(depthwise_odd())
    feeds = feeds_for(program)
    executor = Executor(program)
    executor.run(feeds)
    assert DEPTHWISE in kinds(executor)
    per_step(program, feeds, monkeypatch)
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(shape).astype(np.float32) for shape in ((1, 4, 9, 9), (4, 1, 3, 3), (4,)))
    for pads in ((1, 1, 1, 1), (0, 0, 0, 0)):  # the LLVM IR plane kernels, the padded planes
        conv_nd(x, w, b, strides=(2, 2), pads=pads, dilations=(1, 1), group=4)
    program = frozen_program(small_depthwise())  # the block kernels
    feeds = feeds_for(program)
    Executor(program).run(feeds)
    per_step(program, feeds, monkeypatch)
    conv_nd(x[:, :, :5, :5], rng.standard_normal((4, 1, 5, 5)).astype(np.float32), b, strides=(1, 1),
            pads=(2, 2, 2, 2), dilations=(1, 1), group=4)
    for kernel in (depthwise_ir_planes, depthwise_padded_3x3, block_planes):
        assert kernel.signatures and _read_only_twins(kernel) == 0, kernel.signatures


def _depthwise_records(executor):
    """(variant, input rows, output rows, mask count) of each DEPTHWISE
    operation of ``executor``'s schedule (mask count: DW_IR's)."""
    schedule = executor._schedule()
    found = []
    for part in (p for p in schedule.parts if hasattr(p, "ops")):
        for row in part.ops[part.ops[:, KIND] == DEPTHWISE]:
            rec = schedule.recs[row[REC]:]
            found.append((int(rec[0]), int(rec[5]), int(rec[14]), int(rec[31]) if rec[0] == DW_IR else None))
    return found


def test_a_scheduled_depthwise_takes_its_zeros_and_flat_masks_made_once_with_the_per_step_bits(monkeypatch):
    """The DW_IR record carries the zeros and, for planes of one flat
    vector, the masks its lowering made (depthwise_ir.plane_scratch), so a
    chunk makes neither: depthwise layers with two output channels an
    input channel (the block kernels take one a channel only) take the
    flat kernel on 3x3 planes at stride 1, the rows on 6x6 planes. MobileNetV2's small planes
    take the block kernels, with their plan (depthwise_blocks.block_plan),
    the larger ones the plane kernels."""
    b = OnnxBuilder("multiplier", seed=5)
    x = b.input("x", [1, 4, 6, 6])
    y = b.conv_bn(x, 4, 8, 3, groups=4, act="ReLU6")  # 6x6 planes, two channels a channel
    y = b.conv_bn(y, 8, 16, 3, stride=2, groups=8, act="ReLU6")  # to 3x3 planes
    y = b.conv_bn(y, 16, 32, 3, groups=16, act="ReLU6")  # 3x3 planes at stride 1: the flat kernel
    taps = 10 * (FLAT if lane_masks(host_isa()) else 1)  # 9 taps and the plane's outputs: a lane or a tap a word
    for model, expected in ((b.model([y]), {(DW_IR, 6, 6, 0), (DW_IR, 6, 3, 0), (DW_IR, 3, 3, taps)}),
                            (mobilenet_v2(image=96, width=0.5, classes=10),
                             {(DW_BLOCKS, 3, 3, None), (DW_BLOCKS, 6, 6, None), (DW_IR, 12, 6, 0),
                              (DW_IR, 48, 48, 0)}),
                            (small_depthwise(), {(DW_BLOCKS, 7, 7, None)})):
        program = frozen_program(model)
        feeds = feeds_for(program)
        executor = Executor(program)
        got = executor.run(feeds)
        assert expected <= set(_depthwise_records(executor)), _depthwise_records(executor)
        for key, value in per_step(program, feeds, monkeypatch).items():
            np.testing.assert_array_equal(got[key], value, err_msg=key)
