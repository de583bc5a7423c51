"""An inference session of a model with its encodings, used where code
expects an onnxruntime session (the Simulator spec's get_inference_session
example, and get_quantization_sim(...).session).

    python docs/examples/simulator_session.py [--model m.onnx --encodings m.encodings --data folder/]

``classify`` below is written for onnxruntime; the Simulator's session runs
it unchanged, in both quantization modes, beside onnxruntime itself.
"""
from pathlib import Path

import numpy as np
from simulator_files import arguments, files

from compiler.simulator.api import Simulator
from compiler.simulator.schema.base import InferenceSessionParameters


def classify(session, image: np.ndarray) -> tuple[int, float]:
    """Top class and its score, by the onnxruntime session API."""
    input_name = session.get_inputs()[0].name
    output_name = session.get_outputs()[0].name
    scores = session.run([output_name], {input_name: image})[0]
    return int(np.argmax(scores)), float(np.max(scores))


def main() -> None:
    args = arguments("An onnxruntime-like session from the Simulator API").parse_args()
    model, encodings, data = files(args)

    params = InferenceSessionParameters(
        input_model_path=model,
        input_encodings_path=encodings,
        use_cuda=False,
    )
    session = Simulator.get_inference_session(params)
    integer = Simulator.get_quantization_sim(params.model_copy(update={"quantization_mode": "integer"})).session
    sessions = {"fake-quant": session, "integer": integer}
    try:
        import onnxruntime

        sessions["onnxruntime (float)"] = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    except ImportError:
        print("onnxruntime is not installed: the float column is left out")

    for arg in session.get_inputs():
        print(f"input: {arg.name} {arg.type} {arg.shape}")
    for arg in session.get_outputs():
        print(f"output: {arg.name} {arg.type} {arg.shape}")
    for path in sorted(Path(data).glob("*.npy")):
        image = np.load(path)
        results = ", ".join(f"{name} {c} ({p:.6f})" for name, (c, p) in
                            ((name, classify(s, image)) for name, s in sessions.items()))
        print(f"{path.name}: {results}")


if __name__ == "__main__":
    main()
