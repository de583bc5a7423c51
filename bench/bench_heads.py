"""Detector heads in int8, every output part apart (issue 56): the held-out
kinds built in compiler/zoo (the trained YOLOv8-style digit detector, the
CenterFace-style digit detector, the DB text detector with a saturated
map) and the family builders (ppocr_det, centernet, yolov8, yolo11_seg:
seeded weights made trained-like, fed photo crops), calibrated on some
real inputs and evaluated on others.

Per model and row: the SNR of each output part against float (an output
that concatenates parts, as YOLO's boxes and class scores, measured part by
part: :func:`concat_parts`), and the share of the float model's detections
(its own decoder: NMS, peaks, DB regions) that the quantized model finds
again (same label, IoU >= 0.5). Rows: onnxruntime's quantize_static (QDQ,
per-channel int8 weights, u8 or s8 activations; its best calibrator and
activation type by the worst part: bench/bench_detector.py's search),
Tessera's default int8, and Tessera with target_snr=30 (whether reached,
the 16-bit MAC share and hwtime before and after from its TargetReport).
Last, per part, whether Tessera's default is at or above onnxruntime's
(issue 56 item 5).

    PYTHONPATH=. python bench/bench_heads.py [--calibration 32] [--evaluation 32] [--models yolo_digits,yolov8]
"""
from __future__ import annotations

from timing import THREADS  # noqa: F401  first: sets the thread counts
# isort: split

import argparse
import logging
import time
import warnings
from typing import Callable

import onnx
from onnx import numpy_helper
from bench_detector import Case, _onnxruntime, _run, _session
from onnxruntime.quantization import QuantType

from compiler.compare import ErrorStats, update_outputs
from compiler.quantize import quantize_model
from compiler.agreement import agreement


def concat_parts(model: onnx.ModelProto):
    """Every output's parts as the pipeline measures them
    (passes/quant/head_grids.output_parts on the imported float graph: a
    Concat of quantities, nested Concats opened, read through shape-only and
    pointwise ops), whatever the quantizer then does with them."""
    from compiler.frontend import import_onnx
    from passes.quant.head_grids import output_parts

    return output_parts(import_onnx(model))


def _part_score(parts: dict) -> Callable:
    def score(case: Case, reference: list[dict], results: list[dict]) -> tuple[dict, float]:
        stats: dict[str, ErrorStats] = {}
        for f, q in zip(reference, results):
            update_outputs(stats, f, q, parts)
        matched = [agreement(case.detect(f), case.detect(q)) for f, q in zip(reference, results)]
        return {k: s.snr_db for k, s in stats.items()}, sum(m for m, _ in matched) / max(sum(n for _, n in matched), 1)
    return score


def _photos(size: int) -> Callable[[int, int], tuple]:
    from compiler.zoo.images import image_crops

    return lambda count, seed: (image_crops(count, size, seed=seed), None)


def _trained_like(builder: Callable[..., onnx.ModelProto], size: int) -> onnx.ModelProto:
    """The family model (static) with BatchNorm statistics of photo crops
    (bench/families.py's way), or, an export with its BatchNorms folded,
    its convolutions rescaled as if they had been there (the heads' last
    convolutions, ``/2/``, keep their seeded scale). The rescaling measures
    the crops as one batch, so it runs on the free-batch export (whose
    Reshapes follow the batch) and the weights go to the static one,
    convolution by convolution: the builders draw the same weights."""
    from compiler.zoo.images import image_crops
    from compiler.zoo.statistics import normalised_convolutions, with_data_statistics

    crops = image_crops(16, size, seed=99)
    model = builder()
    if any(n.op_type == "BatchNormalization" for n in model.graph.node):
        return with_data_statistics(model, crops[:8])
    free = builder(static=False)
    last = [n.name for n in free.graph.node if n.op_type == "Conv" and "/2/" in n.name]
    free = normalised_convolutions(free, crops, skip=last)
    weights = {t.name: t for t in free.graph.initializer}
    inits = {t.name: t for t in model.graph.initializer}
    convs = [[n for n in m.graph.node if n.op_type == "Conv"] for m in (free, model)]
    for source, target in zip(*convs):
        for a, b in zip(source.input[1:], target.input[1:]):
            inits[b].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weights[a]), b))
    return model


