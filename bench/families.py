"""How much of each model runs on the accelerator (issue 17), and whether the
device path stays exact and accurate: the family models written as their
exporters write them (compiler/zoo/families.py) and onnx's nine model-zoo
topologies.

For each model (BatchNorm statistics estimated from data, as
bench/bench_quant.py does, so the seeded weights behave like trained ones):
calibrate on a few inputs (crops of the sample photographs for a square RGB
input, seeded normal data of the input's shape otherwise), compile for the
default accelerator, and on other inputs of the same kind run the binary on
the simulator (Run_sw), the quantized model on the CPU and the float
reference (Run_th). Printed per model: ONNX nodes on the accelerator, device
and CPU segments, the accelerator's share of the MACs
(compiler/coverage.py), the estimated accelerator time (hwtime, from the
simulator's cycle model), the SNR of the simulator's outputs against the
float reference (the worst output), and whether the simulator equals the
quantized CPU run bit for bit. A model that fails to compile or run gets its
error in the row, so the table keeps working as the accelerator grows.

    PYTHONPATH=. python bench/families.py [--models yolov8,zoo:resnet50] [--calibration 4] [--evaluation 2]
"""
from __future__ import annotations

from timing import THREADS  # noqa: F401  first: sets the thread counts
# isort: split

import argparse
import warnings

import numpy as np
import onnx

from codegen.binary import write_binary
from compiler.compile import build, fused_reference
from compiler.quantize import quantize_model
from compiler.zoo import FAMILY_MODELS, LIGHT_MODELS, load_light_model
from compiler.zoo.images import image_crops
from compiler.zoo.statistics import with_data_statistics
from passes.quant.metrics import snr_db
from runtime.binary import read_binary
from runtime.engine import Engine
from runtime.hardware import HardwareConfig

MODELS = {**FAMILY_MODELS, **{f"zoo:{name}": (lambda n=name: load_light_model(n)) for name in LIGHT_MODELS}}
STATISTICS = 8
"""Inputs the BatchNorm statistics are estimated on."""
COLUMNS = ("model", "ONNX nodes on acc.", "acc. segs", "CPU segs", "CPU nodes", "MACs on acc.", "hwtime ms",
           "SNR dB", "sim == CPU")


def input_spec(model: onnx.ModelProto) -> tuple[str, list[int]]:
    """The model's single input: name and static shape."""
    inits = {t.name for t in model.graph.initializer}
    (value,) = [v for v in model.graph.input if v.name not in inits]
    return value.name, [d.dim_value for d in value.type.tensor_type.shape.dim]


def inputs(shape: list[int], count: int, seed: int) -> list[np.ndarray]:
    """Crops of the sample photographs for a square NCHW RGB input, else seeded normal data."""
    if len(shape) == 4 and shape[:2] == [1, 3] and shape[2] == shape[3]:
        return image_crops(count, size=shape[2], seed=seed)
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(count)]


def measure(name: str, calibration: int, evaluation: int) -> dict[str, str]:
    """One row of the table."""
    model = MODELS[name]()
    input_name, shape = input_spec(model)
    model = with_data_statistics(model, inputs(shape, STATISTICS, seed=10))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = quantize_model(model, calibration_data=inputs(shape, calibration, seed=1),
                                   calibration_count=calibration)
    report = quantized.coverage()
    engine = Engine(read_binary(write_binary(build(quantized.graph, HardwareConfig(),
                                                   fused_reference(quantized.float_graph)))))
    exact, sim, ref = True, {}, {}
    for image in inputs(shape, evaluation, seed=2):
        feeds = {input_name: image}
        got, want, reference = engine.run(feeds), quantized.run(feeds), engine.run_reference(feeds)
        exact &= all(np.array_equal(got[out], want[out]) for out in quantized.output_names)
        for out in quantized.output_names:
            sim.setdefault(out, []).append(got[out])
            ref.setdefault(out, []).append(reference[out])
    snr = min(snr_db(np.concatenate(ref[out]), np.concatenate(sim[out])) for out in quantized.output_names)
    return {"ONNX nodes on acc.": f"{report.device_nodes}/{report.total_nodes}",
            "acc. segs": str(report.device_segments), "CPU segs": str(report.cpu_segments),
            "CPU nodes": str(report.cpu_onnx_nodes), "MACs on acc.": report.mac_percent(),
            "hwtime ms": f"{engine.device.hwtime_ms:.3f}", "SNR dB": f"{snr:.1f}",
            "sim == CPU": "yes" if exact else "NO"}


def row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(cells, widths)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--calibration", type=int, default=4, help="calibration inputs (default: %(default)s)")
    parser.add_argument("--evaluation", type=int, default=2, help="evaluation inputs (default: %(default)s)")
    args = parser.parse_args()
    names = args.models.split(",")
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(MODELS)}")
    widths = [max(len(COLUMNS[0]), *map(len, names))] + [len(c) for c in COLUMNS[1:]]
    print(row(list(COLUMNS), widths), flush=True)
    for name in names:
        try:
            cells = measure(name, args.calibration, args.evaluation)
        except Exception as exc:  # a row per model: one failure must not hide the others
            print(f"{name.ljust(widths[0])}  error: {type(exc).__name__}: {exc}", flush=True)
            continue
        print(row([name, *(cells[c] for c in COLUMNS[1:])], widths), flush=True)


if __name__ == "__main__":
    main()
