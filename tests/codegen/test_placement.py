"""Cards and clusters (passes/distribute.py, codegen/device/segment.py):
in batch mode every cluster of every card runs the whole program on its own
images, each image in its own activation region of its card's DRAM; a batch
run equals the single-image runs it contains, bit for bit."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from codegen.binary import write_binary
from compiler.compile import build, system_config
from compiler.quantize import quantize_model
from compiler.zoo import resnet
from passes.distribute import Placement, PlacementError
from runtime.binary import read_binary
from runtime.binary.format import BinaryFormatError
from runtime.compiled import Instance
from runtime.engine import Engine
from runtime.errors import ExecutionError
from runtime.hardware import PRESETS, HardwareConfig
from runtime.isa import COL_OPCODE, Op, Space, StreamKey, column, decode_array
from runtime.isa.codec import stream_bytes
from tests.helpers.binary import Parts

SHAPE = [1, 3, 32, 32]


@pytest.fixture(scope="module")
def quantized():
    rng = np.random.default_rng(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_model(resnet(depth=10, image=32, classes=10, width=8),
                              calibration_data=[rng.standard_normal(SHAPE).astype(np.float32) for _ in range(4)])


def _images(count: int, name: str, seed: int = 7) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{name: rng.standard_normal(SHAPE).astype(np.float32)} for _ in range(count)]


@pytest.mark.parametrize("cards, clusters, per_cluster", [(1, 2, 1), (2, 2, 2), (1, 1, 3)])
def test_a_batch_run_equals_its_single_image_runs(quantized, cards, clusters, per_cluster):
    config = system_config(HardwareConfig(), cards)
    placement = Placement(cards, clusters, "batch", per_cluster)
    compiled = build(quantized.graph, config, placement=placement)
    batch = cards * clusters * per_cluster
    assert compiled.batch == batch and compiled.metadata["placement"]["batch"] == batch
    segment = compiled.device_segments[0]
    assert sorted(segment.streams) == [StreamKey(k, c, 0) for k in range(cards) for c in range(clusters)]
    assert len(segment.instances) == batch and len({(i.card, i.offset) for i in segment.instances}) == batch
    assert compiled.output_counts() == 10 * batch
    single = Engine(build(quantized.graph, config))
    engine = Engine(read_binary(write_binary(compiled)))
    images = _images(batch, quantized.input_names[0])
    got = engine.run_batch(images)
    for feeds, outputs in zip(images, got):
        want = single.run(feeds)
        for name in quantized.output_names:
            np.testing.assert_array_equal(outputs[name], want[name])


def test_mvbatch_shares_each_weight_tile_across_a_clusters_images(quantized):
    """mvbatch: a cluster's 4 images go through each layer together, each
    CONV weight tile loaded once for the 4 (a quarter of the weight LOADs of
    imgs_per_cluster=4 alone), and every image equals its single run."""
    config = HardwareConfig()
    plain = build(quantized.graph, config, placement=Placement(1, 1, "batch", 4))
    mv = build(quantized.graph, config, placement=Placement(1, 1, "batch", 4, mvbatch=True))
    assert mv.metadata["placement"]["mvbatch"] == 1 and mv.batch == 4
    engines = {name: Engine(read_binary(write_binary(c))) for name, c in (("plain", plain), ("mv", mv))}
    images = _images(4, quantized.input_names[0], seed=11)
    single = Engine(build(quantized.graph, config))
    got = engines["mv"].run_batch(images)
    for feeds, outputs in zip(images, got):
        want = single.run(feeds)
        for name in quantized.output_names:
            np.testing.assert_array_equal(outputs[name], want[name])
    engines["plain"].run_batch(images)
    wgt = {name: _weight_load_bytes(e) for name, e in engines.items()}
    assert wgt["mv"] < 0.5 * wgt["plain"], wgt
    assert engines["mv"].device.hwtime_ms < engines["plain"].device.hwtime_ms


def _weight_load_bytes(engine: Engine) -> int:
    """Bytes the device's LOADs into WGT SRAM read in one run."""
    total = 0
    for segment in engine.model.device_segments:
        for data in segment.streams.values():
            arr = decode_array(stream_bytes(data))[0]
            rows = (arr[:, COL_OPCODE] == Op.LOAD) & (arr[:, column(Op.LOAD, "space")] == Space.WGT)
            sizes = [arr[rows, column(Op.LOAD, f)] for f in ("elem_bytes", "z_size", "y_size", "x_size")]
            total += int(np.prod(sizes, axis=0).sum())
    return total


