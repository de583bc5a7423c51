"""``import runtime`` must work with numpy and numba alone (ARCHITECTURE §2)."""
import subprocess
import sys
import textwrap

FORBIDDEN = ("onnx", "onnxruntime", "networkx", "pydantic", "ir", "compiler", "passes", "codegen")
BLOCK = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {FORBIDDEN!r}:
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
"""
"""Prepended to a script: importing any of FORBIDDEN fails."""


def test_runtime_imports_without_the_compiler_side():
    code = BLOCK + textwrap.dedent("""
        import runtime
        from runtime.kernels import kernel_names
        names = kernel_names()
        assert len(names) > 0
        print(len(names))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_device_host_loads_and_runs_a_binary_without_the_compiler(tmp_path):
    """Compile here, then Init and Run in a process where the compiler side
    cannot be imported: the runtime alone loads the binary; Compile says
    clearly that it needs the compiler."""
    import warnings

    import numpy as np
    import onnx

    from compiler.zoo import resnet
    from runtime import FWDNXT

    model = tmp_path / "m.onnx"
    onnx.save(resnet(depth=10, image=32, classes=10, width=8), model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        count = FWDNXT().Compile("32x32x3", str(model), str(tmp_path / "m.bin"))
    code = BLOCK + textwrap.dedent(f"""
        import numpy as np
        from runtime import FWDNXT
        ie = FWDNXT()
        assert ie.Init({str(tmp_path / "m.bin")!r}, "") == {count}
        result = np.zeros({count}, np.float32)
        ie.Run(np.ones((1, 3, 32, 32), np.float32), result)
        assert abs(result.sum() - 1) < 1e-3 and ie.GetInfo("hwtime") > 0
        try:
            FWDNXT().Compile("32x32x3", "m.onnx", "out.bin")
        except Exception as exc:
            assert "Compile needs Tessera's compiler" in str(exc), exc
        else:
            raise AssertionError("Compile worked without the compiler")
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr
    assert np.isfinite(count)
