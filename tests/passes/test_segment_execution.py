"""A partitioned graph runs segment by segment and gives the unpartitioned outputs."""
import numpy as np
import pytest

from codegen.cpu import lower_segments
from compiler.frontend import import_onnx
from compiler.pipeline import partition_graph
from compiler.zoo import load_light_model, mobilenet_v2, transformer_block
from ir import GraphBuilder, IRError
from runtime.compiled import DeviceSegment
from runtime.errors import ExecutionError
from runtime.isa import StreamKey
from runtime.segments import SegmentedProgram, SegmentExecutor
from runtime.trace import HostRecorder
from tests.helpers.graphs import random_feeds, run_graph

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
    partitioned = partition_graph(import_onnx(model))
    program = lower_segments(partitioned)
    executor = SegmentExecutor(program, check=True)
    got = executor.run(feeds)
    assert [s.name for s in program.segments] == [n.name for n in partitioned.nodes]
    recorder = HostRecorder()
    again = executor.run_batch([feeds], recorder=recorder)[0]
    spans = [span for span in recorder.snapshot() if span.track.endswith(": segments")]
    assert [span.name for span in spans] == [s.name for s in program.segments]
    assert all(span.end_s >= span.start_s for span in spans)
    for key in got:
        np.testing.assert_array_equal(again[key], got[key])
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-5)


def test_an_unpartitioned_graph_is_refused():
    b = GraphBuilder()
    with pytest.raises(IRError, match="is not partitioned"):
        lower_segments(b.build(b.Relu(b.input("x", [2]))))


def test_device_code_without_a_device_backend_is_named():
    segment = DeviceSegment("seg_0", [], [], {StreamKey(0, 0, 0): b""})
    with pytest.raises(ExecutionError, match="segment 'seg_0' is accelerator code .* no device backend"):
        SegmentExecutor(SegmentedProgram("m", [], [], [segment]))


def test_a_segment_of_an_unknown_kind_is_named():
    b = GraphBuilder()
    program = lower_segments(partition_graph(b.build(b.Relu(b.input("x", [2])))))
    program.segments.append(object())
    with pytest.raises(ExecutionError, match="is a object, which this runtime cannot run"):
        SegmentExecutor(program)
