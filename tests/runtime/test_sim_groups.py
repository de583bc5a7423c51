"""A segment's instructions on two threads (runtime/sim/groups.py, the
GROUPS phase of runtime.sim.phased): tiles through ping-pong buffers as the
compiler cuts a layer's channels (SqueezeNet's last CONV), a chain where
each tile reads the last one's output, on two threads and on one; the
dependencies, the STOREs moved to their producer's group, the bytes each
instruction touches; and a bad PARAM record reported as without groups."""
from __future__ import annotations

from contextlib import ExitStack
from unittest import mock

import numpy as np
import pytest

from runtime import isa
from runtime.isa import AccMode, Op, Space, instr
from runtime.isa import Token as T
from runtime.isa.footprints import DRAM, footprints
from runtime.sim import Simulator, SimulatorError, conv_gemm, groups, phased
from tests.helpers.simulator import CONFIG, Image, as_load, conv_epilogue, conv_sums, flat_box, padded, records, values

IN_C, OUT_C, HW = 32, 16, (9, 9)
WGT_BYTES, REC_AT, OUT_AT = 8 * 1024, 64 * 1024, 128 * 1024


def _tiles(count: int, chain: bool = False, bad: tuple[int, ...] = (), seed: int = 5):
    """One input tile LOADed into ACT, a 1x1 CONV of it to OUT_C channels,
    then ``count`` CONV tiles of OUT_C channels, each with its weights and
    PARAM records LOADed into one of two WGT buffers and its output into
    one of two ACT buffers (tokens: a LOAD waits for the CONV two tiles
    back, a CONV for the STORE two back), each STOREd to DRAM: 3x3 CONVs of
    the input, or (``chain``) 1x1 CONVs each of the tile before. ``bad``:
    tiles whose first record's multiplier is out of range. The weights,
    records and input come first in the image (its constant bytes), the
    outputs after. Returns (stream, image, constant bytes, each tile's DRAM
    output address, the expected outputs)."""
    rng = np.random.default_rng(seed)
    image = Image()
    k = 1 if chain else 3
    x = values(rng, 8, (IN_C, *HW))
    w0, rec0 = values(rng, 8, (OUT_C, IN_C, 1, 1)), records(rng, OUT_C)
    at = {name: image.put(as_load(Space.ACT, 0, data)[2]) for name, data in (("x", x), ("w0", w0), ("rec0", rec0))}
    prev = conv_epilogue(conv_sums(x, w0, 1, (1, 1), (1, 1)) + rec0["bias"].astype(object)[:, None, None], rec0, 8, 0,
                         -128, 127)
    tiles, expect = [], []
    for t in range(count):
        w, rec = values(rng, 8, (OUT_C, OUT_C if chain else IN_C, k, k)), records(rng, OUT_C)
        if t in bad:
            rec["mult"][0] = 7
        out = conv_epilogue(conv_sums(prev if chain else x, w, 1, (1, 1), (1, 1))
                            + rec["bias"].astype(object)[:, None, None], rec, 8, 0, -128, 127)
        tiles.append((image.put(as_load(Space.WGT, 0, w)[2]), padded(w.nbytes),
                      image.put(as_load(Space.WGT, 0, rec)[2]), padded(rec.nbytes)))
        expect.append(out)
        prev = out
    constant = image.top
    outs = [image.reserve(padded(out.nbytes)) for out in expect]
    prog = [instr(Op.LOAD, 0, space=Space.ACT, sram_addr=0, dram_addr=at["x"], **flat_box(padded(x.nbytes))),
            instr(Op.LOAD, 0, space=Space.WGT, sram_addr=2 * WGT_BYTES, dram_addr=at["w0"],
                  **flat_box(padded(w0.nbytes))),
            instr(Op.LOAD, T.PUSH_NEXT, space=Space.WGT, sram_addr=REC_AT + 2048, dram_addr=at["rec0"],
                  **flat_box(padded(rec0.nbytes))),
            instr(Op.CONV, T.POP_PREV, **_conv_fields(IN_C, 0, 2 * WGT_BYTES, REC_AT + 2048, OUT_AT, 1))]
    first_out = OUT_AT + 4096
    for t, (w_dram, w_bytes, rec_dram, rec_bytes) in enumerate(tiles):
        wgt_at, rec_at, out_at = (t % 2) * WGT_BYTES, REC_AT + (t % 2) * 1024, first_out + (t % 2) * 4096
        in_at = (OUT_AT if t == 0 else first_out + ((t - 1) % 2) * 4096) if chain else 0
        prog.append(instr(Op.LOAD, T.POP_NEXT if t >= 2 else 0, space=Space.WGT, sram_addr=wgt_at, dram_addr=w_dram,
                          **flat_box(w_bytes)))
        prog.append(instr(Op.LOAD, T.PUSH_NEXT, space=Space.WGT, sram_addr=rec_at, dram_addr=rec_dram,
                          **flat_box(rec_bytes)))
        flags = T.POP_PREV | T.PUSH_NEXT | (T.POP_NEXT if t >= 2 else 0) | (T.PUSH_PREV if t < count - 2 else 0)
        prog.append(instr(Op.CONV, flags, **_conv_fields(OUT_C if chain else IN_C, in_at, wgt_at, rec_at, out_at, k)))
        prog.append(instr(Op.STORE, T.POP_PREV | (T.PUSH_PREV if t < count - 2 else 0), space=Space.ACT,
                          sram_addr=out_at, dram_addr=outs[t], **flat_box(padded(expect[t].nbytes))))
    return isa.encode_stream(prog + [instr(Op.END)]), image, constant, outs, expect


