"""Lowering of fused element-wise groups to one FusedElementwise step.

A ``Fused`` node whose body is float32 element-wise and broadcasting ops
becomes a single step of the "FusedElementwise" kernel
(:mod:`runtime.kernels.fused`): its expression description is built here
from the body, one IR op at a time through :data:`OPCODE_TABLE`. An anchored
group (a Conv, ConvTranspose, Gemm or MatMul followed by element-wise ops on
its output) becomes the anchor's own step plus one FusedElementwise step over
the anchor's output, written in place when that output is private to the
group; but a float32 Conv followed only by what the microkernels' epilogue
does (its bias, one residual add of the output's shape, one ReLU / Clip /
Max / Min by a constant, in that order) becomes a single FusedConv step,
which never materialises the Conv's own output.
:func:`plan_fused_group` returns None for anything it cannot express,
and the caller then inlines the body node by node.

The translation is SSA first (one virtual register per value), then a
linear-scan register allocation that reuses a register once its value is
dead, so long chains need few registers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ir.graph import Node, Value
from ir.types import TensorType
from runtime.kernels.fused import MAX_INPUTS, MAX_REGISTERS
from runtime.program import NO_SLOT, Step

ANCHORS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
"""Ops an anchored group may start with (their kernels return fresh arrays)."""
VIEWS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze"})
"""Ops that only reshape (the elements in the same order): one of these
reading a group's input is computed as its own step, before the group's
(:attr:`FusedGroup.views`), and the group reads its result."""
BIAS_MOVABLE = frozenset({"Conv", "ConvTranspose"})
"""Anchors whose bias (input 2, per output channel) the element-wise step adds."""

_FLOAT32 = np.dtype(np.float32)

Instruction = tuple[str, int, tuple[int, ...], tuple[float, ...]]


class _Unsupported(Exception):
    """The group holds something the expression cannot say."""


class _Emitter:
    """Collects SSA instructions; virtual registers 0..n-1 are the leaves."""

    def __init__(self, leaves: int):
        self.code: list[Instruction] = []
        self.next = leaves

    def emit(self, opcode: str, sources: Sequence[int] = (), params: Sequence[float] = ()) -> int:
        dst = self.next
        self.next += 1
        with np.errstate(over="ignore"):
            params = tuple(float(np.float32(p)) for p in params)
        self.code.append((opcode, dst, tuple(sources), params))
        return dst

    def const(self, value: float) -> int:
        return self.emit("const", (), (value,))


# ---------------------------------------------------------------- IR op -> opcodes

Translate = Callable[[_Emitter, Node, list[int]], int]


@dataclass(frozen=True)
class Rule:
    """How one IR op becomes instructions: ``translate(emitter, node,
    operand registers)`` returns the register of the node's output;
    ``operands`` are the input indices read as tensors (the others are
    constant parameters), None for all of them."""

    translate: Translate
    operands: tuple[int, ...] | None = None


def _op(opcode: str, *attr_names: str) -> Rule:
    """One opcode on all the inputs, with these attributes as parameters."""
    def translate(emitter: _Emitter, node: Node, regs: list[int]) -> int:
        return emitter.emit(opcode, regs, [node.attrs[name] for name in attr_names])
    return Rule(translate)


def _fold(opcode: str) -> Rule:
    """A variadic op folded left to right (what the unfused kernel does)."""
    def translate(emitter: _Emitter, node: Node, regs: list[int]) -> int:
        result = regs[0]
        for other in regs[1:]:
            result = emitter.emit(opcode, (result, other))
        return result
    return Rule(translate)


def _mean(emitter: _Emitter, node: Node, regs: list[int]) -> int:
    total = _fold("add").translate(emitter, node, regs)
    if len(regs) == 1:
        return total
    return emitter.emit("div", (total, emitter.const(len(regs))))


def _gelu(emitter: _Emitter, node: Node, regs: list[int]) -> int:
    return emitter.emit("gelu_tanh" if node.attrs["approximate"] == "tanh" else "gelu", regs)


def _clip(emitter: _Emitter, node: Node, regs: list[int]) -> int:
    """Both bounds: numpy.clip; one bound: numpy.maximum/minimum (as the
    unfused kernel, which differ on ties of signed zeros); none: x."""
    low, high = _scalar_input(node, 1), _scalar_input(node, 2)
    if low is not None and high is not None:
        return emitter.emit("clip", regs, (low, high))
    if low is not None:
        return emitter.emit("max", (regs[0], emitter.const(low)))
    if high is not None:
        return emitter.emit("min", (regs[0], emitter.const(high)))
    return regs[0]


def _scalar_input(node: Node, index: int) -> float | None:
    """A constant single-value float32 input as a float; None when omitted."""
    value = node.inputs[index] if index < len(node.inputs) else None
    if value is None:
        return None
    if not value.is_constant or value.const.size != 1 or value.const.dtype != _FLOAT32:
        raise _Unsupported(f"{node.op} input {index} is not a float32 constant")
    return float(value.const.reshape(-1)[0])


OPCODE_TABLE: dict[str, Rule] = {
    "Add": _op("add"), "Sub": _op("sub"), "Mul": _op("mul"), "Div": _op("div"), "Pow": _op("pow"),
    "PRelu": _op("prelu"), "Neg": _op("neg"), "Abs": _op("abs"), "Sqrt": _op("sqrt"), "Exp": _op("exp"),
    "Log": _op("log"), "Reciprocal": _op("reciprocal"), "Floor": _op("floor"), "Ceil": _op("ceil"),
    "Erf": _op("erf"), "Tanh": _op("tanh"), "Sigmoid": _op("sigmoid"), "Relu": _op("relu"),
    "Softplus": _op("softplus"), "HardSwish": _op("hard_swish"), "Sin": _op("sin"), "Cos": _op("cos"),
    "LeakyRelu": _op("leaky_relu", "alpha"), "Elu": _op("elu", "alpha"),
    "Selu": _op("selu", "alpha", "gamma"), "HardSigmoid": _op("hard_sigmoid", "alpha", "beta"),
    "Gelu": Rule(_gelu), "Clip": Rule(_clip, operands=(0,)),
    "Sum": _fold("add"), "Max": _fold("max"), "Min": _fold("min"), "Mean": Rule(_mean),
}
"""The one mapping from IR ops to opcodes."""


# ---------------------------------------------------------------- the plan

@dataclass(frozen=True)
class FusedGroup:
    """A group lowered to (an optional anchor step and) one FusedElementwise
    step reading ``inputs`` (body values, in register order) and writing
    ``output``. A Conv anchor's bias moves into the element-wise step (its
    per-channel add costs nothing there, and a pass over the output less in
    the Conv): then the anchor step computes ``anchor_output``, a value of
    its own, and the Conv's real output is never materialised."""

    anchor: Node | None
    anchor_inputs: tuple[Value | None, ...]
    anchor_output: Value | None
    inputs: tuple[Value, ...]
    output: Value
    code: tuple[Instruction, ...]
    rank: int
    inplace: int
    epilogue: tuple[Value | None, tuple[float, float] | None] | None = None
    """(residual, clamp) when the group starts with one FusedConv step, else None."""
    conv_output: Value | None = None
    """What the FusedConv step writes when a FusedElementwise step (``code``
    over it alone, in place) finishes the group: an activation the
    microkernels' epilogue lacks (HardSwish, SiLU, ...) after the Conv's
    bias, residual and clamp. None when the FusedConv step is the group.
    The executor runs a HardSwish or HardSigmoid tail in the FusedConv
    step's epilogue unless this value is fetched or watched
    (runtime.kernels.nn_gate)."""
    views: tuple[Node, ...] = ()
    """Reshapes of the group's inputs (:data:`VIEWS`), lowered as their own
    steps before the group's: the fusion pass puts injective ops in the
    group they touch (a Gemm's output reshaped back to (batch, tokens,
    features) ahead of a GELU, and its result to 2-D for the next Gemm),
    which one FusedElementwise step cannot express, and the whole group then
    ran as one step per node."""
    views_after: tuple[Node, ...] = ()
    """Reshapes of the element-wise result that make the group's output
    (lowered as their own steps after the group's, which then writes
    ``output``, the value they read)."""

    def steps(self, slot_of: Callable[[Value], int], name: str) -> list[Step]:
        """The group's steps: one FusedConv (and the FusedElementwise step
        of its tail), or the anchor's (if any) and the FusedElementwise step."""
        if self.epilogue is not None:
            fused = self.fused_conv_step(slot_of, name)
            return [fused] if self.conv_output is None else [fused, self.step(slot_of, name)]
        anchor = [] if self.anchor is None else [self.anchor_step(slot_of)]
        return anchor + [self.step(slot_of, name)]

    def fused_conv_step(self, slot_of: Callable[[Value], int], name: str) -> Step:
        """The FusedConv step: X, W, the Conv's own bias input and the
        residual (NO_SLOT when absent)."""
        node = self.anchor
        residual, clamp = self.epilogue
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        inputs = tuple(NO_SLOT if v is None else slot_of(v) for v in (*node.inputs[:2], bias, residual))
        attrs = {k: tuple(v) if isinstance(v, list) else v for k, v in node.attrs.items()}
        attrs["clamp"] = clamp
        written = self.output if self.conv_output is None else self.conv_output
        return Step("FusedConv", inputs, (slot_of(written),), attrs, node.name if self.conv_output else name)

    def anchor_step(self, slot_of: Callable[[Value], int]) -> Step:
        """The anchor's own step (bias left out when it moved)."""
        node = self.anchor
        inputs = tuple(NO_SLOT if v is None else slot_of(v) for v in self.anchor_inputs)
        attrs = {k: tuple(v) if isinstance(v, list) else v for k, v in node.attrs.items()}
        return Step(node.op, inputs, (slot_of(self.anchor_output),), attrs, node.name)

    def step(self, slot_of: Callable[[Value], int], name: str) -> Step:
        """The FusedElementwise step, on the slots ``slot_of`` gives."""
        attrs = {"code": self.code, "rank": self.rank, "inplace": self.inplace}
        return Step("FusedElementwise", tuple(slot_of(v) for v in self.inputs), (slot_of(self.output),),
                    attrs, name)


