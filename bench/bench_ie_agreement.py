"""The Inference-Engine API agrees with FWDNXT on onnx model-zoo topologies
(issue 19 item 7): for each model, the IE path's outputs on FPGA equal
FWDNXT.Run's, on CPU Run_th's, on HETERO:FPGA,CPU the partitioned engine's
(FWDNXT.Run again), and HETERO with every layer forced to the CPU equals
the CPU path, bit for bit. Prints one line per model and comparison, and
the seconds each step took.

    PYTHONPATH=. python bench/bench_ie_agreement.py [--models squeezenet,shufflenet,inception_v1]

The test suite checks the same on the built-in ResNet and MobileNetV2
(tests/runtime/test_inference_engine.py); these topologies take minutes.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import numpy as np
import onnx

from compiler.zoo import load_light_model
from compiler.zoo.images import image_crops
from runtime.fwdnxt import FWDNXT
from runtime.inference_engine import IENetwork, IEPlugin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="squeezenet,shufflenet,inception_v1")
    args = parser.parse_args()
    folder = tempfile.mkdtemp()
    calibration = image_crops(2, size=224, seed=1)
    image = image_crops(1, size=224, seed=2)[0]
    failures = 0
    for name in args.models.split(","):
        path = os.path.join(folder, f"{name}.onnx")
        onnx.save(load_light_model(name), path)
        start = time.perf_counter()
        fw = FWDNXT()
        count = fw.Compile("224x224x3", path, os.path.join(folder, f"{name}.bin"), samples=calibration)
        fw.Init(os.path.join(folder, f"{name}.bin"), "")
        run, run_th = np.zeros(count, np.float32), np.zeros(count, np.float32)
        fw.Run(image, run)
        fw.Run_th(image, run_th)
        fwdnxt_s = time.perf_counter() - start
        net = IENetwork(model=path)
        feeds = {next(iter(net.inputs)): image}
        out = next(iter(net.outputs))
        results, seconds = {}, {}
        for device in ("FPGA", "CPU", "HETERO:FPGA,CPU", "HETERO, all CPU"):
            start = time.perf_counter()
            plugin = IEPlugin(device="HETERO:FPGA,CPU" if device.startswith("HETERO") else device)
            plugin.set_config({"TESSERA_CALIBRATION_DATA": calibration})
            if device == "HETERO, all CPU":
                for layer in net.layers.values():
                    layer.affinity = "CPU"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                results[device] = plugin.load(net).infer(feeds)[out].reshape(-1)
            seconds[device] = time.perf_counter() - start
        checks = [("FPGA", run, "FWDNXT.Run"), ("CPU", run_th, "Run_th"), ("HETERO:FPGA,CPU", run, "FWDNXT.Run"),
                  ("HETERO, all CPU", results["CPU"], "IE CPU")]
        for device, want, what in checks:
            same = np.array_equal(results[device], want)
            failures += not same
            diff = float(np.abs(results[device] - want).max())
            print(f"{name:<14} IE {device:<16} = {what:<11} {'bit-identical' if same else 'DIFFERENT'}"
                  f"  (max |diff| {diff:.3g}, load+infer {seconds[device]:.0f} s)", flush=True)
        print(f"{name:<14} FWDNXT Compile+Init+Run+Run_th {fwdnxt_s:.0f} s", flush=True)
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
