"""Element-wise ops whose operands broadcast (docs/partitioning.md): every
combination of 1 and full size over C, H and W for both operands of Add,
Sub, Mul and Max (and over the batch axis N for a batch of two), tensors
and constants, on the accelerator: each compiles, the simulator matches
the integer reference (tests/oracle.py) bit for bit, and the output stays
within quantization error of onnxruntime. The outer product of a
channels-last LayerNorm ([1,1,H,W] x [1,C,1,1]) is one of them."""
from __future__ import annotations

import itertools

import numpy as np

from compiler.zoo.builder import OnnxBuilder
from runtime.hardware import HardwareConfig
from tests.helpers.device_models import assert_device_exact, quantize_seeded

OPS = ("Add", "Sub", "Mul", "Max")
C, H, W = 3, 4, 5


def _operand(b: OnnxBuilder, x: str, keep: tuple[bool, ...], batch: int) -> str:
    """``x`` [N, C, H, W] sliced to extent 1 on each axis ``keep`` says False."""
    full = (batch, C, H, W)
    ends = [d if k else 1 for d, k in zip(full, keep)]
    if all(keep):
        return x
    return b.node("Slice", [x, b.const_i64([0, 0, 0, 0], "starts"), b.const_i64(ends, "ends")])


def broadcast_model(batch: int, patterns, constants: bool):
    """One model of many branches: ``op(a, b)`` for every op and every pair
    of operand patterns (which of N, C, H, W are full), a from the input
    and b from a convolution of it; with ``constants`` also ``op(a, c)``
    and ``op(c, a)`` for a constant c of each pattern."""
    b = OnnxBuilder("broadcasts", seed=7)
    x = b.input("x", [batch, C, H, W])
    y = b.node("Sigmoid", [b.conv(x, C, C, 3)])
    outputs = []
    for op, (pa, pb) in itertools.product(OPS, itertools.product(patterns, repeat=2)):
        outputs.append(b.node(op, [_operand(b, x, pa, batch), _operand(b, y, pb, batch)]))
    if constants:
        for op, pattern in itertools.product(OPS, patterns):
            shape = [d if k else 1 for d, k in zip((1, C, H, W), pattern)]
            c = b.const_f32(b.rng.uniform(-1.0, 1.0, shape).astype(np.float32), "k")
            outputs += [b.node(op, [x, c]), b.node(op, [c, y])]
    return b.model([b.node("Identity", [o], outputs=[f"out{i}"]) for i, o in enumerate(outputs)])


def _check(model, batch):
    import onnxruntime as ort

    quantized, shape = quantize_seeded(model)
    report = quantized.coverage()
    assert report.cpu_onnx_nodes == 0, report.summary_line()
    _, engine = assert_device_exact(quantized, shape, HardwareConfig(), seeds=(0,))
    feeds = {"x": np.random.default_rng(1).standard_normal(shape).astype(np.float32)}  # calibration's first
    got = engine.run(feeds)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in model.graph.output]
    step = float(np.ptp(feeds["x"])) / 255
    for name, want in zip(names, session.run(names, feeds)):
        assert got[name].shape == want.shape, name
        # a few steps of the output's grid and of the input's (the operands are codes on it, times at most 1)
        assert np.abs(got[name] - want).max() <= 0.03 * np.abs(want).max() + 2 * step, name


CHW = list(itertools.product((True, False), repeat=3))


def test_every_broadcast_of_c_h_w_runs_on_the_device_exactly():
    _check(broadcast_model(1, [(True, *p) for p in CHW], constants=True), 1)


def test_broadcasts_over_the_batch_run_on_the_device_exactly():
    patterns = [(n, *p) for n in (True, False) for p in ((True, True, True), (True, False, False),
                                                          (False, True, True), (False, False, False))]
    _check(broadcast_model(2, patterns, constants=False), 2)


def test_per_position_and_per_channel_constants_of_a_flattened_head():
    """A detector head flattened to [1, C, L] (YOLO's [1, 4, 8400] boxes):
    times a per-position stride [1, L], plus a per-position [L], minus a
    per-channel [1, C, 1] (ELTWISE, not an affine: that needs N,C,H,W),
    all on the device."""
    b = OnnxBuilder("flat_head", seed=3)
    x = b.input("x", [1, C, H, W])
    flat = b.node("Reshape", [b.conv(x, C, 4, 3), b.const_i64([1, 4, H * W])])
    stride = b.const_f32(np.repeat([8.0, 16.0], [H * W // 2, H * W - H * W // 2]).reshape(1, H * W))
    boxes = b.node("Mul", [flat, stride])
    shifted = b.node("Add", [boxes, b.const_f32(np.linspace(0, 40, H * W).astype(np.float32))])
    centred = b.node("Sub", [shifted, b.const_f32(np.arange(4, dtype=np.float32).reshape(1, 4, 1))])
    _check(b.model([b.node("Identity", [centred], outputs=["boxes"])]), 1)


def test_the_outer_product_of_a_channels_last_layernorm():
    """Issue 55's compile crash: Mul(rsqrt(var) [1,1,H,W], gamma [1,C,1,1])
    was accepted (gamma is per channel) and aborted the compile at tiling;
    now it runs on the device with the mean over channels (a 1x1 Conv)."""
    b = OnnxBuilder("outer", seed=4)
    x = b.input("x", [1, C, H, W])
    var = b.node("ReduceMean", [b.node("Mul", [x, x])], axes=[1], keepdims=1)
    rsqrt = b.node("Div", [b.const_f32(1.0), b.node("Sqrt", [b.node("Add", [var, b.const_f32(1e-3)])])])
    gamma = b.const_f32(np.linspace(0.5, 1.5, C, dtype=np.float32).reshape(1, C, 1, 1))
    _check(b.model([b.node("Mul", [rsqrt, gamma], outputs=["scale"])]), 1)
