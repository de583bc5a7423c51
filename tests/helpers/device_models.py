"""Small models that between them use every op and move the accelerator
lowers: the device tests' models (tests/codegen/test_device.py) and the
bounds-checked run's (tests/test_boundscheck.py)."""
from __future__ import annotations

import warnings

import numpy as np

from codegen.cpu import lower_to_program
from compiler.compile import build
from compiler.quantize import quantize_model
from compiler.zoo.builder import OnnxBuilder
from runtime.engine import Engine
from runtime.executor import Executor
from runtime.isa import validate_streams
from tests.oracle import run_reference


def kitchen_sink():
    """Every op the accelerator lowers but the moves (see moves()): dense, depthwise, dilated and 1x1
    convs with Relu/LeakyRelu/Clip, residual add, max and average pools
    (with padding and ceil mode), per-channel add, element-wise mul,
    sigmoid and tanh tables, channel concat, nearest upsampling, global
    pooling, flatten and a linear layer (hwlinear)."""
    b = OnnxBuilder("kitchen_sink", seed=3)
    x = b.input("x", [1, 3, 20, 24])
    a = b.node("Relu", [b.conv(x, 3, 8, 3)])
    p = b.node("MaxPool", [a], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)
    d = b.node("LeakyRelu", [b.conv(p, 8, 8, 3, groups=8)], alpha=0.1)
    e = b.node("Clip", [b.conv(d, 8, 16, 1), b.const_f32(0.0), b.const_f32(6.0)])
    r = b.node("Add", [b.conv(e, 16, 16, 3), e])
    s = b.node("Mul", [b.node("Sigmoid", [r]), b.node("Tanh", [e])])
    c = b.node("Add", [s, b.const_f32(np.linspace(-0.5, 0.5, 16).reshape(1, 16, 1, 1).astype(np.float32))])
    k = b.node("Concat", [c, r, d], axis=1)  # unequal inputs: their tiles share one slot layout
    w = b.weight((b.rng.standard_normal((8, 40, 3, 3)) * 0.1).astype(np.float32), "dil_w")
    dil = b.node("Relu", [b.node("Conv", [k, w], kernel_shape=[3, 3], dilations=[2, 2], pads=[2, 2, 2, 2])])
    up = b.node("Resize", [dil, "", b.const_f32([1, 1, 2, 2])], mode="nearest")
    avg = b.node("AveragePool", [up], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)
    g = b.node("Flatten", [b.node("GlobalAveragePool", [avg])])
    return b.model([b.linear(g, 8, 5)])


def modern_sink():
    """What modern exported CNNs add: SiLU and HardSwish (as Paddle writes
    it) after convolutions (their tables), grouped convolutions, a
    squeeze-and-excitation gate, PRelu after a conv and after a concat,
    division by per-channel constants, Sub/Max/Min of two tensors and
    Max with a constant, transposed convolutions (dense k4 s2 p1, depthwise
    k2 s2), average pools with pads not counted and ceil_mode, and a global
    average over a plane wider than POOL's window (a GEMM)."""
    b = OnnxBuilder("modern_sink", seed=5)
    x = b.input("x", [1, 3, 20, 24])
    c = b.conv(x, 3, 8, 3)
    a = b.node("Mul", [c, b.node("Sigmoid", [c])])                                          # SiLU
    g = b.conv(a, 8, 8, 3, groups=2)
    h = b.node("Mul", [g, b.node("Div", [b.node("Clip", [b.node("Add", [g, b.const_f32(3.0)]), b.const_f32(0.0),
                                                          b.const_f32(6.0)]), b.const_f32(6.0)])])  # HardSwish
    se = b.node("HardSigmoid", [b.conv(b.node("Relu", [b.conv(b.node("GlobalAveragePool", [h]), 8, 4, 1)]), 4, 8, 1)])
    e = b.node("Mul", [h, se])
    p = b.prelu(b.conv(e, 8, 8, 1), 8)
    k = b.node("Concat", [p, e], axis=1)
    q = b.node("Div", [b.prelu(k, 16), b.const_f32(np.linspace(1, 3, 16).reshape(1, 16, 1, 1).astype(np.float32))])
    m = b.node("Max", [b.node("Sub", [q, b.conv(k, 16, 16, 1)]), b.node("Min", [q, k])])
    m = b.node("Max", [m, b.const_f32(b.rng.uniform(-0.2, 0.2, (1, 16, 20, 24)).astype(np.float32))])
    d = b.node("Relu", [b.conv_transpose(b.conv(m, 16, 8, 3, stride=2), 8, 8, 4, 2, pad=1)])
    dw = b.conv_transpose(d, 8, 8, 2, 2, groups=8)
    avg = b.node("AveragePool", [dw], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)
    return b.model([b.node("GlobalAveragePool", [b.node("Concat", [avg, avg], axis=1)]),
                    b.node("GlobalAveragePool", [dw])])


