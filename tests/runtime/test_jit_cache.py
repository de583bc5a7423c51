"""The kernel cache a wheel ships (runtime/jit.py, setup.py, issue 24 item
1): kernels compiled in one place load, without compiling, in a process
that has only the shipped copy and the package installed elsewhere; the
copy keeps what the user's cache already has; the GEMM microkernels'
object code is kept in the same cache, checked before it is loaded."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

from runtime import jit
from runtime.gemm import family, igemm, microkernel, sgemm
from runtime.gemm.family import host_isa
from tests.helpers.jit_probe import COUNT_COMPILES, ROOT, probe_env

PROBE = COUNT_COMPILES + """
from runtime.kernels.activations import relu
print(json.dumps({"value": float(relu(np.float32(-1.5))) + float(relu(np.float32(2.5))), "compiled": compiled}))
"""


def probe(cache: Path, shipped: Path, root: Path = ROOT) -> dict:
    env = probe_env(cache, root, TESSERA_NUMBA_SHIPPED=str(shipped))
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_shipped_kernels_load_without_compiling_in_a_fresh_cache(tmp_path):
    built = probe(tmp_path / "build", tmp_path / "nothing")  # what setup.py's warm-up does
    assert built["value"] == 2.5 and "relu" in built["compiled"]
    key = jit.cache_key()
    placed = list((tmp_path / "build" / key / "runtime" / "kernels").glob("activations.relu-*.nbi"))
    assert placed, "the kernel's files sit under its module's folder in the package"
    installed = tmp_path / "site-packages"  # the same sources elsewhere, as pip installs them
    shutil.copytree(ROOT / "runtime", installed / "runtime", ignore=shutil.ignore_patterns("__pycache__", "_jitcache"))
    fresh = probe(tmp_path / "user", tmp_path / "build", installed)  # a fresh install: empty cache, shipped kernels
    assert fresh == {"value": 2.5, "compiled": []}
    assert (tmp_path / "user" / key / jit.TAKEN).exists()
    again = probe(tmp_path / "user", tmp_path / "nothing", installed)  # the copy stays
    assert again == {"value": 2.5, "compiled": []}


def test_taking_the_shipped_copy_keeps_the_users_files_and_happens_once(tmp_path):
    shipped, folder = tmp_path / "shipped", tmp_path / "user"
    (shipped / "runtime" / "sim").mkdir(parents=True)
    (shipped / "runtime" / "sim" / "a.nbi").write_bytes(b"shipped a")
    (shipped / "runtime" / "b.nbc").write_bytes(b"shipped b")
    (folder / "runtime").mkdir(parents=True)
    (folder / "runtime" / "b.nbc").write_bytes(b"user b")
    jit._take_shipped(shipped, folder)
    assert (folder / "runtime" / "sim" / "a.nbi").read_bytes() == b"shipped a"
    assert (folder / "runtime" / "b.nbc").read_bytes() == b"user b"
    assert not list(folder.rglob("*.part"))
    (shipped / "runtime" / "c.nbi").write_bytes(b"later")
    jit._take_shipped(shipped, folder)  # marked as taken: not copied again
    assert not (folder / "runtime" / "c.nbi").exists()


def test_the_locator_places_only_tesseras_functions(tmp_path):
    import numba

    def outside():
        return 1

    assert jit.PackageCacheLocator.from_function(outside, __file__) is None
    from runtime.kernels import activations

    locator = jit.PackageCacheLocator.from_function(activations.relu.py_func, activations.__file__)
    assert locator is not None
    assert Path(locator.get_cache_path()) == Path(numba.config.CACHE_DIR) / "runtime" / "kernels"


_LOADED: list = []
"""Engines the object-code test made: kept alive, as kernels planned while
they were current may keep their addresses."""


def test_compiled_microkernels_are_kept_as_checked_object_code(monkeypatch, tmp_path):
    """A process compiles the microkernels once and keeps their object code
    in the kernel cache; the next loads it (about a second saved per
    process) and computes bit for bit what the compiled code does. A torn
    or altered file is never handed to LLVM: the kernels compile again and
    the file is rewritten."""
    isa = host_isa()
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((37, 300)).astype(np.float32), rng.standard_normal((300, 45)).astype(np.float32)
    qa, qb = rng.integers(-128, 128, (29, 200), dtype=np.int8), rng.integers(0, 256, (200, 33), dtype=np.uint8)
    expected = sgemm(a, b), igemm(qa, qb)
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path))
    compiled = {kind: microkernel._compile(isa, kind) for kind in family.KINDS}
    _LOADED.append(compiled)
    files = sorted((tmp_path / "llvm").glob("*.o"))
    assert len(files) == len(family.KINDS)
    stored = [f.read_bytes() for f in files]

    def compiling(*args, **kwargs):
        raise AssertionError("compiled, not loaded")

    building = microkernel.llvm.create_pass_builder
    monkeypatch.setattr(microkernel.llvm, "create_pass_builder", compiling)
    loaded = {kind: microkernel._compile(isa, kind) for kind in family.KINDS}
    _LOADED.append(loaded)
    monkeypatch.setattr(microkernel, "_engines", {(isa, kind): pair for kind, pair in loaded.items()})
    np.testing.assert_array_equal(sgemm(a, b), expected[0])
    np.testing.assert_array_equal(igemm(qa, qb), expected[1])
    for file in files:
        data = bytearray(file.read_bytes())
        data[len(data) // 2] ^= 0x40
        file.write_bytes(bytes(data))
    with pytest.raises(AssertionError, match="compiled, not loaded"):
        microkernel._compile(isa, "f32")
    monkeypatch.setattr(microkernel.llvm, "create_pass_builder", building)
    _LOADED.append({kind: microkernel._compile(isa, kind) for kind in family.KINDS})
    assert [f.read_bytes() for f in files] == stored


def _fresh_kernel():
    """A function Numba has not compiled in this process (not cached)."""
    def add_one(x):
        return x + 1

    return numba.njit(cache=False)(add_one)


def test_a_long_compile_is_announced_once_with_its_count(monkeypatch):
    import io

    monkeypatch.setattr(jit, "foreign_shipped", None)
    out = io.StringIO()
    with jit.CompileReport("tessera", out, quiet=0.0, every=3600.0) as report:
        assert _fresh_kernel()(1) == 2
    lines = out.getvalue().splitlines()
    assert report.count >= 1
    assert len(lines) == 2, lines
    assert lines[0].startswith("tessera: compiling the kernels this job needs for this CPU, once")
    assert lines[1].startswith(f"tessera: compiled {report.count} kernel signatures in ")


def test_a_short_compile_says_nothing(monkeypatch):
    import io

    monkeypatch.setattr(jit, "foreign_shipped", None)
    out = io.StringIO()
    with jit.CompileReport("tessera", out, quiet=3600.0) as report:
        assert _fresh_kernel()(2) == 3
    assert report.count >= 1 and out.getvalue() == ""


def test_kernels_shipped_for_another_cpu_are_not_taken_and_the_run_says_why(monkeypatch, tmp_path):
    import io

    monkeypatch.setattr(jit, "foreign_shipped", None)
    ours = jit.host_cpu()
    shipped, folder = tmp_path / "shipped", tmp_path / "user"
    (shipped / "runtime").mkdir(parents=True)
    (shipped / "runtime" / "a.nbi").write_bytes(b"shipped a")
    (shipped / jit.HOST).write_text(json.dumps([ours[0], "some-other-cpu", "+avx512f"]))
    folder.mkdir()
    jit._take_shipped(shipped, folder)
    assert not (folder / "runtime" / "a.nbi").exists() and (folder / jit.TAKEN).exists()
    assert "another CPU (some-other-cpu; this one is" in jit.foreign_shipped
    out = io.StringIO()
    with jit.CompileReport("tessera", out, quiet=3600.0):  # said even for a short compile
        _fresh_kernel()(3)
    first = out.getvalue().splitlines()[0]
    assert first.startswith("tessera: the package's shipped kernels were compiled for another CPU (some-other-cpu")
    assert "compiling the kernels this job needs for this CPU, once" in first

    monkeypatch.setattr(jit, "foreign_shipped", None)
    same, mine = tmp_path / "same", tmp_path / "mine"
    shutil.copytree(shipped, same)
    (same / "runtime" / "a.nbi.lock").write_bytes(b"")  # a filling process's lock: not shipped
    jit.prepare_to_ship(same)
    assert not list(same.rglob("*.lock"))
    mine.mkdir()
    jit._take_shipped(same, mine)
    assert (mine / "runtime" / "a.nbi").read_bytes() == b"shipped a" and jit.foreign_shipped is None


def test_processes_saving_signatures_of_one_kernel_at_once_keep_each(monkeypatch, tmp_path):
    """Numba's save reads the index, picks a free data file and writes both
    (numba #4807): two saves at once both picked `<kernel>.1.nbc`, and the
    index named one signature beside the other's code. runtime.jit holds a
    lock on a file beside the index for each save (flock: separate opens
    conflict even within a process, so two threads stand in for two
    processes), so each save sees the index the other wrote."""
    import threading
    import time

    from numba.core.caching import IndexDataCacheFile

    assert getattr(IndexDataCacheFile.save, "tessera_locked", False)
    slow_index = IndexDataCacheFile._save_index

    def slow(self, overloads):  # widen the window in which the other save would read a stale index
        time.sleep(0.3)
        slow_index(self, overloads)

    monkeypatch.setattr(IndexDataCacheFile, "_save_index", slow)

    def cache():
        return IndexDataCacheFile(str(tmp_path), "kernel", ("stamp", 1))

    keys = [f"signature {i}" for i in range(4)]
    threads = [threading.Thread(target=lambda k=k: cache().save(k, f"code of {k}")) for k in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {key: cache().load(key) for key in keys} == {key: f"code of {key}" for key in keys}
    assert len(list(tmp_path.glob("kernel.*.nbc"))) == len(keys)


def test_the_warm_up_keeps_pips_build_environment_on_its_path(tmp_path):
    """setup.py's warm-up once replaced PYTHONPATH with the built copy,
    which dropped pip's isolated build environment (it reaches the build
    through PYTHONPATH): the warm-up died at `import numpy` and wheels
    shipped no kernels. The built copy now goes first, the rest stays."""
    import runpy
    from unittest import mock

    with mock.patch("setuptools.setup") as setup:
        namespace = runpy.run_path(str(ROOT / "setup.py"))
    assert setup.called
    environ = {"PYTHONPATH": os.pathsep.join(["/tmp/pip-build-env-x/site", "/elsewhere"]), "NUMBA_OPT": "0",
               "HOME": "/home/user"}
    env = namespace["warmup_environment"](tmp_path / "lib", tmp_path / "cache", environ)
    assert env["PYTHONPATH"].split(os.pathsep) == [str(tmp_path / "lib"), "/tmp/pip-build-env-x/site", "/elsewhere"]
    assert env["TESSERA_NUMBA_CACHE_DIR"] == str(tmp_path / "cache") and "NUMBA_OPT" not in env
    assert env["HOME"] == "/home/user"
    assert namespace["warmup_environment"](tmp_path, tmp_path, {})["PYTHONPATH"] == str(tmp_path)


RACE = COUNT_COMPILES + """
import os, sys, time
from pathlib import Path
from runtime.kernels.activations import relu
folder = Path(sys.argv[1])
(folder / f"ready-{os.getpid()}").touch()
while len(list(folder.glob("ready-*"))) < 2:  # both processes reach the kernel's first call together
    time.sleep(0.001)
relu(np.float32(1.0))
print(json.dumps(compiled))
"""


def test_processes_needing_one_signature_at_once_compile_it_once(tmp_path):
    """Two processes (the suite's workers, a job and its compile helper)
    reaching an uncompiled signature at the same moment: one compiles it,
    the other waits for its lock, then loads what the first saved."""
    env = probe_env(tmp_path / "cache", TESSERA_NUMBA_SHIPPED=str(tmp_path / "nothing"))
    runs = [subprocess.Popen([sys.executable, "-c", RACE, str(tmp_path)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert all(run.returncode == 0 for run in runs), [err[-2000:] for _, err in outputs]
    compiled = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert sorted(c.count("relu") for c in compiled) == [0, 1], compiled
