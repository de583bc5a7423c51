"""Chains of CONV tiles of one input run as a TILES phase
(runtime/sim/chains.py): the tiles the compiler cuts a layer's channels
into, through ping-pong buffers; every DRAM and SRAM byte as the
interpreter leaves them, on two threads and on one; a bad PARAM record
reported as without the chain, the tiles before it stored; and the
programs that are not chains."""
from __future__ import annotations

import numpy as np
import pytest

from runtime.sim import SimulatorError, chains, phased
from tests.helpers.tiles import tile_outputs, tile_simulator, tiles


def _kinds(sim):
    run = sim._phases[0][0].run
    return [int(k) for phases, *_ in run.stretches(sim._single[1]) for k in phases[:, phased.KIND]]


def _run(sim, image, before):
    """DRAM and every SRAM view after one run from the image ``before``."""
    image.data[:] = before
    sim.run([image.data])
    return image.data.copy(), [view.copy() for view in sim._sram]


@pytest.mark.parametrize("high", [False, True], ids=["epilogue", "kernels-requantise"])
def test_tiles_of_one_input_run_as_a_chain_with_the_interpreters_bytes(high):
    """The 7 tiles are one chain (the last of each ACT buffer kept in ACT);
    run after run, every DRAM and SRAM byte equals the run where the
    same tiles run as GROUPS and the one where the interpreter runs them,
    with the outputs requantised by the epilogue or by the GEMM's kernels
    (straight into DRAM, or into ACT for the kept tiles)."""
    stream, image, constant, outs, expect = tiles(7, seed=3, high=high)
    before = image.data.copy()
    sim = tile_simulator(stream, image, constant, True, chained=True)
    assert _kinds(sim).count(phased.TILES) == 1
    table = sim._phases[0][0].run.grouped[8]
    assert table.shape[0] == 7 and table[:, chains.KEEP].tolist() == [0, 0, 0, 0, 0, 1, 1]
    runs = [_run(sim, image, before) for _ in range(3)]
    for got, want in zip(tile_outputs(image, outs, expect), expect):
        np.testing.assert_array_equal(got, want)
    for grouped in (True, False):
        other = tile_simulator(stream, image, constant, grouped)
        assert phased.TILES not in _kinds(other)
        dram, sram = _run(other, image, before)
        for chained_dram, chained_sram in runs:
            np.testing.assert_array_equal(chained_dram, dram)
            for a, b in zip(chained_sram, sram):
                np.testing.assert_array_equal(a, b)


def test_a_chain_on_one_thread_runs_its_chunks_in_order():
    """The driver alone (one thread) takes every chunk of the TILES phase."""
    stream, image, constant, outs, expect = tiles(6, seed=4)
    sim = tile_simulator(stream, image, constant, False, chained=True)
    run, order = sim._phases[0][0].run, sim._single[1]
    assert phased.TILES in _kinds(sim)
    image.data[outs[0]:outs[-1] + expect[-1].nbytes] = 0
    for view in sim._sram:
        view.fill(0)
    for phases, _, _, span in run.stretches(order):
        assert run.run_stretch(phases, order, image.data, True, span) == (0, False)
    for got, want in zip(tile_outputs(image, outs, expect), expect):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("bad", [(0,), (3,), (6,), (2, 5)])
def test_a_bad_param_record_in_a_chain_fails_as_the_interpreter_does(bad):
    """The first bad tile is reported with the interpreter's message, and
    every DRAM byte is as the interpreter left it (the tiles before it
    stored, none after)."""
    results = []
    for chained in (True, False):
        stream, image, constant, _, _ = tiles(7, bad=bad)
        sim = tile_simulator(stream, image, constant, False, chained=chained)
        assert (phased.TILES in _kinds(sim)) == chained
        with pytest.raises(SimulatorError) as caught:
            sim.run([image.data])
        results.append((str(caught.value), image.data.copy()))
    assert results[0][0] == results[1][0] and "mult" in results[0][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_tiles_that_are_not_a_chain():
    """Tiles each reading the one before (a different input each), and a
    chain under the work that pays, run as before."""
    stream, image, constant, *_ = tiles(7, chain=True)
    assert phased.TILES not in _kinds(tile_simulator(stream, image, constant, False, chained=True))
    stream, image, constant, *_ = tiles(3)
    assert phased.TILES not in _kinds(tile_simulator(stream, image, constant, False, chained=True))  # < MIN_TILES
    stream, image, constant, *_ = tiles(7)
    assert phased.TILES not in _kinds(tile_simulator(stream, image, constant, False))  # under chains.MIN_MACS