def plan_fused_group(node: Node) -> FusedGroup | None:
    """The lowering of a ``Fused`` node as one FusedElementwise step (after
    its anchor's step, if any), or None when the group cannot be expressed."""
    try:
        return _plan(node)
    except _Unsupported:
        return None


def _plan(node: Node) -> FusedGroup:
    body = node.attrs["body"]
    if len(body.outputs) != 1:
        raise _Unsupported("several outputs")
    output = body.outputs[0]
    anchor, tail = _split_anchor(node, body.nodes)
    views, tail = _leading_views(tail, anchor)
    views_after = []
    while anchor is None and output.producer in tail and output.producer.op in VIEWS:
        views_after.insert(0, output.producer)
        output = output.producer.inputs[0]
    tail = [n for n in tail if n not in views_after]
    nodes = _reaching(tail, output)
    if anchor is not None and not any(user in nodes for user in anchor.outputs[0].users):
        raise _Unsupported("the element-wise nodes do not read the anchor's output")
    anchor_inputs, anchor_output, bias = _anchor_parts(anchor)
    first = () if anchor is None else (anchor_output,) + (() if bias is None else (bias,))
    leaves = _leaves(nodes, first, () if bias is None else (anchor.outputs[0],))
    emitter = _Emitter(len(leaves))
    registers = {id(v): i for i, v in enumerate(leaves)}
    if bias is not None:
        registers[id(anchor.outputs[0])] = emitter.emit("add", (0, 1))
    for inner in nodes:
        registers[id(inner.outputs[0])] = _translate(emitter, inner, registers)
    result = registers[id(output)]
    epilogue = _conv_epilogue(anchor, emitter.code, leaves, bias is not None, result, output)
    if epilogue is not None:
        (residual, clamp), tail = epilogue
        if tail:  # FusedConv, then the rest over its output alone, in place
            # FusedConv's output is the anchor's own value (fetchable, observable by calibration)
            # unless a residual or clamp follows the Conv in its epilogue
            conv_output = anchor.outputs[0] if residual is None and clamp is None else \
                Value(f"{anchor.outputs[0].name}/epilogue", output.type)
            return FusedGroup(anchor, anchor_inputs, anchor_output, (conv_output,), output,
                              _allocate(tail, 1, result), output.type.rank, 0, (residual, clamp), conv_output)
        return FusedGroup(anchor, anchor_inputs, anchor_output, tuple(leaves), output, (), output.type.rank, -1,
                          (residual, clamp))
    code = _allocate(emitter.code, len(leaves), result)
    inplace = 0 if anchor is not None and _private(anchor.outputs[0], nodes, output) else -1
    return FusedGroup(anchor, anchor_inputs, anchor_output, tuple(leaves), output, code, output.type.rank, inplace,
                      views=views, views_after=tuple(views_after))


