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

import contextlib
import hashlib
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import numba
import numpy as np
from numba import types
from numba.core import cgutils, event
from numba.core.caching import UserProvidedCacheLocator
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic
from numba.np.arrayobj import populate_array

try:
    import fcntl
except ImportError:  # no flock (Windows): the cache takes no locks
    fcntl = None

from runtime import unlinked
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


HOST = "host.json"
"""In a shipped cache: the CPU its kernels were compiled for (:func:`host_cpu`)."""
foreign_shipped: str | None = None
"""Set when the shipped kernels were compiled for another CPU: what to tell
the user (:class:`CompileReport` says it), since they are not used."""


def host_cpu() -> list[str]:
    """What Numba's cache checks an entry against: the target triple, the CPU's
    name and its features (``codegen.magic_tuple``)."""
    from numba.core.registry import cpu_target

    return [str(part) for part in cpu_target.target_context.codegen().magic_tuple()]


def prepare_to_ship(folder: Path) -> None:
    """Make a filled cache ``folder`` ready to ship in a wheel
    (compiler/warmup.py): record the CPU its kernels are compiled for, and
    drop the locks the processes that filled it held (:func:`_serialise_cache_saves`)."""
    write_atomic(Path(folder) / HOST, json.dumps(host_cpu()).encode())
    for lock in Path(folder).rglob("*" + LOCK):
        lock.unlink(missing_ok=True)


def _shipped_for_another_cpu(shipped: Path) -> str | None:
    """Why the kernels in ``shipped`` cannot serve this CPU, or None."""
    try:
        theirs = json.loads(read_regular(shipped / HOST, 1 << 16, "shipped kernels' CPU"))
    except (FileError, ValueError):
        return None  # no record: Numba's index still checks each entry
    ours = host_cpu()
    if theirs == ours:
        return None
    name = theirs[1] if isinstance(theirs, list) and len(theirs) > 1 else "?"
    return f"the package's shipped kernels were compiled for another CPU ({name}; this one is {ours[1]})"


def _take_shipped(shipped: Path, folder: Path) -> None:
    """Copy the kernels a wheel shipped for this key into ``folder`` once
    (files the folder already has are kept: they are as new or newer);
    kernels compiled for another CPU are not copied (Numba would ignore
    them), and :data:`foreign_shipped` says so."""
    global foreign_shipped
    if not shipped.is_dir() or shipped.resolve() == folder.resolve() or (folder / TAKEN).exists():
        return
    foreign_shipped = _shipped_for_another_cpu(shipped)
    if foreign_shipped:
        (folder / TAKEN).touch()
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


LOCK = ".lock"
"""Suffix of the lock file beside a kernel's index (:func:`_serialise_cache_saves`)."""


@contextlib.contextmanager
def _file_lock(path: str, wait: float | None = None):
    """An exclusive ``flock`` on ``path`` (created when missing) held for
    the block, waiting as long as it takes or at most ``wait`` seconds; the
    kernel releases it if the process dies. The block runs unlocked where
    the file cannot be opened (a read-only cache) or the wait ran out."""
    try:
        lock = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield
        return
    try:
        if wait is None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        else:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.02)
        yield
    finally:
        os.close(lock)  # releases the lock


def _serialise_cache_saves() -> None:
    """Make Numba's cache safe for several processes filling it at once
    (numba #4807): ``IndexDataCacheFile.save`` reads a kernel's index,
    picks a free data file name, writes the index and then the data, so two
    processes saving different signatures of one kernel at once could both
    pick ``<kernel>.1.nbc`` and leave the index naming one signature beside
    the other's code: a wrong kernel loaded later. Each save now holds an
    exclusive lock on a file beside the index (``fcntl.flock``; released
    by the kernel if the process dies), so saves of one kernel happen one
    after the other and each sees the index the previous one wrote. Loads
    take no lock: an index never names a data file holding another
    signature, and a data file not yet written reads as a miss (compiled
    again). Where ``fcntl`` or that method is missing, nothing changes."""
    try:
        from numba.core.caching import IndexDataCacheFile
    except ImportError:
        return
    save = getattr(IndexDataCacheFile, "save", None)
    if fcntl is None or save is None or getattr(save, "tessera_locked", False):
        return

    def locked_save(self, key, data):
        with _file_lock(self._index_path + LOCK):  # unlocked in a read-only cache: Numba's save warns as before
            return save(self, key, data)

    locked_save.tessera_locked = True
    IndexDataCacheFile.save = locked_save


