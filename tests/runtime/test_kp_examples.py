"""The kp examples (docs/examples/kp_*.py) run as a user runs them, each in
a process of its own from the repository root, and print what kp's calls
should give."""
import re

import numpy as np
import pytest

from runtime.binary import read_binary
from runtime.engine import Engine
from tests.helpers.examples import run_examples

TOP = re.compile(r"(\d+) \((\d\.\d{4})\)")


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    """The tiny ResNet-10 compiled once for the examples that take --model."""
    from compiler.compile import compile_model
    from compiler.zoo import resnet

    path = tmp_path_factory.mktemp("kp-examples") / "resnet10.bin"
    rng = np.random.default_rng(0)
    samples = [rng.random((1, 3, 32, 32), np.float32) - 0.5 for _ in range(4)]
    compile_model(resnet(depth=10, image=32, classes=10, width=8), samples=samples, outfile=path)
    return str(path)


def test_generic_inference_classifies_the_photo_ten_times_in_order(outputs):
    """No --model: the example compiles the built-in ResNet itself."""
    out = outputs["kp_generic_inference.py"]
    assert "[Connect Device]\n - Success" in out and "input [1, 3, 32, 32]" in out
    assert re.findall(r"^ - inference (\d+): 1 output node\(s\)$", out, re.MULTILINE) == [str(i) for i in range(10)]
    line = re.search(r"^ - node 0 probabilities shape \[1, 10\]: top classes (.*)$", out, re.MULTILINE).group(1)
    probs = [float(p) for _, p in TOP.findall(line)]
    assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0.1 < probs[0] < 1


def test_crop_gives_one_result_per_box(outputs):
    out = outputs["kp_generic_inference_crop.py"]
    assert "[Crop] 2 crop boxes sent" in out
    crops = re.findall(r"^crop (\d) \((\d+), (\d+), (\d+)x(\d+)\): inference 0, top classes (.*)$", out, re.MULTILINE)
    assert [c[:5] for c in crops] == [("0", "0", "0", "320", "320"), ("1", "200", "100", "256", "256")]
    assert crops[0][5] != crops[1][5]


def test_bypass_reads_fixed_point_that_reproduces_the_float_output(outputs):
    out = outputs["kp_generic_inference_bypass_pre_proc.py"]
    radix, scale = re.search(r"RAW_8B: radix (\d+), scale ([\d.]+), zero point -?\d+", out).groups()
    assert 1.0 <= float(scale) < 2.0
    node = re.search(r"^\[Output 0\] probabilities KP_FIXED_POINT_DTYPE_INT16 radix (\d+) scale 1\.000000", out,
                     re.MULTILINE)
    assert node is not None
    error = float(re.search(r"max \|float - fixed / \(scale \* 2\^radix\)\| = (\S+)", out).group(1))
    assert error <= 2.0 ** -(int(node.group(1)) + 1)


def test_multithread_results_come_back_in_order_from_both_devices(outputs, binary):
    out = outputs["kp_generic_inference_multithread.py"]
    assert "[Devices] ports [1, 2]" in out
    frames = re.findall(r"^frame (\d+) on device (\d): top classes", out, re.MULTILINE)
    assert [int(f) for f, _ in frames] == list(range(12)) and {d for _, d in frames} == {"1", "2"}
    stats = re.search(r"^\[Profile\] model 1: (\d+) inferences, avg pre-process ([\d.]+) ms, avg inference ([\d.]+) ms",
                      out, re.MULTILINE)
    assert stats.group(1) == "12" and float(stats.group(2)) > 0
    assert float(stats.group(3)) == pytest.approx(Engine(read_binary(binary)).device.hwtime_ms, abs=1e-4)


@pytest.fixture(scope="module")
def outputs(binary):
    """Every example's stdout (tests/helpers/examples.py)."""
    return run_examples({name: (name, *args) for name, args in {
        "kp_generic_inference.py": (), "kp_generic_inference_crop.py": ("--model", binary),
        "kp_generic_inference_bypass_pre_proc.py": ("--model", binary),
        "kp_generic_inference_multithread.py": ("--model", binary, "--frames", "12")}.items()})
