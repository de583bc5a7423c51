"""The schedule's arena (runtime.schedule.arena): values alive together in
disjoint bytes, and a light writer's output (a depthwise convolution's)
kept off lines a spread read (a GEMM's B) has just left in both cores'
caches, where a same-sized value alive with it can take that place."""
import numpy as np
import pytest

from compiler.zoo.builder import OnnxBuilder
from runtime.executor import Executor
from runtime.schedule import arena
from runtime.schedule import builder as schedule_builder
from runtime.schedule.arena import ALIGN, Buffer
from tests.helpers.small_convs import feeds, frozen


def inverted_blocks(blocks: int, wide: int = 4096, narrow: int = 512) -> list[Buffer]:
    """The arena buffers of ``blocks`` MobileNetV2-style blocks as the
    schedule records them: at 3i the expansion (a GEMM reading y[i-1] on
    every thread) writes e[i]; at 3i+1 the depthwise reads e[i] and writes
    d[i] (light); at 3i+2 the projection reads d[i] on every thread and
    writes y[i], which the next expansion reads."""
    buffers = []
    for i in range(blocks):
        at = 3 * i
        buffers.append(Buffer("arena", wide, at, at + 1))                                    # e[i]
        buffers.append(Buffer("arena", wide, at + 1, at + 2, spread_at=at + 2, light=True))  # d[i]
        buffers.append(Buffer("arena", narrow, at + 2, at + 3, spread_at=at + 3))            # y[i]
    return buffers


def assert_disjoint_while_alive(buffers, size):
    assert all(b.offset % ALIGN == 0 and b.offset + b.nbytes <= size for b in buffers)
    for i, a in enumerate(buffers):
        for b in buffers[i + 1:]:
            if a.first <= b.last and b.first <= a.last:
                assert a.offset + a.nbytes <= b.offset or b.offset + b.nbytes <= a.offset


def test_the_arena_gives_values_alive_together_disjoint_bytes():
    spans = [(0, 2, 1000), (1, 3, 4000), (3, 5, 3000), (4, 6, 10), (0, 6, 64), (2, 2, 5000)]
    buffers = [Buffer("arena", size, first, last) for first, last, size in spans]
    size = arena.plan(buffers)
    assert_disjoint_while_alive(buffers, size)
    assert size < sum(b.nbytes for b in buffers)  # buffers never alive together share bytes


def spread_below(buffer, buffers):
    return arena._History(buffers).spread_below(buffer, buffer.offset, buffer)


def test_first_fit_alone_puts_each_depthwise_output_on_lines_the_projection_read_on_both_cores():
    buffers = inverted_blocks(4)
    first_fit(buffers)
    light = [b for b in buffers if b.light]
    assert [spread_below(b, buffers) for b in light] == [False, True, True, True]


def test_each_depthwise_output_takes_the_place_of_the_expansion_before_it_and_the_arena_keeps_its_size():
    buffers = inverted_blocks(5)
    size = arena.plan(buffers)
    assert_disjoint_while_alive(buffers, size)
    assert not any(spread_below(b, buffers) for b in buffers if b.light)
    light = [b for b in buffers if b.light]
    assert len({b.offset for b in light}) == 2  # the two places alternate
    assert first_fit(inverted_blocks(5)) == size


def first_fit(buffers):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(arena, "_spare_light_writers", lambda placed: None)
        return arena.plan(buffers)


def test_a_light_output_with_no_same_sized_value_alive_with_it_stays_where_first_fit_put_it():
    def strided():  # every depthwise output smaller than its input: no expansion to trade places with
        buffers = inverted_blocks(3)
        for b in buffers:
            if b.light:
                b.nbytes -= ALIGN
        return buffers

    buffers, reference = strided(), strided()
    size = arena.plan(buffers)
    assert first_fit(reference) == size
    assert [b.offset for b in buffers] == [b.offset for b in reference]
    assert any(spread_below(b, buffers) for b in buffers if b.light)


def test_a_swap_never_moves_another_light_output_onto_spread_lines():
    buffers = inverted_blocks(3)
    for b in buffers:
        if b.nbytes == 4096:
            b.light = True  # expansions as light as the depthwise: neither may give way to the other
    size = arena.plan(buffers)
    assert_disjoint_while_alive(buffers, size)
    reference = inverted_blocks(3)
    for b in reference:
        if b.nbytes == 4096:
            b.light = True
    first_fit(reference)
    worse = [spread_below(b, buffers) and not spread_below(r, reference)
             for b, r in zip(buffers, reference) if b.light]
    assert not any(worse)


def mobilenet_stage(blocks=3):
    """MobileNetV2's 7 x 7 stage in small: 1x1 expansion, 3x3 depthwise and
    1x1 projection with a residual, ``blocks`` times."""
    b = OnnxBuilder("stage", seed=3)
    x = b.input("x", [1, 32, 7, 7])
    for _ in range(blocks):
        y = b.node("Relu", [b.conv(x, 32, 192, 1)])
        y = b.node("Relu", [b.conv(y, 192, 192, 3, groups=192)])
        x = b.node("Add", [b.conv(y, 192, 32, 1), x])
    return b.model([x])


def test_a_scheduled_stage_marks_depthwise_outputs_light_and_products_spread_and_keeps_its_bits(monkeypatch):
    planned = []
    spare = arena._spare_light_writers

    def recorded(placed):
        spare(placed)
        planned.append(list(placed))

    monkeypatch.setattr(arena, "_spare_light_writers", recorded)
    program = frozen(mobilenet_stage())
    inputs = feeds(program)
    got = Executor(program).run(inputs)
    (placed,) = planned
    light = sorted((b for b in placed if b.light), key=lambda b: b.first)
    assert len(light) == 3 and all(b.spread_at == b.last for b in light)  # each read by its projection
    assert [spread_below(b, placed) for b in light] == [False, False, False]
    with monkeypatch.context() as patch:
        patch.setattr(schedule_builder, "ENABLED", False)
        expected = Executor(program).run(inputs)
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value)


def brute_spread_below(buffer, offset, placed, moving):
    """The question asked the slow way: every buffer that ended before
    ``buffer`` began and overlaps its bytes there, the latest first."""
    end = offset + buffer.nbytes
    before = sorted((o for o in placed if o is not buffer and o is not moving and o.last < buffer.first
                     and o.offset < end and offset < o.offset + o.nbytes), key=lambda o: -o.last)
    covered = []
    for other in before:
        start, stop = max(offset, other.offset), min(end, other.offset + other.nbytes)
        if other.spread_at == other.last and arena._uncovered(start, stop, covered):
            return True
        covered.append((start, stop))
    return False


def test_the_plans_history_answers_as_a_pass_over_every_buffer_would():
    rng = np.random.default_rng(7)
    buffers = []
    for _ in range(120):
        first = int(rng.integers(0, 60))
        last = first + int(rng.integers(0, 6))
        buffers.append(Buffer("arena", int(rng.choice([64, 128, 192, 4096])), first, last,
                              spread_at=last if rng.random() < 0.5 else -1, light=bool(rng.random() < 0.3)))
    size = arena.plan(buffers)
    assert_disjoint_while_alive(buffers, size)
    history = arena._History(buffers)
    for buffer in buffers:
        assert set(map(id, history.live(buffer))) == {
            id(o) for o in buffers if o.first <= buffer.last and buffer.first <= o.last}
        for other in buffers[:40]:
            for moving in (buffer, other):
                assert history.spread_below(buffer, other.offset, moving) == brute_spread_below(
                    buffer, other.offset, buffers, moving)
