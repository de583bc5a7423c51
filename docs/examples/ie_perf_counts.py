"""Per-layer performance counters of one inference (the Inference-Engine
API's get_perf_counts, as OpenVINO's samples print them with -pc).

    python docs/examples/ie_perf_counts.py [--model model.onnx] [--device CPU] [-ni 2]

real_time is in microseconds: for a layer on the FPGA, the cycle model's estimate of
the accelerator layer it runs in; for a layer on the CPU, the measured time
of its kernel in this run. A layer fused into another or folded away at
compile time (a BatchNormalization into its convolution) is OPTIMIZED_OUT.
The first run of a process also loads each CPU kernel from Numba's disk
cache (or compiles it): -ni 2 shows the second run's times.
"""
import argparse
from collections import Counter

from sample_data import calibration_images, load_image, model_path

from runtime.inference_engine import IENetwork, IEPlugin


def main() -> None:
    parser = argparse.ArgumentParser(description="Per-layer performance counters of one inference")
    parser.add_argument("-m", "--model", help="an ONNX model (default: a tiny built-in ResNet-10)")
    parser.add_argument("-d", "--device", default="HETERO:FPGA,CPU", help="FPGA, CPU or HETERO:<devices>")
    parser.add_argument("-ni", "--number_iter", type=int, default=1, help="runs; the counters are the last one's")
    args = parser.parse_args()

    net = IENetwork(model=model_path(args.model))
    input_blob = next(iter(net.inputs))
    n, c, h, w = net.inputs[input_blob].shape

    plugin = IEPlugin(device=args.device)
    plugin.set_config({"PERF_COUNT": "YES", "TESSERA_CALIBRATION_DATA": calibration_images(h, w)})
    exec_net = plugin.load(network=net)
    request = exec_net.requests[0]
    image = load_image(None, h, w)
    for _ in range(args.number_iter):
        request.infer({input_blob: image})
    counts = request.get_perf_counts()

    # executed layers in execution order, then the others in network order
    rows = sorted(counts.items(), key=lambda item: (item[1]["execution_index"] < 0, item[1]["execution_index"]))
    width = max(len(name) for name in counts)
    print(f"{'name':<{width}} {'index':>5} {'layer_type':<18} {'status':<13} {'exec_type':<26} {'real_time':>9}")
    for name, info in rows:
        print(f"{name:<{width}} {info['execution_index']:>5} {info['layer_type']:<18} {info['status']:<13} "
              f"{info['exec_type']:<26} {info['real_time']:>9}")

    executed = [info for info in counts.values() if info["status"] == "EXECUTED"]
    per_device = Counter()
    for info in executed:
        per_device[info["exec_type"].split(":")[0]] += info["real_time"]
    print(f"Total real_time: {sum(per_device.values())} us "
          f"({', '.join(f'{device} {micros} us' for device, micros in sorted(per_device.items()))})")
    print("Layers by status:", dict(Counter(info["status"] for info in counts.values())))


if __name__ == "__main__":
    main()
