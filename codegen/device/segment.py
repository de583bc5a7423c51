"""Lowering of one quantized accelerator segment to an instruction stream.

The segment's body is a list of integer layers between QuantizeLinear
entries and DequantizeLinear exits, tiled and placed in DRAM by the planning
passes (passes/tile.py, passes/plan_memory.py). Entries and exits become the
segment's DRAM interface (the host quantizes into DRAM and dequantizes out
of it); layout ops (Reshape, Flatten, Squeeze, Unsqueeze, Identity) and
moves of one contiguous run are views of their input's bytes; a Transpose
at an edge is absorbed into the host's (de)quantization (the DramTensor
carries its permutation); every other layer has its constants packed into
the DRAM image and, once the segment's activation region has its base, is
emitted as tile jobs.
"""
from __future__ import annotations

import functools

from codegen.device.conv import conv_lowerings
from codegen.device.decisions import PLAN_PASSES, CodegenError, check_planned, dram_offset
from codegen.device.image import ConstantImage
from codegen.device.maps import ConcatLayer, EltwiseLayer, LutLayer, MatMulLayer, PoolLayer, SoftmaxLayer, UpsampleLayer
from codegen.device.moves import MoveLayer
from codegen.device.stream import StreamBuilder
from ir.graph import Graph, Node, Value, onnx_name
from passes.conv_parts import conv_parts, is_conv_layer, split_extent
from passes.distribute import MV_UNITS, Placement, card_ranges, job_ranges
from passes.moves import MOVE_OPS, edge_transpose, permutation
from passes.plan_memory import align, is_view, offset, root
from passes.tiling import ELTWISE_OPS
from runtime.compiled import DeviceSegment, DramTensor, Exchange, Instance
from runtime.hardware import HardwareConfig
from runtime.isa import StreamKey

MAP_LAYERS = {"MaxPool": PoolLayer, "QAvgPool": PoolLayer, **dict.fromkeys(ELTWISE_OPS, EltwiseLayer),
              "QConcat": ConcatLayer, "QLut": LutLayer, "Resize": UpsampleLayer, "QMatMul": MatMulLayer,
              "QSoftmax": SoftmaxLayer, **dict.fromkeys(MOVE_OPS, MoveLayer)}
"""Map layers and moves, each one lowering; CONV layers (passes.conv_parts.is_conv_layer) go to
codegen/device/conv.py."""
MAX_BARRIER = (1 << 16) - 1
"""SYNC's barrier field holds 16 bits (docs/isa.md)."""
OPERAND_CONSTANTS = ELTWISE_OPS | {"QConcat"}
"""Layers whose constant inputs are data operands in DRAM (not weights)."""


