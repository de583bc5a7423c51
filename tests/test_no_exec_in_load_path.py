"""Nothing executable in data: the code that reads untrusted files (binaries,
ONNX models, encodings, calibration and input arrays) never unpickles,
evaluates or imports what a file says.

The source of the load path is scanned with ``ast``: runtime/ (the binary
reader, the engine and the API facades runtime/inference_engine, runtime/kp,
runtime/app), compiler/simulator/ (the Simulator facade), the ONNX frontend,
the calibration and encodings readers and the CLI. Ray pickles objects
internally when runtime/app/scale.py shards work over actors; that is Ray's
transport between our own processes, not a file we read, and it needs no
pickle import of ours, so the scan has no exceptions.
"""
import ast
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

LOAD_PATH = ["runtime", "compiler/simulator", "compiler/frontend", "compiler/cli.py",
             "passes/quant/calibration_data.py", "passes/quant/encodings.py"]

UNPICKLERS = {"pickle", "_pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "joblib"}
CODE_BUILTINS = {"eval", "exec", "compile"}
IMPORTERS = {"__import__", "importlib.import_module", "import_module"}


def load_path_files() -> list[Path]:
    files = []
    for entry in LOAD_PATH:
        path = ROOT / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def findings(source: str, label: str) -> list[str]:
    """``label:line: what`` for each way ``source`` could run what data says."""
    tree = ast.parse(source, label)
    return [f"{label}:{node.lineno}: {problem}" for node in ast.walk(tree) for problem in _problems(node)]


def _problems(node: ast.AST):
    if isinstance(node, ast.Import):
        yield from (f"imports {a.name}" for a in node.names if a.name.split(".")[0] in UNPICKLERS)
    elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNPICKLERS:
        yield f"imports from {node.module}"
    elif isinstance(node, ast.Call):
        name = _dotted(node.func)
        if name in CODE_BUILTINS or name.removeprefix("builtins.") in CODE_BUILTINS:
            yield f"calls {name}()"
        if name in IMPORTERS and not (node.args and isinstance(node.args[0], ast.Constant)):
            yield f"calls {name}() on a computed module name"
        if name in ("np.load", "numpy.load") and not _refuses_pickle(node):
            yield f"calls {name}() without allow_pickle=False"
        if name.split(".")[0] in UNPICKLERS or name.split(".")[-1] in ("read_pickle", "Unpickler"):
            yield f"calls {name}()"


def _dotted(func: ast.expr) -> str:
    """``a.b.c`` for a called name or attribute chain ('' for anything else)."""
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        head = _dotted(func.value)
        return f"{head}.{func.attr}" if head else ""
    return ""


def _refuses_pickle(call: ast.Call) -> bool:
    """np.load with an explicit ``allow_pickle=False`` (and no third positional
    argument, which would be allow_pickle)."""
    given = [k.value for k in call.keywords if k.arg == "allow_pickle"]
    explicit_false = len(given) == 1 and isinstance(given[0], ast.Constant) and given[0].value is False
    return explicit_false and len(call.args) <= 2


def test_the_load_path_runs_nothing_from_data():
    found = [f for path in load_path_files() for f in findings(path.read_text(), str(path.relative_to(ROOT)))]
    assert not found, "\n".join(found)


def test_the_scan_sees_every_pattern():
    """Each forbidden form is found; the safe forms next to them are not."""
    bad = """
import pickle
from cloudpickle import loads
import marshal as m
eval(text)
exec(code)
compile(text, "f", "exec")
builtins.eval(text)
__import__(name)
importlib.import_module(name)
np.load(path)
np.load(path, allow_pickle=True)
numpy.load(path, None, True)
np.load(path, allow_pickle=flag)
pickle.loads(data)
pandas.read_pickle(path)
"""
    assert len(findings(bad, "bad")) == 15
    safe = """
import json
re.compile("x")
importlib.import_module("runtime.kernels")
np.load(path, allow_pickle=False)
np.load(path, mmap_mode="r", allow_pickle=False)
model.eval()
"""
    assert findings(safe, "safe") == []


def test_the_scan_covers_the_facades():
    scanned = {str(p.relative_to(ROOT)) for p in load_path_files()}
    for facade in ("runtime/binary/__init__.py", "runtime/fwdnxt.py", "runtime/engine.py",
                   "runtime/inference_engine/ie_api.py", "runtime/kp/core.py", "runtime/app/scale.py",
                   "compiler/simulator/api.py", "compiler/simulator/data.py"):
        assert facade in scanned


# ------------------------------------------------------------------ pickled arrays are refused
@pytest.fixture
def pickled(tmp_path):
    """An .npy of an object array (what np.save writes with pickle) and an
    .npz holding one."""
    objects = np.array([{"a": 1}, None], dtype=object)
    np.save(tmp_path / "sample.npy", objects, allow_pickle=True)
    np.savez(tmp_path / "sample.npz", x=objects)
    return tmp_path


@pytest.mark.parametrize("name", ["sample.npy", "sample.npz"])
def test_simulator_data_refuses_pickled_arrays(pickled, name):
    from compiler.simulator.data import TensorSpec, load_sample
    from compiler.simulator.errors import SimulatorError

    spec = TensorSpec("x", (2,), np.dtype(np.float32))
    with pytest.raises(SimulatorError, match=rf"{name}: cannot read it as numpy arrays: .*a pickle.*refused"):
        load_sample(pickled / name, [spec])


@pytest.mark.parametrize("name", ["sample.npy", "sample.npz"])
def test_calibration_data_refuses_pickled_arrays(pickled, name):
    from passes.quant.calibration_data import CalibrationDataError, calibration_batches

    (pickled / ("sample.npz" if name == "sample.npy" else "sample.npy")).unlink()
    with pytest.raises(CalibrationDataError, match=rf"cannot read calibration file .*{name}"):
        list(calibration_batches(pickled, {"x": (2,)}))


def test_cli_input_refuses_pickled_arrays(pickled, tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    from compiler.cli import main

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "m",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    assert main(["run", str(tmp_path / "m.onnx"), "--cpu", "--input", f"x={pickled / 'sample.npy'}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tessera: error: --input") and "sample.npy" in err and "Python objects" in err


def test_encodings_reader_refuses_a_pickled_file(pickled):
    from passes.quant.encodings import EncodingsError, import_encodings

    with pytest.raises(EncodingsError, match="sample.npy"):
        import_encodings(pickled / "sample.npy")


def test_npz_reader_errors_are_named_not_zip_tracebacks(tmp_path):
    """A truncated .npz is one named error too, not a BadZipFile traceback."""
    from compiler.simulator.data import TensorSpec, load_sample
    from compiler.simulator.errors import SimulatorError

    np.savez(tmp_path / "good.npz", x=np.zeros(2, np.float32))
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    assert not zipfile.is_zipfile(tmp_path / "cut.npz")
    with pytest.raises(SimulatorError, match="cut.npz: cannot read it as numpy arrays"):
        load_sample(tmp_path / "cut.npz", [TensorSpec("x", (2,), np.dtype(np.float32))])
