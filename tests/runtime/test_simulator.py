"""The accelerator simulator (runtime/sim/): every instruction and mode
bit-exact against plain NumPy formulas on Python integers, the double-buffered
conv of docs/isa.md, execution order across tokens and barriers, run-time
PARAM checks, and the cycle model's properties."""
from __future__ import annotations

import itertools
from unittest import mock

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime import isa, qscheme
from runtime.isa import Bcast, EltOp, Op, PoolMode, Space, instr
from runtime.isa import Token as T
from runtime.sim import Simulator, SimulatorError, conv_gemm, phased, timing
from tests.helpers import isa_program
from tests.helpers.simulator import (
    CONFIG,
    DTYPE,
    SETTINGS,
    Image,
    as_load,
    check_pool,
    clamp,
    conv_epilogue,
    conv_sums,
    flat_box,
    padded,
    records,
    simulate,
    values,
)
from tests.oracle import rescale

RNG = np.random.default_rng(7)


# ---------------------------------------------------------------- the double-buffered conv of docs/isa.md
def test_double_buffered_conv_of_the_isa_doc():
    rng = np.random.default_rng(3)
    x = values(rng, 8, (16, 32, 32))
    w = values(rng, 8, (32, 16, 3, 3), 127)
    rec = records(rng, 32)
    image = Image(isa_program.DRAM_OUT + 32 * 32 * 32)
    image.data[isa_program.DRAM_IN:isa_program.DRAM_IN + x.nbytes] = x.view(np.uint8).reshape(-1)
    image.data[isa_program.DRAM_W:isa_program.DRAM_W + w.nbytes] = w.view(np.uint8).reshape(-1)
    image.data[isa_program.DRAM_P:isa_program.DRAM_P + rec.nbytes] = rec.view(np.uint8)
    prog = isa_program.program()
    sim = Simulator(CONFIG, {(0, 0): isa.encode_stream(prog)}, image.data.size)
    sim.run([image.data])
    padded_x = np.pad(x, ((0, 0), (1, 1), (1, 1)), constant_values=-3)
    expect = conv_epilogue(conv_sums(padded_x, w, 1, (1, 1), (1, 1)) + rec["bias"].astype(object)[:, None, None],
                           rec, 8, -128, -128, 127)
    got = image.data[isa_program.DRAM_OUT:].view(np.int8).reshape(32, 32, 32)
    np.testing.assert_array_equal(got, expect)
    t = sim.timing
    key = (0, 0, 0)
    assert sim.instructions == len(prog) == t.starts[key].size
    assert t.total_cycles < int(t.durations[key].sum()), "double buffering overlaps the modules"
    starts, ends = t.starts[key], t.ends[key]
    assert starts[7] < ends[6] and starts[7] < ends[5], "LOAD t2 and STORE t0 overlap CONV t1"
    assert starts[6] == ends[4], "LOAD t2 waits for CONV t0 to free its buffer"
    assert t.busy["COMPUTE"] == sum(int(t.durations[key][i]) for i in (4, 7, 10, 12, 14))
    assert t.macs == 32 * 32 * 32 * 16 * 9 and t.dram_written_bytes == 32 * 32 * 32
    assert t.dram_read_bytes == x.nbytes + 6 * 16 * 32 + w.nbytes + rec.nbytes  # 6 halo rows read twice
    assert 0 < t.efficiency < 1 and t.hwtime_ms == pytest.approx(t.total_cycles / CONFIG.clock_hz * 1e3)
    assert t.range_cycles(key, 4, 5) == t.durations[key][4] and t.range_cycles(key, 0, 15) == t.total_cycles


# ---------------------------------------------------------------- ELTWISE, LUT (POOL: test_sim_pool.py)

@SETTINGS
@given(st.sampled_from(list(EltOp)), st.sampled_from(list(Bcast)), st.sampled_from([8, 16]), st.sampled_from([8, 16]),
       st.sampled_from([8, 16]), st.sampled_from(["apart", "on a", "on b"]), st.integers(0, 1000))