def cases() -> dict[str, Callable[[], Case]]:
    from compiler.zoo import digit_detector as digits
    from compiler.zoo import families
    from compiler.zoo import text_detector as text
    from compiler.zoo import yolo_detector as yolo

    return {
        "yolo_digits": lambda: Case("YOLOv8-style digit detector (trained head), colour canvases 64x64",
                                    yolo.yolo_detector(), "images", lambda r: r, yolo.detect, yolo.colour_canvases),
        "centerface_digits": lambda: Case("CenterFace-style digit detector (trained heads), canvases 48x48",
                                          digits.digit_detector(layout="centerface"), "input", lambda r: r,
                                          digits.detect, digits.canvases),
        "db_text": lambda: Case("DB text detector, saturated map (trained head), rendered pages 64x128",
                                text.text_detector(saturated=True), "x", lambda r: r, text.detect, text.documents),
        "ppocr_det": lambda: Case("family ppocr_det (seeded, BN of photos), photo crops 64x64",
                                  _trained_like(families.ppocr_det, 64), "x", lambda r: r,
                                  lambda r: text.detect(r, stride=1, name="sigmoid_0.tmp_0"), _photos(64)),
        "centernet": lambda: Case("family centernet (seeded, BN of photos), photo crops 64x64",
                                  _trained_like(families.centernet, 64), "input", lambda r: r, digits.detect,
                                  _photos(64)),
        "yolov8": lambda: Case("family yolov8 (seeded, folded BN of photos), photo crops 64x64",
                               _trained_like(families.yolov8, 64), "images", lambda r: r,
                               lambda r: yolo.detect(r, classes=80), _photos(64)),
        "yolo11_seg": lambda: Case("family yolo11_seg (seeded, folded BN of photos), photo crops 64x64",
                                   _trained_like(families.yolo11_seg, 64), "images", lambda r: r,
                                   lambda r: yolo.detect(r, classes=80), _photos(64)),
    }


def table(case: Case, calibration_count: int, evaluation_count: int) -> None:
    calibration, _ = case.data(calibration_count, 1)
    evaluation, _ = case.data(evaluation_count, 2)
    float_session = _session(case.model.SerializeToString())
    reference = [_run(float_session, case.input, x) for x in evaluation]
    score = _part_score(concat_parts(case.model))
    names = list(score(case, reference[:1], reference[:1])[0])
    print(f"{case.title}: {len(calibration)} calibration and {len(evaluation)} evaluation inputs, "
          f"{sum(len(case.detect(r)) for r in reference)} float detections")
    width = max(12, *(len(n) + 4 for n in names))
    print(f"{'quantizer':<34}" + "".join(f"{n + ' dB':>{width}}" for n in names)
          + f"{'agreement':>11}{'seconds':>9}  target report")
    start = time.perf_counter()
    rows = [(*_onnxruntime(case, calibration, evaluation, reference, score, (QuantType.QUInt8, QuantType.QInt8)),
             time.perf_counter() - start, "")]
    for name, kwargs in (("tessera", {}), ("tessera target_snr=30", {"target_snr": 30})):
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                q = quantize_model(case.model, calibration_data=calibration, **kwargs)
        except Exception as error:  # a failure is this row's note, the others still count
            rows.append((name, dict.fromkeys(names, float("nan")), float("nan"), time.perf_counter() - start,
                         f"FAILED: {type(error).__name__}: {error}"))
            continue
        seconds = time.perf_counter() - start
        results = [q.run({case.input: x}) for x in evaluation]
        rows.append((name, *score(case, reference, results), seconds, _target(q.target)))
    for name, snr, agree, seconds, note in rows:
        print(f"{name:<34}" + "".join(f"{snr[k]:>{width}.2f}" for k in names)
              + f"{100 * agree:>10.1f}%{seconds:>9.1f}  {note}")
    ours, theirs = rows[1][1], rows[0][1]
    print("tessera default vs onnxruntime: " + ", ".join(
        f"{k} {'tessera' if ours[k] >= theirs[k] else 'ONNXRUNTIME'} higher ({ours[k] - theirs[k]:+.1f} dB)"
        for k in names))
    print()


def _target(report) -> str:
    if report is None:
        return ""
    hwtime = "" if report.hwtime_ms is None else \
        f", hwtime {report.hwtime_ms[0]:.3f} -> {report.hwtime_ms[1]:.3f} ms"
    return (f"{'reached' if report.reached else 'NOT reached'}, 16-bit MACs {100 * report.macs_16bit:.1f} %"
            f"{hwtime}, worst {min(report.before_db.values()):.1f} -> {min(report.after_db.values()):.1f} dB "
            f"on held-out calibration inputs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calibration", type=int, default=32)
    parser.add_argument("--evaluation", type=int, default=32)
    parser.add_argument("--models", help="comma-separated, of: " + ", ".join(cases()))
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)
    known = cases()
    chosen = args.models.split(",") if args.models else list(known)
    unknown = [m for m in chosen if m not in known]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(known)}")
    for name in chosen:
        try:
            table(known[name](), args.calibration, args.evaluation)
        except Exception as error:  # one model's failure is a row of the report, not the end of it
            print(f"{name}: FAILED: {type(error).__name__}: {error}\n")


if __name__ == "__main__":
    main()
