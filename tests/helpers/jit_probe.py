"""Kernel-cache probes: Python run in a fresh process that records which
Numba functions it compiled (rather than loaded from the cache), for the
tests of runtime/jit.py's cache and compiler/precompile.py."""
from __future__ import annotations

import os
from pathlib import Path

from runtime import jit

ROOT = Path(jit.__file__).resolve().parents[1]

COUNT_COMPILES = """
import json
import numpy as np
from numba.core import event
compiled = []
class Count(event.Listener):
    def on_start(self, ev): pass
    def on_end(self, ev): compiled.append(ev.data["dispatcher"].py_func.__qualname__)
event.register("numba:compile", Count())
"""
"""The start of a probe: ``compiled`` lists the qualified names of the
functions compiled in the process, in order (json and numpy imported)."""


def probe_env(cache: Path, root: Path = ROOT, **extra: str) -> dict:
    """The environment of a probe: the kernel cache at ``cache`` (on, no
    NUMBA_* setting of this process), the package from ``root``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.update(TESSERA_NUMBA_CACHE_DIR=str(cache), TESSERA_NUMBA_CACHE="1", PYTHONPATH=str(root), **extra)
    return env
