"""Tessera's one Numba policy, used by every kernel.

* Kernels are module-level functions (never built through exec or closures),
  so Numba can cache them on disk; ``TESSERA_NUMBA_CACHE=0`` turns the cache
  off (for example where several processes could fill it at once, numba #4807).
* The cache lives in a folder named by a digest of runtime/'s sources (the
  API facades, :data:`FACADES`, left out) and by the code-generation flags
  Numba's cache key leaves out (``NUMBA_BOUNDSCHECK``: a bounds-checked run
  must not load unchecked kernels, nor leave checked ones to everyone else):
  Numba checks only the timestamp of a kernel's own file, so a kernel that
  inlines a helper from another file kept the helper's old code after an
  edit (a stale, even crashing, kernel). Any change to runtime/ now starts a
  fresh cache; folders unused for a week are removed.
* Shapes are runtime arguments, so one compiled signature serves every layer.
* No ``parallel=True``: parallel kernels cannot be cached safely (numba #7518,
  pynndescent #175) and Numba's default threading layer aborts when called
  from several threads. Kernels are ``nogil`` and :mod:`runtime.parallel`
  splits work over a thread pool instead.
* fastmath without ``nnan``/``ninf``, so NaN and Inf keep their meaning.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import numba

CACHE = os.environ.get("TESSERA_NUMBA_CACHE", "1") != "0"
STALE_SECONDS = 7 * 24 * 3600


FACADES = ("inference_engine/", "kp/", "app/", "fwdnxt.py", "fwdnxt_flags.py", "fwdnxt_debug.py", "requests.py")
"""The API facades under runtime/ (relative paths; a folder ends in "/"):
pure Python that no kernel reads, left out of the cache's digest so that
editing an API does not recompile every kernel (tests/test_layers.py checks
that none of them imports numba or the jit module)."""


def is_facade(relative: str) -> bool:
    return any(relative.startswith(f) if f.endswith("/") else relative == f for f in FACADES)


def _sources_digest() -> str:
    root = Path(__file__).parent
    digest = hashlib.sha1()
    for path in sorted(p for p in root.rglob("*.py") if not is_facade(p.relative_to(root).as_posix())):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _cache_base() -> Path:
    given = os.environ.get("TESSERA_NUMBA_CACHE_DIR")
    if given:
        return Path(given)
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(home) / "tessera" / "numba"


def _use_versioned_cache() -> None:
    """Point Numba's cache at <base>/<digest of runtime/> (unless the user
    set NUMBA_CACHE_DIR), and drop sibling folders unused for a week. Numba
    falls back to its own locations when the folder is not writable."""
    if not CACHE or os.environ.get("NUMBA_CACHE_DIR"):
        return
    base = _cache_base()
    folder = base / (_sources_digest() + ("-boundscheck" if numba.config.BOUNDSCHECK else ""))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.utime(folder)
        for sibling in base.iterdir():
            if sibling != folder and sibling.is_dir() and time.time() - sibling.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(sibling, ignore_errors=True)
    except OSError:
        return
    numba.config.CACHE_DIR = str(folder)


_use_versioned_cache()
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
