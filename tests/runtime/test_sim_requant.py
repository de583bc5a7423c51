"""The simulator's requantisation in 32-bit lanes (docs/simulator.md, "The
epilogue in 32-bit lanes"): an 8-bit ELTWISE COPY (a Concat's inputs onto
its grid) on every code, at the zero points' ends, through each of its loops, the
short-shift split (qscheme.rescale_short), the high word
(qscheme.rescale_high) and the 64-bit loop, and as the table of its codes a
large COPY becomes (runtime/sim/bytevec.py), in place and apart; an 8-bit
MUL (a squeeze-excitation's gate) by each broadcast; against the Python-int
oracle."""
from __future__ import annotations

import numpy as np
import pytest

from runtime.isa import Bcast, EltOp, Op, Space, instr
from runtime.sim.vector import COPY_TABLE_MIN
from tests.helpers.simulator import as_load, clamp, padded, simulate
from tests.oracle import rescale

CODES = np.arange(-128, 128, dtype=np.int8).reshape(4, 8, 8)


@pytest.mark.parametrize("shift", [1, 15, 16, 24, 31, 32, 33, 40, 62])
def test_an_8_bit_copy_requantises_every_code_as_the_oracle_does(shift):
    rng = np.random.default_rng(shift)
    for zero, mult, out_zero in ((-128, 1 << 30, 0), (127, (1 << 31) - 1, -7),
                                 (int(rng.integers(-128, 128)), int(rng.integers(1 << 30, 1 << 31)), 3)):
        expect = clamp(rescale(CODES.astype(object) - zero, mult, shift) + out_zero, -128, 127).astype(np.int8)
        fields = dict(func=EltOp.COPY, c=4, h=8, w=8, a_addr=0, a_bits=8, a_zero=zero, a_mult=mult, a_shift=shift,
                      out_addr=4096, out_bits=8, out_zero=out_zero, lo=-128, hi=127)
        (got,), _ = simulate([as_load(Space.ACT, 0, CODES)], [instr(Op.ELTWISE, **fields)],
                             [(Space.ACT, 4096, padded(CODES.nbytes))])
        np.testing.assert_array_equal(got[:CODES.nbytes].view(np.int8).reshape(CODES.shape), expect,
                                      err_msg=f"zero {zero}, mult {mult}")


@pytest.mark.parametrize("shift", [8, 20, 40])
@pytest.mark.parametrize("in_place", [False, True])
def test_a_large_8_bit_copy_maps_each_code_as_the_oracle_does(shift, in_place):
    """1144 codes (past the table's threshold; 17 whole vectors of 64 and a
    masked last one, or 35 of 32 and 24 scalar), every code among them, a
    narrow clamp."""
    rng = np.random.default_rng(shift)
    codes = np.concatenate([CODES.reshape(-1), rng.integers(-128, 128, 1144 - 256)]).astype(np.int8)
    codes = rng.permutation(codes).reshape(8, 11, 13)
    assert codes.size >= COPY_TABLE_MIN
    zero, mult, out_zero, lo, hi = -5, int(rng.integers(1 << 30, 1 << 31)), 9, -20, 90
    expect = clamp(rescale(codes.astype(object) - zero, mult, shift) + out_zero, lo, hi).astype(np.int8)
    out = 0 if in_place else 4096
    fields = dict(func=EltOp.COPY, c=8, h=11, w=13, a_addr=0, a_bits=8, a_zero=zero, a_mult=mult, a_shift=shift,
                  out_addr=out, out_bits=8, out_zero=out_zero, lo=lo, hi=hi)
    (got,), _ = simulate([as_load(Space.ACT, 0, codes)], [instr(Op.ELTWISE, **fields)],
                         [(Space.ACT, out, padded(codes.nbytes))])
    np.testing.assert_array_equal(got[:codes.nbytes].view(np.int8).reshape(codes.shape), expect)


@pytest.mark.parametrize("bcast", list(Bcast))
@pytest.mark.parametrize("zeros", [(-128, 127), (127, -128), (3, -4)])
def test_an_8_bit_mul_by_each_broadcast_matches_the_oracle(bcast, zeros):
    """Every code of a against b's extremes, the zero points at their ends
    (|(a - az)(b - bz)| up to 255^2), shifts short and long."""
    rng = np.random.default_rng(int(bcast) * 7 + zeros[0] + 128)
    a = np.concatenate([CODES.reshape(-1)] * 3).astype(np.int8).reshape(3, 16, 16)
    b_shape = {Bcast.FULL: (3, 16, 16), Bcast.CHANNEL: (3, 1, 1), Bcast.SPATIAL: (1, 16, 16),
               Bcast.SCALAR: (1, 1, 1)}[bcast]
    b = rng.integers(-128, 128, b_shape).astype(np.int8)
    b.reshape(-1)[:2] = (-128, 127)[:b.size]
    (az, bz), oz = zeros, -6
    for mult, shift in ((1 << 30, 9), ((1 << 31) - 1, 21), (int(rng.integers(1 << 30, 1 << 31)), 40)):
        product = (a.astype(object) - az) * np.broadcast_to(b.astype(object) - bz, a.shape)
        expect = clamp(rescale(product, mult, shift) + oz, -128, 127).astype(np.int8)
        fields = dict(func=EltOp.MUL, bcast=bcast, c=3, h=16, w=16, a_addr=0, a_bits=8, a_zero=az, a_mult=mult,
                      a_shift=shift, b_addr=1024, b_bits=8, b_zero=bz, out_addr=4096, out_bits=8, out_zero=oz,
                      lo=-128, hi=127)
        (got,), _ = simulate([as_load(Space.ACT, 0, a), as_load(Space.ACT, 1024, b)], [instr(Op.ELTWISE, **fields)],
                             [(Space.ACT, 4096, a.nbytes)])
        np.testing.assert_array_equal(got.view(np.int8).reshape(a.shape), expect, err_msg=f"{mult} >> {shift}")
