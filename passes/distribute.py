"""Distribute: how a model's accelerator work divides across cards and
clusters (FWDNXT's numcard and numclus, shared/reference/api-notes.md 1.5).

Two modes. **Batch** (the default): every cluster of every card runs the
whole program on its own images (``images_per_cluster`` of them per run), so
a run takes ``cards x clusters x images_per_cluster`` images and nothing is
decided per layer; code generation gives each image its own activation
region. **Split** (FWDNXT's ``clustersbatchmode``/``nobatch``, option
letter ``C``): one image per run, each layer's work divided over the
clusters of every card; the split pass decides per layer how.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ir.graph import Graph, Node
from passes.conv_parts import SPLIT_AXES, ConvPart, conv_parts, even_ranges, is_conv_layer, share, split_extent
from passes.infra import PassContext, PassError, graph_pass, register_option
from passes.partition import accelerator_segments
from passes.tiling import TILE_OVERHEAD_BYTES, TILED_OPS, conv_cost, plan_conv
from runtime.hardware import HardwareConfig
from runtime.sim.timing import exchange_seconds

MODES = ("batch", "split")
MV_UNITS = 4
"""Images a cluster's vector-MAC units take at once with mvbatch (one each)."""


class PlacementError(PassError):
    """A placement the hardware cannot take (names the argument and the limit)."""


@dataclass(frozen=True)
class Placement:
    """How a model uses the accelerator's cards and clusters."""

    cards: int = 1
    clusters: int = 1
    mode: str = "batch"
    images_per_cluster: int = 1
    mvbatch: bool = False
    """Batch mode: a cluster's images go through each layer together, a
    weight tile loaded once for all of them (its MAC units on different
    images); images_per_cluster a multiple of 4."""

    @property
    def batch(self) -> int:
        """Images per run."""
        return self.cards * self.clusters * self.images_per_cluster if self.mode == "batch" else 1

    def check(self, hw: HardwareConfig) -> None:
        """Every field within what ``hw`` has (the error names the argument)."""
        if self.mode not in MODES:
            raise PlacementError(f"mode={self.mode!r} must be one of {list(MODES)}")
        if not 1 <= self.cards <= hw.cards:
            raise PlacementError(f"numcard={self.cards}: the system has {hw.cards} card(s)")
        if not 1 <= self.clusters <= hw.clusters_per_card:
            raise PlacementError(f"numclus={self.clusters}: a card has {hw.clusters_per_card} clusters")
        if self.images_per_cluster < 1:
            raise PlacementError(f"imgs_per_cluster={self.images_per_cluster} must be at least 1")
        if self.mode == "split" and self.images_per_cluster != 1:
            raise PlacementError(f"imgs_per_cluster={self.images_per_cluster} batches a cluster's images; split "
                                 "mode (clustersbatchmode) runs one image over every cluster")
        if self.mvbatch and (self.mode != "batch" or self.images_per_cluster % MV_UNITS):
            raise PlacementError(f"mvbatch gives each of a cluster's {MV_UNITS} MAC units its own image: it needs "
                                 f"batch mode and imgs_per_cluster a multiple of {MV_UNITS} (got "
                                 f"{self.images_per_cluster}, mode {self.mode!r})")

    def to_dict(self) -> dict[str, Any]:
        return {"numcard": self.cards, "numclus": self.clusters, "mode": self.mode,
                "imgs_per_cluster": self.images_per_cluster, "mvbatch": int(self.mvbatch), "batch": self.batch}


register_option("device.placement", Placement, Placement(),
                "How the accelerator's cards and clusters share the work: batch (each cluster its own images) or "
                "split (each layer divided over the clusters), with numcard, numclus, imgs_per_cluster, mvbatch.")


# ---------------------------------------------------------------- the split pass
SYNC_COST_BYTES = TILE_OVERHEAD_BYTES
"""DRAM-byte equivalent of a barrier after a split layer (the SYNC and the
pipeline drain it forces), in the tiler's cost units."""
MAP_AXES = ("channels", "rows", "cols")
"""The [channels][rows][cols] axes a map layer's tiles are cut along."""


