"""tessera-infer's latency and throughput tunings (issue 21 item 4) on the
built-in ResNet-18 (224x224, int8, calibrated on photo crops): the spec's
two settings, ``--max_bs 1 --preprocess_workers 4`` (latency) and
``--max_bs 100 --preprocess_workers 16`` (throughput), run as a user runs
the command (a subprocess) over a folder of JPEG crops of scikit-learn's
sample photos, with --profile. Prints, per setting, the measured FPS on
this host's simulator (wall time, pre-processing included), the mean and
p90 latency per image, and the projected FPS of the modelled hardware (from
hwtime). Both runs must give the same predictions.

    PYTHONPATH=. python bench/bench_infer_app.py [--images 64]

The table in docs/infer_app.md comes from this script.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64)
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
    print(f"{'tuning':<12}{'max_bs':>7}{'workers':>8}{'FPS (measured)':>16}{'mean ms':>9}{'p90 ms':>8}"
          f"{'FPS (projected)':>17}{'latency ms (projected)':>24}")
    predictions = []
    for name, max_bs, workers in TUNINGS:
        out_csv = os.path.join(folder, f"{name}.csv")
        done = subprocess.run([sys.executable, "-m", "runtime.app.infer", "--xclbin", binary, "--img_path", images,
                               "--max_bs", str(max_bs), "--preprocess_workers", str(workers), "--profile",
                               "--outfile", out_csv, "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{name}: tessera-infer failed:\n{done.stdout}\n{done.stderr}")
        text = done.stdout + done.stderr
        measured = float(re.search(r"= ([\d.]+) FPS \(this host", text).group(1))
        projected = re.search(r"projected: ([\d.]+) FPS, ([\d.]+) ms latency", text)
        total = re.search(r"^total_ms\s+\d+\s+([\d.]+)\s+[\d.]+\s+([\d.]+)", text, re.MULTILINE)
        print(f"{name:<12}{max_bs:>7}{workers:>8}{measured:>16.2f}{float(total.group(1)):>9.0f}"
              f"{float(total.group(2)):>8.0f}{float(projected.group(1)):>17.1f}{float(projected.group(2)):>24.3f}",
              flush=True)
        with open(out_csv) as f:
            predictions.append([row[:2] for row in csv.reader(f)])
    print("predictions:", "identical in both runs" if predictions[0] == predictions[1] else "DIFFERENT")


if __name__ == "__main__":
    main()
