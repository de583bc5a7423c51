"""Device code generation: every quantized model, planned (compiler.pipeline.PLAN)
and lowered to instruction streams, runs on the simulator bit-exactly like
the integer reference, on hardware configs from one that forces heavy
tiling to a large one; codegen refuses a graph without the plan it follows.
The planner itself is tested in tests/passes/test_tiling.py."""
from __future__ import annotations

import numpy as np
import pytest

from codegen.device import CodegenError, build_compiled
from compiler.compile import build, system_config
from compiler.pipeline import PLAN
from compiler.zoo import mobilenet_v2, resnet
from passes.distribute import Placement
from passes.infra import PassContext
from runtime.engine import Engine
from runtime.hardware import PRESETS, HardwareConfig
from runtime.isa import AccMode, Op, column, decode_array
from tests.helpers.device_models import assert_device_exact, kitchen_sink, modern_sink, moves, quantize_seeded

TINY, LARGE = PRESETS["tiny"], PRESETS["large"]
CONFIGS = {"default": PRESETS["fwdnxt"], "tiny": TINY, "large": LARGE}


MODELS = {
    "kitchen_sink": lambda config=None: quantize_seeded(kitchen_sink(), config, hwlinear=True),
    "resnet_int16": lambda config=None: quantize_seeded(resnet(depth=18, image=32, classes=10, width=8), config,
                                                   mode="int16"),
    "kitchen_sink_int16": lambda config=None: quantize_seeded(kitchen_sink(), config, hwlinear=True, mode="int16"),
    "kitchen_sink_radix8": lambda config=None: quantize_seeded(kitchen_sink(), config, mode="radix8"),
    "resnet": lambda config=None: quantize_seeded(resnet(depth=18, image=32, classes=10, width=8), config),
    "mobilenet_v2": lambda config=None: quantize_seeded(mobilenet_v2(image=32, classes=10, width=0.25), config),
    "modern_sink": lambda config=None: quantize_seeded(modern_sink(), config),
    "modern_sink_int16": lambda config=None: quantize_seeded(modern_sink(), config, mode="int16"),
    "moves": lambda config=None: quantize_seeded(moves(), config),
}


SPLITS = {"default": (1, 4), "tiny": (2, 1), "large": (2, 8)}
"""Split mode's (numcard, numclus) per config: every cluster of a card; the
tiny config has one cluster a card, so two cards."""


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_simulator_matches_integer_reference(name, config):
    """numclus=1, and split mode over the config's cards and clusters: the
    same integers (no split divides a reduction)."""
    quantized, shape = MODELS[name](CONFIGS[config])
    compiled, engine = assert_device_exact(quantized, shape, CONFIGS[config])
    assert compiled.device_segments, f"{name}: nothing was placed on the accelerator"
    cards, clusters = SPLITS[config]
    system = system_config(CONFIGS[config], cards)
    split = build(quantized.graph, system, placement=Placement(cards, clusters, "split"))
    assert {(k.card, k.cluster) for s in split.device_segments for k in s.streams} == \
        {(k, c) for k in range(cards) for c in range(clusters)}
    _assert_same_outputs(Engine(split), engine, quantized, shape)


def _assert_same_outputs(engine, single, quantized, shape, seeds=(0,)):
    for seed in seeds:
        feeds = {quantized.input_names[0]: np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}
        got, want = engine.run(feeds), single.run(feeds)
        for name in quantized.output_names:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"output {name}")


@pytest.mark.parametrize("axis", ["k", "rows"])
def test_layers_split_across_cards_equal_one_cluster(axis):
    """Every CONV layer forced across two cards (each card's part of the
    output copied to the other by the host between phases): the same
    integers; the GEMMs (no rows) along their features or M."""
    quantized, shape = MODELS["kitchen_sink"](TINY)
    layers = [n for s in quantized.graph.nodes if s.attrs["device"] == "FPGA" for n in s.attrs["body"].nodes
              if n.op in ("QConv", "QGemm")]
    forced = {n.name: f"cards:{axis if n.op == 'QConv' else 'cols'}" for n in layers}
    system = system_config(TINY, 2)
    split = build(quantized.graph, system, placement=Placement(2, 1, "split"),
                  options={"device.split_overrides": forced})
    segment = split.device_segments[0]
    assert len({k.phase for k in segment.streams}) == len(layers)
    assert {e.card for e in segment.exchanges if e.phase >= 0} == {0, 1}
    assert [e.phase for e in segment.exchanges if e.phase < 0] == [-1]  # the input's broadcast
    _assert_same_outputs(Engine(split), Engine(build(quantized.graph, TINY)), quantized, shape, seeds=(0, 1))


