"""A 1x1 expansion and the 3x3 depthwise convolution reading it, fused by
the executor: bitwise the two steps' results, and fused only where the
expanded tensor is needed by nothing else."""
from __future__ import annotations

import numpy as np
import pytest

from runtime import Executor
from runtime.kernels import nn_expand
from runtime.kernels.nn_expand import ExpandDepthwise
from runtime.program import NO_SLOT, Program, Step
from tests.helpers.conv import conv_attrs

RNG = np.random.default_rng(11)


def _pair_program(chans=8, wide=24, stride=2, first_op="FusedConv", second_op="FusedConv", biases=True,
                  extra_reader=False):
    """x -> 1x1 (chans -> wide) -> 3x3 depthwise (stride) -> y; slots:
    x, w1, b1, mid, w2, b2, y (and z, a second reader of mid)."""
    w1 = RNG.standard_normal((wide, chans, 1, 1)).astype(np.float32)
    w2 = RNG.standard_normal((wide, 1, 3, 3)).astype(np.float32)
    b1, b2 = (RNG.standard_normal(wide).astype(np.float32) for _ in range(2))
    slots = ["x", "w1", "b1", "mid", "w2", "b2", "y", "z"]
    constants = {1: w1, 4: w2}
    if biases:
        constants.update({2: b1, 5: b2})

    def inputs(op, x, w, b):
        if op == "FusedConv":
            return (x, w, b if biases else NO_SLOT, NO_SLOT)
        return (x, w, b) if biases else (x, w)

    def clamp(op):
        return (0.0, 6.0) if op == "FusedConv" else None

    steps = [Step(first_op, inputs(first_op, 0, 1, 2), (3,), conv_attrs(1, 1, 1, clamp(first_op)), "expand"),
             Step(second_op, inputs(second_op, 3, 4, 5), (6,), conv_attrs(3, wide, stride, clamp(second_op)),
                  "depthwise")]
    outputs = [6]
    if extra_reader:
        steps.append(Step("Relu", (3,), (7,), {}, "other"))
        outputs.append(7)
    return Program(slots, [0], outputs, steps, constants)


@pytest.fixture(autouse=True)
def small_threshold(monkeypatch):
    monkeypatch.setattr(nn_expand, "FUSE_BYTES", 1)  # fuse the small test shapes too
    monkeypatch.setattr(nn_expand, "BLOCK_BYTES", 8 * 4 * 14 * 14)  # several blocks of 8 channels


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("first_op,second_op", [("FusedConv", "FusedConv"), ("Conv", "FusedConv"),
                                                ("FusedConv", "Conv"), ("Conv", "Conv")])
@pytest.mark.parametrize("biases", [True, False])
@pytest.mark.parametrize("shape", [(1, 8, 14, 14), (2, 8, 9, 10)])
def test_fused_pair_is_bitwise_the_two_steps(stride, first_op, second_op, biases, shape):
    program = _pair_program(chans=shape[1], wide=20, stride=stride, first_op=first_op, second_op=second_op,
                            biases=biases)
    executor = Executor(program)
    assert 0 in executor._pairs and isinstance(executor._pairs[0][0], ExpandDepthwise)
    x = RNG.standard_normal(shape).astype(np.float32)
    fused = executor.run({"x": x})["y"]
    separate = executor.run({"x": x}, fetch=["y", "mid"])  # fetching the middle value unfuses the pair
    np.testing.assert_array_equal(fused, separate["y"])
    assert [p[0] for p in executor._plan((6,))] == [executor._pairs[0][0]]
    assert executor._pairs[0][0].plans[shape] is not None  # the fused kernel ran, not its fallback


def test_odd_widths_at_stride_two_fuse_and_small_expansions_run_the_two_steps(monkeypatch):
    executor = Executor(_pair_program(stride=2))
    x = RNG.standard_normal((1, 8, 6, 7)).astype(np.float32)
    got = executor.run({"x": x})["y"]
    assert got.shape[2:] == (3, 4)
    assert executor._pairs[0][0].plans[x.shape] is not None
    np.testing.assert_array_equal(got, executor.run({"x": x}, fetch=["y", "mid"])["y"])
    monkeypatch.setattr(nn_expand, "FUSE_BYTES", 1 << 30)
    fresh = Executor(_pair_program(stride=1))
    fresh.run({"x": RNG.standard_normal((1, 8, 6, 6)).astype(np.float32)})
    assert fresh._pairs[0][0].plans[(1, 8, 6, 6)] is None


def test_a_middle_value_read_elsewhere_or_watched_is_never_fused():
    executor = Executor(_pair_program(extra_reader=True))
    assert executor._pairs == {}
    executor = Executor(_pair_program())
    seen = []
    x = RNG.standard_normal((1, 8, 8, 8)).astype(np.float32)
    executor.run({"x": x}, observe=lambda name, value: seen.append(name), watch=["mid"])
    assert seen == ["mid"]


def test_weights_and_bias_rewritten_in_place_are_seen_by_the_fused_step():
    program = _pair_program(stride=1)
    executor = Executor(program)
    x = RNG.standard_normal((1, 8, 8, 8)).astype(np.float32)
    before = executor.run({"x": x})["y"]
    program.constants[1] *= 0.5  # the expansion's weights
    program.constants[2] += 1.0  # and its bias
    after = executor.run({"x": x})["y"]
    assert not np.array_equal(before, after)
    np.testing.assert_array_equal(after, executor.run({"x": x}, fetch=["y", "mid"])["y"])
