"""Detector and segmentation heads' steps as schedule operations: Resize
(RESIZE_NEAREST, RESIZE_LINEAR), Softmax along any axis (SOFTMAX),
Transposes that move the last axis (TRANSPOSE) and ConvTranspose (a
product and COL2IM). The schedule runs through
them on one and two threads with the per-step run's bits; the per-step
kernels keep their own bits (a softmax along an inner axis is the
last-axis softmax of a moved copy; a transpose is numpy's)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from compiler.zoo.builder import OnnxBuilder
from runtime.executor import Executor
from runtime.kernels.nn_transposed import conv_transpose_nd
from runtime.kernels.norm import log_softmax, softmax
from runtime.kernels.shape_lowering import TRANSPOSE_DIMS, transpose_plan, transpose_tiles
from runtime.schedule.records import COL2IM, RESIZE_LINEAR, RESIZE_NEAREST, SOFTMAX, TRANSPOSE
from tests.helpers.lowering_cases import KINDS, sweep
from tests.helpers.schedule import feeds_for, frozen_program, fully_lowered_with_per_step_bits


def upsampling(mode: str):
    """A neck's upsampling between convolutions: x2 by constant scales
    (YOLOv8's nearest, asymmetric, floor), to constant sizes of no integer
    ratio (half-pixel coordinates, round-prefer-ceil; align-corners for
    linear), and a linear downscale; a 40x40 map so that the rows cut
    into chunks."""
    b = OnnxBuilder("upsampling", seed=21)
    x = b.input("x", [1, 3, 40, 40])
    y = b.conv(x, 3, 4, 3)
    empty = b.constant([], np.float32)
    up = b.node("Resize", [y, empty, b.constant([1, 1, 2, 2], np.float32)], mode=mode,
                coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    odd = b.node("Resize", [b.conv(up, 4, 4, 1), empty, empty, b.constant([1, 4, 57, 93], np.int64)], mode=mode,
                 coordinate_transformation_mode="half_pixel" if mode == "nearest" else "align_corners",
                 nearest_mode="round_prefer_ceil")
    down = b.node("Resize", [b.conv(odd, 4, 4, 1), empty, b.constant([1, 1, 0.4, 0.3], np.float32)], mode=mode,
                  coordinate_transformation_mode="pytorch_half_pixel")
    return b.model([b.conv(down, 4, 2, 1)])


@pytest.mark.parametrize("mode, kind", [("nearest", RESIZE_NEAREST), ("linear", RESIZE_LINEAR)])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_resize_of_the_last_two_axes_is_an_operation_with_the_per_step_bits(monkeypatch, mode, kind, threads):
    """A float32 Resize over H and W with constant scales or sizes lowers
    to one operation of the fused 2-D pass (up, to odd sizes, down), so a
    detector's neck no longer splits the schedule."""
    fully_lowered_with_per_step_bits(monkeypatch, upsampling(mode), threads, kind, 3)


def test_a_resize_the_fused_passes_do_not_compute_stays_a_python_step(monkeypatch):
    """Cubic resizes (the per-axis tap kernel) stay Python steps, with
    their bits; a nearest one beside them still lowers."""
    b = OnnxBuilder("cubic", seed=22)
    x = b.input("x", [1, 2, 9, 9])
    empty = b.constant([], np.float32)
    y = b.node("Resize", [b.conv(x, 2, 2, 1), empty, b.constant([1, 1, 2, 2], np.float32)], mode="cubic")
    y = b.node("Resize", [b.conv(y, 2, 2, 1), empty, b.constant([1, 1, 2, 2], np.float32)], mode="nearest")
    fully_lowered_with_per_step_bits(monkeypatch, b.model([b.conv(y, 2, 2, 1)]), 1, RESIZE_NEAREST, 1, python=1)


def dfl_head(anchors: int):
    """YOLOv8's DFL head: box logits (1, 64, A) as (1, 4, 16, A), the 16
    bins moved to axis 1, a softmax along them, then the expectation as a
    1x1 convolution; and a log-softmax along axis -2 of a class map."""
    b = OnnxBuilder("dfl", seed=23)
    x = b.input("x", [1, 8, 1, anchors])
    y = b.conv(x, 8, 64, 1)
    y = b.node("Reshape", [y, b.constant([1, 4, 16, anchors], np.int64)])
    y = b.node("Transpose", [y], perm=[0, 2, 1, 3])
    y = b.node("Softmax", [y], axis=1)
    box = b.conv(y, 16, 1, 1, bias=False)
    classes = b.node("LogSoftmax", [b.conv(x, 8, 6, 1)], axis=-2)
    return b.model([box, classes])


@pytest.mark.parametrize("anchors", [21, 700], ids=["one-chunk", "chunks"])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_softmax_along_an_inner_axis_is_an_operation_with_the_per_step_bits(monkeypatch, anchors, threads):
    """A softmax along axis 1 (DFL's bins) or -2 lowers to a SOFTMAX over
    rows along that axis, so the head no longer splits the schedule."""
    fully_lowered_with_per_step_bits(monkeypatch, dfl_head(anchors), threads, SOFTMAX, 2)


@pytest.mark.parametrize("shape, axis", [((2, 16, 4, 37), 1), ((3, 5, 19), 0), ((2, 7, 33), -2), ((4, 1, 6), 1)])
def test_a_softmax_along_an_inner_axis_has_the_bits_of_the_last_axis_of_a_moved_copy(shape, axis):
    """The per-step kernel computes a row along an inner axis exactly as a
    row of the last axis (gathered tiles: each row's arithmetic is the
    same), NaN and infinite rows included: its results are what the moved
    copy's were before it went along axes itself."""
    x = np.random.default_rng(24).standard_normal(shape).astype(np.float32) * 8
    x.reshape(-1)[5] = np.nan
    x.reshape(-1)[-3] = np.inf
    for kernel in (softmax, log_softmax):
        (got,) = kernel([x], {"axis": axis})
        (moved,) = kernel([np.ascontiguousarray(np.moveaxis(x, axis, -1))], {"axis": -1})
        np.testing.assert_array_equal(got, np.moveaxis(moved, -1, axis))


def decoder(batch: int):
    """A decoder's upsampling: PP-OCR's and YOLO11-seg's 2x2 stride-2
    ConvTranspose (no overlap), CenterNet's 4x4 stride 2 pad 1 (taps
    overlapping) without a bias, its depthwise one and a grouped one; a
    20x20 map so that the products and the channels cut into chunks."""
    b = OnnxBuilder("decoder", seed=26)
    x = b.input("x", [batch, 3, 20, 20])
    y = b.conv_transpose(b.conv(x, 3, 16, 3), 16, 8, 2, 2)
    y = b.conv_transpose(b.node("Relu", [y]), 8, 6, 4, 2, pad=1, bias=False)
    y = b.conv_transpose(b.node("Relu", [y]), 6, 6, 4, 2, pad=1, groups=6)
    y = b.conv_transpose(b.node("Relu", [y]), 6, 6, 3, 1, pad=1, groups=3)
    return b.model([b.conv(y, 6, 2, 1)])


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_conv_transpose_is_a_product_and_a_col2im_with_the_per_step_bits(monkeypatch, batch, threads):
    """A float32 ConvTranspose with constant weights lowers to its product
    (the GEMM of the transposed weights; a grouped one's, the groups' as one
    batch) and a COL2IM per image; a depthwise one to a COL2IM per image
    that multiplies as it adds."""
    fully_lowered_with_per_step_bits(monkeypatch, decoder(batch), threads, COL2IM, 4 * batch)


@pytest.mark.parametrize("kernel, stride, pad, extra", [(4, 2, 1, 0), (3, 2, 0, 1), (2, 2, 0, 0), (3, 1, 1, 0)])
def test_a_depthwise_conv_transpose_adds_each_tap_s_product_in_order(kernel, stride, pad, extra):
    """A depthwise ConvTranspose (its col2im multiplying as it adds, no
    matrix product) gives, bit for bit, the bias plus each tap's float32
    product in tap order: what a product of one term per tap, then the
    col2im, gave."""
    rng = np.random.default_rng(27)
    x = rng.standard_normal((2, 5, 7, 6)).astype(np.float32)
    w = rng.standard_normal((5, 1, kernel, kernel)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    got = conv_transpose_nd(x, w, b, strides=[stride] * 2, pads=[pad] * 4, dilations=[1, 1], group=5,
                            output_padding=[extra] * 2)
    h, wd = got.shape[2:]
    full = np.zeros((2, 5, (7 - 1) * stride + kernel + extra, (6 - 1) * stride + kernel + extra), np.float32)
    full[...] = b[None, :, None, None]
    for ky in range(kernel):
        for kx in range(kernel):
            rows = slice(ky, ky + 7 * stride - stride + 1, stride)
            cols = slice(kx, kx + 6 * stride - stride + 1, stride)
            full[:, :, rows, cols] += w[None, :, 0, ky, kx, None, None] * x
    np.testing.assert_array_equal(got, full[:, :, pad:pad + h, pad:pad + wd])


def test_a_conv_transpose_computes_what_onnxruntime_does():
    """The product on Tessera's GEMM (not numpy's BLAS): onnxruntime's
    ConvTranspose, to float32 rounding, per step and scheduled."""
    model = decoder(2)
    program = frozen_program(model)
    feeds = feeds_for(program)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    got = Executor(program).run(feeds)
    np.testing.assert_allclose(got[program.output_names[0]], expected[0], rtol=1e-5, atol=1e-5)


def turns(batch: int):
    """A Keras/tf2onnx model's NHWC input turned to NCHW for a convolution
    and its output back to NHWC, MTCNN's (0, 3, 2, 1) turn of a head, and
    the last two axes of a batch of maps swapped (an attention product's
    key) before a convolution."""
    b = OnnxBuilder("turns", seed=25)
    x = b.input("x", [batch, 24, 40, 3])
    y = b.conv(b.node("Transpose", [x], perm=[0, 3, 1, 2]), 3, 8, 3)
    nhwc = b.node("Transpose", [y], perm=[0, 2, 3, 1])
    head = b.node("Transpose", [b.conv(y, 8, 4, 1)], perm=[0, 3, 2, 1])
    swapped = b.node("Transpose", [y], perm=[0, 1, 3, 2])
    return b.model([nhwc, head, b.conv(swapped, 8, 2, 1)])


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_transpose_moving_the_last_axis_is_an_operation_with_the_per_step_bits(monkeypatch, batch, threads):
    """Every Transpose moving the last axis lowers to one TRANSPOSE of
    tiles (NHWC to NCHW and back, (0, 3, 2, 1), the last two swapped)."""
    fully_lowered_with_per_step_bits(monkeypatch, turns(batch), threads, TRANSPOSE, 4)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64])
