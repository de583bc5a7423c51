"""Set the thread count of the OpenBLAS numpy uses.

When Tessera's own GEMM does the heavy products, numpy's BLAS should run on
one thread: an idle multithreaded OpenBLAS keeps a worker spinning on a core
for a while after each call, taking it from Tessera's thread pool. Nothing
here runs at import; the caller decides the policy.

Only OpenBLAS builds are handled (numpy's wheels bundle
``libscipy_openblas64_``; distribution builds link ``libopenblas``): the
library is found among the shared objects the process has loaded, or in the
``numpy.libs`` folder next to numpy, and its ``*openblas_set_num_threads*``
entry point is called through ctypes. Anything else (MKL, Accelerate, BLIS,
no such symbol) makes the functions return False / None and change nothing.
"""
from __future__ import annotations

import ctypes
import glob
import os
import threading

import numpy as np

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_", "openblas_set_num_threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
            "openblas_get_num_threads64_", "openblas_get_num_threads")

_lock = threading.Lock()
_library: list = []


def _loaded_openblas() -> list[str]:
    """Paths of loaded shared objects whose name mentions openblas."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
    except OSError:
        return []
    return sorted(paths)


def _bundled_openblas() -> list[str]:
    """OpenBLAS libraries shipped in numpy's wheel (``numpy.libs``)."""
    folder = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    return sorted(glob.glob(os.path.join(folder, "*openblas*.so*")))


def _find() -> ctypes.CDLL | None:
    """numpy's OpenBLAS, opened once (None when there is none)."""
    with _lock:
        if not _library:
            _library.append(_open_first(_loaded_openblas() + _bundled_openblas()))
        return _library[0]


def _open_first(paths: list[str]) -> ctypes.CDLL | None:
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if _symbol(lib, _SETTERS) is not None:
            return lib
    return None


def _symbol(lib: ctypes.CDLL, names: tuple[str, ...]):
    for name in names:
        fn = getattr(lib, name, None)
        if fn is not None:
            return fn
    return None


def set_blas_threads(count: int) -> bool:
    """Make numpy's OpenBLAS use ``count`` threads; False when numpy's BLAS
    is not an OpenBLAS this can reach (nothing is changed then)."""
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"BLAS thread count must be a positive int, got {count!r}")
    lib = _find()
    setter = None if lib is None else _symbol(lib, _SETTERS)
    if setter is None:
        return False
    setter.argtypes, setter.restype = [ctypes.c_int], None
    setter(count)
    return True


def blas_threads() -> int | None:
    """The thread count numpy's OpenBLAS now uses, or None when unknown."""
    lib = _find()
    getter = None if lib is None else _symbol(lib, _GETTERS)
    if getter is None:
        return None
    getter.argtypes, getter.restype = [], ctypes.c_int
    return int(getter())
