"""pyproject.toml declares what the production code imports, and no core
dependency that it does not: every third-party package imported by a module
of compiler/, ir/, passes/, codegen/ or runtime/ (at module level or inside
a function) is a dependency or in an extra; every core dependency is
imported somewhere."""
import re
import sys
import tomllib
from pathlib import Path

from tests.helpers.imports import module_imports

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("compiler", "ir", "passes", "codegen", "runtime")
DISTRIBUTIONS = {"PIL": "pillow", "sklearn": "scikit-learn"}
"""Import names whose distribution is named otherwise."""


def third_party_imports() -> dict[str, list[str]]:
    """Top-level import name -> the places (path:line) importing it."""
    found: dict[str, list[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for name, line, _ in module_imports(path):
                top = name.split(".")[0]
                if top not in PACKAGES and top not in sys.stdlib_module_names:
                    found.setdefault(top, []).append(f"{path.relative_to(ROOT)}:{line}")
    return found


def _name(requirement: str) -> str:
    """A requirement's distribution name, normalised (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement).group()).lower()


def declared() -> tuple[set[str], set[str]]:
    """(core dependencies, those of every extra)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = {_name(r) for group in project.get("optional-dependencies", {}).values() for r in group}
    return {_name(r) for r in project["dependencies"]}, extras


def test_every_import_of_production_code_is_declared():
    core, extras = declared()
    missing = {name: places for name, places in third_party_imports().items()
               if _name(DISTRIBUTIONS.get(name, name)) not in core | extras}
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_every_core_dependency_is_imported():
    core, _ = declared()
    imported = {_name(DISTRIBUTIONS.get(name, name)) for name in third_party_imports()}
    assert core <= imported, f"declared dependencies no production module imports: {sorted(core - imported)}"


def test_the_check_reads_distribution_names():
    assert _name("scikit_learn>=1.4,<2") == "scikit-learn" and _name("Pillow") == "pillow"


def test_the_build_environment_has_every_core_dependency():
    """setup.py's warm-up imports the compiler inside pip's isolated build
    environment, which holds only [build-system] requires: a core
    dependency missing there makes the warm-up fail and the wheel ship no
    kernels (as threadpoolctl once did: the first run compiled for 44 s)."""
    core, _ = declared()
    build = {_name(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]}
    assert core <= build, f"core dependencies missing from [build-system] requires: {sorted(core - build)}"
