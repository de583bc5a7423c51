"""Fill the Numba kernel cache with the kernels Tessera's main jobs use.

    python -m compiler.warmup [--model NAME ...] [--count N]

Runs ``tessera run`` on each model (default: the README's job, the built-in
ResNet-18, and onnx's ResNet-50, whose binary a user then runs with
``tessera run model.bin``): compile with a few calibration inputs, Run_sw
twice, Run_th. Every kernel signature those reach is compiled into the cache
runtime/jit.py points at (``TESSERA_NUMBA_CACHE_DIR`` chooses its base), and
so are the GEMM's narrow float kernels (runtime.gemm.family.narrow_isa: the
products of a small model's last planes), the direct convolutions' kernels
and schedule operation (runtime.kernels.nn_direct) and the simulator's whole-run entry
(runtime/sim/whole.py: a small model's device run), which neither job
reaches. The
thread pool is kept on meanwhile (runtime.parallel.steady): on a busy build
host it would stand aside, and the team drivers its jobs run through would
never be compiled, so the first run of a fresh install would compile them.
setup.py runs it while ``pip install .`` builds the wheel and ships the
result (runtime/_jitcache/), so that a fresh install's first run loads its
kernels instead of compiling them. Numba compiles the same code either way;
only when does it change. Prints the seconds each job took.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from typing import Sequence

JOBS = ("resnet18", "zoo:resnet50")
"""The models ``tessera run`` is warmed on: the default job and ResNet-50."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compiler.warmup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", help=f"a model to run (default: {', '.join(JOBS)})")
    parser.add_argument("--count", type=int, default=2, help="calibration inputs (the kernels are the same for any "
                                                             "number; default: %(default)s)")
    args = parser.parse_args(argv)
    from compiler.cli import main as tessera
    from runtime.jit import cache_key

    start = time.perf_counter()
    failed = 0
    from compiler import precompile
    from runtime.parallel import steady

    with (tempfile.TemporaryDirectory(prefix="tessera-warmup-") as folder, steady(),  # as on an idle machine
          precompile.start("run")):  # another core compiles the second half of the jobs' kernels
        for i, model in enumerate(args.model or JOBS):
            began = time.perf_counter()
            output = io.StringIO()
            with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
                code = tessera(["run", model, "--count", str(args.count), "-o", os.path.join(folder, f"{i}.bin")])
            failed += code != 0
            status = "" if code == 0 else f" FAILED (exit {code}):\n{output.getvalue()[-2000:]}"
            print(f"warmup: tessera run {model}: {time.perf_counter() - began:.1f} s{status}", flush=True)
    from runtime import gemm
    from runtime.gemm.family import narrow_isa

    if gemm.available() and narrow_isa(gemm.host_isa()) is not None:  # small models' 3x3 to 1x1 planes (~1 s)
        gemm.kernel_addresses(narrow_isa(gemm.host_isa()), "f32")
        from runtime.kernels import nn_direct
        from runtime.schedule.ops import op_address
        from runtime.schedule.records import DIRECT

        op_address(DIRECT)  # small models' direct convolutions (ResNet-10 at 32 x 32; neither job has one)
        nn_direct.direct_kernels(nn_direct.direct_family())
    from runtime.sim import whole

    whole.interpret_table.compile(whole.SIGNATURE)  # a small model's whole device run (neither job has one)
    whole.run_card_table.compile(whole.DRIVER_SIGNATURE)  # a pooled device run's driver (the jobs reach it too)
    import numba

    from runtime.jit import prepare_to_ship

    if numba.config.CACHE_DIR:
        prepare_to_ship(numba.config.CACHE_DIR)  # a wheel installed on another CPU then says why it compiles
    print(f"warmup: kernel cache {cache_key()} filled in {time.perf_counter() - start:.1f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
