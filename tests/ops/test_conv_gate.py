"""The gate of a convolution's epilogue: HardSigmoid or HardSwish applied by
every conv path (GEMM microkernels, Winograd's output transform, the
depthwise kernels, the epilogue pass of the others) after the bias,
residual and clamp, bit for bit what the FusedElementwise step after an
ungated convolution computes (NaN, infinities and -0.0 included); and the
executor running a FusedConv step and such a FusedElementwise step as one
(runtime.kernels.nn_gate) only where nothing fetches or watches the value
between them."""
from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from codegen.cpu import lower_to_program, lower_with_names
from compiler.frontend import import_onnx
from compiler.pipeline import optimize
from runtime import Executor
from runtime.gemm import sgemm
from runtime.gemm.operands import clamp_array
from runtime.jit import readonly
from runtime.kernels import conv_epilogue, nn_winograd, run_kernel, winograd_matrices
from runtime.kernels.nn import conv_nd
from runtime.kernels.nn_gate import HARD_SWISH_GATE, GatedConv, gate_of
from runtime.program import NO_SLOT, Program, Step
from tests.helpers.conv import conv_attrs

HARD_SIGMOID_GATE = ("HardSigmoid", float(np.float32(0.2)), 0.5)
GATES = {"hard_swish": (HARD_SWISH_GATE, ()), "hard_sigmoid": (HARD_SIGMOID_GATE, (0.2, 0.5))}
"""opcode -> (gate, the opcode's parameters)."""

# (x shape, w shape, strides, pads, group): one per conv path
PATHS = {
    "pointwise": ((1, 24, 9, 9), (40, 24, 1, 1), (1, 1), (0, 0, 0, 0), 1),
    "pointwise 7x7": ((1, 16, 7, 7), (24, 16, 1, 1), (1, 1), (0, 0, 0, 0), 1),
    "strided pointwise": ((1, 16, 10, 10), (24, 16, 1, 1), (2, 2), (0, 0, 0, 0), 1),
    "im2col 3x3 stride 2": ((1, 8, 11, 11), (20, 8, 3, 3), (2, 2), (1, 1, 1, 1), 1),
    "winograd F(2x2)": ((1, 16, 12, 12), (16, 16, 3, 3), (1, 1), (1, 1, 1, 1), 1),
    "winograd F(4x4)": ((1, 16, 40, 41), (24, 16, 3, 3), (1, 1), (1, 1, 1, 1), 1),
    "depthwise 3x3": ((1, 12, 9, 9), (12, 1, 3, 3), (1, 1), (1, 1, 1, 1), 12),
    "depthwise 3x3 stride 2": ((1, 8, 11, 11), (8, 1, 3, 3), (2, 2), (1, 1, 1, 1), 8),
    "depthwise 3x3 padded planes": ((1, 8, 11, 11), (8, 1, 3, 3), (2, 2), (0, 0, 1, 1), 8),
    "depthwise 5x5": ((1, 8, 12, 12), (8, 1, 5, 5), (1, 1), (2, 2, 2, 2), 8),
    "depthwise 5x5 unpadded": ((1, 8, 12, 12), (8, 1, 5, 5), (1, 1), (0, 0, 0, 0), 8),
    "depthwise 5x5 stride 2 channels last": ((2, 8, 13, 13), (8, 1, 5, 5), (2, 2), (2, 2, 2, 2), 8),
    "grouped": ((1, 12, 8, 8), (18, 4, 3, 3), (1, 1), (1, 1, 1, 1), 3),
    "one position (dot products)": ((3, 16, 2, 2), (24, 16, 3, 3), (2, 2), (1, 1, 1, 1), 1),
}
EPILOGUES = {"bare": (False, None), "residual, relu6": (True, (0.0, 6.0)), "clamp to -0.0": (False, (-0.0, math.inf)),
             "residual": (True, None)}
SPECIALS = [math.nan, math.inf, -math.inf, -0.0, -3.0, 3.0, 2.5, -2.5]


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


def _code(opcode: str) -> tuple:
    return ((opcode, 1, (0,), GATES[opcode][1]),)


def _gated(values: np.ndarray, opcode: str) -> np.ndarray:
    """What the FusedElementwise step after the convolution computes."""
    return run_kernel("FusedElementwise", [values], {"code": _code(opcode), "rank": values.ndim, "inplace": -1})[0]


def _case(path: str, seed: int):
    x_shape, w_shape, strides, pads, group = PATHS[path]
    rng = np.random.default_rng(seed)
    x = (3 * rng.standard_normal(x_shape)).astype(np.float32)  # past HardSwish's -3 and 3
    specials = x[:1] if path.startswith("one position") else x  # each output reads its whole image there
    specials.reshape(-1)[rng.choice(specials.size, len(SPECIALS), replace=False)] = SPECIALS
    w = (rng.standard_normal(w_shape) / math.sqrt(np.prod(w_shape[1:]))).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    return x, w, b, dict(strides=strides, pads=pads, dilations=(1, 1), group=group)


