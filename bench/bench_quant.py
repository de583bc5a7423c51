"""Int8 fidelity, side by side: Tessera's quantizer against onnxruntime's
quantize_static, on the same models, calibration inputs and evaluation inputs.

Models: onnx's nine model-zoo topologies and the MobileNetV2-style model,
with seeded weights made to behave like a trained network's (BatchNorm
statistics estimated from real images; residual branches' last BatchNorm
gamma x0.2). Calibration: 32 crops of scikit-learn's two photographs;
evaluation: 16 other crops. SNR (dB) of each model's output against its
float32 output over all evaluation inputs. onnxruntime: QDQ, per-channel
int8 weights, int8 activations, the best of its MinMax, Entropy and
Percentile calibrators, twice: as it comes (it also quantizes Softmax
outputs and the classifier), and with the layers Tessera runs in float on the
CPU excluded (nodes_to_exclude), so that both quantize the same layers —
the comparison that counts. Tessera: its default pipeline (accelerator
segments in int8, CPU segments in float32), its defaults: MSE calibration,
bias correction, per-channel affines moved through concatenations
(docs/quantization.md).

    python bench/bench_quant.py [--models resnet50,squeezenet] [--calibration 32] [--evaluation 16] [--ort-default]
"""
from __future__ import annotations

from timing import THREADS  # first: sets the thread counts
# isort: split

import argparse
import logging
import os
import tempfile
import time

import numpy as np
import onnx
import onnx.version_converter
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

from codegen.cpu import lower_segments, lower_with_names
from compiler.frontend import import_onnx
from compiler.pipeline import partition_graph
from compiler.zoo import LIGHT_MODELS, load_light_model, mobilenet_v2
from compiler.zoo.images import image_crops
from compiler.zoo.statistics import with_data_statistics
from ir.graph import onnx_name, walk
from passes.infra import PassContext
from passes.quant.metrics import snr_db
from passes.quant.quantize import quantize
from runtime.segments import SegmentExecutor

MODELS = {**{name: (lambda n=name: load_light_model(n)) for name in LIGHT_MODELS}, "mobilenet_v2": mobilenet_v2}


class _Reader(CalibrationDataReader):
    def __init__(self, name: str, images):
        self.feeds = iter([{name: x} for x in images])

    def get_next(self):
        return next(self.feeds, None)


def trained_like(name: str) -> onnx.ModelProto:
    """The model with data-estimated BatchNorm statistics and every node
    named (both quantizers must agree on node names)."""
    model = with_data_statistics(MODELS[name](), image_crops(16, seed=10))
    for index, node in enumerate(model.graph.node):
        node.name = node.name or f"{node.op_type}_{index}"
    return model


def input_name(model: onnx.ModelProto) -> str:
    inits = {t.name for t in model.graph.initializer}
    return next(v.name for v in model.graph.input if v.name not in inits)


def ort_session(model: onnx.ModelProto | str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(THREADS)
    options.log_severity_level = 3
    source = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def outputs(run, name: str, images) -> np.ndarray:
    return np.concatenate([np.asarray(run({name: x})).reshape(1, -1) for x in images])


def onnxruntime_snr(model: onnx.ModelProto, name: str, calibration, evaluation, reference,
                    exclude=()) -> dict[str, float]:
    if max(i.version for i in model.opset_import if i.domain in ("", "ai.onnx")) < 13:
        model = onnx.version_converter.convert_version(model, 13)  # per-channel QDQ needs opset 13
    model = onnx.ModelProto.FromString(model.SerializeToString())
    model.ir_version = min(model.ir_version, 10)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "float.onnx")
        onnx.save(model, source)
        for method in ("MinMax", "Entropy", "Percentile"):
            target = os.path.join(folder, f"{method}.onnx")
            quantize_static(source, target, _Reader(name, calibration), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            calibrate_method=getattr(CalibrationMethod, method), nodes_to_exclude=list(exclude))
            session = ort_session(target)
            results[method] = snr_db(reference, outputs(lambda f: session.run(None, f)[0], name, evaluation))
    return results


