"""No import circles inside compiler/, passes/ and codegen/, counting the
imports inside functions too: a function-level import that only breaks a
circle hides a dependency (compiler/ had two: compile, quantize,
range_choice and target_snr; cli and cli_device; passes/ one: distribute
and tile). Two packages still have some, listed by ``_circles``: ir/ (the
Graph prints itself through the printer, which reads Graphs) and runtime/
(the kernel registry and the modules of its kernels)."""
from __future__ import annotations

import ast
import functools
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("compiler", "passes", "ir", "codegen", "runtime")


def _modules(root: Path) -> dict[str, Path]:
    """Every module of the tree at ``root`` but the packages' __init__ files:
    importing any module runs its package's __init__ first whatever the
    order, so a package that re-exports its modules is no circle."""
    modules = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            if path.name != "__init__.py":
                modules[".".join(path.relative_to(root).with_suffix("").parts)] = path
    return modules


def _import_graph(modules: dict[str, Path]) -> nx.DiGraph:
    """module -> each of Tessera's modules it imports anywhere in its file
    (those under ``if TYPE_CHECKING:`` excepted: they never run)."""
    graph = nx.DiGraph()
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        typing_only = {id(inner) for block in ast.walk(tree)
                       if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
                       for statement in block.body for inner in ast.walk(statement)}
        graph.add_node(name)
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            graph.add_edges_from((name, target) for target in targets if target in modules and target != name)
    return graph


@functools.cache
def _graph_of(root: Path) -> nx.DiGraph:
    """The import graph of the tree at ``root``, built once per session
    (parsing every module took about 5 s, once per package checked)."""
    return _import_graph(_modules(root))


def _circles(package: str) -> list[list[str]]:
    graph = _graph_of(ROOT)
    inside = graph.subgraph(n for n in graph if n.startswith(package + "."))
    return [sorted(c) for c in nx.strongly_connected_components(inside) if len(c) > 1]


@pytest.mark.parametrize("package", ["compiler", "passes", "codegen"])
def test_no_import_circles(package):
    circles = _circles(package)
    assert not circles, f"import circles in {package}/: " + "; ".join(" <-> ".join(c) for c in circles)


def test_the_check_finds_a_circle_closed_by_a_function_level_import(tmp_path, monkeypatch):
    package = tmp_path / "compiler"
    package.mkdir()
    (package / "a.py").write_text("import compiler.b\n")
    (package / "b.py").write_text("def f():\n    from compiler import a\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import compiler.a\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert _circles("compiler") == [["compiler.a", "compiler.b"]]
