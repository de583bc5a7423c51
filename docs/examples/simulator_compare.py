"""Compare two model + encodings pairs on a data folder (the Simulator
spec's compare_model_by_inference example): the model in float (Exynos'
empty encodings file) against the model with its int8 encodings, then
Tessera's two quantization modes against each other.

    python docs/examples/simulator_compare.py [--model m.onnx --encodings m.encodings --data folder/]
        [--metric snr|rmse|cosine|max_abs] [--threshold 30]
"""
from simulator_files import arguments, empty_encodings, files

from compiler.simulator.api import Simulator
from compiler.simulator.schema.base import InferenceCheckerParameters


def report(title: str, res) -> None:
    print(title)
    for sample, value in res.values.items():
        print(f"  {sample}: {res.metric} {value:.4f}")
    print(f"  aggregate {res.metric} {res.aggregate:.4f}, threshold {res.threshold:g}: "
          f"{'PASSED' if res.passed else 'FAILED'}")


def main() -> None:
    parser = arguments("Two models compared on a data folder, by the Simulator API")
    parser.add_argument("--metric", default="snr", help="snr, rmse, cosine or max_abs")
    parser.add_argument("--threshold", type=float, default=30, help="what the aggregate metric must reach")
    args = parser.parse_args()
    model, encodings, data = files(args)

    params = InferenceCheckerParameters(
        input_data_path=data,
        input_model_path_0=model,
        input_encodings_path_0=empty_encodings(),
        input_model_path_1=model,
        input_encodings_path_1=encodings,
        metric=args.metric,
        threshold=args.threshold,
        use_cuda=False,
    )
    res = Simulator.compare_model_by_inference(params)
    report("float vs fake-quant int8:", res)

    res = Simulator.compare_model_by_inference(params.model_copy(update={"quantization_mode_1": "integer"}))
    report("float vs integer int8:", res)

    res = Simulator.compare_model_by_inference(params.model_copy(update={
        "input_encodings_path_0": encodings, "quantization_mode_0": "integer"}))
    report("integer vs fake-quant, same encodings:", res)


if __name__ == "__main__":
    main()
