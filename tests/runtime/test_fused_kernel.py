"""The FusedElementwise kernel: every opcode against the unfused kernel it
replaces (bitwise where both compute the same float32 operations),
broadcasting, in-place writes, the parallel path, and malformed descriptions."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.errors import KernelError
from runtime.kernels import fused, run_kernel
from runtime.kernels.fused import MAX_INPUTS, MAX_REGISTERS, OPCODES

pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")

SPECIALS = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 3.0, -3.0, 6.0, 7.5, -100.0, 100.0, 1e-30, -1e-30,
                     88.0, -88.0, 1e30, -1e30, np.inf, -np.inf, np.nan], np.float32)

# opcode -> (unfused kernel, its attributes, opcode params)
UNARY = {
    "neg": ("Neg", {}, ()), "abs": ("Abs", {}, ()), "sqrt": ("Sqrt", {}, ()),
    "reciprocal": ("Reciprocal", {}, ()), "floor": ("Floor", {}, ()), "ceil": ("Ceil", {}, ()),
    "erf": ("Erf", {}, ()), "relu": ("Relu", {}, ()), "softplus": ("Softplus", {}, ()),
    "hard_swish": ("HardSwish", {}, ()), "gelu": ("Gelu", {"approximate": "none"}, ()),
    "gelu_tanh": ("Gelu", {"approximate": "tanh"}, ()),
    "leaky_relu": ("LeakyRelu", {"alpha": 0.1}, (0.1,)), "elu": ("Elu", {"alpha": 0.7}, (0.7,)),
    "selu": ("Selu", {"alpha": 1.6732632, "gamma": 1.050701}, (1.6732632, 1.050701)),
    "hard_sigmoid": ("HardSigmoid", {"alpha": 0.2, "beta": 0.5}, (0.2, 0.5)),
    "tanh": ("Tanh", {}, ()), "sigmoid": ("Sigmoid", {}, ()),
}
APPROXIMATE_UNARY = {"exp": "Exp", "log": "Log", "sin": "Sin", "cos": "Cos"}
BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max", "min": "Min", "prelu": "PRelu"}


def run(inputs, code, rank=None, inplace=-1):
    rank = max((x.ndim for x in inputs), default=0) if rank is None else rank
    return run_kernel("FusedElementwise", inputs, {"code": tuple(code), "rank": rank, "inplace": inplace})[0]


def assert_same_bits(actual, expected):
    """Equal bit patterns (so -0.0 differs from 0.0); any NaN equals any NaN."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    same = (actual.view(np.uint32) == expected.view(np.uint32)) | (np.isnan(actual) & np.isnan(expected))
    assert same.all(), f"differ at {np.argwhere(~same)[:5].tolist()}: {actual[~same][:5]} vs {expected[~same][:5]}"


def ulps(a, b):
    """Distance in units in the last place between float32 arrays (NaN vs NaN: 0)."""
    def ordered(x):
        bits = x.view(np.int32).astype(np.int64)
        return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)
    distance = np.abs(ordered(a) - ordered(b))
    distance[np.isnan(a) & np.isnan(b)] = 0
    distance[np.isnan(a) != np.isnan(b)] = 1 << 40
    return distance


def sample(shape=(4000,), seed=0):
    """Random values of mixed magnitudes, about one in five a special value."""
    rng = np.random.default_rng(seed)
    x = np.asarray(rng.standard_normal(shape) * rng.choice([0.01, 1.0, 10.0], shape), np.float32)
    special = rng.random(shape) < 0.2
    x[special] = rng.choice(SPECIALS, int(special.sum()))
    return x


@pytest.mark.parametrize("opcode", sorted(UNARY))
def test_unary_opcodes_are_bitwise_equal_to_the_unfused_kernels(opcode):
    op, attrs, params = UNARY[opcode]
    x = sample()
    with np.errstate(all="ignore"):
        expected = run_kernel(op, [x], attrs)[0]
    assert_same_bits(run([x], [(opcode, 1, (0,), params)]), expected)