def test_modern_layers_run_whole_on_the_device_in_their_own_forms():
    quantized, shape = MODELS["modern_sink"](TINY)
    assert [s.attrs["device"] for s in quantized.graph.nodes] == ["FPGA"]
    ops = [n.op for n in quantized.quantized_nodes()]
    assert ops.count("QConvTranspose") == 2 and {"QSub", "QMax", "QMin", "QMul", "QConcat"} <= set(ops)
    assert sum(len(n.attrs.get("table", ())) == 256 for n in quantized.quantized_nodes()) >= 3  # SiLU, HardSwish, SE
    assert "QLut" not in ops and "Sigmoid" not in ops
    compiled, engine = assert_device_exact(quantized, shape, TINY)
    layers = [layer.op for layer in compiled.layers]
    assert layers.count("QConvTranspose") == 4 + 4  # a part per output phase
    assert layers.count("QAvgPool") >= 3  # POOL, and the GEMM of the wide global averages


def test_mixed_precision_layers_are_exact():
    quantized, shape = quantize_seeded(kitchen_sink(), TINY, hwlinear=True,
                                  layer_precision={"conv_3": "int16", "conv_12": "int16", "conv_27": "int16"})
    wide = {s for n in quantized.quantized_nodes() if n.outputs[0].type.dtype == np.int16
            for s in n.annotations.get("source", [])}
    assert {"conv_3", "conv_12", "conv_27"} <= wide  # conv_12 feeds a lookup table: it reads 16-bit codes now
    tables = [n for n in quantized.quantized_nodes() if len(n.attrs.get("table") or ()) == 513 or
              (n.op == "QLut" and n.inputs[0].type.dtype == np.int16)]
    assert tables, "a table reading conv_12's 16-bit codes"
    assert_device_exact(quantized, shape, TINY)


def _ops(compiled) -> list[np.ndarray]:
    return [decode_array(s)[0] for seg in compiled.device_segments for s in seg.streams.values()]


def test_tiny_config_splits_reductions_and_tiles():
    quantized, shape = MODELS["resnet"]()
    tiny = build(quantized.graph, TINY)
    default = build(quantized.graph, HardwareConfig())
    tiny_rows, default_rows = _ops(tiny)[0], _ops(default)[0]
    convs = tiny_rows[tiny_rows[:, 0] == Op.CONV]
    modes = set(convs[:, column(Op.CONV, "acc_mode")].tolist())
    assert {AccMode.FIRST, AccMode.LAST} <= modes, "the tiny config must split some reductions over passes"
    assert (default_rows[:, 0] == Op.CONV).sum() < len(convs)


def test_layers_map_instruction_ranges_to_onnx_nodes():
    quantized, shape = MODELS["kitchen_sink"]()
    compiled = build(quantized.graph, HardwareConfig())
    onnx_nodes = {n.name for n in kitchen_sink().graph.node}
    for segment in compiled.device_segments:
        count = len(next(iter(segment.streams.values()))) // 64
        previous = 0
        for layer in segment.layers:
            assert previous <= layer.start < layer.stop <= count
            assert set(layer.onnx_nodes) <= onnx_nodes, layer
            previous = layer.stop
    names = [n for layer in compiled.layers for n in layer.onnx_nodes]
    assert {"conv_3", "relu_4", "add_19", "gemm_36"} <= set(names)


def test_dram_reuses_dead_activations():
    """The activation region is at least the largest live set (a layer's
    inputs and output) and below the sum of all activations."""
    quantized, _ = MODELS["resnet"]()
    compiled = build(quantized.graph, HardwareConfig())
    activations = compiled.dram_size - len(compiled.dram_image)
    body = next(n for n in quantized.graph.nodes if n.attrs["device"] == "FPGA").attrs["body"]
    size = {v: int(np.prod(v.type.shape)) * v.type.dtype.itemsize for n in body.nodes for v in n.outputs}
    layers = [n for n in body.nodes if n.op.startswith("Q") and n.op != "QuantizeLinear"]
    live = max(size[n.outputs[0]] + sum(size.get(v, 0) for v in n.inputs if not v.is_constant) for n in layers)
    assert live <= activations < sum(size[n.outputs[0]] for n in layers)


def test_codegen_follows_the_plan_and_refuses_a_graph_without_one():
    quantized, _ = MODELS["resnet"]()
    with pytest.raises(CodegenError, match=r"accelerator segment '.*' has no tiling or DRAM plan: run "
                                           r"compiler.pipeline.PLAN"):
        build_compiled(quantized.graph, HardwareConfig())
    with PassContext(options={"target.hardware": TINY}):
        planned = PLAN(quantized.graph)
    with pytest.raises(CodegenError, match="was tiled for another hardware config"):
        build_compiled(planned, HardwareConfig())
    assert build_compiled(planned, TINY).dram_size == build(quantized.graph, TINY).dram_size
