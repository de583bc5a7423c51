"""Split as Slices: on an accelerator segment every unit has one output
(the quantized tensor it stores), so a Split of n outputs becomes one
static Slice of its input per used output, each keeping its output's name
(the tensor names that grids, encodings and segment edges key on)."""
from __future__ import annotations

import numpy as np

from ir.graph import HELPER_SEPARATOR, Graph, Node


def split_to_slices(body: Graph) -> None:
    """Replace every Split of ``body`` by Slices (in place)."""
    for node in [n for n in body.nodes if n.op == "Split"]:
        _replace(body, node)


def _replace(body: Graph, split: Node) -> None:
    x = split.inputs[0]
    axis = int(split.attrs["axis"]) % x.type.rank
    index = body.nodes.index(split)
    pieces, start = [], 0
    for i, old in enumerate(split.outputs):
        stop = start + old.type.shape[axis]
        if old.uses or old in body.outputs:
            params = [body.add_constant(np.array([v], np.int64), f"{split.name}_slice{i}_{what}")
                      for what, v in (("starts", start), ("ends", stop), ("axes", axis))]
            piece = body.add_node("Slice", [x, *params], {}, name=f"{split.name}{HELPER_SEPARATOR}Slice#{i}",
                                  index=index + len(pieces), output_names=[f"{old.name}__slice"],
                                  output_types=[old.type])
            piece.affinity, piece.annotations = split.affinity, dict(split.annotations)
            piece.outputs[0].quant = old.quant
            body.replace_all_uses(old, piece.outputs[0])
            pieces.append((piece, old.name))
        start = stop
    body.remove_node(split)
    for piece, name in pieces:
        body.rename_value(piece.outputs[0], name)
