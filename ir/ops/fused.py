"""Op definitions: the structural ops passes create.

``Fused`` holds one fusion group (FuseOps): its body is a subgraph whose
inputs are bound, in order, to the node's inputs, and whose outputs are the
node's outputs; weights live in the body as constants. ``pattern`` is the
group's combined pattern kind and ``anchor`` the op it is built around (a
Conv, a Gemm...), "" for a group without one.

``Segment`` holds one partition segment (the partition pass): a body run on
one device, ``device`` naming it ("FPGA", "CPU").
"""
from __future__ import annotations

from ir.graph import Graph
from ir.registry import REQUIRED, InferContext, Pattern, register_op
from ir.types import TensorType


def _body_types(ctx: InferContext) -> list[TensorType]:
    body: Graph = ctx.attrs["body"]
    if not isinstance(body, Graph):
        raise ctx.error(f"body must be a Graph, got {type(body).__name__}")
    if len(body.inputs) != len(ctx.types):
        raise ctx.error(f"has {len(ctx.types)} inputs, its body takes {len(body.inputs)}")
    for i, (formal, actual) in enumerate(zip(body.inputs, ctx.types)):
        if actual is None or formal.type != actual:
            raise ctx.error(f"input {i} has type {actual}, body input %{formal.name} is {formal.type}")
    return [v.type for v in body.outputs]


register_op("Fused", _body_types, Pattern.OPAQUE, inputs=(0, None), outputs=(1, None),
            attrs={"body": REQUIRED, "pattern": REQUIRED, "anchor": ""},
            doc="One fusion group: a subgraph run as one unit.")
register_op("Segment", _body_types, Pattern.OPAQUE, inputs=(0, None), outputs=(1, None),
            attrs={"body": REQUIRED, "device": REQUIRED},
            doc="One partition segment: a subgraph run on one device.")
