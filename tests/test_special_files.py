"""Every loader of a file Tessera reads, given a FIFO no one writes, /dev/zero,
a directory, or a 6 GiB sparse file (zeros, or a valid file's head and
zeros): a named error, never a hang, and no allocation of what the file
claims (tests/helpers/special_files.py, in a subprocess with a deadline)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KINDS = {"fifo", "dev_zero", "directory", "sparse_zeros", "sparse_valid_head"}


def test_special_paths_are_named_errors_through_every_loader():
    run = subprocess.run([sys.executable, "-m", "tests.helpers.special_files"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-3000:]
    cases = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    loaders = {case["loader"] for case in cases}
    assert len(loaders) >= 20 and len(cases) == len(loaders) * len(KINDS), sorted(loaders)
    wrong = [case for case in cases if case["outcome"] == "accepted" or case["outcome"].startswith("unnamed")]
    assert not wrong, wrong
    assert max(case["rss_rise"] for case in cases) < 1 << 30, max(cases, key=lambda c: c["rss_rise"])
