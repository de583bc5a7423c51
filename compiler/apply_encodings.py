"""An encodings file applied to the simplified float graph: the pass
:func:`apply_encodings` (``quant.encodings``: a file's path, a document or
an Encodings), first of the quantization passes.

The heads the file records as split into channel groups are split the same
way (so that the groups' grids find their tensors); its weight grids go
onto the weights; its activation grids, bias corrections, weight roundings,
16-bit layers and host epilogues become the quantize pass's options; the tensors it keeps
in float keep their producers on the CPU. The grids the file gives are not
measured again (head grids are the file's too); an empty file runs the
model in float on the CPU."""
from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np

from compiler.errors import QuantizationError
from compiler.quantized import BIAS_CORRECTIONS, HEAD_GROUPS, HOST_OUTPUTS, WEIGHT_ROUNDINGS, QuantizationWarning
from ir.graph import Graph, onnx_name, walk
from passes.infra import PassContext, PassError, graph_pass, register_option
from passes.quant.encodings import Encodings, import_encodings
from passes.quant.head_grids import apply_groups, find_heads
from passes.quant.report import report_of
from passes.quant.weight_rounding import decode_rounding

register_option("quant.encodings", object, None,
                "quantization parameters to use instead of calibration: an AIMET encodings file's path, "
                "document or Encodings (compiler/apply_encodings.py)")


@graph_pass(opt_level=0)
def apply_encodings(graph: Graph, ctx: PassContext) -> Graph:
    """The file's recorded head groups, weight grids and settings applied."""
    given = ctx.option("quant.encodings")
    if given is None:
        return graph
    encodings = given if isinstance(given, Encodings) else import_encodings(given)
    ctx.options["quant.head_grids"] = False  # the file's groups, not measured ones
    if encodings.quantizer_args.get(HEAD_GROUPS):
        convs, _ = find_heads(graph)
        report_of(ctx).head_grids = apply_groups(graph, convs, _given_groups(convs, encodings), [])
    if encodings.is_empty:
        ctx.options["partition.fallback"] = "HETERO:CPU"
    else:
        floats = _apply(graph, encodings, ctx.options)
        ctx.options["quant.float_layers"] = (*ctx.option("quant.float_layers"), *floats)
        ctx.options["quant.host_outputs"] = tuple(dict.fromkeys((*ctx.option("quant.host_outputs"),
                                                                *given_host_outputs(encodings))))
    return graph


def given_host_outputs(encodings: Encodings) -> list[str]:
    """The host epilogues an encodings file records (ONNX node names), checked to be a list of names."""
    given = encodings.quantizer_args.get(HOST_OUTPUTS, [])
    if not isinstance(given, list) or not all(isinstance(name, str) for name in given):
        raise QuantizationError(f"encodings quantizer_args {HOST_OUTPUTS!r} must be a list of ONNX node names, "
                                f"got {given!r}")
    return given


def _given_groups(convs, encodings: Encodings) -> dict[str, list[np.ndarray]]:
    """The recorded groups, checked: each names a head convolution of the
    model and cuts its output channels into groups, each channel once."""
    given = encodings.quantizer_args[HEAD_GROUPS]
    if not isinstance(given, Mapping):
        raise QuantizationError(f"encodings quantizer_args {HEAD_GROUPS!r} must map convolution names to channel "
                                f"groups, got a {type(given).__name__}")
    heads = {onnx_name(c.name): c for c in convs}
    chosen = {}
    for name, groups in given.items():
        where = f"encodings quantizer_args {HEAD_GROUPS!r}, entry {name!r}"
        if name not in heads:
            raise QuantizationError(f"{where}: the model has no head convolution of that name (a convolution "
                                    "whose output is a model output)")
        channels = heads[name].outputs[0].type.shape[1]
        try:
            cut = [np.asarray(g, np.int64).reshape(-1) for g in groups]
        except (TypeError, ValueError):
            raise QuantizationError(f"{where}: groups must be lists of channel numbers") from None
        if not cut or any(g.size == 0 for g in cut) or sorted(np.concatenate(cut).tolist()) != list(range(channels)):
            raise QuantizationError(f"{where}: the groups must cover the {channels} output channels, each once")
        chosen[heads[name].name] = cut
    return chosen


def _apply(graph: Graph, encodings: Encodings, options: dict) -> list[str]:
    """Given grids into the options and onto the weights; returns the nodes
    whose outputs the file keeps in float."""
    constants = {v.name: v for v in graph.constants()}
    producers = {v.name: n for n in graph.nodes for v in n.outputs}
    given, unknown = {}, []
    for name, params in encodings.params.items():
        if name in encodings.weights:
            if name in constants:
                constants[name].quant = params
            else:
                unknown.append(name)
        elif name in producers or name in {v.name for v in graph.inputs}:
            given[name] = params
        else:
            unknown.append(name)
    if unknown:
        warnings.warn(f"{len(unknown)} tensors of the encodings file are not in the model as Tessera compiles "
                      f"it (folded away or misnamed), ignored: {sorted(unknown)[:8]}", QuantizationWarning,
                      stacklevel=3)
    options["quant.given"] = {**options.get("quant.given", {}), **given}
    options["quant.bias_corrections"] = dict(encodings.quantizer_args.get(BIAS_CORRECTIONS, {}))
    options["quant.weight_roundings"] = given_roundings(encodings.quantizer_args.get(WEIGHT_ROUNDINGS, {}))
    options["quant.layer_precision"] = {**_wide_layers(graph, encodings, options["quant.mode"]),
                                        **options["quant.layer_precision"]}
    return sorted({producers[t].name for t in encodings.float_tensors if t in producers})


def given_roundings(entries) -> dict[str, np.ndarray]:
    """An encodings file's weight roundings, decoded (by weight name)."""
    if not isinstance(entries, Mapping):
        raise QuantizationError(f"encodings quantizer_args {WEIGHT_ROUNDINGS!r} must map weight names to "
                                f"code differences, got a {type(entries).__name__}")
    try:
        return {name: decode_rounding(text, f"encodings quantizer_args {WEIGHT_ROUNDINGS!r}, entry {name!r}")
                for name, text in entries.items()}
    except PassError as exc:
        raise QuantizationError(str(exc)) from None


def _wide_layers(graph: Graph, encodings: Encodings, mode: str) -> dict[str, str]:
    """The layers a file gives 16-bit grids (their output or their weight):
    16-bit layers, as when the file was written (a target SNR's or a
    sensitivity analysis' decisions survive the round trip; the user's own
    layer_precision still wins)."""
    wide = "radix16" if mode.startswith("radix") else "int16"
    names = {name for name, params in encodings.params.items() if np.dtype(params.dtype).itemsize == 2}
    layers = {}
    for _, node in walk(graph):
        if any(v.name in names for v in node.outputs) or any(v is not None and v.name in names and v.const is not None
                                                            for v in node.inputs):  # None: an omitted optional input
            layers[onnx_name(node.name)] = wide
    return layers
