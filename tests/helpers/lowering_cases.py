"""Random one-operator models through the schedule's lowerings (Resize,
Softmax along any axis, Transpose, Conv of any grouping with its fused
epilogues, ConvTranspose, AveragePool, Pad, Concat, Split, MatMul, Gemm,
LayerNormalization, Erf, Tanh, GELU, Pow and LRN): each runs scheduled on one and
two threads and step by step, and the scheduled runs must give the
per-step bits, and the per-step run the ONNX reference implementation's
or onnxruntime's result to float32 rounding. The attributes are drawn
across what exporters write and past it (every Resize coordinate and
nearest mode, scales and sizes, antialias; ranks 1 to 7; negative pads;
grouped, dilated, output-padded and depthwise convolutions), so a lowering that
declines a case is counted, not failed; a case the importer rejects is
counted too. bench/lowering_sweep.py runs the long campaign,
tests/runtime/test_schedule_heads.py a few cases of each kind."""
from __future__ import annotations

import collections

import numpy as np

from compiler.zoo.builder import OnnxBuilder
from runtime import parallel
from runtime.errors import TesseraError
from runtime.executor import Executor
from runtime.schedule import builder as schedule_builder
from tests.helpers.schedule import frozen_program

KINDS = ("resize", "softmax", "transpose", "conv", "conv_transpose", "average_pool", "pad", "concat_split", "matmul",
         "gemm", "layer_norm", "activation")


def _dims(rng, rank: int) -> list[int]:
    return [int(rng.choice([1, 2, 3, 5, 17])) for _ in range(rank)]


def _resize(b, rng):
    n, c, h, w = int(rng.integers(1, 3)), int(rng.integers(1, 6)), int(rng.integers(1, 30)), int(rng.integers(1, 30))
    x = b.input("x", [n, c, h, w])
    empty = b.constant([], np.float32)
    if rng.random() < 0.5:
        scales = [1, 1, float(rng.choice([0.3, 0.5, 1, 1.5, 2, 3])), float(rng.choice([0.5, 1, 2, 2.5, 4]))]
        inputs = [b.node("Sigmoid", [x]), empty, b.constant(scales, np.float32)]
    else:
        sizes = [n, c, int(rng.integers(1, 50)), int(rng.integers(1, 50))]
        inputs = [b.node("Sigmoid", [x]), empty, empty, b.constant(sizes, np.int64)]
    mode = str(rng.choice(["nearest", "linear"]))
    coordinates = str(rng.choice(["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel",
                                  "half_pixel_symmetric"]))
    nearest = str(rng.choice(["floor", "ceil", "round_prefer_floor", "round_prefer_ceil"]))
    y = b.node("Resize", inputs, mode=mode, coordinate_transformation_mode=coordinates, nearest_mode=nearest,
               antialias=int(rng.random() < 0.2))
    return [n, c, h, w], y


def _softmax(b, rng):
    rank = int(rng.integers(1, 5))
    shape = [int(rng.integers(1, 40)) for _ in range(rank)]
    op = str(rng.choice(["Softmax", "LogSoftmax"]))
    y = b.node(op, [b.node("Sigmoid", [b.input("x", shape)])], axis=int(rng.integers(-rank, rank)))
    return shape, y


def _transpose(b, rng):
    rank = int(rng.integers(2, 8))
    shape = _dims(rng, rank)
    y = b.node("Transpose", [b.node("Sigmoid", [b.input("x", shape)])], perm=[int(v) for v in rng.permutation(rank)])
    return shape, y


def _planes(b, rng):
    shape = [int(rng.integers(1, 3)), int(rng.integers(1, 9)), int(rng.integers(1, 30)), int(rng.integers(1, 30))]
    return shape, b.node("Sigmoid", [b.input("x", shape)])


