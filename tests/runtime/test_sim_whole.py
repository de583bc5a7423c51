"""A small program's whole run: the interpreter called on a table of its
arrays' addresses (runtime/sim/whole.py) computes what the first run, on
the interpreter's ordinary arguments, computed; a pooled run's driver on
its table (the same module) holds every array where it is, and is made
again when the arrays are."""
from __future__ import annotations

import numpy as np
import pytest

from runtime import parallel
from runtime.isa import Op, Space, instr
from runtime.sim import Simulator, SimulatorError, whole
from tests.helpers.simulator import CONFIG, DTYPE, Image, as_load, single_phase, values
from tests.helpers.tiles import tile_outputs, tile_simulator, tiles


def _lut_program(rng):
    x = values(rng, 8, 1000)
    table = values(rng, 16, 256)
    image = Image()
    stream, (out,) = single_phase([as_load(Space.ACT, 0, x), as_load(Space.WGT, 512, table)],
                                  [instr(Op.LUT, in_addr=0, count=1000, param_addr=512, out_addr=2048, out_bits=16)],
                                  [(Space.ACT, 2048, 2000)], image)
    return Simulator(CONFIG, {(0, 0): stream}, image.top), image, out, x, table


def test_runs_on_the_table_compute_what_the_first_run_computed():
    rng = np.random.default_rng(5)
    sim, image, out, x, table = _lut_program(rng)
    expect = table[x.astype(np.int64) + 128]
    for run in range(3):  # the first resolves the whole call, the later ones are it
        image.data[out:out + 2000] = 0
        sim.run([image.data])
        np.testing.assert_array_equal(image.data[out:out + 2000].view(DTYPE[16]), expect, err_msg=f"run {run}")
    assert sim._whole is not None and sim._whole[2] is sim._single[0].run._interpreter


def test_the_table_holds_each_array_where_it_is():
    sim, image, *_ = _lut_program(np.random.default_rng(6))
    sim.run([image.data])
    sim.run([image.data])
    _, _, (pos, table, clear), arrays = sim._single[0].run._span_args
    flat = [a for a in arrays[:2]] + [a for a in arrays[3:] if not isinstance(a, tuple)]
    flat = flat[:whole.WORK] + list(next(a for a in arrays if isinstance(a, tuple))) + flat[whole.WORK:]
    assert pos == 0 and list(clear) == [0, 0]
    assert table.size == whole.FIELDS * len(whole.LAYOUT) == whole.FIELDS * len(flat)
    for i, array in enumerate(flat):
        assert table[whole.FIELDS * i] == array.ctypes.data
        assert tuple(table[whole.FIELDS * i + 1:whole.FIELDS * i + 1 + array.ndim]) == array.shape
    assert flat[4] is image.data  # the DRAM the run writes: the caller's, not a copy


@pytest.mark.parametrize("change", ["dtype", "copy", "count"])
def test_arguments_unlike_the_table_are_refused(change):
    sim, image, *_ = _lut_program(np.random.default_rng(7))
    sim.run([image.data])
    sim.run([image.data])
    arrays = list(sim._single[0].run._span_args[3])
    if change == "dtype":
        arrays[3] = arrays[3].astype(np.int32)  # slot
    elif change == "copy":
        arrays[0] = np.asfortranarray(arrays[0])[:, ::2]  # prog, not C-contiguous
    else:
        arrays.append(np.zeros(1, np.int64))
    with pytest.raises(SimulatorError, match="internal error"):
        whole.argument_table(tuple(arrays))


def test_a_whole_run_starts_from_cleared_sram_and_patch_keys():
    """What the run leaves in SRAM (or anyone writes there between runs) is
    zero again when the next run starts: an untouched ACT region stores
    zeros, and no packed patches stand for a tile."""
    rng = np.random.default_rng(8)
    x = values(rng, 8, 1000)
    image = Image()
    stream, (out, untouched) = single_phase([as_load(Space.ACT, 0, x)],
                                            [instr(Op.LUT, in_addr=0, count=1000, param_addr=0, out_addr=2048,
                                                   out_bits=8)],
                                            [(Space.ACT, 0, 1024), (Space.ACT, 4096, 512)], image)
    sim = Simulator(CONFIG, {(0, 0): stream}, image.top)
    for run in range(3):
        for view in sim._sram:
            view[:] = 77
        for key in sim._patch_keys:
            key[0] = 5
        sim.run([image.data])
        assert sim._whole is not None or run == 0
        np.testing.assert_array_equal(image.data[out:out + 1000].view(np.int8), x, err_msg=f"run {run}")
        assert not image.data[out + 1000:out + 1024].any() and not image.data[untouched:untouched + 512].any()
        assert all(key[0] == 0 for key in sim._patch_keys)


