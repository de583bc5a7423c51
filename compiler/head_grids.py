"""Output grids per quantity for detector heads, applied to a float graph
before quantization (``quantize_model(head_grids=True)``, the default): the
heads' channel statistics measured on the calibration inputs, and the
rewrites of passes/quant/head_grids.py where they pay."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from compiler.equalization import channel_statistics, statistics_feeds
from compiler.errors import QuantizationError
from ir.graph import Graph, onnx_name
from passes.quant.head_grids import GAIN, channel_groups, find_heads, grid_cost, join_on_host, split_head

HEAD_GROUPS = "tessera_head_groups"
"""The quantizer_args entry of an encodings export holding the heads split
into channel groups, by ONNX convolution name: a re-import splits them the
same way, so that the groups' grids in the file find their tensors."""


@dataclass(frozen=True)
class HeadGrids:
    """What the rewrite did: per split convolution (ONNX name), its groups
    of output channels; the Concats joined on the host."""

    split: dict[str, list[list[int]]]
    joined: list[str]

    def __bool__(self) -> bool:
        return bool(self.split or self.joined)

    def summary(self) -> str:
        lines = [f"head grids: {name} in {len(groups)} channel groups on their own grids "
                 f"({'; '.join(','.join(map(str, g)) for g in groups)})" for name, groups in self.split.items()]
        lines += [f"head grids: {name} joins its inputs on the host, each on its own grid" for name in self.joined]
        return "\n".join(lines)


def apply_head_grids(graph: Graph, calibration_data, given: dict[str, list[list[int]]] | None = None) -> HeadGrids:
    """Rewrite ``graph`` in place. ``given`` (ONNX conv name -> channel
    groups, as an encodings file records them) splits those convolutions
    as recorded instead of measuring."""
    convs, concats = find_heads(graph)
    if given is not None:
        chosen, joined = _given(convs, given), []
    else:
        chosen, joined = _measure(graph, convs, concats, calibration_data)
    for conv in convs:
        if conv.name in chosen:
            split_head(graph, conv, chosen[conv.name])
    for concat in joined:
        join_on_host(concat)
    return HeadGrids({onnx_name(name): [g.tolist() for g in groups] for name, groups in chosen.items()},
                     [onnx_name(c.name) for c in joined])


def _given(convs, given) -> dict:
    """The recorded groups, checked: each names a head convolution of the
    model and cuts its output channels into groups, each channel once."""
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


def _measure(graph: Graph, convs, concats, calibration_data) -> tuple[dict, list]:
    if not convs and not concats:
        return {}, []
    names = {c.outputs[0].name for c in convs} | {v.name for c in concats for v in c.inputs if not v.is_constant}
    stats = channel_statistics(graph, names, statistics_feeds(graph, calibration_data))
    chosen = {}
    for conv in convs:
        s = stats[conv.outputs[0].name]
        groups = channel_groups(s.low, s.high, s.power)
        if len(groups) > 1:
            chosen[conv.name] = groups
    joined = [c for c in concats if all(not v.is_constant for v in c.inputs) and _pays(c, stats)]
    return chosen, joined


def _pays(concat, stats) -> bool:
    """Own grids for the Concat's inputs divide the summed noise-to-signal ratio by GAIN or more."""
    parts = [stats[v.name] for v in concat.inputs]
    low, high, power = (np.concatenate([getattr(p, f) for p in parts]) for f in ("low", "high", "power"))
    sizes = np.cumsum([0] + [len(p.low) for p in parts])
    own = [np.arange(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
    return grid_cost(low, high, power, [np.arange(len(low))]) >= GAIN * grid_cost(low, high, power, own)
