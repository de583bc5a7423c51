"""Steps that lower to one operation kind each (COPY, CHANNEL_SCALE,
FUSED, AVG_POOL, PAD) or to views: the schedule runs through them on one
and two threads, every step lowered, with the per-step run's bits."""
from __future__ import annotations

import numpy as np
import pytest

from compiler.zoo.builder import OnnxBuilder
from runtime.executor import Executor
from runtime.schedule.records import (
    AVG_POOL,
    BANDS,
    CHANNEL_SCALE,
    COPY,
    COPY_PIECE,
    FUSED,
    GEMM,
    IM2COL,
    LRN,
    PAD,
    TRANSPOSE,
)
from tests.helpers.schedule import feeds_for, frozen_program, fully_lowered_with_per_step_bits, kinds


def concats(axis: int, size: int):
    """Fire-module-style joins: three convolutions' outputs joined along
    ``axis`` (along the channels, of 3, 5 and 7 channels; else of 6 each),
    the join read by another convolution."""
    b = OnnxBuilder("joins", seed=6)
    x = b.input("x", [2, 4, size, size])
    widths = (3, 5, 7) if axis == 1 else (6, 6, 6)
    parts = [b.conv(x, 4, width, k) for width, k in zip(widths, (1, 3, 1))]
    joined = b.node("Concat", parts, axis=axis)
    return b.model([b.conv(joined, sum(widths) if axis == 1 else 6, 4, 1)])


@pytest.mark.parametrize("axis, size", [(1, 64), (1, 5), (0, 6), (2, 9), (-1, 7)],
                         ids=["channels-pieces", "channels-small", "batch", "rows", "last"])
@pytest.mark.parametrize("threads", [1, 2])
def test_concat_is_a_copy_operation_with_the_per_step_bits(monkeypatch, axis, size, threads):
    """A Concat lowers to one COPY per input (rows before the axis, each
    input at its offset in the output's rows; a 64x64 feature map's rows
    are several pieces), so it no longer splits the schedule."""
    fully_lowered_with_per_step_bits(monkeypatch, concats(axis, size), threads, COPY, 3)
    if size == 64:  # the 7-channel part's rows are two pieces each
        assert COPY_PIECE < 7 * size * size * 4 <= 2 * COPY_PIECE


def squeeze_excite(batch: int, gate_first: bool):
    """A squeeze-excitation block as PP-LCNet and MobileNetV3 have it: a
    convolution's output times its channels' gate (global mean, two 1x1
    convolutions, HardSigmoid), in either order, then a 1x1 convolution."""
    b = OnnxBuilder("se", seed=7)
    x = b.input("x", [batch, 8, 7, 7])
    y = b.conv(x, 8, 16, 3)
    g = b.node("GlobalAveragePool", [y])
    g = b.node("HardSigmoid", [b.conv(b.node("Relu", [b.conv(g, 16, 4, 1)]), 4, 16, 1)])
    scaled = b.node("Mul", [g, y] if gate_first else [y, g])
    return b.model([b.conv(scaled, 16, 8, 1)])


@pytest.mark.parametrize("batch, gate_first", [(1, False), (2, True)])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_channel_gate_is_a_scale_operation_with_the_per_step_bits(monkeypatch, batch, gate_first, threads):
    """A float32 Mul of a tensor by its per-channel gate lowers to one
    CHANNEL_SCALE operation, so the schedule runs through it, with the
    per-step bits (numpy's broadcasting multiply); a Mul of another shape
    is no CHANNEL_SCALE (a FUSED operation: the interpreter's multiply)."""
    fully_lowered_with_per_step_bits(monkeypatch, squeeze_excite(batch, gate_first), threads, CHANNEL_SCALE, 1)
    b = OnnxBuilder("rows", seed=8)
    x = b.input("x", [1, 8, 7, 7])
    y = b.conv(x, 8, 8, 1)
    other = frozen_program(b.model([b.node("Mul", [y, b.node("ReduceMean", [y], axes=[1], keepdims=1)])]))
    executor = Executor(other)
    executor.run(feeds_for(other))
    assert CHANNEL_SCALE not in kinds(executor)