@pytest.mark.parametrize("few", [False, True])
@pytest.mark.parametrize("opcode", sorted(UNARY))
def test_unary_opcodes_in_place_on_a_register_are_the_unfused_kernels(opcode, few):
    """Each unary opcode reading and writing one register (its result
    overwriting its input, as between two other operations): GELU's block
    had read its own first pass's results back as inputs, so an element of
    its lower tail came out as the near form's value (GELU(-88) -6.8e-07,
    not -0). ``few``: a handful of such elements (its one-by-one pass),
    else many (its vectorised pass)."""
    op, attrs, params = UNARY[opcode]
    x = np.asarray(np.random.default_rng(1).standard_normal(4000), np.float32) if few else sample()
    if few:
        x[[5, 700, 3999]] = [88.0, 6.5, np.nan]  # negated first: GELU gets -88 and -6.5
    with np.errstate(all="ignore"):
        expected = -run_kernel(op, [-x], attrs)[0]
    code = [("neg", 1, (0,), ()), (opcode, 1, (1,), params), ("neg", 1, (1,), ())]
    assert_same_bits(run([x], code), expected)


@pytest.mark.parametrize("opcode", sorted(BINARY))
def test_binary_opcodes_are_bitwise_equal_to_the_unfused_kernels(opcode):
    x, y = sample(seed=1), sample(seed=2)[::-1].copy()
    with np.errstate(all="ignore"):
        expected = run_kernel(BINARY[opcode], [x, y], {})[0]
    assert_same_bits(run([x, y], [(opcode, 2, (0, 1), ())]), expected)


@pytest.mark.parametrize("low, high", [(0.0, 6.0), (-0.0, 6.0), (0.0, -0.0), (-1.0, 1.0), (2.0, -2.0),
                                       (np.nan, 1.0), (-np.inf, 0.5)])
def test_clip_is_numpy_clip_with_both_bounds(low, high):
    x = sample()
    expected = np.clip(x, np.float32(low), np.float32(high))
    assert_same_bits(run([x], [("clip", 1, (0,), (low, high))]), expected)


@pytest.mark.parametrize("opcode", sorted(APPROXIMATE_UNARY) + ["pow"])
def test_transcendental_opcodes_stay_within_a_few_ulp_of_numpy(opcode):
    """These round float64 libm results once; numpy's float32 SIMD loops
    are themselves a few ulp from the exact result."""
    x = sample()
    if opcode == "pow":
        with np.errstate(all="ignore"):
            base, exponent = np.abs(sample(seed=3)), sample(seed=4) % np.float32(4)
            expected = run_kernel("Pow", [base, exponent], {})[0]
        actual = run([base, exponent], [("pow", 2, (0, 1), ())])
    else:
        with np.errstate(all="ignore"):
            expected = run_kernel(APPROXIMATE_UNARY[opcode], [x], {})[0]
        actual = run([x], [(opcode, 1, (0,), ())])
    assert ulps(actual, expected).max() <= 4


def test_const_fills_and_rank_pads_the_shape():
    x = np.arange(3, dtype=np.float32)
    out = run([x], [("const", 1, (), (2.5,)), ("mul", 2, (0, 1), ())], rank=3)
    assert out.shape == (1, 1, 3)
    np.testing.assert_array_equal(out.reshape(-1), x * np.float32(2.5))
    only_constants = run([], [("const", 0, (), (-0.0,))], rank=2)
    assert only_constants.shape == (1, 1) and np.signbit(only_constants).all()


def reference(inputs, code):
    """The expression evaluated with numpy broadcasting and the unfused kernels."""
    registers = {i: x for i, x in enumerate(inputs)}
    kernels = {**BINARY, **{k: v[0] for k, v in UNARY.items()}}
    for opcode, dst, sources, params in code:
        args = [registers[s] for s in sources]
        with np.errstate(all="ignore"):
            registers[dst] = run_kernel(kernels[opcode], args, UNARY.get(opcode, (None, {}))[1])[0]
    result = registers[code[-1][1]]
    return np.broadcast_to(result, np.broadcast_shapes(*(x.shape for x in inputs))).astype(np.float32)


