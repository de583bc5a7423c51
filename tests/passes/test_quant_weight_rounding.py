"""Weight rounding by output error (passes/quant/weight_rounding.py): the
patches it measures, the codes it chooses, what they buy on a smooth
input, the device and CPU paths bit for bit, the encodings round trip, a
bad given entry named, the depth limit and the switches."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.errors import QuantizationError
from compiler.quantize import WEIGHT_ROUNDINGS, quantize_model
from passes.quant.weight_rounding import (
    BLOCK,
    DAMPING,
    PatchMoments,
    decode_rounding,
    encode_rounding,
    rounded_codes,
)
from runtime.hardware import PRESETS, HardwareConfig
from runtime.kernels import run_kernel
from tests.helpers.device_models import assert_device_exact
from tests.helpers.quant import model_snr, quantize_quietly

SHAPE = [1, 3, 16, 16]


def _model(seed: int = 7):
    """A smooth input (a photograph's neighbouring pixels move together) ->
    stem Conv(16), one weight of each channel much larger (a coarse grid for
    the others) -> Relu -> Conv(8) -> y."""
    rng = np.random.default_rng(seed)
    w0 = rng.normal(0, 1.0, (16, 3, 3, 3))
    w0.reshape(16, -1)[:, 13] *= 6
    inits = {"w0": w0, "b0": rng.normal(0, 1.0, 16),
             "w1": rng.normal(0, 0.3, (8, 16, 3, 3)), "b1": rng.normal(0, 0.1, 8)}
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], pads=[1, 1, 1, 1], name="stem"),
             helper.make_node("Relu", ["c0"], ["r0"], name="relu"),
             helper.make_node("Conv", ["r0", "w1", "b1"], ["y"], pads=[1, 1, 1, 1], name="conv")]
    graph = helper.make_graph(nodes, "smooth", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])],
                              [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    def smooth():
        coarse = rng.random((3, 5, 5))
        rows = np.linspace(0, 4, 16)
        low, frac = np.minimum(rows.astype(int), 3), rows - np.minimum(rows.astype(int), 3)
        x = coarse[:, low] * (1 - frac)[None, :, None] + coarse[:, low + 1] * frac[None, :, None]
        x = x[:, :, low] * (1 - frac) + x[:, :, low + 1] * frac
        return x[None].astype(np.float32)
    return model, [smooth() for _ in range(16)], [smooth() for _ in range(6)]


_quantize, _snr = quantize_quietly, model_snr


@pytest.mark.parametrize("conv", [
    {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1], "dilations": [1, 1], "group": 1},
    {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 1, 1, 0], "dilations": [1, 1], "group": 2},
    {"kernel_shape": [3, 2], "strides": [1, 2], "pads": [2, 1, 2, 1], "dilations": [2, 1], "group": 4},
])
def test_the_patches_are_what_the_convolution_reads(conv):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 9, 10)).astype(np.float32)
    group = conv["group"]
    w = rng.standard_normal((4, 4 // group, *conv["kernel_shape"])).astype(np.float32)
    (y,) = run_kernel("Conv", [x, w], {k: tuple(v) if isinstance(v, list) else v for k, v in conv.items()})
    moments = PatchMoments(conv, w.shape)
    patches = moments.patches(x)  # [group, rows, depth], rows in (sample, position) order
    per_group = w.reshape(group, 4 // group, -1)
    got = np.concatenate([patches[g] @ per_group[g].T for g in range(group)], axis=1)  # [rows, channels]
    want = y.transpose(0, 2, 3, 1).reshape(-1, 4)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    moments.update(x)
    assert moments.count == want.shape[0]
    centred = patches[0] - patches[0].mean(axis=0)
    np.testing.assert_allclose(moments.covariance(0), centred.T @ centred / len(centred), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("conv, shape", [
    ({"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1], "dilations": [1, 1], "group": 1},
     (1, 512, 20, 20)),  # a long reduction: 256 of the 400 positions, evenly spaced
    ({"kernel_shape": [3, 3], "strides": [2, 1], "pads": [0, 2, 1, 0], "dilations": [1, 2], "group": 256},
     (2, 256, 33, 17)),  # depthwise, two samples, every position
])
def test_the_picked_patches_are_the_windows_bit_for_bit(conv, shape):
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    group, (kh, kw), (sh, sw), (dh, dw) = conv["group"], conv["kernel_shape"], conv["strides"], conv["dilations"]
    top, left, bottom, right = conv["pads"]
    moments = PatchMoments(conv, (8 if group == 1 else shape[1], shape[1] // group, kh, kw))
    patches = moments.patches(x)
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    oh, ow = (padded.shape[2] - (kh - 1) * dh - 1) // sh + 1, (padded.shape[3] - (kw - 1) * dw - 1) // sw + 1
    per_sample = patches.shape[1] // shape[0]
    rows = np.linspace(0, oh * ow - 1, per_sample).astype(np.int64)
    assert per_sample == (256 if group == 1 else oh * ow)
    for n in range(shape[0]):
        for i in (0, 1, per_sample // 2, per_sample - 1):
            oy, ox = divmod(int(rows[i]), ow)
            window = padded[n, :, oy * sh:oy * sh + (kh - 1) * dh + 1:dh, ox * sw:ox * sw + (kw - 1) * dw + 1:dw]
            want = window.reshape(group, -1)  # per group: (channel, row, column), the weights' order
            np.testing.assert_array_equal(patches[:, n * per_sample + i], want)


def test_the_codes_leave_less_output_error_than_the_nearest_ones():
    rng = np.random.default_rng(1)
    common = rng.standard_normal((4000, 1))
    x = common + 0.2 * rng.standard_normal((4000, 27))  # inputs that move together, as neighbouring pixels do
    covariance = np.cov(x, rowvar=False, bias=True)
    weight = rng.standard_normal((16, 27))
    scales = np.abs(weight).max(axis=1) / 127
    nearest = np.clip(np.rint(weight / scales[:, None]), -127, 127)
    codes = rounded_codes(weight, scales, covariance, 127)
    assert np.abs(codes).max() <= 127 and np.abs(codes - nearest).max() <= 3

    def error(q):
        e = weight - q * scales[:, None]
        return float(np.einsum("kd,de,ke->", e, covariance, e))
    assert error(codes) < 0.5 * error(nearest), (error(codes), error(nearest))
    # inputs that do not move together: nothing to trade, every weight to its nearest code
    np.testing.assert_array_equal(rounded_codes(weight, scales, np.eye(27), 127), nearest)


def test_the_codes_do_not_depend_on_the_hosts_blas_threads(monkeypatch):
    """The inverse and factor run on one BLAS thread whatever the process
    allows: OpenBLAS's threaded inverse sums in another order from 144
    positions on, so a host's core count could change the codes."""
    from threadpoolctl import threadpool_info, threadpool_limits

    seen, inverse = [], np.linalg.inv

    def watched(a):
        seen.append({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"})
        return inverse(a)

    monkeypatch.setattr(np.linalg, "inv", watched)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((600, 144)) @ rng.standard_normal((144, 144))
    weight = rng.standard_normal((8, 144))
    scales = np.abs(weight).max(axis=1) / 127
    with threadpool_limits(2, user_api="blas"):
        codes = rounded_codes(weight, scales, np.cov(x, rowvar=False), 127)
        assert {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"} <= {2}
    assert seen == [{1}] and codes.shape == weight.shape


def _codes_by_columns(weight, scales, covariance, high):
    """rounded_codes as numpy runs it, a column of every row at a time
    (the form it had before its blocks ran in Numba): the same operations
    in the same order, so the same bits."""
    order = np.argsort(-np.diag(covariance), kind="stable")
    work = np.array(weight[:, order], np.float64)
    moments = covariance[np.ix_(order, order)]
    depth = work.shape[1]
    damped = moments + (DAMPING * max(float(np.mean(np.diag(moments))), 0.0) + 1e-12) * np.eye(depth)
    upper = np.linalg.cholesky(np.linalg.inv(damped)).T
    scale = np.asarray(scales, np.float64)[:, None]
    codes = np.zeros(work.shape, np.int64)
    for first in range(0, depth, BLOCK):
        last = min(first + BLOCK, depth)
        errors = np.zeros((work.shape[0], last - first))
        for i in range(first, last):
            q = np.clip(np.rint(work[:, i:i + 1] / scale), -high, high)
            codes[:, i:i + 1] = q
            error = (work[:, i:i + 1] - q * scale) / upper[i, i]
            work[:, i + 1:last] -= error * upper[i:i + 1, i + 1:last]
            errors[:, i - first:i - first + 1] = error
        work[:, last:] -= errors @ upper[first:last, last:]
    result = np.empty_like(codes)
    result[:, order] = codes
    return result


@pytest.mark.parametrize("rows, depth", [(16, 3 * BLOCK + 5), (5, BLOCK), (3, 2)])
def test_the_blocks_run_in_numba_give_the_codes_numpy_gives(rows, depth):
    rng = np.random.default_rng(depth)
    x = rng.standard_normal((4 * depth, 1)) + 0.5 * rng.standard_normal((4 * depth, depth)) * rng.uniform(0.1, 3, depth)
    covariance = np.cov(x, rowvar=False, bias=True)
    weight = rng.standard_normal((rows, depth))
    scales = np.abs(weight).max(axis=1) / 127
    weight[0, -1] *= 40  # past the grid: clamped
    codes = rounded_codes(weight, scales, covariance, 127)
    assert codes.dtype == np.int64 and codes.max() == 127
    np.testing.assert_array_equal(codes, _codes_by_columns(weight, scales, covariance, 127))


def test_a_smooth_input_gains_and_the_switch_turns_it_off():
    model, calibration, evaluation = _model()
    rounded, nearest = _quantize(model, calibration), _quantize(model, calibration, weight_rounding=False)
    assert set(rounded.weight_roundings()) == {"w0", "w1"} and not nearest.weight_roundings()
    gain = _snr(rounded, evaluation) - _snr(nearest, evaluation)
    assert gain > 1.0, gain
    shallow = _quantize(model, calibration, options={"quant.weight_rounding_depth": 27})
    assert set(shallow.weight_roundings()) == {"w0"}  # the 16 x 3 x 3 reduction of w1 is longer


@pytest.mark.parametrize("config", [HardwareConfig(), PRESETS["tiny"]], ids=["default", "tiny"])
def test_the_device_and_the_cpu_path_are_bit_exact_to_the_integer_reference(config):
    model, calibration, _ = _model()
    q = _quantize(model, calibration, options={"target.hardware": config})
    assert q.weight_roundings()
    assert_device_exact(q, SHAPE, config)


def test_the_codes_survive_an_encodings_round_trip_bit_for_bit():
    model, calibration, evaluation = _model()
    q = _quantize(model, calibration)
    document = q.export_encodings()
    assert set(document["quantizer_args"][WEIGHT_ROUNDINGS]) == {"w0", "w1"}
    again = quantize_model(model, encodings=document)
    for name, delta in q.weight_roundings().items():
        np.testing.assert_array_equal(again.weight_roundings()[name], delta)
    for x in evaluation[:2]:
        assert np.array_equal(again.run({"x": x})["y"], q.run({"x": x})["y"])
    # the diagnosis fake-quantizes the same codes: alone, the stem's weights and output leave little error
    report = q.diagnose([{"x": x} for x in evaluation[:2]])
    assert all(layer.output_snr_db > 30 for layer in report.layers), report.table()


@pytest.mark.parametrize("entry, message", [
    (5, "base64 text"),
    ("not base64!", "not the base64"),
    (encode_rounding(np.zeros(7)), "do not fit"),
])
def test_a_given_entry_that_does_not_fit_is_named(entry, message):
    model, calibration, _ = _model()
    document = _quantize(model, calibration).export_encodings()
    document["quantizer_args"][WEIGHT_ROUNDINGS]["w0"] = entry
    with pytest.raises(Exception, match=message) as caught:
        quantize_model(model, encodings=document)
    assert "w0" in str(caught.value)
    assert isinstance(caught.value, QuantizationError) or "PassError" in type(caught.value).__name__


def test_the_text_round_trips():
    delta = np.array([0, -1, 2, 0, 300, -70000], np.int64)
    np.testing.assert_array_equal(decode_rounding(encode_rounding(delta), "here"), delta)


def test_the_cli_switch_turns_it_off():
    from compiler.cli_device import target_kwargs, target_options

    parser = argparse.ArgumentParser()
    target_options(parser)
    assert target_kwargs(parser.parse_args(["--no-weight-rounding"])) == {"weight_rounding": False}


def test_the_codes_are_the_same_when_calibration_cannot_run_in_lockstep(monkeypatch):
    """Inputs too large for lockstep: the moments come from a second float run, with the same codes."""
    import passes.quant.calibrate as calibrate

    model, calibration, evaluation = _model()
    lockstep = _quantize(model, calibration)
    monkeypatch.setattr(calibrate, "LOCKSTEP_BYTES", 0)
    apart = _quantize(model, calibration)
    assert set(apart.weight_roundings()) == set(lockstep.weight_roundings()) == {"w0", "w1"}
    for name, delta in lockstep.weight_roundings().items():
        np.testing.assert_array_equal(apart.weight_roundings()[name], delta)
    assert np.array_equal(apart.run({"x": evaluation[0]})["y"], lockstep.run({"x": evaluation[0]})["y"])
