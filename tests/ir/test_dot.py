"""DOT export: well-formed text, every node drawn, affinity colours, segment clusters, escaping."""
import re

import numpy as np

from ir import GraphBuilder
from ir.dot import FILL, UNPLACED_FILL, to_dot
from passes.fuse_ops import make_fused
from passes.infra import PassContext
from passes.partition import partition
from runtime.dot import quote
from tests.helpers import dot


def structure(text):
    """The text outside quoted strings; fails on an unterminated string."""
    outside, i = [], 0
    while i < len(text):
        if text[i] == '"':
            i += 1
            while text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        else:
            outside.append(text[i])
        i += 1
    return "".join(outside)


def well_formed(text):
    bare = structure(text)
    depth = 0
    for char in bare:
        depth += {"{": 1, "}": -1}.get(char, 0)
        assert depth >= 0
    assert depth == 0 and bare.lstrip().startswith("digraph")
    return bare


def labels(text):
    return re.findall(r'label="((?:[^"\\]|\\.)*)"', text)


def net():
    b = GraphBuilder("net")
    x = b.input("x", [1, 4, 8, 8])
    w = b.const(np.ones((4, 4, 3, 3), np.float32), "w")
    y = b.Relu(b.Conv(x, w, pads=[1, 1, 1, 1], name="conv"), name="relu")
    return b.build(b.Add(b.LogSoftmax(y, name="erf"), y, name="add"))


def test_every_node_input_and_output_is_drawn_with_typed_edges():
    text = to_dot(net())
    well_formed(text)
    assert text.startswith('digraph "net" {')
    names = labels(text)
    for name in ("conv\\nConv", "relu\\nRelu", "erf\\nLogSoftmax", "add\\nAdd", "input x", "output add"):
        assert name in names
    assert text.count("->") == 6  # x->conv, conv->relu, relu->erf, relu->add, erf->add, add->output
    assert '[label="f32[1,4,8,8]"]' in text
    assert "w" not in [n.split("\\n")[0] for n in names]  # weights are not drawn
    assert f'fillcolor="{UNPLACED_FILL}"' in text


def test_partitioned_graph_has_one_cluster_per_segment():
    with PassContext(options={"partition.demote_islands": False}):
        g = partition(net())
    text = to_dot(g)
    well_formed(text)
    assert text.count("subgraph cluster_") == len(g.nodes) == 3
    assert [n for n in labels(text) if "@" in n] == ["segment0 @ FPGA", "segment1 @ CPU", "segment2 @ FPGA"]
    assert (f'label="erf\\nLogSoftmax", fillcolor="{FILL["CPU"]}", tooltip="cpu_reason: op LogSoftmax has no '
            'accelerator') in text
    assert text.count(f'fillcolor="{FILL["FPGA"]}"') == 3
    assert text.count("->") == 6  # edges cross the clusters, from body node to body node


def test_fused_nodes_name_their_members():
    g = net()
    make_fused(g, [g.node("conv"), g.node("relu")])
    text = to_dot(g)
    well_formed(text)
    assert "fused_relu\\nFused: Conv+Relu" in labels(text)


def test_names_are_escaped():
    b = GraphBuilder('my "net" {1}')
    x = b.input('in"put\\', [2])
    b.build(b.Relu(x, name='r{e}"lu\nnode'))
    text = to_dot(b.graph)
    bare = well_formed(text)
    assert "{e}" not in bare
    assert 'label="r{e}\\"lu\\nnode\\nRelu"' in text
    assert quote('a\\b"c\nd') == '"a\\\\b\\"c\\nd"'


def test_any_name_is_shown_and_cannot_break_the_file():
    """Quotes, backslashes (one at the end of a name too) and line breaks
    are escaped; NUL, carriage returns, tabs and lone surrogates are shown as
    Python escapes, so the text stays DOT and encodes as UTF-8."""
    names = {'q"uo"te': 'q"uo"te', "back\\slash\\": "back\\slash\\", "two\nlines": "two\nlines",
             "nul\x00byte": "nul\\x00byte", "cr\rtab\t": "cr\\rtab\\t", "lone\udc80": "lone\\udc80",
             "ünï": "ünï"}
    b = GraphBuilder('graph\x00"name"\\')
    y = b.input("x", [2])
    for name in names:
        y = b.Relu(y, name=name)
    text = to_dot(b.build(y))
    toks = dot.tokens(text)
    assert dot.shown(toks[1]) == 'graph\\x00"name"\\'
    assert [label for label in dot.labels(toks) if label.endswith("\nRelu")] == [f"{v}\nRelu" for v in names.values()]
    assert text.encode("utf-8").decode("utf-8") == text