@pytest.mark.parametrize("epilogue", sorted(EPILOGUES))
@pytest.mark.parametrize("opcode", sorted(GATES))
@pytest.mark.parametrize("path", sorted(PATHS))
def test_every_conv_path_gates_as_the_element_wise_kernel(path, opcode, epilogue):
    x, w, b, options = _case(path, len(path))
    with_residual, clamp = EPILOGUES[epilogue]
    plain = conv_nd(x, w, b, **options)
    residual = None
    if with_residual:
        residual = np.random.default_rng(5).standard_normal(plain.shape).astype(np.float32)
        residual.reshape(-1)[:3] = [math.inf, -math.inf, math.nan]
    want = _gated(conv_nd(x, w, b, residual=residual, clamp=clamp, **options), opcode)
    got = conv_nd(x, w, b, residual=residual, clamp=clamp, gate=GATES[opcode][0], **options)
    np.testing.assert_array_equal(_bits(got), _bits(want))
    assert np.isfinite(got).mean() > 0.5


@pytest.mark.parametrize("opcode", sorted(GATES))
def test_the_microkernels_gate_every_special_value(opcode):
    """Whole tiles, their masked parts and the remainder panels (13 x 79):
    a product of depth 1 by ones hands the epilogue each value of ``b`` as
    it is (but -0.0, which the clamp's low bound of -0.0 gives back)."""
    values = np.array(SPECIALS + [-1e30, 1e30, 0.25, -0.25, 1e-40], np.float32)
    b = np.linspace(-4, 4, 79, dtype=np.float32).reshape(1, 79)
    b[0, :len(values)] = values
    a = np.ones((13, 1), np.float32)
    for clamp in (None, (-0.0, math.inf)):
        want = _gated(sgemm(a, b, clamp=clamp), opcode)
        got = sgemm(a, b, clamp=clamp_array("test", clamp, GATES[opcode][0]))
        np.testing.assert_array_equal(_bits(got), _bits(want))


def test_the_numba_winograd_output_transform_gates_each_plane():
    """Winograd's output transform in Numba (where Tessera's GEMM is not
    available): gated as the element-wise kernel gates it, though fastmath."""
    rng = np.random.default_rng(4)
    m, n, out_c, th, tw = 2, 4, 5, 3, 4
    out_h, out_w = 6, 7
    prods = (3 * rng.standard_normal((n * n, out_c, th * (tw + 1)))).astype(np.float32)
    bias = readonly(rng.standard_normal(out_c).astype(np.float32))
    residual = rng.standard_normal((1, out_c, out_h, out_w)).astype(np.float32)
    tiles = np.array([th, tw], np.int64)  # as winograd_conv2d passes them: one compiled signature
    for flags in ([False, True], [True, True]):
        flags = np.array(flags)
        want = np.full(residual.shape, np.nan, np.float32)
        nn_winograd.output_tiles(0, out_c, prods, want, winograd_matrices.A_T[m], bias, tiles, residual,
                                 clamp_array("test", (-1.0, 2.0)), flags)
        got = np.full(residual.shape, np.nan, np.float32)
        nn_winograd.output_tiles(0, out_c, prods, got, winograd_matrices.A_T[m], bias, tiles, residual,
                                 clamp_array("test", (-1.0, 2.0), HARD_SWISH_GATE), flags)
        np.testing.assert_array_equal(_bits(got), _bits(_gated(want, "hard_swish")))


def test_a_gate_is_float32_only_and_checked():
    x, w, b, options = _case("pointwise", 0)
    with pytest.raises(Exception, match="float32"):
        conv_nd(x.astype(np.float64), w.astype(np.float64), None, gate=HARD_SWISH_GATE, **options)
    with pytest.raises(Exception, match="gate"):
        conv_nd(x, w, b, gate=("Relu", 1.0, 0.0), **options)


