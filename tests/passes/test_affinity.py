"""assign_affinity: the HETERO fallback policy, per-node reasons, manual affinities."""
import numpy as np
import pytest

from ir import GraphBuilder
from passes.affinity import AUTO_LINEAR_RULE, MANUAL, REASON, RULE, AffinityError, assign_affinity, parse_fallback
from passes.infra import PassContext
from runtime.hardware import HardwareConfig

rng = np.random.default_rng(0)


def net():
    """conv -> relu -> erf -> conv2, and a gemm head (its result for the host: kept in float)."""
    b = GraphBuilder("net")
    x = b.input("x", [1, 4, 8, 8])
    w = b.const(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "w")
    y = b.Relu(b.Conv(x, w, pads=[1, 1, 1, 1], name="conv"), name="relu")
    y = b.Conv(b.LogSoftmax(y, name="erf"), w, pads=[1, 1, 1, 1], name="conv2")
    flat = b.Flatten(y, name="flat")
    return b.build(b.Gemm(flat, b.const(rng.standard_normal((256, 10)).astype(np.float32)), name="gemm"))


def placement(graph):
    return {n.name: n.affinity for n in graph.nodes}


def run(graph, **options):
    with PassContext(options=options):
        return assign_affinity(graph)


def test_first_device_that_supports_each_node():
    g = run(net())
    assert placement(g) == {"conv": "FPGA", "relu": "FPGA", "erf": "CPU", "conv2": "FPGA", "flat": "FPGA",
                            "gemm": "CPU"}
    assert g.node("erf").annotations[REASON] == "op LogSoftmax has no accelerator implementation"
    assert "writes its result for the host only" in g.node("gemm").annotations[REASON]
    assert REASON not in g.node("conv").annotations and MANUAL not in g.node("conv").annotations


def test_options_change_the_placement():
    g = run(net(), **{"target.hwlinear": True})
    assert g.node("gemm").affinity == "FPGA" and REASON not in g.node("gemm").annotations
    g = run(net(), **{"target.hwlinear": False})
    assert g.node("gemm").affinity == "CPU" and "target.hwlinear=False" in g.node("gemm").annotations[REASON]
    g = run(net(), **{"partition.fallback": "FPGA,CPU"})
    assert placement(g) == placement(run(net()))
    g = run(net(), **{"partition.fallback": "HETERO:CPU,FPGA"})
    assert set(placement(g).values()) == {"CPU"}
    assert not any(n.annotations for n in g.nodes)


def test_no_device_supports_a_node():
    with pytest.raises(AffinityError, match=r"LogSoftmax node 'erf' can run on none of \['FPGA'\]: FPGA: op LogSoftmax "
                                            r"has no accelerator implementation"):
        run(net(), **{"partition.fallback": "FPGA"})


@pytest.mark.parametrize("text, message", [
    ("FPGA,,CPU", "empty device entry"),
    ("HETERO:", "empty device entry"),
    ("CPU,CPU", "lists a device twice"),
    ("FPGA,GPU", r"unknown devices \['GPU'\]; the devices are \['FPGA', 'CPU'\]"),
])
def test_bad_fallback_strings(text, message):
    with pytest.raises(AffinityError, match=message):
        parse_fallback(text)


def test_fallback_parsing():
    assert parse_fallback("HETERO:FPGA,CPU") == parse_fallback(" FPGA, CPU ") == ["FPGA", "CPU"]


def test_any_manual_affinity_turns_the_policy_off_and_every_node_needs_one():
    g = net()
    g.node("conv").affinity = "CPU"
    with pytest.raises(AffinityError, match=r"every node needs one; 5 have none: 'relu', 'erf', 'conv2', 'flat', "
                                            r"'gemm'"):
        run(g)


def test_manual_affinities_are_kept_and_checked():
    g = net()
    for node in g.nodes:
        node.affinity = "CPU"
    run(g)
    assert set(placement(g).values()) == {"CPU"}
    conv, erf = g.node("conv"), g.node("erf")
    assert conv.annotations == {MANUAL: True, REASON: "placed on CPU by hand"}
    assert erf.annotations == {REASON: "op LogSoftmax has no accelerator implementation",  # the policy agrees
                               RULE: "passes/target.py: no rule for LogSoftmax"}


def test_manual_affinity_on_a_device_that_cannot_run_the_node():
    g = run(net())
    g.node("erf").affinity = "FPGA"
    with pytest.raises(AffinityError, match="LogSoftmax node 'erf' has affinity 'FPGA', which cannot run it: "
                                            "op LogSoftmax has no accelerator implementation"):
        run(g)
    g.node("erf").affinity = "GPU"
    with pytest.raises(AffinityError, match=r"LogSoftmax node 'erf' has affinity 'GPU'; the devices are"):
        run(g)


def test_rerunning_on_its_own_output_changes_nothing():
    g = run(net())
    before = {n.name: (n.affinity, dict(n.annotations)) for n in g.nodes}
    run(g)
    assert {n.name: (n.affinity, dict(n.annotations)) for n in g.nodes} == before