@pytest.mark.parametrize("shapes", [
    [(2, 8, 5, 7), ()],                       # scalar
    [(2, 8, 5, 7), (1,)],                     # single-element vector
    [(2, 8, 5, 7), (8, 1, 1)],                # per-channel bias on NCHW
    [(3, 4, 16), (16,)],                      # per-last-dim vector
    [(2, 1, 5, 1), (1, 8, 1, 7)],             # general: both sides broadcast
    [(6, 1, 9), (6, 4, 1), (4, 9)],           # three ways
    [(1, 3, 1), (5, 3, 11)],                  # first input broadcast
    [(2, 1, 33, 70), (1, 31, 33, 1)],         # runs crossing block boundaries, in parallel
])
def test_broadcasting_matches_numpy(shapes):
    inputs = [sample(s, seed=i) if s else np.full(s, 1.5, np.float32) for i, s in enumerate(shapes)]
    code = [("add", len(inputs), (0, 1), ())]
    for i in range(2, len(inputs)):
        code.append(("mul", len(inputs) + i - 1, (len(inputs) + i - 2, i), ()))
    code.append(("relu", 0, (code[-1][1],), ()))
    assert_same_bits(run(inputs, code), reference(inputs, code))


def test_non_contiguous_and_read_only_inputs():
    base = sample((6, 10), seed=5)
    transposed = base.T
    constant = sample((10, 1), seed=6)
    constant.flags.writeable = False
    code = [("sub", 2, (0, 1), ())]
    assert_same_bits(run([transposed, constant], code), transposed - constant)


def test_many_broadcast_dims_are_materialised():
    shape = (2,) * 18
    x = sample(shape, seed=7)
    y = sample((2, 1) * 9, seed=8)
    assert_same_bits(run([x, y], [("add", 2, (0, 1), ())]), x + y)


def test_large_outputs_run_in_parallel_with_the_same_result():
    x = sample((3, 64, 40, 40), seed=9)
    bias = sample((64, 1, 1), seed=10)
    code = [("add", 2, (0, 1), ()), ("relu", 1, (2,), ())]
    assert x.size > fused.PARALLEL_MIN
    assert_same_bits(run([x, bias], code), np.maximum(x + bias, np.float32(0)))


def test_empty_output():
    x = np.zeros((0, 3), np.float32)
    assert run([x], [("relu", 1, (0,), ())]).shape == (0, 3)


@st.composite
def expressions(draw):
    """Random expressions over broadcastable inputs, with registers reused."""
    rank = draw(st.integers(0, 4))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=rank, max_size=rank)))
    count = draw(st.integers(1, 4))
    inputs = []
    for i in range(count):
        keep = draw(st.lists(st.booleans(), min_size=rank, max_size=rank))
        drop = draw(st.integers(0, rank))
        sub = tuple(d if k else 1 for d, k in zip(shape, keep))[drop:]
        inputs.append(sample(sub, seed=draw(st.integers(0, 1000))))
    defined, code = list(range(count)), []
    for _ in range(draw(st.integers(1, 8))):
        opcode = draw(st.sampled_from(sorted(UNARY) + sorted(set(BINARY) - {"prelu"})))
        sources = tuple(draw(st.sampled_from(defined)) for _ in range(OPCODES[opcode].sources))
        dst = draw(st.integers(0, 9))
        code.append((opcode, dst, sources, UNARY.get(opcode, (None, None, ()))[2]))
        defined = sorted(set(defined) | {dst})
    return inputs, code, rank


@settings(max_examples=60, deadline=None)
@given(expressions())
def test_random_expressions_match_the_unfused_kernels(case):
    inputs, code, rank = case
    actual = run(inputs, code, rank=rank)
    expected = reference(inputs, code)
    assert_same_bits(actual, expected.reshape(actual.shape))


# ---------------------------------------------------------------- in place

def test_writes_in_place_when_allowed():
    x = sample((4, 5), seed=11)
    expected = np.maximum(x, np.float32(0))
    out = run([x], [("relu", 1, (0,), ())], inplace=0)
    assert out is x
    assert_same_bits(out, expected)


def test_in_place_when_the_last_instruction_reads_the_target():
    x, y = sample((300, 301), seed=12), sample((301,), seed=13)
    expected = (x + y) * x
    out = run([x, y], [("add", 2, (0, 1), ()), ("mul", 1, (2, 0), ())], inplace=0)
    assert out is x
    assert_same_bits(out, expected)


@pytest.mark.parametrize("case", ["read-only", "broadcast", "shared", "non-contiguous"])
def test_in_place_is_refused_when_unsafe(case):
    x = sample((4, 6), seed=14)
    y = sample((4, 6), seed=15)
    if case == "read-only":
        x.flags.writeable = False
    elif case == "broadcast":
        x = x[:1]
    elif case == "shared":
        y = x[::-1]
    else:
        x = np.asfortranarray(x)
    before = x.copy()
    out = run([x, y], [("add", 2, (0, 1), ())], inplace=0)
    assert out is not x
    assert_same_bits(x, before)
    assert_same_bits(out, x + y)