COMPILE_WAIT = 600.0
"""Seconds a process waits for another to finish compiling a signature
(:func:`_compile_once_across_processes`) before compiling it itself."""
_compiling: set[str] = set()
"""The compile locks this process holds (one per kernel signature)."""


def _compile_once_across_processes() -> None:
    """Compile each kernel signature once however many processes need it at
    once (the test suite's workers, the compile helper of compiler/precompile.py
    beside a job): before compiling a signature the cache does not hold, a
    process takes an exclusive lock named by the kernel's index and the
    signature (``fcntl.flock``, released by the kernel if the process dies),
    and Numba then looks in the cache again, so a process that waited for
    another loads what that one saved instead of compiling it a second time.
    The lock is taken inside Numba's compiler lock (every process takes the
    two in that order, and a kernel's callees are locked while its own lock
    is held, so waits follow the call graph and cannot form a cycle); a
    signature this process already locks (a recursive compile) is not locked
    again, and a wait longer than :data:`COMPILE_WAIT` compiles regardless,
    so a lock can cost time, never a hang. Without ``fcntl``, or with the
    cache off, nothing changes."""
    try:
        from numba.core import sigutils
        from numba.core.compiler_lock import global_compiler_lock
        from numba.core.dispatcher import Dispatcher
    except ImportError:
        return
    compile_ = getattr(Dispatcher, "compile", None)
    if fcntl is None or compile_ is None or getattr(compile_, "tessera_once", False):
        return

    def compile_once(self, sig):
        index = getattr(getattr(getattr(self, "_cache", None), "_cache_file", None), "_index_path", None)
        if index is None:  # the cache is off for this kernel
            return compile_(self, sig)
        with global_compiler_lock:
            args, _ = sigutils.normalize_signature(sig)
            key = f"{index}-{hashlib.sha256(str(args).encode()).hexdigest()[:16]}{LOCK}"
            if tuple(args) in self.overloads or key in _compiling:
                return compile_(self, sig)
            _compiling.add(key)
            try:
                with _file_lock(key, COMPILE_WAIT):
                    return compile_(self, sig)
            finally:
                _compiling.discard(key)

    compile_once.tessera_once = True
    Dispatcher.compile = compile_once


_serialise_cache_saves()
_compile_once_across_processes()
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
        return lambda f: unlinked.watch(numba.njit(**options)(f))
    return unlinked.watch(numba.njit(**options)(fn))


def compiled_entry(dispatcher, args: tuple):
    """The compiled code of ``dispatcher`` for the types of ``args``
    (compiled, or loaded from the kernel cache, now), called without the
    dispatcher's type matching: ~55 ns an array argument instead of ~110,
    which matters for a call made on every run with many arguments (the
    simulator's interpreter: 25). The caller must pass arguments of exactly
    those types on every call (arrays of the same dtype, rank, layout and
    writability): the entry point checks only that an array is an array."""
    return dispatcher.compile(tuple(dispatcher.typeof_pyval(a) for a in args))


def data_address(array: np.ndarray) -> int:
    """``array.ctypes.data``, its first byte's address, in ~0.3 µs where
    numpy's ctypes object (or ``__array_interface__``) costs ~2 µs: a small
    model's schedule binds each input by address on every run. Arrays of a
    type Numba has not are asked numpy's way."""
    try:
        return _data_address(array)
    except Exception:  # noqa: BLE001 - a dtype Numba cannot type: numpy's answer, the same number
        return array.ctypes.data


def readonly(array: np.ndarray) -> np.ndarray:
    """``array`` if it is read-only, else a read-only view of it (under a
    microsecond): how a program's frozen constants reach a kernel, so that an
    input the kernel only reads has one Numba type on every path (per step,
    schedule, tests) and one compiled signature, not one per read-only flag."""
    if not array.flags.writeable:
        return array
    view = array.view()
    view.setflags(write=False)
    return view


@intrinsic
def typed_readonly(typingctx, array):
    """:func:`readonly` in jitted code: ``array`` typed read-only (no copy,
    no check), what the per-step path passes where its array is, so that
    the callee's compiled specialisation serves both."""
    if not isinstance(array, types.Array):
        return None
    sig = array.copy(readonly=True)(array)

    def codegen(context, builder, signature, args):
        return impl_ret_borrowed(context, builder, signature.return_type, args[0])

    return sig, codegen


