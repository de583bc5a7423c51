"""The op registry: one entry per op, holding its arity, attributes with their
defaults, its type rule and its fusion pattern kind.

IR ops carry ONNX names and the semantics of the newest ONNX opset (the
frontend upgrades older forms); ops Tessera adds itself use other names. An
op's attributes are exactly those its CPU kernel reads, so lowering to the
kernel program copies them unchanged.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ir.errors import IRError, ShapeError
from ir.types import TensorType

if TYPE_CHECKING:
    from ir.graph import Node


class Pattern(enum.IntEnum):
    """Fusion pattern kinds (TVM's lattice: combining two kinds takes the max)."""

    ELEMWISE = 0
    BROADCAST = 1
    INJECTIVE = 2
    REDUCTION = 3
    OUT_ELEMWISE_FUSABLE = 4
    OPAQUE = 8


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
"""Attribute default meaning "the attribute must be given"."""


@dataclass(frozen=True)
class Derived:
    """An attribute default computed from the node's input types (say, a
    window's strides: one per spatial axis of input 0)."""

    fn: Callable[[Sequence[TensorType | None]], Any]
    doc: str = ""

    def __repr__(self) -> str:
        return f"<derived: {self.doc}>" if self.doc else "<derived>"

INFINITE = None
"""Upper arity bound meaning "any number"."""


class InferContext:
    """What a type rule sees of a node: input types, constant inputs, attributes."""

    def __init__(self, node: Node, num_outputs: int | None):
        self.node = node
        self.op = node.op
        self.attrs = node.attrs
        self.num_outputs = num_outputs
        self.types: list[TensorType | None] = [v.type if v is not None else None for v in node.inputs]

    def __len__(self) -> int:
        return len(self.types)

    def type(self, index: int) -> TensorType:
        """The type of input ``index``; a clear error when it was omitted."""
        if index >= len(self.types) or self.types[index] is None:
            raise self.error(f"input {index} is required")
        return self.types[index]

    def shape(self, index: int) -> tuple:
        return self.type(index).shape

    def has(self, index: int) -> bool:
        return index < len(self.types) and self.types[index] is not None

    def const(self, index: int) -> np.ndarray | None:
        """The value of input ``index`` when it is a constant, else None."""
        if not self.has(index):
            return None
        return self.node.inputs[index].const

    def attr(self, name: str) -> Any:
        return self.attrs[name]

    def error(self, message: str) -> ShapeError:
        return ShapeError(message, self.node.op, self.node.name)


TypeRule = Callable[[InferContext], Sequence[TensorType]]


@dataclass(frozen=True)
class OpDef:
    """The registry entry of one op."""

    name: str
    infer: TypeRule
    pattern: Pattern
    inputs: tuple[int, int | None] = (1, 1)
    outputs: tuple[int, int | None] = (1, 1)
    attrs: dict[str, Any] = field(default_factory=dict)
    doc: str = ""

    def accepts_inputs(self, count: int) -> bool:
        low, high = self.inputs
        return count >= low and (high is None or count <= high)

    def accepts_outputs(self, count: int) -> bool:
        low, high = self.outputs
        return count >= low and (high is None or count <= high)


_OPS: dict[str, OpDef] = {}


def register_op(name: str, infer: TypeRule, pattern: Pattern, *, inputs=(1, 1), outputs=(1, 1),
                attrs: dict[str, Any] | None = None, doc: str = "") -> OpDef:
    """Register an op once; a second registration of the same name is a bug."""
    if name in _OPS:
        raise IRError(f"op {name!r} is registered twice")
    inputs = (inputs, inputs) if isinstance(inputs, int) else tuple(inputs)
    outputs = (outputs, outputs) if isinstance(outputs, int) else tuple(outputs)
    opdef = OpDef(name, infer, pattern, inputs, outputs, dict(attrs or {}), doc)
    _OPS[name] = opdef
    return opdef


def get_op(name: str) -> OpDef:
    _load_ops()
    try:
        return _OPS[name]
    except KeyError:
        raise IRError(f"op {name!r} is not registered") from None


def is_registered(name: str) -> bool:
    _load_ops()
    return name in _OPS


def registered_ops() -> list[str]:
    _load_ops()
    return sorted(_OPS)


def with_defaults(op: str, attrs: dict[str, Any], node_name: str = "",
                  input_types: Sequence[TensorType | None] | None = None) -> dict[str, Any]:
    """``attrs`` completed with the op's defaults (derived ones need
    ``input_types``); unknown or missing required attributes are errors
    naming the node."""
    opdef = get_op(op)
    unknown = set(attrs) - set(opdef.attrs)
    if unknown:
        raise ShapeError(f"unknown attribute(s) {sorted(unknown)}; {op} takes {sorted(opdef.attrs)}", op, node_name)
    full = {}
    for key, default in opdef.attrs.items():
        if key in attrs:
            full[key] = attrs[key]
        elif default is REQUIRED or (isinstance(default, Derived) and input_types is None):
            raise ShapeError(f"missing required attribute {key!r}", op, node_name)
        elif isinstance(default, Derived):
            full[key] = _derive(default, input_types, op, key, node_name)
        else:
            full[key] = default
    return full


def _derive(default: Derived, types: Sequence[TensorType | None], op: str, key: str, node_name: str) -> Any:
    try:
        return default.fn(types)
    except (IndexError, AttributeError, TypeError):
        raise ShapeError(f"attribute {key!r} is not given and cannot be derived from the inputs "
                         f"{[str(t) for t in types]}", op, node_name) from None


def infer_types(node: Node, num_outputs: int | None = None) -> list[TensorType]:
    """Run the op's type rule on a node whose inputs are set."""
    opdef = get_op(node.op)
    if not opdef.accepts_inputs(len(node.inputs)):
        raise ShapeError(f"takes {_arity(opdef.inputs)} inputs, got {len(node.inputs)}", node.op, node.name)
    types = list(opdef.infer(InferContext(node, num_outputs)))
    if not opdef.accepts_outputs(len(types)):
        raise ShapeError(f"type rule gave {len(types)} outputs, expected {_arity(opdef.outputs)}",
                         node.op, node.name)
    return types


def _arity(bounds: tuple[int, int | None]) -> str:
    low, high = bounds
    if high is None:
        return f"at least {low}"
    return str(low) if low == high else f"{low} to {high}"


_loaded = False


def _load_ops() -> None:
    """Import the op definition modules (they register themselves)."""
    global _loaded
    if not _loaded:
        _loaded = True
        import ir.ops  # noqa: F401
