"""compiler.coverage: the accelerator's share of a placed model (MACs, ONNX
nodes, segments) and why each CPU node is on the CPU, and the CLI lines."""
import warnings

import numpy as np
import onnx
import pytest

from compiler.cli import main
from compiler.coverage import RULE, Coverage, CoverageError, CpuNode, coverage
from compiler.frontend import import_onnx
from compiler.pipeline import partition_graph
from compiler.quantize import quantize_model
from compiler.zoo.builder import OnnxBuilder
from ir import GraphBuilder
from passes.affinity import REASON, assign_affinity
from passes.fuse_ops import make_fused
from passes.infra import PassContext
from passes.partition import partition

SHAPE = [1, 4, 5, 5]
CONV_MACS = 1 * 4 * 5 * 5 * (4 * 3 * 3)
ERF = "op LogSoftmax has no accelerator implementation"
NO_RULE = "passes/target.py: no rule for LogSoftmax"
rng = np.random.default_rng(0)


def placed(graph, rules=None):
    """Affinities by the default policy, ``rules`` recorded on named nodes, then partitioned."""
    with PassContext(options={"partition.demote_islands": False}):
        assign_affinity(graph)
        for name, rule in (rules or {}).items():
            graph.node(name).annotations[RULE] = rule
        return partition(graph)


