"""A transformer block's steps as schedule operations: its linear layers
(Gemm: A packed by PACK_LEFT, B packed once, C in the GEMM's epilogue), the
attention products (MatMul of two computed operands), LayerNormalization
(LAYER_NORM) and the GELU (Erf, or opset 20's Gelu, in a FUSED operation). The schedule runs
through the whole block on one and two threads with the per-step run's
bits, and both agree with onnxruntime."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from compiler.zoo.builder import OnnxBuilder
from compiler.zoo.families import FAMILY_MODELS
from compiler.zoo.models import transformer_block
from runtime.executor import Executor
from runtime.schedule.records import DOT_ROWS, FUSED, GEMM, LAYER_NORM, PACK_LEFT
from tests.helpers.schedule import feeds_for, fully_lowered_with_per_step_bits, kinds


@pytest.mark.parametrize("gelu, threads", [("erf", 1), ("erf", 2), ("none", 2), ("tanh", 1)])
def test_a_transformer_block_is_one_run_of_operations_with_the_per_step_bits(monkeypatch, gelu, threads):
    """Six Gemms (q, k, v, the projection, the two of the feed-forward
    network) and two attention MatMuls are a PACK_LEFT and a GEMM each, the
    two LayerNorms one LAYER_NORM each: no Python step is left. The GELU
    written out with Erf and opset 20's Gelu (either approximation) alike."""
    model = transformer_block(seq=40, dim=64, heads=2, ffn=96, seed=3, gelu=gelu)
    executor = fully_lowered_with_per_step_bits(monkeypatch, model, threads, PACK_LEFT, 8)
    assert kinds(executor).count(GEMM) == 8 and kinds(executor).count(LAYER_NORM) == 2
    assert kinds(executor).count(FUSED) >= 2  # the scaled scores, the GELU
    program = executor.program
    feeds = feeds_for(program)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = session.run(None, feeds)[0]
    np.testing.assert_allclose(executor.run(feeds)[program.slots[program.outputs[0]]], want, rtol=1e-4, atol=1e-4)


def products(batch_b: tuple, rows: int):
    """A MatMul of two computed operands (B's batch ``batch_b``), then
    three Gemms of its rows: with C, without, and one whose alpha the
    compiler folds into its weights."""
    b = OnnxBuilder("products", seed=5)
    x = b.input("x", [2, 3, rows, 32])
    y = b.input("y", [*batch_b, 32, 40])
    z = b.node("MatMul", [b.node("Relu", [x]), b.node("Relu", [y])])
    z = b.node("Reshape", [z, b.constant([-1, 40], np.int64)])
    z = b.node("Gemm", [z, b.const_f32(b.rng.standard_normal((7, 40))), b.const_f32(b.rng.standard_normal(7))],
               transB=1)
    z = b.node("Gemm", [z, b.const_f32(b.rng.standard_normal((7, 4)))])
    return b.model([b.node("Gemm", [z, b.const_f32(b.rng.standard_normal((4, 3)))], alpha=0.5)])


@pytest.mark.parametrize("batch_b, rows, packs, python", [((), 32, 4, 0), ((2, 3), 32, 4, 0), ((2, 1), 32, 3, 1),
                                                         ((), 1, 0, 1), ((), 4, 3, 1)],
                         ids=["folded", "batched", "broadcast", "one-row", "small"])
@pytest.mark.parametrize("threads", [1, 2])
def test_products_of_computed_operands_lower_where_they_fold_or_match(monkeypatch, batch_b, rows, packs, python,
                                                                      threads):
    """A MatMul whose B has no batch folds A's rows into one product; one
    whose batch dims match is a batch of products; one that broadcasts B
    over A's batch stays a Python step, as does one too small for Tessera's
    GEMM (numpy's, per step too: product_fits). Gemms of FEW_ROWS rows or
    more are a PACK_LEFT and a GEMM each; with fewer, dot products
    (DOT_ROWS)."""
    executor = fully_lowered_with_per_step_bits(monkeypatch, products(batch_b, rows), threads, PACK_LEFT, packs,
                                                python=python)
    assert kinds(executor).count(GEMM) == packs
    assert kinds(executor).count(DOT_ROWS) == (3 if 6 * rows < 8 else 0)


def test_a_gemm_whose_weights_are_not_frozen_stays_a_python_step():
    """Packed weights are a form derived from the constant: a schedule
    keeps them only for frozen weights (a writeable array may be rewritten
    between runs), so such a Gemm runs per step, and follows a rewrite."""
    from codegen.cpu import lower_to_program
    from compiler.frontend import import_onnx
    from compiler.pipeline import optimize

    b = OnnxBuilder("linear", seed=6)
    x = b.input("x", [12, 5])
    model = b.model([b.node("Gemm", [b.node("Relu", [x]), b.const_f32(b.rng.standard_normal((5, 4)))])])
    program = lower_to_program(optimize(import_onnx(model)))
    program.constants.update({slot: np.array(c) for slot, c in program.constants.items() if isinstance(c, np.ndarray)})
    executor = Executor(program)
    feeds = feeds_for(program)
    first = executor.run(feeds)
    assert PACK_LEFT not in kinds(executor)
    weights = next(c for c in program.constants.values() if getattr(c, "shape", None) == (4, 5))
    weights *= 2
    second = executor.run(feeds)
    key = next(iter(first))
    np.testing.assert_allclose(second[key], 2 * first[key], rtol=1e-6)


