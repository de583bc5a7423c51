"""``tessera-infer``: predictions, accuracy and throughput of a compiled
binary over a folder of images (shared/spec/fpga-inference-app.md; the
options and pipeline of Xilinx's infer_pynq_threaded.py, api-notes 6).
docs/infer_app.md has the options, the output and the errors.

    tessera-infer --xclbin model.bin --img_path images/ --labels labels.txt
    python -m runtime.app.infer --binary model.bin --img_path cat.jpg --top 3
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
import threading
from typing import ContextManager, Sequence, TextIO

import numpy as np

from runtime.app.images import (
    InferError,
    list_images,
    read_classes,
    read_fc_weights,
    read_labels,
    settings_for,
)
from runtime.app.pipeline import Row, RunResult, run_images
from runtime.app.profile import (
    COLUMNS,
    ORIGINAL_COLUMNS,
    describe_lines,
    duration_lines,
    original_values,
    profile_values,
    stage_spans,
    summary_lines,
    throughput_lines,
)
from runtime.app.scale import RayOptions, run_on_ray
from runtime.command import add_debug_flag, run_command
from runtime.errors import TesseraError
from runtime.files import FileError, atomic_output, check_writable
from runtime.preprocess import LAYOUTS
from runtime.trace import write_trace

PROG = "tessera-infer"
DESCRIPTION = ("Predictions, accuracy and throughput of a compiled Tessera binary over an image or a folder of "
               "images (docs/infer_app.md).")
EXAMPLES = """examples:
  tessera-infer --xclbin model.bin --img_path images/ --labels labels.txt --outfile out.csv
  tessera-infer --xclbin model.bin --img_path images/ --max_bs 1 --preprocess_workers 4 --profile   # latency
  tessera-infer --xclbin model.bin --img_path images/ --max_bs 100 --preprocess_workers 16 --profile # throughput
  tessera-infer --binary model.bin --img_path cat.jpg --classes names.txt --top 3 \\
                --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225
  tessera-infer --xclbin model.bin --img_path images/ --max_bs 8 --ray head:6379 --ray_cpus 4   # a Ray cluster
