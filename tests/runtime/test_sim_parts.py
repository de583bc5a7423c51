"""Large LOADs, STOREs and ELTWISEs cut into parts over the threads
(runtime/sim/parts.py, runtime.sim.phased's PARTS): which instructions are
cut, and a program of them between pooled CONVs leaving every DRAM byte as
the run without parts leaves it (every cut extent: planes of a padded
LOAD, rows of a strided STORE, the elements of a flat box; ELTWISEs in
place, apart, with a per-channel operand), on two threads and on one; a
program with no pooled work stays one interpreter call."""
from __future__ import annotations

from contextlib import ExitStack
from unittest import mock

import numpy as np
import pytest

from runtime import isa
from runtime.isa import AccMode, Bcast, EltOp, Op, Space, instr
from runtime.isa import Token as T
from runtime.sim import Simulator, conv_gemm, handlers, parts, phased
from runtime.sim import simulator as sim_module
from runtime.sim.interpreter import REDIRECT, UNREAD
from tests.helpers.simulator import CONFIG, Image, records, values

BIG = 1 << 17
IN_C, OUT_C, HW = 32, 32, (16, 16)


def _row(ins) -> np.ndarray:
    return isa.decode_array(isa.encode_stream([ins, instr(Op.END)]))[0][0]


def _dma(op, z, y, x, z_stride=None, y_stride=None, pads=(0, 0, 0, 0)):
    top, bottom, left, right = pads
    padding = dict(pad_top=top, pad_bottom=bottom, pad_left=left, pad_right=right) if op == Op.LOAD else {}
    return _row(instr(op, space=Space.ACT, sram_addr=0, dram_addr=0, elem_bytes=1, z_size=z, y_size=y, x_size=x,
                      z_stride=z_stride if z_stride is not None else y * (y_stride or x),
                      y_stride=y_stride or x, x_stride=1, **padding))


def _eltwise(func, bcast, c, h, w, a, b, out):
    return _row(instr(Op.ELTWISE, func=func, bcast=bcast, c=c, h=h, w=w, a_addr=a, a_bits=8, a_mult=1 << 30,
                      a_shift=31, b_addr=b, b_bits=8, b_mult=1 << 30, b_shift=31, out_addr=out, out_bits=8,
                      lo=-128, hi=127))


TABLE = np.ones(8, np.int64)  # every entry point present


@pytest.mark.parametrize("ins, cut", [
    (_dma(Op.LOAD, 1, 128, 1024), True),
    (_dma(Op.LOAD, 1, 64, 1024), False),  # under MIN_BYTES
    (_dma(Op.STORE, 4, 64, 512, y_stride=600), True),  # strided rows, apart
    (_dma(Op.STORE, 4, 64, 512, y_stride=400), False),  # rows overlap: the last write must win
    (_dma(Op.STORE, 4, 64, 512, z_stride=64 * 512 - 1), False),  # planes overlap
    (_dma(Op.LOAD, 4, 64, 512, pads=(1, 1, 0, 0)), True),  # padded: cut by planes
    (_dma(Op.LOAD, 1, 256, 512, pads=(1, 1, 0, 0)), False),  # padded, one plane
    (_eltwise(EltOp.COPY, Bcast.FULL, 2, 256, 256, 0, 0, 0), True),  # in place
    (_eltwise(EltOp.ADD, Bcast.FULL, 2, 256, 256, 0, 1 << 18, 1 << 16), False),  # a overlaps out, shifted
    (_eltwise(EltOp.ADD, Bcast.CHANNEL, 2, 256, 256, 0, 1 << 18, 0), True),  # b apart
    (_eltwise(EltOp.ADD, Bcast.SPATIAL, 2, 256, 256, 0, 100, 0), False),  # b inside out, not in place
    (_eltwise(EltOp.COPY, Bcast.FULL, 1, 1, 1000, 0, 0, 4096), False),  # under MIN_ELEMENTS
], ids=["flat-load", "small-load", "strided-store", "overlapping-rows", "overlapping-planes", "padded-planes",
        "padded-one-plane", "copy-in-place", "operand-shifted", "channel-operand-apart", "spatial-operand-inside",
        "small-eltwise"])
def test_which_instructions_are_cut_in_parts(ins, cut):
    code = ins[None, :]
    assert parts.splits(code, 0, TABLE) == cut
    assert parts.count(ins, 8) >= 2 or not cut