def _conv(b, rng):
    """A convolution of constant weights and any grouping (one group, a
    few groups of one or more output channels each, depthwise, channel
    multipliers), strided, dilated and padded, with or without a bias,
    then as fused epilogues: a Relu or a Clip, and a residual Add where the
    shapes allow."""
    shape, x = _planes(b, rng)
    c = shape[1]
    group = int(rng.choice([g for g in range(1, c + 1) if c % g == 0]))
    out = group * int(rng.integers(1, 4))
    k, s, d = int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(1, 3))
    if (k - 1) * d + 1 > min(shape[2:]) + 2 * (k // 2):
        d = 1
    inputs = [x, b.weight(rng.standard_normal((out, c // group, k, k)).astype(np.float32))]
    if rng.random() < 0.6:
        inputs.append(b.weight(rng.standard_normal(out).astype(np.float32)))
    pad = int(rng.integers(0, k))
    y = b.node("Conv", inputs, kernel_shape=[k, k], strides=[s, s], pads=[pad] * 4, dilations=[d, d], group=group)
    if rng.random() < 0.5:
        y = b.node("Relu", [y]) if rng.random() < 0.5 else b.node("Clip", [y, b.const_f32(0.0), b.const_f32(6.0)])
    if out == c and s == 1 and 2 * pad == (k - 1) * d and rng.random() < 0.7:
        y = b.node("Add", [y, x])
    return shape, y


def _conv_transpose(b, rng):
    shape, x = _planes(b, rng)
    c = shape[1]
    k, s, d = int(rng.integers(1, 5)), int(rng.integers(1, 4)), int(rng.integers(1, 3))
    draw = rng.random()
    group = c if draw < 0.4 else int(rng.choice([g for g in range(1, c + 1) if c % g == 0])) if draw < 0.6 else 1
    out = c if group == c else group * int(rng.integers(1, 9 // group + 1))
    inputs = [x, b.weight(rng.standard_normal((c, out // group, k, k)).astype(np.float32))]
    if rng.random() < 0.5:
        inputs.append(b.weight(rng.standard_normal(out).astype(np.float32)))
    extra = int(rng.integers(0, max(s, d)))
    y = b.node("ConvTranspose", inputs, kernel_shape=[k, k], strides=[s, s], pads=[int(rng.integers(0, k))] * 4,
               group=group, output_padding=[extra, extra], dilations=[d, d])
    return shape, y


def _average_pool(b, rng):
    shape, x = _planes(b, rng)
    k, s = int(rng.integers(1, 5)), int(rng.integers(1, 4))
    y = b.node("AveragePool", [x], kernel_shape=[k, k], strides=[s, s], pads=[int(rng.integers(0, k))] * 4,
               ceil_mode=int(rng.random() < 0.5), count_include_pad=int(rng.random() < 0.5))
    return shape, y


def _pad(b, rng):
    rank = int(rng.integers(1, 7))
    shape = _dims(rng, rank)
    mode = str(rng.choice(["constant", "edge", "reflect", "wrap"]))
    inputs = [b.node("Sigmoid", [b.input("x", shape)]), b.constant([int(rng.integers(-1, 4)) for _ in range(2 * rank)],
                                                                    np.int64)]
    if mode == "constant" and rng.random() < 0.5:
        inputs.append(b.constant(float(rng.choice([0.0, -1.5, np.inf, np.nan])), np.float32))
    return shape, b.node("Pad", inputs, mode=mode)


def _concat_split(b, rng):
    rank = int(rng.integers(1, 5))
    shape = _dims(rng, rank)
    axis = int(rng.integers(-rank, rank))
    x = b.node("Sigmoid", [b.input("x", shape)])
    joined = b.node("Concat", [x, b.node("Sigmoid", [x]), x], axis=axis)
    parts = b.node("Split", [joined], num_outputs=int(rng.integers(1, 4)) if shape[axis] * 3 >= 3 else 1, axis=axis)
    parts = parts if isinstance(parts, list) else [parts]
    return shape, b.node("Concat", [b.node("Sigmoid", [p]) for p in parts][::-1], axis=axis)


def _matmul(b, rng):
    """Two computed operands of ranks 1 to 4, batch dims that match,
    broadcast or fold (a 2-D B), some of them empty, some too small or
    narrow for Tessera's GEMM (numpy's, per step and in a schedule)."""
    sides = [33, 40, 64, 70] if rng.random() < 0.7 else [1, 5, 9, 33, 40, 64]  # mostly attention's sizes
    m, k, n = (int(rng.choice(sides)) for _ in range(3))
    batch = _dims(rng, int(rng.integers(0, 3)))
    form = rng.random()
    if form < 0.5:  # attention's: the same batch dims
        a_batch = b_batch = batch
    elif form < 0.7:  # B without a batch: A's rows fold into one product
        a_batch, b_batch = batch, []
    else:  # broadcast either way
        a_batch = [d if rng.random() < 0.7 else 1 for d in batch][int(rng.integers(0, len(batch) + 1)):]
        b_batch = [d if rng.random() < 0.7 else 1 for d in batch][int(rng.integers(0, len(batch) + 1)):]
    a_shape = [k] if rng.random() < 0.05 else [*a_batch, m, k]
    b_shape = [k] if rng.random() < 0.05 else [*b_batch, k, n]
    if rng.random() < 0.05:
        a_shape[-1] = b_shape[-2 if len(b_shape) > 1 else 0] = 0
    y = b.node("MatMul", [b.node("Sigmoid", [b.input("x", a_shape)]), b.node("Tanh", [b.input("y", b_shape)])])
    return [a_shape, b_shape], y


def _gemm(b, rng):
    """A computed A by constant weights: rows under and over FEW_ROWS,
    either transposition, alpha and beta, every form of a constant C."""
    m, k, n = int(rng.choice([1, 3, 7, 8, 9, 33, 197])), int(rng.choice([1, 5, 16, 70])), int(rng.choice([1, 4, 48]))
    trans_a, trans_b = int(rng.random() < 0.1), int(rng.random() < 0.6)
    x = b.input("x", [k, m] if trans_a else [m, k])
    w = b.const_f32(b.rng.standard_normal((n, k) if trans_b else (k, n)))
    c_shape = [None, (n,), (1, n), (), (m, 1), (m, n)][int(rng.choice(6, p=[0.25, 0.35, 0.1, 0.1, 0.1, 0.1]))]
    inputs = [b.node("Sigmoid", [x]), w] + ([] if c_shape is None else [b.const_f32(b.rng.standard_normal(c_shape))])
    return [k, m] if trans_a else [m, k], b.node("Gemm", inputs, transA=trans_a, transB=trans_b,
                                                   alpha=float(rng.choice([1.0, 1.0, 0.5])),
                                                   beta=float(rng.choice([1.0, 1.0, -2.0])))


def _layer_norm(b, rng):
    """Any axis; a scale and a bias of the normalised shape or one that broadcasts to it, or no bias."""
    rank = int(rng.integers(1, 5))
    shape = _dims(rng, rank)
    axis = int(rng.integers(-rank, rank))
    normalized = shape[axis:]
    param = normalized[int(rng.integers(0, len(normalized))):] if rng.random() < 0.3 else normalized
    inputs = [b.node("Sigmoid", [b.input("x", shape)]), b.const_f32(b.rng.uniform(0.5, 1.5, param))]
    if rng.random() < 0.7:
        inputs.append(b.const_f32(b.rng.standard_normal(param)))
    return shape, b.node("LayerNormalization", inputs, axis=axis, epsilon=float(rng.choice([1e-5, 1e-3, 0.5])))


def _activation(b, rng):
    """Erf, Tanh, GELU written out as exporters write it, opset 20's Gelu
    (either approximation), a Pow by a constant, or an LRN (of rank 3 or
    more), over any shape."""
    shape = _dims(rng, int(rng.integers(1, 5)))
    x = b.node("Mul", [b.input("x", shape), b.const_f32(float(rng.choice([1.0, 3.0, 40.0])))])
    op = str(rng.choice(["Erf", "Tanh", "gelu", "none", "tanh", "Pow", "LRN"]))
    if op == "Pow":
        exponent = float(rng.choice([2.0, 3.0, -1.0, 0.5, -0.5, 0.75, -0.75, 1.3]))
        return shape, b.node("Pow", [b.node("Abs", [x]) if rng.random() < 0.7 else x, b.const_f32(exponent)])
    if op == "LRN" and len(shape) >= 3:
        return shape, b.node("LRN", [x], size=int(rng.integers(1, 6)), alpha=float(rng.choice([1e-4, 0.01])),
                             beta=float(rng.choice([0.75, 0.6])), bias=float(rng.choice([1.0, 2.0])))
    if op == "LRN":
        op = "Tanh"
    if op in ("none", "tanh"):
        b.opset = 20
        return shape, b.node("Gelu", [x], approximate=op)
    if op != "gelu":
        return shape, b.node(op, [x])
    erf = b.node("Erf", [b.node("Div", [x, b.const_f32(np.sqrt(2.0))])])
    return shape, b.node("Mul", [b.node("Mul", [x, b.const_f32(0.5)]), b.node("Add", [erf, b.const_f32(1.0)])])


_BUILD = {"resize": _resize, "softmax": _softmax, "transpose": _transpose, "conv": _conv,
          "conv_transpose": _conv_transpose, "average_pool": _average_pool, "pad": _pad, "concat_split": _concat_split,
          "matmul": _matmul, "gemm": _gemm, "layer_norm": _layer_norm, "activation": _activation}


def case(seed: int, index: int, kind: str | None = None):
    """(kind, model, input shape or shapes) of case ``index`` of campaign ``seed``."""
    rng = np.random.default_rng([seed, index])
    kind = kind or str(rng.choice(KINDS))
    b = OnnxBuilder(f"{kind}_{index}", seed=index)
    b.opset = 19
    shape, y = _BUILD[kind](b, rng)
    return kind, b.model([b.node("Sigmoid", [y])]), shape


def run_case(seed: int, index: int, kind: str | None = None) -> tuple[str, str]:
    """The kind and outcome of one case: "lowered" (every step lowered, the
    per-step bits on 1 and 2 threads), "declined" (some step stayed a
    Python step: same check), "rejected" (the importer or the per-step
    kernel refused it with a named error: any other exception propagates),
    "MISMATCH ..." naming what differs, or "WRONG ..." where the per-step
    run is neither the ONNX reference implementation's result nor
    onnxruntime's to float32 rounding (where either runs the case)."""
    kind, model, shape = case(seed, index, kind)
    shapes = shape if shape and isinstance(shape[0], list) else [shape]  # one input's shape, or each one's
    try:
        program = frozen_program(model)
        rng = np.random.default_rng(index)
        feeds = {program.slots[slot]: rng.standard_normal(s).astype(np.float32)
                 for slot, s in zip(program.inputs, shapes)}
        previous = schedule_builder.ENABLED
        schedule_builder.ENABLED = False
        try:
            expected = Executor(program).run(feeds)
        finally:
            schedule_builder.ENABLED = previous
    except TesseraError:
        return kind, "rejected"
    references = _references(model, feeds)
    result = list(expected.values())[0]
    if references and not any(r.shape == result.shape and np.allclose(result, r, rtol=1e-4, atol=1e-5, equal_nan=True)
                              for r in references):
        return kind, f"WRONG {kind} case {index}: per step against the ONNX reference and onnxruntime"
    lowered = True
    threads = parallel.NUM_THREADS
    try:
        for count in (1, 2):
            parallel.NUM_THREADS = count
            executor = Executor(program)
            got = executor.run(feeds)
            lowered = lowered and executor._schedule().lowered == len(executor._plan(tuple(program.outputs)))
            for name, value in expected.items():
                if got[name].shape != value.shape or not np.array_equal(
                        np.ascontiguousarray(got[name]).view(np.uint8), np.ascontiguousarray(value).view(np.uint8)):
                    return kind, f"MISMATCH {kind} case {index} on {count} thread(s): {name}"
    finally:
        parallel.NUM_THREADS = threads
    return kind, "lowered" if lowered else "declined"


def _spec_lrn():
    """The ONNX reference implementation's LRN as the specification words
    it: onnx 1.23's (onnx/reference/ops/op_lrn.py) sums the window for
    channels up to the batch size only (it loops over axis 0), leaving the
    other channels unnormalised, and onnxruntime refuses an even size: an
    LRN of more channels than images and of even size had no reference
    (lowering sweep, seed 1191, case 670)."""
    import math

    from onnx.reference.op_run import OpRun

    class LRN(OpRun):
        def _run(self, x, alpha=None, beta=None, bias=None, size=None):
            before, after = math.floor((size - 1) / 2), math.ceil((size - 1) / 2)
            wide = x.astype(np.float64)
            sums = np.zeros_like(wide)
            for c in range(x.shape[1]):
                sums[:, c] = np.sum(wide[:, max(0, c - before):c + after + 1] ** 2, axis=1)
            return ((wide / (bias + alpha / size * sums) ** beta).astype(x.dtype),)

    return LRN


def _references(model, feeds) -> list[np.ndarray]:
    """The outputs of the ONNX reference implementation (onnx.reference:
    the operators' specification as numpy) and of onnxruntime, where each
    runs the model. Each departs from the specification somewhere the
    other does not (onnxruntime on some Resize coordinate modes, the
    reference on grouped ConvTransposes), so a result is right when it is
    either one's."""
    import onnxruntime
    from onnx.reference import ReferenceEvaluator

    quiet = onnxruntime.SessionOptions()
    quiet.log_severity_level = 4  # its refusals are expected here, not news
    runs = [lambda: ReferenceEvaluator(model, new_ops=[_spec_lrn()]).run(None, feeds)[0],
            lambda: onnxruntime.InferenceSession(model.SerializeToString(), quiet,
                                                 providers=["CPUExecutionProvider"]).run(None, feeds)[0]]
    outputs = []
    for run in runs:
        try:
            outputs.append(np.asarray(run()))
        except Exception:  # noqa: BLE001 - their own errors: no reference from that one
            pass
    return outputs


def sweep(seed: int, cases, kind: str | None = None) -> collections.Counter:
    """Outcomes of ``cases`` by kind."""
    return collections.Counter(run_case(seed, index, kind) for index in cases)
