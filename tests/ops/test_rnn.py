"""RNN, GRU and LSTM against onnx's reference evaluator (the plain forms it
implements) and onnxruntime (sequence_lens, clip, activations, input_forget,
which the reference evaluator ignores)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler import backend
from compiler.errors import ModelImportError
from ir.verifier import verify
from runtime.errors import ExecutionError
from tests.helpers.node_models import (
    assert_matches_reference,
    assert_outputs_close,
    make_node_model,
    node_feeds,
    run_onnxruntime,
)

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
OUTPUTS = {"RNN": 2, "GRU": 2, "LSTM": 3}
DIRECTIONS = ["forward", "reverse", "bidirectional"]
TOL = dict(rtol=1e-4, atol=1e-5)


def _inputs(op: str, direction: str, layout: int, seq=5, batch=3, size=4, hidden=6, seed=0, *,
            bias=True, initial=True, peepholes=True, lens=None, dtype=np.float32) -> list:
    """X, W, R, B, sequence_lens, initial_h (, initial_c, P) with omitted ones None."""
    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    gates = GATES[op]

    def rand(*shape, scale=0.5):
        return (rng.standard_normal(shape) * scale).astype(dtype)

    x = rand(seq, batch, size, scale=1.0) if layout == 0 else rand(batch, seq, size, scale=1.0)
    state = (dirs, batch, hidden) if layout == 0 else (batch, dirs, hidden)
    inputs = [x, rand(dirs, gates * hidden, size), rand(dirs, gates * hidden, hidden),
              rand(dirs, 2 * gates * hidden) if bias else None,
              None if lens is None else np.array(lens, np.int32),
              rand(*state) if initial else None]
    if op == "LSTM":
        inputs += [rand(*state) if initial else None, rand(dirs, 3 * hidden) if peepholes else None]
    while inputs and inputs[-1] is None:
        inputs.pop()
    return inputs


def _onnxruntime(op: str, inputs, num_outputs: int, opset: int = 22, **attrs) -> list:
    """onnxruntime's outputs; it runs only layout 0, so layout 1 is transposed around it."""
    if attrs.get("layout") == 1:
        swapped = [None if x is None or i not in (0, 5, 6) else x.swapaxes(0, 1) for i, x in enumerate(inputs)]
        inputs = [x if s is None else s for x, s in zip(inputs, swapped)]
        y, *states = _onnxruntime(op, inputs, num_outputs, opset, **{**attrs, "layout": 0})
        return [y.transpose(2, 0, 1, 3), *(s.swapaxes(0, 1) for s in states)]
    return run_onnxruntime(make_node_model(op, inputs, num_outputs, opset, **attrs), node_feeds(inputs))


def _tessera(op: str, inputs, num_outputs: int, opset: int = 22, consts=(), **attrs) -> tuple:
    model = make_node_model(op, inputs, num_outputs, opset, consts, **attrs)
    feeds = {f"in{i}": x for i, x in enumerate(inputs) if x is not None and i not in consts}
    rep = backend.prepare(model, check=True, strict_types=True)
    verify(rep.graph)
    return rep.run(feeds)


def assert_matches_onnxruntime(op: str, inputs, opset: int = 22, **attrs) -> tuple:
    count = OUTPUTS[op]
    ours = _tessera(op, inputs, count, opset, **attrs)
    theirs = _onnxruntime(op, inputs, count, opset, **attrs)
    assert_outputs_close(ours, theirs, op, **TOL)
    return ours


@pytest.mark.parametrize("op", sorted(GATES))
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("optional", ["all", "none", "bias_only"])
def test_matches_reference_and_onnxruntime(op, direction, layout, optional):
    inputs = _inputs(op, direction, layout, bias=optional != "none", initial=optional == "all",
                     peepholes=optional == "all")
    attrs = dict(hidden_size=6, direction=direction, layout=layout)
    assert_matches_reference(op, inputs, num_outputs=OUTPUTS[op], opset=22, **attrs, **TOL)
    assert_matches_onnxruntime(op, inputs, **attrs)


@pytest.mark.parametrize("op", sorted(GATES))
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("layout", [0, 1])
def test_sequence_lens_match_onnxruntime(op, direction, layout):
    """Steps past an entry's length leave Y zero and its state unchanged; a
    reverse pass starts at the entry's last step; length 0 gives zero states."""
    inputs = _inputs(op, direction, layout, seq=5, batch=4, lens=[5, 2, 0, 3])
    assert_matches_onnxruntime(op, inputs, hidden_size=6, direction=direction, layout=layout)


