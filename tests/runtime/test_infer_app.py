"""tessera-infer run as a user runs it (a subprocess) on real images:
scikit-learn's digits written as JPEG files with a labels file, a linear
classifier (with a softmax) trained on the other digits, exported to ONNX and compiled by
Tessera; and its errors (one clear line, no traceback)."""
from __future__ import annotations

import csv
import io
import os
import re
import secrets
import subprocess
import sys
from typing import NamedTuple

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


def _stdout_rows(stdout: str, count: int) -> list[dict]:
    """The CSV rows printed on standard output (header and ``count`` rows), before the report lines."""
    return list(csv.DictReader(io.StringIO("\n".join(stdout.splitlines()[:count + 1]))))


ORIGINAL_PROFILE = ["Start TS", "Upload Start TS", "Upload End TS", "Inference Start TS", "Inference End TS",
                    "Download Start TS", "Download End TS", "Total Latency", "Preprocessing Time", "Upload Time",
                    "Accelerator Time", "Download Time", "Inference Time"]
"""api-notes 6.2: the original script's --profile columns, in its order."""


def test_predictions_accuracy_and_profile(digits):
    root, names, truth, float_top1 = digits
    run = _infer("--xclbin", root / "digits.bin", "--img_path", root / "images", "--labels", root / "labels.txt",
                 "--max_bs", 8, "--preprocess_workers", 2, "--profile", "--outfile", root / "out.csv")
    assert run.returncode == 0, run.stderr
    header = next(csv.reader(open(root / "out.csv")))
    assert header[:16] == ["", "File Name", "Prediction", *ORIGINAL_PROFILE]  # the original's, then Tessera's
    rows = list(csv.DictReader(open(root / "out.csv")))
    assert [r["file"] for r in rows] == names
    assert [r["File Name"] for r in rows] == [str(root / "images" / n) for n in names]
    assert [r[""] for r in rows] == [str(i) for i in range(IMAGES)]
    assert all(r["Prediction"] == str(np.array(r["top5"].split(), np.uint32)) for r in rows)
    for r in rows:
        stamps = [float(r[c]) for c in ORIGINAL_PROFILE[:7]]
        assert stamps == sorted(stamps), stamps
        assert float(r["Total Latency"]) == pytest.approx(stamps[6] - stamps[0])
        assert float(r["Inference Time"]) == pytest.approx(stamps[6] - stamps[1])
    predicted = np.array([int(r["prediction"]) for r in rows])
    assert all(r["top5"].split()[0] == r["prediction"] and len(r["top5"].split()) == 5 for r in rows)
    int8, reference = 100 * np.mean(predicted == truth), 100 * np.mean(float_top1 == truth)
    assert abs(int8 - reference) <= 1.0, (int8, reference)
    assert reference > 85
    accuracy = next(line for line in run.stdout.splitlines() if line.startswith("accuracy:"))
    assert accuracy.startswith(f"accuracy: top-1 {int8:.2f}% top-5 ") and f"over {IMAGES} labelled" in accuracy
    lines = run.stdout.splitlines()
    assert f"Top-1 Accuracy: {np.mean(predicted == truth)}" in lines
    assert lines[-2].startswith(f"Duration for  {IMAGES}  images:  ") and lines[-1].startswith("FPS:  ")
    assert float(lines[-1].split()[-1]) == pytest.approx(IMAGES / float(lines[-2].split()[-1]), rel=1e-6)
    describe = lines.index(next(line for line in lines if line.split()[:2] == ["Total", "Latency"]))
    assert [line.split()[0] for line in lines[describe + 1:describe + 9]] == \
        ["count", "mean", "std", "min", "25%", "50%", "75%", "max"]
    assert "--labels" in run.stderr and "names 1 file(s) not among the images: gone.jpg" in run.stderr
    for column in ("start_s", "upload_end_s", "device_end_s", "total_ms", "preprocess_ms", "device_ms",
                   "download_ms", "hwtime_ms"):
        assert float(rows[0][column]) >= 0
    header = next(line for line in run.stdout.splitlines() if line.startswith("time"))
    assert header.split() == ["time", "count", "mean", "p50", "p90", "p99"]
    assert any(line.startswith("total_ms") and f" {IMAGES} " in line for line in run.stdout.splitlines())
    assert "measured:" in run.stdout
    assert "projected:" in run.stdout and "modelled hardware" in run.stdout


