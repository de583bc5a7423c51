"""Direct convolutions (runtime.kernels.nn_direct): the product of a convolution
read from its zero-padded input, with no column matrix. The bits of the
GEMM on the column matrix, for every geometry (strides, uneven pads,
dilations, 1x1 strided, 7x7), rows and columns that fill no whole tile,
reductions of several blocks, the epilogue (bias, residual, clamp, gate) and
NaN / Inf; in a schedule, the per-step path's bits, each part padding the
image into a buffer of its own."""
import numpy as np
import pytest

from runtime import gemm, parallel
from runtime.executor import Executor
from runtime.gemm.operands import clamp_array
from runtime.gemm.pack import pack_weights
from runtime.kernels import nn_direct as direct
from runtime.kernels.nn_window import Window
from runtime.schedule import builder as schedule_builder
from runtime.schedule.ops import KIND
from runtime.schedule.records import DIRECT, IM2COL, OWN_COLUMNS
from tests.helpers.small_convs import feeds as _feeds
from tests.helpers.small_convs import frozen, pooled_one_conv, rerun_alone, small_planes
from tests.helpers.small_convs import schedule_ops as _ops

pytestmark = pytest.mark.skipif(direct.direct_family() is None, reason="no Tessera GEMM on this CPU")

# (channels, H, W, out channels, kernel, stride, pads (top, left, bottom, right), dilation)
CASES = [
    (64, 8, 8, 40, (3, 3), 1, (1, 1, 1, 1), 1),  # 576 steps: three reduction blocks; 40 rows: a group of one panel
    (8, 5, 7, 24, (3, 3), 2, (1, 0, 0, 1), 1),  # uneven pads, stride 2
    (32, 4, 4, 17, (1, 1), 2, (0, 0, 0, 0), 1),  # strided 1x1; 17 rows, 4 columns
    (4, 9, 9, 33, (3, 3), 1, (2, 2, 2, 2), 2),  # dilation 2
    (3, 12, 12, 16, (7, 7), 2, (3, 3, 2, 2), 1),  # a stem
    (96, 2, 2, 32, (3, 3), 1, (1, 1, 1, 1), 1),  # 2 x 2 plane, 864 steps
    (5, 3, 11, 9, (1, 3), 1, (0, 1, 0, 1), 1),  # 9 x 33 columns: ragged last tile
]


def _columns(x, kernel, stride, pads, dilation, out_hw):
    """The column matrix (C * KH * KW, OH * OW) the GEMM path multiplies."""
    top, left, bottom, right = pads
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right)))
    oh, ow = out_hw
    rows = []
    for c in range(x.shape[0]):
        for i in range(kernel[0]):
            for j in range(kernel[1]):
                y0, x0 = i * dilation, j * dilation
                y1, x1 = y0 + (oh - 1) * stride + 1, x0 + (ow - 1) * stride + 1
                rows.append(xp[c, y0:y1:stride, x0:x1:stride].reshape(-1))
    return np.stack(rows)


def _direct(x, w, bias, residual, clamp, stride, pads, dilation, out_hw):
    isa = direct.direct_family()
    packed = pack_weights(w.reshape(w.shape[0], -1), narrow=True)
    assert packed.isa == isa
    chans, height, width = x.shape
    top, left, bottom, right = pads
    hp, wp = height + top + bottom, width + left + right
    offsets, positions = direct.tables(chans, (hp, wp), w.shape[2:], (stride, stride), (dilation, dilation), out_hw)
    padded = np.full((chans, hp, wp), np.nan, np.float32)
    direct.pad_planes(x, padded, top, left)
    np.testing.assert_array_equal(padded, np.pad(x, ((0, 0), (top, bottom), (left, right))))
    m, n = w.shape[0], out_hw[0] * out_hw[1]
    out = np.full((m, n), np.nan, np.float32)
    panels, cols = direct.direct_tile(isa)
    shape = np.array([m, n, packed.matrix[1], packed.kc, isa.mr, panels, cols], np.int64)
    total = direct.units(m, n, isa)
    for start, stop in ((0, total // 2), (total // 2, total)):  # two calls, as two parts would run them
        direct.direct_units(start, stop, direct.direct_kernels(isa), shape, packed.data.ctypes.data,
                            padded.ctypes.data, offsets.ctypes.data, positions.ctypes.data, out.ctypes.data,
                            0 if bias is None else bias.ctypes.data, 0 if residual is None else residual.ctypes.data,
                            0 if clamp is None else clamp.ctypes.data)
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:4])) + f"_k{c[4][0]}{c[4][1]}s{c[5]}d{c[7]}")
def test_direct_products_give_the_gemm_bits(case):
    chans, height, width, m, kernel, stride, pads, dilation = case
    rng = np.random.default_rng(sum(case[:4]))
    x = rng.standard_normal((chans, height, width)).astype(np.float32)
    w = rng.standard_normal((m, chans, *kernel)).astype(np.float32)
    oh = (height + pads[0] + pads[2] - dilation * (kernel[0] - 1) - 1) // stride + 1
    ow = (width + pads[1] + pads[3] - dilation * (kernel[1] - 1) - 1) // stride + 1
    n = oh * ow
    x[0, 0, 0], x[-1, -1, -1] = np.nan, np.inf  # non-finite inputs and weights travel as in the GEMM
    w[1, 0, 0, 0] = -np.inf
    bias = rng.standard_normal(m).astype(np.float32)
    residual = rng.standard_normal((m, n)).astype(np.float32)
    residual[2, 0] = np.nan
    packed = pack_weights(w.reshape(m, -1))
    col = _columns(x, kernel, stride, pads, dilation, (oh, ow))
    epilogues = [(None, None, None), (bias, None, None), (bias, residual, clamp_array("Conv", (0.0, 6.0))),
                 (None, residual, clamp_array("Conv", None, ("HardSwish", 1 / 6, 0.5)))]
    for b, res, clamp in epilogues:
        expected = gemm.sgemm(None, col, packed_a=packed, bias=b, residual=res, clamp=clamp)
        got = _direct(x, w, b, res, clamp, stride, pads, dilation, (oh, ow))
        np.testing.assert_array_equal(got.view(np.int32), expected.view(np.int32))


