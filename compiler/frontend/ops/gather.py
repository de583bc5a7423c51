"""ONNX import handlers: gather and scatter.

Gather, GatherElements, GatherND, ScatterElements, ScatterND, OneHot and
Compress keep their ONNX form (the default handler). Only the deprecated
Scatter (opsets 9-10) needs upgrading: it is ScatterElements without a
reduction.
"""
from __future__ import annotations

from compiler.frontend.context import NodeContext, handler


@handler("Scatter")
def _scatter(ctx: NodeContext) -> None:
    unknown = set(ctx.attrs) - {"axis"}
    if unknown:
        raise ctx.unsupported(f"attribute(s) {sorted(unknown)} are not supported")
    ctx.emit_final("ScatterElements", ctx.inputs, {"axis": ctx.attr("axis", 0), "reduction": "none"})
