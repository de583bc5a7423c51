"""OpenVINO's Python samples of 2018 R3 to 2020 (tests/helpers/ie_samples.py)
run as users ran them: subprocesses, only the import line changed and the
model an ONNX file, asserting what the spec and api-notes 2.1-2.4 promise:
the float model's results (onnxruntime) on CPU, its top-1 within int8's
error on the accelerator, IR layer types, perf count fields, the HETERO
affinities and IECore's devices.

As OpenVINO's FPGA plugin needed no calibration, the FPGA classification
sample and the HETERO async sample run with no Tessera setting at all: their
requests run the float model until they have fed 32 images (they feed
fewer), so they print the float model's answer. The affinity sample is
given TESSERA_CALIBRATION_DATA (a folder of raw-pixel .npy images, what the
samples feed), so its accelerator program is calibrated at load."""
from __future__ import annotations

import re

import numpy as np
import onnx
import pytest

from tests.helpers.ie_samples import cv2_module, preprocess, raw_pixel_model, run_samples, write_samples

CLASSID_ROW = re.compile(r"^\s*(\d+)\s+(\d+\.\d{7})$")
LABEL_ROW = re.compile(r"^(\d+\.\d{7}) (?:label )?#(\d+)$")
PERF_ROW = re.compile(r"^(\S+)\s+(\S+)\s+(\S+)\s+(EXECUTED|NOT_RUN|OPTIMIZED_OUT)\s+(\d+)\s*$")
SIZE = 32
INT8_ATOL = 0.01
"""How far a probability on the accelerator may be from the float model's (measured: 0.001)."""
FLOAT_ATOL = 1e-5
"""How far a probability of Tessera's float32 kernels may be from onnxruntime's."""
UNCALIBRATED_NOTE = ("inference_engine: note: network 'resnet10' on {device}: no calibration data "
                     "(TESSERA_CALIBRATION_DATA), so requests run in float32 on the CPU until they have fed 32 input "
                     "images, then the accelerator's int8 program, calibrated on those images, takes over")


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    """The scripts, a ResNet-10 of 10 classes on raw pixels, three photos
    (two of another size than the network's, so the samples resize them;
    a.png and b.png of different classes) and the calibration folder; every
    script's output."""
    from PIL import Image

    from compiler.zoo import resnet
    from compiler.zoo.images import sample_photos

    folder = tmp_path_factory.mktemp("ie_samples")
    write_samples(folder)
    model = raw_pixel_model(resnet(depth=10, image=SIZE, classes=10, width=8, seed=5))
    onnx.save(model, folder / "resnet10.onnx")
    photos = [Image.fromarray(pixels) for pixels in sample_photos()]
    crops = {"a.png": (photos[0], (100, 50, 400, 350), (48, 40)), "b.png": (photos[1], (150, 80, 450, 380), (40, 40)),
             "c.png": (photos[0], (300, 100, 500, 300), (SIZE, SIZE))}
    for name, (photo, box, size) in crops.items():
        photo.crop(box).resize(size, Image.BILINEAR).save(folder / name)
    (folder / "calibration").mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        photo = photos[i % 2]
        left, top = int(rng.integers(0, 300)), int(rng.integers(0, 100))
        rgb = np.asarray(photo.crop((left, top, left + 300, top + 300)).resize((SIZE, SIZE), Image.BILINEAR))
        np.save(folder / "calibration" / f"{i}.npy", rgb[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32))
    model_args = ("-m", "resnet10.onnx", "-nt", "3")
    runs = {"sync 2020 CPU": ("classification_sample_2020.py", *model_args, "-i", "a.png", "b.png", "-d", "CPU"),
            "async 2020 FPGA": ("classification_sample_async_2020.py", *model_args, "-i", "a.png", "b.png",
                                "-d", "FPGA"),
            "sync 2018 CPU": ("classification_sample_2018.py", *model_args, "-i", "c.png", "-d", "CPU", "-ni", "2",
                              "-pc"),
            "async 2018 HETERO": ("classification_sample_async_2018.py", *model_args, "-i", "a.png",
                                  "-d", "HETERO:FPGA,CPU", "-pc"),
            "hetero affinity": ("affinity_setting_sample.py", "-m", "resnet10.onnx", "-i", "b.png", "-nt", "3"),
            "query device": ("hello_query_device.py",)}
    calibrated = {"TESSERA_CALIBRATION_DATA": str(folder / "calibration")}
    outputs = run_samples(folder, runs, envs={"hetero affinity": calibrated})
    return folder, model, outputs


