"""The built-in models and the device test models run with Numba's bounds
checking on: ``NUMBA_BOUNDSCHECK=1 python -m tests.helpers.boundscheck``
(tests/test_boundscheck.py runs it in a subprocess, since the flag is read
when Numba is imported). An out-of-range index in a kernel then raises
IndexError here instead of reading or writing past an array.

Every kernel path runs: the float executor (Run_th's path) on the built-in
models, the quantized CPU path, and the device simulator on every device
test model on the default card and on the tiny one that forces heavy
tiling, each held to the integer reference bit for bit (so the run checks
what it computes too). Small variants of the built-in models: kernels take
shapes as arguments, one compiled signature serves every size, and the tiny
card makes small layers tile as large ones do. The kernels compile into
their own cache folder (runtime/jit.py tags it "-boundscheck").

Compiling every kernel again takes minutes, so the suite starts the run in
the background as soon as the test is collected (:func:`start`, from
tests/conftest.py), niced, on the core the suite mostly leaves idle; the
test, run last, waits for it (:func:`finish`)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numba
import numpy as np

from compiler.zoo import mobilenet_v2, resnet, transformer_block
from runtime.hardware import PRESETS
from tests.helpers.device_models import assert_device_exact, kitchen_sink, modern_sink, moves, quantize_seeded
from tests.helpers.models import compare_variants_with_onnxruntime

BUILTIN = {"resnet18": lambda: resnet(18, image=32, classes=10, width=8),
           "mobilenet_v2": lambda: mobilenet_v2(image=32, classes=10, width=0.25),
           "transformer": transformer_block}
"""The built-in models (compiler.zoo.BUILTIN), small."""
DEVICE = {"kitchen_sink": (kitchen_sink, {"hwlinear": True}),
          "kitchen_sink_int16": (kitchen_sink, {"hwlinear": True, "mode": "int16"}),
          "modern_sink": (modern_sink, {}), "moves": (moves, {}),
          "resnet18": (BUILTIN["resnet18"], {}), "mobilenet_v2": (BUILTIN["mobilenet_v2"], {})}


TIMEOUT = 1200
"""Seconds the run may take (cold, compiling every kernel it uses, about 3 minutes on 2 cores)."""
SHARED = "TESSERA_BOUNDSCHECK_RUN"
"""Names the folder of a run another process of the session started (the
controller of a distributed session, for its workers): its log and, once
it ended, its exit status."""
_running: dict[str, tuple[subprocess.Popen, Path]] = {}


def start(share: bool = False) -> None:
    """The run started in the background (once). With ``share``, its folder
    is published in the environment (:data:`SHARED`) for the processes this
    one starts next (pytest-xdist's workers), and a thread here writes the
    run's exit status there when it ends."""
    if "run" in _running or os.environ.get(SHARED):
        return
    folder = Path(tempfile.mkdtemp(prefix="tessera-boundscheck-"))
    log = folder / "log"
    # LLVM's -O1: every index still checked, 12 % less CPU than -O3 on a cold cache (217 s against 246
    # here), and still cacheable (-O0 left kernels referring to dynamic globals, which Numba will not cache)
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_OPT="1", TESSERA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    root = Path(__file__).resolve().parents[2]
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "tests.helpers.boundscheck"], cwd=root, env=env,
                                   stdout=out, stderr=subprocess.STDOUT, preexec_fn=lambda: os.nice(5))
    _running["run"] = (process, folder)
    if share:
        os.environ[SHARED] = str(folder)
        threading.Thread(target=_record_status, args=(process, folder), daemon=True).start()


def _record_status(process: subprocess.Popen, folder: Path) -> None:
    status = process.wait()
    (folder / "status.tmp").write_text(str(status))
    (folder / "status.tmp").replace(folder / "status")


def finish() -> tuple[int, str]:
    """(exit status, output) of the run, waited for (started if it was not,
    nor by another process of the session)."""
    shared = os.environ.get(SHARED)
    if shared and "run" not in _running:
        folder = Path(shared)
        deadline = time.monotonic() + TIMEOUT
        while not (folder / "status").exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        status = (folder / "status").read_text() if (folder / "status").exists() else "-9"
        return int(status), (folder / "log").read_text(errors="replace") if (folder / "log").exists() else ""
    start()
    process, folder = _running["run"]
    try:
        process.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return process.returncode, (folder / "log").read_text(errors="replace")


def stop() -> None:
    """Kill the run if it is still going (the session ended early)."""
    if "run" in _running:
        process, folder = _running.pop("run")
        if process.poll() is None:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


@numba.njit
def _past_the_end(a):
    return a[a.shape[0]]


def checking() -> bool:
    """Whether compiled kernels check their indices (an index one past the
    end raises IndexError, as it does only with NUMBA_BOUNDSCHECK=1)."""
    try:
        _past_the_end(np.zeros(3))
    except IndexError:
        return True
    return False


def main() -> int:
    if not checking():
        print("bounds checking is off: run with NUMBA_BOUNDSCHECK=1", file=sys.stderr)
        return 2
    for name, build_model in BUILTIN.items():
        began = time.perf_counter()
        model = build_model()
        # the float executor on the imported graph, and after the whole pipeline (fused kernels: Run_th's path)
        worst = max(max(errors.values()) for errors in compare_variants_with_onnxruntime(model).values())
        assert worst < 1e-3, f"{name}: the float executor is off onnxruntime by {worst:g}"
        print(f"float {name}: max relative error {worst:.2e} ({time.perf_counter() - began:.1f} s)", flush=True)
    for name, (build_model, options) in DEVICE.items():
        for card in ("fwdnxt", "tiny"):
            began = time.perf_counter()
            assert_device_exact(*quantize_seeded(build_model(), PRESETS[card], **options), PRESETS[card], seeds=(0,))
            print(f"device {name} on {card}: bit-exact ({time.perf_counter() - began:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
