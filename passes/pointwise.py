"""Pointwise functions: which nodes compute a float32 function of their
tensor operands element by element, and which values are a unary function
of one other value.

On 8-bit data every unary function is a 256-entry lookup table (on 16-bit
data a 513-entry one, interpolated), so the accelerator takes any chain of
such nodes, however it is written: an
activation (Sigmoid, HardSwish, Gelu, ...), a constant scalar Add/Sub/Mul/
Div/Pow/Max/Min, or a product of a value with a function of itself
(SiLU's ``x * sigmoid(x)``, HardSwish's ``x * hardsigmoid(x)``). The target
rules (passes/target.py) and the quantizer's units (passes/quant/units.py)
both read this one definition.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ir.graph import Graph, Node, Value
from ir.registry import Pattern, get_op
from runtime.kernels import has_kernel, run_kernel

_FLOAT32 = np.dtype(np.float32)
EXCLUDED = frozenset({"Dropout", "BatchNormalization", "QuantizeLinear", "DequantizeLinear", "Cast"})
"""Element-wise by registry pattern, but not a plain function of one value
(random, or per-channel parameters, or a change of type)."""


def is_pointwise(node: Node) -> bool:
    """Whether ``node`` computes its one float32 output element by element
    from float32 tensors of the output's shape, every other operand a
    scalar constant (one element, any rank)."""
    if node.op in EXCLUDED or len(node.outputs) != 1 or not has_kernel(node.op):
        return False
    if get_op(node.op).pattern not in (Pattern.ELEMWISE, Pattern.BROADCAST):
        return False
    out = node.outputs[0].type
    if out.dtype != _FLOAT32:
        return False
    tensors = 0
    for value in node.inputs:
        if value is None:
            continue
        if value.is_constant:
            if value.const.size != 1:
                return False
        elif value.type.dtype != _FLOAT32 or value.type.shape != out.shape:
            return False
        else:
            tensors += 1
    return tensors >= 1


def unary_sources(body: Graph) -> dict[Value, Value]:
    """For each value a pointwise node computes from one value alone
    (directly, or through other such nodes), that value: ``y = f(x)``
    gives ``{y: x}``, and SiLU's ``x * sigmoid(x)`` maps both the sigmoid
    and the product to ``x``."""
    sources: dict[Value, Value] = {}
    for node in body.nodes:
        if not is_pointwise(node):
            continue
        roots = {sources.get(v, v) for v in node.inputs if v is not None and not v.is_constant}
        if len(roots) == 1:
            sources[node.outputs[0]] = roots.pop()
    return sources


def evaluate(nodes: Sequence[Node], source: Value, x: np.ndarray) -> np.ndarray:
    """The last of ``nodes`` (pointwise, in order, computing a function of
    ``source``) evaluated on the values ``x`` of ``source`` by the CPU
    kernels, the one semantics of every op: how a table is filled."""
    env = {source: x}
    for node in nodes:
        inputs = [None if v is None else v.const.reshape(()) if v.is_constant else env[v] for v in node.inputs]
        env[node.outputs[0]] = run_kernel(node.op, inputs, node.attrs)[0]
    return env[nodes[-1].outputs[0]]


def unit_function(unit: Node) -> tuple[list[Node], Value]:
    """The pointwise nodes a "lut" unit node computes, in order, and the
    value they are a function of (the body's tensor input for a Fused unit)."""
    if unit.op == "Fused":
        body = unit.attrs["body"]
        return body.nodes, next(v for v in body.inputs if not v.is_constant)
    return [unit], next(v for v in unit.inputs if v is not None and not v.is_constant)
