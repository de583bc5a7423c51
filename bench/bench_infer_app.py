"""tessera-infer's latency and throughput tunings (issue 21 item 4) on the
built-in ResNet-18 (224x224, int8, calibrated on photo crops): the spec's
two settings, ``--max_bs 1 --preprocess_workers 4`` (latency) and
``--max_bs 100 --preprocess_workers 16`` (throughput), run as a user runs
the command (a subprocess) over a folder of JPEG crops of scikit-learn's
sample photos, with --profile. Prints, per setting, the measured FPS on
this host's simulator (wall time, pre-processing included), the mean and
p90 latency per image, and the projected FPS of the modelled hardware (from
hwtime). Both runs must give the same predictions.

With ``--ray`` it measures the scale-out instead (issue 21 item 5): the
throughput tuning on one host, then with ``--ray auto`` (a local Ray
cluster of this machine's cores) and 1 and 2 actors of one CPU each, every
run giving the same predictions.

    PYTHONPATH=. python bench/bench_infer_app.py [--images 64] [--ray]

The tables in docs/infer_app.md come from this script.
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import warnings

import numpy as np

from compiler.compile import compile_model
from compiler.zoo import builtin_model
from compiler.zoo.images import image_crops, sample_photos

TUNINGS = [("latency", 1, 4), ("throughput", 100, 16)]


def _jpegs(folder: str, count: int, size: int = 256) -> None:
    """``count`` JPEG crops of the sample photos (seeded), ``size`` square."""
    from PIL import Image

    rng = np.random.default_rng(7)
    photos = sample_photos()
    for i in range(count):
        photo = photos[i % len(photos)]
        side = int(rng.integers(size, min(photo.shape[:2]) + 1))
        y, x = (int(rng.integers(0, photo.shape[k] - side + 1)) for k in (0, 1))
        Image.fromarray(photo[y:y + side, x:x + side]).resize((size, size)).save(
            os.path.join(folder, f"img_{i:04d}.jpg"), quality=90)


def _run(binary: str, images: str, out_csv: str, max_bs: int, workers: int, *extra: str, env=None):
    """One tessera-infer run with --profile: (measured FPS, mean and p90
    total ms, projected FPS and latency ms, the CSV's file and prediction)."""
    done = subprocess.run([sys.executable, "-m", "runtime.app.infer", "--xclbin", binary, "--img_path", images,
                           "--max_bs", str(max_bs), "--preprocess_workers", str(workers), "--profile",
                           "--outfile", out_csv, "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225",
                           *extra], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"tessera-infer {' '.join(extra)} failed:\n{done.stdout}\n{done.stderr}")
    text = done.stdout + done.stderr
    measured = float(re.search(r"= ([\d.]+) FPS \(this host", text).group(1))
    projected = re.search(r"projected: ([\d.]+) FPS, ([\d.]+) ms latency", text)
    total = re.search(r"^total_ms\s+\d+\s+([\d.]+)\s+[\d.]+\s+([\d.]+)", text, re.MULTILINE)
    with open(out_csv) as f:
        predictions = [row[:2] for row in csv.reader(f)]
    return (measured, float(total.group(1)), float(total.group(2)), float(projected.group(1)),
            float(projected.group(2)), predictions)


def _tunings(binary: str, images: str, folder: str) -> None:
    print(f"{'tuning':<12}{'max_bs':>7}{'workers':>8}{'FPS (measured)':>16}{'mean ms':>9}{'p90 ms':>8}"
          f"{'FPS (projected)':>17}{'latency ms (projected)':>24}")
    predictions = []
    for name, max_bs, workers in TUNINGS:
        fps, mean, p90, hw_fps, hw_ms, rows = _run(binary, images, os.path.join(folder, f"{name}.csv"), max_bs,
                                                   workers)
        print(f"{name:<12}{max_bs:>7}{workers:>8}{fps:>16.2f}{mean:>9.0f}{p90:>8.0f}{hw_fps:>17.1f}{hw_ms:>24.3f}",
              flush=True)
        predictions.append(rows)
    print("predictions:", "identical in both runs" if predictions[0] == predictions[1] else "DIFFERENT")


def _scale_out(binary: str, images: str, folder: str) -> None:
    """One host (the simulator on every core) against 1 and 2 Ray actors of
    one core each; the wall time excludes starting Ray and the actors."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    runs = [("one host, no Ray", ()), ("Ray, 1 actor x 1 CPU", ("--ray", "auto", "--ray_actors", "1")),
            ("Ray, 2 actors x 1 CPU", ("--ray", "auto", "--ray_actors", "2"))]
    print(f"{'run':<24}{'FPS (measured)':>16}{'mean ms':>9}{'p90 ms':>8}{'FPS (projected)':>17}")
    predictions = []
    for number, (name, extra) in enumerate(runs):
        fps, mean, p90, hw_fps, _, rows = _run(binary, images, os.path.join(folder, f"ray{number}.csv"), 8, 4,
                                               *extra, env=env)
        print(f"{name:<24}{fps:>16.2f}{mean:>9.0f}{p90:>8.0f}{hw_fps:>17.1f}", flush=True)
        predictions.append(rows)
    print("predictions:", "identical in every run" if all(p == predictions[0] for p in predictions) else "DIFFERENT")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--ray", action="store_true", help="measure the Ray scale-out (1 vs 2 local actors)")
    args = parser.parse_args()
    folder = tempfile.mkdtemp()
    images = os.path.join(folder, "images")
    os.mkdir(images)
    _jpegs(images, args.images)
    binary = os.path.join(folder, "resnet18.bin")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compile_model(builtin_model("resnet18"), image="224x224x3", samples=image_crops(16, size=224, seed=1),
                      outfile=binary, strip_reference=True)
    print(f"ResNet-18 224x224 int8, {args.images} JPEG images, {os.cpu_count()} host cores")
    (_scale_out if args.ray else _tunings)(binary, images, folder)


if __name__ == "__main__":
    main()