def _pooled():
    """Tiles run as GROUPS phases (tests/runtime/test_sim_groups.py), run
    twice: (the card's run, its order, the image, outputs' addresses, expected)."""
    stream, image, constant, outs, expect = tiles(5, seed=11)
    sim = tile_simulator(stream, image, constant, True)
    sim._split.choose = lambda: False  # the pool's way, which has the GROUPS
    with parallel.steady():  # and the pool takes it, whatever else runs on the host
        for _ in range(2):
            sim.run([image.data])
    return sim._phases[0][0].run, sim._single[1], sim, image, outs, expect


def _driver_arrays(run, order, dram):
    args = (run.code, order, 0, run.slot, run.large, dram, *run.state)
    flat = [a for a in args[:2]] + [a for a in args[3:] if not isinstance(a, tuple)]
    flat = flat[:whole.WORK] + list(run.gemm.work) + flat[whole.WORK:]
    table, rows, done, outcome, where, work, err, pad, tiles, offsets, sums, plans = run.grouped
    return flat + [run.ctl, run.plan, run.gemm.shapes, table, rows, done, outcome, where, *work, err, pad, tiles,
                   offsets, sums, plans]


def test_the_driver_table_holds_each_array_where_it_is():
    run, order, sim, image, outs, expect = _pooled()
    assert run.grouped[0].shape[0] > 0  # the run has GROUPS (their second set of buffers is in the table)
    (kept_order, dram, table, state, grouped), = run._driver_tables.values()
    assert kept_order is order and dram is image.data and state is run.state and grouped is run.grouped
    arrays = _driver_arrays(run, order, image.data)
    assert table.size == whole.FIELDS * len(whole.DRIVER_LAYOUT) == whole.FIELDS * len(arrays)
    for i, array in enumerate(arrays):
        assert table[whole.FIELDS * i] == array.ctypes.data, i
        assert tuple(table[whole.FIELDS * i + 1:whole.FIELDS * i + 1 + array.ndim]) == array.shape, i
    assert {tuple(sig) for sig in whole.run_card_table.signatures} == {whole.DRIVER_SIGNATURE}  # warm-up ships it
    for got, want in zip(tile_outputs(image, outs, expect), expect):
        np.testing.assert_array_equal(got, want)


def test_the_driver_table_is_made_again_when_the_arrays_are_gathered_again():
    run, order, sim, image, outs, expect = _pooled()
    (_, _, before, *_), = run._driver_tables.values()
    run._gather()  # new strides, err and pad arrays (as Init's plan_groups gathers them)
    image.data[outs[0]:outs[-1] + expect[-1].nbytes] = 0
    sim.run([image.data])
    (_, _, after, state, _), = run._driver_tables.values()
    assert state is run.state and after is not before
    assert after[whole.FIELDS * 16] == run.state[11].ctypes.data != before[whole.FIELDS * 16]  # strides
    for got, want in zip(tile_outputs(image, outs, expect), expect):
        np.testing.assert_array_equal(got, want)


def test_driver_arrays_unlike_the_table_are_refused():
    run, order, sim, image, *_ = _pooled()
    args = (run.code, order, 0, run.slot, run.large, image.data, *run.state)
    table, rows, done, outcome, where, work, err, pad, *tiles = run.grouped
    with pytest.raises(SimulatorError, match="internal error: the phased driver's array"):
        whole.driver_table(args, run.ctl, run.plan, run.gemm.shapes,
                           (table, rows, done.astype(np.int32), outcome, where, work, err, pad, *tiles))
    with pytest.raises(SimulatorError, match="internal error: the phased driver takes"):
        whole.driver_table(args, run.ctl, run.plan, run.gemm.shapes, (table, rows, done, outcome, where, work[:-1],
                                                                       err, pad, *tiles))
