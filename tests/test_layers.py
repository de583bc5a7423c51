"""Imports go downward only (ARCHITECTURE §2): every import of every module
of a layer, at module level or inside a function, names only the layers the
table lets it use. The exceptions are the runtime's API calls that need the
compiler, which import it lazily, inside the call (``LAZY_ALSO``): FWDNXT's
Compile, and the Inference Engine's reading of an ONNX network, compiling at
load, calibration (at load or deferred) and query_network."""
import ast
from pathlib import Path

import pytest

from tests.helpers.imports import module_imports

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("compiler", "codegen", "passes", "ir", "runtime")
MAY_IMPORT = {
    "compiler": {"compiler", "codegen", "passes", "ir", "runtime"},
    "codegen": {"codegen", "passes", "ir", "runtime"},
    "passes": {"passes", "ir", "runtime"},
    "ir": {"ir", "runtime"},
    "runtime": {"runtime"},
}
LAZY_ALSO = {"runtime": {"compiler"}}
"""Layers a layer may import only inside a function."""


def imported_layers(path: Path) -> dict[str, tuple[int, bool]]:
    """The project layers a module imports: the line of the first import of
    each, and whether every import of it is inside a function."""
    found: dict[str, tuple[int, bool]] = {}
    for name, line, module_level in module_imports(path):
        top = name.split(".")[0]
        if top in LAYERS:
            first, lazy = found.get(top, (line, True))
            found[top] = (first, lazy and not module_level)
    return found


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_only_the_layers_below_it(layer):
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {other}"
             for path in sorted((ROOT / layer).rglob("*.py"))
             for other, (line, lazy) in imported_layers(path).items()
             if other not in MAY_IMPORT[layer] and not (lazy and other in LAZY_ALSO.get(layer, ()))]
    assert not wrong, wrong


def test_the_check_sees_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import ir.graph\ndef f():\n    from codegen.cpu import lower_to_program\n    import ir\n")
    assert imported_layers(module) == {"ir": (1, False), "codegen": (3, True)}


def test_test_modules_share_code_through_the_helpers_only():
    """A test module imports shared code from tests.helpers (or the oracle),
    never from another test module."""
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {name}"
             for path in sorted((ROOT / "tests").rglob("test_*.py")) for name, line in imported_names(path)
             if name.startswith("tests.") and any(part.startswith("test_") for part in name.split(".")[1:])]
    assert not wrong, wrong


def imported_names(path: Path) -> list[tuple[str, int]]:
    """Every dotted name a module imports (``from a.b import c`` gives a.b.c), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(f"{node.module}.{alias.name}", node.lineno) for alias in node.names]
    return found


def test_api_facades_hold_no_kernel_code():
    """runtime/jit.py leaves the facades out of the Numba cache's digest: a
    facade must not import the jit module or the thread pool, nor use numba
    beyond its version string."""
    from runtime.jit import is_facade

    runtime = ROOT / "runtime"
    facades = [p for p in runtime.rglob("*.py") if is_facade(p.relative_to(runtime).as_posix())]
    assert any(p.parent.name == "inference_engine" for p in facades) and (runtime / "fwdnxt.py") in facades
    for path in facades:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("numba"), f"{where} imports from numba"
                assert node.module not in ("runtime.jit", "runtime.parallel"), f"{where} imports {node.module}"
            if isinstance(node, ast.Import):
                assert not {a.name for a in node.names} & {"runtime.jit", "runtime.parallel"}, where
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "numba":
                assert node.attr == "__version__", f"{where} uses numba.{node.attr}"
