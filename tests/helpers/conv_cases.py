"""CONV test cases for the simulator's kernels: a case's tile, weights,
records and epilogue (:class:`ConvCase`), simulated and compared with the
Python-integer oracle (:func:`run_conv_case`); tests/runtime/test_sim_conv.py
and tests/runtime/test_sim_gemm_plans.py run them."""
from __future__ import annotations

import dataclasses

import numpy as np

from runtime import qscheme
from runtime.isa import AccMode, Op, Space, instr
from tests.helpers.simulator import (
    DTYPE,
    as_load,
    conv_epilogue,
    conv_sums,
    padded,
    records,
    simulate,
    values,
    wrap32,
)

NO_PLANS = dict(MIN_CHANNELS=1 << 62)
"""runtime/sim/conv_gemm.py settings under which it plans no CONV."""


@dataclasses.dataclass
class ConvCase:
    in_c: int
    out_c: int
    groups: int
    kernel: tuple
    stride: tuple
    dilation: tuple
    in_hw: tuple
    in_bits: int
    wgt_bits: int
    out_bits: int
    residual: bool
    neg: bool
    parts: int
    big_bias: bool
    table: bool = False
    """lut=1: the clamp gives an int8 index into a table of out_bits entries."""
    wide: bool = False
    """With table, lut_wide=1: the clamp gives int16 codes that a 513-entry
    table of out_bits (16) entries interpolates."""
    scaled: bool = False
    """Shifts of 36-43, so that outputs span the range instead of clamping
    (the epilogue's arithmetic shows in every byte)."""


def run_conv_case(case: ConvCase, large: bool, seed: int = 0):
    """Simulate the case (split into ``parts`` reduction passes over input
    channels when > 1) and compare with the oracle."""
    rng = np.random.default_rng(seed)
    kh, kw = case.kernel
    x = values(rng, case.in_bits, (case.in_c, *case.in_hw), 100 if case.in_bits == 16 else None)
    w = values(rng, case.wgt_bits, (case.out_c, case.in_c // case.groups, kh, kw), 300 if case.wgt_bits == 16 else None)
    rec = records(rng, case.out_c, (1 << 31) - 1 if case.big_bias else 1000, case.neg)
    if case.scaled:
        rec["shift"] = rng.integers(36, 44, case.out_c)
        rec["neg_shift"] = rng.integers(36, 44, case.out_c) if case.neg else rec["shift"]
    geometry = dict(kernel_h=kh, kernel_w=kw, stride_h=case.stride[0], stride_w=case.stride[1],
                    dilation_h=case.dilation[0], dilation_w=case.dilation[1])
    sums = conv_sums(x, w, case.groups, case.stride, case.dilation) + rec["bias"].astype(object)[:, None, None]
    if case.wgt_bits == 8:
        sums = wrap32(sums)
    out_shape = sums.shape
    index_bits = 16 if case.wide else 8 if case.table else case.out_bits
    lo, hi = -(1 << (index_bits - 1)), (1 << (index_bits - 1)) - 1
    out_zero = int(rng.integers(-5, 6))
    residual, res_fields = None, {}
    act_out = 256 * 1024
    loads = [as_load(Space.WGT, 128 * 1024, rec)]
    if case.residual:
        r = values(rng, 8, out_shape)
        res_mult, res_shift = int(rng.integers(1 << 30, 1 << 31)), int(rng.integers(28, 33))  # 32: the 64-bit loop
        residual = (r, 3, res_mult, res_shift)
        res_addr = 384 * 1024
        loads.append(as_load(Space.ACT, res_addr, r))
        res_fields = dict(residual=1, res_addr=res_addr, res_bits=8, res_zero=3, res_mult=res_mult,
                          res_shift=res_shift)
    expect = conv_epilogue(sums, rec, case.out_bits, out_zero, lo, hi, residual)
    epilogue = dict(out_addr=act_out, out_bits=case.out_bits, out_zero=out_zero, lo=lo, hi=hi, param_addr=128 * 1024)
    if case.wide:
        table = values(rng, case.out_bits, qscheme.WIDE_TABLE_ENTRIES)
        loads.append(as_load(Space.WGT, 192 * 1024, table))
        expect = qscheme.apply_table(table, expect)
        epilogue.update(lut=1, lut_addr=192 * 1024, lut_wide=1)
    elif case.table:
        table = values(rng, case.out_bits, 256)
        loads.append(as_load(Space.WGT, 192 * 1024, table))
        expect = table[expect.astype(np.int64) + 128]
        epilogue.update(lut=1, lut_addr=192 * 1024)
    step = case.in_c // case.parts
    computes = []
    in_at, w_at = 0, 0
    for p in range(case.parts):
        xp, wp = x[p * step:(p + 1) * step], w[:, p * step:(p + 1) * step] if case.groups == 1 else w
        loads += [as_load(Space.ACT, in_at, xp), as_load(Space.WGT, w_at, wp)]
        mode = AccMode.FULL if case.parts == 1 else AccMode.FIRST if p == 0 else \
            AccMode.LAST if p == case.parts - 1 else AccMode.MIDDLE
        fields = dict(in_addr=in_at, in_bits=case.in_bits, in_c=xp.shape[0], in_h=case.in_hw[0], in_w=case.in_hw[1],
                      wgt_addr=w_at, wgt_bits=case.wgt_bits, groups=case.groups, out_c=case.out_c, acc_mode=mode,
                      **geometry)
        if mode in (AccMode.FULL, AccMode.LAST):
            fields.update(epilogue, **res_fields)
        if mode != AccMode.FULL:
            fields["acc_addr"] = 0
        if mode == AccMode.FIRST:
            fields["param_addr"] = 128 * 1024
        computes.append(instr(Op.CONV, **fields))
        in_at += padded(xp.nbytes)
        w_at += padded(wp.nbytes)
    (got,), sim = simulate(loads, computes, [(Space.ACT, act_out, padded(expect.nbytes))], large)
    np.testing.assert_array_equal(got[:expect.nbytes].view(DTYPE[case.out_bits]).reshape(out_shape), expect)
    return sim