@pytest.mark.parametrize("op", sorted(GATES))
def test_constant_sequence_lens(op):
    inputs = _inputs(op, "bidirectional", 0, seq=4, batch=2, lens=[3, 4])
    ours = _tessera(op, inputs, OUTPUTS[op], consts=(4,), hidden_size=6, direction="bidirectional")
    theirs = _onnxruntime(op, inputs, OUTPUTS[op], hidden_size=6, direction="bidirectional")
    for got, want in zip(ours, theirs):
        np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("op", sorted(GATES))
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_clip_matches_onnxruntime(op, direction):
    inputs = _inputs(op, direction, 0, seed=3)
    inputs[0] = inputs[0] * 4
    assert_matches_onnxruntime(op, inputs, hidden_size=6, direction=direction, clip=0.7)


ACTIVATION_SETS = {
    "RNN": [["Relu"], ["Sigmoid"], ["Affine"], ["LeakyRelu"], ["HardSigmoid"], ["Elu"], ["Softsign"],
            ["Softplus"], ["ScaledTanh"], ["ThresholdedRelu"]],
    "GRU": [["HardSigmoid", "Softsign"], ["Sigmoid", "Relu"], ["Sigmoid", "Elu"], ["HardSigmoid", "LeakyRelu"]],
    "LSTM": [["HardSigmoid", "Tanh", "Softsign"], ["Sigmoid", "Relu", "Affine"], ["Sigmoid", "ScaledTanh", "Elu"]],
}


@pytest.mark.parametrize("op,names", [(op, names) for op, sets in ACTIVATION_SETS.items() for names in sets])
def test_activations_with_parameters_match_onnxruntime(op, names):
    """alpha/beta are consumed in order by the activations that take them.
    (Gate functions stay bounded: unbounded ones make the state explode.)"""
    inputs = _inputs(op, "bidirectional", 0, seed=5)
    acts = names + names
    assert_matches_onnxruntime(op, inputs, hidden_size=6, direction="bidirectional", activations=acts,
                               activation_alpha=[0.3, 0.6, 0.2, 0.4, 0.5, 0.7],
                               activation_beta=[0.1, 0.5, 0.2, 0.3, 0.4, 0.6])


@pytest.mark.parametrize("names", [["LeakyRelu"], ["HardSigmoid"], ["Elu"], ["Relu"], ["Softplus"]])
def test_activation_defaults_match_onnxruntime(names):
    inputs = _inputs("RNN", "forward", 0, seed=7)
    assert_matches_onnxruntime("RNN", inputs, hidden_size=6, activations=names)


@pytest.mark.parametrize("name,alpha,beta", [("Affine", 1.0, 0.0), ("ThresholdedRelu", 1.0, None),
                                             ("ScaledTanh", 1.0, 1.0)])
def test_missing_parameters_take_the_onnx_operator_defaults(name, alpha, beta):
    """(onnxruntime uses 0 for these three instead.)"""
    x, w, r = _inputs("RNN", "forward", 0, bias=False, initial=False)
    r = np.zeros_like(r)
    pre = x @ w[0].T
    want = {"Affine": alpha * pre, "ThresholdedRelu": np.where(pre > alpha, pre, 0),
            "ScaledTanh": alpha * np.tanh((beta or 0) * pre)}[name]
    got = _tessera("RNN", [x, w, r], 2, activations=[name])
    np.testing.assert_allclose(got[0][:, 0], want, **TOL)


def test_activation_names_are_case_insensitive():
    inputs = _inputs("GRU", "forward", 0)
    a = _tessera("GRU", inputs, 2, activations=["sigmoid", "TANH"])
    b = _tessera("GRU", inputs, 2)
    np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_lstm_input_forget_matches_onnxruntime(direction):
    inputs = _inputs("LSTM", direction, 0, seed=11)
    assert_matches_onnxruntime("LSTM", inputs, hidden_size=6, direction=direction, input_forget=1)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("layout", [0, 1])
def test_gru_linear_before_reset(direction, layout):
    inputs = _inputs("GRU", direction, layout, seed=13)
    attrs = dict(hidden_size=6, direction=direction, layout=layout, linear_before_reset=1)
    assert_matches_reference("GRU", inputs, num_outputs=2, opset=22, **attrs, **TOL)
    assert_matches_onnxruntime("GRU", inputs, **attrs)


@pytest.mark.parametrize("op", sorted(GATES))
def test_hidden_size_may_be_omitted(op):
    inputs = _inputs(op, "forward", 0)
    got = assert_matches_reference(op, inputs, num_outputs=OUTPUTS[op], opset=22, **TOL)
    assert got[1].shape == (1, 3, 6)