"""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _triple(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be numbers separated by commas (R,G,B), got {text!r}") from None
    if len(values) not in (1, 3):
        raise argparse.ArgumentTypeError(f"must be one value or three (R,G,B), got {text!r}")
    return values


def parser() -> argparse.ArgumentParser:
    """The command line (the spec's options and defaults, and the extras)."""
    p = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION,
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--xclbin", "--binary", dest="xclbin", required=True, metavar="BINARY",
                   help="the compiled Tessera binary (model.bin); --xclbin kept for compatibility")
    p.add_argument("--fcweights", metavar="CSV", help="weights of a final FC layer [classes, features] applied on "
                   "the host to the binary's output (int8 codes or floats)")
    p.add_argument("--img_path", required=True, metavar="PATH", help="an image file or a folder of images")
    p.add_argument("--max_bs", type=_positive, default=1, help="images per batch (default 1)")
    p.add_argument("--preprocess_workers", type=_positive, default=1,
                   help="pre-processing worker threads (default 1)")
    p.add_argument("--profile", action="store_true", help="per-image timestamps, a summary table and FPS")
    p.add_argument("--trace", metavar="JSON", help="also write a trace of the run in Chrome's trace-event format: "
                   "each image's stages on the host's wall clock and one device run's modelled timeline, for "
                   "ui.perfetto.dev or chrome://tracing (docs/trace.md)")
    p.add_argument("--outfile", metavar="CSV", help="write the results here (default: standard output)")
    p.add_argument("--labels", metavar="FILE", help="'<filename> <label>' lines: top-1 and top-5 accuracy")
    p.add_argument("--classes", metavar="FILE", help="class names, one a line, to name the predictions")
    p.add_argument("--top", type=_positive, default=5, help="classes listed per image (default 5)")
    p.add_argument("--mean", type=_triple, help="per-channel mean R,G,B on the [0, 1] pixel scale (default: as the "
                   "binary records, else 0)")
    p.add_argument("--std", type=_triple, help="per-channel std R,G,B on the [0, 1] pixel scale (default: as the "
                   "binary records, else 1)")
    p.add_argument("--layout", choices=LAYOUTS, help="the binary's input layout (default: as the binary records, "
                   "else from its input shape)")
    p.add_argument("--numclus", type=_positive, help="clusters per card the binary must have been compiled for")
    p.add_argument("--numcard", type=_positive, help="cards the binary must have been compiled for")
    ray = p.add_argument_group("scale-out on a Ray cluster (pip install 'tessera[ray]'; docs/infer_app.md)")
    ray.add_argument("--ray", metavar="auto|ADDRESS", help="shard the images over Ray actors, one runtime each: "
                     "'auto' joins this machine's cluster (or RAY_ADDRESS, else starts a local one), or a cluster "
                     "address such as head:6379")
    ray.add_argument("--ray_actors", type=_positive, help="actors (default: the cluster's CPUs / --ray_cpus)")
    ray.add_argument("--ray_cpus", type=_positive, default=1, help="CPUs, and simulator threads, per actor "
                     "(default 1)")
    ray.add_argument("--ray_shard", type=_positive, help="images per shard (default: about 32, whole batches)")
    add_debug_flag(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; 0 on success, else one line on stderr (runtime/command.py: 1 for an error)."""
    args = parser().parse_args(argv)
    return run_command(PROG, lambda: _run(args), args.debug)


def _run(args: argparse.Namespace) -> int:
    from runtime import FWDNXT

    if not args.ray:
        given = [f"--{name}" for name in ("ray_actors", "ray_shard") if getattr(args, name) is not None]
        if given or args.ray_cpus != 1:
            raise InferError(f"{' '.join(given or ['--ray_cpus'])} only applies with --ray auto|ADDRESS")
    paths = list_images(args.img_path)
    classes = read_classes(args.classes) if args.classes else None
    labels = _labels(args.labels, paths) if args.labels else None
    for option, path in (("--outfile", args.outfile), ("--trace", args.trace)):
        if path:
            _check_writable(option, path)
    ie = FWDNXT()
    try:
        counts = ie.Init(args.xclbin, "")
    except TesseraError as exc:
        raise InferError(f"--xclbin {args.xclbin!r}: {exc}") from None
    _check_placement(ie, args)
    try:
        recorded = ie.GetInfo("preprocess")
    except TesseraError as exc:
        raise InferError(f"--xclbin {args.xclbin!r}: {exc}") from None
    settings = settings_for(ie.GetInfo("inshapes"), args.layout, args.mean, args.std, recorded)
    features = (counts if isinstance(counts, int) else counts[0]) // int(ie.GetInfo("numbatch"))
    fc = read_fc_weights(args.fcweights, features) if args.fcweights else None
    report = sys.stdout  # as the original prints them, after the rows when they go to standard output
    folder = args.img_path if os.path.isdir(args.img_path) else None
    with _output(args.outfile) as out:
        writer = _Writer(out, args.top, classes, args.profile, len(paths), folder or args.img_path, bool(folder))
        common = dict(max_bs=args.max_bs, workers=args.preprocess_workers, top=args.top, fc=fc, sink=writer.write,
                      skipped=writer.skip)
        if args.ray:
            ie.Free()
            options = RayOptions(args.ray, args.ray_actors, args.ray_cpus, args.ray_shard)
            result = run_on_ray(args.xclbin, paths, settings, options, **common)
        else:
            result = run_images(ie, paths, settings, **common)
        writer.close()
    ie.Free()
    if result.skipped and not result.rows:
        raise InferError(f"none of the {len(paths)} image(s) of --img_path {args.img_path!r} could be read")
    _report(result, labels, args.profile, report)
    if args.trace:
        _write_trace(args, result)
    return 0


def _output(outfile: str | None) -> ContextManager[TextIO]:
    """Where the CSV goes: standard output, or ``outfile`` written whole at
    the end of the run (runtime.files.atomic_output; a failed run leaves
    the previous file as it was)."""
    if not outfile:
        return contextlib.nullcontext(sys.stdout)
    return atomic_output(outfile, "w", encoding="utf-8", newline="")


def _check_writable(option: str, path: str) -> None:
    """Refuse an --outfile or --trace that could not be written, before the binary is loaded and the images run."""
    try:
        check_writable(path)
    except FileError as exc:
        raise InferError(f"{option} {path!r}: {exc.cause}") from None


def _write_trace(args: argparse.Namespace, result: RunResult) -> None:
    """--trace: the images' stages (profile.stage_spans) and the modelled
    timeline of one device run of the binary (the same for every run)."""
    from runtime.binary import read_binary
    from runtime.engine import Engine

    timeline = Engine(read_binary(args.xclbin)).timeline
    try:
        write_trace(args.trace, timeline, stage_spans(result.rows),
                    {"app": PROG, "binary": args.xclbin, "images": len(result.rows), "wall_s": result.wall_s})
    except FileError as exc:
        raise InferError(f"--trace {args.trace!r} could not be written: {exc.cause} (the results are written)"
                         ) from None


def _check_placement(ie, args: argparse.Namespace) -> None:
    for option, name, wanted in (("--numclus", "numcluster", args.numclus), ("--numcard", "numfpga", args.numcard)):
        have = int(ie.GetInfo(name))
        if wanted is not None and wanted != have:
            raise InferError(f"{option} {wanted}: {args.xclbin!r} was compiled for {have}; recompile it with "
                             f"`tessera compile ... {option} {wanted}`")


def _labels(path: str, paths) -> dict[str, int | str]:
    labels, missing = read_labels(path, {p.name for p in paths})
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        print(f"{PROG}: warning: --labels {path!r} names {len(missing)} file(s) not among the images: {shown}",
              file=sys.stderr)
    if not labels:
        raise InferError(f"--labels {path!r} names none of the {len(paths)} image(s) of --img_path")
    texts = sorted({label for label in labels.values() if isinstance(label, str)})
    if texts:
        shown = ", ".join(map(repr, texts[:5])) + (", ..." if len(texts) > 5 else "")
        print(f"{PROG}: warning: --labels {path!r} has labels that are not class indices ({shown}); as in the "
              "original script, their images count in the accuracy and never match a prediction", file=sys.stderr)
    return labels


class _Writer:
    """The logger's sink: one CSV row per image in input order, warnings for
    skipped images, and a progress bar on a terminal. The columns are the
    original script's (api-notes 6.2: its pandas index, ``File Name``,
    ``Prediction``, with --profile its timestamps and derived times), then
    Tessera's own."""

    def __init__(self, out: TextIO, top: int, classes: list[str] | None, profile: bool, total: int, img_path: str,
                 folder: bool):
        self.csv, self.classes, self.profile, self.total = csv.writer(out), classes, profile, total
        self.img_path, self.folder = img_path, folder
        self.done = self.written = 0
        self.lock = threading.Lock()
        self.bar = sys.stderr.isatty()
        original = ["", "File Name", "Prediction"] + (ORIGINAL_COLUMNS if profile else [])
        header = ["file", "prediction", f"top{top}", "score"] + (["name"] if classes else [])
        self.csv.writerow(original + header + (COLUMNS if profile else []))

    def write(self, row: Row) -> None:
        name = os.path.join(self.img_path, row.file) if self.folder else self.img_path
        line = [self.written, name, str(np.array(row.top, np.uint32))]
        if self.profile:
            line += [repr(float(v)) for v in original_values(row)]
        line += [row.file, row.top[0], " ".join(map(str, row.top)), f"{row.scores[0]:.6g}"]
        if self.classes:
            line.append(self.classes[row.top[0]] if row.top[0] < len(self.classes) else "")
        if self.profile:
            line += [f"{v:.6f}" for v in profile_values(row)]
        self.csv.writerow(line)
        self.written += 1
        self._tick()

    def skip(self, name: str, why: str) -> None:
        if self.bar:
            sys.stderr.write("\n")
        print(f"{PROG}: warning: skipping unreadable image {why}", file=sys.stderr)
        self._tick()

    def _tick(self) -> None:
        with self.lock:
            self.done += 1
            if not self.bar:
                return
            width = 30
            filled = width * self.done // max(self.total, 1)
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.bar:
            sys.stderr.write("\n")