def shared_dram(hw: HardwareConfig, sharers: int) -> HardwareConfig:
    """``hw`` as one of ``sharers`` clusters running at once sees it: the
    card's DRAM bandwidth evenly shared (the cycle model's rule,
    runtime.sim.timing.durations), so the tiler prices a cluster's tiles
    as the simulator times them."""
    return hw if sharers <= 1 else dataclasses.replace(hw, dram_bandwidth=hw.dram_bandwidth / sharers)


@graph_pass(opt_level=0)
def distribute(graph: Graph, ctx: PassContext) -> Graph:
    """Split mode: record on every accelerator layer how its work divides,
    ``annotations["split"] = {"axis", "across", "workers", "sharers"}``.

    A CONV layer is cut along the axis of :data:`SPLIT_AXES` whose slowest
    share costs least (each share tiled as the tiler would, at the DRAM
    bandwidth a cluster gets while the card's ``sharers`` clusters run), or
    not at all (``"none"``: cluster 0 alone) when no cut pays for its
    barrier; ``across`` "clusters" divides it over the clusters of each card
    (every card computing the whole layer, as the cards hold copies of every
    tensor), "cards" over every cluster of every card, when the compute that
    saves outweighs the host's copies of each card's part to the others
    (runtime.sim.timing.exchange_seconds: a phase ends after the layer). A
    map layer or move is divided by its tiles (``"tiles"``: contiguous runs
    of its jobs) over each card's clusters. ``device.split_overrides``
    (layer name -> axis, ``"cards:<axis>"`` across cards) forces a layer's
    choice for experiments. Batch mode records nothing."""

    placement: Placement = ctx.option("device.placement")
    hw: HardwareConfig = ctx.option("target.hardware")
    placement.check(hw)
    if placement.mode != "split" or placement.cards * placement.clusters == 1:
        for segment in accelerator_segments(graph):  # a graph planned before keeps no stale decision
            for node in segment.attrs["body"].nodes:
                node.annotations.pop("split", None)
        return graph
    overrides: dict[str, str] = dict(ctx.option("device.split_overrides"))
    shared = shared_dram(hw, placement.clusters)

    seen = set()
    for segment in accelerator_segments(graph):
        for node in segment.attrs["body"].nodes:
            if node.op not in TILED_OPS:
                continue
            seen.add(node.name)
            if is_conv_layer(node, hw):
                choice = overrides.get(node.name)
                across, axis = _parse_override(node, choice) if choice else best_split(node, shared, placement, hw)
            else:
                axis, across = overrides.get(node.name, "tiles"), "clusters"
                if axis not in ("none", "tiles"):
                    raise PassError(f"device.split_overrides: layer {node.name!r} ({node.op}) is split by its "
                                    f"tiles or not at all ('tiles' or 'none'), not {axis!r}")
            workers = placement.clusters * (placement.cards if across == "cards" else 1)
            node.annotations["split"] = {"axis": axis, "across": across, "workers": workers,
                                         "sharers": placement.clusters}
    unknown = sorted(set(overrides) - seen)
    if unknown:
        raise PassError(f"device.split_overrides names no accelerator layer: {unknown}")
    return graph


def _parse_override(node: Node, choice: str) -> tuple[str, str]:
    across, _, axis = choice.rpartition(":")
    across = across or "clusters"
    if axis not in ("none", *SPLIT_AXES) or across not in ("clusters", "cards"):
        raise PassError(f"device.split_overrides: layer {node.name!r} ({node.op}) splits along one of "
                        f"{['none', *SPLIT_AXES]}, optionally 'cards:<axis>' across cards, not {choice!r}")
    if across == "cards" and not cards_axis(node, axis):
        raise PassError(f"device.split_overrides: layer {node.name!r} ({node.op}) cannot be split across cards "
                        f"along {axis!r} (a QConv's or QGemm's k or rows, a GEMM's cols)")
    return across, axis


def cards_axis(node: Node, axis: str) -> bool:
    """Whether a split of ``node`` along ``axis`` can span cards: each
    card's part of the output must be a few boxes the host copies (one CONV
    layer, not a transposed convolution's interleaved phases)."""
    if node.op == "QConvTranspose" or axis == "none":
        return False
    gemm = node.op != "QConv"
    return axis in (("k", "cols") if gemm else ("k", "rows"))


