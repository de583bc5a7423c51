"""Per-channel affines through channel concatenations, before quantization.

A Concat stores one per-tensor grid for all its channels, although its
pieces come from different producers with different ranges. A per-channel
affine after it (a BatchNorm's Mul and Add, perhaps a Relu: DenseNet's
pre-activation layers) then scales each channel by about 1 / its standard
deviation, so a piece whose range is small next to the others' has few
codes and its rounding noise is amplified: such a layer alone adds error
at about 10 dB. Since

    affine(Concat(x_1, ..., x_n)) = Concat(affine_1(x_1), ..., affine_n(x_n))

(each affine_i the affine's channels of piece i), the affine is moved onto
the pieces: each is computed from its producer's own grid, and the Concat
then joins tensors the affine has already brought to comparable ranges.
Nested channel concatenations are opened (their pieces are the leaves), and
a Concat nothing reads any more is removed. The result computes the same
function in float; the output keeps the name of the affine's output.
"""
from __future__ import annotations

import numpy as np

from ir.graph import HELPER_SEPARATOR, Graph, Node, Value
from passes.quant.units import CLAMP_ACTIVATIONS, channel_constant, is_channel_affine


def push_affines_through_concat(body: Graph) -> None:
    """Rewrite every per-channel affine chain that reads a channel Concat of
    ``body`` (in place)."""
    for node in list(body.nodes):
        if node.op != "Concat" or node not in body.nodes or not _is_channel_concat(node):
            continue
        for user, _ in list(node.outputs[0].uses):
            chain = _affine_chain(body, user, node.affinity)
            if chain:
                _push(body, node, chain)
        _remove_if_dead(body, node)


def _is_channel_concat(node: Node) -> bool:
    rank = node.outputs[0].type.rank
    return rank == 4 and node.attrs["axis"] in (1, 1 - rank) and not any(v.is_constant for v in node.inputs)


def _affine_chain(body: Graph, first: Node, affinity) -> list[Node]:
    """``first`` and the per-channel affines after it, then an optional
    Relu or constant Clip; each inner output read by the next member only."""
    if first.affinity != affinity or not is_channel_affine(first):
        return []
    chain = [first]
    while True:
        value = chain[-1].outputs[0]
        if value in body.outputs or len(value.uses) != 1 or value.uses[0][0].affinity != affinity:
            return chain
        user = value.uses[0][0]
        if is_channel_affine(user):
            chain.append(user)
            continue
        if user.op in CLAMP_ACTIVATIONS and all(v is None or v.is_constant for v in user.inputs[1:]):
            chain.append(user)
        return chain


def _pieces(concat: Node) -> list[Value]:
    """The concat's inputs, nested channel concatenations opened."""
    pieces = []
    for value in concat.inputs:
        producer = value.producer
        if producer is not None and producer.op == "Concat" and producer.affinity == concat.affinity \
                and _is_channel_concat(producer):
            pieces += _pieces(producer)
        else:
            pieces.append(value)
    return pieces


def _push(body: Graph, concat: Node, chain: list[Node]) -> None:
    index = body.nodes.index(chain[-1])
    outputs, start = [], 0
    for number, piece in enumerate(_pieces(concat)):
        channels = slice(start, start + piece.type.shape[1])
        start = channels.stop
        value = piece
        for member in chain:
            copy = _copy(body, member, value, channels, number, index)
            index += 1
            value = copy.outputs[0]
        outputs.append(value)
    last = chain[-1].outputs[0]
    joined = body.add_node("Concat", outputs, dict(concat.attrs), name=f"{chain[-1].name}{HELPER_SEPARATOR}concat",
                           index=index)
    joined.affinity, joined.annotations = chain[-1].affinity, dict(chain[-1].annotations)
    joined.outputs[0].quant = last.quant
    body.replace_all_uses(last, joined.outputs[0])
    for member in reversed(chain):
        body.remove_node(member)
    body.rename_value(joined.outputs[0], last.name)


def _copy(body: Graph, member: Node, x: Value, channels: slice, number: int, index: int) -> Node:
    """``member`` applied to piece ``x`` (its constant cut to the piece's channels)."""
    name = f"{member.name}{HELPER_SEPARATOR}{number}"
    if member.op in CLAMP_ACTIVATIONS:
        inputs = [x, *member.inputs[1:]]
    else:
        vector = channel_constant(member)[channels].astype(np.float32).reshape(1, -1, 1, 1)
        const = body.add_constant(vector, f"{name}_c")
        inputs = [x, const] if not member.inputs[0].is_constant or member.op == "Sub" else [const, x]
    copy = body.add_node(member.op, inputs, dict(member.attrs), name=name, index=index)
    copy.affinity, copy.annotations = member.affinity, dict(member.annotations)
    return copy


def _remove_if_dead(body: Graph, concat: Node) -> None:
    """Remove ``concat`` if nothing reads it, then its concat inputs likewise."""
    value = concat.outputs[0]
    if concat not in body.nodes or value.uses or value in body.outputs:
        return
    inputs = [v.producer for v in concat.inputs if v.producer is not None and v.producer.op == "Concat"]
    body.remove_node(concat)
    for producer in inputs:
        _remove_if_dead(body, producer)
