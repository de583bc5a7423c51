"""A partitioned, quantized, planned graph -> a CompiledModel."""
from __future__ import annotations

from typing import Any, Mapping

from codegen.cpu import lower_segment, lower_to_program
from codegen.device.decisions import CodegenError
from codegen.device.image import ConstantImage
from codegen.device.segment import SegmentLowering
from ir.graph import Graph
from passes.distribute import Placement
from passes.plan_memory import align
from runtime.compiled import CompiledModel, CpuSegment, HostTensor
from runtime.hardware import HardwareConfig, dram_shortfall


def build_compiled(graph: Graph, config: HardwareConfig, reference: Graph | None = None,
                   metadata: Mapping[str, Any] | None = None, placement: Placement = Placement()) -> CompiledModel:
    """Lower every segment of ``graph`` (each top-level node a Segment, the
    accelerator's tiled and placed for ``config`` by compiler.pipeline.PLAN)
    for the cards and clusters ``placement`` gives; ``reference`` is the
    float graph whose program Run_th runs."""
    placement.check(config)
    image = ConstantImage()
    plans: list[SegmentLowering | CpuSegment] = []
    for node in graph.nodes:
        if node.op != "Segment":
            raise CodegenError(f"graph {graph.name!r} is not partitioned: node {node.name!r} is not a Segment")
        if node.attrs["device"] == config.device:
            plans.append(SegmentLowering(node, config, image, placement))
        else:
            plans.append(lower_segment(node))
    base = align(image.size)
    end = max([p.place(base) for p in plans if isinstance(p, SegmentLowering)], default=base)
    shortfall = dram_shortfall(config, end, image.size)
    if shortfall:
        raise CodegenError(shortfall)
    segments = [p.emit() if isinstance(p, SegmentLowering) else p for p in plans]
    split = [row for p in plans for row in getattr(p, "split_rows", [])]
    if image.size > base:
        raise CodegenError("constants were packed after activations were placed (a code generator bug)")
    return CompiledModel(config=config, inputs=[_host(v) for v in graph.inputs],
                         outputs=[_host(v) for v in graph.outputs], segments=segments, dram_image=image.tobytes(),
                         dram_size=end, reference=None if reference is None else lower_to_program(reference),
                         metadata={**(metadata or {}), "placement": placement.to_dict(),
                                   **({"split": split} if split else {})}, batch=placement.batch)


def _host(value) -> HostTensor:
    return HostTensor(value.name, tuple(int(d) for d in value.type.shape), value.type.dtype.name)
