"""lower_lrn: an accelerator LRN becomes x*x, a banded 1x1 Conv, scalar
tables and a Mul, computing the LRN kernel's values; an LRN the target
refuses stays an LRN on the CPU with the reason; a model with LRNs runs
in one device segment, bit for bit the integer reference, close to float."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from codegen.cpu import lower_to_program
from compiler.compile import build
from compiler.quantize import quantize_model
from compiler.zoo.builder import OnnxBuilder
from ir import GraphBuilder
from passes.affinity import REASON, assign_affinity
from passes.infra import PassContext
from passes.lower_lrn import lower_lrn, window_matrix
from passes.quant.metrics import snr_db
from runtime.engine import Engine
from runtime.executor import Executor
from runtime.hardware import HardwareConfig
from runtime.kernels import run_kernel
from tests.helpers.graphs import apply, ops, random_feeds, run_graph
from tests.oracle import run_reference

rng = np.random.default_rng(0)
LRN = {"size": 5, "alpha": 0.5, "beta": 0.75, "bias": 2.0}


def lrn_net(shape=(1, 6, 5, 5), **attrs):
    b = GraphBuilder("lrn")
    x = b.input("x", list(shape))
    return b.build(b.LRN(b.Relu(x, name="relu"), name="norm", **{**LRN, **attrs}))


def placed(graph, **options):
    with PassContext(options=options):
        return assign_affinity(graph)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 6])
def test_the_window_matrix_sums_the_channels_lrn_sums(size):
    x = rng.standard_normal((1, 7, 2, 3)).astype(np.float32)
    (want,) = run_kernel("LRN", [x], {"size": size, "alpha": float(size), "beta": 1.0, "bias": 0.0})
    window = np.einsum("oi,nihw->nohw", window_matrix(7, size)[:, :, 0, 0], x * x)
    np.testing.assert_allclose(x / window, want, rtol=1e-5)


def test_an_accelerator_lrn_becomes_ops_the_accelerator_has_and_computes_the_same():
    graph = placed(lrn_net())
    feeds = random_feeds(graph)
    want = run_graph(graph, feeds)
    lowered = apply(lower_lrn, graph)
    assert ops(lowered) == ["Relu", "Mul", "Conv", "Mul", "Add", "Pow", "Mul"]
    assert [n.name for n in lowered.nodes][1:] == ["norm::square", "norm::window", "norm::scale", "norm::shift",
                                                   "norm::power", "norm"]
    assert {n.affinity for n in lowered.nodes} == {"FPGA"}
    got = run_graph(lowered, feeds)
    np.testing.assert_allclose(got["norm"], want["norm"], rtol=1e-5)


@pytest.mark.parametrize("shape, attrs, why", [
    ((1, 6, 5), {}, "rank-3"),
    ((1, 6, 5, 5), {"bias": 0.0}, "unbounded or undefined"),
    ((1, 6, 5, 5), {"alpha": -1.0}, "unbounded or undefined"),
])
def test_an_lrn_the_accelerator_cannot_take_stays_on_the_cpu_with_its_reason(shape, attrs, why):
    graph = apply(lower_lrn, placed(lrn_net(shape, **attrs)))
    norm = graph.node("norm")
    assert norm.op == "LRN" and norm.affinity == "CPU" and why in norm.annotations[REASON]


def lrn_model():
    """Conv -> Relu -> LRN -> Conv, as AlexNet's first layers (a strong LRN)."""
    b = OnnxBuilder("lrn_model", seed=3)
    x = b.input("x", [1, 3, 16, 16])
    y = b.node("Relu", [b.conv(x, 3, 16, 3)])
    y = b.node("LRN", [y], **LRN)
    return b.model([b.conv(y, 16, 8, 3)])


def cpu_segment(node, inputs):
    program = lower_to_program(node.attrs["body"])
    out = Executor(program).run(dict(zip(program.input_names, inputs)))
    return [out[n] for n in program.output_names]


def test_a_model_with_lrn_runs_in_one_device_segment_exactly_and_close_to_float():
    samples = [rng.standard_normal((1, 3, 16, 16)).astype(np.float32) for _ in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = quantize_model(lrn_model(), calibration_data=samples, calibration_count=4)
    report = quantized.coverage()
    assert report.device_segments == 1 and report.cpu_onnx_nodes == 0, report.summary_line()
    engine = Engine(build(quantized.graph, HardwareConfig(), quantized.float_graph))
    feeds = {quantized.input_names[0]: samples[0]}
    got, want = engine.run(feeds), run_reference(quantized.graph, feeds, cpu=cpu_segment)
    (output,) = quantized.output_names
    np.testing.assert_array_equal(got[output], want[output])
    assert snr_db(quantized.run_float(feeds)[output], got[output]) >= 30