class SegmentLowering:
    """Packs a Segment node's constants (at construction), places its
    activation region (:meth:`place`), and emits its stream (:meth:`emit`)."""

    def __init__(self, segment: Node, config: HardwareConfig, image: ConstantImage,
                 placement: Placement = Placement()):
        check_planned(segment, config)
        self.segment, self.config, self.image, self.placement = segment, config, image, placement
        body: Graph = segment.attrs["body"]
        self.outer = {**dict(zip(body.inputs, segment.inputs)), **dict(zip(body.outputs, segment.outputs))}
        self.layers: list[tuple[Node, list[list]]] = []
        """Each layer with its lowerings per worker (split mode: a CONV
        layer's shares, one per cluster; a map layer or move, the one
        lowering whose jobs the clusters share, see :meth:`_work`)."""
        self.entries: list[tuple[Value, tuple[int, ...], Node]] = []
        self.exits: list[tuple[Value, tuple[int, ...], Node]] = []
        self.constants: dict[Value, int] = {}
        self.base = -1
        for node in body.nodes:
            self._lower(node, body)

    def _lower(self, node: Node, body: Graph) -> None:
        if node.op == "QuantizeLinear":
            if node.inputs[0] not in body.inputs:
                raise CodegenError(f"node {node.name!r}: a QuantizeLinear inside an accelerator segment must read "
                                   "a segment input")
            self.entries.append(self._edge(node.outputs[0], body, "entry") + (node,))
        elif node.op == "DequantizeLinear":
            if node.outputs[0] not in body.outputs:
                raise CodegenError(f"node {node.name!r}: a DequantizeLinear inside an accelerator segment must "
                                   "give a segment output")
            self.exits.append(self._edge(node.inputs[0], body, "exit") + (node,))
        elif is_view(node) or edge_transpose(node, body):  # no bytes move on the device
            return
        elif node.op not in MAP_LAYERS and not is_conv_layer(node, self.config):
            raise CodegenError(f"node {node.name!r}: op {node.op} has no accelerator lowering")
        else:
            split = node.annotations.get("split")
            p = self.placement
            expected = (1,) if p.mode != "split" or p.cards * p.clusters == 1 else (p.clusters, p.cards * p.clusters)
            if (split["workers"] if split else 1) not in expected:
                raise CodegenError(f"layer {node.name!r} was split for {split['workers'] if split else 1} "
                                   f"cluster(s) and is lowered for {p.to_dict()}: run passes.distribute with "
                                   f"this placement ({PLAN_PASSES})")
            if is_conv_layer(node, self.config):
                self.layers.append((node, conv_lowerings(node, self.config, self.image)))
                return
            self.layers.append((node, [[MAP_LAYERS[node.op](node, self.config, self.image)]]))
            if node.op in OPERAND_CONSTANTS:  # packed now: the image is final before activations are placed
                for value in node.inputs:
                    if value is not None and value.is_constant:
                        self.addr(value)

    @staticmethod
    def _edge(codes: Value, body: Graph, side: str) -> tuple[Value, tuple[int, ...]]:
        """The codes in DRAM at an entry (the QuantizeLinear's output) or an
        exit (the DequantizeLinear's input), and the permutation the host
        applies: an absorbed Transpose's (the codes after it at an entry,
        before it at an exit)."""
        transpose = codes.uses[0][0] if side == "entry" and len(codes.uses) == 1 else codes.producer
        if transpose is None or edge_transpose(transpose, body) != side:
            return codes, ()
        return (transpose.outputs[0] if side == "entry" else transpose.inputs[0]), permutation(transpose)

    def place(self, base: int) -> int:
        """Put the segment's activation regions at ``base`` (in batch mode,
        one per image a card runs: its clusters' images one after another);
        their end."""
        self.base = base
        self.region = align(self.segment.annotations["dram_bytes"])
        local = self.placement.clusters * self.placement.images_per_cluster if self.placement.mode == "batch" else 1
        return base + local * self.region

    def addr(self, value: Value, base: int | None = None) -> int:
        """A tensor's DRAM address in the activation region at ``base``
        (default: the first image's); constants are packed into the image."""
        if value.is_constant:
            if value not in self.constants:
                self.constants[value] = self.image.add(value.const)
            return self.constants[value]
        return (self.base if base is None else base) + dram_offset(root(value).producer) + offset(value)

    def emit(self) -> DeviceSegment:
        """The streams, one per (card, cluster). Batch mode: each runs its
        images one after another, every image in its own activation region
        (the instances). Split mode: each runs its share of every layer and
        meets the card's other clusters at a SYNC before the next layer
        (every card the same: the host writes the inputs to card 0 and
        copies them to the others first, and reads the outputs from card 0).
        A layer's CONV layers or jobs come in order (a transposed
        convolution's phases one after another, each its own range of
        instructions under the node's name)."""
        p = self.placement
        inputs = [self._tensor(self.outer[node.inputs[0]].name, codes, node, perm)
                  for codes, perm, node in self.entries]
        outputs = [self._tensor(self.outer[node.outputs[0]].name, codes, node, perm)
                   for codes, perm, node in self.exits]
        if p.mode == "split":
            streams, layers, exchanges = self._emit_split()
            if p.cards > 1:  # the inputs, written to card 0, broadcast before the first phase
                exchanges[:0] = [Exchange(-1, 0, t.addr, t.nbytes, 1, t.nbytes) for t in inputs]
            return DeviceSegment(self.segment.name, inputs, outputs, streams, layers, [Instance()], exchanges)
        streams, layers, instances = {}, [], []
        for card in range(p.cards):
            for cluster in range(p.clusters):
                builder = StreamBuilder(StreamKey(card, cluster, 0))
                bases = [self.base + (cluster * p.images_per_cluster + j) * self.region
                         for j in range(p.images_per_cluster)]
                group = MV_UNITS if p.mvbatch else 1
                for first in range(0, len(bases), group):
                    self._emit_images(builder, bases[first:first + group])
                instances += [Instance(card, base - self.base) for base in bases]
                streams[builder.key] = builder.finish()
                layers += builder.layers
        return DeviceSegment(self.segment.name, inputs, outputs, streams, layers, instances)

    def _emit_images(self, builder: StreamBuilder, bases: list[int]) -> None:
        """Every layer of the images whose activations lie at ``bases``
        (one, or mvbatch's group), layer by layer: a CONV layer's tiles take
        the images innermost, each weight tile loaded once for all of them;
        a map layer or move runs image after image."""
        addrs = [functools.partial(self.addr, base=base) for base in bases]
        for node, workers in self.layers:
            for part in workers[0]:
                if is_conv_layer(node, self.config):
                    self._add(builder, node, part.jobs(*addrs), part.macs * len(addrs), False)
                    continue
                for addr in addrs:
                    self._add(builder, node, part.jobs(addr), part.macs, getattr(part, "in_place", False))

    def _emit_split(self) -> tuple[dict, list, list[Exchange]]:
        """Split mode: every cluster's share of every layer, a SYNC with the
        card's other clusters between layers; a layer split across cards
        ends a phase, after which the host copies each card's part of its
        output to the other cards (the exchanges)."""
        p = self.placement
        streams, layers, exchanges, phase = {}, [], [], 0
        self.split_rows = [self._split_row(node, workers) for node, workers in self.layers]
        builders = self._builders(phase)
        after_layer = False
        for n, (node, workers) in enumerate(self.layers):
            split = node.annotations.get("split") or {"axis": "none", "across": "clusters"}
            jobs: dict[int, list] = {}  # a map layer's jobs, built once per card, shared out by cluster
            for (card, cluster), builder in builders.items():
                if after_layer and p.clusters > 1:
                    barrier = n * p.cards + card
                    if barrier > MAX_BARRIER:
                        raise CodegenError(f"segment {self.segment.name!r}: {len(self.layers)} layers on "
                                           f"{p.cards} card(s) need more than the {MAX_BARRIER + 1} barrier ids")
                    builder.sync(barrier, p.clusters)
                self._emit_worker(builder, node, workers, split, card, cluster, jobs)
            after_layer = True
            if split["across"] == "cards":
                exchanges += self._exchanges(node, split, phase)
                for builder in builders.values():
                    streams[builder.key] = builder.finish()
                    layers += builder.layers
                phase, after_layer = phase + 1, False
                builders = self._builders(phase)
        if any(b.layers for b in builders.values()) or not streams:
            for builder in builders.values():
                streams[builder.key] = builder.finish()
                layers += builder.layers
        return streams, layers, exchanges

    def _split_row(self, node: Node, workers: list[list]) -> dict:
        """What each cluster of a split layer computes, as plain data for
        the binary's metadata (``tessera info`` prints it): a CONV layer's
        range of its axis per worker, a map layer's run of its jobs."""
        split = node.annotations.get("split") or {"axis": "none", "across": "clusters"}
        row = {"layer": node.name, "op": node.op, "across": split["across"], "axis": split["axis"]}
        if is_conv_layer(node, self.config):
            shares = []
            for parts in workers:
                if not parts:
                    shares.append(None)
                    continue
                first = parts[0].part
                start = {"k": first.channel0, "rows": first.origin[0], "cols": first.origin[1]}.get(split["axis"], 0)
                length = {"k": first.shape.k, "rows": first.shape.oh, "cols": first.shape.ow}.get(
                    split["axis"], first.shape.k)
                shares.append([start, start + length])
            row["shares"] = shares
        else:
            count = len(workers[0][0].jobs(self.addr))
            row["jobs"] = count
            row["shares"] = ([list(r) for r in job_ranges(count, self.placement.clusters)]
                             if split["axis"] == "tiles" else [[0, count]])
        return row

    def _builders(self, phase: int) -> dict[tuple[int, int], StreamBuilder]:
        p = self.placement
        return {(card, cluster): StreamBuilder(StreamKey(card, cluster, phase))
                for card in range(p.cards) for cluster in range(p.clusters)}

    def _emit_worker(self, builder: StreamBuilder, node: Node, workers: list[list], split: dict, card: int,
                     cluster: int, jobs: dict[int, list]) -> None:
        """One cluster's share of one layer: its CONV layers (of a split
        CONV layer: worker ``card * clusters + cluster`` across cards,
        ``cluster`` within each card), or its run of a map layer's jobs."""
        p = self.placement
        if is_conv_layer(node, self.config):
            w = card * p.clusters + cluster if split["across"] == "cards" else cluster
            for part in workers[w]:
                self._add(builder, node, part.jobs(self.addr), part.macs, False)
            return
        (layer,) = workers[0]
        in_place = getattr(layer, "in_place", False)
        if split["axis"] == "none":
            if cluster == 0:
                self._add(builder, node, layer.jobs(self.addr), layer.macs, in_place)
            return
        if card not in jobs:
            jobs[card] = layer.jobs(self.addr)
        start, stop = job_ranges(len(jobs[card]), p.clusters)[cluster]
        mine = jobs[card][start:stop]
        if mine and start:
            mine[0].loads[:0] = layer.table_loads()
        self._add(builder, node, mine, layer.macs, in_place)

    def _exchanges(self, node: Node, split: dict, phase: int) -> list[Exchange]:
        """The host's copies of each card's part of a layer split across
        cards: boxes of its output in DRAM (docs/binary.md)."""
        p = self.placement
        (part,) = conv_parts(node, self.config)
        extent, unit = split_extent(part, split["axis"])
        out = node.outputs[0]
        addr, e = self.addr(out), out.type.dtype.itemsize
        result = []
        for card, (a0, a1) in enumerate(card_ranges(extent, unit, p.cards, p.clusters)):
            if a1 <= a0:
                continue
            if node.op == "QConv":
                n, k, oh, ow = out.type.shape
                if split["axis"] == "k":
                    box = (addr + a0 * oh * ow * e, (a1 - a0) * oh * ow * e, n, k * oh * ow * e)
                else:
                    box = (addr + a0 * ow * e, (a1 - a0) * ow * e, n * k, oh * ow * e)
            else:  # a GEMM: M rows of F features
                m, f = part.shape.ow, part.shape.k
                if split["axis"] == "k":
                    box = (addr + a0 * e, (a1 - a0) * e, m, f * e)
                else:
                    box = (addr + a0 * f * e, (a1 - a0) * f * e, 1, (a1 - a0) * f * e)
            result.append(Exchange(phase, card, *box))
        return result

    @staticmethod
    def _add(builder: StreamBuilder, node: Node, jobs, macs: int, in_place: bool) -> None:
        sources = tuple(node.annotations.get("source", [onnx_name(node.name)]))
        builder.add_layer(node.name, node.op, sources, jobs, macs, in_place)

    def _tensor(self, name: str, codes: Value, node: Node, perm: tuple[int, ...]) -> DramTensor:
        scale, zero = node.inputs[1].const, node.inputs[2].const
        if scale.size != 1 or zero.size != 1:
            raise CodegenError(f"node {node.name!r}: the accelerator's interface tensors are quantized per tensor")
        return DramTensor(name, tuple(codes.type.shape), codes.type.dtype.name, self.addr(codes),
                          float(scale.reshape(())), int(zero.reshape(())), perm)
