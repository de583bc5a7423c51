"""ONNX import handlers: control flow (If, Loop, Scan).

Subgraph attributes are imported into IR Graphs; the outer values they read
become trailing ``captures`` inputs of the node (see ir/graph.py). An If whose
condition is known at compile time is replaced by the nodes of the branch it
takes. Loop and Scan bodies are imported again with wider types when an
iteration changes the shape of a loop-carried value, until the types settle.
Scan-8 (batched) becomes a Scan over the batch around an opset 9 Scan.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from compiler.errors import ModelImportError, UnsupportedOpError
from compiler.frontend.context import NodeContext, handler
from ir.graph import Graph, Value
from ir.ops.control import BOOL_SCALAR, INT64_SCALAR, merge_types
from ir.types import TensorType


# ------------------------------------------------------------------ If
@handler("If")
def _if(ctx: NodeContext) -> None:
    branches = _take_graphs(ctx, "then_branch", "else_branch")
    cond = ctx.input(0)
    if cond is not None and cond.is_constant and cond.const.size == 1:
        taken = "then_branch" if bool(cond.const.reshape(-1)[0]) else "else_branch"
        graph, captured = ctx.import_subgraph(branches[taken], [], taken)
        _bind_outputs(ctx, *_inline(ctx, graph, captured))
        return
    (then_graph, then_captured), (else_graph, else_captured) = _import_branches(ctx, branches)
    captured = _union(then_captured, else_captured)
    _bind_captures(then_graph, then_captured, captured)
    _bind_captures(else_graph, else_captured, captured)
    ctx.emit_final("If", [cond, *captured], {"then_branch": then_graph, "else_branch": else_graph,
                                             "captures": len(captured)})


def _import_branches(ctx: NodeContext, branches: dict) -> list[tuple[Graph, list[Value]]]:
    """Both branches of an If whose condition is known only at run time. A
    branch that does not fit the input shapes (an exported model's branch
    for another configuration, say another sample rate) becomes one Fail
    node giving the other branch's output types: as in onnxruntime, the
    model fails only if the condition ever chooses it, with the import
    error as its message. When neither fits, the import error is raised."""
    imported, errors = {}, {}
    for name in ("then_branch", "else_branch"):
        try:
            imported[name] = ctx.import_subgraph(branches[name], [], name)
        except UnsupportedOpError:
            raise
        except ModelImportError as exc:
            where = f"{exc.op} node {exc.node!r}: " if exc.op else ""
            errors[name] = f"{name} does not fit the input shapes it was compiled for: {where}{exc.reason}"
    if len(errors) == 2:
        raise ctx.error(f"neither branch fits these input shapes: {errors['then_branch']}")
    errors = {name: str(ctx.error(message)) for name, message in errors.items()}
    for name, message in errors.items():
        fitting = imported["else_branch" if name == "then_branch" else "then_branch"][0]
        imported[name] = (_failing_branch(name, message, [v.type for v in fitting.outputs]), [])
    return [imported["then_branch"], imported["else_branch"]]


def _failing_branch(name: str, message: str, types: list[TensorType]) -> Graph:
    """A branch of one Fail node, whose outputs have ``types``."""
    graph = Graph(name)
    shapes = [[-1 if d is None else int(d) for d in t.shape] for t in types]
    node = graph.add_node("Fail", [], {"message": message, "shapes": shapes,
                                       "dtypes": [t.dtype.name for t in types]}, name=f"{name}_fails",
                          output_types=types)
    graph.outputs = list(node.outputs)
    return graph


def _union(first: Sequence[Value], second: Sequence[Value]) -> list[Value]:
    seen = {id(v) for v in first}
    return [*first, *(v for v in second if id(v) not in seen)]


def _bind_captures(graph: Graph, captured: Sequence[Value], union: Sequence[Value]) -> None:
    """Give ``graph`` one trailing input per value of ``union``, in its order,
    reusing the inputs it has for the values it ``captured`` itself."""
    own = dict(zip((id(v) for v in captured), graph.inputs[len(graph.inputs) - len(captured):]))
    formal = graph.inputs[:len(graph.inputs) - len(captured)]
    bound = []
    for value in union:
        inner = own.get(id(value))
        if inner is None:
            inner = graph.add_input(graph.fresh_name(value.name), value.type)
        bound.append(inner)
    graph.inputs = [*formal, *bound]


def _inline(ctx: NodeContext, graph: Graph, captured: Sequence[Value]) -> tuple[list[Value], set[int]]:
    """Copy ``graph``'s nodes into the graph being built, its inputs bound to
    ``captured``; returns the values of its outputs there, and the ids of the
    values the copy made."""
    outer = ctx.graph
    mapping: dict[int, Value] = {id(inner): value for inner, value in zip(graph.inputs, captured)}

    def resolve(value: Value | None) -> Value | None:
        if value is None:
            return None
        if id(value) not in mapping:  # a constant of the branch
            mapping[id(value)] = ctx.const(value.const, value.name)
        return mapping[id(value)]

    for node in graph.nodes:
        copy = outer.add_node(node.op, [resolve(v) for v in node.inputs], dict(node.attrs),
                              name=f"{ctx.name}/{node.name}", output_types=[v.type for v in node.outputs],
                              output_names=[outer.fresh_name(v.name) for v in node.outputs])
        mapping.update((id(old), new) for old, new in zip(node.outputs, copy.outputs))
    outputs = [resolve(v) for v in graph.outputs]
    return outputs, {id(v) for v in mapping.values()} - {id(v) for v in captured}


def _bind_outputs(ctx: NodeContext, values: Sequence[Value], made: set[int]) -> None:
    """Bind the node's output names; values made for it take those names."""
    if len(values) != len(ctx.output_names):
        raise ctx.error(f"the branch has {len(values)} outputs, the node {len(ctx.output_names)}")
    for name, value in zip(ctx.output_names, values):
        if not name:
            continue
        if id(value) in made and name not in ctx.graph.values:
            ctx.graph.rename_value(value, name)
            made.discard(id(value))
        ctx.bind(name, value)


