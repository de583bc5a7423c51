"""Numba's compiled code by name in ``perf report``: write the process's
``/tmp/perf-<pid>.map`` (perf's map of JIT code: one ``start size name``
line a symbol) from Numba's execution engine.

Numba's JIT code (compiled in-process or loaded from the kernel cache) sits
in anonymous memory perf cannot name: a profile of a simulator run shows
rows of bare addresses. Every module Numba adds to its engine records its
defined symbols (numba.core.codegen.JitEngine), and the engine gives each
one's address; a symbol's size is taken as the distance to the next symbol
(capped), which is what perf needs to attribute samples.

    from perf_map import write_perf_map
    ...warm the code up...
    write_perf_map()                     # then, from a shell:
    perf record -F 999 -g -p <pid> -- sleep 10
    perf report --no-children --sort sym

or run a script under it (the map is written after the script's warm-up):

    PYTHONPATH=bench:. python bench/perf_map.py --seconds 10 -- script.py args...

The names are Numba's mangled ones (module, function, then the types);
``--demangle`` in the report is not needed, they read as they are.
"""
from __future__ import annotations

import os

MAX_SIZE = 1 << 20
"""The largest size given a symbol: the last one of a region, whose next
neighbour is another region's."""


def jit_symbols() -> list[tuple[int, str]]:
    """(address, name) of every function Numba's engine holds, and of the
    kernels runtime.gemm.microkernel compiled into engines of their own, by
    address; one entry an address (the names of aliases, which share one,
    joined by ``|``)."""
    from numba.core.registry import cpu_target

    engine = cpu_target.target_context.codegen()._engine
    found = []
    for name in sorted(engine._defined_symbols):
        try:
            address = engine.get_function_address(name)
        except Exception:  # noqa: BLE001 - a global variable, or a symbol the engine dropped
            continue
        if address:
            found.append((address, name))
    from runtime.gemm.microkernel import COMPILED  # the GEMM's and the simulator's LLVM IR kernels

    found.extend(COMPILED.items())
    named: dict[int, list[str]] = {}
    for address, name in sorted(found):
        named.setdefault(address, []).append(name)
    return [(address, "|".join(names)) for address, names in named.items()]


def write_perf_map(path: str | None = None) -> str:
    """Write perf's map of this process's Numba code; returns its path."""
    path = path or f"/tmp/perf-{os.getpid()}.map"
    symbols = jit_symbols()
    with open(path, "w") as out:
        for (address, name), after in zip(symbols, [a for a, _ in symbols[1:]] + [None]):
            size = min(after - address, MAX_SIZE) if after is not None else MAX_SIZE
            out.write(f"{address:x} {size:x} {name}\n")
    return path


def main() -> None:
    import argparse
    import runpy
    import subprocess
    import sys
    import threading

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds the script runs before perf starts")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds perf records")
    parser.add_argument("--out", default="perf.data")
    parser.add_argument("script", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    script = [a for a in args.script if a != "--"]

    import shutil

    if shutil.which("perf") is None:
        parser.error("perf is not installed (Debian: apt-get install linux-perf)")

    def record() -> None:
        import time
        time.sleep(args.warmup)
        print(f"perf map: {write_perf_map()}", file=sys.stderr, flush=True)
        subprocess.run(["perf", "record", "-F", "999", "-g", "-o", args.out, "-p", str(os.getpid()), "--",
                        "sleep", str(args.seconds)], check=False)

    threading.Thread(target=record, daemon=True).start()
    sys.argv = script
    runpy.run_path(script[0], run_name="__main__")


if __name__ == "__main__":
    main()
