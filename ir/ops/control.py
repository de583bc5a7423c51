"""Op definitions: control flow (If, Loop, Scan, and Fail for a branch that
cannot run).

Subgraphs are Graph attributes. The outer values a subgraph reads are the
node's trailing ``captures`` inputs, bound in order to the subgraph's trailing
inputs (after its formal ones). Output types come from the subgraphs: where
two branches, or two iterations, may disagree on a dim it is None.

Loop follows onnxruntime where the spec is loose: the body's condition output
decides whether to go on even when the node has no condition input.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ir.graph import Graph, Value
from ir.ops.common import normalize_axis
from ir.registry import INFINITE, REQUIRED, InferContext, Pattern, register_op
from ir.types import TensorType

INT64_SCALAR = TensorType([], np.int64)
BOOL_SCALAR = TensorType([], np.bool_)


def merge_types(a: TensorType, b: TensorType) -> TensorType | None:
    """The type covering both ``a`` and ``b`` (None dims where they differ),
    or None when dtype or rank differ."""
    if a.dtype != b.dtype or a.rank != b.rank:
        return None
    return TensorType([x if x == y else None for x, y in zip(a.shape, b.shape)], a.dtype)


def accepts(formal: TensorType, actual: TensorType) -> bool:
    """Whether a value of type ``actual`` may be bound to an input of type ``formal``."""
    return (formal.dtype == actual.dtype and formal.rank == actual.rank
            and all(f is None or f == a for f, a in zip(formal.shape, actual.shape)))


def loop_exits_early(body: Graph, cond_given_true: bool) -> bool:
    """False when the body's condition output is certainly true on every
    iteration: a constant true, or the condition input passed through
    (Identity chains included) when the loop starts with a true condition."""
    value = _through_identities(body.outputs[0])
    if value.is_constant:
        return not bool(np.all(value.const))
    return not (cond_given_true and value is body.inputs[1])


def _through_identities(value: Value) -> Value:
    while value.producer is not None and value.producer.op == "Identity":
        value = value.producer.inputs[0]
    return value


# ------------------------------------------------------------------ If
def _if_types(ctx: InferContext) -> list[TensorType]:
    _check_flag(ctx, 0, "cond", np.bool_)
    captured = _captured_types(ctx, first=1)
    then_branch, else_branch = ctx.attrs["then_branch"], ctx.attrs["else_branch"]
    for name, branch in (("then_branch", then_branch), ("else_branch", else_branch)):
        _check_bound_inputs(ctx, branch, captured, name)
    if len(then_branch.outputs) != len(else_branch.outputs):
        raise ctx.error(f"then_branch has {len(then_branch.outputs)} outputs, else_branch has "
                        f"{len(else_branch.outputs)}")
    outputs = []
    for i, (a, b) in enumerate(zip(then_branch.outputs, else_branch.outputs)):
        merged = merge_types(a.type, b.type)
        if merged is None:
            raise ctx.error(f"output {i}: then_branch gives {a.type}, else_branch gives {b.type}; "
                            "an If output needs one dtype and rank")
        outputs.append(merged)
    return outputs


# ------------------------------------------------------------------ Loop
def _loop_types(ctx: InferContext) -> list[TensorType]:
    body: Graph = ctx.attrs["body"]
    carried = len(ctx.types) - 2 - _capture_count(ctx, first=2)
    if not ctx.has(0) and not ctx.has(1):
        raise ctx.error("a Loop with neither a trip count M nor a condition never ends")
    if ctx.has(0):
        _check_flag(ctx, 0, "M", np.int64)
    if ctx.has(1):
        _check_flag(ctx, 1, "cond", np.bool_)
    initial = [ctx.type(2 + i) for i in range(carried)]
    formal = [INT64_SCALAR, BOOL_SCALAR, *initial, *_captured_types(ctx, first=2 + carried)]
    _check_bound_inputs(ctx, body, formal, "body")
    if len(body.outputs) < 1 + carried:
        raise ctx.error(f"the body has {len(body.outputs)} outputs; it needs the condition and "
                        f"{carried} loop-carried value(s)")
    if body.outputs[0].type.dtype != np.bool_ or body.outputs[0].type.numel not in (1, None):
        raise ctx.error(f"the body's condition output must be one bool, got {body.outputs[0].type}")
    outputs = _carried_types(ctx, body, initial, body.outputs[1:1 + carried], first_input=2)
    trip = _static_trip_count(ctx, body)
    outputs += [TensorType([trip, *v.type.shape], v.type.dtype) for v in body.outputs[1 + carried:]]
    return outputs


def _static_trip_count(ctx: InferContext, body: Graph) -> int | None:
    """The number of iterations when it is known at compile time."""
    trip = ctx.const(0)
    if trip is None:
        return None
    cond = ctx.const(1)
    if ctx.has(1) and (cond is None or not bool(np.all(cond))):
        return None
    if loop_exits_early(body, cond_given_true=True):
        return None
    return max(int(np.asarray(trip).reshape(-1)[0]), 0)


# ------------------------------------------------------------------ Scan
def _scan_types(ctx: InferContext) -> list[TensorType]:
    body: Graph = ctx.attrs["body"]
    scans = ctx.attrs["num_scan_inputs"]
    if scans < 1:
        raise ctx.error(f"num_scan_inputs={scans} must be at least 1")
    states = len(ctx.types) - scans - _capture_count(ctx, first=scans)
    scan_types = [ctx.type(states + i) for i in range(scans)]
    axes = _scan_axes(ctx, "scan_input_axes", [t.rank for t in scan_types])
    _directions(ctx, "scan_input_directions", scans)
    length = _scan_length(ctx, scan_types, axes)
    slices = [t.with_shape(s for k, s in enumerate(t.shape) if k != a) for t, a in zip(scan_types, axes)]
    initial = [ctx.type(i) for i in range(states)]
    formal = [*initial, *slices, *_captured_types(ctx, first=states + scans)]
    _check_bound_inputs(ctx, body, formal, "body")
    if len(body.outputs) < states:
        raise ctx.error(f"the body has {len(body.outputs)} outputs, fewer than the {states} state values")
    outputs = _carried_types(ctx, body, initial, body.outputs[:states], first_input=0)
    per_step = [v.type for v in body.outputs[states:]]
    out_axes = _scan_axes(ctx, "scan_output_axes", [t.rank + 1 for t in per_step])
    _directions(ctx, "scan_output_directions", len(per_step))
    for t, axis in zip(per_step, out_axes):
        outputs.append(t.with_shape([*t.shape[:axis], length, *t.shape[axis:]]))
    return outputs


def _scan_axes(ctx: InferContext, name: str, ranks: Sequence[int]) -> list[int]:
    given = ctx.attrs[name]
    if given is None:
        return [0] * len(ranks)
    if len(given) != len(ranks):
        raise ctx.error(f"{name}={list(given)} must have {len(ranks)} entries")
    return [normalize_axis(ctx, int(a), r, name) for a, r in zip(given, ranks)]


def _directions(ctx: InferContext, name: str, count: int) -> None:
    given = ctx.attrs[name]
    if given is not None and (len(given) != count or any(d not in (0, 1) for d in given)):
        raise ctx.error(f"{name}={list(given)} must have {count} entries, each 0 or 1")


def _scan_length(ctx: InferContext, scan_types: list[TensorType], axes: list[int]):
    lengths = {t.shape[a] for t, a in zip(scan_types, axes)} - {None}
    if len(lengths) > 1:
        raise ctx.error(f"the scan inputs disagree on the scan length: {sorted(lengths)}")
    return lengths.pop() if lengths else None


# ------------------------------------------------------------------ shared
def _capture_count(ctx: InferContext, first: int) -> int:
    """``attrs["captures"]``, checked against the inputs that follow ``first``."""
    count = ctx.attrs["captures"]
    if count < 0 or first + count > len(ctx.types):
        raise ctx.error(f"captures={count} does not fit the node's {len(ctx.types)} inputs")
    return count


def _captured_types(ctx: InferContext, first: int) -> list[TensorType]:
    count = _capture_count(ctx, first)
    return [ctx.type(i) for i in range(len(ctx.types) - count, len(ctx.types))]


def _check_flag(ctx: InferContext, index: int, name: str, dtype) -> None:
    t = ctx.type(index)
    if t.dtype != np.dtype(dtype) or t.numel not in (1, None):
        raise ctx.error(f"{name} (input {index}) must be a single {np.dtype(dtype)} value, got {t}")


def _check_bound_inputs(ctx: InferContext, graph: Graph, types: Sequence[TensorType], name: str) -> None:
    if len(graph.inputs) != len(types):
        raise ctx.error(f"{name} has {len(graph.inputs)} inputs, the node binds {len(types)}")
    for value, actual in zip(graph.inputs, types):
        if not accepts(value.type, actual):
            raise ctx.error(f"{name} input %{value.name} has type {value.type}, the node binds {actual}")


def _carried_types(ctx: InferContext, body: Graph, initial: list[TensorType], results: Sequence[Value],
                   first_input: int) -> list[TensorType]:
    """Types of values carried from one iteration to the next: they cover the
    initial value and the body's result, and the body must accept them."""
    out = []
    for i, (start, result) in enumerate(zip(initial, results)):
        merged = merge_types(start, result.type)
        if merged is None:
            raise ctx.error(f"loop-carried value {i} starts as {start} but the body makes it {result.type}")
        if not accepts(body.inputs[first_input + i].type, merged):
            raise ctx.error(f"loop-carried value {i} may become {merged}, the body input "
                            f"%{body.inputs[first_input + i].name} only takes {body.inputs[first_input + i].type}")
        out.append(merged)
    return out


