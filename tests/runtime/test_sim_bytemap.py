"""The simulator's table kernel (runtime/sim/bytemap.py): ``table[x + 128]``
for every code, whole vectors, a masked last one, none, in place and apart,
bytes past the run untouched, on this host's kernel and on the plain loop
(``TESSERA_GEMM_ISA=avx2`` takes the loop on a VBMI host)."""
from __future__ import annotations

import os
import subprocess
import sys

CHECK = """
import numba
import numpy as np
from runtime.sim import bytemap

@numba.njit
def apply(x, table, out):
    bytemap.map8(x.size, x.ctypes.data, table.ctypes.data, out.ctypes.data)
    return bytemap.map_fast()

rng = np.random.default_rng(11)
every = np.arange(-128, 128).astype(np.int8)
for table in (rng.integers(-128, 128, 256).astype(np.int8), every[::-1].copy(), np.full(256, -128, np.int8)):
    for n in (0, 1, 63, 64, 65, 127, 128, 256, 1000, 4097):
        x = np.concatenate([every, rng.integers(-128, 128, n).astype(np.int8)])[-n:] if n else every[:0]
        want = table[x.astype(np.int64) + 128]
        out = np.full(n + 80, 77, np.int8)
        fast = apply(x, table, out[:n])
        assert out[:n].tolist() == want.tolist(), n
        assert (out[n:] == 77).all(), ("wrote past the run", n)
        same = np.concatenate([x, np.full(80, 5, np.int8)])
        apply(same[:n], table, same[:n])
        assert same[:n].tolist() == want.tolist() and (same[n:] == 5).all(), ("in place", n)
assert fast == int(bytemap.uses_vbmi())
print("vbmi" if fast else "loop")
"""


def _run(env: dict) -> str:
    done = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=300,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def test_the_hosts_table_kernel_maps_every_code():
    env = {k: v for k, v in os.environ.items() if k != "TESSERA_GEMM_ISA"}
    assert _run(env) in ("vbmi", "loop")


def test_the_plain_table_loop_maps_every_code():
    assert _run(dict(os.environ, TESSERA_GEMM_ISA="avx2")) == "loop"
