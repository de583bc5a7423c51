"""Compare feature maps of two model + encodings pairs layer by layer
(compare_model_by_layer, in the 2024-09 snapshot of the Simulator docs):
the model in float against the model on the accelerator's integer path,
at a few ReLU outputs, with the feature maps written out.

    python docs/examples/simulator_compare_layers.py [--model m.onnx --encodings m.encodings --data folder/]
        [--pair relu_8 relu_8 ...] [--export folder/]
"""
import tempfile
from pathlib import Path

from simulator_files import arguments, empty_encodings, files

from compiler.simulator.api import Simulator
from compiler.simulator.schema.base import LayerwiseCheckerParameters

DEFAULT_PAIRS = [("relu_8", "relu_8"), ("relu_50", "relu_50"), ("relu_98", "relu_98")]


def main() -> None:
    parser = arguments("Feature maps of two models compared layer by layer, by the Simulator API")
    parser.add_argument("--pair", nargs=2, action="append", metavar=("MODEL_0_TENSOR", "MODEL_1_TENSOR"),
                        help="feature maps to match (default: three ReLU outputs of the built-in ResNet-10)")
    parser.add_argument("--export", help="folder for the feature maps (default: a temporary one)")
    args = parser.parse_args()
    model, encodings, data = files(args)

    with tempfile.TemporaryDirectory(prefix="tessera-featuremaps-") as scratch:
        params = LayerwiseCheckerParameters(
            input_data_path=data,
            input_model_path_0=model,
            input_encodings_path_0=empty_encodings(),
            input_model_path_1=model,
            input_encodings_path_1=encodings,
            quantization_mode="integer",
            metric="snr",
            threshold=25,
            layer_match_info=[tuple(p) for p in args.pair] if args.pair else DEFAULT_PAIRS,
            export_featuremap=True,
            export_featuremap_path=args.export or scratch,
        )
        res = Simulator.compare_model_by_layer(params)
        for layer in res.layers:
            values = " ".join(f"{v:.2f}" for v in layer.values.values())
            print(f"{layer.tensor_0} vs {layer.tensor_1}: snr per sample {values}; aggregate {layer.aggregate:.2f} dB "
                  f"{'PASSED' if layer.passed else 'FAILED'}")
        written = sorted(str(p.relative_to(res.export_path)) for p in Path(res.export_path).rglob("*.npz"))
        print(f"feature maps written: {len(written)} files ({', '.join(written[:2])}, ...)")


if __name__ == "__main__":
    main()
