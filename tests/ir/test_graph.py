"""The IR core: building, editing, printing and verifying graphs."""
import numpy as np
import pytest

from ir import Graph, GraphBuilder, IRError, ShapeError, TensorType, VerificationError, format_graph, verify
from ir.registry import Pattern, get_op, registered_ops


def tiny():
    b = GraphBuilder("tiny")
    x = b.input("x", [2, 4])
    y = b.Add(x, b.const(np.arange(4, dtype=np.float32), name="bias"), name="add")
    z = b.Relu(y, name="relu")
    return b.build(z)


def test_builder_infers_types_and_keeps_use_lists():
    g = tiny()
    add, relu = g.nodes
    assert add.outputs[0].type == TensorType([2, 4], np.float32)
    assert add.outputs[0].users == [relu]
    assert g.values["bias"].uses == [(add, 1)]
    verify(g)


def test_printer_one_line_per_node_with_types():
    text = format_graph(tiny())
    assert "graph tiny(%x: f32[2,4]) {" in text
    assert "%bias = const f32[4] = [0, 1, 2, 3]" in text
    assert "%add = Add(%x, %bias) : f32[2,4]" in text
    assert "%relu = Relu(%add) : f32[2,4]" in text
    assert text.rstrip().endswith("return %relu\n}")


def test_printer_shows_affinity_and_annotations():
    g = tiny()
    g.nodes[1].affinity = "accel"
    g.nodes[1].annotations["why"] = "supported"
    assert "%relu = Relu(%add) : f32[2,4] @accel [why='supported']" in format_graph(g)


def test_broadcast_rule_and_data_dependent_dims():
    b = GraphBuilder()
    x = b.input("x", [None, 1, 3])
    y = b.Add(x, b.input("y", [4, 1]))
    assert y.type.shape == (None, 4, 3)
    with pytest.raises(ShapeError, match="do not broadcast"):
        b.Add(b.input("p", [2, 3]), b.input("q", [4, 3]))


def test_replace_all_uses_and_remove_node():
    g = tiny()
    add, relu = g.nodes
    g.replace_all_uses(relu.outputs[0], add.outputs[0])
    g.remove_node(relu)
    assert g.outputs == [add.outputs[0]]
    assert add.outputs[0].uses == []
    verify(g)
    with pytest.raises(IRError, match="still used"):
        g.remove_node(add)


def test_sort_restores_topological_order():
    g = tiny()
    g.nodes.reverse()
    assert any("used before it is defined" in p for p in _problems(g))
    g.sort()
    verify(g)


def test_verifier_reports_every_broken_invariant():
    g = tiny()
    add, relu = g.nodes
    relu.outputs[0].type = TensorType([2, 5], np.float32)
    add.attrs["bogus"] = 1
    g.nodes.append(g.nodes[0])
    problems = _problems(g)
    assert any("has type f32[2,5], its rule gives f32[2,4]" in p for p in problems)
    assert any("unknown ['bogus']" in p for p in problems)
    assert any("node name 'add' is used twice" in p for p in problems)


def test_verifier_catches_unregistered_op_and_stale_uses():
    g = tiny()
    g.nodes[1].op = "NoSuchOp"
    g.values["bias"].uses.clear()
    problems = _problems(g)
    assert any("op 'NoSuchOp' is not registered" in p for p in problems)
    assert any("%bias: use list is stale" in p for p in problems)


def test_values_must_belong_to_the_graph():
    other = Graph("other")
    stranger = other.add_input("s", TensorType([1]))
    b = GraphBuilder()
    with pytest.raises(IRError, match="does not belong"):
        b.Relu(stranger)


def test_builder_rejects_unknown_or_missing_attributes():
    b = GraphBuilder()
    with pytest.raises(ShapeError, match="unknown attribute"):
        b.Relu(b.input("x", [1]), alpha=2.0)


def test_registry_entries_declare_pattern_and_type_rule():
    assert len(registered_ops()) > 0
    for name in registered_ops():
        op = get_op(name)
        assert isinstance(op.pattern, Pattern) and callable(op.infer), name


def _problems(graph):
    with pytest.raises(VerificationError) as info:
        verify(graph)
    return info.value.problems


def test_builder_derives_defaults_from_input_types():
    b = GraphBuilder()
    x = b.input("x", [1, 2, 9, 9])
    y = b.Conv(x, b.const(np.ones((4, 2, 3, 3), np.float32)), strides=[2, 2], name="c")
    node = b.graph.node("c")
    assert node.attrs["kernel_shape"] == [3, 3] and node.attrs["pads"] == [0, 0, 0, 0]
    assert node.attrs["dilations"] == [1, 1] and y.type.shape == (1, 4, 4, 4)
    with pytest.raises(ShapeError, match="missing required attribute 'kernel_shape'"):
        b.MaxPool(x)