@pytest.mark.parametrize("shape, perm", [((2, 33, 17, 5), (0, 3, 1, 2)), ((3, 1, 40, 7), (2, 0, 3, 1)),
                                         ((2, 3, 4, 5, 6, 7), (5, 3, 1, 4, 2, 0)), ((50, 19), (1, 0))])
def test_the_transpose_tiles_move_every_element_of_every_width(dtype, shape, perm):
    """The TRANSPOSE kernel on elements of 1, 2, 4 and 8 bytes (the
    operation moves any dtype as an integer of its width), dims of 1
    dropped and axes that stay together merged, rank 6, and chunks of
    tiles that start anywhere: numpy's transpose, element for element."""
    x = np.arange(np.prod(shape)).astype(dtype).reshape(shape)
    plan = transpose_plan(shape, list(perm))
    assert len(plan) == TRANSPOSE_DIMS
    dims = np.array([d for d, _ in plan], np.int64)
    strides = np.array([s for _, s in plan], np.int64)
    y = np.zeros(x.size, dtype)
    tiles = int(np.prod(dims[:-1]) // dims[-2] * -(-dims[-2] // 16))
    for start in range(0, tiles, 3):
        transpose_tiles(start, min(start + 3, tiles), x.reshape(-1), y, dims, strides)
    np.testing.assert_array_equal(y.reshape(np.transpose(x, perm).shape), np.transpose(x, perm))


@pytest.mark.parametrize("kind", KINDS)
def test_random_cases_of_each_lowering_give_the_per_step_bits(kind):
    """A few random models of each lowered kind (bench/lowering_sweep.py
    runs the long campaign: attributes across and past what exporters
    write), scheduled on one and two threads: the per-step bits, the
    per-step run the ONNX reference's or onnxruntime's result, and most of them lowered entirely."""
    counts = sweep(29, range(8), kind)
    assert not [outcome for (_, outcome) in counts if outcome.startswith(("MISMATCH", "WRONG"))], counts
    assert counts[(kind, "lowered")] >= 4, counts