def test_the_readme_command_line_and_a_script_reading_its_csv(digits, tmp_path):
    """The original's README latency tuning as a user types it (--fcweights
    in the original's format: one flat int8 row with a trailing comma), and
    a script reading the CSV as the original's users did: File Name,
    Prediction (numpy's print of the top-5), the --profile columns, and the
    printed Top-1 accuracy, duration and FPS (api-notes 6.2)."""
    root, names, truth, _ = digits
    (tmp_path / "fcweights.csv").write_text(",".join(map(str, np.eye(10, dtype=np.int8).ravel())) + ",\n")
    run = _infer("--xclbin", root / "digits.bin", "--fcweights", tmp_path / "fcweights.csv", "--img_path",
                 root / "images", "--max_bs", 1, "--preprocess_workers", 4, "--profile", "--outfile",
                 tmp_path / "latency.csv", "--labels", root / "labels.txt")
    assert run.returncode == 0, run.stderr
    with open(tmp_path / "latency.csv", newline="") as f:
        results = list(csv.DictReader(f))
    labels = dict(line.split() for line in (root / "labels.txt").read_text().splitlines())
    top1 = top5 = total = 0
    for row in results:
        fname = os.path.split(row["File Name"])[1]
        predicted = [int(p) for p in row["Prediction"].strip("[]").split()]
        assert len(predicted) == 5 and float(row["Total Latency"]) >= float(row["Accelerator Time"]) >= 0
        if fname in labels:
            total += 1
            top1 += int(labels[fname]) == predicted[0]
            top5 += int(labels[fname]) in predicted
    assert total == IMAGES and top1 / total > 0.85
    lines = run.stdout.splitlines()
    assert f"Top-1 Accuracy: {top1 / total}" in lines and f"Top-5 Accuracy: {top5 / total}" in lines
    duration, fps = lines[-2:]
    assert re.fullmatch(rf"Duration for  {IMAGES}  images:  [\d.e-]+", duration) and fps.startswith("FPS:  ")


def test_single_image_to_stdout_with_class_names_and_an_unreadable_image(digits, tmp_path):
    root, names, truth, _ = digits
    (tmp_path / "a.jpg").write_bytes((root / "images" / names[0]).read_bytes())
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg at all")
    (tmp_path / "c.jpg").write_bytes((root / "images" / names[1]).read_bytes())
    (tmp_path / "names.txt").write_text("".join(f"digit-{d}\n" for d in range(10)))
    run = _infer("--binary", root / "digits.bin", "--img_path", tmp_path, "--classes", tmp_path / "names.txt",
                 "--top", 3)
    assert run.returncode == 0, run.stderr
    rows = _stdout_rows(run.stdout, 2)
    assert [r["file"] for r in rows] == ["a.jpg", "c.jpg"]
    assert [r["File Name"] for r in rows] == [str(tmp_path / "a.jpg"), str(tmp_path / "c.jpg")]
    assert all(r["name"] == f"digit-{r['prediction']}" and len(r["top3"].split()) == 3 for r in rows)
    assert "warning: skipping unreadable image b.jpg" in run.stderr
    assert run.stdout.splitlines()[3] == "skipped: 1 unreadable image(s)"  # after the rows, as the original prints
    assert run.stdout.splitlines()[-2].startswith("Duration for  2  images:  ")
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
    rows = _stdout_rows(moved.stdout, 5)
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


# --- scale-out on Ray (runtime/app/scale.py) ---

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
"""The cluster's token authentication on (Ray sends its token to an explicit address only when told to),
with a token of the test's own: on a fresh machine there is no ~/.ray/auth_token and the head exits."""


class RayHead(NamedTuple):
    address: str
    tmpdir: str
    """TMPDIR of the cluster's processes (so of every actor): where a
    driver given the same TMPDIR and the actors would leave temporary folders."""