def _schedule_kinds(executor):
    return [int(row[KIND]) for row in _ops(executor)[1]]


def test_schedules_run_convolutions_direct_with_the_per_step_and_one_thread_bits(monkeypatch):
    program = frozen(small_planes())
    feeds = _feeds(program)
    results = {}
    for threads in (2, 1):
        monkeypatch.setattr(parallel, "NUM_THREADS", threads)
        executor = Executor(program)
        results[threads] = executor.run(feeds)
        kinds = _schedule_kinds(executor)
        assert kinds.count(DIRECT) == 8 and IM2COL not in kinds and OWN_COLUMNS not in kinds
    monkeypatch.setattr(schedule_builder, "ENABLED", False)
    per_step = Executor(program).run(feeds)
    for name in per_step:
        np.testing.assert_array_equal(results[2][name], per_step[name], err_msg=name)
        np.testing.assert_array_equal(results[1][name], per_step[name], err_msg=name)


def test_each_part_pads_the_image_and_a_caller_alone_pads_it_once(monkeypatch):
    """After a run over the pool both parts' buffers hold the padded input;
    run by the caller alone, part 0's does and part 1's is left as it was."""
    executor, inputs, pooled, schedule, rec = pooled_one_conv(monkeypatch, DIRECT)
    x = next(iter(inputs.values()))[0]
    first = int(schedule.bases[rec[5]] + rec[6] - schedule.arena.ctypes.data)
    stride, size = int(rec[7]), x.shape[0] * int(rec[8]) * int(rec[9])
    buffers = [schedule.arena[first + p * stride:first + (p + 1) * stride][:size * 4].view(np.float32)
               for p in range(2)]
    expected = np.pad(x, ((0, 0), (1, 1), (1, 1))).reshape(-1)
    for buffer in buffers:
        np.testing.assert_array_equal(buffer, expected)
    rerun_alone(monkeypatch, executor, inputs, pooled, schedule)
    np.testing.assert_array_equal(buffers[0], expected)
    assert np.isnan(buffers[1]).all()


@pytest.mark.parametrize("x_shape, w_shape, strides, pads, fits", [
    ((1, 64, 8, 8), (64, 64, 3, 3), 1, 1, True),  # ResNet-10's layers at 32 x 32
    ((1, 256, 2, 2), (512, 256, 1, 1), 2, 0, True),  # its downsampling 1x1: a small input
    ((1, 3, 224, 224), (32, 3, 3, 3), 2, 1, False),  # MobileNetV2's stem: 27 steps
    ((1, 128, 56, 56), (128, 128, 3, 3), 2, 1, False),  # ResNet-50's: the input too large to copy per thread
    ((1, 512, 7, 7), (512, 512, 3, 3), 1, 1, False),  # ResNet-50's 7 x 7: weights read once per tile from L3
    ((1, 256, 14, 14), (512, 256, 1, 1), 2, 0, False),  # ResNet-18's 1x1 stride 2: the input 4x its columns
])
def test_direct_products_take_small_inputs_and_weights_and_deep_reductions(x_shape, w_shape, strides, pads, fits):
    window = Window((w_shape[2], w_shape[3]), (strides, strides), (pads, pads), (pads, pads), (1, 1))
    assert direct.direct_fits(x_shape, w_shape, window) is fits