def moves():
    """Every move the accelerator lowers, between convolutions: an NHWC
    input and output (edge Transposes the host absorbs), a channel Split
    (views), a channel shuffle, DepthToSpace, SpaceToDepth, a Pad on C, H
    and W and a Slice with steps."""
    b = OnnxBuilder("moves", seed=4)
    t = b.node("Transpose", [b.input("x", [1, 6, 8, 4])], perm=[0, 3, 1, 2])
    a = b.node("Relu", [b.conv(t, 4, 8, 3)])
    left, right = b.node("Split", [a], num_outputs=2, axis=1)
    c = b.node("Concat", [left, b.node("Relu", [b.conv(right, 4, 4, 1)])], axis=1)
    c = b.node("Transpose", [b.node("Reshape", [c, b.const_i64([1, 2, 4, 6, 8])])], perm=[0, 2, 1, 3, 4])
    c = b.node("Reshape", [c, b.const_i64([1, 8, 6, 8])])
    s = b.node("SpaceToDepth", [b.node("DepthToSpace", [c], blocksize=2, mode="CRD")], blocksize=2)
    p = b.node("Pad", [b.conv(s, 8, 8, 1), b.const_i64([0, 1, 1, 0, 0, 0, 0, 2]), b.const_f32(0.25)])
    sl = b.node("Slice", [p, b.const_i64([1, 0]), b.const_i64([9, 7]), b.const_i64([1, 3]), b.const_i64([2, 3])])
    return b.model([b.node("Transpose", [b.conv(sl, 4, 4, 1)], perm=[0, 2, 3, 1])])


def device_reference(graph, feeds) -> dict[str, np.ndarray]:
    """The integer reference on accelerator segments, the CPU executor on the rest."""
    def cpu(node, inputs):
        program = lower_to_program(node.attrs["body"])
        out = Executor(program).run(dict(zip(program.input_names, inputs)))
        return [out[n] for n in program.output_names]

    return run_reference(graph, feeds, cpu=cpu)


def quantize_seeded(model, config=None, **options):
    """(the QuantizedModel, its input shape): ``model`` quantized (and placed
    for ``config``) on four seeded samples."""
    if config is not None:
        options["options"] = {"target.hardware": config}
    rng = np.random.default_rng(1)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    samples = [rng.standard_normal(shape).astype(np.float32) for _ in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_model(model, calibration_data=samples, **options), shape


def assert_device_exact(quantized, shape, config, seeds=(0, 1)):
    """``quantized`` built for ``config`` (its streams validated) and run on
    the simulator for each seed's input, bit-exact to the integer reference,
    and so is the CPU path on the first; (the CompiledModel, its Engine)."""
    compiled = build(quantized.graph, config, quantized.float_graph)
    for segment in compiled.device_segments:
        validate_streams(segment.streams, config, compiled.dram_size)
    engine = Engine(compiled)
    for seed in seeds:
        feeds = {quantized.input_names[0]: np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}
        got, want = engine.run(feeds), device_reference(quantized.graph, feeds)
        cpu = quantized.run(feeds) if seed == seeds[0] else want  # the CPU kernels on the codes too (int16 MaxPool)
        for name in quantized.output_names:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"output {name}, config {config}")
            np.testing.assert_array_equal(cpu[name], want[name], err_msg=f"CPU path, output {name}")
    return compiled, engine
