"""The simulator's byte kernels (runtime/sim/bytevec.py): the table
``table[x + 128]`` for every code, the 3 x 3 stride-2 max of three rows
(rows given twice, codes at both ends) and the split of rows into even and
odd columns (cells past each row's untouched), for whole vectors, a masked last
one, none, in place (the table) and apart, bytes past the run untouched, on
this host's kernels and on the others, the table's shuffles and the
max's loop: the table by byte shuffles for AVX2, by word permutes for a
Skylake-SP's AVX-512 without VBMI (``TESSERA_GEMM_ISA=avx2``, ``avx512bw``
take them on a VBMI host)."""
from __future__ import annotations

import pytest

from tests.helpers.kernel_families import run_check

CHECK = """
import numba
import numpy as np
from runtime.sim import bytevec

@numba.njit
def apply(x, table, out):
    bytevec.map8(x.size, x.ctypes.data, table.ctypes.data, out.ctypes.data)
    return bytevec.fast()

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
@numba.njit
def max3(r0, r1, r2, out):
    bytevec.max3s2(out.size, 1, 0, r0.ctypes.data, r1.ctypes.data, r2.ctypes.data, out.ctypes.data)

@numba.njit
def max3_rows(x, rows, width, out):  # rows k: x's rows 2k .. 2k + 2
    n = (width - 3) // 2 + 1
    bytevec.max3s2(n, rows, 2 * width, x.ctypes.data, x.ctypes.data + width, x.ctypes.data + 2 * width,
                   out.ctypes.data)

for n in (0, 1, 2, 31, 32, 54, 63, 64, 65, 127, 128, 129, 300):
    rows = rng.integers(-128, 128, (3, 2 * n + 1)).astype(np.int8)
    rows[:, ::7] = -128
    rows[1, 3::11] = 127
    for r0, r1, r2 in ((0, 1, 2), (0, 0, 1), (2, 2, 2)):
        picked = np.stack([rows[r0], rows[r1], rows[r2]]).max(axis=0)
        want = np.array([picked[2 * j:2 * j + 3].max() for j in range(n)], np.int8)
        out = np.full(n + 80, 77, np.int8)
        max3(rows[r0], rows[r1], rows[r2], out[:n])
        assert out[:n].tolist() == want.tolist(), (n, r0, r1, r2)
        assert (out[n:] == 77).all(), ("wrote past the row", n)
for height, width in ((3, 3), (7, 9), (109, 109), (13, 130), (5, 260)):
    x = rng.integers(-128, 128, (height, width)).astype(np.int8)
    rows, n = (height - 3) // 2 + 1, (width - 3) // 2 + 1
    want = np.array([[x[2 * k:2 * k + 3, 2 * j:2 * j + 3].max() for j in range(n)] for k in range(rows)], np.int8)
    out = np.full(rows * n + 80, 77, np.int8)
    max3_rows(x, rows, width, out)
    assert out[:rows * n].reshape(rows, n).tolist() == want.tolist(), (height, width)
    assert (out[rows * n:] == 77).all(), ("wrote past the rows", height, width)
@numba.njit
def split(x, rows, width, pitch, even, odd):  # the rows 2k of x
    bytevec.split2((width + 1) // 2, width // 2, rows, 2 * width, pitch, x.ctypes.data, even.ctypes.data,
                   odd.ctypes.data)

for height, width in ((1, 1), (2, 2), (5, 7), (9, 127), (4, 128), (3, 129), (6, 255), (3, 300)):
    x = rng.integers(-128, 128, (height, width)).astype(np.int8)
    rows, pitch = (height + 1) // 2, (width + 1) // 2 + 3
    even = np.full((rows + 1) * pitch, 77, np.int8)
    odd = np.full((rows + 1) * pitch, 77, np.int8)
    split(x, rows, width, pitch, even, odd)
    want_even, want_odd = np.full_like(even, 77), np.full_like(odd, 77)
    for k in range(rows):
        want_even[k * pitch:k * pitch + (width + 1) // 2] = x[2 * k, 0::2]
        want_odd[k * pitch:k * pitch + width // 2] = x[2 * k, 1::2]
    assert even.tolist() == want_even.tolist() and odd.tolist() == want_odd.tolist(), (height, width)
assert fast == int(bytevec.uses_vbmi()) == int(bytevec.TABLE == "vbmi")
assert numba.njit(lambda: bytevec.fast_table())() == int(bytevec.TABLE != "shuffles")
print(bytevec.TABLE)
"""


def test_the_hosts_table_kernel_maps_every_code():
    assert run_check(CHECK) in ("vbmi", "words", "shuffles")


@pytest.mark.parametrize("family, table", [("avx2", "shuffles"), ("avx512bw", "words")])
def test_the_byte_kernels_without_vbmi_map_every_code(family, table):
    assert run_check(CHECK, family) == table
