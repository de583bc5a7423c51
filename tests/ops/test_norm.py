"""Normalisation and softmax-like ops against onnx's reference evaluator."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx.reference import ReferenceEvaluator

from compiler import backend
from compiler.errors import ModelImportError, UnsupportedOpError
from tests.helpers.node_models import assert_matches_reference, make_node_model

SETTINGS = settings(max_examples=25, deadline=None)

small_shapes = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)


def _random(shape, seed=0, dtype=np.float32, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def _run(model, feeds):
    return backend.prepare(model, check=True, strict_types=True).run(feeds)


# ---------------------------------------------------------------- BatchNormalization
def _bn_params(channels, seed):
    rng = np.random.default_rng(seed)
    scale, bias, mean = (rng.standard_normal(channels).astype(np.float32) for _ in range(3))
    var = rng.uniform(0.5, 2.0, channels).astype(np.float32)
    return scale, bias, mean, var


def _bn_numpy(x, scale, bias, mean, var, epsilon=1e-5):
    shape = (1, -1) + (1,) * (x.ndim - 2) if x.ndim > 1 else (-1,)
    s, b, m, v = (p.reshape(shape) for p in (scale, bias, mean, var))
    return (x - m) / np.sqrt(v + epsilon) * s + b


@SETTINGS
@given(shape=st.lists(st.integers(1, 5), min_size=2, max_size=4), seed=st.integers(0, 99),
       epsilon=st.sampled_from([1e-5, 1e-3]), const_params=st.booleans())
def test_batch_norm_matches_reference(shape, seed, epsilon, const_params):
    x = _random(shape, seed)
    params = _bn_params(shape[1], seed)
    consts = (1, 2, 3, 4) if const_params else ()
    assert_matches_reference("BatchNormalization", [x, *params], opset=15, consts=consts, epsilon=epsilon)


def test_batch_norm_rank1_has_one_channel():
    x = _random((6,))
    params = [p[:1] for p in _bn_params(1, 3)]
    assert_matches_reference("BatchNormalization", [x, *params], opset=15)


def test_batch_norm_drops_momentum():
    x = _random((2, 3, 4))
    assert_matches_reference("BatchNormalization", [x, *_bn_params(3, 1)], opset=14, momentum=0.7)


@pytest.mark.parametrize("opset", [7, 9])
def test_batch_norm_old_opsets(opset):
    """The reference evaluator treats these as training; compare with the formula."""
    x = _random((2, 3, 4, 5), 4)
    params = _bn_params(3, 4)
    attrs = {"spatial": 1} if opset == 7 else {}
    model = make_node_model("BatchNormalization", [x, *params], opset=opset, consts=(1, 2, 3, 4),
                            momentum=0.9, epsilon=1e-3, **attrs)
    (got,) = _run(model, {"in0": x})
    np.testing.assert_allclose(got, _bn_numpy(x, *params, epsilon=1e-3), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("const_params", [True, False])
def test_batch_norm_spatial0_uses_per_element_statistics(const_params):
    x = _random((2, 3, 4), 5)
    rng = np.random.default_rng(5)
    scale, bias, mean = (rng.standard_normal((3, 4)).astype(np.float32) for _ in range(3))
    var = rng.uniform(0.5, 2.0, (3, 4)).astype(np.float32)
    consts = (1, 2, 3, 4) if const_params else ()
    model = make_node_model("BatchNormalization", [x, scale, bias, mean, var], opset=7, consts=consts, spatial=0)
    feeds = {"in0": x} if const_params else {f"in{i}": a for i, a in enumerate([x, scale, bias, mean, var])}
    (got,) = _run(model, feeds)
    want = (x - mean) / np.sqrt(var + 1e-5) * scale + bias
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_batch_norm_training_is_unsupported():
    x = _random((2, 3, 4))
    model = make_node_model("BatchNormalization", [x, *_bn_params(3, 0)], num_outputs=3, opset=15,
                            training_mode=1)
    with pytest.raises(UnsupportedOpError, match="training_mode"):
        backend.prepare(model)
    model = make_node_model("BatchNormalization", [x, *_bn_params(3, 0)], num_outputs=5, opset=7)
    with pytest.raises(UnsupportedOpError, match="training outputs"):
        backend.prepare(model)


def test_batch_norm_wrong_channel_count_is_an_error():
    x = _random((2, 3, 4))
    with pytest.raises(ModelImportError, match="scale"):
        backend.prepare(make_node_model("BatchNormalization", [x, *_bn_params(4, 0)], opset=15))


# ---------------------------------------------------------------- Instance / Layer normalization
@SETTINGS
@given(shape=st.lists(st.integers(1, 6), min_size=2, max_size=4), seed=st.integers(0, 99))
def test_instance_norm_matches_reference(shape, seed):
    x = _random(shape, seed, scale=3.0) + 1
    scale, bias = _random(shape[1], seed + 1), _random(shape[1], seed + 2)
    assert_matches_reference("InstanceNormalization", [x, scale, bias], opset=22, epsilon=1e-4, rtol=1e-4,
                             atol=1e-5)


@st.composite
def _layer_norm_case(draw):
    shape = draw(st.lists(st.integers(1, 6), min_size=1, max_size=4))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    normalized = shape[axis:]
    # Scale and bias may omit leading dims or have 1s (they broadcast).
    drop = draw(st.integers(0, len(normalized) - 1))
    param_shape = [d if draw(st.booleans()) else 1 for d in normalized[drop:]]
    return shape, axis, param_shape, draw(st.booleans()), draw(st.integers(0, 99))


@SETTINGS
@given(case=_layer_norm_case())
def test_layer_norm_matches_reference(case):
    shape, axis, param_shape, with_bias, seed = case
    x = _random(shape, seed, scale=2.0) + 0.5
    scale = _random(param_shape, seed + 1)
    bias = _random(param_shape, seed + 2) if with_bias else None
    assert_matches_reference("LayerNormalization", [x, scale, bias], num_outputs=3, opset=17, axis=axis,
                             rtol=1e-4, atol=1e-5)


def test_layer_norm_float64_and_single_output():
    x = _random((3, 8), 2, np.float64)
    assert_matches_reference("LayerNormalization", [x, _random(8, 3, np.float64)], opset=17, epsilon=1e-3)


def test_layer_norm_rejects_other_stash_type():
    x = _random((3, 8))
    with pytest.raises(UnsupportedOpError, match="stash_type"):
        backend.prepare(make_node_model("LayerNormalization", [x, _random(8)], opset=17, stash_type=11))


def test_layer_norm_bad_axis_is_an_error():
    x = _random((3, 8))
    with pytest.raises(ModelImportError, match="axis=2"):
        backend.prepare(make_node_model("LayerNormalization", [x, _random(8)], opset=17, axis=2))


# ---------------------------------------------------------------- LRN, MVN
@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_lrn_matches_reference(size):
    # The reference loops over the batch dim instead of the channels: N == C keeps it right.
    x = _random((5, 5, 3, 2), size)
    assert_matches_reference("LRN", [x], opset=13, size=size, alpha=2e-3, beta=0.6, bias=1.5, rtol=1e-5)


@pytest.mark.parametrize("beta, ulps", [(0.6, 0), (0.75, 1)])
def test_lrn_is_the_float64_formula_rounded_once(beta, ulps):
    """Each output is x / (bias + alpha/size * s) ** beta in float64 (the
    squares exact, summed in channel order; libm's pow, or for 0.75 two
    square roots, within one float32 ulp of it), rounded once: the same
    on every host (numpy's float32 power was AVX-512 hosts' own routine),
    including the window's edges, a channel count below the window and
    zeros, NaN and infinities."""
    from runtime.kernels import run_kernel

    x = _random((2, 7, 5, 6), 4, scale=30.0)
    x[0, 3, 0, :4] = [0.0, np.nan, np.inf, -np.inf]
    for size in (1, 4, 5, 9):
        attrs = dict(size=size, alpha=1e-4, beta=beta, bias=1.0)
        got = run_kernel("LRN", [x], attrs)[0]
        wide = x.astype(np.float64)
        sums = np.zeros_like(wide)
        for c in range(7):
            for j in range(max(c - (size - 1) // 2, 0), min(c + size // 2 + 1, 7)):
                sums[:, c] += wide[:, j] * wide[:, j]
        with np.errstate(all="ignore"):
            want = (wide / np.power(1.0 + 1e-4 / size * sums, np.full(sums.shape, beta))).astype(np.float32)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        finite = np.isfinite(want)
        np.testing.assert_array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)])
        gaps = np.abs(got[finite].view(np.int32).astype(np.int64) - want[finite].view(np.int32))
        assert gaps.max() <= ulps, (size, gaps.max())


def test_lrn_window_with_fewer_images_than_channels():
    x = _random((1, 6, 2, 2), 9)
    model = make_node_model("LRN", [x], opset=13, size=3, alpha=0.1)
    (got,) = _run(model, {"in0": x})
    squares = np.square(x)
    window = np.stack([squares[:, max(c - 1, 0):c + 2].sum(axis=1) for c in range(6)], axis=1)
    np.testing.assert_allclose(got, x / (1 + 0.1 / 3 * window) ** 0.75, rtol=1e-5)


@pytest.mark.parametrize("axes", [None, [0, 2, 3], [1], [-1, -2]])
def test_mean_variance_normalization_matches_reference(axes):
    x = _random((2, 3, 4, 5), 7, scale=2.0) + 1
    attrs = {} if axes is None else {"axes": axes}
    assert_matches_reference("MeanVarianceNormalization", [x], opset=13, rtol=1e-4, atol=1e-5, **attrs)


# ---------------------------------------------------------------- Softmax, LogSoftmax, Hardmax
@st.composite
def _axis_case(draw, min_rank=1):
    shape = draw(st.lists(st.integers(1, 5), min_size=min_rank, max_size=4))
    return shape, draw(st.integers(-len(shape), len(shape) - 1)), draw(st.integers(0, 99))


@SETTINGS
@given(case=_axis_case(), op=st.sampled_from(["Softmax", "LogSoftmax"]))
def test_softmax_matches_reference(case, op):
    shape, axis, seed = case
    assert_matches_reference(op, [_random(shape, seed, scale=4.0)], opset=13, axis=axis, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_is_stable_on_large_inputs(op):
    x = np.array([[1000.0, 1001.0, 1002.0], [-1e4, -1e4 + 1, -1e4 + 2], [88.0, 89.0, 90.0]], np.float32)
    ours = assert_matches_reference(op, [x], opset=13)
    assert np.isfinite(ours[0]).all()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # raised inside the reference evaluator
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_softmax_special_values(op, dtype):
    """NaN anywhere or an infinite maximum gives a NaN row; -inf entries give 0."""
    inf, nan = np.inf, np.nan
    x = np.array([[1, nan, 2, 3, 4], [-inf, -inf, -inf, -inf, -inf], [1, inf, 0, 0, 0],
                  [-inf, 0, 1, -inf, 2], [-6, 0, -3, -2, -1]], dtype)
    assert_matches_reference(op, [x], opset=13, rtol=3e-3 if dtype == np.float16 else 1e-5)


def test_log_softmax_keeps_underflowed_terms_finite():
    """log(softmax) would give -inf where exp underflows; x - max - log(sum) does not
    (the reference evaluator takes the log of the softmax, so compare with float64)."""
    x = np.array([[-200, 0, -90, -88, -87, -120]], np.float32)
    (got,) = _run(make_node_model("LogSoftmax", [x], opset=13), {"in0": x})
    want = x - np.log(np.sum(np.exp(x.astype(np.float64))))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    (probs,) = _run(make_node_model("Softmax", [x], opset=13), {"in0": x})
    np.testing.assert_allclose(probs, np.exp(want), rtol=1e-5, atol=1e-30)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_over_a_long_leading_axis(op):
    """More inner positions than one task's block (the strided path)."""
    assert_matches_reference(op, [_random((7, 300), 1, scale=3.0)], opset=13, axis=0)
    assert_matches_reference(op, [_random((2, 5, 3, 130), 2, scale=3.0)], opset=13, axis=1)