def tessera_snr(model: onnx.ModelProto, name: str, calibration, evaluation, reference):
    """(SNR, quantize seconds, names of the ONNX nodes run in float on the CPU)."""
    start = time.perf_counter()
    graph = partition_graph(import_onnx(model))
    on_cpu = {onnx_name(node.name) for segment in graph.nodes if segment.attrs["device"] == "CPU"
              for _, node in walk(segment.attrs["body"]) if node.op != "Fused"}
    with PassContext(options={"quant.calibration_data": calibration}, lower=lower_with_names):
        graph = quantize(graph)
    seconds = time.perf_counter() - start
    executor = SegmentExecutor(lower_segments(graph))
    out = graph.outputs[0].name
    return snr_db(reference, outputs(lambda f: executor.run(f)[out], name, evaluation)), seconds, on_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--calibration", type=int, default=32)
    parser.add_argument("--evaluation", type=int, default=16)
    parser.add_argument("--ort-default", action="store_true",
                        help="also quantize with onnxruntime as it comes (slow: three more calibrations per model)")
    parser.add_argument("--equalize", action="store_true",
                        help="instead: Tessera with and without cross-layer equalization (quantize_model(equalize=))")
    parser.add_argument("--head-grids", action="store_true",
                        help="instead: Tessera with and without output grids per quantity (head_grids=)")
    parser.add_argument("--channel-grids", action="store_true",
                        help="instead: Tessera with and without grids per channel before depthwise layers "
                             "(channel_grids=)")
    parser.add_argument("--weight-rounding", action="store_true",
                        help="instead: Tessera with and without weights rounded by their output error "
                             "(weight_rounding=)")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime.quantization's advice, once per model
    calibration = image_crops(args.calibration, seed=1)
    evaluation = image_crops(args.evaluation, seed=2)
    switch = next((name for name in SWITCHES if getattr(args, name)), None)
    if switch is not None:
        return switch_table(args.models.split(","), calibration, evaluation, switch)
    print(f"{'model':<14}{'tessera dB':>11}{'ort same dB':>12}{'diff':>7}{'ort default dB':>15}{'quantize s':>11}",
          flush=True)
    rows = []
    for name in args.models.split(","):
        rows.append((name, *compare(name, calibration, evaluation, args.ort_default)))
        _, ours, same, default, seconds = rows[-1]
        print(f"{name:<14}{ours:>11.2f}{same:>12.2f}{ours - same:>7.2f}{default:>15.2f}{seconds:>11.1f}", flush=True)
    wins = sum(ours >= same for _, ours, same, _, _ in rows)
    worst = min(ours - same for _, ours, same, _, _ in rows)
    print(f"Tessera >= onnxruntime (same layers quantized) on {wins} of {len(rows)} models; worst difference "
          f"{worst:+.2f} dB")


SWITCHES = {"equalize": ("equalization", lambda q: q.equalized),
            "head_grids": ("head grids", lambda q: len(q.head_grids.split) + len(q.head_grids.joined)
                           if q.head_grids else 0),
            "channel_grids": ("channel grids", lambda q: sum(g.per_channel for g in q.activation_grids().values())),
            "weight_rounding": ("weight rounding", lambda q: len(q.weight_roundings()))}
"""quantize_model switches the table compares: (label, what the switch changed in a model)."""


def switch_table(names, calibration, evaluation, switch: str) -> None:
    """Tessera's output SNR with ``switch`` off and on, and how many places it changed."""
    import warnings

    from compiler.quantize import quantize_model

    label, changed = SWITCHES[switch]
    print(f"{'model':<14}{'off dB':>10}{'on dB':>10}{'gain':>7}{'changed':>9}", flush=True)
    gains = []
    for model_name in names:
        model = trained_like(model_name)
        name = input_name(model)
        session = ort_session(model)
        reference = outputs(lambda f: session.run(None, f)[0], name, evaluation)
        snrs = []
        for on in (False, True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                q = quantize_model(model, calibration_data=calibration, **{switch: on})
            out = q.output_names[0]
            snrs.append(snr_db(reference, outputs(lambda f: q.run(f)[out], name, evaluation)))
        gains.append(snrs[1] - snrs[0])
        print(f"{model_name:<14}{snrs[0]:>10.2f}{snrs[1]:>10.2f}{gains[-1]:>7.2f}{changed(q):>9}", flush=True)
    print(f"{label}: median gain {np.median(gains):+.2f} dB, worst {min(gains):+.2f} dB, best {max(gains):+.2f} dB")


def compare(model_name: str, calibration, evaluation, ort_default: bool) -> tuple[float, float, float, float]:
    """(Tessera dB, onnxruntime dB on the same layers, onnxruntime dB as it
    comes, Tessera's quantize seconds): onnxruntime's best calibrator each time."""
    model = trained_like(model_name)
    name = input_name(model)
    reference_session = ort_session(model)
    reference = outputs(lambda f: reference_session.run(None, f)[0], name, evaluation)
    ours, seconds, on_cpu = tessera_snr(model, name, calibration, evaluation, reference)
    same = onnxruntime_snr(model, name, calibration, evaluation, reference, exclude=sorted(on_cpu))
    default = onnxruntime_snr(model, name, calibration, evaluation, reference) if ort_default else {"-": np.nan}
    return ours, max(same.values()), max(default.values()), seconds


if __name__ == "__main__":
    main()
