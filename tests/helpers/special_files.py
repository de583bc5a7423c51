"""Paths that are not files a loader can afford, through every loader of a
file Tessera reads (tests/helpers/fuzz_files.py's, plus the compile step,
hardware configs and calibration folders): a FIFO no one writes (a hang,
before), /dev/zero (endless), a directory, and sparse files of 6 GiB (zeros,
and a valid file's first bytes followed by zeros). Each must be a named
error at once, without allocating what the file claims.

Run as a script (``python -m tests.helpers.special_files``), it prints one
JSON line per case: loader, path, outcome (the error class, or "accepted"),
the first words of the message, the seconds it took and how far the
process's peak RSS rose; tests/test_special_files.py and
bench/bench_special_files.py read those lines.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

SPARSE_BYTES = 6 << 30


def special_paths(folder: Path, seed: bytes, suffix: str) -> dict[str, str]:
    """The special paths for one loader, made in ``folder``."""
    fifo = folder / f"fifo{suffix}"
    os.mkfifo(fifo)
    paths = {"fifo": str(fifo), "dev_zero": "/dev/zero", "directory": str(folder / f"dir{suffix}")}
    os.mkdir(paths["directory"])
    for kind, head in (("sparse_zeros", b""), ("sparse_valid_head", seed[:65536])):
        path = folder / f"{kind}{suffix}"
        with open(path, "wb") as handle:
            handle.write(head)
            handle.truncate(SPARSE_BYTES)
        paths[kind] = str(path)
    return paths


def extra_loaders() -> dict[str, tuple[Callable[[str], object], str, bytes]]:
    """Loaders fuzz_files leaves out: compile (its image-size file and its
    model), hardware configs, calibration folders."""
    import numpy as np

    from compiler.compile import compile_model, image_size_string
    from compiler.zoo import resnet
    from passes.quant.calibration_data import calibration_batches
    from runtime.hardware import hardware_config

    model = resnet(10, image=32, width=8, classes=4).SerializeToString()

    def calibrate(path: str) -> None:
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "sample.npy").symlink_to(path)
            list(calibration_batches(folder, {"image": ((1, 3, 32, 32), np.float32)}))

    return {"compile_model": (lambda p: compile_model(p, image="32x32x3"), ".onnx", model),
            "image_size": (image_size_string, ".png", b"\x89PNG\r\n\x1a\n"),
            "hardware_config": (hardware_config, ".json", b'{"cards": 1}'),
            "calibration_folder": (calibrate, ".npy", b"\x93NUMPY")}


def run() -> None:
    from tests.helpers.fuzz_files import loaders

    every = {name: (loader.read, loader.suffix, loader.seed) for name, loader in loaders().items()}
    every.update(extra_loaders())
    with tempfile.TemporaryDirectory(prefix="special-files-") as root:
        for name, (read, suffix, seed) in sorted(every.items()):
            folder = Path(root) / name
            folder.mkdir()
            for kind, path in special_paths(folder, seed, suffix).items():
                _case(name, kind, read, path)


def _case(name: str, kind: str, read: Callable[[str], object], path: str) -> None:
    """Run one loader on one special path and print its JSON line."""
    from runtime.errors import TesseraError
    from tests.helpers.fuzz_files import NAMED_ERRORS

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    try:
        read(path)
        outcome, message = "accepted", ""
    except (TesseraError, *NAMED_ERRORS) as exc:
        outcome, message = type(exc).__name__, str(exc)
    except Exception as exc:  # an unnamed error: reported, and the test fails on it
        outcome, message = f"unnamed {type(exc).__name__}", str(exc)
    seconds = time.perf_counter() - start
    rise = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    print(json.dumps({"loader": name, "path": kind, "outcome": outcome, "message": message[:300],
                      "seconds": round(seconds, 4), "rss_rise": rise}), flush=True)


if __name__ == "__main__":
    sys.exit(run())