# ---------------------------------------------------------------- the executor's pair
def _pair_program(path: str, opcode: str, clamp, inplace: int = 0, extra_reader: bool = False) -> Program:
    """x -> FusedConv (constant W, B) -> mid -> FusedElementwise gate -> y
    (and z, another reader of mid)."""
    x, w, b, options = _case(path, 1)
    w.setflags(write=False)  # frozen, as a binary's constants: the schedule lowers the step
    b.setflags(write=False)
    slots = ["x", "w", "b", "mid", "y", "z"]
    attrs = conv_attrs(w.shape[2], options["group"], options["strides"][0], clamp)
    attrs["pads"] = options["pads"]
    steps = [Step("FusedConv", (0, 1, 2, NO_SLOT), (3,), attrs, "conv"),
             Step("FusedElementwise", (3,), (4,), {"code": _code(opcode), "rank": 4, "inplace": inplace}, "gate")]
    outputs = [4]
    if extra_reader:
        steps.append(Step("Relu", (3,), (5,), {}, "other"))
        outputs.append(5)
    shape = conv_nd(x, w, b, **options).shape
    types = [(x.shape, "float32"), (w.shape, "float32"), (b.shape, "float32"), (shape, "float32"),
             (shape, "float32"), (shape, "float32")]
    return Program(slots, [0], outputs, steps, {1: w, 2: b}, types)


@pytest.mark.parametrize("path", ["pointwise", "im2col 3x3 stride 2", "winograd F(2x2)", "depthwise 3x3 stride 2",
                                  "depthwise 5x5", "depthwise 5x5 unpadded"])
@pytest.mark.parametrize("opcode", sorted(GATES))
def test_the_fused_pair_is_bitwise_the_two_steps(path, opcode):
    program = _pair_program(path, opcode, (0.0, 6.0) if opcode == "hard_sigmoid" else None)
    x = _case(path, 2)[0]
    executor = Executor(program)
    assert isinstance(executor._pairs[0][0], GatedConv)
    assert [step.kernel for _, step, _, _ in executor._plan((4,))] == ["FusedConv+FusedElementwise"]
    assert (executor._schedule() is None) == (path == "depthwise 5x5 unpadded")  # no prepared form: through Python
    separate = executor.run({"x": x}, fetch=["y", "mid"])  # fetching the middle value unfuses the pair
    np.testing.assert_array_equal(_bits(separate["y"]), _bits(_gated(separate["mid"], opcode)))
    scheduled = executor.run({"x": x})["y"]
    per_step = Executor(program, check=True).run({"x": x})["y"]  # the pair through Python, step by step
    np.testing.assert_array_equal(_bits(scheduled), _bits(separate["y"]))
    np.testing.assert_array_equal(_bits(per_step), _bits(separate["y"]))


def test_a_middle_value_read_elsewhere_or_watched_is_never_gated_in_place():
    assert Executor(_pair_program("pointwise", "hard_swish", None, extra_reader=True))._pairs == {}
    executor = Executor(_pair_program("pointwise", "hard_swish", None))
    x = _case("pointwise", 3)[0]
    seen = {}
    out = executor.run({"x": x}, fetch=["y"], observe=lambda name, value: seen.setdefault(name, value.copy()),
                       watch=["mid"])
    np.testing.assert_array_equal(_bits(out["y"]), _bits(_gated(seen["mid"], "hard_swish")))
    np.testing.assert_array_equal(_bits(executor.run({"x": x})["y"]), _bits(out["y"]))


def test_a_pair_never_writes_into_a_fetched_residual():
    """FusedConv marked to write into its residual (inplace=3) runs as two
    steps when that residual is fetched: it stays the value it was."""
    x, w, b, options = _case("pointwise", 4)
    r0 = np.random.default_rng(6).standard_normal((1, 40, 9, 9)).astype(np.float32)
    attrs = {**conv_attrs(1, 1, 1, None), "inplace": 3}
    steps = [Step("Relu", (1,), (4,), {}, "r"), Step("FusedConv", (0, 2, 3, 4), (5,), attrs, "conv"),
             Step("FusedElementwise", (5,), (6,), {"code": _code("hard_swish"), "rank": 4, "inplace": 0}, "gate")]
    program = Program(["x", "r0", "w", "b", "r", "mid", "y"], [0, 1], [6], steps, {2: w, 3: b})
    executor = Executor(program)
    assert isinstance(executor._pairs[1][0], GatedConv)
    fused = executor.run({"x": x, "r0": r0})["y"]
    kept = executor.run({"x": x, "r0": r0}, fetch=["y", "r"])
    np.testing.assert_array_equal(kept["r"], np.maximum(r0, 0))
    np.testing.assert_array_equal(_bits(kept["y"]), _bits(fused))
    separate = executor.run({"x": x, "r0": r0}, fetch=["y", "mid"])
    np.testing.assert_array_equal(_bits(fused), _bits(_gated(separate["mid"], "hard_swish")))