def test_eltwise(func, bcast, a_bits, b_bits, out_bits, place, seed):
    rng = np.random.default_rng(seed)
    c, h, w = (int(v) for v in rng.integers(1, 5, 3))
    if func == EltOp.COPY:
        bcast, b_bits = Bcast.FULL, 0
    b_shape = {Bcast.FULL: (c, h, w), Bcast.CHANNEL: (c, 1, 1), Bcast.SPATIAL: (1, h, w), Bcast.SCALAR: (1, 1, 1)}
    if place == "on b" and (func == EltOp.COPY or bcast != Bcast.FULL or b_bits != out_bits):
        place = "apart"
    if place == "on a" and a_bits != out_bits:
        place = "apart"
    a = values(rng, a_bits, (c, h, w))
    b = values(rng, b_bits or 8, b_shape[bcast])
    am, ash = int(rng.integers(1 << 30, 1 << 31)), int(rng.integers(1, 40))
    bm, bsh = int(rng.integers(1 << 30, 1 << 31)), int(rng.integers(1, 40))
    az, bz, oz = (int(v) for v in rng.integers(-9, 10, 3))
    lo, hi = -(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1
    av, bv = a.astype(object) - az, np.broadcast_to(b.astype(object) - bz, a.shape)
    ra, rb = (lambda: rescale(av, am, ash)), (lambda: rescale(bv, bm, bsh))
    v = {EltOp.ADD: lambda: ra() + rb(), EltOp.SUB: lambda: ra() - rb(),
         EltOp.MAX: lambda: np.maximum(ra(), rb()), EltOp.MIN: lambda: np.minimum(ra(), rb()),
         EltOp.MUL: lambda: rescale(av * bv, am, ash), EltOp.COPY: ra}[func]()
    expect = clamp(v + oz, lo, hi).astype(DTYPE[out_bits])
    out_addr = {"apart": 8192, "on a": 0, "on b": 4096}[place]
    fields = dict(func=func, c=c, h=h, w=w, a_addr=0, a_bits=a_bits, a_zero=az, a_mult=am, a_shift=ash,
                  out_addr=out_addr, out_bits=out_bits, out_zero=oz, lo=lo, hi=hi)
    loads = [as_load(Space.ACT, 0, a)]
    if func != EltOp.COPY:
        fields.update(bcast=bcast, b_addr=4096, b_bits=b_bits, b_zero=bz)
        loads.append(as_load(Space.ACT, 4096, b))
    if func not in (EltOp.MUL, EltOp.COPY):
        fields.update(b_mult=bm, b_shift=bsh)
    (got,), _ = simulate(loads, [instr(Op.ELTWISE, **fields)], [(Space.ACT, out_addr, padded(expect.nbytes))])
    np.testing.assert_array_equal(got[:expect.nbytes].view(expect.dtype).reshape(expect.shape), expect)


@pytest.mark.parametrize("out_bits,in_place", [(8, False), (8, True), (16, False)])
def test_lut(out_bits, in_place):
    rng = np.random.default_rng(out_bits)
    x = values(rng, 8, 1000)
    table = values(rng, out_bits, 256)
    out_addr = 0 if in_place else 2048
    (got,), _ = simulate([as_load(Space.ACT, 0, x), as_load(Space.WGT, 512, table)],
                         [instr(Op.LUT, in_addr=0, count=1000, param_addr=512, out_addr=out_addr, out_bits=out_bits)],
                         [(Space.ACT, out_addr, 1000 * out_bits // 8)])
    np.testing.assert_array_equal(got.view(DTYPE[out_bits]), table[x.astype(np.int64) + 128])


@pytest.mark.parametrize("out_bits,in_place", [(8, False), (16, False), (16, True)])
def test_wide_lut_interpolates_int16_codes(out_bits, in_place):
    """wide=1: int16 codes through a 513-entry table, as the CPU kernels
    apply it (qscheme.apply_table); a code at an entry's point reads that
    entry exactly, the extremes included; in place for 16-bit outputs."""
    rng = np.random.default_rng(out_bits + 1)
    at_entries = qscheme.table_codes(np.int16)[:-1]
    x = np.concatenate([at_entries, [-32768, 32767, -1, 0, 1], values(rng, 16, 483)]).astype(np.int16)
    table = values(rng, out_bits, qscheme.WIDE_TABLE_ENTRIES)
    out_addr = 0 if in_place else 4096
    (got,), _ = simulate([as_load(Space.ACT, 0, x), as_load(Space.WGT, 512, table)],
                         [instr(Op.LUT, in_addr=0, count=x.size, param_addr=512, out_addr=out_addr,
                                out_bits=out_bits, wide=1)],
                         [(Space.ACT, out_addr, x.size * out_bits // 8)])
    got = got.view(DTYPE[out_bits])
    np.testing.assert_array_equal(got, qscheme.apply_table(table, x))
    np.testing.assert_array_equal(got[:at_entries.size], table[:-1])


# ---------------------------------------------------------------- DMA
@SETTINGS
@given(st.sampled_from([1, 2, 4, 8]), st.integers(1, 4), st.integers(1, 5), st.integers(1, 6),
       st.sampled_from(["dense", "transpose", "broadcast", "gaps"]),
       st.lists(st.integers(0, 2), min_size=4, max_size=4),
       st.integers(-128, 127), st.integers(0, 1000))
def test_dma_boxes(elem, z, y, x, layout, pads, pad_value, seed):
    """A strided padded LOAD into ACT, then a STORE that scatters it with
    other strides: both against NumPy's strided views."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(f"<i{elem}")
    strides = {"dense": (y * x, x, 1), "transpose": (1, z * x, z), "broadcast": (0, x, 0),
               "gaps": (y * x * 3 + 1, x * 2 + 1, 2)}[layout]
    span = (z - 1) * strides[0] + (y - 1) * strides[1] + (x - 1) * strides[2] + 1
    src = rng.integers(-1000, 1000, span).astype(dtype)
    top, bottom, left, right = pads
    box = np.lib.stride_tricks.as_strided(src, (z, y, x), tuple(s * elem for s in strides))
    expect = np.pad(box, ((0, 0), (top, bottom), (left, right)), constant_values=pad_value)
    zz, yy, xx = expect.shape
    image = Image()
    src_at = image.put(src)
    out_strides = (yy * (xx * 2 + 1) + 3, xx * 2 + 1, 2)  # scatter with gaps
    out_span = (zz - 1) * out_strides[0] + (yy - 1) * out_strides[1] + (xx - 1) * out_strides[2] + 1
    out_at = image.reserve(out_span * elem)
    prog = [instr(Op.LOAD, T.PUSH_NEXT, space=Space.ACT, elem_bytes=elem, sram_addr=64, dram_addr=src_at, z_size=z,
                  y_size=y, x_size=x, z_stride=strides[0], y_stride=strides[1], x_stride=strides[2], pad_top=top,
                  pad_bottom=bottom, pad_left=left, pad_right=right, pad_value=pad_value),
            instr(Op.NOP_COMPUTE, T.POP_PREV | T.PUSH_NEXT),
            instr(Op.STORE, T.POP_PREV, space=Space.ACT, elem_bytes=elem, sram_addr=64, dram_addr=out_at, z_size=zz,
                  y_size=yy, x_size=xx, z_stride=out_strides[0], y_stride=out_strides[1], x_stride=out_strides[2]),
            instr(Op.END)]
    sim = Simulator(CONFIG, {(0, 0): isa.encode_stream(prog)}, image.top)
    sim.run([image.data])
    out = image.data[out_at:out_at + out_span * elem].view(dtype)
    got = np.lib.stride_tricks.as_strided(out, expect.shape, tuple(s * elem for s in out_strides))
    np.testing.assert_array_equal(got, expect)
    untouched = np.ones(out_span, bool)
    untouched[np.lib.stride_tricks.as_strided(np.arange(out_span), expect.shape,
                                              tuple(s * 8 for s in out_strides)).reshape(-1)] = False
    assert not out[untouched].any(), "a STORE writes only its box"


def test_store_where_destinations_coincide_keeps_the_last_write():
    image = Image()
    src = image.put(np.arange(8, dtype=np.int8))
    dst = image.reserve(64)
    prog = [instr(Op.LOAD, T.PUSH_NEXT, space=Space.ACT, sram_addr=0, dram_addr=src, elem_bytes=1, z_size=1, y_size=2,
                  x_size=4, y_stride=4, x_stride=1),
            instr(Op.NOP_COMPUTE, T.POP_PREV | T.PUSH_NEXT),
            instr(Op.STORE, T.POP_PREV, space=Space.ACT, sram_addr=0, dram_addr=dst, elem_bytes=1, z_size=1, y_size=2,
                  x_size=4, y_stride=0, x_stride=1), instr(Op.END)]
    Simulator(CONFIG, {(0, 0): isa.encode_stream(prog)}, image.top).run([image.data])
    assert image.data[dst:dst + 4].tolist() == [4, 5, 6, 7]


@pytest.mark.parametrize("z_stride", [0, 3, 8, 12])
def test_dense_store_rows_merge_and_planes_keep_their_order(z_stride):
    """A STORE of back-to-back rows is copied a plane at a time (planes back
    to back too, z_stride 8, as one copy); where planes overlap in DRAM the
    later plane's bytes win, as element order says."""
    image = Image()
    src = image.put(np.arange(24, dtype=np.int8))
    dst = image.reserve(64)
    box = dict(space=Space.ACT, sram_addr=0, elem_bytes=1, z_size=3, y_size=2, x_size=4)
    prog = [instr(Op.LOAD, T.PUSH_NEXT, dram_addr=src, z_stride=8, y_stride=4, x_stride=1, **box),
            instr(Op.NOP_COMPUTE, T.POP_PREV | T.PUSH_NEXT),
            instr(Op.STORE, T.POP_PREV, dram_addr=dst, z_stride=z_stride, y_stride=4, x_stride=1, **box),
            instr(Op.END)]
    Simulator(CONFIG, {(0, 0): isa.encode_stream(prog)}, image.top).run([image.data])
    expect = np.zeros(64, np.int8)
    for z in range(3):
        for y in range(2):
            at = z * z_stride + y * 4
            expect[at:at + 4] = np.arange(z * 8 + y * 4, z * 8 + y * 4 + 4)
    np.testing.assert_array_equal(image.data[dst:dst + 64].view(np.int8), expect)


# ---------------------------------------------------------------- order of execution
def copy_op(src, dst, n, flags=0):
    return instr(Op.ELTWISE, flags, func=EltOp.COPY, c=1, h=1, w=n, a_addr=src, a_bits=8, a_mult=1 << 30, a_shift=30,
                 out_addr=dst, out_bits=8, lo=-128, hi=127)


def test_execution_order_differs_from_program_order():
    """The COPY (instruction 3) waits only for the small LOAD 0, so it runs
    before LOAD 2, which waits behind the big LOAD 1."""
    image = Image()
    a = image.put(np.arange(64, dtype=np.int8))
    big = image.put(RNG.integers(0, 256, 65536).astype(np.uint8))
    c = image.put(np.full(64, 9, np.int8))
    out_a, out_c = image.reserve(64), image.reserve(64)
    prog = [instr(Op.LOAD, T.PUSH_NEXT, space=Space.ACT, sram_addr=0, dram_addr=a, **flat_box(64)),
            instr(Op.LOAD, space=Space.ACT, sram_addr=4096, dram_addr=big, **flat_box(65536)),
            instr(Op.LOAD, T.PUSH_NEXT, space=Space.ACT, sram_addr=1024, dram_addr=c, **flat_box(64)),
            copy_op(0, 2048, 64, T.POP_PREV | T.PUSH_NEXT),
            instr(Op.NOP_COMPUTE, T.POP_PREV | T.PUSH_NEXT),
            instr(Op.STORE, T.POP_PREV, space=Space.ACT, sram_addr=2048, dram_addr=out_a, **flat_box(64)),
            instr(Op.STORE, T.POP_PREV, space=Space.ACT, sram_addr=1024, dram_addr=out_c, **flat_box(64)),
            instr(Op.END)]
    sim = Simulator(CONFIG, {(0, 0): isa.encode_stream(prog)}, image.top)
    sim.run([image.data])
    starts = sim.timing.starts[(0, 0, 0)]
    assert starts[3] < starts[2], "the COPY starts before the earlier LOAD"
    assert list(np.argsort(starts, kind="stable")) != list(range(len(prog)))
    assert image.data[out_a:out_a + 64].tolist() == list(range(64))
    assert image.data[out_c:out_c + 64].tolist() == [9] * 64


def test_two_clusters_meet_at_a_barrier():
    """Cluster 0 doubles a vector and STOREs it; cluster 1 LOADs it after the
    barrier (in concatenation order its LOAD comes first) and adds one."""
    image = Image()
    src = image.put(np.arange(64, dtype=np.int8))
    mid, out = image.reserve(64), image.reserve(64)
    producer = [instr(Op.LOAD, T.PUSH_NEXT, space=Space.ACT, sram_addr=0, dram_addr=src, **flat_box(64)),
                instr(Op.ELTWISE, T.POP_PREV | T.PUSH_NEXT, func=EltOp.COPY, c=1, h=1, w=64, a_addr=0, a_bits=8,
                      a_mult=1 << 30, a_shift=29, out_addr=1024, out_bits=8, lo=-128, hi=127),
                instr(Op.STORE, T.POP_PREV | T.PUSH_PREV, space=Space.ACT, sram_addr=1024, dram_addr=mid,
                      **flat_box(64)),
                instr(Op.SYNC, T.POP_NEXT, barrier=5, participants=2), instr(Op.END)]
    consumer = [instr(Op.SYNC, T.PUSH_PREV, barrier=5, participants=2),
                instr(Op.LOAD, T.POP_NEXT | T.PUSH_NEXT, space=Space.ACT, sram_addr=0, dram_addr=mid, **flat_box(64)),
                instr(Op.ELTWISE, T.POP_PREV | T.PUSH_NEXT, func=EltOp.COPY, c=1, h=1, w=64, a_addr=0, a_bits=8,
                      a_zero=-1, a_mult=1 << 30, a_shift=30, out_addr=1024, out_bits=8, lo=-128, hi=127),
                instr(Op.STORE, T.POP_PREV, space=Space.ACT, sram_addr=1024, dram_addr=out, **flat_box(64)),
                instr(Op.END)]
    streams = {(0, 1): isa.encode_stream(consumer), (0, 0): isa.encode_stream(producer)}
    sim = Simulator(CONFIG, streams, image.top)
    sim.run([image.data])
    assert image.data[out:out + 64].view(np.int8).tolist() == [2 * i + 1 for i in range(64)]
    t = sim.timing
    assert t.starts[(0, 1, 0)][1] >= t.ends[(0, 0, 0)][2], "the LOAD waits for the other cluster's STORE"
    assert t.ends[(0, 1, 0)][0] == t.ends[(0, 0, 0)][3], "both SYNCs complete together"
    assert t.phase_cycles == {0: t.total_cycles}
    assert t.efficiency == 0.0 and t.macs == 0


def test_clusters_that_meet_at_barriers_run_as_lanes():
    """The barrier program above passes the lanes check (the LOAD of the
    other cluster's STORE is an epoch later); its result is the same bytes."""
    image = Image()
    src, mid, out = image.put(np.arange(64, dtype=np.int8)), image.reserve(64), image.reserve(64)
    producer = [instr(Op.LOAD, T.PUSH_NEXT, space=Space.ACT, sram_addr=0, dram_addr=src, **flat_box(64)),
                copy_op(0, 1024, 64, T.POP_PREV | T.PUSH_NEXT),
                instr(Op.STORE, T.POP_PREV | T.PUSH_PREV, space=Space.ACT, sram_addr=1024, dram_addr=mid,
                      **flat_box(64)),
                instr(Op.SYNC, T.POP_NEXT, barrier=1, participants=2), instr(Op.END)]
    consumer = [instr(Op.SYNC, T.PUSH_PREV, barrier=1, participants=2),
                instr(Op.LOAD, T.POP_NEXT | T.PUSH_NEXT, space=Space.ACT, sram_addr=0, dram_addr=mid, **flat_box(64)),
                copy_op(0, 1024, 64, T.POP_PREV | T.PUSH_NEXT),
                instr(Op.STORE, T.POP_PREV, space=Space.ACT, sram_addr=1024, dram_addr=out, **flat_box(64)),
                instr(Op.END)]
    sim = Simulator(CONFIG, {(0, 0): isa.encode_stream(producer), (0, 1): isa.encode_stream(consumer)}, image.top)
    assert sim.lanes == [2]
    for _ in range(20):
        image.data[mid:out + 64] = 0
        sim.run([image.data])
        assert image.data[out:out + 64].view(np.int8).tolist() == list(range(64))


@pytest.mark.parametrize("race", ["write-write", "write-read"])
def test_clusters_racing_on_dram_run_interleaved_in_the_modelled_order(race):
    """Cluster 1 touches the bytes cluster 0 STOREs with no barrier between
    them: not lanes; the bytes are those of the scheduled order, every run
    (cluster 0's STORE waits behind a big LOAD, so it comes last)."""
    image = Image()
    ones, twos = image.put(np.ones(64, np.int8)), image.put(np.full(64, 2, np.int8))
    big = image.put(np.zeros(65536, np.uint8))
    shared, seen = image.reserve(64), image.reserve(64)
    late = [instr(Op.LOAD, space=Space.ACT, sram_addr=4096, dram_addr=big, **flat_box(65536)),
            instr(Op.LOAD, T.PUSH_NEXT, space=Space.ACT, sram_addr=0, dram_addr=ones, **flat_box(64)),
            copy_op(0, 1024, 64, T.POP_PREV | T.PUSH_NEXT),
            instr(Op.STORE, T.POP_PREV, space=Space.ACT, sram_addr=1024, dram_addr=shared, **flat_box(64)),
            instr(Op.END)]
    if race == "write-write":
        early = [instr(Op.LOAD, T.PUSH_NEXT, space=Space.ACT, sram_addr=0, dram_addr=twos, **flat_box(64)),
                 copy_op(0, 1024, 64, T.POP_PREV | T.PUSH_NEXT),
                 instr(Op.STORE, T.POP_PREV, space=Space.ACT, sram_addr=1024, dram_addr=shared, **flat_box(64)),
                 instr(Op.END)]
    else:
        early = [instr(Op.LOAD, T.PUSH_NEXT, space=Space.ACT, sram_addr=0, dram_addr=shared, **flat_box(64)),
                 copy_op(0, 1024, 64, T.POP_PREV | T.PUSH_NEXT),
                 instr(Op.STORE, T.POP_PREV, space=Space.ACT, sram_addr=1024, dram_addr=seen, **flat_box(64)),
                 instr(Op.END)]
    sim = Simulator(CONFIG, {(0, 0): isa.encode_stream(late), (0, 1): isa.encode_stream(early)}, image.top)
    assert sim.lanes == [1]
    for _ in range(20):
        image.data[shared:seen + 64] = 7
        sim.run([image.data])
        assert image.data[shared:shared + 64].tolist() == [1] * 64
        if race == "write-read":
            assert image.data[seen:seen + 64].tolist() == [7] * 64, "the LOAD ran first, in the modelled order"


def test_phases_run_in_order_and_add_their_cycles():
    image = Image()
    src = image.put(np.arange(64, dtype=np.int8))
    mid, out = image.reserve(64), image.reserve(64)

    def doubling(read, write, shift):
        return isa.encode_stream([
            instr(Op.LOAD, T.PUSH_NEXT, space=Space.ACT, sram_addr=0, dram_addr=read, **flat_box(64)),
            instr(Op.ELTWISE, T.POP_PREV | T.PUSH_NEXT, func=EltOp.COPY, c=1, h=1, w=64, a_addr=0, a_bits=8,
                  a_mult=1 << 30, a_shift=shift, out_addr=1024, out_bits=8, lo=-128, hi=127),
            instr(Op.STORE, T.POP_PREV, space=Space.ACT, sram_addr=1024, dram_addr=write, **flat_box(64)),
            instr(Op.END)])
    sim = Simulator(CONFIG, {(0, 2, 1): doubling(mid, out, 29), (0, 0, 0): doubling(src, mid, 30)}, image.top)
    sim.run([image.data])
    assert image.data[out:out + 64].view(np.int8).tolist() == [min(2 * i, 127) for i in range(64)]
    t = sim.timing
    assert t.total_cycles == t.phase_cycles[0] + t.phase_cycles[1]
    assert t.starts[(0, 2, 1)][0] == t.phase_cycles[0]


# ---------------------------------------------------------------- errors
@pytest.fixture(params=["entry-points", "handed-back"])
def entry_points(request):
    """Each way the interpreter runs POOL and off-GEMM CONVs: through the
    program's entry points, or (an empty table) handed back to Python."""
    if request.param == "entry-points":
        yield
        return
    from runtime.sim import handlers

    with mock.patch("runtime.sim.simulator.handler_table", lambda *a: np.zeros(handlers.HANDLERS, np.int64)):
        yield


def test_bad_param_records_stop_the_run_with_the_instruction_named(entry_points):
    case = dict(in_addr=0, in_bits=8, in_c=4, in_h=5, in_w=5, wgt_addr=0, wgt_bits=8, kernel_h=3, kernel_w=3,
                stride_h=1, stride_w=1, dilation_h=1, dilation_w=1, out_c=4, out_addr=1024, out_bits=8,
                lo=-128, hi=127, param_addr=512)
    rec = records(np.random.default_rng(0), 4)
    rec["shift"][2] = 63
    planned = dict(MIN_CHANNELS=0, MIN_PIXELS=0, MIN_DEPTH=0, MIN_MACS=0)  # on the GEMM planned at Init
    unplanned = dict(MIN_CHANNELS=conv_gemm.MIN_CHANNELS)  # groups 4: 8-bit depthwise, a CHANNELS phase when large
    for groups, large, gemm in itertools.product((1, 4), (False, True), (unplanned, planned)):
        with mock.patch.multiple(conv_gemm, **gemm), \
                pytest.raises(SimulatorError, match=r"stream \(0, 0, 0\): instruction 3 \(CONV\): PARAM record 2 "
                                                    r"has shift=63, outside \[1, 62\]"):
            simulate([as_load(Space.ACT, 0, np.zeros(100, np.int8)), as_load(Space.WGT, 0, np.zeros(144, np.int8)),
                      as_load(Space.WGT, 512, rec)], [instr(Op.CONV, groups=groups, **case)], [], large)
    table = np.zeros((4, 2), np.int32)  # an average pool's multipliers never loaded: all zero
    pool = instr(Op.POOL, mode=PoolMode.AVG, in_addr=0, in_bits=8, c=1, in_h=2, in_w=2, kernel_h=2, kernel_w=2,
                 stride_h=1, stride_w=1, out_addr=64, out_bits=8, lo=-128, hi=127, param_addr=64)
    with pytest.raises(SimulatorError, match=r"instruction 2 \(POOL\): average-pool multiplier entry 3 has mult=0"):
        simulate([as_load(Space.ACT, 0, np.zeros(4, np.int8)), as_load(Space.WGT, 64, table)], [pool], [])


def test_invalid_programs_and_drams_are_refused():
    with pytest.raises(SimulatorError, match=r"stream \(0, 0, 0\): the stream does not end with END"):
        Simulator(CONFIG, {(0, 0): isa.encode_stream([instr(Op.NOP_LOAD)])}, 0)
    sim = Simulator(CONFIG, {(0, 0): isa.encode_stream([instr(Op.END)])}, 128)
    with pytest.raises(SimulatorError, match=r"card 0 has 64 bytes; the program uses 128"):
        sim.run([np.zeros(64, np.uint8)])
    with pytest.raises(SimulatorError, match=r"must be a writeable contiguous 1-D uint8"):
        sim.run([np.zeros(128, np.int8)])
    with pytest.raises(SimulatorError, match=r"runs on card 0 but only 0 DRAM images"):
        sim.run([])


# ---------------------------------------------------------------- the cycle model
def test_dma_bound_program_takes_bytes_over_bandwidth():
    image = Image(1 << 22)
    src = image.put(np.zeros(1 << 20, np.uint8))
    chunk = 1 << 16
    prog = [instr(Op.LOAD, space=Space.ACT, sram_addr=(i % 4) * chunk, dram_addr=src + i * chunk, **flat_box(chunk))
            for i in range(16)]
    sim = Simulator(CONFIG, {(0, 0): isa.encode_stream(prog + [instr(Op.END)])}, image.top)
    per_cycle = CONFIG.dram_bandwidth / CONFIG.clock_hz
    assert sim.timing.total_cycles == pytest.approx((1 << 20) / per_cycle + 16 * timing.DMA_SETUP_CYCLES, abs=2)
    assert sim.timing.busy["LOAD"] == sim.timing.total_cycles and sim.timing.dram_read_bytes == 1 << 20
    two = Simulator(CONFIG, {(0, 0): isa.encode_stream(prog + [instr(Op.END)]),
                             (0, 1): isa.encode_stream(prog + [instr(Op.END)])}, image.top)
    assert two.timing.total_cycles == pytest.approx(2 * (1 << 20) / per_cycle + 16 * timing.DMA_SETUP_CYCLES, abs=2)


def test_dma_costs_whole_bursts_per_contiguous_run():
    """Rows of a strided box shorter than a burst cost a burst each; rows
    that continue each other merge into one run; no box costs more than
    the bursts of its span; the DRAM byte counts stay the bytes moved."""
    burst = timing.DRAM_BURST_BYTES
    cost = timing.dram_transfer_bytes
    assert cost(1, 64, 28, 1, 4096, 128, 1) == 64 * 28 * burst  # one byte a row, rows 128 B apart
    assert cost(1, 4, 28, 1, 28 * 32, 32, 1) == -(-(3 * 28 * 32 + 27 * 32 + 1) // burst) * burst  # the span is cheaper
    assert cost(1, 4, 56, 56, 56 * 56, 56, 1) == 4 * 56 * 56  # dense channels: one run
    assert cost(2, 3, 5, 40, 4000, 100, 1) == 15 * 2 * burst  # 80-byte rows: two bursts each
    assert cost(1, 256, 1, 1, 1, 0, 512) == 256  # a GEMM column: channels contiguous
    assert cost(1, 0, 5, 5, 25, 5, 1) == 0
    image = Image(1 << 20)
    src = image.put(np.zeros(1 << 16, np.uint8))
    column = dict(elem_bytes=1, z_size=1, y_size=256, x_size=1, y_stride=256, x_stride=1)
    sparse = Simulator(CONFIG, {(0, 0): isa.encode_stream([instr(Op.LOAD, space=Space.ACT, sram_addr=0, dram_addr=src,
                                                                 **column), instr(Op.END)])}, image.top)
    dense = Simulator(CONFIG, {(0, 0): isa.encode_stream([instr(Op.LOAD, space=Space.ACT, sram_addr=0, dram_addr=src,
                                                                **flat_box(256)), instr(Op.END)])}, image.top)
    per_cycle = CONFIG.dram_bandwidth / CONFIG.clock_hz
    assert sparse.timing.durations[(0, 0, 0)][0] == timing.DMA_SETUP_CYCLES + np.ceil(256 * burst / per_cycle)
    assert dense.timing.durations[(0, 0, 0)][0] == timing.DMA_SETUP_CYCLES + np.ceil(256 / per_cycle)
    assert sparse.timing.dram_read_bytes == dense.timing.dram_read_bytes == 256


def test_compute_bound_program_takes_its_mac_cycles():
    """A 3x3 conv of 64 channels to 64 on a 16x16 tile: 64 ceil(576/64) = 9
    steps per output pixel and 16 channel groups."""
    conv = instr(Op.CONV, in_addr=0, in_bits=8, in_c=64, in_h=16, in_w=16, wgt_addr=0, wgt_bits=8, groups=1,
                 kernel_h=3, kernel_w=3, stride_h=1, stride_w=1, dilation_h=1, dilation_w=1, out_c=64,
                 out_addr=32768, out_bits=8, lo=-128, hi=127, param_addr=65536)
    sim = Simulator(CONFIG, {(0, 0): isa.encode_stream([conv] * 4 + [instr(Op.END)])}, 0)
    per_conv = 14 * 14 * (64 // 4) * 9 + timing.CONV_PIPELINE_CYCLES
    assert sim.timing.total_cycles == 4 * per_conv + 1
    assert sim.timing.macs == 4 * 14 * 14 * 64 * 576
    assert sim.timing.efficiency == pytest.approx(sim.timing.macs / (sim.timing.total_cycles * 256))
    depthwise = instr(Op.CONV, **{**conv.fields, "groups": 64})
    dw = Simulator(CONFIG, {(0, 0): isa.encode_stream([depthwise, instr(Op.END)])}, 0)
    assert dw.timing.efficiency == pytest.approx(9 / 64, rel=0.02), "depthwise 3x3 uses 9 of 64 lanes"
    wide = instr(Op.CONV, **{**conv.fields, "wgt_bits": 16})
    w16 = Simulator(CONFIG, {(0, 0): isa.encode_stream([wide, instr(Op.END)])}, 0)
    assert w16.timing.total_cycles == 2 * (per_conv - timing.CONV_PIPELINE_CYCLES) + timing.CONV_PIPELINE_CYCLES + 1


def test_wide_tables_cost_their_interpolation():
    """A CONV's wide table adds CONV_WIDE_TABLE_CYCLES to the table stage; a
    wide LUT takes half as many codes a cycle (two entries each)."""
    conv = dict(in_addr=0, in_bits=8, in_c=64, in_h=16, in_w=16, wgt_addr=0, wgt_bits=8, groups=1, kernel_h=3,
                kernel_w=3, stride_h=1, stride_w=1, dilation_h=1, dilation_w=1, out_c=64, out_addr=32768,
                out_bits=16, lo=-32768, hi=32767, param_addr=65536)
    lut = dict(in_addr=0, count=1000, param_addr=512, out_addr=4096, out_bits=16)
    stream = [instr(Op.CONV, **conv), instr(Op.CONV, **conv, lut=1, lut_addr=2048),
              instr(Op.CONV, **conv, lut=1, lut_addr=2048, lut_wide=1),
              instr(Op.LUT, **lut), instr(Op.LUT, **lut, wide=1), instr(Op.END)]
    plain, table, wide, lut8, lut16, _ = timing.durations(isa.decode_array(isa.encode_stream(stream))[0], CONFIG, 1)
    assert table - plain == timing.CONV_TABLE_CYCLES
    assert wide - table == timing.CONV_WIDE_TABLE_CYCLES
    lanes = timing.vector_lanes(CONFIG)
    assert lut8 == -(-1000 // lanes) + timing.VECTOR_PIPELINE_CYCLES
    assert lut16 == -(-2000 // lanes) + timing.VECTOR_PIPELINE_CYCLES


# ---------------------------------------------------------------- entry points compiled on first use
def test_instructions_whose_entry_point_is_missing_run_from_python_alike():
    """ELTWISE, LUT and CONVs off the planned GEMM go through entry points a
    program's table holds (runtime/sim/handlers.py); with an empty table
    the interpreter hands them back and Python runs them by the same
    kernels: the same bytes either way, never a jump to address 0."""
    from runtime.sim import handlers

    rng = np.random.default_rng(11)
    x, table = values(rng, 8, 1000), values(rng, 8, 256)
    loads = [as_load(Space.ACT, 0, x), as_load(Space.WGT, 512, table)]
    computes = [instr(Op.LUT, in_addr=0, count=1000, param_addr=512, out_addr=2048, out_bits=8),
                copy_op(2048, 4096, 1000)]
    outputs = [(Space.ACT, 4096, 1000)]
    (direct,), _ = simulate(loads, computes, outputs)
    with mock.patch("runtime.sim.simulator.handler_table", lambda *args: np.zeros(handlers.HANDLERS, np.int64)):
        (handed_back,), _ = simulate(loads, computes, outputs)
    np.testing.assert_array_equal(direct.view(np.int8), table[x.astype(np.int64) + 128])
    np.testing.assert_array_equal(handed_back, direct)
    with mock.patch("runtime.sim.simulator.handler_table", lambda *args: np.zeros(handlers.HANDLERS, np.int64)):
        check_pool(np.random.default_rng(7), PoolMode.MAX, 8, 64, (29, 113), (3, 3), (2, 2), (1, 0, 1, 0))
        check_pool(np.random.default_rng(7), PoolMode.AVG, 16, 5, (17, 40), (2, 3), (1, 3), (0, 1, 2, 1))


def test_a_program_gets_entry_points_only_for_the_instructions_it_has():
    from runtime.sim import handlers

    rows, _ = isa.decode_array(isa.encode_stream([instr(Op.LOAD, space=Space.ACT, sram_addr=0, dram_addr=0,
                                                     **flat_box(64)), copy_op(0, 64, 64), instr(Op.END)]))
    none = np.zeros(rows.shape[0], np.uint8)
    table = handlers.handler_table(rows, none, np.full(rows.shape[0], -1, np.int64))
    assert table[handlers.ELTWISE] != 0 and table[handlers.CONV] == 0 and table[handlers.LUT] == 0


def test_a_run_is_cut_into_phases_at_its_pooled_convs_and_python_steps():
    """runtime.sim.phased.stretches: each large CONV on the GEMM becomes a
    segment (the instructions before it, then its preparation), its
    patches and its products; an instruction the interpreter hands back
    ends a stretch of phases, and every stretch ends with a segment that
    reports the last pooled CONV's output."""
    from runtime.isa import COL_OPCODE, N_COLUMNS
    from runtime.sim import handlers

    ops = [Op.LOAD, Op.CONV, Op.ELTWISE, Op.CONV, Op.CONV, Op.STORE, Op.CONV, Op.END]
    prog = np.zeros((len(ops), N_COLUMNS), np.int64)
    prog[:, COL_OPCODE] = ops
    gemm_index = np.array([-1, 0, -1, -1, 1, -1, 2, -1], np.int64)  # rows 1, 4, 6 planned on the GEMM
    large = np.array([0, 1, 0, 1, 1, 0, 0, 0], np.uint8)  # row 3: a large CONV off the GEMM (Python)
    table = np.ones(handlers.HANDLERS, np.int64)
    order = np.array([0, 1, 2, 3, 4, 5, 6, 7], np.int64)
    (first, python), (second, end) = phased.stretches(prog, order, gemm_index, large, table)
    S, P, G = phased.SEGMENT, phased.PACK, phased.PRODUCTS
    assert python == 3 and end == -1
    assert first.tolist() == [[S, 0, 1, -1, 1], [P, 0, 0, -1, 1], [G, 0, 0, -1, 1], [S, 2, 3, 1, -1]]
    assert second.tolist() == [[S, 4, 4, -1, 4], [P, 0, 0, -1, 4], [G, 0, 0, -1, 4], [S, 5, 8, 4, -1]]
    assert phased.shares_work(first) and not phased.shares_work(second[3:])
    table[handlers.ELTWISE] = 0  # no entry point: the ELTWISE is handed back too
    cuts = [python for _, python in phased.stretches(prog, order, gemm_index, large, table)]
    assert cuts == [2, 3, -1]
