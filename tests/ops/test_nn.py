"""Conv, ConvTranspose, Gemm, MatMul and Einsum against onnx's reference
evaluator (onnxruntime where the reference is slow or wrong), plus errors."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from compiler.errors import ModelImportError
from runtime.errors import KernelError
from runtime.kernels import run_kernel
from runtime.kernels.nn import conv_nd, conv_transpose_nd, matmul
from tests.helpers.conv import naive_conv, random
from tests.helpers.node_models import assert_matches_onnxruntime, assert_matches_reference, make_node_model, run_tessera

SETTINGS = settings(max_examples=30, deadline=None)


# ---------------------------------------------------------------- Conv
@st.composite
def conv_cases(draw, max_spatial=3):
    spatial = draw(st.integers(1, max_spatial))
    group = draw(st.sampled_from([1, 1, 2, 3]))
    depthwise = draw(st.booleans()) and group > 1
    cg = 1 if depthwise else draw(st.integers(1, 3))
    kg = draw(st.integers(1, 2)) if depthwise else draw(st.integers(1, 3))
    kernel = [draw(st.integers(1, 3)) for _ in range(spatial)]
    strides = [draw(st.integers(1, 3)) for _ in range(spatial)]
    dilations = [draw(st.integers(1, 2)) for _ in range(spatial)]
    pads = [draw(st.integers(0, 2)) for _ in range(2 * spatial)]
    size = 6 if spatial < 3 else 4
    dims = [draw(st.integers((k - 1) * d + 1, (k - 1) * d + size)) for k, d in zip(kernel, dilations)]
    batch = draw(st.integers(1, 2))
    seed = draw(st.integers(0, 1000))
    x = random((batch, cg * group, *dims), seed)
    w = random((kg * group, cg, *kernel), seed + 1)
    b = random((kg * group,), seed + 2) if draw(st.booleans()) else None
    return x, w, b, dict(strides=strides, pads=pads, dilations=dilations, group=group)


@SETTINGS
@given(case=conv_cases(), const_weight=st.booleans())
def test_conv_matches_reference(case, const_weight):
    x, w, b, attrs = case
    inputs = [x, w] if b is None else [x, w, b]
    consts = (1, 2) if const_weight else ()
    assert_matches_reference("Conv", inputs, consts=consts, rtol=1e-4, atol=1e-5,
                             kernel_shape=list(w.shape[2:]), **attrs)


def test_conv_3d_one_deep_input_with_a_depth_pad_reads_the_pad():
    """Found by the property above: a one-deep input, a 1-deep kernel, a
    begin pad of 1 and stride 2 in depth: the one output plane reads the
    pad (zeros). The small-plane column matrix ignored depth and read the
    input plane instead."""
    x = np.array([[[[[0.12573022, -0.13210486]]]]], dtype=np.float32)
    w = np.array([[[[[0.34558418, 0.82161814]]]]], dtype=np.float32)
    assert_matches_reference("Conv", [x, w], rtol=1e-4, atol=1e-5, kernel_shape=[1, 1, 2], strides=[2, 1, 1],
                             pads=[1, 0, 0, 0, 0, 0], dilations=[1, 1, 1], group=1)


@SETTINGS
@given(case=conv_cases())
def test_conv_nd_float64_is_exact_on_integers(case):
    """What the quantized ops rely on: float64 operands holding int8 values
    give the exact integer convolution."""
    x, w, b, attrs = case
    rng = np.random.default_rng(0)
    xi = rng.integers(-128, 128, x.shape).astype(np.float64)
    wi = rng.integers(-128, 128, w.shape).astype(np.float64)
    bi = None if b is None else rng.integers(-2**20, 2**20, b.shape).astype(np.float64)
    got = conv_nd(xi, wi, bi, **attrs)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, naive_conv(xi, wi, bi, **attrs))


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("strides", [[1, 1], [2, 3]])
def test_conv_auto_pad(auto_pad, strides):
    x, w = random((1, 2, 7, 8)), random((3, 2, 3, 2), 1)
    assert_matches_reference("Conv", [x, w], consts=(1,), auto_pad=auto_pad, strides=strides, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("opset", [7, 11])
def test_conv_old_opsets_and_defaults(opset):
    x, w, b = random((2, 4, 5, 5)), random((6, 2, 3, 3), 1), random((6,), 2)
    assert_matches_reference("Conv", [x, w, b], opset=opset, consts=(1, 2), group=2, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_conv_other_float_types(dtype):
    x, w, b = random((1, 3, 6, 6), 0, dtype), random((4, 3, 3, 3), 1, dtype), random((4,), 2, dtype)
    tol = 1e-2 if dtype == np.float16 else 1e-10
    assert_matches_reference("Conv", [x, w, b], consts=(1, 2), pads=[1, 1, 1, 1], rtol=tol, atol=tol)


@pytest.mark.parametrize("shape,kernel,strides,pads,group,dilations", [
    ((1, 64, 14, 14), (128, 64, 1, 1), (1, 1), (0, 0, 0, 0), 1, (1, 1)),  # pointwise GEMM
    ((2, 16, 9, 9), (32, 16, 1, 1), (2, 2), (0, 0, 0, 0), 1, (1, 1)),  # strided pointwise
    ((2, 16, 9, 9), (32, 4, 1, 1), (1, 1), (0, 0, 0, 0), 4, (1, 1)),  # grouped pointwise
    ((1, 32, 15, 15), (32, 1, 3, 3), (1, 1), (1, 1, 1, 1), 32, (1, 1)),  # depthwise, channels last
    ((1, 32, 15, 15), (64, 1, 3, 3), (2, 2), (1, 0, 1, 0), 32, (1, 1)),  # depthwise, multiplier 2
    ((2, 6, 20, 21), (6, 1, 3, 3), (1, 1), (1, 1, 1, 1), 6, (1, 1)),  # depthwise planes, flat interior
    ((1, 4, 70, 69), (4, 1, 3, 3), (2, 2), (1, 1, 1, 1), 4, (1, 1)),  # depthwise planes, strided
    ((1, 4, 24, 24), (4, 1, 5, 5), (1, 1), (4, 4, 4, 4), 4, (2, 2)),  # depthwise planes, 5x5 dilated
    ((1, 32, 14, 14), (32, 1, 5, 5), (1, 1), (2, 2, 2, 2), 32, (1, 1)),  # whole padded planes (PP-LCNet's 5x5)
    ((2, 16, 7, 7), (16, 1, 5, 5), (1, 1), (2, 2, 2, 2), 16, (1, 1)),  # whole, a small plane (not channels last)
    ((1, 4, 9, 11), (8, 1, 7, 7), (1, 1), (3, 1, 2, 3), 4, (1, 1)),  # whole, multiplier 2, asymmetric pads
    ((1, 2, 190, 190), (2, 1, 5, 5), (1, 1), (2, 2, 2, 2), 2, (1, 1)),  # beyond PADDED_PLANE: row by row
    ((1, 4, 24, 24), (4, 1, 3, 3), (1, 1), (2, 0, 0, 2), 4, (1, 1)),  # depthwise planes, asymmetric pads
    ((1, 3, 20, 20), (6, 1, 3, 3), (1, 1), (1, 1, 1, 1), 3, (1, 1)),  # depthwise planes, multiplier 2
    ((1, 3, 33, 33), (16, 3, 7, 7), (2, 2), (3, 3, 3, 3), 1, (1, 1)),  # stem-like
    ((2, 8, 10, 12), (6, 8, 3, 3), (1, 1), (2, 0, 0, 2), 1, (1, 1)),  # im2col runs, asymmetric pads
    ((1, 8, 10, 12), (6, 4, 3, 3), (1, 1), (2, 2, 2, 2), 2, (2, 2)),  # im2col runs, dilated, grouped
    ((1, 8, 10, 12), (6, 8, 3, 3), (1, 2), (1, 1, 1, 1), 1, (1, 1)),  # im2col, strided columns
])
def test_conv_paths_match_onnxruntime(shape, kernel, strides, pads, group, dilations):
    x, w, b = random(shape), random(kernel, 1), random((kernel[0],), 2)
    assert_matches_onnxruntime("Conv", [x, w, b], consts=(1, 2), strides=list(strides), pads=list(pads), group=group,
                               dilations=list(dilations))


def test_depthwise_3d_with_padded_unit_depth():
    """A 3-D depthwise conv whose only depth position lies in the padding
    gives just the bias (a 2-D fast path must not take it)."""
    x, w = random((1, 2, 1, 3, 3)), random((4, 1, 1, 3, 3), 1)
    assert_matches_reference("Conv", [x, w], consts=(1,), strides=[2, 1, 1], pads=[1, 0, 0, 0, 0, 0], group=2,
                             rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape, kernel, strides, pads, dilations, group", [
    ((2, 1536, 5, 5), (12, 512, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 3),  # grouped pointwise, two images
    ((1, 768, 9, 9), (8, 384, 1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 2),  # strided: subsampled first
    ((1, 64, 9, 9), (16, 32, 5, 5), (1, 1), (2, 2, 2, 2), (1, 1), 2),  # AlexNet's second layer, small
    ((2, 192, 10, 12), (8, 48, 3, 3), (2, 1), (1, 0, 2, 1), (2, 2), 4),  # dilated, uneven pads
    ((1, 64, 40, 40), (32, 16, 3, 3), (1, 1), (2, 2, 2, 2), (2, 2), 4),  # two blocks of output rows
])
@pytest.mark.parametrize("epilogue", [False, True])
def test_a_grouped_float32_conv_sums_each_group_as_a_one_group_conv(shape, kernel, strides, pads, dilations, group,
                                                                     epilogue):
    """Groups of several channels run on Tessera's GEMM as one batch of
    products: each group's outputs are, bit for bit, those of a one-group
    convolution of its channels (with the bias, residual, clamp and gate
    alike), the same on every host and whatever numpy's BLAS threads (its
    OpenBLAS, which ran them, chose its kernel per CPU and for some shapes by
    its thread count: AlexNet's binary changed with OPENBLAS_NUM_THREADS;
    at these depths its sums differ from Tessera's)."""
    x, w = random(shape, 20), random(kernel, 21)
    b = random((kernel[0],), 22)
    window = dict(strides=strides, pads=pads, dilations=dilations)
    extra = {}
    if epilogue:
        out = conv_nd(x, w, b, group=group, **window)
        extra = dict(residual=random(out.shape, 23), clamp=(-0.5, 1.5), gate=("HardSwish", 1 / 6, 0.5))
    got = conv_nd(x, w, b, group=group, **window, **extra)
    per_in, per_out = shape[1] // group, kernel[0] // group
    for g in range(group):
        part = slice(g * per_out, (g + 1) * per_out)
        alone = dict(extra, residual=np.ascontiguousarray(extra["residual"][:, part])) if epilogue else {}
        want = conv_nd(np.ascontiguousarray(x[:, g * per_in:(g + 1) * per_in]), np.ascontiguousarray(w[part]),
                       b[part].copy(), group=1, **window, **alone)
        np.testing.assert_array_equal(got[:, part], want, err_msg=f"group {g}")