# ---------------------------------------------------------------- malformed descriptions

X = np.ones((2, 3), np.float32)


@pytest.mark.parametrize("code, message", [
    ((), "non-empty tuple"),
    ("relu", "non-empty tuple"),
    ((("relu", 1, (0,)),), r"must be \(opcode, dst, sources, params\)"),
    (("relu",), r"must be \(opcode, dst, sources, params\)"),
    ((("frobnicate", 1, (0,), ()),), "unknown opcode 'frobnicate'"),
    (((7, 1, (0,), ()),), "unknown opcode 7"),
    ((("relu", MAX_REGISTERS, (0,), ()),), f"destination register {MAX_REGISTERS} is not an int"),
    ((("relu", -1, (0,), ()),), "destination register -1"),
    ((("relu", True, (0,), ()),), "destination register True"),
    ((("relu", 1.0, (0,), ()),), "destination register 1.0"),
    ((("relu", 1, (99,), ()),), "source register 99"),
    ((("relu", 1, (1,), ()),), "reads register 1 before anything writes it"),
    ((("relu", 1, (0, 0), ()),), r"\(relu\) takes 1 source registers"),
    ((("add", 1, (0,), ()),), r"\(add\) takes 2 source registers"),
    ((("relu", 1, 0, ()),), "takes 1 source registers"),
    ((("relu", 1, (0,), (1.0,)),), r"\(relu\) takes 0 parameters"),
    ((("clip", 1, (0,), (1.0,)),), r"\(clip\) takes 2 parameters"),
    ((("leaky_relu", 1, (0,), ("0.1",)),), "parameters must be numbers"),
    ((("leaky_relu", 1, (0,), (10 ** 400,)),), "too large for a float"),
    ((("const", 1, (), (1.0,)), ("frob", 2, (1,), ())), "instruction 1: unknown opcode"),
    ((("relu", 1, (0,), ()),) * (fused.MAX_INSTRUCTIONS + 1), "more than"),
])
def test_malformed_code_is_refused(code, message):
    with pytest.raises(KernelError, match=message):
        run_kernel("FusedElementwise", [X], {"code": code, "rank": 2})


@pytest.mark.parametrize("attrs, message", [
    ({"rank": 1}, "input 0 has rank 2, more than the output's 1"),
    ({"rank": -1}, "rank must be an int"),
    ({"rank": "2"}, "rank must be an int"),
    ({}, "rank must be an int"),
    ({"rank": 2, "inplace": 1}, "inplace must be -1 or an input index below 1"),
    ({"rank": 2, "inplace": -2}, "inplace must be"),
])
def test_malformed_attributes_are_refused(attrs, message):
    with pytest.raises(KernelError, match=message):
        run_kernel("FusedElementwise", [X], {"code": (("relu", 1, (0,), ()),), **attrs})


@pytest.mark.parametrize("inputs, message", [
    ([X.astype(np.float64)], "input 0 must be a float32 array, got float64"),
    ([None], "input 0 must be a float32 array, got NoneType .not an array"),
    ([np.float32(1)], "input 0 must be a float32 array, got float32 .not an array"),
    ([X, np.ones((4,), np.float32)], r"do not broadcast together: \[2, 3\], \[4\]"),
    ([X] * (MAX_INPUTS + 1), f"at most {MAX_INPUTS} inputs"),
])
def test_bad_inputs_are_refused(inputs, message):
    with pytest.raises(KernelError, match=message):
        run_kernel("FusedElementwise", inputs, {"code": (("relu", 1, (0,), ()),), "rank": 2})


def test_signed_zero_parameters_are_not_confused_by_the_cache():
    x = np.array([-0.0, 0.0, -1.0], np.float32)
    plus = run([x], [("clip", 1, (0,), (0.0, 1.0))])
    minus = run([x], [("clip", 1, (0,), (-0.0, 1.0))])
    assert np.signbit(plus).tolist() == [True, False, False]
    assert np.signbit(minus).tolist() == [True, False, True]
