"""Bias correction (passes/quant/bias_correction.py): each calibrated QConv /
QGemm's bias carries the mean error of its output over the calibration
data, recomputed here with NumPy; it can be turned off, given parameters
are left alone, and it removes the mean error it is meant to remove."""
from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper

from ir.types import QuantParams
from tests.helpers.quant import (
    conv,
    conv_model,
    from_source,
    inputs,
    make_model,
    minmax_grid,
    node,
    q_ops,
    quantized,
    run,
    run_float,
    seeded,
    weight_codes,
)

HWLINEAR = {"target.hwlinear": True}  # a Gemm on the accelerator


def gemm_model():
    w = seeded(4, w=(6, 12), b=(6,))
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc", transB=1)]
    return make_model(nodes, {"x": [1, 12]}, {"y": [1, 6]}, w)


def initializer(model, name: str) -> np.ndarray:
    return numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name)).astype(np.float64)


def test_a_gemm_bias_carries_its_mean_error_on_the_calibration_data():
    model = gemm_model()
    data = inputs(6, seed=1, shape=[1, 12])
    qgemm = from_source(quantized(model, data, HWLINEAR, **HWLINEAR), "fc")
    w, b = initializer(model, "w"), initializer(model, "b")
    s_x, z_x = minmax_grid(float(np.min(data)), float(np.max(data)))
    codes, s_w = weight_codes(w)
    rounded = [(np.clip(np.rint(x / np.float32(s_x)) + z_x, -128, 127) - z_x) * np.float32(s_x) for x in data]
    error = np.mean([x[0] @ w.T - r[0] @ (codes * s_w.reshape(-1, 1)).T for x, r in zip(data, rounded)], axis=0)
    acc_scale = s_x * s_w.astype(np.float64)
    correction = np.rint(error / acc_scale)
    assert np.any(correction != 0)
    want = np.rint(b / acc_scale) - z_x * codes.sum(axis=1) + correction
    np.testing.assert_array_equal(qgemm.inputs[2].const, want)


def test_the_correction_can_be_turned_off():
    model = gemm_model()
    data = inputs(6, seed=1, shape=[1, 12])
    qgemm = from_source(quantized(model, data, HWLINEAR, **HWLINEAR, **{"quant.bias_correction": False}), "fc")
    s_x, z_x = minmax_grid(float(np.min(data)), float(np.max(data)))
    codes, s_w = weight_codes(initializer(model, "w"))
    want = np.rint(initializer(model, "b") / (s_x * s_w.astype(np.float64))) - z_x * codes.sum(axis=1)
    np.testing.assert_array_equal(qgemm.inputs[2].const, want)


def test_given_parameters_are_used_as_they_are():
    model = conv_model(None)
    grids = {"x": QuantParams(1 / 127, 0, np.dtype(np.int8)), "y": QuantParams(0.05, 0, np.dtype(np.int8))}
    qconv = from_source(quantized(model, None, **{"quant.given": grids}), "conv0")
    codes, s_w = weight_codes(initializer(model, "w"))
    want = np.rint(initializer(model, "b") / (grids["x"].scale[0] * s_w.astype(np.float64)))
    np.testing.assert_array_equal(qconv.inputs[2].const, want)


def test_it_removes_the_mean_error_of_a_clipped_input():
    """A 90th-percentile range clips the input's long tail (positive data):
    the convolution's output channels are shifted on average by more than an
    output step; corrected, by a small fraction of one (measured: 2.3 steps
    and 0.02 steps)."""
    model = conv_model(None, seed=3)
    data = [np.exp(2 * x).astype(np.float32) for x in inputs(8, seed=4)]
    reference = np.stack([run_float(model, {"x": x})[0][0] for x in data])
    shifts = {}
    for corrected in (False, True):
        graph = quantized(model, data, **{"quant.tensor_calibrators": {"x": "percentile:90"},
                                          "quant.bias_correction": corrected})
        result = np.stack([run(graph, {"x": x})["y"][0] for x in data])
        shifts[corrected] = np.abs((reference - result).mean(axis=(0, 2, 3)))
    step = from_source(graph, "conv0").outputs[0].quant.scale[0]
    assert shifts[False].max() > step
    assert shifts[True].max() < step / 10