def test_conv_group_mismatch_is_an_import_error():
    x, w = random((1, 4, 5, 5)), random((6, 3, 3, 3))
    with pytest.raises(ModelImportError, match="group=1"):
        run_tessera(make_node_model("Conv", [x, w], consts=(1,)), {"in0": x})


@pytest.mark.parametrize("attrs,match", [
    (dict(kernel_shape=[2, 2]), "kernel_shape"),
    (dict(strides=[1]), "strides"),
    (dict(strides=[0, 1]), "strides"),
    (dict(pads=[1, 1]), "pads"),
    (dict(pads=[-1, 0, 0, 0]), "pads"),
    (dict(dilations=[1, 0]), "dilations"),
    (dict(group=0), "group"),
    (dict(pads=[0, 0, 0, 0], dilations=[4, 4]), "does not fit"),
])
def test_conv_bad_attributes_are_import_errors(attrs, match):
    x, w = random((1, 2, 5, 5)), random((2, 2, 3, 3))
    with pytest.raises(ModelImportError, match=match):
        run_tessera(make_node_model("Conv", [x, w], consts=(1,), **attrs), {"in0": x})


@pytest.mark.parametrize("attrs,match", [
    (dict(strides=(0, 1)), "strides"),
    (dict(strides=(1,)), "strides"),
    (dict(pads=(0, 0, -2, 0)), "pads"),
    (dict(dilations=(1, -1)), "dilations"),
    (dict(group=3), "group"),
    (dict(dilations=(9, 9)), "does not fit"),
    (dict(kernel_shape=(2, 3)), "kernel_shape"),
    (dict(pads=(2**40, 0, 0, 0)), "beyond"),
    (dict(pads=(2**20, 2**20, 2**20, 2**20)), "elements"),
])
def test_conv_kernel_validates_before_running(attrs, match):
    x, w = random((1, 2, 5, 5)), random((2, 2, 3, 3))
    full = dict(kernel_shape=(3, 3), strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1)
    full.update(attrs)
    with pytest.raises(KernelError, match=match):
        run_kernel("Conv", [x, w], full)


