"""CPU kernels: control flow (If, Loop, Scan, Fail).

Subgraphs arrive as sub-Programs in the attributes, their inputs being the
formal ones followed by the node's captured values. Each sub-Program is run by
one Executor, built on first use and kept with the Program.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from runtime.errors import KernelError
from runtime.kernels.registry import kernel
from runtime.program import Program


@kernel("Fail")
def fail(inputs, attrs):
    """An If branch that does not fit the shapes the model was compiled for,
    chosen at run time: the import's error, now."""
    raise KernelError(str(attrs["message"]))


@kernel("If")
def if_(inputs, attrs):
    branch = attrs["then_branch"] if bool(_single(inputs[0], "the condition")) else attrs["else_branch"]
    return tuple(_call(branch, inputs[1:]))


@kernel("Loop")
def loop(inputs, attrs):
    """Runs the body while ``i < M`` and the condition holds; the body's
    condition output is read on every iteration (as onnxruntime does)."""
    body: Program = attrs["body"]
    trip, cond = inputs[0], inputs[1]
    carried = len(inputs) - 2 - attrs["captures"]
    values, captured = list(inputs[2:2 + carried]), list(inputs[2 + carried:])
    limit = None if trip is None else int(_single(trip, "the trip count M"))
    going = True if cond is None else bool(_single(cond, "the condition"))
    scans: list[list[np.ndarray]] = [[] for _ in range(len(body.outputs) - 1 - carried)]
    step = 0
    while going and (limit is None or step < limit):
        results = _call(body, [np.array(step, np.int64), np.array(going), *values, *captured])
        going = bool(_single(results[0], "the body's condition output"))
        values = results[1:1 + carried]
        for collected, result in zip(scans, results[1 + carried:]):
            collected.append(result)
        step += 1
    stacked = [_stack(items, 0, body, 1 + carried + k) for k, items in enumerate(scans)]
    return (*values, *stacked)


@kernel("Scan")
def scan(inputs, attrs):
    """Opset 9+ Scan: slices the scan inputs along their axes, runs the body
    once per slice, and stacks the per-step outputs along their axes."""
    body: Program = attrs["body"]
    count = attrs["num_scan_inputs"]
    states = len(inputs) - count - attrs["captures"]
    values = list(inputs[:states])
    sequences = list(inputs[states:states + count])
    captured = list(inputs[states + count:])
    in_axes = _axes(attrs["scan_input_axes"], [s.ndim for s in sequences], "scan_input_axes")
    in_dirs = attrs["scan_input_directions"] or [0] * count
    length = _scan_length(sequences, in_axes)
    outputs = len(body.outputs) - states
    scans: list[list[np.ndarray]] = [[] for _ in range(outputs)]
    for step in range(length):
        slices = [np.take(s, length - 1 - step if d else step, axis=a)
                  for s, a, d in zip(sequences, in_axes, in_dirs)]
        results = _call(body, [*values, *slices, *captured])
        values = results[:states]
        for collected, result in zip(scans, results[states:]):
            collected.append(result)
    ranks = [len(body.types[body.outputs[states + k]][0]) + 1 if body.types else 1 for k in range(outputs)]
    out_axes = _axes(attrs["scan_output_axes"], ranks, "scan_output_axes")
    out_dirs = attrs["scan_output_directions"] or [0] * outputs
    stacked = [_stack(items[::-1] if d else items, a, body, states + k)
               for k, (items, a, d) in enumerate(zip(scans, out_axes, out_dirs))]
    return (*values, *stacked)


def _executor(program: Program):
    """The Executor of a sub-Program (imported here: the executor imports the
    kernel table, which imports this module)."""
    executor = vars(program).get("_executor")
    if executor is None:
        from runtime.executor import Executor
        executor = vars(program)["_executor"] = Executor(program)
    return executor


def _call(program: Program, args: Sequence[np.ndarray]) -> list[np.ndarray]:
    names = program.input_names
    if len(args) != len(names):
        raise KernelError(f"subgraph {program.name!r} takes {len(names)} inputs, got {len(args)}")
    results = _executor(program).run(dict(zip(names, args)))
    return [results[name] for name in program.output_names]


def _single(array: np.ndarray, name: str):
    array = np.asarray(array)
    if array.size != 1:
        raise KernelError(f"{name} must hold exactly one value, got shape {list(array.shape)}")
    return array.reshape(-1)[0]


def _axes(given, ranks: Sequence[int], name: str) -> list[int]:
    if given is None:
        return [0] * len(ranks)
    if len(given) != len(ranks) or any(not -r <= a < r for a, r in zip(given, ranks)):
        raise KernelError(f"{name}={list(given)} does not fit ranks {list(ranks)}")
    return [a % r for a, r in zip(given, ranks)]


def _scan_length(sequences: Sequence[np.ndarray], axes: Sequence[int]) -> int:
    lengths = {s.shape[a] for s, a in zip(sequences, axes)}
    if len(lengths) != 1:
        raise KernelError(f"the scan inputs disagree on the scan length: {sorted(lengths)}")
    return lengths.pop()


def _stack(items: list[np.ndarray], axis: int, body: Program, output: int) -> np.ndarray:
    """The per-iteration values of body output ``output`` stacked along
    ``axis``; with no iterations, an empty array of the body output's type."""
    if not items:
        shape, dtype = body.types[body.outputs[output]] if body.types else ((), "float32")
        dims = [0 if d is None else d for d in shape]
        return np.zeros(dims[:axis] + [0] + dims[axis:], np.dtype(dtype))
    shapes = {a.shape for a in items}
    if len(shapes) > 1:
        raise KernelError(f"scan output {body.output_names[output]!r} changes shape between iterations: "
                          f"{sorted(shapes)}")
    return np.stack(items, axis=axis)
