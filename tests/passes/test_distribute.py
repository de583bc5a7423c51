"""The distribute pass (passes/distribute.py): in split mode, how each
accelerator layer divides over the clusters of a card (and across cards),
chosen by the tiler's own cost model at the DRAM bandwidth each cluster
gets; overridable per layer; nothing in batch mode."""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from compiler.pipeline import PLAN
from compiler.quantize import quantize_model
from compiler.zoo.builder import OnnxBuilder
from passes.conv_parts import conv_parts, split_extent
from passes.distribute import Placement, PlacementError, card_ranges, worker_parts
from passes.infra import PassContext, PassError
from passes.partition import accelerator_segments
from passes.tiling import TILED_OPS
from runtime.hardware import PRESETS

DEFAULT = PRESETS["fwdnxt"]


@pytest.fixture(scope="module")
def quantized():
    """A narrow conv on a tall map, a wide conv on a small one, a pool and a linear layer."""
    b = OnnxBuilder("shapes", seed=2)
    x = b.input("x", [1, 3, 64, 64])
    tall = b.node("Relu", [b.conv(x, 3, 4, 3)])                                  # 4 channels, 64x64
    pooled = b.node("MaxPool", [tall], kernel_shape=[8, 8], strides=[8, 8])      # 4 x 8 x 8
    wide = b.node("Relu", [b.conv(pooled, 4, 256, 1)])                            # 256 channels, 8x8
    g = b.node("Flatten", [b.node("GlobalAveragePool", [wide])])
    model = b.model([b.linear(g, 256, 512)])
    samples = [np.random.default_rng(i).standard_normal((1, 3, 64, 64)).astype(np.float32) for i in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_model(model, calibration_data=samples, hwlinear=True).graph


def planned(graph, placement, **options):
    config = dataclasses.replace(DEFAULT, cards=placement.cards)
    with PassContext(options={"target.hardware": config, "device.placement": placement, **options}):
        return PLAN(graph)


def layers(graph):
    return {n.op if n.op != "QConv" else f"QConv{n.outputs[0].type.shape[1]}": n
            for s in accelerator_segments(graph) for n in s.attrs["body"].nodes if n.op in TILED_OPS}


def test_batch_mode_records_no_split(quantized):
    for node in layers(planned(quantized, Placement(1, 4))).values():
        assert "split" not in node.annotations


def test_a_placement_beyond_the_target_is_refused(quantized):
    with PassContext(options={"target.hardware": DEFAULT, "device.placement": Placement(2, 4, "split")}):
        with pytest.raises(PlacementError, match="numcard=2"):
            PLAN(quantized)


def test_each_conv_layer_is_cut_where_its_slowest_share_is_cheapest(quantized):
    """Four output channels over four clusters would leave each cluster's
    MAC units 3/4 idle: the tall narrow conv is cut by rows; the wide conv
    and the linear layer by output channels (features); map layers by tiles."""
    got = layers(planned(quantized, Placement(1, 4, "split")))
    assert got["QConv4"].annotations["split"] == {"axis": "rows", "across": "clusters", "workers": 4, "sharers": 4}
    assert got["QConv256"].annotations["split"]["axis"] == "k"
    assert got["QGemm"].annotations["split"]["axis"] == "k"
    assert got["MaxPool"].annotations["split"]["axis"] == "tiles"
    for node in (got["QConv4"], got["QConv256"], got["QGemm"]):
        decision = node.annotations["tile"]
        assert len(decision["workers"]) == 4 and all(d is not None for d in decision["workers"])


@pytest.mark.parametrize("axis", ["k", "rows", "cols"])
def test_shares_cover_the_output_once(quantized, axis):
    node = layers(quantized)["QConv4"]
    (whole,) = conv_parts(node, DEFAULT)
    shares = [p for parts in worker_parts(node, DEFAULT, {"axis": axis, "workers": 3}) for p in parts]
    extent, _ = split_extent(whole, axis)
    covered = sorted((p.channel0, p.shape.k) if axis == "k" else
                     (p.origin[0], p.shape.oh) if axis == "rows" else (p.origin[1], p.shape.ow) for p in shares)
    assert covered[0][0] == 0 and sum(n for _, n in covered) == extent
    assert all(a + n == b for (a, n), (b, _) in zip(covered, covered[1:]))
    assert [r for r in card_ranges(10, 1, 2, 2)] == [(0, 6), (6, 10)]


def test_overrides_force_a_layers_split_and_bad_ones_are_named(quantized):
    names = {key: node.name for key, node in layers(quantized).items()}
    got = layers(planned(quantized, Placement(2, 2, "split"),
                         **{"device.split_overrides": {names["QConv256"]: "cards:rows", names["MaxPool"]: "none"}}))
    assert got["QConv256"].annotations["split"] == {"axis": "rows", "across": "cards", "workers": 4, "sharers": 2}
    assert got["MaxPool"].annotations["split"]["axis"] == "none"
    for overrides, message in (({"nope": "k"}, "names no accelerator layer"),
                               ({names["QConv4"]: "diagonal"}, "splits along one of"),
                               ({names["MaxPool"]: "k"}, "split by its tiles"),
                               ({names["QGemm"]: "cards:rows"}, "cannot be split across cards")):
        with pytest.raises(PassError, match=message):
            planned(quantized, Placement(2, 2, "split"), **{"device.split_overrides": overrides})


def test_the_host_link_keeps_layers_within_a_card_unless_the_compute_pays_for_the_copies(quantized):
    """With two cards, a layer goes across them only when the compute it
    saves outweighs the host's copies (microseconds each): none of these
    small layers does."""
    for node in layers(planned(quantized, Placement(2, 4, "split"))).values():
        assert node.annotations["split"]["across"] == "clusters", node.name