def reference(samples, names) -> np.ndarray:
    """The float model's probabilities (onnxruntime) on what the samples feed, one row per image."""
    import onnxruntime as ort

    folder, model, _ = samples
    images = preprocess(cv2_module(folder), [str(folder / n) for n in names], SIZE, SIZE).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"image": image[None]})[0] for image in images])


def tables(out: str, row: re.Pattern, class_group: int) -> dict[str, list[tuple[int, float]]]:
    """Image -> its (class, probability) rows: the lines matching ``row``
    after each "Image <name>" line."""
    found: dict[str, list] = {}
    rows = None
    for line in out.splitlines():
        image = re.match(r"^Image (\S+)$", line)
        if image:
            rows = found.setdefault(image.group(1), [])
        elif rows is not None and row.match(line):
            match = row.match(line)
            rows.append((int(match.group(class_group)), float(match.group(3 - class_group))))
    return found


def classid_tables(out: str) -> dict[str, list[tuple[int, float]]]:
    """The 2020 samples' classid/probability tables."""
    return tables(out, CLASSID_ROW, 1)


def label_tables(out: str) -> dict[str, list[tuple[int, float]]]:
    """The 2018 samples' "<probability> [label ]#<class>" lines."""
    return tables(out, LABEL_ROW, 2)


def perf_rows(out: str) -> dict[str, tuple[str, str, str, int]]:
    """Layer -> (layer_type, exec_type, status, real_time) from the -pc table."""
    return {m.group(1): (m.group(2), m.group(3), m.group(4), int(m.group(5)))
            for m in map(PERF_ROW.match, out.splitlines()) if m}


def assert_top(rows: list[tuple[int, float]], want: np.ndarray, atol: float, exact_order: bool) -> None:
    assert len(rows) == 3, rows
    assert rows[0][0] == int(np.argmax(want)), (rows, want)
    if exact_order:
        assert [c for c, _ in rows] == list(np.argsort(want)[::-1][:3])
    for class_id, probability in rows:
        assert abs(probability - want[class_id]) <= atol, (class_id, probability, want)


def test_2020_sync_sample_on_cpu_runs_a_batch_of_two_as_the_float_model(samples):
    """IECore + IENetwork(model, <model>.bin that does not exist) +
    query_network + batch_size = 2 on a model whose batch is fixed at 1:
    each image's top 3 and probabilities are onnxruntime's."""
    out, err = samples[2]["sync 2020 CPU"]
    want = reference(samples, ["a.png", "b.png"])
    tables = classid_tables(out)
    assert list(tables) == ["a.png", "b.png"] and "Batch size is 2" in out
    for row, name in enumerate(tables):
        assert_top(tables[name], want[row], 1e-5, exact_order=True)
    assert "Image a.png is resized from (40, 48) to (32, 32)" in out
    notes = [line for line in err.splitlines() if "note:" in line]
    assert notes == ["inference_engine: note: weights 'resnet10.bin' ignored: the model 'resnet10.onnx' holds its "
                     "weights"]


def test_2020_async_sample_on_the_accelerator_with_no_calibration_setting_gives_the_float_answer(samples):
    """read_network + input_info + a batch of 2 raw-pixel images on the FPGA,
    no calibration setting, the request restarted 10 times from its
    completion callback, output_blobs[...].buffer: its 20 images are fewer
    than the 32 the int8 program is calibrated on, so every run is the float
    model's (its top 3 and probabilities), one note on stderr says so, and
    nothing is calibrated on synthetic data."""
    out, err = samples[2]["async 2020 FPGA"]
    assert "Completed 10 Async request execution" in out and "Completed 11" not in out
    assert "failed with status code" not in out and "does not correspond" not in out
    want = reference(samples, ["a.png", "b.png"])
    tables = classid_tables(out)
    assert list(tables) == ["a.png", "b.png"]
    for row, name in enumerate(tables):
        assert_top(tables[name], want[row], FLOAT_ATOL, exact_order=True)
    assert UNCALIBRATED_NOTE.format(device="FPGA") in err.splitlines()
    assert "synthetic" not in err and "Warning" not in err


