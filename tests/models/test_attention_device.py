"""Attention inside a CNN on the accelerator (docs/isa.md MATMUL and
SOFTMAX): a YOLO11 C2PSA-style block compiles into one device segment, the
simulator matches the integer reference (tests/oracle.py) bit for bit, and
the output stays close to float; the integer softmax's precision on 8- and
16-bit output grids."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from codegen.cpu import lower_to_program
from compiler.compile import build
from compiler.quantize import quantize_model
from compiler.zoo.builder import OnnxBuilder
from passes.quant.metrics import snr_db
from runtime.engine import Engine
from runtime.executor import Executor
from runtime.hardware import HardwareConfig
from runtime.kernels import run_kernel
from runtime.qscheme import activation_params, softmax_multiplier, softmax_step, softmax_table
from tests.oracle import run_reference

CHANNELS, SIZE, HEADS = 32, 4, 2


def attention_block(seed: int = 0):
    """conv -> qkv 1x1 -> [1, heads, 2 key_dim + head_dim, N] -> q^T k * scale
    -> Softmax(-1) -> v attn^T -> reshape + depthwise pe(v) -> proj, as
    Ultralytics exports Attention."""
    b = OnnxBuilder("attention", seed, opset=17)
    x = b.conv(b.input("x", [1, 3, SIZE, SIZE]), 3, CHANNELS, 3)
    head_dim = CHANNELS // HEADS
    key_dim = head_dim // 2
    qkv = b.conv(x, CHANNELS, CHANNELS + 2 * key_dim * HEADS, 1, gain=1.0)
    qkv = b.node("Reshape", [qkv, b.const_i64([1, HEADS, 2 * key_dim + head_dim, SIZE * SIZE])])
    q, k, v = b.node("Split", [qkv, b.const_i64([key_dim, key_dim, head_dim])], num_outputs=3, axis=2)
    attn = b.node("MatMul", [b.node("Transpose", [q], perm=[0, 1, 3, 2]), k])
    attn = b.node("Softmax", [b.node("Mul", [attn, b.const_f32(key_dim ** -0.5)])], axis=-1)
    y = b.node("MatMul", [v, b.node("Transpose", [attn], perm=[0, 1, 3, 2])])
    shape = b.const_i64([1, CHANNELS, SIZE, SIZE])
    pe = b.conv(b.node("Reshape", [v, shape]), CHANNELS, CHANNELS, 3, groups=CHANNELS, gain=1.0)
    out = b.conv(b.node("Add", [b.node("Reshape", [y, shape]), pe]), CHANNELS, CHANNELS, 1, gain=1.0)
    return b.model([b.node("Identity", [out], outputs=["y"])])


def samples(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal([1, 3, SIZE, SIZE]).astype(np.float32) for _ in range(count)]


def cpu_segment(node, inputs):
    program = lower_to_program(node.attrs["body"])
    out = Executor(program).run(dict(zip(program.input_names, inputs)))
    return [out[n] for n in program.output_names]


def test_attention_block_runs_on_the_device_exactly_and_close_to_float():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = quantize_model(attention_block(), calibration_data=samples(4, 1), calibration_count=4)
    report = quantized.coverage()
    assert report.device_segments == 1 and report.cpu_onnx_nodes == 0, report.summary_line()
    ops = {n.op for n in quantized.quantized_nodes()}
    assert {"QMatMul", "QSoftmax"} <= ops and "QLut" not in ops, ops  # the scale is folded into the product
    engine = Engine(build(quantized.graph, HardwareConfig(), quantized.float_graph))
    for x in samples(2, 2):
        feeds = {quantized.input_names[0]: x}
        got, want = engine.run(feeds), run_reference(quantized.graph, feeds, cpu=cpu_segment)
        np.testing.assert_array_equal(got["y"], want["y"])
        assert snr_db(engine.run_reference(feeds)["y"], got["y"]) >= 25


@pytest.mark.parametrize("dtype, floor", [("int8", 35.0), ("int16", 70.0)])
def test_integer_softmax_precision_on_8_and_16_bit_grids(dtype, floor):
    """The integer softmax (CPU kernel = simulator's definition) of 8-bit
    logits against float softmax of the same codes: SNR by output grid."""
    rng = np.random.default_rng(0)
    scale, zero = activation_params(-6.0, 6.0)
    codes = np.clip(np.rint(rng.standard_normal((64, 16)) * 2.0 / scale) + zero, -128, 127).astype(np.int8)
    logits = (codes.astype(np.float64) - zero) * scale
    want = np.exp(logits - logits.max(axis=1, keepdims=True))
    want /= want.sum(axis=1, keepdims=True)
    out_scale, out_zero = activation_params(0.0, 1.0, np.dtype(dtype))
    step, in_mult, in_shift = softmax_step(scale, np.int8)
    mult, shift = softmax_multiplier(out_scale)
    low, high = np.iinfo(dtype).min, np.iinfo(dtype).max
    (y,) = run_kernel("QSoftmax", [codes], {
        "table": softmax_table(step).tolist(), "in_mult": in_mult, "in_shift": in_shift, "mult": mult,
        "shift": shift, "out_zero": out_zero, "lo": low, "hi": high, "out_dtype": dtype})
    got = (y.astype(np.float64) - out_zero) * out_scale
    assert snr_db(want, got) >= floor
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=0.05 if dtype == "int8" else 1e-3)