def test_conv_nd_rejects_mixed_dtypes_and_bad_bias():
    x, w = random((1, 2, 5)), random((3, 2, 2))
    window = dict(strides=[1], pads=[0, 0], dilations=[1])
    with pytest.raises(KernelError, match="float64"):
        conv_nd(x, w.astype(np.float64), **window)
    with pytest.raises(KernelError, match="B has shape"):
        conv_nd(x, w, np.zeros(2, np.float32), **window)


# ---------------------------------------------------------------- ConvTranspose
def naive_conv_transpose(x, w, b, strides, pads, dilations, group, output_padding):
    """Direct scatter of every input value through every kernel tap."""
    spatial = x.ndim - 2
    span = [(w.shape[2 + i] - 1) * dilations[i] + 1 for i in range(spatial)]
    full = [strides[i] * (x.shape[2 + i] - 1) + span[i] + output_padding[i] for i in range(spatial)]
    lead = [max(-pads[i], 0) for i in range(spatial)]
    tail = [max(-pads[spatial + i], 0) for i in range(spatial)]
    acc = np.zeros((x.shape[0], w.shape[1] * group, *[lead[i] + full[i] + tail[i] for i in range(spatial)]))
    cg, kg = x.shape[1] // group, w.shape[1]
    for tap in np.ndindex(*w.shape[2:]):
        where = tuple(slice(lead[i] + tap[i] * dilations[i],
                            lead[i] + tap[i] * dilations[i] + (x.shape[2 + i] - 1) * strides[i] + 1, strides[i])
                      for i in range(spatial))
        for g in range(group):
            wt = w[g * cg:(g + 1) * cg, :, *tap].astype(np.float64)
            acc[(slice(None), slice(g * kg, (g + 1) * kg)) + where] += np.einsum(
                "ck,nc...->nk...", wt, x[:, g * cg:(g + 1) * cg])
    crop = tuple(slice(lead[i] + pads[i], lead[i] + full[i] - pads[spatial + i]) for i in range(spatial))
    out = acc[(slice(None), slice(None)) + crop]
    if b is not None:
        out = out + b.reshape((1, -1) + (1,) * spatial)
    return out


