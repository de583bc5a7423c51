"""The kernel table: op name -> kernel function.

A kernel is ``fn(inputs, attrs) -> tuple of arrays``: ``inputs`` is a list of
numpy arrays (None for an omitted optional input), ``attrs`` the op's
attributes exactly as the IR holds them. Heavy kernels call Numba-jitted
loops; ops that are one numpy primitive (a view, a ufunc, a copy) use it.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from runtime.errors import KernelError

Kernel = Callable[[Sequence[np.ndarray | None], Mapping[str, Any]], tuple]

_KERNELS: dict[str, Kernel] = {}


def kernel(*names: str) -> Callable[[Kernel], Kernel]:
    """Register a function as the kernel of one or more ops."""
    def register(fn: Kernel) -> Kernel:
        for name in names:
            if name in _KERNELS:
                raise KernelError(f"kernel {name!r} is registered twice")
            _KERNELS[name] = fn
        return fn
    return register


def get_kernel(name: str) -> Kernel:
    _load()
    try:
        return _KERNELS[name]
    except KeyError:
        raise KernelError(f"no CPU kernel for op {name!r}") from None


def has_kernel(name: str) -> bool:
    _load()
    return name in _KERNELS


def kernel_names() -> list[str]:
    _load()
    return sorted(_KERNELS)


def run_kernel(name: str, inputs: Sequence[np.ndarray | None], attrs: Mapping[str, Any]) -> tuple:
    """Run one kernel directly (constant folding, tests)."""
    return tuple(get_kernel(name)(list(inputs), attrs))


_loaded = False


def _load() -> None:
    global _loaded
    if not _loaded:
        import runtime.kernels.families  # noqa: F401
        _loaded = True
