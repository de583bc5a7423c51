"""Tessera's GEMM on its last column panels, where the kernel choice
depends on the host family (runtime.gemm.family): B read in place or
packed, the wide last panel, the remainder kernels, AVX2's tall tile, and
the tasks' cut of a product. Every choice sums each element as the same
fused multiply-add chain, so each test holds a choice's bits against
another's, not only against a reference."""
import os
import subprocess
import sys

import numpy as np
import pytest

from runtime.gemm import PackedProduct, family, pack_weights, sgemm
from runtime.gemm.family import UNIT, host_isa
from runtime.gemm.microkernel_ir import kernel_ir
from runtime.gemm.tasks import DIRECT, in_place_end, task_block
from tests.helpers.gemm import assert_close, driver, packers, reference

AVX512 = family.Isa("avx512", vw=16, mr=8, nr=48, vnni=True, cpu="", features="", remainder_panels=8,
                    remainder_cols=4, wide_tail=3)
AVX2 = family.Isa("avx2", vw=8, mr=4, nr=24, vnni=False, cpu="", features="", remainder_panels=4, remainder_cols=3,
                  tall_panels=2)
"""The two families' panel shapes (runtime.gemm.family.host_isa), for the
planning tests that hold on any host."""

TALL_CHECK = """
import dataclasses
import numpy as np
from runtime.gemm import PackedProduct, pack_weights, sgemm
import importlib
driver = importlib.import_module("runtime.gemm.sgemm")
from runtime.gemm.family import host_isa
isa = host_isa()
assert isa.name == "avx2" and isa.tall_panels == 2
plain = dataclasses.replace(isa, tall_panels=0)
def products(a, b, bias, residual, start, chosen):
    driver.host_isa = lambda: chosen
    driver._plans.clear()
    packed = pack_weights(a)
    acc = start.copy()
    sgemm(None, b, acc, packed_a=packed, accumulate=True)
    m, n = acc.shape
    return (sgemm(None, b, packed_a=packed, bias=bias, residual=residual, clamp=(-1.0, 2.0)), acc,
            sgemm(a, np.asfortranarray(b)),
            PackedProduct(packed, n, bias, (0.0, 6.0), residual=True).run(b, np.empty((m, n), np.float32), residual))
for m, k, n in [(8, 20, 4), (13, 700, 4), (37, 300, 8), (64, 129, 28), (5, 40, 2), (96, 1100, 100), (30, 64, 196)]:
    rng = np.random.default_rng(m * k + n)
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    bias, residual = rng.standard_normal(m).astype(np.float32), rng.standard_normal((m, n)).astype(np.float32)
    start = rng.standard_normal((m, n)).astype(np.float32)
    tall = products(a, b, bias, residual, start, isa)
    for got, expected in zip(tall, products(a, b, bias, residual, start, plain)):
        assert np.array_equal(got, expected), (m, k, n)
    assert np.abs(tall[2] - a.astype(np.float64) @ b).max() < 1e-3 * max(1, k ** 0.5)
"""