def conv(b, x, name, group=1):
    w = b.const(rng.standard_normal((4, 4 // group, 3, 3)).astype(np.float32), f"{name}_w")
    return b.Conv(x, w, pads=[1, 1, 1, 1], group=group, name=name)


def net():
    """conv -> relu -> erf (CPU) -> conv2 -> add(conv2, relu)."""
    b = GraphBuilder("net")
    y = b.Relu(conv(b, b.input("x", SHAPE), "conv"), name="relu")
    return b.build(b.Add(conv(b, b.LogSoftmax(y, name="erf"), "conv2"), y, name="add"))


def test_counts_macs_nodes_and_segments_of_a_partitioned_graph():
    report = coverage(placed(net()))
    assert report == Coverage(device_macs=2 * CONV_MACS, total_macs=2 * CONV_MACS, device_nodes=4, total_nodes=5,
                              device_segments=2, cpu_segments=1,
                              cpu_nodes=(CpuNode("erf", "LogSoftmax", ERF, NO_RULE),))
    assert report.mac_share == 1.0
    assert report.summary_line() == ("accelerator: 100.0 % of MACs, 4 of 5 ONNX nodes, 2 device segments; "
                                     f"CPU: 1 node (LogSoftmax ×1: {ERF})")


def test_mac_share_counts_a_cpu_convolution_and_never_rounds_up_to_all():
    b = GraphBuilder("computed")
    x = conv(b, b.input("x", SHAPE), "dense")
    report = coverage(placed(b.build(b.Conv(x, b.input("w", [4, 2, 3, 3]), pads=[1, 1, 1, 1], group=2,
                                            name="computed"))))
    assert (report.device_macs, report.total_macs) == (CONV_MACS, CONV_MACS + CONV_MACS // 2)
    assert report.summary_line().startswith("accelerator: 66.7 % of MACs, 1 of 2 ONNX nodes, 1 device segment; "
                                            "CPU: 1 node (Conv ×1: Conv weights %w is computed at run time")
    nearly = Coverage(9999, 10000, 1, 2, 1, 1, (CpuNode("c", "Conv", "why"),))
    assert nearly.summary_line().startswith("accelerator: 99.9 % of MACs")


def test_an_onnx_node_split_across_devices_counts_on_the_cpu():
    """A LogSoftmax imported as a Reshape helper (accelerator) and the LogSoftmax (CPU) is one CPU ONNX node."""
    b = GraphBuilder("split")
    r = b.Relu(b.input("x", SHAPE), name="r")
    flat = b.Reshape(r, b.const(np.array([1, 100], np.int64), "shape"), name="sm::Reshape")
    report = coverage(placed(b.build(b.LogSoftmax(flat, axis=1, name="sm"))))
    assert (report.device_nodes, report.total_nodes, report.cpu_onnx_nodes) == (1, 2, 1)
    assert report.total_macs == 0 and report.mac_share is None
    assert report.summary_line().startswith("accelerator: no MACs, 1 of 2 ONNX nodes, 1 device segment; CPU: 1 node")


def test_reasons_group_by_kind_counting_onnx_nodes():
    island = "FPGA island of {} node(s) between CPU segments moved to the CPU: its transfers take {} us"
    report = Coverage(0, 0, 0, 5, 0, 1, (
        CpuNode("e1", "LogSoftmax", ERF), CpuNode("e2", "LogSoftmax", ERF), CpuNode("e2::Reshape", "Reshape", "rank"),
        CpuNode("c", "Conv", island.format(1, 41.5)), CpuNode("m", "MaxPool", island.format(2, 40.2))))
    assert report.reason_groups() == [(("LogSoftmax",), ERF, 2), (("Conv", "MaxPool"), island.format("N", "N"), 2),
                                      (("Reshape",), "rank", 1)]


def test_table_lists_every_cpu_node_with_its_rule_when_recorded():
    lines = coverage(placed(net())).table().splitlines()
    assert lines[0].split() == ["CPU", "node", "op", "reason", "rule"]
    assert lines[1].split()[:2] == ["erf", "LogSoftmax"] and lines[1].endswith(f"{ERF}  {NO_RULE}")
    ruled = coverage(placed(net(), rules={"erf": "passes/target.py: _RULES"}))
    assert ruled.cpu_nodes == (CpuNode("erf", "LogSoftmax", ERF, "passes/target.py: _RULES"),)
    assert ruled.table().splitlines()[1].endswith(f"{ERF}  passes/target.py: _RULES")
    assert Coverage(1, 1, 1, 1, 1, 0, ()).table() == "every node runs on the accelerator"


def test_members_of_a_group_moved_as_a_whole_carry_its_reason():
    """An unpartitioned placed graph; the Fused group has the reason, its members none."""
    b = GraphBuilder("fused")
    graph = b.build(b.Relu(conv(b, b.input("x", SHAPE), "conv"), name="relu"))
    for node in graph.nodes:
        node.affinity = "CPU"
    group = make_fused(graph, list(graph.nodes))
    group.affinity, group.annotations[REASON] = "CPU", "moved with its group"
    report = coverage(graph)
    assert report.cpu_nodes == (CpuNode("conv", "Conv", "moved with its group"),
                                CpuNode("relu", "Relu", "moved with its group"))
    assert (report.device_segments, report.cpu_segments, report.device_macs, report.total_macs) == (0, 1, 0, CONV_MACS)


def test_unplaced_graph_is_an_error_naming_the_node():
    with pytest.raises(CoverageError, match="Conv node 'conv' of graph 'net' has no device"):
        coverage(net())


def test_metadata_round_trip_and_malformed_fields():
    report = coverage(placed(net(), rules={"erf": "rule"}))
    assert Coverage.from_metadata(report.to_metadata()) == report
    bad = dict(report.to_metadata(), total_macs=-1)
    with pytest.raises(CoverageError, match="'total_macs' is -1, not a count"):
        Coverage.from_metadata(bad)
    with pytest.raises(CoverageError, match=r"cpu_nodes\[0\] is not \[name, op, reason, rule\]"):
        Coverage.from_metadata(dict(report.to_metadata(), cpu_nodes=[["erf", "LogSoftmax"]]))


# ---------------------------------------------------------------- quantized graphs and the CLI

LINE = ("accelerator: 100.0 % of MACs, 3 of 4 ONNX nodes, 1 device segment; "
        f"CPU: 1 node (LogSoftmax ×1: {ERF})")


def small_model() -> onnx.ModelProto:
    """conv -> relu -> conv (accelerator, large enough to stay there) -> LogSoftmax (CPU)."""
    b = OnnxBuilder("small", seed=1)
    x = b.node("Relu", [b.conv(b.input("x", [1, 8, 32, 32]), 8, 16, 3)], name="relu")
    return b.model([b.node("LogSoftmax", [b.conv(x, 16, 16, 3)], name="erf")])


def test_quantized_graph_counts_sources_and_float_macs():
    model = small_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = quantize_model(model, calibration_count=1)
    report = quantized.coverage()
    assert report == coverage(partition_graph(import_onnx(model)))
    assert report.summary_line() == LINE
    assert report.total_macs == 32 * 32 * 16 * (8 * 9 + 16 * 9)


def test_compile_ends_with_the_line_and_show_and_info_list_cpu_nodes(tmp_path, capsys):
    path, binary = tmp_path / "small.onnx", tmp_path / "small.bin"
    onnx.save(small_model(), path)
    assert main(["show", str(path), "--partition"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == LINE and out[-2].split() == ["erf", "LogSoftmax", *ERF.split(), *NO_RULE.split()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["compile", str(path), "-o", str(binary), "--count", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == LINE
    assert main(["info", str(binary)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == LINE and out[-3].split() == ["CPU", "node", "op", "reason", "rule"]
    assert out[-2].split()[:2] == ["erf", "LogSoftmax"] and out[-2].endswith(f"{ERF}  {NO_RULE}")
