"""How the command lines end on an error (runtime/command.py), and
tessera-infer's files that are not what they should be: one line naming
the option and the cause, before the binary is loaded."""
from __future__ import annotations

import os

import pytest

from runtime.app.images import ImageError, InferError, load_image, read_fc_weights, settings_for
from runtime.app.infer import _output, main
from runtime.command import INTERNAL_ERROR, INTERRUPTED, USER_ERROR, run_command
from runtime.errors import TesseraError


def _raise(exc: BaseException):
    def body() -> int:
        raise exc
    return body


@pytest.mark.parametrize("exc, status, line", [
    (TesseraError("bad model\n  at node 'conv'"), USER_ERROR, "prog: error: bad model; at node 'conv'"),
    (FileNotFoundError(2, "No such file or directory", "/x/y.bin"), USER_ERROR,
     "prog: error: /x/y.bin: No such file or directory"),
    (KeyboardInterrupt(), INTERRUPTED, "prog: interrupted"),
    (KeyError("k"), INTERNAL_ERROR, "prog: internal error (a bug in Tessera, please report it): KeyError: 'k'; run "
                                    "again with --debug for the traceback")])
def test_each_ending_is_one_line_and_its_status(capsys, exc, status, line):
    assert run_command("prog", _raise(exc), debug=False) == status
    assert capsys.readouterr().err == line + "\n"


def test_debug_adds_the_traceback(capsys):
    assert run_command("prog", _raise(TesseraError("bad")), debug=True) == USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "TesseraError: bad" in err and err.endswith("\nprog: error: bad\n")
    assert run_command("prog", lambda: 0, debug=True) == 0


@pytest.fixture
def inputs(tmp_path):
    """A FIFO, a folder, an image file and a missing binary (nothing gets as far as loading it)."""
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "dir").mkdir()
    (tmp_path / "a.png").write_bytes(b"\x89PNG")
    return tmp_path


@pytest.mark.parametrize("option, target, says", [
    ("--img_path", "pipe", "--img_path '{}': cannot read the image: it is a FIFO (named pipe), not a regular file"),
    ("--img_path", "none.png", "--img_path '{}': cannot read the image: No such file or directory"),
    ("--labels", "pipe", "--labels '{}': cannot read the labels file: it is a FIFO (named pipe)"),
    ("--classes", "dir", "--classes '{}': cannot read the classes file: it is a directory"),
    ("--outfile", "missing/out.csv", "--outfile '{}': cannot be written: its folder"),
    ("--outfile", "dir", "--outfile '{}': is a directory, not a file")])
def test_infer_files_are_named_before_the_binary_is_loaded(inputs, capsys, option, target, says):
    path = str(inputs / target)
    argv = ["--xclbin", str(inputs / "no.bin"), "--img_path", str(inputs / "a.png"), option, path]
    assert main(argv) == USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("tessera-infer: error: " + says.format(path)) and err.count("\n") == 1, err


def test_infer_binary_that_is_a_folder_is_named(inputs, capsys):
    assert main(["--xclbin", str(inputs / "dir"), "--img_path", str(inputs / "a.png")]) == USER_ERROR
    assert "cannot read the binary: it is a directory, not a regular file" in capsys.readouterr().err


def test_fc_weights_and_images_must_be_regular_files_and_errors_name_them(inputs):
    with pytest.raises(InferError, match="--fcweights .*pipe': cannot read the fcweights file: it is a FIFO"):
        read_fc_weights(str(inputs / "pipe"), 4)
    settings = settings_for("1x1x4x4", None, None, None)
    with pytest.raises(ImageError, match="pipe: cannot read the image: it is a FIFO"):
        load_image(inputs / "pipe", settings)
    with pytest.raises(ImageError, match="^a.png: not an image format Pillow reads$"):
        load_image(inputs / "a.png", settings)


def test_outfile_is_replaced_only_by_a_whole_run(tmp_path):
    """The CSV goes to a temporary file renamed over --outfile at the end: a
    run that fails leaves the previous file as it was."""
    out = tmp_path / "out.csv"
    out.write_text("previous\n")
    with pytest.raises(InferError), _output(str(out)) as handle:
        handle.write("half a run\n")
        raise InferError("the run failed")
    assert out.read_text() == "previous\n" and os.listdir(tmp_path) == ["out.csv"]
    with _output(str(out)) as handle:
        handle.write("a,b\n")
    assert out.read_text() == "a,b\n"
