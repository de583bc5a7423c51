"""partition: cycle-free single-device segments, island demotion, Segment bodies, unchanged numerics."""
import networkx as nx
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codegen.cpu import lower_to_program
from ir import GraphBuilder, verify
from passes.affinity import MANUAL, REASON, assign_affinity
from passes.infra import PassContext
from passes.partition import SegmentInfo, partition, segments
from passes.target import accelerator, cpu
from runtime.executor import Executor

SHAPE = [1, 4, 5, 5]
rng = np.random.default_rng(0)


def conv_weights(channels=4):
    return rng.standard_normal((channels, channels, 3, 3)).astype(np.float32)


def run(graph, feeds):
    return Executor(lower_to_program(graph), check=True).run(feeds)


def feeds_for(graph):
    return {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in graph.inputs}


def partitioned(graph, manual=None, **options):
    """Partition ``graph`` (affinities by hand for the nodes in ``manual``) and
    check that the result verifies and computes what the original did."""
    for name, device in (manual or {}).items():
        graph.node(name).affinity = device
    feeds = feeds_for(graph)
    expected = run(graph, feeds)
    with PassContext(options={"partition.demote_islands": False, **options}):
        result = partition(graph)
    verify(result)
    actual = run(result, feeds)
    assert list(actual) == list(expected)
    for name in expected:  # a second run may take another conv algorithm (Winograd's, once its weights are cached)
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-4, atol=1e-5)
    return result


def layout(graph):
    """(device, node names) of each segment, in order."""
    return [(s.device, s.nodes) for s in segments(graph)]


def every(graph, device):
    return {n.name: device for n in graph.nodes}


# ---------------------------------------------------------------- structure

def net():
    b = GraphBuilder("net")
    x = b.input("x", SHAPE)
    w = b.const(conv_weights(), "w")
    y = b.Relu(b.Conv(x, w, pads=[1, 1, 1, 1], name="conv"), name="relu")
    z = b.Conv(b.LogSoftmax(y, name="erf"), w, pads=[1, 1, 1, 1], name="conv2")
    return b.build(b.Add(z, y, name="add"))


def test_segments_and_crossing_values():
    g = partitioned(net())
    assert segments(g) == [
        SegmentInfo("FPGA", ("conv", "relu"), ("x",), ("relu",)),
        SegmentInfo("CPU", ("erf",), ("relu",), ("erf",)),
        SegmentInfo("FPGA", ("conv2", "add"), ("erf", "relu"), ("add",)),
    ]
    assert [(n.op, n.name, n.affinity, n.attrs["device"]) for n in g.nodes] == [
        ("Segment", "segment0", "FPGA", "FPGA"), ("Segment", "segment1", "CPU", "CPU"),
        ("Segment", "segment2", "FPGA", "FPGA")]


def test_bodies_keep_names_constants_and_reasons():
    g = partitioned(net())
    first, second, third = (n.attrs["body"] for n in g.nodes)
    assert [v.name for v in first.inputs] == ["x"] and [v.name for v in first.outputs] == ["relu"]
    assert first.values["w"].is_constant and third.values["w"].is_constant
    assert first.values["w"].const is third.values["w"].const  # shared read-only weights, not copies
    assert second.node("erf").annotations[REASON] == "op LogSoftmax has no accelerator implementation"
    assert {n.affinity for n in third.nodes} == {"FPGA"}
    assert g.outputs[0].name == "add" and "w" not in g.values


def test_plan_and_rewrite_agree_and_partition_is_idempotent():
    g = net()
    with PassContext(options={"partition.demote_islands": False}):
        assign_affinity(g)
        planned = segments(g)
        result = partition(g)
    assert segments(result) == planned
    assert partition(result) is result


def test_a_merge_through_another_device_would_make_a_cycle():
    """a -> b(CPU) -> d and a -> c -> d: d cannot join {a, c}."""
    b = GraphBuilder()
    a = b.Relu(b.input("x", SHAPE), name="a")
    g = b.build(b.Add(b.LogSoftmax(a, name="b"), b.Sigmoid(a, name="c"), name="d"))
    g = partitioned(g)
    assert layout(g) == [("FPGA", ("a", "c")), ("CPU", ("b",)), ("FPGA", ("d",))]


def test_merges_see_dependencies_that_earlier_merges_created():
    """Once n joins g's segment, h (after g) also waits for p (before n): m
    may join h but then not p, though no node path leads from p to h."""
    b = GraphBuilder()
    x = b.input("x", SHAPE)
    g_ = b.Relu(x, name="g")
    p = b.Relu(x, name="p")
    h = b.Relu(g_, name="h")
    n = b.Add(g_, p, name="n")
    m = b.Add(h, p, name="m")
    graph = b.build(n, m)
    result = partitioned(graph, manual={"g": "FPGA", "n": "FPGA", "p": "CPU", "h": "CPU", "m": "CPU"})
    assert layout(result) == [("CPU", ("p",)), ("FPGA", ("g", "n")), ("CPU", ("h", "m"))]


