"""The executor: feeds validation, intermediates, freeing, error naming."""
import numpy as np
import pytest

from codegen.cpu import lower_to_program
from ir import GraphBuilder
from runtime import ExecutionError, Executor
from runtime.program import Program, Step


def _program():
    b = GraphBuilder("g")
    x = b.input("x", [2, 3])
    y = b.Add(x, b.const(np.ones(3, np.float32)), name="add")
    z = b.Relu(y, name="relu")
    return lower_to_program(b.build(z))


def test_runs_and_returns_outputs_by_name():
    x = np.array([[-2, 0, 1], [3, -4, 5]], np.float32)
    out = Executor(_program(), check=True).run({"x": x})
    np.testing.assert_array_equal(out["relu"], np.maximum(x + 1, 0))


def test_fetches_any_named_intermediate():
    x = np.ones((2, 3), np.float32)
    out = Executor(_program()).run({"x": x}, fetch=["add", "relu"])
    np.testing.assert_array_equal(out["add"], x + 1)


def test_frees_values_after_their_last_use():
    program = _program()
    frees = program.last_uses()
    add_slot = program.slot("add")
    assert add_slot in frees[1] and add_slot not in frees[0]
    assert program.slot("relu") not in sum(frees, [])


@pytest.mark.parametrize("feeds, message", [
    ({}, "missing input 'x'"),
    ({"x": np.ones((2, 3), np.float32), "y": 1}, "unknown input"),
    ({"x": np.ones((2, 3), np.float64)}, "must have dtype float32"),
    ({"x": np.ones((3, 2), np.float32)}, r"must have shape \[2,3\]"),
])
def test_bad_feeds_are_named(feeds, message):
    with pytest.raises(ExecutionError, match=message):
        Executor(_program()).run(feeds)


def test_kernel_failure_names_the_node():
    program = Program(["x", "shape", "y"], [0], [2], [Step("Reshape", (0, 1), (2,), {"allowzero": 0}, "bad_reshape")],
                      {1: np.array([7], np.int64)})
    with pytest.raises(ExecutionError, match="bad_reshape.*cannot reshape"):
        Executor(program).run({"x": np.ones(3, np.float32)})


def test_fetched_values_are_never_overwritten_in_place():
    from compiler.pipeline import optimize
    b = GraphBuilder("g")
    x = b.input("x", [1, 2, 4, 4])
    c = b.Conv(x, b.const(np.random.default_rng(0).standard_normal((3, 2, 3, 3))), pads=[1, 1, 1, 1], name="conv")
    graph = optimize(b.build(b.Relu(b.Mul(c, c), name="out")))
    program = lower_to_program(graph)
    assert any(s.attrs.get("inplace", -1) >= 0 for s in program.steps)
    feeds = {"x": np.random.default_rng(1).standard_normal((1, 2, 4, 4)).astype(np.float32)}
    out = Executor(program).run(feeds, fetch=["conv", "out"])
    np.testing.assert_allclose(out["out"], np.maximum(out["conv"] * out["conv"], 0))
    assert not np.array_equal(out["out"], out["conv"])


def test_a_conv_with_an_activation_tail_keeps_its_output_fetchable():
    """Conv + bias, then HardSwish: FusedConv writes the Conv's own value
    (bias included) and the tail runs over it; fetching it gives the value
    node by node, and the tail no longer overwrites it."""
    from compiler.pipeline import optimize
    rng = np.random.default_rng(3)
    b = GraphBuilder("g")
    c = b.Conv(b.input("x", [1, 2, 5, 5]), b.const(rng.standard_normal((4, 2, 3, 3)).astype(np.float32)),
               b.const(rng.standard_normal(4).astype(np.float32)), pads=[1, 1, 1, 1], name="conv")
    graph = b.build(b.HardSwish(c, name="out"))
    feeds = {"x": rng.standard_normal((1, 2, 5, 5)).astype(np.float32)}
    plain = Executor(lower_to_program(graph)).run(feeds, fetch=["conv", "out"])
    program = lower_to_program(optimize(graph))
    assert [s.kernel for s in program.steps] == ["FusedConv", "FusedElementwise"]
    fused = Executor(program).run(feeds, fetch=["conv", "out"])
    np.testing.assert_array_equal(fused["conv"], plain["conv"])
    np.testing.assert_allclose(fused["out"], plain["out"], rtol=1e-6, atol=1e-6)


def test_observe_streams_watched_values_as_they_are_computed():
    seen = []
    x = np.array([[-1, 2, -3], [4, -5, 6]], np.float32)
    out = Executor(_program()).run({"x": x}, observe=lambda name, a: seen.append((name, a.copy())),
                                   watch=["x", "add"])
    assert [name for name, _ in seen] == ["x", "add"]
    np.testing.assert_array_equal(seen[1][1], x + 1)
    assert list(out) == ["relu"]


def _conv_program():
    """Convolution, in-place element-wise tail: values a lockstep run must not mix up between its runs."""
    from compiler.pipeline import optimize
    b = GraphBuilder("g")
    x = b.input("x", [1, 2, 6, 6])
    c = b.Conv(x, b.const(np.random.default_rng(0).standard_normal((3, 2, 3, 3))), pads=[1, 1, 1, 1], name="conv")
    return lower_to_program(optimize(b.build(b.Relu(b.Mul(c, c), name="out"))))


def test_run_each_observes_what_one_run_per_input_observes():
    program = _conv_program()
    watch = ["x", "conv", "out"]
    rng = np.random.default_rng(2)
    feeds = [{"x": rng.standard_normal((1, 2, 6, 6)).astype(np.float32)} for _ in range(3)]
    alone = []
    for feed in feeds:
        Executor(program).run(feed, fetch=[], observe=lambda name, a: alone.append((name, a.copy())), watch=watch)
    together = []
    Executor(program).run_each(feeds, lambda name, arrays: together.append((name, [a.copy() for a in arrays])),
                               watch)
    assert [name for name, _ in together] == watch  # each value once, for all runs, as soon as it is computed
    for index, (name, arrays) in enumerate(together):
        for run, array in enumerate(arrays):
            expected_name, expected = alone[run * len(watch) + index]
            assert expected_name == name
            np.testing.assert_array_equal(array, expected)


def test_run_each_names_the_node_and_checks_feeds():
    with pytest.raises(ExecutionError, match="must have shape"):
        Executor(_program()).run_each([{"x": np.ones((2, 3), np.float32)}, {"x": np.ones(3, np.float32)}],
                                      lambda name, arrays: None, [])


def test_peak_bytes_counts_the_values_alive_at_once():
    program = _program()  # x [2,3] -> add -> relu: x and add live together, then add and relu
    assert Executor(program).peak_bytes() == 2 * 6 * 4
    dynamic = Program(["x", "y"], [0], [1], [Step("Relu", (0,), (1,), {}, "relu")], {},
                      types=[((None, 3), "float32"), ((None, 3), "float32")])
    assert Executor(dynamic).peak_bytes() is None