def _report(result: RunResult, labels: dict[str, int | str] | None, profile: bool, out: TextIO) -> None:
    """The lines after the rows, the original script's in its order
    (describe() of the profile, Top-1 and Top-5 accuracy, duration and
    FPS: api-notes 6.2), each of Tessera's before the original's last."""
    rows = result.rows
    if result.skipped:
        print(f"skipped: {len(result.skipped)} unreadable image(s)", file=out)
    if profile:
        for line in describe_lines(rows) + summary_lines(rows):
            print(line, file=out)
    if labels is not None:
        scored = [r for r in rows if r.file in labels]
        top1 = sum(r.top[0] == labels[r.file] for r in scored)
        top5 = sum(labels[r.file] in r.top[:5] for r in scored)
        n = max(len(scored), 1)
        print("Top-1 Accuracy:", top1 / n, file=out)
        print("Top-5 Accuracy:", top5 / n, file=out)
        print(f"accuracy: top-1 {100.0 * top1 / n:.2f}% top-5 {100.0 * top5 / n:.2f}% over {len(scored)} labelled "
              "image(s)", file=out)
    for line in throughput_lines(rows, result.wall_s)[:2 if profile else 1]:
        print(line, file=out)
    for line in duration_lines(len(rows), result.wall_s):
        print(line, file=out)


if __name__ == "__main__":
    sys.exit(main())
