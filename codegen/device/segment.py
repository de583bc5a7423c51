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

from codegen.device.conv import conv_lowerings
from codegen.device.decisions import CodegenError, check_planned, dram_offset
from codegen.device.image import ConstantImage
from codegen.device.maps import ConcatLayer, EltwiseLayer, LutLayer, PoolLayer, UpsampleLayer
from codegen.device.moves import MoveLayer
from codegen.device.stream import StreamBuilder
from ir.graph import Graph, Node, Value, onnx_name
from passes.conv_parts import is_conv_layer
from passes.distribute import Placement
from passes.moves import MOVE_OPS, edge_transpose, permutation
from passes.plan_memory import align, is_view, offset, root
from passes.tiling import ELTWISE_OPS
from runtime.compiled import DeviceSegment, DramTensor, Instance
from runtime.hardware import HardwareConfig
from runtime.isa import StreamKey

MAP_LAYERS = {"MaxPool": PoolLayer, "QAvgPool": PoolLayer, **dict.fromkeys(ELTWISE_OPS, EltwiseLayer),
              "QConcat": ConcatLayer, "QLut": LutLayer, "Resize": UpsampleLayer, **dict.fromkeys(MOVE_OPS, MoveLayer)}
"""Map layers and moves, each one lowering; CONV layers (passes.tiling.is_conv_layer) go to
codegen/device/conv.py."""
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
        self.layers: list[tuple[Node, list]] = []
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
        elif is_conv_layer(node, self.config):
            self.layers.append((node, conv_lowerings(node, self.config, self.image)))
        elif node.op in MAP_LAYERS:
            self.layers.append((node, [MAP_LAYERS[node.op](node, self.config, self.image)]))
            if node.op in OPERAND_CONSTANTS:  # packed now: the image is final before activations are placed
                for value in node.inputs:
                    if value is not None and value.is_constant:
                        self.addr(value)
        else:
            raise CodegenError(f"node {node.name!r}: op {node.op} has no accelerator lowering")

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
        """The streams: in batch mode one per (card, cluster), each running
        its images one after another, every image in its own activation
        region (the instances); each layer's CONV layers or map layer in
        order (a transposed convolution's phases one after another, each its
        own range of instructions under the node's name)."""
        p = self.placement
        if p.mode != "batch" or p.mvbatch:
            raise CodegenError(f"segment {self.segment.name!r}: placement {p.to_dict()} is not lowered yet "
                               "(batch mode without mvbatch is)")
        streams, layers, instances = {}, [], []
        for card in range(p.cards):
            for cluster in range(p.clusters):
                builder = StreamBuilder(StreamKey(card, cluster, 0))
                bases = [self.base + (cluster * p.images_per_cluster + j) * self.region
                         for j in range(p.images_per_cluster)]
                for base in bases:
                    self._emit_image(builder, base)
                streams[builder.key] = builder.finish()
                layers += builder.layers
                instances += [Instance(card, base - self.base) for base in bases]
        inputs = [self._tensor(self.outer[node.inputs[0]].name, codes, node, perm)
                  for codes, perm, node in self.entries]
        outputs = [self._tensor(self.outer[node.outputs[0]].name, codes, node, perm)
                   for codes, perm, node in self.exits]
        return DeviceSegment(self.segment.name, inputs, outputs, streams, layers, instances)

    def _emit_image(self, builder: StreamBuilder, base: int) -> None:
        """Every layer of one image whose activations lie at ``base``."""
        def addr(value: Value) -> int:
            return self.addr(value, base)

        for node, parts in self.layers:
            sources = tuple(node.annotations.get("source", [onnx_name(node.name)]))
            for part in parts:
                builder.add_layer(node.name, node.op, sources, part.jobs(addr), part.macs,
                                  getattr(part, "in_place", False))

    def _tensor(self, name: str, codes: Value, node: Node, perm: tuple[int, ...]) -> DramTensor:
        scale, zero = node.inputs[1].const, node.inputs[2].const
        if scale.size != 1 or zero.size != 1:
            raise CodegenError(f"node {node.name!r}: the accelerator's interface tensors are quantized per tensor")
        return DramTensor(name, tuple(codes.type.shape), codes.type.dtype.name, self.addr(codes),
                          float(scale.reshape(())), int(zero.reshape(())), perm)
