"""An ONNX model seen as a network of layers, and which device runs each.

What a layer-level API needs from the compiler without compiling: the
model's layers (ONNX nodes, named as the importer names them, in graph
order, which ONNX keeps topological) with their type, parameters, weights
and neighbours; and, per layer, which devices can run it and which one the
HETERO fallback policy picks (passes/affinity.py's choose_device, the
policy the compile itself applies, run on the simplified graph). The Inference-Engine facade
(runtime/inference_engine) reads these; nothing here knows its names.

A layer that simplification folds away (a Constant, a BatchNormalization
folded into its convolution, an Identity) has no node left to place: its
device is None, and any device "supports" it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from compiler.frontend import import_onnx
from compiler.frontend.attributes import convert_attribute
from compiler.frontend.model import OnnxModel
from ir.graph import onnx_name
from passes.affinity import (
    accelerator_refusal,
    auto_linear,
    check_affinities,
    choose_device,
    layer_support,
    parse_fallback,
)
from passes.infra import PassContext
from passes.target import Support, make_target
from runtime.hardware import ACCELERATOR, HOST, HardwareConfig

WEIGHTED = {"Conv": ("weights", "biases"), "ConvTranspose": ("weights", "biases"), "Gemm": ("weights", "biases"),
            "MatMul": ("weights",), "BatchNormalization": ("weights", "biases", "mean", "variance"),
            "InstanceNormalization": ("weights", "biases"), "PRelu": ("weights",)}
"""Blob names of a layer's constant inputs 1, 2, ... (the others by tensor name)."""


def layer_name(node: onnx.NodeProto, index: int) -> str:
    """The name Tessera gives an ONNX node: its own, or ``<op>_<index>``
    when it has none (the importer's rule, compiler/frontend/importer.py)."""
    return node.name or f"{node.op_type}_{index}"


@dataclass
class NetworkLayer:
    """One ONNX node: ``inputs``/``outputs`` are tensor names, ``params``
    its attributes, ``weights`` its constant inputs by blob name."""

    name: str
    type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)


def network_layers(model: OnnxModel) -> list[NetworkLayer]:
    """The model's layers in graph order."""
    graph = model.proto.graph
    constants = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output and node.attribute:
            constants.setdefault(node.output[0], node)
    layers = []
    for index, node in enumerate(graph.node):
        name = layer_name(node, index)
        params = {}
        for attr in node.attribute:
            try:
                params[attr.name] = convert_attribute(attr, {"node": name})
            except Exception:  # noqa: BLE001 - a parameter Tessera cannot read is shown raw
                params[attr.name] = onnx.helper.get_attribute_value(attr)
        blobs = WEIGHTED.get(node.op_type, ())
        weights = {}
        for position, tensor in enumerate(node.input):
            if position == 0 or tensor not in constants:
                continue
            key = blobs[position - 1] if position - 1 < len(blobs) else tensor
            weights[key] = _constant(constants[tensor])
        layers.append(NetworkLayer(name, node.op_type, tuple(node.input), tuple(node.output), params, weights))
    return layers


def _constant(source) -> np.ndarray | None:
    if isinstance(source, onnx.TensorProto):
        return numpy_helper.to_array(source)
    for attr in source.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
    return None


@dataclass(frozen=True)
class LayerQuery:
    """Where a layer can run: each device's Support (for a layer folded
    away, supported everywhere), and the device the fallback policy picks
    (None for a layer folded away)."""

    supports: dict[str, Support]
    device: str | None


def query_network(model: str | os.PathLike | bytes | onnx.ModelProto, fallback: str, *,
                  shapes: Mapping[str, Sequence[int]] | None = None, hwlinear: bool | None = None,
                  config: HardwareConfig | None = None) -> dict[str, LayerQuery]:
    """Per ONNX layer name: which of ``fallback``'s devices ("HETERO:FPGA,CPU",
    "FPGA", ...) can run it (every node simplification left of it) and
    which one the policy (passes.affinity.choose_device, then
    passes.affinity.accelerator_refusal) picks
    (OpenVINO's QueryNetwork and SetAffinity)."""
    from compiler.pipeline import SIMPLIFY

    devices = parse_fallback(fallback)
    options = {"target.hardware": config or HardwareConfig(), "target.hwlinear": hwlinear}
    graph = import_onnx(model, shapes=shapes)
    proto = OnnxModel(model).proto
    with PassContext(options=options) as ctx:
        graph = SIMPLIFY(graph)
        targets = [make_target(name, ctx) for name in devices]
        linear = auto_linear(ctx)
    nodes: dict[str, list] = {}
    for node in graph.nodes:
        nodes.setdefault(onnx_name(node.name), []).append(node)
    out, placed = {}, {}
    for index, node in enumerate(proto.graph.node):
        name = layer_name(node, index)
        mine = nodes.get(name, [])
        supports = {target.name: layer_support(mine, target) for target in targets}
        device = choose_device(mine, targets)[0] if mine else None
        if device == ACCELERATOR and accelerator_refusal(mine, graph, placed.get, targets, linear) is not None:
            device = HOST
        placed.update(dict.fromkeys(mine, device))
        out[name] = LayerQuery(supports, device)
    return out


def placement(queries: Mapping[str, LayerQuery], fallback: str, layers: Iterable[str]) -> dict[str, str]:
    """Layer -> the device the fallback policy gives it, for each of
    ``layers``: its query's device; the first device for a layer with
    nothing to place (a graph input, a layer simplification folded away);
    a layer no device can run is left out."""
    first = parse_fallback(fallback)[0]
    placed = {}
    for name in layers:
        query = queries.get(name)
        if query is None or query.device is not None or any(query.supports.values()):
            placed[name] = query.device if query is not None and query.device is not None else first
    return placed


def manual_affinities(given: Mapping[str, str], layers: Iterable[str], fallback: str) -> dict[str, str]:
    """The user's affinities by layer name, checked by the policy
    (passes.affinity.check_affinities) against ``fallback``'s devices."""
    return check_affinities(given, layers, parse_fallback(fallback))