@pytest.fixture(scope="module")
def ray_head():
    """A local Ray cluster of one head node with 2 CPUs (2 actors), stopped
    with its processes at the end (`ray start --block` stops them on SIGTERM)."""
    import os
    import shutil
    import socket
    import tempfile
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths have a length limit
    scratch = tempfile.mkdtemp(prefix="raytmp", dir="/tmp")
    head = subprocess.Popen([sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.exit(main())",
                             "start", "--head", "--block", "--num-cpus", "2", "--port", str(port),
                             "--include-dashboard", "false",
                             "--object-store-memory", str(100 << 20), "--temp-dir", temp, "--disable-usage-stats"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **RAY_ENV, "TMPDIR": scratch})
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None and time.monotonic() < deadline, "the Ray head did not start"
                time.sleep(0.5)
        yield RayHead(f"127.0.0.1:{port}", scratch)
    finally:
        head.terminate()
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            head.kill()
        shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


def _ray_leftovers(head: RayHead) -> list[str]:
    """The tessera-ray-* folders in the cluster's (and the driver's) temporary directory."""
    import os

    return sorted(name for name in os.listdir(head.tmpdir) if name.startswith("tessera-ray-"))


def _rows(path) -> list[dict]:
    return list(csv.DictReader(open(path)))


def test_ray_gives_the_single_host_csv_profile_and_accuracy(digits, ray_head):
    """--ray ADDRESS on a 2-worker cluster: the same rows, in input order,
    and the same accuracy as one host; the profile spans both actors; no
    temporary folder is left behind."""
    import os

    root = digits[0]
    common = ("--xclbin", root / "digits.bin", "--img_path", root / "images", "--labels", root / "labels.txt",
              "--max_bs", 4, "--preprocess_workers", 2, "--profile")
    single = _infer(*common, "--outfile", root / "single.csv")
    env = {**os.environ, **RAY_ENV, "TMPDIR": ray_head.tmpdir}
    spread = subprocess.run([sys.executable, "-m", "runtime.app.infer", *map(str, common), "--outfile",
                             str(root / "ray.csv"), "--ray", ray_head.address, "--ray_shard", "8"],
                            capture_output=True, text=True, timeout=180, env=env)
    assert single.returncode == 0 and spread.returncode == 0, spread.stderr
    one, many = _rows(root / "single.csv"), _rows(root / "ray.csv")
    assert list(one[0]) == list(many[0])
    key = ("file", "prediction", "top5", "score")
    assert [[r[k] for k in key] for r in many] == [[r[k] for k in key] for r in one]
    accuracy = [next(line for line in run.stdout.splitlines() if line.startswith("accuracy:")) for run in (single,
                                                                                                          spread)]
    assert accuracy[0] == accuracy[1]
    assert any(line.startswith("total_ms") and f" {IMAGES} " in line for line in spread.stdout.splitlines())
    runs = [re.search(r"hwtime; (\d+) runs", run.stdout).group(1) for run in (single, spread)]
    assert runs[0] == runs[1] == str(IMAGES) and "on 2 instances" in spread.stdout
    assert "Traceback" not in spread.stderr
    assert _ray_leftovers(ray_head) == []


KILL_SCRIPT = """
import os
import sys
import tempfile
import ray
from runtime import FWDNXT
from runtime.app.images import list_images, settings_for
from runtime.app.pipeline import run_images
from runtime.app.scale import RayOptions, run_on_ray

binary, folder, address = sys.argv[1:]
paths = list_images(folder)
ie = FWDNXT()
ie.Init(binary, "")
settings = settings_for(ie.GetInfo("inshapes"), None, None, None)
expected = [(r.index, r.file, r.top) for r in run_images(ie, paths, settings, max_bs=4).rows]
ie.Free()


def kill(*actors):
    for actor in actors:
        ray.kill(actor, no_restart=True)
    for actor in actors:
        while True:  # dead before the run sends it a shard (the kill lands asynchronously)
            try:
                ray.get(actor.node.remote(), timeout=30)
            except ray.exceptions.RayActorError:
                break


warnings, seen = [], []
result = run_on_ray(binary, paths, settings, RayOptions(address, actors=2, shard=4), max_bs=4,
                    sink=lambda row: seen.append(row.index), warn=warnings.append,
                    started=lambda runtimes, preps: kill(runtimes[1], preps[0]))
assert [(r.index, r.file, r.top) for r in result.rows] == expected, "rows differ from one host's"
assert seen == list(range(len(paths))), seen
assert not ray.is_initialized()
left = [name for name in os.listdir(tempfile.gettempdir()) if name.startswith("tessera-ray-")]
assert not left, f"temporary folders left behind: {left}"
assert any("Ray actor 1 failed" in line for line in warnings), warnings
assert any("pre-processing actor 0 failed" in line for line in warnings), warnings
# every row from actor 0: actor 1 ran none after it was killed, and actor 0 went on when its
# pre-processing actor died (a replacement pre-processed its shards again)
assert {r.instance for r in result.rows} == {0}, "actor 1 ran rows after it was killed"
print("OK", len(paths), warnings)
"""


