"""The simulator's POOL: every mode and width bit-exact against plain NumPy
formulas on Python integers, on random and on realistic tiles, and a large
max POOL cut by channels over the threads (runtime.sim.phased's PLANES)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.isa import Op, PoolMode, Space, instr
from runtime.sim import phased, vector
from tests.helpers.simulator import SETTINGS, as_load, check_pool, clamp, padded, simulate, values
from tests.oracle import rescale


@SETTINGS
@given(st.sampled_from([PoolMode.MAX, PoolMode.AVG]), st.sampled_from([8, 16]), st.integers(1, 3),
       st.integers(1, 3), st.integers(1, 3), st.integers(1, 2), st.integers(0, 1), st.integers(0, 1),
       st.integers(0, 2), st.integers(0, 1), st.integers(0, 1000))
def test_pool(mode, bits, c, kh, kw, stride, top, bottom, left, right, seed):
    rng = np.random.default_rng(seed)
    in_h, in_w = kh + top + bottom + int(rng.integers(0, 4)), kw + left + right + int(rng.integers(0, 4))
    check_pool(rng, mode, bits, c, (in_h, in_w), (kh, kw), (stride, stride), (top, bottom, left, right))


@pytest.mark.parametrize("mode", [PoolMode.MAX, PoolMode.AVG])
@pytest.mark.parametrize("bits, c, in_hw, kernel, stride, pads", [
    (8, 64, (29, 113), (3, 3), (2, 2), (1, 0, 1, 0)),
    (8, 16, (29, 113), (3, 3), (2, 2), (0, 0, 1, 0)),
    (16, 5, (17, 40), (2, 3), (1, 3), (0, 1, 2, 1)),
    (8, 7, (20, 33), (5, 4), (3, 1), (2, 2, 0, 3)),
    (8, 32, (7, 7), (7, 7), (1, 1), (0, 0, 0, 0)),
    (8, 256, (27, 27), (3, 3), (2, 2), (0, 0, 0, 0)),
    (16, 9, (40, 41), (5, 3), (3, 2), (0, 0, 0, 0)),
    (8, 3, (500, 40), (3, 3), (2, 2), (0, 0, 0, 0)),
    (8, 4, (109, 109), (3, 3), (2, 2), (0, 0, 0, 0)),
    (8, 3, (15, 261), (3, 3), (2, 2), (1, 1, 0, 0)),
    (8, 3, (16, 40), (3, 3), (2, 2), (2, 1, 0, 0)),
], ids=["resnet-stem", "resnet-stem-inner", "16-bit-mixed-strides", "wide-windows", "global", "squeezenet-last",
        "16-bit-flat-uneven", "plane-past-a-block", "squeezenet-first", "rows-padded-wide", "rows-padded-even-top"])
def test_pool_on_realistic_tiles(mode, bits, c, in_hw, kernel, stride, pads):
    """Tiles as the compiler cuts them: the windows clear of the padding
    (taken tap by tap over the row's column phases) and those that reach
    into it, unequal strides and windows; unpadded max pools of few output
    columns on blocks of whole planes (runtime.sim.vector's
    ``_max_planes_flat``: many planes to a block, and a plane larger than
    one)."""
    out_w = (in_hw[1] - kernel[1]) // stride[1] + 1
    flat = not any(pads) and out_w < vector.FLAT_POOL_COLUMNS
    assert flat == (in_hw in ((27, 27), (40, 41), (500, 40)) or in_hw == (7, 7)), "the cases the flat path takes"
    check_pool(np.random.default_rng(7), mode, bits, c, in_hw, kernel, stride, pads)


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("bounds", [None, "type", "narrow"])
@pytest.mark.parametrize("kernel, stride, pads", [((3, 3), (2, 2), (0, 0, 0, 0)), ((2, 4), (1, 3), (1, 0, 2, 1))])
def test_max_pool_clamps(bits, bounds, kernel, stride, pads):
    """A MAX POOL's clamp: none (lo and hi the codes' range), a little
    inside it, or a narrow one (a fused ReLU's), with and without padding."""
    floor, ceiling = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    bounds = {None: None, "type": (floor, ceiling), "narrow": (-3, 40)}[bounds]
    check_pool(np.random.default_rng(bits), PoolMode.MAX, bits, 6, (13, 17), kernel, stride, pads, bounds)


@pytest.mark.parametrize("channels, mode", [(64, PoolMode.MAX), (2, PoolMode.MAX), (64, PoolMode.AVG)])
def test_a_large_max_pool_runs_as_planes_on_the_pool(channels, mode):
    """runtime.sim.phased's PLANES phase: a max POOL of at least PLANES_MIN
    input elements runs in chunks of channels over the threads (2 channels:
    2 chunks), the same bytes as the oracle; an average POOL (PARAM records
    to check first) stays in its segment."""
    rng = np.random.default_rng(channels)
    in_h, in_w = 31, -(-phased.PLANES_MIN // (31 * channels)) + 2
    table = np.zeros((9, 2), np.int32)
    table[:, 0], table[:, 1] = 1 << 30, 33  # 2^-3 of a window's sum (the AVG case checks its kind only)
    x = values(rng, 8, (channels, in_h, in_w))
    oh, ow = (in_h - 3) // 2 + 1, (in_w - 3) // 2 + 1
    expect = np.empty((channels, oh, ow), np.int8)
    for oy in range(oh):
        for ox in range(ow):
            window = x[:, 2 * oy:2 * oy + 3, 2 * ox:2 * ox + 3].astype(object)
            expect[:, oy, ox] = (window.max(axis=(1, 2)) if mode == PoolMode.MAX
                                 else clamp(rescale(window.sum(axis=(1, 2)), 1 << 30, 33), -128, 127))
    out_at = 4096 * (1 + x.nbytes // 4096)
    pool = instr(Op.POOL, mode=mode, in_addr=0, in_bits=8, c=channels, in_h=in_h, in_w=in_w, kernel_h=3,
                 kernel_w=3, stride_h=2, stride_w=2, out_addr=out_at, out_bits=8, lo=-128, hi=127,
                 param_addr=64 if mode == PoolMode.AVG else 0)
    loads = [as_load(Space.ACT, 0, x), as_load(Space.WGT, 64, table)]
    (got,), sim = simulate(loads, [pool], [(Space.ACT, out_at, padded(expect.nbytes))])
    np.testing.assert_array_equal(got[:expect.nbytes].view(np.int8).reshape(expect.shape), expect)
    run = sim._phases[0][0].run
    kinds = {int(k) for phases, _, _, _ in run.stretches(run.order) for k in phases[:, phased.KIND]}
    assert (phased.PLANES in kinds) == (mode == PoolMode.MAX), kinds


@pytest.mark.parametrize("dtype", [np.int8, np.int16])
def test_window_sums_are_exact_past_32_bits(dtype):
    """An AVG window's sum (vector._run_sum, in 32-bit blocks) stays exact
    where one 32-bit sum of its codes would wrap: a hardware configuration
    with windows far larger than the default's 16 x 16."""
    info = np.iinfo(dtype)
    for value in (info.max, info.min):
        x = np.full(200_003, value, dtype)
        assert vector._run_sum(x, np.uint64(1), np.uint64(x.size - 1)) == value * (x.size - 1)
    x = values(np.random.default_rng(3), 8 * np.dtype(dtype).itemsize, 70_001)
    assert vector._run_sum(x, np.uint64(0), np.uint64(x.size)) == int(x.astype(np.int64).sum())
