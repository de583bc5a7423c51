"""Classify two images at once with two asynchronous infer requests
(OpenVINO's classification_sample_async).

    python docs/examples/ie_classification_async.py [--model model.onnx] [--device CPU]

Each request runs on a thread of its own; the two runs overlap segment by
segment (one on the accelerator while the other is on the CPU).
"""
import argparse

import numpy as np
from sample_data import calibration_images, load_image, model_path

from runtime.inference_engine import IENetwork, IEPlugin, StatusCode

PHOTOS = ("china.jpg", "flower.jpg")


def main() -> None:
    parser = argparse.ArgumentParser(description="Two images through two asynchronous infer requests")
    parser.add_argument("-m", "--model", help="an ONNX classifier (default: a tiny built-in ResNet-10)")
    parser.add_argument("-d", "--device", default="HETERO:FPGA,CPU", help="FPGA, CPU or HETERO:<devices>")
    args = parser.parse_args()

    net = IENetwork(model=model_path(args.model))
    input_blob, out_blob = next(iter(net.inputs)), next(iter(net.outputs))
    n, c, h, w = net.inputs[input_blob].shape

    plugin = IEPlugin(device=args.device)
    plugin.set_config({"TESSERA_CALIBRATION_DATA": calibration_images(h, w)})
    exec_net = plugin.load(network=net, num_requests=2)

    for request_id, photo in enumerate(PHOTOS):
        exec_net.start_async(request_id=request_id, inputs={input_blob: load_image(None, h, w, default=photo)})
    for request_id, photo in enumerate(PHOTOS):
        request = exec_net.requests[request_id]
        status = request.wait()
        probs = np.squeeze(request.outputs[out_blob])
        top = int(np.argmax(probs))
        print(f"request {request_id} ({photo}): status {status} ({StatusCode(status).name}), "
              f"top-1 class {top} probability {probs[top]:.7f}")


if __name__ == "__main__":
    main()
