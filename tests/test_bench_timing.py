"""bench/timing.py: under another CPU's kernel family (TESSERA_GEMM_ISA), numpy's
OpenBLAS, bench_gemm's reference, is given that family's kernels too, unless
the caller chose some; run in a child process (the settings are environment
variables read at import)."""
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parents[1] / "bench"


def _coretype(**env) -> str:
    child = {k: v for k, v in os.environ.items() if k not in ("TESSERA_GEMM_ISA", "OPENBLAS_CORETYPE")}
    child.update(env)
    code = "import os, timing; print(os.environ.get('OPENBLAS_CORETYPE', '-'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=BENCH, env=child, capture_output=True, text=True,
                         check=True, timeout=60)
    return out.stdout.strip()


def test_an_emulated_family_gets_a_blas_of_the_same_instructions():
    assert _coretype(TESSERA_GEMM_ISA="avx2") == "Haswell"
    assert _coretype(TESSERA_GEMM_ISA="avx512bw") == "SkylakeX"
    assert _coretype() == "-"  # the host's own family: OpenBLAS chooses for itself


def test_a_chosen_coretype_is_kept():
    assert _coretype(TESSERA_GEMM_ISA="avx2", OPENBLAS_CORETYPE="Zen") == "Zen"
