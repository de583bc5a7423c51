"""Tessera's top-level packages (compiler, ir, passes, codegen, runtime) share
their names with unrelated distributions: where one of those comes first on
sys.path, importing Tessera's runtime or compiler fails at once with an
error naming the path and the distribution (runtime/packages.py)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(code: str, shadow: Path | None) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter with ``shadow`` (if any) before Tessera's folder on sys.path."""
    path = [str(shadow)] if shadow else []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path + [str(ROOT)]), TESSERA_PRECOMPILE="0")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                          cwd=shadow or ROOT)


def foreign(tmp_path: Path, name: str, distribution: str | None = None) -> Path:
    """A folder holding another package called ``name`` (and, given a
    distribution name, the metadata pip would have written for it)."""
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("VERSION = '9.9'\n")
    if distribution:
        info = tmp_path / f"{distribution}-9.9.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 9.9\n")
        (info / "top_level.txt").write_text(f"{name}\n")
    return tmp_path


def test_a_foreign_ir_stops_the_runtime_import_naming_path_and_distribution(tmp_path):
    done = run("import runtime", foreign(tmp_path, "ir", "ir-tools"))
    assert done.returncode != 0
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("ImportError: Tessera's top-level packages are shadowed")
    assert f"'ir' resolves to {tmp_path / 'ir' / '__init__.py'}" in message and "ir-tools" in message


def test_a_foreign_runtime_stops_the_compiler_import(tmp_path):
    done = run("import compiler", foreign(tmp_path, "runtime"))
    assert done.returncode != 0
    message = done.stderr.strip().splitlines()[-1]
    assert ("Tessera's compiler needs Tessera's runtime package" in message  # its runtime.packages is not there
            or "'runtime' resolves to" in message)  # an installed Tessera's runtime.packages was found beside it
    assert str(tmp_path / "runtime" / "__init__.py") in message


def test_a_foreign_codegen_stops_the_compiler_import(tmp_path):
    done = run("import compiler", foreign(tmp_path, "codegen", "codegen"))
    assert done.returncode != 0 and "'codegen' resolves to" in done.stderr and "(from codegen)" in done.stderr


def test_tesseras_own_packages_and_the_runtime_alone_import(tmp_path):
    assert run("import compiler, runtime", None).returncode == 0
    alone = tmp_path / "site-packages"  # a device host: the runtime without the compiler side
    shutil.copytree(ROOT / "runtime", alone / "runtime", ignore=shutil.ignore_patterns("__pycache__", "_jitcache"))
    done = subprocess.run([sys.executable, "-c", "import runtime; print(runtime.TESSERA_PACKAGE)"],
                          env=dict(os.environ, PYTHONPATH=str(alone)), capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr
