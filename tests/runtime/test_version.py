"""The version is written once (runtime/version.py): the package's metadata
reads it, and every API reports it."""
import tomllib
from pathlib import Path

from runtime import FWDNXT
from runtime.inference_engine import IECore, IEPlugin, get_version
from runtime.version import TAGGED, VERSION

ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_takes_the_version_from_runtime_version():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" in pyproject["project"]["dynamic"] and "version" not in pyproject["project"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "runtime.version.VERSION"}


def test_every_api_reports_the_one_version():
    assert TAGGED == f"tessera-{VERSION}"
    assert FWDNXT().GetInfo("version") == get_version() == IEPlugin("CPU").version == TAGGED
    version = IECore().get_versions("CPU")["CPU"]
    assert (version.build_number, f"{version.major}.{version.minor}") == (TAGGED, VERSION.rsplit(".", 1)[0])
