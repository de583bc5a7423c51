"""The simulator's int8 dot kernels (runtime/sim/dots.py): int32 sums that
wrap modulo 2^32, exact for every depth (whole vectors, a masked last one,
none), extreme bytes included, on this host's family and on the others
(``TESSERA_GEMM_ISA=avx2`` or ``avx512bw`` takes the ``vpmaddwd`` kernels on
a VNNI host, ``avx512vnni`` the ``vpdpbusd`` ones as a Cascade Lake has them)."""
from __future__ import annotations

import pytest

from tests.helpers.kernel_families import run_check

CHECK = """
import numba
import numpy as np
from runtime.sim import dots

@numba.njit
def four(w, x0, x1, x2, x3, out):
    dots.dot4(w.size, w.ctypes.data, x0.ctypes.data, x1.ctypes.data, x2.ctypes.data, x3.ctypes.data, out.ctypes.data)

@numba.njit
def one(w, x, out):
    dots.dot1(w.size, w.ctypes.data, x.ctypes.data, out.ctypes.data)

def wrapped(w, x):
    total = int((w.astype(np.int64) * x.astype(np.int64)).sum()) % (1 << 32)
    return total - (1 << 32) if total >= 1 << 31 else total

rng = np.random.default_rng(7)
cases = []
for n in (0, 1, 15, 16, 17, 63, 64, 65, 200, 1152, 4611):
    w = rng.integers(-128, 128, n, dtype=np.int8)
    xs = [rng.integers(-128, 128, n, dtype=np.int8) for _ in range(4)]
    cases.append((w, xs))
n = 1 << 17  # 2^31 + ...: the int32 sums wrap
cases.append((np.full(n, -128, np.int8), [np.full(n, -128, np.int8), np.full(n, 127, np.int8),
                                          np.full(n, -1, np.int8), np.zeros(n, np.int8)]))
for w, xs in cases:
    out, single = np.full(4, 99, np.int32), np.full(1, 99, np.int32)
    four(w, *xs, out)
    one(w, xs[1], single)
    want = [wrapped(w, x) for x in xs]
    assert out.tolist() == want and single[0] == want[1], (w.size, out.tolist(), single[0], want)
print("vnni" if dots.uses_vnni() else "madd")
"""


def test_the_hosts_dot_kernels_are_exact_int32_sums():
    assert run_check(CHECK) in ("vnni", "madd")


@pytest.mark.parametrize("family, kind", [("avx2", "madd"), ("avx512bw", "madd"), ("avx512vnni", "vnni")])
def test_each_familys_dot_kernels_are_exact_int32_sums(family, kind):
    assert run_check(CHECK, family) == kind