@SETTINGS
@given(case=_axis_case(), ties=st.booleans())
def test_hardmax_matches_reference(case, ties):
    shape, axis, seed = case
    x = np.random.default_rng(seed).integers(0, 3, shape).astype(np.float32) if ties else _random(shape, seed)
    assert_matches_reference("Hardmax", [x], opset=13, axis=axis)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("opset,shape,axis", [
    (7, (2, 3, 4), 1), (7, (2, 3, 4, 5), 2), (7, (2, 3, 4), None), (7, (2, 3, 4), 0), (7, (2, 3, 4), 2),
    (11, (2, 3, 4), 1), (11, (2, 3, 4, 5), 1), (11, (2, 3, 4, 5), -3), (11, (3, 4), -1), (11, (2, 3, 4), None),
])
def test_softmax_old_opsets_coerce_to_2d(op, opset, shape, axis):
    """Before opset 13 the op works on the input flattened to 2-D at ``axis``
    (the reference evaluator only knows the new form: give it the 2-D input)."""
    x = _random(shape, 3, scale=3.0)
    if op == "Hardmax":
        x = np.round(x)  # ties across the flattened rows
    attrs = {} if axis is None else {"axis": axis}
    (got,) = _run(make_node_model(op, [x], opset=opset, **attrs), {"in0": x})
    split = (1 if axis is None else axis) % len(shape)
    matrix = x.reshape(int(np.prod(shape[:split])), -1)
    (want,) = ReferenceEvaluator(make_node_model(op, [matrix], opset=13, axis=1)).run(None, {"in0": matrix})
    np.testing.assert_allclose(got, want.reshape(shape), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("opset", [11, 13])
def test_softmax_bad_axis_is_an_error(opset):
    with pytest.raises(ModelImportError, match="axis=3"):
        backend.prepare(make_node_model("Softmax", [_random((2, 3, 4))], opset=opset, axis=3))