@pytest.mark.parametrize("axis", [-1, 1])
def test_layer_norm_writes_its_statistics_too(monkeypatch, axis):
    """A LayerNormalization whose mean and inverse deviation are read (as
    outputs here) writes all three from its LAYER_NORM operation, normalising
    over the last axis or the last two, with onnxruntime's values."""
    b = OnnxBuilder("layernorm", seed=7)
    x = b.input("x", [2, 5, 24])
    y = b.node("Relu", [x])
    shape = [5, 24] if axis == 1 else [24]
    outs = b.node("LayerNormalization", [y, b.const_f32(b.rng.uniform(0.5, 1.5, shape)),
                                         b.const_f32(b.rng.standard_normal(shape))], num_outputs=3, axis=axis,
                  epsilon=1e-3)
    model = b.model(list(outs))
    executor = fully_lowered_with_per_step_bits(monkeypatch, model, 2, LAYER_NORM, 1)
    program = executor.program
    feeds = feeds_for(program)
    got = executor.run(feeds)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for value, want in zip((program.slots[slot] for slot in program.outputs), session.run(None, feeds)):
        np.testing.assert_allclose(got[value], want, rtol=1e-5, atol=1e-5, err_msg=value)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_layer_norm_written_out_squares_with_a_multiply(monkeypatch, threads):
    """Keras' LayerNormalization as tf2onnx writes it on an NHWC model (the
    zoo's: means as 1x1 convolutions, Sub, Pow by 2): its Pow is a square,
    x * x per step (numpy's power by 2, correctly rounded, gives the same)
    and a FUSED multiply in a schedule, which then runs through the model
    (it had stopped at both Pows); onnxruntime's values."""
    model = FAMILY_MODELS["channels_last_layernorm"]()
    executor = fully_lowered_with_per_step_bits(monkeypatch, model, threads, FUSED, 8)
    program = executor.program
    feeds = feeds_for(program)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(executor.run(feeds)[program.slots[program.outputs[0]]], session.run(None, feeds)[0],
                               rtol=1e-4, atol=1e-4)


def powers():
    """A computed base raised to a constant 0.75 (LRN's beta) and to a
    runtime exponent that broadcasts along the rows."""
    b = OnnxBuilder("powers", seed=12)
    x, e = b.input("x", [2, 3, 24, 24]), b.input("e", [24])
    y = b.conv(x, 3, 8, 3)
    p, q = b.node("Pow", [y, b.const_f32(0.75)]), b.node("Pow", [y, e])
    return b.model([b.conv(p, 8, 4, 1), b.conv(q, 8, 4, 1)])


@pytest.mark.parametrize("threads", [1, 2])
def test_float32_powers_lower_to_fused_operations(monkeypatch, threads):
    """A float32 Pow (of a constant or a computed exponent) is one FUSED
    operation, the interpreter's pow, where it had been a Python step
    between runs of operations: the per-step bits."""
    fully_lowered_with_per_step_bits(monkeypatch, powers(), threads, FUSED, 2)


def test_a_square_is_a_multiply_and_other_powers_the_float64_power_rounded_once():
    """Pow by a one-value float32 2 is base * base (-0 squares to +0, NaN
    stays, a 0-d base stays an array); any other float32 power is C's pow
    of the operands in float64, rounded once (the interpreter's: numpy's
    float32 power took AVX-512 hosts' own SIMD routine, which rounded 1 in
    5 results of x ** -0.75 otherwise), whatever the exponent's rank, on
    the forms of the exponents models use (multiplies, divides, square
    roots) and exp(y ln |x|) for the rest, with C's special cases (zeros,
    infinities, NaN, negative bases, odd and even integer exponents)."""
    from runtime.kernels import run_kernel

    x = np.array([-0.0, np.nan, np.inf, 1e20, 3e-23, -3.5], np.float32)
    for exponent in (np.array(2.0, np.float32), np.array([2.0], np.float32)):
        got = run_kernel("Pow", [x, exponent], {})[0]
        np.testing.assert_array_equal(got, x * x)
        assert not np.signbit(got[0])
    assert run_kernel("Pow", [np.array(3.0, np.float32), np.array(2.0, np.float32)], {})[0].shape == ()
    assert run_kernel("Pow", [np.ones(3, np.float32), np.array([[2.0]], np.float32)], {})[0].shape == (1, 3)
    rng = np.random.default_rng(5)
    base = np.concatenate([x, [0.0, -np.inf, -1.0, 1.0, -2.0, 0.5, 3.4e38, 1e-45, -1e-45],
                           rng.uniform(0, 10, 20000), rng.standard_normal(2000) * 1e3,
                           np.exp(rng.uniform(-100, 88, 5000))]).astype(np.float32)
    for e in (3.0, -1.0, 0.5, -0.5, 0.75, -0.75, 1.3, -2.7, 0.0, -0.0, 1.0, np.inf, -np.inf, np.nan, 0.25, 7.0, -3.0,
              1e10, 1 / 3):
        exponent = np.float32(e)
        with np.errstate(all="ignore"):  # an array exponent: numpy's pow of each (not its scalar shortcuts)
            want = np.power(base.astype(np.float64), np.full(base.shape, exponent, np.float64)).astype(np.float32)
        for shape in ((), (1,), base.shape):
            got = run_kernel("Pow", [base, np.full(shape, exponent, np.float32)], {})[0]
            np.testing.assert_array_equal(got, want, err_msg=f"exponent {e}")
            numbers = ~np.isnan(want)  # (a NaN's sign means nothing)
            np.testing.assert_array_equal(np.signbit(got[numbers]), np.signbit(want[numbers]), err_msg=f"exponent {e}")
    scalar = run_kernel("Pow", [np.array(2.0, np.float32), np.array(0.5, np.float32)], {})[0]
    assert scalar.shape == () and scalar == np.float32(np.sqrt(2.0))
