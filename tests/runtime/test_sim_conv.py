"""The simulator's CONV kernels: every path (the GEMM planned at Init on
both threads' paths, run_large's int8 GEMM, the dot products, the row sums,
depthwise, 16-bit) against a Python-integer oracle, on random and on
realistic tiles, in every split mode."""
from __future__ import annotations

import dataclasses
from unittest import mock

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.sim import conv as conv_module
from runtime.sim import conv_gemm, phased
from tests.helpers.conv_cases import NO_PLANS, ConvCase, run_conv_case
from tests.helpers.simulator import (
    SETTINGS,
)


@st.composite
def conv_cases(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg, kg = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    in_hw = (dilation[0] * (kh - 1) + 1 + draw(st.integers(0, 6)), dilation[1] * (kw - 1) + 1 + draw(st.integers(0, 6)))
    wgt_bits = draw(st.sampled_from([8, 16]))
    parts = draw(st.sampled_from([1, 2, 3])) if groups == 1 else 1
    in_c = cg * groups * (parts if groups == 1 else 1)
    return ConvCase(in_c, kg * groups, groups, (kh, kw), stride, dilation, in_hw, draw(st.sampled_from([8, 16])),
                    wgt_bits, draw(st.sampled_from([8, 16])), draw(st.booleans()), draw(st.booleans()), parts,
                    wgt_bits == 8 and draw(st.booleans()), draw(st.booleans()),
                    scaled=draw(st.booleans()))  # every channel's shift >= 33: the GEMM's kernels may requantise


@SETTINGS
@given(conv_cases(), st.booleans(), st.integers(0, 1000))
def test_random_conv_tiles_are_exact(case, large, seed):
    """Every width, group count, stride, dilation, residual, LeakyRelu
    multiplier and reduction split, in the interpreter and on the pool."""
    run_conv_case(case, large, seed)


@pytest.mark.parametrize("case", [
    ConvCase(64, 32, 1, (3, 3), (1, 1), (1, 1), (12, 12), 8, 8, 8, True, False, 1, False),
    ConvCase(32, 16, 1, (1, 1), (1, 1), (1, 1), (9, 9), 8, 8, 8, False, True, 2, True),
    ConvCase(16, 16, 1, (3, 3), (2, 2), (2, 2), (15, 15), 8, 8, 16, False, False, 4, False),
    ConvCase(16, 16, 16, (3, 3), (1, 1), (1, 1), (10, 10), 8, 8, 8, True, False, 1, False),
    ConvCase(16, 8, 1, (3, 3), (1, 1), (1, 1), (10, 10), 16, 16, 16, False, True, 2, False),
    ConvCase(64, 64, 1, (1, 1), (1, 1), (1, 1), (16, 16), 8, 8, 8, True, False, 1, False, True),
    ConvCase(32, 32, 32, (3, 3), (1, 1), (1, 1), (12, 12), 8, 8, 16, False, False, 1, False, True),
], ids=["dense-3x3-residual", "1x1-split-wrap", "strided-dilated-split", "depthwise", "16-bit-split",
        "1x1-table", "depthwise-table-16"])
def test_realistic_conv_tiles_on_the_pool_and_the_interpreter(case):
    """Larger tiles through both paths: the int8 GEMM (dense 8-bit), and the
    channel-split direct loops (depthwise, 16-bit)."""
    run_conv_case(case, large=True)
    run_conv_case(case, large=False)


KERNEL_CHOICES = {
    "planned-gemm": (dict(GEMM_MIN_CHANNELS=1 << 62), dict(MIN_CHANNELS=0, MIN_PIXELS=0, MIN_DEPTH=0, MIN_MACS=0)),
    "gemm": (dict(GEMM_MIN_CHANNELS=0, GEMM_MIN_PIXELS=0, GEMM_MIN_DEPTH=0), NO_PLANS),
    "dot-products": (dict(GEMM_MIN_CHANNELS=1 << 62, _few_pixels=lambda ins: False, _short=lambda ins: False),
                     NO_PLANS),
    "short-rows": (dict(GEMM_MIN_CHANNELS=1 << 62, _few_pixels=lambda ins: False, _short=lambda ins: True), NO_PLANS),
    "few-pixels": (dict(GEMM_MIN_CHANNELS=1 << 62, _few_pixels=lambda ins: True), NO_PLANS),
}
"""Settings of runtime/sim/conv.py and runtime/sim/conv_gemm.py that send
every 8-bit dense CONV down one path: the GEMM planned at Init (any
reduction depth: weights that are not whole words are packed byte by byte),
or one of run_large's (the few-pixel dot products too, on any tile).
In the interpreter, conv8.dense chooses by the tile: those cases run the
pool's path."""


@pytest.mark.parametrize("choice", KERNEL_CHOICES)
@SETTINGS
@given(case=conv_cases().map(lambda c: dataclasses.replace(c, in_bits=8, wgt_bits=8, groups=1)),
       seed=st.integers(0, 1000), large=st.booleans())
def test_every_dense_kernel_path_is_exact(choice, case, seed, large):
    """The int8 GEMM planned at Init (byte and word patch gathers, on the
    interpreter's thread and over the pool), run_large's int8 GEMM, the dot
    products over pixel-major patches and the row sums over channel-major
    ones each give the oracle's bytes on every case (and every split mode)."""
    conv_settings, plan_settings = KERNEL_CHOICES[choice]
    with mock.patch.multiple(conv_module, **conv_settings), mock.patch.multiple(conv_gemm, **plan_settings):
        run_conv_case(case, large=large or choice != "planned-gemm", seed=seed)


WIDE_TABLE_CASES = {
    "dense-8-bit": ConvCase(16, 16, 1, (3, 3), (1, 1), (1, 1), (8, 8), 8, 8, 16, True, True, 1, False, True, True),
    "depthwise": ConvCase(16, 16, 16, (3, 3), (2, 2), (1, 1), (9, 9), 8, 8, 16, False, False, 1, False, True, True),
    "16-bit-split": ConvCase(8, 8, 1, (3, 3), (1, 1), (1, 1), (7, 7), 16, 16, 16, False, True, 2, False, True, True),
}


@pytest.mark.parametrize("case", WIDE_TABLE_CASES.values(), ids=WIDE_TABLE_CASES)
def test_wide_table_interpolates_the_int16_codes_of_the_clamp(case):
    """lut_wide=1: the clamp's int16 codes through a 513-entry table equal
    qscheme.apply_table on them, on the int32 epilogue (8-bit: the GEMM, the
    int8 kernels) and the int64 one (16-bit), on the pool and in the interpreter."""
    run_conv_case(case, large=True)
    run_conv_case(case, large=False)


@pytest.mark.parametrize("choice", ["planned-gemm", "dot-products", "short-rows"])
def test_wide_table_on_every_dense_kernel_path(choice):
    conv_settings, plan_settings = KERNEL_CHOICES[choice]
    with mock.patch.multiple(conv_module, **conv_settings), mock.patch.multiple(conv_gemm, **plan_settings):
        run_conv_case(WIDE_TABLE_CASES["dense-8-bit"], large=choice != "planned-gemm", seed=2)


@pytest.mark.parametrize("case", [
    ConvCase(64, 32, 1, (3, 3), (1, 1), (1, 1), (30, 30), 8, 8, 8, True, False, 1, False),
    ConvCase(128, 64, 1, (3, 3), (1, 1), (1, 1), (18, 18), 8, 8, 8, True, False, 1, False),
    ConvCase(256, 32, 1, (3, 3), (2, 1), (1, 2), (16, 16), 8, 8, 8, False, True, 2, False),
    ConvCase(256, 128, 1, (1, 1), (2, 2), (1, 1), (30, 30), 8, 8, 8, False, True, 1, False),
    ConvCase(96, 24, 1, (1, 1), (1, 1), (1, 1), (3, 40), 8, 8, 8, True, True, 3, True),
    ConvCase(10, 16, 1, (2, 2), (1, 1), (1, 1), (12, 12), 8, 8, 8, False, False, 1, False),
    ConvCase(3, 64, 1, (3, 3), (2, 2), (1, 1), (31, 61), 8, 8, 8, False, False, 1, False),
    ConvCase(3, 16, 1, (7, 7), (2, 2), (1, 1), (47, 45), 8, 8, 8, True, False, 1, False),
], ids=["3x3-patches-over-the-pool", "3x3-residual", "strided-dilated-split", "1x1-strided", "1x1-split-wrap",
        "channels-not-words", "stem-3x3-stride-2", "stem-7x7-stride-2"])
def test_planned_gemm_on_tiles_large_enough_to_split(case):
    """Tiles whose patches are packed over the pool (B past
    SERIAL_PACK_WORDS), with every split mode, on both threads' paths; six
    input channels (not whole words) take the byte gather over 2x2 taps,
    three (a stem's) with a column stride of 2 its runs of pixels two bytes
    apart (``patches._weave`` with a step of 2)."""
    for large in (True, False):
        made = []
        real_plan = conv_gemm.plan
        with mock.patch.object(conv_gemm, "plan", lambda *args: made.append(real_plan(*args)) or made[-1]), \
                mock.patch.object(conv_gemm, "MIN_MACS", 0):
            run_conv_case(case, large=large, seed=3)
        assert sum(int((plans.index >= 0).sum()) for plans in made) >= 1, "no CONV of the case ran on the GEMM"


@pytest.mark.parametrize("case", [
    ConvCase(192, 80, 1, (1, 1), (1, 1), (1, 1), (3, 3), 8, 8, 8, True, False, 1, False),
    ConvCase(128, 32, 1, (3, 3), (1, 1), (1, 1), (5, 5), 8, 8, 8, False, True, 2, True),
    ConvCase(320, 64, 1, (1, 1), (1, 1), (1, 1), (2, 4), 8, 8, 16, False, False, 1, False),
], ids=["1x1-of-a-3x3-map", "3x3-split-of-a-3x3-map", "8-pixels"])
def test_maps_of_one_tile_of_pixels_run_on_the_gemm(case):
    """A dense CONV of 8 to 15 output pixels (MobileNetV2 at 96 x 96: its
    3 x 3 maps) is planned on the GEMM at Init like a larger one, with the
    oracle's bytes, on both threads' paths and in every split mode."""
    for large in (True, False):
        made = []
        real_plan = conv_gemm.plan
        with mock.patch.object(conv_gemm, "plan", lambda *args: made.append(real_plan(*args)) or made[-1]):
            run_conv_case(case, large=large, seed=4)
        assert sum(int((plans.index >= 0).sum()) for plans in made) >= 1, "no CONV of the case ran on the GEMM"


@pytest.mark.parametrize("case", [
    ConvCase(24, 24, 24, (3, 3), (1, 1), (2, 2), (13, 11), 8, 8, 8, True, True, 1, True),
    ConvCase(16, 16, 16, (3, 3), (2, 2), (1, 1), (15, 16), 8, 8, 16, False, True, 1, False),
    ConvCase(8, 8, 8, (5, 3), (1, 2), (1, 1), (9, 12), 8, 8, 8, False, False, 1, True),
    ConvCase(48, 48, 1, (1, 1), (1, 1), (1, 1), (17, 17), 8, 8, 8, True, True, 3, True),
    ConvCase(3, 40, 1, (7, 7), (2, 2), (1, 1), (41, 41), 8, 8, 8, False, False, 1, False),
    ConvCase(3, 8, 1, (3, 3), (2, 1), (1, 2), (40, 40), 8, 8, 8, True, False, 1, False),
], ids=["depthwise-dilated", "depthwise-strided", "depthwise-mixed-stride", "pointwise-split", "first-layer-7x7",
        "short-rows-strided-dilated"])
def test_fast_int8_kernels_on_realistic_tiles(case):
    """The 8-bit kernels of runtime/sim/conv8.py on tiles shaped like the
    compiler's, on the pool and in the interpreter."""
    run_conv_case(case, large=True)
    run_conv_case(case, large=False)


@pytest.mark.parametrize("case", [
    ConvCase(32, 32, 32, (3, 3), (1, 1), (1, 1), (12, 12), 8, 8, 8, True, False, 1, True),
    ConvCase(24, 24, 24, (3, 3), (2, 2), (1, 1), (15, 16), 8, 8, 16, False, True, 1, False, True, True),
    ConvCase(3, 3, 3, (5, 5), (1, 2), (2, 1), (14, 13), 8, 8, 8, False, False, 1, False),
], ids=["residual-wrapping-bias", "strided-wide-table", "fewer-channels-than-chunks"])
def test_a_large_depthwise_conv_is_a_phase_of_channel_chunks(case):
    """A pooled 8-bit depthwise CONV runs as a CHANNELS phase of the phased
    driver (its channels in chunks over the pool, no return to Python:
    runtime.sim.conv.run_large is never called), with the oracle's bytes."""
    with mock.patch.object(conv_module, "run_large", side_effect=AssertionError("handed back to Python")):
        sim = run_conv_case(case, large=True, seed=6)
    run = sim._phases[0][0].run
    kinds = np.concatenate([phases[:, phased.KIND] for phases, *_ in run.stretches(run.order)])
    assert (kinds == phased.CHANNELS).sum() == 1


@pytest.mark.parametrize("case", [
    ConvCase(512, 16, 1, (3, 3), (1, 1), (1, 1), (3, 3), 8, 8, 8, True, True, 1, True),
    ConvCase(256, 32, 1, (3, 3), (2, 2), (1, 1), (5, 5), 8, 8, 8, False, False, 2, False),
    ConvCase(96, 24, 1, (3, 3), (1, 1), (2, 2), (6, 6), 8, 8, 16, False, True, 3, False, True),
    ConvCase(128, 256, 1, (1, 1), (2, 2), (1, 1), (3, 3), 8, 8, 8, True, False, 1, False, False, False, True),
], ids=["3x3-of-a-1x1-map", "strided-split", "dilated-table-16", "1x1-strided-scaled"])
def test_few_pixel_tiles_keep_their_weights_in_place(case):
    """A ResNet's last stage: tiles of fewer output pixels than channels
    (1x1 and 2x2 maps) take conv8.few_pixel_channels, the patches in the
    weights' own order and one epilogue for all channels, on the pool and
    in the interpreter, in every split mode."""
    chosen, real = [], conv_module._few_pixels
    with mock.patch.object(conv_module, "_few_pixels", lambda ins: chosen.append(real(ins)) or chosen[-1]):
        run_conv_case(case, large=True)
    assert any(chosen), "no tile took the few-pixel path"
    run_conv_case(case, large=False)


@pytest.mark.parametrize("case", [
    ConvCase(64, 32, 1, (3, 3), (1, 1), (1, 1), (12, 12), 8, 8, 8, True, False, 1, False, scaled=True),
    ConvCase(64, 32, 1, (3, 3), (1, 1), (1, 1), (12, 12), 8, 8, 8, True, True, 1, False, scaled=True),
    ConvCase(96, 40, 1, (1, 1), (1, 1), (1, 1), (9, 11), 8, 8, 16, False, False, 2, False, scaled=True),
    ConvCase(96, 40, 1, (1, 1), (1, 1), (1, 1), (9, 11), 8, 8, 8, False, True, 1, False, scaled=True),
    ConvCase(32, 32, 32, (3, 3), (2, 2), (1, 1), (15, 15), 8, 8, 8, True, False, 1, False, scaled=True),
    ConvCase(32, 32, 32, (3, 3), (1, 1), (1, 1), (12, 12), 8, 8, 8, False, True, 1, False, scaled=True),
], ids=["residual", "residual-leaky", "split-16-bit", "leaky", "depthwise-residual", "depthwise-leaky"])
def test_epilogue_on_outputs_that_span_the_range(case):
    """Multipliers that keep most outputs inside the clamp, on every path
    (planned GEMM on both threads' paths, depthwise): with the shifts of
    the other cases most outputs clamp, and a wrong rescale would hide."""
    for large in (False, True):
        run_conv_case(case, large=large, seed=5)


def test_accumulator_wraps_in_int32():
    """Sums past 2^31 wrap like the device's int32 accumulator (a program the
    compiler would reject, simulated as the ISA says)."""
    case = ConvCase(4, 2, 1, (1, 1), (1, 1), (1, 1), (2, 2), 8, 8, 8, False, False, 2, True)
    rng = np.random.default_rng(1)
    for seed in range(5):
        run_conv_case(dataclasses.replace(case, in_c=int(rng.integers(2, 5)) * 2), large=seed % 2 == 0, seed=seed)


@pytest.mark.parametrize("kernel,stride,dilation,in_hw", [
    ((3, 3), (1, 1), (1, 1), (4, 5)), ((3, 3), (2, 1), (2, 1), (7, 6)), ((3, 3), (1, 2), (1, 1), (3, 9)),
    ((2, 3), (1, 3), (1, 1), (3, 10)), ((3, 3), (1, 1), (1, 2), (4, 7)), ((1, 1), (2, 2), (1, 1), (4, 4)),
    ((3, 5), (1, 1), (1, 1), (3, 7)), ((3, 3), (1, 1), (1, 1), (3, 3)),
], ids=["3x3", "3x3-tall-strides-dilated-rows", "3x3-wide-stride", "2x3", "3x3-dilated-columns", "1x1-stride-2",
        "3x5", "whole-tile"])
def test_few_pixel_patches_are_each_windows_bytes_in_the_weights_order(kernel, stride, dilation, in_hw):
    """conv8.patches_in_order (the few-pixel dot products' patches) gives,
    for each output pixel, its window's bytes in the order (c, ky, kx):
    every kernel shape, stride and dilation against numpy's windows (the
    3x3 undilated-column path and the general loop)."""
    from runtime.sim import conv8
    from runtime.sim.epilogue import C_DH, C_DW, C_IN, C_IN_C, C_IN_H, C_IN_W, C_KH, C_KW, C_SH, C_SW

    rng = np.random.default_rng(7)
    in_c, abase, at = 5, 3, 11
    (kh, kw), (sh, sw), (dh, dw), (in_h, in_w) = kernel, stride, dilation, in_hw
    a8 = rng.integers(-128, 128, abase + at + in_c * in_h * in_w + 64).astype(np.int8)
    ins = np.zeros(max(C_DH, C_DW, C_IN, C_IN_C, C_IN_H, C_IN_W, C_KH, C_KW, C_SH, C_SW) + 1, np.int64)
    for col, value in ((C_IN, at), (C_IN_C, in_c), (C_IN_H, in_h), (C_IN_W, in_w), (C_KH, kh), (C_KW, kw), (C_SH, sh),
                       (C_SW, sw), (C_DH, dh), (C_DW, dw)):
        ins[col] = value
    x = a8[abase + at:abase + at + in_c * in_h * in_w].reshape(in_c, in_h, in_w)
    out_h, out_w = (in_h - dh * (kh - 1) - 1) // sh + 1, (in_w - dw * (kw - 1) - 1) // sw + 1
    want = np.array([[x[c, oy * sh + ky * dh, ox * sw + kx * dw] for c in range(in_c) for ky in range(kh)
                      for kx in range(kw)] for oy in range(out_h) for ox in range(out_w)], np.int8)
    got = np.asarray(conv8.patches_in_order(ins, a8, abase))
    assert got.shape == (want.size,) and np.array_equal(got.reshape(want.shape), want)
