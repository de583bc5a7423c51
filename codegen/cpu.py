"""Lowering of an IR graph to a CPU kernel Program.

IR attributes are already the kernels' attributes, so lowering assigns slots,
binds constants, freezes lists into tuples and lowers subgraphs (If branches,
Loop bodies) into sub-Programs. Structural nodes (``Fused`` groups and
partition ``Segment``s) are inlined: their bodies' steps read and write the
slots of the node's own inputs and outputs. The result is the float
reference (Run_th) and the program of every CPU segment.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from codegen.cpu_fused import plan_fused_group
from ir.errors import IRError
from ir.graph import Graph, Node, Value
from runtime.compiled import CpuSegment
from runtime.kernels.nn_prepared import RESIDUAL
from runtime.program import NO_SLOT, Program, Step
from runtime.segments import SegmentedProgram

INLINED = frozenset({"Fused", "Segment"})


class _Lowering:
    """Slot assignment and step emission for one Program."""

    def __init__(self):
        self.slots: dict[Value, int] = {}  # keyed by the Value itself (kept alive: ids are not reused)
        self.names: list[str] = []
        self.types: list[tuple] = []
        self.constants: dict[int, np.ndarray] = {}
        self.steps: list[Step] = []
        self.taken: set[str] = set()

    def slot_of(self, value: Value) -> int:
        key = value
        if key not in self.slots:
            self.slots[key] = len(self.names)
            self.names.append(self._unique(value.name))
            self.types.append((value.type.shape, value.type.dtype.name))
            if value.is_constant:
                self.constants[self.slots[key]] = value.const
        return self.slots[key]

    def _unique(self, name: str) -> str:
        """Inlined bodies may reuse a name; slot names stay unique."""
        unique, suffix = name, 0
        while unique in self.taken:
            suffix += 1
            unique = f"{name}#{suffix}"
        self.taken.add(unique)
        return unique

    def lower_nodes(self, graph: Graph) -> None:
        for node in graph.nodes:
            if node.op in INLINED:
                self.inline(node)
            else:
                self.emit(node)

    def emit(self, node: Node) -> None:
        ins = tuple(NO_SLOT if v is None else self.slot_of(v) for v in node.inputs)
        outs = tuple(self.slot_of(v) for v in node.outputs)
        self.steps.append(Step(node.op, ins, outs, lower_attrs(node), node.name))

    def inline(self, node: Node) -> None:
        """The body's steps, on the slots of the node's inputs and outputs. A
        fused element-wise group (or an anchored group's element-wise tail)
        becomes one FusedElementwise step instead, or the whole group one
        FusedConv step (codegen/cpu_fused.py)."""
        body: Graph = node.attrs["body"]
        for formal, actual in zip(body.inputs, node.inputs):
            self.slots[formal] = self.slot_of(actual)
        for inner, outer in zip(body.outputs, node.outputs):
            if inner.producer is not None:
                self.slots[inner] = self.slot_of(outer)
        group = plan_fused_group(node) if node.op == "Fused" else None
        if group is not None:
            for view in group.views:
                self.emit(view)
            self.steps.extend(group.steps(self.slot_of, node.name))
            for view in group.views_after:
                self.emit(view)
            return
        self.lower_nodes(body)
        for inner, outer in zip(body.outputs, node.outputs):
            if inner.producer is None:  # a body passing an input or constant straight through
                self.steps.append(Step("Identity", (self.slot_of(inner),), (self.slot_of(outer),), {},
                                       f"{node.name}/output"))


def lower_to_program(graph: Graph) -> Program:
    """The kernel Program computing ``graph``'s outputs from its inputs."""
    return lower_with_names(graph)[0]


def lower_with_names(graph: Graph) -> tuple[Program, dict[Value, str]]:
    """The Program, and the slot name each IR value got (inlined bodies'
    values included), to fetch or watch values by IR value."""
    lowering = _Lowering()
    inputs = [lowering.slot_of(v) for v in graph.inputs]
    lowering.lower_nodes(graph)
    outputs = [lowering.slot_of(v) for v in graph.outputs]
    steps = residuals_in_place(lowering.steps, inputs, outputs, lowering.constants)
    program = Program(lowering.names, inputs, outputs, steps, lowering.constants, lowering.types, graph.name)
    return program, {value: lowering.names[slot] for value, slot in lowering.slots.items()}


def residuals_in_place(steps: list[Step], inputs: list[int], outputs: list[int], constants) -> list[Step]:
    """The steps, each FusedConv whose residual is read for the last time
    by it marked ``inplace`` = RESIDUAL: its output may go into the
    residual's own memory, which is then still in cache and needs no fresh
    buffer (onnxruntime's Conv + Add fusion reuses its Sum input the same
    way). Never a program input, output or constant; the executor still
    keeps values a caller fetches or watches."""
    last = {slot: index for index, step in enumerate(steps) for slot in step.inputs}
    kept = set(inputs) | set(outputs) | set(constants)
    marked = []
    for index, step in enumerate(steps):
        if step.kernel == "FusedConv" and len(step.inputs) == RESIDUAL + 1:
            residual = step.inputs[RESIDUAL]
            if (residual != NO_SLOT and residual not in kept and last[residual] == index
                    and step.inputs.count(residual) == 1):
                step = Step(step.kernel, step.inputs, step.outputs, {**step.attrs, "inplace": RESIDUAL}, step.name)
        marked.append(step)
    return marked


def lower_attrs(node: Node) -> dict[str, Any]:
    """A node's attributes as its kernel reads them (lists as tuples,
    subgraphs as Programs): to run one node with ``run_kernel``."""
    return {k: _lower_attr(v) for k, v in node.attrs.items()}


def _lower_attr(value: Any) -> Any:
    if isinstance(value, Graph):
        return lower_to_program(value)
    if isinstance(value, list):
        return tuple(_lower_attr(v) for v in value)
    return value


def lower_segment(node: Node) -> CpuSegment:
    """One ``Segment`` node's body as a CPU segment."""
    return CpuSegment(node.name, lower_to_program(node.attrs["body"]), [v.name for v in node.inputs],
                      [v.name for v in node.outputs])


def lower_segments(graph: Graph) -> SegmentedProgram:
    """A partitioned graph (every top-level node a ``Segment``) as one kernel
    Program per segment, to run segment by segment on the CPU (the
    accelerator's segments on the integer kernels, bit-exact to the device)."""
    others = [n.name for n in graph.nodes if n.op != "Segment"]
    if others:
        raise IRError(f"graph {graph.name!r} is not partitioned: nodes {others[:5]} are not in a Segment")
    segments = [lower_segment(node) for node in graph.nodes]
    outputs = [v.name for v in graph.outputs]
    passthrough = [v.name for v in graph.outputs if v.producer is None and v not in graph.inputs]
    if passthrough:
        raise IRError(f"graph outputs {passthrough} are constants; a partitioned graph computes its outputs")
    return SegmentedProgram(graph.name, [v.name for v in graph.inputs], outputs, segments)
