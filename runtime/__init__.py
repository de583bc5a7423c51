"""Tessera's embedded runtime: CPU kernels, the executor, the binary
loader, the accelerator simulator and the API facades (``runtime.FWDNXT``, ``runtime.kp``).

Importable with numpy and numba alone: nothing here imports onnx, networkx,
pydantic or onnxruntime at module level. Importing it checks that the
Tessera packages beside it (compiler, ir, passes, codegen) are Tessera's
and not another distribution's of the same name (runtime/packages.py).
"""
from runtime.errors import ExecutionError, KernelError, TesseraError
from runtime.executor import Executor
from runtime.packages import check_packages
from runtime.program import Program, Step

TESSERA_PACKAGE = True
"""Marks this package as Tessera's (runtime/packages.py checks it)."""

check_packages()

__all__ = ["Executor", "Program", "Step", "TesseraError", "KernelError", "ExecutionError", "FWDNXT", "kp"]


def __getattr__(name: str):
    """``FWDNXT`` and ``kp`` on first use, so ``import runtime`` stays light."""
    if name == "FWDNXT":
        from runtime.fwdnxt import FWDNXT

        return FWDNXT
    if name == "kp":
        import runtime.kp as kp

        return kp
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
