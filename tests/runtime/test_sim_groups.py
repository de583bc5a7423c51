"""A segment's instructions on two threads (runtime/sim/groups.py, the
GROUPS phase of runtime.sim.phased): tiles through ping-pong buffers as the
compiler cuts a layer's channels (SqueezeNet's last CONV), a chain where
each tile reads the last one's output, on two threads and on one; the
dependencies, the STOREs moved to their producer's group, the bytes each
instruction touches; and a bad PARAM record reported as without groups."""
from __future__ import annotations

import numpy as np
import pytest

from runtime import isa, parallel
from runtime.isa import Op, Space
from runtime.isa.footprints import DRAM, footprints
from runtime.sim import SimulatorError, groups, phased
from tests.helpers.simulator import CONFIG, padded
from tests.helpers.tiles import HW, IN_C, OUT_AT, OUT_C, tile_outputs, tile_simulator, tiles


@pytest.mark.parametrize("chain", [False, True], ids=["ping-pong", "chain"])
def test_tiles_run_as_groups_with_the_oracles_bytes(chain):
    """Every tile's output is the oracle's, run after run, on two threads
    and on one (the groups in program order); the tiles of independent
    inputs alternate between the two sets, a chain's tiles each wait for
    the tile before."""
    stream, image, constant, outs, expect = tiles(7, chain=chain)
    sim = tile_simulator(stream, image, constant, True)
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
        for got, want in zip(tile_outputs(image, outs, expect), expect):
            np.testing.assert_array_equal(got, want)
    order = sim._single[1]
    for phases, _, _, span in run.stretches(order):
        image.data[outs[0]:outs[-1] + expect[-1].nbytes] = 0
        for view in sim._sram:
            view.fill(0)
        assert run.run_stretch(phases, order, image.data, True, span) == (0, False)  # one thread: the groups in order
    for got, want in zip(tile_outputs(image, outs, expect), expect):
        np.testing.assert_array_equal(got, want)


def test_alone_the_caller_runs_without_the_groups_and_either_way_gives_the_oracles_bytes():
    """A single lane cut into groups runs two ways (CardRun.two_ways), as
    the simulator's SplitWatch chooses: on the pool's threads with its
    groups, or on the caller alone as one thread runs it, without them
    (here one interpreter call, through its compiled entry from the second
    such run: ``_whole``). Runs switching ways (the two sets of working
    buffers, then one, then two) give the oracle's bytes every time."""
    stream, image, constant, outs, expect = tiles(7)
    sim = tile_simulator(stream, image, constant, True)
    run, order = sim._phases[0][0].run, sim._single[1]

    def kinds(plain):
        return {int(k) for phases, *_ in run.stretches(order, plain=plain) for k in phases[:, phased.KIND]}

    assert phased.GROUPS in kinds(False) and kinds(True) == {phased.SEGMENT}
    assert run.two_ways(order) and sim._split is not None
    ways = [False, True, True, True, False, True, False, False, True]
    chosen = iter(ways)
    sim._split.choose = lambda: next(chosen)
    whole = []
    with parallel.steady():  # the pool takes the runs its way, whatever else runs on the host
        for _ in ways:
            image.data[outs[0]:outs[-1] + expect[-1].nbytes] = 0
            sim.run([image.data])
            whole.append(sim._whole is not None)
            for got, want in zip(tile_outputs(image, outs, expect), expect):
                np.testing.assert_array_equal(got, want)
    assert whole == [False] + [True] * (len(ways) - 1)  # made by the first run alone, kept by the pooled ones


def test_while_the_pool_stands_aside_the_caller_runs_without_the_groups(monkeypatch):
    """Where other processes hold the cores the pool stands aside, and a
    lane cut into groups runs as one thread would whatever its watch would
    choose (here the pool's way): without the groups, through the
    interpreter's compiled entry from its second run, the oracle's bytes."""
    stream, image, constant, outs, expect = tiles(7)
    sim = tile_simulator(stream, image, constant, True)
    assert sim._split is not None
    sim._split.choose = lambda: False
    load = parallel._get_pool().load
    monkeypatch.setattr(load, "window", None)  # no new verdict: the one set here holds
    monkeypatch.setattr(load, "serial", True)
    assert parallel.stands_aside()
    for _ in range(3):
        image.data[outs[0]:outs[-1] + expect[-1].nbytes] = 0
        sim.run([image.data])
        for got, want in zip(tile_outputs(image, outs, expect), expect):
            np.testing.assert_array_equal(got, want)
        assert sim._whole is not None


def test_the_same_bytes_with_groups_as_without():
    """Every DRAM byte after a run equals the run without groups."""
    stream, image, constant, outs, expect = tiles(6, seed=8)
    before = image.data.copy()
    tile_simulator(stream, image, constant, True).run([image.data])
    with_groups = image.data.copy()
    image.data[:] = before
    tile_simulator(stream, image, constant, False).run([image.data])
    np.testing.assert_array_equal(with_groups, image.data)


@pytest.mark.parametrize("bad", [(3,), (4,), (3, 4), (2, 5)])
def test_a_bad_param_record_fails_as_without_groups(bad):
    """The earliest bad tile in program order is reported, with the same
    message as the one-thread interpreter's, whichever set its group ran on
    and whatever failed after it."""
    messages = []
    for grouped in (True, False):
        stream, image, constant, _, _ = tiles(7, bad=bad)
        sim = tile_simulator(stream, image, constant, grouped)
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
    stream, image, _, outs, expect = tiles(1)
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
    stream, image, constant, outs, expect = tiles(4)
    sim = tile_simulator(stream, image, constant, True)
    run = sim._phases[0][0].run
    table, rows = run.grouped[0], run.grouped[1]
    ops = run.prog[:, isa.COL_OPCODE]
    for g in range(table.shape[0]):
        members = ops[rows[table[g, groups.START]:table[g, groups.END]]]
        convs = np.flatnonzero(members == Op.CONV)
        stores = np.flatnonzero(members == Op.STORE)
        assert convs.size <= 1 and (stores.size == 0 or convs.size == 0 or stores.min() > convs.max()), members
