"""assign_affinity: the HETERO fallback policy, per-node reasons, manual affinities."""
import numpy as np
import pytest

from ir import GraphBuilder
from passes.affinity import MANUAL, REASON, RULE, AffinityError, assign_affinity, parse_fallback
from passes.infra import PassContext

rng = np.random.default_rng(0)


def net():
    """conv -> relu -> erf -> conv2, and a gemm head (linear layers need hwlinear)."""
    b = GraphBuilder("net")
    x = b.input("x", [1, 4, 8, 8])
    w = b.const(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "w")
    y = b.Relu(b.Conv(x, w, pads=[1, 1, 1, 1], name="conv"), name="relu")
    y = b.Conv(b.Softmax(y, name="erf"), w, pads=[1, 1, 1, 1], name="conv2")
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
    assert g.node("erf").annotations[REASON] == "op Softmax has no accelerator implementation"
    assert "hwlinear" in g.node("gemm").annotations[REASON]
    assert REASON not in g.node("conv").annotations and MANUAL not in g.node("conv").annotations


def test_options_change_the_placement():
    g = run(net(), **{"target.hwlinear": True})
    assert g.node("gemm").affinity == "FPGA" and REASON not in g.node("gemm").annotations
    g = run(net(), **{"partition.fallback": "FPGA,CPU"})
    assert placement(g) == placement(run(net()))
    g = run(net(), **{"partition.fallback": "HETERO:CPU,FPGA"})
    assert set(placement(g).values()) == {"CPU"}
    assert not any(n.annotations for n in g.nodes)


def test_no_device_supports_a_node():
    with pytest.raises(AffinityError, match=r"Softmax node 'erf' can run on none of \['FPGA'\]: FPGA: op Softmax "
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
    assert erf.annotations == {REASON: "op Softmax has no accelerator implementation",  # the policy agrees
                               RULE: "passes/target.py: no rule for Softmax"}


def test_manual_affinity_on_a_device_that_cannot_run_the_node():
    g = run(net())
    g.node("erf").affinity = "FPGA"
    with pytest.raises(AffinityError, match="Softmax node 'erf' has affinity 'FPGA', which cannot run it: op Softmax "
                                            "has no accelerator implementation"):
        run(g)
    g.node("erf").affinity = "GPU"
    with pytest.raises(AffinityError, match=r"Softmax node 'erf' has affinity 'GPU'; the devices are"):
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
    run(g, **{"target.hwlinear": True})
    assert REASON not in g.node("gemm").annotations
