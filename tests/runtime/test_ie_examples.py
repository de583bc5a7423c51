"""The Inference-Engine examples (docs/examples) run as a user runs them,
each in a process of its own from the repository root, and print what the
spec's calls should give."""
import ast
import importlib.util
import re

import numpy as np
import onnx
import pytest

from tests.helpers.examples import EXAMPLES, run_examples

TOP_ROW = re.compile(r"^\s*(\d+)\s+(\d\.\d{7})$", re.MULTILINE)


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    """A user's model for --model: a ResNet-10 of 7 classes."""
    from compiler.zoo import resnet

    model = resnet(depth=10, image=32, classes=7, width=8, seed=3)
    path = tmp_path_factory.mktemp("ie_examples") / "resnet10_7.onnx"
    onnx.save(model, path)
    return model, path


@pytest.fixture(scope="module")
def outputs(user_model):
    """Every example's stdout (tests/helpers/examples.py)."""
    return run_examples({name: (name, *args) for name, args in {
        "ie_classification.py": ("--model", str(user_model[1]), "--device", "FPGA"),
        "ie_classification_async.py": (), "ie_hetero_affinity.py": (), "ie_perf_counts.py": ()}.items()})


def sample_data():
    """docs/examples/sample_data.py, the examples' own preprocessing."""
    spec = importlib.util.spec_from_file_location("ie_examples_sample_data", EXAMPLES / "sample_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_classification_prints_the_models_top_5_on_the_photo(user_model, outputs):
    """A user's model (--model) on the FPGA plugin: the accelerator runs
    every layer (the classifier and the Softmax too: FPGA alone has no CPU
    to keep them in float), and the top 5 are the float model's best
    classes with its probabilities, within int8's error."""
    model = user_model[0]
    out = outputs["ie_classification.py"]

    unsupported = re.search(r"^Layers FPGA cannot run: (.*)$", out, re.MULTILINE).group(1).split(", ")
    assert unsupported == ["none"] and "runs them on the CPU" not in out
    rows = [(int(c), float(p)) for c, p in TOP_ROW.findall(out)]
    assert len(rows) == 5 and len({c for c, _ in rows}) == 5
    probs = [p for _, p in rows]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-6

    import onnxruntime as ort

    image = sample_data().load_image(None, 32, 32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    reference = session.run(None, {"image": image})[0][0]
    for class_id, p in rows:
        assert abs(p - reference[class_id]) < 0.01, (class_id, p, reference)
    assert rows[0][0] in np.argsort(reference)[::-1][:2]


def test_async_requests_both_finish_ok(outputs):
    """Two requests started together: wait() gives 0 (OK) for each, each
    has its own photo's result."""
    out = outputs["ie_classification_async.py"]
    rows = re.findall(r"^request (\d) \((\w+\.jpg)\): status (-?\d+) \((\w+)\), top-1 class (\d+) probability "
                      r"(\d\.\d+)$", out, re.MULTILINE)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [("0", "china.jpg", "0", "OK"), ("1", "flower.jpg", "0", "OK")]
    assert all(0 <= int(r[4]) < 10 and 0.1 <= float(r[5]) <= 1.0 for r in rows)  # top-1 of 10 classes
    assert rows[0][5] != rows[1][5]


def test_hetero_affinity_moves_every_conv_to_the_cpu(outputs):
    """The fallback policy puts the convolutions on the FPGA; moved by
    hand, they run on the CPU while other layers stay on the FPGA."""
    out = outputs["ie_hetero_affinity.py"]
    initial = ast.literal_eval(re.search(r"^Initial affinities: (\{.*\})$", out, re.MULTILINE).group(1))
    placed = ast.literal_eval(re.search(r"^Layers per device: (\{.*\})$", out, re.MULTILINE).group(1))
    convs = ast.literal_eval(re.search(r"^Conv layers per device: (\{.*\})$", out, re.MULTILINE).group(1))
    assert initial["FPGA"] > initial.get("CPU", 0)
    assert set(convs) <= {"CPU", "folded or fused"} and convs.get("CPU", 0) >= 6
    assert placed["FPGA"] > 0 and placed["CPU"] >= convs["CPU"]


def test_perf_counts_table(outputs):
    """Rows in execution order: EXECUTED layers on both devices with times,
    then the rest, among them a BatchNormalization folded away."""
    out = outputs["ie_perf_counts.py"]
    lines = out.splitlines()
    assert lines[0].split() == ["name", "index", "layer_type", "status", "exec_type", "real_time"]
    rows = [line.split() for line in lines[1:] if re.match(r"^\S+\s+-?\d+\s", line)]
    executed = [r for r in rows if r[3] == "EXECUTED"]
    assert [int(r[1]) for r in executed] == list(range(len(executed)))
    assert rows[:len(executed)] == executed
    assert {r[4].split(":")[0] for r in executed} == {"FPGA", "CPU"}
    assert all(int(r[-1]) > 0 for r in executed if r[4].startswith("CPU:"))
    assert sum(int(r[-1]) > 0 for r in executed) >= len(executed) // 2
    assert any(r[2] == "ScaleShift" and r[3] == "OPTIMIZED_OUT" and r[-1] == "0" for r in rows)  # a BatchNorm
    assert {"Convolution", "ReLU", "Pooling", "Eltwise", "FullyConnected", "SoftMax"} <= {r[2] for r in rows}
    assert ["image", "-1", "Input", "NOT_RUN", "undef", "0"] in rows
    total = int(re.search(r"^Total real_time: (\d+) us", out, re.MULTILINE).group(1))
    assert total == sum(int(r[-1]) for r in executed)
