"""The simulator's byte kernels (runtime/sim/bytevec.py): the table
``table[x + 128]`` for every code, the 3 x 3 stride-2 max of three rows
(rows given twice, codes at both ends) and the split of rows into even and
odd columns (cells past each row's untouched), for whole vectors, a masked last
one, none, in place (the table) and apart, bytes past the run untouched
and unread (the data ending where an unreadable page begins), on
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

# Nothing is read past a run: each kernel on data that ends where an unreadable page begins.
import ctypes, mmap
page = mmap.PAGESIZE
guarded = mmap.mmap(-1, 2 * page)
libc = ctypes.CDLL(None)
address = ctypes.addressof(ctypes.c_char.from_buffer(guarded))
assert libc.mprotect(ctypes.c_void_p(address + page), page, 0) == 0  # PROT_NONE
memory = np.frombuffer(guarded, np.int8, page)
for n in (32, 64, 65, 100):
    end = memory[page - (2 * n + 1):]
    end[:] = rng.integers(-128, 128, end.size)
    want = np.array([end[2 * j:2 * j + 3].max() for j in range(n)], np.int8)
    out = np.empty(n, np.int8)
    max3(end, end, end, out)
    assert out.tolist() == want.tolist(), ("guarded max", n)
    even, odd = np.empty(n + 1, np.int8), np.empty(n, np.int8)
    split(end.reshape(1, -1), 1, end.size, n + 1, even, odd)
    assert even.tolist() == end[0::2].tolist() and odd.tolist() == end[1::2].tolist(), ("guarded split", n)
    table_out = np.empty(end.size, np.int8)
    apply(end, every, table_out)
    assert table_out.tolist() == end.tolist(), ("guarded table", n)
del memory, end
assert fast == int(bytevec.uses_vbmi()) == int(bytevec.TABLE == "vbmi")
assert numba.njit(lambda: bytevec.fast_table())() == int(bytevec.TABLE != "shuffles")
print(bytevec.TABLE)
"""


def test_the_hosts_table_kernel_maps_every_code():
    assert run_check(CHECK) in ("vbmi", "words", "shuffles")


@pytest.mark.parametrize("family, table", [("avx2", "shuffles"), ("avx512bw", "words")])
def test_the_byte_kernels_without_vbmi_map_every_code(family, table):
    assert run_check(CHECK, family) == table


SIMULATOR = """
import numpy as np
from runtime.isa import Op, column
from runtime.sim import conv8, vector
from runtime.sim.bytevec import TABLE

rng = np.random.default_rng(5)
# rows of 54, 33 and 13 outputs: the kernel with an overlapping last step, the same, the flat passes
for c, hw in ((3, 109), (2, 67), (2, 27)):
    x = rng.integers(-128, 128, c * hw * hw).astype(np.int8)
    oh = (hw - 3) // 2 + 1
    y = np.full(c * oh * oh, 77, np.int8)
    ins = np.zeros(32, np.int64)
    for k, v in dict(c=c, in_h=hw, in_w=hw, kernel_h=3, kernel_w=3, stride_h=2, stride_w=2, lo=-128, hi=127).items():
        ins[column(Op.POOL, k)] = v
    vector._max_planes(ins, x, y, -128, 127)
    planes = x.reshape(c, hw, hw)
    want = np.array([[[planes[ch, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max() for j in range(oh)] for i in range(oh)]
                     for ch in range(c)], np.int8)
    assert y.tolist() == want.reshape(-1).tolist(), ("pool", c, hw)
for hw in (113, 65, 64, 29):  # 56, 32, 32 and 14 column pairs
    a8 = rng.integers(-128, 128, hw * hw + 64).astype(np.int8)
    hp = wp = (hw + 1) // 2
    dst = np.full(4 * hp * wp, 77, np.int8)
    conv8.polyphase(a8, 0, hw, hw, 2, 2, hp, wp, dst)
    plane = a8[:hw * hw].reshape(hw, hw)
    want = np.full_like(dst, 77)
    for a in range(2):
        for b in range(2):
            part = plane[a::2, b::2]
            for yy in range(part.shape[0]):
                at = ((a * 2 + b) * hp + yy) * wp
                want[at:at + part.shape[1]] = part[yy]
    assert dst.tolist() == want.tolist(), ("polyphase", hw)
print(TABLE)
"""


@pytest.mark.parametrize("family, table", [("avx2", "shuffles"), ("avx512bw", "words")])
def test_the_simulators_pool_and_polyphase_take_each_familys_kernels(family, table):
    """The simulator's 8-bit 3 x 3 stride-2 max pool and its stride-2
    polyphase split as a host without VBMI runs them (the word kernels
    where rows hold a step, the overlapping last step, the whole-plane
    passes, the one-code loops), against numpy."""
    assert run_check(SIMULATOR, family) == table
