"""Code generation for the accelerator: quantized segments -> instruction
streams and packed weights, following the planning passes' decisions (tiles,
DRAM placement; docs/codegen.md).

:func:`build_compiled` turns a partitioned, quantized, planned graph into a
:class:`runtime.compiled.CompiledModel`: each accelerator segment lowered
by :class:`~codegen.device.segment.SegmentLowering`, each CPU segment to a
kernel Program, and the float graph to the reference program of Run_th.
"""
from codegen.device.build import build_compiled
from codegen.device.decisions import CodegenError

__all__ = ["build_compiled", "CodegenError"]