@st.composite
def conv_transpose_cases(draw):
    spatial = draw(st.integers(1, 3))
    group = draw(st.sampled_from([1, 1, 2]))
    cg, kg = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = [draw(st.integers(1, 3)) for _ in range(spatial)]
    strides = [draw(st.integers(1, 3)) for _ in range(spatial)]
    dilations = [draw(st.integers(1, 2)) for _ in range(spatial)]
    pads = [draw(st.integers(0, 2)) for _ in range(2 * spatial)]
    output_padding = [draw(st.integers(0, s - 1)) for s in strides]
    dims = [draw(st.integers(1, 4)) for _ in range(spatial)]
    for i in range(spatial):
        full = strides[i] * (dims[i] - 1) + (kernel[i] - 1) * dilations[i] + 1 + output_padding[i]
        assume(full - pads[i] - pads[spatial + i] >= 1)
    seed = draw(st.integers(0, 1000))
    x = random((draw(st.integers(1, 2)), cg * group, *dims), seed)
    w = random((cg * group, kg, *kernel), seed + 1)
    b = random((kg * group,), seed + 2) if draw(st.booleans()) else None
    return x, w, b, dict(strides=strides, pads=pads, dilations=dilations, group=group, output_padding=output_padding)


@SETTINGS
@given(case=conv_transpose_cases())
def test_conv_transpose_matches_direct_scatter(case):
    x, w, b, attrs = case
    inputs = [x, w] if b is None else [x, w, b]
    model = make_node_model("ConvTranspose", inputs, consts=(1, 2), kernel_shape=list(w.shape[2:]), **attrs)
    (got,) = run_tessera(model, {"in0": x})
    np.testing.assert_allclose(got, naive_conv_transpose(x, w, b, **attrs), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attrs", [
    dict(strides=[3, 2], output_shape=[10, 8]),
    dict(strides=[3, 2], output_shape=[10, 8], output_padding=[1, 1]),
    dict(strides=[2, 2], auto_pad="SAME_UPPER"),
    dict(strides=[2, 2], auto_pad="SAME_LOWER"),
    dict(strides=[2, 1], auto_pad="VALID", dilations=[2, 1]),
])
def test_conv_transpose_output_shape_and_auto_pad(attrs):
    x, w, b = random((1, 2, 3, 3)), random((2, 3, 3, 3), 1), random((3,), 2)
    assert_matches_reference("ConvTranspose", [x, w, b], consts=(1, 2), rtol=1e-4, atol=1e-5, **attrs)