def test_stale_reasons_are_replaced():
    g = run(net())
    for node in g.nodes:
        node.affinity = None
    run(g, **{"target.hwlinear": False})
    assert "target.hwlinear=False" in g.node("gemm").annotations[REASON]
    for node in g.nodes:
        node.affinity = None
    run(g, **{"target.hwlinear": True})
    assert REASON not in g.node("gemm").annotations


def head(softmax_first: bool):
    """[LogSoftmax ->] Gemm -> Relu: a linear layer after a CPU node, or first, before a device node."""
    b = GraphBuilder("head")
    x = b.input("x", [1, 64])
    if softmax_first:
        x = b.LogSoftmax(x, name="softmax")
    y = b.Gemm(x, b.const(rng.standard_normal((64, 32)).astype(np.float32)), name="gemm")
    return b.build(y if softmax_first else b.Relu(y, name="relu"))


def test_unset_hwlinear_keeps_a_linear_layer_whose_result_goes_to_the_host_in_float():
    g = run(head(softmax_first=True))
    assert g.node("gemm").affinity == "CPU"
    assert "writes its result for the host only" in g.node("gemm").annotations[REASON]
    assert g.node("gemm").annotations[RULE] == AUTO_LINEAR_RULE
    assert run(head(softmax_first=True), **{"target.hwlinear": True}).node("gemm").affinity == "FPGA"


def test_unset_hwlinear_places_a_linear_layer_by_the_placement_costs():
    """A consumer on the accelerator is a neighbour; the costs decide: the default card is faster than the
    CPU with the input's transfer, a card clocked a thousand times slower is not."""
    assert run(head(softmax_first=False)).node("gemm").affinity == "FPGA"
    slow = HardwareConfig(clock_hz=250_000, dram_bandwidth=16e6)
    g = run(head(softmax_first=False), **{"target.hardware": slow})
    assert g.node("gemm").affinity == "CPU" and g.node("relu").affinity == "FPGA"
    assert "faster on the CPU" in g.node("gemm").annotations[REASON]
    assert run(head(softmax_first=False), **{"target.hardware": slow, "target.hwlinear": True}
               ).node("gemm").affinity == "FPGA"


def classifier(softmax_output: bool):
    """conv -> flatten -> gemm (logits) -> Softmax, the probabilities a model output or read by a Relu."""
    b = GraphBuilder("classifier")
    x = b.input("x", [1, 4, 8, 8])
    y = b.Conv(x, b.const(rng.standard_normal((4, 4, 3, 3)).astype(np.float32)), pads=[1, 1, 1, 1], name="conv")
    y = b.Gemm(b.Flatten(y, name="flat"), b.const(rng.standard_normal((256, 10)).astype(np.float32)), name="gemm")
    y = b.Softmax(y, axis=-1, name="softmax")
    return b.build(y if softmax_output else b.Relu(y, name="relu"))


def test_a_classifier_and_the_softmax_of_a_model_output_stay_in_float():
    """On the accelerator the probabilities would leave on an int8 grid and the logits before them too: a
    classifier's head stays in float; a Softmax inside the network (attention) is a device neighbour; with no
    CPU in the fallback the Softmax goes where it can."""
    g = run(classifier(softmax_output=True))
    assert g.node("gemm").affinity == "CPU" and g.node("conv").affinity == "FPGA"
    assert "writes its result for the host only" in g.node("gemm").annotations[REASON]
    assert g.node("softmax").affinity == "CPU" and "int8 grid" in g.node("softmax").annotations[REASON]
    assert g.node("softmax").annotations[RULE] == "passes/affinity.py:output_softmax_refusal"
    assert run(classifier(softmax_output=True), **{"partition.fallback": "FPGA"}).node("softmax").affinity == "FPGA"


def test_a_softmax_reaching_the_output_through_views_and_transposes_stays_in_float():
    """An opset-11 Softmax over axis 1 imports as Reshape -> Softmax -> Reshape; MTCNN's as Transposes."""
    b = GraphBuilder("views")
    x = b.input("x", [1, 8, 4, 4])
    y = b.Conv(x, b.const(rng.standard_normal((8, 8, 1, 1)).astype(np.float32)), name="conv")
    y = b.Softmax(b.Transpose(y, perm=[0, 2, 3, 1], name="to_last"), axis=-1, name="softmax")
    y = b.Reshape(b.Transpose(y, perm=[0, 3, 1, 2], name="back"), b.const(np.array([1, -1], np.int64)), name="flat")
    g = run(b.build(y))
    assert g.node("softmax").affinity == "CPU" and g.node("conv").affinity == "FPGA"
    b = GraphBuilder("used")  # a Softmax read by a computing node is the network's, not the output's
    x = b.input("x", [1, 8, 4, 4])
    y = b.Softmax(b.Conv(x, b.const(rng.standard_normal((8, 8, 1, 1)).astype(np.float32)), name="conv"), axis=-1,
                  name="softmax")
    g = run(b.build(b.Relu(b.Reshape(y, b.const(np.array([1, -1], np.int64))), name="relu")))
    assert g.node("softmax").affinity == "FPGA"
    g = run(classifier(softmax_output=False))
    assert g.node("gemm").affinity == "FPGA" and g.node("softmax").affinity == "FPGA"
