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
  fresh cache; folders unused for a week are removed. The folder's name also
  carries the numba and numpy versions.
* Inside that folder a kernel's files sit under its module's path in the
  package (runtime/sim/...), not under a hash of the absolute path as
  Numba's own locator puts them, so a cache filled anywhere for the same
  sources serves an installed copy too. ``pip install .`` fills one while it
  builds the wheel (setup.py runs :mod:`compiler.warmup`) and ships it as
  runtime/_jitcache/; the first import copies it into the user's cache, so a
  fresh install's first run loads the kernels instead of compiling them for
  minutes. Numba's own index still checks each entry against the kernel
  source's hash, the numba version and the CPU (name and features): an entry
  built for another CPU is ignored and the kernel compiles as before.
* Code Tessera compiles with llvmlite itself (the GEMM microkernels) is kept
  as object code in the same folder (:func:`load_object_code`,
  :func:`store_object_code`), so it ships and is invalidated the same way;
  each file is named by a digest of everything it is compiled from and
  checked against a digest of its bytes before LLVM sees it.
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
from numba.core.caching import UserProvidedCacheLocator

from runtime.files import MAX_BINARY_BYTES, FileError, read_regular, write_atomic

CACHE = os.environ.get("TESSERA_NUMBA_CACHE", "1") != "0"
STALE_SECONDS = 7 * 24 * 3600


FACADES = ("inference_engine/", "kp/", "app/", "fwdnxt.py", "fwdnxt_flags.py", "fwdnxt_debug.py", "requests.py")
"""The API facades under runtime/ (relative paths; a folder ends in "/"):
pure Python that no kernel reads, left out of the cache's digest so that
editing an API does not recompile every kernel (tests/test_layers.py checks
that none of them imports numba or the jit module)."""


def is_facade(relative: str) -> bool:
    return any(relative.startswith(f) if f.endswith("/") else relative == f for f in FACADES)


ROOT = Path(__file__).resolve().parent
SHIPPED = Path(os.environ.get("TESSERA_NUMBA_SHIPPED") or ROOT / "_jitcache")
"""Where an installed wheel carries the kernels compiled while it was built
(``TESSERA_NUMBA_SHIPPED`` names another folder, for bench/bench_coldstart.py)."""


def _sources_digest() -> str:
    digest = hashlib.sha1()
    for path in sorted(p for p in ROOT.rglob("*.py") if not is_facade(p.relative_to(ROOT).as_posix())):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cache_key() -> str:
    """The cache folder's name: runtime/'s sources, the versions the compiled
    code depends on, and the code-generation flags Numba's key leaves out."""
    import numpy

    versions = f"nb{numba.__version__}-np{numpy.__version__}".replace("+", "_")
    return f"{_sources_digest()}-{versions}" + ("-boundscheck" if numba.config.BOUNDSCHECK else "")


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
    key = cache_key()
    folder = base / key
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _take_shipped(SHIPPED / key, folder)
        os.utime(folder)
        for sibling in base.iterdir():
            if sibling != folder and sibling.is_dir() and time.time() - sibling.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(sibling, ignore_errors=True)
    except (OSError, FileError):
        return
    numba.config.CACHE_DIR = str(folder)
    if not numba.config.CACHE_LOCATOR_CLASSES:  # the user's own choice stands
        numba.config.CACHE_LOCATOR_CLASSES = ",".join([f"{__name__}.PackageCacheLocator", *_NUMBA_LOCATORS])


_NUMBA_LOCATORS = ("UserProvidedCacheLocator", "InTreeCacheLocator", "UserWideCacheLocator", "IPythonCacheLocator",
                   "ZipCacheLocator")
"""Numba's own locators, in its order, for every function outside runtime/."""
TAKEN = ".shipped"
"""Marks a cache folder the shipped kernels were copied into."""