@intrinsic
def flat_view(typingctx, array):
    """``array.reshape(-1)`` of a C-contiguous array, made in place: its data,
    its size as the one extent, no call (Numba's reshape goes through a
    helper that works out strides for any layout, ~25 ns a call, a third
    of a depthwise chunk's fixed cost on Zen 4)."""
    if not isinstance(array, types.Array) or array.layout != "C":
        return None
    sig = array.copy(ndim=1)(array)

    def codegen(context, builder, signature, args):
        source = context.make_array(signature.args[0])(context, builder, args[0])
        view = context.make_array(signature.return_type)(context, builder)
        populate_array(view, data=source.data, shape=cgutils.pack_array(builder, [source.nitems]),
                       strides=cgutils.pack_array(builder, [source.itemsize]), itemsize=source.itemsize,
                       meminfo=source.meminfo, parent=source.parent)
        return impl_ret_borrowed(context, builder, signature.return_type, view._getvalue())

    return sig, codegen


def cfunc(signature, fn, *, fastmath: bool = False):
    """``numba.cfunc`` of ``fn`` with the same policy (cached, numpy errors):
    a C entry point whose address jitted code calls (compiled when called,
    not at import, so that only the entry points a run needs compile)."""
    entry = numba.cfunc(signature, cache=CACHE, error_model="numpy",
                        fastmath=set(FASTMATH) if fastmath else False)(fn)
    unlinked.fill(entry._library)  # compiled or loaded: the slots of the calls it makes unlinked
    return entry


def vectorize(signatures=None, *, fastmath: bool = False):
    """``numba.vectorize`` (a real ufunc: numpy does broadcasting) with the
    same policy; compiled lazily per dtype when no signatures are given."""
    options = dict(cache=CACHE, fastmath=set(FASTMATH) if fastmath else False)
    if signatures is None:
        return numba.vectorize(**options)
    return numba.vectorize(signatures, **options)


class CompileReport(event.Listener):
    """Tells a command line's user that kernels are being compiled, rather
    than minutes of silence: once compiling has gone on for ``quiet``
    seconds, one line saying what is happening and that it happens once
    (the cache keeps them), then a line of progress every ``every`` seconds
    while it goes on, and a last line with the count and the seconds.
    A short compile (a new model's one or two kernels) says nothing. Used
    as a context manager around a command (runtime/command.py)."""

    def __init__(self, prog: str, stream=None, quiet: float = 3.0, every: float = 20.0):
        self.prog, self.stream, self.quiet, self.every = prog, stream or sys.stderr, quiet, every
        self._lock = threading.Lock()
        self._depth, self._began, self._seconds, self.count = 0, 0.0, 0.0, 0
        self._said, self._last = False, 0.0
        self._saying = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="tessera-compile-report", daemon=True)

    def on_start(self, ev):
        with self._lock:
            if self._depth == 0:
                self._began = time.perf_counter()
            self._depth += 1

    def on_end(self, ev):
        with self._lock:
            self._depth -= 1
            self.count += 1
            if self._depth == 0:
                self._seconds += time.perf_counter() - self._began

    def seconds(self) -> float:
        """Seconds spent compiling so far (a compile under way included)."""
        with self._lock:
            return self._seconds + (time.perf_counter() - self._began if self._depth else 0.0)

    def _say(self, text: str) -> None:
        try:
            print(f"{self.prog}: {text}", file=self.stream, flush=True)
        except (OSError, ValueError):
            pass

    def _check(self) -> None:
        with self._saying:
            spent = self.seconds()
            if not self._said and self.count + self._depth and (spent >= self.quiet or foreign_shipped):
                self._said, self._last = True, spent
                why = f"{foreign_shipped}; " if foreign_shipped else ""
                self._say(f"{why}compiling the kernels this job needs for this CPU, once (this can take "
                          f"minutes; later runs load them from {numba.config.CACHE_DIR or 'the kernel cache'})")
            elif self._said and spent - self._last >= self.every:
                self._last = spent
                self._say(f"... {self.count} kernel signatures compiled, {spent:.0f} s")

    def _watch(self) -> None:
        while not self._done.wait(0.5):
            self._check()

    def __enter__(self):
        event.register("numba:compile", self)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        event.unregister("numba:compile", self)
        self._check()
        if self._said:
            self._say(f"compiled {self.count} kernel signatures in {self.seconds():.0f} s; they are cached for "
                      "later runs")
        return False


@jit
def _data_address(array):
    return array.ctypes.data
