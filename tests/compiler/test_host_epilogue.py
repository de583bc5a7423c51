"""Output precision chosen by the target (compiler/target_snr.py): a
sigmoid head whose pre-activation grid is coarse (one channel's logits 20x
the other's on one grid) reaches the target only with the Sigmoid on the
host (``quant.host_outputs``) and its producer in 16 bits: the graph, the
numbers, the encodings round trip and the APIs bit for bit."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.compare import ErrorStats
from compiler.quantize import quantize_model
from passes.affinity import AffinityError
from runtime.hardware import HOST

SHAPE = [1, 3, 32, 32]
OUT = [1, 2, 32, 32]


@pytest.fixture(scope="module")
def head():
    """conv-relu-conv-relu, a 1x1 head (channel 1's logits 20x channel 0's), Sigmoid."""
    rng = np.random.default_rng(5)
    weights = {"w1": rng.normal(0, 0.5, (16, 3, 3, 3)), "w0": rng.normal(0, 0.15, (16, 16, 3, 3)),
               "w2": rng.normal(0, 1, (2, 16, 1, 1)) * np.array([0.3, 6.0]).reshape(2, 1, 1, 1)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r0"], name="relu0"),
             helper.make_node("Conv", ["r0", "w0"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
             helper.make_node("Relu", ["c2"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["logits"], name="head"),
             helper.make_node("Sigmoid", ["logits"], ["p"], name="sigmoid")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              [helper.make_tensor_value_info("p", TensorProto.FLOAT, OUT)],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    calibration = [rng.normal(0, 1, SHAPE).astype(np.float32) for _ in range(12)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = quantize_model(model, calibration_data=calibration)
        targeted = quantize_model(model, calibration_data=calibration, target_snr=30)
    return model, calibration, plain, targeted


def _snr(q, feeds) -> float:
    stats = ErrorStats()
    for x in feeds:
        stats.update(q.run_float({"x": x})["p"], q.run({"x": x})["p"])
    return stats.snr_db


def _cpu_node(q, name):
    return next(n for s in q.graph.nodes if s.attrs.get("device") == HOST for n in s.attrs["body"].nodes
                if name in (n.name, *n.annotations.get("source", ())))


def test_the_target_moves_the_final_sigmoid_to_the_host_and_widens_its_producer(head):
    _, calibration, plain, q = head
    assert plain.options.get("quant.host_outputs", ()) == () and _snr(plain, calibration) < 30
    report = q.target
    assert report.reached and report.host_outputs == ["sigmoid"] and "head" in report.promoted, report.summary()
    assert q.options["quant.host_outputs"] == ("sigmoid",) and q.host_outputs() == ("sigmoid",)
    sigmoid = _cpu_node(q, "sigmoid")
    assert sigmoid.op == "Sigmoid" and sigmoid.annotations["cpu_reason"].startswith("output precision:")
    producer = next(n for n in q.quantized_nodes() if "head" in n.annotations.get("source", ()))
    assert producer.op == "QConv" and producer.outputs[0].quant.dtype == np.int16
    assert not len(producer.attrs.get("table") or ())  # no table left on the device
    assert _snr(q, calibration) >= 30 > _snr(plain, calibration)
    assert 0 < report.host_ms < 0.1 and "host epilogue): sigmoid" in report.summary()
    assert report.to_metadata()["host_outputs"] == ["sigmoid"]


def test_a_host_output_survives_the_encodings_round_trip(head):
    model, calibration, _, q = head
    document = q.export_encodings()
    assert document["quantizer_args"]["tessera_host_outputs"] == ["sigmoid"]
    again = quantize_model(model, encodings=document)
    assert again.options["quant.host_outputs"] == ("sigmoid",)
    assert _cpu_node(again, "sigmoid").annotations["cpu_reason"].startswith("output precision:")
    for x in calibration[:2]:
        assert np.array_equal(again.run({"x": x})["p"], q.run({"x": x})["p"])


def test_only_an_outputs_final_pointwise_function_can_go_to_the_host(head):
    model, calibration, _, _ = head
    with pytest.raises(AffinityError, match="'relu1'.*not an output's final pointwise function"):
        quantize_model(model, calibration_data=calibration[:2], host_outputs=["relu1"])


def test_fwdnxt_run_run_sw_and_the_quantized_model_agree_bit_for_bit(head, tmp_path):
    from compiler.compile import compile_model
    from runtime import FWDNXT

    model, calibration, _, q = head
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compile_model(model, samples=calibration, target_snr=30, outfile=tmp_path / "h.bin")
    ie = FWDNXT()
    ie.Init(str(tmp_path / "h.bin"), "")
    hw, sw = np.empty(int(np.prod(OUT)), np.float32), np.empty(int(np.prod(OUT)), np.float32)
    for x in calibration[:2]:
        ie.Run(x, hw)
        ie.Run_sw(x, sw)
        expected = q.run({"x": x})["p"].ravel()
        assert np.array_equal(hw, expected) and np.array_equal(sw, expected)
    ie.Free()


def test_a_sigmoid_a_host_join_reads_is_an_output_s_final_function():
    """YOLO's output0 = Concat(boxes, Sigmoid(scores)), the Concat joined on
    the host (head grids): the Sigmoid is still the scores' final function,
    so the target may try it as a host epilogue and a user may name it."""
    from compiler.target_snr import _epilogues

    rng = np.random.default_rng(2)
    weights = {"w": rng.normal(0, 0.5, (8, 3, 3, 3)), "wb": 30 * rng.normal(0, 0.2, (4, 8, 1, 1)),
               "ws": rng.normal(0, 0.5, (3, 8, 1, 1))}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="stem"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "wb"], ["boxes"], name="boxes"),
             helper.make_node("Conv", ["r", "ws"], ["logits"], name="scores"),
             helper.make_node("Sigmoid", ["logits"], ["s"], name="sigmoid"),
             helper.make_node("Concat", ["boxes", "s"], ["y"], axis=1, name="join")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 7, 8, 8])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    calibration = [rng.normal(0, 1, (1, 3, 8, 8)).astype(np.float32) for _ in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantize_model(model, calibration_data=calibration, host_outputs=["sigmoid"])
    assert q.head_grids.joined == ["join"]
    reasons = {node.name: node.reason for node in q.coverage().cpu_nodes}
    assert "final Sigmoid runs in float on the host" in reasons["sigmoid"], reasons
    assert set(_epilogues(q.float_graph)) == {"sigmoid"}
