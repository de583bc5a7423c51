"""Run a model with its encodings on every sample of a data folder
(the Simulator spec's run_inference example).

    python docs/examples/simulator_run_inference.py [--model m.onnx --encodings m.encodings --data folder/]
        [--mode fake|integer] [--layer relu_8 ...]

Without paths it writes the tiny built-in ResNet-10, its int8 encodings and
four photo crops to a temporary folder (docs/examples/simulator_files.py).
"""
import numpy as np
from simulator_files import arguments, files

from compiler.simulator.api import Simulator
from compiler.simulator.schema.base import InferenceRunnerParameters


def main() -> None:
    parser = arguments("Outputs of a model on each sample of a data folder, by the Simulator API")
    parser.add_argument("--mode", default="fake", choices=["fake", "integer"], help="quantization_mode")
    parser.add_argument("--layer", nargs="*", default=[], help="feature maps to return too (layerwise_check_name)")
    args = parser.parse_args()
    model, encodings, data = files(args)

    params = InferenceRunnerParameters(
        input_model_path=model,
        input_encodings_path=encodings,
        input_data_path=data,
        layerwise_check_name=args.layer,
        quantization_mode=args.mode,
    )
    res = Simulator.run_inference(params)

    print(f"{len(res)} samples, {args.mode} quantization")
    for index, outputs in enumerate(res):
        first = outputs[0]
        line = f"sample {index}: output shape {list(first.shape)}, top class {int(np.argmax(first))} " \
               f"({float(np.max(first)):.6f})"
        for name, feature_map in zip(args.layer, outputs[-len(args.layer):] if args.layer else []):
            line += f"; {name} {list(feature_map.shape)} mean {float(feature_map.mean()):.6f}"
        print(line)


if __name__ == "__main__":
    main()
