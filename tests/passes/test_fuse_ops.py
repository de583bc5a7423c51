"""FuseOps: the groups it forms, their caps, and unchanged numerics."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ir import GraphBuilder, verify
from ir.graph import walk
from passes.fuse_ops import fuse_ops
from tests.helpers.graphs import apply, assert_same_numerics, ops

RNG = np.random.default_rng(1)


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def conv(b, x, cin, cout, name=None):
    return b.Conv(x, b.const(randn(cout, cin, 3, 3)), pads=[1, 1, 1, 1], name=name)


def groups(graph):
    """(anchor, member ops) of each Fused node, and the ops left unfused."""
    fused = [(n.attrs["anchor"], [m.op for m in n.attrs["body"].nodes]) for n in graph.nodes if n.op == "Fused"]
    return fused, [n.op for n in graph.nodes if n.op != "Fused"]


def test_conv_absorbs_bias_and_activation():
    b = GraphBuilder()
    x = b.input("x", [1, 3, 8, 8])
    y = b.Relu(b.Add(conv(b, x, 3, 4, "conv"), b.const(randn(4, 1, 1))), name="out")
    g = assert_same_numerics(fuse_ops, b.build(y))
    assert groups(g) == ([("Conv", ["Conv", "Add", "Relu"])], [])
    assert g.outputs[0].name == "out" and g.nodes[0].attrs["body"].nodes[0].name == "conv"


def test_residual_block_keeps_one_anchor_per_group():
    b = GraphBuilder()
    x = b.input("x", [1, 4, 8, 8])
    branch = conv(b, b.Relu(conv(b, x, 4, 4)), 4, 4)
    shortcut = conv(b, x, 4, 4)
    g = assert_same_numerics(fuse_ops, b.build(b.Relu(b.Add(shortcut, branch))))
    fused, rest = groups(g)
    assert sorted(fused) == [("Conv", ["Conv", "Add", "Relu"]), ("Conv", ["Conv", "Relu"])]
    assert rest == ["Conv"]


def test_elementwise_chains_and_diamonds_fuse_opaque_ops_do_not():
    b = GraphBuilder()
    x = b.input("x", [2, 16])
    r = b.Relu(x)
    y = b.Softmax(b.Add(b.Exp(r), b.Neg(r)), axis=-1)
    g = assert_same_numerics(fuse_ops, b.build(b.Sigmoid(b.Mul(y, y))))
    fused, rest = groups(g)
    assert sorted(sorted(m) for _, m in fused) == [["Add", "Exp", "Neg", "Relu"], ["Mul", "Sigmoid"]]
    assert rest == ["Softmax"]


def test_anchor_output_used_twice_fuses_up_to_the_join():
    b = GraphBuilder()
    x = b.input("x", [1, 2, 6, 6])
    c = conv(b, x, 2, 3)
    g = assert_same_numerics(fuse_ops, b.build(b.Mul(b.Relu(c), b.Sigmoid(c))))
    assert groups(g) == ([("Conv", ["Conv", "Relu", "Sigmoid", "Mul"])], [])


def test_nothing_fuses_into_an_anchor_as_a_prologue():
    b = GraphBuilder()
    x = b.input("x", [1, 2, 6, 6])
    g = apply(fuse_ops, b.build(conv(b, b.Relu(x), 2, 3)))
    assert ops(g) == ["Relu", "Conv"]


def test_injective_ops_fuse_into_their_consumers():
    b = GraphBuilder()
    x = b.input("x", [2, 3, 4])
    t = b.Transpose(b.Reshape(x, b.const(np.array([2, 4, 3], np.int64))), perm=[0, 2, 1])
    g = assert_same_numerics(fuse_ops, b.build(b.Add(t, b.input("y", [2, 3, 4]))))
    assert groups(g) == ([("", ["Reshape", "Transpose", "Add"])], [])


def test_a_value_returned_mid_group_is_a_group_output():
    b = GraphBuilder()
    x = b.input("x", [1, 2, 5, 5])
    r = b.Relu(conv(b, x, 2, 2), name="mid")
    g = assert_same_numerics(fuse_ops, b.build(r, b.Exp(r, name="tail")))
    assert [v.name for v in g.outputs] == ["mid", "tail"]
    assert groups(g)[0] == [("Conv", ["Conv", "Relu"])]


def test_input_cap_splits_groups():
    b = GraphBuilder()
    y = b.input("x0", [4])
    for i in range(1, 6):
        y = b.Add(y, b.input(f"x{i}", [4]))
    g = assert_same_numerics(fuse_ops, b.build(y), **{"fuse.max_inputs": 3})
    for node in g.nodes:
        assert node.op != "Fused" or len(node.inputs) <= 3


def test_manual_affinities_never_mix():
    b = GraphBuilder()
    x = b.input("x", [4])
    a = b.Relu(x, name="a")
    g = b.build(b.Exp(a, name="e"))
    g.node("a").affinity, g.node("e").affinity = "FPGA", "CPU"
    assert ops(apply(fuse_ops, g)) == ["Relu", "Exp"]


UNARY = ["Relu", "Exp", "Neg", "Sigmoid", "Tanh"]
BINARY = ["Add", "Mul", "Sub"]


@st.composite
def random_dags(draw):
    """Random DAGs of elementwise, injective, opaque and anchor ops on [1, 4, 5, 5] tensors."""
    b = GraphBuilder("random")
    values = [b.input("x", [1, 4, 5, 5])]
    for _ in range(draw(st.integers(2, 14))):
        kind = draw(st.sampled_from(["unary", "binary", "conv", "softmax", "transpose"]))
        a = draw(st.sampled_from(values))
        if kind == "unary":
            values.append(b.op(draw(st.sampled_from(UNARY)), a))
        elif kind == "binary":
            values.append(b.op(draw(st.sampled_from(BINARY)), a, draw(st.sampled_from(values))))
        elif kind == "conv":
            values.append(conv(b, a, 4, 4))
        elif kind == "softmax":
            values.append(b.Softmax(a, axis=1))
        else:
            values.append(b.Transpose(b.Transpose(a, perm=[0, 1, 3, 2]), perm=[0, 1, 3, 2]))
    outputs = draw(st.lists(st.sampled_from(values[1:]), min_size=1, max_size=3, unique_by=id))
    return b.build(*outputs)


@settings(max_examples=60, deadline=None)
@given(random_dags())
def test_fusion_of_random_dags_is_acyclic_complete_and_exact(graph):
    names = sorted(n.name for n in graph.nodes)
    fused = assert_same_numerics(fuse_ops, graph)
    verify(fused)
    inner = sorted(n.name for g, n in walk(fused) if n.op != "Fused")
    assert inner == names
