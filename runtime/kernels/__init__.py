"""CPU kernels (Numba-jitted where it pays) and their registry."""
from runtime.kernels.registry import get_kernel, has_kernel, kernel, kernel_names, run_kernel

__all__ = ["kernel", "get_kernel", "has_kernel", "kernel_names", "run_kernel"]
