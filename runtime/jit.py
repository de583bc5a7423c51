"""Tessera's one Numba policy, used by every kernel.

* Kernels are module-level functions (never built through exec or closures),
  so Numba can cache them on disk; ``TESSERA_NUMBA_CACHE=0`` turns the cache
  off (for example where several processes could fill it at once, numba #4807).
* Shapes are runtime arguments, so one compiled signature serves every layer.
* No ``parallel=True``: parallel kernels cannot be cached safely (numba #7518,
  pynndescent #175) and Numba's default threading layer aborts when called
  from several threads. Kernels are ``nogil`` and :mod:`runtime.parallel`
  splits work over a thread pool instead.
* fastmath without ``nnan``/``ninf``, so NaN and Inf keep their meaning.
"""
from __future__ import annotations

import os

import numba

CACHE = os.environ.get("TESSERA_NUMBA_CACHE", "1") != "0"
FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})


def jit(fn=None, *, fastmath: bool = False, inline: str = "never"):
    """``numba.njit`` with Tessera's policy (cached, nogil, numpy errors)."""
    options = dict(cache=CACHE, nogil=True, error_model="numpy", inline=inline,
                   fastmath=set(FASTMATH) if fastmath else False)
    if fn is None:
        return lambda f: numba.njit(**options)(f)
    return numba.njit(**options)(fn)


def vectorize(signatures=None, *, fastmath: bool = False):
    """``numba.vectorize`` (a real ufunc: numpy does broadcasting) with the
    same policy; compiled lazily per dtype when no signatures are given."""
    options = dict(cache=CACHE, fastmath=set(FASTMATH) if fastmath else False)
    if signatures is None:
        return numba.vectorize(**options)
    return numba.vectorize(signatures, **options)