def _conv_fields(in_c, in_at, wgt_at, rec_at, out_at, k):
    return dict(in_addr=in_at, in_bits=8, in_c=in_c, in_h=HW[0], in_w=HW[1], wgt_addr=wgt_at, wgt_bits=8, groups=1,
                kernel_h=k, kernel_w=k, stride_h=1, stride_w=1, dilation_h=1, dilation_w=1, out_c=OUT_C,
                acc_mode=AccMode.FULL, out_bits=8, out_zero=0, lo=-128, hi=127, param_addr=rec_at, out_addr=out_at)


def _simulator(stream, image, constant, grouped: bool) -> Simulator:
    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(conv_gemm, "MIN_MACS", 0))
        stack.enter_context(mock.patch.object(groups, "MIN_SEGMENT_NS", 0 if grouped else 1 << 62))
        stack.enter_context(mock.patch.object(groups, "GAIN", 2.0))
        return Simulator(CONFIG, {(0, 0): stream}, image.top, constant)


def _outputs(image, outs, expect):
    return [image.data[a:a + e.nbytes].view(np.int8).reshape(e.shape) for a, e in zip(outs, expect)]


@pytest.mark.parametrize("chain", [False, True], ids=["ping-pong", "chain"])
def test_tiles_run_as_groups_with_the_oracles_bytes(chain):
    """Every tile's output is the oracle's, run after run, on two threads
    and on one (the groups in program order); the tiles of independent
    inputs alternate between the two sets, a chain's tiles each wait for
    the tile before."""
    stream, image, constant, outs, expect = _tiles(7, chain=chain)
    sim = _simulator(stream, image, constant, True)
    run = sim._phases[0][0].run
    table = run.grouped[0]
    assert table.shape[0] >= 7
    need = table[-6:, groups.NEED]
    first = table.shape[0] - 7  # the groups of the 7 tiles are the last ones
    if chain:
        assert need.tolist() == list(range(first, first + 6))
    else:
        assert (need < first).all(), need  # no tile waits for another tile of the other set
    kinds = {int(k) for phases, *_ in run.stretches(sim._single[1]) for k in phases[:, phased.KIND]}
    assert phased.GROUPS in kinds
    for _ in range(3):
        image.data[outs[0]:outs[-1] + expect[-1].nbytes] = 0
        sim.run([image.data])
        for got, want in zip(_outputs(image, outs, expect), expect):
            np.testing.assert_array_equal(got, want)
    order = sim._single[1]
    for phases, _, _, span in run.stretches(order):
        image.data[outs[0]:outs[-1] + expect[-1].nbytes] = 0
        for view in sim._sram:
            view.fill(0)
        assert run.run_stretch(phases, order, image.data, True, span) == 0  # one thread: the groups in order
    for got, want in zip(_outputs(image, outs, expect), expect):
        np.testing.assert_array_equal(got, want)


def test_the_same_bytes_with_groups_as_without():
    """Every DRAM byte after a run equals the run without groups."""
    stream, image, constant, outs, expect = _tiles(6, seed=8)
    before = image.data.copy()
    _simulator(stream, image, constant, True).run([image.data])
    with_groups = image.data.copy()
    image.data[:] = before
    _simulator(stream, image, constant, False).run([image.data])
    np.testing.assert_array_equal(with_groups, image.data)


