"""What a job compiles: each Numba function's signatures and the seconds
spent compiling them, its own (children's compiles subtracted), on an empty
kernel cache.

    python bench/jit_profile.py [--top N] -- run               # tessera run
    python bench/jit_profile.py -- run zoo:resnet50 ...      # any tessera command
    python bench/jit_profile.py --pytest -- tests/runtime/test_gemm.py

The job runs in this process with ``TESSERA_NUMBA_CACHE_DIR`` pointed at a
fresh temporary folder (unless ``--cache`` names one), so every signature it
reaches is compiled. A function's own seconds include the linking,
optimisation and code generation of the callees Numba links into it, which
is what a deep call tree costs (docs/runtime.md, "Kernel compilation")."""
from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--cache", help="kernel cache folder (default: a fresh temporary one)")
    parser.add_argument("--pytest", action="store_true", help="the arguments are pytest's, not tessera's")
    parser.add_argument("args", nargs="*")
    options = parser.parse_args()
    cache = options.cache or tempfile.mkdtemp(prefix="tessera-jit-profile-")
    os.environ["TESSERA_NUMBA_CACHE_DIR"] = cache
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from numba.core import event

    own = collections.defaultdict(float)
    count = collections.Counter()
    stack: list[list] = []  # [name, start, children's seconds]

    class Compiles(event.Listener):
        def on_start(self, ev):
            dispatcher = ev.data["dispatcher"]
            name = f"{getattr(dispatcher.py_func, '__module__', '?')}.{dispatcher.py_func.__qualname__}"
            stack.append([name, time.perf_counter(), 0.0])

        def on_end(self, ev):
            name, began, children = stack.pop()
            spent = time.perf_counter() - began
            own[name] += spent - children
            count[name] += 1
            if stack:
                stack[-1][2] += spent

    event.register("numba:compile", Compiles())
    start = time.perf_counter()
    if options.pytest:
        import pytest
        code = pytest.main(["-q", "-p", "no:cacheprovider", *options.args])
    else:
        from compiler.cli import main as tessera
        code = tessera(options.args or ["run"])
    wall = time.perf_counter() - start
    total = sum(own.values())
    print(f"\n{sum(count.values())} signatures, {total:.1f} s compiling, {wall:.1f} s in all (cache {cache})")
    print(f"{'own s':>8s} {'sigs':>5s}  function")
    for name, seconds in sorted(own.items(), key=lambda kv: -kv[1])[:options.top]:
        print(f"{seconds:8.2f} {count[name]:5d}  {name}")
    return int(code or 0)


if __name__ == "__main__":
    raise SystemExit(main())