def test_a_killed_actor_loses_and_repeats_nothing_and_leaves_no_files(digits, ray_head):
    """The Python API (run_on_ray) in a driver process: runtime actor 1 and
    actor 0's pre-processing actor are killed once the actors are up, before
    the run sends them a shard (one run for both: each run starts a cluster's
    worth of actor processes). A dead runtime actor's shards run on actor 0; a
    dead pre-processing actor is replaced and its shards run again, actor 0
    going on (the only one left, so every row says it did). Every image once,
    in input order, as on one host, and no tessera-ray-* folder left in the
    temporary directory the driver and the actors share. (Killed when the
    first row arrived, as this test did before, actor 1 could already have
    finished shards of the last quarter when the driver was slow to collect
    row 0, or all of its shards: a flake of the whole suite, more likely as
    the simulator got faster.)"""
    import os

    root = digits[0]
    run = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(root / "digits.bin"), str(root / "images"),
                          ray_head.address], capture_output=True, text=True, timeout=240,
                         env={**os.environ, **RAY_ENV, "TMPDIR": ray_head.tmpdir})
    assert run.returncode == 0 and f"OK {IMAGES}" in run.stdout, run.stdout + run.stderr
    assert _ray_leftovers(ray_head) == []


def test_an_actor_deletes_its_copy_of_the_binary_once_loaded(digits, tmp_path, monkeypatch):
    """_init_from_copy: the copy is gone once Init has read it, also when Init
    fails; on a machine without the driver's folder, so is the actor's own."""
    import tempfile

    from runtime import FWDNXT
    from runtime.app.scale import _init_from_copy
    from runtime.fwdnxt import FWDNXTError

    data = (digits[0] / "digits.bin").read_bytes()
    shared = tmp_path / "driver"
    shared.mkdir()
    ie = FWDNXT()
    _init_from_copy(ie, data, "actor0-digits.bin", str(shared))
    assert ie.GetInfo("numbatch") == 1 and list(shared.iterdir()) == []
    ie.Free()
    with pytest.raises(FWDNXTError, match="actor1-digits.bin"):
        _init_from_copy(FWDNXT(), data[:-7], "actor1-digits.bin", str(shared))
    assert list(shared.iterdir()) == []
    own = tmp_path / "elsewhere"
    own.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(own))
    ie = FWDNXT()
    _init_from_copy(ie, data, "actor2-digits.bin", None)
    ie.Free()
    assert list(own.iterdir()) == []