def test_sibling_branches_merge_through_their_join():
    b = GraphBuilder()
    c = b.LogSoftmax(b.input("x", SHAPE), name="c")
    g = b.build(b.Add(b.Relu(c, name="a"), b.Sigmoid(c, name="s"), name="d"))
    assert layout(partitioned(g)) == [("CPU", ("c",)), ("FPGA", ("a", "s", "d"))]


def test_graph_outputs_inputs_and_constants_pass_through():
    b = GraphBuilder()
    x = b.input("x", SHAPE)
    k = b.const(np.ones(3, np.float32), "k")
    y = b.Relu(x, name="y")
    g = partitioned(b.build(y, x, k, y))
    assert [v.name for v in g.outputs] == ["y", "x", "k", "y"]
    assert g.outputs[2].is_constant


def test_a_single_device_gives_one_segment():
    g = partitioned(net(), **{"partition.fallback": "CPU"})
    assert layout(g) == [("CPU", ("conv", "relu", "erf", "conv2", "add"))]


def test_manual_affinities_shape_the_segments():
    g = net()
    g = partitioned(g, manual={**every(g, "CPU"), "conv2": "FPGA"})
    assert layout(g) == [("CPU", ("conv", "relu", "erf")), ("FPGA", ("conv2",)), ("CPU", ("add",))]


def test_fused_nodes_are_placed_whole():
    from passes.fuse_ops import make_fused

    g = net()
    make_fused(g, [g.node("conv2"), g.node("add")])
    make_fused(g, [g.node("conv"), g.node("relu")])
    g = partitioned(g)
    assert [(s.device, s.nodes) for s in segments(g)] == [("FPGA", ("fused_relu",)), ("CPU", ("erf",)),
                                                          ("FPGA", ("fused_add",))]


# ---------------------------------------------------------------- islands

def tiny_island():
    """erf -> relu (FPGA, tiny) -> erf: the transfers cost more than the FPGA saves."""
    b = GraphBuilder("tiny")
    y = b.LogSoftmax(b.input("x", SHAPE), name="e1")
    return b.build(b.LogSoftmax(b.Relu(y, name="r"), name="e2"))


def test_tiny_islands_move_to_the_cpu_with_a_reason():
    g = partitioned(tiny_island(), **{"partition.demote_islands": True})
    assert layout(g) == [("CPU", ("e1", "r", "e2"))]
    reason = g.nodes[0].attrs["body"].node("r").annotations[REASON]
    assert reason.startswith("FPGA island of 1 node(s) between CPU segments moved to the CPU: its transfers take ")


def test_an_islands_reason_counts_the_onnx_nodes_inside_its_fused_groups():
    from passes.fuse_ops import make_fused

    b = GraphBuilder("tiny")
    y = b.Relu(b.Abs(b.LogSoftmax(b.input("x", SHAPE), name="e1"), name="a"), name="r")
    g = b.build(b.LogSoftmax(y, name="e2"))
    make_fused(g, [g.node("a"), g.node("r")])
    g = partitioned(g, **{"partition.demote_islands": True})
    reason = g.nodes[0].attrs["body"].node("fused_r").attrs["body"].node("a").annotations[REASON]
    assert reason.startswith("FPGA island of 2 node(s) between CPU segments")


def test_islands_stay_when_the_option_is_off():
    g = partitioned(tiny_island())
    assert layout(g) == [("CPU", ("e1",)), ("FPGA", ("r",)), ("CPU", ("e2",))]


def test_islands_that_pay_for_their_transfers_stay():
    b = GraphBuilder("big")
    x = b.input("x", [1, 32, 32, 32])
    y = b.Conv(b.LogSoftmax(x, name="e1"), b.const(conv_weights(32)), pads=[1, 1, 1, 1], name="conv")
    g = partitioned(b.build(b.LogSoftmax(y, name="e2")), **{"partition.demote_islands": True})
    assert layout(g) == [("CPU", ("e1",)), ("FPGA", ("conv",)), ("CPU", ("e2",))]


def test_manual_overrides_stay_on_their_island():
    """With CPU first in the fallback, putting r on the FPGA is an override."""
    g = tiny_island()
    g = partitioned(g, manual=every(g, "CPU") | {"r": "FPGA"},
                    **{"partition.demote_islands": True, "partition.fallback": "CPU,FPGA"})
    assert layout(g) == [("CPU", ("e1",)), ("FPGA", ("r",)), ("CPU", ("e2",))]
    assert g.nodes[1].attrs["body"].node("r").annotations[MANUAL]


def test_manual_affinities_the_policy_agrees_with_may_move():
    g = tiny_island()
    g = partitioned(g, manual=every(g, "CPU") | {"r": "FPGA"}, **{"partition.demote_islands": True})
    assert layout(g) == [("CPU", ("e1", "r", "e2"))]