def best_split(node: Node, shared: HardwareConfig, placement: Placement, hw: HardwareConfig) -> tuple[str, str]:
    """(across, axis) of the cheapest split (ties: within a card, then the
    earlier axis of :data:`SPLIT_AXES`)."""
    options = {("clusters", axis): split_cost(node, shared, axis, placement.clusters)
               for axis in ("none", *SPLIT_AXES)}
    if placement.cards > 1:
        for axis in SPLIT_AXES:
            if cards_axis(node, axis):
                workers = placement.cards * placement.clusters
                copies = exchange_seconds(card_bytes(node, hw, axis, placement), hw) * shared.dram_bandwidth
                options["cards", axis] = split_cost(node, shared, axis, workers) + copies
    order = [("clusters", "none")] + [("clusters", a) for a in SPLIT_AXES] + [("cards", a) for a in SPLIT_AXES]
    return min(options, key=lambda key: (options[key], order.index(key)))


def card_bytes(node: Node, hw: HardwareConfig, axis: str, placement: Placement) -> list[int]:
    """Bytes of each card's part of ``node``'s output when it is split
    along ``axis`` over every cluster of every card."""
    (part,) = conv_parts(node, hw)
    extent, unit = split_extent(part, axis)
    out = node.outputs[0].type
    total = out.numel * out.dtype.itemsize
    ranges = card_ranges(extent, unit, placement.cards, placement.clusters)
    return [total * (stop - start) // extent for start, stop in ranges]


def card_ranges(extent: int, unit: int, cards: int, clusters: int) -> list[tuple[int, int]]:
    """Each card's range of an axis cut over all its clusters' shares."""
    ranges = even_ranges(extent, cards * clusters, unit)
    return [(ranges[c * clusters][0], ranges[(c + 1) * clusters - 1][1]) for c in range(cards)]


def split_cost(node: Node, shared: HardwareConfig, axis: str, workers: int) -> float:
    """Modelled cost (the tiler's units) of ``node`` split along ``axis``
    over ``workers``: its slowest worker's tiled shares plus a barrier (a
    worker left without a share, where the axis has fewer units, idles)."""
    costs = []
    for parts in worker_parts(node, shared, {"axis": axis, "workers": workers}):
        total = 0.0
        for part in parts:
            plan = plan_conv(part.shape, shared, node.name)
            total += conv_cost(part.shape, plan, shared)[0]
        costs.append(total)
    return max(costs) + (SYNC_COST_BYTES if axis != "none" else 0.0)


def worker_parts(node: Node, hw: HardwareConfig, split: dict | None) -> list[list[ConvPart]]:
    """Each worker's CONV layers of a layer under its split decision (one
    worker, all of them, without one; a worker whose share is empty, none)."""
    parts = conv_parts(node, hw)
    if not split:
        return [parts]
    workers = [[] for _ in range(split["workers"])]
    if split["axis"] == "none":
        workers[0] = parts
        return workers
    for part in parts:
        extent, unit = split_extent(part, split["axis"])
        for w, (start, stop) in enumerate(even_ranges(extent, split["workers"], unit)):
            if stop > start:
                workers[w].append(share(part, split["axis"], start, stop))
    return workers


def map_share_dims(dims: tuple[int, int, int], workers: int) -> tuple[int, int, int]:
    """The dims a split map layer's tiles are planned for: its first axis
    with at least ``workers`` positions (else its longest) cut ``workers``
    ways, so the layer has at least one tile per worker where it can."""
    axis = next((a for a, n in enumerate(dims) if n >= workers), max(range(3), key=lambda a: dims[a]))
    out = list(dims)
    out[axis] = -(-dims[axis] // workers)
    return tuple(out)


def job_ranges(count: int, workers: int) -> list[tuple[int, int]]:
    """A split map layer's or move's jobs (in their order) as contiguous runs, one per worker."""
    return even_ranges(count, workers)


register_option("device.split_overrides", dict, {},
                "Split mode: layer name -> the axis to divide it along (a CONV layer: 'k', 'rows', 'cols' or "
                "'none', 'cards:<axis>' across cards; a map layer or move: 'tiles' or 'none'), overriding the "
                "distribute pass's choice.")