def chain_model():
    """conv-relu, max pool (a layout op: its output keeps its input's grid), conv-relu, conv."""
    w = seeded(5, w0=(8, 3, 3, 3), b0=(8,), w1=(8, 8, 3, 3), b1=(8,), w2=(4, 8, 1, 1), b2=(4,))
    nodes = [conv("x", "c0", "w0", "b0", name="conv0"), node("Relu", ["c0"], "r0", name="relu0"),
             node("MaxPool", ["r0"], "p0", name="pool0", kernel_shape=[2, 2], strides=[2, 2]),
             conv("p0", "c1", "w1", "b1", name="conv1"), node("Relu", ["c1"], "r1", name="relu1"),
             conv("r1", "y", "w2", "b2", k=1, name="conv2")]
    return make_model(nodes, {"x": [1, 3, 8, 8]}, {"y": [1, 4, 4, 4]}, w)


def biases_and_grids(graph) -> list:
    return [(n.name, n.inputs[2].const.tolist(), list(n.inputs[0].quant.scale), list(n.outputs[0].quant.scale))
            for n in q_ops(graph) if n.op == "QConv"]


def test_calibration_measures_the_corrected_inputs_in_its_own_pass(monkeypatch, capsys):
    """Run in lockstep, calibration sums each corrected layer's input on its
    grid as it goes: no second run of the float model, and the same biases
    and grids as calibrating first and correcting after (the inputs run
    one after the other when they do not fit in LOCKSTEP_BYTES)."""
    import passes.quant.calibrate as calibrate

    model, data = chain_model(), inputs(5, seed=6)
    lockstep = biases_and_grids(quantized(model, data, **{"quant.calibrator": "mse"}))
    assert "bias correction" not in capsys.readouterr().err
    monkeypatch.setattr(calibrate, "LOCKSTEP_BYTES", 0)
    in_turn = biases_and_grids(quantized(model, data, **{"quant.calibrator": "mse"}))
    assert "bias correction: 5" in capsys.readouterr().err
    assert len(lockstep) == 3 and lockstep == in_turn


def test_inputs_measured_on_another_grid_are_measured_again(monkeypatch, capsys):
    import passes.quant.bias_correction as bias_correction

    model, data = chain_model(), inputs(5, seed=6)
    expected = biases_and_grids(quantized(model, data))
    monkeypatch.setattr(bias_correction, "same_grid", lambda a, b: False)
    capsys.readouterr()
    assert biases_and_grids(quantized(model, data)) == expected
    assert "bias correction: 5" in capsys.readouterr().err


def test_sums_of_many_inputs_at_once_are_the_sums_in_turn():
    grid = QuantParams(0.05, -3, np.dtype(np.int8))
    arrays = [np.random.default_rng(k).standard_normal((2, 3, 70, 90)).astype(np.float32) for k in range(3)]
    many, one = bias_correction_means(grid), bias_correction_means(grid)
    many.update_many(arrays)
    for array in arrays:
        one.update(array)
    exact, rounded = np.zeros((3, 70, 90)), np.zeros((3, 70, 90))
    for row in (r for a in arrays for r in a):
        q = np.clip(np.rint(row / np.float32(0.05)).astype(np.float64) - 3, -128, 127)
        exact += row
        rounded += np.float32(0.05) * (q + 3).astype(np.float32)
    assert many.count == one.count == 6
    for sums in (many, one):
        np.testing.assert_array_equal(sums.exact, exact)
        np.testing.assert_array_equal(sums.rounded, rounded)


def bias_correction_means(grid):
    from passes.quant.bias_correction import InputMeans

    return InputMeans(grid)
