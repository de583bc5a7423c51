"""ExtractQDQ: a pre-quantized model's QuantizeLinear/DequantizeLinear pairs
(onnxruntime's QDQ format) become the quantization parameters of the tensors
they wrap, so the quantize pass honours them instead of calibrating.

    x -> QuantizeLinear(s, z) -> DequantizeLinear(s, z) -> users
      =>  x (quant = (s, z)) -> users

uint8 activation grids become the equivalent int8 ones (z - 128, same scale:
the same real values).

A per-tensor DequantizeLinear that is not half of a matching pair (its input
is an integer graph input, or a QuantizeLinear with other parameters) stays
an op; its float output gets the grid it dequantizes from, on which its
values are exactly representable, so quantizing them again is lossless and
needs no calibration. Per-axis QuantizeLinear/DequantizeLinear on activations
have no per-tensor grid and stay as ops.

Weights stored as DequantizeLinear(int8 or int16 constant, scale, zero 0),
per tensor or per output channel (axis 0), have the grid ``weight_grid``
returns. A DequantizeLinear of a constant still in the graph folds here to a
float constant carrying that grid as ``.quant``, which the quantize pass uses
as given (re-deriving max |w| / 127 from the dequantized floats gives the
same integers but can land a scale one ulp off). The ONNX importer folds
constant DequantizeLinears as it reads them, before this pass: for imported
models the grid is kept only where the importer attaches ``weight_grid`` to
the folded constant. Other constant DequantizeLinears (int32 biases,
asymmetric or axis-1 weights) are left to constant folding; a pass that
rewrites a weight (BatchNorm folding) makes a new constant, without the grid.
"""
from __future__ import annotations

import numpy as np

from ir.graph import Graph, Node
from ir.types import QuantParams
from passes.fold import fold_node
from passes.infra import PassContext, graph_pass
from passes.rewrite import bypass

_SHIFTED = {np.dtype(np.uint8): (np.dtype(np.int8), 128), np.dtype(np.uint16): (np.dtype(np.int16), 32768)}
_WEIGHT_TYPES = frozenset({np.dtype(np.int8), np.dtype(np.int16)})


@graph_pass(opt_level=0)
def extract_qdq(graph: Graph, ctx: PassContext) -> Graph:
    """Replace each per-tensor Q -> DQ pair by the grid it describes; fold
    symmetric integer weights keeping their grid; give a lone DQ's output
    the grid it dequantizes from."""
    for dq in list(graph.nodes):
        if dq.op != "DequantizeLinear" or dq not in graph.nodes:
            continue
        if dq.inputs[0].is_constant:
            _fold_weight(graph, dq)
            continue
        q = dq.inputs[0].producer
        params = _pair_params(q, dq) if q is not None and q.op == "QuantizeLinear" else None
        if params is None:
            _lone_dequantize(dq)
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
    return _params(*grids[0])


def _params(scale: float, zero: int, dtype: np.dtype) -> QuantParams:
    dtype, shift = _SHIFTED.get(dtype, (dtype, 0))
    return QuantParams(scale, zero - shift, dtype)


def _lone_dequantize(dq: Node) -> None:
    """A DQ left as an op: its output lies on the DQ's own per-tensor grid."""
    grid = _grid(dq)
    output = dq.outputs[0]
    if grid is not None and output.quant is None and grid[2] in set(_SHIFTED) | _WEIGHT_TYPES:
        output.quant = _params(*grid)


def _fold_weight(graph: Graph, dq: Node) -> None:
    """Fold DQ(integer constant) to floats, keeping the grid of weights."""
    params = weight_grid(dq.inputs, dq.attrs)
    if params is None:
        return
    folded = fold_node(graph, dq)
    if folded is not None:
        folded[0].quant = params


def weight_grid(inputs, attrs) -> QuantParams | None:
    """The grid of DequantizeLinear(``inputs``) with attributes ``attrs``
    when it dequantizes symmetric int8/int16 constant weights, per tensor or
    per channel along axis 0; else None. (Also for the ONNX importer, which
    folds a constant DequantizeLinear as it reads it.)"""
    if len(inputs) < 2 or inputs[0] is None or inputs[1] is None:
        return None
    codes, scale = inputs[0].const, inputs[1].const
    zero = inputs[2].const if len(inputs) > 2 and inputs[2] is not None else np.zeros(1, np.int8)
    if codes is None or scale is None or zero is None or codes.dtype not in _WEIGHT_TYPES or np.any(zero) \
            or codes.ndim == 0 or attrs.get("block_size", 0):
        return None
    if scale.size == 1:
        return QuantParams(scale.reshape(-1), [0], codes.dtype)
    if attrs.get("axis", 1) % codes.ndim == 0 and scale.size == codes.shape[0]:
        return QuantParams(scale.reshape(-1), np.zeros(scale.size, np.int64), codes.dtype, axis=0)
    return None


def _grid(node: Node) -> tuple[float, int, np.dtype] | None:
    scale = node.inputs[1].const
    zero = node.inputs[2].const if len(node.inputs) > 2 and node.inputs[2] is not None else None
    if scale is None or scale.size != 1 or (len(node.inputs) > 2 and node.inputs[2] is not None and zero is None):
        return None
    dtype = zero.dtype if zero is not None else node.outputs[0].type.dtype if node.op == "QuantizeLinear" \
        else node.inputs[0].type.dtype
    return float(scale.reshape(-1)[0]), int(0 if zero is None else zero.reshape(-1)[0]), np.dtype(dtype)
