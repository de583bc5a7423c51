"""The GEMM planned at Init for the simulator's dense 8-bit CONVs
(runtime/sim/conv_gemm.py, runtime/sim/patches.py): packed patches and
weights kept while their bytes are, which CONVs go to the pool, the patch
geometry's runs, and the kernels' requantisation in their registers; the
oracle's bytes throughout."""
from __future__ import annotations

from unittest import mock

import numpy as np
import pytest

from runtime import isa
from runtime.gemm.tasks import REQUANT
from runtime.isa import AccMode, EltOp, Op, PoolMode, Space, instr
from runtime.isa import Token as T
from runtime.sim import Simulator, conv_gemm, patches
from runtime.sim import simulator as sim_module
from tests.helpers.conv_cases import NO_PLANS, ConvCase, run_conv_case
from tests.helpers.simulator import (
    CONFIG,
    Image,
    as_load,
    conv_epilogue,
    conv_sums,
    flat_box,
    padded,
    records,
    simulate,
    single_phase,
    values,
)


@pytest.mark.parametrize("in_c, kernel", [(8, (3, 3)), (32, (1, 1))], ids=["pixel-words", "tile-bytes"])
@pytest.mark.parametrize("large", [False, True])
def test_packed_patches_are_reused_only_for_the_same_bytes(in_c, kernel, large):
    """Consecutive planned CONVs share packed patches (conv_gemm's
    same_patches) only where their tiles hold the same bytes in the same
    geometry: the same tile again, its first bytes read as fewer rows
    (another geometry), a copy of it elsewhere, a copy with one byte
    changed, and the tile after another CONV wrote into it."""
    rng = np.random.default_rng(11)
    kh, kw = kernel
    hw, out_c, param, act_out = (6, 9), 16, 128 * 1024, 200 * 1024
    tile = values(rng, 8, (in_c, *hw))
    changed = tile.copy()
    changed[in_c // 2, 2, 3] ^= 0x55
    tiles = {0: tile, 64 * 1024: tile, 128 * 1024: changed}  # ACT addresses
    rec = records(rng, out_c, 1000, True)
    loads = [as_load(Space.ACT, at, x) for at, x in tiles.items()] + [as_load(Space.WGT, param, rec)]
    geometry = dict(in_bits=8, in_c=in_c, in_h=hw[0], in_w=hw[1], wgt_bits=8, groups=1, kernel_h=kh, kernel_w=kw,
                    stride_h=1, stride_w=1, dilation_h=1, dilation_w=1, out_c=out_c, acc_mode=AccMode.FULL,
                    out_bits=8, out_zero=1, lo=-128, hi=127, param_addr=param)
    weights = [values(rng, 8, (out_c, in_c, kh, kw)) for _ in range(7)]
    for j, w in enumerate(weights):
        loads.append(as_load(Space.WGT, j * 16 * 1024, w))
    state = {at: x.copy() for at, x in tiles.items()}
    computes, expected, stores = [], [], []

    def conv(j, at, out_addr, out_c_used=out_c, in_h=hw[0]):
        x = state[at].reshape(-1)[:in_c * in_h * hw[1]].reshape(in_c, in_h, hw[1])  # the tile's first bytes
        w = weights[j][:out_c_used]
        out = conv_epilogue(conv_sums(x, w, 1, (1, 1), (1, 1)) + rec["bias"][:out_c_used].astype(object)[:, None, None],
                            rec[:out_c_used], 8, 1, -128, 127)
        computes.append(instr(Op.CONV, in_addr=at, wgt_addr=j * 16 * 1024, out_addr=out_addr,
                              **{**geometry, "out_c": out_c_used, "in_h": in_h}))
        return out

    def read(j, at, in_h=hw[0]):
        out = conv(j, at, act_out + j * 4096, in_h=in_h)
        expected.append(out)
        stores.append((Space.ACT, act_out + j * 4096, padded(out.nbytes)))

    # the same tile twice; its first bytes as fewer rows; a copy elsewhere; a copy with one byte changed
    for j, (at, in_h) in enumerate(((0, hw[0]), (0, hw[0]), (0, hw[0] - 1), (64 * 1024, hw[0]), (128 * 1024, hw[0]))):
        read(j, at, in_h)
    # a CONV over the copy writing its output over the first bytes of tile 0, then a CONV over tile 0 again
    over = conv(5, 64 * 1024, 0, out_c_used=in_c // 4)
    raw = state[0].reshape(-1).view(np.uint8).copy()
    raw[:over.nbytes] = over.reshape(-1).view(np.uint8)
    state[0] = raw.view(np.int8).reshape(state[0].shape)
    read(6, 0)
    made = []
    real_plan = conv_gemm.plan
    with mock.patch.object(conv_gemm, "plan", lambda *args: made.append(real_plan(*args)) or made[-1]), \
            mock.patch.object(conv_gemm, "MIN_MACS", 0):
        got, _ = simulate(loads, computes, stores, large)
    assert sum(int((plans.index >= 0).sum()) for plans in made) >= len(expected), "a CONV left the GEMM path"
    for out, raw in zip(expected, got):
        np.testing.assert_array_equal(raw[:out.nbytes].view(np.int8).reshape(out.shape), out)


@pytest.mark.parametrize("large", [False, True])
def test_packed_weights_are_kept_between_runs_only_while_their_bytes_are(large):
    """A planned CONV packs its weights once and keeps them (conv_gemm's
    weight stores): a second run on the same DRAM reuses them, a run after
    the host changed one weight byte in DRAM packs them again."""
    rng = np.random.default_rng(5)
    in_c, out_c, hw, param, act_out = 16, 24, (7, 8), 128 * 1024, 200 * 1024
    x, w = values(rng, 8, (in_c, *hw)), values(rng, 8, (out_c, in_c, 3, 3))
    rec = records(rng, out_c, 1000, True)
    rec["shift"], rec["neg_shift"] = 45, 45  # outputs of about |sums| / 2^15: a changed weight shows
    conv = instr(Op.CONV, in_addr=0, in_bits=8, in_c=in_c, in_h=hw[0], in_w=hw[1], wgt_addr=0, wgt_bits=8, groups=1,
                 kernel_h=3, kernel_w=3, stride_h=1, stride_w=1, dilation_h=1, dilation_w=1, out_c=out_c,
                 acc_mode=AccMode.FULL, out_bits=8, out_zero=-2, lo=-128, hi=127, param_addr=param, out_addr=act_out)
    image = Image()
    w_dram = image.top
    loads = [as_load(Space.WGT, 0, w), as_load(Space.ACT, 0, x), as_load(Space.WGT, param, rec)]
    expect = conv_epilogue(conv_sums(x, w, 1, (1, 1), (1, 1)) + rec["bias"].astype(object)[:, None, None], rec, 8, -2,
                           -128, 127)
    stream, (out,) = single_phase(loads, [conv], [(Space.ACT, act_out, padded(expect.nbytes))], image)
    with mock.patch.object(sim_module, "LARGE_CONV_MACS", 0 if large else 1 << 62), \
            mock.patch.object(conv_gemm, "MIN_MACS", 0):
        sim = Simulator(CONFIG, {(0, 0): stream}, image.top)
    assert (sim._phases[0][0].run.gemm.index >= 0).sum() == 1, "the CONV is not on the GEMM"
    for change in (None, None, (5, 1, 2, 0), (23, 15, 0, 2)):
        if change is not None:
            w[change] ^= 0x61
            image.data[w_dram:w_dram + w.nbytes] = w.reshape(-1).view(np.uint8)
            before, expect = expect, conv_epilogue(conv_sums(x, w, 1, (1, 1), (1, 1))
                                                   + rec["bias"].astype(object)[:, None, None], rec, 8, -2, -128, 127)
            assert (before != expect).any(), "the changed weight changes no output"
        sim.run([image.data])
        np.testing.assert_array_equal(image.data[out:out + expect.nbytes].view(np.int8).reshape(expect.shape), expect)


def test_same_bytes_finds_any_changed_byte_at_any_length_and_offset():
    """conv_gemm.same_bytes compares 8-byte words then the last bytes one by
    one: one changed byte anywhere (in a word, in the tail, at either end) of
    unaligned slices of many lengths is found; equal bytes are equal, and
    only the first bytes of the longer ``seen`` count."""
    from runtime.sim.conv_gemm import same_bytes

    rng = np.random.default_rng(3)
    memory = rng.integers(0, 256, 5000, dtype=np.uint8)
    for length in (0, 1, 7, 8, 9, 511, 512, 513, 1031, 4093):
        data = memory[3:3 + length]  # unaligned
        seen = np.concatenate([data, rng.integers(0, 256, 9, dtype=np.uint8)])
        assert same_bytes(data, seen)
        for at in sorted({0, length // 2, length - 9, length - 8, length - 1}):
            if 0 <= at < length:
                other = seen.copy()
                other[at] ^= 0x10
                assert not same_bytes(data, other), (length, at)


@pytest.mark.parametrize("in_c, kernel", [(8, (3, 3)), (32, (1, 1))], ids=["pixel-words", "tile-bytes"])
@pytest.mark.parametrize("large", [False, True])
def test_packed_patches_are_packed_again_after_any_write_into_their_tile(in_c, kernel, large):
    """Packed patches stand for their tile's ACT bytes until something
    writes there: a LOAD, POOL, ELTWISE, LUT or CONV output into part of
    the tile (one past its end must not matter; on the pool, the CONV is
    run from Python, which reports its output), or a new run (SRAM zeroed:
    the first CONV reads zeros again although the run before ended with the
    tile loaded). Each CONV over the tile has the same geometry, so only
    those writes tell them apart; the planned GEMM must give the bytes of
    the direct kernels (no plans, no reuse), run after run."""
    rng = np.random.default_rng(21)
    kh, kw = kernel
    hw, out_c, tile_at, src_at, out_at = (6, 9), 16, 0, 64 * 1024, 128 * 1024
    size = in_c * hw[0] * hw[1]
    rec_at, table_at = 100 * 1024, 110 * 1024
    weights = [values(rng, 8, (out_c, in_c, kh, kw)) for _ in range(7)]
    loads = [as_load(Space.WGT, j * 8 * 1024, w) for j, w in enumerate(weights)]
    loads += [as_load(Space.WGT, rec_at, records(rng, out_c, 1000, True)),
              as_load(Space.WGT, table_at, values(rng, 8, 256)), as_load(Space.ACT, src_at, values(rng, 8, 64))]
    image = Image()
    prog = []
    for j, (space, sram, array) in enumerate(loads):
        prog.append(instr(Op.LOAD, T.PUSH_NEXT if j == len(loads) - 1 else 0, space=space, sram_addr=sram,
                          dram_addr=image.put(array), **flat_box(array.nbytes)))
    geometry = dict(in_addr=tile_at, in_bits=8, in_c=in_c, in_h=hw[0], in_w=hw[1], wgt_bits=8, groups=1,
                    kernel_h=kh, kernel_w=kw, stride_h=1, stride_w=1, dilation_h=1, dilation_w=1, out_c=out_c,
                    acc_mode=AccMode.FULL, out_bits=8, out_zero=1, lo=-128, hi=127, param_addr=rec_at)
    outs = []

    def conv(flags=0):
        j = len(outs)
        outs.append(out_at + j * 4096)
        return instr(Op.CONV, flags, wgt_addr=j * 8 * 1024, out_addr=outs[-1], **geometry)

    inside, past = tile_at + size // 2, tile_at + size  # a write into the tile's middle, one just past its end
    tile = values(rng, 8, size)
    prog += [conv(T.POP_PREV | T.PUSH_PREV),  # over zeros (SRAM starts zeroed every run)
             instr(Op.LOAD, T.POP_NEXT | T.PUSH_NEXT, space=Space.ACT, sram_addr=tile_at, dram_addr=image.put(tile),
                   **flat_box(size)),
             conv(T.POP_PREV),
             instr(Op.POOL, mode=PoolMode.MAX, in_addr=src_at, in_bits=8, c=1, in_h=1, in_w=8, kernel_h=1,
                   kernel_w=1, stride_h=1, stride_w=1, out_addr=inside, out_bits=8, lo=-128, hi=127),
             conv(),
             instr(Op.ELTWISE, func=EltOp.COPY, c=1, h=1, w=8, a_addr=src_at + 8, a_bits=8, a_mult=1 << 30,
                   a_shift=30, out_addr=inside + 8, out_bits=8, lo=-128, hi=127),
             conv(),
             instr(Op.LUT, in_addr=src_at + 16, count=8, param_addr=table_at, out_addr=inside - 8, out_bits=8),
             conv(),
             instr(Op.ELTWISE, func=EltOp.COPY, c=1, h=1, w=8, a_addr=src_at + 24, a_bits=8, a_mult=1 << 30,
                   a_shift=30, out_addr=past, out_bits=8, lo=-128, hi=127),
             conv(),
             # a CONV (too few channels to be planned: the key stays the tile's) writing into the tile
             instr(Op.CONV, wgt_addr=0, **{**geometry, "in_addr": src_at, "out_c": 4, "out_addr": inside}),
             conv(T.PUSH_NEXT)]
    stored = []
    for j, at in enumerate(outs):
        stored.append(image.reserve(4096))
        prog.append(instr(Op.STORE, T.POP_PREV if j == 0 else 0, space=Space.ACT, sram_addr=at, dram_addr=stored[-1],
                          **flat_box(4096)))
    stream = isa.encode_stream(prog + [instr(Op.END)])

    def run(settings):
        with mock.patch.object(sim_module, "LARGE_CONV_MACS", 0 if large else 1 << 62), \
                mock.patch.multiple(conv_gemm, **settings):
            sim = Simulator(CONFIG, {(0, 0): stream}, image.top)
        got = []
        for _ in range(2):
            dram = image.data.copy()
            sim.run([dram])
            got.append([dram[a:a + 4096].copy() for a in stored])
        return sim, got

    planned, got = run(dict(MIN_MACS=0))
    assert int((planned._phases[0][0].run.gemm.index >= 0).sum()) == len(outs), "a CONV left the planned GEMM"
    _, expected = run(NO_PLANS)
    for r in range(2):
        for j in range(len(outs)):
            np.testing.assert_array_equal(got[r][j], expected[r][j], err_msg=f"run {r}, CONV {j}")


def test_a_wide_conv_of_a_million_macs_runs_on_the_pool_and_a_deep_one_does_not():
    """simulator.WIDE_PIXELS: a CONV the GEMM plans, of 2^20 to 2^22 MACs,
    runs on the pool (``large``) when it has 512 output pixels or more (its
    products bound by their multiply-adds) and inside the segments when it
    has fewer (bound by reading its weights); both give the integer
    reference's bits."""
    rng = np.random.default_rng(12)
    for in_c, out_c, hw, wide in ((8, 24, (32, 32), True), (32, 128, (8, 8), False)):  # 30x30 and 6x6 outputs
        macs = out_c * (hw[0] - 2) * (hw[1] - 2) * in_c * 9
        assert (1 << 20) <= macs < sim_module.LARGE_CONV_MACS
        x, w = values(rng, 8, (in_c, *hw)), values(rng, 8, (out_c, in_c, 3, 3))
        rec = records(rng, out_c, 1000, True)
        param, act_out = 128 * 1024, 160 * 1024
        conv = instr(Op.CONV, in_addr=0, in_bits=8, in_c=in_c, in_h=hw[0], in_w=hw[1], wgt_addr=0, wgt_bits=8,
                     groups=1, kernel_h=3, kernel_w=3, stride_h=1, stride_w=1, dilation_h=1, dilation_w=1, out_c=out_c,
                     acc_mode=AccMode.FULL, out_bits=8, out_zero=-2, lo=-128, hi=127, param_addr=param,
                     out_addr=act_out)
        image = Image()
        loads = [as_load(Space.WGT, 0, w), as_load(Space.ACT, 0, x), as_load(Space.WGT, param, rec)]
        expect = conv_epilogue(conv_sums(x, w, 1, (1, 1), (1, 1)) + rec["bias"].astype(object)[:, None, None], rec,
                               8, -2, -128, 127)
        stream, (out,) = single_phase(loads, [conv], [(Space.ACT, act_out, padded(expect.nbytes))], image)
        sim = Simulator(CONFIG, {(0, 0): stream}, image.top)
        run = sim._phases[0][0].run
        rows = np.flatnonzero(run.prog[:, isa.COL_OPCODE] == Op.CONV)
        assert (run.gemm.index[rows] >= 0).all(), "the CONV is not on the GEMM"
        assert bool(run.large[rows].all()) == wide, (in_c, out_c, hw)
        sim.run([image.data])
        np.testing.assert_array_equal(image.data[out:out + expect.nbytes].view(np.int8).reshape(expect.shape), expect)


@pytest.mark.parametrize("stride, width", [(2, 61), (2, 18), (3, 61), (1, 61)])
def test_stride_two_windows_are_packed_as_runs(stride, width):
    """``patches.geometry``'s runs of a byte-gathered CONV: with a column
    stride of 2, each output row's pixels from p on, two bytes apart, as
    minus their count while at least SHORT_RUN are left (then pixel by
    pixel); with 3, every pixel alone; with 1, positive runs."""
    conv = instr(Op.CONV, in_addr=0, in_bits=8, in_c=3, in_h=9, in_w=width, wgt_addr=0, wgt_bits=8, groups=1,
                   kernel_h=3, kernel_w=3, stride_h=2, stride_w=stride, dilation_h=1, dilation_w=1, out_c=8,
                   acc_mode=AccMode.FULL, out_bits=8, out_zero=0, lo=-128, hi=127, param_addr=0, out_addr=0)
    ins = isa.decode_array(isa.encode_stream([conv, instr(Op.END)]))[0][0]
    out_h, out_w = (9 - 3) // 2 + 1, (width - 3) // stride + 1
    size = out_h * out_w
    offsets, origins, runs = np.zeros(28, np.int64), np.zeros(size, np.int64), np.zeros(size, np.int64)
    patches.geometry(ins, offsets, origins, runs)
    short = patches.SHORT_RUN
    for p in range(size):
        left = out_w - p % out_w  # this row's pixels from p on
        if stride == 2:
            assert runs[p] == (-left if left >= short else 1), (p, runs[p])
        elif stride == 3:
            assert runs[p] == 1
        else:
            assert runs[p] == left


def _patch_lanes(tile, kernel, stride, dilation, out_hw, words):
    """The B lanes of a CONV's patches by their definition: step s under
    pixel p holds reduction rows 4s..4s+3 (order (c, ky, kx) for bytes,
    (ky, kx, c) for words; rows past the depth read row 0's byte) + 128,
    as a [steps][pixels] array of uint32."""
    in_c = tile.shape[0]
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    out_h, out_w = out_hw
    depth = in_c * kh * kw
    steps = -(-depth // 4)
    oy, ox = np.divmod(np.arange(out_h * out_w), out_w)
    rows = np.zeros((4 * steps, out_h * out_w), np.uint32)
    for r in range(4 * steps):
        if words:
            t, c = divmod(r, in_c)
        else:
            c, t = divmod(r if r < depth else 0, kh * kw)
        rows[r] = tile[c, oy * sh + (t // kw) * dh, ox * sw + (t % kw) * dw].view(np.uint8) ^ 0x80
    return rows[0::4] | rows[1::4] << 8 | rows[2::4] << 16 | rows[3::4] << 24


@pytest.mark.parametrize("in_c, kernel, stride, hw", [
    (20, (1, 1), (1, 1), (7, 37)), (8, (3, 3), (1, 1), (9, 19)), (12, (3, 3), (1, 1), (5, 8)),
    (3, (3, 3), (1, 1), (8, 20)), (6, (2, 2), (1, 1), (6, 6)), (8, (3, 3), (2, 2), (9, 41)),
    (3, (3, 3), (2, 2), (9, 45)), (4, (1, 1), (1, 3), (4, 22)), (8, (1, 2), (1, 1), (5, 2)),
], ids=["1x1-runs-past-16", "words-3x3", "words-short-rows", "bytes-3x3", "bytes-2x2-6x6", "words-stride-2",
        "bytes-stride-2", "stride-3-pixel-by-pixel", "one-pixel-rows"])
def test_packed_patch_lanes_are_the_windows_bytes(in_c, kernel, stride, hw):
    """``patches.pack_patches`` (after ``pixel_words`` where the tile is
    read as words) lays every step's lanes of every column panel as the
    kernels read them, each lane the four reduction rows' bytes under its
    pixel + 128, and zeros past the pixels: runs of 1 to 37 pixels (whole
    vectors, masked or scalar tails), stride-2 runs two apart, stride-3
    pixels one by one, one-pixel output rows."""
    from runtime.gemm.family import UNIT
    from runtime.gemm.pack import panel_width
    rng = np.random.default_rng(5)
    in_h, in_w = hw
    (kh, kw), (sh, sw) = kernel, stride
    out_h, out_w = (in_h - kh) // sh + 1, (in_w - kw) // sw + 1
    tile = rng.integers(-128, 128, (in_c, in_h, in_w)).astype(np.int8)
    conv = instr(Op.CONV, in_addr=0, in_bits=8, in_c=in_c, in_h=in_h, in_w=in_w, wgt_addr=0, wgt_bits=8, groups=1,
                 kernel_h=kh, kernel_w=kw, stride_h=sh, stride_w=sw, dilation_h=1, dilation_w=1, out_c=8,
                 acc_mode=AccMode.FULL, out_bits=8, out_zero=0, lo=-128, hi=127, param_addr=0, out_addr=0)
    ins = isa.decode_array(isa.encode_stream([conv, instr(Op.END)]))[0][0]
    size, steps = out_h * out_w, -(-in_c * kh * kw // 4)
    offsets, origins, runs = np.zeros(4 * steps, np.int64), np.zeros(size, np.int64), np.zeros(size, np.int64)
    patches.geometry(ins, offsets, origins, runs)
    if sw == 1 and out_w > 1:
        assert (runs > 0).all(), "a column stride of 1 has no runs two apart (pack_patches relies on it)"
    act = np.zeros(tile.size + 64, np.uint8)
    act[16:16 + tile.size] = tile.reshape(-1).view(np.uint8)
    words = bool(patches.by_words(ins))
    xt = np.zeros(tile.size // 4 + 1, np.uint32)
    if words:
        patches.pixel_words(ins, act, 16, xt)
    expected = _patch_lanes(tile, kernel, stride, (1, 1), (out_h, out_w), words)
    for nr, kc in ((16, steps), (48, max(1, steps // 2))):
        npad = -(-size // UNIT) * UNIT
        dst = np.full(steps * npad, 0xDEADBEEF, np.uint32)
        panels = -(-size // nr)
        patches.pack_patches(np.int64(0), np.int64(panels), ins, act, 16, xt, offsets, origins, runs, steps, size, kc,
                             nr, dst)
        for j0 in range(0, size, nr):
            width = panel_width(j0, size, nr, UNIT, 0)
            valid = min(width, size - j0)
            for g0 in range(0, steps, kc):
                kcp = min(kc, steps - g0)
                block = dst[g0 * npad + j0 * kcp:g0 * npad + j0 * kcp + kcp * width].reshape(kcp, width)
                np.testing.assert_array_equal(block[:, :valid], expected[g0:g0 + kcp, j0:j0 + valid],
                                              err_msg=f"nr {nr} kc {kc} panel at {j0} steps from {g0}")
                assert not block[:, valid:].any(), "lanes past the pixels are zero"


@pytest.mark.parametrize("case", [
    ConvCase(64, 32, 1, (3, 3), (1, 1), (1, 1), (12, 12), 8, 8, 8, False, False, 1, False, scaled=True),
    ConvCase(96, 37, 1, (1, 1), (1, 1), (1, 1), (9, 11), 8, 8, 8, False, False, 1, True, scaled=True),
    ConvCase(96, 40, 1, (1, 1), (1, 1), (1, 1), (12, 13), 8, 8, 8, False, False, 3, False, scaled=True),
    ConvCase(512, 20, 1, (3, 3), (1, 1), (1, 1), (6, 9), 8, 8, 8, False, False, 1, False, scaled=True),
], ids=["whole-tiles", "part-tiles-wrapping-bias", "last-after-acc", "reduction-blocks"])
def test_the_gemm_kernels_requantise_as_the_epilogue(case):
    """Every channel on the epilogue's 32-bit path (one multiplier and
    shift >= 33 for both signs, 8-bit outputs, no residual or table): the
    u8s8 kernels requantise the sums in their registers and write the
    int8 outputs (the plan's REQUANT; the last reduction block only, rows
    and columns past a tile's edge masked), pooled and on the
    interpreter's thread; the oracle's bytes, as when the epilogue does it
    (``KERNEL_REQUANT`` off)."""
    for large in (False, True):
        for fused in (True, False):
            with mock.patch.object(conv_gemm, "KERNEL_REQUANT", fused):
                sim = run_conv_case(case, large=large, seed=7)
            if large:  # the last pooled CONV's plan, as its PRODUCTS phases ran it
                assert sim._phases[0][0].run.plan[REQUANT] == int(fused)


@pytest.mark.parametrize("large", [False, True])
def test_a_row_stride_of_one_and_a_column_stride_of_two_over_an_odd_width(large):
    """A 1x1 CONV of strides (1, 2) over 21 columns: each output row's last
    window and the next row's first lie one byte apart, after a run of
    windows two apart. The runs were counted on from the stored run, which
    held minus the two-apart count there, so the row's end read as part of
    a stride-2 run: 42 % of the outputs wrong (found by a random sweep of
    the GEMM's CONVs, 2026-11-29)."""
    case = ConvCase(40, 8, 1, (1, 1), (1, 2), (1, 1), (21, 21), 8, 8, 8, False, False, 2, False, scaled=True)
    with mock.patch.multiple(conv_gemm, MIN_CHANNELS=0, MIN_PIXELS=0, MIN_DEPTH=0, MIN_MACS=0):
        run_conv_case(case, large=large, seed=102)
