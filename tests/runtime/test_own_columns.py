"""Small convolutions in a schedule as OWN_COLUMNS operations
(runtime.kernels.nn_im2col.lower_own_columns): every part builds the whole
column matrix in a buffer of its own and runs its share of the product's
tasks. The same bits as the per-step path and as the one-thread schedule
(an IM2COL and a GEMM); each part's buffer holds the matrix; a caller
running alone builds it once. These convolutions' reductions are deep
enough for direct products (runtime.kernels.nn_direct, tests/runtime/
test_direct_conv.py), which are turned off here: OWN_COLUMNS serves the
shallow ones (MobileNetV2's stem) and inputs too large to pad per thread."""
import numpy as np

from runtime import parallel
from runtime.executor import Executor
from runtime.kernels import nn_prepared
from runtime.kernels.nn_im2col import im2col_rows
from runtime.schedule import builder as schedule_builder
from runtime.schedule.ops import COUNT, KIND
from runtime.schedule.records import GEMM, GEMM_FIELDS, GEO, IM2COL, IM2COL_FIELDS, OWN_COLUMNS
from tests.helpers.small_convs import feeds as _feeds
from tests.helpers.small_convs import frozen, pooled_one_conv, rerun_alone, small_planes
from tests.helpers.small_convs import schedule_ops as _ops


def _part_buffers(schedule, rec):
    """The column matrix buffers of an OWN_COLUMNS operation's parts (its
    record ``rec``), as arrays over the arena."""
    first = int(schedule.bases[rec[7]] + rec[8] - schedule.arena.ctypes.data)
    rows, od, oh, ow = (int(v) for v in rec[GEMM_FIELDS + 8:GEMM_FIELDS + 12])
    parts, stride = int(rec[GEMM_FIELDS + IM2COL_FIELDS]), int(rec[GEMM_FIELDS + IM2COL_FIELDS + 1])
    size = rows * od * oh * ow
    return [schedule.arena[first + p * stride:first + p * stride + size * 4].view(np.float32).reshape(rows, od, oh, ow)
            for p in range(parts)]


def test_small_convolutions_own_their_columns_with_the_per_step_and_one_thread_bits(monkeypatch):
    monkeypatch.setattr(nn_prepared, "direct_fits", lambda *args: False)
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    program = frozen(small_planes())
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


def test_each_part_builds_the_whole_matrix_and_a_caller_alone_builds_it_once(monkeypatch):
    """After a run over the pool, both parts' buffers hold the column
    matrix of the input (each built its own); run by the caller alone, the
    driver calls the operation once for both parts: part 0's buffer holds
    the matrix and part 1's is left as it was."""
    monkeypatch.setattr(nn_prepared, "direct_fits", lambda *args: False)
    executor, inputs, pooled, schedule, rec = pooled_one_conv(monkeypatch, OWN_COLUMNS)
    x = next(iter(inputs.values()))
    buffers = _part_buffers(schedule, rec)
    expected = np.full_like(buffers[0], np.nan)
    im2col_rows(0, expected.shape[0], x[0][:, None], expected,
                tuple(int(v) for v in rec[GEMM_FIELDS + 12:GEMM_FIELDS + 12 + GEO]))
    assert not np.isnan(expected).any()
    for buffer in buffers:
        np.testing.assert_array_equal(buffer, expected)
    rerun_alone(monkeypatch, executor, inputs, pooled, schedule)
    np.testing.assert_array_equal(buffers[0], expected)
    assert np.isnan(buffers[1]).all()
