"""ExtractQDQ: a pre-quantized model's QuantizeLinear/DequantizeLinear pairs
(onnxruntime's QDQ format) become the quantization parameters of the tensors
they wrap, so the quantize pass honours them instead of calibrating.

    x -> QuantizeLinear(s, z) -> DequantizeLinear(s, z) -> users
      =>  x (quant = (s, z)) -> users

Weights stored as DequantizeLinear(integer constant) fold to float constants
by constant folding; re-quantizing them per channel gives back the same
integers. uint8 activation grids become the equivalent int8 ones (z - 128).
"""
from __future__ import annotations

import numpy as np

from ir.graph import Graph, Node
from ir.types import QuantParams
from passes.infra import PassContext, graph_pass
from passes.rewrite import bypass

_SHIFTED = {np.dtype(np.uint8): (np.dtype(np.int8), 128), np.dtype(np.uint16): (np.dtype(np.int16), 32768)}


@graph_pass(opt_level=0)
def extract_qdq(graph: Graph, ctx: PassContext) -> Graph:
    """Replace each per-tensor Q -> DQ pair by the grid it describes."""
    for dq in list(graph.nodes):
        if dq.op != "DequantizeLinear" or dq not in graph.nodes:
            continue
        q = dq.inputs[0].producer
        params = _pair_params(q, dq) if q is not None and q.op == "QuantizeLinear" else None
        if params is None:
            continue
        x = q.inputs[0]
        if x.quant is None:
            x.quant = params
        if bypass(graph, dq, x) and not q.outputs[0].uses and q.outputs[0] not in graph.outputs:
            graph.remove_node(q)
    return graph


def _pair_params(q: Node, dq: Node) -> QuantParams | None:
    """The grid of a matching per-tensor pair (same constant scale and zero point)."""
    grids = [_grid(n) for n in (q, dq)]
    if None in grids or grids[0] != grids[1]:
        return None
    scale, zero, dtype = grids[0]
    dtype, shift = _SHIFTED.get(dtype, (dtype, 0))
    return QuantParams(scale, zero - shift, dtype)


def _grid(node: Node) -> tuple[float, int, np.dtype] | None:
    scale = node.inputs[1].const
    zero = node.inputs[2].const if len(node.inputs) > 2 and node.inputs[2] is not None else None
    if scale is None or scale.size != 1 or (len(node.inputs) > 2 and node.inputs[2] is not None and zero is None):
        return None
    dtype = zero.dtype if zero is not None else node.outputs[0].type.dtype if node.op == "QuantizeLinear" \
        else node.inputs[0].type.dtype
    return float(scale.reshape(-1)[0]), int(0 if zero is None else zero.reshape(-1)[0]), np.dtype(dtype)
