"""Lowering of Fused groups to FusedElementwise and FusedConv steps: the
steps produced, results equal to the same body run unfused, the anchored
in-place tail, and the fallback to node-by-node inlining for what the
expressions cannot say."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codegen import lower_to_program
from codegen.cpu_fused import OPCODE_TABLE, _Emitter, plan_fused_group
from ir import GraphBuilder
from ir.graph import Graph
from ir.registry import Pattern, with_defaults
from runtime import Executor
from runtime.kernels.fused import MAX_INPUTS, OPCODES
from runtime.program import NO_SLOT

pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")

EXACT_UNARY = {  # IR op -> attributes; the fused kernel computes these bit for bit like the unfused ones
    "Relu": {}, "Neg": {}, "Abs": {}, "Sqrt": {}, "Reciprocal": {}, "Floor": {}, "Ceil": {}, "Erf": {},
    "Softplus": {}, "HardSwish": {}, "Gelu": {"approximate": "none"}, "LeakyRelu": {"alpha": 0.2},
    "Elu": {"alpha": 0.5}, "Selu": {}, "HardSigmoid": {"alpha": 0.25, "beta": 0.4},
}
EXACT_BINARY = ("Add", "Sub", "Mul", "Div", "Max", "Min")


def wrap(body: Graph, anchor: str = "") -> Graph:
    """A graph holding ``body`` as its one Fused node, inputs named alike."""
    b = GraphBuilder("outer")
    inputs = [b.input(v.name, v.type.shape, v.type.dtype) for v in body.inputs]
    pattern = Pattern.OUT_ELEMWISE_FUSABLE if anchor else Pattern.BROADCAST
    return b.build(b.op("Fused", *inputs, body=body, pattern=int(pattern), anchor=anchor, name="group"))


def feeds_for(graph: Graph, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    feeds = {}
    for value in graph.inputs:
        x = np.asarray(rng.standard_normal(value.type.shape) * 3, np.float32)
        x[rng.random(x.shape) < 0.1] = rng.choice(np.array([0.0, -0.0, np.inf, -np.inf, np.nan], np.float32))
        feeds[value.name] = x
    return feeds


def run_both(body: Graph, anchor: str = "", seed: int = 0):
    """(fused program, its outputs, the unfused outputs) on the same feeds,
    checking that the feeds were left untouched."""
    program = lower_to_program(wrap(body, anchor))
    feeds = feeds_for(body, seed)
    saved = {k: v.copy() for k, v in feeds.items()}
    fused = Executor(program, check=True).run(feeds)
    unfused = Executor(lower_to_program(body), check=True).run(feeds)
    for name, value in feeds.items():
        np.testing.assert_array_equal(value, saved[name], err_msg=f"input {name} was overwritten")
    return program, next(iter(fused.values())), next(iter(unfused.values()))


def assert_same_bits(actual, expected):
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    same = (actual.view(np.uint32) == expected.view(np.uint32)) | (np.isnan(actual) & np.isnan(expected))
    assert same.all(), f"{actual[~same][:5]} vs {expected[~same][:5]}"


def kernels(program) -> list[str]:
    return [step.kernel for step in program.steps]


# ---------------------------------------------------------------- random groups

@st.composite
def groups(draw):
    """A random DAG of exact element-wise ops over broadcastable inputs and constants."""
    rank = draw(st.integers(1, 4))
    shape = draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank))
    b = GraphBuilder("body")
    pool = []
    for i in range(draw(st.integers(1, 3))):
        keep = draw(st.lists(st.booleans(), min_size=rank, max_size=rank))
        dims = [d if k or i == 0 else 1 for d, k in zip(shape, keep)][draw(st.integers(0, rank - 1)) if i else 0:]
        pool.append(b.input(f"x{i}", dims))
    if draw(st.booleans()):
        pool.append(b.const(np.float32(draw(st.sampled_from([0.5, -2.0, 0.0, -0.0, 3.0])))))
    if draw(st.booleans()):
        pool.append(b.const(np.linspace(-1, 1, shape[-1], dtype=np.float32)))
    for _ in range(draw(st.integers(1, 7))):
        if draw(st.booleans()):
            op = draw(st.sampled_from(sorted(EXACT_UNARY)))
            pool.append(b.op(op, draw(st.sampled_from(pool)), **EXACT_UNARY[op]))
        else:
            op = draw(st.sampled_from(EXACT_BINARY))
            pool.append(b.op(op, draw(st.sampled_from(pool)), draw(st.sampled_from(pool))))
    if pool[-1].producer is None:
        pool.append(b.Relu(pool[-1]))
    return b.build(pool[-1])


@settings(max_examples=60, deadline=None)
@given(groups(), st.integers(0, 100))
def test_random_groups_match_the_unfused_body_bitwise(body, seed):
    program, fused, unfused = run_both(body, seed=seed)
    assert kernels(program) == ["FusedElementwise"]
    assert_same_bits(fused, unfused)


@pytest.mark.parametrize("op, attrs", [
    ("Exp", {}), ("Log", {}), ("Tanh", {}), ("Sigmoid", {}), ("Sin", {}), ("Cos", {}),
    ("Gelu", {"approximate": "tanh"}),
])
def test_other_ops_match_within_float32_rounding(op, attrs):
    b = GraphBuilder("body")
    x = b.input("x", [3, 40])
    y = b.op(op, b.Mul(x, b.const(np.float32(0.5))), **attrs)
    program, fused, unfused = run_both(b.build(b.Add(y, x)))
    assert kernels(program) == ["FusedElementwise"]
    np.testing.assert_allclose(fused, unfused, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("op", sorted(OPCODE_TABLE))
def test_every_table_entry_emits_known_opcodes(op):
    b = GraphBuilder("body")
    x = b.input("x", [4])
    arity = 2 if op in ("Add", "Sub", "Mul", "Div", "Pow", "PRelu") else 1
    node = b.graph.add_node(op, [x] * arity, with_defaults(op, {}))
    emitter = _Emitter(1)
    OPCODE_TABLE[op].translate(emitter, node, [0] * arity)
    for opcode, _, sources, params in emitter.code:
        assert len(sources) == OPCODES[opcode].sources and len(params) == OPCODES[opcode].params


# ---------------------------------------------------------------- specific ops

@pytest.mark.parametrize("bounds", [(0.0, 6.0), (-0.0, 6.0), (0.0, None), (-0.0, None), (None, 0.0),
                                    (None, -0.0), (None, None)])
def test_clip_bounds(bounds):
    b = GraphBuilder("body")
    x = b.input("x", [5, 7])
    low, high = (None if v is None else b.const(np.float32(v)) for v in bounds)
    body = b.build(b.Clip(b.Mul(x, x), low, high))
    program, fused, unfused = run_both(body)
    assert kernels(program) == ["FusedElementwise"]
    assert_same_bits(fused, unfused)


def test_clip_with_a_runtime_bound_falls_back():
    b = GraphBuilder("body")
    x, high = b.input("x", [5]), b.input("high", [])
    body = b.build(b.Clip(b.Relu(x), None, high))
    program, fused, unfused = run_both(body)
    assert kernels(program) == ["Relu", "Clip"]
    assert_same_bits(fused, unfused)


@pytest.mark.parametrize("op", ["Sum", "Mean", "Max", "Min"])
@pytest.mark.parametrize("arity", [1, 3])
def test_variadic_ops_fold_like_the_unfused_kernel(op, arity):
    b = GraphBuilder("body")
    xs = [b.input(f"x{i}", [2, 1, 4] if i % 2 else [3, 4]) for i in range(arity)]
    body = b.build(b.Neg(b.op(op, *xs)))
    program, fused, unfused = run_both(body)
    assert kernels(program) == ["FusedElementwise"]
    assert_same_bits(fused, unfused)


def test_prelu_and_pow():
    b = GraphBuilder("body")
    x, slope = b.input("x", [2, 3, 4, 4]), b.input("slope", [3, 1, 1])
    y = b.PRelu(x, slope)
    body = b.build(b.Pow(b.Abs(y), b.const(np.float32(2.0))))
    program, fused, unfused = run_both(body)
    assert kernels(program) == ["FusedElementwise"]
    np.testing.assert_allclose(fused, unfused, rtol=1e-6)


def test_scalar_constants_become_const_instructions_and_vectors_inputs():
    b = GraphBuilder("body")
    x = b.input("x", [2, 8, 3, 3])
    bias = b.const(np.arange(8, dtype=np.float32).reshape(8, 1, 1))
    body = b.build(b.Mul(b.Add(x, bias), b.const(np.full((1, 1, 1, 1, 1), 0.5, np.float32))))
    program, fused, unfused = run_both(body)
    (step,) = program.steps
    assert [program.slots[i] for i in step.inputs][0] == "x" and len(step.inputs) == 2
    assert [opcode for opcode, *_ in step.attrs["code"]] == ["add", "const", "mul"]
    assert step.attrs["rank"] == 5 and step.attrs["inplace"] == -1
    assert_same_bits(fused, unfused)


def test_long_chains_reuse_registers_and_never_alias_a_source():
    b = GraphBuilder("body")
    x = b.input("x", [64])
    y = x
    for i in range(40):
        y = b.Add(b.Relu(y), x) if i % 2 else b.Mul(y, b.const(np.float32(0.9)))
    program, fused, unfused = run_both(b.build(y))
    (step,) = program.steps
    code = step.attrs["code"]
    assert max(dst for _, dst, _, _ in code) < 4
    assert all(dst not in sources for _, dst, sources, _ in code)
    assert_same_bits(fused, unfused)


# ---------------------------------------------------------------- fallbacks

def _fallback_bodies():
    b = GraphBuilder("ints")
    x = b.input("x", [4], np.int64)
    yield "int64", b.build(b.Add(x, x))
    b = GraphBuilder("tan")
    x = b.input("x", [4])
    yield "op outside the set", b.build(b.Relu(b.Tan(x)))
    b = GraphBuilder("wide")
    xs = [b.input(f"x{i}", [4]) for i in range(MAX_INPUTS + 1)]
    yield "too many inputs", b.build(b.Sum(*xs))
    b = GraphBuilder("doubles")
    x = b.input("x", [4], np.float64)
    yield "float64", b.build(b.Relu(b.Neg(x)))
    b = GraphBuilder("passthrough")
    x = b.input("x", [4])
    yield "no instruction", b.build(b.Sum(x))


@pytest.mark.parametrize("reason, body", list(_fallback_bodies()), ids=lambda v: v if isinstance(v, str) else "")
def test_groups_it_cannot_express_are_inlined(reason, body):
    assert plan_fused_group(wrap(body).nodes[0]) is None
    program = lower_to_program(wrap(body))
    assert "FusedElementwise" not in kernels(program)
    feeds = {v.name: np.ones(v.type.shape, v.type.dtype) for v in body.inputs}
    fused = Executor(program, check=True).run(feeds)
    unfused = Executor(lower_to_program(body), check=True).run(feeds)
    np.testing.assert_array_equal(next(iter(fused.values())), next(iter(unfused.values())))


def test_reshapes_around_a_group_are_their_own_steps():
    """The fusion pass puts the Reshapes a Gemm's output goes through (back
    to (batch, tokens, features) and to 2-D again for the next Gemm) in the
    GELU group between them: they become Reshape steps before and after one
    FusedElementwise step (the group ran as one step per node), with the
    unfused body's bits; a Reshape between element-wise ops still sends the
    group to node-by-node inlining."""
    b = GraphBuilder("gelu")
    x = b.input("x", [6, 8])
    y = b.Reshape(x, b.const(np.array([1, 6, 8], np.int64)))
    half = b.Mul(y, b.const(np.float32(0.5)))
    y = b.Mul(half, b.Add(b.Erf(b.Div(y, b.const(np.float32(math.sqrt(2))))), b.const(np.float32(1.0))))
    body = b.build(b.Reshape(y, b.const(np.array([6, 8], np.int64))))
    program, fused, unfused = run_both(body)
    assert kernels(program) == ["Reshape", "FusedElementwise", "Reshape"]
    assert_same_bits(fused, unfused)
    b = GraphBuilder("between")
    x = b.input("x", [6, 8])
    body = b.build(b.Relu(b.Reshape(b.Neg(x), b.const(np.array([48], np.int64)))))
    assert plan_fused_group(wrap(body).nodes[0]) is None
    program, fused, unfused = run_both(body)
    assert "FusedElementwise" not in kernels(program)
    assert_same_bits(fused, unfused)


def test_multi_output_bodies_are_inlined():
    b = GraphBuilder("two")
    x = b.input("x", [4])
    body = b.build(b.Relu(x), b.Neg(x))
    outer = GraphBuilder("outer")
    node_out = outer.op("Fused", outer.input("x", [4]), body=body, pattern=0, anchor="")
    assert plan_fused_group(node_out[0].producer) is None


# ---------------------------------------------------------------- anchored groups

def conv_body(residual: bool, bias_in_conv: bool = False) -> Graph:
    rng = np.random.default_rng(0)
    b = GraphBuilder("block")
    x = b.input("x", [1, 8, 10, 10])
    w = b.const((rng.standard_normal((8, 8, 3, 3)) * 0.2).astype(np.float32))
    bias = rng.standard_normal(8).astype(np.float32)
    if bias_in_conv:
        y = b.Conv(x, w, b.const(bias), pads=[1, 1, 1, 1])
    else:
        y = b.Add(b.Conv(x, w, pads=[1, 1, 1, 1]), b.const(bias.reshape(8, 1, 1)))
    if residual:
        y = b.Add(y, b.input("r", [1, 8, 10, 10]))
    return b.build(b.Relu(y))


@pytest.mark.parametrize("residual", [False, True])
def test_anchored_conv_tail_runs_in_place(residual):
    program, fused, unfused = run_both(conv_body(residual), anchor="Conv")
    assert kernels(program) == ["Conv", "FusedElementwise"]
    tail = program.steps[1]
    assert tail.inputs[0] == program.steps[0].outputs[0] and tail.attrs["inplace"] == 0
    assert_same_bits(fused, unfused)


def test_anchored_conv_with_its_own_bias_and_relu_is_one_fused_conv():
    program, fused, unfused = run_both(conv_body(False, bias_in_conv=True), anchor="Conv")
    assert kernels(program) == ["FusedConv"]
    step = program.steps[0]
    assert step.inputs[2] != NO_SLOT and step.inputs[3] == NO_SLOT  # the conv's own bias, no residual
    assert step.attrs["clamp"] == (0.0, math.inf)
    assert_same_bits(fused, unfused)


def fused_conv_body(channels: int, size: int, tail) -> Graph:
    """Conv (with bias, 3x3, SAME) then ``tail(builder, y)``."""
    rng = np.random.default_rng(1)
    b = GraphBuilder("block")
    x = b.input("x", [1, channels, size, size])
    w = b.const((rng.standard_normal((channels, channels, 3, 3)) * 0.2).astype(np.float32))
    y = b.Conv(x, w, b.const(rng.standard_normal(channels).astype(np.float32)), pads=[1, 1, 1, 1])
    return b.build(tail(b, y))


def _residual(b, y):
    return b.Add(y, b.input("r", y.type.shape))


TAILS = {  # tail -> expected clamp, and whether a residual is added
    "residual relu": (lambda b, y: b.Relu(_residual(b, y)), (0.0, math.inf), True),
    "residual first": (lambda b, y: b.Relu(b.Add(b.input("r", y.type.shape), y)), (0.0, math.inf), True),
    "residual": (_residual, None, True),
    "relu6": (lambda b, y: b.Clip(y, b.const(np.float32(0)), b.const(np.float32(6))), (0.0, 6.0), False),
    "max by a constant": (lambda b, y: b.Max(y, b.const(np.float32(-1))), (-1.0, math.inf), False),
    "min by a constant": (lambda b, y: b.Min(b.const(np.float32(2)), y), (-math.inf, 2.0), False),
}


@pytest.mark.parametrize("channels, size", [(8, 10), (16, 12)], ids=["im2col", "winograd"])
@pytest.mark.parametrize("tail", list(TAILS))
def test_conv_tails_the_epilogue_can_do_are_one_fused_conv(tail, channels, size):
    make, clamp, residual = TAILS[tail]
    program, fused, unfused = run_both(fused_conv_body(channels, size, make), anchor="Conv")
    assert kernels(program) == ["FusedConv"]
    step = program.steps[0]
    assert step.attrs["clamp"] == clamp
    assert (step.inputs[3] != NO_SLOT) == residual
    if residual:
        assert program.slots[step.inputs[3]] == "r"
    if channels == 8:
        assert_same_bits(fused, unfused)
    else:  # Winograd adds the bias inside its output transform, rounding once less or more
        np.testing.assert_allclose(fused, unfused, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tail", [
    lambda b, y: b.Add(b.Relu(y), b.input("r", y.type.shape)),  # the add after the clamp
    lambda b, y: b.Add(b.Add(y, b.input("r", y.type.shape)), b.input("s", y.type.shape)),  # two residuals
    lambda b, y: b.Relu(b.Add(y, b.input("r", [1, 8, 1, 1]))),  # a broadcast add
], ids=["add after clamp", "two residuals", "broadcast"])
def test_conv_tails_reading_more_than_the_conv_keep_the_element_wise_step(tail):
    program, fused, unfused = run_both(fused_conv_body(8, 10, tail), anchor="Conv")
    assert kernels(program) == ["Conv", "FusedElementwise"]
    assert_same_bits(fused, unfused)


@pytest.mark.parametrize("tail, clamp, residual", [
    (lambda b, y: b.Relu(b.Relu(y)), (0.0, math.inf), False),  # two clamps
    (lambda b, y: b.LeakyRelu(y, alpha=0.2), None, False),
    (lambda b, y: b.HardSwish(y), None, False),
    (lambda b, y: b.HardSwish(_residual(b, y)), None, True),  # torchvision's MobileNetV3 blocks have none; YOLOs do
    (lambda b, y: b.Mul(y, b.Sigmoid(y)), None, False),  # SiLU as exporters write it
    (lambda b, y: b.Div(b.Mul(y, b.Clip(b.Add(y, b.const(np.float32(3))), b.const(np.float32(0)),
                                        b.const(np.float32(6)))), b.const(np.float32(6))), None, False),
], ids=["two clamps", "leaky relu", "hard swish", "residual hard swish", "silu", "hard swish written out"])
def test_conv_activations_beyond_the_epilogue_run_after_a_fused_conv_in_place(tail, clamp, residual):
    """The FusedConv step adds the bias (and residual, and a clamp) in the
    microkernels' epilogue; what is left reads only its output and runs in
    place over it, one input, no broadcast bias to gather."""
    program, fused, unfused = run_both(fused_conv_body(8, 10, tail), anchor="Conv")
    assert kernels(program) == ["FusedConv", "FusedElementwise"]
    conv, rest = program.steps
    assert conv.attrs["clamp"] == clamp
    assert (conv.inputs[3] != NO_SLOT) == residual
    assert rest.inputs == conv.outputs and rest.attrs["inplace"] == 0
    assert_same_bits(fused, unfused)


def test_anchored_matmul_gelu_that_broadcasts_bigger_is_not_in_place():
    b = GraphBuilder("ffn")
    x = b.input("x", [4, 16])
    y = b.MatMul(x, b.const(np.full((16, 8), 0.1, np.float32)))
    y = b.Add(y, b.input("other", [3, 1, 8]))
    program, fused, unfused = run_both(b.build(b.Gelu(y)), anchor="MatMul")
    assert kernels(program) == ["MatMul", "FusedElementwise"]
    assert program.steps[1].attrs["inplace"] == -1
    assert_same_bits(fused, unfused)


def test_anchor_output_read_twice_is_still_private():
    b = GraphBuilder("silu")
    x = b.input("x", [2, 16])
    y = b.Gemm(x, b.const(np.full((16, 8), 0.05, np.float32)), b.const(np.ones(8, np.float32)))
    program, fused, unfused = run_both(b.build(b.Mul(y, b.Relu(y))), anchor="Gemm")
    assert kernels(program) == ["Gemm", "FusedElementwise"]
    assert program.steps[1].attrs["inplace"] == 0
    assert_same_bits(fused, unfused)


def test_anchored_group_with_a_tail_it_cannot_express_is_inlined():
    b = GraphBuilder("pooled")
    x = b.input("x", [1, 2, 4, 4])
    y = b.Relu(b.Conv(x, b.const(np.ones((2, 2, 1, 1), np.float32))))
    program, fused, unfused = run_both(b.build(b.MaxPool(y, kernel_shape=[2, 2])), anchor="Conv")
    assert kernels(program) == ["Conv", "Relu", "MaxPool"]
    assert_same_bits(fused, unfused)


def test_elementwise_groups_never_write_into_graph_inputs():
    b = GraphBuilder("body")
    x = b.input("x", [3, 5])
    program, fused, unfused = run_both(b.build(b.Relu(b.Add(x, x))))
    assert program.steps[0].attrs["inplace"] == -1
    assert_same_bits(fused, unfused)