def _take_shipped(shipped: Path, folder: Path) -> None:
    """Copy the kernels a wheel shipped for this key into ``folder`` once
    (files the folder already has are kept: they are as new or newer)."""
    if not shipped.is_dir() or shipped.resolve() == folder.resolve() or (folder / TAKEN).exists():
        return
    for source in shipped.rglob("*"):
        target = folder / source.relative_to(shipped)
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif not target.exists():
            _publish(target, source.read_bytes())
    (folder / TAKEN).touch()


def _publish(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` whole or not at all: another process
    may read the cache at once, and must never see half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, data)


class PackageCacheLocator(UserProvidedCacheLocator):
    """Numba's cache locator for Tessera's jitted functions: <cache
    folder>/<the module's folder inside the project>, the same wherever the
    project is installed. Functions elsewhere go to Numba's own locators."""

    def __init__(self, py_func, py_file):
        super().__init__(py_func, py_file)
        relative = Path(py_file).resolve().parent.relative_to(ROOT.parent)
        self._cache_path = os.path.join(numba.config.CACHE_DIR, *relative.parts)

    @classmethod
    def from_function(cls, py_func, py_file):
        try:
            package = Path(py_file).resolve().relative_to(ROOT.parent).parts[0]
        except (ValueError, OSError, IndexError):
            return None
        return super().from_function(py_func, py_file) if package in PACKAGES else None


PACKAGES = ("runtime", "passes", "compiler", "codegen", "ir")
"""Tessera's packages (pyproject.toml), whose jitted functions the locator places."""


_use_versioned_cache()


def _object_code_path(name: str, inputs: str) -> Path | None:
    """The file of object code ``name`` compiled from ``inputs`` (its IR,
    target CPU and features, LLVM's version: everything the code depends
    on), under the kernel cache folder; None with the cache off or unset."""
    if not CACHE or not numba.config.CACHE_DIR:
        return None
    digest = hashlib.sha256(inputs.encode()).hexdigest()[:24]
    return Path(numba.config.CACHE_DIR) / "llvm" / f"{name}-{digest}.o"


def load_object_code(name: str, inputs: str) -> bytes | None:
    """The cached object code of ``name`` compiled from ``inputs``, or None
    (none cached, unreadable, or not the bytes that were stored: a torn or
    altered file is never handed to LLVM)."""
    path = _object_code_path(name, inputs)
    try:
        stored = read_regular(path, MAX_BINARY_BYTES, "cached object code") if path is not None else b""
    except FileError:
        return None
    check, data = stored[:32], stored[32:]
    return data if data and hashlib.sha256(data).digest() == check else None


def store_object_code(name: str, inputs: str, data: bytes) -> None:
    """Keep ``data``, the object code of ``name`` compiled from ``inputs``,
    for :func:`load_object_code` (best effort: a read-only cache is skipped)."""
    path = _object_code_path(name, inputs)
    if path is None or not data:
        return
    try:
        _publish(path, hashlib.sha256(data).digest() + data)
    except (OSError, FileError):
        pass


FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})


def jit(fn=None, *, fastmath: bool = False, inline: str = "never"):
    """``numba.njit`` with Tessera's policy (cached, nogil, numpy errors)."""
    options = dict(cache=CACHE, nogil=True, error_model="numpy", inline=inline,
                   fastmath=set(FASTMATH) if fastmath else False)
    if fn is None:
        return lambda f: numba.njit(**options)(f)
    return numba.njit(**options)(fn)


def cfunc(signature, fn, *, fastmath: bool = False):
    """``numba.cfunc`` of ``fn`` with the same policy (cached, numpy errors):
    a C entry point whose address jitted code calls (compiled when called,
    not at import, so that only the entry points a run needs compile)."""
    return numba.cfunc(signature, cache=CACHE, error_model="numpy",
                       fastmath=set(FASTMATH) if fastmath else False)(fn)


def vectorize(signatures=None, *, fastmath: bool = False):
    """``numba.vectorize`` (a real ufunc: numpy does broadcasting) with the
    same policy; compiled lazily per dtype when no signatures are given."""
    options = dict(cache=CACHE, fastmath=set(FASTMATH) if fastmath else False)
    if signatures is None:
        return numba.vectorize(**options)
    return numba.vectorize(signatures, **options)
