"""Running docs/examples as a user runs them: each in a process of its own
from the repository root, all started at once so their start-up overlaps."""
from __future__ import annotations

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
    processes = {label: subprocess.Popen([sys.executable, str(EXAMPLES / script), *args], cwd=ROOT, text=True,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for label, (script, *args) in runs.items()}
    outputs = {}
    for label, process in processes.items():
        out, err = process.communicate(timeout=timeout)
        assert process.returncode == 0, f"{list(runs[label])} exited {process.returncode}:\n{out}\n{err}"
        for word in forbidden:
            assert word not in err, err
        outputs[label] = out
    return outputs
