"""Compile a job's kernels on a second core while the job runs.

A cold kernel cache makes a job compile every Numba signature it reaches,
one after another on one core (Numba's compiler holds a process-wide lock),
while the host's other cores sit idle. A *manifest* lists the signatures a
job compiled last time it ran cold, in the order it compiled them
(:func:`manifest_from_cache` reads them off a filled cache folder: each
kernel's index names its signatures, and each signature's code file was
written when it was compiled). :func:`start` runs ``python -m
compiler.precompile MANIFEST`` in the background, which compiles the
manifest's second half, into the same kernel cache, while the job compiles
from its start: whatever the helper has saved by the time the job reaches
it, the job loads instead of compiling (Numba checks the cache before it
compiles a new signature). The helper then works back through the first
half from its end, toward the job. Within each half the order is the
job's, callees before their callers, so the two seldom compile the same
thing (going back from the end, the helper compiled each caller's whole
tree while the job compiled the same callees forward: a cold ``tessera
run`` took 90 s that way, 70 s this way, 135 s with no helper).

Several processes saving to one cache is safe (runtime.jit serialises each
kernel's saves). A manifest out of date costs time, never correctness:
entries whose kernel is gone or whose types no longer apply are skipped,
and what it lacks the job compiles itself. The helper runs at a lower
priority, stops when the job ends (:meth:`Precompiler.stop`), and leaves a
mark in the cache folder when it got through the whole manifest, so later
jobs on a warm cache start no helper at all.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numba

from runtime.files import read_regular, write_atomic
from runtime.jit import CACHE, PACKAGES
from runtime.unlinked import decode_type, encode_type

MANIFESTS = Path(__file__).resolve().parent / "manifests"
"""Where the package keeps its manifests: ``run.json`` for the README's job
and the warm-up (``tessera run`` and ResNet-50), ``suite.json`` for the
tests (written by ``python -m compiler.precompile --write NAME CACHE``)."""
MAX_MANIFEST_BYTES = 8 << 20
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def manifest_from_cache(folder: Path) -> list[tuple[str, str, tuple]]:
    """The Tessera signatures a filled cache ``folder`` holds, as
    (module, function name, argument types), in the order they were
    compiled (their code files' times). A maintainer's tool on a cache one
    has just filled: it reads Numba's own index files, which are pickles
    (as Numba itself does); jobs read only the JSON manifests it writes."""
    entries = []
    for index in Path(folder).rglob("*.nbi"):
        stem = index.name.rsplit("-", 1)[0]  # "<module>.<function>" before "-<line>.py311.nbi"
        if "." not in stem:
            continue
        last, function = stem.split(".", 1)
        parts = index.parent.relative_to(folder).parts
        if not parts or parts[0] not in PACKAGES or "<locals>" in function:
            continue
        try:
            with open(index, "rb") as handle:
                pickle.load(handle)  # Numba's index version
                _, overloads = pickle.loads(handle.read())
        except Exception:  # noqa: BLE001 - an unreadable index is simply not listed
            continue
        for key, data_name in overloads.items():
            code = index.parent / data_name
            if code.exists():
                entries.append((code.stat().st_mtime, ".".join([*parts, last]), function, key[0]))
    entries.sort(key=lambda entry: entry[0])
    return [entry[1:] for entry in entries]


def write_manifest(path: Path, entries: list) -> None:
    """Write ``entries`` (module, function, argument types) as JSON, leaving
    out those with a type :func:`encode_type` does not write."""
    rows = []
    for module, function, args in entries:
        encoded = [encode_type(t) for t in args] if isinstance(args, tuple) else [None]
        if None not in encoded:
            rows.append([module, function, encoded])
    lines = ",\n".join(json.dumps(row, separators=(",", ":")) for row in rows)  # a line an entry
    write_atomic(Path(path), f'{{"numba": "{numba.__version__}", "entries": [\n{lines}\n]}}\n'.encode())


def read_manifest(path: Path) -> list:
    """The entries of the manifest at ``path`` whose module is one of
    Tessera's and whose types read back; none when it is missing, unreadable
    or written for another numba version."""
    try:
        stored = json.loads(read_regular(Path(path), MAX_MANIFEST_BYTES, "kernel manifest"))
    except Exception:  # noqa: BLE001 - a manifest is only ever an optimisation
        return []
    if not isinstance(stored, dict) or stored.get("numba") != numba.__version__:
        return []
    entries = []
    for row in stored.get("entries") or []:
        try:
            module, function, args = row
            if not (isinstance(module, str) and _MODULE.match(module) and module.split(".")[0] in PACKAGES
                    and isinstance(function, str) and function.isidentifier()):
                continue
            entries.append((module, function, tuple(decode_type(a) for a in args)))
        except (ValueError, TypeError, IndexError):
            continue
    return entries


def _mark(path: Path) -> Path | None:
    """The file saying the cache holds everything in manifest ``path``."""
    if not CACHE or not numba.config.CACHE_DIR:
        return None
    try:
        digest = hashlib.sha1(Path(path).read_bytes()).hexdigest()[:12]
    except OSError:
        return None
    return Path(numba.config.CACHE_DIR) / f".precompiled-{Path(path).stem}-{digest}"


def compile_entries(entries: list) -> int:
    """Compile (or load from the cache) the second half of the entries in
    their order, then the first half from its end; the number that were
    there to compile. An entry that no longer fits is skipped.

    The job compiles from the start; within each half the order is the
    job's, callees before their callers (a manifest lists them as they were
    saved), so each side mostly loads, not compiles, what the other shares
    with it."""
    done = 0
    half = len(entries) // 2
    for position in [*range(half, len(entries)), *range(half - 1, -1, -1)]:
        module, function, args = entries[position]
        try:
            dispatcher = getattr(importlib.import_module(module), function)  # one of Tessera's (read_manifest)
            dispatcher.compile(tuple(args))
            done += 1
        except Exception:  # noqa: BLE001 - out of date: the job compiles what it needs itself
            pass
    return done


class Precompiler:
    """The background helper of :func:`start` (``None`` process: none was
    needed or possible)."""

    def __init__(self, process: subprocess.Popen | None):
        self.process = process

    def stop(self) -> None:
        """End the helper if it still runs: what it saved stays cached."""
        if self.process is not None:
            _running.discard(self)
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None

    def __enter__(self) -> "Precompiler":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _background() -> None:
    """In the helper, before it runs: a lower priority than the job, and
    (Linux) ended by the kernel if the job dies without stopping it."""
    os.nice(5)
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start(name: str, manifest: Path | None = None) -> Precompiler:
    """Start compiling manifest ``name`` (or the file ``manifest``) in the
    background, unless the host has one core, the cache is off, there is
    no manifest for this numba, the cache already holds it, or
    ``TESSERA_PRECOMPILE=0``."""
    path = Path(manifest) if manifest else MANIFESTS / f"{name}.json"
    mark = _mark(path)
    if (os.environ.get("TESSERA_PRECOMPILE", "1") == "0" or _running or _cores() < 2 or mark is None
            or mark.exists() or not read_manifest(path)):
        return Precompiler(None)
    env = dict(os.environ, TESSERA_PRECOMPILE="0")
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])
    try:
        process = subprocess.Popen([sys.executable, "-m", "compiler.precompile", str(path), str(mark)], env=env,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   preexec_fn=_background)
    except OSError:
        return Precompiler(None)
    helper = Precompiler(process)
    _running.add(helper)
    return helper


_running: set = set()
"""This process's helpers still running: a command run inside a job that
started one (the warm-up, a test session) starts no second one."""


def main(argv: list[str]) -> int:
    if argv[:1] == ["--write"] and len(argv) == 3:
        entries = manifest_from_cache(Path(argv[2]))
        write_manifest(MANIFESTS / f"{argv[1]}.json", entries)
        print(f"{len(read_manifest(MANIFESTS / f'{argv[1]}.json'))} signatures -> {MANIFESTS / argv[1]}.json")
        return 0
    if len(argv) != 2:
        print("usage: python -m compiler.precompile MANIFEST MARK | --write NAME CACHE_FOLDER", file=sys.stderr)
        return 2
    entries = read_manifest(Path(argv[0]))
    compile_entries(entries)
    try:
        Path(argv[1]).touch()
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
