"""The instruction set (runtime/isa/): encode/decode round trips for every
opcode, the decoded matrix against the decoded objects, hostile bytes, the
validator's checks one by one on a realistic double-buffered program, the
disassembler, and docs/isa.md against the field tables."""
import dataclasses
import pathlib
import re
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import isa
from runtime.hardware import HardwareConfig
from runtime.isa import AccMode, Bcast, EltOp, IsaError, Op, PoolMode, Space, instr
from runtime.isa import Token as T
from runtime.isa import spec as isa_spec
from tests.helpers.isa_program import (
    DRAM_OUT,
    PARAMS,
    TILES,
    program,
)

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEFAULT = HardwareConfig()
DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "isa.md"

# ---------------------------------------------------------------- a realistic program


def changed(prog: list[isa.Instruction], index: int, flags=None, **fields) -> list[isa.Instruction]:
    """prog with instruction ``index``'s fields (and flags) replaced."""
    ins = prog[index]
    new = isa.Instruction(ins.op, {**ins.fields, **fields}, ins.flags if flags is None else flags)
    return prog[:index] + [new] + prog[index + 1:]


def alone(op: Op, /, **fields) -> list[isa.Instruction]:
    return [instr(op, **fields), instr(Op.END)]


# ---------------------------------------------------------------- valid single compute ops
CONV_1x1 = dict(in_addr=0, in_bits=8, in_c=8, in_h=4, in_w=4, wgt_addr=0, wgt_bits=8, groups=1, kernel_h=1,
                kernel_w=1, stride_h=1, stride_w=1, dilation_h=1, dilation_w=1, out_c=8, out_addr=4096, out_bits=8,
                out_zero=0, lo=-128, hi=127, param_addr=1024)
EPILOGUE_OFF = dict(out_addr=0, out_bits=0, out_zero=0, lo=0, hi=0)
POOL_AVG = dict(mode=PoolMode.AVG, in_addr=0, in_bits=8, c=4, in_h=9, in_w=9, kernel_h=3, kernel_w=3, stride_h=2,
                stride_w=2, pad_top=1, pad_bottom=1, pad_left=1, pad_right=1, out_addr=1024, out_bits=8, x_zero=5,
                out_zero=-3, lo=-128, hi=127, param_addr=64)
ELT_ADD = dict(func=EltOp.ADD, bcast=Bcast.FULL, c=4, h=5, w=6, a_addr=0, a_bits=8, a_zero=1, a_mult=1 << 30,
               a_shift=31, b_addr=256, b_bits=16, b_zero=-7, b_mult=(1 << 31) - 1, b_shift=40, out_addr=1024,
               out_bits=8, out_zero=2, lo=0, hi=127)
