"""A valid double-buffered CONV program of the ISA tests, with its DRAM
layout: the base the validator, simulator and binary tests mutate."""
from __future__ import annotations

from runtime import isa
from runtime.isa import Op, Space, instr
from runtime.isa import Token as T

# A 3x3 convolution (pad 1) of a [16][32][32] int8 map to 32 channels, in four
# tiles of 8 output rows: the input and output tiles are double-buffered in
# ACT, so LOAD fetches tile i+1 while COMPUTE convolves tile i and STORE
# writes tile i-1.
TILES, IN_TILE, OUT_TILE = 4, 16 * 10 * 34, 32 * 8 * 32
WEIGHTS, PARAMS = 0, 32 * 16 * 9
IN_BUF = (0, IN_TILE)
OUT_BUF = (2 * IN_TILE, 2 * IN_TILE + OUT_TILE)
DRAM_IN, DRAM_W, DRAM_P, DRAM_OUT = 0, 0x10000, 0x12000, 0x20000


def load_tile(i: int) -> isa.Instruction:
    first, last = max(8 * i - 1, 0), min(8 * i + 9, 32)
    return instr(Op.LOAD, T.PUSH_NEXT | (T.POP_NEXT if i >= 2 else 0), space=Space.ACT, elem_bytes=1,
                 sram_addr=IN_BUF[i % 2], dram_addr=DRAM_IN + first * 32, z_size=16, y_size=last - first, x_size=32,
                 z_stride=1024, y_stride=32, x_stride=1, pad_top=int(i == 0), pad_bottom=int(i == TILES - 1),
                 pad_left=1, pad_right=1, pad_value=-3)


def conv_tile(i: int) -> isa.Instruction:
    flags = T.POP_PREV | T.PUSH_NEXT | (T.POP_NEXT if i >= 2 else 0) | (T.PUSH_PREV if i + 2 < TILES else 0)
    return instr(Op.CONV, flags, in_addr=IN_BUF[i % 2], in_bits=8, in_c=16, in_h=10, in_w=34,
                 wgt_addr=WEIGHTS, wgt_bits=8, groups=1, kernel_h=3, kernel_w=3, stride_h=1, stride_w=1,
                 dilation_h=1, dilation_w=1, out_c=32, out_addr=OUT_BUF[i % 2], out_bits=8, out_zero=-128,
                 lo=-128, hi=127, param_addr=PARAMS)


def store_tile(i: int) -> isa.Instruction:
    return instr(Op.STORE, T.POP_PREV | (T.PUSH_PREV if i + 2 < TILES else 0), space=Space.ACT, elem_bytes=1,
                 sram_addr=OUT_BUF[i % 2], dram_addr=DRAM_OUT + 8 * i * 32, z_size=32, y_size=8, x_size=32,
                 z_stride=1024, y_stride=32, x_stride=1)


def program() -> list[isa.Instruction]:
    """0 LOAD w, 1 LOAD params, 2 LOAD t0, 3 LOAD t1, 4 CONV t0, 5 STORE t0,
    6 LOAD t2, 7 CONV t1, 8 STORE t1, 9 LOAD t3, 10 CONV t2, 11 STORE t2,
    12 CONV t3, 13 STORE t3, 14 END."""
    out = [instr(Op.LOAD, space=Space.WGT, elem_bytes=1, sram_addr=WEIGHTS, dram_addr=DRAM_W, z_size=1, y_size=1,
                 x_size=32 * 16 * 9, x_stride=1),
           instr(Op.LOAD, space=Space.WGT, elem_bytes=8, sram_addr=PARAMS, dram_addr=DRAM_P, z_size=1, y_size=1,
                 x_size=32 * isa.PARAM_CHANNEL_BYTES // 8, x_stride=1),
           load_tile(0)]
    for i in range(TILES):
        out += ([load_tile(i + 1)] if i + 1 < TILES else []) + [conv_tile(i), store_tile(i)]
    return out + [instr(Op.END)]