def _conv_epilogue(anchor: Node | None, code: list[Instruction], leaves: list[Value], moved_bias: bool,
                   result: int, output: Value):
    """((residual, clamp), tail) when the SSA ``code`` starts with what
    FusedConv computes after a float32 Conv: its moved bias (``add(0, 1)``),
    then at most one add of a leaf of the output's static shape, then at most
    one clamp (relu, clip, or max / min with a constant); ``tail`` is the
    rest, renumbered to read the FusedConv's output as register 0 (empty
    when FusedConv computes it all), and must read nothing but that output
    and constants. None otherwise."""
    if anchor is None or anchor.op != "Conv" or output.type.dtype != _FLOAT32 or not output.type.is_static:
        return None
    current, residual, clamp, consts = 0, None, None, {}
    steps = list(code)
    if moved_bias:
        if not steps or steps[0][0] != "add" or steps[0][2] != (0, 1):
            return None
        current = steps.pop(0)[1]
    index = 0
    for index, (opcode, dst, sources, params) in enumerate(steps):  # noqa: B007 (index read after the loop)
        other = [s for s in sources if s != current]
        if opcode == "const":
            consts[dst] = params[0]
            continue
        if current not in sources or len(sources) - len(other) != 1 or clamp is not None:
            break
        if opcode == "add" and residual is None and other[0] < len(leaves) and other[0] >= 1 + moved_bias \
                and leaves[other[0]].type.shape == output.type.shape:
            residual = leaves[other[0]]
        elif opcode in ("relu", "clip"):
            clamp = (0.0, math.inf) if opcode == "relu" else (params[0], params[1])
        elif opcode in ("max", "min") and other[0] in consts:
            clamp = (consts[other[0]], math.inf) if opcode == "max" else (-math.inf, consts[other[0]])
        else:
            break
        current = dst
    else:
        index = len(steps)
    if len(leaves) != 1 + moved_bias + (residual is not None):
        return None
    if clamp is not None and any(math.isnan(v) for v in clamp):
        return None
    tail = _tail(steps[index:], current, consts)
    if tail is None or (not tail and current != result):
        return None
    return (residual, clamp), tail