@pytest.mark.parametrize("op", sorted(GATES))
def test_only_the_last_state_is_wanted(op):
    """Outputs named "" are not wanted; the others keep their places."""
    inputs = _inputs(op, "reverse", 0)
    model = make_node_model(op, inputs, OUTPUTS[op], 22, hidden_size=6, direction="reverse")
    model.graph.node[0].output[0] = ""
    del model.graph.output[0]
    feeds = {f"in{i}": x for i, x in enumerate(inputs) if x is not None}
    ours = backend.prepare(model, check=True, strict_types=True).run(feeds)
    full = _tessera(op, inputs, OUTPUTS[op], hidden_size=6, direction="reverse")
    assert len(ours) == OUTPUTS[op] - 1
    for got, want in zip(ours, full[1:]):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("op", sorted(GATES))
def test_opset_7_form(op):
    inputs = _inputs(op, "bidirectional", 0)
    assert_matches_reference(op, inputs, num_outputs=OUTPUTS[op], opset=7, hidden_size=6,
                             direction="bidirectional", **TOL)


@pytest.mark.parametrize("op", sorted(GATES))
def test_float64(op):
    inputs = _inputs(op, "bidirectional", 1, dtype=np.float64)
    got = assert_matches_reference(op, inputs, num_outputs=OUTPUTS[op], opset=22, hidden_size=6,
                                   direction="bidirectional", layout=1, rtol=1e-10, atol=1e-12)
    assert got[0].dtype == np.float64


@pytest.mark.parametrize("op", sorted(GATES))
def test_constant_weights_fold(op):
    """A node whose inputs are all constants is folded through the kernel."""
    inputs = _inputs(op, "forward", 0)
    model = make_node_model(op, inputs, OUTPUTS[op], 22, consts=tuple(range(len(inputs))), hidden_size=6)
    graph = backend.prepare(model, check=True).graph
    assert not graph.nodes
    want = _tessera(op, inputs, OUTPUTS[op], hidden_size=6)
    np.testing.assert_array_equal(graph.outputs[0].const, want[0])


@settings(max_examples=25, deadline=None)
@given(op=st.sampled_from(sorted(GATES)), direction=st.sampled_from(DIRECTIONS), layout=st.integers(0, 1),
       seq=st.integers(1, 4), batch=st.integers(1, 3), size=st.integers(1, 3), hidden=st.integers(1, 5),
       seed=st.integers(0, 99), data=st.data())
def test_random_sizes_match_onnxruntime(op, direction, layout, seq, batch, size, hidden, seed, data):
    lens = data.draw(st.lists(st.integers(0, seq), min_size=batch, max_size=batch) | st.none())
    inputs = _inputs(op, direction, layout, seq, batch, size, hidden, seed, lens=lens)
    assert_matches_onnxruntime(op, inputs, hidden_size=hidden, direction=direction, layout=layout)


# ------------------------------------------------------------------ errors
def _import(op: str, inputs, **attrs):
    model = make_node_model(op, inputs, OUTPUTS[op], 22, **attrs)
    return backend.prepare(model, check=True)