WIDE_CONV = dict(out_bits=16, out_zero=-300, lo=-32768, hi=32767, lut=1, lut_wide=1, lut_addr=2048)
"""A CONV whose clamp gives int16 codes for a 513-entry table (1026 bytes at lut_addr)."""
WIDE_LUT = dict(in_addr=0, count=1000, param_addr=512, out_addr=2048, out_bits=16, wide=1)
"""A LUT of 1000 int16 codes (2000 bytes) through a 513-entry table."""
VALID = {
    "conv residual 16-bit": alone(Op.CONV, **{**CONV_1x1, "residual": 1, "res_addr": 8192, "res_bits": 16,
                                              "res_zero": -300, "res_mult": 1 << 30, "res_shift": 30,
                                              "out_bits": 16, "lo": -32768, "hi": 32767}),
    "conv depthwise 5x5 dilated": alone(Op.CONV, **{**CONV_1x1, "groups": 8, "out_c": 16, "in_h": 12, "in_w": 12,
                                                    "kernel_h": 5, "kernel_w": 5, "dilation_h": 2,
                                                    "dilation_w": 2, "stride_h": 2}),
    "conv reduction passes": [instr(Op.CONV, **{**CONV_1x1, **EPILOGUE_OFF, "acc_mode": AccMode.FIRST}),
                              instr(Op.CONV, **{**CONV_1x1, **EPILOGUE_OFF, "param_addr": 0,
                                                "acc_mode": AccMode.MIDDLE}),
                              instr(Op.CONV, **{**CONV_1x1, "acc_mode": AccMode.LAST}), instr(Op.END)],
    "gemm as 1x1 conv, 16-bit weights": alone(Op.CONV, **{**CONV_1x1, "in_c": 4096, "in_h": 1, "in_w": 1,
                                                          "wgt_bits": 16, "out_c": 16, "param_addr": 200_000}),
    "avg pool": alone(Op.POOL, **POOL_AVG),
    "max pool": alone(Op.POOL, **{**POOL_AVG, "mode": PoolMode.MAX, "x_zero": 0, "out_zero": 0, "param_addr": 0}),
    "add 8+16 bits": alone(Op.ELTWISE, **ELT_ADD),
    "mul per channel": alone(Op.ELTWISE, **{**ELT_ADD, "func": EltOp.MUL, "bcast": Bcast.CHANNEL, "b_mult": 0,
                                            "b_shift": 0}),
    "add in place, scalar b": alone(Op.ELTWISE, **{**ELT_ADD, "bcast": Bcast.SCALAR, "out_addr": 0}),
    "requantising copy": alone(Op.ELTWISE, **{**ELT_ADD, "func": EltOp.COPY, "b_addr": 0, "b_bits": 0, "b_zero": 0,
                                              "b_mult": 0, "b_shift": 0}),
    "lut": alone(Op.LUT, in_addr=0, count=1000, param_addr=512, out_addr=2048, out_bits=16),
    "conv with a 16-bit table": alone(Op.CONV, **{**CONV_1x1, "out_bits": 16, "lut": 1, "lut_addr": 2048}),
    "conv with a wide table on int16 codes": alone(Op.CONV, **{**CONV_1x1, **WIDE_CONV}),
    "wide lut, 8-bit output": alone(Op.LUT, **{**WIDE_LUT, "out_bits": 8}),
    "wide lut in place": alone(Op.LUT, **{**WIDE_LUT, "out_addr": 0}),
    "sub, max, min": [instr(Op.ELTWISE, **{**ELT_ADD, "func": f}) for f in (EltOp.SUB, EltOp.MAX, EltOp.MIN)]
    + [instr(Op.END)],
    "sync and nops with tokens": [instr(Op.NOP_LOAD, T.PUSH_NEXT), instr(Op.SYNC, T.POP_PREV | T.PUSH_NEXT,
                                                                         barrier=7, participants=4),
                                  instr(Op.NOP_STORE, T.POP_PREV), instr(Op.END)],
}


@pytest.mark.parametrize("name", list(VALID))
def test_valid_compute_streams_pass(name):
    isa.validate(VALID[name], DEFAULT)
    isa.validate(isa.encode_stream(VALID[name]), DEFAULT)


def test_double_buffered_program_fits_the_default_config_not_a_tiny_one():
    prog = program()
    assert [i.op for i in prog].count(Op.CONV) == TILES
    isa.validate(isa.encode_stream(prog), DEFAULT, dram_bytes_used=DRAM_OUT + 32 * 32 * 32)
    tiny = dataclasses.replace(DEFAULT, activation_buffer_bytes=16 * 1024)
    with pytest.raises(IsaError, match=r"instruction 4 \(CONV\): out_addr=10880 \+ 8192 bytes runs past the ACT "
                                       r"buffer \(16384 bytes\)"):
        isa.validate(prog, tiny)
    small_weights = dataclasses.replace(DEFAULT, weight_buffer_bytes=4096)
    with pytest.raises(IsaError, match=r"instruction 0 \(LOAD\): sram_addr=0 \+ 4608 bytes runs past the WGT"):
        isa.validate(prog, small_weights)


