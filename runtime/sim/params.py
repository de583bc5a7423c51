"""Run-time checks of the multipliers a kernel reads from SRAM (PARAM
records, average-pool tables): docs/isa.md "Left to run time". A bad value
is reported through ``err`` (kind, index, value) instead of computing
garbage; the simulator turns it into a SimulatorError."""
from __future__ import annotations

from runtime.jit import jit

MULT_LOW, MULT_HIGH = 1 << 30, (1 << 31) - 1
SHIFT_LOW, SHIFT_HIGH = 1, 62

BAD_MULT, BAD_SHIFT, BAD_NEG_MULT, BAD_NEG_SHIFT, BAD_AVG_MULT, BAD_AVG_SHIFT = 1, 2, 3, 4, 5, 6
KINDS = {BAD_MULT: ("PARAM record", "mult"), BAD_SHIFT: ("PARAM record", "shift"),
         BAD_NEG_MULT: ("PARAM record", "neg_mult"), BAD_NEG_SHIFT: ("PARAM record", "neg_shift"),
         BAD_AVG_MULT: ("average-pool multiplier entry", "mult"),
         BAD_AVG_SHIFT: ("average-pool multiplier entry", "shift")}
"""err[0] -> (what was read, which field), for the error message."""


@jit(inline="always")
def check(value, low, high, kind, index, err):
    """False (and err filled) when value is outside [low, high]."""
    if low <= value <= high:
        return True
    err[0], err[1], err[2] = kind, index, value
    return False


@jit
def check_conv_records(wgt32, addr, channels, err):
    """The mult/shift pairs of ``channels`` CONV PARAM records at byte
    ``addr`` (24 bytes each: int64 bias, then four int32)."""
    base = (addr >> 2) + 2
    for k in range(channels):
        at = base + 6 * k
        if not (check(wgt32[at], MULT_LOW, MULT_HIGH, BAD_MULT, k, err)
                and check(wgt32[at + 1], SHIFT_LOW, SHIFT_HIGH, BAD_SHIFT, k, err)
                and check(wgt32[at + 2], MULT_LOW, MULT_HIGH, BAD_NEG_MULT, k, err)
                and check(wgt32[at + 3], SHIFT_LOW, SHIFT_HIGH, BAD_NEG_SHIFT, k, err)):
            return False
    return True