def test_ray_is_imported_only_when_asked_and_its_errors_are_one_line(digits):
    root = digits[0]
    script = ("import sys; sys.modules['ray'] = None if len(sys.argv) > 2 else sys.modules.get('ray'); "
              "from runtime.app.infer import main; code = main(sys.argv[1:]); "
              "print('RAY IMPORTED' if sys.modules.get('ray') else 'no ray'); sys.exit(code)")
    base = ["--xclbin", str(root / "digits.bin"), "--img_path", str(root / "images" / "digit_000.jpg")]
    plain = subprocess.run([sys.executable, "-c", script, *base], capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0 and "no ray" in plain.stdout, plain.stderr
    missing = subprocess.run([sys.executable, "-c", script, *base, "--ray", "auto"], capture_output=True, text=True,
                             timeout=120)
    assert missing.returncode == 1 and "pip install 'tessera[ray]'" in missing.stderr, missing.stderr
    for extra, expected in ((["--ray", "127.0.0.1:1"], "cannot reach the Ray cluster"),
                            (["--ray_actors", "2"], "--ray_actors only applies with --ray")):
        run = _infer(*base, *extra)
        assert run.returncode == 1 and expected in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_the_preprocessing_the_compiler_recorded_is_the_default(digits, tmp_path):
    """`tessera compile --calibration FOLDER --mean --std` records the
    normalisation in the binary; tessera-infer applies it unless told
    otherwise (a classifier trained on (x - 0.5) / 0.25 keeps its accuracy
    with no --mean/--std given)."""
    from compiler.cli import main as tessera
    from runtime import FWDNXT

    root, names, truth, _ = digits
    data = datasets.load_digits()
    pictures = _upscale(data.data)
    weights, bias = _ridge((pictures[IMAGES:].reshape(-1, SIDE * SIDE) / 255.0 - 0.5) / 0.25, data.target[IMAGES:])
    onnx.save(_onnx(weights, bias), tmp_path / "norm.onnx")
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for i in range(IMAGES, IMAGES + 32):
        PIL.fromarray(pictures[i]).save(calibration / f"c{i}.png")
    assert tessera(["compile", str(tmp_path / "norm.onnx"), "--calibration", str(calibration), "--mean", "0.5",
                    "--std", "0.25", "--hwlinear", "-o", str(tmp_path / "norm.bin")]) == 0
    ie = FWDNXT()
    ie.Init(str(tmp_path / "norm.bin"), "")
    assert ie.GetInfo("preprocess") == {"layout": "NCHW", "channel_order": "RGB", "scale": 1 / 255, "mean": [0.5],
                                        "std": [0.25]}
    ie.Free()
    decoded = np.stack([np.asarray(PIL.open(root / "images" / n).convert("L"), np.float32) / 255 for n in names])
    reference = 100 * np.mean(np.argmax(((decoded.reshape(IMAGES, -1) - 0.5) / 0.25) @ weights.T + bias, 1) == truth)
    run = _infer("--xclbin", tmp_path / "norm.bin", "--img_path", root / "images", "--labels", root / "labels.txt")
    assert run.returncode == 0, run.stderr
    top1 = float(re.search(r"accuracy: top-1 ([\d.]+)%", run.stdout).group(1))
    assert reference > 85 and abs(top1 - reference) <= 1.0, (top1, reference)
    given, plain = (_infer("--xclbin", tmp_path / "norm.bin", "--img_path", root / "images", "--mean", mean, "--std",
                           std) for mean, std in (("0.5", "0.25"), ("0", "1")))
    assert _stdout_rows(given.stdout, IMAGES) == _stdout_rows(run.stdout, IMAGES)
    scores = [[row["score"] for row in _stdout_rows(r.stdout, IMAGES)] for r in (run, plain)]
    assert sum(a != b for a, b in zip(*scores)) > IMAGES // 2


@pytest.mark.parametrize("record, expected", [
    ({"layout": "NWHC", "channel_order": "RGB", "scale": 1.0, "mean": [0], "std": [1]}, "layout NCHW or NHWC"),
    ({"layout": "NCHW", "channel_order": "RGB", "scale": 1.0, "mean": [0, 0, 0, 0], "std": [1]}, "preprocess.mean"),
    ({"layout": "NCHW", "channel_order": "RGB", "scale": 1.0, "mean": [0], "std": [0]}, "std holds a 0"),
    ({"layout": "NCHW", "channel_order": "RGB", "scale": "x", "mean": [0], "std": [1]}, "preprocess.scale"),
    ([1, 2], "must be an object"),
])
def test_a_malformed_preprocessing_record_is_a_clear_error(record, expected):
    from runtime.fwdnxt import FWDNXTError, _recorded_preprocess

    with pytest.raises(FWDNXTError, match=expected):
        _recorded_preprocess({"preprocess": record})
    assert _recorded_preprocess({}) is None
