"""Small convolutions in a schedule as OWN_COLUMNS operations
(runtime.kernels.nn_im2col.lower_own_columns): every part builds the whole
column matrix in a buffer of its own and runs its share of the product's
tasks. The same bits as the per-step path and as the one-thread schedule
(an IM2COL and a GEMM); each part's buffer holds the matrix; a caller
running alone builds it once. These convolutions' reductions are deep
enough for direct products (runtime.gemm.direct, tests/runtime/
test_direct_conv.py), which are turned off here: OWN_COLUMNS serves the
shallow ones (MobileNetV2's stem) and inputs too large to pad per thread."""
import numpy as np

from codegen.cpu import lower_to_program
from compiler.frontend import import_onnx
from compiler.pipeline import optimize
from compiler.zoo.builder import OnnxBuilder
from runtime import parallel
from runtime.executor import Executor
from runtime.kernels import nn_prepared
from runtime.kernels.nn_im2col import im2col_rows
from runtime.schedule import builder as schedule_builder
from runtime.schedule.ops import COUNT, KIND, REC
from runtime.schedule.records import GEMM, GEMM_FIELDS, GEO, IM2COL, IM2COL_FIELDS, OWN_COLUMNS
from tests.helpers.pool import steady_pool


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


def _program():
    return lower_to_program(optimize(import_onnx(small_planes()))).frozen()


def _feeds(program):
    return {program.slots[s]: np.random.default_rng(2).standard_normal(program.types[s][0]).astype(np.float32)
            for s in program.inputs}


def _ops(executor):
    schedule = executor._schedule()
    return schedule, [row for part in schedule.parts if hasattr(part, "ops") for row in part.ops]


def _part_buffers(schedule, row):
    """The column matrix buffers of an OWN_COLUMNS operation's parts, as
    arrays over the arena, and the operation's record."""
    rec = schedule.recs[row[REC]:]
    first = int(schedule.bases[rec[7]] + rec[8] - schedule.arena.ctypes.data)
    rows, od, oh, ow = (int(v) for v in rec[GEMM_FIELDS + 8:GEMM_FIELDS + 12])
    parts, stride = int(rec[GEMM_FIELDS + IM2COL_FIELDS]), int(rec[GEMM_FIELDS + IM2COL_FIELDS + 1])
    size = rows * od * oh * ow
    return [schedule.arena[first + p * stride:first + p * stride + size * 4].view(np.float32).reshape(rows, od, oh, ow)
            for p in range(parts)], rec


def test_small_convolutions_own_their_columns_with_the_per_step_and_one_thread_bits(monkeypatch):
    monkeypatch.setattr(nn_prepared, "direct_fits", lambda *args: False)
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    program = _program()
    feeds = _feeds(program)
    executor = Executor(program)
    got = executor.run(feeds)
    _, rows = _ops(executor)
    kinds = [int(row[KIND]) for row in rows]
    assert kinds.count(OWN_COLUMNS) == 8 and IM2COL not in kinds  # four convolutions, two images
    assert all(row[COUNT] == 2 for row in rows if row[KIND] == OWN_COLUMNS)
    with monkeypatch.context() as patch:
        patch.setattr(schedule_builder, "ENABLED", False)
        per_step = Executor(program).run(feeds)
    monkeypatch.setattr(parallel, "NUM_THREADS", 1)
    one = Executor(program)
    alone = one.run(feeds)
    one_kinds = {int(row[KIND]) for row in _ops(one)[1]}
    assert {IM2COL, GEMM} <= one_kinds and OWN_COLUMNS not in one_kinds
    for name in got:
        np.testing.assert_array_equal(got[name], per_step[name], err_msg=name)
        np.testing.assert_array_equal(got[name], alone[name], err_msg=name)


def one_conv():
    """One 3x3 convolution of an 8 x 8 map: every arena buffer lives at its
    one step, so none shares bytes with another."""
    b = OnnxBuilder("one_conv", seed=12)
    x = b.input("x", [1, 32, 8, 8])
    return b.model([b.conv(x, 32, 64, 3)])


def test_each_part_builds_the_whole_matrix_and_a_caller_alone_builds_it_once(monkeypatch):
    """After a run over the pool, both parts' buffers hold the column
    matrix of the input (each built its own); run by the caller alone, the
    driver calls the operation once for both parts: part 0's buffer holds
    the matrix and part 1's is left as it was."""
    steady_pool(monkeypatch)
    monkeypatch.setattr(nn_prepared, "direct_fits", lambda *args: False)
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    program = lower_to_program(optimize(import_onnx(one_conv()))).frozen()
    feeds = _feeds(program)
    x = next(iter(feeds.values()))
    executor = Executor(program)
    run_phases, taken = parallel.run_phases, []
    monkeypatch.setattr(parallel, "run_phases", lambda *a, **k: taken.append(run_phases(*a, **k)) or taken[-1])
    pooled = executor.run(feeds)
    assert taken == [True], "the pool took no part"
    schedule, rows = _ops(executor)
    assert [int(row[KIND]) for row in rows] == [OWN_COLUMNS] and rows[0][COUNT] == 2
    buffers, rec = _part_buffers(schedule, rows[0])
    expected = np.full_like(buffers[0], np.nan)
    im2col_rows(0, expected.shape[0], x[0][:, None], expected,
                tuple(int(v) for v in rec[GEMM_FIELDS + 12:GEMM_FIELDS + 12 + GEO]))
    assert not np.isnan(expected).any()
    for buffer in buffers:
        np.testing.assert_array_equal(buffer, expected)

    schedule.arena[:] = 0xFF  # NaN everywhere
    monkeypatch.setattr(parallel, "run_phases", lambda *a, **k: run_phases(*a, **{**k, "alone": True}))
    alone = executor.run(feeds)
    np.testing.assert_array_equal(buffers[0], expected)
    assert np.isnan(buffers[1]).all()
    for name in pooled:
        np.testing.assert_array_equal(alone[name], pooled[name], err_msg=name)
