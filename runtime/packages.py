"""Tessera's five top-level packages, and a clear error when another
distribution owns one of their names.

Tessera installs ``compiler``, ``ir``, ``passes``, ``codegen`` and
``runtime`` as top-level packages (the layout shows the pipeline), and the
package index has unrelated distributions with some of those names. Where
one of them comes first on ``sys.path``, or was installed over Tessera's
files, Tessera would import foreign code and fail somewhere far from the
cause. Each Tessera package's ``__init__.py`` holds the line
``TESSERA_PACKAGE = True``; :func:`check_packages` (run by ``import
runtime`` and ``import compiler``) finds each name that Tessera installed
beside this package as Python would import it, without importing it, and
raises ImportError naming the path that shadows Tessera's and the
distribution that installed it. A name Tessera did not install here (a
device host may carry the runtime alone) or that nothing can import is no
conflict.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGES = ("compiler", "ir", "passes", "codegen", "runtime")
MARKER = "TESSERA_PACKAGE = True"
"""The line every Tessera package's ``__init__.py`` holds."""
ROOT = Path(__file__).resolve().parent.parent
"""The folder holding Tessera's packages (site-packages, or a checkout)."""


def foreign_location(name: str) -> str | None:
    """Where ``import name`` would load a package that is not Tessera's (None
    when it would load one of Tessera's, or finds nothing importable)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):  # nothing importable under that name: no conflict
        return None
    if spec is None:
        return None
    if spec.origin is not None and spec.has_location and _marked(Path(spec.origin)):
        return None
    return spec.origin if spec.has_location and spec.origin else str(list(spec.submodule_search_locations or [name])[0])


def _marked(init: Path) -> bool:
    try:
        return any(line.strip() == MARKER for line in init.read_text(encoding="utf-8").splitlines())
    except (OSError, UnicodeDecodeError):
        return False


def installed_here() -> tuple[str, ...]:
    """The Tessera packages installed beside this one (all five in a wheel or
    a checkout; the runtime alone on a device host)."""
    return tuple(name for name in PACKAGES if (ROOT / name / "__init__.py").is_file())


def check_packages(names: tuple[str, ...] | None = None) -> None:
    """ImportError naming every package of ``names`` (default: those Tessera
    installed beside this one) that another distribution, or a folder or
    module earlier on ``sys.path``, owns."""
    shadowed = {name: where for name in (installed_here() if names is None else names)
                if (where := foreign_location(name)) is not None}
    if shadowed:
        raise ImportError(shadowing_message(shadowed))


def shadowing_message(shadowed: dict[str, str]) -> str:
    owners = _distributions()
    parts = []
    for name, where in shadowed.items():
        others = [d for d in dict.fromkeys(owners.get(name, [])) if d.lower() != "tessera"]
        owner = ", ".join(others) or "no installed distribution (a folder or module on sys.path)"
        parts.append(f"'{name}' resolves to {where} (from {owner}), not to Tessera's {ROOT / name}")
    return ("Tessera's top-level packages are shadowed: " + "; ".join(parts)
            + ". Tessera installs the packages compiler, ir, passes, codegen and runtime; uninstall the other "
            "distribution, or give Tessera a virtual environment of its own, or put Tessera's folder first "
            "on sys.path.")


def _distributions() -> dict[str, list[str]]:
    """Top-level names -> the distributions installing them (asked only on failure: it reads every one)."""
    try:
        from importlib.metadata import packages_distributions

        return packages_distributions()
    except Exception:  # metadata is advice for the message only
        return {}
