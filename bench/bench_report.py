"""The compile report's page in a browser (issue 58 item 1: large models
stay responsive, the page loads in under 2 s): ResNet-50 (onnx's model-zoo
topology) and YOLOv8 (compiler/zoo/ultralytics.py, 320x320), each compiled
for one cluster (batch mode) and in split mode over 2 cards x 4 clusters,
on 2 seeded random calibration inputs (the report does not depend on them).

For each binary: the seconds ``write_report`` takes, the page's size, its
layers and schedule bars, and over --rounds loads in headless Chromium
(--dump-dom): the page's own render time (performance.now() when its
script has drawn everything, counted from navigation start, so HTML and
JSON parsing included) against the 2 s target, and the browser's wall time
against the reference measured in the same run: the same browser loading a
blank page. A screenshot of each page (1400x1000) goes to --out.

--readme also writes docs/images/report-resnet18.png: the report of the
built-in ResNet-18 as ``tessera run`` compiles it (calibrated on crops of
the sample photographs when scikit-learn has them).

    PYTHONPATH=. python bench/bench_report.py [--rounds 3] [--out DIR] [--readme] [--models resnet50,yolov8]
"""
from __future__ import annotations

from timing import load, spread  # first: sets the thread counts
# isort: split

import argparse
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

TARGET_MS = 2000.0
"""Issue 58: the report of a large model loads in under 2 s."""
BROWSER_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars")
WINDOW = "--window-size=1400,1000"
PLACEMENTS = {"1 cluster": {}, "split 2x4": {"numcard": 2, "numclus": 4, "split": True}}
README_IMAGE = Path(__file__).resolve().parent.parent / "docs" / "images" / "report-resnet18.png"


def _models():
    from compiler.zoo import builtin_model
    from compiler.zoo.ultralytics import yolov8

    return {"resnet50": (lambda: builtin_model("zoo:resnet50"), 224), "yolov8": (lambda: yolov8(image=320), 320)}


def browser() -> str:
    for name in ("chromium", "chromium-browser", "/usr/bin/chromium"):
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit("headless Chromium is not installed (Debian: apt-get install chromium)")


def compile_binary(model, size: int, path: Path, **placement) -> float:
    """Compile ``model`` to ``path``; the seconds it took."""
    from compiler.compile import compile_model

    rng = np.random.default_rng(1)
    samples = [rng.standard_normal((1, 3, size, size)).astype(np.float32) for _ in range(2)]
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compile_model(model, samples=samples, outfile=path, strip_reference=True, **placement)
    return time.perf_counter() - start


def load_page(page: Path, profile: Path) -> tuple[float, dict[str, str]]:
    """One load of ``page``: the browser's wall seconds and the body's data-* marks."""
    start = time.perf_counter()
    done = subprocess.run([browser(), *BROWSER_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - start
    body = re.search(r"<body([^>]*)>", done.stdout)
    marks = dict(re.findall(r'data-([\w-]+)="([^"]*)"', body.group(1))) if body else {}
    errors = re.search(r'<pre id="errors"[^>]*>(.*?)</pre>', done.stdout, re.S)
    if errors and errors.group(1).strip():
        raise SystemExit(f"{page}: script errors: {errors.group(1).strip()[:2000]}")
    return seconds, marks


def screenshot(page: Path, image: Path, profile: Path) -> None:
    """A 1400x1000 screenshot of ``page`` to ``image`` (written beside it, then renamed over it)."""
    partial = image.with_name(f".{image.name}.{os.getpid()}.png")
    subprocess.run([browser(), *BROWSER_FLAGS, f"--user-data-dir={profile}", WINDOW, f"--screenshot={partial}",
                    page.as_uri()], capture_output=True, timeout=120, check=True)
    os.replace(partial, image)


def measure(name: str, binary: Path, out: Path, blank: Path, rounds: int) -> None:
    from compiler.report import write_report

    start = time.perf_counter()
    page = write_report(binary, out / f"{name}.html")
    written = time.perf_counter() - start
    profile = Path(tempfile.mkdtemp(prefix="tessera-bench-browser-"))
    try:
        pages, blanks, renders, marks = [], [], [], {}
        for _ in range(rounds):  # alternate, so that the machine's load falls on both alike
            seconds, marks = load_page(page, profile)
            pages.append(seconds)
            renders.append(float(marks.get("render-ms", "nan")))
            blanks.append(load_page(blank, profile)[0])
        image = out / f"{name}.png"
        screenshot(page, image, profile)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    ratio = statistics.median(pages) / statistics.median(blanks)
    verdict = "within" if max(renders) < TARGET_MS else "OVER"
    print(f"{name}: write_report {written:.2f} s, page {page.stat().st_size / 1024:.0f} KiB, "
          f"{marks.get('layers')} layers, {marks.get('bars')} bars on {marks.get('lanes')} lanes", flush=True)
    print(f"  render (navigation start to drawn) ms min/median/max {spread(renders, '{:.0f}')}: {verdict} the "
          f"{TARGET_MS:.0f} ms target; browser wall s {spread(pages)} against a blank page's {spread(blanks)} "
          f"(x{ratio:.2f}); screenshot {image}", flush=True)


def readme_image(out: Path) -> None:
    """docs/images/report-resnet18.png: the built-in ResNet-18's report, compiled as tessera run does."""
    from compiler.compile import compile_model
    from compiler.report import write_report
    from compiler.zoo import builtin_model

    try:
        from compiler.zoo.images import image_crops

        samples, source = list(image_crops(32, size=224, seed=1)), "32 crops of the sample photographs"
    except ImportError:
        rng = np.random.default_rng(1)
        samples, source = [rng.standard_normal((1, 3, 224, 224)).astype(np.float32) for _ in range(32)], \
            "32 seeded random inputs"
    binary = out / "resnet18.bin"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compile_model(builtin_model("resnet18"), samples=samples, outfile=binary)
    page = write_report(binary, out / "resnet18.html")
    profile = Path(tempfile.mkdtemp(prefix="tessera-bench-browser-"))
    try:
        README_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        screenshot(page, README_IMAGE, profile)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    print(f"resnet18 (calibrated on {source}): wrote {README_IMAGE}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", default="resnet50,yolov8")
    parser.add_argument("--out", help="folder for the binaries, pages and screenshots (default: a temporary one, "
                                      "kept)")
    parser.add_argument("--readme", action="store_true", help="also write docs/images/report-resnet18.png")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="tessera-bench-report-"))
    out.mkdir(parents=True, exist_ok=True)
    blank = out / "blank.html"
    blank.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body></body></html>")
    print(f"{load()}; browser {browser()}; output in {out}", flush=True)
    models = _models()
    for name in [m for m in args.models.split(",") if m]:
        make, size = models[name]
        for label, placement in PLACEMENTS.items():
            binary = out / f"{name}-{label.replace(' ', '-')}.bin"
            seconds = compile_binary(make(), size, binary, **placement)
            print(f"{name} ({label}): compiled in {seconds:.1f} s", flush=True)
            measure(f"{name}-{label.replace(' ', '-')}", binary, out, blank, args.rounds)
    if args.readme:
        readme_image(out)
    print(load(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