def test_2018_sample_unpacks_the_input_shape_and_prints_ir_layer_types(samples):
    """IEPlugin + IENetwork.from_ir + ``n, c, h, w = net.inputs[input_blob]``
    on CPU, with -pc: every layer's IR type, the CPU layers EXECUTED with
    their kernels, the float model's answer."""
    out, _ = samples[2]["sync 2018 CPU"]
    tables = label_tables(out)
    assert list(tables) == ["c.png"] and "Batch size is 1" in out and "resized" not in out
    assert_top(tables["c.png"], reference(samples, ["c.png"])[0], 1e-5, exact_order=True)
    rows = perf_rows(out)
    model = samples[1]
    assert set(rows) == {"image"} | {node.name for node in model.graph.node}
    types = {node.op_type: rows[node.name][0] for node in model.graph.node}
    assert types == {"Mul": "Power", "Sub": "ScaleShift", "Conv": "Convolution", "BatchNormalization": "ScaleShift",
                     "Relu": "ReLU", "MaxPool": "Pooling", "Add": "Eltwise", "GlobalAveragePool": "Pooling",
                     "Flatten": "Reshape", "Gemm": "FullyConnected", "Softmax": "SoftMax"}
    assert rows["image"] == ("Input", "undef", "NOT_RUN", 0)
    executed = [r for r in rows.values() if r[2] == "EXECUTED"]
    assert executed and all(r[1].startswith("CPU:") for r in executed)
    assert rows["probabilities"][2] == "EXECUTED"


def test_2018_async_sample_on_hetero_with_no_calibration_setting_reports_its_float_run(samples):
    """IENetwork(model, weights) + start_async/wait on HETERO:FPGA,CPU with
    no calibration setting: its one run is on the float program, so its
    answer is the float model's and its perf counts say so (every executed
    layer a CPU kernel, none on the FPGA)."""
    out, err = samples[2]["async 2018 HETERO"]
    tables = label_tables(out)
    assert_top(tables["a.png"], reference(samples, ["a.png"])[0], FLOAT_ATOL, exact_order=True)
    rows = perf_rows(out)
    executed = [r for r in rows.values() if r[2] == "EXECUTED"]
    assert executed and all(r[1].startswith("CPU:") for r in executed)
    assert not any(r[1].startswith("FPGA") for r in rows.values())
    assert rows["probabilities"][:3] == ("SoftMax", "CPU:Softmax", "EXECUTED")
    assert UNCALIBRATED_NOTE.format(device="HETERO:FPGA,CPU") in err.splitlines()


def test_affinity_sample_moves_every_convolution_to_the_cpu(samples):
    """The spec's ``if l.type == "Convolution": l.affinity = "CPU"`` finds
    every convolution; the rest stays where set_initial_affinity put it
    (FPGA, the classifier on the CPU); the DOT dumps are written."""
    folder, model, outputs = samples
    out, _ = outputs["hetero affinity"]
    initial = eval(re.search(r"^initial affinities: (\{.*\})$", out, re.MULTILINE).group(1))  # noqa: S307 - a dict
    assert {name for name, device in initial.items() if device == "CPU"} == {"gemm_103", "probabilities"}
    perf = eval(re.search(r"^perf counts: (\{.*\})$", out, re.MULTILINE).group(1))  # noqa: S307 - a dict
    convs = [node.name for node in model.graph.node if node.op_type == "Conv"]
    assert {perf[name][0] for name in convs} == {"Convolution"}
    assert not any(perf[name][1].startswith("FPGA") for name in convs)
    assert any(perf[name][1].startswith("CPU:") and perf[name][2] == "EXECUTED" for name in convs)
    assert any(exec_type.startswith("FPGA:") and status == "EXECUTED" for _, exec_type, status in perf.values())
    top = [(int(m.group(2)), float(m.group(1))) for m in re.finditer(r"^\[ INFO \] (\d\.\d+) #(\d+)$", out,
                                                                     re.MULTILINE)]
    assert_top(top, reference(samples, ["b.png"])[0], INT8_ATOL, exact_order=False)
    assert (folder / "hetero_affinity_resnet10.dot").is_file() and (folder / "hetero_subgraphs_resnet10.dot").is_file()


def test_hello_query_device_lists_both_devices_their_metrics_and_keys(samples):
    out, _ = samples[2]["query device"]
    assert re.findall(r"^\tDevice: (\w+)$", out, re.MULTILINE) == ["CPU", "FPGA"]
    assert "\t\tOPTIMIZATION_CAPABILITIES: FP32\n" in out and "\t\tOPTIMIZATION_CAPABILITIES: INT8, FP32\n" in out
    assert out.count("\t\tFULL_DEVICE_NAME: Tessera") == 2 and out.count("\t\tPERF_COUNT: NO\n") == 2
    assert "TARGET_FALLBACK" not in out  # a HETERO key
    assert re.findall(r"^(\w+): 0\.1 tessera-0\.1\.0 \(", out, re.MULTILINE) == ["HETERO", "FPGA", "CPU"]