def test_conv_transpose_output_shape_smaller_than_natural():
    """output_shape below the natural size crops: total padding 2 and 1, the
    odd one at the beginning (the ONNX spec's split)."""
    x, w = random((1, 2, 3, 3)), random((2, 3, 3, 3), 1)
    model = make_node_model("ConvTranspose", [x, w], consts=(1,), strides=[2, 2], output_shape=[5, 6])
    (got,) = run_tessera(model, {"in0": x})
    want = naive_conv_transpose(x, w, None, [2, 2], [1, 1, 1, 0], [1, 1], 1, [0, 0])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_conv_transpose_grouped_matches_onnxruntime():
    x, w, b = random((2, 4, 5, 4)), random((4, 3, 3, 2), 1), random((6,), 2)
    assert_matches_onnxruntime("ConvTranspose", [x, w, b], consts=(1, 2), group=2, strides=[2, 1],
                               pads=[1, 0, 0, 1], output_padding=[1, 0])


def test_a_grouped_float32_conv_transpose_sums_each_group_as_a_one_group_one():
    """A grouped float32 ConvTranspose's products run on Tessera's GEMM as
    one batch: each group's outputs are, bit for bit, those of a one-group
    ConvTranspose of its channels (numpy's OpenBLAS, which ran them, sums
    differently at this depth, and per CPU)."""
    x, w, b = random((2, 768, 5, 4)), random((768, 3, 3, 2), 1), random((6,), 2)
    options = dict(strides=[2, 1], pads=[1, 0, 0, 1], dilations=[1, 1], output_padding=[1, 0])
    got = conv_transpose_nd(x, w, b, group=2, **options)
    for g in range(2):
        want = conv_transpose_nd(np.ascontiguousarray(x[:, g * 384:(g + 1) * 384]),
                                 np.ascontiguousarray(w[g * 384:(g + 1) * 384]), b[g * 3:(g + 1) * 3].copy(),
                                 group=1, **options)
        np.testing.assert_array_equal(got[:, g * 3:(g + 1) * 3], want, err_msg=f"group {g}")


