"""The tessera command line."""
import os
import subprocess
import sys
import tempfile

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
    assert main(["run", str(model_file), "--cpu", "--shape", "x=1x4", "--input", f"x={tmp_path / 'x.npy'}",
                 "--top", "2"]) == 0
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


def _resnet_file(tmp_path):
    from compiler.zoo import resnet

    path = tmp_path / "r.onnx"
    onnx.save(resnet(depth=10, image=32, classes=10, width=8), path)
    return path


def test_compile_run_disasm_info_a_binary(tmp_path, capsys):
    """The device workflow: compile to a binary, run it on the simulator,
    disassemble it with provenance, describe it with cycles per layer."""
    model, binary = _resnet_file(tmp_path), tmp_path / "r.bin"
    assert main(["compile", str(model), "--image", "32x32x3", "-o", str(binary), "--calibration", "photos",
                 "--count", "4"]) == 0
    assert f"to {binary}" in capsys.readouterr().out
    np.save(tmp_path / "x.npy", np.ones((1, 3, 32, 32), np.float32))
    assert main(["run", str(binary), "--input", str(tmp_path / "x.npy"), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "on the simulator" in out and "hwtime" in out and "top 3:" in out
    assert "agreement with the float reference (Run_th) on probabilities: SNR" in out
    assert main(["disasm", str(binary), "--limit", "40"]) == 0
    out = capsys.readouterr().out
    assert "CONV" in out and "# conv_" in out and "instructions" in out
    assert main(["info", str(binary)]) == 0
    out = capsys.readouterr().out
    assert "section META" in out and "estimated accelerator time (hwtime)" in out
    assert "QConv" in out and "CPU," in out


def test_split_mode_decisions_show_in_show_and_info(tmp_path, capsys):
    """--split over 2 clusters: show --partition and info print each layer's
    split with each cluster's share; info each cluster's occupancy and its
    barrier waits; an override is followed."""
    model, binary = _resnet_file(tmp_path), tmp_path / "s.bin"
    assert main(["show", str(model), "--partition", "--numclus", "2", "--split"]) == 0
    shown = capsys.readouterr().out
    assert "split: per layer" in shown and "0:0-" in shown and "1:" in shown
    layer = next(line.split()[0] for line in shown.splitlines() if " QConv " in line and " clusters " in line)
    assert main(["compile", str(model), "--image", "32x32x3", "-o", str(binary), "--count", "2", "--numclus", "2",
                 "--split", "--split-override", f"{layer}=rows"]) == 0
    capsys.readouterr()
    assert main(["info", str(binary)]) == 0
    out = capsys.readouterr().out
    assert "placement: split mode, 1 card(s) x 2 cluster(s), 1 image(s) per run" in out
    assert any(line.split()[:4] == [layer, "QConv", "clusters", "rows"] for line in out.splitlines())
    rows = [line.split() for line in out.splitlines() if line.startswith("  0.0 ") or line.startswith("  0.1 ")]
    assert len(rows) == 2 and all(int(r[1]) > 0 and int(r[4]) >= 0 and r[5].endswith("%") for r in rows)


def test_mvbatch_compiles_from_the_command_line(tmp_path, capsys):
    model, binary = _resnet_file(tmp_path), tmp_path / "m.bin"
    assert main(["compile", str(model), "--image", "32x32x3", "-o", str(binary), "--count", "2",
                 "--imgs-per-cluster", "4", "--mvbatch"]) == 0
    capsys.readouterr()
    assert main(["info", str(binary)]) == 0
    assert "1 card(s) x 1 cluster(s), 4 image(s) per run, mvbatch" in capsys.readouterr().out
    assert main(["compile", str(model), "--image", "32x32x3", "-o", str(binary), "--count", "2", "--mvbatch"]) == 1
    assert "imgs_per_cluster a multiple of 4" in capsys.readouterr().err


def test_compile_verbose_prints_the_seconds_of_each_stage(tmp_path, capsys):
    model, binary = _resnet_file(tmp_path), tmp_path / "v.bin"
    assert main(["compile", str(model), "--image", "32x32x3", "-o", str(binary), "--count", "2", "-v"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("stages (s): "))
    stages = dict(part.rsplit(" ", 1) for part in line[len("stages (s): "):].split("; ")[0].split(", "))
    assert list(stages) == ["import", "simplify", "place", "quantize: lowering", "calibration: float runs",
                            "calibration: statistics", "quantize: rewrite", "bias correction", "quantize: rest",
                            "plan", "codegen", "reference", "write"]
    assert all(float(seconds) >= 0 for seconds in stages.values())


def test_run_compiles_a_model_first(tmp_path, capsys):
    model = _resnet_file(tmp_path)
    assert main(["run", str(model), "--calibration", "photos", "--count", "2", "-o", str(tmp_path / "m.bin"),
                 "--hardware", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "compiled in" in out and (tmp_path / "m.bin").exists() and "top-1" in out
    assert main(["info", str(tmp_path / "m.bin")]) == 0
    assert "1 card(s) x 1 clusters" in capsys.readouterr().out
    assert main(["compile", str(model), "-o", str(tmp_path / "x.bin"), "--hardware", "nope"]) == 1
    assert "neither a preset" in capsys.readouterr().err


def test_run_without_an_output_leaves_no_temporary_binary(tmp_path, capsys, monkeypatch):
    model = _resnet_file(tmp_path)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert main(["run", str(model), "--count", "1", "--hardware", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "to a temporary binary (-o PATH keeps it)" in out and "top-1" in out
    assert list(scratch.iterdir()) == []


def test_binary_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x89TSR\r\n\x1a\n" + b"\0" * 10)
    assert main(["info", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tessera: error: ") and len(err.strip().splitlines()) == 1


def test_compile_checks_its_output_before_compiling(model_file, tmp_path, capsys, monkeypatch):
    """-o into a missing folder or onto a folder: one line naming -o and the
    cause, before anything is compiled (compile_model must not be reached)."""
    def compile_model(*args, **kwargs):
        raise AssertionError("compiled before -o was checked")

    monkeypatch.setattr("compiler.compile.compile_model", compile_model)
    for output, cause in ((tmp_path / "missing" / "m.bin", "its folder"), (tmp_path, "is a directory")):
        status = main(["compile", str(model_file), "--shape", "x=1x4", "-o", str(output)])
        err = capsys.readouterr().err
        assert status == 1 and err.count("\n") == 1, err
        assert err.startswith(f"tessera: error: -o {output}: ") and cause in err


@pytest.mark.parametrize("shape, says", [
    ("x=100000000000x4", "has 400000000000 elements, more than the limit of 1073741824"),
    ("x=" + "9" * 30 + "x4", "more than the limit of 1073741824"),
    ("x=0x4", "every dim must be at least 1"),
    ("1x4", "must look like NAME=1x3x224x224")])
def test_shape_errors_are_named_before_anything_is_allocated(model_file, capsys, shape, says):
    assert main(["run", str(model_file), "--cpu", "--shape", shape]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"tessera: error: --shape {shape!r}") and says in err and err.count("\n") == 1, err


def test_huge_image_size_is_refused_before_import(model_file, capsys):
    assert main(["show", str(model_file), "--image", "100000x100000x3"]) == 1
    assert "--image '100000x100000x3' has 30000000000 elements" in capsys.readouterr().err


def test_input_arrays_are_checked_before_numpy_allocates(model_file, tmp_path, capsys):
    """A .npy header promising 10^15 values, one longer than its file, a
    pickled array and a FIFO: each one line naming --input and why."""
    def header(name, shape):
        with open(tmp_path / name, "wb") as handle:
            np.lib.format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False, "shape": shape})
            handle.write(bytes(16))
        return tmp_path / name

    np.save(tmp_path / "pickled.npy", np.array([{}], dtype=object), allow_pickle=True)
    os.mkfifo(tmp_path / "pipe.npy")
    cases = {header("huge.npy", (10 ** 15,)): "(1000000000000000 elements), more than the",
             header("short.npy", (1, 4, 100)): "(1600 bytes) but the file holds 16 bytes",
             tmp_path / "pickled.npy": "holds Python objects", tmp_path / "pipe.npy": "it is a FIFO"}
    for path, says in cases.items():
        assert main(["run", str(model_file), "--cpu", "--input", f"x={path}"]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"tessera: error: --input 'x={path}': ") and says in err and err.count("\n") == 1, err


def test_model_and_dot_paths_that_are_not_files_are_named(model_file, tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe.onnx")
    assert main(["show", str(tmp_path / "pipe.onnx")]) == 1
    assert "pipe.onnx: cannot read the model file: it is a FIFO" in capsys.readouterr().err
    assert main(["show", str(model_file), "--shape", "x=1x4", "--dot", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"tessera: error: --dot {tmp_path}: is a directory, not a file\n"


def test_a_bug_is_one_line_saying_so_and_debug_shows_the_traceback(capsys, monkeypatch):
    def broken(args):
        raise ValueError("no such thing\nsecond line")

    monkeypatch.setattr("compiler.cli.cmd_ops", broken)
    assert main(["ops"]) == 70
    assert capsys.readouterr().err == ("tessera: internal error (a bug in Tessera, please report it): ValueError: no "
                                       "such thing; second line; run again with --debug for the traceback\n")
    for argv in (["--debug", "ops"], ["ops", "--debug"]):
        assert main(argv) == 70
        err = capsys.readouterr().err
        assert err.startswith("Traceback") and err.splitlines()[-1].startswith("tessera: internal error")


def test_the_installed_command_prints_no_traceback_unless_debug(model_file, tmp_path):
    """`python -m compiler.cli` as a user runs it: a write failure is one
    line on standard error and status 1; with --debug, the traceback too."""
    argv = [sys.executable, "-m", "compiler.cli", "compile", str(model_file), "-o", str(tmp_path / "no" / "m.bin")]
    plain = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 1 and plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr, plain.stderr
    debug = subprocess.run(argv + ["--debug"], capture_output=True, text=True, timeout=120)
    assert debug.returncode == 1 and debug.stderr.startswith("Traceback")
    assert debug.stderr.splitlines()[-1] == plain.stderr.strip()


@pytest.mark.parametrize("flag, device", [([], "FPGA"), (["--hwlinear"], "FPGA"), (["--no-hwlinear"], "CPU")])
def test_show_places_linear_layers_by_the_policy_unless_hwlinear_is_given(tmp_path, capsys, flag, device):
    """Relu -> Gemm -> Relu: unset, the Gemm joins the Relus on the accelerator (it pays); --no-hwlinear
    keeps it on the CPU, as FWDNXT's hwlinear=0."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = helper.make_tensor("w", TensorProto.FLOAT, [64, 32], np.ones(64 * 32, np.float32))
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                               helper.make_node("Gemm", ["r", "w"], ["g"], name="fc"),
                               helper.make_node("Relu", ["g"], ["y"], name="relu2")], "m", [x], [y], [w])
    path = tmp_path / "fc.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), path)
    assert main(["show", str(path), "--partition", *flag]) == 0
    (gemm,) = [line for line in capsys.readouterr().out.splitlines() if "= Gemm(" in line]
    assert f"@{device}" in gemm and (device == "FPGA" or "target.hwlinear=False" in gemm)
