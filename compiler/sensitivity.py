"""Sensitivity analysis (``quant.sensitivity=k``): the k layers whose own
error is the largest (their isolated SNR in the layer-wise comparison with
the float model, on ``quant.sensitivity_samples`` calibration inputs) move
to 16 bits (radix16 in a radix model), a layer with a lookup table too (a
table read by 16-bit codes interpolates, docs/isa.md). The pass decides the quantize pass's option
``quant.layer_precision``; the graph is left as it is."""
from __future__ import annotations

import warnings

from compiler.quantized import QuantizationWarning
from ir.graph import Graph
from passes.infra import PassContext, graph_pass, register_option
from passes.quant.calibration_data import context_batches
from passes.quant.report import report_of

register_option("quant.sensitivity", int, 0, "layers a sensitivity analysis moves to 16 bits (compiler/sensitivity.py)")
register_option("quant.sensitivity_samples", int, 8, "calibration inputs the sensitivity analysis measures on")


@graph_pass(opt_level=0)
def promote_sensitive(graph: Graph, ctx: PassContext) -> Graph:
    """The ``quant.sensitivity`` layers that add the most error, to 16 bits."""
    k = ctx.option("quant.sensitivity")
    if k <= 0:
        return graph
    first = ctx.option("quant.trials").quantize(graph, ctx.options)
    feeds = list(context_batches(graph, ctx, ctx.option("quant.sensitivity_samples")))
    report = first.compare(feeds)
    candidates = [e for e in report.worst(len(report.layers)) if e.onnx_nodes]
    chosen = [e.onnx_nodes[0] for e in candidates[:k]]
    if len(chosen) < k:
        warnings.warn(f"sensitivity analysis could promote {len(chosen)} of the {k} layers asked for",
                      QuantizationWarning, stacklevel=3)
    wide = "radix16" if ctx.option("quant.mode").startswith("radix") else "int16"
    ctx.options["quant.layer_precision"] = {**ctx.option("quant.layer_precision"), **{name: wide for name in chosen}}
    report_of(ctx).promoted += chosen
    return graph