def _tail(code: list[Instruction], current: int, consts: dict[int, float]) -> list[Instruction] | None:
    """``code`` reading register ``current`` as register 0 (the constants it
    reads from before it re-emitted first; a register number is kept), or
    None when it reads another value computed before it."""
    if not code:
        return []
    defined = {current} | {dst for _, dst, _, _ in code}
    read = {s for _, _, sources, _ in code for s in sources}
    if any(s not in defined and s not in consts for s in read):
        return None
    prologue = [("const", s, (), (consts[s],)) for s in sorted(read - defined)]
    renumber = {current: 0}
    return [(op, renumber.get(dst, dst), tuple(renumber.get(s, s) for s in sources), params)
            for op, dst, sources, params in prologue + code]


def _anchor_parts(anchor: Node | None) -> tuple[tuple, Value | None, Value | None]:
    """(the anchor step's inputs, the value it computes, the bias moved into
    the element-wise step as a [C, 1, ...] constant, or None)."""
    if anchor is None:
        return (), None, None
    inputs, output = tuple(anchor.inputs), anchor.outputs[0]
    bias = inputs[2] if anchor.op in BIAS_MOVABLE and len(inputs) > 2 else None
    if bias is None or not bias.is_constant or bias.const.dtype != _FLOAT32 or output.type.rank < 2:
        return inputs, output, None
    channels = bias.const.reshape(-1, *(1,) * (output.type.rank - 2))
    moved = Value(f"{bias.name}/channels", TensorType.of(channels), const=channels)
    without = Value(f"{output.name}/without_bias", output.type)
    return inputs[:2], without, moved


def _split_anchor(node: Node, nodes: list[Node]) -> tuple[Node | None, list[Node]]:
    """The anchor node (first in the body) and the nodes after it."""
    anchor = node.attrs.get("anchor", "")
    if not anchor:
        return None, list(nodes)
    if anchor not in ANCHORS or not nodes or nodes[0].op != anchor or len(nodes[0].outputs) != 1:
        raise _Unsupported(f"anchor {anchor!r}")
    if nodes[0].outputs[0].type.dtype != _FLOAT32:
        raise _Unsupported("anchor output is not float32")
    return nodes[0], list(nodes[1:])