def test_unread_loads_and_eltwise_without_an_entry_point_are_not_cut():
    load = _dma(Op.LOAD, 1, 128, 1024)
    code = np.concatenate([load, [UNREAD]])[None, :]
    assert code.shape[1] == REDIRECT + 1 and not parts.splits(code, 0, TABLE)
    table = TABLE.copy()
    table[handlers.ELTWISE] = 0
    assert not parts.splits(_eltwise(EltOp.COPY, Bcast.FULL, 2, 256, 256, 0, 0, 0)[None, :], 0, table)


def _program(seed: int):
    """A pooled 1x1 CONV, then: a padded LOAD of 5 planes (cut by planes),
    a flat one (by rows), an ELTWISE COPY in place and an ADD of a
    per-channel operand into another region (by channels), and STOREs of
    the three regions (by planes, by the 4-byte elements of one row, by
    strided rows); the CONV's output stored too. Returns (stream, image, the DRAM
    regions the run writes)."""
    rng = np.random.default_rng(seed)
    image = Image(1 << 22)
    x = values(rng, 8, (IN_C, *HW))
    w, rec = values(rng, 8, (OUT_C, IN_C, 1, 1)), records(rng, OUT_C)
    big = values(rng, 8, (5, 126, 254))
    flat = values(rng, 8, BIG)
    per_channel = values(rng, 8, 2)
    at = {name: image.put(data) for name, data in (("x", x), ("w", w), ("rec", rec), ("big", big), ("flat", flat),
                                                     ("b", per_channel))}
    planes_at, flat_at, sum_at, b_at, x_at, conv_at = 0, 163840, 294912, 458752, 460800, 471040
    sizes = (5 * 128 * 256, BIG, 640 * 300, OUT_C * 256)
    outs = [image.reserve(n) for n in sizes]
    prog = [instr(Op.LOAD, 0, space=Space.ACT, sram_addr=x_at, dram_addr=at["x"], elem_bytes=1, z_size=1, y_size=8,
                  x_size=1024, y_stride=1024, x_stride=1),
            instr(Op.LOAD, 0, space=Space.WGT, sram_addr=0, dram_addr=at["w"], elem_bytes=1, z_size=1, y_size=1,
                  x_size=w.nbytes, y_stride=w.nbytes, x_stride=1),
            instr(Op.LOAD, T.PUSH_NEXT, space=Space.WGT, sram_addr=8192, dram_addr=at["rec"], elem_bytes=1,
                  z_size=1, y_size=1, x_size=rec.nbytes, y_stride=rec.nbytes, x_stride=1),
            instr(Op.CONV, T.POP_PREV | T.PUSH_NEXT, in_addr=x_at, in_bits=8, in_c=IN_C, in_h=HW[0], in_w=HW[1],
                  wgt_addr=0, wgt_bits=8, groups=1, kernel_h=1, kernel_w=1, stride_h=1, stride_w=1, dilation_h=1,
                  dilation_w=1, out_c=OUT_C, acc_mode=AccMode.FULL, out_bits=8, out_zero=0, lo=-128, hi=127,
                  param_addr=8192, out_addr=conv_at),
            instr(Op.STORE, T.POP_PREV, space=Space.ACT, sram_addr=conv_at, dram_addr=outs[3], elem_bytes=1,
                  z_size=1, y_size=OUT_C, x_size=256, y_stride=256, x_stride=1),
            instr(Op.LOAD, 0, space=Space.ACT, sram_addr=planes_at, dram_addr=at["big"], elem_bytes=1, z_size=5,
                  y_size=126, x_size=254, z_stride=126 * 254, y_stride=254, x_stride=1, pad_top=1, pad_bottom=1,
                  pad_left=1, pad_right=1, pad_value=-5),
            instr(Op.LOAD, 0, space=Space.ACT, sram_addr=flat_at, dram_addr=at["flat"], elem_bytes=1, z_size=1,
                  y_size=128, x_size=1024, y_stride=1024, x_stride=1),
            instr(Op.LOAD, T.PUSH_NEXT, space=Space.ACT, sram_addr=b_at, dram_addr=at["b"], elem_bytes=1, z_size=1,
                  y_size=1, x_size=2, y_stride=2, x_stride=1),
            instr(Op.ELTWISE, T.POP_PREV, func=EltOp.COPY, c=2, h=256, w=256, a_addr=flat_at, a_bits=8, a_zero=3,
                  a_mult=(1 << 30) + 12345, a_shift=31, out_addr=flat_at, out_bits=8, out_zero=-2, lo=-100, hi=120),
            instr(Op.ELTWISE, T.PUSH_NEXT, func=EltOp.ADD, bcast=Bcast.CHANNEL, c=2, h=320, w=256, a_addr=planes_at,
                  a_bits=8, a_mult=1 << 30, a_shift=31, b_addr=b_at, b_bits=8, b_mult=(1 << 30) + 777, b_shift=32,
                  out_addr=sum_at, out_bits=8, out_zero=1, lo=-128, hi=127),
            instr(Op.STORE, T.POP_PREV, space=Space.ACT, sram_addr=planes_at, dram_addr=outs[0], elem_bytes=1,
                  z_size=5, y_size=128, x_size=256, z_stride=128 * 256, y_stride=256, x_stride=1),
            instr(Op.STORE, 0, space=Space.ACT, sram_addr=flat_at, dram_addr=outs[1], elem_bytes=4, z_size=1,
                  y_size=1, x_size=BIG // 4, y_stride=BIG // 4, x_stride=1),
            instr(Op.STORE, 0, space=Space.ACT, sram_addr=sum_at, dram_addr=outs[2], elem_bytes=1, z_size=1,
                  y_size=640, x_size=256, y_stride=300, x_stride=1),
            instr(Op.END)]
    return isa.encode_stream(prog), image, list(zip(outs, sizes))


def _run(stream, image, cut: bool, threads_alone: bool = False) -> tuple[np.ndarray, Simulator]:
    before = image.data.copy()
    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(sim_module, "LARGE_CONV_MACS", 0))
        stack.enter_context(mock.patch.object(conv_gemm, "MIN_MACS", 0))
        if not cut:
            stack.enter_context(mock.patch.object(parts, "MIN_BYTES", 1 << 62))
            stack.enter_context(mock.patch.object(parts, "MIN_ELEMENTS", 1 << 62))
        sim = Simulator(CONFIG, {(0, 0): stream}, image.top)
    if threads_alone:
        run = sim._phases[0][0].run
        order = sim._single[1]
        for phases, _, _, span in run.stretches(order):
            assert run.run_stretch(phases, order, image.data, True, span) == (0, False)
    else:
        for _ in range(2):  # the second run on the driver's table as made by the first
            sim.run([image.data])
    after = image.data.copy()
    image.data[:] = before
    return after, sim