# ------------------------------------------------------------------ Loop
@handler("Loop")
def _loop(ctx: NodeContext) -> None:
    body_proto = _take_graphs(ctx, "body")["body"]
    initial = ctx.inputs[2:]
    if any(v is None for v in initial):
        raise ctx.unsupported("omitted loop-carried inputs are not supported")
    body, captured = _import_body(ctx, body_proto, [v.type for v in initial],
                                  lambda carried: [INT64_SCALAR, BOOL_SCALAR, *carried], first_output=1)
    inputs = [ctx.input(0), ctx.input(1), *initial, *captured]
    ctx.emit_final("Loop", inputs, {"body": body, "captures": len(captured)})


def _import_body(ctx: NodeContext, proto, carried: list[TensorType], formal, first_output: int):
    """Import a loop body whose carried inputs start with the types of their
    initial values, widening them (None dims) until the body's results fit."""
    for _ in range(1 + sum(t.rank for t in carried)):
        body, captured = ctx.import_subgraph(proto, formal(carried), "body")
        results = body.outputs[first_output:first_output + len(carried)]
        if len(results) < len(carried):
            raise ctx.error(f"the body has {len(body.outputs)} outputs; it needs {first_output} "
                            f"plus {len(carried)} loop-carried value(s)")
        widened = []
        for i, (start, result) in enumerate(zip(carried, results)):
            merged = merge_types(start, result.type)
            if merged is None:
                raise ctx.error(f"loop-carried value {i} starts as {start} but the body makes it {result.type}")
            widened.append(merged)
        if widened == carried:
            return body, captured
        carried = widened
    raise ctx.error("the loop-carried types do not settle")  # unreachable: each round adds a None dim


# ------------------------------------------------------------------ Scan
@handler("Scan")
def _scan(ctx: NodeContext) -> None:
    body_proto = _take_graphs(ctx, "body")["body"]
    if ctx.op_version is not None and ctx.op_version < 9:
        _scan_8(ctx, body_proto)
        return
    attrs = dict(ctx.attrs)
    states, sequences = _split_scan_inputs(ctx, ctx.inputs, attrs.get("num_scan_inputs"))
    slices = [_slice_type(ctx, v.type, i, attrs.get("scan_input_axes")) for i, v in enumerate(sequences)]
    body, captured = _import_body(ctx, body_proto, [v.type for v in states],
                                  lambda carried: [*carried, *slices], first_output=0)
    ctx.emit_final("Scan", [*ctx.inputs, *captured], {**attrs, "body": body, "captures": len(captured)})


