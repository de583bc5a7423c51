"""Int8 on a trained detector (issue 22 item 4): the zoo's digit detector
(compiler/zoo/digit_detector.py, a MobileNet-style CenterNet with heads
trained on canvases of scikit-learn's digits), calibrated on 32 canvases and
evaluated on 64 others. For each way of quantizing: each head's SNR
against float, and the share of the float model's detections the int8
model finds again (same box at IoU >= 0.5). Rows: onnxruntime's
quantize_static (QDQ, per-channel int8 weights, int8 activations, its best
calibrator by the worst head), Tessera's defaults, with cross-layer
equalization, with target_snr=30, and both. Twice: the heads as three
outputs (CenterNet's export), and as one convolution writing all five
channels into one output (``layout="single"``, as YOLO- and PicoDet-style
exports do), where Tessera's head grids (on by default) are also shown off.

    PYTHONPATH=. python bench/bench_detector.py [--calibration 32] [--evaluation 64] [--layout heads|single]
"""
from __future__ import annotations

from timing import THREADS  # first: sets the thread counts
# isort: split

import argparse
import logging
import os
import tempfile
import time
import warnings

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

from compiler.quantize import quantize_model
from compiler.zoo.digit_detector import agreement, canvases, detect, digit_detector, head_outputs
from passes.quant.metrics import snr_db

OUTPUTS = ("hm", "wh", "reg")


class _Reader(CalibrationDataReader):
    def __init__(self, images):
        self.feeds = iter([{"input": x} for x in images])

    def get_next(self):
        return next(self.feeds, None)


def _session(source) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(THREADS)
    options.log_severity_level = 3
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _score(reference: list[dict], results: list[dict]) -> tuple[dict, float]:
    heads = [head_outputs(r) for r in reference], [head_outputs(r) for r in results]
    snr = {k: snr_db(np.concatenate([r[k].ravel() for r in heads[0]]),
                     np.concatenate([r[k].ravel() for r in heads[1]])) for k in OUTPUTS}
    matched = [agreement(detect(f), detect(q)) for f, q in zip(reference, results)]
    return snr, sum(m for m, _ in matched) / max(sum(n for _, n in matched), 1)


def _run(session: ort.InferenceSession, x: np.ndarray) -> dict:
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"input": x})))


def _onnxruntime(model: onnx.ModelProto, calibration, evaluation, reference) -> tuple[str, dict, float]:
    best = None
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "float.onnx")
        onnx.save(model, source)
        for method in ("MinMax", "Entropy", "Percentile"):
            target = os.path.join(folder, f"{method}.onnx")
            quantize_static(source, target, _Reader(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            calibrate_method=getattr(CalibrationMethod, method))
            session = _session(target)
            results = [_run(session, x) for x in evaluation]
            snr, agree = _score(reference, results)
            if best is None or min(snr.values()) > min(best[1].values()):
                best = (f"onnxruntime ({method})", snr, agree)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calibration", type=int, default=32)
    parser.add_argument("--evaluation", type=int, default=64)
    parser.add_argument("--layout", choices=("heads", "single"), action="append",
                        help="the detector's export layout (default: both)")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)
    calibration, _ = canvases(args.calibration, seed=1)
    evaluation, _ = canvases(args.evaluation, seed=2)
    for layout in args.layout or ("heads", "single"):
        table(layout, calibration, evaluation)


def table(layout: str, calibration, evaluation) -> None:
    model = digit_detector(layout=layout)
    float_session = _session(model.SerializeToString())
    reference = [_run(float_session, x) for x in evaluation]
    print(f"digit detector, layout {layout!r}, {len(calibration)} calibration and {len(evaluation)} evaluation "
          f"canvases, {sum(len(detect(r)) for r in reference)} float detections")
    print(f"{'quantizer':<34}" + "".join(f"{k + ' dB':>9}" for k in OUTPUTS) + f"{'agreement':>11}{'seconds':>9}")
    rows = [_onnxruntime(model, calibration, evaluation, reference) + (float("nan"),)]
    variants = [("tessera", {}), ("tessera equalize", {"equalize": True}),
                ("tessera target_snr=30", {"target_snr": 30}),
                ("tessera equalize + target_snr=30", {"equalize": True, "target_snr": 30})]
    if layout == "single":
        variants.insert(0, ("tessera head_grids=False", {"head_grids": False}))
    for name, kwargs in variants:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = quantize_model(model, calibration_data=calibration, **kwargs)
        seconds = time.perf_counter() - start
        results = [q.run({"input": x}) for x in evaluation]
        rows.append((name, *_score(reference, results), seconds))
    for name, snr, agree, seconds in rows:
        print(f"{name:<34}" + "".join(f"{snr[k]:>9.2f}" for k in OUTPUTS) + f"{100 * agree:>10.1f}%{seconds:>9.1f}")
    print()


if __name__ == "__main__":
    main()
