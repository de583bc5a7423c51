"""The planning passes after quantization (compiler.pipeline.PLAN): tile
records each accelerator layer's tiles for the hardware config, plan_memory
each segment's DRAM placement; both as plain data on the IR, which the
printer shows and codegen follows."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from compiler.pipeline import PLAN
from compiler.quantize import quantize_model
from compiler.zoo.builder import OnnxBuilder
from ir.printer import format_node
from passes.infra import PassContext
from passes.partition import accelerator_segments
from passes.plan_memory import VIEWS, liveness, root
from passes.tile import plan_layer
from passes.tiling import CONV_OPS, TILED_OPS, conv_plan, conv_shape, map_tiles
from runtime.hardware import PRESETS

TINY, DEFAULT = PRESETS["tiny"], PRESETS["fwdnxt"]


@pytest.fixture(scope="module")
def quantized():
    """Conv, Relu, MaxPool, a residual Add, Concat, Flatten and a linear layer, quantized."""
    b = OnnxBuilder("small", seed=5)
    x = b.input("x", [1, 3, 12, 12])
    a = b.node("Relu", [b.conv(x, 3, 8, 3)])
    p = b.node("MaxPool", [a], kernel_shape=[2, 2], strides=[2, 2])
    r = b.node("Add", [b.conv(p, 8, 8, 3), p])
    k = b.node("Concat", [r, p], axis=1)
    g = b.node("Flatten", [b.node("GlobalAveragePool", [k])])
    model = b.model([b.linear(g, 16, 4)])
    samples = [np.random.default_rng(i).standard_normal((1, 3, 12, 12)).astype(np.float32) for i in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_model(model, calibration_data=samples, hwlinear=True).graph


def planned(graph, config, **options):
    with PassContext(options={"target.hardware": config, **options}):
        return PLAN(graph)


def layers(graph):
    return [n for s in accelerator_segments(graph) for n in s.attrs["body"].nodes if n.op in TILED_OPS]


def test_tile_records_each_layers_fitting_tiles_for_the_config(quantized):
    graph = planned(quantized, TINY)
    assert {n.op for n in layers(graph)} >= {"QConv", "MaxPool", "QConcat", "QGemm"}
    for node in layers(graph):
        decision = node.annotations["tile"]
        assert decision == plan_layer(node, TINY)
        if node.op in CONV_OPS:
            assert set(decision) == {"kt", "rt", "wt", "ct", "k_outer"}
            assert not conv_plan(conv_shape(node), decision).overflows(TINY), node.name
        else:
            assert set(decision) == {"ct", "rt", "wt"}
            sizes = map_tiles(node).slot_sizes(decision["ct"], decision["rt"], decision["wt"])
            assert 2 * sum(sizes) <= TINY.activation_buffer_bytes, node.name
        assert "tile={" in format_node(node)
    assert all(s.annotations["hardware"] == TINY.digest() for s in accelerator_segments(graph))


def test_a_larger_config_gets_larger_tiles(quantized):
    tiny = [n.annotations["tile"] for n in layers(planned(quantized, TINY))]
    default = [n.annotations["tile"] for n in layers(planned(quantized, DEFAULT))]
    assert tiny != default
    assert all(d["rt"] * d["wt"] >= t["rt"] * t["wt"] for t, d in zip(tiny, default))


def _ranges(body):
    """(first, last, start, stop) of every DRAM tensor, from the recorded offsets."""
    return [(i.first, i.last, v.producer.annotations["dram"], v.producer.annotations["dram"] + i.size)
            for v, i in liveness(body).items()]


@pytest.mark.parametrize("reuse", [True, False])
def test_plan_memory_keeps_tensors_alive_together_apart(quantized, reuse):
    graph = planned(quantized, DEFAULT, **{"memory.reuse": reuse})
    for segment in accelerator_segments(graph):
        body = segment.attrs["body"]
        ranges = _ranges(body)
        assert max(stop for *_, stop in ranges) <= segment.annotations["dram_bytes"]
        assert all(start % 64 == 0 for _, _, start, _ in ranges)
        for i, (f1, l1, s1, e1) in enumerate(ranges):
            for f2, l2, s2, e2 in ranges[i + 1:]:
                if not reuse or (f1 <= l2 and f2 <= l1):
                    assert e1 <= s2 or e2 <= s1, "two tensors alive together share DRAM bytes"
        for node in body.nodes:
            if node.op in VIEWS:  # a view has its input's bytes, no offset of its own
                assert "dram" not in node.annotations and "dram" in root(node.outputs[0]).producer.annotations


def test_reuse_makes_the_activation_region_smaller(quantized):
    size = {reuse: sum(s.annotations["dram_bytes"] for s in accelerator_segments(
        planned(quantized, DEFAULT, **{"memory.reuse": reuse}))) for reuse in (True, False)}
    assert size[True] < size[False]
