"""Int8 on a trained detector (issue 22 item 4): the zoo's digit detector
(compiler/zoo/digit_detector.py, a MobileNet-style CenterNet with heads
trained on canvases of scikit-learn's digits), calibrated on 32 canvases and
evaluated on 64 others. For each way of quantizing: each head's SNR
against float, and the share of the float model's detections the int8
model finds again (same box at IoU >= 0.5). Rows: onnxruntime's
quantize_static (QDQ, per-channel int8 weights, int8 activations, its best
calibrator by the worst head), Tessera's defaults (and with each weight
rounded to its nearest code instead of by output error), with cross-layer
equalization, with target_snr=30, and both. Twice: the heads as three
outputs (CenterNet's export), and as one convolution writing all five
channels into one output (``layout="single"``, as YOLO- and PicoDet-style
exports do), where Tessera's head grids (on by default) are also shown off.
Then the DB-style text detector (compiler/zoo/text_detector.py) on rendered
pages: its probability map's SNR and the text boxes' agreement.

    PYTHONPATH=. python bench/bench_detector.py [--calibration 32] [--evaluation 64] [--layout heads|single|text]
"""
from __future__ import annotations

from timing import THREADS  # first: sets the thread counts
# isort: split

import argparse
import contextlib
import io
import logging
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx
import onnx.version_converter
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

from compiler.quantize import quantize_model
from compiler.agreement import agreement
from passes.quant.metrics import snr_db


@dataclass
class Case:
    """A trained detector and how to read it: its input's name, the
    quantities its outputs hold (name -> array) and its decoder."""

    title: str
    model: onnx.ModelProto
    input: str
    quantities: Callable[[dict], dict]
    detect: Callable[[dict], list]
    data: Callable[[int, int], tuple]


def cases(layouts) -> list[Case]:
    from compiler.zoo import digit_detector as digits
    from compiler.zoo import text_detector as text

    found = [Case(f"digit detector, layout {layout!r}", digits.digit_detector(layout=layout), "input",
                  digits.head_outputs, digits.detect, digits.canvases) for layout in layouts if layout != "text"]
    if "text" in layouts:
        found.append(Case("DB-style text detector", text.text_detector(), "x", lambda r: {"maps": r["maps"]},
                          text.detect, text.documents))
    return found


class _Reader(CalibrationDataReader):
    def __init__(self, name: str, images):
        self.feeds = iter([{name: x} for x in images])

    def get_next(self):
        return next(self.feeds, None)


def _session(source) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(THREADS)
    options.log_severity_level = 3
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _score(case: Case, reference: list[dict], results: list[dict]) -> tuple[dict, float]:
    heads = [case.quantities(r) for r in reference], [case.quantities(r) for r in results]
    snr = {k: snr_db(np.concatenate([r[k].ravel() for r in heads[0]]),
                     np.concatenate([r[k].ravel() for r in heads[1]])) for k in heads[0][0]}
    matched = [agreement(case.detect(f), case.detect(q)) for f, q in zip(reference, results)]
    return snr, sum(m for m, _ in matched) / max(sum(n for _, n in matched), 1)


def _run(session: ort.InferenceSession, name: str, x: np.ndarray) -> dict:
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {name: x})))


def _opset13(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model at opset 13 or above: quantize_static writes per-channel
    DequantizeLinear (an ``axis``), which opset 11 lacks (Paddle2ONNX's and
    torch.onnx 1.x's exports)."""
    opset = max(i.version for i in model.opset_import if i.domain in ("", "ai.onnx"))
    return model if opset >= 13 else onnx.version_converter.convert_version(model, 13)


def _onnxruntime(case: Case, calibration, evaluation, reference, score=_score,
                 activations=(QuantType.QInt8,)) -> tuple[str, dict, float]:
    """onnxruntime's quantize_static (QDQ, per-channel int8 weights) with
    each calibrator and each activation type of ``activations``: the best
    by the worst quantity ``score`` measures (name, SNR per quantity,
    agreement)."""
    best = None
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "float.onnx")
        onnx.save(_opset13(case.model), source)
        for method in ("MinMax", "Entropy", "Percentile"):
            for activation in activations:
                target = os.path.join(folder, f"{method}_{activation.name}.onnx")
                with contextlib.redirect_stdout(io.StringIO()):  # its calibrators print their progress
                    quantize_static(source, target, _Reader(case.input, calibration), quant_format=QuantFormat.QDQ,
                                    per_channel=True, activation_type=activation, weight_type=QuantType.QInt8,
                                    calibrate_method=getattr(CalibrationMethod, method))
                session = _session(target)
                results = [_run(session, case.input, x) for x in evaluation]
                snr, agree = score(case, reference, results)
                if best is None or min(snr.values()) > min(best[1].values()):
                    kind = "u8" if activation == QuantType.QUInt8 else "s8"
                    best = (f"onnxruntime ({method}, {kind})", snr, agree)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calibration", type=int, default=32)
    parser.add_argument("--evaluation", type=int, default=64)
    parser.add_argument("--layout", choices=("heads", "single", "text"), action="append",
                        help="the digit detector's export layout, or the text detector (default: all three)")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)
    for case in cases(args.layout or ("heads", "single", "text")):
        table(case, args.calibration, args.evaluation)


def table(case: Case, calibration_count: int, evaluation_count: int) -> None:
    calibration, _ = case.data(calibration_count, 1)
    evaluation, _ = case.data(evaluation_count, 2)
    float_session = _session(case.model.SerializeToString())
    reference = [_run(float_session, case.input, x) for x in evaluation]
    names = list(case.quantities(reference[0]))
    print(f"{case.title}, {len(calibration)} calibration and {len(evaluation)} evaluation inputs, "
          f"{sum(len(case.detect(r)) for r in reference)} float detections")
    print(f"{'quantizer':<34}" + "".join(f"{k + ' dB':>9}" for k in names) + f"{'agreement':>11}{'seconds':>9}")
    rows = [_onnxruntime(case, calibration, evaluation, reference) + (float("nan"),)]
    variants = [("tessera weight_rounding=False", {"weight_rounding": False}), ("tessera", {}),
                ("tessera equalize", {"equalize": True}),
                ("tessera target_snr=30", {"target_snr": 30}),
                ("tessera equalize + target_snr=30", {"equalize": True, "target_snr": 30})]
    if "single" in case.title:
        variants.insert(0, ("tessera head_grids=False", {"head_grids": False}))
    for name, kwargs in variants:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = quantize_model(case.model, calibration_data=calibration, **kwargs)
        seconds = time.perf_counter() - start
        results = [q.run({case.input: x}) for x in evaluation]
        rows.append((name, *_score(case, reference, results), seconds))
    for name, snr, agree, seconds in rows:
        print(f"{name:<34}" + "".join(f"{snr[k]:>9.2f}" for k in names) + f"{100 * agree:>10.1f}%{seconds:>9.1f}")
    print()


if __name__ == "__main__":
    main()
