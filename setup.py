"""Only the build step that ships compiled kernels; pyproject.toml holds the rest.

While ``pip install .`` builds the wheel, ``python -m compiler.warmup`` runs on
the built copy of the package and fills runtime/_jitcache/ with the Numba
kernels the main jobs use (runtime/jit.py explains the cache); the wheel
ships them and the first import copies them into the user's cache. Editable
installs and ``TESSERA_SHIP_KERNELS=0`` skip it; a failed warm-up costs the
first run its compile time, never the install.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


def warmup_environment(lib: Path, cache: Path, environ) -> dict:
    """The warm-up's environment: the built copy first on PYTHONPATH, then
    what was there. pip's isolated build environment reaches this process
    through PYTHONPATH (its sitecustomize adds numpy, numba, ... from a
    temporary prefix): replacing it left the warm-up unable to import numpy,
    and the wheel shipped no kernels."""
    env = {k: v for k, v in environ.items() if not k.startswith("NUMBA_")}
    path = [str(lib), *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
    env.update(PYTHONPATH=os.pathsep.join(path), TESSERA_NUMBA_CACHE_DIR=str(cache), TESSERA_NUMBA_CACHE="1")
    return env


class BuildWithKernels(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False) or os.environ.get("TESSERA_SHIP_KERNELS", "1") == "0":
            return
        lib = Path(self.build_lib).resolve()
        cache = lib / "runtime" / "_jitcache"
        shutil.rmtree(cache, ignore_errors=True)
        env = warmup_environment(lib, cache, os.environ)
        print("tessera: compiling the kernels of the main jobs to ship them with the package "
              "(TESSERA_SHIP_KERNELS=0 skips this)", flush=True)
        result = subprocess.run([sys.executable, "-m", "compiler.warmup"], env=env, cwd=str(lib))
        if result.returncode:
            print(f"tessera: warning: the kernel warm-up failed (exit {result.returncode}); the wheel ships "
                  "what compiled, and the first run compiles the rest once (and says so)", file=sys.stderr, flush=True)


setup(cmdclass={"build_py": BuildWithKernels})
