"""Running docs/examples as a user runs them: each in a process of its own
from the repository root, all started at once so their start-up overlaps."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Sequence

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"


def run_examples(runs: Mapping[str, Sequence[str]], forbidden: Sequence[str] = ("synthetic",),
                 timeout: float = 300) -> dict[str, str]:
    """Each run's stdout, by its label: ``runs[label]`` is the script's name
    under docs/examples then its arguments. Each must exit 0, and print
    none of ``forbidden`` to stderr."""
    results = run_scripts({label: (str(EXAMPLES / script), *args) for label, (script, *args) in runs.items()},
                          ROOT, timeout=timeout)
    for out, err in results.values():
        for word in forbidden:
            assert word not in err, err
    return {label: out for label, (out, _) in results.items()}


def run_scripts(runs: Mapping[str, Sequence[str]], folder: Path, env: Mapping[str, str] | None = None,
                envs: Mapping[str, Mapping[str, str]] | None = None, timeout: float = 300,
                base: Mapping[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """Each run's (stdout, stderr), by its label: ``runs[label]`` is a script's
    path then its arguments, all started at once, each from ``folder`` with
    ``base`` (this process's environment by default), the repository on
    PYTHONPATH (as an installed package would be), ``env`` and the run's own
    ``envs[label]``; each must exit 0."""
    base = os.environ if base is None else base
    environment = {**base, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), base.get("PYTHONPATH")])),
                   **(env or {})}
    processes = {label: subprocess.Popen([sys.executable, script, *args], cwd=folder, text=True,
                                         env={**environment, **(envs or {}).get(label, {})},
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for label, (script, *args) in runs.items()}
    results = {}
    for label, process in processes.items():
        out, err = process.communicate(timeout=timeout)
        assert process.returncode == 0, f"{label}: {list(runs[label])} exited {process.returncode}:\n{out}\n{err}"
        results[label] = (out, err)
    return results
