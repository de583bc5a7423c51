"""Lowering of an IR graph to a CPU kernel Program.

IR attributes are already the kernels' attributes, so lowering assigns slots,
binds constants, freezes lists into tuples and lowers subgraphs (If branches,
Loop bodies) into sub-Programs. The result is the float reference (Run_th)
and the program of every CPU segment.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ir.graph import Graph, Value
from runtime.program import NO_SLOT, Program, Step


def lower_to_program(graph: Graph) -> Program:
    """The kernel Program computing ``graph``'s outputs from its inputs."""
    slots: dict[int, int] = {}
    names: list[str] = []
    types: list[tuple] = []
    constants: dict[int, np.ndarray] = {}

    def slot_of(value: Value) -> int:
        key = id(value)
        if key not in slots:
            slots[key] = len(names)
            names.append(value.name)
            types.append((value.type.shape, value.type.dtype.name))
            if value.is_constant:
                constants[slots[key]] = value.const
        return slots[key]

    inputs = [slot_of(v) for v in graph.inputs]
    steps = []
    for node in graph.nodes:
        ins = tuple(NO_SLOT if v is None else slot_of(v) for v in node.inputs)
        outs = tuple(slot_of(v) for v in node.outputs)
        attrs = {k: _lower_attr(v) for k, v in node.attrs.items()}
        steps.append(Step(node.op, ins, outs, attrs, node.name))
    outputs = [slot_of(v) for v in graph.outputs]
    return Program(names, inputs, outputs, steps, constants, types, graph.name)


def _lower_attr(value: Any) -> Any:
    if isinstance(value, Graph):
        return lower_to_program(value)
    if isinstance(value, list):
        return tuple(_lower_attr(v) for v in value)
    return value
