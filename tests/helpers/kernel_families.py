"""Running a check of the host's LLVM IR kernels in a fresh process, with
this host's kernel family or another one it can run
(``TESSERA_GEMM_ISA``, which a kernel module reads once, at import:
``avx2``, or an Intel AVX-512 family, runtime.gemm.family.EMULATED): how
the tests of runtime/sim/dots.py and runtime/sim/bytevec.py reach every
family."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import llvmlite.binding as llvm
import pytest

ROOT = Path(__file__).resolve().parents[2]

NEEDS = {"": (), "avx2": ("avx2", "fma"), "avx512bw": ("avx512f", "avx512bw"),
         "avx512vnni": ("avx512f", "avx512bw", "avx512vnni")}
"""The host features each family's code needs to run here."""


CPUS = {"avx2": "haswell", "avx512bw": "skylake-avx512", "avx512vnni": "cascadelake"}
"""A CPU of each family for Numba's own code (``NUMBA_CPU_NAME``), with
that CPU's features alone: Haswell's run on every AVX2 host."""


def run_check(code: str, family: str = "", numba_too: bool = False) -> str:
    """The standard output of ``code`` run by a new Python in the
    repository (stripped) with kernel family ``family`` (``""``: the
    host's) and, with ``numba_too``, Numba's code compiled for a CPU of
    that family (:data:`CPUS`), not this host; the test fails with its
    error output if it fails, and is skipped where this host cannot run
    that family's instructions."""
    features = llvm.get_host_cpu_features()
    missing = [name for name in NEEDS[family] if not features.get(name)]
    if missing:
        pytest.skip(f"this host lacks {', '.join(missing)}: the {family} kernels cannot run here")
    env = {k: v for k, v in os.environ.items() if k != "TESSERA_GEMM_ISA"}
    if family:
        env["TESSERA_GEMM_ISA"] = family
    if family and numba_too:
        env.update(NUMBA_CPU_NAME=CPUS[family], NUMBA_CPU_FEATURES="")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()