def test_conv_transpose_errors():
    x, w = random((1, 4, 3, 3)), random((3, 2, 3, 3))
    with pytest.raises(ModelImportError, match="input channels"):
        run_tessera(make_node_model("ConvTranspose", [x, w], consts=(1,)), {"in0": x})
    attrs = dict(kernel_shape=(3, 3), strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1,
                 output_padding=(-1, 0))
    with pytest.raises(KernelError, match="output_padding"):
        run_kernel("ConvTranspose", [x, random((4, 2, 3, 3))], attrs)
    huge = dict(attrs, output_padding=(0, 0), strides=(2**16, 2**16))
    with pytest.raises(KernelError, match="elements"):
        run_kernel("ConvTranspose", [x, random((4, 2, 3, 3))], huge)
    negative = dict(attrs, output_padding=(0, 0), pads=(-2**62, 0, 2**62, 0))
    with pytest.raises(KernelError, match="beyond"):
        run_kernel("ConvTranspose", [x, random((4, 2, 3, 3))], negative)


# ---------------------------------------------------------------- Gemm
@SETTINGS
@given(m=st.integers(1, 6), k=st.integers(1, 6), n=st.integers(1, 6), trans_a=st.integers(0, 1),
       trans_b=st.integers(0, 1), alpha=st.sampled_from([1.0, 0.5, -2.0]), beta=st.sampled_from([1.0, 0.0, 3.0]),
       c_form=st.sampled_from(["none", "scalar", "row", "col", "full", "one"]), const_b=st.booleans())
def test_gemm_matches_reference(m, k, n, trans_a, trans_b, alpha, beta, c_form, const_b):
    a = random((k, m) if trans_a else (m, k), 1)
    b = random((n, k) if trans_b else (k, n), 2)
    c_shape = {"none": None, "scalar": (), "row": (n,), "col": (m, 1), "full": (m, n), "one": (1, 1)}[c_form]
    inputs = [a, b] + ([] if c_shape is None else [random(c_shape, 3)])
    assert_matches_reference("Gemm", inputs, consts=(1, 2) if const_b else (), rtol=1e-5, atol=1e-5,
                             transA=trans_a, transB=trans_b, alpha=alpha, beta=beta)


@pytest.mark.parametrize("opset", [7, 9, 11])
def test_gemm_old_opsets(opset):
    a, b, c = random((3, 4)), random((5, 4), 1), random((5,), 2)
    assert_matches_reference("Gemm", [a, b, c], opset=opset, transB=1, alpha=0.5, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float64])
def test_gemm_other_types(dtype):
    a, b, c = (np.arange(12).reshape(3, 4) % 5).astype(dtype), (np.arange(8).reshape(4, 2) - 3).astype(dtype), \
        np.array([1, -2], dtype=dtype)
    assert_matches_reference("Gemm", [a, b, c], opset=13)


@pytest.mark.parametrize("shapes,match", [
    (((3, 4), (5, 4), None), "inner dims"),
    (((3, 4), (4, 5), (3, 2)), "does not broadcast"),
    (((3, 4), (4, 5), (2, 3, 5)), "does not broadcast"),
    (((3, 4, 1), (4, 5), None), "matrices"),
])
def test_gemm_shape_errors(shapes, match):
    inputs = [random(s) for s in shapes if s is not None]
    model = make_node_model("Gemm", inputs)
    with pytest.raises(ModelImportError, match=match):
        run_tessera(model, {f"in{i}": x for i, x in enumerate(inputs)})


# ---------------------------------------------------------------- MatMul
batch_dims = st.lists(st.integers(1, 3), min_size=0, max_size=3)


@SETTINGS
@given(batch=batch_dims, m=st.integers(1, 4), k=st.integers(1, 4), n=st.integers(1, 4), a_vector=st.booleans(),
       b_vector=st.booleans(), seed=st.integers(0, 99), data=st.data())
def test_matmul_matches_reference(batch, m, k, n, a_vector, b_vector, seed, data):
    """Batch dims that broadcast: each operand keeps a suffix of ``batch``,
    with some dims set to 1."""
    a_batch = [data.draw(st.sampled_from([d, 1])) for d in batch]
    b_batch = [data.draw(st.sampled_from([d, 1])) for d in batch]
    a_batch = a_batch[data.draw(st.integers(0, len(batch))):]
    b_batch = b_batch[data.draw(st.integers(0, len(batch))):]
    a_shape = (k,) if a_vector else (*a_batch, m, k)
    b_shape = (k,) if b_vector else (*b_batch, k, n)
    assert_matches_reference("MatMul", [random(a_shape, seed), random(b_shape, seed + 1)], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("a_shape,b_shape", [
    ((2, 1, 3, 4), (5, 4, 2)), ((4,), (4,)), ((3, 4), (4,)), ((4,), (2, 4, 3)), ((1, 2, 3), (3, 3, 1)),
])
def test_matmul_broadcast_and_vectors(a_shape, b_shape):
    assert_matches_reference("MatMul", [random(a_shape), random(b_shape, 1)], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.int64, np.float16])
