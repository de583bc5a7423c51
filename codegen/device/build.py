"""A partitioned, quantized graph -> a CompiledModel."""
from __future__ import annotations

from typing import Any, Mapping

from codegen.cpu import lower_to_program
from codegen.device.memory import ConstantImage, align
from codegen.device.segment import SegmentLowering
from codegen.device.tiling import CodegenError
from ir.graph import Graph
from runtime.compiled import CompiledModel, CpuSegment, HostTensor
from runtime.hardware import HardwareConfig


def build_compiled(graph: Graph, config: HardwareConfig, reference: Graph | None = None,
                   metadata: Mapping[str, Any] | None = None, reuse: bool = True) -> CompiledModel:
    """Lower every segment of ``graph`` (each top-level node a Segment) for
    ``config``; ``reference`` is the float graph whose program Run_th runs.
    ``reuse=False`` gives every activation its own DRAM bytes, so that each
    layer's output can be read after a run (debugging)."""
    image = ConstantImage()
    plans: list[SegmentLowering | CpuSegment] = []
    for node in graph.nodes:
        if node.op != "Segment":
            raise CodegenError(f"graph {graph.name!r} is not partitioned: node {node.name!r} is not a Segment")
        if node.attrs["device"] == config.device:
            plans.append(SegmentLowering(node, config, image, reuse))
        else:
            plans.append(CpuSegment(node.name, lower_to_program(node.attrs["body"]),
                                    [v.name for v in node.inputs], [v.name for v in node.outputs]))
    base = align(image.size)
    end = max([p.place(base) for p in plans if isinstance(p, SegmentLowering)], default=base)
    if end > config.dram_bytes:
        raise CodegenError(f"the model needs {end} bytes of DRAM; the card has {config.dram_bytes}")
    segments = [p.emit() if isinstance(p, SegmentLowering) else p for p in plans]
    if image.size > base:
        raise CodegenError("constants were packed after activations were placed (a code generator bug)")
    return CompiledModel(config=config, inputs=[_host(v) for v in graph.inputs],
                         outputs=[_host(v) for v in graph.outputs], segments=segments, dram_image=image.tobytes(),
                         dram_size=end, reference=None if reference is None else lower_to_program(reference),
                         metadata=dict(metadata or {}))


def _host(value) -> HostTensor:
    return HostTensor(value.name, tuple(int(d) for d in value.type.shape), value.type.dtype.name)