@pytest.mark.parametrize("bad", [(3,), (4,), (3, 4), (2, 5)])
def test_a_bad_param_record_fails_as_without_groups(bad):
    """The earliest bad tile in program order is reported, with the same
    message as the one-thread interpreter's, whichever set its group ran on
    and whatever failed after it."""
    messages = []
    for grouped in (True, False):
        stream, image, constant, _, _ = _tiles(7, bad=bad)
        sim = _simulator(stream, image, constant, grouped)
        assert (sim._phases[0][0].run.grouped[0].shape[0] > 0) == grouped
        with pytest.raises(SimulatorError) as caught:
            sim.run([image.data])
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    assert "mult" in messages[0]


def test_needs_counts_a_conflict_with_a_write_in_the_other_set():
    """RAW, WAR and WAW on one buffer make a dependency on the other set's
    group; reads of the same bytes, other buffers, disjoint bytes and the
    same set's groups do not (that set's order covers them)."""
    # touches: (group, buffer, first, end, written)
    cases = [
        ([(0, 1, 0, 10, True), (1, 1, 5, 6, False)], [-1, 0]),  # read after write
        ([(0, 1, 0, 10, False), (1, 1, 5, 6, True)], [-1, 0]),  # write after read
        ([(0, 1, 0, 10, True), (1, 1, 9, 12, True)], [-1, 0]),  # write after write
        ([(0, 1, 0, 10, False), (1, 1, 0, 10, False)], [-1, -1]),  # two reads
        ([(0, 1, 0, 10, True), (1, 2, 0, 10, False)], [-1, -1]),  # another buffer
        ([(0, 1, 0, 10, True), (1, 1, 10, 20, False)], [-1, -1]),  # adjacent bytes
        ([(0, 1, 0, 10, True), (2, 1, 0, 10, False), (1, 3, 0, 1, False)], [-1, -1, -1]),  # same set
        ([(0, 1, 0, 4, True), (1, 9, 0, 1, True), (2, 9, 0, 1, False), (3, 1, 0, 4, False)], [-1, -1, 1, 0]),
    ]
    for touches, want in cases:
        g, b, f, e, w = (np.array(col) for col in zip(*touches))
        assert groups.needs(g, b, f, e, w.astype(bool), len(want)).tolist() == want, touches


def test_footprints_name_what_each_instruction_reads_and_writes():
    """A LOAD writes its padded SRAM box and reads its DRAM span, a CONV
    reads its input, weights and records and writes its output, a STORE
    reads its SRAM box and writes its DRAM span."""
    stream, image, _, outs, expect = _tiles(1)
    arr = isa.decode_array(stream)[0]
    row, space, first, end, written = footprints(arr, CONFIG)
    got = {(int(r), int(s), int(a), int(b), bool(w)) for r, s, a, b, w in zip(row, space, first, end, written)}
    load = 0
    x_bytes = padded(IN_C * HW[0] * HW[1])
    assert (load, int(Space.ACT), 0, x_bytes, True) in got
    assert (load, DRAM, int(arr[0, isa.column(Op.LOAD, "dram_addr")]), int(arr[0, isa.column(Op.LOAD, "dram_addr")])
            + x_bytes, False) in got
    ops = isa.decode_array(stream)[0][:, isa.COL_OPCODE]
    conv = int(np.flatnonzero(ops == Op.CONV)[-1])
    store = int(np.flatnonzero(ops == Op.STORE)[-1])
    out_bytes = OUT_C * (HW[0] - 2) * (HW[1] - 2)
    assert (conv, int(Space.ACT), 0, IN_C * HW[0] * HW[1], False) in got
    assert (conv, int(Space.WGT), 0, OUT_C * IN_C * 9, False) in got
    assert (conv, int(Space.ACT), OUT_AT + 4096, OUT_AT + 4096 + out_bytes, True) in got
    assert (store, int(Space.ACT), OUT_AT + 4096, OUT_AT + 4096 + padded(out_bytes), False) in got
    assert (store, DRAM, outs[0], outs[0] + padded(out_bytes), True) in got


def test_a_store_joins_the_group_that_wrote_what_it_reads():
    """The scheduler puts a tile's STORE after the next tile's LOADs; the
    STORE goes to the end of its producer's group, unless it conflicts with
    an instruction before it in its own group."""
    stream, image, constant, outs, expect = _tiles(4)
    sim = _simulator(stream, image, constant, True)
    run = sim._phases[0][0].run
    table, rows = run.grouped[0], run.grouped[1]
    ops = run.prog[:, isa.COL_OPCODE]
    for g in range(table.shape[0]):
        members = ops[rows[table[g, groups.START]:table[g, groups.END]]]
        convs = np.flatnonzero(members == Op.CONV)
        stores = np.flatnonzero(members == Op.STORE)
        assert convs.size <= 1 and (stores.size == 0 or convs.size == 0 or stores.min() > convs.max()), members