def silu_head(size: int):
    """Ultralytics' SiLU (``Mul(x, Sigmoid(x))``) after convolutions, one
    plus a per-channel constant (read broadcast), then a classifier with a
    HardSwish between its two Gemms (MobileNetV3's): fused element-wise
    steps of rank 4 and 2 that no convolution takes as its epilogue."""
    b = OnnxBuilder("silu", seed=9)
    x = b.input("x", [1, 8, size, size])
    y = b.conv(x, 8, 16, 3)
    y = b.node("Mul", [y, b.node("Sigmoid", [y])])
    y = b.conv(y, 16, 16, 1)
    shift = b.const_f32(np.linspace(-1, 1, 16).reshape(1, 16, 1, 1))
    y = b.node("Add", [b.node("Mul", [y, b.node("Sigmoid", [y])]), shift])
    y = b.node("Flatten", [b.node("GlobalAveragePool", [y])], axis=1)
    y = b.node("HardSwish", [b.linear(y, 16, 32)])
    return b.model([b.linear(y, 32, 10)])


@pytest.mark.parametrize("size", [6, 64], ids=["one-chunk", "chunks"])
@pytest.mark.parametrize("threads", [1, 2])
def test_fused_element_wise_steps_are_operations_with_the_per_step_bits(monkeypatch, size, threads):
    """A FusedElementwise step no convolution absorbs (a SiLU, a constant
    read broadcast, a HardSwish between two Gemms) lowers to one FUSED
    operation, so the schedule runs through it, with the per-step
    interpreter's bits; an output of at least PARALLEL_MIN elements is cut
    into chunks of blocks."""
    fully_lowered_with_per_step_bits(monkeypatch, silu_head(size), threads, FUSED, 3)


def splits(batch: int):
    """YOLOv8's C2f split: a convolution's channels split in two (and in
    three unequal parts by a constant), each part read by a convolution."""
    b = OnnxBuilder("splits", seed=10)
    x = b.input("x", [batch, 4, 9, 9])
    y = b.conv(x, 4, 12, 1)
    left, right = b.node("Split", [y], num_outputs=2, axis=1)
    p, q, r = b.node("Split", [right, b.constant([1, 2, 3], np.int64)], num_outputs=3, axis=1)
    parts = [b.conv(left, 6, 4, 1), b.conv(p, 1, 4, 1), b.conv(q, 2, 4, 1), b.conv(r, 3, 4, 1)]
    return b.model([b.node("Concat", parts, axis=1)])


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_split_is_views_or_copies_with_the_per_step_bits(monkeypatch, batch, threads):
    """A Split lowers: a batch-1 map's parts along the channels are views
    of its slices (no operation), a batch-2 map's one COPY each (plus the
    Concat's four); the schedule runs through them."""
    fully_lowered_with_per_step_bits(monkeypatch, splits(batch), threads, COPY, 4 if batch == 1 else 9)


def shuffles(batch: int):
    """ShuffleNet's channel shuffle (Reshape to (N, 2, C/2, H, W),
    Transpose (0, 2, 1, 3, 4), Reshape back) between convolutions, a
    Transpose of dims of 1 only, and one that moves the last axis."""
    b = OnnxBuilder("shuffles", seed=11)
    x = b.input("x", [batch, 4, 6, 6])
    y = b.conv(x, 4, 8, 1)
    y = b.node("Reshape", [y, b.constant([batch, 2, 4, 6, 6], np.int64)])
    y = b.node("Transpose", [y], perm=[0, 2, 1, 3, 4])
    y = b.node("Reshape", [y, b.constant([batch, 8, 6, 6], np.int64)])
    y = b.conv(y, 8, 8, 1)
    y = b.node("Unsqueeze", [y, b.constant([0], np.int64)])
    y = b.node("Transpose", [y], perm=[1, 0, 2, 3, 4])  # moves a dim of 1: a view
    y = b.node("Squeeze", [y, b.constant([1], np.int64)])
    return b.model([b.node("Transpose", [b.conv(y, 8, 4, 1)], perm=[0, 1, 3, 2])])


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_transpose_keeping_its_last_axes_is_copies_with_the_per_step_bits(monkeypatch, batch, threads):
    """A channel shuffle's Transpose lowers to a COPY per index of its
    outer dims but the longest (rows of H x W along it); one that moves
    only a dim of 1 is a view; one that moves the last axis is a
    TRANSPOSE (tests/runtime/test_schedule_heads.py); the bits are the
    per-step run's."""
    executor = fully_lowered_with_per_step_bits(monkeypatch, shuffles(batch), threads, COPY, 2 * batch)
    assert kinds(executor).count(TRANSPOSE) == 1