@pytest.mark.parametrize("seed", [1, 2])
def test_parts_write_every_byte_the_whole_instructions_write(seed):
    stream, image, regions = _program(seed)
    whole, _ = _run(stream, image, cut=False)
    cut, sim = _run(stream, image, cut=True)
    run = sim._phases[0][0].run
    kinds = [int(k) for phases, *_ in run.stretches(sim._single[1]) for k in phases[:, phased.KIND]]
    assert kinds.count(phased.PARTS) == 7 and phased.PACK in kinds, kinds  # 2 LOADs, 2 ELTWISEs, 3 STOREs
    np.testing.assert_array_equal(cut, whole)
    assert any(cut[a:a + n].any() for a, n in regions)
    alone, _ = _run(stream, image, cut=True, threads_alone=True)
    np.testing.assert_array_equal(alone, whole)


def test_a_program_with_nothing_pooled_stays_one_interpreter_call():
    image = Image(1 << 20)
    data = values(np.random.default_rng(3), 8, BIG)
    at, out = image.put(data), image.reserve(BIG)
    stream = isa.encode_stream([
        instr(Op.LOAD, T.PUSH_NEXT, space=Space.ACT, sram_addr=0, dram_addr=at, elem_bytes=1, z_size=1, y_size=128,
              x_size=1024, y_stride=1024, x_stride=1),
        instr(Op.NOP_COMPUTE, T.POP_PREV | T.PUSH_NEXT),
        instr(Op.STORE, T.POP_PREV, space=Space.ACT, sram_addr=0, dram_addr=out, elem_bytes=1, z_size=1, y_size=128,
              x_size=1024, y_stride=1024, x_stride=1),
        instr(Op.END)])
    sim = Simulator(CONFIG, {(0, 0): stream}, image.top)
    sim.run([image.data])
    run = sim._phases[0][0].run
    (phases, _, alone, span), = run.stretches(sim._single[1])
    assert phases.shape[0] == 1 and alone and span is not None
    np.testing.assert_array_equal(image.data[out:out + BIG].view(np.int8), data)