@pytest.mark.parametrize("code, rank, gate", [
    (_code("hard_swish"), 4, HARD_SWISH_GATE),
    (_code("hard_sigmoid"), 4, HARD_SIGMOID_GATE),
    (_code("hard_swish"), 3, None),
    ((("hard_sigmoid", 1, (0,), (math.inf, 0.5)),), 4, None),
    ((("sigmoid", 1, (0,), ()),), 4, None),
    ((("hard_swish", 1, (0,), ()), ("relu", 2, (1,), ())), 4, None),
    ((("hard_swish", 1, (3,), ()),), 4, None),
    ("not code", 4, None),
])
def test_only_a_lone_hard_sigmoid_or_hard_swish_is_a_gate(code, rank, gate):
    assert gate_of({"code": code, "rank": rank, "inplace": 0}) == gate


def test_one_compiled_gate_serves_every_kernel():
    """The gate is one Numba function with at most one signature (issue 52:
    no signature per gate or per kernel; none where every kernel calling it
    came from the disk cache, its code linked in)."""
    for path in ("depthwise 3x3", "depthwise 5x5", "grouped", "winograd F(2x2)"):
        x, w, b, options = _case(path, 0)
        conv_nd(x, w, b, clamp=(0.0, 6.0), gate=HARD_SWISH_GATE, **options)
    assert len(conv_epilogue._gate_float32.signatures) <= 1


# ---------------------------------------------------------------- through the compiler
def _onnx_model(tail: str, residual: bool = False, group: int = 1) -> onnx.ModelProto:
    """x (1, 8, 10, 10) -> Conv 3x3 (8 -> 8, pads 1, bias) [-> Add x] -> ``tail``."""
    rng = np.random.default_rng(7)
    w = (rng.standard_normal((8, 8 // group, 3, 3)) / 3).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["conv"], name="conv", pads=[1, 1, 1, 1], group=group)]
    last = "conv"
    if residual:
        nodes.append(helper.make_node("Add", ["conv", "x"], ["sum"], name="add"))
        last = "sum"
    for index, op in enumerate(tail.split("+")):
        attrs = {"alpha": 0.25, "beta": 0.4} if op == "HardSigmoid" else {}
        name = "y" if index == len(tail.split("+")) - 1 else f"t{index}"
        nodes.append(helper.make_node(op, [last], [name], name=name, **attrs))
        last = name
    graph = helper.make_graph(nodes, "gate", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 10, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 10, 10])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


@pytest.mark.parametrize("tail, residual, group", [
    ("HardSwish", False, 1), ("HardSigmoid", False, 1), ("Relu+HardSwish", False, 1), ("HardSwish", True, 1),
    ("HardSwish", False, 8),
])
def test_a_compiled_conv_and_its_activation_run_as_one_step(tail, residual, group):
    """The compiled program keeps the activation as its own step (the Conv's
    value stays fetchable and observable); the executor runs both as one,
    with the bits of the two steps, close to onnxruntime and to numpy."""
    import onnxruntime as ort

    model = _onnx_model(tail, residual, group)
    graph = optimize(import_onnx(model))
    program, names = lower_with_names(graph)
    assert [s.kernel for s in program.steps] == ["FusedConv", "FusedElementwise"]
    executor = Executor(program)
    x = (3 * np.random.default_rng(8).standard_normal((1, 8, 10, 10))).astype(np.float32)
    timings: list = []
    fused = executor.run({"x": x}, timings=timings)["y"]
    assert [kernel for _, kernel, _ in timings] == ["FusedConv+FusedElementwise"]
    middle = program.steps[0].outputs[0]
    separate = executor.run({"x": x}, fetch=["y", program.slots[middle]])
    np.testing.assert_array_equal(_bits(fused), _bits(separate["y"]))
    node_by_node = Executor(lower_to_program(import_onnx(model))).run({"x": x}, fetch=["y", "conv"])
    if not residual and not tail.startswith("Relu"):  # the Conv's own value, as the tail's input
        np.testing.assert_array_equal(_bits(separate[program.slots[middle]]), _bits(node_by_node["conv"]))
    reference = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    np.testing.assert_allclose(fused, reference, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fused, node_by_node["y"], rtol=1e-6, atol=1e-6)


def test_perf_counts_credit_a_fused_pair_to_its_second_layer():
    """The Inference Engine's CPU counters: the pair's time goes to the
    layer whose output it writes (the activation), the Conv is fused into it."""
    from runtime.inference_engine.provenance import perf_counts

    placed = {name: {"device": "CPU", "exec": kernel} for name, kernel in (("conv", "FusedConv"),
                                                                           ("hs", "FusedElementwise"))}
    counts = perf_counts({"conv": "Convolution", "hs": "HSwish"}, placed, {},
                         [("conv+fused_hs", "FusedConv+FusedElementwise", 2e-3)], True)
    assert counts["hs"]["status"] == "EXECUTED" and counts["hs"]["real_time"] == 2000
    assert counts["conv"]["status"] == "OPTIMIZED_OUT"