@pytest.mark.parametrize("attrs,message", [
    (dict(direction="sideways"), "direction='sideways'"),
    (dict(hidden_size=5), "hidden_size=5"),
    (dict(layout=2), "layout=2"),
    (dict(activations=["Tanh", "Tanh"]), "1 activation(s) per direction"),
    (dict(activations=["Gelu"]), "unknown activation 'Gelu'"),
    (dict(clip=-1.0), "clip=-1.0 must be positive"),
])
def test_bad_attributes_are_import_errors(attrs, message):
    with pytest.raises(ModelImportError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _import("RNN", _inputs("RNN", "forward", 0), **attrs)


def test_bad_weight_shape_is_an_import_error():
    inputs = _inputs("LSTM", "forward", 0)
    inputs[1] = inputs[1][:, :-1]
    with pytest.raises(ModelImportError, match=r"W \(input 1\) must have shape \[1,24,4\]"):
        _import("LSTM", inputs)


def test_bidirectional_needs_two_directions_of_weights():
    inputs = _inputs("GRU", "forward", 0)
    with pytest.raises(ModelImportError, match=r"W \(input 1\) must have shape \[2,"):
        _import("GRU", inputs, direction="bidirectional")


def test_sequence_lens_out_of_range_is_a_runtime_error():
    inputs = _inputs("RNN", "forward", 0, lens=[5, 6, 1])
    rep = _import("RNN", inputs, hidden_size=6)
    with pytest.raises(ExecutionError, match=r"sequence_lens \[5, 6, 1\] must lie in \[0, 5\]"):
        rep.run({f"in{i}": x for i, x in enumerate(inputs) if x is not None})


def test_constant_sequence_lens_out_of_range_is_an_import_error():
    inputs = _inputs("RNN", "forward", 0, lens=[5, -1, 1])
    model = make_node_model("RNN", inputs, 2, 22, consts=(4,), hidden_size=6)
    with pytest.raises(ModelImportError, match=r"sequence_lens \[5, -1, 1\] must lie in \[0, 5\]"):
        backend.prepare(model)


def test_integer_input_is_an_import_error():
    inputs = _inputs("RNN", "forward", 0)
    inputs[0] = inputs[0].astype(np.int64)
    with pytest.raises(ModelImportError, match=r"X \(input 0\) must be a float tensor"):
        _import("RNN", inputs)


# ---------------------------------------------------------------- gates are the standalone activations
SPECIAL = np.array([0.0, 1.0, -1.0, 0.5, -2.5, 3.0, 7.5, -20.0, 20.0, 40.0, -40.0, 88.0, -88.0, 700.0,
                    -700.0, 1e-30, -1e-30, 1e300, -1e300, np.inf, -np.inf, np.nan])
"""Gate pre-activations to try (no -0.0: x·W + H·R adds +0.0 to it)."""
# RNN activation -> (standalone op, its attributes from the gate's alpha / beta)
STANDALONE = {
    "Relu": ("Relu", {}), "Tanh": ("Tanh", {}), "Sigmoid": ("Sigmoid", {}),
    "LeakyRelu": ("LeakyRelu", {"alpha": 0.3}), "ThresholdedRelu": ("ThresholdedRelu", {"alpha": 0.7}),
    "HardSigmoid": ("HardSigmoid", {"alpha": 0.25, "beta": 0.4}), "Elu": ("Elu", {"alpha": 1.5}),
    "Softsign": ("Softsign", {}), "Softplus": ("Softplus", {}),
}


def _gate_values() -> np.ndarray:
    rng = np.random.default_rng(3)
    return np.concatenate([SPECIAL, rng.standard_normal(200) * rng.choice([0.01, 1.0, 30.0], 200)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", sorted(STANDALONE))
def test_an_rnn_gate_gives_the_standalone_activations_bits(activation, dtype):
    """A one-unit RNN with W = 1, R = 0, no bias computes H = f(x) per batch
    entry, in x's dtype like the standalone op: same bits."""
    from ir.registry import with_defaults
    from runtime.kernels import run_kernel

    op, params = STANDALONE[activation]
    with np.errstate(all="ignore"):
        x = _gate_values().astype(dtype)
    attrs = with_defaults("RNN", {"activations": [activation], "activation_alpha": list(params.values())[:1],
                                  "activation_beta": list(params.values())[1:], "hidden_size": 1})
    one, zero = np.ones((1, 1, 1), dtype), np.zeros((1, 1, 1), dtype)
    y = run_kernel("RNN", [x.reshape(1, -1, 1), one, zero], attrs)[0].reshape(-1)
    with np.errstate(all="ignore"):
        want = run_kernel(op, [x], with_defaults(op, params))[0]
    assert y.dtype == want.dtype == dtype
    same = (y == want) & (np.signbit(y) == np.signbit(want)) | (np.isnan(y) & np.isnan(want))
    assert same.all(), f"{activation}: {x[~same][:4]} give {y[~same][:4]}, standalone {want[~same][:4]}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lstm_gates_give_the_standalone_sigmoid_and_tanh_bits(dtype):
    """An LSTM whose input and output gates saturate at sigmoid(100) = 1 and
    whose cell gate reads x, with no initial state: H = h(g(x)), which is
    tanh(tanh(x)) with the default activations and tanh(sigmoid(x)) with
    [Sigmoid, Sigmoid, Tanh], as the standalone kernels compute them."""
    from ir.registry import with_defaults
    from runtime.kernels import run_kernel

    with np.errstate(all="ignore"):
        x = _gate_values().astype(dtype)
    x = x[np.isfinite(x)]
    w = np.array([0.0, 0.0, 0.0, 1.0], dtype).reshape(1, 4, 1)  # gates i, o, f, c
    b = np.array([100.0, 100.0, 0.0, 0.0] + [0.0] * 4, dtype).reshape(1, 8)
    feeds = [x.reshape(1, -1, 1), w, np.zeros((1, 4, 1), dtype), b]
    with np.errstate(all="ignore"):
        tanh = lambda v: run_kernel("Tanh", [v], {})[0]  # noqa: E731
        sigmoid = lambda v: run_kernel("Sigmoid", [v], {})[0]  # noqa: E731
        y = run_kernel("LSTM", feeds, with_defaults("LSTM", {"hidden_size": 1}))[0].reshape(-1)
        np.testing.assert_array_equal(y, tanh(tanh(x)))
        attrs = with_defaults("LSTM", {"hidden_size": 1, "activations": ["Sigmoid", "Sigmoid", "Tanh"]})
        y = run_kernel("LSTM", feeds, attrs)[0].reshape(-1)
        np.testing.assert_array_equal(y, tanh(sigmoid(x)))
