"""A partitioned graph runs segment by segment and gives the unpartitioned outputs."""
import numpy as np
import pytest

from codegen.cpu import lower_segments
from compiler.frontend import import_onnx
from compiler.pipeline import partition_graph
from compiler.zoo import load_light_model, mobilenet_v2, transformer_block
from ir import GraphBuilder, IRError
from runtime.errors import ExecutionError
from runtime.segments import SegmentExecutor
from tests.passes.util import random_feeds, run_graph

MODELS = {
    "inception_v1": lambda: load_light_model("inception_v1"),
    "mobilenet_v2": lambda: mobilenet_v2(image=64, width=0.35),
    "transformer": transformer_block,
}


@pytest.mark.parametrize("name", MODELS)
def test_segments_run_in_order_and_match_the_unpartitioned_graph(name):
    model = MODELS[name]()
    reference = import_onnx(model)
    feeds = random_feeds(reference)
    want = run_graph(reference, feeds)
    program = lower_segments(partition_graph(import_onnx(model)))
    executor = SegmentExecutor(program, check=True)
    got = executor.run(feeds)
    assert {s.device for s in program.segments} <= {"FPGA", "CPU"} and len(executor.last_times) == len(program.segments)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-5)


def test_an_unpartitioned_graph_is_refused():
    b = GraphBuilder()
    with pytest.raises(IRError, match="is not partitioned"):
        lower_segments(b.build(b.Relu(b.input("x", [2]))))


def test_a_device_without_a_runner_is_named():
    b = GraphBuilder()
    graph = partition_graph(b.build(b.Relu(b.input("x", [2]))))
    program = lower_segments(graph)
    program.segments[0].device = "GPU"
    with pytest.raises(ExecutionError, match="device 'GPU'"):
        SegmentExecutor(program)
