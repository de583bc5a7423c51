"""Tessera's embedded runtime: CPU kernels, the executor, and (later) the
binary loader, the accelerator simulator and the API facades.

Importable with numpy and numba alone: nothing here imports onnx, networkx,
pydantic or onnxruntime at module level.
"""
from runtime.errors import ExecutionError, KernelError, TesseraError
from runtime.executor import Executor
from runtime.program import Program, Step

__all__ = ["Executor", "Program", "Step", "TesseraError", "KernelError", "ExecutionError"]