def _leading_views(nodes: list[Node], anchor: Node | None) -> tuple[tuple[Node, ...], list[Node]]:
    """(:data:`VIEWS` nodes reading only the group's inputs and constants,
    the other nodes) of a group without an anchor."""
    if anchor is not None:
        return (), nodes
    produced = {id(v) for n in nodes for v in n.outputs}
    views = tuple(n for n in nodes if n.op in VIEWS and not any(v is not None and id(v) in produced
                                                                for v in n.inputs))
    return views, [n for n in nodes if n not in views]


def _reaching(nodes: list[Node], output: Value) -> list[Node]:
    """The nodes the output depends on, in order; all must be translatable."""
    if output.producer not in nodes:
        raise _Unsupported("the output is not computed by the element-wise nodes")
    members = set(nodes)
    needed, pending = set(), [output.producer]
    while pending:
        current = pending.pop()
        if current in needed:
            continue
        needed.add(current)
        pending.extend(v.producer for v in _operands(current) if v.producer in members)
    return [n for n in nodes if n in needed]


def _operands(node: Node) -> list[Value]:
    """The inputs of ``node`` read as tensors (checked float32)."""
    rule = OPCODE_TABLE.get(node.op)
    if rule is None:
        raise _Unsupported(f"op {node.op}")
    indices = range(len(node.inputs)) if rule.operands is None else rule.operands
    values = [node.inputs[i] for i in indices if i < len(node.inputs)]
    if any(v is None or v.type.dtype != _FLOAT32 for v in values):
        raise _Unsupported(f"{node.op} has an omitted or non-float32 operand")
    if len(node.outputs) != 1 or node.outputs[0].type.dtype != _FLOAT32:
        raise _Unsupported(f"{node.op} output is not one float32 value")
    return values


def _leaves(nodes: list[Node], first: tuple[Value, ...], computed: tuple[Value, ...] = ()) -> list[Value]:
    """The kernel's inputs: ``first``, then every tensor operand the nodes
    read but do not compute (nor are in ``computed``), except single-value
    constants (loaded by ``const`` instructions)."""
    produced = {id(v) for n in nodes for v in n.outputs} | {id(v) for v in computed}
    leaves = list(first)
    seen = {id(v) for v in leaves}
    for node in nodes:
        for value in _operands(node):
            if id(value) in produced or id(value) in seen or _is_scalar_constant(value):
                continue
            seen.add(id(value))
            leaves.append(value)
    if len(leaves) > MAX_INPUTS:
        raise _Unsupported(f"{len(leaves)} inputs")
    return leaves


def _is_scalar_constant(value: Value) -> bool:
    return value.is_constant and value.const.size == 1


def _translate(emitter: _Emitter, node: Node, registers: dict[int, int]) -> int:
    """Emit ``node``'s instructions; returns its output's virtual register."""
    regs = []
    for value in _operands(node):
        if id(value) not in registers:  # a single-value constant, loaded once
            registers[id(value)] = emitter.const(float(value.const.reshape(-1)[0]))
        regs.append(registers[id(value)])
    return OPCODE_TABLE[node.op].translate(emitter, node, regs)


def _private(value: Value, nodes: list[Node], output: Value) -> bool:
    """Whether only the group's nodes read ``value`` and it has the output's
    static shape, so the FusedElementwise step may overwrite it."""
    members = set(nodes)
    same_shape = value.type.shape == output.type.shape and value.type.is_static
    return same_shape and all(user in members for user, _ in value.uses)


def _allocate(code: list[Instruction], leaves: int, result: int) -> tuple[Instruction, ...]:
    """Map virtual registers to at most MAX_REGISTERS physical ones; leaves
    keep theirs, and a register is reused once its value's last reader ran.
    A destination never shares a register with its instruction's sources:
    the kernel's loops vectorise only over distinct rows."""
    if not code or code[-1][1] != result:
        raise _Unsupported("the result is not computed by the last instruction")
    last_use = {source: i for i, (_, _, sources, _) in enumerate(code) for source in sources}
    physical = {v: v for v in range(leaves)}
    free = set(range(leaves, MAX_REGISTERS))
    allocated = []
    for index, (opcode, dst, sources, params) in enumerate(code):
        mapped = tuple(physical[s] for s in sources)
        if not free:
            raise _Unsupported(f"more than {MAX_REGISTERS} live registers")
        physical[dst] = min(free)
        free.discard(physical[dst])
        free.update(physical[s] for s in set(sources) if last_use[s] == index)
        allocated.append((opcode, physical[dst], mapped, params))
    return tuple(allocated)
