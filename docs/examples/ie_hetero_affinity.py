"""Place layers by hand on the HETERO plugin (OpenVINO's affinity_setting_sample):
the fallback policy's affinities first, then every convolution moved to the CPU.

    python docs/examples/ie_hetero_affinity.py [--model model.onnx]

Layer types are OpenVINO's IR layer types ("Convolution" for an ONNX Conv,
docs/inference_engine.md). Once any layer has an affinity, every layer
needs one: set_initial_affinity gives them all one to start from.
"""
import argparse
from collections import Counter

from sample_data import calibration_images, load_image, model_path

from runtime.inference_engine import IENetwork, IEPlugin


def main() -> None:
    parser = argparse.ArgumentParser(description="Convolutions on the CPU, the rest where HETERO puts it")
    parser.add_argument("-m", "--model", help="an ONNX model (default: a tiny built-in ResNet-10)")
    args = parser.parse_args()

    net = IENetwork(model=model_path(args.model))
    input_blob = next(iter(net.inputs))
    n, c, h, w = net.inputs[input_blob].shape

    plugin = IEPlugin(device="HETERO:FPGA,CPU")
    plugin.set_config({"TARGET_FALLBACK": "HETERO:FPGA,CPU", "TESSERA_CALIBRATION_DATA": calibration_images(h, w)})
    plugin.set_initial_affinity(net)
    print("Initial affinities:", dict(Counter(layer.affinity for layer in net.layers.values())))
    for layer in net.layers.values():
        if layer.type == "Convolution":
            layer.affinity = "CPU"

    exec_net = plugin.load(network=net)
    exec_net.infer({input_blob: load_image(None, h, w)})

    placed = exec_net.get_exec_graph_info()
    where = {name: placed[name]["device"] if name in placed else "folded or fused"
             for name, layer in net.layers.items() if layer.type != "Input"}
    print("Layers per device:", dict(Counter(where.values())))
    print("Conv layers per device:", dict(Counter(where[name] for name, layer in net.layers.items()
                                                  if layer.type == "Convolution")))


if __name__ == "__main__":
    main()