# ---------------------------------------------------------------- the validator, check by check
PROG = program()
GIB = 1 << 30
CASES = {
    "out-of-range field": (changed(PROG, 4, stride_h=0), {},
                           r"instruction 4 \(CONV\): stride_h=0 is outside \[1, 63\]"),
    "elem_bytes": (changed(PROG, 0, elem_bytes=3), {},
                   r"instruction 0 \(LOAD\): elem_bytes=3 is not one of 1, 2, 4, 8"),
    "multiplier": (alone(Op.ELTWISE, **{**ELT_ADD, "a_mult": 5}), {},
                   r"a_mult=5 is outside \[1073741824, 2147483647\]"),
    "shift": (alone(Op.ELTWISE, **{**ELT_ADD, "b_shift": 63}), {}, r"b_shift=63 is outside \[1, 62\]"),
    "enum value": (alone(Op.ELTWISE, **{**ELT_ADD, "func": 6}), {},
                   r"func=6 is not one of ADD=0, MUL=1, COPY=2, SUB=3, MAX=4, MIN=5"),
    "WGT overflow": (changed(PROG, 0, sram_addr=256 * 1024 - 100), {},
                     r"instruction 0 \(LOAD\): sram_addr=262044 \+ 4608 bytes runs past the WGT buffer \(262144"),
    "ACT overflow": (changed(PROG, 3, sram_addr=512 * 1024 - 5000), {},
                     r"instruction 3 \(LOAD\): sram_addr=519288 \+ 5440 bytes runs past the ACT buffer \(524288"),
    "ACC overflow": (changed(PROG, 4, acc_mode=AccMode.FIRST, acc_addr=48 * 1024, **EPILOGUE_OFF), {},
                     r"instruction 4 \(CONV\): acc_addr=49152 \+ 32768 bytes runs past the ACC buffer \(65536"),
    "PARAM (in WGT) overflow": (changed(PROG, 4, param_addr=256 * 1024 - 8), {},
                                r"param_addr=262136 \+ 768 bytes runs past the WGT buffer"),
    "STORE from ACC overflow": (changed(PROG, 5, space=Space.ACC, sram_addr=60000), {},
                                r"instruction 5 \(STORE\): sram_addr=60000 \+ 8192 bytes runs past the ACC buffer"),
    "STORE from WGT": (changed(PROG, 5, space=Space.WGT), {}, r"instruction 5 \(STORE\): space=0 is not one of ACT=1"),
    "DRAM overflow": (changed(PROG, 2, dram_addr=4 * GIB - 100), {},
                      r"instruction 2 \(LOAD\): dram_addr=4294967196 \+ 15648 bytes runs past DRAM \(4294967296"),
    "DRAM beyond the used bytes": (PROG, {"dram_bytes_used": DRAM_OUT},
                                   r"instruction 5 \(STORE\): dram_addr=131072 \+ 32000 bytes runs past DRAM \(131072"),
    "illegal token on LOAD": (changed(PROG, 0, flags=T.POP_PREV), {},
                              r"instruction 0 \(LOAD\): token flag pop_prev is illegal: LOAD has no previous module"),
    "illegal token on STORE": (changed(PROG, 5, flags=T.POP_PREV | T.PUSH_NEXT), {},
                               r"instruction 5 \(STORE\): token flag push_next is illegal: STORE has no next"),
    "token on END": (changed(PROG, 14, flags=T.POP_NEXT), {}, r"instruction 14 \(END\): token flag pop_next is "
                                                               r"illegal: END carries no tokens"),
    "conv kernel too large": (changed(PROG, 4, kernel_w=13), {}, r"instruction 4 \(CONV\): kernel_w=13 exceeds "
                                                                 r"max_conv_kernel=11"),
    "pool kernel too large": (alone(Op.POOL, **{**POOL_AVG, "kernel_h": 5, "in_h": 20}), {"max_pool_kernel": 4},
                              r"instruction 0 \(POOL\): kernel_h=5 exceeds max_pool_kernel=4"),
    "width not a width": (changed(PROG, 4, in_bits=12), {}, r"in_bits=12 is not a data width of this config \[8, 16\]"),
    "width not in the config": (PROG, {"data_widths": (16,)},
                                r"instruction 4 \(CONV\): in_bits=8 is not a data width of this config \[16\]"),
    "LUT without 8-bit data": (VALID["lut"], {"data_widths": (16,)}, r"instruction 0 \(LUT\): in_addr=0 reads "
                                                                     r"8-bit codes"),
    "CONV table index outside int8": (alone(Op.CONV, **{**CONV_1x1, "out_bits": 16, "lo": -300, "hi": 32767,
                                                        "lut": 1, "lut_addr": 2048}), {},
                                      r"instruction 0 \(CONV\): lo=-300 is outside the int8 range: with lut=1"),
    "CONV table past WGT": (alone(Op.CONV, **{**CONV_1x1, "lut": 1, "lut_addr": 256 * 1024 - 128}), {},
                            r"lut_addr=262016 \+ 256 bytes runs past the WGT buffer"),
    "CONV table address without a table": (alone(Op.CONV, **{**CONV_1x1, "lut_addr": 64}), {},
                                           r"lut_addr=64 must be 0: unused without a table"),
    "CONV table with a reduction pass": (changed(PROG, 4, acc_mode=AccMode.FIRST, acc_addr=0, lut=1, **EPILOGUE_OFF),
                                         {}, r"lut=1 must be 0: unused when acc_mode writes ACC"),
    "CONV lut_wide without a table": (alone(Op.CONV, **{**CONV_1x1, **WIDE_CONV, "lut": 0, "lut_addr": 0}), {},
                                      r"instruction 0 \(CONV\): lut_wide=1 must be 0: unused without a table"),
    "CONV wide table with 8-bit output": (alone(Op.CONV, **{**CONV_1x1, **WIDE_CONV, "out_bits": 8, "out_zero": 0,
                                                             "lo": -128, "hi": 127}), {},
                                          r"instruction 0 \(CONV\): lut_wide=1 needs out_bits=16 .* not out_bits=8"),
    "CONV wide table without 16-bit data": (alone(Op.CONV, **{**CONV_1x1, **WIDE_CONV}), {"data_widths": (8,)},
                                            r"instruction 0 \(CONV\): out_bits=16 is not a data width of this "
                                            r"config \[8\]"),
    "CONV wide table past WGT": (alone(Op.CONV, **{**CONV_1x1, **WIDE_CONV, "lut_addr": 256 * 1024 - 1024}), {},
                                 r"lut_addr=261120 \+ 1026 bytes runs past the WGT buffer"),
    "CONV wide table misaligned": (alone(Op.CONV, **{**CONV_1x1, **WIDE_CONV, "lut_addr": 2052}), {},
                                   r"lut_addr=2052 is not a multiple of 8 bytes"),
    "CONV wide table in a reduction pass": (changed(PROG, 4, acc_mode=AccMode.FIRST, acc_addr=0, lut_wide=1,
                                                    **EPILOGUE_OFF), {},
                                            r"lut_wide=1 must be 0: unused without a table"),
    "LUT wide without 16-bit data": (alone(Op.LUT, **{**WIDE_LUT, "out_bits": 8}), {"data_widths": (8,)},
                                     r"instruction 0 \(LUT\): wide=1 reads 16-bit codes, and this config has no "
                                     r"16-bit data"),
    "LUT wide codes misaligned": (alone(Op.LUT, **{**WIDE_LUT, "in_addr": 1, "out_addr": 4096}), {},
                                  r"instruction 0 \(LUT\): in_addr=1 is not a multiple of 2 bytes"),
    "LUT wide codes past ACT": (alone(Op.LUT, **{**WIDE_LUT, "in_addr": 512 * 1024 - 1000}), {},
                                r"in_addr=523288 \+ 2000 bytes runs past the ACT buffer"),
    "LUT wide table past WGT": (alone(Op.LUT, **{**WIDE_LUT, "out_bits": 8, "param_addr": 256 * 1024 - 512}), {},
                                r"param_addr=261632 \+ 513 bytes runs past the WGT buffer"),
    "LUT wide 16-bit table past WGT": (alone(Op.LUT, **{**WIDE_LUT, "param_addr": 256 * 1024 - 1024}), {},
                                       r"param_addr=261120 \+ 1026 bytes runs past the WGT buffer"),
    "LUT wide to bytes over its codes": (alone(Op.LUT, **{**WIDE_LUT, "out_bits": 8, "out_addr": 0}), {},
                                         r"out_addr=0 \(\+ 1000 bytes\) overlaps in_addr=0 \(\+ 2000 bytes\) and "
                                         r"is not exactly in place"),
    "SUB without b's multiplier": (alone(Op.ELTWISE, **{**ELT_ADD, "func": EltOp.SUB, "b_mult": 0}), {},
                                   r"b_mult=0 is outside \[1073741824"),
    "missing END": (PROG[:-1], {}, r"the stream does not end with END \(last is instruction 13 \(STORE\)\)"),
    "END inside": (PROG[:6] + [instr(Op.END)] + PROG[6:], {}, r"instruction 6 \(END\): END must be the last"),
    "empty stream": ([], {}, r"the instruction stream is empty"),
    "unused field set": (changed(PROG, 4, res_mult=5), {}, r"instruction 4 \(CONV\): res_mult=5 must be 0: unused "
                                                          r"without a residual"),
    "epilogue field with ACC output": (changed(PROG, 4, acc_mode=AccMode.FIRST, acc_addr=0), {},
                                       r"out_addr=10880 must be 0: unused when acc_mode writes ACC"),
    "zero point outside int8": (changed(PROG, 4, out_zero=200), {}, r"out_zero=200 is outside the int8 range"),
    "pad value outside int8": (changed(PROG, 2, pad_value=300), {}, r"pad_value=300 does not fit a 1-byte element"),
    "clamp inverted": (changed(PROG, 4, lo=10, hi=0), {}, r"instruction 4 \(CONV\): lo=10 is above hi=0"),
    "misaligned PARAM": (changed(PROG, 4, param_addr=PARAMS + 4), {}, r"param_addr=4612 is not a multiple of 8"),
    "misaligned 16-bit DMA": (changed(PROG, 3, elem_bytes=2, sram_addr=5441), {}, r"sram_addr=5441 is not a multiple"),
    "output overlaps input": (changed(PROG, 4, out_addr=5000), {}, r"out_addr=5000 \(\+ 8192 bytes\) overlaps "
                                                                   r"in_addr=0"),
    "partial in-place": (alone(Op.ELTWISE, **{**ELT_ADD, "out_addr": 1}), {}, r"out_addr=1 \(\+ 120 bytes\) overlaps "
                                                                              r"a_addr=0 \(\+ 120 bytes\) and is not"),
    "kernel span": (changed(PROG, 4, dilation_h=5), {}, r"kernel_h=3 with dilation_h=5 spans 11, more than in_h=10"),
    "groups": (changed(PROG, 4, groups=3), {}, r"groups=3 does not divide in_c=16 and out_c=32"),
    "window of padding": (alone(Op.POOL, **{**POOL_AVG, "pad_top": 3}), {}, r"pad_top=3 leaves a window along h"),
    "max pool changes width": (alone(Op.POOL, **{**VALID["max pool"][0].fields, "out_bits": 16}), {},
                               r"out_bits=16 differs from in_bits=8"),
    "barrier too wide": (alone(Op.SYNC, barrier=1, participants=5), {}, r"participants=5 exceeds clusters=4"),
    "deadlock": (changed(PROG, 2, flags=0), {}, r"the token protocol deadlocks: COMPUTE waits at instruction 12 "
                                               r"\(CONV\), which pops the empty LOAD->COMPUTE queue; STORE waits at "
                                               r"instruction 13 \(STORE\), which pops the empty COMPUTE->STORE"),
    "circular wait": (changed(PROG, 4, flags=T.POP_PREV | T.POP_NEXT | T.PUSH_NEXT | T.PUSH_PREV), {},
                      r"deadlocks: LOAD waits at instruction 6 \(LOAD\), which pops the empty COMPUTE->LOAD queue; "
                      r"COMPUTE waits at instruction 4 \(CONV\), which pops the empty STORE->COMPUTE queue"),
    "unbalanced tokens": (changed(PROG, 13, flags=T.POP_PREV | T.PUSH_PREV), {},
                          r"tokens are left at END in the STORE->COMPUTE \(1\) queue"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_validator_rejects(name):
    stream, change, message = CASES[name]
    change = dict(change)
    used = change.pop("dram_bytes_used", None)
    config = dataclasses.replace(DEFAULT, **change)
    with pytest.raises(IsaError, match=message):
        isa.validate(stream, config, dram_bytes_used=used)
    with pytest.raises(IsaError, match=message):  # the same check on the bytes
        isa.validate(isa.encode_stream(stream), config, dram_bytes_used=used)


def patched(stream: bytes, index: int, byte: int, value: int) -> bytes:
    data = bytearray(stream)
    data[index * isa.INSTR_BYTES + byte] = value
    return bytes(data)


def test_bad_bytes_are_named():
    good = isa.encode_stream(PROG)
    with pytest.raises(IsaError, match=r"instruction 3: unknown opcode 0x7f"):
        isa.validate(patched(good, 3, 0, 0x7F), DEFAULT)
    with pytest.raises(IsaError, match=r"instruction 0: unknown opcode 0x00"):
        isa.decode(bytes(isa.INSTR_BYTES))
    with pytest.raises(IsaError, match=r"instruction 4 \(CONV\): reserved bits \[12\] are set"):
        isa.validate(patched(good, 4, 1, good[4 * 64 + 1] | 0x10), DEFAULT)
    with pytest.raises(IsaError, match=r"instruction 0 \(LOAD\): reserved bits \[511\] are set"):
        isa.decode(patched(good, 0, 63, 0x80))
    with pytest.raises(IsaError, match=r"900 bytes is not a whole number of 64-byte instructions"):
        isa.decode_array(good[:900])
    with pytest.raises(IsaError, match=r"must be bytes, got str"):
        isa.decode("LOAD")


def test_encode_names_the_value_that_does_not_fit():
    with pytest.raises(IsaError, match=r"instruction 2 \(LOAD\): dram_addr=1099511627776 does not fit 40 bits"):
        isa.encode_stream(changed(PROG, 2, dram_addr=1 << 40))
    with pytest.raises(IsaError, match=r"pad_value=-32769 does not fit 16 signed bits"):
        isa.encode(changed(PROG, 2, pad_value=-32769)[2])
    with pytest.raises(IsaError, match=r"z_size=\d+ does not fit 16 bits"):
        isa.encode(instr(Op.LOAD, z_size=1 << 70))
    with pytest.raises(IsaError, match=r"LOAD has no fields \['stride'\]"):
        instr(Op.LOAD, stride=1)
    with pytest.raises(IsaError, match=r"unknown opcode 5"):
        isa.Instruction(5, {})
    with pytest.raises(IsaError, match=r"token flags 16 are not a combination"):
        isa.Instruction(Op.LOAD, {}, 16)


# ---------------------------------------------------------------- round trips
def instructions(op: Op):
    spec = isa.SPECS[op]
    values = st.tuples(*[st.integers(f.lowest, f.highest) for f in spec.fields])
    return st.builds(lambda flags, v: isa.Instruction(op, dict(zip(spec.names, v)), T(flags)),
                     st.integers(0, 15), values)


any_instruction = st.sampled_from(list(Op)).flatmap(instructions)


@pytest.mark.parametrize("op", list(Op), ids=lambda op: op.name)
@SETTINGS
@given(data=st.data())
def test_round_trip_every_opcode(op, data):
    ins = data.draw(instructions(op))
    raw = isa.encode(ins)
    assert len(raw) == isa.INSTR_BYTES and raw[0] == op and raw[1] & 0x0F == int(ins.flags)
    assert isa.decode(raw) == [ins]
    arr, columns = isa.decode_array(raw)
    assert arr[0, isa.COL_OPCODE] == op and arr[0, isa.COL_MODULE] == op.module
    assert [int(arr[0, c]) for c in isa.COL_TOKENS] == [int(bool(ins.flags & t)) for t in T]
    assert {name: int(arr[0, col]) for name, col in columns[op].items()} == ins.fields
    assert not arr[0, isa.FIRST_FIELD_COLUMN + len(ins.fields):].any()


@SETTINGS
@given(st.lists(any_instruction, max_size=40))
def test_decoded_matrix_agrees_with_decode(stream):
    raw = isa.encode_stream(stream)
    assert len(raw) == isa.INSTR_BYTES * len(stream)
    decoded = isa.decode(raw)
    assert decoded == stream
    arr, columns = isa.decode_array(raw)
    assert np.array_equal(arr, isa.to_array(decoded)) and isa.encode_array(arr) == raw
    for i, ins in enumerate(decoded):
        assert all(arr[i, isa.column(ins.op, name)] == value for name, value in ins.fields.items())


def test_wide_table_fields_are_appended_after_the_old_ones():
    """CONV's lut_wide (bit 469) and LUT's wide (bit 143) follow each
    opcode's old last field: setting one changes that bit only, so the
    fields before keep their bits, and a stream written before they existed
    (those bits reserved, 0) decodes as it did, the new field 0."""
    for op, name, bit, fields in ((Op.CONV, "lut_wide", 469, {**CONV_1x1, **WIDE_CONV}),
                                  (Op.LUT, "wide", 143, WIDE_LUT)):
        assert isa.SPECS[op].fields[-1].name == name and isa.SPECS[op].fields[-1].offset == bit
        new, old = isa.encode(instr(op, **fields)), isa.encode(instr(op, **{**fields, name: 0}))
        diff = int.from_bytes(new, "little") ^ int.from_bytes(old, "little")
        assert diff == 1 << bit
        assert isa.decode(old)[0][name] == 0 and isa.decode(new)[0][name] == 1
    assert isa.SPECS[Op.CONV].fields[-2].name == "lut_addr" and isa.column(Op.CONV, "lut_addr") + 1 == \
        isa.column(Op.CONV, "lut_wide")


def test_field_layout_is_the_documented_rule():
    """Fields follow each other from bit 16; the header is the same for all."""
    for op, spec in isa.SPECS.items():
        offsets = [f.offset for f in spec.fields]
        assert offsets == list(np.cumsum([isa.HEADER_BITS] + [f.bits for f in spec.fields])[:-1])
        assert spec.end_bit <= isa.INSTR_BITS and op.module == op >> 4
    conv = isa.SPECS[Op.CONV]
    assert isa.N_COLUMNS == isa.FIRST_FIELD_COLUMN + len(conv.fields)
    assert isa.column(Op.CONV, "in_addr") == isa.FIRST_FIELD_COLUMN
    with pytest.raises(IsaError, match="no field 'nope'"):
        isa.column(Op.CONV, "nope")


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=4 * 64), st.sampled_from([0] + [int(op) for op in Op]))
def test_hostile_bytes_give_isa_errors_only(data, opcode):
    """Arbitrary bytes, and arbitrary bytes behind a known opcode (with and
    without the reserved bits cleared), never crash decode or validate."""
    words = [data]
    if data:
        shaped = bytearray(data.ljust(-(-len(data) // 64) * 64, b"\0"))
        shaped[0] = opcode
        words.append(bytes(shaped))
        if opcode:
            cleared = np.frombuffer(bytes(shaped), "<u8").copy().reshape(-1, 8)
            cleared[:, :] &= ~isa_spec._RESERVED[Op(opcode)]
            words.append(cleared.tobytes())
    for raw in words:
        for call in (isa.decode, lambda b: isa.validate(b, DEFAULT), isa.disassemble):
            try:
                call(raw)
            except IsaError:
                pass


@settings(max_examples=40, deadline=None)
@given(st.lists(any_instruction, min_size=1, max_size=8))
def test_random_field_values_validate_or_raise_isa_errors(stream):
    try:
        isa.validate(stream + [instr(Op.END)], DEFAULT)
    except IsaError as exc:
        assert re.match(r"(instruction \d+|the token protocol|tokens are left)", str(exc)), exc


# ---------------------------------------------------------------- several streams
def sync(barrier: int, participants: int) -> isa.Instruction:
    return instr(Op.SYNC, barrier=barrier, participants=participants)


def test_streams_meet_at_barriers():
    end = instr(Op.END)
    good = {(0, 0): [sync(1, 2), sync(2, 2), end], (0, 1): [sync(1, 2), sync(2, 2), end],
            (0, 2, 1): [sync(1, 1), end]}
    isa.validate_streams(good, DEFAULT)
    bad = {**good, (0, 1): [sync(1, 3), sync(2, 2), end]}
    with pytest.raises(IsaError, match=r"stream \(0, 1, 0\): instruction 0 \(SYNC\): participants=3 but 2 streams"):
        isa.validate_streams(bad, DEFAULT)
    crossed = {**good, (0, 1): [sync(2, 2), sync(1, 2), end]}
    with pytest.raises(IsaError, match=r"phase 0: streams meet barriers \[1, 2\] in conflicting orders"):
        isa.validate_streams(crossed, DEFAULT)
    with pytest.raises(IsaError, match=r"barrier=1 is used again \(first at instruction 0\)"):
        isa.validate_streams({(0, 0): [sync(1, 1), sync(1, 1), end]}, DEFAULT)
    with pytest.raises(IsaError, match=r"stream \(1, 0, 0\): card or cluster outside this config"):
        isa.validate_streams({(1, 0): [end]}, DEFAULT)
    with pytest.raises(IsaError, match=r"stream \(0, 3, 0\): the stream does not end with END"):
        isa.validate_streams({(0, 3): [sync(1, 1)]}, DEFAULT)


# ---------------------------------------------------------------- disassembly, docs, speed
def test_disassembly_shows_every_field_and_provenance():
    prog = program()
    text = isa.disassemble(isa.encode_stream(prog), provenance={(2, 5): "conv1", (4, 6): "conv1.store"})
    lines = text.splitlines()
    assert len(lines) == len(prog)
    for i, (line, ins) in enumerate(zip(lines, prog)):
        assert line.split()[:3] == [str(i), ins.module.name, ins.op.mnemonic]
        for name in ins.fields:
            assert re.search(rf" {name}=\S+", line), (name, line)
    assert lines[4].endswith("# conv1, conv1.store") and lines[2].endswith("# conv1")
    assert "#" not in lines[1] and lines[6].count("#") == 0
    assert "[pop_prev,push_prev,push_next]" in lines[4] and " out_addr=0x2a80 " in lines[4]
    assert "space=ACT" in lines[2] and "pad_value=-3" in lines[2] and "acc_mode=FULL" in lines[4]
    assert lines[-1].split() == ["14", "COMPUTE", "END", "[-]"]
    assert isa.disassemble(prog, [(14, 15, "end")]).splitlines()[-1].endswith("# end")


def test_docs_hold_the_generated_tables():
    text = DOC.read_text()
    match = re.search(r"<!-- BEGIN generated tables[^\n]*-->\n(.*?)<!-- END generated tables -->", text, re.S)
    assert match, "docs/isa.md lacks the generated-table markers"
    assert match.group(1).strip() == isa.field_table_markdown().strip(), \
        "docs/isa.md is out of date: paste the output of `python -m runtime.isa` between the markers"
    sample = isa.disassemble(program(), provenance={(2, 14): "conv1"}).splitlines()[4:6]
    assert all(line in text for line in sample), "the disassembly sample in docs/isa.md is out of date"
    for op in Op:  # every instruction has its section of semantics
        assert re.search(rf"^### {op.mnemonic}$", text, re.M), op


def test_hundred_thousand_instructions_decode_and_validate_fast():
    body = program()[:-1]
    big = isa.encode_stream(body * 7143 + [instr(Op.END)])
    start = time.perf_counter()
    arr, _ = isa.decode_array(big)
    decoded = time.perf_counter() - start
    isa.validate(big, DEFAULT)
    total = time.perf_counter() - start
    assert arr.shape == (100_003, isa.N_COLUMNS)
    assert decoded < 0.5 and total < 2.0, (decoded, total)
