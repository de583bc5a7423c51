"""A quantized, partitioned graph to a CompiledModel: planned for the
hardware (compiler.pipeline.PLAN) and lowered by codegen/device (the last
steps of compiler/compile.py, and what quantization's target SNR estimates
hwtime with)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from codegen.device import build_compiled
from compiler.pipeline import PLAN
from ir.graph import Graph, clone
from passes.distribute import Placement
from passes.infra import PassContext, PassInstrument
from passes.instruments import timed
from runtime.compiled import CompiledModel
from runtime.hardware import HardwareConfig


def build(graph: Graph, config: HardwareConfig, reference: Graph | None = None,
          metadata: Mapping[str, Any] | None = None, reuse: bool = True,
          placement: Placement = Placement(), options: Mapping[str, Any] | None = None,
          instruments: Sequence[PassInstrument] = ()) -> CompiledModel:
    """A quantized, partitioned graph planned for ``config`` and the cards
    and clusters of ``placement`` (a copy: ``graph`` keeps no decision) and
    lowered to a CompiledModel; ``reuse=False`` gives every activation its
    own DRAM bytes (to read any layer's output after a run); ``options``:
    further pass options (``device.split_overrides``, ...)."""
    planned = clone(graph)
    with PassContext(options={**(options or {}), "target.hardware": config, "memory.reuse": reuse,
                              "device.placement": placement}, instruments=instruments):
        planned = PLAN(planned)
    with timed("codegen", instruments):
        return build_compiled(planned, config, reference, metadata, placement)
