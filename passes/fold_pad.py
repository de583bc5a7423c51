"""FoldPad: a zero-valued constant Pad on the spatial axes before a Conv
becomes part of the Conv's own pads."""
from __future__ import annotations

import numpy as np

from ir.graph import Graph, Node
from passes.infra import PassContext, graph_pass
from passes.rewrite import const_input, single_consumer


@graph_pass(opt_level=1)
def fold_pad(graph: Graph, ctx: PassContext) -> Graph:
    """Merge Pad (mode constant, value 0, non-negative, spatial axes only)
    into the Conv that is its only user."""
    for pad in list(graph.nodes):
        if pad.op != "Pad" or pad not in graph.nodes:
            continue
        conv = single_consumer(graph, pad.outputs[0])
        spatial = _spatial_pads(pad)
        if conv is None or conv.op != "Conv" or conv.inputs[0] is not pad.outputs[0] or spatial is None:
            continue
        begins, ends = spatial
        rank = len(begins)
        old = conv.attrs["pads"]
        conv.attrs["pads"] = [old[i] + begins[i] for i in range(rank)] + [old[rank + i] + ends[i] for i in range(rank)]
        conv.set_input(0, pad.inputs[0])
        graph.remove_node(pad)  # the Conv was its only user
    return graph


def _spatial_pads(pad: Node) -> tuple[list[int], list[int]] | None:
    """(begins, ends) on the spatial axes, when the Pad pads nothing else,
    pads with zeros, in constant mode, by non-negative amounts."""
    if pad.attrs["mode"] != "constant":
        return None
    pads = const_input(pad, 1)
    value = const_input(pad, 2) if len(pad.inputs) > 2 and pad.inputs[2] is not None else np.zeros(())
    axes_given = len(pad.inputs) > 3 and pad.inputs[3] is not None
    if pads is None or value is None or axes_given or np.any(value != 0):
        return None
    rank = pad.inputs[0].type.rank
    pads = [int(p) for p in pads]
    if len(pads) != 2 * rank or min(pads) < 0 or any(pads[a] or pads[rank + a] for a in (0, 1)):
        return None
    return pads[2:rank], pads[rank + 2:]
