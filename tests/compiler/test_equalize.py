"""Cross-layer equalization (passes/quant/equalize.py, quantize_model(equalize=True)):
the float model's outputs stay, the int8 SNR of a chain whose channels are
spread goes up, a ReLU6 channel that reaches its bound is left alone."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.compare import ErrorStats
from compiler.frontend import import_onnx
from compiler.pipeline import SIMPLIFY
from compiler.quantize import quantize_model
from passes.quant.equalize import find_pairs, pair_scales

C = 16
SHAPE = [1, 3, 16, 16]


def _onnx(nodes, initializers: dict, output_shape: list[int]):
    """A one-input (x, SHAPE), one-output (y) model of ``nodes``."""
    graph = helper.make_graph(nodes, "equalize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)],
                              [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _chain(activation: str, seed: int = 5):
    """pointwise conv (a quarter of its channels 20x louder) -> act ->
    depthwise conv -> act -> pointwise conv: a depthwise-separable block."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.3, (C, 3, 3, 3))
    w1[: C // 4] *= 20

    def act(i, o, name):
        if activation == "relu6":
            return helper.make_node("Clip", [i, "lo", "hi"], [o], name=name)
        return helper.make_node(activation, [i], [o], name=name)

    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="pw1"),
             act("c1", "a1", "act1"),
             helper.make_node("Conv", ["a1", "wd"], ["c2"], pads=[1, 1, 1, 1], group=C, name="dw"),
             act("c2", "a2", "act2"), helper.make_node("Conv", ["a2", "w3"], ["y"], name="pw2")]
    initializers = {"w1": w1, "b1": rng.normal(0, 0.1, C), "wd": rng.normal(0, 0.5, (C, 1, 3, 3)),
                    "w3": rng.normal(0, 0.3, (8, C, 1, 1)), "lo": np.array(0.0), "hi": np.array(6.0)}
    model = _onnx(nodes, initializers, [1, 8, 16, 16])
    calibration = [rng.random(SHAPE, np.float32) for _ in range(16)]
    evaluation = [rng.random(SHAPE, np.float32) for _ in range(4)]
    return model, calibration, evaluation


def _snr(reference_model, model, inputs, float_only=False) -> float:
    stats = ErrorStats()
    for x in inputs:
        test = model.run_float({"x": x}) if float_only else model.run({"x": x})
        stats.update(reference_model.run_float({"x": x})["y"], test["y"])
    return stats.snr_db


@pytest.mark.parametrize("activation", ["Relu", "LeakyRelu"])
def test_equalization_keeps_the_float_model_and_raises_the_int8_snr(activation):
    model, calibration, evaluation = _chain(activation)
    plain = quantize_model(model, calibration_data=calibration)
    equalized = quantize_model(model, calibration_data=calibration, equalize=True)
    assert equalized.equalized == 2 and plain.equalized is None
    assert _snr(plain, equalized, evaluation, float_only=True) > 100  # float outputs unchanged
    assert _snr(plain, equalized, evaluation) > _snr(plain, plain, evaluation) + 2.0


def test_a_relu6_channel_that_reaches_its_bound_keeps_its_scale():
    model, calibration, evaluation = _chain("relu6")
    graph = SIMPLIFY(import_onnx(model))
    pair = find_pairs(graph)[0]
    assert pair.clip == 6.0
    peaks = np.linspace(1.0, 10.0, C)
    scales = pair_scales(pair, np.minimum(peaks, 6.0), peaks)
    assert np.all(scales[peaks >= 6.0] == 1.0)
    assert np.all(peaks[peaks < 6.0] / scales[peaks < 6.0] <= 6.0 + 1e-9)  # still never clipped
    equalized = quantize_model(model, calibration_data=calibration, equalize=True)
    plain = quantize_model(model, calibration_data=calibration)
    assert _snr(plain, equalized, calibration[:4], float_only=True) > 100


def test_without_data_the_scales_come_from_the_weights():
    model, _, evaluation = _chain("Relu")
    with pytest.warns(Warning):
        plain = quantize_model(model)
    with pytest.warns(Warning):
        equalized = quantize_model(model, equalize=True)
    assert equalized.equalized == 2
    assert _snr(plain, equalized, evaluation, float_only=True) > 100


def test_the_command_line_switch(tmp_path, capsys):
    import onnx

    from compiler.cli import main as tessera

    model, calibration, _ = _chain("Relu")
    onnx.save(model, tmp_path / "chain.onnx")
    folder = tmp_path / "calibration"
    folder.mkdir()
    for i, x in enumerate(calibration[:8]):
        np.save(folder / f"{i}.npy", x)
    assert tessera(["quantize", str(tmp_path / "chain.onnx"), "--calibration", str(folder), "--count", "8",
                    "--samples", "2", "--no-layers", "--equalize"]) == 0
    assert "cross-layer equalization rescaled 2 layer pair(s)" in capsys.readouterr().out


def test_bias_absorption_moves_an_always_positive_floor_into_the_next_bias():
    """Half of A's channels sit on a floor of about 10 (their bias) behind a
    Relu: the floor sets the activation grid's top. Absorbed into the 1x1
    B's bias, it leaves the grid to the signal; the float outputs stay."""
    rng = np.random.default_rng(11)
    bias = np.where(np.arange(8) < 4, 10.0, 0.0)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c1"], ["a1"], name="relu"),
             helper.make_node("Conv", ["a1", "w2"], ["y"], name="pointwise")]
    w2 = rng.normal(0, 0.3, (4, 8, 1, 1))
    w2[:, 1], w2[:, 3] = -w2[:, 0], -w2[:, 2]  # the floors cancel in y: its power is the signal's
    initializers = {"w1": rng.normal(0, 0.2, (8, 3, 3, 3)), "b1": bias, "w2": w2}
    model = _onnx(nodes, initializers, [1, 4, 16, 16])
    calibration = [rng.random(SHAPE, np.float32) for _ in range(12)]
    evaluation = [rng.random(SHAPE, np.float32) for _ in range(3)]
    plain = quantize_model(model, calibration_data=calibration)
    absorbed = quantize_model(model, calibration_data=calibration, absorb_bias=True)
    assert absorbed.absorbed == 1 and plain.absorbed is None
    assert _snr(plain, absorbed, evaluation, float_only=True) > 100
    assert _snr(plain, absorbed, evaluation) > _snr(plain, plain, evaluation) + 3.0
