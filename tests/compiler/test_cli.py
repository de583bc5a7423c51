"""The tessera command line."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from compiler.cli import main


@pytest.fixture
def model_file(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    b = helper.make_tensor("b", TensorProto.FLOAT, [4], [0.5, -1, 2, 0])
    graph = helper.make_graph([helper.make_node("Add", ["x", "b"], ["s"], name="add"),
                               helper.make_node("Relu", ["s"], ["y"], name="relu")], "m", [x], [y], [b])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), path)
    return path


def test_show_prints_the_ir(model_file, capsys):
    assert main(["show", str(model_file), "--shape", "x=2x4"]) == 0
    out = capsys.readouterr().out
    assert "%y = Relu(%s) : f32[2,4]" in out


def test_run_prints_top_outputs_and_agreement(model_file, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.ones((1, 4), np.float32))
    assert main(["run", str(model_file), "--shape", "x=1x4", "--input", f"x={tmp_path / 'x.npy'}", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "top 2: #2: 3, #0: 1.5" in out
    assert "max|diff| / max|ref| = 0.00e+00, top-1 matches" in out


def test_errors_are_one_line_and_exit_nonzero(tmp_path, capsys):
    assert main(["show", str(tmp_path / "nope.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tessera: error: ") and "cannot read the model file" in err
    assert main(["run", "no_such_builtin"]) == 1


def test_symbolic_input_without_shape_says_how_to_fix(model_file, capsys):
    assert main(["show", str(model_file)]) == 1
    assert "give its shape" in capsys.readouterr().err


def test_ops_lists_supported_ops(capsys):
    assert main(["ops"]) == 0
    assert "Relu" in capsys.readouterr().out


def test_show_optimised_and_partitioned_with_dot(model_file, tmp_path, capsys):
    dot = tmp_path / "m.dot"
    assert main(["show", str(model_file), "--shape", "x=2x4", "-O"]) == 0
    assert "Fused(%x)" in capsys.readouterr().out
    assert main(["show", str(model_file), "--shape", "x=2x4", "--partition", "--timing", "--dot", str(dot)]) == 0
    out = capsys.readouterr().out
    assert "Segment(%x) {device='FPGA'}" in out and "fuse_ops" in out
    text = dot.read_text()
    assert text.startswith("digraph") and "cluster" in text and text.count("{") == text.count("}")
