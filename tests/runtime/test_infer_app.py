"""tessera-infer run as a user runs it (a subprocess) on real images:
scikit-learn's digits written as JPEG files with a labels file, a linear
classifier (with a softmax) trained on the other digits, exported to ONNX and compiled by
Tessera; and its errors (one clear line, no traceback)."""
from __future__ import annotations

import csv
import io
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.compile import compile_model

PIL = pytest.importorskip("PIL.Image")
datasets = pytest.importorskip("sklearn.datasets")

IMAGES = 100
SIDE = 16


def _upscale(digits: np.ndarray) -> np.ndarray:
    """8x8 digits (0..16) as 16x16 uint8 pictures (0..255)."""
    pictures = np.kron(digits.reshape(-1, 8, 8), np.ones((2, 2)))
    return np.clip(pictures * 16, 0, 255).astype(np.uint8)


def _ridge(features: np.ndarray, targets: np.ndarray, penalty: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A linear classifier: ridge regression onto one-hot targets (weights [10, features], bias [10])."""
    x = np.hstack([features, np.ones((len(features), 1))])
    onehot = np.eye(10)[targets]
    solution = np.linalg.solve(x.T @ x + penalty * np.eye(x.shape[1]), x.T @ onehot)
    return solution[:-1].T, solution[-1]


def _onnx(weights: np.ndarray, bias: np.ndarray) -> onnx.ModelProto:
    nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "w", "b"], ["logits"], transB=1),
             helper.make_node("Softmax", ["logits"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "digits", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                               [1, 1, SIDE, SIDE])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
                              [numpy_helper.from_array(weights.astype(np.float32), "w"),
                               numpy_helper.from_array(bias.astype(np.float32), "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The image folder, labels file, binary, and the float model's top-1 on the JPEG files."""
    root = tmp_path_factory.mktemp("infer")
    data = datasets.load_digits()
    pictures, targets = _upscale(data.data), data.target
    train = slice(IMAGES, None)
    weights, bias = _ridge(pictures[train].reshape(-1, SIDE * SIDE) / 255.0, targets[train])
    folder = root / "images"
    folder.mkdir()
    names = [f"digit_{i:03d}.jpg" for i in range(IMAGES)]
    for name, picture in zip(names, pictures[:IMAGES]):
        PIL.fromarray(picture).save(folder / name, quality=95)
    (root / "labels.txt").write_text("".join(f"{n} {t}\n" for n, t in zip(names, targets[:IMAGES])) + "gone.jpg 4\n")
    decoded = np.stack([np.asarray(PIL.open(folder / n).convert("L"), np.float32) / 255 for n in names])
    float_top1 = np.argmax(decoded.reshape(IMAGES, -1) @ weights.T + bias, axis=1)
    samples = [pictures[i][None, None].astype(np.float32) / 255 for i in range(IMAGES, IMAGES + 32)]
    for numclus, name in ((1, "digits.bin"), (2, "digits2.bin")):
        compile_model(_onnx(weights, bias), samples=samples, outfile=root / name, hwlinear=True,
                      demote_islands=False, numclus=numclus)
    return root, names, targets[:IMAGES], float_top1


def _infer(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "runtime.app.infer", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def test_predictions_accuracy_and_profile(digits):
    root, names, truth, float_top1 = digits
    run = _infer("--xclbin", root / "digits.bin", "--img_path", root / "images", "--labels", root / "labels.txt",
                 "--max_bs", 8, "--preprocess_workers", 2, "--profile", "--outfile", root / "out.csv")
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader(open(root / "out.csv")))
    assert [r["file"] for r in rows] == names
    predicted = np.array([int(r["prediction"]) for r in rows])
    assert all(r["top5"].split()[0] == r["prediction"] and len(r["top5"].split()) == 5 for r in rows)
    int8, reference = 100 * np.mean(predicted == truth), 100 * np.mean(float_top1 == truth)
    assert abs(int8 - reference) <= 1.0, (int8, reference)
    assert reference > 85
    accuracy = next(line for line in run.stdout.splitlines() if line.startswith("accuracy:"))
    assert accuracy.startswith(f"accuracy: top-1 {int8:.2f}% top-5 ") and f"over {IMAGES} labelled" in accuracy
    assert "--labels" in run.stderr and "names 1 file(s) not among the images: gone.jpg" in run.stderr
    for column in ("start_s", "upload_end_s", "device_end_s", "total_ms", "preprocess_ms", "device_ms",
                   "download_ms", "hwtime_ms"):
        assert float(rows[0][column]) >= 0
    header = next(line for line in run.stdout.splitlines() if line.startswith("time"))
    assert header.split() == ["time", "count", "mean", "p50", "p90", "p99"]
    assert any(line.startswith("total_ms") and f" {IMAGES} " in line for line in run.stdout.splitlines())
    assert "measured:" in run.stdout and "FPS" in run.stdout
    assert "projected:" in run.stdout and "modelled hardware" in run.stdout


def test_single_image_to_stdout_with_class_names_and_an_unreadable_image(digits, tmp_path):
    root, names, truth, _ = digits
    (tmp_path / "a.jpg").write_bytes((root / "images" / names[0]).read_bytes())
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg at all")
    (tmp_path / "c.jpg").write_bytes((root / "images" / names[1]).read_bytes())
    (tmp_path / "names.txt").write_text("".join(f"digit-{d}\n" for d in range(10)))
    run = _infer("--binary", root / "digits.bin", "--img_path", tmp_path, "--classes", tmp_path / "names.txt",
                 "--top", 3)
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader(io.StringIO(run.stdout)))
    assert [r["file"] for r in rows] == ["a.jpg", "c.jpg"]
    assert all(r["name"] == f"digit-{r['prediction']}" and len(r["top3"].split()) == 3 for r in rows)
    assert "warning: skipping unreadable image b.jpg" in run.stderr
    assert "skipped: 1 unreadable image(s)" in run.stderr
    assert "Traceback" not in run.stderr


