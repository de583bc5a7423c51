"""QConvTranspose: the CPU kernel against the integer reference
(tests/oracle.py, a direct scatter of every tap in Python integers) bit for
bit, on both of the kernel's paths, and against the float ConvTranspose on
the shifted codes (the op is that transposed convolution of ``x - x_zero``
by the weights regrouped by output channel)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.errors import KernelError
from runtime.kernels import qdevice, run_kernel
from tests.helpers.qops import INT8, INT16, RANGE, assert_kernel_is_reference, ints, multipliers, one_node, output_attrs


@st.composite
def transpose_cases(draw):
    """x, w (QConv layout [K][C/group][kh][kw]), b and attributes: strides
    1-3, kernels 1-4, pads (negative ones too: an output_shape larger than
    the natural one), output_padding, groups, 8- and 16-bit data, a table."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    group = draw(st.sampled_from([1, 1, 2, 3]))
    per_in, per_out = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = [draw(st.integers(1, 4)) for _ in range(2)]
    strides = [draw(st.integers(1, 3)) for _ in range(2)]
    dilations = [draw(st.sampled_from([1, 1, 2])) for _ in range(2)]
    pads = [draw(st.integers(-1, 2)) for _ in range(4)]
    extra = [draw(st.integers(0, s - 1)) for s in strides]
    dims = [draw(st.integers(2, 5)) for _ in range(2)]
    out = [s * (d - 1) + e + (k - 1) * dl + 1 - pads[a] - pads[a + 2]
           for a, (s, d, e, k, dl) in enumerate(zip(strides, dims, extra, kernel, dilations))]
    if min(out) < 1:
        dims = [d + 3 for d in dims]
    x_dtype, w_dtype = draw(st.sampled_from([INT8, INT16])), draw(st.sampled_from([INT8, INT16]))
    x = ints(rng, (draw(st.integers(1, 2)), per_in * group, *dims), x_dtype)
    channels = per_out * group
    w = ints(rng, (channels, per_in, *kernel), w_dtype, -RANGE[w_dtype][1], RANGE[w_dtype][1])
    b = rng.integers(-2**18, 2**18, channels).astype(np.int32 if x_dtype == w_dtype == INT8 else np.int64)
    mult, shift = multipliers(rng, channels, 1e-9 if INT16 in (x_dtype, w_dtype) else 1e-5, 1e-1)
    attrs = dict(strides=strides, pads=pads, dilations=dilations, output_padding=extra, group=group,
                 x_zero=int(rng.integers(*RANGE[x_dtype]) // 4), mult=mult, shift=shift,
                 **output_attrs(rng, draw(st.sampled_from([INT8, INT16]))))
    if draw(st.booleans()):
        low, high = RANGE[np.dtype(attrs["out_dtype"])]
        attrs.update(table=rng.integers(low, high, 256, endpoint=True).tolist(), out_zero=3, lo=-128, hi=127)
    if draw(st.booleans()):
        attrs["neg_mult"], attrs["neg_shift"] = multipliers(rng, channels, 1e-9, 1e-2)
    return [x, w, b], attrs


@settings(max_examples=40, deadline=None)
@given(case=transpose_cases())
def test_qconv_transpose_kernel_is_the_reference(case):
    inputs, attrs = case
    assert_kernel_is_reference(*one_node("QConvTranspose", inputs, consts=(1, 2), **attrs))


@pytest.mark.parametrize("seed", range(3))
def test_int64_path_past_the_float_bound(monkeypatch, seed):
    monkeypatch.setattr(qdevice, "FLOAT_EXACT", 1)
    rng = np.random.default_rng(seed)
    x, w = ints(rng, (2, 4, 4, 5), INT16), ints(rng, (6, 2, 3, 4), INT16, -32767, 32767)
    b = rng.integers(-2**40, 2**40, 6).astype(np.int64)
    mult, shift = multipliers(rng, 6, 1e-9, 1e-8)
    attrs = dict(strides=[2, 3], pads=[1, -1, 0, 2], dilations=[1, 2], output_padding=[1, 0], group=2, x_zero=77,
                 mult=mult, shift=shift, out_zero=0, lo=-32768, hi=32767, out_dtype="int16")
    assert_kernel_is_reference(*one_node("QConvTranspose", [x, w, b], consts=(1, 2), **attrs))


def test_it_is_the_float_transposed_convolution_of_the_shifted_codes():
    """With an identity-like requantisation (multiplier 2^30, shift 30) and
    16-bit output, the result is conv_transpose(x - x_zero, w') + b, w' the
    weights in ONNX's [C][K/group][kh][kw] layout."""
    rng = np.random.default_rng(5)
    x, w = ints(rng, (1, 4, 5, 5), INT8, -20, 20), ints(rng, (6, 2, 4, 4), INT8, -3, 3)
    b = rng.integers(-50, 50, 6).astype(np.int32)
    attrs = dict(kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1], dilations=[1, 1], output_padding=[0, 0],
                 group=2, x_zero=-4, mult=[1 << 30] * 6, shift=[30] * 6, neg_mult=[], neg_shift=[], res_zero=0,
                 res_mult=0, res_shift=0, out_zero=0, lo=-32768, hi=32767, out_dtype="int16", table=[])
    (got,) = run_kernel("QConvTranspose", [x, w, b], attrs)
    onnx_w = w.reshape(2, 3, 2, 4, 4).transpose(0, 2, 1, 3, 4).reshape(4, 3, 4, 4).astype(np.float32)
    (want,) = run_kernel("ConvTranspose", [(x.astype(np.float32) + 4), onnx_w, b.astype(np.float32)],
                         {"kernel_shape": [4, 4], "strides": [2, 2], "pads": [1, 1, 1, 1], "dilations": [1, 1],
                          "output_padding": [0, 0], "group": 2, "auto_pad": "NOTSET"})
    assert got.shape == (1, 6, 10, 10)
    np.testing.assert_array_equal(got, want.astype(np.int64))


def test_an_accumulator_that_could_overflow_is_refused():
    """The device folds x_zero into each phase's bias, so the bound counts it."""
    x, w = np.zeros((1, 1, 2, 2), np.int8), np.full((1, 1, 2, 2), 127, np.int8)
    b = np.array([2**31 - 1 - 128 * 508], np.int32)  # within QConv's bound, not with x_zero folded
    attrs = dict(kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0], dilations=[1, 1], output_padding=[0, 0],
                 group=1, x_zero=127, mult=[1 << 30], shift=[30], neg_mult=[], neg_shift=[], res_zero=0, res_mult=0,
                 res_shift=0, out_zero=0, lo=-128, hi=127, out_dtype="int8", table=[])
    with pytest.raises(KernelError, match=r"accumulator can reach .*\(max\|x\| \+ \|x_zero\|\)"):
        run_kernel("QConvTranspose", [x, w, b], attrs)