def _fail_types(ctx: InferContext) -> list[TensorType]:
    shapes, dtypes = ctx.attrs["shapes"], ctx.attrs["dtypes"]
    if len(shapes) != len(dtypes) or not shapes:
        raise ctx.error(f"shapes ({len(shapes)}) and dtypes ({len(dtypes)}) must describe the same outputs")
    return [TensorType([None if d < 0 else int(d) for d in shape], np.dtype(dtype))
            for shape, dtype in zip(shapes, dtypes)]


register_op("Fail", _fail_types, Pattern.OPAQUE, inputs=(0, 0), outputs=(1, INFINITE),
            attrs={"message": REQUIRED, "shapes": REQUIRED, "dtypes": REQUIRED},
            doc="Fails with ``message`` when it runs; its outputs (typed by shapes, -1 for unknown dims, and "
                "dtypes) are never made: an If branch that does not fit the shapes the model was compiled for.")
register_op("If", _if_types, Pattern.OPAQUE, inputs=(1, INFINITE), outputs=(1, INFINITE),
            attrs={"then_branch": REQUIRED, "else_branch": REQUIRED, "captures": 0},
            doc="Runs then_branch or else_branch on the captured values.")
register_op("Loop", _loop_types, Pattern.OPAQUE, inputs=(2, INFINITE), outputs=(1, INFINITE),
            attrs={"body": REQUIRED, "captures": 0},
            doc="Inputs: M, cond (either may be omitted), loop-carried values, captures.")
register_op("Scan", _scan_types, Pattern.OPAQUE, inputs=(1, INFINITE), outputs=(1, INFINITE),
            attrs={"body": REQUIRED, "num_scan_inputs": REQUIRED, "scan_input_axes": None,
                   "scan_input_directions": None, "scan_output_axes": None, "scan_output_directions": None,
                   "captures": 0},
            doc="Opset 9+ Scan: state values, scan inputs, captures.")