def test_matmul_other_types(dtype):
    a, b = (np.arange(24).reshape(2, 3, 4) % 7).astype(dtype), (np.arange(8).reshape(4, 2) - 4).astype(dtype)
    assert_matches_reference("MatMul", [a, b], opset=13)


def test_matmul_transposed_views_use_blas_and_stay_exact():
    a = random((40, 30))
    b = random((50, 40), 1)
    np.testing.assert_allclose(matmul(a.T, b.T), a.T @ b.T, rtol=1e-5)
    sliced = random((6, 8, 10))[:, ::2, 1:]
    np.testing.assert_allclose(matmul(sliced, b[:9, :3]), sliced @ b[:9, :3], rtol=1e-5)


def test_matmul_errors():
    with pytest.raises(ModelImportError, match="inner dims"):
        a, b = random((2, 3)), random((4, 2))
        run_tessera(make_node_model("MatMul", [a, b]), {"in0": a, "in1": b})
    with pytest.raises(KernelError, match="do not match"):
        matmul(random((2, 3)), random((4, 2)))
    with pytest.raises(KernelError, match="rank"):
        matmul(np.float32(1.0), random((2,)))


# ---------------------------------------------------------------- Einsum
@pytest.mark.parametrize("equation,shapes", [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)]),
    ("ij->ji", [(3, 4)]),
    ("ii->i", [(4, 4)]),
    ("ii", [(4, 4)]),
    ("i,i", [(5,), (5,)]),
    ("ij,kj", [(3, 4), (5, 4)]),
    ("bhqd,bhkd->bhqk", [(1, 2, 3, 4), (1, 2, 5, 4)]),
    ("i,j->ij", [(3,), (4,)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
    ("i...->...", [(3, 2, 2)]),
    ("ij,j->i", [(3, 1), (4,)]),
])
def test_einsum_matches_reference(equation, shapes):
    inputs = [random(s, i) for i, s in enumerate(shapes)]
    assert_matches_reference("Einsum", inputs, opset=12, equation=equation, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("equation,shapes,match", [
    ("ij,jk->ik", [(3, 4)], "input terms"),
    ("ij->ik", [(3, 4)], "not in any input"),
    ("ij->ii", [(3, 4)], "repeats"),
    ("ijk->i", [(3, 4)], "does not fit"),
    ("ij,jk->ik", [(3, 4), (5, 2)], "sizes"),
    ("i$->i", [(3, 4)], "invalid"),
    ("...ij->ij", [(2, 3, 4)], r"'\.\.\.'"),
])
def test_einsum_errors(equation, shapes, match):
    inputs = [random(s) for s in shapes]
    model = make_node_model("Einsum", inputs, opset=12, equation=equation)
    with pytest.raises(ModelImportError, match=match):
        run_tessera(model, {f"in{i}": x for i, x in enumerate(inputs)})


@pytest.mark.parametrize("rows", [1, 3, 8, 13])
@pytest.mark.parametrize("trans_b", [0, 1])
def test_float32_gemm_on_tessera_gemm_matches_float64(rows, trans_b):
    """Few rows run transposed with the weights packed once (reused while
    the array lives), more rows as they come; alpha, beta and C after."""
    rng = np.random.default_rng(rows)
    a = rng.standard_normal((rows, 70)).astype(np.float32)
    w = rng.standard_normal((33, 70) if trans_b else (70, 33)).astype(np.float32)
    c = rng.standard_normal(33).astype(np.float32)
    attrs = {"transA": 0, "transB": trans_b, "alpha": 0.5, "beta": 2.0}
    want = 0.5 * (a.astype(np.float64) @ (w.T if trans_b else w)) + 2.0 * c
    for _ in range(2):
        got = run_kernel("Gemm", [a, w, c], attrs)[0]
        assert got.shape == (rows, 33) and got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("a_shape,b_shape", [
    ((3, 197, 64), (3, 64, 197)), ((2, 3, 20, 9), (9, 30)), ((20, 9), (2, 3, 9, 30)), ((2, 1, 5, 9), (1, 3, 9, 4)),
])
def test_float32_matmul_runs_on_tessera_gemm_with_its_sums(a_shape, b_shape):
    """A float32 MatMul of computed operands (attention's) is Tessera's GEMM,
    not numpy's BLAS: each output element is the sum sgemm computes for its
    own matrices, batch dims broadcast or folded into rows (the same bits
    either way), strided views read as they are."""
    from runtime.gemm import sgemm

    a, b = random(a_shape, 5), random(b_shape, 6)
    got = run_kernel("MatMul", [a, b], {})[0]
    want_shape = np.broadcast_shapes(a_shape[:-2], b_shape[:-2]) + (a_shape[-2], b_shape[-1])
    assert got.shape == want_shape and got.dtype == np.float32
    a_all = np.broadcast_to(a, want_shape[:-2] + a_shape[-2:])
    b_all = np.broadcast_to(b, want_shape[:-2] + b_shape[-2:])
    for index in np.ndindex(*want_shape[:-2]):
        np.testing.assert_array_equal(got[index], sgemm(a_all[index], b_all[index]), err_msg=str(index))
    view = random((3, 64, 197), 7).transpose(0, 2, 1)  # K^T as a Transpose leaves it
    np.testing.assert_array_equal(run_kernel("MatMul", [view, random((3, 64, 40), 8)], {})[0],
                                  run_kernel("MatMul", [view.copy(), random((3, 64, 40), 8)], {})[0])


@pytest.mark.parametrize("a_shape,b_shape", [((4096, 64), (64, 1)), ((1, 512), (512, 300)), ((40,), (40, 64)),
                                             ((1000, 4, 4), (1000, 4, 4)), ((12, 16, 16), (12, 16, 16))])
def test_products_too_small_or_narrow_for_tessera_gemm_stay_numpys(a_shape, b_shape):
    """A matrix times a vector, a row times a matrix, a batch of small
    matrices: numpy's product (no threads for these), per step as in a
    schedule (runtime.kernels.nn_matmul.product_fits)."""
    a, b = random(a_shape, 9), random(b_shape, 10)
    np.testing.assert_array_equal(run_kernel("MatMul", [a, b], {})[0], np.matmul(a, b))


def test_a_prepared_float32_gemm_reads_its_weights_packed_once_with_the_same_bits():
    """A Gemm whose B is a constant (a transformer's linear layers) keeps B
    packed as the GEMM's right operand: the bits of the unprepared kernel,
    rows under FEW_ROWS still streamed as dot products, and a weight array
    rewritten in place repacked."""
    from runtime.gemm.gemv import FEW_ROWS
    from runtime.kernels.registry import get_kernel, prepared_kernel

    w, c = random((48, 70), 1), random((48,), 2)
    attrs = {"transA": 0, "transB": 1, "alpha": 1.0, "beta": 1.0}
    prepared, generic = prepared_kernel("Gemm", attrs, [None, w, c]), get_kernel("Gemm")
    assert prepared is not generic
    for rows in (1, FEW_ROWS - 1, FEW_ROWS, 197):
        a = random((rows, 70), rows)
        np.testing.assert_array_equal(prepared([a, w, c], attrs)[0], generic([a, w, c], attrs)[0], err_msg=str(rows))
    a = random((40, 70), 3)
    w[:] = random((48, 70), 4)
    np.testing.assert_array_equal(prepared([a, w, c], attrs)[0], generic([a, w, c], attrs)[0])
    np.testing.assert_allclose(prepared([a, w, c], attrs)[0], a.astype(np.float64) @ w.T.astype(np.float64) + c,
                               rtol=1e-5, atol=1e-5)