def test_fcweights_and_a_two_cluster_binary_with_a_padded_last_run(digits, tmp_path):
    """Two images a run: batches of 2, the fifth image's run padded; the
    host FC permutes the classes."""
    root, names, _, float_top1 = digits
    permutation = np.roll(np.eye(10, dtype=int), 1, axis=0)  # class c -> c + 1
    (tmp_path / "perm.csv").write_text("\n".join(",".join(map(str, row)) for row in permutation))
    folder = tmp_path / "few"
    folder.mkdir()
    for name in names[:5]:
        (folder / name).write_bytes((root / "images" / name).read_bytes())
    moved = _infer("--xclbin", root / "digits2.bin", "--img_path", folder, "--fcweights", tmp_path / "perm.csv",
                   "--max_bs", 2, "--numclus", 2)
    assert moved.returncode == 0, moved.stderr
    rows = list(csv.DictReader(io.StringIO(moved.stdout)))
    assert [r["file"] for r in rows] == names[:5]
    assert [int(r["prediction"]) for r in rows] == [(p + 1) % 10 for p in float_top1[:5]]
    (tmp_path / "fc.csv").write_text("\n".join(",".join(["1"] * 9) for _ in range(4)))
    run = _infer("--xclbin", root / "digits.bin", "--img_path", root / "images", "--fcweights", tmp_path / "fc.csv")
    assert run.returncode == 1
    assert "has shape [4, 9]" in run.stderr and "[classes, 10]" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("case", ["missing", "corrupt", "labels", "max_bs"])
def test_errors_are_one_clear_line(digits, tmp_path, case):
    root = digits[0]
    binary, labels, extra = root / "digits.bin", root / "labels.txt", []
    if case == "missing":
        binary = tmp_path / "nowhere.bin"
    elif case == "corrupt":
        binary = tmp_path / "corrupt.bin"
        data = bytearray((root / "digits.bin").read_bytes())
        data[len(data) // 2] ^= 0xFF
        binary.write_bytes(bytes(data[: len(data) - 7]))
    elif case == "labels":
        labels = tmp_path / "labels.txt"
        labels.write_text("elsewhere.jpg 3\nnothing.jpg 1\n")
    else:
        extra = ["--max_bs", 0]
    run = _infer("--xclbin", binary, "--img_path", root / "images", "--labels", labels, *extra)
    assert run.returncode != 0
    assert "Traceback" not in run.stderr
    expected = {"missing": "nowhere.bin", "corrupt": "corrupt.bin", "labels": "names none of the",
                "max_bs": "--max_bs: must be a positive integer, got 0"}[case]
    assert expected in run.stderr, run.stderr
    if case == "labels":
        assert "elsewhere.jpg, nothing.jpg" in run.stderr
