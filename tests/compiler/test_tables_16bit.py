"""Lookup tables read by 16-bit codes (docs/isa.md, CONV's ``lut_wide`` and
LUT's ``wide``; runtime.qscheme.wide_lookup): a convolution with its SiLU
moved to 16 bits keeps 16 bits through its function, a Sigmoid reading a
16-bit sum is a 513-entry table, and the binary, FWDNXT's Run and Run_sw and
the quantized model agree bit for bit."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.compare import ErrorStats
from compiler.quantize import quantize_model

SHAPE = [1, 3, 12, 12]
OUT = [1, 4, 12, 12]
WIDE = {"conv1": "int16", "add": "int16"}


@pytest.fixture(scope="module")
def model():
    """conv1 + SiLU, conv2 + SiLU, their sum, a Sigmoid of the sum (a table
    of its own: no convolution to fuse into), a 1x1 convolution."""
    rng = np.random.default_rng(7)
    weights = {"w1": rng.normal(0, 0.6, (8, 3, 3, 3)), "w2": rng.normal(0, 0.3, (8, 8, 3, 3)),
               "w3": rng.normal(0, 0.5, (4, 8, 1, 1))}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Sigmoid", ["c1"], ["g1"], name="sig1"),
             helper.make_node("Mul", ["c1", "g1"], ["a1"], name="mul1"),
             helper.make_node("Conv", ["a1", "w2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
             helper.make_node("Sigmoid", ["c2"], ["g2"], name="sig2"),
             helper.make_node("Mul", ["c2", "g2"], ["a2"], name="mul2"),
             helper.make_node("Add", ["a1", "a2"], ["s"], name="add"),
             helper.make_node("Sigmoid", ["s"], ["p"], name="gate"),
             helper.make_node("Conv", ["p", "w3"], ["y"], name="conv3")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, OUT)],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()])
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    calibration = [rng.normal(0, 1, SHAPE).astype(np.float32) for _ in range(8)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = quantize_model(onnx_model, calibration_data=calibration)
        wide = quantize_model(onnx_model, calibration_data=calibration, layer_precision=WIDE)
    return onnx_model, calibration, plain, wide


def _node(q, name):
    return next(n for n in q.quantized_nodes() if name in n.annotations.get("source", ()))


def test_16_bit_layers_with_tables_read_16_bit_codes(model):
    _, calibration, plain, wide = model
    conv1, gate = _node(wide, "conv1"), _node(wide, "gate")
    assert conv1.op == "QConv" and len(conv1.attrs["table"]) == 513 and conv1.outputs[0].type.dtype == np.int16
    assert gate.op == "QLut" and gate.inputs[0].type.dtype == np.int16 and len(gate.attrs["table"]) == 513
    assert gate.outputs[0].type.dtype == np.int16  # a table's output is as wide as the codes it reads
    conv2 = _node(wide, "conv2")  # left at 8 bits: its table reads 8-bit codes
    assert len(conv2.attrs["table"]) == 256 and conv2.outputs[0].type.dtype == np.int8
    assert len(_node(plain, "conv1").attrs["table"]) == 256

    def snr(q):
        stats = ErrorStats()
        for x in calibration:
            stats.update(q.run_float({"x": x})["y"], q.run({"x": x})["y"])
        return stats.snr_db

    assert snr(wide) > snr(plain) + 3


def test_the_binary_run_and_run_sw_agree_with_the_quantized_model_bit_for_bit(model, tmp_path):
    from compiler.compile import compile_model
    from runtime import FWDNXT
    from runtime.binary import read_binary
    from runtime.engine import Engine
    from runtime.isa import Op, decode

    onnx_model, calibration, _, wide = model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compile_model(onnx_model, samples=calibration, layer_precision=WIDE, outfile=tmp_path / "t.bin")
    fields = [(ins.op, ins.fields) for segment in read_binary(tmp_path / "t.bin").device_segments
              for stream in segment.streams.values() for ins in decode(stream)]
    assert any(op == Op.CONV and f["lut"] == 1 and f["lut_wide"] == 1 and f["out_bits"] == 16 for op, f in fields)
    assert any(op == Op.CONV and f["lut"] == 1 and f["lut_wide"] == 0 for op, f in fields)  # conv2: 8-bit codes
    assert any(op == Op.LUT and f["wide"] == 1 for op, f in fields)  # the gate
    ie = FWDNXT()
    ie.Init(str(tmp_path / "t.bin"), "")
    hw, sw = np.empty(int(np.prod(OUT)), np.float32), np.empty(int(np.prod(OUT)), np.float32)
    engine = Engine(read_binary(tmp_path / "t.bin"))  # what the IE, kp and Simulator facades run
    for x in calibration[:3]:
        ie.Run(x, hw)
        ie.Run_sw(x, sw)
        expected = wide.run({"x": x})["y"].ravel()
        assert np.array_equal(hw, expected) and np.array_equal(sw, expected)
        assert np.array_equal(engine.run({"x": x})["y"].ravel(), expected)
    ie.Free()


@pytest.mark.parametrize("which", ["plain", "wide"])
def test_tables_survive_the_encodings_round_trip(model, which):
    """The exported encodings carry the grid a convolution's table reads
    (the value before conv1's SiLU, 8- or 16-bit): a re-import calibrates
    nothing, builds the same tables and gives the same outputs bit for bit
    (before, that grid was missing and calibrated again, on random inputs)."""
    onnx_model, calibration, plain, wide = model
    q = {"plain": plain, "wide": wide}[which]
    document = q.export_encodings()
    assert "c1" in document["activation_encodings"] and "c2" in document["activation_encodings"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = quantize_model(onnx_model, encodings=document)
    assert _node(again, "conv1").attrs["table"] == _node(q, "conv1").attrs["table"]
    assert len(_node(again, "conv1").attrs["table"]) == (513 if which == "wide" else 256)
    for x in calibration[:2]:
        assert np.array_equal(again.run({"x": x})["y"], q.run({"x": x})["y"])