def test_the_tall_tile_gives_the_plain_tiles_bits():
    """AVX2's tall tile (two row panels of a column panel one UNIT wide at
    once: Isa.tall_panels) runs each element's multiply-add chain as the
    plain tile does: the same bits, with every epilogue, accumulating,
    packed or read in place, for products whose last panel is narrow (N =
    2, 4, 8, 28 = 24 + 4, 100, 196) and partial row pairs (M = 5, 13, 37)."""
    import llvmlite.binding as llvm
    if not llvm.get_host_cpu_features().get("avx2"):
        pytest.skip("no AVX2 on this host")
    env = dict(os.environ, TESSERA_GEMM_ISA="avx2")
    result = subprocess.run([sys.executable, "-c", TALL_CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("m, k, n", [(64, 192, 49), (63, 512, 100), (128, 520, 30), (200, 1000, 7), (96, 400, 16),
                                     (70, 300, 8), (66, 260, 64)])
def test_packing_a_contiguous_b_or_reading_it_in_place_gives_the_same_bits(monkeypatch, m, k, n):
    """Deep products with many rows pack even a contiguous B where a packed
    panel stays in L1: the same products summed in the same order as reading
    it in place, so the same bits, through sgemm and a PackedProduct; a
    narrow last panel that B's columns fill (N = 8, 16, 64 = 48 + 16) is
    read in place too."""
    from runtime.gemm.tasks import DIRECT, PACK

    rng = np.random.default_rng(m + k + n)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    packed = pack_weights(a)
    kc, isa = packers.block_depth(k), host_isa()
    fits = kc * isa.nr * 4 <= driver.L1_BYTES
    expected_mode = PACK if m >= driver.PACK_MIN_ROWS and kc >= driver.PACK_MIN_KC and fits else DIRECT
    assert driver.b_reading(m, kc, 1, isa) == expected_mode and driver.b_reading(m, kc, 2, isa) == PACK
    monkeypatch.setattr(driver, "L1_BYTES", 1 << 40)  # every panel "fits": pack where the other rules say so
    assert driver.b_reading(m, kc, 1, isa) == (PACK if m >= driver.PACK_MIN_ROWS and kc >= driver.PACK_MIN_KC
                                               else DIRECT)

    def products():
        driver._plans.clear()
        return (sgemm(None, b, packed_a=packed, bias=bias, clamp=(0.0, 6.0)),
                PackedProduct(packed, n, bias, (0.0, 6.0)).run(b, np.empty((m, n), np.float32)))

    chosen = products()
    monkeypatch.setattr(driver, "PACK_MIN_ROWS", 1 << 40)  # every contiguous B read in place
    in_place = products()
    for got, other in zip(chosen, in_place):
        np.testing.assert_array_equal(got, other)
    np.testing.assert_allclose(chosen[0], np.clip(reference(a, b) + bias[:, None], 0, 6), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("m, k, n", [(96, 576, 196), (128, 1152, 16), (256, 2304, 4), (160, 960, 49), (64, 576, 64)])
def test_a_product_whose_row_chunks_are_short_reads_b_in_place_with_the_packed_bits(monkeypatch, m, k, n):
    """Each task packs the B columns it covers for its own rows: a product
    tall enough to pack B (PACK_MIN_ROWS) but cut into row chunks shorter
    than that (N = 16: one column panel, its rows split between the
    threads) reads B in place, where each chunk packed the same B again;
    a product of one row chunk still packs; the bits are those of packing."""
    from runtime.gemm.tasks import DIRECT, PACK

    monkeypatch.setattr(driver.parallel, "NUM_THREADS", 2)
    monkeypatch.setattr(driver, "L1_BYTES", 1 << 40)  # a packed panel "fits" on every family: B packed by the rule
    isa = host_isa()
    kc = packers.block_depth(k)
    dims, strides = (1, m, n, k, kc), (m * n * 4, n * 4, 4)
    assert driver.b_reading(m, kc, 1, isa) == PACK
    template = driver._plan_template("f32", isa, dims, (PACK, None, k * n, n, 1), strides, None, None, False)
    tail = driver.tail_columns(isa, "f32")
    row_chunks = driver._split(1, m, n, k, isa, tail, driver.remainder_rows(n, isa, "f32", tail))[0]
    rows = -(-int(template[driver._ROW_PANELS]) // row_chunks) * isa.mr  # as cut before RAGGED_TASK_ROWS
    assert template[driver._B_MODE] == (PACK if rows >= driver.PACK_MIN_ROWS else DIRECT)
    whole = driver._plan_template("f32", isa, dims, (PACK, None, k * n, n, 1), strides, None, None, False,
                                  split=False)
    assert whole[driver._B_MODE] == PACK
    rng = np.random.default_rng(m * n + k)
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    packed = pack_weights(a)
    driver._plans.clear()
    chosen = sgemm(None, b, packed_a=packed, bias=bias, clamp=(0.0, 6.0))
    monkeypatch.setattr(driver, "PACK_MIN_ROWS", 1)  # every task packs
    driver._plans.clear()
    everywhere = sgemm(None, b, packed_a=packed, bias=bias, clamp=(0.0, 6.0))
    driver._plans.clear()
    np.testing.assert_array_equal(chosen, everywhere)
    np.testing.assert_allclose(chosen, np.clip(reference(a, b) + bias[:, None], 0, 6), rtol=1e-4, atol=1e-3)


def epilogue_operands(monkeypatch, m: int, k: int, n: int, in_place: bool):
    """Random operands of an (m, k) x (k, n) product with a bias, residual
    and accumulator start, B read in place or packed wherever the product is
    deep and tall enough (whatever the L1 holds); and a function computing
    its products with every epilogue (sgemm with bias, residual and clamp;
    sgemm accumulating; a PackedProduct), plans made afresh each time."""
    rng = np.random.default_rng(m * k + n)
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    bias, residual = rng.standard_normal(m).astype(np.float32), rng.standard_normal((m, n)).astype(np.float32)
    start = rng.standard_normal((m, n)).astype(np.float32)
    packed = pack_weights(a)
    monkeypatch.setattr(driver, "PACK_MIN_ROWS" if in_place else "L1_BYTES", 1 << 40)

    def products():
        driver._plans.clear()
        acc = start.copy()
        sgemm(None, b, acc, packed_a=packed, accumulate=True)
        return (sgemm(None, b, packed_a=packed, bias=bias, residual=residual, clamp=(-1.0, 2.0)), acc,
                PackedProduct(packed, n, bias, (0.0, 6.0), residual=True).run(b, np.empty((m, n), np.float32),
                                                                               residual))

    return a, b, start, products


@pytest.mark.parametrize("m, k, n", [(8, 20, 49), (61, 300, 50), (64, 192, 51), (130, 600, 97), (16, 24, 385),
                                     (72, 40, 433), (3, 7, 49)])
@pytest.mark.parametrize("in_place", [False, True])
def test_a_wide_last_panel_gives_the_remainder_kernels_bits(monkeypatch, m, k, n, in_place):
    """N = nr + 1 to 3 (49 on AVX-512): the last panel runs as one wide
    kernel (Isa.wide_tail) whose tail columns are the same fused
    multiply-add chains as the remainder kernels', so the same bits, with
    every epilogue, packed or read in place, across reduction and column
    blocks (385 = 8 panels + 1) and column chunks."""
    a, b, start, products = epilogue_operands(monkeypatch, m, k, n, in_place)
    wide = products()
    monkeypatch.setattr(driver, "tail_columns", lambda isa, kind: 0)
    for got, expected in zip(wide, products()):
        np.testing.assert_array_equal(got, expected)
    assert_close(wide[1] - start, a, b)


def test_a_wide_last_panel_is_one_column_chunk(monkeypatch):
    """49 columns are one chunk of tasks (split by rows), not a chunk of 48
    and a chunk of one column that re-reads all of A on its own (the
    AVX-512 family's wide tail, planned and its kernel generated on any
    host; AVX2 has none: 25 columns are two panels)."""
    monkeypatch.setattr(driver.parallel, "NUM_THREADS", 2)
    isa = AVX512
    assert f"tessera_f32_{isa.mr}x{isa.nr + 1}" in kernel_ir(isa, "f32")
    assert f"tessera_f32_{AVX2.mr}x{AVX2.nr + 1}" not in kernel_ir(AVX2, "f32")
    rows, cols, _, col_panels = driver._split(1, 512, isa.nr + 1, 4608, isa, isa.wide_tail)
    assert cols == 1 and rows > 1 and col_panels == 1
    assert driver._split(1, 512, isa.nr + 1, 4608, isa, 0)[1] == 2


@pytest.mark.parametrize("m, k, n", [(256, 300, 4), (100, 700, 4), (37, 40, 3), (64, 129, 20), (70, 50, 52),
                                     (33, 600, 196), (5, 9, 2)])
@pytest.mark.parametrize("in_place", [False, True])
def test_the_remainder_kernels_give_the_tiles_bits(monkeypatch, m, k, n, in_place):
    """A last column panel of a few columns (N = 4: a 2 x 2 output plane;
    20 = 16 + 4; 52 = 48 + 4; 196) runs on a remainder kernel, several row
    panels at once with A's steps as vectors, B read in place or packed:
    each element the same fused multiply-add chain as a tile's, so the same
    bits as without remainder kernels, with every epilogue, accumulating,
    across reduction blocks and row chunks."""
    monkeypatch.setattr(driver.parallel, "NUM_THREADS", 2)
    a, b, start, products = epilogue_operands(monkeypatch, m, k, n, in_place)
    isa = host_isa()
    assert driver.remainder_rows(4, isa, "f32", 0) == (family.remainder_group(isa, 4) if isa.remainder_cols >= 4 else 0)
    with_remainders = products()
    monkeypatch.setattr(driver, "split_columns", lambda isa, kind: 0)
    monkeypatch.setattr(driver, "tail_columns", lambda isa, kind: 0)
    monkeypatch.setattr(driver, "rest_split", lambda n, isa, kind: 0)
    for got, expected in zip(with_remainders, products()):
        np.testing.assert_array_equal(got, expected)
    assert_close(with_remainders[1] - start, a, b)


def test_the_in_place_columns_end_where_the_first_panel_b_does_not_fill_starts():
    """tasks.in_place_end against a walk of every panel (runtime.gemm.pack.panel_width):
    in place up to the first panel B's columns do not fill (a narrower one, or
    an ``nr``-wide one over fewer columns: N = 17 on AVX2), on both families'
    panel shapes (nr 24 and 48, wide tails 0 and 3)."""
    from runtime.gemm.pack import panel_width
    from runtime.gemm.tasks import in_place_end

    for nr, tail, split in ((24, 0, 0), (48, 3, 0), (48, 0, 0), (24, 0, 3), (48, 3, 4)):
        for n in range(1, 3 * nr + 9):
            j, want = 0, n
            while j < n:
                width = panel_width(j, n, nr, UNIT, tail, split)
                if nr >= width > n - j:  # a panel B's columns do not fill (a wide last one reads nr + t)
                    want = j
                    break
                j += width
            assert in_place_end(n, nr, UNIT, tail, split) == want, (n, nr, tail, split)


def test_a_last_panel_under_nr_is_one_panel_so_a_is_streamed_once_for_it():
    """A rest of columns under ``nr`` is one panel, rounded up to whole
    ``unit``s (N = 9: 16 wide), never a multiple of ``unit`` plus a panel
    of the last few columns (8 + 1), which made the kernels stream A twice
    for it; a rest of 1 to 3 columns stays a ``unit``-wide panel (the
    remainder kernels'); a last ``nr`` plus up to ``tail`` is one wide panel."""
    from runtime.gemm.pack import LINE, panel_width

    for nr, tail in ((24, 0), (48, 3)):
        for rest in range(1, nr):
            for whole in (0, 2 * nr):
                assert panel_width(whole, whole + rest, nr, UNIT, tail) == -(-rest // UNIT) * UNIT, (nr, rest)
        for extra in range(1, tail + 1):
            assert panel_width(nr, 2 * nr + extra, nr, UNIT, tail) == -(-(nr + extra) // LINE) * LINE
        assert panel_width(0, nr + tail + 1, nr, UNIT, tail) == nr


@pytest.mark.parametrize("m, n, depth", [(512, 784, 1152), (64, 196, 576), (1024, 196, 256), (160, 49, 960),
                                         (2048, 49, 512), (8, 5, 3), (256, 4, 2304), (200, 3, 3000),
                                         (1280, 1, 512), (1000, 2, 1024)])
def test_tasks_cover_the_product_once_in_chunks_a_panel_apart(monkeypatch, m, n, depth):
    """The tasks of a split product partition C: every row panel and column
    exactly once, as many chunks as wanted (17 column panels in 8 chunks,
    not 6 of 3 panels, one short: a thread then ran 3 chunks while the other
    waited), chunk sizes a panel apart at most; but where the last column
    panel runs on a remainder kernel, every row chunk holds at least one
    whole group of the panels it takes (N = 4: 256 rows in 4 chunks of 8
    panels on AVX-512, not 8 of 4), and starts at a group: its chunk sizes
    are whole groups a group apart, the last chunk's with the panels past
    the last whole group (N = 1: 1280 rows, 160 panels in groups of 8, not
    16 chunks of 10 panels, two of each on the plain tile)."""
    monkeypatch.setattr(driver.parallel, "NUM_THREADS", 2)
    isa = host_isa()
    tail = driver.tail_columns(isa, "f32")
    group = driver.remainder_rows(n, isa, "f32", tail)
    mt, nt, row_panels, col_panels = driver._split(1, m, n, depth, isa, tail, group)
    template = driver._plan_template("f32", isa, (1, m, n, depth, depth), (0, None, depth * n, n, 1),
                                     (m * n * 4, n * 4, 4), None, None, False)
    if (template[driver._B_MODE] == DIRECT and nt == 1 and not group
            and n > in_place_end(n, isa.nr, UNIT, tail, template[driver._REST])):  # each task packs the rest
        assert template[driver._MT] == min(mt, -(-m // driver.RAGGED_TASK_ROWS))
        mt = wanted_rows = int(template[driver._MT])
    else:
        wanted_rows = None
    assert template[driver._TASKS] == mt * nt and template[driver._REMAINDER] == group
    wanted = max(1, min(8, driver.work(m, n, depth) // driver.MIN_TASK_MACS))
    if group > 1:
        wanted = min(wanted, max(1, row_panels // group) * col_panels)
    if wanted_rows is not None:
        wanted = min(wanted, wanted_rows)
    assert mt * nt >= min(wanted, -(-m // isa.mr) * (-(-n // isa.nr)))  # as many chunks as wanted, where there are
    assert col_panels == -(-n // isa.nr) - (1 if n > isa.nr and 0 < n % isa.nr <= tail else 0)
    covered = np.zeros((m, n), np.int64)
    heights, widths, groups = [], [], []
    for task in range(mt * nt):
        item, first, last, n0, n1 = task_block(template, task)
        covered[first * isa.mr:last * isa.mr, n0:n1] += 1
        heights.append(last - first)
        widths.append((col_panels if n1 == n else n1 // isa.nr) - n0 // isa.nr)
        if group > 1 and row_panels >= group:
            assert first % group == 0 and (last % group == 0 or last == row_panels), (first, last, group)
            groups.append((last - first) // group)
    assert (covered == 1).all()
    spread = max(groups) - min(groups) if groups else max(heights) - min(heights)
    assert min(heights) >= 1 and spread <= 1 and sum(heights) == row_panels * nt
    assert min(widths) >= 1 and max(widths) - min(widths) <= 1 and sum(widths) == col_panels * mt
    if group > 1:
        assert min(heights) >= min(group, row_panels)
    elif driver.work(m, n, depth) >= 8 * driver.MIN_TASK_MACS and wanted_rows is None:
        assert mt * nt >= 8


@pytest.mark.parametrize("m, n", [(512, 1), (512, 2), (256, 4)])
def test_a_narrow_product_is_cut_for_reading_its_weights(monkeypatch, m, n):
    """m x 256 by 256 x n (a 1 x 1 or 2 x 2 output plane's convolution) has
    fewer multiply-adds than one task's minimum, but it is bound by reading
    its weights (512 KiB for m = 512): cut into tasks over both threads (as a product of
    NARROW_WORK_COLUMNS columns would be), not run by one while the other
    waits; the products the same bits either way."""
    monkeypatch.setattr(driver.parallel, "NUM_THREADS", 2)
    assert m * n * 256 <= driver.SERIAL_MACS  # counted by its multiply-adds, it would be serial
    isa = host_isa()
    tail = driver.tail_columns(isa, "f32")
    mt, nt, _, _ = driver._split(1, m, n, 256, isa, tail, driver.remainder_rows(n, isa, "f32", tail))
    assert mt * nt >= 2
    rng = np.random.default_rng(n)
    a, b = rng.standard_normal((m, 256)).astype(np.float32), rng.standard_normal((256, n)).astype(np.float32)
    product = PackedProduct(pack_weights(a), n, None, None, False)
    assert product.tasks >= 2 and not product.serial
    got = product.run(b, np.empty((m, n), np.float32))
    monkeypatch.setattr(driver, "NARROW_WORK_COLUMNS", 1)
    serial = PackedProduct(pack_weights(a), n, None, None, False)
    assert serial.serial
    np.testing.assert_array_equal(got, serial.run(b, np.empty((m, n), np.float32)))


@pytest.mark.parametrize("m, n", [(96, 21), (200, 22), (64, 15)])
def test_tasks_that_pack_ragged_columns_take_rows_enough_to_reuse_them(monkeypatch, m, n):
    """A product whose last columns fill no panel B's columns could be read
    in place from, and no remainder kernel takes (5 to 7 past a multiple
    of 8 on either family, in one column panel), packs them in every task: its rows are cut
    into chunks of at least RAGGED_TASK_ROWS (each repacking cost as much
    as 15 rows' products), not into as many tasks as a wide product; the
    products the same bits as one task's."""
    monkeypatch.setattr(driver.parallel, "NUM_THREADS", 2)
    isa = host_isa()
    assert driver.rest_split(n, isa, "f32") == 0
    assert n - in_place_end(n, isa.nr, UNIT, driver.tail_columns(isa, "f32")) > isa.remainder_cols  # packed
    rng = np.random.default_rng(m + n)
    a, b = rng.standard_normal((m, 576)).astype(np.float32), rng.standard_normal((576, n)).astype(np.float32)
    product = PackedProduct(pack_weights(a), n, None, None, False)
    assert product.tasks == -(-m // driver.RAGGED_TASK_ROWS)
    got = product.run(b, np.empty((m, n), np.float32))
    monkeypatch.setattr(driver, "RAGGED_TASK_ROWS", 1)
    driver._plans.clear()
    many = PackedProduct(pack_weights(a), n, None, None, False)
    assert many.tasks > product.tasks  # as the rule had it before
    np.testing.assert_array_equal(got, many.run(b, np.empty((m, n), np.float32)))
    driver._plans.clear()



def test_a_ragged_rest_is_split_where_its_padded_panel_takes_a_vector_more():
    """runtime.gemm.sgemm.rest_split on both families' panel shapes: a last
    panel of r < nr columns, r % 8 within the remainder kernels' width, is
    read as its whole 8s in place plus a remainder kernel where the padded
    panel's rows would take one vector more (AVX-512: 17-20 and 33-36, also
    past whole panels, 180 = 144 + 36; AVX2: 9-11, 17-19), and stays one
    padded panel where both take as many (AVX-512 25-28 and 41-44: 24 or
    32, 40 or 48; 9-12: 8 or 16 lanes of one vector), where r % 8 is past
    the remainder kernels (AVX2 12 = 8 + 4), for a wide last panel (49),
    whole 8s, B prepacked or int8 kernels."""
    splits = {n: driver.rest_split(n, AVX512, "f32") for n in range(1, 200)}
    assert {n for n, s in splits.items() if s} == {n + base for base in (0, 48, 96, 144)
                                                  for n in (*range(17, 21), *range(33, 37))}
    assert set(splits.values()) == {0, AVX512.remainder_cols}
    assert {n for n in range(1, 100) if driver.rest_split(n, AVX2, "f32")} == {n + base for base in (0, 24, 48, 72)
                                                                      for n in (9, 10, 11, 17, 18, 19)}
    assert driver.rest_split(36, AVX512, "u8s8") == driver.rest_split(19, AVX2, "u8s8") == 0


@pytest.mark.parametrize("in_place", [False, True])
def test_a_ragged_rest_read_in_place_gives_the_padded_panels_bits_and_cuts_rows(monkeypatch, in_place):
    """128 x 384 by 384 x N with its ragged last columns split (N = 36 on
    AVX-512: 32 in place and 4 on a remainder kernel; 19 on AVX2): no task
    packs a padded panel, so its rows are cut into more tasks than the
    padded layout's (RAGGED_TASK_ROWS: 2), and every product, with
    each epilogue, is the padded layout's bit for bit, B read in place or
    packed (its columns strided)."""
    monkeypatch.setattr(driver.parallel, "NUM_THREADS", 2)
    isa = host_isa()
    n = next(n for n in (36, 19) if driver.rest_split(n, isa, "f32"))
    m, k = 128, 384
    a, b, start, products = epilogue_operands(monkeypatch, m, k, n, in_place)
    split = products()
    tasks = PackedProduct(pack_weights(a), n, None, None, False).tasks
    monkeypatch.setattr(driver, "rest_split", lambda n, isa, kind: 0)
    assert PackedProduct(pack_weights(a), n, None, None, False).tasks < tasks
    for got, expected in zip(split, products()):
        np.testing.assert_array_equal(got, expected)
    assert_close(split[1] - start, a, b)


@pytest.mark.parametrize("threads", [2, 3])
def test_a_product_cut_into_few_tasks_is_cut_into_a_multiple_of_the_threads(monkeypatch, threads):
    """Fewer tasks than the threads claim chunks are a multiple of the
    threads, where the row and column panels allow it: 32 x 192 by 192 x
    144 (a 12 x 12 plane's 1 x 1 convolution, 3 column panels on AVX-512)
    was 3 tasks, and on 2 threads one of them ran a third of the product
    while the other waited; a product of one task goes to every thread;
    many tasks, or a product under MIN_TASK_MACS, keep their count. The
    product's bits are the plain count's."""
    monkeypatch.setattr(driver.parallel, "NUM_THREADS", threads)
    isa = host_isa()
    many = threads * driver.parallel.CHUNKS_PER_THREAD
    for m, k, n in [(32, 192, 144), (192, 32, 144), (64, 192, 36), (24, 144, 576), (128, 64, 96), (512, 512, 196)]:
        tail = driver.tail_columns(isa, "f32")
        group = driver.remainder_rows(n, isa, "f32", tail, driver.rest_split(n, isa, "f32"))
        mt, nt, row_panels, col_panels = driver._split(1, m, n, k, isa, tail, group)
        wanted = max(1, min(many * driver.TASKS_PER_CHUNK, driver.work(m, n, k) // driver.MIN_TASK_MACS))
        plain = driver._cut(wanted, row_panels, col_panels, group)
        if plain[0] * plain[1] >= many:
            assert (mt, nt) == plain, (m, k, n)
        else:
            even = driver._cut(-(-plain[0] * plain[1] // threads) * threads, row_panels, col_panels, group)
            assert (mt, nt) == (even if even[0] * even[1] % threads == 0 else plain), (m, k, n)
            assert mt * nt >= plain[0] * plain[1]
    mt, nt = driver._split(1, 32, 144, 192, isa, driver.tail_columns(isa, "f32"), 0)[:2]
    assert mt * nt % threads == 0 and mt * nt > 1
    assert driver._split(1, 8, 8, 64, isa, 0, 0)[:2] == (1, 1)  # under MIN_TASK_MACS: one task
    rng = np.random.default_rng(threads)
    a, b = rng.standard_normal((32, 192)).astype(np.float32), rng.standard_normal((192, 144)).astype(np.float32)
    even = PackedProduct(pack_weights(a), 144).run(b, np.empty((32, 144), np.float32))
    monkeypatch.setattr(driver.parallel, "NUM_THREADS", 1)
    np.testing.assert_array_equal(even, PackedProduct(pack_weights(a), 144).run(b, np.empty((32, 144), np.float32)))
