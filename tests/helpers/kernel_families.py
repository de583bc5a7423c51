"""Running a check of the host's LLVM IR kernels in a fresh process, with
this host's kernel family or with the AVX2 one (``TESSERA_GEMM_ISA=avx2``,
which a kernel module reads once, at import): how the tests of
runtime/sim/dots.py and runtime/sim/bytevec.py reach both families."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_check(code: str, avx2: bool) -> str:
    """The standard output of ``code`` run by a new Python in the
    repository (stripped); the test fails with its error output if it
    fails."""
    env = {k: v for k, v in os.environ.items() if k != "TESSERA_GEMM_ISA"}
    if avx2:
        env["TESSERA_GEMM_ISA"] = "avx2"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()
