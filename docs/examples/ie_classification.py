"""Classify an image with the Inference-Engine API (OpenVINO's classification_sample).

    python docs/examples/ie_classification.py [--model model.onnx] [--input photo.jpg] [--device FPGA]

Without --model it runs a tiny built-in ResNet-10 with random weights, so
its classes mean nothing; the calls are those for any classifier.
"""
import argparse
import sys

import numpy as np
from sample_data import calibration_images, load_image, model_path

from runtime.inference_engine import IENetwork, IEPlugin


def main() -> None:
    parser = argparse.ArgumentParser(description="Top classes of an image, by the Inference-Engine API")
    parser.add_argument("-m", "--model", help="an ONNX classifier (default: a tiny built-in ResNet-10)")
    parser.add_argument("-i", "--input", help="an image file (default: scikit-learn's china.jpg)")
    parser.add_argument("-d", "--device", default="HETERO:FPGA,CPU", help="FPGA, CPU or HETERO:<devices>")
    parser.add_argument("-nt", "--number_top", type=int, default=5, help="how many classes to show")
    args = parser.parse_args()

    net = IENetwork(model=model_path(args.model))
    input_blob, out_blob = next(iter(net.inputs)), next(iter(net.outputs))
    n, c, h, w = net.inputs[input_blob].shape

    plugin = IEPlugin(device=args.device)
    supported = plugin.get_supported_layers(net)
    unsupported = [name for name in net.layers if name not in supported]
    print(f"Layers {args.device} cannot run: {', '.join(unsupported) or 'none'}")
    if unsupported and args.device != "FPGA":
        sys.exit("Load a CPU extension for them (plugin.add_cpu_extension) or add a device to HETERO")
    if unsupported:
        print("The FPGA plugin runs them on the CPU (FWDNXT's fallback)")

    plugin.set_config({"TESSERA_CALIBRATION_DATA": calibration_images(h, w)})
    exec_net = plugin.load(network=net)
    res = exec_net.infer({input_blob: load_image(args.input, h, w)})

    probs = np.squeeze(res[out_blob])
    print(f"Top {args.number_top} of {out_blob!r}:")
    print("classid probability")
    print("------- -----------")
    for class_id in np.argsort(probs)[::-1][:args.number_top]:
        print(f"{class_id:>7} {probs[class_id]:>11.7f}")


if __name__ == "__main__":
    main()
