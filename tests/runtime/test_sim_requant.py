"""The simulator's requantisation in 32-bit lanes (docs/simulator.md, "The
epilogue in 32-bit lanes"): an 8-bit ELTWISE COPY (a Concat's inputs onto
its grid) on every code, at the zero points' ends, through each of its loops, the
short-shift split (qscheme.rescale_short), the high word
(qscheme.rescale_high) and the 64-bit loop, against the Python-int oracle."""
from __future__ import annotations

import numpy as np
import pytest

from runtime.isa import EltOp, Op, Space, instr
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