def pools():
    """Average pools as DenseNet's transitions (2x2 stride 2), Inception's
    branches (3x3 stride 1, padding not counted) and a ceil-mode 3x3
    stride 2 counting its padding have them, between convolutions."""
    b = OnnxBuilder("pools", seed=12)
    x = b.input("x", [1, 4, 23, 23])
    y = b.node("AveragePool", [b.conv(x, 4, 8, 3)], kernel_shape=[2, 2], strides=[2, 2])
    y = b.node("AveragePool", [b.conv(y, 8, 8, 1)], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=0)
    y = b.node("AveragePool", [b.conv(y, 8, 8, 1)], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
               ceil_mode=1, count_include_pad=1)
    return b.model([b.conv(y, 8, 4, 1)])


@pytest.mark.parametrize("threads", [1, 2])
def test_an_average_pool_is_an_operation_with_the_per_step_bits(monkeypatch, threads):
    """An AveragePool whose windows do not each cover a plane lowers to one
    AVG_POOL over the planes (the per-step kernel's loop)."""
    fully_lowered_with_per_step_bits(monkeypatch, pools(), threads, AVG_POOL, 3)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_relu_no_convolution_takes_is_a_fused_operation_with_numpy_s_bits(monkeypatch, threads):
    """A Relu of a Concat (DenseNet's) or of an input lowers to the
    interpreter's relu: numpy.maximum(x, 0)'s bits to the sign of zero,
    NaN kept."""
    b = OnnxBuilder("relus", seed=13)
    x = b.input("x", [1, 4, 8, 8])
    r = b.node("Relu", [x])
    joined = b.node("Relu", [b.node("Concat", [b.conv(r, 4, 4, 3), b.conv(r, 4, 2, 1)], axis=1)])
    model = b.model([r, b.conv(joined, 6, 2, 1)])
    fully_lowered_with_per_step_bits(monkeypatch, model, threads, FUSED, 2)
    program = frozen_program(model)
    x = np.random.default_rng(14).standard_normal((1, 4, 8, 8)).astype(np.float32)
    x.reshape(-1)[:6] = [-0.0, 0.0, np.nan, -np.inf, np.inf, -1e-45]
    got = Executor(program).run({"x": x})[program.output_names[0]]
    np.testing.assert_array_equal(got.view(np.uint32), np.maximum(x, np.float32(0)).view(np.uint32))


def pads(mode: str):
    """A Pad of each mode between convolutions: an NHWC model's edge pad of
    H and W (before its turn to NCHW), a GAN's reflection pad, a wrap, and a
    constant pad of a given value that crops an axis (a negative pad)."""
    b = OnnxBuilder("pads", seed=15)
    b.opset = 19
    x = b.input("x", [2, 9, 7, 4])
    value = [b.constant(2.5, np.float32)] if mode == "constant" else []
    y = b.node("Pad", [x, b.constant([0, 2, 1, 0, 0, 1, 3, 0], np.int64), *value], mode=mode)
    y = b.conv(b.node("Transpose", [y], perm=[0, 3, 1, 2]), 4, 4, 3)
    y = b.node("Pad", [y, b.constant([0, -1, 1, 2, 0, 0, 2, 1], np.int64), *value], mode=mode)
    return b.model([b.conv(y, 3, 2, 1)])


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "wrap"])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_pad_is_an_operation_with_the_per_step_bits(monkeypatch, mode, threads):
    """A Pad with constant pads lowers to one PAD gathering rows by each
    dim's source indices (the per-step kernel's own pad of that dim's
    indices), cropping included."""
    fully_lowered_with_per_step_bits(monkeypatch, pads(mode), threads, PAD, 2)