def test_a_segment_next_to_the_graph_boundary_only_is_no_island():
    b = GraphBuilder()
    g = partitioned(b.build(b.Relu(b.input("x", [1, 2]), name="r")), **{"partition.demote_islands": True})
    assert layout(g) == [("FPGA", ("r",))]


# ---------------------------------------------------------------- property: random DAGs

OPS = ("Relu", "Sigmoid", "Add", "Conv", "Erf", "LogSoftmax", "TopK")


@st.composite
def dags(draw):
    """A random DAG over [1,4,5,5] tensors, every sink an output; sometimes
    with random manual affinities."""
    b = GraphBuilder("random")
    values = [b.input("x", SHAPE)]
    weight = b.const(conv_weights(), "w")
    k = b.const(np.array([4], np.int64), "k")
    for i in range(draw(st.integers(1, 14))):
        op = draw(st.sampled_from(OPS))
        a, c = (values[draw(st.integers(0, len(values) - 1))] for _ in range(2))
        name = f"{op.lower()}{i}"
        if op == "Add":
            values.append(b.Add(a, c, name=name))
        elif op == "Conv":
            values.append(b.Conv(a, weight, pads=[1, 1, 1, 1], name=name))
        elif op == "LogSoftmax":
            values.append(b.LogSoftmax(a, axis=1, name=name))
        elif op == "TopK":
            values.append(b.TopK(a, k, axis=1, name=name)[0])
        else:
            values.append(b.op(op, a, name=name))
    graph = b.build(*[v for v in values[1:] if not v.uses])
    if draw(st.booleans()):
        for node in graph.nodes:
            devices = [t.name for t in (accelerator(), cpu()) if t.supports(node)]
            node.affinity = draw(st.sampled_from(devices))
    return graph


def segment_graph(result):
    """networkx view of the segment DAG (segment index -> segment index)."""
    producer = {id(v): i for i, n in enumerate(result.nodes) for v in n.outputs}
    view = nx.DiGraph()
    view.add_nodes_from(range(len(result.nodes)))
    view.add_edges_from((producer[id(v)], i) for i, n in enumerate(result.nodes) for v in n.inputs
                        if id(v) in producer)
    return view


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=dags(), demote=st.booleans())
def test_random_dags_partition_without_cycles_and_keep_their_outputs(graph, demote):
    names = [n.name for n in graph.nodes]
    result = partitioned(graph, **{"partition.demote_islands": demote})
    infos = segments(result)
    assert sorted(name for s in infos for name in s.nodes) == sorted(names)
    for info, node in zip(infos, result.nodes):
        assert {m.affinity for m in node.attrs["body"].nodes} == {info.device}
    view = segment_graph(result)
    assert nx.is_directed_acyclic_graph(view)
    assert all(s < t for s, t in view.edges)  # segments come in a topological order
    for s, t in list(view.edges):  # maximal: a same-device edge left unmerged has another path
        if infos[s].device == infos[t].device:
            view.remove_edge(s, t)
            assert nx.has_path(view, s, t)
            view.add_edge(s, t)


@st.composite
def placed_structures(draw):
    """A random DAG of Relu/Add nodes, each placed at random by hand, read
    mostly from recent values (deep graphs with many crossings)."""
    b = GraphBuilder("structure")
    values = [b.input("x", [1, 2])]
    devices = {}
    for i in range(draw(st.integers(2, 30))):
        a, c = (values[draw(st.integers(max(0, len(values) - 6), len(values) - 1))] for _ in range(2))
        values.append(b.Add(a, c, name=f"n{i}") if draw(st.booleans()) else b.Relu(a, name=f"n{i}"))
        devices[f"n{i}"] = draw(st.sampled_from(["FPGA", "CPU"]))
    graph = b.build(*[v for v in values[1:] if not v.uses])
    for node in graph.nodes:
        node.affinity = devices[node.name]
    return graph


def planned_view(graph, infos):
    """networkx view of the planned segments, from the nodes' own edges."""
    home = {name: i for i, info in enumerate(infos) for name in info.nodes}
    view = nx.DiGraph()
    view.add_nodes_from(range(len(infos)))
    view.add_edges_from((home[v.producer.name], home[n.name]) for n in graph.nodes for v in n.inputs
                        if v.producer is not None and home[v.producer.name] != home[n.name])
    return view


@settings(max_examples=300, deadline=None)
@given(graph=placed_structures())
def test_planned_segments_are_acyclic_and_maximal(graph):
    infos = segments(graph)
    assert sorted(n for s in infos for n in s.nodes) == sorted(n.name for n in graph.nodes)
    assert all(graph.node(n).affinity == s.device for s in infos for n in s.nodes)
    view = planned_view(graph, infos)
    assert all(s < t for s, t in view.edges)
    for s, t in list(view.edges):
        if infos[s].device == infos[t].device:
            view.remove_edge(s, t)
            assert nx.has_path(view, s, t)
            view.add_edge(s, t)