def test_a_batch_binary_refuses_the_wrong_number_of_images(quantized):
    engine = Engine(build(quantized.graph, HardwareConfig(), placement=Placement(1, 2)))
    images = _images(3, quantized.input_names[0])
    with pytest.raises(ExecutionError, match="runs 2 image"):
        engine.run_batch(images)
    with pytest.raises(ExecutionError, match="use run_batch"):
        engine.run(images[0])


def test_clusters_of_a_card_share_its_dram_in_the_cycle_model(quantized):
    """Two clusters on one card run two images in less than twice one
    image's time but more than one (they share the card's DRAM bandwidth);
    on two cards, each with its own DRAM, in the time of one."""
    config = system_config(HardwareConfig(), 2)
    image = quantized.input_names[0]
    times = {}
    for cards, clusters in ((1, 1), (1, 2), (2, 1)):
        engine = Engine(build(quantized.graph, config, placement=Placement(cards, clusters)))
        engine.run_batch(_images(cards * clusters, image))
        times[cards, clusters] = engine.device.hwtime_ms
    assert times[1, 1] <= times[1, 2] < 2 * times[1, 1]
    assert times[2, 1] == pytest.approx(times[1, 1])


@pytest.mark.parametrize("kwargs, match", [
    ({"clusters": 5}, "numclus=5: a card has 4 clusters"),
    ({"cards": 2}, "numcard=2: the system has 1 card"),
    ({"images_per_cluster": 0}, "imgs_per_cluster=0"),
    ({"mode": "split", "images_per_cluster": 2}, "split mode"),
    ({"mvbatch": True, "images_per_cluster": 2}, "multiple of 4"),
    ({"mvbatch": True, "mode": "split"}, "multiple of 4 .* mode 'split'"),
    ({"mode": "both"}, "mode='both'"),
])
def test_placement_names_the_argument_the_hardware_cannot_take(kwargs, match):
    with pytest.raises(PlacementError, match=match):
        Placement(**kwargs).check(HardwareConfig())


def test_the_simulated_system_has_as_many_cards_as_asked_for():
    assert system_config(HardwareConfig(), 4).cards == 4
    assert system_config(PRESETS["large"], 1).cards == 2  # a config with more cards keeps them
    with pytest.raises(PlacementError, match="numcard=99"):
        system_config(HardwareConfig(), 99)


def test_reader_refuses_instances_outside_the_dram_or_on_a_missing_card(quantized):
    compiled = build(quantized.graph, HardwareConfig(), placement=Placement(1, 2))
    data = write_binary(compiled)
    assert read_binary(data).device_segments[0].instances == [Instance(0, 0), compiled.device_segments[0]
                                                               .instances[1]]

    def with_instances(instances):
        parts = Parts(data)
        next(s for s in parts.meta["segments"] if s["kind"] == "device")["instances"] = instances
        return parts.build()

    for instances, match in [([[0, 0], [0, compiled.dram_size]], r"instances\[1\]: offset \d+ moves"),
                             ([[0, 0], [3, 0]], r"instances\[1\]\[0\]: 3 is outside \[0, 0\]"),
                             ([[0, 0], [0, 4]], "not 8-aligned"), ([[0, 0]], "META.batch is 2"),
                             ("x", "must be an array")]:
        with pytest.raises(BinaryFormatError, match=match):
            read_binary(with_instances(instances))
