"""Lowering of one quantized accelerator segment to an instruction stream.

The segment's body is a list of integer layers between QuantizeLinear
entries and DequantizeLinear exits. Entries and exits become the
segment's DRAM interface (the host quantizes into DRAM and dequantizes out
of it); layout ops (Reshape, Flatten, Squeeze, Unsqueeze, Identity) are
views of their input's bytes, since device tensors lie dense and
row-major; every other layer is planned, its constants packed into the DRAM
image, and, once activations have addresses, emitted as tile jobs.
"""
from __future__ import annotations

from codegen.device.conv import ConvLowering, Geometry
from codegen.device.maps import ConcatLayer, EltwiseLayer, LutLayer, PoolLayer, UpsampleLayer, chw, dense
from codegen.device.memory import ConstantImage, Interval, assign_addresses
from codegen.device.stream import StreamBuilder
from codegen.device.tiling import CodegenError
from ir.graph import Graph, Node, Value, onnx_name
from runtime.compiled import DeviceSegment, DramTensor
from runtime.hardware import HardwareConfig
from runtime.isa import StreamKey

VIEWS = frozenset({"Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity"})
LAYERS = {"QConv": ConvLowering, "QGemm": ConvLowering, "MaxPool": PoolLayer, "QAvgPool": PoolLayer,
          "QAdd": EltwiseLayer, "QMul": EltwiseLayer, "QConcat": ConcatLayer, "QLut": LutLayer,
          "Resize": UpsampleLayer}
OPERAND_CONSTANTS = frozenset({"QAdd", "QMul", "QConcat"})
"""Layers whose constant inputs are data operands in DRAM (not weights)."""


class SegmentLowering:
    """Plans a Segment node's layers and packs their constants (at
    construction), places its activations (:meth:`place`), and emits its
    stream (:meth:`emit`)."""

    def __init__(self, segment: Node, config: HardwareConfig, image: ConstantImage, reuse: bool = True):
        self.segment, self.config, self.image, self.reuse = segment, config, image, reuse
        body: Graph = segment.attrs["body"]
        self.outer = {**dict(zip(body.inputs, segment.inputs)), **dict(zip(body.outputs, segment.outputs))}
        self.root: dict[Value, Value] = {}
        self.layers: list[tuple[Node, object]] = []
        self.entries: list[tuple[Value, Node]] = []
        self.exits: list[tuple[Value, Node]] = []
        self.constants: dict[Value, int] = {}
        for node in body.nodes:
            self._plan(node, body)
        self.intervals = self._liveness(body)

    def _plan(self, node: Node, body: Graph) -> None:
        if node.op == "QuantizeLinear":
            if node.inputs[0] not in body.inputs:
                raise CodegenError(f"node {node.name!r}: a QuantizeLinear inside an accelerator segment must read "
                                   "a segment input")
            self.entries.append((node.outputs[0], node))
        elif node.op == "DequantizeLinear":
            if node.outputs[0] not in body.outputs:
                raise CodegenError(f"node {node.name!r}: a DequantizeLinear inside an accelerator segment must "
                                   "give a segment output")
            self.exits.append((node.outputs[0], node))
        elif node.op in VIEWS:
            self.root[node.outputs[0]] = self.root_of(node.inputs[0])
        elif node.op in LAYERS:
            self.layers.append((node, LAYERS[node.op](node, self.config, self.image)))
            if node.op in OPERAND_CONSTANTS:  # packed now: the image is final before activations are placed
                for value in node.inputs:
                    if value is not None and value.is_constant:
                        self.addr(value)
        else:
            raise CodegenError(f"node {node.name!r}: op {node.op} has no accelerator lowering")

    def root_of(self, value: Value) -> Value:
        return self.root.get(value, value)

    def _liveness(self, body: Graph) -> dict[Value, Interval]:
        spans: dict[Value, list[int]] = {}

        def touch(value: Value | None, at: int) -> None:
            if value is None or value.is_constant:
                return
            span = spans.setdefault(self.root_of(value), [at, at])
            span[0], span[1] = min(span[0], at), max(span[1], at)

        for value, _ in self.entries:
            touch(value, -1)
        for index, (node, _) in enumerate(self.layers):
            for value in (*node.inputs, *node.outputs):
                touch(value, index)
        for _, node in self.exits:
            touch(node.inputs[0], len(self.layers))
        if not self.reuse:  # every tensor keeps its bytes (to read any layer's output after a run)
            spans = {v: [-1, len(self.layers)] for v in spans}
        return {v: Interval(v, v.type.numel * v.type.dtype.itemsize, first, last) for v, (first, last) in spans.items()}

    def place(self, base: int) -> int:
        """Give every activation a DRAM address from ``base``; the end."""
        return assign_addresses(list(self.intervals.values()), base)

    def addr(self, value: Value) -> int:
        """A tensor's DRAM address (constants are packed into the image)."""
        if value.is_constant:
            if value not in self.constants:
                self.constants[value] = self.image.add(value.const)
            return self.constants[value]
        return self.intervals[self.root_of(value)].addr

    def emit(self, key: StreamKey = StreamKey(0, 0, 0)) -> DeviceSegment:
        builder = StreamBuilder(key)
        for node, layer in self.layers:
            sources = tuple(node.annotations.get("source", [onnx_name(node.name)]))
            builder.add_layer(node.name, node.op, sources, self._jobs(node, layer), getattr(layer, "macs", 0))
        stream = builder.finish()
        inputs = [self._tensor(self.outer[node.inputs[0]].name, value, node) for value, node in self.entries]
        outputs = [self._tensor(self.outer[value].name, node.inputs[0], node) for value, node in self.exits]
        return DeviceSegment(self.segment.name, inputs, outputs, {key: stream}, builder.layers)

    def _jobs(self, node: Node, layer) -> list:
        if isinstance(layer, ConvLowering):
            return layer.jobs(*self._conv_geometry(node, layer))
        return layer.jobs(self.addr)

    def _conv_geometry(self, node: Node, layer: ConvLowering) -> tuple[Geometry, Geometry, Geometry | None]:
        x, out = node.inputs[0], node.outputs[0]
        res = layer.residual
        if layer.gemm:
            m, k = x.type.shape
            n = out.type.shape[1]
            return (Geometry(self.addr(x), x.type.dtype.itemsize, (1, 0, k), 0),
                    Geometry(self.addr(out), out.type.dtype.itemsize, (1, 0, n), 0),
                    None if res is None else Geometry(self.addr(res), res.type.dtype.itemsize, (1, 0, n), 0))
        x_geo, out_geo, res_geo = (None if v is None else dense(self.addr(v), v.type.dtype.itemsize,
                                                                 chw(v.type.shape)[1]) for v in (x, out, res))
        return x_geo, out_geo, res_geo

    def _tensor(self, name: str, codes: Value, node: Node) -> DramTensor:
        scale, zero = node.inputs[1].const, node.inputs[2].const
        if scale.size != 1 or zero.size != 1:
            raise CodegenError(f"node {node.name!r}: the accelerator's interface tensors are quantized per tensor")
        return DramTensor(name, tuple(codes.type.shape), codes.type.dtype.name, self.addr(codes),
                          float(scale.reshape(())), int(zero.reshape(())))
