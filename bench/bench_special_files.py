"""Special paths through every loader (tests/helpers/special_files.py): a
FIFO, /dev/zero, a directory and 6 GiB sparse files, each case's outcome,
seconds and peak-RSS rise, and the worst of each (issue 51: a named error in
under a second, peak RSS under 1 GB).

    python bench/bench_special_files.py     (from the repository root)
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    run = subprocess.run([sys.executable, "-m", "tests.helpers.special_files"], cwd=ROOT, capture_output=True,
                         text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT)})
    cases = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    print(f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    for case in cases:
        print(f"{case['loader']:20s} {case['path']:18s} {case['outcome']:24s} {case['seconds'] * 1e3:8.1f} ms "
              f"{case['rss_rise'] / 2**20:7.1f} MiB  {case['message'][:70]}")
    named = [c for c in cases if c["outcome"] != "accepted" and not c["outcome"].startswith("unnamed")]
    slowest = max(cases, key=lambda c: c["seconds"])
    biggest = max(cases, key=lambda c: c["rss_rise"])
    print(f"{len(named)} of {len(cases)} cases named errors; slowest {slowest['seconds'] * 1e3:.1f} ms "
          f"({slowest['loader']}, {slowest['path']}); largest RSS rise {biggest['rss_rise'] / 2**20:.1f} MiB "
          f"({biggest['loader']}, {biggest['path']})")
    return 0 if run.returncode == 0 and len(named) == len(cases) else 1


if __name__ == "__main__":
    sys.exit(main())
