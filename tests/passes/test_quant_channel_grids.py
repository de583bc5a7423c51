"""Channel grids (passes/quant/channel_grids.py): which tensors get a grid per
channel, the grid itself, what it buys, bias correction on it, the device and
CPU paths bit for bit to the integer reference, and the encodings round trip."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.quantize import quantize_model
from ir.types import QuantParams
from passes.infra import PassError
from passes.quant.bias_correction import InputMeans
from passes.quant.channel_grids import HEADROOM, channel_grid, per_output_scales
from runtime.hardware import PRESETS, HardwareConfig
from tests.helpers.device_models import assert_device_exact
from tests.helpers.quant import model_snr, quantize_quietly

SHAPE = [1, 3, 16, 16]
QUIET = [0, 1, 2, 3]
"""The stem's output channels whose range is ~20x under the others'."""


def _model(shared: bool = False, seed: int = 5):
    """x -> stem Conv(8) -> Clip(0, 6) -> depthwise Conv -> Relu -> Conv(4) -> y;
    the stem's channels QUIET are quiet (and the depthwise layer amplifies
    them again). ``shared``: an Add also reads the
    stem's output (then it keeps one grid)."""
    rng = np.random.default_rng(seed)
    w0, w1 = rng.normal(0, 0.5, (8, 3, 3, 3)), rng.normal(0, 0.4, (8, 1, 3, 3))
    w0[QUIET] *= 0.05
    w1[QUIET] *= 20  # a trained network's next layer scales quiet channels back up
    inits = {"w0": w0, "b0": np.abs(rng.normal(0, 0.05, 8)), "w1": w1,
             "b1": rng.normal(0, 0.05, 8), "w2": rng.normal(0, 0.4, (4, 8, 1, 1)), "lo": np.float32(0),
             "hi": np.float32(6)}
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], pads=[1, 1, 1, 1], name="stem"),
             helper.make_node("Clip", ["c0", "lo", "hi"], ["r0"], name="relu6"),
             helper.make_node("Conv", ["r0", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], group=8, name="dw"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu")]
    if shared:
        nodes.append(helper.make_node("Add", ["r1", "r0"], ["s1"], name="add"))
    nodes.append(helper.make_node("Conv", ["s1" if shared else "r1", "w2"], ["y"], name="pw"))
    graph = helper.make_graph(nodes, "stem_dw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])],
                              [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    calibration = [rng.random(SHAPE, np.float32) * 4 for _ in range(16)]
    evaluation = [rng.random(SHAPE, np.float32) * 4 for _ in range(4)]
    return model, calibration, evaluation


_quantize, _snr = quantize_quietly, model_snr


def test_the_grid_per_channel_keeps_the_zero_point_headroom_and_the_tensors_grid():
    tensor = QuantParams(10.0 / 255, -128, np.int8)
    grid = channel_grid(tensor, np.zeros(4), np.array([10.0, 1.0, 0.0, 8.0]))
    assert grid.axis == 1 and set(grid.zero) == {-128}
    np.testing.assert_allclose(grid.scale, [10 / 255, HEADROOM / 255, 10 / 255, 10 / 255], rtol=1e-6)
    clipped = channel_grid(tensor, np.zeros(2), np.array([5.0, 1.0]), clamp=(0.0, 6.0))
    np.testing.assert_allclose(clipped.scale, [6 / 255, HEADROOM / 255], rtol=1e-6)
    signed = channel_grid(QuantParams(0.1, 10, np.int8), np.array([-2.0, -13.8]), np.array([2.0, 11.7]))
    assert signed.zero == (10, 10)
    np.testing.assert_allclose(signed.scale, [3.0 / 117, 0.1], rtol=1e-6)  # -3.0 / (-128 - 10) < 3.0 / 117


def test_a_depthwise_layer_reads_its_input_channel_per_output():
    grid = QuantParams([1.0, 2.0], [0, 0], np.int8, axis=1)
    np.testing.assert_array_equal(per_output_scales(grid, 4), [1.0, 1.0, 2.0, 2.0])
    np.testing.assert_array_equal(per_output_scales(QuantParams(0.5, 0, np.int8), 3), [0.5, 0.5, 0.5])


def test_only_a_tensor_that_only_depthwise_layers_read_gets_one():
    model, calibration, _ = _model()
    grids = _quantize(model, calibration).activation_grids()
    assert grids["r0"].per_channel and grids["r0"].axis == 1 and len(grids["r0"].scale) == 8
    assert not grids["r1"].per_channel  # read by a convolution over all channels
    assert not any(g.per_channel for g in _quantize(*_model(shared=True)[:2]).activation_grids().values())
    assert not any(g.per_channel for g in _quantize(model, calibration, channel_grids=False)
                   .activation_grids().values())


def test_quiet_channels_get_their_own_codes():
    model, calibration, evaluation = _model()
    scales = np.asarray(_quantize(model, calibration).activation_grids()["r0"].scale)
    assert scales[QUIET].max() < scales.max() / 5
    gain = _snr(_quantize(model, calibration), evaluation) - _snr(_quantize(model, calibration, channel_grids=False),
                                                                   evaluation)
    assert gain > 3.0, gain


@pytest.mark.parametrize("config", [HardwareConfig(), PRESETS["tiny"]], ids=["default", "tiny"])
def test_the_device_and_the_cpu_path_are_bit_exact_to_the_integer_reference(config):
    model, calibration, _ = _model()
    q = _quantize(model, calibration, options={"target.hardware": config})
    assert q.activation_grids()["r0"].per_channel
    assert_device_exact(q, SHAPE, config)


def test_bias_correction_takes_each_channels_grid():
    grid = QuantParams([0.5, 0.01], [-128, -128], np.int8, axis=1)
    x = np.random.default_rng(0).random((3, 2, 4, 5), np.float32)
    means = InputMeans(grid)
    means.update_many([x])
    scale = np.array([0.5, 0.01], np.float32).reshape(1, 2, 1, 1)
    rounded = scale * (np.clip(np.rint(x / scale) - 128, -128, 127) + 128).astype(np.float32)
    np.testing.assert_allclose(means.rounded, rounded.sum(axis=0), rtol=1e-6)
    np.testing.assert_allclose(means.exact, x.sum(axis=0), rtol=1e-6)


def test_the_grids_survive_an_encodings_round_trip_bit_for_bit():
    model, calibration, evaluation = _model()
    q = _quantize(model, calibration)
    document = q.export_encodings()
    assert len(document["activation_encodings"]["r0"]) == 8
    again = quantize_model(model, encodings=document)
    assert again.activation_grids()["r0"] == q.activation_grids()["r0"]
    for x in evaluation[:2]:
        assert np.array_equal(again.run({"x": x})["y"], q.run({"x": x})["y"])


def test_a_given_grid_per_channel_where_none_can_be_is_named():
    model, calibration, _ = _model()
    document = _quantize(model, calibration).export_encodings()
    document["activation_encodings"]["r1"] = document["activation_encodings"]["r0"]
    with pytest.raises(PassError, match="%r1.*only a tensor a convolution writes"):
        quantize_model(model, encodings=document)
    document = _quantize(model, calibration).export_encodings()
    document["activation_encodings"]["r0"] = document["activation_encodings"]["r0"][:4]
    with pytest.raises(PassError, match="%r0.*one scale for each of the 8 channels"):
        quantize_model(model, encodings=document)


def test_the_cli_switch_turns_them_off():
    import argparse

    from compiler.cli_device import target_kwargs, target_options

    parser = argparse.ArgumentParser()
    target_options(parser)
    assert target_kwargs(parser.parse_args(["--no-channel-grids"])) == {"channel_grids": False}
    assert target_kwargs(parser.parse_args([])) == {}