def shufflenet_unit(groups: int = 4):
    """ShuffleNet v1's unit: a grouped 1x1 convolution, the channel shuffle
    (Reshape, Transpose, Reshape), a depthwise 3x3 and another grouped 1x1,
    then the residual add and ReLU; at two images."""
    b = OnnxBuilder("shufflenet_unit", seed=8)
    x = b.input("x", [2, 48, 10, 10])
    y = b.conv_bn(x, 48, 96, 1, groups=groups)
    y = b.node("Reshape", [y, b.const_i64([2, groups, 96 // groups, 10, 10])])
    y = b.node("Reshape", [b.node("Transpose", [y], perm=[0, 2, 1, 3, 4]), b.const_i64([2, 96, 10, 10])])
    y = b.batchnorm(b.conv(y, 96, 96, 3, groups=96, bias=False), 96)
    y = b.batchnorm(b.conv(y, 96, 48, 1, groups=groups, bias=False), 48)
    return b.model([b.node("Relu", [b.node("Add", [y, x])])])


@pytest.mark.parametrize("threads", [1, 2])
def test_grouped_pointwise_convolutions_lower_to_one_gemm_an_image(monkeypatch, threads):
    """A grouped 1x1 convolution is one GEMM operation an image (the
    groups' products one batch, on weights packed once), as a one-group one
    is: ShuffleNet v1 (onnx's light zoo) went from 53 runs of operations to
    one. The per-step run's bits, on one and two threads."""
    fully_lowered_with_per_step_bits(monkeypatch, shufflenet_unit(), threads, GEMM, 4)


def grouped_block(batch: int):
    """ResNeXt's bottleneck (a 3x3 convolution of 4 groups between 1x1 ones,
    the residual added in its last convolution's epilogue) and AlexNet's
    5x5 of 2 groups at stride 2; the 3x3's column matrix in 4 blocks of
    output rows (conv_weights.row_block), the 5x5's in one."""
    b = OnnxBuilder("grouped_block", seed=9)
    x = b.input("x", [batch, 32, 40, 40])
    y = b.conv_bn(b.conv_bn(x, 32, 128, 1), 128, 128, 3, groups=4)
    y = b.node("Relu", [b.node("Add", [b.batchnorm(b.conv(y, 128, 32, 1, bias=False), 32), x])])
    return b.model([b.node("Relu", [b.conv(y, 32, 16, 5, stride=2, groups=2)])])


@pytest.mark.parametrize("batch, threads", [(1, 1), (1, 2), (2, 2)])
def test_grouped_convolutions_lower_to_im2col_and_one_gemm_a_block(monkeypatch, batch, threads):
    """A grouped convolution that is not 1x1 lowers to the column matrix
    of a block of output rows and the groups' products as one GEMM, as
    the step runs it, with its bits."""
    executor = fully_lowered_with_per_step_bits(monkeypatch, grouped_block(batch), threads, IM2COL, 5 * batch)
    assert kinds(executor).count(GEMM) == 7 * batch


def narrow_groups(batch: int):
    """RegNet's and ResNeXt's grouped 3x3s of a few channels a group: 8
    at stride 1 (with the residual added in the next 1x1's epilogue), 16 at
    stride 2 into 12 outputs a group (a row panel of the packing part
    empty); both run by bands on the row kernels."""
    b = OnnxBuilder("narrow_groups", seed=10)
    x = b.input("x", [batch, 64, 28, 28])
    y = b.conv_bn(x, 64, 64, 3, groups=8)
    y = b.node("Relu", [b.node("Add", [b.batchnorm(b.conv(y, 64, 64, 1, bias=False), 64), x])])
    return b.model([b.node("Relu", [b.conv(y, 64, 48, 3, stride=2, groups=4)])])


@pytest.mark.parametrize("batch, threads", [(1, 1), (1, 2), (2, 2)])
def test_narrow_groups_lower_to_bands_of_all_groups(monkeypatch, batch, threads):
    """A grouped convolution whose groups the row kernels take lowers to
    one BANDS operation an image (a task per group and band of output
    rows), with the per-step run's bits."""
    executor = fully_lowered_with_per_step_bits(monkeypatch, narrow_groups(batch), threads, BANDS, 2 * batch)
    assert IM2COL not in kinds(executor)


def local_response_norms():
    """AlexNet's LRNs (size 5, beta 0.75, bias 2, after a ReLU'd convolution)
    and one of size 3 and beta 0.6, at two images."""
    b = OnnxBuilder("local_response_norms", seed=11)
    x = b.input("x", [2, 3, 20, 20])
    y = b.node("LRN", [b.node("Relu", [b.conv(x, 3, 16, 3)])], size=5, alpha=1e-4, beta=0.75, bias=2.0)
    y = b.node("LRN", [b.conv(y, 16, 8, 3, groups=2)], size=3, alpha=0.01, beta=0.6, bias=1.0)
    return b.model([b.conv(y, 8, 4, 1)])


@pytest.mark.parametrize("threads", [1, 2])
def test_local_response_norms_lower(monkeypatch, threads):
    """A float32 LRN is one LRN operation over its planes (AlexNet's and
    GoogLeNet's had been Python steps between runs of operations): the
    per-step bits, on one and two threads."""
    fully_lowered_with_per_step_bits(monkeypatch, local_response_norms(), threads, LRN, 2)
