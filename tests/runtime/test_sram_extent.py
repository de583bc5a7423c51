"""Each run zeroes a cluster buffer only up to the extent the validator
found (runtime.isa.validate_streams: the end of the furthest byte any
instruction reads or writes). That equals zeroing it all only if no run
ever writes past the extent: checked here on compiled programs (8- and
16-bit layers, one cluster, split over 2 cards x 2 clusters), and that a
second run of other inputs equals a fresh device's."""
from __future__ import annotations

import numpy as np
import pytest

from runtime.binary import read_binary
from runtime.engine import Engine
from runtime.isa import Space
from tests.helpers.report_models import SHAPE, small_binary, split_binary


def _images(engine: Engine, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    name = engine.model.inputs[0].name
    return [{name: rng.standard_normal(SHAPE).astype(np.float32)} for _ in range(engine.model.batch)]


@pytest.mark.parametrize("make", [small_binary, split_binary], ids=["one-cluster-16-bit", "split-2x2"])
def test_runs_leave_the_sram_past_the_validated_extent_zero(make):
    engine = Engine(read_binary(make()))
    engine.run_batch(_images(engine, 1))
    second = engine.run_batch(_images(engine, 2))
    fresh = Engine(read_binary(make())).run_batch(_images(engine, 2))
    for got, want in zip(second, fresh):
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])
    for simulator in engine.device.simulators:
        extents = simulator._extents  # noqa: SLF001 - the invariant under test
        assert 0 < extents[Space.WGT] and 0 < extents[Space.ACT]
        for memory in simulator._memory.values():  # noqa: SLF001
            for space, buffer in zip(Space, (memory.wgt, memory.act, memory.acc)):
                slots = buffer.u8.reshape(-1, buffer.stride)
                assert not slots[:, extents[space]:].any(), f"{space.name} written past its extent"
                assert slots[:, :extents[space]].any() or extents[space] == 0
