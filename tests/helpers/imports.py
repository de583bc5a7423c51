"""The modules a Python file imports, read from its syntax tree (nothing is
imported): for the layering test and the declared-dependencies test."""
from __future__ import annotations

import ast
from pathlib import Path


def module_imports(path: Path) -> list[tuple[str, int, bool]]:
    """(module name, line, whether at module level) of every absolute import
    in ``path``: ``import a.b`` and ``from a.b import c`` both name a.b."""
    tree = ast.parse(path.read_text(), str(path))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(name, node.lineno, id(node) in top_level) for name in names]
    return found
