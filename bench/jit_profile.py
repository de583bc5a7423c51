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
is what a deep call tree costs (docs/runtime.md, "Kernel compilation").

    python bench/jit_profile.py --suite [-- tests/ops ...]     # the README's test command

``--suite`` runs ``python -m pytest -q -n 2 --dist loadscope`` (and the
given arguments) with this module as a plugin in every process of the
session, pytest-xdist's workers included, on an empty kernel cache: each
process writes what it compiled and during which test; the report adds, per
test and per function, and lists the functions compiled for signatures that
differ only by a read-only flag, a layout, a literal or a tuple of ints
against an int64 array (a caller passing another type than the others: one
more compilation each, :func:`loose`)."""
from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time


CENSUS = "TESSERA_JIT_PROFILE"
"""Names the folder where each process of a ``--suite`` session writes its
compilations (``<pid>.json``)."""
_rows: list = []


def loose(t) -> str:
    """A Numba type with what a caller's choice changes left out: an array's
    layout and read-only flag, a literal's value; int64 arrays of one
    dimension and tuples of integers both read as ``ints``."""
    from numba.core import types

    if isinstance(t, types.Array):
        return "ints" if t.ndim == 1 and t.dtype == types.int64 else f"array({t.dtype}, {t.ndim}d)"
    if isinstance(t, types.Literal):
        return loose(t.literal_type) if hasattr(t, "literal_type") else str(t)
    if isinstance(t, types.UniTuple) and isinstance(t.dtype, types.Integer):
        return "ints"
    if isinstance(t, types.BaseTuple):
        return "(" + ", ".join(loose(x) for x in t.types) + ")"
    return str(t)


def pytest_configure(config):
    """In every process of a ``--suite`` session (loaded after the conftest,
    so numpy is not imported before it set the workers' BLAS threads)."""
    if not os.environ.get(CENSUS):
        return

    def record(name, args, seconds):
        _rows.append([name, str(args), ", ".join(loose(a) for a in args), seconds,
                      os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]])

    listen(record)


def listen(record) -> None:
    """Call ``record(function name, argument types, own seconds)`` after each
    Numba compilation in this process: its seconds less those of the
    compilations it started (its callees')."""
    from numba.core import event

    stack: list[list] = []  # [start, children's seconds] of each compilation in progress

    class Compiles(event.Listener):
        def on_start(self, ev):
            stack.append([time.perf_counter(), 0.0])

        def on_end(self, ev):
            began, children = stack.pop()
            spent = time.perf_counter() - began
            if stack:
                stack[-1][1] += spent
            function = ev.data["dispatcher"].py_func
            record(f"{getattr(function, '__module__', '?')}.{function.__qualname__}", tuple(ev.data["args"]),
                   spent - children)

    event.register("numba:compile", Compiles())


def pytest_unconfigure(config):
    folder = os.environ.get(CENSUS)
    if folder and _rows:
        import json

        with open(os.path.join(folder, f"{os.getpid()}.json"), "w") as out:
            json.dump({"worker": os.environ.get("PYTEST_XDIST_WORKER", "main"), "rows": _rows}, out)


def suite(args: list[str], top: int) -> int:
    """The README's test command with the census in every process; its report."""
    import json
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folder = tempfile.mkdtemp(prefix="tessera-jit-census-")
    env = dict(os.environ, TESSERA_NUMBA_CACHE_DIR=tempfile.mkdtemp(prefix="tessera-jit-profile-"), **{CENSUS: folder})
    start = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadscope",
                            "-p", "bench.jit_profile", *args], cwd=root, env=env)
    wall = time.perf_counter() - start
    rows = []
    for name in os.listdir(folder):
        with open(os.path.join(folder, name)) as data:
            part = json.load(data)
        rows += [[part["worker"], *row] for row in part["rows"]]
    per_worker, per_function, per_test = collections.Counter(), collections.defaultdict(list), collections.Counter()
    for worker, function, signature, shape, seconds, test in rows:
        per_worker[worker] += seconds
        per_function[function].append((seconds, signature, shape))
        per_test[test] += seconds
    print(f"\n{len(rows)} signatures, {sum(per_worker.values()):.1f} s compiling "
          f"({', '.join(f'{w} {s:.1f} s' for w, s in sorted(per_worker.items()))}), {wall:.1f} s in all")
    print(f"{'own s':>8s} {'sigs':>5s}  function")
    for function, done in sorted(per_function.items(), key=lambda kv: -sum(d[0] for d in kv[1]))[:top]:
        print(f"{sum(d[0] for d in done):8.2f} {len(done):5d}  {function}")
    print(f"\n{'own s':>8s}  test (the compilations that happened during it)")
    for test, seconds in per_test.most_common(top):
        print(f"{seconds:8.2f}  {test or '(outside a test)'}")
    print("\nfunctions compiled for signatures that differ only by read-only flags, layouts, literals or "
          "tuples against int64 arrays:")
    alike = 0
    for function, done in sorted(per_function.items()):
        if function.startswith("numba."):  # Numba's own overloads, compiled per caller
            continue
        groups = collections.defaultdict(dict)
        for seconds, signature, shape in done:  # one signature's costliest compilation (each process may have one)
            groups[shape][signature] = max(seconds, groups[shape].get(signature, 0.0))
        for group in groups.values():
            if len(group) > 1:
                extra = sum(sorted(group.values())[:-1])
                alike += extra
                print(f"{extra:8.2f}  {function}: {len(group)} signatures")
                for signature, seconds in group.items():
                    print(f"{'':10s}{seconds:6.2f} {signature[:150]}")
    print(f"{alike:8.2f}  in all (the seconds of every such signature but the costliest)")
    return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--suite", action="store_true",
                        help="the README's test command (two xdist workers), every process counted")
    parser.add_argument("--cache", help="kernel cache folder (default: a fresh temporary one)")
    parser.add_argument("--pytest", action="store_true", help="the arguments are pytest's, not tessera's")
    parser.add_argument("args", nargs="*")
    options = parser.parse_args()
    if options.suite:
        return suite(options.args, options.top)
    cache = options.cache or tempfile.mkdtemp(prefix="tessera-jit-profile-")
    os.environ["TESSERA_NUMBA_CACHE_DIR"] = cache
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    own = collections.defaultdict(float)
    count = collections.Counter()

    def record(name, args, seconds):
        own[name] += seconds
        count[name] += 1

    listen(record)
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
