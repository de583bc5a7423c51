"""``import runtime`` must work with numpy and numba alone (ARCHITECTURE §2)."""
import subprocess
import sys
import textwrap

FORBIDDEN = ("onnx", "onnxruntime", "networkx", "pydantic", "ir", "compiler", "passes", "codegen")


def test_runtime_imports_without_the_compiler_side():
    code = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in {FORBIDDEN!r}:
                    raise ImportError('blocked: ' + name)
        sys.meta_path.insert(0, Block())
        import runtime
        from runtime.kernels import kernel_names
        names = kernel_names()
        assert len(names) > 0
        print(len(names))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
