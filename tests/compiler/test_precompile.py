"""Compiling a job's kernels on a second core (compiler/precompile.py, issue
52): a manifest read off a filled cache lists its signatures in compile
order; the helper compiles a manifest into a fresh cache, skipping what no
longer fits, and marks it done; a job then loads those kernels instead of
compiling them; no helper starts where none is needed."""
import importlib
import json
import subprocess
import sys
from pathlib import Path

import numba
from numba import types
from numba.core.dispatcher import Dispatcher

from compiler import precompile
from runtime import jit
from tests.helpers.jit_probe import COUNT_COMPILES, probe_env

JOB = COUNT_COMPILES + """
from runtime.gemm.tasks import plan_shape, task_block
from runtime.gemm.tasks import PLAN_SIZE
plan = np.ones(PLAN_SIZE, np.int64)
plan_shape(plan)
task_block(plan, 0)
print(json.dumps(compiled))
"""


def _env(cache: Path) -> dict:
    return probe_env(cache, TESSERA_PRECOMPILE="0")


def _job(cache: Path) -> list:
    done = subprocess.run([sys.executable, "-c", JOB], env=_env(cache), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_helper_compiles_a_manifest_that_a_job_then_loads(tmp_path):
    assert _job(tmp_path / "first") == ["plan_shape", "task_block"]  # a cold cache compiles both
    entries = precompile.manifest_from_cache(tmp_path / "first" / jit.cache_key())
    assert [(module, name) for module, name, _ in entries] == [("runtime.gemm.tasks", "plan_shape"),
                                                               ("runtime.gemm.tasks", "task_block")]
    gone = [("runtime.gemm.tasks", "no_such_kernel", (types.int64,)),  # out of date: skipped, not fatal
            ("runtime.gemm.tasks", "plan_shape", (types.unicode_type,))]
    manifest, mark = tmp_path / "job.json", tmp_path / "second" / "done"
    precompile.write_manifest(manifest, gone + entries)
    done = subprocess.run([sys.executable, "-m", "compiler.precompile", str(manifest), str(mark)],
                          env=_env(tmp_path / "second"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert mark.exists()
    assert _job(tmp_path / "second") == []  # everything the job needs was there to load


def test_no_helper_where_none_is_needed(tmp_path, monkeypatch):
    manifest = tmp_path / "job.json"
    precompile.write_manifest(manifest, [("runtime.gemm.tasks", "plan_shape", (types.int64[::1],))])
    assert precompile.read_manifest(manifest)
    monkeypatch.setenv("TESSERA_PRECOMPILE", "0")
    assert precompile.start("job", manifest).process is None
    monkeypatch.setenv("TESSERA_PRECOMPILE", "1")
    monkeypatch.setattr(precompile, "_cores", lambda: 1)
    assert precompile.start("job", manifest).process is None  # one core: nothing to gain
    monkeypatch.setattr(precompile, "_cores", lambda: 2)
    mark = precompile._mark(manifest)
    if mark is not None:  # (the kernel cache is on)
        mark.touch()
        try:
            assert precompile.start("job", manifest).process is None  # the cache already holds it
        finally:
            mark.unlink()
    text = manifest.read_text()
    manifest.write_text(text.replace(numba.__version__, "0.0"))
    assert precompile.read_manifest(manifest) == []  # another numba's types: not used
    assert precompile.start("job", manifest).process is None
    manifest.write_bytes(b"not json")
    assert precompile.read_manifest(manifest) == []
    manifest.write_text(text.replace("runtime.gemm.tasks", "os"))
    assert precompile.read_manifest(manifest) == []  # only Tessera's own modules are ever imported


def test_types_go_to_json_and_back():
    values = [types.int64, types.float32, types.boolean, types.literal(0), types.literal(True),
              types.Array(types.float32, 3, "A"), types.Array(types.int8, 1, "C", readonly=True),
              types.UniTuple(types.int64, 15), types.Tuple([types.Array(types.float64, 2, "C"), types.uint32])]
    assert [precompile.decode_type(json.loads(json.dumps(precompile.encode_type(t)))) for t in values] == values
    assert precompile.encode_type(types.unicode_type) is None


def test_the_shipped_manifests_are_for_this_numba():
    for name in ("run", "suite"):
        entries = precompile.read_manifest(precompile.MANIFESTS / f"{name}.json")
        assert entries, f"compiler/manifests/{name}.json is missing or for another numba than {numba.__version__}"
        assert all(module.split(".")[0] in jit.PACKAGES for module, _, _ in entries)
        # a kernel moved or renamed leaves its entries to be skipped, and the helper compiles less ahead: write
        # the manifest again (the module docstring of compiler/precompile.py) when one moves
        gone = sorted({f"{module}.{function}" for module, function, _ in entries
                       if not isinstance(getattr(importlib.import_module(module), function, None), Dispatcher)})
        assert not gone, f"compiler/manifests/{name}.json names kernels that are gone: {gone}"
