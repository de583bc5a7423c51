"""Convolutions by bands of output rows (im2col and product per band, in a
buffer of each thread's own): bitwise the one-GEMM path's results, over
strides, pads, dilations, ragged last bands, batches, bias, residual and
clamp."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import parallel
from runtime.gemm import pack_weights
from runtime.kernels import nn_im2col, nn_rows
from runtime.kernels.nn_conv import conv_nd
from tests.helpers.conv import naive_conv


@st.composite
def band_cases(draw):
    chans, out_c = draw(st.integers(1, 6)), draw(st.integers(1, 20))
    kernel = draw(st.sampled_from([1, 2, 3, 5]))
    stride, dilation = draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 1, 2]))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    height, width = draw(st.integers(6, 30)), draw(st.integers(6, 30))
    reach = dilation * (kernel - 1) + 1
    if height + pads[0] + pads[2] < reach or width + pads[1] + pads[3] < reach:
        pads = (3, 3, 3, 3)
    rng = np.random.default_rng(draw(st.integers(0, 1000)))
    x = rng.standard_normal((draw(st.integers(1, 2)), chans, height, width)).astype(np.float32)
    w = rng.standard_normal((out_c, chans, kernel, kernel)).astype(np.float32)
    b = rng.standard_normal(out_c).astype(np.float32) if draw(st.booleans()) else None
    if kernel == 1 and not any(pads):
        pads = (0, 1, 0, 1)  # a padded 1x1 goes through the column matrix too
    return x, w, b, (stride, stride), pads, (dilation, dilation)


def _banded_and_whole(x, w, b, strides, pads, dilations, clamp, with_residual, band):
    """(banded result, one-GEMM result, residual, whether bands were taken)."""
    options = dict(strides=strides, pads=pads, dilations=dilations, exact=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nn_im2col, "BAND_BLOCK", 0)
        shape = conv_nd(x, w, b, **options).shape
        residual = np.random.default_rng(3).standard_normal(shape).astype(np.float32) if with_residual else None
        whole = conv_nd(x, w, b, residual=residual, clamp=clamp, **options)
        out_h, out_w = shape[2:]
        band = max(band, -(-48 // out_w))  # a band at least one tile wide
        patch.setattr(nn_im2col, "BAND_BLOCK", band * w[0].size * out_w)
        patch.setattr(parallel, "NUM_THREADS", 1)  # bands are taken even when there are few
        used = nn_im2col.band_rows(w.shape[0], w[0].size, 1, out_h, out_w) > 0
        banded = conv_nd(x, w, b, residual=residual, clamp=clamp, **options)
    return banded, whole, residual, used


@settings(max_examples=60, deadline=None)
@given(band_cases(), st.sampled_from([None, (0.0, 6.0)]), st.booleans(), st.integers(1, 3))
def test_banded_convolution_is_bitwise_the_one_gemm_path(case, clamp, with_residual, band):
    x, w, b, strides, pads, dilations = case
    banded, whole, residual, _ = _banded_and_whole(x, w, b, strides, pads, dilations, clamp, with_residual, band)
    np.testing.assert_array_equal(banded, whole)
    expected = naive_conv(x.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64),
                          strides, pads, dilations, 1)
    if residual is not None:
        expected = expected + residual
    if clamp is not None:
        expected = np.clip(expected, *clamp)
    np.testing.assert_allclose(banded, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("x_shape,w_shape,stride,pad", [
    ((2, 3, 30, 30), (12, 3, 3, 3), 1, 1),  # 30 rows in bands of 2: 15 bands, batch 2
    ((1, 3, 31, 33), (9, 3, 3, 3), 2, 1),  # 16 x 17 output, a ragged last band
    ((1, 4, 40, 24), (5, 4, 5, 5), 2, 2),  # 5x5 at stride 2
])
@pytest.mark.parametrize("with_residual", [False, True])
def test_bands_are_taken_and_exact(x_shape, w_shape, stride, pad, with_residual):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    banded, whole, _, used = _banded_and_whole(x, w, b, (stride, stride), (pad,) * 4, (1, 1), (0.0, 6.0),
                                               with_residual, 2)
    assert used
    np.testing.assert_array_equal(banded, whole)


@pytest.mark.parametrize("x_shape,w_shape,stride,pad", [
    ((1, 3, 64, 64), (16, 3, 3, 3), 2, 1),  # PP-LCNet's stem, small: 32 x 32 out
    ((1, 3, 70, 53), (20, 3, 7, 7), 2, 3),  # a 7x7 stem: 35 x 27 out, 20 rows (a part panel), odd width
    ((2, 4, 31, 50), (9, 4, 5, 5), 1, 2),  # stride 1, 5x5, batch 2
    ((1, 1, 40, 98), (8, 1, 3, 3), 2, 0),  # one channel, no pads: 19 x 48 out
])
@pytest.mark.parametrize("with_residual", [False, True])
def test_a_short_reduction_reads_its_rows_with_the_column_matrix_bits(monkeypatch, x_shape, w_shape, stride, pad,
                                                                      with_residual):
    """A reduction of one block (a stem's) runs on the row kernels
    (runtime.kernels.nn_rows), bitwise the bands' column matrix and product
    (and so the one-GEMM path): checked to fail with one tap's offset moved."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    taken = []
    kernels_for = nn_rows.kernels_for
    monkeypatch.setattr(nn_rows, "kernels_for", lambda *args: taken.append(kernels_for(*args)) or taken[-1])
    rows, whole, _, used = _banded_and_whole(x, w, b, (stride, stride), (pad,) * 4, (1, 1), (0.0, 6.0),
                                             with_residual, 3)
    assert used and taken and taken[-1] is not None
    monkeypatch.setattr(nn_rows, "kernels_for", lambda *args: None)
    matrix, _, _, _ = _banded_and_whole(x, w, b, (stride, stride), (pad,) * 4, (1, 1), (0.0, 6.0), with_residual, 3)
    np.testing.assert_array_equal(rows, matrix)
    np.testing.assert_array_equal(rows, whole)


def test_a_long_reduction_or_a_dilated_window_keeps_the_column_matrix():
    packed = pack_weights(np.ones((8, 3 * 11 * 11), np.float32))  # 363 steps: two blocks
    assert nn_rows.kernels_for(3, (1, 11, 11, 1, 2, 2, 0, 5, 5, 0, 5, 5, 1, 1, 1), packed) is None
    packed = pack_weights(np.ones((8, 27), np.float32))
    assert nn_rows.kernels_for(3, (1, 3, 3, 1, 2, 2, 0, 1, 1, 0, 1, 1, 1, 1, 1), packed) is not None
    assert nn_rows.kernels_for(3, (1, 3, 3, 1, 2, 2, 0, 2, 2, 0, 2, 2, 1, 2, 2), packed) is None  # dilated
    assert nn_rows.kernels_for(3, (1, 3, 3, 1, 3, 3, 0, 1, 1, 0, 1, 1, 1, 1, 1), packed) is None  # stride 3
    assert nn_rows.kernels_for(3, (1, 3, 3, 1, 1, 2, 0, 1, 1, 0, 1, 1, 1, 1, 1), packed) is None  # unequal strides


def test_mobilenet_stem_takes_bands_on_two_threads(monkeypatch):
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    assert nn_im2col.band_rows(32, 27, 1, 112, 112) == 21  # 6 bands of 21 rows (the last one 7)
    assert nn_im2col.band_rows(64, 147, 1, 112, 112) == 3  # ResNet-50's 7x7 stem
    assert nn_im2col.band_rows(32, 27, 2, 112, 112) == 0  # 3-D: one GEMM per block of depth
    assert nn_im2col.band_rows(512, 2304, 1, 7, 7) == 0  # 7 bands of one 7-wide row: narrower than a tile
    assert nn_im2col.band_rows(128, 1152, 1, 28, 28) == 0  # 128 weight rows read again for 56 columns a band


@pytest.mark.parametrize("shape", [(1, 2, 5, 7), (1, 3, 9, 8), (2, 1, 7, 7)])
@pytest.mark.parametrize("pad,dilation", [(0, 1), (1, 1), (2, 2), (3, 1)])
def test_stride_two_column_matrix_reads_word_halves_exactly(shape, pad, dilation):
    """At stride 2 a float32 input of an even size is read as 64-bit words,
    the even or odd half of each as the row's first element falls: odd
    widths (rows starting on either half), pads and dilations move it."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((3, shape[1], 3, 3)).astype(np.float32)
    got = conv_nd(x, w, None, strides=(2, 2), pads=(pad,) * 4, dilations=(dilation, dilation), exact=True)
    expected = naive_conv(x.astype(np.float64), w.astype(np.float64), None, (2, 2), (pad,) * 4,
                          (dilation, dilation), 1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@st.composite
def windows(draw):
    """An input and a window whose sizes, strides and dilations may differ by axis."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    strides, dilations = (draw(st.integers(1, 3)), draw(st.integers(1, 3))), (draw(st.integers(1, 2)),
                                                                              draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    height = draw(st.integers(max(1, dilations[0] * (kh - 1) + 1 - pads[0] - pads[2]), 30))
    width = draw(st.integers(max(1, dilations[1] * (kw - 1) + 1 - pads[1] - pads[3]), 30))
    x = np.random.default_rng(draw(st.integers(0, 1000))).standard_normal((1, draw(st.integers(1, 4)), height,
                                                                            width)).astype(np.float32)
    return x, (kh, kw), strides, pads, dilations


@settings(max_examples=40, deadline=None)
@given(case=windows(), cut=st.lists(st.integers(0, 200), min_size=1, max_size=4))
def test_column_matrix_cut_into_chunks_anywhere_is_the_windows_of_the_padded_input(case, cut):
    """im2col_rows over rows cut at arbitrary places (a chunk may start at
    any tap (c, kh, kw)) gives each row the input values its tap reads
    through the window, zeros in the padding: small planes (the gather of
    each row from a padded copy of the channel) and large ones alike."""
    from runtime.kernels.nn_window import make_window

    x, (kh, kw), strides, pads, dilations = case
    image = x[0][:, None]  # (C, 1, H, W)
    chans = x.shape[1]
    window = make_window("Conv", 3, (1, kh, kw), (1, *strides), (0, pads[0], pads[1], 0, pads[2], pads[3]),
                         (1, *dilations))
    out_h = (x.shape[2] + pads[0] + pads[2] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    out_w = (x.shape[3] + pads[1] + pads[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    rows = chans * kh * kw
    col = np.full((rows, 1, out_h, out_w), np.nan, np.float32)
    edges = sorted({0, rows, *(c % (rows + 1) for c in cut)})
    for start, stop in zip(edges, edges[1:]):
        nn_im2col.im2col_rows(start, stop, image, col, window.loop_params())  # a tuple, as conv_nd passes it
    padded = np.pad(x[0], [(0, 0), (pads[0], pads[2]), (pads[1], pads[3])])
    for r in range(rows):
        c, i, j = r // (kh * kw), (r // kw) % kh, r % kw
        want = padded[c, i * dilations[0]:, j * dilations[1]:][::strides[0], ::strides[1]][:out_h, :out_w]
        np.testing.assert_array_equal(col[r, 0], want)


@pytest.mark.parametrize("chans,height,width,kernel,pads,dilation,top", [
    (128, 4, 4, (3, 3), (1, 1, 1, 1), 1, 0),   # ResNet-10's 4 x 4 layers: a row is one run of 16 lanes
    (6, 2, 2, (3, 3), (1, 1, 1, 1), 1, 0),     # rows of 4 positions: one run of 4 lanes a row
    (5, 2, 3, (3, 3), (1, 1, 1, 1), 1, 0),     # rows of 6 positions: a run of 8 lanes spills into the next row
    (3, 7, 7, (3, 3), (1, 1, 1, 1), 1, 0),     # 49 positions: a ragged last run
    (2, 9, 5, (5, 3), (2, 1, 2, 1), 1, 0),     # kernel taller than wide, plane not square
    (2, 8, 8, (3, 3), (2, 2, 2, 2), 2, 0),     # dilation 2
    (3, 6, 6, (2, 2), (0, 0, 1, 1), 1, 0),     # an even kernel: SAME with the pad at the end
    (2, 10, 6, (3, 3), (1, 1, 1, 1), 1, 4),    # a block of output rows from row 4 (lower_conv_gemm's rows)
    (2, 16, 16, (3, 3), (1, 1, 1, 1), 1, 0),   # the largest plane taken this way (SMALL_PLANE)
])
def test_shifted_column_rows_write_their_rows_only(chans, height, width, kernel, pads, dilation, top):
    """The column matrix of a unit-stride convolution whose output is as
    wide as its input (each row its channel's plane shifted, a masked
    vector load per run of 4, 8 or 16 lanes): every row the windows' values and
    zeros, with chunks cut anywhere and run in any order; a chunk writes
    its own rows only, though its rows' runs spill past their ends."""
    from runtime.kernels.nn_window import make_window

    kh, kw = kernel
    rng = np.random.default_rng(chans * height + width)
    x = rng.standard_normal((chans, 1, height, width)).astype(np.float32)
    x[0, 0, 0, 0] = np.float32(np.nan)  # bits are moved: a NaN stays where it was read
    window = make_window("Conv", 3, (1, kh, kw), (1, 1, 1), (0, pads[0], pads[1], 0, pads[2], pads[3]),
                         (1, dilation, dilation))
    geo = window.loop_params()
    geo = geo[:7] + (geo[7] - top,) + geo[8:]
    out_h = height + pads[0] + pads[2] - dilation * (kh - 1) - top
    out_w = width + pads[1] + pads[3] - dilation * (kw - 1)
    assert out_w == width and 4 <= out_h * out_w <= nn_im2col.SMALL_PLANE  # the case under test
    rows = chans * kh * kw
    padded = np.pad(x[:, 0], [(0, 0), (pads[0], pads[2]), (pads[1], pads[3])])
    want = np.stack([padded[r // (kh * kw), top + (r // kw) % kh * dilation:, r % kw * dilation:][:out_h, :out_w]
                     for r in range(rows)])
    for cut in ([0, rows], [0, 1, 2, rows - 1, rows], [0, rows // 3, rows // 3 + 1, rows]):
        col = np.full((rows, 1, out_h, out_w), 7.0, np.float32)
        spans = list(zip(cut, cut[1:]))
        for start, stop in reversed(spans):  # a later chunk first: an earlier one must not spill into it
            before = col.copy()
            nn_im2col.im2col_rows(start, stop, x, col, geo)
            np.testing.assert_array_equal(col[:start], before[:start])
            np.testing.assert_array_equal(col[stop:], before[stop:])
        np.testing.assert_array_equal(col[:, 0], want)


@pytest.mark.parametrize("x_shape, w_shape, stride, pads, group", [
    ((1, 32, 28, 28), (32, 8, 3, 3), 1, (1, 1, 1, 1), 4),  # 8 channels a group: 72 steps
    ((2, 64, 20, 24), (48, 16, 3, 3), 2, (1, 0, 1, 1), 4),  # 16 a group, 12 outputs (a part panel), uneven pads
    ((1, 12, 90, 17), (6, 4, 5, 5), 1, (2, 2, 2, 2), 3),  # 5x5, 2 outputs a group, 3 bands (a ragged last)
])
@pytest.mark.parametrize("epilogue", [False, True])
def test_groups_of_a_few_channels_run_by_bands_with_one_group_bits(monkeypatch, x_shape, w_shape, stride, pads,
                                                                     group, epilogue):
    """A grouped convolution whose groups the row kernels take runs by
    bands of all groups (a task per group and band), each group's outputs
    bitwise a one-group convolution's of its channels (its column matrix's
    GEMM: one reduction block), with bias, residual, clamp and gate, on
    one and two threads."""
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    window = dict(strides=(stride, stride), pads=pads, dilations=(1, 1))
    extra = {}
    if epilogue:
        shape = conv_nd(x, w, b, group=group, **window).shape
        extra = dict(residual=rng.standard_normal(shape).astype(np.float32), clamp=(-0.5, 1.5),
                     gate=("HardSwish", 1 / 6, 0.5))
    calls = []
    bands = nn_im2col.conv_by_bands
    monkeypatch.setattr(nn_im2col, "conv_by_bands", lambda *args: calls.append(args[1].batch) or bands(*args))
    monkeypatch.setattr("runtime.kernels.nn_grouped.conv_by_bands", nn_im2col.conv_by_bands)
    got = conv_nd(x, w, b, group=group, **window, **extra)
    assert calls == [group]
    monkeypatch.setattr(parallel, "NUM_THREADS", 1)
    np.testing.assert_array_equal(conv_nd(x, w, b, group=group, **window, **extra), got)
    per_in, per_out = x_shape[1] // group, w_shape[0] // group
    for g in range(group):
        part = slice(g * per_out, (g + 1) * per_out)
        alone = dict(extra, residual=np.ascontiguousarray(extra["residual"][:, part])) if epilogue else {}
        want = conv_nd(np.ascontiguousarray(x[:, g * per_in:(g + 1) * per_in]), np.ascontiguousarray(w[part]),
                       b[part].copy(), group=1, exact=True, **window, **alone)
        np.testing.assert_array_equal(got[:, part], want, err_msg=f"group {g}")
    if not epilogue:
        np.testing.assert_allclose(got, naive_conv(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                                                   group=group, **window), rtol=1e-4, atol=1e-4)