def _scan_8(ctx: NodeContext, body_proto) -> None:
    """Scan-8 runs a scan per batch entry (axis 0 of every input), over axis 1:
    an outer Scan over the batch whose body is the inner, opset 9 Scan."""
    attrs = dict(ctx.attrs)
    directions = attrs.pop("directions", None)
    scans = attrs.pop("num_scan_inputs", None)
    if attrs:
        raise ctx.unsupported(f"attribute(s) {sorted(attrs)} are not supported")
    lens, *inputs = ctx.inputs or [None]
    states, sequences = _split_scan_inputs(ctx, inputs, scans)
    for value, least in [*((v, 1) for v in states), *((v, 2) for v in sequences)]:
        if value.type.rank < least:
            raise ctx.error(f"Scan-8 input %{value.name} {value.type} needs rank {least} or more (batch first)")
    _check_full_lengths(ctx, lens, sequences)
    per_entry = [v.type.with_shape(v.type.shape[1:]) for v in (*states, *sequences)]
    slices = [t.with_shape(t.shape[1:]) for t in per_entry[len(states):]]
    body, captured = _import_body(ctx, body_proto, per_entry[:len(states)],
                                  lambda carried: [*carried, *slices], first_output=0)
    batch = Graph(f"{ctx.name}.batch")
    entry = [batch.add_input(f"entry{i}", t) for i, t in enumerate(per_entry)]
    outer = [batch.add_input(batch.fresh_name(v.name), v.type) for v in captured]
    inner = batch.add_node("Scan", [*entry, *outer],
                           {"body": body, "num_scan_inputs": scans, "scan_input_axes": None,
                            "scan_input_directions": directions, "scan_output_axes": None,
                            "scan_output_directions": None, "captures": len(captured)})
    batch.outputs = list(inner.outputs)
    ctx.emit_final("Scan", [*states, *sequences, *captured], {"body": batch, "num_scan_inputs": len(entry),
                                                               "captures": len(captured)})


def _split_scan_inputs(ctx: NodeContext, inputs: list, scans) -> tuple[list, list]:
    """(state inputs, scan inputs) of a Scan node."""
    if scans is None or not 1 <= scans <= len(inputs) or any(v is None for v in inputs):
        raise ctx.error(f"num_scan_inputs={scans} must count the last of the node's {len(inputs)} state and "
                        "scan inputs (none omitted)")
    return inputs[:len(inputs) - scans], inputs[len(inputs) - scans:]


def _check_full_lengths(ctx: NodeContext, lens: Value | None, sequences: list) -> None:
    """Scan-8's sequence_lens is supported only when it says "every step"."""
    if lens is None:
        return
    length = sequences[0].type.shape[1] if sequences[0].type.rank > 1 else None
    if lens.const is None or length is None or not np.all(lens.const == length):
        raise ctx.unsupported("Scan-8 sequence_lens shorter than the sequences is not supported")


def _slice_type(ctx: NodeContext, t: TensorType, index: int, axes) -> TensorType:
    axis = 0 if axes is None or index >= len(axes) else axes[index]
    if not -t.rank <= axis < t.rank:
        raise ctx.error(f"scan_input_axes[{index}]={axis} is out of range for scan input {t}")
    axis %= t.rank
    return t.with_shape(d for k, d in enumerate(t.shape) if k != axis)


# ------------------------------------------------------------------ shared
def _take_graphs(ctx: NodeContext, *names: str) -> dict:
    """Pop the named GraphProto attributes. If and Loop have no others; Scan's
    other attributes are checked when its node is made."""
    graphs = {}
    for name in names:
        if name not in ctx.attrs:
            raise ctx.error(f"missing subgraph attribute {name!r}")
        graphs[name] = ctx.pop_attr(name)
    if ctx.op_type != "Scan" and ctx.attrs:
        raise ctx.unsupported(f"attribute(s) {sorted(ctx.attrs)} are not supported")
    return graphs

