"""The last line of defence behind the target rules (compiler/quantize.py):
an accelerator layer that no tiling fits moves to the CPU with the
planner's error as its reason, and the compile goes on."""
from __future__ import annotations

import numpy as np

import passes.tile
from compiler.zoo.builder import OnnxBuilder
from passes.tiling import TilingError
from runtime.hardware import HardwareConfig
from tests.helpers.device_models import assert_device_exact, quantize_seeded


def _model():
    b = OnnxBuilder("fallback", seed=2)
    x = b.input("x", [1, 4, 12, 12])
    y = b.node("Relu", [b.conv(x, 4, 8, 3)])
    z = b.node("Max", [y, b.node("Relu", [b.conv(y, 8, 8, 3)])], name="the_max")
    return b.model([b.conv(z, 8, 4, 3)])


def test_a_layer_without_a_tiling_moves_to_the_cpu_with_the_planners_error(monkeypatch):
    plan_layer = passes.tile.plan_layer

    def failing(node, hw, split=None):
        if "the_max" in node.annotations.get("source", ()):
            raise TilingError(f"layer {node.name!r}: (a planner gap, for this test)")
        return plan_layer(node, hw, split)

    monkeypatch.setattr(passes.tile, "plan_layer", failing)
    quantized, shape = quantize_seeded(_model(), options={"partition.demote_islands": False})
    report = quantized.coverage()
    assert [(n.name, n.op) for n in report.cpu_nodes] == [("the_max", "Max")], report.summary_line()
    assert report.cpu_nodes[0].reason == ("no tiling of it fits the accelerator: layer 'the_max': (a planner gap, "
                                          "for this test)")
    assert report.device_segments == 2 and quantized.options["partition.host_layers"] == {
        "the_max": report.cpu_nodes[0].reason}
    assert_device_exact(quantized, shape, HardwareConfig(), seeds=(0,))


def test_tileable_models_are_placed_once(monkeypatch):
    calls = []
    untileable = passes.tile.untileable
    monkeypatch.setattr("compiler.quantize.untileable", lambda *a: calls.append(1) or untileable(*a))
    quantized, _ = quantize_seeded(_model())
    assert calls == [1] and "partition.host_layers" not in quantized.options
    assert np.isfinite(quantized.coverage().mac_share)
